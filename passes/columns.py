"""Column packing: kernels in side-by-side columns of a box, each column a stack of kernels as wide
as it.

requires: a box (width, height), the items to pack, each with a `kind` (items of equal kind are
          interchangeable) and a least height at any column width (None where it does not fit).
ensures:  `pack_columns` returns a `ColumnPacking` -- column widths summing to at most the box's
          width, and every item in one column, each column's items no taller together than the
          box -- or None when no packing was found within the search budget. The same inputs give
          the same packing.

Why: the kernels of a layer disagree about their best width (cost curves are sawtooths of tile
ceilings: at one stage time an MLP projection may need its least area 17 columns wide, its
neighbour 22), so stacking each layer in a column of its own wastes area at every kernel whose
width is off its best. Packing the kernels of several layers together lets each column hold the
kernels that suit its width.

How: for each column count, the box's width is split evenly (widths differ by at most one) and
the items are placed by a depth-first search, biggest first, into the first column that holds
them. Where no even split packs, the same search starts from an empty box and opens columns as
it goes, each at one of the few widths at which the item opening it takes its least area: a
column of 32 for the MLP projections that want it beside columns of 18 for the rest. In both,
interchangeable items go in non-decreasing column order and columns of equal width and load are
tried once, and a branch is cut when the items left need more area, each at its least over the
widths they can still take, than the box has left.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

# Columns narrower than this are not tried: a kernel squeezed into a few columns needs so many
# rows that it rarely packs, and every extra column count is another search.
MIN_COLUMN_WIDTH = 8
# Nor more columns than this: the kernels of a couple of Llama layers pack in four to six; each
# count costs another table of heights (new shapes to cost) and another search.
MAX_COLUMNS = 12
# Search nodes per column count; past it that count is given up. The packings of Llama-3.1-8B's
# couples are found in a few dozen nodes, and a search that fails without being cut at once can
# take millions (a larger budget found nothing better there, for seconds more).
NODE_BUDGET = 100
# Where no even split packs: a new column is opened at one of the OPEN_WIDTHS widths at which the
# item opening it takes its least area, and the search stops after OPEN_BUDGET nodes. On
# Llama-3.1-8B (wse3) this packs couples at 2,481 cycles where even splits pack at 2,487 at best;
# 20 widths and 5,000 nodes find 2,477, for 0.8 s more placement.
OPEN_WIDTHS = 4
OPEN_BUDGET = 200
# The widths a new column may take: every one up to this, then steps of 1/OPEN_ALL_WIDTHS of the
# width. Each width costs every kind a height; on 405B's wide couples, every width cost 2 s.
OPEN_ALL_WIDTHS = 32
# A search that opens columns succeeds in a few dozen nodes or only after a long tail (on
# Llama-3.1-8B's couples, 36 to 300,000 nodes at 34 stage times within 0.7%), depending on
# the widths tried first. Restarts rank the widths by area times a factor up to 1 + RESTART_NOISE
# drawn from a generator seeded by the restart's number: deterministic, and another order.
RESTART_NOISE = 0.01


@dataclass(frozen=True)
class ColumnPacking:
    widths: tuple[int, ...]         # the columns' widths, left to right
    columns: tuple[int, ...]        # per item (in the order given), its column
    heights: tuple[int, ...]        # per item, its height at its column's width


def pack_columns(box: tuple[int, int], kinds: list, height: Callable[[int, int], int | None],
                 fewest: int = 1, budget: int = NODE_BUDGET, open_budget: int = OPEN_BUDGET,
                 restarts: int = 1) -> ColumnPacking | None:
    """Items 0..len(kinds)-1 of the given kinds in columns of the box; `height(item, w)` is the
    item's least height at column width w (asked once per kind and width: items of a kind are
    alike). Even splits are tried from `fewest` columns up, each with `budget` search nodes,
    and the first that packs is returned; failing them all, columns of any widths, with
    `open_budget` nodes for each of up to `restarts` searches (see RESTART_NOISE)."""
    width, rows = box
    members: dict = {}  # kind -> its items, in order
    for i, kind in enumerate(kinds):
        members.setdefault(kind, []).append(i)
    groups = list(members.values())
    heights: dict = {}

    def height_of(k: int, w: int) -> int | None:
        if (k, w) not in heights:
            heights[k, w] = height(groups[k][0], w)
        return heights[k, w]

    counts = [len(items) for items in groups]

    def searches():
        for count in range(fewest, min(width // MIN_COLUMN_WIDTH, MAX_COLUMNS, len(kinds)) + 1):
            yield _Search(rows, counts, height_of, budget, widths=even_widths(width, count))
        for restart in range(restarts):
            yield _Search(rows, counts, height_of, open_budget, free=width, restart=restart)

    for search in searches():
        found = search.run()
        if found is not None:
            widths = tuple(search.widths)
            columns, item_heights = [0] * len(kinds), [0] * len(kinds)
            for k, (items, chosen) in enumerate(zip(groups, found)):
                for i, c in zip(items, chosen):
                    columns[i], item_heights[i] = c, heights[k, widths[c]]
            return ColumnPacking(widths, tuple(columns), tuple(item_heights))
    return None


def even_widths(width: int, count: int) -> tuple[int, ...]:
    """`count` widths summing to `width`, the wider first, differing by at most one."""
    base, wider = divmod(width, count)
    return (base + 1,) * wider + (base,) * (count - wider)


def opening_widths(free: int) -> list[int]:
    """The widths a new column may take in `free` columns (see OPEN_ALL_WIDTHS): the teeth of the
    cost curves' sawtooth widen with the width, so wide columns need fewer samples."""
    widths, w = [], MIN_COLUMN_WIDTH
    while w <= free:
        widths.append(w)
        w += max(1, w // OPEN_ALL_WIDTHS)
    return widths


class _Search:
    """Depth-first search over the columns of `counts[k]` items of each kind k, whose height at
    width w is `height(k, w)` (None: does not fit): into the columns of the `widths` given, and,
    while `free` columns of the box are left, into new ones (see OPEN_WIDTHS)."""

    def __init__(self, rows: int, counts: list[int], height: Callable[[int, int], int | None],
                 budget: int, widths: tuple[int, ...] = (), free: int = 0, restart: int = 0):
        self.rows = rows
        self.height = height
        self.budget = budget
        self.left = list(counts)
        self.widths = list(widths)
        self.load = [0] * len(widths)
        self.free = free
        # Per kind, (area, -width, width, height) at every width a new column could take, least
        # area first, and the same in the order they are tried.
        self.openings = [sorted((h * w, -w, w, h) for w in opening_widths(free)
                                if (h := height(k, w)) is not None and h <= rows)
                         for k in range(len(counts))]
        least = [min([h * w for w in widths if (h := height(k, w)) is not None]
                     + [area for area, *_ in self.openings[k][:1]], default=0)
                 for k in range(len(counts))]
        self.tried = self.openings
        if restart:
            rng = random.Random(restart)
            self.tried = [sorted(o, key=lambda t: t[0] * (1 + RESTART_NOISE * rng.random()))
                          for o in self.openings]
        self.order = sorted(range(len(counts)), key=lambda k: (-least[k], k))  # biggest first
        self.chosen: list[list[int]] = [[] for _ in counts]

    def run(self) -> list[list[int]] | None:
        """Per kind, its items' columns (non-decreasing), or None."""
        return self.chosen if self._place(0) else None

    def _place(self, pos: int) -> bool:
        """Places the items left of kinds order[pos:]."""
        while pos < len(self.order) and self.left[self.order[pos]] == 0:
            pos += 1
        if pos == len(self.order):
            return True
        self.budget -= 1
        if self.budget < 0 or not self._may_fit():
            return False
        k = self.order[pos]
        tried = set()
        for c in range(self.chosen[k][-1] if self.chosen[k] else 0, len(self.widths)):
            h = self.height(k, self.widths[c])
            if h is None or self.load[c] + h > self.rows or (self.widths[c], self.load[c]) in tried:
                continue
            tried.add((self.widths[c], self.load[c]))
            if self._put(k, c, h, pos):
                return True
        if len(self.widths) < MAX_COLUMNS:
            for *_, w, h in [o for o in self.tried[k] if o[2] <= self.free][:OPEN_WIDTHS]:
                self.widths.append(w)
                self.load.append(0)
                self.free -= w
                if self._put(k, len(self.widths) - 1, h, pos):
                    return True
                self.free += w
                self.load.pop()
                self.widths.pop()
        return False

    def _put(self, k: int, c: int, h: int, pos: int) -> bool:
        """An item of kind k in column c, then the rest; undone if the rest does not fit."""
        self.load[c] += h
        self.chosen[k].append(c)
        self.left[k] -= 1
        if self._place(pos):
            return True
        self.left[k] += 1
        self.chosen[k].pop()
        self.load[c] -= h
        return False

    def _may_fit(self) -> bool:
        """A bound: every item left at its least area among the columns that can still take it
        (new ones included) fits in the space left: the free columns and the room in each
        column that some item left is short enough to use."""
        room = [self.rows - load for load in self.load]
        usable = [False] * len(self.widths)
        need = 0
        for k, n in enumerate(self.left):
            if not n:
                continue
            least = next((area for area, _, w, _ in self.openings[k] if w <= self.free), None)
            for c, w in enumerate(self.widths):
                h = self.height(k, w)
                if h is not None and h <= room[c]:
                    usable[c] = True
                    least = h * w if least is None or h * w < least else least
            if least is None:
                return False
            need += n * least
        room_used = sum(w * r for w, r, u in zip(self.widths, room, usable) if u)
        return need <= self.free * self.rows + room_used
