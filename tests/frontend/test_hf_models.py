"""Tiny Hugging Face GPT-2 and Llama through the frontend and canonicalisation, against eager."""
import pytest
import torch

from compiler.frontend import capture, eager_outputs, lower
from ir.types import DType
from ir.verify import verify_graph
from passes.canonicalize import CanonicalizePass
from tests.ir_torch_eval import run_lowered

transformers = pytest.importorskip("transformers")

GPT2 = dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64)
LLAMA = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)


def make_model(kind: str, device: str = "cpu"):
    torch.manual_seed(0)
    with torch.device(device):
        if kind == "gpt2":
            return transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2))
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA))


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def compiled(request):
    model = make_model(request.param)
    ids = torch.randint(0, 128, (1, 8), generator=torch.Generator().manual_seed(1))
    lowered = lower(capture(model, (ids,)))
    CanonicalizePass().run(lowered.graph)
    with torch.no_grad():
        logits = model(ids).logits
    return request.param, lowered, ids, logits


def test_matches_eager(compiled):
    _, lowered, ids, logits = compiled
    (got,) = run_lowered(lowered, [ids])
    torch.testing.assert_close(got, logits, atol=1e-5, rtol=1e-5)


def test_attention_is_causal_without_a_mask(compiled):
    _, lowered, _, _ = compiled
    sdpas = [op for op in lowered.graph.ops if op.opname == "sdpa"]
    assert len(sdpas) == 2
    assert all(op.attrs["causal"] is True and len(op.operands) == 3 for op in sdpas)
    assert not any(p.type.dtype == DType.bool for p in lowered.graph.params)


def test_gqa_heads_are_not_copied(compiled):
    kind, lowered, _, _ = compiled
    assert not any(op.opname == "expand" for op in lowered.graph.ops)
    for op in (op for op in lowered.graph.ops if op.opname == "sdpa"):
        q, k, v = op.operands
        assert q.type.shape[1] == 4
        assert k.type.shape[1] == v.type.shape[1] == (2 if kind == "llama" else 4)


def test_signature(compiled):
    kind, lowered, _, _ = compiled
    verify_graph(lowered.graph)
    assert lowered.input_names == ["input_ids"]  # use_cache=False was added and then dropped
    assert "lm_head.weight" in lowered.params
    assert ("CausalLMOutputWithPast" if kind == "llama" else "CausalLMOutputWithCrossAttentions") \
        in lowered.out_spec


def test_locations_point_into_the_modeling_file(compiled):
    kind, lowered, _, _ = compiled
    module = "model.layers.1.self_attn.q_proj" if kind == "llama" else "transformer.h.1.attn.c_attn"
    ops = [op for op in lowered.graph.ops if op.loc.module == module]
    assert ops, f"no op from {module}"
    weight = f"{module}.weight"
    (projection,) = [op for op in ops if weight in [v.name for v in op.operands]]
    if kind == "llama":
        assert projection.loc.file.endswith("models/llama/modeling_llama.py")
        assert "self.q_proj(" in projection.loc.excerpt()
    else:  # GPT-2's Conv1D computes in transformers' own pytorch_utils.py
        assert projection.loc.file.endswith("transformers/pytorch_utils.py")
        assert "addmm" in projection.loc.excerpt()
    assert projection.loc.line > 0


def test_meta_device_llama_lowers_size_only():
    model = make_model("llama", device="meta")
    captured = capture(model, (torch.zeros(1, 8, dtype=torch.long),))
    lowered = lower(captured)
    CanonicalizePass().run(lowered.graph)
    assert "model.layers.0.self_attn.q_proj.weight" in lowered.params
    assert all(data is None for data in lowered.params.values())
    assert eager_outputs(captured) == [None]  # runs, but there are no numbers to keep
    sdpas = [op for op in lowered.graph.ops if op.opname == "sdpa"]
    assert sdpas and all(op.attrs["causal"] and len(op.operands) == 3 for op in sdpas)
