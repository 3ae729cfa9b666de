"""The examples compile on `toy`, and the simulator's answer is PyTorch's (fp32, 1e-4)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import compiler

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.model, module.example_inputs


def max_error(got, want) -> float:
    pairs = zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want))
    return max(float((g.double() - w.double()).abs().max()) for g, w in pairs)


@pytest.fixture(scope="module", params=["mlp", "gpt2_tiny", "llama_tiny"])
def compiled(request):
    model, inputs = load_example(request.param)
    return model, inputs, compiler.compile(model, inputs, target="toy")


def test_simulated_output_matches_eager(compiled):
    model, inputs, cm = compiled
    with torch.no_grad():
        want = model(*inputs)
    got = cm(*inputs)
    assert type(got) is type(want)  # same structure back: tensors, tuples, HF output objects
    assert max_error(got, want) <= 1e-4


def test_default_run_reports_error_and_cycles(compiled):
    _, _, cm = compiled
    result = cm.run()
    assert result.max_abs_error <= 1e-4
    assert result.cycles.latency_cycles > 0
    report = json.loads(cm.artifact.files["report.json"])
    # The compiler's estimate and the simulator's count come from the same rules.
    assert result.cycles.bottleneck_cycles == report["bottleneck_cycles"]  # stage (busy) cycles
    assert result.cycles.latency_cycles == report["latency_cycles"]  # kernel latencies and routes
    assert report["bottleneck_cycles"] <= report["latency_cycles"]


def test_llama_attention_is_causal_and_gqa_without_copies(tmp_path):
    model, inputs = load_example("llama_tiny")
    cm = compiler.compile(model, inputs, target="toy")
    ir_text = cm.artifact.files["model.ir"].decode()
    assert "causal = true" in ir_text
    assert "expand(" not in ir_text.split("sdpa(")[0].splitlines()[-1]
    sdpa_lines = [line for line in ir_text.splitlines() if "= sdpa(" in line]
    assert sdpa_lines and all("bool[" not in line for line in sdpa_lines)


@pytest.mark.parametrize("rate", [0.02, 0.05])
def test_defective_wafer_changes_placement_not_answers(rate):
    model, inputs = load_example("llama_tiny")
    cm = compiler.compile(model, inputs, target="toy", defect_rate=rate, seed=3)
    placement = json.loads(cm.artifact.files["placement.json"])
    report = json.loads(cm.artifact.files["report.json"])
    assert placement["defects"] and placement["remap"]["spare_cols"] >= 1
    logical = placement["remap"]["logical_dims"]
    assert all(r["x"] + r["w"] <= logical[0] and r["y"] + r["h"] <= logical[1] for r in placement["regions"])
    assert report["defects"]["capacity_lost_pes"] > 0
    assert max_error(cm(*inputs), model(*inputs)) <= 1e-4


def test_a_defects_file_and_a_defect_rate_together_are_refused(tmp_path):
    defects = tmp_path / "defects.txt"
    defects.write_text("0 1 1\n")
    model, inputs = load_example("mlp")
    with pytest.raises(compiler.api.CompilerError, match="either defects .* or defect_rate, not both"):
        compiler.compile(model, inputs, target="toy", defects=defects, defect_rate=0.01)


@pytest.mark.parametrize("fabric,wafers", [((80, 80), None), ((80, 80), 2)])
def test_wafer_scale_placer_keeps_the_answer(fabric, wafers):
    """The placer for big fabrics (and pipelines across wafers) runs the same program semantics."""
    model, inputs = load_example("llama_tiny")
    cm = compiler.compile(model, inputs, target="toy", fabric_dims=fabric, wafers=wafers)
    report = json.loads(cm.artifact.files["report.json"])
    assert report["wafers_used"] == (wafers or 1) and "bottleneck_ratio_to_ideal" in report
    regions = json.loads(cm.artifact.files["placement.json"])["regions"]
    assert {r["wafer"] for r in regions} == set(range(wafers or 1))
    assert max_error(cm(*inputs), model(*inputs)) <= 1e-4


def test_a_column_packed_placement_keeps_the_answer(monkeypatch):
    """Kernels of four layers packed in columns (a couple that the stepped pairs would hold too,
    forced into columns here) still compute what PyTorch does."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from passes import wafer_place
    from passes.serpentine import BandSizer, coupled, paired, serpentine_layout

    def columns_only(self, bands, floor):
        layout = serpentine_layout(self.search, coupled(paired(bands)), self.fabric, 1, floor,
                                   columns=True)
        return [layout] if layout else []
    monkeypatch.setattr(BandSizer, "_couple", lambda self, band, w, stage: self._columns(band, w, stage))
    monkeypatch.setattr(wafer_place._WaferConstructor, "_candidates", columns_only)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    inputs = (torch.randint(0, config.vocab_size, (1, 8)),)
    cm = compiler.compile(model, inputs, target="toy", fabric_dims=(96, 96))
    regions = json.loads(cm.artifact.files["placement.json"])["regions"]
    down = [r for r in regions if r["kernel"].endswith("mlp_down_proj")]
    stack = [r for r in regions if r["layer"] is not None and r not in down]
    # The layers' last kernels are slabs across the couple, two above the others and two below;
    # the others are in columns a quarter of the couple's width or less.
    assert len({(r["x"], r["w"]) for r in down}) == 1
    assert all(4 * r["w"] <= down[0]["w"] + 3 for r in stack)
    assert max(r["y"] for r in down[:2]) < min(r["y"] for r in stack)
    assert min(r["y"] for r in down[2:]) >= max(r["y"] + r["h"] for r in stack)
    assert max_error(cm(*inputs), model(*inputs)) <= 1e-4


def test_wafers_auto_on_a_small_fabric_pipelines_what_one_wafer_cannot_hold():
    """A fabric small enough for the one-wafer placer, and a model too big for one of its wafers:
    `wafers=None` (auto) takes the fewest that hold it, as on a big fabric."""
    model, inputs = load_example("llama_tiny")
    cm = compiler.compile(model, inputs, target="toy", fabric_dims=(4, 4))
    report = json.loads(cm.artifact.files["report.json"])
    assert report["wafers_used"] >= 2
    regions = json.loads(cm.artifact.files["placement.json"])["regions"]
    assert {r["wafer"] for r in regions} == set(range(report["wafers_used"]))
    assert max_error(cm(*inputs), model(*inputs)) <= 1e-4
