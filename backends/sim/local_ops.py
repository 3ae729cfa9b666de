"""The ops of `ir/ops.py` applied to the locals of every PE of a region at once.

Requires: every array carries two leading PE axes, `(h, w, *local_shape)`; op attributes (`dim`,
`dims`, `perm`, `shape`, ...) refer to the local shape, as in the IR.
Ensures: `evaluate` gives PyTorch's f32 semantics for each op (low-precision operands are widened
to float32 first, the result is rounded to the declared type and checked against the declared
local shape). Operands are never modified in place, so results may be views of them.
Problems are raised as `OpError` (a ValueError); the interpreter adds the statement's span.
"""
from __future__ import annotations

import math

import numpy as np

from backends.sim.numerics import erf, lift, round_to
from ir import ops
from ir.types import DType, TensorType
from ir.wkl import Affine

PE_AXES = 2  # (h, w) in front of every local


class OpError(ValueError):
    """An op that cannot run on its operands or attributes."""


def evaluate(op: str, args: list[np.ndarray], attrs: dict, result: TensorType) -> np.ndarray:
    """`op(*args) {attrs}` on every PE, rounded to `result`'s dtype and checked against its shape."""
    opdef = ops.lookup(op)
    method = getattr(_LOCAL_OPS, f"op_{op}", None)
    if opdef is None or method is None:
        raise OpError(f"unknown op '{op}'")
    if not opdef.check_arity(len(args)):
        raise OpError(f"'{op}' takes {opdef.arity[0]}..{opdef.arity[1]} operands, got {len(args)}")
    missing = [a for a in opdef.attrs if a not in attrs]
    if missing:
        raise OpError(f"'{op}' needs attribute(s) {', '.join(missing)}")
    with np.errstate(all="ignore"):  # inf/nan results are values, as in PyTorch
        out = method([lift(a) for a in args], attrs)
    pe_shape = args[0].shape[:PE_AXES]
    if out.shape != pe_shape + result.shape:
        raise OpError(f"'{op}' computes a local of shape {list(out.shape[PE_AXES:])}, "
                      f"but the statement declares {result}")
    return round_to(out, result.dtype)


# ---------------------------------------------------------------- helpers over PE-prefixed arrays

def local_rank(a: np.ndarray) -> int:
    return a.ndim - PE_AXES


def local_axis(d: int, a: np.ndarray) -> int:
    """The array axis of local dimension `d` (negative counts from the end)."""
    return ops.norm_dim(d, local_rank(a)) + PE_AXES


def local_axes(dims, a: np.ndarray) -> tuple[int, ...]:
    """The array axes of local dimensions `dims`; none for a scalar local (reducing it is a no-op,
    as the IR's shape rule says)."""
    return tuple(sorted({local_axis(d, a) for d in dims})) if local_rank(a) else ()


def aligned(*arrays: np.ndarray) -> list[np.ndarray]:
    """Arrays padded with unit axes after the PE axes to one local rank, so numpy's
    right-aligned broadcasting matches broadcasting of the locals."""
    rank = max(local_rank(a) for a in arrays)
    return [a.reshape(a.shape[:PE_AXES] + (1,) * (rank - local_rank(a)) + a.shape[PE_AXES:])
            for a in arrays]


def _operands(args: list[np.ndarray], attrs: dict) -> tuple:
    """Both operands of a binary op: two tensors, or a tensor and the `scalar` attribute
    (`swap` puts the scalar on the left, e.g. rsub)."""
    if len(args) == 2:
        return tuple(aligned(*args))
    if "scalar" not in attrs:
        raise OpError("a binary op with one operand needs a `scalar` attribute")
    x, scalar = args[0], attrs["scalar"]
    return (scalar, x) if attrs.get("swap", False) else (x, scalar)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


class LocalOps:
    """One method per op: `op_NAME(args, attrs) -> array`, with args already widened."""

    # ------------------------------------------------------------ unary elementwise

    def op_neg(self, args, attrs):
        return np.negative(args[0])

    def op_exp(self, args, attrs):
        return np.exp(args[0])

    def op_log(self, args, attrs):
        return np.log(args[0])

    def op_sqrt(self, args, attrs):
        return np.sqrt(args[0])

    def op_rsqrt(self, args, attrs):
        return 1 / np.sqrt(args[0])

    def op_abs(self, args, attrs):
        return np.abs(args[0])

    def op_relu(self, args, attrs):
        return np.maximum(args[0], 0)

    def op_sigmoid(self, args, attrs):
        return _sigmoid(args[0])

    def op_silu(self, args, attrs):
        return args[0] * _sigmoid(args[0])

    def op_tanh(self, args, attrs):
        return np.tanh(args[0])

    def op_gelu(self, args, attrs):
        """Computed in float64, then rounded to the operand's float type once (as torch's f32
        kernel rounds once), so a later bf16/f16 rounding is not a double rounding of f64."""
        x = args[0].astype(np.float64)
        mode = attrs.get("approximate", "none")
        if mode == "none":
            y = 0.5 * x * (1 + erf(x / math.sqrt(2)))
        elif mode == "tanh":
            y = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        else:
            raise OpError(f"gelu approximate must be \"none\" or \"tanh\", got {mode!r}")
        return y.astype(args[0].dtype) if args[0].dtype.kind == "f" else y

    # ------------------------------------------------------------ binary elementwise

    def op_add(self, args, attrs):
        return np.add(*_operands(args, attrs))

    def op_sub(self, args, attrs):
        return np.subtract(*_operands(args, attrs))

    def op_mul(self, args, attrs):
        return np.multiply(*_operands(args, attrs))

    def op_div(self, args, attrs):
        return np.true_divide(*_operands(args, attrs))

    def op_pow(self, args, attrs):
        return np.power(*_operands(args, attrs))

    def op_maximum(self, args, attrs):
        return np.maximum(*_operands(args, attrs))

    def op_minimum(self, args, attrs):
        return np.minimum(*_operands(args, attrs))

    def op_eq(self, args, attrs):
        return np.equal(*_operands(args, attrs))

    def op_ne(self, args, attrs):
        return np.not_equal(*_operands(args, attrs))

    def op_lt(self, args, attrs):
        return np.less(*_operands(args, attrs))

    def op_le(self, args, attrs):
        return np.less_equal(*_operands(args, attrs))

    def op_gt(self, args, attrs):
        return np.greater(*_operands(args, attrs))

    def op_ge(self, args, attrs):
        return np.greater_equal(*_operands(args, attrs))

    def op_logical_and(self, args, attrs):
        return np.logical_and(*_operands(args, attrs))

    def op_logical_or(self, args, attrs):
        return np.logical_or(*_operands(args, attrs))

    def op_cast(self, args, attrs):
        return round_to(args[0], DType(attrs["dtype"]))

    def op_where(self, args, attrs):
        cond, a, b = aligned(*args)
        return np.where(cond.astype(bool), a, b)

    # ------------------------------------------------------------ reductions and norms

    def op_sum(self, args, attrs):
        x = args[0]
        return np.sum(x, axis=local_axes(attrs["dims"], x), keepdims=attrs.get("keepdim", False))

    def op_mean(self, args, attrs):
        x = args[0]
        return np.mean(x, axis=local_axes(attrs["dims"], x), keepdims=attrs.get("keepdim", False))

    def op_amax(self, args, attrs):
        x = args[0]
        return np.max(x, axis=local_axes(attrs["dims"], x), keepdims=attrs.get("keepdim", False))

    def op_softmax(self, args, attrs):
        return _softmax(args[0], local_axis(attrs["dim"], args[0]))

    def op_layer_norm(self, args, attrs):
        """Normalise over the last `ndim` local dims (biased variance), then scale and shift."""
        x, affine, ndim = args[0], args[1:], attrs["ndim"]
        if not 0 < ndim <= local_rank(x):
            raise OpError(f"layer_norm over {ndim} dims of a rank-{local_rank(x)} local")
        axes = tuple(range(x.ndim - ndim, x.ndim))
        centred = x - np.mean(x, axis=axes, keepdims=True)
        var = np.mean(centred * centred, axis=axes, keepdims=True)
        y = centred / np.sqrt(var + attrs["eps"])
        if affine:
            y, weight = aligned(y, affine[0])
            y = y * weight
        if len(affine) == 2:
            y, bias = aligned(y, affine[1])
            y = y + bias
        return y

    # ------------------------------------------------------------ contractions and lookups

    def op_linear(self, args, attrs):
        """x @ weight.T (+ bias), with x's leading local dims flattened into one batch."""
        x, weight = args[0], args[1]
        pe, lead, k = x.shape[:PE_AXES], x.shape[PE_AXES:-1], x.shape[-1]
        rows = x.reshape(pe + (-1, k))
        y = np.matmul(rows, np.swapaxes(weight, -1, -2))
        y = y.reshape(pe + lead + y.shape[-1:])
        if len(args) == 3:
            y, bias = aligned(y, args[2])
            y = y + bias
        return y

    def op_qlinear(self, args, attrs):
        """linear against the dequantised weight: wq widened to f32, row n times scale[n]."""
        x, wq, scale = args[:3]
        weight = wq.astype(np.float32) * scale.astype(np.float32)[..., None]
        return self.op_linear([x, weight] + args[3:], attrs)

    def op_matmul(self, args, attrs):
        return np.matmul(*aligned(*args))

    def op_embedding(self, args, attrs):
        """Rows `ids - offset` of the local table; ids outside its rows give zero rows (another
        PE holds them, and a collective sums the partial lookups). `offset` (default 0) is the
        first table row the PE holds: an int, or an `Affine` in px, py."""
        table, ids = args
        h, w, rows = table.shape[:3]
        offsets = _pe_values(attrs.get("offset", 0), h, w)
        flat = ids.reshape(h, w, -1).astype(np.int64) - offsets[..., None]
        valid = (flat >= 0) & (flat < rows)
        pe_rows = np.arange(h)[:, None, None]
        pe_cols = np.arange(w)[None, :, None]
        picked = table[pe_rows, pe_cols, np.where(valid, flat, 0)]
        picked = np.where(valid[..., None], picked, np.zeros((), table.dtype))
        return picked.reshape(ids.shape + table.shape[-1:])

    def op_sdpa(self, args, attrs):
        """softmax(q @ k.T * scale + mask) @ v, query head i reading kv head i // (Hq / Hkv);
        `causal` and `window` hide keys as `_visible_keys` says."""
        q, k, v = args[:3]
        scale = attrs.get("scale")
        scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
        scores = _grouped_matmul(q, np.swapaxes(k, -1, -2)) * scale
        allowed = _visible_keys(*scores.shape[-2:], attrs.get("causal", False), attrs.get("window"))
        if len(args) == 4:
            scores, allowed = _apply_mask(scores, allowed, args[3])
        probs = _masked_softmax(np.where(allowed, scores, -np.inf))
        return _grouped_matmul(probs, v)

    # ------------------------------------------------------------ views

    def op_reshape(self, args, attrs):
        x = args[0]
        return x.reshape(x.shape[:PE_AXES] + tuple(attrs["shape"]))

    def op_permute(self, args, attrs):
        x = args[0]
        return np.transpose(x, tuple(range(PE_AXES)) + tuple(local_axis(p, x) for p in attrs["perm"]))

    def op_expand(self, args, attrs):
        """Broadcast to `shape`; -1 keeps a dimension's size, as in torch."""
        shape = tuple(attrs["shape"])
        x = args[0]
        x = x.reshape(x.shape[:PE_AXES] + (1,) * (len(shape) - local_rank(x)) + x.shape[PE_AXES:])
        full = tuple(n if s == -1 else s for s, n in zip(shape, x.shape[PE_AXES:]))
        return np.broadcast_to(x, x.shape[:PE_AXES] + full)

    def op_slice(self, args, attrs):
        x = args[0]
        axis = local_axis(attrs["dim"], x)
        bounds = ops.slice_bounds(x.shape[axis], attrs["start"], attrs["end"], attrs.get("step", 1))
        index = [slice(None)] * x.ndim
        index[axis] = slice(*bounds)
        return x[tuple(index)]

    def op_cat(self, args, attrs):
        return np.concatenate(args, axis=local_axis(attrs["dim"], args[0]))

    # ------------------------------------------------------------ collectives (across PEs)

    def op_reduce_row(self, args, attrs):
        return _all_reduce(args[0], axes=(1,))

    def op_reduce_col(self, args, attrs):
        return _all_reduce(args[0], axes=(0,))

    def op_reduce_all(self, args, attrs):
        """Sum over the region; with `count`, over the first `count` PEs in row-major order only
        (the PEs that hold a shard when the region has more PEs than shards)."""
        x = args[0]
        if "count" not in attrs:
            return _all_reduce(x, axes=(0, 1))
        h, w = x.shape[:2]
        holders = (np.arange(h * w) < attrs["count"]).reshape((h, w) + (1,) * (x.ndim - 2))
        return _all_reduce(np.where(holders, x, np.zeros((), x.dtype)), axes=(0, 1))


_LOCAL_OPS = LocalOps()


def _all_reduce(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Every PE gets the sum of x over the PE axes `axes` (1: along a row, 0: along a column)."""
    return np.broadcast_to(np.sum(x, axis=axes, keepdims=True), x.shape)


def _pe_values(value: int | Affine, h: int, w: int) -> np.ndarray:
    """An int, or an affine expression evaluated at every PE, as an (h, w) array."""
    if isinstance(value, Affine):
        py, px = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        return value.const + value.px * px + value.py * py
    return np.full((h, w), int(value))


def _grouped_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for a [.., B, Hq, M, K] and b [.., B, Hkv, K, N] with Hq = G * Hkv: head i of `a`
    meets head i // G of `b` (grouped-query attention, without copying b per group)."""
    hq, hkv = a.shape[-3], b.shape[-3]
    if hkv == 0 or hq % hkv:
        raise OpError(f"sdpa: {hq} query heads cannot share {hkv} key/value heads")
    grouped = a.reshape(a.shape[:-3] + (hkv, hq // hkv) + a.shape[-2:])
    out = np.matmul(grouped, np.expand_dims(b, -3))
    return out.reshape(a.shape[:-1] + out.shape[-1:])


def _visible_keys(q_len: int, k_len: int, causal: bool, window: int | None) -> np.ndarray:
    """[q_len, k_len]: whether query i may see key j. `causal` is torch's is_causal (j <= i,
    top-left); a `window` of W keeps only keys with i - j < W (a sliding window)."""
    offset = np.arange(q_len)[:, None] - np.arange(k_len)[None, :]  # i - j
    allowed = offset >= 0 if causal else np.ones((q_len, k_len), dtype=bool)
    if window is not None:
        if type(window) is not int or window < 1:
            raise OpError(f"sdpa window must be a positive number of keys, got {window!r}")
        allowed = allowed & (offset < window)
    return allowed


def _apply_mask(scores: np.ndarray, allowed: np.ndarray, mask: np.ndarray):
    """A bool mask says which keys may be attended; a float mask is added to the scores."""
    if mask.dtype == np.bool_:
        allowed, mask = aligned(np.broadcast_to(allowed, scores.shape), mask)
        return scores, allowed & mask
    scores, mask = aligned(scores, mask)
    return scores + mask, allowed


def _masked_softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over keys; a query with no key left (every score -inf) gets zeros, as torch does."""
    top = np.max(scores, axis=-1, keepdims=True)
    e = np.exp(scores - np.where(np.isneginf(top), 0, top))
    total = np.sum(e, axis=-1, keepdims=True)
    return np.where(total == 0, 0, e / total)
