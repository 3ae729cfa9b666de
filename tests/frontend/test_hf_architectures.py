"""Seven Hugging Face architectures, tiny with random weights, compiled for `toy` and simulated
against PyTorch eager (fp32, a prefill of 8 tokens, within 1e-4).

What each one brings: GPT-2 (Conv1D projections, fused c_attn split in three), Llama (GQA),
Mistral (a sliding window of 4 keys, shorter than the 8 tokens), Qwen2 (q/k/v biases), Phi-3
(fused qkv_proj and gate_up_proj, partial rotary), Gemma (tanh GELU, RMSNorm scaled by 1 + w, the
embedding scaled by a 0-d sqrt(hidden) constant, head_dim 32 != 64 / 4 heads, one kv head) and BERT
(an encoder: bidirectional attention, token-type and position embeddings, LayerNorm, erf GELU and
the tanh pooler). Each model is compiled once per module.
"""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils import _pytree as pytree

import compiler
from ir.text import parse_graph
from passes.partition import PartitionPass
from passes.shard_rules import plan_sharding

transformers = pytest.importorskip("transformers")

SEQ, VOCAB, WINDOW = 8, 128, 4
CONTEXT = 1024  # KV-cache tokens for the one-token traces
_DECODER = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
ARCHITECTURES = {  # name: (model class, config class, config)
    "gpt2": ("GPT2LMHeadModel", "GPT2Config",
             dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64)),
    "llama": ("LlamaForCausalLM", "LlamaConfig", _DECODER),
    "mistral": ("MistralForCausalLM", "MistralConfig", dict(_DECODER, sliding_window=WINDOW)),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", _DECODER),
    "phi3": ("Phi3ForCausalLM", "Phi3Config", dict(_DECODER, pad_token_id=0)),
    "gemma": ("GemmaForCausalLM", "GemmaConfig", dict(_DECODER, num_key_value_heads=1, head_dim=32)),
    "bert": ("BertModel", "BertConfig",
             dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=64)),
}


def make_model(name: str) -> torch.nn.Module:
    model_class, config_class, config = ARCHITECTURES[name]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**config)
    return getattr(transformers, model_class)(config).eval()


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def compiled(request):
    model = make_model(request.param)
    ids = torch.randint(0, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(1))
    # 80x80 PEs: the wafer-scale placer, which takes a fraction of a second on these models.
    cm = compiler.compile(model, (ids,), {}, target="toy", fabric_dims=(80, 80))
    graph = parse_graph(cm.artifact.files["model.ir"].decode())
    return request.param, model, ids, cm, graph


def max_error(got, want) -> float:
    pairs = zip(pytree.tree_leaves(got), pytree.tree_leaves(want), strict=True)
    return max(float((g.double() - w.double()).abs().max()) for g, w in pairs)


def ops_named(graph, opname: str) -> list:
    return [op for op in graph.ops if op.opname == opname]


def test_simulation_matches_eager(compiled):
    _, model, ids, cm, _ = compiled
    with torch.no_grad():
        want = model(ids, use_cache=False)  # as compiled: the KV cache is waferc's to place
    got = cm(ids)
    assert type(got) is type(want)
    assert max_error(got, want) <= 1e-4
    assert cm.run().max_abs_error <= 1e-4  # the artifact's own example inputs and expected outputs


def test_attention_masks_are_attributes_not_tensors(compiled):
    name, _, _, _, graph = compiled
    sdpas = ops_named(graph, "sdpa")
    assert len(sdpas) == 2
    expected = {"causal": name != "bert"} | ({"window": WINDOW} if name == "mistral" else {})
    for op in sdpas:
        assert len(op.operands) == 3  # no mask operand: BERT's all-visible one is dropped too
        assert {k: v for k, v in op.attrs.items() if k != "scale"} == expected
    assert not any(p.type.dtype.value == "bool" for p in graph.params)


def test_every_attention_kernel_splits_by_heads(compiled):
    """Fused projections (GPT-2's c_attn, Phi-3's qkv_proj) are sliced by block loads, so no
    attention kernel is forced onto one PE."""
    _, _, _, _, graph = compiled
    kernels = PartitionPass().run(graph).kernels
    attention = [k for k in kernels if any(op.opname == "sdpa" for op in k.ops)]
    assert len(attention) == 2
    for kernel in attention:
        (sdpa,) = [op for op in kernel.ops if op.opname == "sdpa"]
        plan = plan_sharding(kernel)
        assert plan.parallelism > 1 and plan.dims[sdpa.result] == 1  # the heads dim


def test_what_makes_each_architecture_itself(compiled):
    name, _, _, _, graph = compiled
    FEATURES[name](graph)


# ---------------------------------------------------------------- per-architecture features

def _linear_biases(graph, suffix: str) -> list[bool]:
    return [len(op.operands) == 3 for op in ops_named(graph, "linear")
            if op.operands[1].name.endswith(suffix)]


def _gpt2(graph):
    assert len(ops_named(graph, "tanh")) == 2  # gelu_new, written out with pow and tanh
    assert len(ops_named(graph, "layer_norm")) == 5
    c_attn = [op.result for op in ops_named(graph, "add")
              if any(v.name.endswith("c_attn.bias") for v in op.operands)]
    assert len(c_attn) == 2 and {op.opname for v in c_attn for op in graph.users()[v]} == {"slice"}


def _llama(graph):
    for op in ops_named(graph, "sdpa"):
        q, k, v = op.operands
        assert (q.type.shape[1], k.type.shape[1], v.type.shape[1]) == (4, 2, 2)  # GQA, no copies


def _mistral(graph):
    assert SEQ > WINDOW  # the window hides keys: it is exercised, not vacuous
    _llama(graph)


def _qwen2(graph):
    for proj in ("q_proj.weight", "k_proj.weight", "v_proj.weight"):
        assert _linear_biases(graph, proj) == [True, True]
    assert _linear_biases(graph, "o_proj.weight") == [False, False]


def _phi3(graph):
    fused = [op.result for op in ops_named(graph, "linear")
             if op.operands[1].name.endswith(("qkv_proj.weight", "gate_up_proj.weight"))]
    assert len(fused) == 4
    users = graph.users()
    assert all(op.opname == "slice" for v in fused for op in users[v])
    assert not ops_named(graph, "cat") or all(v.type.numel for op in ops_named(graph, "cat")
                                               for v in op.operands)  # empty pass-through dropped


def _gemma(graph):
    assert any(op.opname == "gelu" and op.attrs["approximate"] == "tanh" for op in graph.ops)
    normaliser = [p for p in graph.params if p.type.shape == ()]
    assert len(normaliser) == 1  # sqrt(hidden), a 0-d constant scaling the embedding
    for op in ops_named(graph, "sdpa"):
        assert op.operands[0].type.shape == (1, 4, SEQ, 32)  # head_dim 32, hidden 64, 4 heads


def _bert(graph):
    assert len(ops_named(graph, "embedding")) == 3  # words, token types and positions
    assert any(op.opname == "gelu" and op.attrs["approximate"] == "none" for op in graph.ops)
    assert len(ops_named(graph, "tanh")) == 1  # the pooler
    assert len(ops_named(graph, "layer_norm")) == 5
    assert len(graph.outputs) == 2  # last_hidden_state and pooler_output


FEATURES = {"gpt2": _gpt2, "llama": _llama, "mistral": _mistral, "qwen2": _qwen2, "phi3": _phi3,
            "gemma": _gemma, "bert": _bert}


def test_the_sliding_window_changes_the_answer():
    """Without the window the same weights give other logits: the window test can fail."""
    windowed, full = make_model("mistral"), make_model("mistral")
    full.config.sliding_window = None
    ids = torch.randint(0, VOCAB, (1, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (windowed(ids).logits - full(ids).logits).abs().max() > 1e-3


def test_a_one_token_trace_takes_the_sliding_window_from_the_config():
    """One token's mask cannot show a window, but the KV cache only ever needs the window's keys:
    the window comes from the config, and the numerics do not change."""
    ids = torch.randint(0, VOCAB, (1, 1), generator=torch.Generator().manual_seed(1))
    windowed, full = make_model("mistral"), make_model("mistral")
    full.config.sliding_window = None
    kv = {}
    for name, model in (("windowed", windowed), ("full", full)):
        cm = compiler.compile(model, (ids,), {}, target="toy", fabric_dims=(80, 80),
                              max_context=CONTEXT)
        graph = parse_graph(cm.artifact.files["model.ir"].decode())
        assert [op.attrs.get("window") for op in ops_named(graph, "sdpa")] == \
            ([WINDOW] * 2 if name == "windowed" else [None] * 2)
        assert cm.run().max_abs_error <= 1e-4
        regions = json.loads(cm.artifact.files["placement.json"])["regions"]
        kv[name] = sum(r["sram_bytes"] for r in regions if r["kernel"].endswith("_self_attn"))
    # K and V of 2 layers, 2 kv heads of 16 f32s each: for the context in full, for the window
    # alone when windowed (plus the same small buffers).
    context_kv = 2 * 2 * CONTEXT * 2 * 16 * 4
    assert kv["full"] >= context_kv and kv["windowed"] < context_kv / 8
