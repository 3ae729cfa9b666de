"""The simulator's local ops against numpy / closed-form references computed here.

Every operand carries the two PE axes (h, w) = (2, 3) with different data on every PE, and each
reference is applied PE by PE, so the ops' handling of the PE axes is tested along with the maths.
"""
import math

import ml_dtypes
import numpy as np
import pytest

from backends.sim.local_ops import LocalOps, OpError, evaluate
from backends.sim.numerics import erf
from ir import ops
from ir.types import DType, TensorType
from ir.wkl import Affine

PE = (2, 3)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(PE + shape).astype(dtype)


def run(op, args, attrs, shape, dtype=DType.f32):
    return evaluate(op, list(args), attrs, TensorType(tuple(shape), dtype))


def each_pe(fn, *arrays):
    """fn applied to every PE's locals, stacked back into (h, w, ...)."""
    return np.stack([np.stack([np.asarray(fn(*[a[i, j] for a in arrays])) for j in range(PE[1])])
                     for i in range(PE[0])])


def test_every_registered_op_has_a_method():
    assert [n for n in ops.REGISTRY if not hasattr(LocalOps, f"op_{n}")] == []


# ---------------------------------------------------------------- elementwise

UNARY_REFS = {
    "neg": lambda x: -x, "exp": np.exp, "log": lambda x: np.log(np.abs(x)), "abs": np.abs,
    "sqrt": lambda x: np.sqrt(np.abs(x)), "rsqrt": lambda x: 1 / np.sqrt(np.abs(x)),
    "relu": lambda x: np.where(x > 0, x, 0.0), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "silu": lambda x: x / (1 + np.exp(-x)), "tanh": np.tanh,
}


@pytest.mark.parametrize("op", sorted(UNARY_REFS))
def test_unary_ops(op, rng):
    x = randn(rng, 4, 5) * 3
    if op in ("log", "sqrt", "rsqrt"):
        x = np.abs(x) + 0.1
    got = run(op, [x], {}, (4, 5))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, UNARY_REFS[op](x.astype(np.float64)), rtol=2e-6, atol=1e-7)


def test_sigmoid_does_not_overflow_for_large_inputs():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], np.float32).reshape(1, 1, 5)
    got = evaluate("sigmoid", [x], {}, TensorType((5,), DType.f32))
    np.testing.assert_array_equal(got.ravel(), np.float32([0.0, 1 / (1 + math.exp(30)), 0.5, 1.0, 1.0]))


BINARY_REFS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
               "pow": np.power, "maximum": np.maximum, "minimum": np.minimum}


@pytest.mark.parametrize("op", sorted(BINARY_REFS))
def test_binary_ops_broadcast_locals_of_different_rank(op, rng):
    a, b = randn(rng, 4, 5), randn(rng, 5)
    if op == "pow":
        a = np.abs(a) + 0.5
    got = run(op, [a, b], {}, (4, 5))
    want = each_pe(lambda u, v: BINARY_REFS[op](u.astype(np.float64), v), a, b)
    np.testing.assert_allclose(got, want, rtol=3e-6)


def test_binary_ops_with_a_scalar_on_either_side(rng):
    x = randn(rng, 6)
    np.testing.assert_allclose(run("sub", [x], {"scalar": 2.0}, (6,)), x - 2)
    np.testing.assert_allclose(run("sub", [x], {"scalar": 2.0, "swap": True}, (6,)), 2 - x)
    np.testing.assert_allclose(run("pow", [x], {"scalar": 2.0}, (6,)), x * x, rtol=1e-6)
    np.testing.assert_allclose(run("div", [x], {"scalar": 4.0, "swap": True}, (6,)), 4 / x, rtol=1e-6)


def test_binary_op_with_one_operand_needs_a_scalar(rng):
    with pytest.raises(OpError, match="scalar"):
        run("add", [randn(rng, 3)], {}, (3,))


@pytest.mark.parametrize("op,ref", [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                                    ("le", np.less_equal), ("gt", np.greater),
                                    ("ge", np.greater_equal)])
def test_compare_ops_give_bool(op, ref, rng):
    a = np.round(randn(rng, 8))
    b = np.round(randn(rng, 8))
    got = run(op, [a, b], {}, (8,), DType.bool)
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, ref(a, b))
    np.testing.assert_array_equal(run(op, [a], {"scalar": 0.0}, (8,), DType.bool), ref(a, 0.0))


def test_logical_ops(rng):
    a, b = randn(rng, 8) > 0, randn(rng, 8) > 0
    np.testing.assert_array_equal(run("logical_and", [a, b], {}, (8,), DType.bool), a & b)
    np.testing.assert_array_equal(run("logical_or", [a, b], {}, (8,), DType.bool), a | b)


def test_cast_truncates_to_int_and_rounds_to_bf16(rng):
    x = randn(rng, 8) * 10
    ints = run("cast", [x], {"dtype": "i32"}, (8,), DType.i32)
    np.testing.assert_array_equal(ints, np.trunc(x).astype(np.int32))
    half = run("cast", [x], {"dtype": "bf16"}, (8,), DType.bf16)
    assert half.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(half.astype(np.float32), x.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_cast_to_fp8_saturates_like_torch():
    x = np.array([1.0, 0.3, 500.0, -1e6, np.inf, np.nan], np.float32).reshape(1, 1, 6)
    got = evaluate("cast", [x], {"dtype": "fp8"}, TensorType((6,), DType.fp8))
    assert got.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(got.astype(np.float32).ravel(), [1.0, 0.3125, 448, -448, 448, np.nan])


def test_low_precision_ops_compute_in_f32_and_round_once(rng):
    a, b = randn(rng, 16, dtype=np.float16), randn(rng, 16, dtype=np.float16)
    got = run("mul", [a, b], {}, (16,), DType.f16)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, (a.astype(np.float32) * b.astype(np.float32)).astype(np.float16))


def test_where_broadcasts(rng):
    cond, a, b = randn(rng, 4, 1) > 0, randn(rng, 4, 5), randn(rng, 5)
    got = run("where", [cond, a, b], {}, (4, 5))
    np.testing.assert_array_equal(got, each_pe(np.where, cond, a, b))


# ---------------------------------------------------------------- reductions and norms

@pytest.mark.parametrize("op,ref", [("sum", np.sum), ("mean", np.mean), ("amax", np.max)])
@pytest.mark.parametrize("dims,keepdim", [([-1], False), ([0, 2], True), ([1], True)])
def test_reductions_over_local_dims(op, ref, dims, keepdim, rng):
    x = randn(rng, 3, 4, 5)
    want = each_pe(lambda t: ref(t.astype(np.float64), axis=tuple(dims), keepdims=keepdim), x)
    got = run(op, [x], {"dims": dims, "keepdim": keepdim}, want.shape[2:])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def softmax_ref(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("dim", [-1, 0])
def test_softmax_is_stable_for_large_scores(dim, rng):
    x = randn(rng, 4, 6) * 1000  # exp of these overflows without the max shift
    got = run("softmax", [x], {"dim": dim}, (4, 6))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, each_pe(lambda t: softmax_ref(t, dim), x), atol=1e-6)


def layer_norm_ref(x, ndim, eps, w=None, b=None):
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - ndim, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)  # biased
    y = (x - mu) / np.sqrt(var + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("affine", [0, 1, 2])
def test_layer_norm(ndim, affine, rng):
    x = randn(rng, 3, 4, 8) * 5 + 2
    extra = [randn(rng, *(4, 8)[2 - ndim:]) for _ in range(affine)]
    got = run("layer_norm", [x, *extra], {"ndim": ndim, "eps": 1e-5}, (3, 4, 8))
    want = each_pe(lambda t, *wb: layer_norm_ref(t, ndim, 1e-5, *wb), x, *extra)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- gelu and erf

def test_erf_matches_math_erf_to_well_below_1e7():
    x = np.linspace(-8, 8, 20001)
    want = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - want).max() < 1e-7
    assert erf(np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0]


@pytest.mark.parametrize("mode", ["none", "tanh"])
def test_gelu_against_high_precision_reference(mode):
    x = np.linspace(-6, 6, 2 * 3 * 401, dtype=np.float32).reshape(2, 3, 401)
    if mode == "none":
        ref = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel().tolist()]
    else:
        c = math.sqrt(2 / math.pi)
        ref = [0.5 * v * (1 + math.tanh(c * (v + 0.044715 * v ** 3))) for v in x.ravel().tolist()]
    got = run("gelu", [x], {"approximate": mode}, (401,))
    np.testing.assert_allclose(got.ravel(), ref, rtol=1e-6, atol=1e-7)


def test_gelu_modes_differ_and_unknown_mode_is_an_error(rng):
    x = randn(rng, 16)
    assert not np.array_equal(run("gelu", [x], {}, (16,)), run("gelu", [x], {"approximate": "tanh"}, (16,)))
    with pytest.raises(OpError, match="approximate"):
        run("gelu", [x], {"approximate": "erf"}, (16,))


# ---------------------------------------------------------------- contractions and lookups

@pytest.mark.parametrize("bias", [False, True])
def test_linear_is_x_times_w_transposed_plus_b(bias, rng):
    x, w, b = randn(rng, 2, 3, 5), randn(rng, 4, 5), randn(rng, 4)
    args = [x, w, b] if bias else [x, w]
    got = run("linear", args, {}, (2, 3, 4))
    want = each_pe(lambda u, v, c: u.astype(np.float64) @ v.T + (c if bias else 0), x, w, b)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_matmul_broadcasts_batch_dims(rng):
    a, b = randn(rng, 2, 1, 4, 5), randn(rng, 3, 5, 6)
    got = run("matmul", [a, b], {}, (2, 3, 4, 6))
    np.testing.assert_allclose(got, each_pe(lambda u, v: np.matmul(u.astype(np.float64), v), a, b),
                               rtol=1e-5, atol=1e-6)


def test_embedding_gives_zero_rows_outside_the_local_table(rng):
    table = randn(rng, 4, 3)
    ids = np.broadcast_to(np.array([[0, 3], [-1, 4]]), PE + (2, 2)).astype(np.int64)
    got = run("embedding", [table, ids], {}, (2, 2, 3))
    np.testing.assert_array_equal(got[:, :, 0], table[:, :, [0, 3]])
    assert not got[:, :, 1].any()


def test_embedding_offset_may_depend_on_the_pe(rng):
    table = randn(rng, 4, 3)  # PE (py, px) holds rows 4*px + 10*py ... of the whole table
    ids = np.full(PE + (1,), 13, dtype=np.int64)
    got = run("embedding", [table, ids], {"offset": Affine(0, px=4, py=10)}, (1, 3))
    # Only the PE whose rows cover 13 (py=1, px=0: rows 10..13, local row 3) finds it.
    np.testing.assert_array_equal(got[1, 0, 0], table[1, 0, 3])
    assert np.count_nonzero(np.abs(got).sum(axis=(2, 3))) == 1


# ---------------------------------------------------------------- views

def test_view_ops_act_on_the_local_dims(rng):
    x = randn(rng, 2, 3, 4)
    np.testing.assert_array_equal(run("reshape", [x], {"shape": [6, 4]}, (6, 4)), x.reshape(PE + (6, 4)))
    np.testing.assert_array_equal(run("permute", [x], {"perm": [2, 0, 1]}, (4, 2, 3)),
                                  x.transpose(0, 1, 4, 2, 3))
    np.testing.assert_array_equal(run("slice", [x], {"dim": -1, "start": 1, "end": 100, "step": 2}, (2, 3, 2)),
                                  x[..., 1::2])
    np.testing.assert_array_equal(run("cat", [x, x[:, :, :1]], {"dim": 0}, (3, 3, 4)),
                                  np.concatenate([x, x[:, :, :1]], axis=2))


def test_expand_adds_leading_dims_and_keeps_minus_one(rng):
    x = randn(rng, 3, 1)
    got = run("expand", [x], {"shape": [2, -1, 4]}, (2, 3, 4))
    np.testing.assert_array_equal(got, each_pe(lambda t: np.broadcast_to(t, (2, 3, 4)), x))


# ---------------------------------------------------------------- attention

def sdpa_ref(q, k, v, mask=None, scale=None, causal=False):
    """A naive loop over batch, query head, query and key; kv head = query head // group."""
    b_, hq, sq, d = q.shape
    hkv, sk = k.shape[1], k.shape[2]
    scale = 1 / math.sqrt(d) if scale is None else scale
    mask = None if mask is None else np.broadcast_to(mask, (b_, hq, sq, sk))
    out = np.zeros((b_, hq, sq, v.shape[3]))
    for b in range(b_):
        for h in range(hq):
            kv = h // (hq // hkv)
            for i in range(sq):
                scores, allowed = [], []
                for j in range(sk):
                    s = float(np.dot(q[b, h, i].astype(np.float64), k[b, kv, j])) * scale
                    ok = not (causal and j > i)
                    if mask is not None and mask.dtype == np.bool_:
                        ok = ok and bool(mask[b, h, i, j])
                    elif mask is not None:
                        s += float(mask[b, h, i, j])
                    scores.append(s)
                    allowed.append(ok and s != -math.inf)
                if not any(allowed):
                    continue  # torch gives zeros for a query that may attend to nothing
                top = max(s for s, ok in zip(scores, allowed) if ok)
                weights = [math.exp(s - top) if ok else 0.0 for s, ok in zip(scores, allowed)]
                total = sum(weights)
                for j in range(sk):
                    out[b, h, i] += weights[j] / total * v[b, kv, j].astype(np.float64)
    return out


@pytest.mark.parametrize("sq,sk", [(5, 5), (2, 5), (5, 3)])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_grouped_query_attention(sq, sk, causal, rng):
    q, k, v = randn(rng, 1, 4, sq, 8), randn(rng, 1, 2, sk, 8), randn(rng, 1, 2, sk, 6)
    got = run("sdpa", [q, k, v], {"scale": None, "causal": causal}, (1, 4, sq, 6))
    want = each_pe(lambda a, b, c: sdpa_ref(a, b, c, causal=causal), q, k, v)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_sdpa_bool_mask_and_explicit_scale(rng):
    q, k, v = randn(rng, 2, 2, 3, 4), randn(rng, 2, 1, 4, 4), randn(rng, 2, 1, 4, 4)
    mask = randn(rng, 3, 4) > 0
    mask[:, :, 1, :] = False  # query 1 may attend to nothing: zeros, like torch
    got = run("sdpa", [q, k, v, mask], {"scale": 0.3, "causal": False}, (2, 2, 3, 4))
    want = each_pe(lambda a, b, c, m: sdpa_ref(a, b, c, mask=m, scale=0.3), q, k, v, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not got[:, :, :, :, 1].any()


def test_sdpa_float_mask_is_added_to_the_scores(rng):
    q, k, v = randn(rng, 1, 2, 3, 4), randn(rng, 1, 2, 3, 4), randn(rng, 1, 2, 3, 4)
    mask = randn(rng, 1, 1, 3, 3)
    mask[..., 0, 2] = -np.inf
    got = run("sdpa", [q, k, v, mask], {"scale": None, "causal": True}, (1, 2, 3, 4))
    want = each_pe(lambda a, b, c, m: sdpa_ref(a, b, c, mask=m, causal=True), q, k, v, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_sdpa_rejects_heads_that_do_not_group(rng):
    q, k = randn(rng, 1, 3, 2, 4), randn(rng, 1, 2, 2, 4)
    with pytest.raises(OpError, match="query heads"):
        run("sdpa", [q, k, k], {"scale": None, "causal": False}, (1, 3, 2, 4))


# ---------------------------------------------------------------- collectives

@pytest.mark.parametrize("op,axes", [("reduce_row", (1,)), ("reduce_col", (0,)), ("reduce_all", (0, 1))])
def test_collectives_sum_over_pes(op, axes, rng):
    x = randn(rng, 4)
    got = run(op, [x], {}, (4,))
    np.testing.assert_allclose(got, np.broadcast_to(x.sum(axis=axes, keepdims=True), x.shape), rtol=1e-6)


def test_reduce_all_with_count_sums_only_the_shard_holders(rng):
    x = randn(rng, 4)  # PEs in row-major order: the first 3 hold shards, the rest garbage
    got = run("reduce_all", [x], {"count": 3}, (4,))
    h, w = x.shape[:2]
    flat = x.reshape(h * w, 4)
    np.testing.assert_allclose(got[0, 0], flat[:3].sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(got[-1, -1], flat[:3].sum(axis=0), rtol=1e-6)


# ---------------------------------------------------------------- checks

def test_declared_shape_and_attrs_are_checked(rng):
    x = randn(rng, 4)
    with pytest.raises(OpError, match="declares f32\\[5\\]"):
        run("exp", [x], {}, (5,))
    with pytest.raises(OpError, match="needs attribute"):
        run("softmax", [x], {}, (4,))
    with pytest.raises(OpError, match="unknown op"):
        run("frobnicate", [x], {}, (4,))
    with pytest.raises(OpError, match="operands"):
        run("exp", [x, x], {}, (4,))
