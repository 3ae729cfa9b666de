"""Every op the first milestone promises, compiled onto `toy`, simulated, compared with eager."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import compiler

TOL = 1e-4


class Fn(nn.Module):
    def __init__(self, fn, params=()):
        super().__init__()
        self.fn = fn
        self.lin = nn.Linear(16, 16)  # some modules need a weight; unused ones are dropped
        for name, shape in params:
            self.register_parameter(name, nn.Parameter(torch.randn(*shape)))

    def forward(self, *xs):
        return self.fn(self, *xs)


def check(module, *inputs):
    torch.manual_seed(0)
    module.eval()
    cm = compiler.compile(module, inputs, target="toy")
    got = cm(*inputs)
    want = module(*inputs)
    for g, w in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert torch.allclose(g.double(), w.double(), atol=TOL, rtol=0), (g - w).abs().max()
    return cm


X = torch.randn(2, 6, 16)
CASES = {
    "linear_bias": (lambda m, x: m.lin(x), X),
    "linear_nobias": (lambda m, x: F.linear(x, m.w), X, [("w", (8, 16))]),
    "arith_broadcast": (lambda m, x: (x + m.b) * x - x / (m.b.abs() + 1) + (-x), X, [("b", (16,))]),
    "pow_rsqrt_mean": (lambda m, x: torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * x, X),
    "activations": (lambda m, x: F.relu(x) + F.gelu(x) + F.gelu(x, approximate="tanh") + F.silu(x)
                    + torch.sigmoid(x) + torch.tanh(x), X),
    "softmax": (lambda m, x: torch.softmax(x, dim=-1), X),
    "layer_norm": (lambda m, x: F.layer_norm(x, (16,), m.g, m.b2), X, [("g", (16,)), ("b2", (16,))]),
    "views": (lambda m, x: x.view(2, 6, 4, 4).transpose(1, 2).permute(0, 2, 1, 3).reshape(2, 96)
              .unsqueeze(0).expand(3, 2, 96)[1:, :, 8:40], X),
    "cat_slice": (lambda m, x: torch.cat([x[..., 8:], -x[..., :8]], dim=-1) * 2.0, X),
    "matmul_bmm": (lambda m, x: torch.matmul(x, x.transpose(1, 2)) + torch.bmm(x, x.transpose(1, 2)), X),
    "rms_norm_hf": (lambda m, x: m.g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)), X,
                    [("g", (16,))]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_eager(case):
    fn, x, *params = CASES[case]
    check(Fn(fn, params[0] if params else ()), x)


def test_embedding():
    emb = nn.Embedding(50, 16)
    check(nn.Sequential(emb), torch.tensor([[3, 49, 0, 7]]))


def test_sdpa_causal_gqa():
    def attn(m, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    check(Fn(attn), q, k, v)
