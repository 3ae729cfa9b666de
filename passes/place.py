"""Placement: one rectangle of PEs per kernel on one wafer.

requires: the kernel names in execution order (consecutive kernels are pipeline neighbours) and one
          `KernelCost` per kernel, in the same order, whose `shapes` are the region shapes that fit
          SRAM, each with the cycles one pass through the kernel takes on it.
ensures:  one `Region` per kernel, in the same order, on wafer 0, inside the fabric, pairwise
          disjoint, each with a (w, h) from that kernel's cost list; or a `PlacementError` saying
          how many PEs the kernels need at least against what a wafer has.

Objectives, solved lexicographically (two solves, never a weighted sum): first the pipeline's
bottleneck (the largest stage cycles), then, with the bottleneck held at the best value found, the
total Manhattan distance between consecutive kernels' region centres.

The search itself sits behind `PlacementStrategy`: today `CpSatStrategy` solves the whole problem
with OR-Tools CP-SAT, seeded by a greedy shelf packing that is also the fallback answer. Full-size
wafers will plug in a constructive layout with small CP-SAT refinements behind the same seam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol

from ortools.sat.python import cp_model

from ir.errors import PlacementError, WaferCapacityError
from ir.kernels import KernelCost, ShapeCost
from ir.wkl import Region
from passes.packing import ShapePacking


@dataclass(frozen=True)
class PlacementProblem:
    """What every strategy solves: per kernel, the candidate shapes that fit the fabric."""

    kernels: tuple[str, ...]
    candidates: tuple[tuple[ShapeCost, ...], ...]
    fabric: tuple[int, int]  # (width, height) in PEs


@dataclass(frozen=True)
class PlacedShape:
    """A kernel's chosen shape with its top-left PE at (x, y)."""

    shape: ShapeCost
    x: int
    y: int


Layout = list[PlacedShape]  # one per kernel, in execution order


@dataclass(frozen=True)
class SearchBudget:
    """How hard a strategy may search.

    `work` is in CP-SAT deterministic seconds: a fixed amount of search, so the same input and
    seed give the same layout on any machine (for one OR-Tools version). `time_limit_s` is only
    a wall-clock safety net; if it fires before the work runs out, the layout depends on the
    machine's speed. (On a busy machine one deterministic second can take several real ones.)
    """

    seed: int = 0
    work: float = 1.0
    time_limit_s: float = 30.0

    def share(self, fraction: float) -> "SearchBudget":
        return replace(self, work=self.work * fraction, time_limit_s=self.time_limit_s * fraction)

    def minus(self, spent: "SearchBudget") -> "SearchBudget":
        return replace(self, work=max(0.0, self.work - spent.work),
                       time_limit_s=max(0.0, self.time_limit_s - spent.time_limit_s))


class PlacementStrategy(Protocol):
    """Chooses a shape and a position per kernel. Returns None when it found no layout."""

    def solve(self, problem: PlacementProblem, hint: Layout | None,
              budget: SearchBudget) -> Layout | None: ...


# ---------------------------------------------------------------- the pass


@dataclass(frozen=True)
class PlacementPass:
    """requires: a KernelCost per kernel (same order as kernels); ensures: one Region per kernel,
    inside the fabric, pairwise disjoint, with a shape from its cost list."""

    name: ClassVar[str] = "place"
    seed: int = 0
    time_limit_s: float = 30.0  # wall-clock safety net; see SearchBudget
    work_limit: float = 1.0     # deterministic search effort; see SearchBudget
    strategy: PlacementStrategy = field(default_factory=lambda: CpSatStrategy())

    def run(self, kernels: list[str], costs: list[KernelCost],
            fabric: tuple[int, int]) -> list[Region]:
        problem = build_problem(kernels, costs, fabric)
        if not kernels:
            return []
        hint = greedy_layout(problem)
        budget = SearchBudget(self.seed, self.work_limit, self.time_limit_s)
        solved = self.strategy.solve(problem, hint, budget)
        found = [layout for layout in (solved, hint) if layout is not None]
        if not found:
            raise capacity_error(problem, "no non-overlapping layout of the kernels on one wafer "
                                          "was found")
        # The solver starts from the hint, but keep whichever is better in case it ran out of work.
        best = min(found, key=layout_score)
        return [Region(kernel=name, wafer=0, x=p.x, y=p.y, w=p.shape.w, h=p.shape.h)
                for name, p in zip(problem.kernels, best)]


def build_problem(kernels: list[str], costs: list[KernelCost],
                  fabric: tuple[int, int]) -> PlacementProblem:
    """Drops shapes larger than the fabric; raises PlacementError if the kernels cannot fit."""
    if [c.kernel for c in costs] != list(kernels):
        raise ValueError("costs must hold one KernelCost per kernel, in the kernels' order")
    width, height = fabric
    candidates = []
    for cost in costs:
        fitting = tuple(s for s in cost.shapes if s.w <= width and s.h <= height)
        if not fitting:
            raise _unplaceable_kernel_error(cost, fabric)
        candidates.append(fitting)
    problem = PlacementProblem(tuple(kernels), tuple(candidates), fabric)
    if min_pes(problem) > width * height:
        raise capacity_error(problem, "the model does not fit one wafer")
    return problem


def min_pes(problem: PlacementProblem) -> int:
    """PEs the kernels need at least: each at its smallest candidate shape."""
    return sum(min(s.w * s.h for s in shapes) for shapes in problem.candidates)


def capacity_error(problem: PlacementProblem, reason: str) -> WaferCapacityError:
    width, height = problem.fabric
    need, have = min_pes(problem), width * height
    wafers = math.ceil(need / have)
    return WaferCapacityError(
        f"{reason}: the {len(problem.kernels)} kernels need at least {need} PEs (each at its "
        f"smallest region shape) and a {width}x{height} wafer has {have} PEs, so by area alone "
        f"they need at least {wafers} wafer{'s' if wafers != 1 else ''}",
        hint=f"use a target with a larger fabric, or {wafers} wafers or more, or let the placer "
             f"choose the count")


def _unplaceable_kernel_error(cost: KernelCost, fabric: tuple[int, int]) -> PlacementError:
    width, height = fabric
    if not cost.shapes:
        return PlacementError(f"kernel '{cost.kernel}' has no region shape whose per-PE share "
                              f"fits SRAM")
    smallest = min(cost.shapes, key=lambda s: s.w * s.h)
    return PlacementError(f"kernel '{cost.kernel}' needs at least a {smallest.w}x{smallest.h} "
                          f"region, which does not fit the {width}x{height} fabric")


# ---------------------------------------------------------------- objectives


def bottleneck_cycles(layout: Layout) -> int:
    """The slowest pipeline stage: it bounds the throughput."""
    return max(p.shape.cycles for p in layout)


def centre_distance2(a: PlacedShape | Region, b: PlacedShape | Region) -> int:
    """Manhattan distance between two rectangles' centres, in doubled units to stay integral."""
    aw, ah = _dims(a)
    bw, bh = _dims(b)
    return abs((2 * a.x + aw) - (2 * b.x + bw)) + abs((2 * a.y + ah) - (2 * b.y + bh))


def chain_distance2(layout: Layout | list[Region]) -> int:
    """Sum of centre distances (doubled) between consecutive kernels."""
    return sum(centre_distance2(a, b) for a, b in zip(layout, layout[1:]))


def layout_score(layout: Layout) -> tuple[int, int]:
    """Lexicographic objective: bottleneck first, then distance."""
    return bottleneck_cycles(layout), chain_distance2(layout)


def _dims(r: PlacedShape | Region) -> tuple[int, int]:
    return (r.shape.w, r.shape.h) if isinstance(r, PlacedShape) else (r.w, r.h)


# ---------------------------------------------------------------- greedy hint and fallback


def shelf_pack(shapes: list[ShapeCost], fabric: tuple[int, int]) -> Layout | None:
    """Packs shapes in order onto horizontal shelves, or None if they run off the bottom.

    Shelves alternate direction (left to right, then right to left) so the kernel that ends one
    shelf sits just above the one that starts the next: pipeline neighbours stay close.
    """
    width, height = fabric
    layout: Layout = []
    shelf_y = shelf_h = used = 0
    leftward = False
    for shape in shapes:
        if used + shape.w > width:
            shelf_y, shelf_h, used, leftward = shelf_y + shelf_h, 0, 0, not leftward
        if shelf_y + shape.h > height:
            return None
        x = width - used - shape.w if leftward else used
        layout.append(PlacedShape(shape, x, shelf_y))
        used += shape.w
        shelf_h = max(shelf_h, shape.h)
    return layout


def greedy_layout(problem: PlacementProblem) -> Layout | None:
    """Smallest shapes first, then repeatedly give the slowest kernel a faster shape while the
    shelf packing still fits. None if even the smallest shapes do not shelf-pack."""
    choice = [min(shapes, key=lambda s: (s.w * s.h, s.cycles)) for shapes in problem.candidates]
    layout = shelf_pack(choice, problem.fabric)
    while layout is not None:
        slowest = max(range(len(choice)), key=lambda i: choice[i].cycles)
        upgraded = _faster_packing(problem, choice, slowest)
        if upgraded is None:
            return layout
        choice, layout = upgraded
    return None


def _faster_packing(problem: PlacementProblem, choice: list[ShapeCost],
                    kernel: int) -> tuple[list[ShapeCost], Layout] | None:
    """The smallest faster shape for `kernel` that still shelf-packs, with its packing."""
    faster = [s for s in problem.candidates[kernel] if s.cycles < choice[kernel].cycles]
    for shape in sorted(faster, key=lambda s: (s.w * s.h, s.cycles, s.w)):
        trial = choice[:kernel] + [shape] + choice[kernel + 1:]
        packed = shelf_pack(trial, problem.fabric)
        if packed is not None:
            return trial, packed
    return None


# ---------------------------------------------------------------- CP-SAT


@dataclass(frozen=True)
class CpSatStrategy:
    """The whole problem as one CP-SAT model, solved twice: bottleneck, then distance.

    Deterministic: one worker, a fixed seed, and the search bounded by deterministic work. The
    first solve may use half the budget; the second gets whatever the first left.
    """

    def solve(self, problem: PlacementProblem, hint: Layout | None,
              budget: SearchBudget) -> Layout | None:
        model = _PlacementModel(problem)
        if hint is not None:
            model.hint_layout(hint)
        fastest, spent = model.solve_layout(model.stage, budget.share(0.5))
        if fastest is None:
            return None
        cap = bottleneck_cycles(fastest)
        model.cap_stage(cap)
        start = _closest_start(problem, [fastest, hint], cap)
        model.hint_layout(start)
        return model.solve_layout(model.distance, budget.minus(spent))[0] or start


def _closest_start(problem: PlacementProblem, layouts: list[Layout | None], cap: int) -> Layout:
    """The layout with the shortest chain among those within the bottleneck `cap`, including
    shelf packings of the first one's shapes and of each kernel's smallest shape within `cap`:
    their serpentine order often beats the solver's first answer by far."""
    smallest_within_cap = [min((s for s in shapes if s.cycles <= cap), key=lambda s: s.w * s.h)
                           for shapes in problem.candidates]
    repacked = [shelf_pack(shapes, problem.fabric)
                for shapes in ([p.shape for p in layouts[0]], smallest_within_cap)]
    within_cap = [layout for layout in layouts + repacked
                  if layout is not None and bottleneck_cycles(layout) <= cap]
    return min(within_cap, key=chain_distance2)


class _PlacementModel(ShapePacking):
    """The whole fabric as one packing (passes/packing.py) plus the chain distance between
    consecutive kernels' centres."""

    def __init__(self, problem: PlacementProblem):
        super().__init__(problem.candidates, problem.fabric)
        self.problem = problem
        self.distance = self._chain_distance()

    def _chain_distance(self) -> cp_model.IntVar:
        """Sum over consecutive kernels of the Manhattan distance between their centres."""
        width, height = self.problem.fabric
        pairs = len(self.problem.kernels) - 1
        total = self.model.new_int_var(0, 2 * (width + height) * pairs, "distance")
        self.model.add(total == sum(self._pair_distance(i) for i in range(pairs)))
        return total

    def _pair_distance(self, i: int) -> cp_model.LinearExpr:
        """|dx| + |dy| between the centres of kernels i and i+1, in doubled coordinates."""
        width, height = self.problem.fabric
        gaps = []
        for axis, size, span in ((0, "w", 2 * width), (1, "h", 2 * height)):
            delta = self.model.new_int_var(-span, span, f"d{size}{i}")
            self.model.add(delta == self.centre(i)[axis] - self.centre(i + 1)[axis])
            gap = self.model.new_int_var(0, span, f"g{size}{i}")
            self.model.add_abs_equality(gap, delta)
            gaps.append(gap)
        # Redundant, but it gives the distance objective a bound: two disjoint rectangles are
        # apart along x or along y, so their centres differ by at least the two widths (or heights).
        apart_in_x = self.model.new_bool_var(f"apart{i}")
        self.model.add(gaps[0] >= self.chosen_sum(i, "w") + self.chosen_sum(i + 1, "w")
                       ).only_enforce_if(apart_in_x)
        self.model.add(gaps[1] >= self.chosen_sum(i, "h") + self.chosen_sum(i + 1, "h")
                       ).only_enforce_if(~apart_in_x)
        return gaps[0] + gaps[1]

    def hint_layout(self, layout: Layout) -> None:
        super().hint([(p.shape, p.x, p.y) for p in layout])

    def solve_layout(self, objective: cp_model.IntVar,
                     budget: SearchBudget) -> tuple[Layout | None, SearchBudget]:
        """The best layout found (None if none) and the budget the search spent."""
        # Full linearisation lets the LP see the abs and separation constraints: a real bound.
        picks, solver = self.solve(objective, budget.seed, budget.work, budget.time_limit_s,
                                   linearization_level=2)
        spent = SearchBudget(budget.seed, solver.deterministic_time, solver.wall_time)
        layout = [PlacedShape(shape, x, y) for shape, x, y in picks] if picks else None
        return layout, spent
