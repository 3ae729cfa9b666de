"""`simulate`: run a whole WKL program — regions in layout order, whole tensors moved on routes.

Requires: a `Program` (a layout and one kernel program per region, region name == kernel name),
parameter and input data as numpy arrays of the declared shapes and dtypes (`numerics.numpy_dtype`
says which dtype each WKL type uses), and the target the program was built for.
Ensures:
* each kernel's `in` tensors arrive through the route whose `dst` is that endpoint, from a program
  input (`host.X`) or from the `out` of a kernel that has already run; program outputs arrive
  through the routes to `host.Y`;
* the answer comes from the program alone (no torch, nothing from compiler/ or passes/);
* a kernel's stage cycles are the sum of `ir.wkl_cost.stmt_busy_cycles` and its latency the sum
  of `ir.wkl_cost.stmt_cycles` (what `kernel_cycles` / `kernel_latency_cycles` estimate); route
  cycles are `ir.wkl_cost.route_cycles` of the tensor's bytes, hops and the two regions' wafers;
* missing or mismatched data (no route, a route from a kernel that has not run, an absent or
  misshapen parameter or input, a route nothing reads) is a `SimulationError` with a span.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from backends.sim.interpreter import KernelInterpreter
from backends.sim.numerics import numpy_dtype
from backends.sim.report import SimResult, cycle_report
from ir.errors import SimulationError, Span
from ir.target import Target
from ir.wkl import HOST, Endpoint, KernelProgram, Program, Region, Route, TensorDecl
from ir.wkl_cost import route_cycles


def simulate(program: Program, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
             target: Target) -> SimResult:
    """Run `program` on `inputs` with `params`; its outputs and cycle counts."""
    return _ProgramRun(program, params, inputs, target).execute()


def checked_host_array(kind: str, decl: TensorDecl, data: Mapping[str, np.ndarray],
                       span: Span | None) -> np.ndarray:
    """data[decl.name], which must exist and match the declared shape and dtype."""
    if decl.name not in data:
        raise SimulationError(f"{kind} '{decl.name}' ({decl.type}) was not given", span,
                              hint=f"pass it in the {kind}s dict of simulate()")
    array = np.asarray(data[decl.name])
    want = numpy_dtype(decl.type.dtype)
    if array.shape != decl.type.shape or array.dtype != want:
        raise SimulationError(f"{kind} '{decl.name}' is declared {decl.type} but the array given "
                              f"has shape {list(array.shape)} and dtype {array.dtype}", span,
                              hint=f"convert it with .astype(np.dtype('{want}'))")
    return array


class _ProgramRun:
    """The state of one simulation: the data produced so far and the cycles counted."""

    def __init__(self, program: Program, params, inputs, target: Target):
        self.program, self.target = program, target
        self.layout = program.layout
        self.params, self.inputs = params, inputs
        self.param_decls = {d.name: d for d in self.layout.params}
        self.input_decls = {d.name: d for d in self.layout.inputs}
        self.regions = {r.kernel: r for r in self.layout.regions}
        self.routes_into = _routes_by_destination(self.layout.routes)
        self.produced: dict[Endpoint, np.ndarray] = {}
        self.kernel_cycles: dict[str, int] = {}  # busy (stage) cycles
        self.kernel_latencies: dict[str, int] = {}
        self.route_cycles: dict[str, int] = {}
        self.checked_params: dict[str, np.ndarray] = {}

    def execute(self) -> SimResult:
        _check_regions_match_kernels(self.program)
        for region in self.layout.regions:
            self.run_region(region, self.program.kernels[region.kernel])
        outputs = {d.name: self.deliver(Endpoint(HOST, d.name), d) for d in self.layout.outputs}
        self.check_all_routes_used()
        return SimResult(outputs, cycle_report(self.kernel_cycles, self.route_cycles,
                                               self.target.clock_hz, self.kernel_latencies))

    def run_region(self, region: Region, kernel: KernelProgram) -> None:
        ins = {d.name: self.deliver(Endpoint(kernel.name, d.name), d) for d in kernel.ins}
        run = KernelInterpreter(kernel, region, ins, self.read_param, self.target).run()
        self.kernel_cycles[kernel.name] = run.cycles
        self.kernel_latencies[kernel.name] = run.latency_cycles
        self.produced.update({Endpoint(kernel.name, n): a for n, a in run.outs.items()})

    # ------------------------------------------------------------ routes

    def deliver(self, dst: Endpoint, decl: TensorDecl) -> np.ndarray:
        """The tensor the route into `dst` carries, counting that route's cycles."""
        route = self.routes_into.get(dst)
        if route is None:
            raise SimulationError(f"no route delivers {dst} ({decl.type})", decl.span,
                                  hint=f"add a route `... -> {dst}` to the layout")
        array = self.route_source(route)
        if array.shape != decl.type.shape or array.dtype != numpy_dtype(decl.type.dtype):
            raise SimulationError(f"route '{route.name}' carries {route.src} of shape "
                                  f"{list(array.shape)} and dtype {array.dtype} into {dst}, "
                                  f"declared {decl.type}", route.span)
        self.route_cycles[route.name] = self.cycles_of(route, decl)
        return array

    def route_source(self, route: Route) -> np.ndarray:
        src = route.src
        if src.kernel == HOST:
            decl = self.input_decls.get(src.tensor)
            if decl is None:
                raise SimulationError(f"route '{route.name}' reads {src}, which is not a program "
                                      "input", route.span)
            return checked_host_array("input", decl, self.inputs, route.span)
        if src not in self.produced:
            raise SimulationError(f"route '{route.name}' reads {src} before it exists: "
                                  + _why_missing(self.program, self.kernel_cycles, src), route.span)
        return self.produced[src]

    def cycles_of(self, route: Route, decl: TensorDecl) -> int:
        return route_cycles(decl.type.nbytes, route.hops, self.regions.get(route.src.kernel),
                            self.regions.get(route.dst.kernel), self.target)

    def check_all_routes_used(self) -> None:
        for route in self.layout.routes:
            if route.name not in self.route_cycles:
                raise SimulationError(f"route '{route.name}' goes to {route.dst}, which is neither "
                                      "a kernel `in` nor a program output", route.span)

    # ------------------------------------------------------------ parameters

    def read_param(self, name: str, span: Span | None) -> np.ndarray:
        """The data of a declared parameter, checked against its declaration once."""
        if name not in self.checked_params:
            decl = self.param_decls.get(name)
            if decl is None:
                raise SimulationError(f"'{name}' is not a parameter of the layout", span)
            self.checked_params[name] = checked_host_array("param", decl, self.params, span)
        return self.checked_params[name]


def _routes_by_destination(routes: list[Route]) -> dict[Endpoint, Route]:
    by_dst: dict[Endpoint, Route] = {}
    for route in routes:
        if route.dst in by_dst:
            raise SimulationError(f"routes '{by_dst[route.dst].name}' and '{route.name}' both "
                                  f"deliver {route.dst}", route.span)
        by_dst[route.dst] = route
    return by_dst


def _check_regions_match_kernels(program: Program) -> None:
    regions = {r.kernel for r in program.layout.regions}
    for region in program.layout.regions:
        if region.kernel not in program.kernels:
            raise SimulationError(f"region '{region.kernel}' has no kernel program", region.span)
    for name, kernel in program.kernels.items():
        if name not in regions:
            raise SimulationError(f"kernel '{name}' has no region in the layout", kernel.span)


def _why_missing(program: Program, ran: dict[str, int], src: Endpoint) -> str:
    kernel = program.kernels.get(src.kernel)
    if kernel is None:
        return f"there is no kernel '{src.kernel}'"
    if src.kernel not in ran:
        return f"kernel '{src.kernel}' has not run yet (regions run in the layout's order)"
    return f"kernel '{src.kernel}' has no out '{src.tensor}'"
