"""Multi-wafer split: the water-filling bound, the lower bound and its error, and the DP split
(contiguous, balanced, checked against brute force, links as the tie-break)."""
from __future__ import annotations

import itertools
import math
import random

import pytest

from passes.serpentine import Band, ComputeDemand, ShapeSearch, bands_of
from passes.wafer_split import (BOUND_TOLERANCE, BandSplitter, merged, real_water_fill,
                                split_bands, too_few_wafers, wafer_units, water_fill,
                                wafers_lower_bound)
from tests.passes.test_wafer_place import TARGET, synthetic_model

# ---------------------------------------------------------------- water filling


def test_water_fill_shares_pes_in_proportion_to_work():
    # 100 PEs, no memory pressure: stage = total work / PEs.
    demands = [(ComputeDemand(300.0, 1, None), 1), (ComputeDemand(100.0, 1, None), 2)]
    assert water_fill(demands, 100) == pytest.approx(500 / 100)


def test_water_fill_keeps_memory_minima():
    # The light kernel needs 60 PEs for its memory; the heavy one gets the other 40.
    demands = [(ComputeDemand(10.0, 60, None), 1), (ComputeDemand(400.0, 1, None), 1)]
    assert water_fill(demands, 100) == pytest.approx(400 / 40)


def test_water_fill_respects_useful_pes_and_memory():
    # A vector kernel cannot use more than 4 PEs: its floor is 100 / 4 = 25.
    assert water_fill([(ComputeDemand(100.0, 1, 4), 1)], 1000) == pytest.approx(25)
    assert water_fill([(ComputeDemand(1.0, 70, None), 2)], 100) is None


def test_water_fill_matches_a_bisection():
    rng = random.Random(7)
    demands = [(ComputeDemand(rng.uniform(0, 500), rng.randint(1, 30), None), rng.randint(1, 3))
               for _ in range(12)]
    pes = 900
    lo, hi = 1e-6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        need = sum(max(d.min_pes, d.work / mid) * n for d, n in demands)
        lo, hi = (mid, hi) if need > pes else (lo, mid)
    assert water_fill(demands, pes) == pytest.approx(hi, rel=1e-6)


@pytest.mark.parametrize("wafers", [1, 2])
def test_real_water_fill_matches_every_shape_by_brute_force(wafers):
    kernels, models = synthetic_model(layers=3)
    fabric = (24, 20)
    search = ShapeSearch(models, fabric[1])

    def least_area(m, stage):
        return min((w * h for w in range(1, 25) for h in range(1, 21)
                    if (c := m.cost(w, h)) is not None and c.cycles <= stage), default=math.inf)

    def fits(stage):
        return sum(least_area(m, stage) for m in models) <= fabric[0] * fabric[1] * wafers
    stages = sorted({c.cycles for m in models for w in range(1, 25) for h in range(1, 21)
                     if (c := m.cost(w, h)) is not None})
    exact = next(t for t in stages if fits(t))
    found = real_water_fill(search, fabric, wafers, high=stages[-1])
    assert exact <= found <= exact * (1 + BOUND_TOLERANCE) + 0.5
    assert fits(found)


# ---------------------------------------------------------------- wafer counts


def test_lower_bound_and_error_message():
    kernels, models = synthetic_model(layers=9)
    memory = sum(m.min_pes for m in models)
    assert wafers_lower_bound(models, 640) == -(-memory // 640) == 2
    error = too_few_wafers(models, (32, 20), 1)
    usable = TARGET.usable_bytes_per_pe
    assert f"{memory * usable:,} bytes of SRAM" in error.message
    assert f"one 32x20 wafer holds {640 * usable:,} bytes" in error.message
    assert "at least 2 wafers" in error.message
    assert "use 2 wafers or more" in error.hint


# ---------------------------------------------------------------- the split


def layered(works: list[int], pes: int = 1) -> tuple[list[Band], list]:
    """One single-kernel band per work value, each a distinct layer."""
    kernels, models = synthetic_model(layers=len(works), layer_kernels=((1, pes),), pre=(0, 1),
                                      post=((0, 1),))
    for model, work in zip(models[1:-1], works):
        model.flops, model.signature = work * TARGET.simd_f16, ("layer", work)
    bands = [Band((i,), (models[i].signature,), kernels[i].layer) for i in range(len(models))]
    return bands, models


def wafer_stages(splitter: BandSplitter, starts: list[int]) -> list[float]:
    stops = starts[1:] + [len(splitter.bands)]
    return [splitter.stage(a, b) for a, b in zip(starts, stops)]


def test_split_is_contiguous_and_balanced():
    bands, models = layered([100] * 8)
    splitter = BandSplitter(bands, models, wafer_pes=100, link_cycles=[0] * (len(bands) + 1))
    starts = split_bands(splitter, 2)
    assert starts[0] == 0 and starts == sorted(starts)
    stages = wafer_stages(splitter, starts)
    assert max(stages) == pytest.approx(min(stages), rel=0.3)  # 4 layers each (+ tiny ends)


def test_split_minimax_matches_brute_force():
    rng = random.Random(3)
    for _ in range(5):
        bands, models = layered([rng.randint(10, 200) for _ in range(7)])
        splitter = BandSplitter(bands, models, 100, [0] * (len(bands) + 1))
        n = len(bands)
        for wafers in (2, 3):
            best = min(max(wafer_stages(splitter, [0, *cuts]))
                       for cuts in itertools.combinations(range(1, n), wafers - 1))
            starts = split_bands(splitter, wafers)
            assert max(wafer_stages(splitter, starts)) == pytest.approx(best)


def test_split_respects_memory():
    bands, models = layered([50] * 6, pes=34)  # 34 PEs per layer: at most 2 layers per wafer
    n = len(bands)
    splitter = BandSplitter(bands, models, wafer_pes=100, link_cycles=[0] * (n + 1))
    starts = split_bands(splitter, 3)
    assert all(splitter.memory(a, b) <= 100 for a, b in zip(starts, starts[1:] + [n]))
    assert split_bands(splitter, 2) is None
    assert split_bands(splitter, 3, fill=0.6) is None  # 60 PEs per wafer: one layer each


def test_links_break_ties():
    # [embed, 100, 0, 100, head]: cutting before the empty layer or after it balances the two
    # wafers equally, so the cheaper link decides.
    bands, models = layered([100, 0, 100])
    for costly, other in ((2, 3), (3, 2)):
        links = [0] * (len(bands) + 1)
        links[costly] = 1000
        assert split_bands(BandSplitter(bands, models, 100, links), 2) == [0, other]


# ---------------------------------------------------------------- units


def test_layers_are_cut_into_kernels_and_merge_back_into_their_bands():
    layers = [None] + [0] * 4 + [1] * 20 + [None, None]
    kinds = [9] + [1, 2, 3, 4] + list(range(20)) + [7, 8]
    bands = bands_of(layers, kinds)
    units = wafer_units(bands)
    assert [len(u.kernels) for u in units] == [1] * 25 + [2]  # the head's band stays whole
    assert [u.layer for u in units[:3]] == [None, 0, 0]
    assert merged(units) == bands  # layer 1's 20 kernels: bands of 16 and 4 again
    # A wafer starting inside layer 1 gets what is left of it as one band.
    assert [b.kernels for b in merged(units[10:])] == [tuple(range(10, 25)), (25, 26)]
