"""PartitionPass: group IR ops into kernels, the unit of placement.

requires: a canonical, verified IR graph.
ensures:  every op belongs to exactly one kernel; kernels are listed in an order in which each only
          reads graph inputs, parameters and outputs of earlier kernels.

Anchors start kernels: `linear`, `qlinear`, `matmul` against a parameter, and `embedding`. An anchor
absorbs its elementwise epilogue (bias, activation, residual add, gating multiply) while the chain
keeps the anchor's output shape and no absorbed op waits on the kernel itself through another path.
The remaining ops are scheduled as late as their users allow and anchors as early as their operands
allow, so that runs of data movement and vector math between two anchors form one "vector" kernel
(e.g. the whole attention core between the QKV projections and the output projection).
"""
from __future__ import annotations

import heapq
import re
from dataclasses import dataclass

from ir.graph import Graph, NameGen, Op, Value
from ir.kernels import Kernel, KernelGraph
from ir.ops import OpKind, flops, lookup

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)(?:\.|$)")


def anchor_kind(op: Op, params: set[Value]) -> str | None:
    if op.opname in ("linear", "qlinear") and op.operands[1] in params:
        return "linear"
    if op.opname == "matmul" and op.operands[1] in params and op.operands[1].type.rank == 2:
        return "linear"
    if op.opname == "embedding" and op.operands[0] in params:
        return "embedding"
    return None


def layer_of(module: str) -> int | None:
    m = _LAYER.search(module)
    return int(m[1]) if m else None


@dataclass(frozen=True)
class PartitionPass:
    name = "partition"

    def run(self, graph: Graph) -> KernelGraph:
        params = set(graph.params)
        units = _fuse_epilogues(graph, params)
        order = _schedule(units, graph)
        groups = _segment(order, params)
        return KernelGraph(graph, _make_kernels(groups, graph))


def _fuse_epilogues(graph: Graph, params: set[Value]) -> list[list[Op]]:
    """Each anchor with its fused epilogue is one unit; every other op is a unit of its own."""
    users = graph.users()
    index = {op: i for i, op in enumerate(graph.ops)}
    producer = graph.producers()
    taken: set[Op] = set()
    units = []
    for op in graph.ops:
        if op in taken:
            continue
        unit = [op]
        if anchor_kind(op, params):
            unit += _epilogue(op, users, producer, index, taken)
        taken.update(unit)
        units.append(unit)
    return units


def _epilogue(anchor: Op, users, producer, index, taken: set[Op]) -> list[Op]:
    chain, cur = [], anchor.result
    inside = {anchor}
    while len(users.get(cur, [])) == 1:
        nxt = users[cur][0]
        if (nxt in taken or lookup(nxt.opname).kind is not OpKind.ELEMENTWISE or nxt.result.type.shape != cur.type.shape
                or nxt.result.type.dtype != cur.type.dtype
                or any(_depends_on(v, inside, producer, index[anchor]) for v in nxt.operands if v is not cur)):
            break
        chain.append(nxt)
        inside.add(nxt)
        cur = nxt.result
    return chain


def _depends_on(value: Value, ops: set[Op], producer, floor: int) -> bool:
    """Whether `value` is computed from any op in `ops` (searching only ops after index `floor`)."""
    stack, seen = [value], set()
    while stack:
        op = producer.get(stack.pop())
        if op is None or op in seen:
            continue
        if op in ops:
            return True
        seen.add(op)
        stack.extend(op.operands)
    return False


def _schedule(units: list[list[Op]], graph: Graph) -> list[list[Op]]:
    """Topological order of units: a ready anchor first, else the earliest ready other unit
    (Kahn's algorithm with that priority, so a 126-layer model schedules in n log n)."""
    unit_of = {op: u for u, unit in enumerate(units) for op in unit}
    producer = graph.producers()
    deps = [{unit_of[p] for op in unit for v in op.operands
             if (p := producer.get(v)) is not None and unit_of[p] != u}
            for u, unit in enumerate(units)]
    dependents: list[list[int]] = [[] for _ in units]
    for u, ds in enumerate(deps):
        for d in ds:
            dependents[d].append(u)
    params = set(graph.params)
    waiting = [len(ds) for ds in deps]
    priority = [(0 if anchor_kind(unit[0], params) else 1, u) for u, unit in enumerate(units)]
    ready = [priority[u] for u in range(len(units)) if not waiting[u]]
    heapq.heapify(ready)
    order = []
    while ready:
        _, u = heapq.heappop(ready)
        order.append(units[u])
        for d in dependents[u]:
            waiting[d] -= 1
            if not waiting[d]:
                heapq.heappush(ready, priority[d])
    return order


def _segment(order: list[list[Op]], params: set[Value]) -> list[tuple[str, list[Op]]]:
    groups: list[tuple[str, list[Op]]] = []
    for unit in order:
        kind = anchor_kind(unit[0], params)
        if kind:
            groups.append((kind, list(unit)))
        elif groups and groups[-1][0] == "vector":
            groups[-1][1].extend(unit)
        else:
            groups.append(("vector", list(unit)))
    return groups


def _make_kernels(groups, graph: Graph) -> list[Kernel]:
    params = set(graph.params)
    users = graph.users()
    outputs = set(graph.outputs)
    names = NameGen()
    kernels = []
    for kind, ops in groups:
        defined = {r for op in ops for r in op.results}
        reads = _unique(v for op in ops for v in op.operands if v not in defined)
        used_later = [r for op in ops for r in op.results
                      if r in outputs or any(u not in ops for u in users.get(r, []))]
        anchor = ops[0] if kind != "vector" else _heaviest(ops)
        kernels.append(Kernel(
            name=names.fresh(_kernel_name(anchor, kind)), kind=kind, ops=ops,
            inputs=[v for v in reads if v not in params], params=[v for v in reads if v in params],
            outputs=used_later, layer=layer_of(anchor.loc.module), loc=anchor.loc))
    return kernels


def _heaviest(ops: list[Op]) -> Op:
    """The op that names a vector kernel: the one doing the most arithmetic (attention, a norm)."""
    return max(ops, key=op_flops)  # max keeps the first of equals


def op_flops(op: Op) -> int:
    return flops(op.opname, [v.type for v in op.operands], op.result.type, op.attrs)


def _kernel_name(anchor: Op, kind: str) -> str:
    module = anchor.loc.module.removeprefix("model.")
    return module or (anchor.opname if kind == "vector" else f"{kind}_{anchor.result.name}")


def _unique(values) -> list[Value]:
    seen, out = set(), []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out
