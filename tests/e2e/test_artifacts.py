"""The artifact is the program: editing its WKL changes the answer, compiles are reproducible,
and a saved artifact runs without the model's source."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import compiler
from compiler.api import CompiledModel
from compiler.artifact import Artifact
from compiler.cli import main
from tests.e2e.test_models import EXAMPLES, load_example


@pytest.fixture(scope="module")
def mlp():
    model, inputs = load_example("mlp")
    return compiler.compile(model, inputs, target="toy")


def shift_first_tile_rows(text: str) -> str:
    """Make the first weight tile hold the next rows of its weight instead of its own."""
    pattern = re.compile(r"(tile weight : .*? = \S+\[)(\d+\*py) : (\d+\*py) \+ (\d+)")
    edited, n = pattern.subn(lambda m: f"{m[1]}{m[2]} + 1 : {m[3]} + {int(m[4]) + 1}", text, count=1)
    assert n == 1, text
    return edited


def test_editing_the_wkl_changes_the_simulated_output(mlp):
    files = dict(mlp.artifact.files)
    files["kernels/fc1.wkl"] = shift_first_tile_rows(files["kernels/fc1.wkl"].decode()).encode()
    edited = CompiledModel(Artifact(files))
    before, after = mlp.run(), edited.run()
    assert before.max_abs_error <= 1e-6
    assert after.max_abs_error > 1e-3  # the simulator computed what the edited text says


def test_two_compiles_write_byte_identical_artifacts(tmp_path):
    model, inputs = load_example("llama_tiny")
    for name in ("a", "b"):
        # Determinism comes from CP-SAT's deterministic work budget; the wall-clock safety net is
        # raised so a loaded test machine cannot cut one of the two searches short.
        compiler.compile(model, inputs, target="toy", time_limit=600).save(tmp_path / name)
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert a.keys() == b.keys() and Path("weights.safetensors") in a
    assert [k for k in a if a[k] != b[k]] == []


def test_saved_artifact_runs_without_the_model_source(mlp, tmp_path):
    mlp.save(tmp_path / "mlp")
    script = ("import sys, compiler; r = compiler.load(sys.argv[1]).run(); "
              "print(r.max_abs_error, r.cycles.latency_cycles)")
    # A fresh interpreter in an empty directory: no examples/ on the path, nothing of the model.
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "mlp")], cwd=tmp_path,
                          capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(EXAMPLES.parent), "PATH": "/usr/bin:/bin"})
    error, cycles = done.stdout.split()
    assert float(error) <= 1e-6 and int(cycles) > 0
    loaded = compiler.load(tmp_path / "mlp")
    _, inputs = load_example("mlp")
    assert torch.allclose(loaded(*inputs), mlp(*inputs))


def test_run_on_other_inputs_from_a_file(mlp, tmp_path):
    mlp.save(tmp_path / "mlp")
    model, _ = load_example("mlp")
    x = torch.randn(4, 32)
    np.savez(tmp_path / "in.npz", x=x.numpy())
    result = CliRunner().invoke(main, ["run", str(tmp_path / "mlp"), "--inputs", str(tmp_path / "in.npz")])
    assert result.exit_code == 0, result.output
    values = compiler.load(tmp_path / "mlp").run({"x": x.numpy()}).outputs["out0"]
    assert np.allclose(values, model(x).detach().numpy(), atol=1e-5)


UNSUPPORTED = '''
import torch
from torch import nn

class Inner(nn.Module):
    def forward(self, x):
        return torch.cumprod(x, dim=-1)

class Bad(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.inner = Inner()

    def forward(self, x):
        return self.inner(self.proj(x))

model = Bad()
example_inputs = (torch.randn(2, 8),)
'''


def test_unsupported_op_names_op_module_and_source_line(tmp_path):
    (tmp_path / "bad.py").write_text(UNSUPPORTED)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", f"{tmp_path / 'bad.py'}:model", "-o", str(out)])
    assert result.exit_code == 1
    assert "aten.cumprod.default" in result.output
    assert f"inner ({tmp_path / 'bad.py'}:7)" in result.output
    assert "return torch.cumprod(x, dim=-1)" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_model_too_big_for_the_fabric_says_why(tmp_path):
    model = torch.nn.Linear(512, 512)
    with pytest.raises(compiler.api.CompilerError) as err:
        compiler.compile(model, (torch.randn(2, 512),), target="toy", fabric_dims=(2, 2))
    message = str(err.value)
    assert "2x2 fabric" in message and "1,050,624 bytes" in message and "at least 26 PEs" in message


def test_saved_export_program_compiles_from_its_path(tmp_path):
    model, inputs = load_example("mlp")
    with torch.no_grad():
        torch.export.save(torch.export.export(model, inputs), tmp_path / "mlp.pt2")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["compile", str(tmp_path / "mlp.pt2"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    run = compiler.load(out).run()
    assert run.max_abs_error <= 1e-6
