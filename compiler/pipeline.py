"""The compile pipeline from IR to a checked WKL program, one named step per line.

    canonicalize → verify → [quantize] → partition → cost → place → lower → route → emit → parse → check

(quantize runs when weights are to be stored in another type: `CompileOptions.weight_dtype`.)

Everything torch-facing (capture, lowering ATen to IR, running eager) is in compiler/frontend and
compiler/api; this module only sees the IR.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from backends.wkl import check_program, emit_program, parse_program
from ir.errors import CompilerError, WaferCapacityError
from ir.graph import Graph
from ir.kernels import Kernel, KernelGraph, Placement
from ir.target import Target
from ir.types import DType
from ir.verify import verify_graph
from ir.wkl import HOST, Endpoint, Layout, Program, Region, TensorDecl
from ir.wkl_cost import kernel_bytes_per_pe, kernel_cycles, kernel_latency_cycles, route_cycles
from passes.canonicalize import CanonicalizePass
from passes.cost import CostPass, KernelCostModel
from passes.defects import DefectMap, Remap, plan_remap, remap_report, route_extra_hops
from passes.partition import PartitionPass
from passes.place import PlacementPass
from passes.quantize import ParamData, QuantizePass, weight_dtype_name
from passes.route import route
from passes.spmd import lower_kernel
from passes.wafer_place import WaferPlacementPass

Progress = Callable[[str], None]


@dataclass
class CompileOptions:
    target: Target
    seed: int = 0
    time_limit_s: float = 10.0
    wafers: int | None = None          # None: the fewest that fit
    layout: str = "throughput"         # or "latency"
    max_context: int | None = None     # tokens of KV cache each attention keeps resident
    defects: Callable[[int], DefectMap] | None = None  # the defect map for a number of wafers
    progress: Progress | None = None
    placement_work: float | None = None  # CP-SAT deterministic seconds; None: each placer's own
    weight_dtype: DType | None = None  # store linear/embedding weights in this type (None: as given)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    _current: tuple[str, float] | None = None

    def phase(self, name: str | None) -> None:
        """Start phase `name` (None ends the last one), timing each and reporting progress."""
        now = time.perf_counter()
        if self._current is not None:
            done, start = self._current
            self.phase_seconds[done] = self.phase_seconds.get(done, 0.0) + now - start
        self._current = (name, now) if name else None
        if name and self.progress is not None:
            self.progress(name)


@dataclass
class Compiled:
    """What the pipeline produced: the IR, kernels, placement and the WKL program (text and AST)."""

    graph: Graph
    kernel_graph: KernelGraph
    flops_per_token: dict[str, int]  # by kernel name
    placement: Placement
    program: Program
    wkl_files: dict[str, str]
    output_names: list[str] = field(default_factory=list)
    defects: "DefectPlacement | None" = None
    params: ParamData | None = None   # the params' data after quantisation (None: not given)
    weight_dtype: DType | None = None


def compile_graph(graph: Graph, opts: CompileOptions, model_name: str = "model",
                  params: ParamData | None = None) -> Compiled:
    """`params`: the data of the graph's params by name (None values: size-only); quantisation
    rewrites it along with the graph, and `Compiled.params` is the result."""
    opts.phase("canonicalize")
    graph = CanonicalizePass().run(graph)
    verify_graph(graph)
    if opts.weight_dtype is not None:
        opts.phase("quantize")
        graph, params = QuantizePass(opts.weight_dtype).run(graph, params)
    opts.phase("partition")
    kg = PartitionPass().run(graph)
    opts.phase("cost")
    cache: dict = {}
    models = [KernelCostModel(k, opts.target, cache, opts.max_context) for k in kg.kernels]
    opts.phase("place")
    placement, dm, remap = _place(kg, models, opts)
    regions = placement.regions
    opts.phase("lower")
    kernels = {k.name: lower_kernel(k, r.w, r.h, max_context=opts.max_context)
               for k, r in zip(kg.kernels, regions)}
    opts.phase("route")
    output_names = [f"out{i}" for i in range(len(graph.outputs))]
    routes = route(regions, _edges(kg, output_names), opts.target.colors).routes
    defects = None
    if remap is not None:
        extra = route_extra_hops(remap, regions, routes)
        routes = [replace(r, hops=r.hops + extra.get(r.name, 0)) for r in routes]  # physical hops
        defects = DefectPlacement(dm, remap, remap_report(dm, remap, extra))
    placement = replace(placement, routes=routes)
    layout = Layout(
        model=model_name, target=opts.target.name, fabric=placement.fabric, wafers=placement.wafers,
        inputs=[TensorDecl(v.name, v.type) for v in graph.inputs],
        params=[TensorDecl(p.name, p.type) for p in graph.params],
        outputs=[TensorDecl(n, v.type) for n, v in zip(output_names, graph.outputs)],
        regions=regions, routes=routes)
    opts.phase("emit")
    files = emit_program(Program(layout, kernels))
    program = parse_program(files)  # what runs is what the text says
    check_program(program, opts.target)
    tokens = tokens_per_pass(graph)
    flops = {k.name: m.flops // tokens for k, m in zip(kg.kernels, models)}
    return Compiled(graph, kg, flops, placement, program, files, output_names, defects, params,
                    opts.weight_dtype)


# One wafer of up to this many PEs is placed by one CP-SAT model. The wafer placer takes bigger
# fabrics, counts above one, and, with the count left to it, models one small wafer cannot hold.
SMALL_FABRIC_PES = 64 * 64


def _place(kg: KernelGraph, models: list[KernelCostModel], opts: CompileOptions):
    """Place on the logical fabric (remapped around defects); redraw the defect map if the
    placement needs more wafers than it covered. Returns (placement, defect map, remap)."""
    if opts.defects is None:
        return _place_on(kg, models, opts, opts.target.fabric), None, None
    wafers = opts.wafers or 1
    while True:
        dm = opts.defects(wafers)
        remap = plan_remap(dm)
        placement = _place_on(kg, models, opts, remap.logical_dims)
        if placement.wafers <= remap.wafers:
            return placement, dm, remap
        wafers = placement.wafers


def _place_on(kg: KernelGraph, models: list[KernelCostModel], opts: CompileOptions,
              fabric: tuple[int, int]) -> Placement:
    work = {} if opts.placement_work is None else {"work_limit": opts.placement_work}
    if fabric[0] * fabric[1] <= SMALL_FABRIC_PES and (opts.wafers or 1) == 1:
        costs = CostPass(opts.target, max_context=opts.max_context).run(kg)
        names = [k.name for k in kg.kernels]
        placer = PlacementPass(seed=opts.seed, time_limit_s=opts.time_limit_s, **work)
        try:
            return Placement(opts.target.name, fabric, 1, placer.run(names, costs, fabric))
        except WaferCapacityError:
            if opts.wafers is not None:
                raise
    placer = WaferPlacementPass(fabric, opts.wafers, opts.layout, opts.seed, **work)
    return placer.run(kg.kernels, models)


@dataclass(frozen=True)
class DefectPlacement:
    """The defect map placed around: the logical fabric over the physical one, and what it cost."""

    defects: DefectMap
    remap: Remap
    report: dict


def _edges(kg: KernelGraph, output_names: list[str]) -> list[tuple[Endpoint, Endpoint, int]]:
    """Every whole tensor a kernel needs, from the host or the kernel that makes it."""
    maker = {v: k.name for k in kg.kernels for v in k.outputs}
    edges = []
    for k in kg.kernels:
        for v in k.inputs:
            edges.append((Endpoint(maker.get(v, HOST), v.name), Endpoint(k.name, v.name), v.type.nbytes))
    for name, v in zip(output_names, kg.graph.outputs):
        if v not in maker:
            raise CompilerError(f"model output '{name}' is an input or a parameter; nothing computes it")
        edges.append((Endpoint(maker[v], v.name), Endpoint(HOST, name), v.type.nbytes))
    return edges


def tokens_per_pass(graph: Graph) -> int:
    """Tokens one pass processes: the ids of an integer input, else the rows of the first input."""
    if not graph.inputs:
        return 1
    first = graph.inputs[0].type
    return first.numel if not first.dtype.is_float else max(1, math.prod(first.shape[:-1]))


def placement_json(c: Compiled, target: Target) -> dict:
    """The placement contract other tools read (see the wafer-scale placement issue)."""
    by_name = {k.name: k for k in c.kernel_graph.kernels}
    remap = c.defects.remap if c.defects else None
    regions = []
    for r in c.placement.regions:
        kp, kernel = c.program.kernels[r.kernel], by_name[r.kernel]
        regions.append({
            "kernel": r.kernel, "kind": kp.kind, "layer": kernel.layer, "wafer": r.wafer,
            "x": r.x, "y": r.y, "w": r.w, "h": r.h,
            "sram_bytes": kernel_bytes_per_pe(kp) * r.area,
            "flops_per_token": c.flops_per_token[r.kernel],
            # Stage time (busy cycles: bounds throughput) and one pass start to finish (+ hops).
            "cycles_per_token": kernel_cycles(kp, target, r.w, r.h),
            "latency_cycles_per_token": kernel_latency_cycles(kp, target, r.w, r.h),
            "source": kp.source,
            # Added for tools that show a kernel (the visualisation); x, y, w, h above stay logical.
            "bytes_per_pe": kernel_bytes_per_pe(kp),
            "role": kernel_role(kernel), "module": kernel.loc.module,
            "file": kernel.loc.file, "line": kernel.loc.line,
            "ops": list(dict.fromkeys(op.opname for op in kernel.ops)),
            "inputs": [{"name": d.name, "type": str(d.type)} for d in kp.ins],
            "outputs": [{"name": d.name, "type": str(d.type)} for d in kp.outs],
            "params": [{"name": v.name, "type": str(v.type)} for v in kernel.params],
            "physical": physical_box(remap, r),
        })
    return {
        "target": {"name": target.name, "fabric_dims": list(target.fabric),
                   "sram_bytes_per_pe": target.sram_bytes_per_pe,
                   "reserved_bytes_per_pe": target.reserved_bytes_per_pe},
        "wafers": c.placement.wafers,
        "defects": c.defects.defects.to_json() if c.defects else [],
        "remap": c.defects.remap.to_json() if c.defects else None,
        "regions": regions,
        "routes": [{"name": rt.name, "color": rt.color, "src": str(rt.src), "dst": str(rt.dst),
                    "hops": rt.hops} for rt in c.placement.routes],
    }


def kernel_role(kernel: Kernel) -> str:
    """What a kernel does within its layer, the same in every layer: the module path below the
    layer index (`self_attn.q_proj` for `model.layers.3.self_attn.q_proj`), else its last part."""
    parts = kernel.loc.module.split(".") if kernel.loc.module else []
    if kernel.layer is not None and str(kernel.layer) in parts[1:]:
        index = parts.index(str(kernel.layer), 1)
        return ".".join(parts[index + 1:]) or parts[index - 1]
    return parts[-1] if parts else kernel.kind


def physical_box(remap: Remap | None, r: Region) -> dict[str, int]:
    """The physical PEs a logical region spans, as a bounding box (without defects, the region).
    The remap skips retired rows and shifts each row past its defects, so the box can be taller
    and a few columns wider than the region."""
    if remap is None:
        return {"x": r.x, "y": r.y, "w": r.w, "h": r.h}
    rows, cols = remap.physical_rows[r.wafer], remap.physical_cols[r.wafer][r.y:r.y + r.h]
    x0, x1 = int(cols[:, r.x].min()), int(cols[:, r.x + r.w - 1].max())
    y0, y1 = int(rows[r.y]), int(rows[r.y + r.h - 1])
    return {"x": x0, "y": y0, "w": x1 - x0 + 1, "h": y1 - y0 + 1}


def report_json(c: Compiled, target: Target, size_only: bool = False, seconds: dict | None = None) -> dict:
    """The compile report: the estimate comes from the same cycle rules the simulator counts with.
    The bottleneck and throughput use each kernel's stage (busy) cycles; the latency adds up each
    kernel's latency (hops included) and the routes."""
    placement = placement_json(c, target)
    stages = {r["kernel"]: r["cycles_per_token"] for r in placement["regions"]}
    kernel_latency = sum(r["latency_cycles_per_token"] for r in placement["regions"])
    regions = {r.kernel: r for r in c.placement.regions}
    sizes = {d.name: d.type.nbytes for kp in c.program.kernels.values() for d in kp.outs}
    sizes.update({d.name: d.type.nbytes for d in c.program.layout.inputs})
    route_total = sum(route_cycles(sizes[rt.src.tensor], rt.hops, regions.get(rt.src.kernel),
                                   regions.get(rt.dst.kernel), target) for rt in c.placement.routes)
    bottleneck = max(stages, key=lambda k: stages[k])
    tokens = tokens_per_pass(c.graph)
    passes_per_s = target.clock_hz / stages[bottleneck]
    latency = kernel_latency + route_total
    report = {
        "size_only": size_only,
        "weight_dtype": weight_dtype_name(c.weight_dtype),  # None: the model's own
        "kernels": len(stages), "ops": len(c.graph.ops),
        "pes_used": sum(r["w"] * r["h"] for r in placement["regions"]),
        "pes_total": target.fabric_width * target.fabric_height,
        "sram_used_bytes": sum(r["sram_bytes"] for r in placement["regions"]),
        "wafers_used": c.placement.wafers, "wafers_lower_bound": c.placement.wafers_lower_bound,
        "bottleneck_kernel": bottleneck, "bottleneck_cycles": stages[bottleneck],
        "latency_cycles": latency,
        "hop_distance_total": sum(rt.hops for rt in c.placement.routes),
        "tokens_per_pass": tokens,
        # Every stage busy with independent work (a full pipeline of sequences):
        "passes_per_second": passes_per_s, "pipeline_tokens_per_second": passes_per_s * tokens,
        # One pass after another through every stage (batch-1 decoding, each token waits for the last):
        "sequential_tokens_per_second": target.clock_hz / latency * tokens,
    }
    if c.placement.ideal_stage_cycles:
        report["ideal_stage_cycles"] = c.placement.ideal_stage_cycles
        report["bottleneck_ratio_to_ideal"] = c.placement.bottleneck_ratio_to_ideal
    if c.placement.ideal_real_stage_cycles:
        report["ideal_real_stage_cycles"] = c.placement.ideal_real_stage_cycles
        report["bottleneck_ratio_to_ideal_real"] = c.placement.bottleneck_ratio_to_ideal_real
    if c.defects is not None:
        report["defects"] = c.defects.report
    if seconds is not None:
        placer = {f"place.{k}": v for k, v in c.placement.phase_seconds.items()}
        report["compile_seconds"] = {k: round(v, 3) for k, v in {**seconds, **placer}.items()}
    return report
