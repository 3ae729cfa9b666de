"""The op registry: every IR op declares its operands, shape rule, FLOPs and kind in one place.

WKL's local compute operations are the same ops with the same meaning, applied to a PE's tiles, so
this table is also what the WKL checker uses to type a kernel program.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from ir.types import DType, TensorType


class OpKind(Enum):
    ELEMENTWISE = "elementwise"  # result[i] depends on operands[i] (with broadcasting)
    REDUCE = "reduce"            # reduces or normalises along `dims`/`dim`
    VIEW = "view"                # moves data without arithmetic
    MATMUL = "matmul"            # contraction
    GATHER = "gather"            # table lookup
    ATTENTION = "attention"
    COLLECTIVE = "collective"    # WKL only: moves data between the PEs of a region


ShapeRule = Callable[[list[TensorType], dict], TensorType]
FlopRule = Callable[[list[TensorType], TensorType, dict], int]


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: OpKind
    arity: tuple[int, int]  # (min, max) number of operands
    shape: ShapeRule
    flops: FlopRule
    attrs: tuple[str, ...] = ()  # required attributes

    def check_arity(self, n: int) -> bool:
        return self.arity[0] <= n <= self.arity[1]


REGISTRY: dict[str, OpDef] = {}


def register(name, kind, arity, shape, flops, attrs=()) -> None:
    REGISTRY[name] = OpDef(name, kind, arity, shape, flops, tuple(attrs))


def lookup(name: str) -> OpDef | None:
    return REGISTRY.get(name)


class ShapeError(ValueError):
    """A shape rule rejected its operands; the caller attaches a location."""


# ---------------------------------------------------------------- shape helpers

def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise ShapeError(f"shapes {', '.join(map(str, shapes))} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def norm_dim(d: int, rank: int) -> int:
    if not -max(rank, 1) <= d < max(rank, 1):
        raise ShapeError(f"dim {d} out of range for rank {rank}")
    return d % max(rank, 1)


def _elementwise(ts, attrs):
    shape = broadcast_shapes(*[t.shape for t in ts])
    return TensorType(shape, attrs.get("dtype_out") and DType(attrs["dtype_out"]) or ts[0].dtype)


def _binary(ts, attrs):
    _check_scalar_operand(ts, attrs)
    return _elementwise(ts, attrs)


def _compare(ts, attrs):
    _check_scalar_operand(ts, attrs)
    return TensorType(broadcast_shapes(*[t.shape for t in ts]), DType.bool)


def _check_scalar_operand(ts, attrs):
    # A binary op with one tensor operand takes its other operand from the `scalar` attribute.
    if len(ts) == 1 and "scalar" not in attrs:
        raise ShapeError("a binary op with one operand needs a 'scalar' attribute")


def _cast(ts, attrs):
    return TensorType(ts[0].shape, DType(attrs["dtype"]))


def _where(ts, attrs):
    return TensorType(broadcast_shapes(*[t.shape for t in ts]), ts[1].dtype)


def _reduce(ts, attrs):
    shape = ts[0].shape
    dims = {norm_dim(d, len(shape)) for d in attrs["dims"]}
    if len(dims) != len(attrs["dims"]):
        raise ShapeError(f"reduction dims {list(attrs['dims'])} name a dimension twice")
    keep = attrs.get("keepdim", False)
    out = [1 if i in dims else n for i, n in enumerate(shape) if keep or i not in dims]
    return TensorType(tuple(out), ts[0].dtype)


def _same(ts, attrs):
    return ts[0]


def _same_checking_dim(ts, attrs):
    norm_dim(attrs["dim"], ts[0].rank)
    return ts[0]


def _layer_norm(ts, attrs):
    # Normalises over the last `ndim` dims; weight and bias have exactly that trailing shape.
    x, ndim = ts[0], attrs["ndim"]
    if not 1 <= ndim <= x.rank:
        raise ShapeError(f"layer_norm over {ndim} trailing dims of {x}")
    for t in ts[1:]:
        if t.shape != x.shape[x.rank - ndim:]:
            raise ShapeError(f"layer_norm weight {t} does not match input {x}")
    return x


def _linear(ts, attrs):
    x, w = ts[0], ts[1]
    if w.rank != 2 or x.rank < 1 or x.shape[-1] != w.shape[1]:
        raise ShapeError(f"linear of {x} by weight {w}: inner dims differ")
    if len(ts) == 3 and ts[2].shape != (w.shape[0],):
        raise ShapeError(f"linear bias {ts[2]} does not match weight {w}")
    return TensorType(x.shape[:-1] + (w.shape[0],), x.dtype)


QUANTISED_DTYPES = (DType.fp8, DType.i8)  # weight types of `qlinear`


def _qlinear(ts, attrs):
    """x @ (wq * scale[:, None]).T (+ bias): a linear whose [N, K] weight is stored quantised, with
    one float scale per output channel (row of wq)."""
    x, wq, scale = ts[:3]
    if wq.dtype not in QUANTISED_DTYPES:
        raise ShapeError(f"qlinear weight {wq} must be {' or '.join(map(str, QUANTISED_DTYPES))}")
    out = _linear([x, wq] + ts[3:], attrs)
    if scale.shape != wq.shape[:1] or not scale.dtype.is_float:
        raise ShapeError(f"qlinear scale {scale} must be one float per row of the weight {wq}")
    return out


def _matmul(ts, attrs):
    a, b = ts
    if a.rank < 2 or b.rank < 2 or a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul of {a} and {b}: inner dims differ")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return TensorType(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _embedding(ts, attrs):
    table, ids = ts
    if table.rank != 2 or ids.dtype.is_float:
        raise ShapeError(f"embedding needs a 2-d table and integer ids, got {table} and {ids}")
    return TensorType(ids.shape + (table.shape[1],), table.dtype)


def _reshape(ts, attrs):
    shape = _explicit_shape(attrs["shape"])
    if math.prod(shape) != ts[0].numel:
        raise ShapeError(f"cannot reshape {ts[0]} to {list(shape)}")
    return ts[0].with_shape(shape)


def _permute(ts, attrs):
    perm = list(attrs["perm"])
    if sorted(perm) != list(range(ts[0].rank)):
        raise ShapeError(f"permutation {perm} does not fit {ts[0]}")
    return ts[0].with_shape(ts[0].shape[p] for p in perm)


def _explicit_shape(shape) -> tuple[int, ...]:
    # IR shapes are resolved: no -1 placeholders (the frontend fills them in).
    if any(d < 0 for d in shape):
        raise ShapeError(f"shape {list(shape)} has a negative dimension")
    return tuple(shape)


def _expand(ts, attrs):
    shape = _explicit_shape(attrs["shape"])
    src = ts[0].shape
    if len(shape) < len(src) or broadcast_shapes(src, shape) != shape:
        raise ShapeError(f"cannot expand {ts[0]} to {list(shape)}")
    return ts[0].with_shape(shape)


def _slice(ts, attrs):
    shape = list(ts[0].shape)
    d = norm_dim(attrs["dim"], len(shape))
    start, end, step = slice_bounds(shape[d], attrs["start"], attrs["end"], attrs.get("step", 1))
    shape[d] = len(range(start, end, step))
    return ts[0].with_shape(shape)


def slice_bounds(size: int, start: int, end: int, step: int) -> tuple[int, int, int]:
    if step < 1:
        raise ShapeError(f"slice step {step} must be positive")
    return slice(start, end, step).indices(size)


def _cat(ts, attrs):
    d = norm_dim(attrs["dim"], ts[0].rank)
    rest = {t.shape[:d] + t.shape[d + 1:] for t in ts}
    if len(rest) != 1 or len({t.rank for t in ts}) != 1:
        raise ShapeError(f"cat along dim {d} of mismatched shapes {[str(t) for t in ts]}")
    shape = list(ts[0].shape)
    shape[d] = sum(t.shape[d] for t in ts)
    return ts[0].with_shape(shape)


def _sdpa(ts, attrs):
    q, k, v = ts[:3]
    if q.rank != 4 or k.rank != 4 or v.rank != 4:
        raise ShapeError("scaled_dot_product_attention needs [batch, heads, seq, dim] operands")
    if (k.shape[:3] != v.shape[:3] or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]
            or k.shape[1] == 0 or q.shape[1] % k.shape[1]):  # GQA: kv heads divide q heads
        raise ShapeError(f"attention operands {q}, {k}, {v} do not fit together")
    scores = q.shape[:3] + (k.shape[2],)
    if len(ts) == 4 and not _broadcasts_to(ts[3].shape, scores):
        raise ShapeError(f"attention mask {ts[3]} does not broadcast to the scores {list(scores)}")
    _check_window(attrs.get("window"))
    return TensorType(q.shape[:3] + (v.shape[3],), q.dtype)


def _check_window(window) -> None:
    # `window = W` (optional): query i sees only keys j with i - j < W (Mistral's sliding window).
    if window is not None and (type(window) is not int or window < 1):
        raise ShapeError(f"attention window must be a positive number of keys, got {window!r}")


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return len(shape) <= len(target) and broadcast_shapes(shape, target) == target
    except ShapeError:
        return False


def _collective(ts, attrs):
    return ts[0]


# ---------------------------------------------------------------- flop rules

def _per_elem(k):
    return lambda ts, out, attrs: k * out.numel


def _reduce_flops(ts, out, attrs):
    return ts[0].numel


def _zero(ts, out, attrs):
    return 0


def _linear_flops(ts, out, attrs):
    return 2 * out.numel * ts[1].shape[1] + (out.numel if len(ts) == 3 else 0)


def _qlinear_flops(ts, out, attrs):
    # The matmul, plus dequantising each weight element once per pass (widen and scale).
    return 2 * out.numel * ts[1].shape[1] + ts[1].numel + (out.numel if len(ts) == 4 else 0)


def _matmul_flops(ts, out, attrs):
    return 2 * out.numel * ts[0].shape[-1]


def _sdpa_flops(ts, out, attrs):
    q, k = ts[0], ts[1]
    b, h, sq, d = q.shape
    sk = k.shape[2]
    return b * h * sq * sk * (4 * d + 5)


E, R, V = OpKind.ELEMENTWISE, OpKind.REDUCE, OpKind.VIEW

UNARY = {"neg": 1, "exp": 4, "log": 4, "sqrt": 4, "rsqrt": 4, "relu": 1, "silu": 6, "sigmoid": 5,
         "tanh": 6, "abs": 1, "gelu": 10}
BINARY = {"add": 1, "sub": 1, "mul": 1, "div": 4, "pow": 6, "maximum": 1, "minimum": 1}
COMPARE = ("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or")

for _n, _k in UNARY.items():
    register(_n, E, (1, 1), _elementwise, _per_elem(_k))
# Binary ops take two tensors, or one tensor and a `scalar` attribute (`swap` puts it on the left).
for _n, _k in BINARY.items():
    register(_n, E, (1, 2), _binary, _per_elem(_k))
for _n in COMPARE:
    register(_n, E, (1, 2), _compare, _per_elem(1))
register("cast", E, (1, 1), _cast, _per_elem(1), attrs=("dtype",))
register("where", E, (3, 3), _where, _per_elem(1))
register("sum", R, (1, 1), _reduce, _reduce_flops, attrs=("dims",))
register("mean", R, (1, 1), _reduce, _reduce_flops, attrs=("dims",))
register("amax", R, (1, 1), _reduce, _reduce_flops, attrs=("dims",))
register("softmax", R, (1, 1), _same_checking_dim, _per_elem(8), attrs=("dim",))
register("layer_norm", R, (1, 3), _layer_norm, _per_elem(8), attrs=("ndim", "eps"))
register("linear", OpKind.MATMUL, (2, 3), _linear, _linear_flops)
register("qlinear", OpKind.MATMUL, (3, 4), _qlinear, _qlinear_flops)  # (x, wq, scale[, bias])
register("matmul", OpKind.MATMUL, (2, 2), _matmul, _matmul_flops)
register("embedding", OpKind.GATHER, (2, 2), _embedding, _zero)
register("reshape", V, (1, 1), _reshape, _zero, attrs=("shape",))
register("permute", V, (1, 1), _permute, _zero, attrs=("perm",))
register("expand", V, (1, 1), _expand, _zero, attrs=("shape",))
register("slice", V, (1, 1), _slice, _zero, attrs=("dim", "start", "end"))
register("cat", V, (1, 64), _cat, _zero, attrs=("dim",))
# sdpa(q, k, v[, mask]) {scale, causal[, window]}: softmax(q k^T * scale) v over the visible keys.
# Key j is visible to query i unless `causal` and j > i (top-left), or `window` and i - j >= window,
# or the mask hides it (bool: False; float: added to the score).
register("sdpa", OpKind.ATTENTION, (3, 4), _sdpa, _sdpa_flops, attrs=("scale", "causal"))
# WKL collectives: `reduce_row` sums a value over the PEs of each region row (every PE of the row
# gets the sum), `reduce_col` over each column, `reduce_all` over the whole region (with an optional
# `count`: over the first `count` PEs in row-major order, those holding a shard).
for _n in ("reduce_row", "reduce_col", "reduce_all"):
    register(_n, OpKind.COLLECTIVE, (1, 1), _collective, _zero)


def infer(opname: str, operand_types: list[TensorType], attrs: dict) -> TensorType:
    """The result type of an op, or ShapeError."""
    opdef = REGISTRY.get(opname)
    if opdef is None:
        raise ShapeError(f"unknown op '{opname}'")
    if not opdef.check_arity(len(operand_types)):
        raise ShapeError(f"'{opname}' takes {opdef.arity[0]}..{opdef.arity[1]} operands, "
                         f"got {len(operand_types)}")
    missing = [a for a in opdef.attrs if a not in attrs]
    if missing:
        raise ShapeError(f"'{opname}' needs attribute(s) {', '.join(missing)}")
    return opdef.shape(operand_types, attrs)


def flops(opname: str, operand_types: list[TensorType], result: TensorType, attrs: dict) -> int:
    return REGISTRY[opname].flops(operand_types, result, attrs)
