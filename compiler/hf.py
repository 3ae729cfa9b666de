"""Build a Hugging Face model from a local `config.json`: a preset or a directory.

    module, example_inputs, example_kwargs = build_hf_model("llama-3.1-8b")          # on meta
    module, example_inputs, example_kwargs = build_hf_model("path/to/dir", device="cpu", seed=1)

Requires: `transformers` (the `waferc[hf]` extra), imported only when a model is built. Nothing is
ever fetched from the hub: configs are read with `local_files_only=True`.
The config must name a causal language model (`LlamaForCausalLM`, `MistralForCausalLM`, ...; a
config with only a `model_type` gets that type's causal LM), or a base model, the class
`AutoModel` builds for its model type: an encoder such as `BertModel` (the whole encoder and its
pooler, attending bidirectionally over every token). Task heads (`BertForMaskedLM`, ...) are not
built.
Ensures: the model is in eval mode, built directly on `device` ("meta" gives a size-only model in
seconds whatever its size; "cpu" gives random weights drawn from `seed`) in the config's
`torch_dtype`; the example inputs are `input_ids` of shape (batch, seq) on the same device (no
attention mask: every token is real; an encoder's token types are its all-zero default) and the
example kwargs turn the KV cache off. Every way the name or the config can be wrong raises an
`HFModelError` (a `CompilerError`) whose message is one line and names the config file.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from compiler.frontend.capture import first_line
from compiler.presets import CONFIG_FILE, preset_dir, preset_names
from ir.errors import CompilerError, Span

DEVICES = ("meta", "cpu")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# `owner/name`, as on the hub; a path to a directory that does not exist looks the same, and the
# hub message below is right for both.
_HUB_ID = re.compile(r"[\w][\w.-]*/[\w.-]+")


class HFModelError(CompilerError):
    """An `hf:` model that cannot be found or built."""


@dataclass(frozen=True)
class ConfigSource:
    """Where an `hf:` name led: its config file, and a name for the model (preset or directory)."""

    config_file: Path
    name: str


def build_hf_model(config_dir_or_preset: str | Path, *, device: str = "meta", seed: int = 0,
                   batch: int = 1, seq: int = 1) -> tuple[torch.nn.Module, tuple, dict]:
    """The model a preset name or a directory holding `config.json` describes, with example inputs
    (one decode step by default: batch 1, seq 1)."""
    _check_arguments(device, batch, seq)
    source = locate_config(config_dir_or_preset)
    raw = _read_config_json(source.config_file)
    auto_class = _auto_class(raw, source.config_file)
    dtype = _config_dtype(raw, source.config_file)
    transformers = _import_transformers()
    with _quiet(transformers):
        config = _auto_config(transformers, source.config_file)
        model = _instantiate(getattr(transformers, auto_class), config, dtype, device, seed,
                             source.config_file)
    input_ids = _example_input_ids(config.vocab_size, batch, seq, seed).to(device)
    return model, (input_ids,), {"use_cache": False}


def _check_arguments(device: str, batch: int, seq: int) -> None:
    if device not in DEVICES:
        raise HFModelError(f"device must be one of {', '.join(DEVICES)}, got '{device}'")
    if batch < 1 or seq < 1:
        raise HFModelError(f"batch and seq must be positive, got batch {batch}, seq {seq}")


# ---------------------------------------------------------------- finding the config


def locate_config(config_dir_or_preset: str | Path) -> ConfigSource:
    """An existing directory is used as it is (so a user's copy shadows a preset of the same name);
    otherwise the name must be a preset."""
    text = str(config_dir_or_preset).strip()
    if not text:
        raise HFModelError(f"hf: needs a preset name or a directory; presets: {_presets_list()}")
    path = Path(text).expanduser()
    if path.exists():
        return ConfigSource(_config_file_in(path), path.resolve().name)
    directory = preset_dir(text)
    if directory is not None:
        return ConfigSource(directory / CONFIG_FILE, directory.name)
    raise HFModelError(_not_found_message(text))


def _config_file_in(path: Path) -> Path:
    if not path.is_dir():
        raise HFModelError(f"'{path}' is not a directory; hf:PATH takes the directory holding {CONFIG_FILE}")
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise HFModelError(f"directory '{path}' has no {CONFIG_FILE}")
    return config_file


def _not_found_message(text: str) -> str:
    if _HUB_ID.fullmatch(text):
        return (f"'{text}' is not a local directory or a waferc preset, and waferc has no access to "
                f"the Hugging Face hub: download its {CONFIG_FILE} into a directory and pass hf:DIR, "
                f"or use a preset: {_presets_list()}")
    return (f"'{text}' is neither a waferc preset nor a directory; presets: {_presets_list()} "
            f"(or hf:DIR for a directory holding {CONFIG_FILE})")


def _presets_list() -> str:
    return ", ".join(preset_names()) or "(none installed)"


# ---------------------------------------------------------------- reading and checking it


def read_json(path: Path, error: type[CompilerError]):
    """The JSON in `path`; a malformed or unreadable file raises `error` at file:line:col."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise error(f"malformed JSON: {e.msg}", Span(str(path), e.lineno, e.colno)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read '{path}': {first_line(e)}") from None


def _read_config_json(config_file: Path) -> dict:
    data = read_json(config_file, HFModelError)
    if not isinstance(data, dict):
        raise HFModelError(f"'{config_file}' must hold a JSON object")
    return data


def _auto_class(raw: dict, config_file: Path) -> str:
    """The transformers auto class that builds the config's architecture: `AutoModelForCausalLM`
    for a causal LM (named by `architectures`, or implied by `model_type`), `AutoModel` for a base
    model such as `BertModel` (only when `architectures` names it)."""
    causal_lms, base_models = _auto_mapping("MODEL_FOR_CAUSAL_LM"), _auto_mapping("MODEL")
    architectures = raw.get("architectures") or []
    if isinstance(architectures, str):  # hand-written configs sometimes drop the list
        architectures = [architectures]
    model_type = raw.get("model_type")
    if not architectures:
        if model_type not in causal_lms:
            raise HFModelError(f"model_type '{model_type}' has no transformers causal language model "
                               "(and no `architectures` names one)", _span_of(str(model_type), config_file))
        return "AutoModelForCausalLM"
    arch = str(architectures[0])
    if arch in causal_lms.values():
        return "AutoModelForCausalLM"
    if arch in base_models.values():
        return "AutoModel"
    raise HFModelError(_unsupported_reason(arch), _span_of(arch, config_file))


def _unsupported_reason(arch: str) -> str:
    transformers = _import_transformers()
    if hasattr(transformers, arch):
        return (f"unsupported architecture '{arch}': not a causal language model or a base model "
                "(waferc builds causal LMs such as LlamaForCausalLM and encoders such as BertModel)")
    return f"unsupported architecture '{arch}': transformers has no model class of that name"


def _auto_mapping(task: str) -> dict[str, str]:
    """model_type -> the class name its auto class builds (`MODEL`: AutoModel's base models,
    `MODEL_FOR_CAUSAL_LM`: AutoModelForCausalLM's); a type with several base classes (Funnel's)
    is listed by its first."""
    _import_transformers()
    from transformers.models.auto import modeling_auto

    names = getattr(modeling_auto, f"{task}_MAPPING_NAMES")
    return {model_type: name if isinstance(name, str) else name[0] for model_type, name in names.items()}


def _span_of(value: str, config_file: Path) -> Span:
    """Where `"value"` first appears in the file (1:1 if it does not), as a one-line location."""
    text = config_file.read_text(encoding="utf-8")
    index = text.find(f'"{value}"')
    if index < 0:
        return Span(str(config_file), 1, 1)
    line_start = text.rfind("\n", 0, index) + 1
    # No source text on the Span: the message stays one line, without a caret excerpt.
    return Span(str(config_file), text.count("\n", 0, index) + 1, index - line_start + 1)


def _config_dtype(raw: dict, config_file: Path) -> torch.dtype:
    # transformers 5 writes `dtype`; published configs (and older transformers) say `torch_dtype`.
    name = raw.get("dtype") or raw.get("torch_dtype") or "float32"
    if name not in _DTYPES:
        raise HFModelError(f"unsupported torch_dtype '{name}' (expected {', '.join(_DTYPES)})",
                           _span_of(str(name), config_file))
    return _DTYPES[name]


# ---------------------------------------------------------------- building the model


def _import_transformers() -> ModuleType:
    try:
        import transformers
    except ImportError:
        raise HFModelError("hf: models need the transformers package: pip install 'waferc[hf]'") from None
    return transformers


@contextmanager
def _quiet(transformers: ModuleType) -> Iterator[None]:
    """Keep transformers' advice (e.g. that published configs' `torch_dtype` is deprecated) off
    waferc's stderr; its errors still come through as exceptions."""
    logging = transformers.utils.logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def _auto_config(transformers: ModuleType, config_file: Path):
    try:
        return transformers.AutoConfig.from_pretrained(str(config_file.parent), local_files_only=True)
    except Exception as e:  # transformers raises ValueError, KeyError, OSError... for bad configs
        raise HFModelError(f"cannot read '{config_file}': {_reason(e)}") from None


def _instantiate(auto_class, config, dtype: torch.dtype, device: str, seed: int,
                 config_file: Path) -> torch.nn.Module:
    # Building under the device context puts even a 405B model on meta without allocating it;
    # fork_rng keeps the caller's global RNG untouched by the seeded initialisation.
    try:
        with torch.random.fork_rng(devices=[]), torch.device(device):
            torch.manual_seed(seed)
            model = auto_class.from_config(config, dtype=dtype)
    except Exception as e:  # inconsistent shapes in the config surface as assorted errors
        raise HFModelError(f"cannot build a model from '{config_file}': {_reason(e)}") from None
    return model.eval()


def _reason(e: BaseException) -> str:
    """The first line of the message, and the next one when the first only introduces it (as
    transformers' config validators do: "Class validation error for validator '...':")."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return first_line(e)


def _example_input_ids(vocab_size: int, batch: int, seq: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, seq), generator=generator)
