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

from ir.errors import PlacementError
from ir.kernels import KernelCost, ShapeCost
from ir.wkl import Region


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


def capacity_error(problem: PlacementProblem, reason: str) -> PlacementError:
    width, height = problem.fabric
    need, have = min_pes(problem), width * height
    wafers = math.ceil(need / have)
    return PlacementError(
        f"{reason}: the {len(problem.kernels)} kernels need at least {need} PEs (each at its "
        f"smallest region shape) and a {width}x{height} wafer has {have} PEs, so by area alone "
        f"they need at least {wafers} wafer{'s' if wafers != 1 else ''}",
        hint="use a target with a larger fabric, or split the model across wafers")


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
            model.hint(hint)
        fastest, spent = model.solve(model.bottleneck, budget.share(0.5))
        if fastest is None:
            return None
        cap = bottleneck_cycles(fastest)
        model.cap_bottleneck(cap)
        start = _closest_start(problem, [fastest, hint], cap)
        model.hint(start)
        return model.solve(model.distance, budget.minus(spent))[0] or start


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


class _PlacementModel:
    """Variables: per kernel one Boolean per candidate shape (exactly one true) and the top-left
    x, y; per shape optional x/y intervals present iff the shape is chosen, kept apart by one
    NoOverlap2D."""

    def __init__(self, problem: PlacementProblem):
        self.problem = problem
        self.model = cp_model.CpModel()
        width, height = problem.fabric
        count = len(problem.kernels)
        self.x = [self.model.new_int_var(0, width - 1, f"x{i}") for i in range(count)]
        self.y = [self.model.new_int_var(0, height - 1, f"y{i}") for i in range(count)]
        self.chosen: list[list[cp_model.IntVar]] = []
        x_intervals, y_intervals = [], []
        for i in range(count):
            chosen, xs, ys = self._choose_shape(i)
            self.chosen.append(chosen)
            x_intervals += xs
            y_intervals += ys
        self.model.add_no_overlap_2d(x_intervals, y_intervals)
        self.bottleneck = self._bottleneck()
        self.distance = self._chain_distance()

    def _choose_shape(self, i: int) -> tuple[list, list, list]:
        """Kernel i's shape Booleans (exactly one true) and their optional x and y intervals."""
        width, height = self.problem.fabric
        chosen, x_intervals, y_intervals = [], [], []
        for k, shape in enumerate(self.problem.candidates[i]):
            b = self.model.new_bool_var(f"k{i}s{k}")
            self.model.add(self.x[i] + shape.w <= width).only_enforce_if(b)
            self.model.add(self.y[i] + shape.h <= height).only_enforce_if(b)
            x_intervals.append(self.model.new_optional_fixed_size_interval_var(
                self.x[i], shape.w, b, f"k{i}s{k}x"))
            y_intervals.append(self.model.new_optional_fixed_size_interval_var(
                self.y[i], shape.h, b, f"k{i}s{k}y"))
            chosen.append(b)
        self.model.add_exactly_one(chosen)
        return chosen, x_intervals, y_intervals

    def _shape_sum(self, i: int, attr: str) -> cp_model.LinearExpr:
        """The chosen shape's w, h or cycles for kernel i, as a linear expression."""
        shapes = self.problem.candidates[i]
        return sum(getattr(s, attr) * b for s, b in zip(shapes, self.chosen[i]))

    def _bottleneck(self) -> cp_model.IntVar:
        cycles = [[s.cycles for s in shapes] for shapes in self.problem.candidates]
        lower = max(min(c) for c in cycles)
        upper = max(max(c) for c in cycles)
        bottleneck = self.model.new_int_var(lower, upper, "bottleneck")
        for i in range(len(cycles)):
            self.model.add(bottleneck >= self._shape_sum(i, "cycles"))
        return bottleneck

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
        for pos, size, span in ((self.x, "w", 2 * width), (self.y, "h", 2 * height)):
            delta = self.model.new_int_var(-span, span, f"d{size}{i}")
            self.model.add(delta == (2 * pos[i] + self._shape_sum(i, size))
                           - (2 * pos[i + 1] + self._shape_sum(i + 1, size)))
            gap = self.model.new_int_var(0, span, f"g{size}{i}")
            self.model.add_abs_equality(gap, delta)
            gaps.append(gap)
        # Redundant, but it gives the distance objective a bound: two disjoint rectangles are
        # apart along x or along y, so their centres differ by at least the two widths (or heights).
        apart_in_x = self.model.new_bool_var(f"apart{i}")
        self.model.add(gaps[0] >= self._shape_sum(i, "w") + self._shape_sum(i + 1, "w")
                       ).only_enforce_if(apart_in_x)
        self.model.add(gaps[1] >= self._shape_sum(i, "h") + self._shape_sum(i + 1, "h")
                       ).only_enforce_if(~apart_in_x)
        return gaps[0] + gaps[1]

    def cap_bottleneck(self, cycles: int) -> None:
        self.model.add(self.bottleneck <= cycles)

    def hint(self, layout: Layout) -> None:
        self.model.clear_hints()
        for i, placed in enumerate(layout):
            self.model.add_hint(self.x[i], placed.x)
            self.model.add_hint(self.y[i], placed.y)
            picked = self.problem.candidates[i].index(placed.shape)
            for k, b in enumerate(self.chosen[i]):
                self.model.add_hint(b, k == picked)

    def solve(self, objective: cp_model.IntVar,
              budget: SearchBudget) -> tuple[Layout | None, SearchBudget]:
        """The best layout found (None if none) and the budget the search spent."""
        self.model.minimize(objective)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = budget.seed
        solver.parameters.max_deterministic_time = budget.work
        solver.parameters.max_time_in_seconds = budget.time_limit_s
        # Full linearisation lets the LP see the abs and separation constraints: a real bound.
        solver.parameters.linearization_level = 2
        status = solver.solve(self.model)
        spent = SearchBudget(budget.seed, solver.deterministic_time, solver.wall_time)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None, spent
        layout = [PlacedShape(self._chosen_shape(solver, i), solver.value(self.x[i]),
                              solver.value(self.y[i])) for i in range(len(self.problem.kernels))]
        return layout, spent

    def _chosen_shape(self, solver: cp_model.CpSolver, i: int) -> ShapeCost:
        shapes = self.problem.candidates[i]
        return next(s for s, b in zip(shapes, self.chosen[i]) if solver.boolean_value(b))
