"""PlacementPass on synthetic kernels: validity, the two objectives, determinism, and the errors."""
from __future__ import annotations

import pytest

from ir.errors import PlacementError, WaferCapacityError
from ir.kernels import KernelCost, ShapeCost
from ir.wkl import Region
from passes.place import (PlacementPass, PlacementProblem, build_problem, chain_distance2,
                          greedy_layout, layout_score, shelf_pack)

# A small, deterministic amount of search; the wall-clock net is wide so it never decides a result.
FAST = PlacementPass(seed=0, work_limit=0.1, time_limit_s=60.0)


def shape(w: int, h: int, cycles: int) -> ShapeCost:
    return ShapeCost(w=w, h=h, bytes_per_pe=1024, cycles=cycles)


def costs_of(*shape_lists: list[ShapeCost]) -> tuple[list[str], list[KernelCost]]:
    names = [f"k{i}" for i in range(len(shape_lists))]
    return names, [KernelCost(n, 0, 0, list(s)) for n, s in zip(names, shape_lists)]


def synthetic(n: int, max_pes: int) -> tuple[list[str], list[KernelCost]]:
    """n kernels of varied work; each shape's cycles fall with its area (plus an edge term)."""
    def shapes(work: int) -> list[ShapeCost]:
        return [shape(w, h, work * 100 // (w * h) + 10 * (w + h))
                for w in (1, 2, 4) for h in (1, 2, 4) if work // 4 <= w * h <= max_pes]
    return costs_of(*(shapes(1 + (i * 7) % 16) for i in range(n)))


def assert_valid(regions: list[Region], names: list[str], costs: list[KernelCost],
                 fabric: tuple[int, int]) -> None:
    assert [r.kernel for r in regions] == names
    for r, cost in zip(regions, costs):
        assert r.wafer == 0
        assert 0 <= r.x and r.x + r.w <= fabric[0] and 0 <= r.y and r.y + r.h <= fabric[1]
        assert (r.w, r.h) in {(s.w, s.h) for s in cost.shapes}
    cells = [(r.x + dx, r.y + dy) for r in regions for dx in range(r.w) for dy in range(r.h)]
    assert len(cells) == len(set(cells)), "regions overlap"


def bottleneck(regions: list[Region], costs: list[KernelCost]) -> int:
    return max(next(s.cycles for s in c.shapes if (s.w, s.h) == (r.w, r.h))
               for r, c in zip(regions, costs))


# ---------------------------------------------------------------- validity


@pytest.mark.parametrize("n, fabric", [(1, (8, 8)), (3, (8, 8)), (6, (8, 8)), (15, (16, 16))])
def test_regions_are_valid(n, fabric):
    names, costs = synthetic(n, max_pes=8)
    assert_valid(FAST.run(names, costs, fabric), names, costs, fabric)


def test_same_seed_same_regions():
    names, costs = synthetic(15, max_pes=8)  # large enough that the search runs out of work
    assert FAST.run(names, costs, (16, 16)) == FAST.run(names, costs, (16, 16))


def test_shapes_larger_than_the_fabric_are_never_chosen():
    names, costs = costs_of([shape(16, 1, 10), shape(2, 2, 90)], [shape(2, 2, 50)])
    regions = FAST.run(names, costs, (8, 8))
    assert [(r.w, r.h) for r in regions] == [(2, 2), (2, 2)]


# ---------------------------------------------------------------- objectives


def test_bottleneck_is_the_hand_computed_optimum():
    # 8x8 = 64 PEs. Two 8x4 regions fill the fabric, so at most one kernel gets 8x4: giving it to
    # `heavy` and 4x4 to `medium` makes the slowest stage 100 cycles; nothing does better.
    names, costs = costs_of(
        [shape(2, 2, 60), shape(4, 4, 30)],                      # light
        [shape(2, 2, 800), shape(4, 4, 200), shape(8, 4, 100)],  # heavy
        [shape(2, 2, 400), shape(4, 4, 100), shape(8, 4, 50)])   # medium
    regions = FAST.run(names, costs, (8, 8))
    assert_valid(regions, names, costs, (8, 8))
    assert bottleneck(regions, costs) == 100
    # The greedy shelf packing cannot fit heavy's 8x4 beside the others: the solver beat it.
    greedy = greedy_layout(build_problem(names, costs, (8, 8)))
    assert layout_score(greedy)[0] == 200


def test_pipeline_neighbours_sit_next_to_each_other():
    # Two 2x2 kernels: touching centres are 2 PEs apart, i.e. 4 in doubled coordinates.
    names, costs = costs_of([shape(2, 2, 10)], [shape(2, 2, 10)])
    regions = FAST.run(names, costs, (8, 8))
    assert chain_distance2(regions) == 4


def test_distance_beats_the_greedy_hint():
    # Shelves break after each wide kernel, leaving the tall ones far from their successors.
    names, costs = costs_of([shape(6, 2, 10)], [shape(1, 4, 10)], [shape(6, 2, 10)],
                            [shape(1, 4, 10)])
    greedy = greedy_layout(build_problem(names, costs, (8, 8)))
    regions = FAST.run(names, costs, (8, 8))
    assert_valid(regions, names, costs, (8, 8))
    assert chain_distance2(regions) < chain_distance2(greedy)


def test_distance_is_the_hand_computed_optimum():
    # Five 4x2 kernels on 8x8. Stacked neighbours cost 4 (doubled), side-by-side ones 8, and every
    # pair's cost is even. 16 would need all five in one column (10 rows); 18 would need four
    # 4-steps and one 6-step, which also forces a monotone column of five. So 20 is optimal: a
    # column of four and one beside it. The greedy snake of side-by-side pairs costs 24.
    names, costs = costs_of(*([shape(4, 2, 10)] for _ in range(5)))
    greedy = greedy_layout(build_problem(names, costs, (8, 8)))
    assert chain_distance2(greedy) == 24
    assert chain_distance2(FAST.run(names, costs, (8, 8))) == 20


def test_distance_never_trades_away_the_bottleneck():
    # k1's fast shape is 8x1, which cannot sit between k0 and k2 compactly; it must still be used.
    names, costs = costs_of([shape(2, 2, 10)], [shape(8, 1, 10), shape(1, 1, 99)],
                            [shape(2, 2, 10)])
    regions = FAST.run(names, costs, (8, 8))
    assert (regions[1].w, regions[1].h) == (8, 1)


# ---------------------------------------------------------------- greedy and the strategy seam


def test_shelf_pack_snakes_and_reports_overflow():
    squares = [shape(4, 4, 1)] * 3
    layout = shelf_pack(squares, (8, 8))
    assert [(p.x, p.y) for p in layout] == [(0, 0), (4, 0), (4, 4)]  # second shelf runs leftward
    assert shelf_pack([shape(4, 4, 1)] * 5, (8, 8)) is None


class NothingFound:
    def solve(self, problem: PlacementProblem, hint, budget):
        return None


def test_falls_back_to_the_greedy_layout_when_the_strategy_finds_nothing():
    names, costs = synthetic(5, max_pes=4)
    regions = PlacementPass(strategy=NothingFound()).run(names, costs, (8, 8))
    assert_valid(regions, names, costs, (8, 8))
    greedy = greedy_layout(build_problem(names, costs, (8, 8)))
    assert [(r.x, r.y, r.w, r.h) for r in regions] == [(p.x, p.y, p.shape.w, p.shape.h)
                                                       for p in greedy]


# ---------------------------------------------------------------- errors


def test_too_much_area_names_pes_and_wafers():
    names, costs = costs_of(*([shape(4, 4, 10), shape(8, 8, 5)] for _ in range(5)))
    with pytest.raises(WaferCapacityError) as err:  # more wafers would hold them
        FAST.run(names, costs, (8, 8))
    message = str(err.value)
    assert "80 PEs" in message and "64 PEs" in message and "2 wafers" in message


def test_area_that_fits_but_cannot_be_packed():
    # 2 x 25 PEs fit 64 by area, but two 5x5 squares cannot both sit in an 8x8 fabric.
    names, costs = costs_of([shape(5, 5, 10)], [shape(5, 5, 10)])
    with pytest.raises(WaferCapacityError, match="no non-overlapping layout.*50 PEs.*64 PEs"):
        FAST.run(names, costs, (8, 8))


def test_kernel_without_a_fitting_shape():
    # No number of wafers helps a kernel larger than one: not a WaferCapacityError.
    names, costs = costs_of([shape(2, 2, 10)], [shape(9, 1, 10)])
    with pytest.raises(PlacementError, match="'k1' needs at least a 9x1 region") as err:
        FAST.run(names, costs, (8, 8))
    assert not isinstance(err.value, WaferCapacityError)
    names, costs = costs_of([])
    with pytest.raises(PlacementError, match="'k0' has no region shape"):
        FAST.run(names, costs, (8, 8))
