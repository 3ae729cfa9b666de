"""Turn the CLI's MODEL argument into a model and its example inputs.

Accepted forms:
- `path/to/file.py:NAME` — the file is imported by path (its directory first on `sys.path` while it
  is imported and while NAME is called). NAME is either an `nn.Module`, whose example inputs come from
  the file's module-level `example_inputs` tuple and optional `example_kwargs` dict, or a callable
  returning `(module, example_inputs)` or `(module, example_inputs, example_kwargs)`. A callable that
  returns just a module (an `nn.Module` class, say) also takes the file's `example_inputs`.
- `FILE.pt2` — a saved `torch.export` program; the path is passed on to `compiler.api.compile`.
- `hf:NAME_OR_PATH` — a Hugging Face causal LM built by `compiler.hf` from a bundled preset's
  config.json (`hf:llama-3.1-8b`) or a local directory holding one, on the meta device: a size-only
  compile, even when the directory also holds weights. Its example inputs are `batch` x `seq` token
  ids (one decode step by default).

Ensures: every way the spec can be wrong raises a `ModelSpecError` (for `hf:` specs, the
`compiler.hf.HFModelError`; both `CompilerError`s) whose message is one line and, when the user's code
raised, names the user's file:line (for `hf:`, the config file).
"""
from __future__ import annotations

import importlib.util
import re
import sys
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from compiler import hf
from ir.errors import CompilerError

SPEC_FORMS = "MODEL must be FILE.py:NAME, FILE.pt2 or hf:NAME_OR_PATH"
HF_PREFIX = "hf:"


class ModelSpecError(CompilerError):
    """The MODEL argument names no usable model."""


@dataclass
class ModelSpec:
    """What `compiler.api.compile` needs: the model (an nn.Module or a .pt2 path) and example inputs."""

    model: nn.Module | str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


def resolve_model(spec: str, *, batch: int = 1, seq: int = 1) -> ModelSpec:
    """Parse and load `FILE.py:NAME`, `FILE.pt2` or `hf:NAME_OR_PATH` (`batch` and `seq` shape the
    example inputs of `hf:` models only: the other forms bring their own)."""
    if spec.startswith(HF_PREFIX):
        return _resolve_hf(spec.removeprefix(HF_PREFIX), batch, seq)
    if spec.endswith(".pt2"):
        return _resolve_pt2(Path(spec))
    file_part, sep, name = spec.rpartition(":")
    if not sep or not file_part or not name:
        raise ModelSpecError(f"{SPEC_FORMS}, got '{spec}'")
    path = Path(file_part)
    _require_file(path)
    with _directory_first_on_path(path.parent):
        module = _import_file(path)
        return _model_from(module, name, path)


def _resolve_pt2(path: Path) -> ModelSpec:
    _require_file(path)
    return ModelSpec(model=str(path), name=path.stem)


def _resolve_hf(name_or_path: str, batch: int, seq: int) -> ModelSpec:
    source = hf.locate_config(name_or_path)
    # Meta device: the configs give shapes only, and real weights arrive with HF weight porting.
    model, args, kwargs = hf.build_hf_model(source.config_file.parent, device="meta", batch=batch, seq=seq)
    return ModelSpec(model=model, args=args, kwargs=kwargs, name=source.name)


def _require_file(path: Path) -> None:
    if not path.exists():
        raise ModelSpecError(f"model file '{path}' does not exist")
    if not path.is_file():
        raise ModelSpecError(f"model file '{path}' is not a file")


# ---------------------------------------------------------------- importing the user's file


@contextmanager
def _directory_first_on_path(directory: Path) -> Iterator[None]:
    """Let the user's file import its siblings, without leaving sys.path changed afterwards."""
    entry = str(directory.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _module_name(path: Path) -> str:
    # A private prefix, so a user's `json.py` or `model.py` never shadows a real module.
    stem = re.sub(r"\W", "_", path.stem)
    return f"_waferc_user_{stem}"


def _import_file(path: Path) -> types.ModuleType:
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelSpecError(f"cannot import '{path}': not a Python source file")
    module = importlib.util.module_from_spec(spec)
    # Registered before running, as a normal import does (dataclasses and pickling look it up).
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:
        sys.modules.pop(name, None)
        raise _user_code_error(f"importing '{path}' raised", e, path) from None
    return module


def _user_code_error(what: str, e: BaseException, path: Path) -> ModelSpecError:
    """One line: what failed, the exception's summary and where in the user's file it happened."""
    where = _user_location(e, path)
    suffix = f" (at {where})" if where else ""
    return ModelSpecError(f"{what} {_summary(e)}{suffix}")


def _summary(e: BaseException) -> str:
    message = e.msg if isinstance(e, SyntaxError) else str(e)
    lines = str(message).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _user_location(e: BaseException, path: Path) -> str:
    """The deepest file:line of the traceback inside the user's file (or a syntax error's place)."""
    user_file = path.resolve()
    if isinstance(e, SyntaxError) and e.filename and e.lineno:
        return f"{e.filename}:{e.lineno}"
    hits = [frame for frame in traceback.extract_tb(e.__traceback__)
            if Path(frame.filename).resolve() == user_file]
    return f"{hits[-1].filename}:{hits[-1].lineno}" if hits else ""


# ---------------------------------------------------------------- finding the model in it


def _model_from(module: types.ModuleType, name: str, path: Path) -> ModelSpec:
    if not hasattr(module, name):
        raise ModelSpecError(f"'{path}' defines no '{name}'{_candidates_hint(module)}")
    target = getattr(module, name)
    if isinstance(target, nn.Module):
        return _with_module_examples(target, module, name, path)
    if callable(target):
        return _from_factory(target, module, name, path)
    raise ModelSpecError(f"'{path}:{name}' has type {type(target).__name__}; "
                         "expected an nn.Module or a function returning one")


def _candidates_hint(module: types.ModuleType) -> str:
    found = _candidates(module)
    return f"; it defines: {', '.join(found)}" if found else "; it defines no nn.Module or callable"


def _candidates(module: types.ModuleType) -> list[str]:
    """Public nn.Module instances, and functions/classes defined in the file itself (not imported)."""
    out = []
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        defined_here = getattr(value, "__module__", None) == module.__name__
        if isinstance(value, nn.Module) or (callable(value) and defined_here):
            out.append(attr)
    return sorted(out)


def _with_module_examples(model: nn.Module, module: types.ModuleType, name: str, path: Path) -> ModelSpec:
    if not hasattr(module, "example_inputs"):
        raise ModelSpecError(f"'{path}' has no module-level 'example_inputs' tuple "
                             f"to trace '{name}' with")
    args = _as_args(module.example_inputs, f"'{path}': example_inputs")
    kwargs = _as_kwargs(getattr(module, "example_kwargs", {}), f"'{path}': example_kwargs")
    return ModelSpec(model=model, args=args, kwargs=kwargs, name=name)


def _from_factory(factory, module: types.ModuleType, name: str, path: Path) -> ModelSpec:
    try:
        result = factory()
    except (Exception, SystemExit) as e:
        raise _user_code_error(f"calling '{path}:{name}()' raised", e, path) from None
    if isinstance(result, nn.Module):
        return _with_module_examples(result, module, name, path)
    what = f"'{path}:{name}()'"
    if not isinstance(result, tuple) or len(result) not in (2, 3) or not isinstance(result[0], nn.Module):
        raise ModelSpecError(f"{what} must return (module, example_inputs) or "
                             f"(module, example_inputs, example_kwargs), got {_describe(result)}")
    args = _as_args(result[1], f"{what}: example_inputs")
    kwargs = _as_kwargs(result[2] if len(result) == 3 else {}, f"{what}: example_kwargs")
    return ModelSpec(model=result[0], args=args, kwargs=kwargs, name=name)


def _as_args(value: object, what: str) -> tuple:
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple):
        raise ModelSpecError(f"{what} must be a tuple of example inputs, got {_describe(value)}")
    return value


def _as_kwargs(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ModelSpecError(f"{what} must be a dict of keyword inputs, got {_describe(value)}")
    return dict(value)


def _describe(value: object) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return f"a {type(value).__name__}"
