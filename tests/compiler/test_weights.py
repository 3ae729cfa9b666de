"""compiler.weights: safetensors checkpoints (single, sharded, saved from the base model) loaded into
a model built on the CPU; every way a checkpoint can be wrong names the tensor or the file; pickles
are refused without being opened."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from compiler.weights import INDEX_FILE, WeightsError, find_checkpoint, load_weights
from ir.errors import CompilerError

transformers = pytest.importorskip("transformers")

GPT2 = dict(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0)
LLAMA = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=16)


def gpt2(seed: int, base: bool = False):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**GPT2)
    return (transformers.GPT2Model(config) if base else transformers.GPT2LMHeadModel(config)).eval()


def llama(seed: int):
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).eval()


def assert_same_weights(got: torch.nn.Module, want: torch.nn.Module) -> None:
    want_state = want.state_dict()
    for name, tensor in got.state_dict().items():
        assert torch.equal(tensor, want_state[name]), name


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, CompilerError)
    assert "Traceback" not in message and len(message.splitlines()) <= 2  # the message, maybe a hint
    return message


# ---------------------------------------------------------------- what loads


@pytest.mark.parametrize("make", [gpt2, llama], ids=["gpt2-tied", "llama"])
def test_save_pretrained_round_trip(tmp_path, make):
    saved = make(seed=1)
    saved.save_pretrained(tmp_path)
    fresh = make(seed=2)
    loaded = load_weights(fresh, find_checkpoint(tmp_path))
    assert_same_weights(fresh, saved)
    assert loaded.files == ("model.safetensors",) and loaded.unused == ()
    if make is gpt2:  # save_pretrained writes the tied embedding once
        assert loaded.tied == ("lm_head.weight",)
        assert fresh.lm_head.weight is fresh.transformer.wte.weight


def test_sharded_checkpoint_loads_shard_by_shard(tmp_path):
    saved = llama(seed=1)
    saved.save_pretrained(tmp_path, max_shard_size="4KB")
    checkpoint = find_checkpoint(tmp_path)
    assert len(checkpoint.files) > 2 and (tmp_path / INDEX_FILE).is_file()
    fresh = llama(seed=2)
    loaded = load_weights(fresh, checkpoint)
    assert loaded.files == checkpoint.files and loaded.tensors == len(fresh.state_dict())
    assert_same_weights(fresh, saved)


def test_base_model_checkpoint_fills_the_head_model(tmp_path):
    """Hub GPT-2 checkpoints are saved from GPT2Model: no `transformer.` prefix, lm_head tied."""
    base = gpt2(seed=1, base=True)
    save_file(base.state_dict(), tmp_path / "model.safetensors")
    fresh = gpt2(seed=2)
    load_weights(fresh, find_checkpoint(tmp_path))
    assert torch.equal(fresh.transformer.wte.weight, base.wte.weight)
    assert torch.equal(fresh.lm_head.weight, base.wte.weight)


def test_unused_tensors_are_reported_not_loaded(tmp_path):
    state = llama(seed=1).state_dict()
    save_file({**state, "extra.bias": torch.zeros(3)}, tmp_path / "model.safetensors")
    assert load_weights(llama(seed=2), find_checkpoint(tmp_path)).unused == ("extra.bias",)


def test_no_weights_at_all_is_none(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert find_checkpoint(tmp_path) is None


# ---------------------------------------------------------------- what is refused, by name


def save_state(tmp_path, state: dict) -> None:
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")


def test_missing_tensor_names_itself(tmp_path):
    state = llama(seed=1).state_dict()
    del state["model.layers.0.mlp.up_proj.weight"]
    save_state(tmp_path, state)
    with pytest.raises(WeightsError) as error:
        load_weights(llama(seed=2), find_checkpoint(tmp_path))
    message = one_line(error)
    assert "'model.layers.0.mlp.up_proj.weight' (F32[32, 16])" in message and "model.safetensors" in message


@pytest.mark.parametrize("wrong,expected", [
    (torch.zeros(16, 17), "F32[16, 17]"),
    (torch.zeros(16, 16, dtype=torch.float16), "F16[16, 16]"),
])
def test_mismatched_tensor_names_itself(tmp_path, wrong, expected):
    state = llama(seed=1).state_dict()
    state["model.layers.0.self_attn.q_proj.weight"] = wrong
    save_state(tmp_path, state)
    with pytest.raises(WeightsError) as error:
        load_weights(llama(seed=2), find_checkpoint(tmp_path))
    message = one_line(error)
    assert f"'model.layers.0.self_attn.q_proj.weight' in '{tmp_path / 'model.safetensors'}' is {expected}" \
        in message
    assert "F32[16, 16]" in message


@pytest.mark.parametrize("keep", [0.9, 0.001])
def test_truncated_file_names_the_file(tmp_path, keep):
    llama(seed=1).save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:max(4, int(len(data) * keep))])
    with pytest.raises(WeightsError) as error:
        load_weights(llama(seed=2), find_checkpoint(tmp_path))
    assert f"'{path}' is truncated or not a safetensors file" in one_line(error)


def test_truncated_shard_names_the_shard(tmp_path):
    llama(seed=1).save_pretrained(tmp_path, max_shard_size="4KB")
    shard = tmp_path / find_checkpoint(tmp_path).files[-1]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(WeightsError) as error:
        load_weights(llama(seed=2), find_checkpoint(tmp_path))
    assert str(shard) in one_line(error)


def test_missing_shard_names_the_shard(tmp_path):
    llama(seed=1).save_pretrained(tmp_path, max_shard_size="4KB")
    shard = tmp_path / find_checkpoint(tmp_path).files[1]
    shard.unlink()
    with pytest.raises(WeightsError) as error:
        find_checkpoint(tmp_path)
    assert f"shard '{shard}' listed in {INDEX_FILE} does not exist" in one_line(error)


def test_index_may_only_name_files_beside_it(tmp_path):
    (tmp_path / INDEX_FILE).write_text(json.dumps({"weight_map": {"w": "../elsewhere.safetensors"}}))
    with pytest.raises(WeightsError) as error:
        find_checkpoint(tmp_path)
    assert "'../elsewhere.safetensors', which is not a file in its directory" in one_line(error)


def test_malformed_index_points_at_the_line(tmp_path):
    (tmp_path / INDEX_FILE).write_text('{\n  "weight_map": {,\n}')
    with pytest.raises(WeightsError) as error:
        find_checkpoint(tmp_path)
    assert f"{tmp_path / INDEX_FILE}:2:" in str(error.value)


class _Payload:
    """Unpickling this creates a directory: proof that a pickle was (or was not) loaded."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return os.mkdir, (self.sentinel,)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth"])
def test_pickled_checkpoint_is_refused_unopened(tmp_path, name):
    model_dir, sentinel = tmp_path / "model", tmp_path / "unpickled"
    model_dir.mkdir()
    (model_dir / name).write_bytes(pickle.dumps(_Payload(sentinel)))
    with pytest.raises(WeightsError) as error:
        find_checkpoint(model_dir)
    message = one_line(error)
    assert f"'{model_dir / name}' is a pickled checkpoint" in message and "safetensors" in message
    assert not sentinel.exists()


def test_safetensors_beside_a_pickle_are_used(tmp_path):
    saved = llama(seed=1)
    saved.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"never read")
    fresh = llama(seed=2)
    load_weights(fresh, find_checkpoint(tmp_path))
    assert_same_weights(fresh, saved)
