"""CanonicalizePass: simplify the IR with a table of (pattern -> rewrite) rules, to a fixed point.

requires: a well-formed IR graph (e.g. straight from the frontend).
ensures:  no reshape, expand or cast to its operand's own type and no identity permute;
          no reshape of a reshape and no permute of a permute;
          no `cat` operand without elements (Phi-3's partial rotary concatenates an empty
          pass-through slice) and no `cat` of a single operand;
          no slice of a reshape along a dim the reshape keeps whole: the slice comes first
          (so a kernel can load just the slice of its input, as GPT-2's q, k and v of c_attn);
          `sdpa` reads grouped key/value heads directly: HF's `repeat_kv` copy
          (`reshape(expand(reshape(kv)))`, [B,Hkv,S,D] -> [B,Hkv,n,S,D] -> [B,Hkv*n,S,D]) feeding
          sdpa's k or v is replaced by `kv`, since sdpa lets query head h read kv head
          h // (Hq / Hkv), the same numbers without materialising n copies;
          no dead ops and no unused params; the graph still verifies (`ir.verify.verify_graph`),
          so every result type still equals its op's shape rule.

A rule looks at one op (and, through `producers`, at what feeds it) and returns None (no match),
a `Value` that replaces the op's result everywhere, a new `Op` that computes the same result
value in the old op's place, or a list of new ops, in order, the last computing that value (a
value a rule creates is named after the op's result plus a `.tag`, which no frontend name has).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ir.graph import Graph, Op, Value
from ir.verify import verify_graph

Producers = dict[Value, Op]
Rule = Callable[[Op, Producers], "Value | Op | list[Op] | None"]


@dataclass(frozen=True)
class CanonicalizePass:
    name = "canonicalize"

    def run(self, graph: Graph) -> Graph:
        """Rewrite `graph` in place (and return it)."""
        while _sweep(graph):
            pass
        graph.remove_dead()
        verify_graph(graph)
        return graph


def _sweep(graph: Graph) -> bool:
    """Apply the first matching rule to each op; True if anything changed.

    Ops are visited consumers first, so a pattern rooted at a consumer (sdpa's repeat_kv) is
    matched before the rules for its producers (reshape merging) change its shape. Replaced
    results are substituted in one pass at the end, keeping a sweep linear in the graph's size.
    """
    producers = graph.producers()
    replaced: dict[Value, Value] = {}
    kept: list[Op] = []
    changed = False
    for op in reversed(graph.ops):
        rewrite = _first_rewrite(op, producers)
        changed |= rewrite is not None
        if isinstance(rewrite, Value):
            replaced[op.result] = rewrite  # the op goes: nothing will read its result
            continue
        if isinstance(rewrite, list):
            producers.update((new.result, new) for new in rewrite)
            kept.extend(reversed(rewrite))  # `kept` is in reverse order until the end
            continue
        if isinstance(rewrite, Op):
            op = producers[rewrite.result] = rewrite
        kept.append(op)
    graph.ops = kept[::-1]
    _substitute(graph, replaced)
    return changed


def _substitute(graph: Graph, replaced: dict[Value, Value]) -> None:
    def final(value: Value) -> Value:
        while value in replaced:  # identity of an identity: follow the chain
            value = replaced[value]
        return value

    for op in graph.ops:
        op.operands = [final(v) for v in op.operands]
    graph.outputs = [final(v) for v in graph.outputs]


def _first_rewrite(op: Op, producers: Producers) -> Value | Op | list[Op] | None:
    for rule in RULES.get(op.opname, ()):
        rewrite = rule(op, producers)
        if rewrite is not None:
            return rewrite
    return None


def _made_by(value: Value, opname: str, producers: Producers) -> Op | None:
    op = producers.get(value)
    return op if op is not None and op.opname == opname else None


def _replaced(op: Op, operands: list[Value], **attrs) -> Op:
    """`op` reading other operands (and attributes), keeping its result value and location."""
    return Op(op.opname, operands, op.results, {**op.attrs, **attrs}, op.loc)


# ---------------------------------------------------------------- rules

def identity_view(op: Op, producers: Producers) -> Value | None:
    """reshape/expand/cast whose result type is its operand's: the operand itself."""
    source = op.operands[0]
    return source if op.result.type == source.type else None


def identity_permute(op: Op, producers: Producers) -> Value | None:
    return op.operands[0] if list(op.attrs["perm"]) == list(range(op.result.type.rank)) else None


def merge_reshapes(op: Op, producers: Producers) -> Op | None:
    inner = _made_by(op.operands[0], "reshape", producers)
    return _replaced(op, [inner.operands[0]]) if inner else None


def merge_permutes(op: Op, producers: Producers) -> Op | None:
    inner = _made_by(op.operands[0], "permute", producers)
    if inner is None:
        return None
    # outer[i] = mid[outer_perm[i]] = x[inner_perm[outer_perm[i]]]
    perm = [inner.attrs["perm"][p] for p in op.attrs["perm"]]
    return _replaced(op, [inner.operands[0]], perm=perm)


def drop_empty_cat_operands(op: Op, producers: Producers) -> Value | Op | None:
    """cat ignores operands with no elements; a cat of one operand is that operand."""
    kept = [v for v in op.operands if v.type.numel > 0] or op.operands[:1]
    if len(kept) == 1 and kept[0].type == op.result.type:
        return kept[0]
    return _replaced(op, kept) if len(kept) < len(op.operands) else None


def slice_before_reshape(op: Op, producers: Producers) -> list[Op] | None:
    """slice(reshape(x)) along a dim the reshape keeps whole is reshape(slice(x))."""
    reshape = _made_by(op.operands[0], "reshape", producers)
    if reshape is None:
        return None
    source = reshape.operands[0]
    d = _kept_dim(source.type.shape, reshape.result.type.shape, op.attrs["dim"])
    if d is None:
        return None
    shape = list(source.type.shape)
    shape[d] = op.result.type.shape[op.attrs["dim"] % op.result.type.rank]
    sliced = Value(f"{op.result.name}.src", source.type.with_shape(shape))
    first = Op("slice", [source], [sliced], {**op.attrs, "dim": d}, op.loc)
    return [first, Op("reshape", [sliced], op.results, {"shape": list(op.result.type.shape)}, op.loc)]


def _kept_dim(source: tuple[int, ...], reshaped: tuple[int, ...], dim: int) -> int | None:
    """The dim of `source` that dim `dim` of `reshaped` is, whole: the same size (above 1), with
    as many elements before it. Slicing one is slicing the other."""
    e = dim % len(reshaped)
    before = math.prod(reshaped[:e])
    return next((d for d, n in enumerate(source) if n == reshaped[e] > 1
                 and math.prod(source[:d]) == before), None)


def direct_gqa_kv(op: Op, producers: Producers) -> Op | None:
    """sdpa reading repeat_kv(kv) as k or v reads kv instead (KV heads broadcast, not copied)."""
    operands = list(op.operands)
    for i in (1, 2):
        operands[i] = repeated_kv_source(operands[i], producers) or operands[i]
    if all(new is old for new, old in zip(operands, op.operands)):
        return None
    return _replaced(op, operands)


def repeated_kv_source(value: Value, producers: Producers) -> Value | None:
    """kv if `value` is reshape(expand(reshape(kv))): [B,H,S,D] -> [B,H,1,S,D] -> [B,H,n,S,D]
    -> [B,H*n,S,D] (each kv head repeated n times in a row, as HF's `repeat_kv`)."""
    merge = _made_by(value, "reshape", producers)
    expand = merge and _made_by(merge.operands[0], "expand", producers)
    unsqueeze = expand and _made_by(expand.operands[0], "reshape", producers)
    if not unsqueeze or unsqueeze.operands[0].type.rank != 4:
        return None
    kv = unsqueeze.operands[0]
    b, heads, seq, dim = kv.type.shape
    n = expand.result.type.shape[2] if expand.result.type.rank == 5 else 0
    shapes = (unsqueeze.result.type.shape, expand.result.type.shape, merge.result.type.shape)
    if shapes != ((b, heads, 1, seq, dim), (b, heads, n, seq, dim), (b, heads * n, seq, dim)):
        return None
    return kv


RULES: dict[str, list[Rule]] = {
    "reshape": [identity_view, merge_reshapes],
    "expand": [identity_view],
    "cast": [identity_view],
    "permute": [identity_permute, merge_permutes],
    "sdpa": [direct_gqa_kv],
    "cat": [drop_empty_cat_operands],
    "slice": [slice_before_reshape],
}
