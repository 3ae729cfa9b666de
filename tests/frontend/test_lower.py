"""The frontend on small hand-written modules: table entries against eager, locations, errors."""
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree

from compiler.frontend import capture, capture_pt2, eager_outputs, lower
from ir.errors import CompilerError, UnsupportedOpError
from ir.types import DType
from ir.verify import verify_graph
from passes.canonicalize import CanonicalizePass
from tests.ir_torch_eval import run_lowered

THIS_FILE = str(Path(__file__).resolve())


def line_of(marker: str) -> int:
    lines = Path(THIS_FILE).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.rstrip().endswith(f"# {marker}"))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(16)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16, bias=False)
        self.register_buffer("gain", torch.linspace(0.5, 1.5, 16))

    def forward(self, x):
        h = self.fc1(self.norm(x))  # MARK-fc1
        a = F.relu(h) + F.gelu(h, approximate="tanh") - F.gelu(h) * F.silu(h)
        a = torch.sigmoid(a) / (torch.tanh(a) + 2.0)
        y = self.fc2(a) * self.gain
        y = -y + torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5)
        return torch.softmax(y, dim=-1), 1 - x


class Shuffles(nn.Module):
    """Data movement, reductions, comparisons and casts."""

    def forward(self, x, ids):
        p = x.reshape(2, 4, 4, 4).permute(0, 2, 1, 3)
        q = torch.cat([p[..., 2:], p[..., :2]], dim=-1)
        b = torch.bmm(q.reshape(8, 4, 4), q.reshape(8, 4, 4).transpose(1, 2))
        first, second = x.split(8, dim=-1)
        halves = torch.chunk(x, 2, dim=1)
        picked = x.select(1, -1).unsqueeze(1).expand(2, 4, 16)
        masked = torch.where(x > 0.1, x, picked).amax(dim=-1)
        below_mean = x < x.mean(-1, keepdim=True)
        counts = (ids >= 3).sum(-1, keepdim=True) + (below_mean & (x > 0.1)).sum(-1)
        scaled = ids.float() / 7 + torch.exp(-x.abs()).sqrt()[..., 0]
        return (b.reshape(2, 4, 16).sum(-1), first - second, halves[1].squeeze(1), masked,
                counts, scaled, x[0].t(), x.transpose(0, 2).flatten(1))


def lowered_and_eager(model, args, kwargs=None):
    torch.manual_seed(0)
    captured = capture(model, args, kwargs)
    lowered = lower(captured)
    with torch.no_grad():
        want = pytree.tree_leaves(model(*args, **(kwargs or {})))
    return captured, lowered, want


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return lowered_and_eager(Mlp(), (torch.randn(2, 4, 16),))


def assert_matches(lowered, inputs, want):
    got = run_lowered(lowered, inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_mlp_matches_eager(mlp):
    captured, lowered, want = mlp
    verify_graph(lowered.graph)
    assert_matches(lowered, captured.example_tensors(), want)
    opnames = {op.opname for op in lowered.graph.ops}
    assert {"layer_norm", "linear", "relu", "gelu", "silu", "sigmoid", "tanh", "div", "neg",
            "pow", "rsqrt", "mean", "softmax", "sub"} <= opnames


def test_gelu_modes_and_rsub_scalar(mlp):
    _, lowered, _ = mlp
    modes = {op.attrs["approximate"] for op in lowered.graph.ops if op.opname == "gelu"}
    assert modes == {"tanh", "none"}
    rsub = [op for op in lowered.graph.ops if op.opname == "sub" and op.attrs.get("swap")]
    assert rsub and rsub[0].attrs["scalar"] == 1


def test_params_are_state_dict_entries_and_buffers_too(mlp):
    captured, lowered, _ = mlp
    model = captured.model
    assert [p.name for p in lowered.graph.params] == ["norm.weight", "norm.bias", "fc1.weight",
                                                      "fc1.bias", "fc2.weight", "gain"]
    np.testing.assert_array_equal(lowered.params["fc1.weight"], model.fc1.weight.detach().numpy())
    np.testing.assert_array_equal(lowered.params["gain"], model.gain.numpy())
    assert lowered.input_names == ["x"]


def test_locations_name_module_and_user_line(mlp):
    _, lowered, _ = mlp
    fc1 = next(op for op in lowered.graph.ops if op.opname == "linear")
    assert fc1.loc.module == "fc1"
    assert (fc1.loc.file, fc1.loc.line) == (THIS_FILE, line_of("MARK-fc1"))
    assert all(op.loc.file == THIS_FILE for op in lowered.graph.ops)


def test_example_inputs_and_eager_outputs(mlp):
    captured, lowered, want = mlp
    assert len(captured.example_numpy()) == len(lowered.input_names) == 1
    outputs = eager_outputs(captured)
    assert [o.shape for o in outputs] == [tuple(w.shape) for w in want]
    spec = pytree.treespec_loads(lowered.out_spec)
    assert spec.num_leaves == 2


def test_data_movement_reductions_and_casts_match_eager():
    torch.manual_seed(0)
    args = (torch.randn(2, 4, 16), torch.randint(0, 7, (2, 4)))
    captured, lowered, want = lowered_and_eager(Shuffles(), args)
    verify_graph(lowered.graph)
    assert_matches(lowered, list(args), want)
    assert_matches(lowered, list(args), want)  # the lowering is pure: same answer twice
    canonical = CanonicalizePass().run(lowered.graph)
    assert {"slice", "cat", "matmul", "where", "amax", "cast", "gt", "ge", "sum"} <= {
        op.opname for op in canonical.ops}
    assert_matches(lowered, list(args), want)


def test_bf16_weights_keep_their_dtype():
    torch.manual_seed(0)
    model = Mlp().to(torch.bfloat16)
    x = torch.randn(2, 4, 16, dtype=torch.bfloat16)
    captured, lowered, want = lowered_and_eager(model, (x,))
    assert lowered.params["fc1.weight"].dtype == ml_dtypes.bfloat16
    assert {p.type.dtype for p in lowered.graph.params} == {DType.bf16}
    got = run_lowered(lowered, [x])
    torch.testing.assert_close(got[0], want[0], atol=1e-2, rtol=1e-2)


def test_param_names_that_are_no_ir_names_are_adjusted():
    class Gain(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("x", torch.full((3,), 2.0))

        def forward(self, x):
            return x * self.x

    x = torch.randn(3)
    captured, lowered, want = lowered_and_eager(nn.Sequential(nn.Linear(3, 3), Gain()), (x,))
    assert lowered.input_names == ["input"]  # Sequential.forward's argument
    assert sorted(lowered.params) == ["_0.bias", "_0.weight", "_1.x"]
    verify_graph(lowered.graph)
    captured, lowered, want = lowered_and_eager(Gain(), (x,))
    assert lowered.input_names == ["x"] and list(lowered.params) == ["x_1"]  # no clash with x
    verify_graph(lowered.graph)
    assert_matches(lowered, [x], want)


def test_non_tensor_inputs_are_dropped():
    class Flagged(nn.Module):
        def forward(self, x, scale=None, double=False):
            return x * scale * (2 if double else 1)

    x, s = torch.randn(3), torch.randn(3)
    captured, lowered, want = lowered_and_eager(Flagged(), (x,), {"scale": s, "double": True})
    assert lowered.input_names == ["x", "scale"]
    assert_matches(lowered, [x, s], want)


class Cumulative(nn.Module):
    def forward(self, x):
        return torch.cumprod(x, dim=-1)  # MARK-cumprod


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 4), Cumulative())

    def forward(self, x):
        return self.inner(x).cumsum(0)


def test_unsupported_op_names_op_module_and_line():
    captured = capture(Outer(), (torch.randn(2, 4),))
    with pytest.raises(UnsupportedOpError) as info:
        lower(captured)
    message = str(info.value)
    assert "aten.cumprod.default" in message  # the first unsupported op, not the later cumsum
    assert "inner.1" in message
    assert f"{THIS_FILE}:{line_of('MARK-cumprod')}" in message
    assert "torch.cumprod(x, dim=-1)" in message  # the source line itself


def test_add_with_alpha_is_rejected():
    class Alpha(nn.Module):
        def forward(self, x):
            return torch.add(x, x, alpha=2)

    with pytest.raises(UnsupportedOpError, match="alpha=2"):
        lower(capture(Alpha(), (torch.randn(3),)))


def test_export_failure_is_one_line_compiler_error():
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("the model is broken\nsecond line")

    with pytest.raises(CompilerError) as info:
        capture(Broken(), (torch.randn(3),))
    assert "the model is broken" in str(info.value)
    assert "second line" not in str(info.value) and "Traceback" not in str(info.value)


def test_meta_device_model_lowers_size_only():
    with torch.device("meta"):
        model = Mlp()
    lowered = lower(capture(model, (torch.randn(2, 4, 16, device="meta"),)))
    assert lowered.params and all(data is None for data in lowered.params.values())
    verify_graph(lowered.graph)
    assert lowered.graph.outputs[0].type.shape == (2, 4, 16)


def test_pt2_round_trip(tmp_path, mlp):
    captured, lowered, want = mlp
    path = tmp_path / "mlp.pt2"
    torch.export.save(captured.exported, str(path))
    loaded = capture_pt2(path)
    assert loaded.name == "mlp" and loaded.out_spec == captured.out_spec
    assert_matches(lower(loaded), loaded.example_tensors(), want)
    assert [np.asarray(o).shape for o in eager_outputs(loaded)] == [tuple(w.shape) for w in want]


def test_pt2_missing_file_is_compiler_error(tmp_path):
    with pytest.raises(CompilerError, match="cannot load exported program"):
        capture_pt2(tmp_path / "nope.pt2")
