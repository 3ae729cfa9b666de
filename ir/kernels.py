"""Kernels (the unit of placement) and the analyses passes attach to them, as typed data."""
from __future__ import annotations

from dataclasses import dataclass, field

from ir.errors import SourceLoc
from ir.graph import Graph, Op, Value
from ir.wkl import Region, Route


@dataclass(eq=False)
class Kernel:
    """A group of IR ops that runs on one rectangular region.

    kind: "linear" (a matmul against a weight, with a fused elementwise epilogue), "embedding"
    (a table lookup), or "vector" (everything else: norms, attention, elementwise, data movement).
    `inputs` are the whole tensors it receives (graph inputs or other kernels' outputs); parameters
    it reads are `params`; `outputs` are the values used after it or returned by the graph.
    """

    name: str
    kind: str
    ops: list[Op]
    inputs: list[Value]
    params: list[Value]
    outputs: list[Value]
    layer: int | None = None
    loc: SourceLoc = field(default_factory=SourceLoc)


@dataclass
class KernelGraph:
    graph: Graph
    kernels: list[Kernel]  # in a valid execution order


@dataclass(frozen=True)
class ShapeCost:
    """What a kernel costs on a region of w x h PEs."""

    w: int
    h: int
    bytes_per_pe: int
    cycles: int


@dataclass
class KernelCost:
    kernel: str
    flops_per_token: int
    param_bytes: int
    shapes: list[ShapeCost]  # the region shapes that fit SRAM, best first


@dataclass
class Placement:
    target: str
    fabric: tuple[int, int]
    wafers: int
    regions: list[Region]  # one per kernel, in execution order
    routes: list[Route] = field(default_factory=list)
    # Quality figures from the wafer-scale placer (passes/wafer_place.py defines them); the
    # defaults mean "not measured".
    wafers_lower_bound: int = 1            # wafers memory alone needs
    ideal_stage_cycles: float = 0.0        # compute-only water-filling bound
    bottleneck_stage_cycles: float = 0.0   # the slowest kernel, same compute-only model
    bottleneck_ratio_to_ideal: float = 1.0
    bottleneck_cycles: int = 0             # the slowest kernel in the real cost model
    bottleneck_kernel: str = ""
    ideal_real_stage_cycles: float = 0.0   # water-filling bound in the real cost model
    bottleneck_ratio_to_ideal_real: float = 1.0  # bottleneck_cycles over it: packing alone
    hop_distance: int = 0                  # centre-to-centre PEs between consecutive kernels
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def region(self, kernel: str) -> Region:
        return next(r for r in self.regions if r.kernel == kernel)
