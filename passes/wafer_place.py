"""WaferPlacementPass: every kernel of a full-size model gets a rectangle on one of the wafers.

requires: kernels in pipeline (execution) order, each with `layer` set for decoder-layer kernels
          (None for the embedding before the first layer and the norm and head after the last),
          and one `KernelCostModel` per kernel in the same order; the logical fabric of a wafer.
ensures:  a `Placement` with one `Region` per kernel in the same order; regions lie inside their
          wafer, do not overlap on a wafer, and each shape fits SRAM (its cost is not None);
          wafers hold contiguous runs of kernels in order (a wafer may end inside a layer);
          identical layers in equal boxes get the same layout up to a vertical flip; the same
          inputs and seed give the same placement. Too few wafers raise `PlacementError` with
          the memory needed and held per wafer; a count that memory allows but that does not
          pack says which count does.

How (each step is its own module):
1. split (`wafer_split`): the fewest wafers memory allows (or the count given), cut between
   kernels (inside layers too) by dynamic programming to balance the wafers' water-filled stage
   times; then kernels are moved between wafers while that makes the slowest wafer faster in the
   real cost model;
2. construct (`serpentine`): per wafer, the layers as bands in a serpentine over 1 to 4 strips
   (more for "latency"), single, in pairs or in couples of pairs, sized by bisecting the stage
   time; "throughput" lets a pair's stack wrap round where that alone fits (faster, for a
   longer chain) and, on the slowest wafer, packs couples in columns where that alone fits
   (faster again, for a longer chain still), and keeps, per wafer, the shortest-chain layout
   that is as fast as the slowest wafer's best, "latency" the shortest within `latency_slack`
   of it;
3. refine (`refine`): each distinct single band (identical layers in equal boxes; pairs and
   couples are kept as built) is re-solved once with CP-SAT -- fastest slowest kernel
   ("throughput" only), then, capped at the whole placement's bottleneck, the shortest chain --
   and the answer is stamped onto all its copies; each distinct couple packed in columns is
   re-packed with a deeper column search, at the placement's bottleneck, for a lower
   compute-only time (`repack_couples`).

Quality figures on the returned Placement (the definitions the report uses):
- `ideal_stage_cycles`: the compute-only water-filling bound on all the wafers' PEs (see
  `wafer_split`): every kernel gets max(memory minimum, a FLOP-proportional share of the PEs) and
  takes flops / (min(area, max useful PEs) * SIMD lanes of its dtype) cycles. The memory minimum
  holds everything resident whatever the shape: weights and KV cache (`KernelCostModel.min_pes`).
- `bottleneck_stage_cycles`: the placement's slowest kernel in that same compute-only model, so
  `bottleneck_ratio_to_ideal` = achieved / ideal >= 1 measures area allocation and packing.
- `bottleneck_cycles`: the slowest kernel in the real cost model (`KernelCostModel.cost`), which
  also counts data movement. The placer minimises this first and the compute-only time second,
  so where data movement dominates (a kernel whose fastest shape is far slower than its FLOPs
  say, like a vocabulary-sized head) the compute-only ratio is well above 1 by design.
- `ideal_real_stage_cycles`: the same water filling in the real cost model (`real_water_fill`):
  every kernel at the least area meeting a common stage time at its best shape, as if any
  shapes packed perfectly. `bottleneck_ratio_to_ideal_real` = bottleneck_cycles over it >= 1
  measures the packing alone. The compute-only ratio mixes in the cost model: with the real
  time first, a kernel whose programs spend less on data movement gets less area per FLOP, so
  even a perfect packing sits above 1 in that measure (1.021 on Llama-3.1-8B on a wse3, at the
  real ideal's own areas; the PEs a placement leaves above those areas can bring it lower).
- `hop_distance`: the Manhattan distance, in PEs, between the centres of consecutive kernels on
  the same wafer, summed.
- `phase_seconds`: wall-clock time per phase (not deterministic; keep it out of artifacts).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import ClassVar

from ir.errors import PlacementError
from ir.kernels import Kernel, Placement
from ir.wkl import Region
from passes.cost import KernelCostModel
from passes.place import SearchBudget
from passes.refine import refine_layouts, repack_couples
from passes.serpentine import (Band, SerpentineLayout, ShapeSearch, Stage, bands_of,
                               chain_length2, compute_demand, coupled, most_band_kernels,
                               paired, serpentine_layout)
from passes.wafer_split import (BandSplitter, merged, real_water_fill, resident_what,
                                split_bands, too_few_wafers, wafer_units, water_fill,
                                wafers_lower_bound)

LAYOUTS = ("throughput", "latency")
STRIP_CHOICES = {"throughput": (1, 2, 3, 4), "latency": (1, 2, 3, 4, 6, 8)}
# When a split's wafers do not lay out, split again leaving this much of each wafer's PEs spare.
FILLS = (1.0, 0.98, 0.96, 0.93, 0.9)
# How many wafers past the first count tried to look at before giving up.
EXTRA_WAFERS = 4
# At most this many band moves when rebalancing a split in the real cost model.
MAX_MOVES = 8


@dataclass(frozen=True)
class WaferPlacementPass:
    name: ClassVar[str] = "wafer-place"
    fabric: tuple[int, int]           # logical PEs per wafer (width, height)
    wafers: int | None = None         # None: the fewest wafers that fit
    layout: str = "throughput"        # or "latency": shorter chains for a little throughput
    seed: int = 0
    work_limit: float = 0.5           # CP-SAT deterministic seconds for all refinements together
    time_limit_s: float = 60.0        # wall-clock safety net only; see place.SearchBudget
    latency_slack: float = 0.05       # "latency": bottleneck allowed this much above the best

    def run(self, kernels: list[Kernel], models: list[KernelCostModel]) -> Placement:
        self._check(kernels, models)
        clock = _Clock()
        search = ShapeSearch(models, self.fabric[1])
        bands = bands_of([k.layer for k in kernels], search.kind, most_band_kernels(self.fabric[1]))
        planner = _WaferPlanner(self, search, bands, models)
        try:
            layouts = planner.plan()
        except PlacementError as error:
            raise planner.oversized(kernels) or error from None
        clock.lap("construct")
        budget = SearchBudget(self.seed, self.work_limit, self.time_limit_s)
        layouts = refine_layouts(search, layouts, budget, faster=self.layout == "throughput")
        layouts = repack_couples(search, layouts)
        clock.lap("refine")
        return self._placement(kernels, models, search, layouts, clock)

    def _check(self, kernels: list[Kernel], models: list[KernelCostModel]) -> None:
        if len(kernels) != len(models):
            raise ValueError("models must hold one KernelCostModel per kernel, in order")
        if not kernels:
            raise ValueError("nothing to place")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}")
        if self.wafers is not None and self.wafers < 1:
            raise ValueError("wafers must be at least 1")

    def _placement(self, kernels: list[Kernel], models: list[KernelCostModel],
                   search: ShapeSearch, layouts: list[SerpentineLayout],
                   clock: "_Clock") -> Placement:
        placed = [(wafer, r) for wafer, layout in enumerate(layouts) for r in layout.rects()]
        regions = [Region(k.name, wafer, r.x, r.y, r.w, r.h)
                   for k, (wafer, r) in zip(kernels, placed)]
        wafer_pes = self.fabric[0] * self.fabric[1]
        demands = [compute_demand(m) for m in models]
        ideal = water_fill([(d, 1) for d in demands], wafer_pes * len(layouts))
        achieved = max(d.stage(r.area) for d, (_, r) in zip(demands, placed))
        real = [search.cycles(i, r.w, r.h) for i, (_, r) in enumerate(placed)]
        ideal_real = real_water_fill(search, self.fabric, len(layouts), max(real))
        clock.lap("report")
        return Placement(
            target=models[0].target.name, fabric=self.fabric, wafers=len(layouts),
            regions=regions, wafers_lower_bound=wafers_lower_bound(models, wafer_pes),
            ideal_stage_cycles=ideal, bottleneck_stage_cycles=achieved,
            bottleneck_ratio_to_ideal=achieved / ideal if ideal else 1.0,
            bottleneck_cycles=max(real), bottleneck_kernel=kernels[real.index(max(real))].name,
            ideal_real_stage_cycles=ideal_real, bottleneck_ratio_to_ideal_real=max(real) / ideal_real,
            hop_distance=hop_distance(regions), phase_seconds=clock.laps)


def hop_distance(regions: list[Region]) -> int:
    """Manhattan distance between the centres of consecutive kernels on the same wafer, summed
    (rounded down to whole PEs)."""
    per_wafer: dict[int, list[Region]] = {}
    for r in regions:
        per_wafer.setdefault(r.wafer, []).append(r)
    return sum(chain_length2(rs) for rs in per_wafer.values()) // 2


# ---------------------------------------------------------------- wafers: count and split


class _WaferPlanner:
    """Finds the wafer count and split whose wafers all lay out, and their layouts."""

    def __init__(self, options: WaferPlacementPass, search: ShapeSearch, bands: list[Band],
                 models: list[KernelCostModel]):
        self.options = options
        self.search = search
        self.bands = bands
        self.models = models
        width, height = options.fabric
        self.lower = wafers_lower_bound(models, width * height)
        cuts = _cut_cycles(models)
        self.units = wafer_units(bands)
        self.splitter = BandSplitter(self.units, models, width * height,
                                     [cuts[u.kernels[0]] for u in self.units] + [0])
        self.constructor = _WaferConstructor(search, options.fabric, options.layout,
                                             options.latency_slack)

    def plan(self) -> list[SerpentineLayout]:
        """The fewest wafers from the memory bound up, or the count given."""
        wanted = self.options.wafers
        if wanted is not None and wanted < self.lower:
            raise too_few_wafers(self.models, self.options.fabric, wanted)
        if wanted is None:
            found = self._fewest(self.lower)
            if found is None:
                raise self._unplaceable(self.lower + EXTRA_WAFERS)
            return found[1]
        layouts = self._lay_out(wanted)
        if layouts is None:
            more = self._fewest(wanted + 1)
            raise self._unplaceable(wanted, more[0] if more else None)
        return layouts

    def _fewest(self, start: int) -> tuple[int, list[SerpentineLayout]] | None:
        for count in range(start, start + EXTRA_WAFERS + 1):
            layouts = self._lay_out(count)
            if layouts is not None:
                return count, layouts
        return None

    def _lay_out(self, count: int) -> list[SerpentineLayout] | None:
        """Layouts for a split over `count` wafers; a split whose wafers do not lay out is
        retried with a little of each wafer left spare."""
        for fill in FILLS:
            starts = split_bands(self.splitter, count, fill)
            if starts is None:
                return None  # a smaller fill admits fewer splits
            layouts = self.constructor.wafers(self.units, starts, self.splitter)
            if layouts is not None:
                return layouts
        return None

    def _unplaceable(self, count: int, works: int | None = None) -> PlacementError:
        width, height = self.options.fabric
        return PlacementError(
            f"no layout on {count} {width}x{height} wafer{'s' if count != 1 else ''} was found: "
            f"the weights fit by PE count, but the {len(self.bands)} bands (layers and the "
            f"kernels around them) do not pack into that many wafers with each kernel at a "
            f"shape whose tiles and buffers fit SRAM",
            hint=(f"the placer fits it on {works} wafers" if works
                  else "use more wafers, or a fabric large enough for the largest layer"))

    def oversized(self, kernels: list[Kernel]) -> PlacementError | None:
        """The error for the first kernel that fits no wafer on its own, if there is one."""
        width, height = self.options.fabric
        seen = set()
        for i, kernel in enumerate(kernels):
            kind = self.search.kind[i]
            if kind in seen:
                continue
            seen.add(kind)
            if serpentine_layout(self.search, [Band((i,), (kind,), None)], (width, height), 1):
                continue
            return PlacementError(
                f"kernel '{kernel.name}' fits no {width}x{height} wafer: its "
                f"{resident_what(self.models[i:i + 1])} alone need "
                f"{self.models[i].min_pes:,} PEs and no region shape inside the fabric holds its "
                f"tiles and buffers", kernel.loc,
                hint="one kernel must fit on one wafer: use a larger fabric")
        return None


def _cut_cycles(models: list[KernelCostModel]) -> list[int]:
    """For each cut before kernel i (i = 0..n), the link cycles of every tensor made before it and
    used at or after it (one transfer per tensor, as the router sends them)."""
    target = models[0].target
    made_in, last_use = {}, {}
    for i, model in enumerate(models):
        for v in model.kernel.outputs:
            made_in[v] = i
        for v in model.kernel.inputs:
            last_use[v] = max(last_use.get(v, -1), i)
    cycles = [0] * (len(models) + 1)
    for v, made in made_in.items():
        for cut in range(made + 1, last_use.get(v, made) + 1):
            cycles[cut] += target.wafer_link_cycles(v.type.nbytes)
    return cycles


# ---------------------------------------------------------------- wafers: layouts


class _WaferConstructor:
    """Candidate constructive layouts of each wafer's bands, one per strip count, memoised on
    the bands' keys (wafers holding the same run of identical layers are laid out once); the
    split's rebalancing; and the choice among the candidates, made for all wafers together."""

    def __init__(self, search: ShapeSearch, fabric: tuple[int, int], layout: str, slack: float):
        self.search = search
        self.fabric = fabric
        self.most = most_band_kernels(fabric[1])
        self.strips = STRIP_CHOICES[layout]
        self.latency = layout == "latency"
        self.wrap = not self.latency  # wrapped pair stacks: a little faster, longer chains
        self.slack = slack
        self._memo: dict = {}

    def wafers(self, units: list[Band], starts: list[int],
               splitter: BandSplitter) -> list[SerpentineLayout] | None:
        """One layout per wafer of the split (`starts`: the first of the `wafer_units` on each
        wafer), after rebalancing it; None if some wafer's bands do not lay out."""
        options = self._options(units, starts, splitter)
        if options is None:
            return None
        starts, options = self._rebalance(units, starts, splitter, options)
        if not self.latency:
            options = self._packed(units, starts, splitter, options)
        limit = self._limit(options)
        return [_rebind(self._choose(found, limit), merged(units[a:b], self.most))
                for found, (a, b) in zip(options, _runs(starts, len(units)))]

    def _options(self, units: list[Band], starts: list[int],
                 splitter: BandSplitter) -> list[list[SerpentineLayout]] | None:
        options = [self._candidates(merged(units[a:b], self.most), _floor(splitter, a, b))
                   for a, b in _runs(starts, len(units))]
        return options if all(options) else None

    def _candidates(self, bands: list[Band], floor: float) -> list[SerpentineLayout]:
        """A layout per strip count, with the layers single and, where there are identical
        neighbours, in pairs, and where there are identical pairs, in couples."""
        key = tuple(b.key for b in bands)
        if key not in self._memo:
            pairs = paired(bands)
            couples = coupled(pairs)
            groupings = [bands] + [together for together, fewer in ((pairs, bands), (couples, pairs))
                                   if len(together) < len(fewer)]
            self._memo[key] = [layout for grouped in groupings for strips in self.strips
                               if (layout := serpentine_layout(self.search, grouped, self.fabric,
                                                               strips, floor, self.wrap))]
        return self._memo[key]

    def _packed(self, units: list[Band], starts: list[int], splitter: BandSplitter,
                options: list[list[SerpentineLayout]]) -> list[list[SerpentineLayout]]:
        """The options with, for the slowest wafer, its couples packed in columns where the
        stepped pairs do not fit (`serpentine_layout`'s `columns`), at the strip count of its
        fastest option; repeated for the wafer that is then slowest, while that one gets
        faster. Only the slowest wafer sets the throughput, and each such layout costs a
        column search per width and stage tried, so no other wafer or strip count is tried."""
        options = list(options)
        runs = _runs(starts, len(units))
        tried = set()
        while (slowest := _slowest_wafer(options)) not in tried:
            tried.add(slowest)
            a, b = runs[slowest]
            bands = merged(units[a:b], self.most)
            key = ("columns",) + tuple(band.key for band in bands)
            if key not in self._memo:
                couples = coupled(paired(bands))
                strips = min(options[slowest], key=_speed).strips
                found = (serpentine_layout(self.search, couples, self.fabric, strips,
                                           _floor(splitter, a, b), self.wrap, columns=True)
                         if any(band.couple for band in couples) else None)
                self._memo[key] = [found] if found else []
            best = min(_speed(layout) for layout in options[slowest])
            if not any(_speed(layout) < best for layout in self._memo[key]):
                break
            options[slowest] = options[slowest] + self._memo[key]
        return options

    def _rebalance(self, units: list[Band], starts: list[int], splitter: BandSplitter,
                   options: list[list[SerpentineLayout]]):
        """Moves a unit (a band, or part of a layer) from the slowest wafer towards another (each
        wafer between passes one on) while that makes the wafers faster in the real cost model,
        slowest first. The split balanced the compute-only model, which ignores data movement:
        a wafer holding the head can be slower than its FLOPs say."""
        for _ in range(MAX_MOVES):
            best = (_speeds(options), starts, options)
            for moved in _moves(starts, _slowest_wafer(options), len(units)):
                trial = self._options(units, moved, splitter)
                if trial is not None and _speeds(trial) < best[0]:
                    best = (_speeds(trial), moved, trial)
            if best[1] is starts:
                break
            _, starts, options = best
        return starts, options

    def _limit(self, options: list[list[SerpentineLayout]]) -> Stage:
        """The stage every wafer may use: the slowest wafer's best (real, then compute-only),
        widened by the slack in "latency" mode."""
        best = [min(found, key=_speed).stage for found in options]
        real = max(s.real for s in best)
        if self.latency:
            return Stage(real * (1 + self.slack))
        return Stage(real, max(s.compute for s in best))

    def _choose(self, found: list[SerpentineLayout], limit: Stage) -> SerpentineLayout:
        """The shortest chain within the limit (the wafer's fastest if none is)."""
        allowed = [layout for layout in found if limit.looser_than(layout.stage)]
        return min(allowed or [min(found, key=_speed)],
                   key=lambda layout: (chain_length2(layout.rects()), _speed(layout)))


def _floor(splitter: BandSplitter, a: int, b: int) -> float:
    """A lower bound on the compute-only stage of units a..b on one wafer (0: none known)."""
    return splitter.stage(a, b) or 0.0


def _speed(layout: SerpentineLayout) -> tuple[float, float]:
    return layout.stage.real, layout.stage.compute


def _speeds(options: list[list[SerpentineLayout]]) -> list[tuple[float, float]]:
    """Each wafer's speed at its fastest option, slowest first (compared lexicographically: a
    split is better if its slowest wafer is faster, or as fast but with fewer that slow, ...)."""
    return sorted((min(_speed(layout) for layout in found) for found in options), reverse=True)


def _slowest_wafer(options: list[list[SerpentineLayout]]) -> int:
    speeds = [min(_speed(layout) for layout in found) for found in options]
    return speeds.index(max(speeds))


def _runs(starts: list[int], count: int) -> list[tuple[int, int]]:
    return list(zip(starts, starts[1:] + [count]))


def _moves(starts: list[int], source: int, count: int) -> list[list[int]]:
    """Splits with one band moved from wafer `source` towards each other wafer: every wafer in
    between hands one band on, and each keeps at least one."""
    out = []
    for target in range(len(starts)):
        step = 1 if target < source else -1
        moved = list(starts)
        for w in range(min(source, target) + 1, max(source, target) + 1):
            moved[w] += step
        stops = moved[1:] + [count]
        if target != source and all(a < b for a, b in zip(moved, stops)):
            out.append(moved)
    return out


def _rebind(layout: SerpentineLayout, bands: list[Band]) -> SerpentineLayout:
    """A memoised wafer layout given to another run of the same band keys (other kernels),
    paired as the layout's bands are."""
    if any(p.band.pair for p in layout.bands):
        bands = paired(bands)
    if any(p.band.couple for p in layout.bands):
        bands = coupled(bands)
    placed = tuple(replace(p, band=band) for p, band in zip(layout.bands, bands))
    return replace(layout, bands=placed)


@dataclass
class _Clock:
    laps: dict = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round(now - self._last, 3)
        self._last = now
