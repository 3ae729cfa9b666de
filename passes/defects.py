"""Defective PEs: a uniform logical fabric remapped over each wafer's physical one.

At 0.1% defects the largest defect-free rectangle of a wafer is a few percent of it, so defects
cannot be holes in the placement. Like the hardware, we hide them: every wafer keeps some spare
PEs per row and retires its worst rows, and the placer sees a smaller, defect-free logical grid.

requires: a `DefectMap` (read from a `wafer x y` file or drawn at random for a seed) whose
          coordinates lie on `wafers` physical wafers of `physical` = (width, height) PEs.
ensures:  `plan_remap` returns a `Remap` whose logical grid is the same (width - spare_cols) x
          (height - retired rows) on every wafer, where
          * logical (lx, ly) on wafer w is physical (px, py): py is the ly-th row wafer w does not
            retire, px the lx-th non-defective PE of that row (so no logical PE is defective,
            the map is injective, and it is increasing along each row and down each column);
          * every kept row has at most `spare_cols` defects, and (spare_cols, rows retired)
            maximise the logical capacity; ties keep fewer spare columns;
          * `route_extra_hops` gives, per route placed on the logical grid, the physical hops the
            remap adds (never negative; 0 with no defects).
          Bad files, out-of-range coordinates and wafers with no usable fabric raise `DefectError`
          with the file:line:col where there is one.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ir.errors import DefectError, PlacementError, span_at
from ir.wkl import HOST, Region, Route

Defect = tuple[int, int, int]  # (wafer, x, y), physical coordinates
Point = tuple[int, int]        # (x, y)


# ---------------------------------------------------------------- the defect map


@dataclass(frozen=True)
class DefectMap:
    """The defective PEs of `wafers` wafers, each `physical` = (width, height) PEs."""

    physical: tuple[int, int]
    wafers: int
    defects: frozenset[Defect] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "physical", tuple(self.physical))  # a list from JSON or a CLI
        if self.wafers < 1 or len(self.physical) != 2 or min(self.physical) < 1:
            raise DefectError(f"a defect map needs at least one wafer of positive dimensions, "
                              f"got {self.wafers} wafer(s) of {self.physical}")

    @classmethod
    def from_file(cls, path: str | Path, physical: tuple[int, int], wafers: int) -> "DefectMap":
        """Read one `wafer x y` per line; blank lines and `#` comments are allowed."""
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise DefectError(f"cannot read defect file '{path}': {e}") from None
        return cls.parse(text, str(path), physical, wafers)

    @classmethod
    def parse(cls, text: str, filename: str, physical: tuple[int, int], wafers: int) -> "DefectMap":
        limits = (wafers, *physical)
        found = set()
        for lineno, line in enumerate(text.split("\n"), 1):
            defect = _parse_defect_line(line, lineno, filename, text, limits)
            if defect is not None:
                found.add(defect)
        return cls(physical, wafers, frozenset(found))

    @classmethod
    def random(cls, rate: float, seed: int, physical: tuple[int, int], wafers: int) -> "DefectMap":
        """Each PE defective with probability `rate`, independently; the same seed, the same map."""
        if not 0.0 <= rate <= 1.0:  # also rejects NaN
            raise DefectError(f"defect rate must be between 0 and 1, got {rate}")
        if seed < 0:
            raise DefectError(f"defect seed must not be negative, got {seed}")
        rng = np.random.default_rng(seed)
        width, height = physical
        found: list[Defect] = []
        for wafer in range(wafers):  # one wafer at a time keeps the draw's memory small
            ys, xs = np.nonzero(rng.random((height, width)) < rate)
            found.extend(zip(itertools.repeat(wafer), xs.tolist(), ys.tolist()))
        return cls(physical, wafers, frozenset(found))

    @classmethod
    def from_json(cls, triples: list, physical: tuple[int, int], wafers: int) -> "DefectMap":
        """The inverse of `to_json`, checked (placement.json may have been edited by hand)."""
        try:
            found = frozenset((int(w), int(x), int(y)) for w, x, y in triples)
        except (TypeError, ValueError) as e:
            raise DefectError(f"malformed defect list: {e}") from None
        limits = (wafers, *physical)
        bad = next((d for d in sorted(found) if not all(0 <= v < n for v, n in zip(d, limits))), None)
        if bad is not None:
            raise DefectError(f"defect {list(bad)} lies outside {wafers} wafer(s) of {tuple(physical)}")
        return cls(physical, wafers, found)

    def coords(self) -> np.ndarray:
        """The defects as a read-only (n, 3) int array of (wafer, x, y) rows, in no set order."""
        return self._coords

    @cached_property
    def _coords(self) -> np.ndarray:
        # Converting 100k tuples costs tens of milliseconds; a frozen map needs it only once.
        flat = np.fromiter(itertools.chain.from_iterable(self.defects), dtype=np.int64,
                           count=3 * len(self.defects))
        coords = flat.reshape(-1, 3)
        if np.any(coords < 0) or np.any(coords >= (self.wafers, *self.physical)):
            raise ValueError("a defect lies outside the wafers of its map")
        coords.setflags(write=False)
        return coords

    def mask(self) -> np.ndarray:
        """A (wafers, height, width) bool array, True at each defective PE."""
        width, height = self.physical
        out = np.zeros((self.wafers, height, width), dtype=bool)
        c = self.coords()
        out[c[:, 0], c[:, 2], c[:, 1]] = True
        return out

    def row_counts(self) -> np.ndarray:
        """A (wafers, height) int array: the defects in each physical row."""
        return _row_counts(self.coords(), self.wafers, self.physical[1])

    def to_json(self) -> list[list[int]]:
        """Sorted `[wafer, x, y]` triples, for placement.json."""
        return [list(d) for d in sorted(self.defects)]


def _row_counts(coords: np.ndarray, wafers: int, height: int) -> np.ndarray:
    counts = np.bincount(coords[:, 0] * height + coords[:, 2], minlength=wafers * height)
    return counts.reshape(wafers, height)


_INT = re.compile(r"[+-]?\d+")


def _parse_defect_line(line: str, lineno: int, filename: str, text: str,
                       limits: tuple[int, int, int]) -> Defect | None:
    """One `wafer x y` line as a Defect, None for a blank or comment line."""
    body = line.split("#", 1)[0]
    tokens = [(m.start() + 1, m.group()) for m in re.finditer(r"\S+", body)]
    if not tokens:
        return None
    if len(tokens) != 3:
        col = tokens[3][0] if len(tokens) > 3 else len(body.rstrip()) + 1
        raise DefectError(f"expected 'wafer x y', got {len(tokens)} field(s)",
                          span_at(filename, text, lineno, col))
    values = []
    for (col, token), name, limit in zip(tokens, ("wafer", "x", "y"), limits):
        where = span_at(filename, text, lineno, col)
        if not _INT.fullmatch(token):
            raise DefectError(f"{name} must be an integer, got '{token}'", where)
        value = int(token)
        if not 0 <= value < limit:
            raise DefectError(f"{name} {value} is out of range: expected 0..{limit - 1}", where,
                              hint="wafer indices count from 0; x and y are physical PE coordinates")
        values.append(value)
    return values[0], values[1], values[2]


# ---------------------------------------------------------------- the remap


@dataclass(frozen=True)
class CapacityLoss:
    """PEs the placer cannot use: defects, spare columns and retired rows, over all wafers."""

    physical_pes: int
    logical_pes: int

    @property
    def lost_pes(self) -> int:
        return self.physical_pes - self.logical_pes

    @property
    def fraction(self) -> float:
        return self.lost_pes / self.physical_pes


REMAP_RULE = ("logical (x, y) on a wafer is physical (px, py): py is the y-th row of that wafer "
              "not in retired_rows, px the x-th non-defective PE of row py")


@dataclass(frozen=True, eq=False)
class Remap:
    """The logical grid the placer sees and where each logical PE sits physically.

    `physical_rows[w]` (logical height,) is the physical row of each logical row of wafer w;
    `physical_cols[w]` (logical height, logical width) the physical column of each logical PE.
    """

    physical: tuple[int, int]
    spare_cols: int
    retired_rows: tuple[tuple[int, ...], ...]  # per wafer, ascending
    physical_rows: tuple[np.ndarray, ...] = field(repr=False)
    physical_cols: tuple[np.ndarray, ...] = field(repr=False)

    @property
    def wafers(self) -> int:
        return len(self.retired_rows)

    @property
    def logical_dims(self) -> tuple[int, int]:
        """(width, height) of the logical grid, the same on every wafer."""
        width, height = self.physical
        return width - self.spare_cols, height - len(self.retired_rows[0])

    @property
    def capacity_lost(self) -> CapacityLoss:
        """Physical PEs (defective ones included) against the logical PEs, over all wafers."""
        return CapacityLoss(self.wafers * math.prod(self.physical),
                            self.wafers * math.prod(self.logical_dims))

    def to_physical(self, wafer: int, lx: int, ly: int) -> Point:
        width, height = self.logical_dims
        if not (0 <= wafer < self.wafers and 0 <= lx < width and 0 <= ly < height):
            raise ValueError(f"logical PE ({wafer}, {lx}, {ly}) is outside the "
                             f"{self.wafers} x {width} x {height} logical fabric")
        return int(self.physical_cols[wafer][ly, lx]), int(self.physical_rows[wafer][ly])

    def extra_hops(self, wafer: int, a: Point, b: Point) -> int:
        """Physical minus logical Manhattan distance between two logical PEs, floored at 0."""
        (ax, ay), (bx, by) = self.to_physical(wafer, *a), self.to_physical(wafer, *b)
        logical = abs(a[0] - b[0]) + abs(a[1] - b[1])
        return max(0, abs(ax - bx) + abs(ay - by) - logical)

    def to_json(self) -> dict:
        """The compact form for placement.json: retired rows and spare columns, not a PE table."""
        return {"rule": REMAP_RULE, "physical_dims": list(self.physical),
                "logical_dims": list(self.logical_dims), "spare_cols": self.spare_cols,
                "retired_rows": [list(rows) for rows in self.retired_rows]}

    @classmethod
    def from_json(cls, data: dict, defects: DefectMap) -> "Remap":
        """Rebuild (and re-check) a remap written by `to_json` against its defect map."""
        try:
            spare, retired = int(data["spare_cols"]), [list(map(int, r)) for r in data["retired_rows"]]
            physical = tuple(map(int, data["physical_dims"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DefectError(f"malformed remap: {e!r}") from None
        if physical != tuple(defects.physical) or len(retired) != defects.wafers:
            raise DefectError("remap does not match the defect map's wafers and dimensions")
        return _build_remap(defects, spare, [np.asarray(r, dtype=np.int64) for r in retired])


def plan_remap(defects: DefectMap) -> Remap:
    """The remap with the largest uniform logical grid over every wafer."""
    width, _ = defects.physical
    counts = defects.row_counts()
    spare, height = _choose_spares(counts, width)
    retired = [_worst_rows(c, counts.shape[1] - height) for c in counts]
    return _build_remap(defects, spare, retired)


def _choose_spares(counts: np.ndarray, width: int) -> tuple[int, int]:
    """(spare columns, logical height) maximising width x height: with s spares, each wafer must
    retire its rows of more than s defects, and all wafers keep as few rows as the worst one."""
    height = counts.shape[1]
    top = min(int(counts.max(initial=0)), width - 1)  # more spares than that only loses columns
    hist = np.stack([np.bincount(c, minlength=top + 1)[:top + 1] for c in counts])
    rows_over = height - np.cumsum(hist, axis=1)  # [w, s]: rows of wafer w with > s defects
    heights = height - rows_over.max(axis=0)
    capacity = (width - np.arange(top + 1)) * heights
    best = int(np.argmax(capacity))  # first maximum: the fewest spare columns
    if capacity[best] <= 0:
        raise DefectError("the defects leave no usable fabric: every choice of spare columns "
                          "retires every row of some wafer")
    return best, int(heights[best])


def _worst_rows(row_counts: np.ndarray, n: int) -> np.ndarray:
    """The n rows with the most defects, ascending. Ties retire the rows nearest the bottom: a
    retired row adds a hop to every route crossing it, and no route crosses the last row."""
    rows = np.arange(len(row_counts))
    order = np.lexsort((-rows, -row_counts))  # most defects first, then the highest index
    return np.sort(order[:n])


def _build_remap(defects: DefectMap, spare: int, retired: list[np.ndarray]) -> Remap:
    width, height = defects.physical
    coords = defects.coords()
    kept = [np.flatnonzero(~np.isin(np.arange(height), r)) for r in retired]
    _check_rows(_row_counts(coords, defects.wafers, height), width, spare, retired, kept)
    cols = tuple(_column_table(coords[coords[:, 0] == w, 1:], kept[w], height, width - spare)
                 for w in range(defects.wafers))
    rows = tuple(k.astype(np.int32) for k in kept)
    for table in (*cols, *rows):
        table.setflags(write=False)  # the remap is frozen; so are its tables
    return Remap((width, height), spare, tuple(tuple(r.tolist()) for r in retired), rows, cols)


def _check_rows(counts: np.ndarray, width: int, spare: int, retired: list[np.ndarray],
                kept: list[np.ndarray]) -> None:
    """Every wafer keeps the same number of rows, each with at most `spare` defects."""
    height = counts.shape[1]
    if not 0 <= spare < width:
        raise DefectError(f"spare columns must be in 0..{width - 1}, got {spare}")
    for wafer, (gone, rows) in enumerate(zip(retired, kept)):
        if len(np.unique(gone)) != len(gone) or not np.all((gone >= 0) & (gone < height)):
            raise DefectError(f"wafer {wafer}: retired rows must be distinct rows in 0..{height - 1}")
        if len(rows) != len(kept[0]) or len(rows) == 0:
            raise DefectError(f"wafer {wafer} keeps {len(rows)} rows; every wafer must keep the "
                              f"same, non-zero number ({len(kept[0])} on wafer 0)")
        worst = int(counts[wafer][rows].max())
        if worst > spare:
            raise DefectError(f"wafer {wafer} keeps a row with {worst} defects but has only "
                              f"{spare} spare columns")


def _column_table(defects_xy: np.ndarray, kept: np.ndarray, height: int,
                  logical_width: int) -> np.ndarray:
    """The physical column of every logical PE of one wafer, (logical rows, logical_width).

    In a row with defects at columns d_0 < d_1 < ..., the lx-th good PE is at lx plus the number
    of defects before it, and defect j lies before it exactly when d_j - j (the good PEs left of
    d_j) <= lx. So each defect adds one from logical column d_j - j on: a prefix sum per row.
    """
    logical_row = np.full(height, -1)
    logical_row[kept] = np.arange(len(kept))
    xs, ys = defects_xy[:, 0], logical_row[defects_xy[:, 1]]
    xs, ys = xs[ys >= 0], ys[ys >= 0]  # defects in retired rows move nothing
    order = np.lexsort((xs, ys))
    xs, ys = xs[order], ys[order]
    rank = np.arange(len(xs)) - np.searchsorted(ys, ys)  # j: the defect's place in its row
    table = np.zeros((len(kept), logical_width + 1), dtype=np.int32)
    np.add.at(table, (ys, np.minimum(xs - rank, logical_width)), 1)  # past the end: no effect
    np.cumsum(table, axis=1, out=table)  # in place: the shift of every logical PE
    table += np.arange(logical_width + 1, dtype=np.int32)
    return table[:, :logical_width]


# ---------------------------------------------------------------- extra hops of routes


def route_extra_hops(remap: Remap, regions: list[Region], routes: list[Route]) -> dict[str, int]:
    """Per route name, the physical hops the remap adds to the route's logical `hops`.

    Same endpoints as `passes.route.route_hops`: the nearest PEs of the two regions, or the
    region's west column and the wafer's west edge (physical x = 0) for a host end or a wafer
    crossing, counted on each wafer. Where the nearest PEs are not unique (the regions share
    rows or columns) the physically nearest pair among them is taken, as a router would.
    """
    by_kernel = {r.kernel: r for r in regions}
    return {rt.name: _route_extra(remap, _region(rt.src.kernel, by_kernel),
                                  _region(rt.dst.kernel, by_kernel)) for rt in routes}


def _region(kernel: str, by_kernel: dict[str, Region]) -> Region | None:
    if kernel == HOST:
        return None
    if kernel not in by_kernel:
        raise PlacementError(f"route endpoint names kernel '{kernel}', which has no placed region")
    return by_kernel[kernel]


def _route_extra(remap: Remap, src: Region | None, dst: Region | None) -> int:
    if src is None or dst is None or src.wafer != dst.wafer:
        return sum(_west_edge_extra(remap, r) for r in (src, dst) if r is not None)
    return _between_regions_extra(remap, src, dst)


def _west_edge_extra(remap: Remap, r: Region) -> int:
    """Logically the west edge is r.x hops away; physically, the column r.x sits in, at best."""
    return int(remap.physical_cols[r.wafer][r.y:r.y + r.h, r.x].min()) - r.x


def _between_regions_extra(remap: Remap, a: Region, b: Region) -> int:
    ax, bx = _nearest_coords(a.x, a.w, b.x, b.w)
    ay, by = _nearest_coords(a.y, a.h, b.y, b.h)
    logical = int(abs(ax[0] - bx[0]) + abs(ay[0] - by[0]))
    if logical == 0:  # the regions overlap: the same PE serves both ends
        return 0
    cols, rows = remap.physical_cols[a.wafer], remap.physical_rows[a.wafer]
    dx = np.abs(cols[ay[:, None], ax[None, :]] - cols[by[:, None], bx[None, :]])
    dy = np.abs(rows[ay] - rows[by])[:, None]
    # Only a diagonal pair can come out physically shorter (rows shifted by different amounts);
    # the route keeps its logical hops then, so the extra is floored at 0.
    return max(0, int((dx + dy).min()) - logical)


def _nearest_coords(a: int, a_len: int, b: int, b_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis, the coordinates of the nearest PEs of two spans, as equal-length arrays:
    one fixed pair when the spans are apart, every shared coordinate when they overlap."""
    a_end, b_end = a + a_len - 1, b + b_len - 1
    if a_end < b:
        return np.array([a_end]), np.array([b])
    if b_end < a:
        return np.array([a]), np.array([b_end])
    shared = np.arange(max(a, b), min(a_end, b_end) + 1)
    return shared, shared


def remap_report(defects: DefectMap, remap: Remap, extra_hops: dict[str, int]) -> dict:
    """The defect section of the compile report."""
    loss = remap.capacity_lost
    return {"defects": len(defects.defects), "physical_dims": list(remap.physical),
            "logical_dims": list(remap.logical_dims), "spare_cols": remap.spare_cols,
            "retired_rows": [len(r) for r in remap.retired_rows],
            "capacity_lost_pes": loss.lost_pes, "capacity_lost_fraction": loss.fraction,
            "extra_hops_total": sum(extra_hops.values()),
            "extra_hops_max": max(extra_hops.values(), default=0)}
