"""Capture a PyTorch model as an `ExportedProgram` (an FX graph of ATen ops).

Requires: an `nn.Module` (a `torch.fx.GraphModule` or a Hugging Face `PreTrainedModel` too) with
example inputs, or the path of a `.pt2` file written by `torch.export.save`.
Ensures: a `Captured` whose program was traced in eval mode under `torch.no_grad()` (so HF's rotary
embeddings leave no `wrap_with_set_grad_enabled` wrappers), with the model's output pytree spec kept
as JSON when it can be serialised, and the example inputs (kept by the program) to run it eagerly.
Every failure is a `CompilerError` holding the first line of torch's message, never a traceback.

Also here, the helpers the other frontend steps share: `to_numpy` (tensor data; None on the meta
device), `source_loc` (where an FX node came from) and `first_line` (of an exception's message).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import torch
from torch.export import ExportedProgram
from torch.utils import _pytree as pytree

from ir.errors import CompilerError, SourceLoc


@dataclass
class Captured:
    """A traced model: the exported program, a name for the IR graph and the output structure."""

    exported: ExportedProgram
    name: str
    out_spec: str | None  # `treespec_dumps` JSON of the output pytree; None if not serialisable
    model: torch.nn.Module | None = None  # the eager model; None when loaded from a .pt2
    # Keys every attention sees at most, as the model's config declares (HF `sliding_window`):
    # a trace no longer than the window cannot show it in its masks. None: no window, or unknown.
    window: int | None = None

    def example_tensors(self) -> list[torch.Tensor]:
        """The example inputs' tensors in the graph's input order (non-tensor inputs dropped)."""
        leaves = pytree.tree_leaves(self.exported.example_inputs or ((), {}))
        return [x for x in leaves if isinstance(x, torch.Tensor)]

    def example_numpy(self) -> list[np.ndarray | None]:
        return [to_numpy(t) for t in self.example_tensors()]


def eager_outputs(captured: Captured) -> list[np.ndarray | None]:
    """The model's flattened outputs on the example inputs, run eagerly; all None for a model on
    the meta device (size-only: nothing to compute, and HF models cannot even run there)."""
    exported = captured.exported
    if _on_meta(exported):
        return [None] * len(exported.graph_signature.user_outputs)
    args, kwargs = exported.example_inputs or ((), {})
    model = captured.model if captured.model is not None else captured.exported.module()
    with torch.no_grad():
        outputs = model(*args, **kwargs)
    return [to_numpy(x) for x in pytree.tree_leaves(outputs) if isinstance(x, torch.Tensor)]


def _on_meta(exported: ExportedProgram) -> bool:
    tensors = [*exported.state_dict.values(), *exported.constants.values(),
               *pytree.tree_leaves(exported.example_inputs or ((), {}))]
    return any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in tensors)


def capture(model: torch.nn.Module, args: tuple, kwargs: dict | None = None) -> Captured:
    """Trace `model(*args, **kwargs)` with `torch.export` (non-strict)."""
    kwargs = dict(kwargs or {})
    if _is_hf_model(model):
        # Without a KV cache the graph is a pure function of the inputs; the cache is ours to place.
        kwargs.setdefault("use_cache", False)
    model.eval()
    try:
        with torch.no_grad():
            exported = torch.export.export(model, tuple(args), kwargs, strict=False)
    except Exception as exc:  # torch raises many exception types; the user needs the first line
        raise CompilerError(f"torch.export failed: {first_line(exc)}",
                            hint="waferc traces with torch.export.export(strict=False); the model "
                                 "must run with the example inputs given") from None
    return Captured(exported, _graph_name(type(model).__name__), _out_spec_json(exported), model,
                    config_window(model) if _is_hf_model(model) else None)


def capture_pt2(path: str | Path) -> Captured:
    """Load a program saved with `torch.export.save`."""
    path = Path(path)
    try:
        exported = torch.export.load(str(path))
    except Exception as exc:  # missing file, bad zip, version skew: all reported the same way
        raise CompilerError(f"cannot load exported program {path}: {first_line(exc)}") from None
    return Captured(exported, _graph_name(path.stem), _out_spec_json(exported))


def _graph_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return name if name[:1].isalpha() or name[:1] == "_" else f"_{name}"


def config_window(model: torch.nn.Module) -> int | None:
    """The sliding window of an HF config whose every attention layer uses it (Mistral, Phi-3);
    None for full attention (Llama; Qwen2 with `use_sliding_window` off) and for configs that
    mix windowed and full layers (`layer_types`), which the layer-stamped trace cannot tell
    apart."""
    config = model.config
    window = getattr(config, "sliding_window", None)
    if type(window) is not int or window < 1 or getattr(config, "use_sliding_window", True) is False:
        return None
    kinds = set(getattr(config, "layer_types", None) or ["sliding_attention"])
    return window if kinds == {"sliding_attention"} else None


def _is_hf_model(model: torch.nn.Module) -> bool:
    # A PreTrainedModel instance implies transformers is already imported; avoid importing it here.
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


def _out_spec_json(exported: ExportedProgram) -> str | None:
    try:
        return pytree.treespec_dumps(exported.call_spec.out_spec)
    except Exception:  # output types without a serialised name (plain user classes) have no JSON
        return None


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# numpy has no bf16/fp8: their bits are reinterpreted as ml_dtypes' types.
_BIT_VIEWS = {torch.bfloat16: (torch.int16, ml_dtypes.bfloat16),
              torch.float8_e4m3fn: (torch.uint8, ml_dtypes.float8_e4m3fn)}


def to_numpy(t: torch.Tensor) -> np.ndarray | None:
    """The tensor's data as a contiguous numpy array; None for meta tensors (size-only).

    A contiguous CPU tensor shares its memory with the array: weights are not copied.
    """
    if t.device.type == "meta":
        return None
    t = t.detach().cpu().contiguous()
    if t.dtype in _BIT_VIEWS:
        bits, np_dtype = _BIT_VIEWS[t.dtype]
        return t.view(bits).numpy().view(np_dtype)
    return t.numpy()


# ---------------------------------------------------------------- where a captured node came from

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def source_loc(node: torch.fx.Node) -> SourceLoc:
    """Innermost module path, and the last stack frame outside the torch package (for HF models,
    the transformers modeling file: the model's own source)."""
    stack = node.meta.get("nn_module_stack") or {}
    module = list(stack.values())[-1][0] if stack else ""
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    user = [(file, int(line)) for file, line in frames if not file.startswith(_TORCH_DIR)]
    file, line = user[-1] if user else ("", 0)
    return SourceLoc(module, file, line)
