"""The `waferc` CLI, driven through click's CliRunner.

Most tests swap `compiler.api` for a small fake so they pin the CLI's own behaviour (arguments,
output, exit codes). The error-path tests also run against the real API once it imports, and the
end-to-end test at the bottom needs it.
"""
from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from compiler.artifact import MANIFEST, Artifact, save_tensors
from compiler.cli import main, op_histogram
from ir.errors import UnsupportedOpError

MODEL_FILE = """
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    model = MLP()
    example_inputs = (torch.randn(1, 8, generator=torch.Generator().manual_seed(0)),)
"""
IR_TEXT = """graph mlp(%x : f32[1, 8]) {
  %h : f32[1, 16] = linear(%x, %w0, %b0)
  %r : f32[1, 16] = relu(%h)
  %y : f32[1, 4] = linear(%r, %w1, %b1)
  return %y
}
"""
REGIONS = [
    {"kernel": "fc0", "layer": "0", "wafer": 0, "x": 0, "y": 0, "w": 2, "h": 4,
     "sram_bytes": 4096, "cycles_per_token": 120},
    {"kernel": "fc1", "layer": "1", "wafer": 0, "x": 2, "y": 0, "w": 1, "h": 2,
     "sram_bytes": 2048, "cycles_per_token": 80},
]
REPORT = {"kernels": ["fc0", "fc1"], "pes_used": 10, "bottleneck_kernel": "fc0",
          "bottleneck_cycles": 120, "passes_per_second": 9166666.7}
WAFER_SCALE_REPORT = {**REPORT, "wafers_used": 3, "wafers_lower_bound": 2, "bottleneck_ratio_to_ideal": 1.254,
                      "bottleneck_ratio_to_ideal_real": 1.0312,
                      "hop_distance_total": 12345, "size_only": True}
WAFER_SCALE_OPTIONS = ("wafers", "max_context", "batch", "weight_dtype", "layout", "defects", "defect_rate",
                       "timings")


def fake_artifact(report: dict = REPORT, regions: list[dict] = REGIONS) -> Artifact:
    return Artifact({
        "model.ir": IR_TEXT.encode(),
        "placement.json": json.dumps({"regions": regions}).encode(),
        "report.json": json.dumps(report).encode(),
    })


class FakeCompiled:
    """Stands in for compiler.api.CompiledModel: the same attributes, canned results."""

    input_names = ["x"]

    def __init__(self, artifact: Artifact, size_only: bool = False):
        self.artifact = artifact
        self.size_only = size_only
        self.run_inputs = "not run"

    def save(self, path) -> None:
        self.artifact.write(path)

    def run(self, inputs=None):
        self.run_inputs = inputs
        cycles = types.SimpleNamespace(kernels={"fc0": 120, "fc1": 80}, latency_cycles=1234,
                                       bottleneck_kernel="fc0", bottleneck_cycles=120, clock_hz=1.1e9,
                                       latency_seconds=1234 / 1.1e9, passes_per_second=1.1e9 / 120)
        outputs = {"y": np.arange(12, dtype=np.float32).reshape(3, 4) / 3}
        return types.SimpleNamespace(outputs=outputs, cycles=cycles,
                                     max_abs_error=1.5e-7 if inputs is None else None)


class FakeApi(types.ModuleType):
    """A `compiler.api` module that records calls; `compile_error` makes compile raise."""

    def __init__(self):
        super().__init__("compiler.api")
        self.compile_calls: list[dict] = []
        self.compile_error: Exception | None = None
        self.report = REPORT
        self.size_only = False
        self.loaded: list[FakeCompiled] = []

    def compile(self, model, example_args=(), example_kwargs=None, **options):
        self.compile_calls.append({"model": model, "args": example_args, "kwargs": example_kwargs, **options})
        for phase in ("export", "place"):
            options["progress"](phase)
        if self.compile_error:
            raise self.compile_error
        return FakeCompiled(fake_artifact(self.report))

    def load(self, path):
        compiled = FakeCompiled(Artifact.read(path), self.size_only)
        self.loaded.append(compiled)
        return compiled


@pytest.fixture
def fake_api(monkeypatch) -> FakeApi:
    api = FakeApi()
    monkeypatch.setitem(sys.modules, "compiler.api", api)
    return api


@pytest.fixture(params=["fake", "real"])
def any_api(request, monkeypatch):
    """Error paths that must behave the same with the fake and with the real compiler.api."""
    if request.param == "real":
        return pytest.importorskip("compiler.api", exc_type=ImportError)
    api = FakeApi()
    monkeypatch.setitem(sys.modules, "compiler.api", api)
    return api


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "mlp.py"
    path.write_text(textwrap.dedent(MODEL_FILE))
    return path


def waferc(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_failure(result, exit_code: int = 1) -> str:
    """Non-zero exit, the message on stderr, no traceback; returns the message's first line."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # Progress lines ("waferc: <phase>...") may come before the message.
    message = [line for line in result.stderr.splitlines() if not line.startswith("waferc: ")]
    return message[0]


# ---------------------------------------------------------------- help


@pytest.mark.parametrize("command, expected", [
    ([], ["compile", "run", "inspect", "--debug"]),
    (["compile"], ["FILE.py:NAME", "FILE.pt2", "hf:PRESET", "hf:DIR", "--target", "--fabric-dims", "--seed",
                   "--time-limit", "--wafers", "N|auto", "--max-context", "--batch", "--weight-dtype",
                   "fp16|bf16|fp8|int8", "--layout", "throughput|latency", "--defects", "--defect-rate",
                   "--timings"]),
    (["run"], ["--inputs", "FILE.safetensors|FILE.npz"]),
    (["inspect"], ["OUT"]),
])
def test_help(command, expected):
    result = waferc(*command, "--help")
    assert result.exit_code == 0
    for text in expected:
        assert text in result.stdout


# ---------------------------------------------------------------- compile


def test_compile_writes_the_artifact_and_a_summary(fake_api, model_file, tmp_path):
    out = tmp_path / "out"
    result = waferc("compile", f"{model_file}:model", "-o", out, "--target", "wse2",
                    "--fabric-dims", "64,48", "--seed", "7", "--time-limit", "2.5")
    assert result.exit_code == 0, result.output
    assert Artifact.read(out).files == fake_artifact().files
    call = fake_api.compile_calls[0]
    assert call["args"][0].shape == (1, 8)
    assert (call["target"], call["fabric_dims"], call["seed"], call["time_limit"]) == ("wse2", (64, 48), 7, 2.5)
    assert "waferc: export..." in result.stderr and "waferc: place..." in result.stderr
    summary = result.stdout
    assert f"wrote {out}" in summary and "kernels     2" in summary and "PEs used    10" in summary
    assert "fc0 (120 cycles/pass)" in summary and "9,166,667 passes/s" in summary


def test_compile_defaults(fake_api, model_file, tmp_path):
    assert waferc("compile", f"{model_file}:model", "-o", tmp_path / "out").exit_code == 0
    call = fake_api.compile_calls[0]
    assert (call["target"], call["fabric_dims"], call["seed"], call["time_limit"]) == ("toy", None, 0, 10.0)
    assert {key: call[key] for key in WAFER_SCALE_OPTIONS} == {
        "wafers": None, "max_context": None, "batch": 1, "weight_dtype": None, "layout": "throughput",
        "defects": None, "defect_rate": 0.0, "timings": False}


def test_wafer_scale_options_reach_compile(fake_api, model_file, tmp_path):
    defects = tmp_path / "defects.json"
    defects.write_text("[]")
    result = waferc("compile", f"{model_file}:model", "-o", tmp_path / "out", "--wafers", "3",
                    "--max-context", "8192", "--batch", "4", "--weight-dtype", "fp8", "--layout", "latency",
                    "--defects", defects, "--timings")
    assert result.exit_code == 0, result.output
    call = fake_api.compile_calls[0]
    assert {key: call[key] for key in WAFER_SCALE_OPTIONS} == {
        "wafers": 3, "max_context": 8192, "batch": 4, "weight_dtype": "fp8", "layout": "latency",
        "defects": defects, "defect_rate": 0.0, "timings": True}
    assert call["args"][0].shape == (1, 8)  # a FILE.py model keeps its own example inputs


def test_defect_rate_reaches_compile(fake_api, model_file, tmp_path):
    result = waferc("compile", f"{model_file}:model", "-o", tmp_path / "out", "--defect-rate", "0.01")
    assert result.exit_code == 0, result.output
    assert (fake_api.compile_calls[0]["defects"], fake_api.compile_calls[0]["defect_rate"]) == (None, 0.01)


def test_defects_file_and_defect_rate_together_are_a_usage_error(fake_api, model_file, tmp_path):
    defects = tmp_path / "defects.txt"
    defects.write_text("0 1 1\n")
    result = waferc("compile", f"{model_file}:model", "-o", tmp_path / "out",
                    "--defects", defects, "--defect-rate", "0.01")
    assert result.exit_code == 2, result.output
    assert "give either --defects FILE or --defect-rate R, not both" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    assert fake_api.compile_calls == []


@pytest.mark.parametrize("value", ["auto", "AUTO"])
def test_wafers_auto_is_none(fake_api, model_file, tmp_path, value):
    assert waferc("compile", f"{model_file}:model", "-o", tmp_path / "out", "--wafers", value).exit_code == 0
    assert fake_api.compile_calls[0]["wafers"] is None


@pytest.mark.parametrize("option, value", [
    ("--wafers", "0"), ("--wafers", "-2"), ("--wafers", "two"), ("--wafers", "1.5"),
    ("--batch", "0"), ("--batch", "-1"), ("--max-context", "0"),
    ("--defect-rate", "1"), ("--defect-rate", "-0.1"), ("--defect-rate", "lots"),
    ("--weight-dtype", "fp4"), ("--layout", "fast"), ("--defects", "no-such-file.json"),
])
def test_bad_option_values_are_usage_errors(fake_api, model_file, tmp_path, option, value):
    result = waferc("compile", f"{model_file}:model", "-o", tmp_path / "out", option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.stderr, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    assert fake_api.compile_calls == []


@pytest.mark.parametrize("dims", ["64", "64,", "a,b", "0,4", "4,-1", "1,2,3"])
def test_malformed_fabric_dims_is_a_usage_error(any_api, model_file, tmp_path, dims):
    result = waferc("compile", f"{model_file}:model", "-o", tmp_path / "out", "--fabric-dims", dims)
    assert result.exit_code == 2 and "Invalid value for '--fabric-dims'" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, message", [
    ("{dir}/absent.py:model", "error: model file '{dir}/absent.py' does not exist"),
    ("{dir}/absent.pt2", "error: model file '{dir}/absent.pt2' does not exist"),
    ("{dir}/mlp.py", "error: MODEL must be FILE.py:NAME, FILE.pt2 or hf:NAME_OR_PATH"),
    ("{dir}/mlp.py:nothing", "error: '{dir}/mlp.py' defines no 'nothing'; it defines: MLP, model"),
])
def test_bad_model_spec(any_api, model_file, tmp_path, spec, message):
    out = tmp_path / "out"
    result = waferc("compile", spec.format(dir=tmp_path), "-o", out)
    assert assert_clean_failure(result).startswith(message.format(dir=tmp_path))
    assert not out.exists()


def test_unknown_target(any_api, model_file, tmp_path):
    out = tmp_path / "out"
    result = waferc("compile", f"{model_file}:model", "-o", out, "--target", "nope")
    assert assert_clean_failure(result) == "error: unknown target 'nope'"
    assert not out.exists()


def test_refuses_to_overwrite_a_directory_that_is_not_an_artifact(any_api, model_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    result = waferc("compile", f"{model_file}:model", "-o", out)
    assert "refusing to overwrite" in assert_clean_failure(result)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    if isinstance(any_api, FakeApi):
        assert any_api.compile_calls == []  # checked before the (long) compile


def test_compiler_error_during_compile_leaves_no_output(fake_api, model_file, tmp_path):
    fake_api.compile_error = UnsupportedOpError("aten.fft is not supported")
    result = waferc("compile", f"{model_file}:model", "-o", tmp_path / "out")
    assert assert_clean_failure(result) == "error: aten.fft is not supported"
    assert not (tmp_path / "out").exists()


def test_unexpected_exception_is_an_internal_error(fake_api, model_file, tmp_path):
    fake_api.compile_error = KeyError("oops")
    result = waferc("compile", f"{model_file}:model", "-o", tmp_path / "out")
    assert assert_clean_failure(result, exit_code=2) == "internal error: KeyError: 'oops'"
    assert "please report it" in result.stderr and "--debug" in result.stderr


def test_debug_reraises_unexpected_exceptions(fake_api, model_file, tmp_path):
    fake_api.compile_error = KeyError("oops")
    result = waferc("--debug", "compile", f"{model_file}:model", "-o", tmp_path / "out")
    assert isinstance(result.exception, KeyError)


def test_summary_of_a_wafer_scale_compile(fake_api, model_file, tmp_path):
    fake_api.report = WAFER_SCALE_REPORT
    out = tmp_path / "out"
    result = waferc("compile", f"{model_file}:model", "-o", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  wafers      3 used (lower bound 2)" in lines
    assert "  bottleneck  fc0 (120 cycles/pass, 1.031x the ideal; 1.254x by FLOPs alone)" in lines
    assert "  route hops  12,345 in total" in lines
    assert lines[-1] == f"  size-only: the artifact holds no weights and cannot be run; `waferc inspect {out}` shows its placement"


def test_summary_prints_only_what_the_report_has(fake_api, model_file, tmp_path):
    fake_api.report = {**REPORT, "wafers_lower_bound": 1, "size_only": False}
    result = waferc("compile", f"{model_file}:model", "-o", tmp_path / "out")
    assert "  wafers      lower bound 1" in result.stdout.splitlines()
    for absent in ("used (", "the ideal", "route hops", "size-only"):
        assert absent not in result.stdout


# ---------------------------------------------------------------- compile hf:


@pytest.fixture
def tiny_llama_dir(tmp_path) -> Path:
    directory = tmp_path / "tiny-llama"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=64, hidden_size=32,
        intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)))
    return directory


def test_compile_hf_preset_passes_a_meta_model_with_the_batch(fake_api, tmp_path):
    pytest.importorskip("transformers")
    result = waferc("compile", "hf:llama-3.1-8b", "-o", tmp_path / "out", "--batch", "4", "--wafers", "auto")
    assert result.exit_code == 0, result.output
    call = fake_api.compile_calls[0]
    assert type(call["model"]).__name__ == "LlamaForCausalLM"
    assert call["args"][0].shape == (4, 1) and call["args"][0].device.type == "meta"
    assert call["kwargs"] == {"use_cache": False} and call["batch"] == 4
    assert "waferc: loading hf:llama-3.1-8b..." in result.stderr
    assert "deprecated" not in result.stderr  # transformers' chatter about published configs is muted


def test_compile_hf_directory(fake_api, tiny_llama_dir, tmp_path):
    pytest.importorskip("transformers")
    result = waferc("compile", f"hf:{tiny_llama_dir}", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert fake_api.compile_calls[0]["args"][0].shape == (1, 1)


def test_compile_hf_unsupported_architecture(any_api, tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FooForBar"], "model_type": "foo"}))
    out = tmp_path / "out"
    result = waferc("compile", f"hf:{tmp_path}", "-o", out)
    message = assert_clean_failure(result)
    assert message == (f"{tmp_path / 'config.json'}:1:20: error: unsupported architecture 'FooForBar': "
                       "transformers has no model class of that name")
    assert len([line for line in result.stderr.splitlines() if not line.startswith("waferc: ")]) == 1
    assert not out.exists()


def test_compile_hf_hub_id(any_api, tmp_path):
    result = waferc("compile", "hf:meta-llama/Llama-3.1-8B", "-o", tmp_path / "out")
    message = assert_clean_failure(result)
    assert "no access to the Hugging Face hub" in message and "hf:DIR" in message
    assert "llama-3.1-8b" in message and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- run


@pytest.fixture
def artifact_dir(tmp_path) -> Path:
    out = tmp_path / "out"
    fake_artifact().write(out)
    return out


def test_run_with_the_stored_inputs(fake_api, artifact_dir):
    result = waferc("run", artifact_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("output y: shape (3, 4) float32  [0.    , 0.3333, 0.6667,")
    assert lines[0].endswith(", ...]")
    assert "latency     1,234 cycles (1.12 µs at 1.1 GHz)" in lines
    assert "bottleneck  fc0 (120 cycles/pass)" in lines
    assert "throughput  9,166,667 passes/s" in lines
    assert lines[-1] == "max abs error vs eager: 1.5e-07"
    assert fake_api.loaded[0].run_inputs is None


def test_run_with_an_inputs_file(fake_api, artifact_dir, tmp_path):
    np.savez(tmp_path / "x.npz", x=np.ones((1, 8), np.float32))
    result = waferc("run", artifact_dir, "--inputs", tmp_path / "x.npz")
    assert result.exit_code == 0, result.output
    assert "max abs error" not in result.stdout
    np.testing.assert_array_equal(fake_api.loaded[0].run_inputs["x"], np.ones((1, 8)))


def test_run_with_misnamed_inputs(fake_api, artifact_dir, tmp_path):
    (tmp_path / "in.safetensors").write_bytes(save_tensors({"z": np.ones(2, np.float32)}))
    result = waferc("run", artifact_dir, "--inputs", tmp_path / "in.safetensors")
    assert "lacks x; the model's inputs are: x" in assert_clean_failure(result)


def test_run_size_only_artifact(fake_api, artifact_dir):
    fake_api.size_only = True
    assert "size-only" in assert_clean_failure(waferc("run", artifact_dir))


def test_run_missing_artifact(any_api, tmp_path):
    message = assert_clean_failure(waferc("run", tmp_path / "nowhere"))
    assert message == f"error: artifact directory '{tmp_path / 'nowhere'}' does not exist"


def test_run_tampered_artifact(any_api, artifact_dir):
    (artifact_dir / "model.ir").write_text("tampered")
    assert "does not match its checksum" in assert_clean_failure(waferc("run", artifact_dir))


# ---------------------------------------------------------------- inspect


def test_op_histogram_counts_op_lines_only():
    assert op_histogram(IR_TEXT) == {"linear": 2, "relu": 1}


def test_inspect_shows_ops_and_regions(artifact_dir):
    result = waferc("inspect", artifact_dir)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "IR: 3 ops" in text and "placement: 2 kernels" in text
    for cell in ("linear", "relu", "fc0", "fc1", "4,096", "120"):
        assert cell in text


def test_inspect_groups_regions_by_wafer(tmp_path):
    regions = [dict(REGIONS[0], wafer=0), dict(REGIONS[1], wafer=1, kernel="fc1"),
               dict(REGIONS[1], wafer=1, kernel="head")]
    out = tmp_path / "out"
    fake_artifact(regions=regions).write(out)
    result = waferc("inspect", out)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "placement, wafer 0: 1 of 3 kernels" in text and "placement, wafer 1: 2 of 3 kernels" in text
    assert text.index("fc0") < text.index("placement, wafer 1") < text.index("head")
    assert "placement: 3 kernels" not in text


def test_inspect_rejects_a_partial_artifact(artifact_dir):
    (artifact_dir / "placement.json").unlink()
    assert "is missing" in assert_clean_failure(waferc("inspect", artifact_dir))


def test_inspect_a_directory_that_is_not_an_artifact(tmp_path):
    assert "not a waferc artifact" in assert_clean_failure(waferc("inspect", tmp_path))


# ---------------------------------------------------------------- with the real compiler


@pytest.fixture
def real_api():
    return pytest.importorskip("compiler.api", exc_type=ImportError)


def test_end_to_end(real_api, model_file, tmp_path):
    out = tmp_path / "out"
    compiled = waferc("compile", f"{model_file}:model", "-o", out, "--time-limit", "5")
    assert compiled.exit_code == 0, compiled.output
    assert (out / MANIFEST).is_file() and "passes/s" in compiled.stdout
    inspected = waferc("inspect", out)
    assert inspected.exit_code == 0 and "linear" in inspected.stdout
    ran = waferc("run", out)
    assert ran.exit_code == 0, ran.output
    error = float(ran.stdout.split("max abs error vs eager: ")[1])
    assert error < 1e-4


def test_model_that_does_not_fit_leaves_no_output(real_api, model_file, tmp_path):
    out = tmp_path / "out"
    result = waferc("compile", f"{model_file}:model", "-o", out, "--fabric-dims", "1,1", "--wafers", "1",
                    "--time-limit", "2")
    assert assert_clean_failure(result).startswith("error: the model does not fit one wafer")
    assert "wafers or more, or let the placer choose the count" in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_70b_on_one_wafer_states_what_it_needs_and_writes_nothing(tmp_path):
    """The real compiler, size-only (about 15 s): memory alone rules out one wafer."""
    pytest.importorskip("transformers")
    out = tmp_path / "out"
    result = waferc("compile", "hf:llama-3.1-70b", "--target", "wse3", "--wafers", "1", "-o", out)
    message = assert_clean_failure(result)
    assert message.startswith("error: the model does not fit 1 wafer: its weights and KV cache need")
    assert "so it needs at least 4 wafers" in message
    assert not out.exists()
