"""`waferc port`: every supported architecture ports whole; an unsupported op is named with its
module path and source line while every other module type ports; a `save_pretrained` directory
ports with its real weights; the CLI's files, exit codes and the support matrix."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from compiler.cli import main
from compiler.port import FAILED, OK, SKIPPED, build_port_model, model_path, port_model
from ir.errors import CompilerError

transformers = pytest.importorskip("transformers")

# One tiny config.json per architecture that must port whole: adding one is adding a line.
ARCHITECTURES = {
    "gpt2": dict(architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=64, n_embd=32, n_layer=1,
                 n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0),
    "llama": dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=64, hidden_size=32,
                  intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=32),
    "mistral": dict(architectures=["MistralForCausalLM"], model_type="mistral", vocab_size=64, hidden_size=32,
                    intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=32, sliding_window=4),
    "qwen2": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=64, hidden_size=32,
                  intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=32),
    "phi3": dict(architectures=["Phi3ForCausalLM"], model_type="phi3", vocab_size=64, hidden_size=32,
                 intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=32, pad_token_id=0),
    "gemma": dict(architectures=["GemmaForCausalLM"], model_type="gemma", vocab_size=64, hidden_size=32,
                  intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=1,
                  head_dim=16, max_position_embeddings=32),
    "bert": dict(architectures=["BertModel"], model_type="bert", vocab_size=64, hidden_size=32,
                 intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, max_position_embeddings=32),
}

UNSUPPORTED_MODEL = '''
    import torch
    from torch import nn


    class Scan(nn.Module):
        def forward(self, x):
            y = torch.cumprod(x, dim=-1)
            return torch.erfinv(torch.tanh(y))


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.norm = nn.LayerNorm(8)
            self.scan = Scan()

        def forward(self, x):
            return x + self.scan(self.norm(torch.relu(self.fc(x))))


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(Block(), Block())
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            return self.head(self.blocks(x))


    torch.manual_seed(0)
    model = Net()
    example_inputs = (torch.randn(2, 8, generator=torch.Generator().manual_seed(0)),)
'''
DATA_DEPENDENT_MODEL = '''
    import torch
    from torch import nn


    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x * 2
            return x


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.gate = Branchy()

        def forward(self, x):
            return self.gate(self.fc(x))


    model = Net()
    example_inputs = (torch.randn(1, 8),)
'''
SUPPORTED_MODEL = '''
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 4))
    example_inputs = (torch.randn(2, 8, generator=torch.Generator().manual_seed(0)),)
'''


def model_dir(parent: Path, name: str, config: dict) -> Path:
    directory = parent / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({**config, "torch_dtype": "float32"}, indent=2))
    return directory


def write_model(tmp_path: Path, source: str, name: str = "net.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def row(report, type_name: str):
    (found,) = [r for r in report.modules if r.type == type_name]
    return found


def source_line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


# ---------------------------------------------------------------- every architecture ports whole


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def architecture(request, tmp_path_factory):
    """Each architecture built from its config with random weights (seed 1), saved with
    `save_pretrained`, and ported from that directory with its real weights (port seed 0)."""
    root = tmp_path_factory.mktemp(request.param)
    original = build_port_model(f"hf:{model_dir(root, 'config-only', ARCHITECTURES[request.param])}", seed=1)
    original.module.save_pretrained(root / "saved")
    return original, root / "saved", port_model(f"hf:{root / 'saved'}", seed=0)


def test_architecture_ports_whole(architecture):
    _, _, report = architecture
    assert report.ported and report.whole.stages == dict.fromkeys(report.whole.stages, OK)
    assert [r.type for r in report.rows if not r.ok] == []
    assert report.whole.max_error <= report.whole.tolerance


def test_ported_with_the_saved_weights(architecture):
    original, saved, report = architecture
    assert report.weights.endswith("tensors from model.safetensors")
    reloaded = build_port_model(f"hf:{saved}", seed=0)
    with torch.no_grad():
        want = original.module(*original.args, **original.kwargs)
        got = reloaded.module(*original.args, **original.kwargs)
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # the saved numbers, not seed 0's


def test_every_module_type_gets_a_row(architecture):
    _, _, report = architecture
    types = {r.type for r in report.modules}
    assert any("Attention" in t for t in types) and ("Linear" in types or "Conv1D" in types)
    assert report.whole.type == report.architecture and report.architecture not in types
    for r in report.modules:
        assert r.instances >= 1 and r.path
        if r.stages["simulate"] == OK:
            assert r.max_error <= r.tolerance
        else:  # only modules with nothing left to place after lowering are skipped
            assert r.stages == {"export": OK, "lower": OK, "place": SKIPPED, "simulate": SKIPPED}
            assert r.note


def test_attention_is_simulated_on_its_own(architecture):
    attention = [r for r in architecture[2].modules if r.type.endswith("Attention")]
    assert attention and all(r.stages["simulate"] == OK for r in attention)


def test_config_only_directory_gets_random_weights_from_the_seed(tmp_path):
    directory = model_dir(tmp_path, "llama", ARCHITECTURES["llama"])
    first, again, other = (build_port_model(f"hf:{directory}", seed=s) for s in (0, 0, 1))
    assert first.weights == "random (seed 0)"
    weight = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(first.module.state_dict()[weight], again.module.state_dict()[weight])
    assert not torch.equal(first.module.state_dict()[weight], other.module.state_dict()[weight])


# ---------------------------------------------------------------- an op the IR lacks


@pytest.fixture(scope="module")
def unsupported(tmp_path_factory):
    path = write_model(tmp_path_factory.mktemp("unsupported"), UNSUPPORTED_MODEL)
    return path, port_model(f"{path}:model")


def test_unsupported_op_is_named_with_module_path_and_source_line(unsupported):
    path, report = unsupported
    scan = row(report, "Scan")
    assert scan.stages == {"export": OK, "lower": FAILED, "place": "not run", "simulate": "not run"}
    ops = {f.op: f for f in scan.failures}
    assert set(ops) == {"aten.cumprod.default", "aten.erfinv.default"}  # all of them, not the first
    cumprod = ops["aten.cumprod.default"]
    assert cumprod.module == "blocks.0.scan" and cumprod.stage == "lower"
    assert Path(cumprod.file) == path.resolve() or Path(cumprod.file) == path
    assert cumprod.line == source_line(path, "torch.cumprod") and "torch.cumprod(x, dim=-1)" in cumprod.source


def test_every_other_module_type_ports(unsupported):
    _, report = unsupported
    assert {r.type for r in report.modules if r.ok} == {"Linear", "LayerNorm"}
    # What contains the op fails where the op is, found through the whole model's module paths.
    for name, modules in [("Block", {"blocks.0.scan"}), ("Sequential", {"blocks.0.scan", "blocks.1.scan"})]:
        assert row(report, name).failed_stage == "lower"
        assert {f.module for f in row(report, name).failures} == modules
    assert not report.ported and report.whole.failed_stage == "lower"


def test_report_text_names_the_op_and_place(unsupported):
    path, report = unsupported
    text = report.to_markdown()
    line = source_line(path, "torch.cumprod")
    assert "`aten.cumprod.default`" in text and f"{path.name}:{line}" in text and "`blocks.0.scan`" in text
    assert "| `Linear` | 3 | ok | ok | ok | ok |" in text


def test_export_failure_is_located_in_the_model_source(tmp_path):
    path = write_model(tmp_path, DATA_DEPENDENT_MODEL)
    report = port_model(f"{path}:model")
    branchy = row(report, "Branchy")
    assert branchy.failed_stage == "export" and row(report, "Linear").ok
    (failure,) = branchy.failures
    assert failure.message.startswith("torch.export failed")
    assert (failure.module, failure.line, failure.source) == ("gate", source_line(path, "if x.sum()"),
                                                              "if x.sum() > 0:")
    assert [(f.module, f.line) for f in report.whole.failures] == [("gate", failure.line)]


def test_module_paths_map_into_the_whole_model():
    assert model_path("model.layers.0.self_attn", "inner.q_proj") == "model.layers.0.self_attn.q_proj"
    assert model_path("model.layers.0", "inner") == "model.layers.0"
    assert model_path("", "inner.model.norm") == "model.norm"
    assert model_path("", "") == ""


# ---------------------------------------------------------------- what cannot be ported


def test_too_big_a_model_is_refused_before_it_is_built():
    with pytest.raises(CompilerError) as error:
        build_port_model("hf:llama-3.1-8b")
    message = str(error.value)
    assert "8.03 billion parameters" in message and "waferc compile hf:llama-3.1-8b" in message


# ---------------------------------------------------------------- the command line


def invoke(*args: str):
    # Wide enough that rich does not fold the table's notes onto several lines.
    return CliRunner().invoke(main, ["port", *args], env={"COLUMNS": "200"})


def test_cli_port_writes_reports_and_is_deterministic(tmp_path):
    path = write_model(tmp_path, SUPPORTED_MODEL, "mlp.py")
    first = invoke(f"{path}:model", "-o", str(tmp_path / "a"))
    second = invoke(f"{path}:model", "-o", str(tmp_path / "b"), "--target", "toy", "--seed", "0")
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert (tmp_path / "a" / "port.json").read_bytes() == (tmp_path / "b" / "port.json").read_bytes()
    assert (tmp_path / "a" / "port.md").read_bytes() == (tmp_path / "b" / "port.md").read_bytes()
    data = json.loads((tmp_path / "a" / "port.json").read_text())
    assert data["ported"] and data["module_types"] == 3 and data["module_types_ok"] == 3
    assert "Dropout" in first.output and "identity in inference" in first.output
    assert "whole model ported" in first.output


def test_cli_port_default_output_directory(tmp_path, monkeypatch):
    path = write_model(tmp_path, SUPPORTED_MODEL, "mlp.py")
    monkeypatch.chdir(tmp_path)
    result = invoke(f"{path}:model")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "port-mlp-model" / "port.md").is_file()


def test_cli_port_of_unsupported_model_exits_1_and_says_where(tmp_path):
    path = write_model(tmp_path, UNSUPPORTED_MODEL)
    result = invoke(f"{path}:model", "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "aten.cumprod.default" in result.output and "blocks.0.scan" in result.output
    assert f":{source_line(path, 'torch.cumprod')})" in result.output and "NOT ported" in result.output
    assert json.loads((tmp_path / "out" / "port.json").read_text())["ported"] is False


@pytest.mark.parametrize("spec,expected", [
    ("hf:meta-llama/Llama-3.1-8B", "no access to the Hugging Face hub"),
    ("model.pt2", "has no modules to port"),
])
def test_cli_port_bad_models_exit_1_with_one_message(tmp_path, spec, expected):
    result = invoke(spec, "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cli_port_refuses_a_pickled_checkpoint(tmp_path):
    directory = model_dir(tmp_path, "pickled", ARCHITECTURES["llama"])
    (directory / "pytorch_model.bin").write_bytes(b"\x80\x04not unpickled")
    result = invoke(f"hf:{directory}", "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "is a pickled checkpoint" in result.output


def test_cli_port_needs_exactly_one_model(tmp_path):
    assert invoke().exit_code == 2
    assert invoke("x.py:model", "--all", str(tmp_path)).exit_code == 2


def test_cli_port_all_writes_the_support_matrix(tmp_path):
    models = tmp_path / "models"
    model_dir(models, "gpt2-tiny", ARCHITECTURES["gpt2"])
    broken = model_dir(models, "org/pickled", ARCHITECTURES["llama"])
    (broken / "pytorch_model.bin").write_bytes(b"\x80\x04not unpickled")
    result = invoke("--all", str(models))
    assert result.exit_code == 1, result.output  # not every model ported
    matrix = json.loads((models / "support-matrix.json").read_text())
    by_dir = {m["directory"]: m for m in matrix["models"]}
    assert set(by_dir) == {"gpt2-tiny", "org/pickled"}
    assert by_dir["gpt2-tiny"]["ported"] and by_dir["gpt2-tiny"]["architecture"] == "GPT2LMHeadModel"
    pickled = by_dir["org/pickled"]
    assert not pickled["ported"] and "pickled checkpoint" in pickled["build_error"]
    text = (models / "support-matrix.md").read_text()
    assert "| `gpt2-tiny` | GPT2LMHeadModel | ok | ok | ok | ok | ok |" in text
    assert "| `org/pickled` | LlamaForCausalLM | FAIL | - | - | - | - |" in text
