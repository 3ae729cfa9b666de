"""Multi-wafer split: contiguous runs of kernels per wafer, by dynamic programming.

requires: the bands of a model in pipeline order (`passes.serpentine.bands_of`), with the layers
          cut into their kernels (`wafer_units`), the kernels' cost models, the PEs of one
          wafer, and for every cut between two bands the cycles its inter-wafer link costs.
ensures:  `split_bands` returns, for a number of wafers, the index of the first band on each
          wafer (a contiguous, ordered partition: pipeline order is kept), or None when no
          split fits; `wafers_lower_bound` and `too_few_wafers` state what memory alone
          demands (each kernel's resident bytes: weights and KV cache, `KernelCostModel.min_pes`).

The ideal ("water-filling") stage time is the compute-only bound: every kernel gets an area
max(its memory minimum, a share of the PEs in proportion to its FLOPs), and a kernel's stage time
on area A is flops / (min(A, max useful PEs) * SIMD lanes of its dtype). `water_fill` is the
smallest stage time every kernel reaches with the PEs given; nothing placed on those PEs can do
better in that model, which ignores data movement (the real cost model does not).

The split minimises, lexicographically and exactly (two DP passes): the largest water-filled stage
time of any wafer; then the total inter-wafer link cycles, then the sum of squared wafer stage
times (balance). A wafer's run of bands is admissible when its kernels' memory minima fit within
`fill` of the wafer's PEs (the caller lowers `fill` when a split does not lay out).
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

from ir.errors import PlacementError
from passes.cost import KernelCostModel
from passes.serpentine import (MAX_BAND_KERNELS, Band, ComputeDemand, ShapeSearch, Stage,
                               compute_demand)

# The cost-model bound (`real_water_fill`) tries every width up to this, then every
# BOUND_WIDTH_STEP-th: on a wse3 that gives Llama-3.1-8B and 70B the same bound as every width
# does, in a fifth of the time (8B: 0.75 s against 3.5 s).
BOUND_ALL_WIDTHS = 128
BOUND_WIDTH_STEP = 8
# The bound is bisected this tightly (relative): it is reported, so a loose bracket would flatter
# the placement by up to this much.
BOUND_TOLERANCE = 0.0005


def water_fill(demands: list[tuple[ComputeDemand, int]], pes: int) -> float | None:
    """The smallest compute-only stage time for (demand, count) pairs on `pes` PEs, or None when
    their memory minima alone exceed the PEs.

    Exact: sorted by work per memory-minimum PE, the kernels that get more than their memory
    minimum at the answer are a prefix; try each prefix in turn.
    """
    memory = sum(d.min_pes * n for d, n in demands)
    if memory > pes:
        return None
    floor = max((d.work / d.max_useful for d, _ in demands if d.max_useful), default=0.0)
    counts: dict = {}
    for d, n in demands:
        counts[d] = counts.get(d, 0) + n
    ranked = sorted((d for d in counts if d.work > 0), key=lambda d: -d.work / d.min_pes)
    work, memory_rest = 0.0, memory
    best = 0.0
    for k, d in enumerate(ranked):
        work += d.work * counts[d]
        memory_rest -= d.min_pes * counts[d]
        stage = work / (pes - memory_rest)
        lower = ranked[k + 1].work / ranked[k + 1].min_pes if k + 1 < len(ranked) else 0.0
        if stage >= lower:
            best = stage
            break
    return max(best, floor)


def real_water_fill(search: ShapeSearch, fabric: tuple[int, int], wafers: int,
                    high: float) -> float:
    """The water-filling stage time in the target's own cost model (`KernelCostModel.cost`): the
    smallest stage time T at which every kernel, each at the least area the shape search finds
    meeting T at any shape inside one wafer and fitting SRAM, fits on the wafers' PEs together (each
    kernel at its own best shape, as if they could be packed perfectly). `high` is a stage time
    known to fit (a placement's bottleneck); the answer is within BOUND_TOLERANCE above the bound.

    The compute-only `water_fill` sees FLOPs alone; this also sees what the programs spend on
    loads, stores, reductions and task overheads, and the tile ceilings that make some areas
    no faster than smaller ones. A placement's real bottleneck over it measures the packing
    alone: no placement on these PEs does better (up to the shape search's assumptions)."""
    width, height = fabric
    pes = width * height * wafers
    count = Counter(search.kind)  # identical kernels ask each question once
    first = {kind: search.kind.index(kind) for kind in count}

    def area(i: int, stage: float) -> float:
        areas = [w * h for w in _bound_widths(width)
                 if (h := search.min_height(i, w, Stage(real=stage), height))]
        return min(areas, default=math.inf)

    def fits(stage: float) -> bool:
        return sum(area(first[kind], stage) * n for kind, n in count.items()) <= pes

    # Step down from `high` by doubling gaps: the bound is usually a few percent below a
    # placement, and stage times far below it make every width's search walk to its end.
    hi, gap = high, high * 0.01
    while hi - gap > 0 and fits(hi - gap):
        hi, gap = hi - gap, 2 * gap
    lo = max(0.0, hi - gap)
    while hi - lo > max(0.5, hi * BOUND_TOLERANCE):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def _bound_widths(width: int) -> list[int]:
    every = list(range(1, min(width, BOUND_ALL_WIDTHS) + 1))
    return every + list(range(BOUND_ALL_WIDTHS + BOUND_WIDTH_STEP, width + 1, BOUND_WIDTH_STEP))


# ---------------------------------------------------------------- memory bounds


def memory_pes(models: list[KernelCostModel]) -> int:
    return sum(m.min_pes for m in models)


def resident_what(models: list[KernelCostModel]) -> str:
    """What the kernels' memory minima hold, in words."""
    cached = any(m.resident_bytes > m.param_bytes for m in models)
    return "weights and KV cache" if cached else "weights"


def wafers_lower_bound(models: list[KernelCostModel], wafer_pes: int) -> int:
    return max(1, math.ceil(memory_pes(models) / wafer_pes))


def too_few_wafers(models: list[KernelCostModel], fabric: tuple[int, int],
                   wafers: int) -> PlacementError:
    """The error for a wafer count below what memory alone needs, with the numbers."""
    width, height = fabric
    per_pe = models[0].target.usable_bytes_per_pe
    need = memory_pes(models) * per_pe
    holds = width * height * per_pe
    least = wafers_lower_bound(models, width * height)
    return PlacementError(
        f"the model does not fit {wafers} wafer{'s' if wafers != 1 else ''}: its "
        f"{resident_what(models)} need "
        f"{need:,} bytes of SRAM ({memory_pes(models):,} PEs at {per_pe:,} usable bytes each), "
        f"{math.ceil(need / wafers):,} bytes per wafer, and one {width}x{height} wafer holds "
        f"{holds:,} bytes, so it needs at least {least} wafers",
        hint=f"use {least} wafers or more, or let the placer choose the count")


# ---------------------------------------------------------------- where a wafer may end


def wafer_units(bands: list[Band]) -> list[Band]:
    """The bands with every layer band cut into its kernels, so that a wafer may end inside a
    layer; the kernels before the first layer and after the last stay whole.

    Whole layers per wafer leave the fullest wafer up to half a layer short of the average: on
    Llama-3.1-405B, 126 layers need 11 on some of 11 wafers, which their tiles and buffers do
    not allow, so it took 12; 70B on 4 wafers had 21 layers on two of them where 20 balance. A
    cut inside a layer costs a link transfer per live tensor (the residual stream and one or two
    activations, a few microseconds of latency each), which the pipelined stage time does not
    see; among the splits with the best bottleneck the split takes the fewest link cycles, so it
    prefers the thin cuts. `merged` joins the kernels on a wafer back into its bands."""
    units: list[Band] = []
    for band in bands:
        if band.layer is None:
            units.append(band)
        else:
            units += [Band((i,), (kind,), band.layer) for i, kind in zip(band.kernels, band.key)]
    return units


def merged(units: list[Band], most: int = MAX_BAND_KERNELS) -> list[Band]:
    """Consecutive kernels of one layer (see `wafer_units`) joined back into bands of at most
    `most` kernels, as `bands_of` made them."""
    out: list[Band] = []
    for unit in units:
        last = out[-1] if out else None
        if (last is not None and unit.layer is not None and last.layer == unit.layer
                and len(last.kernels) + len(unit.kernels) <= most):
            out[-1] = Band(last.kernels + unit.kernels, last.key + unit.key, last.layer)
        else:
            out.append(unit)
    return out


# ---------------------------------------------------------------- the split


class BandSplitter:
    """Water-filled stage times and memory of runs of bands. A run's stage time depends only on
    how many bands of each kind it holds, so it is memoised on those counts (a run of k
    identical layers costs the same wherever it starts)."""

    def __init__(self, bands: list[Band], models: list[KernelCostModel], wafer_pes: int,
                 link_cycles: list[int]):
        self.bands = bands
        self.wafer_pes = wafer_pes
        self.link_cycles = link_cycles  # [c]: the cut before band c (c = 1..n-1), n+1 entries
        firsts: dict = {}  # band key -> the first band with it
        for band in bands:
            firsts.setdefault(band.key, band)
        kind = {key: k for k, key in enumerate(firsts)}
        self._demands = [[compute_demand(models[i]) for i in b.kernels] for b in firsts.values()]
        self._kind_memory = [sum(models[i].min_pes for i in b.kernels) for b in firsts.values()]
        # _prefix[j][k]: how many of the first j bands are of kind k.
        self._prefix = [[0] * len(kind)]
        for band in bands:
            row = list(self._prefix[-1])
            row[kind[band.key]] += 1
            self._prefix.append(row)
        self._stages: dict = {}

    def _counts(self, start: int, stop: int) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self._prefix[start], self._prefix[stop]))

    def memory(self, start: int, stop: int) -> int:
        return sum(n * m for n, m in zip(self._counts(start, stop), self._kind_memory))

    def stage(self, start: int, stop: int) -> float | None:
        counts = self._counts(start, stop)
        if counts not in self._stages:
            demands: dict = {}
            for kind, n in enumerate(counts):
                for d in self._demands[kind]:
                    demands[d] = demands.get(d, 0) + n
            self._stages[counts] = water_fill([(d, n) for d, n in demands.items() if n],
                                              self.wafer_pes)
        return self._stages[counts]


def split_bands(splitter: BandSplitter, wafers: int, fill: float = 1.0) -> list[int] | None:
    """The first band index of each wafer (the first is 0), or None if no split fits."""
    n = len(splitter.bands)
    if wafers > n:
        return None
    cost = _wafer_costs(splitter, fill)
    bottleneck = _minimax(cost, n, wafers)
    if bottleneck is None:
        return None
    return _min_links(splitter, cost, n, wafers, bottleneck)


def _wafer_costs(splitter: BandSplitter, fill: float):
    limit = splitter.wafer_pes * fill

    def cost(start: int, stop: int) -> float | None:
        if splitter.memory(start, stop) > limit:
            return None
        return splitter.stage(start, stop)
    return lru_cache(maxsize=None)(cost)


def _minimax(cost, n: int, wafers: int) -> float | None:
    """The smallest possible largest wafer stage time."""
    inf = math.inf
    best = [[inf] * (n + 1) for _ in range(wafers + 1)]  # best[k][j]: bands [0, j) on k wafers
    best[0][0] = 0.0
    for k in range(1, wafers + 1):
        for j in range(k, n + 1):
            for i in range(j - 1, k - 2, -1):
                if best[k - 1][i] == inf:
                    continue
                stage = cost(i, j)
                if stage is None:
                    break  # a longer run only needs more memory
                best[k][j] = min(best[k][j], max(best[k - 1][i], stage))
    return None if best[wafers][n] == inf else best[wafers][n]


def _min_links(splitter: BandSplitter, cost, n: int, wafers: int,
               bottleneck: float) -> list[int]:
    """Among splits whose wafers all meet `bottleneck`, the one with the fewest link cycles, then
    the most balanced; as the first band index of each wafer."""
    inf = (math.inf, math.inf)
    best = [[inf] * (n + 1) for _ in range(wafers + 1)]
    came = [[0] * (n + 1) for _ in range(wafers + 1)]
    best[0][0] = (0.0, 0.0)
    for k in range(1, wafers + 1):
        for j in range(k, n + 1):
            link = splitter.link_cycles[j] if j < n else 0
            for i in range(j - 1, k - 2, -1):
                stage = cost(i, j)
                if stage is None:
                    break
                if best[k - 1][i] == inf or stage > bottleneck * (1 + 1e-12):
                    continue
                value = (best[k - 1][i][0] + link, best[k - 1][i][1] + stage * stage)
                if value < best[k][j]:
                    best[k][j], came[k][j] = value, i
    starts, j = [], n
    for k in range(wafers, 0, -1):
        j = came[k][j]
        starts.append(j)
    return starts[::-1]
