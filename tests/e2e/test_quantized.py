"""--weight-dtype end to end: quantised models simulate to what PyTorch computes with the same
dequantised weights, stay near the unquantised model, and take less SRAM."""
import copy
import json

import ml_dtypes
import numpy as np
import pytest
import torch
from torch.utils import _pytree

import compiler
from compiler.artifact import load_tensors
from compiler.pipeline import CompileOptions, compile_graph, placement_json
from ir.errors import CompilerError
from ir.target import load_target
from ir.types import DType
from tests.builders import GraphBuilder
from tests.e2e.test_models import load_example

# Loose bounds on |simulated - unquantised eager| as a share of the largest eager output: int8
# keeps ~8 bits per weight, fp8 (e4m3) ~4. Scales read for the wrong output channels miss by
# more than 100% on these models (checked below), so the bounds catch a misplaced scale.
LOOSE = {"fp8": 0.25, "int8": 0.05}


def spread_rows(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose linear weights have rows 0.1x..10x apart (fixed shuffle), so per-channel
    scales differ and applying one to the wrong channel shows; random init gives rows of nearly
    equal absmax."""
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                n = m.weight.shape[0]
                m.weight.mul_(torch.logspace(-1, 1, n)[torch.randperm(n, generator=g)][:, None])
    return model


def dequantised(model: torch.nn.Module, weights: dict, shift: int = 0) -> torch.nn.Module:
    """A copy of `model` computing with the artifact's dequantised weights (`shift` rolls each
    scale vector: scales applied to the wrong output channels)."""
    model = copy.deepcopy(model)
    state = model.state_dict()
    with torch.no_grad():
        for name, wq in weights.items():
            if f"{name}_scale" in weights:
                scale = np.roll(weights[f"{name}_scale"], shift)
                state[name].copy_(torch.from_numpy(wq.astype(np.float32) * scale[:, None]))
    return model


def first_output(out) -> torch.Tensor:
    """The model's main output (an MLP's tensor, a causal LM's logits)."""
    return _pytree.tree_leaves(out)[0]


def error(got, want) -> float:
    return float((first_output(got).double() - first_output(want).double()).abs().max())


@pytest.fixture(scope="module", params=[(m, d) for m in ("mlp", "llama_tiny") for d in ("fp8", "int8")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def quantised(request):
    name, dtype = request.param
    model, inputs = load_example(name)
    model = spread_rows(model)
    cm = compiler.compile(model, inputs, target="toy", weight_dtype=dtype, time_limit=1.0)
    return model, inputs, dtype, cm


def test_simulation_matches_eager_with_the_same_dequantised_weights(quantised):
    model, inputs, _, cm = quantised
    weights = load_tensors(cm.artifact.files["weights.safetensors"])
    with torch.no_grad():
        want = dequantised(model, weights)(*inputs)
    assert error(cm(*inputs), want) <= 1e-5


def test_simulation_stays_near_the_unquantised_model(quantised):
    model, inputs, dtype, cm = quantised
    weights = load_tensors(cm.artifact.files["weights.safetensors"])
    with torch.no_grad():
        eager = model(*inputs)
        misplaced = dequantised(model, weights, shift=1)(*inputs)
    bound = LOOSE[dtype] * float(first_output(eager).abs().max())
    assert error(cm(*inputs), eager) <= bound
    assert error(misplaced, eager) > 2 * bound  # the bound can tell


def test_artifact_records_the_weight_dtype_and_stores_quantised_weights(quantised, tmp_path):
    model, inputs, dtype, cm = quantised
    assert cm.report["weight_dtype"] == dtype
    weights = load_tensors(cm.artifact.files["weights.safetensors"])
    stored = {"fp8": ml_dtypes.float8_e4m3fn, "int8": np.int8}[dtype]
    scaled = [n for n in weights if f"{n}_scale" in weights]
    assert scaled and all(weights[n].dtype == stored and weights[f"{n}_scale"].dtype == np.float32
                          for n in scaled)
    assert "qlinear(" in cm.artifact.files["model.ir"].decode()
    cm.save(tmp_path / "q")
    again = compiler.load(tmp_path / "q")
    np.testing.assert_array_equal(first_output(again(*inputs)), first_output(cm(*inputs)))


def two_linears():
    """x[1, 256] -> linear 256x256 -> relu -> linear 128x256: weights dominate SRAM."""
    b = GraphBuilder("two_linears")
    x = b.input("x", 1, 256)
    h = b.op("relu", b.op("linear", x, b.param("fc1.weight", 256, 256), module="fc1"))
    return b.done(b.op("linear", h, b.param("fc2.weight", 128, 256), module="fc2"))


@pytest.mark.parametrize("dtype", [DType.bf16, DType.f16])
def test_16_bit_weights_take_half_the_sram_of_f32(dtype):
    target = load_target("toy")

    def sram(weight_dtype):
        opts = CompileOptions(target, time_limit_s=1.0, weight_dtype=weight_dtype)
        regions = placement_json(compile_graph(two_linears(), opts), target)["regions"]
        return sum(r["sram_bytes"] for r in regions if r["kind"] == "linear")

    f32, half = sram(None), sram(dtype)
    assert f32 >= (256 + 128) * 256 * 4  # every weight resident once, plus padding and buffers
    assert 0.45 <= half / f32 <= 0.6


def test_bad_weight_dtype_is_a_one_line_error_before_tracing():
    with pytest.raises(CompilerError) as e:
        compiler.compile("no-such-model.pt2", weight_dtype="fp4")
    assert "\n" not in str(e.value) and "fp4" in str(e.value)


@pytest.mark.slow
def test_405b_in_fp8_needs_about_half_the_wafers_of_bf16():
    """Size-only on wse3 (about 4 minutes): measured 13 wafers (lower bound 12) against 26 (23)."""
    reports = {d: compiler.compile("hf:llama-3.1-405b", target="wse3", weight_dtype=d).report
               for d in ("bf16", "fp8")}
    bf16, fp8 = reports["bf16"], reports["fp8"]
    assert fp8["size_only"] and fp8["weight_dtype"] == "fp8"
    assert fp8["wafers_lower_bound"] <= 0.55 * bf16["wafers_lower_bound"]
    assert fp8["wafers_used"] <= 0.55 * bf16["wafers_used"]
