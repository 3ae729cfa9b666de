"""Routing: a hop count and a fabric colour for every tensor edge between placed regions.

requires: one `Region` per kernel named by an edge endpoint (host endpoints need none), and the
          number of routable colours of the target (at least 1).
ensures:  one `Route` per edge, named r0, r1, ... in edge order, with
          * hops: the Manhattan distance between the nearest PEs of the two regions (regions that
            touch are 1 hop apart); a host endpoint sits on the fabric's west edge (x = 0), as does
            a wafer's link to another wafer;
          * colour: routes whose footprints (the rectangle spanned by the two regions, per wafer)
            overlap get different colours while `colors` last; past that, colours are reused
            round-robin and every such clash is listed in `RoutingResult.color_conflicts`.

Colouring is greedy in edge order, so the result is deterministic. The bytes of an edge do not
affect routing; they are carried for the cost of the transfer.
"""
from __future__ import annotations

from dataclasses import dataclass

from ir.errors import PlacementError
from ir.wkl import HOST, Endpoint, Region, Route

Edge = tuple[Endpoint, Endpoint, int]  # (source, destination, bytes)


@dataclass(frozen=True)
class Box:
    """An inclusive rectangle of PEs on one wafer."""

    wafer: int
    x0: int
    y0: int
    x1: int
    y1: int

    def overlaps(self, other: "Box") -> bool:
        return (self.wafer == other.wafer and self.x0 <= other.x1 and other.x0 <= self.x1
                and self.y0 <= other.y1 and other.y0 <= self.y1)


@dataclass(frozen=True)
class ColorConflict:
    """A route that had to share its colour with routes whose footprints overlap it."""

    route: str
    color: int
    shared_with: tuple[str, ...]


@dataclass(frozen=True)
class RoutingResult:
    routes: list[Route]
    color_conflicts: list[ColorConflict]


def route(regions: list[Region], edges: list[Edge], colors: int) -> RoutingResult:
    """One Route per edge, in edge order, with its hops and a colour out of `colors`."""
    if colors < 1:
        raise ValueError(f"routing needs at least one colour, got {colors}")
    by_kernel = {r.kernel: r for r in regions}
    ends = [(_region_of(src, by_kernel), _region_of(dst, by_kernel)) for src, dst, _ in edges]
    names = [f"r{i}" for i in range(len(edges))]
    footprints = [route_footprint(a, b) for a, b in ends]
    palette, conflicts = assign_colors(names, footprints, colors)
    routes = [Route(name, color, src, dst, route_hops(a, b))
              for name, color, (src, dst, _), (a, b) in zip(names, palette, edges, ends)]
    return RoutingResult(routes, conflicts)


def _region_of(end: Endpoint, by_kernel: dict[str, Region]) -> Region | None:
    """The endpoint's region, or None for the host."""
    if end.kernel == HOST:
        return None
    if end.kernel not in by_kernel:
        raise PlacementError(f"route endpoint '{end}' names kernel '{end.kernel}', "
                             f"which has no placed region")
    return by_kernel[end.kernel]


# ---------------------------------------------------------------- hops


def route_hops(src: Region | None, dst: Region | None) -> int:
    """Links a tensor crosses between two regions (None is the host, on the west edge)."""
    if src is None or dst is None:
        return _west_edge_hops(src or dst)
    if src.wafer != dst.wafer:
        # Out through the source wafer's west edge, in through the destination's.
        return src.x + dst.x
    return _axis_gap(src.x, src.w, dst.x, dst.w) + _axis_gap(src.y, src.h, dst.y, dst.h)


def _west_edge_hops(region: Region | None) -> int:
    return 0 if region is None else region.x


def _axis_gap(a: int, a_len: int, b: int, b_len: int) -> int:
    """Distance along one axis between the nearest PEs of two spans (0 if they share a line)."""
    return max(0, b - (a + a_len - 1), a - (b + b_len - 1))


# ---------------------------------------------------------------- colours


def route_footprint(src: Region | None, dst: Region | None) -> list[Box]:
    """The rectangles a route may use: the bounding box of both regions on one wafer, or, for a
    host end or a wafer crossing, the span from the west edge to each region."""
    if src is not None and dst is not None and src.wafer == dst.wafer:
        return [_bounding_box(src, dst)]
    return [_west_edge_box(r) for r in (src, dst) if r is not None]


def _bounding_box(a: Region, b: Region) -> Box:
    return Box(a.wafer, min(a.x, b.x), min(a.y, b.y),
               max(a.x + a.w, b.x + b.w) - 1, max(a.y + a.h, b.y + b.h) - 1)


def _west_edge_box(r: Region) -> Box:
    return Box(r.wafer, 0, r.y, r.x + r.w - 1, r.y + r.h - 1)


def assign_colors(names: list[str], footprints: list[list[Box]],
                  colors: int) -> tuple[list[int], list[ColorConflict]]:
    """Greedy colouring in order: the lowest colour no earlier overlapping route uses; when all
    are taken, the next colour round-robin, recorded as a conflict."""
    palette: list[int] = []
    conflicts: list[ColorConflict] = []
    next_reuse = 0
    for i, footprint in enumerate(footprints):
        neighbours = [j for j in range(i) if _overlap(footprint, footprints[j])]
        taken = {palette[j] for j in neighbours}
        free = [c for c in range(colors) if c not in taken]
        if free:
            palette.append(free[0])
            continue
        color, next_reuse = next_reuse, (next_reuse + 1) % colors
        palette.append(color)
        shared = tuple(names[j] for j in neighbours if palette[j] == color)
        conflicts.append(ColorConflict(names[i], color, shared))
    return palette, conflicts


def _overlap(a: list[Box], b: list[Box]) -> bool:
    return any(x.overlaps(y) for x in a for y in b)
