"""Defect maps and the logical-over-physical remap: reading, drawing, mapping, capacity, extra hops."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from ir.errors import CompilerError, DefectError
from ir.target import load_target
from ir.wkl import HOST, Endpoint, Region, Route
from passes.defects import DefectMap, Remap, plan_remap, remap_report, route_extra_hops
from passes.route import route_hops


def dmap(width: int, height: int, defects: list[tuple[int, int, int]], wafers: int = 1) -> DefectMap:
    return DefectMap((width, height), wafers, frozenset(defects))


def naive_physical(dm: DefectMap, remap: Remap, wafer: int, lx: int, ly: int) -> tuple[int, int]:
    """The mapping rule written out plainly: the ly-th kept row, its lx-th good PE."""
    width, height = dm.physical
    py = [y for y in range(height) if y not in remap.retired_rows[wafer]][ly]
    px = [x for x in range(width) if (wafer, x, py) not in dm.defects][lx]
    return px, py


def best_capacity(dm: DefectMap) -> int:
    """Brute force over every count of spare columns."""
    width, height = dm.physical
    counts = dm.row_counts()
    return max((width - s) * (height - max(int((c > s).sum()) for c in counts)) for s in range(width))


# ---------------------------------------------------------------- reading defect files


def test_parse_skips_blank_lines_and_comments():
    text = "# wafer x y\n\n0 3 4\n1 0 0   # corner\n  0 3 4\n"
    dm = DefectMap.parse(text, "d.txt", (8, 6), wafers=2)
    assert dm.defects == {(0, 3, 4), (1, 0, 0)}
    assert dm.to_json() == [[0, 3, 4], [1, 0, 0]]


def test_from_file_reads_a_file(tmp_path):
    path = tmp_path / "defects.txt"
    path.write_text("0 1 2\n0 2 1\n")
    assert DefectMap.from_file(path, (4, 4), 1).defects == {(0, 1, 2), (0, 2, 1)}


@pytest.mark.parametrize("line, col, message", [
    ("0 1", 4, "expected 'wafer x y', got 2 field(s)"),
    ("0 1 2 3", 7, "expected 'wafer x y', got 4 field(s)"),
    ("0 x 2", 3, "x must be an integer, got 'x'"),
    ("0 1 2.5", 5, "y must be an integer"),
    ("0 8 2", 3, "x 8 is out of range: expected 0..7"),
    ("0 1 -1", 5, "y -1 is out of range"),
    ("2 1 1", 1, "wafer 2 is out of range: expected 0..1"),
])
def test_bad_lines_point_at_file_line_and_column(line, col, message):
    text = f"# header\n0 0 0\n{line}\n"
    with pytest.raises(DefectError) as err:
        DefectMap.parse(text, "d.txt", (8, 6), wafers=2)
    assert isinstance(err.value, CompilerError)
    assert str(err.value).startswith(f"d.txt:3:{col}: error: {message}")
    assert line in str(err.value)  # the caret excerpt shows the offending line


def test_json_round_trip_is_checked():
    dm = DefectMap.random(0.05, 2, (12, 9), wafers=2)
    assert DefectMap.from_json(dm.to_json(), [12, 9], 2) == dm
    with pytest.raises(DefectError, match=r"defect \[1, 3, 9\] lies outside"):
        DefectMap.from_json([[0, 1, 1], [1, 3, 9]], (12, 9), 2)
    with pytest.raises(DefectError, match="malformed defect list"):
        DefectMap.from_json([[0, 1]], (12, 9), 2)


def test_from_file_reports_a_missing_file(tmp_path):
    with pytest.raises(DefectError, match="cannot read defect file"):
        DefectMap.from_file(tmp_path / "nope.txt", (4, 4), 1)


# ---------------------------------------------------------------- random maps


def test_random_maps_are_deterministic_per_seed():
    a = DefectMap.random(0.05, 7, (40, 30), wafers=3)
    assert a == DefectMap.random(0.05, 7, (40, 30), wafers=3)
    assert a != DefectMap.random(0.05, 8, (40, 30), wafers=3)
    assert 0.02 * 3600 < len(a.defects) < 0.08 * 3600
    assert {w for w, _, _ in a.defects} == {0, 1, 2}


def test_random_rate_bounds():
    assert DefectMap.random(0.0, 1, (10, 10), 2).defects == frozenset()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(DefectError, match="defect rate"):
            DefectMap.random(bad, 1, (10, 10), 1)
    with pytest.raises(DefectError, match="seed"):
        DefectMap.random(0.1, -1, (10, 10), 1)


# ---------------------------------------------------------------- the remap


def test_a_row_with_three_defects_is_retired():
    dm = dmap(10, 10, [(0, 2, 4), (0, 5, 4), (0, 9, 4)])
    remap = plan_remap(dm)
    assert remap.spare_cols == 0 and remap.retired_rows == ((4,),)
    assert remap.logical_dims == (10, 9)
    assert remap.to_physical(0, 3, 3) == (3, 3) and remap.to_physical(0, 3, 4) == (3, 5)
    loss = remap.capacity_lost
    assert (loss.physical_pes, loss.logical_pes, loss.lost_pes, loss.fraction) == (100, 90, 10, 0.1)


def test_scattered_defects_use_a_spare_column():
    dm = dmap(10, 10, [(0, 3, y) for y in range(0, 10, 2)])  # one defect in five rows
    remap = plan_remap(dm)
    assert remap.spare_cols == 1 and remap.retired_rows == ((),)
    assert remap.logical_dims == (9, 10)
    assert [remap.to_physical(0, x, 0)[0] for x in range(9)] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert [remap.to_physical(0, x, 1)[0] for x in range(9)] == list(range(9))  # PE 9 unused
    assert remap.capacity_lost.lost_pes == 10


def test_wafers_share_logical_dims_and_a_clean_wafer_retires_its_last_row():
    dm = dmap(6, 5, [(1, 0, 2), (1, 3, 2)], wafers=2)
    remap = plan_remap(dm)
    assert remap.logical_dims == (6, 4)
    assert remap.retired_rows == ((4,), (2,))
    assert remap.capacity_lost.lost_pes == 2 * 6


def test_no_defects_is_the_identity():
    remap = plan_remap(dmap(7, 5, [], wafers=2))
    assert remap.logical_dims == (7, 5) and remap.capacity_lost.lost_pes == 0
    assert all(remap.to_physical(w, x, y) == (x, y)
               for w, x, y in itertools.product(range(2), range(7), range(5)))


def test_no_usable_fabric_is_an_error():
    with pytest.raises(DefectError, match="no usable fabric"):
        plan_remap(dmap(2, 2, [(0, x, y) for x in range(2) for y in range(2)]))


@pytest.mark.parametrize("seed, rate", [(s, r) for s in range(6) for r in (0.02, 0.1, 0.3)])
def test_small_maps_exhaustively(seed, rate):
    dm = DefectMap.random(rate, seed, (9, 7), wafers=2)
    remap = plan_remap(dm)
    width, height = remap.logical_dims
    assert width * height == best_capacity(dm)
    for wafer in range(2):
        grid = [[remap.to_physical(wafer, x, y) for x in range(width)] for y in range(height)]
        points = [p for row in grid for p in row]
        assert len(set(points)) == len(points)                          # injective
        assert not any((wafer, px, py) in dm.defects for px, py in points)
        for y, row in enumerate(grid):
            assert [p[0] for p in row] == sorted({p[0] for p in row})   # increasing along a row
            assert {p[1] for p in row} == {row[0][1]}                    # one physical row
            assert row == [naive_physical(dm, remap, wafer, x, y) for x in range(width)]
        assert [r[0][1] for r in grid] == sorted({r[0][1] for r in grid})


def test_to_physical_rejects_points_off_the_logical_grid():
    remap = plan_remap(dmap(4, 4, [(0, 1, 1)]))
    with pytest.raises(ValueError):
        remap.to_physical(0, 3, 3)
    with pytest.raises(ValueError):
        remap.to_physical(1, 0, 0)


def test_json_is_compact_and_reads_back():
    dm = DefectMap.random(0.05, 3, (30, 20), wafers=2)
    remap = plan_remap(dm)
    data = remap.to_json()
    assert set(data) == {"rule", "physical_dims", "logical_dims", "spare_cols", "retired_rows"}
    assert len(data["retired_rows"]) == 2
    again = Remap.from_json(data, dm)
    assert again.to_json() == data
    assert all(np.array_equal(a, b) for a, b in zip(again.physical_cols, remap.physical_cols))


def test_from_json_rejects_a_remap_that_keeps_a_bad_row():
    dm = dmap(10, 10, [(0, 2, 4), (0, 5, 4), (0, 9, 4)])
    data = plan_remap(dm).to_json() | {"retired_rows": [[9]]}
    with pytest.raises(DefectError, match="keeps a row with 3 defects"):
        Remap.from_json(data, dm)
    with pytest.raises(DefectError, match="malformed remap"):
        Remap.from_json({"spare_cols": 0}, dm)


@pytest.mark.parametrize("rate, max_lost", [(0.001, 0.01), (0.01, 0.03)])
def test_full_size_wse3(rate, max_lost):
    target = load_target("wse3")
    dm = DefectMap.random(rate, 0, target.fabric, wafers=2)
    remap = plan_remap(dm)
    mask = dm.mask()
    width, height = remap.logical_dims
    assert 0 < remap.capacity_lost.fraction < max_lost
    for wafer in range(2):
        cols, rows = remap.physical_cols[wafer], remap.physical_rows[wafer]
        assert cols.shape == (height, width) and rows.shape == (height,)
        assert not mask[wafer][rows[:, None], cols].any()   # no logical PE is defective
        assert (np.diff(cols, axis=1) > 0).all() and (np.diff(rows) > 0).all()
        assert cols.max() < target.fabric_width
        assert mask[wafer][rows].sum(axis=1).max() <= remap.spare_cols


# ---------------------------------------------------------------- extra hops


def pes_of(r: Region) -> list[tuple[int, int]]:
    return [(x, y) for x in range(r.x, r.x + r.w) for y in range(r.y, r.y + r.h)]


def reference_extra(remap: Remap, a: Region, b: Region) -> int:
    """Over every pair of PEs as close logically as route_hops says, the physically nearest."""
    logical = route_hops(a, b)
    physical = []
    for p, q in itertools.product(pes_of(a), pes_of(b)):
        if abs(p[0] - q[0]) + abs(p[1] - q[1]) == logical:
            (px, py), (qx, qy) = remap.to_physical(a.wafer, *p), remap.to_physical(b.wafer, *q)
            physical.append(abs(px - qx) + abs(py - qy))
    return max(0, min(physical) - logical)


def routes_between(regions: list[Region]) -> list[Route]:
    names = [HOST] + [r.kernel for r in regions]
    pairs = [(s, d) for s in names for d in names if s != d]
    return [Route(f"r{i}", 0, Endpoint(s, "t"), Endpoint(d, "t"), 0) for i, (s, d) in enumerate(pairs)]


def test_extra_hops_by_hand():
    dm = dmap(10, 10, [(0, 4, 1), (0, 1, 6), (0, 5, 6), (0, 8, 6)])  # row 6 retired, one spare
    remap = plan_remap(dm)
    assert remap.spare_cols == 1 and remap.retired_rows == ((6,),)
    left, right = Region("l", 0, 0, 0, 2, 3), Region("r", 0, 6, 1, 2, 1)
    # Row 1 has a defect at x=4: it lies between l and r, and between the west edge and r.
    assert route_extra_hops(remap, [left, right], routes_between([left, right])) == {
        "r0": 0, "r1": 1, "r2": 0, "r3": 1, "r4": 1, "r5": 1}
    tall = Region("t", 0, 6, 0, 2, 2)  # shares rows 0 and 1 with l: row 0 is the clean way
    route = Route("a", 0, Endpoint("l", "t"), Endpoint("t", "t"), 5)
    assert route_extra_hops(remap, [left, tall], [route]) == {"a": 0}
    assert remap.extra_hops(0, (1, 1), (6, 1)) == 1
    assert remap.extra_hops(0, (2, 5), (2, 6)) == 1   # across the retired row
    top, below = Region("top", 0, 2, 4, 2, 2), Region("below", 0, 2, 7, 2, 1)
    assert route_extra_hops(remap, [top, below], routes_between([top, below])) == {
        "r0": 0, "r1": 0, "r2": 0, "r3": 1, "r4": 0, "r5": 1}


def test_extra_hops_to_the_west_edge_and_across_wafers():
    dm = dmap(8, 4, [(0, 1, 2), (1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 0, 3)], wafers=2)
    remap = plan_remap(dm)
    assert remap.spare_cols == 1
    a, b = Region("a", 0, 3, 2, 2, 1), Region("b", 1, 2, 0, 1, 4)
    routes = [Route("in", 0, Endpoint(HOST, "t"), Endpoint("a", "t"), 3),
              Route("x", 0, Endpoint("a", "t"), Endpoint("b", "t"), 5),
              Route("out", 0, Endpoint("b", "t"), Endpoint(HOST, "t"), 2)]
    assert route_extra_hops(remap, [a, b], routes) == {"in": 1, "x": 2, "out": 1}


@pytest.mark.parametrize("seed", range(4))
def test_extra_hops_match_the_reference_and_vanish_without_defects(seed):
    rng = np.random.default_rng(seed)
    dm = DefectMap.random(0.08, seed, (14, 12), wafers=2)
    remap = plan_remap(dm)
    width, height = remap.logical_dims
    regions = []
    for i in range(6):
        w, h = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        regions.append(Region(f"k{i}", int(rng.integers(0, 2)), int(rng.integers(0, width - w + 1)),
                              int(rng.integers(0, height - h + 1)), w, h))
    routes = routes_between(regions)
    extra = route_extra_hops(remap, regions, routes)
    assert all(v >= 0 for v in extra.values())
    same_wafer = [(rt.name, regions[int(rt.src.kernel[1:])], regions[int(rt.dst.kernel[1:])])
                  for rt in routes if HOST not in (rt.src.kernel, rt.dst.kernel)]
    for name, a, b in same_wafer:
        if a.wafer == b.wafer:
            assert extra[name] == reference_extra(remap, a, b), name
    clean = plan_remap(dmap(14, 12, [], wafers=2))
    assert set(route_extra_hops(clean, regions, routes).values()) == {0}


def test_unknown_route_kernel_is_an_error():
    remap = plan_remap(dmap(4, 4, []))
    route = Route("r0", 0, Endpoint("ghost", "t"), Endpoint(HOST, "t"), 0)
    with pytest.raises(CompilerError, match="ghost"):
        route_extra_hops(remap, [], [route])


def test_report_summarises_capacity_and_hops():
    dm = dmap(10, 10, [(0, 2, 4), (0, 5, 4), (0, 9, 4)])
    report = remap_report(dm, plan_remap(dm), {"r0": 2, "r1": 0})
    assert report == {"defects": 3, "physical_dims": [10, 10], "logical_dims": [10, 9],
                      "spare_cols": 0, "retired_rows": [1], "capacity_lost_pes": 10,
                      "capacity_lost_fraction": 0.1, "extra_hops_total": 2, "extra_hops_max": 2}
