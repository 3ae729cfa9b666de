"""Compiled-artifact directories: write them atomically, read them back verified.

An artifact is a flat mapping of relative POSIX paths to bytes (`model.ir`, `placement.json`,
`layout.wkl`, `kernels/*.wkl`, `weights.safetensors`, `report.json`, ...). On disk it is a
directory holding those files plus `manifest.json`, which records the format version, the versions
of the tools that wrote it and a SHA-256 and size for every file.

Ensures:
- `Artifact.write` never leaves a directory that looks complete but is not: files go into a
  temporary sibling directory, `manifest.json` last, and only then replaces the destination. It
  refuses to replace a non-empty directory that is not an artifact (no `manifest.json`).
- Writing the same `Artifact` twice gives byte-identical trees (sorted keys, no timestamps).
- `Artifact.read` fails with an `ArtifactError` naming the file for a missing directory, a missing
  or malformed manifest, an unknown format version, a missing file or a checksum mismatch.
- Tensors are stored as safetensors and inputs may also come from `.npz`; nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import ml_dtypes
import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, deserialize

from ir.errors import ArtifactError, CompilerError, Span

MANIFEST = "manifest.json"
FORMAT = "waferc-artifact"
FORMAT_VERSION = 1
# Distributions whose versions the manifest records; a missing one is simply left out.
_RECORDED_PACKAGES = ("waferc", "numpy", "torch")


@dataclass
class Artifact:
    """The files of a compiled model, in memory: relative POSIX path -> contents."""

    files: dict[str, bytes]

    def write(self, out_dir: str | os.PathLike) -> None:
        """Write the files and a manifest to `out_dir`, replacing an earlier artifact there."""
        out = Path(out_dir)
        check_destination(out)
        for name in self.files:
            _check_relative_path(name, "Artifact.files")
        # Resolved, so that `-o .` or a symlinked OUT still has a real name and parent to work in.
        dest = out.resolve()
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = _fresh_sibling(dest, "tmp")
        try:
            self._write_tree(staging)
            _replace_dir(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def read(cls, path: str | os.PathLike) -> "Artifact":
        """Load an artifact directory, verifying every file against the manifest."""
        root = Path(path)
        entries = read_manifest(root)["files"]
        return cls({name: _read_verified(root, name, entry) for name, entry in sorted(entries.items())})

    def manifest_bytes(self) -> bytes:
        """The manifest this artifact is written with (deterministic for the same files)."""
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "versions": tool_versions(),
            "files": {name: {"sha256": _sha256(data), "bytes": len(data)}
                      for name, data in sorted(self.files.items())},
        }
        return (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()

    def _write_tree(self, root: Path) -> None:
        for name, data in sorted(self.files.items()):
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        # Last, so that a directory with a manifest has all of its files.
        (root / MANIFEST).write_bytes(self.manifest_bytes())


def check_destination(out: Path) -> None:
    """Fail early if `out` is something `Artifact.write` must not replace."""
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"output '{out}' exists and is not a directory")
    if out.is_dir() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise ArtifactError(f"output directory '{out}' is not empty and is not a waferc artifact "
                            f"(no {MANIFEST}); refusing to overwrite it")


def tool_versions() -> dict[str, str]:
    """Versions of Python and the installed distributions that shape an artifact."""
    versions = {"python": platform.python_version()}
    for package in _RECORDED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


# ---------------------------------------------------------------- replacing the directory


def _replace_dir(staging: Path, out: Path) -> None:
    """Move `staging` to `out`; an earlier artifact at `out` is kept aside until that succeeds."""
    if not out.exists():
        os.replace(staging, out)
        return
    with _set_aside(out) as old:
        os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def _fresh_sibling(out: Path, tag: str) -> Path:
    """A new empty hidden directory next to `out`, created with the usual (umask) permissions."""
    while True:
        candidate = out.parent / f".{out.name}.{tag}-{secrets.token_hex(4)}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


@contextmanager
def _set_aside(out: Path) -> Iterator[Path]:
    """Rename `out` out of the way; put it back if the body fails."""
    old = _fresh_sibling(out, "old")
    os.replace(out, old)
    try:
        yield old
    except BaseException:
        if not out.exists():
            os.replace(old, out)
        raise


# ---------------------------------------------------------------- reading and verifying


def read_manifest(root: Path) -> dict:
    """The parsed, validated `manifest.json` of the artifact directory `root`."""
    if not root.is_dir():
        raise ArtifactError(f"artifact directory '{root}' does not exist")
    path = root / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"'{path}' is missing: '{root}' is not a waferc artifact, or is incomplete")
    text = path.read_text(errors="replace")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"malformed manifest: {e.msg}", Span(str(path), e.lineno, e.colno)) from None
    _check_manifest(manifest, path)
    return manifest


def _check_manifest(manifest: object, path: Path) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"'{path}' is not a waferc artifact manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"'{path}' has artifact format version {version!r}; this waferc reads "
                            f"version {FORMAT_VERSION}: recompile the model")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(f"'{path}' has no 'files' table")
    for name, entry in files.items():
        _check_relative_path(name, str(path))
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)):
            raise ArtifactError(f"'{path}' has a malformed entry for '{name}'")


def _read_verified(root: Path, name: str, entry: dict) -> bytes:
    path = root / name
    if not path.is_file():
        raise ArtifactError(f"'{path}' is missing: the artifact is incomplete")
    data = path.read_bytes()
    if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
        raise ArtifactError(f"'{path}' does not match its checksum in {MANIFEST}: "
                            "the artifact was modified or damaged")
    return data


def _check_relative_path(name: object, where: str) -> None:
    """Artifact paths stay inside the artifact: relative, POSIX, no `..`, not the manifest."""
    parts = PurePosixPath(name).parts if isinstance(name, str) else ()
    if (not parts or name.startswith("/") or "\\" in name or ".." in parts or "." in parts
            or name == MANIFEST or str(PurePosixPath(name)) != name):
        raise ArtifactError(f"'{where}': invalid artifact file name {name!r}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- tensors


def save_tensors(tensors: dict[str, np.ndarray]) -> bytes:
    """Serialise named arrays as safetensors bytes; the same arrays always give the same bytes."""
    # `ascontiguousarray` makes 0-d arrays 1-d; the reshape keeps scalars (Gemma's normaliser) 0-d.
    ordered = {name: np.ascontiguousarray(tensors[name]).reshape(np.shape(tensors[name]))
               for name in sorted(tensors)}
    return safetensors.numpy.save(ordered)


# safetensors dtype names -> numpy dtypes. safetensors.numpy saves bf16 and fp8 (ml_dtypes) arrays
# but cannot load them back; quantised weights are stored in those types.
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "F8_E4M3": ml_dtypes.float8_e4m3fn, "I64": np.int64, "I32": np.int32, "I16": np.int16,
    "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def _numpy_tensors(data: bytes) -> dict[str, np.ndarray]:
    """safetensors bytes as numpy arrays, including bf16 and fp8 ones."""
    tensors = {}
    for name, view in deserialize(data):
        if view["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"tensor '{name}' has unsupported dtype {view['dtype']}")
        array = np.frombuffer(view["data"], dtype=_SAFETENSORS_DTYPES[view["dtype"]])
        tensors[name] = array.reshape(view["shape"])
    return tensors


def load_tensors(data: bytes, source: str = "tensors") -> dict[str, np.ndarray]:
    """Parse safetensors bytes; `source` names the file in the error message."""
    try:
        return _numpy_tensors(data)
    except (SafetensorError, ValueError, TypeError) as e:
        raise ArtifactError(f"'{source}' is not a valid safetensors file: {_first_line(e)}") from None


def load_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Named input arrays from a `.safetensors` or `.npz` file (never unpickled)."""
    file = Path(path)
    if file.suffix not in (".safetensors", ".npz"):
        raise CompilerError(f"inputs file '{file}' must be a .safetensors or .npz file")
    if not file.is_file():
        raise CompilerError(f"inputs file '{file}' does not exist")
    if file.suffix == ".safetensors":
        try:
            return dict(safetensors.numpy.load(file.read_bytes()))
        except (SafetensorError, ValueError, TypeError) as e:
            raise CompilerError(f"inputs file '{file}' is not a valid safetensors file: "
                                f"{_first_line(e)}") from None
    return _load_npz(file)


def _load_npz(file: Path) -> dict[str, np.ndarray]:
    # An .npz is a zip archive; anything else np.load would try to unpickle.
    if not zipfile.is_zipfile(file):
        raise CompilerError(f"inputs file '{file}' is not a valid .npz file (not a zip archive)")
    try:
        with np.load(file, allow_pickle=False) as archive:
            return {name: archive[name] for name in sorted(archive.files)}
    except ValueError as e:  # object arrays would need pickle, which we refuse
        raise CompilerError(f"inputs file '{file}' holds data that cannot be loaded without "
                            f"unpickling: {_first_line(e)}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise CompilerError(f"inputs file '{file}' is not a valid .npz file: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
