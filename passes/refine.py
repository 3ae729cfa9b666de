"""CP-SAT refinement of one band: the kernels of a layer rearranged inside the layer's box.

requires: a band (<= ~16 kernels) with its constructive layout (kernels stacked in a w x h box),
          a `ShapeSearch` for the kernels' cost curves, and a `Stage` (real and compute-only
          times) the constructive layout meets.
ensures:  `BandRefiner.fastest` returns a layout of the band in the same box whose slowest kernel
          is no slower than the constructive one's; `BandRefiner.shortest` returns one whose
          slowest kernel is within a given cap and whose chain (top edge, the kernels in order,
          bottom edge) is no longer than the hint's. Rectangles stay inside the box, disjoint,
          and every shape fits SRAM (each candidate shape's cost was checked).

Each kernel chooses among candidate shapes -- a few widths (the box's, and fractions of it, so two
or three kernels can sit side by side) times the heights that meet a ladder of real stage times
below the constructive one (all within its compute-only time, so that figure never gets worse) --
and a position; one NoOverlap2D keeps them apart. The two objectives are
two solves, never a weighted sum: first the slowest kernel, then, with the stage time capped (by
the caller, at the whole wafer's bottleneck), the chain length. Every solve starts from a hint (the
constructive layout, or the first solve's answer) and is bounded by deterministic work with one
worker and a fixed seed, so the same input gives the same layout on any machine.

Couples packed in columns (four layers, `BandSizer.packed`) are not CP-SAT models: they are too
big for one. `repack_couples` re-packs each distinct one with a deeper column search instead,
holding the placement's real bottleneck and lowering the couple's compute-only time.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ortools.sat.python import cp_model

from passes.packing import ShapePacking
from passes.place import SearchBudget
from passes.serpentine import (Band, BandLayout, BandSizer, Rect, SerpentineLayout, ShapeSearch,
                               Stage, band_stage)

# Candidate widths, as fractions of the box width (the complements are added too): a kernel can
# span the band, or share its rows with one or two others.
WIDTH_FRACTIONS = (1.0, 2 / 3, 1 / 2, 1 / 3)
# A faster layout replaces the constructive one only if it gains at least this much: the stack is
# sized to within about this, and a 2-D arrangement usually lengthens the chain.
MIN_GAIN = 0.01
# Candidate stage times, as fractions of the constructive stage time.
STAGE_LADDER = (1.0, 0.98, 0.96, 0.94, 0.91, 0.87)
# Couples packed in columns are re-packed with REPACK_RESTARTS searches of REPACK_BUDGET nodes
# for columns of unequal widths (`columns.RESTART_NOISE`): the constructive search has one of
# `columns.OPEN_BUDGET` for each of the many stages and widths it tries, this one width and a
# few stages per distinct couple. The searches' cost has a long tail, so many short ones beat a
# few long ones: on Llama-3.1-8B (wse3), 20 of 500 nodes reach a compute-only ratio of 1.016 in
# 0.06 s, 10 of 2,000 reach 1.017 in 0.8 s.
REPACK_BUDGET = 500
REPACK_RESTARTS = 20
# The compute-only time is bisected to this many cycles.
REPACK_TOLERANCE = 1.0


@dataclass(frozen=True)
class Candidate:
    w: int
    h: int
    cycles: int


def candidate_widths(box_w: int) -> list[int]:
    widths = {max(1, round(box_w * f)) for f in WIDTH_FRACTIONS}
    widths |= {box_w - w for w in widths if 0 < w < box_w}
    return sorted(widths, reverse=True)


def kernel_candidates(search: ShapeSearch, i: int, box: BandLayout, stage: Stage,
                      current: Rect) -> list[Candidate]:
    """Shapes for kernel i inside the box that meet the stage (both times), none beaten by
    another on width, height and cycles together; the kernel's current shape is always one."""
    found = {(current.w, current.h)}
    for w in candidate_widths(box.w):
        for level in STAGE_LADDER:
            h = search.min_height(i, w, Stage(stage.real * level, stage.compute), box.h)
            if h is not None:
                found.add((w, h))
    shapes = [Candidate(w, h, search.cycles(i, w, h)) for w, h in found]
    return [c for c in shapes if (c.w, c.h) == (current.w, current.h) or not _beaten(c, shapes)]


def _beaten(c: Candidate, shapes: list[Candidate]) -> bool:
    return any(o != c and o.w <= c.w and o.h <= c.h and o.cycles <= c.cycles for o in shapes)


def anchored_chain2(layout: BandLayout) -> int:
    """The band's chain, doubled: from the middle of its box's top edge through the kernels'
    centres to the middle of its bottom edge. At least twice the box height."""
    points = ([(layout.w, 0)] + [(2 * r.x + r.w, 2 * r.y + r.h) for r in layout.rects]
              + [(layout.w, 2 * layout.h)])
    return sum(abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in zip(points, points[1:]))


class BandRefiner:
    """One band's refinement: candidate shapes (made when first needed), then a CP-SAT model
    per objective."""

    def __init__(self, search: ShapeSearch, band: Band, start: BandLayout, stage: Stage):
        self.search = search
        self.band = band
        self.start = start
        self.limit = stage
        self.stage = band_stage(search, band, start).real

    @cached_property
    def candidates(self) -> list[list[Candidate]]:
        return [kernel_candidates(self.search, i, self.start, self.limit, r)
                for i, r in zip(self.band.kernels, self.start.rects)]

    @property
    def stage_floor(self) -> int:
        """No layout of the band in its box beats this: its slowest kernel's fastest candidate."""
        return max(min(c.cycles for c in cands) for cands in self.candidates)

    def fastest(self, budget: SearchBudget) -> tuple[BandLayout, int]:
        """The layout with the slowest kernel as fast as found, and that kernel's cycles; the
        constructive one unless the solver gains at least MIN_GAIN."""
        if self.stage <= self.stage_floor:
            return self.start, self.stage
        model = _BandModel(self.candidates, self.start.w, self.start.h)
        model.hint(self._shapes(self.start))
        found = model.solve_band(model.stage, budget)
        if found is None or _stage(found) > self.stage * (1 - MIN_GAIN):
            return self.start, self.stage
        return self._layout(found), _stage(found)

    def settled(self, fast: BandLayout, cap: int) -> BandLayout | None:
        """A layout within `cap` that runs straight down the box (no chain is shorter), if one
        of `fast` and the constructive layout does; then there is nothing to solve."""
        for layout in (fast, self.start):
            straight = anchored_chain2(layout) <= 2 * layout.h
            if straight and band_stage(self.search, self.band, layout).real <= cap:
                return layout
        return None

    def shortest(self, fast: BandLayout, cap: int, budget: SearchBudget) -> BandLayout:
        """The shortest chain found with every kernel within `cap` cycles, starting from the
        shorter of `fast` (which must meet the cap) and the constructive layout, if that does."""
        starts = [layout for layout in (fast, self.start)
                  if band_stage(self.search, self.band, layout).real <= cap]
        start = min(starts, key=anchored_chain2)
        within = [[c for c in cands if c.cycles <= cap] for cands in self.candidates]
        model = _BandModel(within, self.start.w, self.start.h)
        model.hint(self._shapes(start))
        found = model.solve_band(model.distance, budget)
        if found is None or anchored_chain2(self._layout(found)) >= anchored_chain2(start):
            return start
        return self._layout(found)

    def _shapes(self, layout: BandLayout) -> list[tuple[Candidate, int, int]]:
        """The layout as (candidate, x, y) per kernel."""
        out = []
        for cands, r in zip(self.candidates, layout.rects):
            cand = next(c for c in cands if (c.w, c.h) == (r.w, r.h))
            out.append((cand, r.x, r.y))
        return out

    def _layout(self, shapes: list[tuple[Candidate, int, int]]) -> BandLayout:
        return BandLayout(self.start.w, self.start.h,
                          tuple(Rect(x, y, c.w, c.h) for c, x, y in shapes))


def _stage(shapes: list[tuple[Candidate, int, int]]) -> int:
    return max(c.cycles for c, _, _ in shapes)


class _BandModel(ShapePacking):
    """The band's box as one packing (passes/packing.py); the chain runs from the middle of the
    box's top edge through the kernels' centres to the middle of its bottom edge."""

    def __init__(self, candidates: list[list[Candidate]], box_w: int, box_h: int):
        super().__init__(candidates, (box_w, box_h))
        self.distance = self._distance()

    def _distance(self) -> cp_model.IntVar:
        """Doubled Manhattan distances along the chain, anchors included."""
        box_w, box_h = self.box
        n = len(self.candidates)
        points = [(box_w, 0)] + [self.centre(i) for i in range(n)] + [(box_w, 2 * box_h)]
        span = 2 * (box_w + box_h)
        total = self.model.new_int_var(0, span * (n + 1), "distance")
        self.model.add(total == sum(self._gap(a, b, span, k)
                                    for k, (a, b) in enumerate(zip(points, points[1:]))))
        return total

    def _gap(self, a, b, span: int, k: int) -> cp_model.LinearExpr:
        gaps = []
        for axis in (0, 1):
            gap = self.model.new_int_var(0, span, f"g{k}_{axis}")
            self.model.add_abs_equality(gap, a[axis] - b[axis])
            gaps.append(gap)
        return gaps[0] + gaps[1]

    def solve_band(self, objective: cp_model.IntVar,
                   budget: SearchBudget) -> list[tuple[Candidate, int, int]] | None:
        return self.solve(objective, budget.seed, budget.work, budget.time_limit_s)[0]


# ---------------------------------------------------------------- every band of a placement


def refine_layouts(search: ShapeSearch, layouts: list[SerpentineLayout], budget: SearchBudget,
                   faster: bool = True) -> list[SerpentineLayout]:
    """Each distinct band of the wafers' layouts (equal box keys: identical layers in equal
    boxes) refined once and stamped onto every copy. With `faster`, the bands that could lower
    the bottleneck are first solved for speed (half the budget); then the bands that do not run
    straight down their box are solved for the shortest chain, every kernel capped at the whole
    placement's bottleneck."""
    firsts: dict = {}
    for layout in layouts:
        for placed in layout.bands:
            firsts.setdefault(placed.box_key, placed)
    stage = Stage(max(layout.stage.real for layout in layouts),
                  max(layout.stage.compute for layout in layouts))
    # A band of several layers (a pair or a couple) is kept as built: its chain does not run
    # straight down its box, and its stacks and slabs leave nothing to rearrange.
    kept = [band_stage(search, p.band, p.layout).real
            for p in firsts.values() if p.band.pair]
    refiners = {key: BandRefiner(search, placed.band, placed.layout, stage)
                for key, placed in firsts.items() if not placed.band.pair}
    fastest = {key: (r.start, r.stage) for key, r in refiners.items()}
    if faster:
        fastest.update(_faster(refiners, budget.share(0.5), max(kept, default=0)))
    bottleneck = max([stage for _, stage in fastest.values()] + kept)
    done = {key: r.settled(fastest[key][0], bottleneck) for key, r in refiners.items()}
    left = {key: r for key, r in refiners.items() if done[key] is None}
    shares = _shares(left, budget.share(0.5 if faster else 1.0))
    done.update({key: r.shortest(fastest[key][0], bottleneck, shares[key])
                 for key, r in left.items()})
    return [layout.with_layouts(done) for layout in layouts]


def _faster(refiners: dict, budget: SearchBudget, floor: float = 0) -> dict:
    """Solves for speed only the bands that could gain MIN_GAIN without going below what some
    band cannot beat anyway (its slowest kernel's fastest candidate, or `floor`, set by bands
    that are not refined). Bands are looked at slowest first, and a band faster than that floor
    cannot raise it, so the rest are skipped without making their candidates."""
    for r in sorted(refiners.values(), key=lambda r: -r.stage):
        if r.stage < floor:
            break
        floor = max(floor, r.stage_floor)
    slow = {key: r for key, r in refiners.items() if r.stage * (1 - MIN_GAIN) >= floor}
    shares = _shares(slow, budget)
    return {key: r.fastest(shares[key]) for key, r in slow.items()}


def _shares(refiners: dict, budget: SearchBudget) -> dict:
    """The budget split between the refiners in proportion to their kernels."""
    total = sum(len(r.band.kernels) for r in refiners.values()) or 1
    return {key: budget.share(len(r.band.kernels) / total) for key, r in refiners.items()}


# ---------------------------------------------------------------- couples packed in columns


def repack_couples(search: ShapeSearch, layouts: list[SerpentineLayout]) -> list[SerpentineLayout]:
    """Each distinct couple packed in columns (`BandSizer.packed`) re-packed in its box, with the
    real stage held at the whole placement's bottleneck, for the least compute-only time a
    deeper column search finds, and stamped onto every copy. The constructive bisection stops
    where its short searches first fail, which at a stage this tight is often above a packing
    that exists. The bisection runs down to the compute-only time the rest of the placement keeps
    (lower gains nothing), and a couple is replaced only by a layout with a lower time."""
    placed = [p for layout in layouts for p in layout.bands]
    couples = {p.box_key: p for p in placed if p.layout.columns}
    if not couples:
        return layouts
    stages = [band_stage(search, p.band, p.layout) for p in placed]
    real = max(s.real for s in stages)
    floor = max((s.compute for p, s in zip(placed, stages) if not p.layout.columns), default=0.0)
    done = {}
    for key, p in couples.items():
        sizer = BandSizer(search, p.layout.w, p.layout.h, columns=True)
        best, hi, lo = p.layout, band_stage(search, p.band, p.layout).compute, floor
        while hi - lo > REPACK_TOLERANCE:
            mid = (lo + hi) / 2
            found = sizer.packed(p.band, p.layout.w, Stage(real, mid), REPACK_BUDGET,
                                 REPACK_RESTARTS)
            if found is None:
                lo = mid
            else:
                best, hi = found, band_stage(search, p.band, found).compute
        done[key] = best
    return [layout.with_layouts(done) for layout in layouts]
