"""Real weights for a model built on the CPU, read from a safetensors checkpoint; never a pickle.

    checkpoint = find_checkpoint(directory)           # None: the directory holds no weights
    loaded = load_weights(module, checkpoint)          # copies them into the module, in place

Requires: a directory holding `model.safetensors`, shards listed by `model.safetensors.index.json`
(as `save_pretrained` writes them), or other `*.safetensors` files; and a module already built on the
CPU whose `state_dict` names are the IR parameter names (the frontend keeps them).
Ensures:
- Files are opened memory-mapped, one shard at a time, and each tensor is read only when it is
  copied into the model; every file a plan needs is checked to exist before any is read.
- Every state_dict entry is filled: from the checkpoint tensor of the same name (or the name with or
  without the model's `base_model_prefix`, as hub checkpoints of base models are saved), or through a
  tie (`lm_head.weight` sharing the embedding, which `save_pretrained` writes once).
- Shapes and dtypes must match exactly. A missing or mismatched tensor, a truncated or malformed file,
  a missing shard or a malformed index raises a one-line `WeightsError` that names the tensor or file.
- Pickled checkpoints (`*.bin`, `*.pt`, `*.pth`, `*.ckpt`, `*.pkl`) are refused, never opened: loading
  one runs arbitrary code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from safetensors import SafetensorError, safe_open

from compiler.hf import read_json
from ir.errors import CompilerError

INDEX_FILE = "model.safetensors.index.json"
SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# safetensors' dtype names for the torch dtypes a model can hold.
_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}
_SHOWN_NAMES = 3  # a list of missing tensors names this many, then says how many more


class WeightsError(CompilerError):
    """A checkpoint that is missing, malformed, pickled, or does not match the model."""


@dataclass(frozen=True)
class Checkpoint:
    """The safetensors files of a checkpoint and which tensor lives in which."""

    directory: Path
    files: tuple[str, ...]       # file names inside `directory`, sorted
    weight_map: dict[str, str]   # tensor name -> file name


@dataclass(frozen=True)
class LoadedWeights:
    """What `load_weights` did, for the port report."""

    files: tuple[str, ...]    # the checkpoint's files, all read
    tensors: int              # checkpoint tensors copied into the model
    tied: tuple[str, ...]     # model entries filled through a tie, not from a tensor of their own
    unused: tuple[str, ...]   # checkpoint tensors the model has no entry for (ignored)

    def describe(self) -> str:
        unused = f" ({len(self.unused)} unused)" if self.unused else ""
        return f"{self.tensors} tensors from {', '.join(self.files)}{unused}"


# ---------------------------------------------------------------- finding the checkpoint


def find_checkpoint(directory: str | Path) -> Checkpoint | None:
    """The checkpoint in `directory`: by its index if there is one, else every `*.safetensors`
    file. None if there are no weights at all; a `WeightsError` if there are only pickles."""
    directory = Path(directory)
    index = directory / INDEX_FILE
    if index.is_file():
        return _checkpoint_from_index(directory, index)
    files = sorted(p.name for p in directory.glob(f"*{SAFETENSORS_SUFFIX}") if p.is_file())
    if files:
        return Checkpoint(directory, tuple(files), _weight_map_from_headers(directory, files))
    _refuse_pickles(directory)
    return None


def _refuse_pickles(directory: Path) -> None:
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        raise WeightsError(
            f"'{directory / pickles[0]}' is a pickled checkpoint, and waferc never loads pickles "
            "(unpickling runs arbitrary code)",
            hint="convert it to safetensors where you trust it, e.g. "
                 "`model.save_pretrained(dir, safe_serialization=True)`, then port dir")


def _checkpoint_from_index(directory: Path, index: Path) -> Checkpoint:
    weight_map = _read_index(index)
    files = sorted(set(weight_map.values()))
    for name in files:
        _check_shard_name(name, index)
        if not (directory / name).is_file():
            raise WeightsError(f"shard '{directory / name}' listed in {INDEX_FILE} does not exist")
    return Checkpoint(directory, tuple(files), weight_map)


def _read_index(index: Path) -> dict[str, str]:
    data = read_json(index, WeightsError)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise WeightsError(f"'{index}' has no \"weight_map\" object of tensor name -> shard file")
    return weight_map


def _check_shard_name(name: str, index: Path) -> None:
    # The index is data from elsewhere: it may only name files beside it.
    path = PurePosixPath(name)
    if path.is_absolute() or len(path.parts) != 1 or name in (".", ".."):
        raise WeightsError(f"'{index}' names shard '{name}', which is not a file in its directory")


def _weight_map_from_headers(directory: Path, files: list[str]) -> dict[str, str]:
    weight_map: dict[str, str] = {}
    for name in files:
        with _open_shard(directory / name) as shard:
            for key in shard.keys():
                if key in weight_map:
                    raise WeightsError(f"tensor '{key}' is in both '{directory / weight_map[key]}' "
                                       f"and '{directory / name}'")
                weight_map[key] = name
    return weight_map


def _open_shard(path: Path):
    """The file opened lazily (memory-mapped; only its header is read now)."""
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"'{path}' is truncated or not a safetensors file ({reason})") from None


# ---------------------------------------------------------------- loading into the model


@dataclass(frozen=True)
class _Plan:
    """Which checkpoint tensor fills which model tensor, grouped by file."""

    by_file: dict[str, list[tuple[str, str]]]   # file -> [(checkpoint name, model name)]
    tied: tuple[str, ...]
    unused: tuple[str, ...]


def load_weights(module: torch.nn.Module, checkpoint: Checkpoint) -> LoadedWeights:
    """Copy the checkpoint into `module`'s parameters and buffers (in place), shard by shard."""
    targets = module.state_dict(keep_vars=True)
    plan = _plan(targets, checkpoint, getattr(module, "base_model_prefix", ""))
    copied = 0
    for file, pairs in plan.by_file.items():
        path = checkpoint.directory / file
        with _open_shard(path) as shard, torch.no_grad():
            for source, target in pairs:
                _copy(shard, path, source, target, targets[target])
                copied += 1
    return LoadedWeights(checkpoint.files, copied, plan.tied, plan.unused)


def _plan(targets: dict[str, torch.Tensor], checkpoint: Checkpoint, prefix: str) -> _Plan:
    """One checkpoint tensor per group of tied model entries; the rest of a group is tied."""
    by_file: dict[str, list[tuple[str, str]]] = {}
    tied, missing, used = [], [], set()
    for group in _tied_groups(targets):
        found = [(name, source) for name in group
                 if (source := _checkpoint_name(name, checkpoint.weight_map, prefix)) is not None]
        if not found:
            missing.append(group[0])
            continue
        for name, source in found:
            by_file.setdefault(checkpoint.weight_map[source], []).append((source, name))
            used.add(source)
        tied.extend(name for name in group if name not in dict(found))
    if missing:
        raise WeightsError(_missing_message(missing, targets, checkpoint))
    unused = tuple(sorted(set(checkpoint.weight_map) - used))
    return _Plan(dict(sorted(by_file.items())), tuple(tied), unused)


def _tied_groups(targets: dict[str, torch.Tensor]) -> list[list[str]]:
    """State_dict names grouped by the tensor they hold (tied weights are one Parameter)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in targets.items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def _checkpoint_name(name: str, weight_map: dict[str, str], prefix: str) -> str | None:
    """The model entry's name in the checkpoint: as it is, or saved from (or for) the base model."""
    candidates = [name]
    if prefix:
        head = f"{prefix}."
        candidates.append(name.removeprefix(head) if name.startswith(head) else head + name)
    return next((c for c in candidates if c in weight_map), None)


def _missing_message(missing: list[str], targets: dict[str, torch.Tensor], checkpoint: Checkpoint) -> str:
    shown = ", ".join(f"'{n}' ({_describe(targets[n])})" for n in missing[:_SHOWN_NAMES])
    more = f" and {len(missing) - _SHOWN_NAMES} more" if len(missing) > _SHOWN_NAMES else ""
    where = f"{checkpoint.directory} ({', '.join(checkpoint.files)})"
    noun = "tensor" if len(missing) == 1 else f"{len(missing)} tensors"
    return f"checkpoint {where} lacks the {noun} the model needs: {shown}{more}"


def _copy(shard, path: Path, source: str, target: str, into: torch.Tensor) -> None:
    """Check the stored shape and dtype (from the header, before reading), then copy."""
    stored = shard.get_slice(source)
    shape, dtype = tuple(stored.get_shape()), stored.get_dtype()
    want_dtype = _SAFETENSORS_DTYPES.get(into.dtype, str(into.dtype))
    if shape != tuple(into.shape) or dtype != want_dtype:
        raise WeightsError(f"tensor '{source}' in '{path}' is {dtype}{list(shape)}, but the model's "
                           f"'{target}' is {want_dtype}{list(into.shape)}")
    try:
        into.copy_(shard.get_tensor(source))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise WeightsError(f"cannot read tensor '{source}' from '{path}': {e}") from None


def _describe(t: torch.Tensor) -> str:
    return f"{_SAFETENSORS_DTYPES.get(t.dtype, str(t.dtype))}{list(t.shape)}"
