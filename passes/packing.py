"""The CP-SAT model both placers solve: rectangles, each choosing one of its candidate shapes,
packed without overlap inside a box.

Per rectangle: one Boolean per candidate (exactly one true), the top-left x and y, and per
candidate optional x/y intervals present iff it is chosen, all under one NoOverlap2D. `stage` is
the slowest chosen candidate's cycles. Placers add their own chain-distance objective on top
(`centre` gives the doubled centre of a rectangle) and solve twice, never with a weighted sum.
Candidates are anything with `w`, `h` and `cycles`.
"""
from __future__ import annotations

from ortools.sat.python import cp_model


class ShapePacking:
    def __init__(self, candidates: list[list], box: tuple[int, int]):
        self.candidates = candidates
        self.box = box
        self.model = cp_model.CpModel()
        width, height = box
        count = len(candidates)
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
        self.stage = self._stage()

    def _choose_shape(self, i: int) -> tuple[list, list, list]:
        """Rectangle i's candidate Booleans (exactly one true) and their optional intervals."""
        width, height = self.box
        chosen, x_intervals, y_intervals = [], [], []
        for k, shape in enumerate(self.candidates[i]):
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

    def chosen_sum(self, i: int, attr: str) -> cp_model.LinearExpr:
        """The chosen candidate's w, h or cycles for rectangle i, as a linear expression."""
        return sum(getattr(s, attr) * b for s, b in zip(self.candidates[i], self.chosen[i]))

    def centre(self, i: int) -> tuple[cp_model.LinearExpr, cp_model.LinearExpr]:
        """Rectangle i's centre in doubled coordinates (integral)."""
        return 2 * self.x[i] + self.chosen_sum(i, "w"), 2 * self.y[i] + self.chosen_sum(i, "h")

    def _stage(self) -> cp_model.IntVar:
        # The slowest rectangle's fastest candidate bounds the stage from below: a tight domain.
        cycles = [[s.cycles for s in shapes] for shapes in self.candidates]
        stage = self.model.new_int_var(max(min(c) for c in cycles), max(max(c) for c in cycles), "stage")
        for i in range(len(cycles)):
            self.model.add(stage >= self.chosen_sum(i, "cycles"))
        return stage

    def cap_stage(self, cycles: int) -> None:
        self.model.add(self.stage <= cycles)

    def hint(self, picks: list[tuple[object, int, int]]) -> None:
        """Start the search from (candidate, x, y) per rectangle."""
        self.model.clear_hints()
        for i, (shape, x, y) in enumerate(picks):
            self.model.add_hint(self.x[i], x)
            self.model.add_hint(self.y[i], y)
            for candidate, b in zip(self.candidates[i], self.chosen[i]):
                self.model.add_hint(b, candidate == shape)

    def solve(self, objective: cp_model.IntVar, seed: int, work: float, time_limit_s: float,
              linearization_level: int = 1) -> tuple[list[tuple[object, int, int]] | None, cp_model.CpSolver]:
        """(candidate, x, y) per rectangle for the best packing found (None if none), and the
        solver (its deterministic and wall time say what the search spent). One worker, a fixed
        seed and a deterministic work limit: the same model gives the same answer anywhere."""
        self.model.minimize(objective)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = seed
        solver.parameters.max_deterministic_time = work
        solver.parameters.max_time_in_seconds = time_limit_s
        solver.parameters.linearization_level = linearization_level
        if solver.solve(self.model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None, solver
        return [(self._picked(solver, i), solver.value(self.x[i]), solver.value(self.y[i]))
                for i in range(len(self.candidates))], solver

    def _picked(self, solver: cp_model.CpSolver, i: int):
        return next(s for s, b in zip(self.candidates[i], self.chosen[i]) if solver.boolean_value(b))
