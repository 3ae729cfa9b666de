"""Artifact directories: round trip, determinism, verification and atomic replacement."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import compiler.artifact as artifact_module
from compiler.artifact import (MANIFEST, Artifact, load_inputs, load_tensors, save_tensors,
                               tool_versions)
from ir.errors import ArtifactError, CompilerError

FILES = {
    "model.ir": b"%y : f32[2] = relu(%x)\n",
    "placement.json": b'{"regions": []}\n',
    "kernels/k0.wkl": b"kernel k0 {}\n",
}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_round_trip(tmp_path):
    Artifact(dict(FILES)).write(tmp_path / "out")
    assert Artifact.read(tmp_path / "out").files == FILES


def test_manifest_lists_checksums_and_versions(tmp_path):
    Artifact(dict(FILES)).write(tmp_path / "out")
    text = (tmp_path / "out" / MANIFEST).read_text()
    manifest = json.loads(text)
    assert manifest["format"] == "waferc-artifact" and manifest["format_version"] == 1
    assert sorted(manifest["files"]) == sorted(FILES)
    assert manifest["files"]["model.ir"]["bytes"] == len(FILES["model.ir"])
    assert manifest["versions"] == tool_versions() and "python" in manifest["versions"]
    assert text.endswith("}\n") and text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"


def test_same_artifact_writes_identical_trees(tmp_path):
    # Insertion order must not matter either.
    Artifact(dict(FILES)).write(tmp_path / "a")
    Artifact(dict(reversed(FILES.items()))).write(tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_rewrite_replaces_previous_artifact(tmp_path):
    out = tmp_path / "out"
    Artifact({"old.txt": b"old", **FILES}).write(out)
    Artifact(dict(FILES)).write(out)
    assert not (out / "old.txt").exists()
    assert Artifact.read(out).files == FILES
    assert siblings(out) == ["out"]  # no staging or set-aside directories left over


def test_tampered_file_is_rejected(tmp_path):
    out = tmp_path / "out"
    Artifact(dict(FILES)).write(out)
    (out / "kernels" / "k0.wkl").write_bytes(b"kernel k0 { evil }\n")
    with pytest.raises(ArtifactError, match=r"k0\.wkl.*checksum"):
        Artifact.read(out)


def test_missing_file_is_rejected(tmp_path):
    out = tmp_path / "out"
    Artifact(dict(FILES)).write(out)
    (out / "placement.json").unlink()
    with pytest.raises(ArtifactError, match=r"placement\.json.*missing"):
        Artifact.read(out)


@pytest.mark.parametrize("manifest_text, message", [
    (None, "manifest.json' is missing"),
    ("{not json", "malformed manifest"),
    ('{"format": "waferc-artifact", "format_version": 99, "files": {}}', "format version 99"),
    ('{"format": "something-else", "format_version": 1, "files": {}}', "not a waferc artifact"),
    ('{"format": "waferc-artifact", "format_version": 1, "files": {"../x": '
     '{"sha256": "", "bytes": 0}}}', "invalid artifact file name"),
])
def test_bad_manifest_is_rejected(tmp_path, manifest_text, message):
    out = tmp_path / "out"
    Artifact(dict(FILES)).write(out)
    (out / MANIFEST).unlink()
    if manifest_text is not None:
        (out / MANIFEST).write_text(manifest_text)
    with pytest.raises(ArtifactError, match=message) as info:
        Artifact.read(out)
    assert "\n" not in str(info.value)
    assert "manifest.json" in str(info.value)


def test_missing_directory_is_rejected(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        Artifact.read(tmp_path / "nowhere")


def test_refuses_to_clobber_a_directory_that_is_not_an_artifact(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="refusing to overwrite"):
        Artifact(dict(FILES)).write(out)
    assert tree(out) == {"notes.txt": b"keep me"}
    assert siblings(out) == ["precious"]


def test_writes_into_an_existing_empty_directory(tmp_path):
    (tmp_path / "out").mkdir()
    Artifact(dict(FILES)).write(tmp_path / "out")
    assert Artifact.read(tmp_path / "out").files == FILES


def test_failure_mid_write_leaves_no_output(tmp_path, monkeypatch):
    def fail(self):
        raise OSError("disk full")

    monkeypatch.setattr(Artifact, "manifest_bytes", fail)
    with pytest.raises(OSError, match="disk full"):
        Artifact(dict(FILES)).write(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_replacing_keeps_the_previous_artifact(tmp_path, monkeypatch):
    out = tmp_path / "out"
    Artifact(dict(FILES)).write(out)
    real_replace = artifact_module.os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".out.tmp-"):
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(artifact_module.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        Artifact({"new.txt": b"new"}).write(out)
    assert Artifact.read(out).files == FILES
    assert siblings(out) == ["out"]


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../b", "", "manifest.json", "a\\b", "./a"])
def test_file_names_must_stay_inside_the_artifact(tmp_path, name):
    with pytest.raises(ArtifactError, match="invalid artifact file name"):
        Artifact({name: b""}).write(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tensors_round_trip_deterministically():
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3).T, "b": np.ones(3, np.float16)}
    data = save_tensors(tensors)
    assert data == save_tensors(dict(reversed(tensors.items())))
    loaded = load_tensors(data)
    assert sorted(loaded) == ["b", "w"]
    np.testing.assert_array_equal(loaded["w"], tensors["w"])
    assert loaded["b"].dtype == np.float16


def test_load_tensors_rejects_garbage():
    with pytest.raises(ArtifactError, match="weights.safetensors"):
        load_tensors(b"not safetensors at all", "weights.safetensors")


def test_load_inputs_from_safetensors_and_npz(tmp_path):
    x = np.arange(4, dtype=np.float32)
    (tmp_path / "in.safetensors").write_bytes(save_tensors({"x": x}))
    np.savez(tmp_path / "in.npz", x=x)
    for name in ("in.safetensors", "in.npz"):
        loaded = load_inputs(tmp_path / name)
        assert list(loaded) == ["x"]
        np.testing.assert_array_equal(loaded["x"], x)


def test_load_inputs_never_unpickles(tmp_path):
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CompilerError, match="unpickling"):
        load_inputs(tmp_path / "objects.npz")


@pytest.mark.parametrize("name, content, message", [
    ("in.txt", b"", "must be a .safetensors or .npz"),
    ("missing.npz", None, "does not exist"),
    ("garbage.npz", b"\x80\x04garbage", "not a valid .npz"),
    ("garbage.safetensors", b"garbage", "not a valid safetensors"),
])
def test_load_inputs_errors(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(CompilerError, match=message):
        load_inputs(tmp_path / name)
