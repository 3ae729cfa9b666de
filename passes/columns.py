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
them. Interchangeable items go in non-decreasing column order and columns of equal width and
load are tried once, and a branch is cut when the items left need more area, each at its least
over the column widths, than the columns have left.
"""
from __future__ import annotations

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


@dataclass(frozen=True)
class ColumnPacking:
    widths: tuple[int, ...]         # the columns' widths, left to right
    columns: tuple[int, ...]        # per item (in the order given), its column
    heights: tuple[int, ...]        # per item, its height at its column's width


def pack_columns(box: tuple[int, int], kinds: list, height: Callable[[int, int], int | None],
                 fewest: int = 1, budget: int = NODE_BUDGET) -> ColumnPacking | None:
    """Items 0..len(kinds)-1 of the given kinds in columns of the box; `height(item, w)` is the
    item's least height at column width w (asked once per kind and width: items of a kind are
    alike). Column counts are tried from `fewest` up, and the first that packs is returned."""
    width, rows = box
    members: dict = {}  # kind -> its items, in order
    for i, kind in enumerate(kinds):
        members.setdefault(kind, []).append(i)
    heights: dict = {}

    def height_of(kind, w: int) -> int | None:
        if (kind, w) not in heights:
            heights[kind, w] = height(members[kind][0], w)
        return heights[kind, w]

    for count in range(fewest, min(width // MIN_COLUMN_WIDTH, MAX_COLUMNS, len(kinds)) + 1):
        widths = even_widths(width, count)
        table = [[height_of(kind, w) for w in widths] for kind in members]
        search = _Search(widths, rows, [len(items) for items in members.values()], table, budget)
        found = search.run()
        if found is not None:
            columns = [0] * len(kinds)
            for items, chosen in zip(members.values(), found):
                for i, c in zip(items, chosen):
                    columns[i] = c
            return ColumnPacking(widths, tuple(columns),
                                 tuple(heights[kinds[i], widths[c]] for i, c in enumerate(columns)))
    return None


def even_widths(width: int, count: int) -> tuple[int, ...]:
    """`count` widths summing to `width`, the wider first, differing by at most one."""
    base, wider = divmod(width, count)
    return (base + 1,) * wider + (base,) * (count - wider)


class _Search:
    """Depth-first search over the columns of `counts[k]` items of each kind k, whose heights at
    each column are `table[k]` (None: does not fit)."""

    def __init__(self, widths: tuple[int, ...], height: int, counts: list[int],
                 table: list[list[int | None]], budget: int):
        self.widths = widths
        self.height = height
        self.table = table
        self.budget = budget
        self.left = list(counts)
        least = [min((h * w for h, w in zip(row, widths) if h is not None), default=0) for row in table]
        self.order = sorted(range(len(counts)), key=lambda k: (-least[k], k))  # biggest first
        self.options = [[(c, h, h * w) for c, (h, w) in enumerate(zip(row, widths)) if h is not None]
                        for row in table]
        self.load = [0] * len(widths)
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
        row = self.table[k]
        tried = set()
        for c in range(self.chosen[k][-1] if self.chosen[k] else 0, len(self.widths)):
            h = row[c]
            if h is None or self.load[c] + h > self.height or (self.widths[c], self.load[c]) in tried:
                continue
            tried.add((self.widths[c], self.load[c]))
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
        fits in the columns' space left that some item left is short enough to use."""
        room = [self.height - load for load in self.load]
        shortest = [self.height + 1] * len(self.widths)
        need = 0
        for k, n in enumerate(self.left):
            if not n:
                continue
            least = None
            for c, h, area in self.options[k]:
                if h <= room[c]:
                    least = area if least is None or area < least else least
                    shortest[c] = min(shortest[c], h)
            if least is None:
                return False
            need += n * least
        return need <= sum(w * r for w, r, s in zip(self.widths, room, shortest) if s <= r)
