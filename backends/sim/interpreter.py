"""Runs one WKL kernel program SPMD over its region: one method per statement kind.

Requires: the kernel's `in` tensors already delivered (whole arrays of their declared types) and a
callable that reads (and checks) a parameter by name.
Ensures:
* every local is one array of shape `(h, w, *local_shape)` — row `py` first, column `px` second —
  and each statement is applied to all PEs at once (`blocks.gather` loops over PEs only where a
  slice depends on px/py);
* `store` writes the in-bounds part of each writer PE's local into its `out`; when the blocks of
  several writers coincide, the last writer in row-major order is kept (programs store values
  the writers agree on, e.g. after a collective);
* every element of every `out` is written by the end of the kernel;
* the cycles counted for each statement run are `ir.wkl_cost.stmt_busy_cycles` (the kernel's
  stage time) and `ir.wkl_cost.stmt_cycles` (its latency, hops included).
Every problem is a `SimulationError` naming the kernel and carrying the statement's span.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from backends.sim.blocks import block_bounds, gather, write_block
from backends.sim.local_ops import evaluate
from backends.sim.numerics import numpy_dtype, round_to
from ir.errors import SimulationError, Span
from ir.target import Target
from ir.types import TensorType
from ir.wkl import Compute, KernelProgram, Load, Region, State, Store, Tile
from ir.wkl_cost import kernel_types, stmt_busy_cycles, stmt_cycles

ParamReader = Callable[[str, "Span | None"], np.ndarray]

_STMT_METHODS = {Tile: "run_tile", Load: "run_load", State: "run_state", Compute: "run_compute",
                 Store: "run_store"}


@dataclass
class KernelRun:
    outs: dict[str, np.ndarray]  # the kernel's `out` tensors, completely written
    cycles: int          # busy cycles: the kernel's stage time in a pipeline
    latency_cycles: int  # one pass start to finish: busy cycles plus hop latency


class KernelInterpreter:
    def __init__(self, kernel: KernelProgram, region: Region, ins: dict[str, np.ndarray],
                 read_param: ParamReader, target: Target):
        self.kernel = kernel
        self.h, self.w = region.h, region.w
        self.ins = ins
        self.read_param = read_param
        self.target = target
        self._check_statement_kinds()
        self.types = kernel_types(kernel)
        self.locals: dict[str, np.ndarray] = {}
        self.outs = {d.name: np.zeros(d.type.shape, numpy_dtype(d.type.dtype)) for d in kernel.outs}
        self.covered = {d.name: np.zeros(d.type.shape, dtype=bool) for d in kernel.outs}

    def run(self) -> KernelRun:
        busy = latency = 0
        for index, stmt in enumerate(self.kernel.body):
            self._execute(index, stmt)
            busy += stmt_busy_cycles(stmt, self.types, self.target, self.w, self.h)
            latency += stmt_cycles(stmt, self.types, self.target, self.w, self.h)
        self._check_coverage()
        return KernelRun(self.outs, busy, latency)

    def _check_statement_kinds(self) -> None:
        for index, stmt in enumerate(self.kernel.body):
            if type(stmt) not in _STMT_METHODS:
                raise self._error(index, stmt, f"the simulator does not know "
                                                f"{type(stmt).__name__} statements")

    def _execute(self, index: int, stmt) -> None:
        method = getattr(self, _STMT_METHODS[type(stmt)])
        try:
            method(stmt)
        except SimulationError as e:
            raise self._error(index, stmt, e.message, e.hint) from None
        except (ValueError, TypeError, IndexError) as e:  # op, block and numpy shape complaints
            raise self._error(index, stmt, str(e)) from None

    def _error(self, index: int, stmt, message: str, hint: str = "") -> SimulationError:
        span = getattr(stmt, "span", None)
        where = f"kernel '{self.kernel.name}'" + ("" if span else f", statement {index + 1}")
        return SimulationError(f"{where}: {message}", span, hint)

    # ------------------------------------------------------------ statements

    def run_tile(self, stmt: Tile) -> None:
        whole = self.read_param(stmt.param, stmt.span)
        self._define(stmt.name, stmt.type, gather(whole, stmt.slices, stmt.type.shape, self.h, self.w))

    def run_load(self, stmt: Load) -> None:
        if stmt.src not in self.ins:
            raise SimulationError(f"'{stmt.src}' is not an `in` of the kernel",
                                  hint=f"its ins are: {', '.join(self.ins) or 'none'}")
        whole = self.ins[stmt.src]
        self._define(stmt.name, stmt.type, gather(whole, stmt.slices, stmt.type.shape, self.h, self.w))

    def run_state(self, stmt: State) -> None:
        """A resident buffer, zero at load; one run of the program does not carry it further."""
        shape = (self.h, self.w) + stmt.type.shape
        self.locals[stmt.name] = np.zeros(shape, numpy_dtype(stmt.type.dtype))

    def run_compute(self, stmt: Compute) -> None:
        args = [self._local(name) for name in stmt.args]
        self.locals[stmt.name] = evaluate(stmt.op, args, stmt.attrs, stmt.type)

    def run_store(self, stmt: Store) -> None:
        if stmt.dst not in self.outs:
            raise SimulationError(f"'{stmt.dst}' is not an `out` of the kernel")
        local, whole = self._local(stmt.src), self.outs[stmt.dst]
        writers = self._store_writers(stmt, whole.shape)
        if not writers:
            raise SimulationError(f"no PE of the {self.w} x {self.h} region meets the store's "
                                  f"condition (px == {stmt.cond.px}, py == {stmt.cond.py})")
        for bounds, (px, py) in writers.items():
            write_block(whole, self.covered[stmt.dst], bounds, local[py, px])

    # ------------------------------------------------------------ helpers

    def _define(self, name: str, type_: TensorType, value: np.ndarray) -> None:
        self.locals[name] = round_to(value, type_.dtype)

    def _local(self, name: str) -> np.ndarray:
        if name not in self.locals:
            hint = "load it into a local first" if name in self.ins or name in self.outs else ""
            raise SimulationError(f"'{name}' is not a local defined before this statement", hint=hint)
        return self.locals[name]

    def _store_writers(self, stmt: Store, shape: tuple[int, ...]) -> dict:
        """The last PE (row-major) that writes each distinct block, keyed by the block's bounds."""
        rows = range(self.h) if stmt.cond.py is None else [stmt.cond.py]
        cols = range(self.w) if stmt.cond.px is None else [stmt.cond.px]
        writers = {}
        for py in (r for r in rows if 0 <= r < self.h):
            for px in (c for c in cols if 0 <= c < self.w):
                writers[block_bounds(stmt.slices, shape, px, py)] = (px, py)
        return writers

    def _check_coverage(self) -> None:
        for decl in self.kernel.outs:
            unwritten = np.argwhere(~self.covered[decl.name])
            if len(unwritten):
                raise SimulationError(
                    f"kernel '{self.kernel.name}' leaves {len(unwritten)} of "
                    f"{self.covered[decl.name].size} elements of out '{decl.name}' unwritten "
                    f"(the first at index {unwritten[0].tolist()})",
                    decl.span or self.kernel.span,
                    hint="every element of an `out` must be stored by some PE")
