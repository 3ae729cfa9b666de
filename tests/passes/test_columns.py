"""Column packing against hand-checked boxes and a brute-force check of what it returns."""
from __future__ import annotations

import math

import pytest

from passes.columns import ColumnPacking, even_widths, pack_columns


def tiled(rows: int, cols: int, stage: int):
    """A tile-ceiling kernel: ceil(cols / w) * ceil(rows / h) cycles; its least height within
    `stage` at width w."""
    def height(w: int) -> int | None:
        per_column = stage // math.ceil(cols / w)
        return math.ceil(rows / per_column) if per_column else None
    return height


def assert_packs(packing: ColumnPacking, box, kinds, height) -> None:
    width, rows = box
    assert sum(packing.widths) <= width and len(packing.columns) == len(kinds)
    load = [0] * len(packing.widths)
    for i, (c, h) in enumerate(zip(packing.columns, packing.heights)):
        assert h == height(i, packing.widths[c])
        load[c] += h
    assert max(load) <= rows


def test_even_widths_split_the_width_wider_first():
    assert even_widths(86, 5) == (18, 17, 17, 17, 17)
    assert even_widths(12, 4) == (3, 3, 3, 3) and sum(even_widths(101, 7)) == 101


def test_more_columns_than_layers_hold_kernels_that_need_no_more_width():
    # Twenty kernels, 34 columns of tiles each: two tiles across at any width from 17 to 33,
    # so 24 rows within 100 cycles. Four columns (one per layer of five kernels) need 120 rows;
    # five columns of 17 or 18 need 96.
    heights = [tiled(1200, 34, 100)] * 20
    kinds = ["k"] * 20

    def height(i: int, w: int) -> int | None:
        return heights[i](w)
    assert pack_columns((86, 119), kinds, height, fewest=4) == pack_columns((86, 96), kinds, height, fewest=4)
    packing = pack_columns((86, 96), kinds, height, fewest=4)
    assert packing.widths == (18, 17, 17, 17, 17) and packing.heights == (24,) * 20
    assert_packs(packing, (86, 96), kinds, height)
    assert pack_columns((86, 95), kinds, height, fewest=4) is None


def test_kernels_of_different_kinds_share_columns():
    # Big kernels fit one to a column and the small ones fill what they leave.
    size = {"big": (70, 8), "small": (20, 8)}  # (rows at any width, columns needed)

    def height(i: int, w: int) -> int | None:
        rows, least = size[kinds[i]]
        return rows if w >= least else None
    kinds = ["big", "small", "small", "big", "small", "big", "small", "small", "small"]
    packing = pack_columns((24, 130), kinds, height)
    assert_packs(packing, (24, 130), kinds, height)
    assert packing.widths == (8, 8, 8)
    assert len({packing.columns[i] for i, k in enumerate(kinds) if k == "big"}) == 3


def test_columns_of_unequal_widths_are_opened_where_no_even_split_packs():
    # Four kernels that need 30 columns (200 rows each) and six whose area is the same at any
    # width. No even split of 54 gives a column of 30 and room beside it; 30 and 24 do.
    def height(i: int, w: int) -> int | None:
        if kinds[i] == "wide":
            return 200 if w >= 30 else None
        return math.ceil(1200 / w)
    kinds = ["wide"] * 4 + ["narrow"] * 6
    packing = pack_columns((54, 800), kinds, height)
    assert_packs(packing, (54, 800), kinds, height)
    assert 30 in packing.widths
    assert packing.widths != even_widths(sum(packing.widths), len(packing.widths))


def test_restarts_only_add_searches_and_repeat_themselves():
    # 86 by 96 holds twenty items of 24 rows at 17 or 18 columns and nothing wider: opened
    # columns must be 17 or 18 wide, whatever order the restarts try widths in.
    kinds = ["k"] * 20

    def height(i: int, w: int) -> int | None:
        return tiled(1200, 34, 100)(w)
    for box in ((86, 96), (86, 100), (90, 97)):
        once = pack_columns(box, kinds, height, fewest=6)
        many = pack_columns(box, kinds, height, fewest=6, restarts=5)
        if once is not None:
            assert many == once
        assert many == pack_columns(box, kinds, height, fewest=6, restarts=5)
        if many is not None:
            assert_packs(many, box, kinds, height)


def test_nothing_is_returned_when_the_area_is_short_or_an_item_fits_no_column():
    def height(i: int, w: int) -> int | None:
        return 10 if w >= 8 else None
    assert pack_columns((32, 30), ["a"] * 13, height) is None  # 13 items, at most 4 x 3 places
    assert pack_columns((32, 30), ["a"] * 12, height) is not None
    assert pack_columns((7, 30), ["a"], height) is None  # no column is wide enough


def test_each_kind_is_asked_its_height_once_per_width_and_the_answer_is_deterministic():
    asked = []

    def height(i: int, w: int) -> int | None:
        asked.append((i, w))
        return 3 + i % 3
    kinds = [i % 3 for i in range(12)]
    first = pack_columns((40, 20), kinds, height)
    assert len(asked) == len(set(asked)) and {i for i, _ in asked} <= {0, 1, 2}
    assert pack_columns((40, 20), kinds, height) == first
    assert_packs(first, (40, 20), kinds, height)


@pytest.mark.parametrize("seed", range(6))
def test_whatever_it_returns_is_a_packing(seed):
    kinds = [(seed * 7 + i * 3) % 4 for i in range(10)]

    def height(i: int, w: int) -> int | None:
        k = kinds[i]
        return math.ceil((40 + 17 * k) / max(1, w - k)) if w > k else None
    for box in ((24, 40), (30, 25), (17, 60)):
        packing = pack_columns(box, kinds, height)
        if packing is not None:
            assert_packs(packing, box, kinds, height)
