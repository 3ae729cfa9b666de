"""Shape rules of the op registry (ir/ops.py), checked against numpy where numpy has the same rule."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir.ops import REGISTRY, ShapeError, broadcast_shapes, flops, infer
from ir.types import DType, TensorType

I64_MAX = 9223372036854775807


def t(*shape: int, dtype: DType = DType.f32) -> TensorType:
    return TensorType(tuple(shape), dtype)


def shape_of(opname: str, *operands: TensorType, **attrs) -> tuple[int, ...]:
    return infer(opname, list(operands), attrs).shape


def rejects(opname: str, *operands: TensorType, **attrs) -> str:
    with pytest.raises(ShapeError) as info:
        infer(opname, list(operands), attrs)
    return str(info.value)


# ---------------------------------------------------------------- registry-level checks

def test_infer_rejects_unknown_ops_wrong_arity_and_missing_attrs():
    assert "unknown op" in rejects("frobnicate", t(2))
    assert "takes 2..3 operands, got 1" in rejects("linear", t(2, 3))
    assert "needs attribute(s) dims" in rejects("sum", t(2, 3))


def test_every_op_has_a_shape_rule_and_flop_rule():
    for opdef in REGISTRY.values():
        assert callable(opdef.shape) and callable(opdef.flops) and opdef.arity[0] >= 1


# ---------------------------------------------------------------- elementwise and broadcast

@pytest.mark.parametrize("a, b, out", [
    ((4, 1, 3), (2, 1), (4, 2, 3)), ((), (3,), (3,)), ((5, 0), (1,), (5, 0)), ((1,), (1, 1), (1, 1)),
])
def test_broadcast(a, b, out):
    assert broadcast_shapes(a, b) == out == np.broadcast_shapes(a, b)
    assert shape_of("add", t(*a), t(*b)) == out


SHAPES = st.lists(st.integers(1, 3), max_size=3).map(tuple)


@settings(max_examples=50, deadline=None)
@given(SHAPES, SHAPES)
def test_broadcast_agrees_with_numpy(a, b):
    try:
        expected = np.broadcast_shapes(a, b)
    except ValueError:
        with pytest.raises(ShapeError):
            broadcast_shapes(a, b)
    else:
        assert broadcast_shapes(a, b) == expected


def test_broadcast_mismatch():
    assert "do not broadcast" in rejects("mul", t(2, 3), t(4, 3))


def test_binary_ops_take_a_scalar_attribute_when_given_one_tensor():
    assert shape_of("add", t(2, 3), scalar=1.0) == (2, 3)
    assert "needs a 'scalar' attribute" in rejects("sub", t(2, 3))
    assert "needs a 'scalar' attribute" in rejects("lt", t(2, 3))


def test_compare_gives_bool_and_cast_gives_its_dtype():
    assert infer("lt", [t(2, 1), t(3)], {}) == t(2, 3, dtype=DType.bool)
    assert infer("cast", [t(2)], {"dtype": "bf16"}) == t(2, dtype=DType.bf16)
    assert infer("where", [t(2, dtype=DType.bool), t(2, dtype=DType.f16), t(1, dtype=DType.f16)],
                 {}) == t(2, dtype=DType.f16)


# ---------------------------------------------------------------- reductions and norms

@pytest.mark.parametrize("dims, keepdim, out", [
    ([1], False, (2, 4)), ([1], True, (2, 1, 4)), ([-1], False, (2, 3)), ([0, 2], True, (1, 3, 1)),
    ([0, 1, 2], False, ()), ([], False, (2, 3, 4)),
])
def test_reduce_keepdim(dims, keepdim, out):
    assert shape_of("sum", t(2, 3, 4), dims=dims, keepdim=keepdim) == out
    assert np.sum(np.zeros((2, 3, 4)), axis=tuple(dims), keepdims=keepdim).shape == out


def test_reduce_rejects_bad_dims():
    assert "out of range" in rejects("mean", t(2, 3), dims=[2])
    assert "twice" in rejects("amax", t(2, 3), dims=[1, -1])


def test_softmax_keeps_shape_and_checks_dim():
    assert shape_of("softmax", t(2, 5), dim=-1) == (2, 5)
    assert "out of range" in rejects("softmax", t(2, 5), dim=2)


def test_layer_norm_weight_covers_the_last_ndim_dims():
    assert shape_of("layer_norm", t(2, 3, 8), t(8), t(8), ndim=1, eps=1e-5) == (2, 3, 8)
    assert shape_of("layer_norm", t(2, 3, 8), t(3, 8), ndim=2, eps=1e-5) == (2, 3, 8)
    assert "does not match" in rejects("layer_norm", t(2, 3, 8), t(8), ndim=2, eps=1e-5)
    assert "does not match" in rejects("layer_norm", t(2, 3, 8), t(4), ndim=1, eps=1e-5)
    assert "trailing dims" in rejects("layer_norm", t(8), ndim=2, eps=1e-5)


# ---------------------------------------------------------------- views

def test_reshape():
    assert shape_of("reshape", t(2, 3, 4), shape=[6, 4]) == (6, 4)
    assert shape_of("reshape", t(2, 3), shape=(3, 2)) == (3, 2)
    assert "cannot reshape" in rejects("reshape", t(2, 3), shape=[4, 2])


def test_reshape_and_expand_need_resolved_shapes():
    # (-1, -6) has the right product; a -1 placeholder must not slip through either way.
    assert "negative" in rejects("reshape", t(2, 3), shape=[-1, -6])
    assert "negative" in rejects("expand", t(1, 3), shape=[-1, 3])


def test_permute():
    assert shape_of("permute", t(2, 3, 4), perm=[2, 0, 1]) == (4, 2, 3)
    assert "does not fit" in rejects("permute", t(2, 3, 4), perm=[0, 1])
    assert "does not fit" in rejects("permute", t(2, 3), perm=[0, 0])


def test_expand():
    assert shape_of("expand", t(3, 1), shape=[2, 3, 4]) == (2, 3, 4)
    assert "do not broadcast" in rejects("expand", t(3, 2), shape=[3, 4])
    assert "cannot expand" in rejects("expand", t(2, 3), shape=[3])


@pytest.mark.parametrize("start, end, step, length", [
    (0, 4, 1, 4), (2, I64_MAX, 1, 8), (-3, I64_MAX, 1, 3), (0, -1, 1, 9), (-100, 3, 1, 3),
    (1, I64_MAX, 2, 5), (7, 2, 1, 0), (20, 30, 1, 0), (0, 0, 1, 0), (-I64_MAX, I64_MAX, 3, 4),
])
def test_slice_bounds(start, end, step, length):
    assert shape_of("slice", t(2, 10), dim=1, start=start, end=end, step=step) == (2, length)
    assert np.zeros((2, 10))[:, start:end:step].shape == (2, length)


def test_slice_dim_and_step():
    assert shape_of("slice", t(10, 2), dim=-2, start=1, end=3) == (2, 2)
    assert "must be positive" in rejects("slice", t(10), dim=0, start=0, end=5, step=0)
    assert "out of range" in rejects("slice", t(10), dim=1, start=0, end=5)


def test_cat():
    assert shape_of("cat", t(2, 3), t(2, 5), t(2, 1), dim=1) == (2, 9)
    assert shape_of("cat", t(2, 3), t(4, 3), dim=-2) == (6, 3)
    assert "mismatched" in rejects("cat", t(2, 3), t(3, 3), dim=1)
    assert "mismatched" in rejects("cat", t(2, 3), t(2), dim=1)  # ranks differ


# ---------------------------------------------------------------- matmul, linear, attention

def test_linear():
    assert shape_of("linear", t(4, 32), t(64, 32)) == (4, 64)
    assert shape_of("linear", t(2, 7, 32), t(64, 32), t(64)) == (2, 7, 64)
    assert "inner dims differ" in rejects("linear", t(4, 31), t(64, 32))
    assert "inner dims differ" in rejects("linear", t(), t(64, 32))
    assert "bias" in rejects("linear", t(4, 32), t(64, 32), t(32))


def test_linear_flops():
    out = infer("linear", [t(4, 32), t(64, 32), t(64)], {})
    assert flops("linear", [t(4, 32), t(64, 32), t(64)], out, {}) == 2 * 4 * 64 * 32 + 4 * 64


def test_matmul_broadcasts_batch_dims():
    assert shape_of("matmul", t(3, 1, 4, 5), t(2, 5, 6)) == (3, 2, 4, 6)
    assert "inner dims differ" in rejects("matmul", t(4, 5), t(4, 5))


def test_embedding():
    assert shape_of("embedding", t(100, 16), t(2, 7, dtype=DType.i64)) == (2, 7, 16)
    assert "integer ids" in rejects("embedding", t(100, 16), t(2, 7))


def test_sdpa_multi_head_and_grouped_query():
    q = t(2, 8, 5, 16)
    assert shape_of("sdpa", q, t(2, 8, 9, 16), t(2, 8, 9, 32), scale=None, causal=True) == (2, 8, 5, 32)
    assert shape_of("sdpa", q, t(2, 2, 9, 16), t(2, 2, 9, 16), scale=0.25, causal=False) == (2, 8, 5, 16)


@pytest.mark.parametrize("k, v", [
    (t(2, 3, 9, 16), t(2, 3, 9, 16)),   # 3 kv heads do not divide 8 query heads
    (t(2, 8, 9, 8), t(2, 8, 9, 16)),    # head dims differ
    (t(2, 8, 9, 16), t(2, 8, 7, 16)),   # k and v lengths differ
    (t(3, 8, 9, 16), t(3, 8, 9, 16)),   # batch differs from q
    (t(2, 0, 9, 16), t(2, 0, 9, 16)),   # no kv heads
])
def test_sdpa_rejects_operands_that_do_not_fit(k, v):
    assert "do not fit" in rejects("sdpa", t(2, 8, 5, 16), k, v, scale=None, causal=False)


def test_sdpa_mask_broadcasts_to_the_scores():
    q, kv = t(2, 8, 5, 16), t(2, 8, 9, 16)
    assert shape_of("sdpa", q, kv, kv, t(5, 9, dtype=DType.bool), scale=None, causal=False) == (2, 8, 5, 16)
    assert "mask" in rejects("sdpa", q, kv, kv, t(9, 5), scale=None, causal=False)
