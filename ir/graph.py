"""The IR graph: SSA values, ops and the graph that owns them.

A `Graph` has user inputs, named parameters (weights and folded constants; their data lives outside
the IR, so size-only graphs are ordinary graphs), ops in a valid topological order, and outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ir.errors import SourceLoc
from ir.types import TensorType

Attr = Any  # int | float | bool | str | None | list[int | float]


@dataclass(eq=False)
class Value:
    name: str
    type: TensorType

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


@dataclass(eq=False)
class Op:
    opname: str
    operands: list[Value]
    results: list[Value]
    attrs: dict[str, Attr] = field(default_factory=dict)
    loc: SourceLoc = field(default_factory=SourceLoc)

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.opname} has {len(self.results)} results"
        return self.results[0]

    def __repr__(self) -> str:
        return f"Op({self.opname}, {[v.name for v in self.operands]} -> {[v.name for v in self.results]})"


@dataclass(eq=False)
class Graph:
    name: str
    inputs: list[Value] = field(default_factory=list)
    params: list[Value] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)

    def producers(self) -> dict[Value, Op]:
        return {r: op for op in self.ops for r in op.results}

    def users(self) -> dict[Value, list[Op]]:
        out: dict[Value, list[Op]] = {}
        for op in self.ops:
            for v in op.operands:
                out.setdefault(v, []).append(op)
        return out

    def param_names(self) -> set[str]:
        return {p.name for p in self.params}

    def replace_uses(self, old: Value, new: Value) -> None:
        """Make every use of `old` (operands and outputs) use `new` instead."""
        for op in self.ops:
            op.operands = [new if v is old else v for v in op.operands]
        self.outputs = [new if v is old else v for v in self.outputs]

    def remove_dead(self) -> None:
        """Drop ops whose results are never used, and parameters nothing reads."""
        live = set(self.outputs)
        kept: list[Op] = []
        for op in reversed(self.ops):
            if any(r in live for r in op.results):
                kept.append(op)
                live.update(op.operands)
        self.ops = kept[::-1]
        self.params = [p for p in self.params if p in live]


class NameGen:
    """Fresh SSA names, deterministic for a given order of requests."""

    def __init__(self, taken: set[str] = frozenset()):
        self.taken = set(taken)

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in hint) or "v"
        if base[0].isdigit():
            base = f"_{base}"
        return self.unique(base)

    def unique(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ...: the first name not taken (kept as given, dots and
        all, for names such as a parameter's dotted path)."""
        name, i = base, 0
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name
