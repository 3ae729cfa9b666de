"""Sharding rules for vector kernels: which tensor dim of each value is split across PEs.

A kernel is sharded `n` ways along one dim per value, with every shard's work local to its PE.
Each op contributes a table: for every result dim that may be sharded, the dim each operand must be
sharded on (None: the operand is needed whole, e.g. broadcast or a normaliser's weight). Starting
from a seed (one value, one dim), the tables are applied in both directions until nothing changes;
a contradiction rejects the seed. The plan with the most parallelism wins; values the propagation
never reaches are replicated on every PE.

`sum` and `mean` may also reduce *across* the shards (a norm over a hidden dim split between PEs):
each PE reduces its block and a `reduce_all` collective completes the result, which is then
replicated. The lowering finds these ops as "result replicated, operand sharded".

A unit-step `slice` of a kernel input is a *block load* (`is_block_load`): each PE loads only its
block of the slice, at the slice's offset in the input, so the slice constrains nothing about the
input and may be split along any dim, the sliced one included. This is what lets the q, k and v
thirds of a fused projection (GPT-2's c_attn, Phi-3's qkv_proj) be split by heads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ir.graph import Op, Value
from ir.kernels import Kernel
from ir.ops import REGISTRY, OpKind, norm_dim

DimTable = dict[int, tuple[int | None, ...]]


@dataclass(frozen=True)
class ShardPlan:
    dims: dict  # Value -> sharded dim, or None (replicated)
    parallelism: int  # the largest shard count every sharded dim divides

    def shards(self, pes: int) -> int:
        """Shard count on a region of `pes` PEs: the largest divisor of the parallelism that fits."""
        return max(d for d in range(1, min(pes, self.parallelism) + 1) if self.parallelism % d == 0)


def plan_sharding(kernel: Kernel) -> ShardPlan:
    ops, tables = _propagation_ops(kernel)
    best = ShardPlan({}, 1)
    for seed in _seeds(kernel, ops):
        dims = _propagate(ops, tables, *seed)
        if dims is None:
            continue
        sizes = [v.type.shape[d] for v, d in dims.items() if d is not None]
        par = math.gcd(*sizes) if sizes else 1
        if par > best.parallelism:
            best = ShardPlan(dims, par)
    return best


def is_block_load(op: Op, kernel: Kernel) -> bool:
    """A unit-step slice of one of the kernel's inputs, lowered as a load of the PE's block."""
    return (op.opname == "slice" and op.attrs.get("step", 1) == 1
            and any(op.operands[0] is v for v in kernel.inputs))


def _propagation_ops(kernel: Kernel) -> tuple[list[Op], dict]:
    """The kernel's ops and their dim tables, a block load standing in as an op without operands
    whose result may be split along any dim."""
    ops, tables = [], {}
    for op in kernel.ops:
        if is_block_load(op, kernel):
            op = Op(op.opname, [], op.results, op.attrs, op.loc)
            tables[op] = {r: () for r in range(op.result.type.rank)}
        else:
            tables[op] = dim_table(op)
        ops.append(op)
    return ops, tables


def _seeds(kernel: Kernel, ops: list[Op]):
    # An input only block loads read is split by nothing: seeding it would only shard itself.
    read = {v for op in ops for v in op.operands}
    values = [v for v in kernel.inputs if v in read] + [op.result for op in ops]
    return [(v, d) for v in values for d, n in enumerate(v.type.shape) if n > 1]


def _propagate(ops: list[Op], tables: dict, seed: Value, seed_dim: int) -> dict | None:
    dims: dict = {seed: seed_dim}
    changed = True
    while changed:
        changed = False
        for op in ops:
            implied = _implied(op, tables[op], dims)
            if implied is None:
                return None
            for v, d in implied.items():
                if v not in dims:
                    dims[v] = d
                    changed = True
                elif dims[v] != d:
                    return None
    return dims if _consistent(ops, tables, dims) else None


_UNKNOWN, _CONFLICT = object(), object()
_CROSS_SHARD = {"sum", "mean"}  # reductions that may span the shards, completed by reduce_all


def is_cross_shard(op: Op, dims: dict) -> bool:
    """A sum/mean whose operand is split along a reduced dim: local reduce, then reduce_all."""
    if op.opname not in _CROSS_SHARD or dims.get(op.result) is not None:
        return False
    d = dims.get(op.operands[0])
    rank = op.operands[0].type.rank
    return d is not None and d in {norm_dim(x, rank) for x in op.attrs["dims"]}


def _implied(op: Op, table: DimTable, dims: dict) -> dict | None:
    """What the op's table says about its unknown values, or None for a contradiction."""
    r = dims.get(op.result, _UNKNOWN)
    if r is _UNKNOWN:
        r = _result_dim_from_operands(op, table, dims)
        if r is _UNKNOWN:
            return {}
        if r is _CONFLICT:
            return None
    if r is None:
        if is_cross_shard(op, {**dims, op.result: None}):
            return {op.result: None}
        return {op.result: None, **{v: None for v in op.operands}}
    if r not in table:
        return None
    return {op.result: r, **dict(zip(op.operands, table[r]))}


def _result_dim_from_operands(op: Op, table: DimTable, dims: dict):
    """The result dim implied by an operand already sharded (None: replicated by a cross-shard
    reduction); _UNKNOWN when no operand is sharded yet, _CONFLICT when no result dim fits."""
    for i, v in enumerate(op.operands):
        d = dims.get(v)
        if d is not None:
            r = next((r for r, need in table.items() if need[i] == d), _CONFLICT)
            if r is _CONFLICT and is_cross_shard(op, {**dims, op.result: None}):
                return None
            return r
    return _UNKNOWN


def _consistent(ops: list[Op], tables: dict, dims: dict) -> bool:
    for op in ops:
        r = dims.get(op.result)
        if r is None and is_cross_shard(op, dims):
            continue
        need = (None,) * len(op.operands) if r is None else tables[op].get(r)
        if need is None or any(dims.get(v) != d for v, d in zip(op.operands, need)):
            return False
    return True


# ------------------------------------------------------------------ per-op tables

def dim_table(op: Op) -> DimTable:
    kind = REGISTRY[op.opname].kind
    rule = _RULES.get(op.opname) or _KIND_RULES.get(kind)
    return rule(op) if rule else {}


def _aligned(operand: Value, out_rank: int, r: int, out_size: int) -> int | None:
    """The operand dim that broadcasting lines up with result dim r (None if broadcast)."""
    d = r - (out_rank - operand.type.rank)
    if d < 0 or operand.type.shape[d] != out_size:
        return None
    return d


def _elementwise(op: Op) -> DimTable:
    out = op.result.type
    return {r: tuple(_aligned(v, out.rank, r, n) for v in op.operands)
            for r, n in enumerate(out.shape)}


def _reduce(op: Op) -> DimTable:
    rank = op.operands[0].type.rank
    reduced = {norm_dim(d, rank) for d in op.attrs["dims"]}
    kept = [d for d in range(rank) if op.attrs.get("keepdim") or d not in reduced]
    return {r: (d,) for r, d in enumerate(kept) if d not in reduced}


def _softmax(op: Op) -> DimTable:
    rank = op.result.type.rank
    return {r: (r,) for r in range(rank) if r != norm_dim(op.attrs["dim"], rank)}


def _layer_norm(op: Op) -> DimTable:
    rank = op.result.type.rank
    return {r: (r,) + (None,) * (len(op.operands) - 1) for r in range(rank - op.attrs["ndim"])}


def _permute(op: Op) -> DimTable:
    return {r: (p,) for r, p in enumerate(op.attrs["perm"])}


def _expand(op: Op) -> DimTable:
    return _elementwise(op)


def _slice(op: Op) -> DimTable:
    rank = op.result.type.rank
    d = norm_dim(op.attrs["dim"], rank)
    return {r: (r,) for r in range(rank) if r != d}


def _cat(op: Op) -> DimTable:
    rank = op.result.type.rank
    d = norm_dim(op.attrs["dim"], rank)
    return {r: (r,) * len(op.operands) for r in range(rank) if r != d}


def _reshape(op: Op) -> DimTable:
    """A dim maps through a reshape when the dims before it hold the same number of elements and
    one of the two sizes is a multiple of the other (a split or a merge with it leading)."""
    src, out = op.operands[0].type.shape, op.result.type.shape
    table = {}
    for e, n_out in enumerate(out):
        for d, n_in in enumerate(src):
            if (n_in > 1 and n_out > 1 and math.prod(src[:d]) == math.prod(out[:e])
                    and (n_in % n_out == 0 or n_out % n_in == 0)):
                table[e] = (d,)
    return table


def _matmul(op: Op) -> DimTable:
    a, b = op.operands
    out = op.result.type
    table = {r: (_aligned(a, out.rank, r, n), _aligned(b, out.rank, r, n))
             for r, n in enumerate(out.shape[:-2])}
    table[out.rank - 2] = (a.type.rank - 2, None)
    table[out.rank - 1] = (None, b.type.rank - 1)
    return table


def _linear(op: Op) -> DimTable:
    out = op.result.type
    extra = (None,) * (len(op.operands) - 2)
    table = {r: (r, None) + extra for r in range(out.rank - 1)}
    table[out.rank - 1] = (None, 0) + (0,) * len(extra)
    return table


def _embedding(op: Op) -> DimTable:
    out = op.result.type
    table = {r: (None, r) for r in range(out.rank - 1)}
    table[out.rank - 1] = (1, None)
    return table


def _sdpa(op: Op) -> DimTable:
    """Batch or heads; sharding heads keeps each query head with its key/value head (GQA), and a
    single key/value head (MQA) is read whole by every shard."""
    out = op.result.type
    mask = op.operands[3:]
    kv = {0: 0, 1: 1 if op.operands[1].type.shape[1] > 1 else None}
    return {r: (r, kv[r], kv[r]) + tuple(_aligned(m, 4, r, out.shape[r]) for m in mask) for r in (0, 1)}


_RULES = {"softmax": _softmax, "layer_norm": _layer_norm, "permute": _permute, "expand": _expand,
          "slice": _slice, "cat": _cat, "reshape": _reshape, "matmul": _matmul, "linear": _linear,
          "embedding": _embedding, "sdpa": _sdpa,
          "qlinear": _linear}  # scale and bias follow the output dim, as linear's bias does
_KIND_RULES = {OpKind.ELEMENTWISE: _elementwise, OpKind.REDUCE: _reduce}
