"""The WKL checker: the checks listed at the end of LANGUAGE.md, on a parsed or built Program.

Requires: a Program (spans are used when present) and the Target it is meant for.
Ensures: `check_program` returns None when the program is well formed, and otherwise raises
`VerifyError` at the Span of the first offending statement, declaration, region or route:

* layout: duplicate names, regions leaving the fabric or overlapping on a wafer, a region with no
  kernel program or a kernel program with no region;
* kernels: duplicate or undefined names, compute types that differ from `ir.ops.infer`, slice lists
  whose rank or block widths do not give the local's type, stores into something that is not an
  `out` (or of a local that does not fit the block), an `out` that is never stored, a PE whose
  tiles and buffers exceed the target's usable SRAM;
* routes: endpoints that do not exist, types that differ at the two ends, a kernel `in` or program
  output with no route into it (or with two).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ir import ops
from ir.errors import Span, VerifyError
from ir.target import Target
from ir.types import TensorType
from ir.wkl import (HOST, Compute, Endpoint, KernelProgram, Layout, Load, Program, Region, Route,
                    Slice, State, Store, TensorDecl, Tile)
from ir.wkl_cost import kernel_bytes_per_pe, live_bytes


def check_program(program: Program, target: Target) -> None:
    layout = program.layout
    _check_layout_names(layout)
    _check_regions(layout)
    _check_kernels_match_regions(program)
    params = {d.name: d.type for d in layout.params}
    for kp in program.kernels.values():
        check_kernel(kp, params, target)
    _check_routes(program)


def check_kernel(kp: KernelProgram, params: dict[str, TensorType], target: Target) -> None:
    """One kernel program on its own: names, types, slices, stores and SRAM per PE."""
    scope = _Scope(kp.name, params)
    for decl, table in [(d, scope.ins) for d in kp.ins] + [(d, scope.outs) for d in kp.outs]:
        scope.define(decl.name, decl.span)
        table[decl.name] = decl.type
    for stmt in kp.body:
        _STMT_CHECKS[type(stmt)](stmt, scope)
    for decl in kp.outs:
        if decl.name not in scope.stored:
            raise VerifyError(f"out '{decl.name}' of kernel '{kp.name}' is never stored", decl.span)
    _check_sram(kp, target)


# ---------------------------------------------------------------- layout

def _check_layout_names(layout: Layout) -> None:
    _check_unique(layout.inputs + layout.params + layout.outputs, lambda d: d.name,
                  "'{}' is declared twice in the layout")
    _check_unique(layout.regions, lambda r: r.kernel, "region '{}' is declared twice")
    _check_unique(layout.routes, lambda r: r.name, "route '{}' is declared twice")
    for region in layout.regions:
        if region.kernel == HOST:
            raise VerifyError(f"'{HOST}' names the program boundary and cannot name a region",
                              region.span)


def _check_unique(items: list, key, message: str) -> None:
    first_seen: dict[str, Span | None] = {}
    for item in items:
        name = key(item)
        if name in first_seen:
            earlier = f" (first at {first_seen[name]})" if first_seen[name] else ""
            raise VerifyError(message.format(name) + earlier, item.span)
        first_seen[name] = item.span


def _check_regions(layout: Layout) -> None:
    for region in layout.regions:
        _check_region_bounds(region, layout)
    overlap = _first_overlap(layout.regions)
    if overlap:
        later, earlier = overlap
        raise VerifyError(f"region '{later.kernel}' overlaps region '{earlier.kernel}' "
                          f"on wafer {later.wafer}", later.span)


def _check_region_bounds(region: Region, layout: Layout) -> None:
    width, height = layout.fabric
    if not 0 <= region.wafer < layout.wafers:
        raise VerifyError(f"region '{region.kernel}' is on wafer {region.wafer} but the layout has "
                          f"wafers 0..{layout.wafers - 1}", region.span)
    if region.w < 1 or region.h < 1:
        raise VerifyError(f"region '{region.kernel}' is empty ({region.w} x {region.h})", region.span)
    if region.x < 0 or region.y < 0 or region.x + region.w > width or region.y + region.h > height:
        raise VerifyError(f"region '{region.kernel}' (columns {region.x}..{region.x + region.w - 1}, "
                          f"rows {region.y}..{region.y + region.h - 1}) leaves the "
                          f"{width} x {height} fabric", region.span)


def _first_overlap(regions: list[Region]) -> tuple[Region, Region] | None:
    """A (later, earlier) pair of regions sharing a PE, by a sweep over x on each wafer."""
    order = {id(r): i for i, r in enumerate(regions)}
    active: list[Region] = []
    for region in sorted(regions, key=lambda r: (r.wafer, r.x, order[id(r)])):
        active = [a for a in active if a.wafer == region.wafer and a.x + a.w > region.x]
        for other in active:
            if other.y < region.y + region.h and region.y < other.y + other.h:
                pair = sorted((region, other), key=lambda r: order[id(r)])
                return pair[1], pair[0]
        active.append(region)
    return None


def _check_kernels_match_regions(program: Program) -> None:
    region_names = {r.kernel for r in program.layout.regions}
    for region in program.layout.regions:
        if region.kernel not in program.kernels:
            raise VerifyError(f"region '{region.kernel}' has no kernel program", region.span,
                              hint=f"expected kernels/{region.kernel}.wkl")
    for name, kp in program.kernels.items():
        if name not in region_names:
            raise VerifyError(f"kernel '{name}' has no region in the layout", kp.span)


# ---------------------------------------------------------------- kernel statements

@dataclass
class _Scope:
    """What a kernel statement may refer to, as the body is checked top to bottom."""

    kernel: str
    params: dict[str, TensorType]
    ins: dict[str, TensorType] = field(default_factory=dict)
    outs: dict[str, TensorType] = field(default_factory=dict)
    locals: dict[str, TensorType] = field(default_factory=dict)
    stored: set[str] = field(default_factory=set)
    defined_at: dict[str, Span | None] = field(default_factory=dict)

    def define(self, name: str, span: Span | None) -> None:
        """Ins, outs and locals share one namespace per kernel."""
        if name in self.defined_at:
            earlier = f" (first at {self.defined_at[name]})" if self.defined_at[name] else ""
            raise VerifyError(f"'{name}' is defined twice in kernel '{self.kernel}'{earlier}", span)
        self.defined_at[name] = span

    def local(self, name: str, span: Span | None) -> TensorType:
        if name in self.locals:
            return self.locals[name]
        hint = "load a block of it into a local first" if name in self.ins else ""
        raise VerifyError(f"undefined local '{name}' in kernel '{self.kernel}'", span, hint)


def _check_tile(stmt: Tile, scope: _Scope) -> None:
    if stmt.param not in scope.params:
        raise VerifyError(f"undefined parameter '{stmt.param}'", stmt.span,
                          hint="parameters are declared in layout.wkl")
    whole = scope.params[stmt.param]
    _check_block(stmt.slices, whole, stmt.type, f"tile '{stmt.name}'", stmt.span)
    _check_dtype(stmt.type, whole, f"tile '{stmt.name}'", f"parameter '{stmt.param}'", stmt.span)
    _define_local(scope, stmt.name, stmt.type, stmt.span)


def _check_load(stmt: Load, scope: _Scope) -> None:
    if stmt.src not in scope.ins:
        raise VerifyError(f"load from '{stmt.src}', which is not an `in` of kernel "
                          f"'{scope.kernel}'", stmt.span)
    whole = scope.ins[stmt.src]
    _check_block(stmt.slices, whole, stmt.type, f"load '{stmt.name}'", stmt.span)
    _check_dtype(stmt.type, whole, f"load '{stmt.name}'", f"input '{stmt.src}'", stmt.span)
    _define_local(scope, stmt.name, stmt.type, stmt.span)


def _check_state(stmt: State, scope: _Scope) -> None:
    _define_local(scope, stmt.name, stmt.type, stmt.span)


def _check_compute(stmt: Compute, scope: _Scope) -> None:
    if ops.lookup(stmt.op) is None:
        raise VerifyError(f"unknown op '{stmt.op}'", stmt.span)
    operand_types = [scope.local(arg, stmt.span) for arg in stmt.args]
    inferred = _infer(stmt, operand_types)
    if inferred != stmt.type:
        raise VerifyError(f"'{stmt.name}' is declared {stmt.type} but {stmt.op} gives {inferred}",
                          stmt.span)
    _define_local(scope, stmt.name, stmt.type, stmt.span)


def _infer(stmt: Compute, operand_types: list[TensorType]) -> TensorType:
    try:
        return ops.infer(stmt.op, operand_types, stmt.attrs)
    except ops.ShapeError as err:
        raise VerifyError(str(err), stmt.span) from None
    except (ValueError, TypeError, KeyError) as err:
        # A shape rule tripping over a malformed attribute value (e.g. `dims = 1.5`).
        raise VerifyError(f"invalid attributes for '{stmt.op}': {err}", stmt.span) from None


def _check_store(stmt: Store, scope: _Scope) -> None:
    if stmt.dst not in scope.outs:
        raise VerifyError(f"store into '{stmt.dst}', which is not an `out` of kernel "
                          f"'{scope.kernel}'", stmt.span)
    local = scope.local(stmt.src, stmt.span)
    whole = scope.outs[stmt.dst]
    _check_block(stmt.slices, whole, local, f"store of '{stmt.src}'", stmt.span)
    _check_dtype(local, whole, f"store of '{stmt.src}'", f"out '{stmt.dst}'", stmt.span)
    scope.stored.add(stmt.dst)


_STMT_CHECKS = {Tile: _check_tile, Load: _check_load, State: _check_state, Compute: _check_compute,
                Store: _check_store}


def _define_local(scope: _Scope, name: str, typ: TensorType, span: Span | None) -> None:
    scope.define(name, span)
    scope.locals[name] = typ


def _check_dtype(local: TensorType, whole: TensorType, what: str, whole_name: str,
                 span: Span | None) -> None:
    if local.dtype != whole.dtype:
        raise VerifyError(f"{what} is {local.dtype} but {whole_name} is {whole.dtype}", span)


def _check_block(slices: list[Slice], whole: TensorType, local: TensorType, what: str,
                 span: Span | None) -> None:
    """The slice list must select, on every PE, a block of exactly the local's shape."""
    if len(slices) != whole.rank or len(slices) != local.rank:
        raise VerifyError(f"{what} has {len(slices)} slice(s), but the tensor is {whole} and the "
                          f"local is {local}", span)
    for dim, (s, whole_dim, local_dim) in enumerate(zip(slices, whole.shape, local.shape)):
        width = _slice_width(s, whole_dim)
        if width is None:
            raise VerifyError(f"{what}: slice `{s}` of dim {dim} has a different width on "
                              f"different PEs", span)
        if width != local_dim:
            raise VerifyError(f"{what}: slice `{s}` of dim {dim} selects {width} element(s) but "
                              f"the local is {local}", span)


def _slice_width(s: Slice, whole_dim: int) -> int | None:
    """How many elements the slice selects on every PE, or None if that depends on the PE."""
    if s.whole:
        return whole_dim
    if (s.start.px, s.start.py) != (s.stop.px, s.stop.py):
        return None
    return s.stop.const - s.start.const


def _sram_culprit(kp: KernelProgram, usable: int):
    """The resident tile or state that overflows the PE, else the first statement during which
    its live buffers do."""
    resident = 0
    for stmt in kp.body:
        if isinstance(stmt, (Tile, State)):
            resident += stmt.type.nbytes
            if resident > usable:
                return stmt
    return next((s for s, n in zip(kp.body, live_bytes(kp)) if n > usable), kp)


def _check_sram(kp: KernelProgram, target: Target) -> None:
    usable = target.usable_bytes_per_pe
    needed = kernel_bytes_per_pe(kp)
    if needed <= usable:
        return
    culprit = _sram_culprit(kp, usable)
    raise VerifyError(f"kernel '{kp.name}' needs {needed} bytes per PE for tiles and buffers, "
                      f"but target '{target.name}' leaves {usable} ({target.sram_bytes_per_pe} "
                      f"SRAM - {target.reserved_bytes_per_pe} reserved); it runs out here",
                      culprit.span, hint="spread the kernel over more PEs")


# ---------------------------------------------------------------- routes

@dataclass(frozen=True)
class _Ends:
    """The tensors a route may start at (sources) or end at (sinks), by endpoint."""

    sources: dict[Endpoint, TensorType]
    sinks: dict[Endpoint, TensorDecl]

    @staticmethod
    def of(program: Program) -> "_Ends":
        layout = program.layout
        sources = {Endpoint(HOST, d.name): d.type for d in layout.inputs}
        sinks = {Endpoint(HOST, d.name): d for d in layout.outputs}
        for name, kp in program.kernels.items():
            sources.update({Endpoint(name, d.name): d.type for d in kp.outs})
            sinks.update({Endpoint(name, d.name): d for d in kp.ins})
        return _Ends(sources, sinks)


def _check_routes(program: Program) -> None:
    ends = _Ends.of(program)
    delivered: dict[Endpoint, Route] = {}
    for route in program.layout.routes:
        src_type = _endpoint_type(route, route.src, ends.sources, program, "comes from")
        sink = ends.sinks.get(route.dst)
        if sink is None:
            _raise_missing_endpoint(route, route.dst, program, "goes to")
        if src_type != sink.type:
            raise VerifyError(f"route '{route.name}' carries {route.src} ({src_type}) but "
                              f"{route.dst} is {sink.type}", route.span)
        if route.dst in delivered:
            raise VerifyError(f"route '{route.name}' goes to {route.dst}, which route "
                              f"'{delivered[route.dst].name}' already feeds", route.span)
        delivered[route.dst] = route
    for endpoint, decl in ends.sinks.items():
        if endpoint not in delivered:
            what = (f"program output '{decl.name}'" if endpoint.kernel == HOST
                    else f"in '{decl.name}' of kernel '{endpoint.kernel}'")
            raise VerifyError(f"{what} has no route into it", decl.span)


def _endpoint_type(route: Route, end: Endpoint, sources: dict[Endpoint, TensorType],
                   program: Program, verb: str) -> TensorType:
    if end not in sources:
        _raise_missing_endpoint(route, end, program, verb)
    return sources[end]


def _raise_missing_endpoint(route: Route, end: Endpoint, program: Program, verb: str) -> None:
    incoming = verb == "goes to"
    if end.kernel == HOST:
        role = "output" if incoming else "input"
        raise VerifyError(f"route '{route.name}' {verb} {end}, but the program has no {role} "
                          f"'{end.tensor}'", route.span)
    if end.kernel not in program.kernels:
        raise VerifyError(f"route '{route.name}' {verb} {end}, but there is no region "
                          f"'{end.kernel}'", route.span)
    role = "in" if incoming else "out"
    raise VerifyError(f"route '{route.name}' {verb} {end}, but kernel '{end.kernel}' has no "
                      f"{role} '{end.tensor}'", route.span)
