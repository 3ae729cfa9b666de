"""The constructive layout: shape searches against brute force, bands, the serpentine geometry,
and valid layouts from the stage-time bisection."""
from __future__ import annotations

import math

import pytest

from ir.kernels import ShapeCost
from passes.refine import repack_couples
from passes.serpentine import (Band, BandLayout, BandSizer, Frame, PlacedBand, Rect,
                               SerpentineLayout, ShapeSearch, Stage, band_stage, bands_of, coupled,
                               pair_layout, paired, place_bands, serpentine_layout, stacked,
                               stage_of)
from tests.passes.test_wafer_place import (SyntheticModel, synthetic_model, tiled_couple,
                                           wide_last_model)


class GemvModel(SyntheticModel):
    """SRAM holds a ceil(rows/h) x ceil(cols/w) tile; cycles are a smooth valley in h."""

    def __init__(self, kernel, rows: int, cols: int, tile: int):
        super().__init__(kernel, work=rows * cols, min_pes=math.ceil(rows * cols / tile))
        self.rows, self.cols, self.tile = rows, cols, tile

    def cost(self, w: int, h: int) -> ShapeCost | None:
        if math.ceil(self.rows / h) * math.ceil(self.cols / w) > self.tile:
            return None
        return ShapeCost(w, h, 0, 10 ** 6 // (w * h) + 40 * h + 3 * w)


def gemv_search(rows=900, cols=500, tile=4000, height=200) -> tuple[ShapeSearch, GemvModel]:
    kernels, _ = synthetic_model(layers=1, layer_kernels=((1, 1),), post=())
    model = GemvModel(kernels[1], rows, cols, tile)
    return ShapeSearch([model], height), model


# ---------------------------------------------------------------- shape search


def test_fit_height_is_the_smallest_fitting_height():
    search, model = gemv_search()
    for w in (1, 2, 5, 17, 60):
        fitting = [h for h in range(1, 201) if model.cost(w, h) is not None]
        assert search.fit_height(0, w) == (fitting[0] if fitting else None)


def test_min_height_matches_brute_force():
    search, model = gemv_search()
    for w in (3, 8, 20):
        heights = [h for h in range(1, 201) if model.cost(w, h) is not None]
        cycles = [model.cost(w, h).cycles for h in heights]
        best = cycles.index(min(cycles))
        assert all(a > b for a, b in zip(cycles[:best], cycles[1:best + 1])), "not a valley"
        for stage in (min(cycles) - 1, min(cycles), (min(cycles) + cycles[0]) // 2, cycles[0]):
            within = [h for h, c in zip(heights[:best + 1], cycles) if c <= stage]
            expected = within[0] if within else None
            assert search.min_height(0, w, Stage(real=stage), 200) == expected


def test_min_height_honours_the_cap_and_the_compute_time():
    search, model = gemv_search()
    free = search.min_height(0, 8, Stage(real=math.inf), 200)
    assert search.min_height(0, 8, Stage(real=math.inf), free - 1) is None
    # Compute-only: 900*500 work over 8 columns within 2000 cycles needs 29 rows.
    compute = model.work / (8 * 2000)
    assert search.min_height(0, 8, Stage(compute=2000), 200) == max(free, math.ceil(compute))


def test_searches_are_memoised_per_signature():
    kernels, models = synthetic_model(layers=6)
    search = ShapeSearch(models, 64)
    for i in range(len(models)):
        search.min_height(i, 10, Stage(real=500), 64)
    # Six identical layers: each distinct kernel asked about each shape once.
    assert models[1].calls > 0 and all(m.calls == 0 for m in models[5:-1])


# ---------------------------------------------------------------- bands


def test_bands_follow_layers():
    layers = [None, 0, 0, None, 0, 1, 1, None, None]
    bands = bands_of(layers, [7, 1, 2, 3, 4, 1, 2, 5, 6])
    assert [b.kernels for b in bands] == [(0,), (1, 2, 3, 4), (5, 6), (7, 8)]
    assert [b.layer for b in bands] == [None, 0, 1, None]
    assert bands[1].key[:2] == bands[2].key  # layers 0 and 1 start alike


def test_identical_neighbouring_layers_pair_up():
    kernels, models = synthetic_model(layers=5)
    search = ShapeSearch(models, 64)
    bands = bands_of([k.layer for k in kernels], search.kind)
    joined = paired(bands)
    assert [b.layer for b in joined] == [None, 0, 2, 4, None]
    assert [b.pair for b in joined] == [False, True, True, False, False]
    assert joined[1].kernels == bands[1].kernels + bands[2].kernels
    assert joined[1].key == joined[2].key == ("pair",) + bands[1].key
    # Layers of different kinds, a layer cut in two, and single kernels never pair.
    assert not any(b.pair for b in paired([Band((0, 1), (0, 1), 0), Band((2, 3), (0, 2), 1)]))
    assert not any(b.pair for b in paired([Band((0, 1), (0, 1), 0), Band((2, 3), (0, 1), 0)]))
    assert not any(b.pair for b in paired([Band((0,), (0,), 0), Band((1,), (0,), 1)]))


def test_long_bands_are_cut_and_layerless_kernels_stand_alone():
    assert [len(b.kernels) for b in bands_of([3] * 40, [0] * 40)] == [16, 16, 8]
    assert [b.kernels for b in bands_of([None] * 3, [0] * 3)] == [(0,), (1,), (2,)]


# ---------------------------------------------------------------- geometry


def band(k: int, layer: int | None) -> Band:
    return Band((k,), (k,), layer)


def test_serpentine_runs_along_strips_and_alternates():
    bands = [band(0, None)] + [band(k, k) for k in range(1, 7)] + [band(7, None)]
    frame = Frame.for_bands(bands, (30, 20), strips=2)
    layouts = [stacked(4, 20, (20,))] + [stacked(8, 10, (10,))] * 6 + [stacked(3, 10, (10,))]
    placed = place_bands(bands, layouts, frame)
    xs = [(p.x, p.y) for p in placed]
    # Embedding column at the left; three layers left to right on strip 0 after it; three right
    # to left on strip 1; with two strips the last one ends on the left, so the head is there.
    assert xs[0] == (0, 0)
    assert xs[1:4] == [(4, 0), (12, 0), (20, 0)]
    assert xs[4:7] == [(22, 10), (14, 10), (6, 10)]
    assert xs[7] == (0, 10) and layouts[7].w <= 6
    assert [p.flipped for p in placed[1:7]] == [False, True, False, False, True, False]


def test_a_lead_row_lies_across_the_top_and_the_strips_share_the_rest():
    bands = [band(0, None)] + [band(k, k) for k in range(1, 7)] + [band(7, None)]
    frame = Frame.for_bands(bands, (30, 22), strips=2).as_row(2)
    assert frame.strip_height == 10 and frame.box_height("lead") == 2
    layouts = [stacked(24, 2, (2,))] + [stacked(8, 10, (10,))] * 6 + [stacked(6, 10, (10,))]
    placed = place_bands(bands, layouts, frame)
    xs = [(p.x, p.y) for p in placed]
    # The row takes no columns from the first strip: three layers from its left edge.
    assert xs[0] == (0, 0)
    assert xs[1:4] == [(0, 2), (8, 2), (16, 2)]
    assert xs[4:7] == [(22, 12), (14, 12), (6, 12)]
    assert xs[7] == (0, 12)
    assert place_bands(bands, [stacked(31, 2, (2,))] + layouts[1:], frame) is None  # too wide


def test_bands_that_do_not_fit_the_strips_fail():
    bands = [band(k, k) for k in range(5)]
    frame = Frame.for_bands(bands, (20, 10), strips=1)
    assert place_bands(bands, [stacked(5, 10, (10,))] * 5, frame) is None
    assert place_bands(bands, [stacked(4, 10, (10,))] * 5, frame) is not None


def touch(a: Rect, b: Rect) -> bool:
    """The two rectangles share a stretch of edge."""
    side = (a.x + a.w == b.x or b.x + b.w == a.x) and min(a.y + a.h, b.y + b.h) > max(a.y, b.y)
    top = (a.y + a.h == b.y or b.y + b.h == a.y) and min(a.x + a.w, b.x + b.w) > max(a.x, b.x)
    return side or top


def test_a_pair_is_a_u_turn_with_each_layers_last_kernel_across_the_box():
    layout = pair_layout(10, 20, (3, 4, 5, 2))
    assert layout.u_turn and (layout.w, layout.h) == (10, 20)
    first, second = layout.rects[:4], layout.rects[4:]
    assert first == (Rect(0, 2, 5, 3), Rect(0, 5, 5, 4), Rect(0, 9, 5, 5), Rect(0, 14, 10, 2))
    assert second == (Rect(5, 11, 5, 3), Rect(5, 7, 5, 4), Rect(5, 2, 5, 5), Rect(0, 0, 10, 2))
    assert all(touch(a, b) for a, b in zip(layout.rects, layout.rects[1:]))


def test_an_odd_width_pair_gives_the_wider_half_to_each_layers_first_kernels():
    # Width 11: halves of 6 and 5 columns. The first layer's first stack kernel (3 of the
    # stack's 12 rows, no more than half) takes the wider half; the second layer, a mirror
    # image, takes it where the first is narrow, so no row holds two wide kernels.
    layout = pair_layout(11, 20, (3, 4, 5, 2), wide=(0,))
    first, second = layout.rects[:4], layout.rects[4:]
    assert first == (Rect(0, 2, 6, 3), Rect(0, 5, 5, 4), Rect(0, 9, 5, 5), Rect(0, 14, 11, 2))
    assert second == (Rect(5, 11, 6, 3), Rect(6, 7, 5, 4), Rect(6, 2, 5, 5), Rect(0, 0, 11, 2))
    assert all(touch(a, b) for a, b in zip(layout.rects, layout.rects[1:]))
    assert_fits_disjoint([None] * 8, layout.rects, (11, 20), check_sram=False)
    # Or the last kernel, in the bottom half; its mirror image lies in the top half.
    bottom = pair_layout(11, 20, (3, 4, 5, 2), wide=(2,))
    assert bottom.rects[2] == Rect(0, 9, 6, 5) and bottom.rects[6] == Rect(5, 2, 6, 5)
    assert_fits_disjoint([None] * 8, bottom.rects, (11, 20), check_sram=False)
    with pytest.raises(ValueError):
        pair_layout(11, 20, (3, 4, 5, 2), wide=(0, 1))  # rows 2..8 of 12 wide: rows 7, 8 clash
    with pytest.raises(ValueError):
        pair_layout(11, 20, (3, 4, 5, 2), wide=(0, 2))  # one in each half: they face each other


def test_an_odd_width_pair_band_uses_its_odd_column():
    # A small kernel before a big one: the small one takes the wider half, which leaves the big
    # one more rows at the narrower half.
    kernels, models = synthetic_model(layers=2, layer_kernels=((1000, 6), (4000, 20), (4000, 20)))
    search = ShapeSearch(models, 60)
    pair = paired(bands_of([k.layer for k in kernels], search.kind))[1]
    sizer = BandSizer(search, 72, 60)
    even, odd = sizer.fastest(pair, 10), sizer.fastest(pair, 11)
    faster = band_stage(search, pair, odd), band_stage(search, pair, even)
    assert (faster[0].real, faster[0].compute) < (faster[1].real, faster[1].compute)
    assert max(r.w for r in odd.rects[:2]) == 6  # a stack kernel in the wider half
    assert_fits_disjoint([models[i] for i in pair.kernels], odd.rects, (11, 60))


def test_a_pair_stack_can_wrap_round_so_its_wide_kernels_fill_half_its_rows():
    # Stack kernels of 2, 6 and 4 rows: in pipeline order no run at the top or the bottom is
    # half the 12 rows. Starting at the last kernel (order 2, 0, 1), kernels 2 and 0 are the
    # top 6 rows, so the odd column is used in every row of the stack.
    layout = pair_layout(11, 20, (2, 6, 4, 2), wide=(0, 2), top=2)
    first, second = layout.rects[:4], layout.rects[4:]
    assert first == (Rect(0, 6, 6, 2), Rect(0, 8, 5, 6), Rect(0, 2, 6, 4), Rect(0, 14, 11, 2))
    assert second == (Rect(5, 8, 6, 2), Rect(6, 2, 5, 6), Rect(5, 10, 6, 4), Rect(0, 0, 11, 2))
    assert_fits_disjoint([None] * 8, layout.rects, (11, 20), check_sram=False)
    assert sum(r.area for r in layout.rects) == 11 * 16  # stack and slabs leave no PE free
    with pytest.raises(ValueError):
        pair_layout(11, 20, (2, 6, 4, 2), wide=(0, 2))  # in pipeline order they face each other


def test_a_wrapped_pair_stack_is_used_only_where_it_is_faster():
    # Two small kernels around a big one: in pipeline order only one small kernel can have the
    # wider half; wrapped round, both.
    kernels, models = synthetic_model(layers=2, layer_kernels=((1000, 6), (4000, 20), (1000, 6),
                                                               (4000, 20)))
    search = ShapeSearch(models, 60)
    pair = paired(bands_of([k.layer for k in kernels], search.kind))[1]
    plain, wrapped = BandSizer(search, 72, 60), BandSizer(search, 72, 60, wrap=True)
    speed = [band_stage(search, pair, s.fastest(pair, 9)) for s in (plain, wrapped)]
    assert (speed[1].real, speed[1].compute) < (speed[0].real, speed[0].compute)
    rects = wrapped.fastest(pair, 9).rects
    assert [r.w for r in rects[:3]] == [5, 4, 5] and rects[1].y < rects[0].y  # starts at the big one
    assert_fits_disjoint([models[i] for i in pair.kernels], rects, (9, 60))
    # Where the stack in pipeline order fits, that is the layout, wrap or not.
    assert wrapped.fastest(pair, 11) == plain.fastest(pair, 11)


def couple_model():
    kernels, models = synthetic_model(layers=4, layer_kernels=((4000, 20),) * 3)
    search = ShapeSearch(models, 60)
    pairs = paired(bands_of([k.layer for k in kernels], search.kind))
    couple = next(b for b in coupled(pairs) if b.couple)
    return models, search, next(b for b in pairs if b.pair), couple


def test_two_pairs_couple_up_and_a_pair_without_a_partner_stays():
    couple = couple_model()[3]
    assert couple.kernels == tuple(range(1, 13)) and couple.pair and couple.layer == 0
    kernels, models = synthetic_model(layers=3, layer_kernels=((4000, 20),) * 3)
    bands = paired(bands_of([k.layer for k in kernels], ShapeSearch(models, 60).kind))
    assert coupled(bands) == bands  # one pair and a single layer: nothing to couple


@pytest.mark.parametrize("w", range(4, 31))
def test_a_couple_is_two_pairs_with_a_stepped_boundary_and_valid(w):
    models, search, pair, couple = couple_model()
    layout = BandSizer(search, 72, 60).fastest(couple, w)
    if layout is None:
        assert BandSizer(search, 72, 60).fastest(pair, w // 2) is None
        return
    rects = layout.rects
    assert_fits_disjoint([models[i] for i in couple.kernels], rects, (w, 60))
    first, second = rects[:6], rects[6:]
    # The second pair is the first turned half round; the first keeps to its stepped region.
    assert list(second) == [Rect(w - r.x - r.w, 60 - r.y - r.h, r.w, r.h) for r in first]
    assert all(r.x + r.w <= (w + 1) // 2 if r.y + r.h <= 30 else r.x + r.w <= w // 2 for r in first)
    # It runs from the top edge (below the second layer's slab) to the bottom edge.
    assert first[0].y == first[-1].h and second[-1].y + second[-1].h == 60


def test_a_couple_at_an_odd_width_beats_its_narrower_pair():
    _, search, pair, couple = couple_model()
    sizer = BandSizer(search, 72, 60)
    narrower = band_stage(search, pair, sizer.fastest(pair, 7))
    both = band_stage(search, couple, sizer.fastest(couple, 15))
    assert (both.real, both.compute) < (narrower.real, narrower.compute)


def test_a_couple_that_does_not_fit_as_stepped_pairs_packs_in_columns():
    kernels, models, search, couple = tiled_couple()
    stage = Stage(real=100)
    # Stepped pairs: each layer's five stack kernels need 120 rows, and the slabs 24 each.
    assert BandSizer(search, 200, 150).layout(couple, 86, stage) is None
    layout = BandSizer(search, 200, 150, columns=True).layout(couple, 86, stage)
    rects = layout.rects
    assert_fits_disjoint([models[i] for i in couple.kernels], rects, (86, 150))
    assert band_stage(search, couple, layout).real <= 100
    # Each layer's last kernel a slab across the box: layers 1 and 0 at the top, 2 and 3 at the
    # bottom; the twenty stack kernels in five columns of 17 or 18, four to a column, between.
    slabs = [rects[k] for k in range(5, 24, 6)]
    assert slabs == [Rect(0, y, 86, 12) for y in (12, 0, 126, 138)]
    stack = [r for k, r in enumerate(rects) if k % 6 != 5]
    assert sorted({(r.x, r.w) for r in stack}) == [(0, 18), (18, 17), (35, 17), (52, 17), (69, 17)]
    assert all(r.h == 24 and 24 <= r.y and r.y + r.h <= 126 for r in stack)
    # It enters at the top edge (layer 0 starts at the top of the columns) and leaves at the
    # bottom edge.
    assert rects[0].y == 24 and slabs[-1].y + slabs[-1].h == 150


def test_repacking_a_column_couple_lowers_its_compute_time_at_the_same_real_time():
    kernels, models, search, couple = tiled_couple()
    # Packed for 100 cycles alone, each kernel takes its least rows (stack kernels 24, slabs 12)
    # and is at 100 cycles in the compute-only model too; in a box 160 high that leaves rows
    # spare, which the repacking hands out.
    loose = BandSizer(search, 86, 160, columns=True).packed(couple, 86, Stage(real=100))
    assert loose.columns and {loose.rects[k].h for k in range(24) if k % 6 != 5} == {24}
    before = band_stage(search, couple, loose)
    wafer = SerpentineLayout((PlacedBand(couple, 0, 0, loose, flipped=False),), 1, before)
    [after_layout] = repack_couples(search, [wafer])
    after = stage_of(search, after_layout.bands)
    assert after.real <= before.real and after.compute < before.compute
    assert_fits_disjoint([models[i] for i in couple.kernels], after_layout.rects(), (86, 160))
    assert after_layout.bands[0].layout.columns


def test_packing_couples_in_columns_makes_a_faster_layout():
    kernels, models, search, couple = tiled_couple()
    bands = coupled(paired(bands_of([k.layer for k in kernels], search.kind)))
    stepped = serpentine_layout(search, bands, (120, 150), 1)
    packed = serpentine_layout(search, bands, (120, 150), 1, columns=True)
    assert packed.stage.real < stepped.stage.real
    assert_fits_disjoint(models, packed.rects(), (120, 150))
    assert packed.stage.real == max(m.cost(r.w, r.h).cycles for m, r in zip(models, packed.rects()))


def test_a_u_turn_band_leaves_the_next_one_entering_where_it_entered():
    bands = [Band((0, 1), ("pair", 0), 0, pair=True), band(2, 2), band(3, 3), band(4, 4)]
    layouts = [pair_layout(4, 10, (8, 1))] + [stacked(3, 10, (10,))] * 3
    placed = place_bands(bands, layouts, Frame.for_bands(bands, (20, 10), strips=1))
    assert [p.flipped for p in placed] == [False, False, True, False]


def test_flipped_bands_mirror_their_layout():
    layout = BandLayout(4, 10, stacked(4, 10, (2, 3)).rects)
    up = PlacedBand(band(0, 0), 5, 0, layout, flipped=True)
    assert [(r.y, r.h) for r in up.rects()] == [(8, 2), (5, 3)]


# ---------------------------------------------------------------- the layout


def assert_fits_disjoint(models, rects, fabric, check_sram: bool = True) -> None:
    """Every rectangle inside the fabric, fitting SRAM, and no two sharing a PE."""
    cells = set()
    for m, r in zip(models, rects):
        assert 0 <= r.x and r.x + r.w <= fabric[0] and 0 <= r.y and r.y + r.h <= fabric[1]
        assert not check_sram or m.cost(r.w, r.h) is not None
        new = {(r.x + dx, r.y + dy) for dx in range(r.w) for dy in range(r.h)}
        assert not cells & new
        cells |= new


@pytest.mark.parametrize("strips", [1, 2, 3])
def test_layout_is_valid(strips):
    kernels, models = synthetic_model(layers=6)
    search = ShapeSearch(models, 48)
    bands = bands_of([k.layer for k in kernels], search.kind)
    layout = serpentine_layout(search, bands, (64, 48), strips)
    rects = layout.rects()
    assert len(rects) == len(kernels)
    assert_fits_disjoint(models, rects, (64, 48))
    assert layout.stage.real == max(m.cost(r.w, r.h).cycles for m, r in zip(models, rects))


def test_the_lead_bands_lie_in_a_row_where_that_fits_the_layers_better():
    kernels, models = synthetic_model(layers=5)
    search = ShapeSearch(models, 80)
    bands = bands_of([k.layer for k in kernels], search.kind)
    layout = serpentine_layout(search, bands, (40, 80), 1)
    lead, first = layout.bands[0], layout.bands[1]
    assert (lead.x, lead.y) == (0, 0) and lead.layout.w > lead.layout.h  # a row, not a column
    assert first.y == lead.layout.h and first.layout.h == 80 - lead.layout.h
    assert_fits_disjoint(models, layout.rects(), (40, 80))


def test_pairs_give_a_kernel_that_wants_width_twice_the_band_and_are_valid():
    kernels, models = wide_last_model(layers=6)
    search = ShapeSearch(models, 60)
    bands = bands_of([k.layer for k in kernels], search.kind)
    single = serpentine_layout(search, bands, (72, 60), 1)
    pairs = serpentine_layout(search, paired(bands), (72, 60), 1)
    assert pairs.stage.real < single.stage.real
    rects = pairs.rects()
    assert len(rects) == len(kernels)
    assert_fits_disjoint(models, rects, (72, 60))
    assert pairs.stage.real == max(m.cost(r.w, r.h).cycles for m, r in zip(models, rects))
    layer0 = [r for k, r in zip(kernels, rects) if k.layer == 0]
    assert layer0[-1].w // 2 == layer0[0].w  # the slab spans both halves


def test_more_room_is_never_slower_and_too_little_is_none():
    kernels, models = synthetic_model(layers=4)
    search = ShapeSearch(models, 64)
    bands = bands_of([k.layer for k in kernels], search.kind)
    small = serpentine_layout(search, bands, (40, 32), 1)
    large = serpentine_layout(search, bands, (80, 32), 1)
    assert large.stage.real <= small.stage.real
    assert serpentine_layout(search, bands, (8, 8), 1) is None
