"""Constant folding and causal-mask recognition."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree

from compiler.frontend import capture, lower
from compiler.frontend.fold import MaskPattern, fold_constants, is_causal_mask, mask_pattern
from ir.types import DType
from tests.ir_torch_eval import run_lowered

S = 6


def tril(q_len=S, k_len=S):
    return torch.ones(q_len, k_len, dtype=torch.bool).tril()


@pytest.mark.parametrize("mask, causal", [
    (tril(), True),
    (tril()[None, None].expand(2, 3, S, S), True),   # broadcast over batch and heads
    (torch.zeros(S, S).masked_fill(~tril(), float("-inf")), True),  # additive form
    (torch.zeros(S, S).masked_fill(~tril(), torch.finfo(torch.float32).min), True),
    (tril().T, False),
    (torch.ones(S, S, dtype=torch.bool), False),
    (tril() & ~tril().tril(diagonal=-2), False),     # sliding window
    (torch.zeros(S, S), False),
    (tril(S, S).to("meta"), False),                   # no values to judge
    (tril().to(torch.int64), False),
])
def test_is_causal_mask(mask, causal):
    assert is_causal_mask(mask, S, S) is causal


def test_causal_means_top_left_for_unequal_lengths():
    assert is_causal_mask(tril(2, 4), 2, 4)
    bottom_right = torch.ones(2, 4, dtype=torch.bool).tril(diagonal=2)
    assert not is_causal_mask(bottom_right, 2, 4)


@pytest.mark.parametrize("mask, pattern", [
    (tril(), MaskPattern(causal=True)),
    (torch.ones(S, S, dtype=torch.bool)[None, None].expand(2, 3, S, S), MaskPattern()),  # BERT's
    (torch.zeros(S, S), MaskPattern()),
    (tril() & ~tril().tril(diagonal=-2), MaskPattern(causal=True, window=2)),  # Mistral's
    (torch.zeros(S, S).masked_fill(~(tril() & ~tril().tril(-3)), float("-inf")),
     MaskPattern(causal=True, window=3)),
    (tril().T, None),
    (torch.stack([tril(), torch.ones(S, S, dtype=torch.bool)]), None),  # differs per batch
    (torch.zeros(S, S).masked_fill(~tril(), -1.0), None),               # a bias, not a mask
])
def test_mask_patterns(mask, pattern):
    assert mask_pattern(mask, S, S) == pattern


class MaskedAttention(nn.Module):
    """Builds its sdpa mask from aranges, as HF does; `window` makes it a sliding window, and
    `future` lets each query see only later keys (a pattern sdpa has no attribute for)."""

    def __init__(self, window: int | None = None, future: bool = False):
        super().__init__()
        self.window = window
        self.future = future
        self.proj = nn.Linear(8, 8)

    def forward(self, x):  # x [B, H, S, D]
        pos = torch.arange(x.shape[2], device=x.device)
        mask = pos[None, :] >= pos[:, None] if self.future else pos[None, :] <= pos[:, None]
        if self.window is not None:
            mask = mask & (pos[:, None] - pos[None, :] < self.window)
        q = self.proj(x)
        mask = mask[None, None].expand(2, 1, S, S)
        return F.scaled_dot_product_attention(q, x, x, attn_mask=mask)


def lowered_and_eager(model, x):
    with torch.no_grad():
        want = pytree.tree_leaves(model(x))
    return capture(model, (x,)), want


def sdpa_ops(graph):
    return [op for op in graph.ops if op.opname == "sdpa"]


def test_causal_mask_is_dropped_and_never_materialised():
    x = torch.randn(2, 2, S, 8)
    captured, want = lowered_and_eager(MaskedAttention(), x)
    folding = fold_constants(captured.exported)
    assert len(folding.causal_sdpa) == 1
    lowered = lower(captured)
    (sdpa,) = sdpa_ops(lowered.graph)
    assert sdpa.attrs["causal"] is True and len(sdpa.operands) == 3
    assert not any(p.type.dtype == DType.bool for p in lowered.graph.params)
    torch.testing.assert_close(run_lowered(lowered, [x])[0], want[0], atol=1e-5, rtol=1e-5)


def test_sliding_window_mask_becomes_a_window_attribute():
    x = torch.randn(2, 2, S, 8)
    captured, want = lowered_and_eager(MaskedAttention(window=2), x)
    lowered = lower(captured)
    (sdpa,) = sdpa_ops(lowered.graph)
    assert sdpa.attrs["causal"] is True and sdpa.attrs["window"] == 2 and len(sdpa.operands) == 3
    assert not any(p.type.dtype == DType.bool for p in lowered.graph.params)
    torch.testing.assert_close(run_lowered(lowered, [x])[0], want[0], atol=1e-5, rtol=1e-5)


def test_non_causal_mask_stays_a_folded_constant():
    x = torch.randn(2, 2, S, 8)
    captured, want = lowered_and_eager(MaskedAttention(future=True), x)
    lowered = lower(captured)
    (sdpa,) = sdpa_ops(lowered.graph)
    mask = sdpa.operands[3]
    assert sdpa.attrs["causal"] is False and mask in lowered.graph.params
    assert mask.name.startswith("const.") and mask.type.dtype == DType.bool
    assert lowered.params[mask.name].shape == (2, 1, S, S)
    torch.testing.assert_close(run_lowered(lowered, [x])[0], want[0], atol=1e-5, rtol=1e-5)


class Gqa(nn.Module):
    def forward(self, q, kv):
        return F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)


def test_is_causal_and_enable_gqa_pass_through():
    q, kv = torch.randn(1, 4, S, 8), torch.randn(1, 2, S, 8)
    with torch.no_grad():
        want = Gqa()(q, kv)
    lowered = lower(capture(Gqa(), (q, kv)))
    (sdpa,) = sdpa_ops(lowered.graph)
    assert sdpa.attrs == {"scale": pytest.approx(8 ** -0.5), "causal": True}
    torch.testing.assert_close(run_lowered(lowered, [q, kv])[0], want, atol=1e-5, rtol=1e-5)


class Rotary(nn.Module):
    """A buffer-derived table (like HF's rotary cos/sin) is folded; only its frontier is kept."""

    def __init__(self):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8),
                             persistent=False)

    def forward(self, x):  # x [B, S, 8]
        angles = torch.arange(x.shape[1], device=x.device).float()[:, None] * self.inv_freq[None, :]
        table = torch.cat([angles, angles], dim=-1)
        return x * table.cos() + x * table.sin()


def test_buffer_computations_fold_to_frontier_constants():
    x = torch.randn(2, S, 8)
    captured, want = lowered_and_eager(Rotary(), x)
    lowered = lower(captured)
    names = [p.name for p in lowered.graph.params]
    assert len(names) == 2 and all(n.startswith("const.") for n in names)
    assert "inv_freq" not in lowered.params  # read only by folded nodes
    assert {op.opname for op in lowered.graph.ops} == {"mul", "add"}
    torch.testing.assert_close(run_lowered(lowered, [x])[0], want[0], atol=1e-5, rtol=1e-5)


def test_meta_buffers_fold_to_size_only_constants_but_masks_are_still_recognised():
    with torch.device("meta"):
        rotary, attention = Rotary(), MaskedAttention()
    rotary_ir = lower(capture(rotary, (torch.randn(2, S, 8, device="meta"),)))
    assert all(data is None for data in rotary_ir.params.values())
    attention_ir = lower(capture(attention, (torch.randn(2, 2, S, 8, device="meta"),)))
    (sdpa,) = sdpa_ops(attention_ir.graph)
    assert sdpa.attrs["causal"] is True and len(sdpa.operands) == 3
