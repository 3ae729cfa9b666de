"""route(): hop counts between placed regions, colours for overlapping routes, host endpoints."""
from __future__ import annotations

import pytest

from ir.errors import PlacementError
from ir.wkl import HOST, Endpoint, Region
from passes.route import ColorConflict, route, route_hops

A = Region("a", 0, 0, 0, 2, 4)    # columns 0-1, rows 0-3
B = Region("b", 0, 2, 0, 1, 2)    # touches A on its east side
C = Region("c", 0, 5, 6, 2, 2)    # columns 5-6, rows 6-7
D = Region("d", 0, 10, 10, 2, 2)  # far from the others
E = Region("e", 0, 12, 10, 2, 2)  # touches D
REGIONS = [A, B, C, D, E]


def edge(src: str, dst: str, nbytes: int = 64) -> tuple[Endpoint, Endpoint, int]:
    return Endpoint(src, "t"), Endpoint(dst, "t"), nbytes


def test_hops_between_regions():
    assert route_hops(A, B) == 1        # touching regions are one link apart
    assert route_hops(A, C) == 4 + 3    # nearest PEs (1, 3) and (5, 6)
    assert route_hops(C, A) == 7
    assert route_hops(A, A) == 0


def test_host_endpoints_sit_on_the_west_edge():
    result = route(REGIONS, [edge(HOST, "a"), edge("b", HOST), edge("d", HOST)], colors=24)
    assert [r.hops for r in result.routes] == [0, 2, 10]


def test_routes_are_named_in_edge_order_and_keep_their_endpoints():
    edges = [edge("a", "b"), edge("b", "c"), edge(HOST, "a")]
    routes = route(REGIONS, edges, colors=24).routes
    assert [r.name for r in routes] == ["r0", "r1", "r2"]
    assert [(r.src, r.dst) for r in routes] == [(s, d) for s, d, _ in edges]
    assert [r.hops for r in routes] == [1, 3 + 5, 0]  # b (2, 1) to c (5, 6)


def test_overlapping_routes_get_different_colours():
    # host->a, a->b and a->c all cover A; d->e is far away and may reuse colour 0.
    edges = [edge(HOST, "a"), edge("a", "b"), edge("a", "c"), edge("d", "e")]
    result = route(REGIONS, edges, colors=24)
    assert [r.color for r in result.routes] == [0, 1, 2, 0]
    assert result.color_conflicts == []


def test_colours_are_reused_round_robin_and_recorded_when_they_run_out():
    edges = [edge(HOST, "a"), edge("a", "b"), edge("a", "c"), edge(HOST, "b")]
    result = route(REGIONS, edges, colors=2)
    assert [r.color for r in result.routes] == [0, 1, 0, 1]
    assert result.color_conflicts == [ColorConflict("r2", 0, ("r0",)),
                                      ColorConflict("r3", 1, ("r1",))]


def test_routes_between_wafers_leave_and_enter_by_the_west_edge():
    far = Region("f", 1, 3, 0, 2, 2)
    result = route([C, far], [edge("c", "f")], colors=4)
    assert result.routes[0].hops == 5 + 3


def test_unknown_kernel_is_a_placement_error():
    with pytest.raises(PlacementError, match="'nope.t' names kernel 'nope'"):
        route(REGIONS, [edge("a", "nope")], colors=4)
