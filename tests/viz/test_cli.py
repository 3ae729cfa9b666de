"""`waferc viz`, `waferc compile --viz` and `CompiledModel.visualize` / `_repr_svg_`."""
from __future__ import annotations

import json
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.artifact import MANIFEST, Artifact
from compiler.cli import main

def waferc(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def artifact_dir(one_wafer, tmp_path) -> Path:
    out = tmp_path / "out"
    one_wafer.write(out)
    return out


@pytest.mark.parametrize("name", ["p.svg", "p.png", "p.html", "P.SVG"])
def test_viz_writes_each_format(artifact_dir, tmp_path, name):
    result = waferc("viz", artifact_dir, "-o", tmp_path / name)
    assert result.exit_code == 0, result.output
    data = (tmp_path / name).read_bytes()
    assert result.output.strip() == f"wrote {tmp_path / name}"
    if name.lower().endswith(".svg"):
        ET.fromstring(data)
    elif name.endswith(".png"):
        assert data.startswith(b"\x89PNG")
    else:
        assert data.startswith(b"<!DOCTYPE html>")


def test_viz_colour_mode(artifact_dir, tmp_path):
    result = waferc("viz", artifact_dir, "-o", tmp_path / "heat.svg", "--color-by", "stage-time")
    assert result.exit_code == 0, result.output
    assert 'class="legend" data-mode="stage-time"' in (tmp_path / "heat.svg").read_text()


@pytest.mark.parametrize("args,message", [
    (["-o", "p.pdf"], "must end in one of .svg, .png, .html"),
    (["-o", "p.svg", "--color-by", "rainbow"], "'rainbow' is not one of"),
    ([], "Missing option '-o'"),
])
def test_viz_usage_errors(artifact_dir, args, message):
    result = waferc("viz", artifact_dir, *args)
    assert result.exit_code == 2 and message in result.output


def test_viz_of_a_missing_artifact_is_a_one_line_error(tmp_path):
    result = waferc("viz", tmp_path / "nothing", "-o", tmp_path / "p.svg")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: artifact directory '{tmp_path / 'nothing'}' does not exist"]
    assert not (tmp_path / "p.svg").exists()


def test_viz_of_a_tampered_artifact_fails(artifact_dir, tmp_path):
    (artifact_dir / "placement.json").write_text('{"regions": []}')
    result = waferc("viz", artifact_dir, "-o", tmp_path / "p.svg")
    assert result.exit_code == 1 and "checksum" in result.output and "Traceback" not in result.output


class FakeCompiled:
    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.compile_seconds = {"export": 1.5, "place": 0.25}

    def save(self, path) -> None:
        self.artifact.write(path)


def test_compile_viz_writes_pictures_beside_the_artifact(one_wafer, tmp_path, monkeypatch):
    """The compile itself is faked (without torch): what is under test is what --viz adds."""
    api = types.ModuleType("compiler.api")
    api.compile = lambda *args, **options: FakeCompiled(one_wafer)
    modelspec = types.ModuleType("compiler.modelspec")
    modelspec.resolve_model = lambda spec, batch: types.SimpleNamespace(model=spec, args=(), kwargs={})
    monkeypatch.setitem(sys.modules, "compiler.api", api)
    monkeypatch.setitem(sys.modules, "compiler.modelspec", modelspec)
    out = tmp_path / "out"
    result = waferc("compile", "model.py:model", "-o", out, "--viz")
    assert result.exit_code == 0, result.output
    assert f"pictures    {out / 'placement.svg'}, {out / 'report.html'}" in result.output
    ET.fromstring((out / "placement.svg").read_bytes())
    html = (out / "report.html").read_text()
    assert ">export<" in html and "1.50 s" in html  # this compile's times
    manifest = json.loads((out / MANIFEST).read_text())
    assert "placement.svg" not in manifest["files"]  # beside the artifact, not in it
    Artifact.read(out)  # still a valid artifact


def test_compiled_model_visualize_and_jupyter(one_wafer, tmp_path):
    from compiler.api import CompiledModel

    cm = CompiledModel(one_wafer)
    assert cm.visualize(tmp_path / "p.png", color_by="sram") == tmp_path / "p.png"
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    svg = ET.fromstring(cm._repr_svg_())
    regions = svg.findall(".//{http://www.w3.org/2000/svg}rect[@class='region']")
    assert len(regions) == len(json.loads(one_wafer.files["placement.json"])["regions"])
