"""Bundled presets and `compiler.hf.build_hf_model`: published shapes on meta, tiny configs on cpu,
and every way a name or a config can be wrong. Only the size-only compiles at the end export a
model (the slow part): BERT-base in the default run, the 3.8B-8.5B presets marked slow."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compiler.frontend.capture import config_window
from compiler.hf import HFModelError, build_hf_model, locate_config
from compiler.presets import PRESETS_DIR, preset_dir, preset_names
from ir.errors import CompilerError

transformers = pytest.importorskip("transformers")

LLAMA_31 = ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"]
# Published shapes: hidden, intermediate, layers, heads; and the parameter count (numel) they give.
PUBLISHED = {
    "llama-3.1-8b": ((4096, 14336, 32, 32), 8.03e9),
    "llama-3.1-70b": ((8192, 28672, 80, 64), 70.6e9),
    "llama-3.1-405b": ((16384, 53248, 126, 128), 405.9e9),
}
TINY_LLAMA = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=64, hidden_size=32,
                  intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=32, torch_dtype="float32")


def config_dir(tmp_path: Path, config: dict | str, name: str = "tiny") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    (directory / "config.json").write_text(text)
    return directory


def one_line_error(name_or_path, **kwargs) -> str:
    with pytest.raises(HFModelError) as info:
        build_hf_model(name_or_path, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, CompilerError)
    assert "\n" not in message and "Traceback" not in message
    return message


# ---------------------------------------------------------------- the preset lookup


def test_the_llama_presets_are_bundled():
    assert set(LLAMA_31) <= set(preset_names())
    assert preset_names() == sorted(preset_names())


def test_a_preset_is_any_directory_with_a_config(monkeypatch, tmp_path):
    (tmp_path / "some-model").mkdir()
    (tmp_path / "some-model" / "config.json").write_text("{}")
    (tmp_path / "no-config").mkdir()
    monkeypatch.setattr("compiler.presets.PRESETS_DIR", tmp_path)
    assert preset_names() == ["some-model"]


@pytest.mark.parametrize("name", ["llama-3.1-8b", "Llama-3.1-8B", " llama-3.1-8b "])
def test_preset_names_match_in_any_case(name):
    assert preset_dir(name) == PRESETS_DIR / "llama-3.1-8b"


@pytest.mark.parametrize("name", ["llama-3.1-7b", "../presets/llama-3.1-8b", "", "__pycache__"])
def test_unknown_presets(name):
    assert preset_dir(name) is None


@pytest.mark.parametrize("name", LLAMA_31)
def test_llama_configs_hold_the_published_shapes(name):
    config = json.loads((preset_dir(name) / "config.json").read_text())
    (hidden, intermediate, layers, heads), _ = PUBLISHED[name]
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
            config["num_attention_heads"]) == (hidden, intermediate, layers, heads)
    assert (config["num_key_value_heads"], config["vocab_size"], config["max_position_embeddings"]) == \
        (8, 128256, 131072)
    assert config["rope_theta"] == 500000 and config["rms_norm_eps"] == 1e-5
    assert config["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert config["torch_dtype"] == "bfloat16" and config["tie_word_embeddings"] is False


# ---------------------------------------------------------------- building presets (meta: sizes only)


@pytest.mark.parametrize("name", LLAMA_31)
def test_llama_presets_build_on_meta_with_the_published_parameter_count(name):
    model, args, kwargs = build_hf_model(name)
    (hidden, _, layers, _), parameters = PUBLISHED[name]
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(parameters, rel=1e-3)
    assert model.config.hidden_size == hidden and len(model.model.layers) == layers
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.bfloat16)}
    (input_ids,) = args
    assert input_ids.shape == (1, 1) and input_ids.device.type == "meta" and input_ids.dtype == torch.long
    assert kwargs == {"use_cache": False}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds(name):
    """A preset dropped in later must build too (on meta, so in seconds at any size)."""
    model, _, _ = build_hf_model(name)
    assert isinstance(model, transformers.PreTrainedModel)


def test_batch_and_seq_shape_the_example_inputs():
    _, (input_ids,), _ = build_hf_model("llama-3.1-8b", batch=4, seq=3)
    assert input_ids.shape == (4, 3)


def test_locate_names_presets_and_directories(tmp_path):
    assert locate_config("llama-3.1-70b").name == "llama-3.1-70b"
    directory = config_dir(tmp_path, TINY_LLAMA, "my-llama")
    source = locate_config(directory)
    assert source.name == "my-llama" and source.config_file == directory / "config.json"


# ---------------------------------------------------------------- a local directory (cpu: real numbers)


def test_a_local_directory_builds_with_seeded_weights(tmp_path):
    directory = config_dir(tmp_path, TINY_LLAMA)
    model, (input_ids,), _ = build_hf_model(directory, device="cpu", seed=3)
    again, (same_ids,), _ = build_hf_model(str(directory), device="cpu", seed=3)
    other, _, _ = build_hf_model(directory, device="cpu", seed=4)
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(model.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(model.state_dict()[weight], other.state_dict()[weight])
    assert torch.equal(input_ids, same_ids) and int(input_ids.max()) < TINY_LLAMA["vocab_size"]
    with torch.no_grad():
        assert model(input_ids, use_cache=False).logits.shape == (1, 1, 64)


def test_building_leaves_the_global_rng_alone(tmp_path):
    directory = config_dir(tmp_path, TINY_LLAMA)
    before = torch.random.get_rng_state()
    build_hf_model(directory, device="cpu", seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_the_config_dtype_is_used(tmp_path):
    directory = config_dir(tmp_path, {**TINY_LLAMA, "torch_dtype": "float16"})
    model, _, _ = build_hf_model(directory, device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float16}


def test_an_architecture_given_by_model_type_only(tmp_path):
    config = {k: v for k, v in TINY_LLAMA.items() if k != "architectures"}
    model, _, _ = build_hf_model(config_dir(tmp_path, config))
    assert type(model).__name__ == "LlamaForCausalLM"


# ---------------------------------------------------------------- errors


def test_unsupported_architecture_names_it_and_the_file(tmp_path):
    directory = config_dir(tmp_path, {"architectures": ["FooForBar"], "model_type": "foo"})
    message = one_line_error(directory)
    assert message.startswith(f"{directory / 'config.json'}:3:5: error: ")  # where "FooForBar" is
    assert "unsupported architecture 'FooForBar'" in message and "no model class" in message


def test_a_model_that_is_not_a_causal_lm(tmp_path):
    directory = config_dir(tmp_path, {"architectures": ["BertForMaskedLM"], "model_type": "bert"})
    message = one_line_error(directory)
    assert "'BertForMaskedLM': not a causal language model" in message
    assert str(directory / "config.json") in message


def test_a_model_type_without_a_causal_lm(tmp_path):
    directory = config_dir(tmp_path, {"model_type": "foo"})
    assert "model_type 'foo' has no transformers causal language model" in one_line_error(directory)


def test_malformed_json_points_into_the_file(tmp_path):
    directory = config_dir(tmp_path, '{\n  "model_type": "llama",\n  oops\n}')
    message = one_line_error(directory)
    assert message.startswith(f"{directory / 'config.json'}:3:3: error: malformed JSON")


def test_a_config_that_is_not_an_object(tmp_path):
    assert "must hold a JSON object" in one_line_error(config_dir(tmp_path, "[1, 2]"))


def test_an_unsupported_dtype(tmp_path):
    directory = config_dir(tmp_path, {**TINY_LLAMA, "torch_dtype": "int4"})
    assert "unsupported torch_dtype 'int4'" in one_line_error(directory)


def test_a_config_transformers_rejects(tmp_path):
    directory = config_dir(tmp_path, {**TINY_LLAMA, "hidden_size": 30})  # not divisible by 4 heads
    message = one_line_error(directory, device="cpu")
    assert message.startswith(f"error: cannot read '{directory / 'config.json'}': ")
    assert "hidden size (30) is not a multiple of the number of attention heads (4)" in message


def test_a_directory_without_a_config(tmp_path):
    assert one_line_error(tmp_path) == f"error: directory '{tmp_path}' has no config.json"


def test_a_file_instead_of_a_directory(tmp_path):
    directory = config_dir(tmp_path, TINY_LLAMA)
    assert "is not a directory" in one_line_error(directory / "config.json")


def test_a_missing_directory_or_unknown_preset(tmp_path):
    message = one_line_error("llama-3.1-7b")
    assert "'llama-3.1-7b' is neither a waferc preset nor a directory" in message
    assert "llama-3.1-8b" in message and "hf:DIR" in message


def test_a_hub_id_explains_there_is_no_hub_access():
    message = one_line_error("meta-llama/Llama-3.1-8B")
    assert "no access to the Hugging Face hub" in message
    assert "hf:DIR" in message and "llama-3.1-405b, llama-3.1-70b, llama-3.1-8b" in message


@pytest.mark.parametrize("kwargs, expected", [
    ({"device": "cuda"}, "device must be one of meta, cpu"),
    ({"batch": 0}, "batch and seq must be positive"),
    ({"seq": -1}, "batch and seq must be positive"),
])
def test_bad_arguments(kwargs, expected):
    assert expected in one_line_error("llama-3.1-8b", **kwargs)


# ---------------------------------------------------------------- the other architectures' presets

# Published shapes (each model card's config.json): class, hidden, layers, heads, kv heads, vocab,
# and the parameter count they give.
ARCHITECTURE_PRESETS = {
    "mistral-7b": ("MistralForCausalLM", 4096, 32, 32, 8, 32000, 7.24e9),    # Mistral-7B-v0.1
    "qwen2-7b": ("Qwen2ForCausalLM", 3584, 28, 28, 4, 152064, 7.62e9),      # Qwen/Qwen2-7B
    "gemma-7b": ("GemmaForCausalLM", 3072, 28, 16, 16, 256000, 8.54e9),     # google/gemma-7b
    "phi-3-mini": ("Phi3ForCausalLM", 3072, 32, 32, 32, 32064, 3.82e9),     # Phi-3-mini-4k-instruct
    "gpt2": ("GPT2LMHeadModel", 768, 12, 12, 12, 50257, 124.4e6),           # openai-community/gpt2
    "bert-base": ("BertModel", 768, 12, 12, 12, 30522, 109.5e6),            # bert-base-uncased
}


@pytest.mark.parametrize("name", ARCHITECTURE_PRESETS)
def test_architecture_presets_build_with_the_published_shapes(name):
    model, (input_ids,), _ = build_hf_model(name)
    cls, hidden, layers, heads, kv_heads, vocab, parameters = ARCHITECTURE_PRESETS[name]
    config = model.config
    assert type(model).__name__ == cls and not model.training
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.vocab_size) == \
        (hidden, layers, heads, vocab)
    assert getattr(config, "num_key_value_heads", heads) == kv_heads
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(parameters, rel=2e-3)
    assert {p.device.type for p in model.parameters()} == {"meta"} and input_ids.shape == (1, 1)


def test_architecture_specific_published_values():
    assert build_hf_model("mistral-7b")[0].config.sliding_window == 4096
    gemma = build_hf_model("gemma-7b")[0]
    assert gemma.config.head_dim == 256 and gemma.config.hidden_act == "gelu_pytorch_tanh"
    qwen2 = build_hf_model("qwen2-7b")[0]
    assert qwen2.model.layers[0].self_attn.q_proj.bias is not None
    phi3 = build_hf_model("phi-3-mini")[0]
    assert phi3.model.layers[0].self_attn.qkv_proj.weight.shape == (3 * 3072, 3072)
    assert phi3.model.layers[0].mlp.gate_up_proj.weight.shape == (2 * 8192, 3072)
    assert {p.dtype for p in build_hf_model("gpt2")[0].parameters()} == {torch.float32}


# ---------------------------------------------------------------- base models: encoders

TINY_BERT = dict(architectures=["BertModel"], model_type="bert", vocab_size=64, hidden_size=32,
                 intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=32, torch_dtype="float32")


def test_an_encoder_named_by_its_base_class_builds(tmp_path):
    model, (input_ids,), kwargs = build_hf_model(config_dir(tmp_path, TINY_BERT), device="cpu", seq=5)
    assert type(model).__name__ == "BertModel" and not model.config.is_decoder
    assert input_ids.shape == (1, 5) and kwargs == {"use_cache": False}
    with torch.no_grad():
        out = model(input_ids, **kwargs)
    assert out.last_hidden_state.shape == (1, 5, 32) and out.pooler_output.shape == (1, 32)


def test_a_task_head_is_still_refused(tmp_path):
    directory = config_dir(tmp_path, {**TINY_BERT, "architectures": ["BertForMaskedLM"]})
    message = one_line_error(directory)
    assert "'BertForMaskedLM': not a causal language model or a base model" in message
    assert "BertModel" in message


# ---------------------------------------------------------------- size-only compiles on wse3


def _compile_size_only(name: str):
    import compiler

    cm = compiler.compile(f"hf:{name}", target="wse3")
    assert cm.size_only and cm.report["wafers_used"] == 1
    return cm


def test_bert_base_compiles_size_only_on_wse3():
    cm = _compile_size_only("bert-base")
    ir_text = cm.artifact.files["model.ir"].decode()
    assert ir_text.count("= sdpa(") == 12 and "bool[" not in ir_text
    # An encoder keeps no KV cache: its attention sees the whole sequence in one pass.
    wkl = "".join(v.decode() for k, v in cm.artifact.files.items() if k.startswith("kernels/"))
    assert "state " not in wkl


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "phi-3-mini", "mistral-7b", "qwen2-7b", "gemma-7b"])
def test_architecture_presets_compile_size_only_on_wse3(name):
    _compile_size_only(name)


@pytest.mark.parametrize("name, window", [("mistral-7b", 4096), ("phi-3-mini", 2047),
                                          ("qwen2-7b", None), ("llama-3.1-8b", None)])
def test_the_sliding_window_every_attention_uses_comes_from_the_config(name, window):
    # Qwen2's config names a window but turns it off (`use_sliding_window: false`).
    assert config_window(build_hf_model(name)[0]) == window
