"""WaferPlacementPass: valid regions on one or more wafers, stamping, determinism, the wafer count
and its error, the latency layout, and the quality figures; on synthetic cost curves and on a
tiny real model."""
from __future__ import annotations

import math
from collections import defaultdict

import pytest

from ir.errors import PlacementError
from ir.graph import Value
from ir.kernels import Kernel, ShapeCost
from ir.target import load_target
from ir.types import DType, TensorType
from passes.serpentine import ShapeSearch, bands_of, coupled, paired, serpentine_layout
from passes.wafer_place import WaferPlacementPass, _moves, hop_distance

TARGET = load_target("toy")  # 4 fp16 lanes, 40 KB usable SRAM per PE
FAST = dict(work_limit=0.05, time_limit_s=60.0)  # a little deterministic search; never timed out


class SyntheticModel:
    """A KernelCostModel stand-in with a cost curve like a GEMV's: compute falls with the area,
    data movement grows with the sides, and a shape fits SRAM when it has `min_pes` PEs."""

    def __init__(self, kernel: Kernel, work: int, min_pes: int, max_useful: int | None = None):
        self.kernel = kernel
        self.target = TARGET
        self.work = work
        self.flops = work * TARGET.simd_f16
        self.min_pes = min_pes
        self.param_bytes = self.resident_bytes = min_pes * TARGET.usable_bytes_per_pe
        self.max_useful_pes = max_useful
        self.signature = (kernel.kind, work, min_pes, max_useful)
        self.calls = 0

    def cost(self, w: int, h: int) -> ShapeCost | None:
        self.calls += 1
        if w * h < self.min_pes:
            return None
        useful = w * h if self.max_useful_pes is None else min(w * h, self.max_useful_pes)
        return ShapeCost(w, h, 0, math.ceil(self.work / useful) + 2 * w + h + 8)


def synthetic_model(layers: int = 4, layer_kernels=((4000, 20), (1000, 6), (200, 1), (8000, 40)),
                    pre=(0, 60), post=((6000, 30),)) -> tuple[list[Kernel], list[SyntheticModel]]:
    """An embedding-like kernel (work, memory), `layers` identical layers of `layer_kernels`,
    and the kernels after the last layer; each kernel reads the one before."""
    specs = [("embed", None, *pre)]
    for layer in range(layers):
        specs += [(f"l{layer}k{j}", layer, work, pes)
                  for j, (work, pes) in enumerate(layer_kernels)]
    specs += [(f"head{j}", None, work, pes) for j, (work, pes) in enumerate(post)]
    kernels, models, prev = [], [], Value("ids", TensorType((1,), DType.i64))
    for name, layer, work, pes in specs:
        out = Value(f"{name}_out", TensorType((1, 64), DType.f16))
        kernel = Kernel(name, "linear", [], [prev], [], [out], layer=layer)
        kernels.append(kernel)
        models.append(SyntheticModel(kernel, work, pes))
        prev = out
    return kernels, models


class WideModel(SyntheticModel):
    """A kernel that wants width: its cycles also count `spread` over the width (an input that
    runs down the rows, split across fewer columns the narrower the region)."""

    def __init__(self, kernel, work: int, min_pes: int, spread: int):
        super().__init__(kernel, work, min_pes)
        self.spread = spread
        self.signature += (spread,)

    def cost(self, w: int, h: int) -> ShapeCost | None:
        cost = super().cost(w, h)
        return cost and ShapeCost(w, h, 0, cost.cycles + self.spread // w)


def wide_last_model(layers: int) -> tuple[list[Kernel], list[SyntheticModel]]:
    """Layers of three kernels whose last runs much faster wide (see WideModel)."""
    kernels, models = synthetic_model(layers, layer_kernels=((4000, 20), (1000, 6), (8000, 40)))
    return kernels, [WideModel(k, m.work, m.min_pes, 60000) if k.name.endswith("k2") else m
                     for k, m in zip(kernels, models)]


class TileModel(SyntheticModel):
    """Cycles are tile ceilings alone: ceil(cols / w) * ceil(rows / h)."""

    def __init__(self, kernel, rows: int, cols: int):
        super().__init__(kernel, work=rows * cols, min_pes=1)
        self.rows, self.cols = rows, cols
        self.signature += (rows, cols)

    def cost(self, w: int, h: int) -> ShapeCost | None:
        return ShapeCost(w, h, 0, math.ceil(self.cols / w) * math.ceil(self.rows / h))


def tiled_couple():
    """Four layers of five stack kernels 34 tiles across and a last kernel 86 across: at 100
    cycles a stack kernel needs 24 rows at any width from 17 to 33, the last kernel 12 rows at
    width 86 and 24 at 43."""
    kernels, models = synthetic_model(layers=4, layer_kernels=((1, 1),) * 6, post=())
    models = [m if k.layer is None else TileModel(k, 1200, 86 if k.name.endswith("k5") else 34)
              for k, m in zip(kernels, models)]
    search = ShapeSearch(models, 150)
    couple = next(b for b in coupled(paired(bands_of([k.layer for k in kernels], search.kind)))
                  if b.couple)
    return kernels, models, search, couple


def assert_valid(placement, kernels, models, fabric) -> None:
    width, height = fabric
    assert [r.kernel for r in placement.regions] == [k.name for k in kernels]
    cells = defaultdict(set)
    for r, m in zip(placement.regions, models):
        assert 0 <= r.wafer < placement.wafers
        assert 0 <= r.x and r.x + r.w <= width and 0 <= r.y and r.y + r.h <= height
        assert m.cost(r.w, r.h) is not None, f"{r.kernel} overflows SRAM at {r.w}x{r.h}"
        for dx in range(r.w):
            for dy in range(r.h):
                assert (r.x + dx, r.y + dy) not in cells[r.wafer], f"{r.kernel} overlaps"
                cells[r.wafer].add((r.x + dx, r.y + dy))


def relative_layout(regions) -> list[tuple[int, int, int, int]]:
    """A layer's rectangles relative to their bounding box, the same whichever way it runs."""
    x0, y0 = min(r.x for r in regions), min(r.y for r in regions)
    y1 = max(r.y + r.h for r in regions)
    down = [(r.x - x0, r.y - y0, r.w, r.h) for r in regions]
    up = [(r.x - x0, y1 - r.y - r.h, r.w, r.h) for r in regions]
    return min(down, up)


# ---------------------------------------------------------------- one wafer


def test_regions_are_valid_and_in_order():
    kernels, models = synthetic_model()
    placement = WaferPlacementPass((48, 32), **FAST).run(kernels, models)
    assert placement.wafers == 1
    assert_valid(placement, kernels, models, (48, 32))


def test_identical_layers_get_identical_layouts():
    kernels, models = synthetic_model(layers=6)
    placement = WaferPlacementPass((64, 32), **FAST).run(kernels, models)
    by_layer = defaultdict(list)
    for k, r in zip(kernels, placement.regions):
        if k.layer is not None:
            by_layer[k.layer].append(r)
    # Bands of equal width (equal boxes) share one refined layout (stamping), mirrored for the
    # bands that run up; a strip's spare columns may widen its last band.
    by_width = defaultdict(set)
    for rs in by_layer.values():
        by_width[max(r.x + r.w for r in rs) - min(r.x for r in rs)].add(tuple(relative_layout(rs)))
    assert len(by_width) <= 2
    assert all(len(layouts) == 1 for layouts in by_width.values())


def test_same_seed_same_placement():
    kernels, models = synthetic_model(layers=5)
    first = WaferPlacementPass((48, 32), seed=3, **FAST).run(kernels, models)
    again = WaferPlacementPass((48, 32), seed=3, **FAST).run(kernels, models)
    assert first.regions == again.regions


def test_quality_figures():
    kernels, models = synthetic_model()
    placement = WaferPlacementPass((48, 32), **FAST).run(kernels, models)
    real = [m.cost(r.w, r.h).cycles for m, r in zip(models, placement.regions)]
    assert placement.bottleneck_cycles == max(real)
    assert placement.bottleneck_kernel == placement.regions[real.index(max(real))].kernel
    assert placement.ideal_stage_cycles > 0
    assert placement.bottleneck_ratio_to_ideal >= 1.0
    assert placement.bottleneck_ratio_to_ideal == pytest.approx(
        placement.bottleneck_stage_cycles / placement.ideal_stage_cycles)
    # The real-model bound is no higher than the placement, and (tile ceilings aside) no lower
    # than the compute-only one, which it extends with data movement.
    assert placement.ideal_stage_cycles <= placement.ideal_real_stage_cycles <= max(real)
    assert placement.bottleneck_ratio_to_ideal_real == pytest.approx(
        max(real) / placement.ideal_real_stage_cycles)
    assert placement.hop_distance == hop_distance(placement.regions) > 0
    assert placement.wafers_lower_bound == 1


def test_latency_layout_has_shorter_hops():
    # Cheap data movement: strips cost little throughput but shorten every layer's column.
    kernels, models = synthetic_model(layers=8)
    throughput = WaferPlacementPass((96, 96), **FAST).run(kernels, models)
    latency = WaferPlacementPass((96, 96), layout="latency", latency_slack=0.25,
                                 **FAST).run(kernels, models)
    assert_valid(latency, kernels, models, (96, 96))
    assert latency.hop_distance < throughput.hop_distance
    assert latency.bottleneck_cycles <= throughput.bottleneck_cycles * 1.25


def test_throughput_packs_couples_in_columns_where_that_is_faster_and_latency_does_not():
    kernels, models, search, _ = tiled_couple()
    bands = coupled(paired(bands_of([k.layer for k in kernels], search.kind)))
    packed = serpentine_layout(search, bands, (120, 150), 1, columns=True)
    throughput = WaferPlacementPass((120, 150), **FAST).run(kernels, models)
    assert_valid(throughput, kernels, models, (120, 150))
    assert throughput.bottleneck_cycles == packed.stage.real
    latency = WaferPlacementPass((120, 150), layout="latency", **FAST).run(kernels, models)
    assert latency.bottleneck_cycles > throughput.bottleneck_cycles


# ---------------------------------------------------------------- several wafers


def test_kernels_split_across_wafers_in_order():
    kernels, models = synthetic_model(layers=9)
    memory = sum(m.min_pes for m in models)
    fabric = (32, 20)  # 640 PEs: the layers need two wafers
    assert 640 < memory <= 1280
    placement = WaferPlacementPass(fabric, **FAST).run(kernels, models)
    assert placement.wafers == placement.wafers_lower_bound == 2
    assert_valid(placement, kernels, models, fabric)
    order = [r.wafer for r in placement.regions]
    assert order == sorted(order) and order[0] == 0 and order[-1] == 1


def test_a_wafer_may_end_inside_a_layer_where_that_balances_the_wafers():
    # Three layers on two wafers: whole layers put two on one wafer; the balance is 1.5 each.
    kernels, models = synthetic_model(layers=3, pre=(0, 1), post=())
    fabric = (24, 16)
    placement = WaferPlacementPass(fabric, wafers=2, **FAST).run(kernels, models)
    assert_valid(placement, kernels, models, fabric)
    wafers_of_layer = defaultdict(set)
    for k, r in zip(kernels, placement.regions):
        wafers_of_layer[k.layer].add(r.wafer)
    assert wafers_of_layer[1] == {0, 1}


def test_paired_layers_split_across_wafers_stay_valid_and_in_order():
    kernels, models = wide_last_model(layers=10)
    fabric = (40, 40)
    placement = WaferPlacementPass(fabric, wafers=2, **FAST).run(kernels, models)
    assert_valid(placement, kernels, models, fabric)
    lasts = {k.layer: r for k, r in zip(kernels, placement.regions) if k.name.endswith("k2")}
    firsts = {k.layer: r for k, r in zip(kernels, placement.regions) if k.name.endswith("k0")}
    assert any(lasts[n].w > firsts[n].w for n in lasts), "no layers were paired"
    assert {r.wafer for r in placement.regions} == {0, 1}


def test_layers_with_more_kernels_than_a_wafer_has_rows_still_place():
    # Ten kernels a layer, 2 PEs each, on wafers 6, 4 and 2 rows tall: a layer's kernels cannot
    # all stack in one column, so its band is cut (before, 12x6 took 4 wafers and 8x4 took 6),
    # and no more strips are tried than the wafer has rows (40x2 divided by zero).
    kernels, models = synthetic_model(layers=2, layer_kernels=((300, 2),) * 10, pre=(0, 2),
                                      post=((300, 2),))
    for fabric, wafers in (((12, 6), 1), ((8, 4), 2), ((40, 2), 1)):
        placement = WaferPlacementPass(fabric, **FAST).run(kernels, models)
        assert placement.wafers == placement.wafers_lower_bound == wafers
        assert_valid(placement, kernels, models, fabric)


def test_too_few_wafers_states_the_numbers():
    kernels, models = synthetic_model(layers=9)
    memory = sum(m.min_pes for m in models)
    with pytest.raises(PlacementError) as caught:
        WaferPlacementPass((32, 20), wafers=1, **FAST).run(kernels, models)
    message = str(caught.value)
    usable = TARGET.usable_bytes_per_pe
    assert f"{memory * usable:,} bytes" in message           # what the weights need
    assert f"{32 * 20 * usable:,} bytes" in message          # what one wafer holds
    assert "at least 2 wafers" in message


def test_a_kernel_larger_than_a_wafer_is_named():
    kernels, models = synthetic_model(layers=2, post=((6000, 30), (100, 700)))
    with pytest.raises(PlacementError, match="kernel 'head1' fits no 32x20 wafer: its weights "
                                             "alone need 700 PEs"):
        WaferPlacementPass((32, 20), **FAST).run(kernels, models)


def test_a_count_that_does_not_pack_says_what_does():
    # Layers of 15 PEs at most 4 wide: on a 17x4 wafer each takes a 4x4 column, so four of them,
    # the embedding's and the head's columns need 18 columns, though 65 PEs fit 68 by count.
    kernels, models = synthetic_model(layers=4, layer_kernels=((100, 15),), pre=(0, 1),
                                      post=((100, 4),))
    for m in models:
        m.cost = (lambda m: lambda w, h: ShapeCost(w, h, 0, 10)
                  if w * h >= m.min_pes and w <= 4 else None)(m)
    with pytest.raises(PlacementError) as caught:
        WaferPlacementPass((17, 4), wafers=1, **FAST).run(kernels, models)
    assert "no layout on 1 17x4 wafer" in str(caught.value)
    assert "fits it on 2 wafers" in str(caught.value)


def test_a_given_wafer_count_is_used():
    kernels, models = synthetic_model(layers=9)
    placement = WaferPlacementPass((32, 20), wafers=3, **FAST).run(kernels, models)
    assert placement.wafers == 3
    assert_valid(placement, kernels, models, (32, 20))


def test_rebalancing_moves_one_band_along_the_wafers():
    # Wafers start at bands 0, 3, 5 of 8: moving a band off wafer 1 to wafer 0 or to wafer 2,
    # and off wafer 2 to wafer 0 (wafer 1 hands one on) or to wafer 1.
    assert _moves([0, 3, 5], 1, 8) == [[0, 4, 5], [0, 3, 4]]
    assert _moves([0, 3, 5], 2, 8) == [[0, 4, 6], [0, 3, 6]]
    assert _moves([0, 1, 2], 1, 3) == []  # a wafer may not be left empty


# ---------------------------------------------------------------- a real (tiny) model


def test_tiny_real_model_places_with_real_costs():
    from passes.cost import KernelCostModel
    from passes.partition import PartitionPass
    from tests.builders import GraphBuilder

    b = GraphBuilder("tiny")
    x = b.input("x", 1, 32)
    for layer in range(3):
        up = b.param(f"w_up{layer}", 64, 32)
        down = b.param(f"w_down{layer}", 32, 64)
        h = b.op("linear", x, up, module=f"model.layers.{layer}.mlp.up_proj")
        h = b.op("relu", h, module=f"model.layers.{layer}.mlp.act")
        x = b.op("linear", h, down, module=f"model.layers.{layer}.mlp.down_proj")
    head = b.param("w_head", 48, 32)
    out = b.op("linear", x, head, module="lm_head")
    kg = PartitionPass().run(b.done(out))
    cache: dict = {}
    models = [KernelCostModel(k, TARGET, cache) for k in kg.kernels]
    placement = WaferPlacementPass((16, 16), **FAST).run(kg.kernels, models)
    assert_valid(placement, kg.kernels, models, (16, 16))
    assert placement.bottleneck_cycles == max(
        m.cost(r.w, r.h).cycles for m, r in zip(models, placement.regions))
