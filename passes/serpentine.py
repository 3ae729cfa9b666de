"""Constructive wafer layout: layers as bands, kernels stacked inside them, in a serpentine.

requires: kernels in pipeline order with their `KernelCostModel`s (same order) and one wafer's
          logical fabric (width, height).
ensures:  `serpentine_layout` returns a `SerpentineLayout` whose kernel rectangles lie inside the
          fabric, are pairwise disjoint and each fit SRAM (their cost is not None), or None when
          the kernels do not fit at any stage time.

The kernels are grouped into *bands*: the kernels before the first layer, one band per decoder
layer, the kernels after the last. The wafer is cut into `strips` horizontal strips of equal
height (one strip: full-height columns) and the layer bands fill them in order, left to right
along the first strip, right to left along the next, and so on (see `Frame`). The bands before
the first layer and after the last stand as columns at the two ends, spanning as many strips as
makes them cheapest, so that a big single kernel like the head is not squeezed into one short
strip. Inside a band every kernel spans the band's width and the kernels stack top to bottom,
the next band bottom to top, so consecutive kernels touch or nearly so. Identical neighbouring
layers may instead go as pairs (`paired`, `pair_layout`): two half-width stacks in a U turn,
each layer's last kernel a slab across both, for kernels that need much less area wide; at an
odd width some stack kernels take the wider half, and the stack may start inside the layer and
wrap round so that they can fill half its rows. Two identical pairs may go as a couple
(`coupled`): side by side with a boundary that steps by a column at half height, so that at an
odd width each averages half of it; where that does not fit, a couple's kernels may instead be
packed in columns, each layer's last kernel a slab across the couple (`BandSizer.packed`).

Sizes come from a target `Stage`: at a stage each kernel needs the smallest height (at its band's
width) that meets it, each band the smallest width whose kernels fit the strip's height, and the
stage is bisected to the smallest one whose bands fit the wafer -- first the real cycles
(`KernelCostModel.cost`), then, with those held, the compute-only cycles (FLOPs over useful PEs
and SIMD lanes; see `ComputeDemand`), which spreads whatever area the real bottleneck leaves free
in proportion to the work. Each strip's unused columns are then shared by its bands and every
band is re-sized to be as fast as its box allows. Identical layers (equal signatures) in equal
boxes get equal layouts, up to a vertical flip.

Cost curves come from `KernelCostModel.cost`, a black box that lowers the kernel, so the searches
keep the number of distinct shapes they ask about small, and `ShapeSearch` shares answers between
kernels with the same signature.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from passes.columns import OPEN_BUDGET, pack_columns
from passes.cost import KernelCostModel

# Stop bisecting a stage time when the bracket is this tight (relative): finer steps buy little
# and each costs another round of shape searches.
STAGE_TOLERANCE = 0.002
# A band longer than this is cut, to keep its refinement model small.
MAX_BAND_KERNELS = 16
# Spacing of the geometric grid of heights a kernel's cycles are first sampled on.
HEIGHT_GRID_RATIO = 1.25


# ---------------------------------------------------------------- stage times


@dataclass(frozen=True)
class Stage:
    """A stage-time target: real cycles (the cost model) and compute-only cycles."""

    real: float = math.inf
    compute: float = math.inf

    def looser_than(self, other: "Stage") -> bool:
        return self.real >= other.real and self.compute >= other.compute


@dataclass(frozen=True)
class ComputeDemand:
    """The compute-only model of one kernel: `work` cycles on one PE (FLOPs over the SIMD lanes
    of its dtype), spread over at most `max_useful` PEs (None: no limit)."""

    work: float
    min_pes: int
    max_useful: int | None

    def stage(self, area: int) -> float:
        useful = area if self.max_useful is None else min(area, self.max_useful)
        return self.work / useful

    def min_height(self, w: int, stage: float) -> int | None:
        """The fewest rows at width w that bring the compute-only time within `stage`."""
        if stage == math.inf or self.work == 0:
            return 1
        if self.max_useful is not None and self.work > stage * self.max_useful:
            return None
        return max(1, math.ceil(self.work / (stage * w) - 1e-9))


def compute_demand(model: KernelCostModel) -> ComputeDemand:
    outputs = model.kernel.outputs
    lanes = (model.target.simd_lanes(outputs[0].type.dtype) if outputs
             else model.target.simd_f16)
    return ComputeDemand(model.flops / lanes, model.min_pes, model.max_useful_pes)


# ---------------------------------------------------------------- shape search


class ShapeSearch:
    """Shape questions about kernels, answered through their cost models and memoised per
    kernel signature (the identical layers of a model ask each question once).

    Two facts are assumed about a kernel at a fixed width w: fitting SRAM is monotone in the
    height (more rows, smaller tiles), and cycles fall with the height until a best height and
    rise after it (compute and reductions shrink, fabric distances grow). The searches always
    check what they return, so the assumptions only affect how good an answer is, never whether
    it is valid.
    """

    def __init__(self, models: list[KernelCostModel], max_height: int):
        self.models = models
        self.max_height = max_height
        self.demands = [compute_demand(m) for m in models]
        # Signatures are deep tuples, slow to hash: key the memos on a small id per signature.
        ids: dict = {}
        self.kind = [ids.setdefault(m.signature, len(ids)) for m in models]
        self._cycles: dict = {}  # (kind, w, h) -> cycles, or None when the shape overflows SRAM
        self._fit: dict = {}     # (kind, w) -> smallest height that fits SRAM, or None

    def cycles(self, i: int, w: int, h: int) -> int | None:
        key = (self.kind[i], w, h)
        if key not in self._cycles:
            cost = self.models[i].cost(w, h)
            self._cycles[key] = None if cost is None else cost.cycles
        return self._cycles[key]

    def stage(self, i: int, w: int, h: int) -> Stage:
        return Stage(self.cycles(i, w, h), self.demands[i].stage(w * h))

    def fit_height(self, i: int, w: int) -> int | None:
        """The smallest height at width w whose shape fits SRAM (None: no height does)."""
        key = (self.kind[i], w)
        if key not in self._fit:
            self._fit[key] = self._search_fit(i, w)
        return self._fit[key]

    def _search_fit(self, i: int, w: int) -> int | None:
        # An area of min_pes is necessary, so start there.
        return gallop(lambda h: self.cycles(i, w, h) is not None,
                      max(1, math.ceil(self.models[i].min_pes / w)), self.max_height)

    def min_height(self, i: int, w: int, stage: Stage, cap: int) -> int | None:
        """The smallest height <= cap at width w that fits SRAM and meets both stage times.

        The compute-only time gives a least height directly. From there the search walks up a
        geometric grid of heights (the same for every stage asked, so mostly memoised) to the
        first point within the real stage time and bisects back to the point before. Cycles
        are a sawtooth around a smooth trend (block sizes are ceilings), so the walk gives up
        only when the trend turns up.
        """
        fit = self.fit_height(i, w)
        least = self.demands[i].min_height(w, stage.compute)
        if fit is None or least is None or max(fit, least) > cap:
            return None
        prev = before = max(fit, least)
        prev_cycles = self._time(i, w, prev)
        if prev_cycles <= stage.real:
            return prev
        for h in self._grid_above(fit, prev, cap):
            cycles = self._time(i, w, h)
            if cycles <= stage.real:
                return self._bisect(i, w, stage.real, prev, h)
            if cycles > prev_cycles:
                # Past the valley's bottom, which lies between `before` and h: find it.
                bottom = self._valley(i, w, before, h)
                if self._time(i, w, bottom) > stage.real:
                    return None
                return self._bisect(i, w, stage.real, before, bottom)
            before, prev, prev_cycles = prev, h, cycles
        return None

    def _time(self, i: int, w: int, h: int) -> float:
        """Cycles, with a shape that overflows SRAM infinitely slow (the searches then never
        return it, whatever the cost curve looks like)."""
        cycles = self.cycles(i, w, h)
        return math.inf if cycles is None else cycles

    def _valley(self, i: int, w: int, a: int, b: int) -> int:
        """The height in [a, b] with the fewest cycles, by golden-section search."""
        ratio = (math.sqrt(5) - 1) / 2
        while b - a > 3:
            c, d = b - round((b - a) * ratio), a + round((b - a) * ratio)
            if self._time(i, w, c) <= self._time(i, w, d):
                b = d
            else:
                a = c
        return min(range(a, b + 1), key=lambda h: (self._time(i, w, h), h))

    def _grid_above(self, fit: int, start: int, cap: int):
        """Points fit * ratio**k of the height grid above `start`, up to `cap` (cap included)."""
        k = 1
        while True:
            h = min(cap, round(fit * HEIGHT_GRID_RATIO ** k))
            if h > start:
                yield h
                start = h
            if h >= cap:
                return
            k += 1

    def _bisect(self, i: int, w: int, real: float, lo: int, hi: int) -> int:
        while hi - lo > 1:  # cycles(lo) > real >= cycles(hi)
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self._time(i, w, mid) <= real else (mid, hi)
        return hi


def gallop(ok, lo: int, limit: int) -> int | None:
    """The smallest n in [lo, limit] with ok(n), for ok monotone (false, then true): steps up
    from lo by doubling strides, then bisects the last stride. None if ok(limit) is false."""
    if lo > limit:
        return None
    if ok(lo):
        return lo
    step, hi = 1, lo
    while True:
        lo, hi = hi, min(limit, hi + step)
        if ok(hi):
            break
        if hi == limit:
            return None
        step *= 2
    while hi - lo > 1:  # ok(lo) is false, ok(hi) true
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


# ---------------------------------------------------------------- bands


@dataclass(frozen=True)
class Band:
    """A run of consecutive kernels laid out together: one decoder layer, or the kernels before
    the first layer or after the last. Bands with equal `key` are identical layers."""

    kernels: tuple[int, ...]  # indices into the kernel list, in pipeline order
    key: tuple                # the kernels' kinds (`ShapeSearch.kind`: equal signatures)
    layer: int | None
    pair: bool = False        # two identical layers laid out together (see `paired`)
    couple: bool = False      # two identical pairs laid out together (see `coupled`)


def bands_of(layers: list[int | None], kinds: list[int],
             most: int = MAX_BAND_KERNELS) -> list[Band]:
    """Groups consecutive kernels into bands by their `layer`: the kernels before the first layer,
    one band per layer, the kernels after the last. A kernel without a layer between two layers
    joins the band before it; without any layers, each kernel is a band. Bands longer than
    `most` kernels are cut (see `most_band_kernels`)."""
    labels = _band_labels(layers)
    groups: list[list[int]] = []
    for i, label in enumerate(labels):
        if not groups or label != labels[i - 1] or len(groups[-1]) == most:
            groups.append([])
        groups[-1].append(i)
    return [Band(tuple(g), tuple(kinds[i] for i in g),
                 next((layers[i] for i in g if layers[i] is not None), None)) for g in groups]


def most_band_kernels(height: int) -> int:
    """The most kernels a band holds on a fabric `height` rows tall: MAX_BAND_KERNELS, to keep
    each band's refinement model small, or the height if it is less (a band stacks its kernels
    a row each at least)."""
    return min(MAX_BAND_KERNELS, height)


def paired(bands: list[Band]) -> list[Band]:
    """The bands with consecutive identical layers joined two by two into pair bands (see
    `pair_layout`); a layer left without a partner stays single. Deterministic in the bands'
    keys, so equal runs of bands pair up alike."""
    return _joined(bands, _pairable, lambda a, b: Band(a.kernels + b.kernels, ("pair",) + a.key,
                                                       a.layer, pair=True))


def coupled(bands: list[Band]) -> list[Band]:
    """The bands with consecutive identical pair bands (from `paired`) joined two by two into
    couples of four layers (see `BandSizer._couple`); a pair left without a partner stays."""
    return _joined(bands, lambda a, b: a.pair and not a.couple and a.key == b.key,
                   lambda a, b: Band(a.kernels + b.kernels, ("couple",) + a.key, a.layer,
                                     pair=True, couple=True))


def _joined(bands: list[Band], joinable, join) -> list[Band]:
    """Consecutive bands a, b with joinable(a, b) replaced by join(a, b), left to right."""
    out: list[Band] = []
    k = 0
    while k < len(bands):
        if k + 1 < len(bands) and joinable(bands[k], bands[k + 1]):
            out.append(join(bands[k], bands[k + 1]))
            k += 2
        else:
            out.append(bands[k])
            k += 1
    return out


def _pairable(a: Band, b: Band) -> bool:
    """Two whole, different, identical layers of more than one kernel (a layer cut by
    `bands_of` is in bands of the same layer, which never pair)."""
    return (a.layer is not None and b.layer is not None and a.layer != b.layer
            and a.key == b.key and len(a.kernels) > 1 and not (a.pair or b.pair))


def _band_labels(layers: list[int | None]) -> list[object]:
    placed = [i for i, layer in enumerate(layers) if layer is not None]
    if not placed:
        return list(range(len(layers)))  # no layers: every kernel is a band of its own
    labels: list[object] = []
    for i, layer in enumerate(layers):
        if i < placed[0]:
            labels.append("pre")
        elif i > placed[-1]:
            labels.append("post")
        else:
            labels.append(("layer", layer) if layer is not None else labels[-1])
    return labels


# ---------------------------------------------------------------- band layouts


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


@dataclass(frozen=True)
class BandLayout:
    """A band's kernels inside its w x h box (the band's columns of one strip), in the band's own
    frame: the pipeline enters at the top edge and leaves at the bottom edge, or, for a `u_turn`
    layout, at the top edge again. Identical bands share one (stamping)."""

    w: int
    h: int
    rects: tuple[Rect, ...]  # one per kernel of the band, relative to the box
    u_turn: bool = False
    columns: bool = False    # a couple packed in columns (`BandSizer.packed`)


def stacked(w: int, box_height: int, heights: tuple[int, ...]) -> BandLayout:
    """Kernels spanning the band's width, stacked down from the top of a w x box_height box."""
    tops = [sum(heights[:k]) for k in range(len(heights))]
    return BandLayout(w, box_height, tuple(Rect(0, y, w, h) for y, h in zip(tops, heights)))


def pair_layout(w: int, box_height: int, heights: tuple[int, ...],
                wide: tuple[int, ...] = (), top: int = 0) -> BandLayout:
    """Two identical layers in a w x box_height box, a U turn: the first layer's kernels stacked
    down the left half, its last kernel a slab across the whole width below them, the second
    layer's kernels stacked up the right half and its last kernel a slab across the top.
    `heights` are one layer's: every stack kernel's, then the slab's at width w (the rows below
    the lower slab stay free).

    A layer's kernels disagree about their best width -- cost curves are sawtooths of tile
    ceilings, and a layer's last projection (e.g. an MLP's down projection, whose long input
    runs down the rows) can need 10% more area at a narrow band's width than at twice it -- so
    a pair lets that kernel have twice the width without breaking the chain: each slab touches
    the stack before it and the stack after it.

    At an odd width the halves differ by a column. The stack kernels listed in `wide` (by
    index) take the wider half in both layers, the rest the narrower: the second layer is the
    first's mirror image, so a row of the first layer's wide kernels faces the second layer's
    mirror of that row, which must be narrow. That holds when the wide kernels all lie in the
    top half of the stack or all in the bottom half; each layer then has the odd column for
    those rows, where all-narrow stacks would leave it unused. The stack may start at kernel
    `top` and wrap round (top, ..., last, first, ..., top - 1), which can put a boundary
    between kernels nearer the stack's middle, so that the wide rows fill nearly half of it.
    The chain is longer: kernel top - 1 ends at the bottom of the stack, kernel top starts at
    its top, and the slab is a part of the stack's height from the last stack kernel."""
    *stack, slab = heights
    n = len(stack)
    order = [(top + k) % n for k in range(n)]
    depth = sum(stack)
    tops = [0] * n
    for k, j in enumerate(order):
        tops[j] = sum(stack[i] for i in order[:k])
    spans = [(tops[j], tops[j] + stack[j]) for j in wide]
    if not (all(2 * b <= depth for _, b in spans) or all(2 * a >= depth for a, _ in spans)):
        raise ValueError(f"wide stack kernels {wide} are not all in one half of the {depth} rows")
    widths = [w - w // 2 if j in wide else w // 2 for j in range(n)]
    first = [Rect(0, slab + y, cw, h) for y, cw, h in zip(tops, widths, stack)]
    # The second layer runs bottom to top: the first layer's stack mirrored into the right half.
    second = [Rect(w - cw, slab + depth - y - h, cw, h) for y, cw, h in zip(tops, widths, stack)]
    slabs = [Rect(0, slab + depth, w, slab)], [Rect(0, 0, w, slab)]
    return BandLayout(w, box_height, tuple(first + slabs[0] + second + slabs[1]), u_turn=True)


@dataclass(frozen=True)
class PlacedBand:
    """A band's layout with its box's top-left corner at (x, y); `flipped` bands run bottom to
    top (the layout mirrored vertically)."""

    band: Band
    x: int
    y: int
    layout: BandLayout
    flipped: bool

    @property
    def box_key(self) -> tuple:
        """Bands with equal box keys are identical layers in equal boxes: one layout fits all."""
        return (self.band.key, self.layout.w, self.layout.h)

    def rects(self) -> list[Rect]:
        out = []
        for r in self.layout.rects:
            top = self.layout.h - r.y - r.h if self.flipped else r.y
            out.append(Rect(self.x + r.x, self.y + top, r.w, r.h))
        return out


@dataclass(frozen=True)
class SerpentineLayout:
    """Every band placed on one wafer, and the slowest kernel's stage times."""

    bands: tuple[PlacedBand, ...]
    strips: int
    stage: Stage

    def rects(self) -> list[Rect]:
        """One rectangle per kernel, in pipeline order."""
        return [r for placed in self.bands for r in placed.rects()]

    def with_layouts(self, layouts: dict[tuple, BandLayout]) -> "SerpentineLayout":
        """The same band positions, each band's layout replaced by layouts[box_key] if given."""
        bands = tuple(PlacedBand(p.band, p.x, p.y, layouts.get(p.box_key, p.layout), p.flipped)
                      for p in self.bands)
        return SerpentineLayout(bands, self.strips, self.stage)


@dataclass(frozen=True)
class Frame:
    """Where one wafer's bands go. The layers run along `strips` equal horizontal strips: left
    to right along the first, right to left along the next, and so on. The bands before the first
    layer (the embedding) stand as a column at the left end of the top `lead_span` strips, or,
    with `lead_row` > 0, lie side by side in a row that many PEs tall across the top of the wafer,
    above the strips. The bands after the last layer (final norm and head) stand as a column at
    the end of the bottom `trail_span` strips where the last strip ends (right for an odd strip
    count, else left), so a big single kernel such as the head is not squeezed into one short
    strip.

    A row costs the strips some height, a column some width. Which is better depends on how the
    layers divide into the strips: a whole number of layers fits each strip, so a column can
    leave a strip's last few columns unused where a row would not (Llama-3.1-8B on a wse3: one
    strip of 32 layers beside a lead column is about 2% slower than under a lead row)."""

    fabric: tuple[int, int]
    strips: int
    lead: int = 0        # bands in the leading column
    trail: int = 0       # bands in the trailing column
    lead_span: int = 1   # strips the leading column spans (0 when they lie in a row)
    trail_span: int = 1  # strips the trailing column spans
    lead_row: int = 0    # height of the leading row (0: the leading bands stand as a column)

    @staticmethod
    def for_bands(bands: list[Band], fabric: tuple[int, int], strips: int) -> "Frame":
        """Leading and trailing bands without a layer become the columns (none when no band
        has a layer: then every band runs along the strips)."""
        layered = [k for k, b in enumerate(bands) if b.layer is not None]
        if not layered:
            return Frame(fabric, strips)
        return Frame(fabric, strips, layered[0], len(bands) - 1 - layered[-1])

    @property
    def strip_height(self) -> int:
        return (self.fabric[1] - self.lead_row) // self.strips

    def strip_y(self, strip: int) -> int:
        return self.lead_row + strip * self.strip_height

    def as_row(self, height: int) -> "Frame":
        """This frame with the leading bands in a row `height` PEs tall across the top."""
        return replace(self, lead_span=0, lead_row=height)

    @property
    def trail_on_right(self) -> bool:
        return self.strips % 2 == 1

    def spans_fit(self) -> bool:
        """The two columns may not share a strip when both stand on the left."""
        return self.trail_on_right or self.lead_span + self.trail_span <= self.strips

    def role(self, k: int, count: int) -> str:
        if k < self.lead:
            return "lead"
        return "trail" if k >= count - self.trail else "body"

    def box_height(self, role: str) -> int:
        if role == "lead" and self.lead_row:
            return self.lead_row
        span = {"lead": self.lead_span, "trail": self.trail_span, "body": 1}[role]
        return span * self.strip_height

    def strip_bounds(self, strip: int, lead_w: int, trail_w: int) -> tuple[int, int]:
        """The columns [left, right) of a strip that the layers may use."""
        left, right = 0, self.fabric[0]
        if strip < self.lead_span:
            left += lead_w
        if strip >= self.strips - self.trail_span:
            if self.trail_on_right:
                right -= trail_w
            else:
                left += trail_w
        return left, right


def place_bands(bands: list[Band], layouts: list[BandLayout],
                frame: Frame) -> list[PlacedBand] | None:
    """Bands at their places in the frame, or None if the strips run out. Each band starts next to
    where the one before it ended: the first band of a strip runs top to bottom, the next bottom
    to top; the leading column ends at its top and the trailing column starts at its bottom."""
    n = len(bands)
    roles = [frame.role(k, n) for k in range(n)]
    lead_w = sum(layout.w for layout, r in zip(layouts, roles) if r == "lead")
    trail_w = sum(layout.w for layout, r in zip(layouts, roles) if r == "trail")
    body = [k for k in range(n) if roles[k] == "body"]
    if frame.lead_row and lead_w > frame.fabric[0]:
        return None
    in_strips = _place_in_strips([bands[k] for k in body], [layouts[k] for k in body],
                                 frame, lead_w, trail_w)
    if in_strips is None:
        return None
    placed = dict(zip(body, in_strips))
    placed.update(_column(bands, layouts, [k for k in range(n) if roles[k] == "lead"], 0, 0))
    trail_x = frame.fabric[0] - trail_w if frame.trail_on_right else 0
    trail_y = frame.strip_y(frame.strips - frame.trail_span)
    placed.update(_column(bands, layouts, [k for k in range(n) if roles[k] == "trail"],
                          trail_x, trail_y))
    return [placed[k] for k in range(n)]


def _column(bands: list[Band], layouts: list[BandLayout], members: list[int], x: int,
            y: int) -> dict[int, PlacedBand]:
    """Bands side by side from column x, each running bottom to top."""
    out = {}
    for k in members:
        out[k] = PlacedBand(bands[k], x, y, layouts[k], True)
        x += layouts[k].w
    return out


def _place_in_strips(bands: list[Band], layouts: list[BandLayout], frame: Frame, lead_w: int,
                     trail_w: int) -> list[PlacedBand] | None:
    """Bands along the strips, within each strip's bounds; None if they run out of strips. The
    chain starts each strip at its top edge; a band enters at the edge where the one before it
    left (flipped if that is the bottom) and a U-turn band leaves there too."""
    strip_h = frame.strip_height
    placed: list[PlacedBand] = []
    strip, used, at_top = 0, 0, True
    for band, layout in zip(bands, layouts):
        left, right = frame.strip_bounds(strip, lead_w, trail_w)
        while used + layout.w > right - left:
            strip, used, at_top = strip + 1, 0, True
            if strip >= frame.strips:
                return None
            left, right = frame.strip_bounds(strip, lead_w, trail_w)
        if layout.h > strip_h:
            return None
        x = left + used if strip % 2 == 0 else right - used - layout.w
        placed.append(PlacedBand(band, x, frame.strip_y(strip), layout, not at_top))
        at_top = at_top == layout.u_turn
        used += layout.w
    return placed


def chain_length2(rects) -> int:
    """The doubled Manhattan distance between consecutive rectangles' centres, summed (doubled
    so that it stays an integer). Works for anything with x, y, w and h."""
    return sum(abs((2 * a.x + a.w) - (2 * b.x + b.w)) + abs((2 * a.y + a.h) - (2 * b.y + b.h))
               for a, b in zip(rects, rects[1:]))


def band_stage(search: ShapeSearch, band: Band, layout: BandLayout) -> Stage:
    """The slowest kernel's real and compute-only times in one band's layout."""
    stages = [search.stage(i, r.w, r.h) for i, r in zip(band.kernels, layout.rects)]
    return Stage(max(s.real for s in stages), max(s.compute for s in stages))


def stage_of(search: ShapeSearch, placed) -> Stage:
    """The slowest kernel's real and compute-only times in a list of placed bands."""
    stages = [search.stage(i, r.w, r.h) for p in placed for i, r in zip(p.band.kernels, p.rects())]
    return Stage(max(s.real for s in stages), max(s.compute for s in stages))


# ---------------------------------------------------------------- sizing for a stage time


class BandSizer:
    """Layouts of bands for a box height -- stacked, or a U turn for a pair band: the narrowest
    one meeting a stage, and the fastest one at a given width; memoised per band key. With
    `wrap`, an odd-width pair's stack may start inside the layer when that is all that fits
    (see `pair_layout`); with `columns`, a couple that does not fit as stepped pairs may be
    packed in columns (see `packed`)."""

    def __init__(self, search: ShapeSearch, width: int, strip_height: int, wrap: bool = False,
                 columns: bool = False):
        self.search = search
        self.width = width
        self.cap = strip_height
        self.wrap = wrap
        self.columns = columns
        self._narrowest: dict = {}  # (key, stage) -> BandLayout | None
        self._known: dict = {}      # key -> [(stage, width)] found, to bracket later searches
        self._fastest: dict = {}    # (key, width) -> BandLayout | None
        self._unpacked: dict = {}   # (key, width) -> [stage] at which `_columns` found nothing

    def layout(self, band: Band, w: int, stage: Stage) -> BandLayout | None:
        """The band at width w with each kernel at its smallest height meeting the stage, or
        None if that does not fit the box."""
        if not band.pair:
            heights = self._stack(band.kernels, w, stage, self.cap)
            return None if heights is None else stacked(w, self.cap, heights)
        if band.couple:
            return self._couple(band, w, stage)
        *stack, last = band.kernels[:len(band.kernels) // 2]
        if w < 2:
            return None
        slab = self.search.min_height(last, w, stage, self.cap // 2)
        if slab is None:
            return None
        if w % 2:
            return self._stepped(stack, w, stage, slab)
        heights = self._stack(stack, w // 2, stage, self.cap - 2 * slab)
        return None if heights is None else pair_layout(w, self.cap, heights + (slab,))

    def _stack(self, kernels, w: int, stage: Stage, cap: int) -> tuple[int, ...] | None:
        """Each kernel's smallest height at width w meeting the stage, or None if together they
        are taller than cap."""
        out, left = [], cap
        for i in kernels:
            h = self.search.min_height(i, w, stage, left)
            if h is None:
                return None
            out.append(h)
            left -= h
        return tuple(out)

    def _stepped(self, kernels, w: int, stage: Stage, slab: int) -> BandLayout | None:
        """A pair at odd width w (see `pair_layout`) with each stack kernel at its smallest height
        meeting the stage: at the narrower half, or at the wider half for a run at the top or
        the bottom of the stack that fills at most half its rows. The stack in pipeline order
        with the fewest rows if one fits; else, with `wrap`, the stack starting at each kernel
        in turn at its fewest rows, the one with the shortest chain; None if nothing fits."""
        n, cap = len(kernels), self.cap - 2 * slab
        narrow = [self.search.min_height(i, w // 2, stage, cap) for i in kernels]
        broad = [self.search.min_height(i, w - w // 2, stage, cap) for i in kernels]
        found = []
        for top in range(n if self.wrap else 1):
            order = [(top + k) % n for k in range(n)]
            best = None
            for run in [order[:k] for k in range(n + 1)] + [order[k:] for k in range(1, n)]:
                heights = [broad[j] if j in run else narrow[j] for j in range(n)]
                if None in heights:
                    continue
                rows, rows_wide = sum(heights), sum(heights[j] for j in run)
                if 2 * rows_wide <= rows <= cap and (best is None or rows < best[0]):
                    best = (rows, tuple(heights), tuple(sorted(run)))
            if best is not None:
                found.append(pair_layout(w, self.cap, best[1] + (slab,), best[2], top))
                if top == 0:
                    break
        return min(found, key=lambda layout: chain_length2(layout.rects), default=None)

    def _couple(self, band: Band, w: int, stage: Stage) -> BandLayout | None:
        """Two identical pairs (four layers) in a w x cap box: the first pair on the left, the
        second the first turned half round (180 degrees) on the right, so the couple enters at
        its top edge and leaves at its bottom edge. The boundary between the pairs steps by a
        column at half height: the first pair is ceil(w / 2) wide above it and floor(w / 2)
        below, the second the other way round. At an odd width each pair then averages w / 2
        columns, where side-by-side rectangular pairs would be floor(w / 2) and ceil(w / 2)
        wide and the narrower one the slower (every pair holds the heaviest kernels)."""
        if w < 4:
            return None
        first = band.kernels[:len(band.kernels) // 2]
        step = self.cap // 2  # rounded down: an odd middle row is narrow in both pairs
        rects = _StepPair(self.search, first, (w + 1) // 2, w // 2, step, self.cap).fit(stage)
        if rects is None:
            return self._columns(band, w, stage) if self.columns else None
        turned = [Rect(w - r.x - r.w, self.cap - r.y - r.h, r.w, r.h) for r in rects]
        return BandLayout(w, self.cap, tuple(rects + turned))

    def _columns(self, band: Band, w: int, stage: Stage) -> BandLayout | None:
        """`packed`, remembering the stages at which it found nothing."""
        # Heights only grow as the stage tightens: what found nothing at a stage finds nothing
        # at a tighter one (the search is cut short, so this is a rule of thumb, not a proof).
        failed = self._unpacked.setdefault((band.key, w), [])
        if any(s.looser_than(stage) for s in failed):
            return None
        layout = self.packed(band, w, stage)
        if layout is None:
            failed.append(stage)
        return layout

    def packed(self, band: Band, w: int, stage: Stage, open_budget: int = OPEN_BUDGET,
               restarts: int = 1) -> BandLayout | None:
        """The four layers of a couple in a w x cap box, packed in columns: each layer's last
        kernel a slab across the whole width, two above and two below the other kernels of all
        four layers, which are packed in columns (`columns.pack_columns`, with `restarts`
        searches of `open_budget` nodes for columns of unequal widths), each column's kernels
        top to bottom in pipeline order. The chain runs up and down the columns, so it is
        longer, but each kernel can take a width near its best. None if no packing is found."""
        layers = [band.kernels[k:k + len(band.kernels) // 4]
                  for k in range(0, len(band.kernels), len(band.kernels) // 4)]
        slabs = [self.search.min_height(layer[-1], w, stage, self.cap) for layer in layers]
        if None in slabs or sum(slabs) >= self.cap:
            return None
        rows = self.cap - sum(slabs)
        stack = [i for layer in layers for i in layer[:-1]]
        packing = pack_columns((w, rows), [self.search.kind[i] for i in stack],
                               lambda k, cw: self.search.min_height(stack[k], cw, stage, rows),
                               fewest=len(layers), open_budget=open_budget,
                               restarts=restarts)
        if packing is None:
            return None
        # Top to bottom: slabs 1 and 0, the columns, slabs 2 and 3. Each slab is then next to
        # the part of the columns where its layer's kernels mostly are, and the couple leaves
        # at its bottom edge.
        order = [1, 0, None, 2, 3]
        heights = [rows if k is None else slabs[k] for k in order]
        y = dict(zip(order, itertools.accumulate([0] + heights)))
        lefts = list(itertools.accumulate((0,) + packing.widths))
        tops = [y[None]] * len(packing.widths)
        at = {}
        for i, c, h in zip(stack, packing.columns, packing.heights):
            at[i] = Rect(lefts[c], tops[c], packing.widths[c], h)
            tops[c] += h
        for k, layer in enumerate(layers):
            at[layer[-1]] = Rect(0, y[k], w, slabs[k])
        return BandLayout(w, self.cap, tuple(at[i] for i in band.kernels), columns=True)

    def narrowest(self, band: Band, stage: Stage) -> BandLayout | None:
        key = (band.key, stage)
        if key not in self._narrowest:
            w = self._narrowest_width(band, stage)
            self._narrowest[key] = None if w is None else self.layout(band, w, stage)
            if w is not None:
                self._known.setdefault(band.key, []).append((stage, w))
        return self._narrowest[key]

    def _narrowest_width(self, band: Band, stage: Stage) -> int | None:
        """Gallops up from the widest width a looser stage needed, then bisects. (Not a bisection
        over all widths: very wide bands can be slower again, e.g. for a kernel whose input is
        broadcast across the whole band.)"""
        known = self._known.get(band.key, [])
        memory = sum(self.search.models[i].min_pes for i in band.kernels)
        lo = max([w for s, w in known if s.looser_than(stage)] + [math.ceil(memory / self.cap)])
        return gallop(lambda w: self.layout(band, w, stage) is not None, lo, self.width)

    def fastest(self, band: Band, w: int) -> BandLayout | None:
        """The layout at width w with the fastest slowest kernel (real cycles, then compute-only),
        or None if the band does not fit the box at that width."""
        key = (band.key, w)
        if key not in self._fastest:
            self._fastest[key] = self._fastest_at(band, w)
        return self._fastest[key]

    def _fastest_at(self, band: Band, w: int) -> BandLayout | None:
        layout = self.layout(band, w, Stage())
        if layout is None:
            return None
        real = band_stage(self.search, band, layout).real
        layout = _smallest_passing(lambda t: self.layout(band, w, Stage(real=t)), 0, real, layout)
        slowest = band_stage(self.search, band, layout)
        return _smallest_passing(lambda t: self.layout(band, w, Stage(slowest.real, t)), 0,
                                 slowest.compute, layout)


class _StepPair:
    """One pair of layers (kernels `kernels`: layer A then layer B) in a box `top` columns wide
    above row `step` and `bottom` (top or top - 1) wide below it, as the first pair of a couple.

    As in `pair_layout`, A's stack runs down the left, its last kernel a slab across the bottom,
    and B's stack runs up the right to its slab across the top. Each row's columns are shared
    by a profile: A has `share(row)` of them, B the rest. Where a row's width is even they split
    evenly; in the part of the box where it is odd, A has the wider share above a row `split`
    and B below it (or the other way round), so each layer has the odd column for part of those
    rows. A kernel spanning rows with different shares takes the narrowest. The split is chosen
    among SPLIT_TRIES rows of that part, the first (in a fixed order) at which both stacks fit."""

    SPLIT_TRIES = 8

    def __init__(self, search: ShapeSearch, kernels, top: int, bottom: int, step: int,
                 height: int):
        self.search = search
        half = len(kernels) // 2
        *self.stack_a, self.slab_a = kernels[:half]
        *self.stack_b, self.slab_b = kernels[half:]
        self.widths = (top, bottom)
        self.step = step
        self.height = height

    def fit(self, stage: Stage) -> list[Rect] | None:
        """The pair's rectangles (A's stack, A's slab, B's stack, B's slab) with each kernel at
        its least height meeting the stage, or None if no split fits them in the box."""
        top, bottom = self.widths
        slab_b = self.search.min_height(self.slab_b, top, stage, self.step)
        slab_a = self.search.min_height(self.slab_a, bottom, stage, self.height - self.step)
        if slab_b is None or slab_a is None:
            return None
        rows = (slab_b, self.height - slab_a)  # the stacks' rows
        odd = (rows[0], self.step) if top % 2 else (self.step, rows[1]) if bottom % 2 else None
        for split in self._splits(odd):
            for a_first in (True, False) if odd else (True,):  # which layer has the odd column first
                share = self._share(split, a_first)
                a = self._stack_a(stage, share, rows)
                b = a and self._stack_b(stage, share, rows)
                if a and b:
                    slabs = [Rect(0, rows[1], bottom, slab_a)], [Rect(0, 0, top, slab_b)]
                    return a + slabs[0] + b + slabs[1]
        return None

    def _splits(self, odd: tuple[int, int] | None) -> list[int]:
        """The rows to try splitting the odd part of the stack rows at (any one if none is odd)."""
        if odd is None or odd[1] <= odd[0]:
            return [odd[0] if odd else 0]
        lo, hi = odd
        return sorted({lo + (hi - lo) * k // self.SPLIT_TRIES for k in range(self.SPLIT_TRIES + 1)})

    def _share(self, split: int, a_first: bool) -> list[tuple[int, int, int, int]]:
        """The profile as (first row, end row, row width, A's columns) pieces, top to bottom."""
        pieces = []
        for start, end, width in ((0, self.step, self.widths[0]),
                                  (self.step, self.height, self.widths[1])):
            if width % 2 == 0:
                pieces.append((start, end, width, width // 2))
                continue
            wide, narrow = width - width // 2, width // 2
            cut = min(max(split, start), end)
            first, second = (wide, narrow) if a_first else (narrow, wide)
            pieces += [(start, cut, width, first), (cut, end, width, second)]
        return [p for p in pieces if p[0] < p[1]]

    @staticmethod
    def _over(share, y0: int, y1: int) -> tuple[int, int, int]:
        """Over rows [y0, y1): (least A columns, most A columns, least row width)."""
        seen = [(width, a) for start, end, width, a in share if start < y1 and end > y0]
        return (min(a for _, a in seen), max(a for _, a in seen), min(w for w, _ in seen))

    def _stack_a(self, stage: Stage, share, rows) -> list[Rect] | None:
        """A's stack down from the top of the stack rows, each kernel as wide as A's share of
        every row it spans allows (narrowed until that holds), or None if it runs out of rows."""
        out, y = [], rows[0]
        for i in self.stack_a:
            w = self._over(share, y, y + 1)[0]
            while True:
                h = self.search.min_height(i, w, stage, rows[1] - y) if w > 0 else None
                if h is None:
                    return None
                least = self._over(share, y, y + h)[0]
                if least >= w:
                    break
                w = least
            out.append(Rect(0, y, w, h))
            y += h
        return out

    def _stack_b(self, stage: Stage, share, rows) -> list[Rect] | None:
        """B's stack up from the bottom of the stack rows, each kernel right of A's share and
        inside the box in every row it spans, or None if it runs out of rows."""
        out, y = [], rows[1]  # y: the bottom edge of B's next kernel
        for i in self.stack_b:
            _, most, width = self._over(share, y - 1, y)
            w = width - most
            while True:
                h = self.search.min_height(i, w, stage, y - rows[0]) if w > 0 else None
                if h is None:
                    return None
                _, most, width = self._over(share, y - h, y)
                if width - most >= w:
                    break
                w = width - most
            out.append(Rect(most, y - h, w, h))
            y -= h
        return out


def _smallest_passing(attempt, lo: float, hi: float, found):
    """The answer of `attempt` at the smallest value in (lo, hi] it succeeds at (to within
    STAGE_TOLERANCE); `found` is its answer at hi."""
    while hi - lo > max(1.0, hi * STAGE_TOLERANCE):
        mid = (lo + hi) / 2
        answer = attempt(mid)
        if answer is None:
            lo = mid
        else:
            hi, found = mid, answer
    return found


# ---------------------------------------------------------------- the layout


def serpentine_layout(search: ShapeSearch, bands: list[Band], fabric: tuple[int, int],
                      strips: int, compute_floor: float = 0.0,
                      wrap: bool = False, columns: bool = False) -> SerpentineLayout | None:
    """The serpentine layout on `strips` strips with the smallest stage found (real cycles, then
    compute-only cycles), or None when the bands do not fit even with every kernel at its
    smallest SRAM-fitting height. `compute_floor` is a lower bound on the compute-only stage
    time (the water-filling ideal); it only shortens the second bisection. `wrap` lets pairs'
    stacks wrap round, and `columns` lets a couple's kernels be packed in columns where its
    stepped pairs do not fit (`BandSizer`): both faster at some widths, for longer chains."""
    if fabric[1] < strips:
        return None  # a strip needs a row at least
    builder = _Builder(search, bands, Frame.for_bands(bands, fabric, strips), wrap, columns)
    found = builder.attempt(Stage())
    if found is None:
        return None
    loose = stage_of(search, found[1])
    found = _smallest_passing(lambda t: builder.attempt(Stage(real=t)), 0, loose.real, found)
    fastest = stage_of(search, found[1])
    found = _smallest_passing(lambda t: builder.attempt(Stage(fastest.real, t)), compute_floor,
                              fastest.compute, found)
    placed = builder.widen(*found)
    return SerpentineLayout(tuple(placed), strips, stage_of(search, placed))


class _Builder:
    """Lays the bands out in a frame for a stage; one BandSizer per box height."""

    def __init__(self, search: ShapeSearch, bands: list[Band], frame: Frame, wrap: bool,
                 columns: bool):
        self.search = search
        self.bands = bands
        self.frame = frame
        self.wrap = wrap
        self.columns = columns
        self.roles = [frame.role(k, len(bands)) for k in range(len(bands))]
        self._sizers: dict[int, BandSizer] = {}

    def sizer(self, height: int) -> BandSizer:
        if height not in self._sizers:
            self._sizers[height] = BandSizer(self.search, self.frame.fabric[0], height, self.wrap,
                                             self.columns)
        return self._sizers[height]

    def attempt(self, stage: Stage) -> tuple[Frame, list[PlacedBand]] | None:
        """The narrowest bands meeting the stage, placed in the first frame that holds them
        (see `_frames`); None if none does."""
        for frame in self._frames(stage):
            layouts = [self.sizer(frame.box_height(role)).narrowest(b, stage)
                       for b, role in zip(self.bands, self.roles)]
            if any(layout is None for layout in layouts):
                continue
            placed = place_bands(self.bands, layouts, frame)
            if placed is not None:
                return frame, placed
        return None

    def _frames(self, stage: Stage):
        """The frames to try at this stage, lazily: the end columns at every pair of spans that
        fits, least column area first (fewest strips on a tie), then the leading bands as the
        shortest row that holds them, with the trailing column at each span."""
        spans = range(1, self.frame.strips + 1)
        options = [replace(self.frame, lead_span=a, trail_span=b) for a in spans for b in spans]
        costs = [(self._column_area(f, "lead", stage), self._column_area(f, "trail", stage), f)
                 for f in options if f.spans_fit()]
        costs = [(a + b, f.lead_span + f.trail_span, f) for a, b, f in costs
                 if a is not None and b is not None]
        yield from (f for *_, f in sorted(costs, key=lambda c: c[:2]))
        row = self._lead_row(stage)
        if row is not None:
            yield from (replace(self.frame.as_row(row), trail_span=b) for b in spans)

    def _lead_row(self, stage: Stage) -> int | None:
        """The fewest rows in which the leading bands, side by side, span at most the fabric's
        width at this stage; None if there are none, or if they need more rows than a strip
        would keep were the row one more strip."""
        lead = [b for b, r in zip(self.bands, self.roles) if r == "lead"]
        width, height = self.frame.fabric

        def fits(rows: int) -> bool:
            layouts = [self.sizer(rows).narrowest(b, stage) for b in lead]
            return all(layouts) and sum(layout.w for layout in layouts) <= width
        return gallop(fits, 1, height // (self.frame.strips + 1)) if lead else None

    def _column_area(self, frame: Frame, role: str, stage: Stage) -> int | None:
        """The area (PEs of whole strips) a column takes at this span, or None if it cannot."""
        members = [b for b, r in zip(self.bands, self.roles) if r == role]
        layouts = [self.sizer(frame.box_height(role)).narrowest(b, stage) for b in members]
        if any(layout is None for layout in layouts):
            return None
        return sum(layout.w for layout in layouts) * frame.box_height(role)

    def widen(self, frame: Frame, placed: list[PlacedBand]) -> list[PlacedBand]:
        """Each strip's unused columns shared evenly by its bands (the remainder to its last
        band), and every band re-sized to its fastest stacked layout at its width."""
        extra = self._spare(frame, placed)
        before = stage_of(self.search, placed)
        layouts = []
        for p, role, more in zip(placed, self.roles, extra):
            wider = self.sizer(frame.box_height(role)).fastest(p.band, p.layout.w + more)
            # A wider band can be slower for some kernel (one that broadcasts across the
            # band's width): keep the widening only if the band stays within its stage.
            keep = wider is not None and before.looser_than(band_stage(self.search, p.band, wider))
            layouts.append(wider if keep else p.layout)
        return place_bands(self.bands, layouts, frame) or placed

    def _spare(self, frame: Frame, placed: list[PlacedBand]) -> list[int]:
        """Per band, the columns it gets from its strip's unused ones."""
        lead_w = sum(p.layout.w for p, r in zip(placed, self.roles) if r == "lead")
        trail_w = sum(p.layout.w for p, r in zip(placed, self.roles) if r == "trail")
        extra = [0] * len(placed)
        for strip in range(frame.strips):
            y = frame.strip_y(strip)
            members = [k for k, p in enumerate(placed) if self.roles[k] == "body" and p.y == y]
            if not members:
                continue
            left, right = frame.strip_bounds(strip, lead_w, trail_w)
            spare = (right - left) - sum(placed[k].layout.w for k in members)
            for k in members:
                extra[k] = spare // len(members)
            extra[members[-1]] += spare % len(members)
        return extra
