"""Stamping a layer stack gives the IR a whole trace gives, up to value names."""
import re

import pytest
import torch
import transformers

from compiler.frontend import capture, capture_and_lower, lower
from compiler.frontend.repeat import LayerStack, NotRepeated, find_layer_stack, first_layers, repeat_layers
from ir.text import print_graph


def canonical(graph) -> str:
    """The printed graph with every name replaced by its order of first appearance."""
    names: dict[str, str] = {}
    return re.sub(r"%[A-Za-z_][A-Za-z0-9_.]*",
                  lambda m: names.setdefault(m.group(0), f"%v{len(names)}"), print_graph(graph))


def meta_llama(layers=5):
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=layers, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=64)
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(config).eval()


def meta_gpt2(layers=4):
    config = transformers.GPT2Config(n_layer=layers, n_embd=64, n_head=4, vocab_size=128,
                                     n_positions=32, bos_token_id=0, eos_token_id=0)
    with torch.device("meta"):
        return transformers.GPT2LMHeadModel(config).eval()


def ids(seq=4, device="meta"):
    return (torch.zeros((1, seq), dtype=torch.long, device=device),)


@pytest.mark.parametrize("build, stack", [(meta_llama, LayerStack("model.layers", 5)),
                                          (meta_gpt2, LayerStack("transformer.h", 4))])
def test_stamped_ir_is_the_whole_trace(build, stack):
    model = build()
    assert find_layer_stack(model) == stack
    _, stamped = capture_and_lower(model, ids(), {})
    whole = lower(capture(model, ids(), {}))
    assert canonical(stamped.graph) == canonical(whole.graph)
    weights = [[p.name for p in g.params if not p.name.startswith("const.")]
               for g in (stamped.graph, whole.graph)]
    assert weights[0] == weights[1]  # the state-dict names; folded constants get fresh names
    last = f"{stack.path}.{stack.count - 1}."
    assert any(op.loc.module.startswith(last) for op in stamped.graph.ops)


def test_the_model_is_restored_after_tracing_two_layers():
    model = meta_llama()
    with first_layers(model, find_layer_stack(model), 2):
        assert len(model.model.layers) == 2
    assert len(model.model.layers) == 5


def test_models_with_weights_are_traced_whole():
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=3, num_attention_heads=2)
    assert find_layer_stack(transformers.LlamaForCausalLM(config)) is None


class Stack(torch.nn.Module):
    """Three layers alike in every attribute; `odd` makes layer 1 compute something else."""

    def __init__(self, odd=False, widths=(8, 8, 8)):
        super().__init__()
        with torch.device("meta"):
            self.layers = torch.nn.ModuleList(torch.nn.Linear(8, w) for w in widths)
        for i, layer in enumerate(self.layers):
            layer.layer_idx = i
        self.odd = odd

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
            x = torch.sigmoid(x) if self.odd and layer.layer_idx % 2 else torch.relu(x)
        return x


def test_layers_of_different_shapes_are_no_stack():
    assert find_layer_stack(Stack(widths=(8, 8, 8))) == LayerStack("layers", 3)
    assert find_layer_stack(Stack(widths=(8, 16, 8))) is None


def test_layers_that_compute_differently_are_traced_whole():
    model = Stack(odd=True)
    x = (torch.zeros(2, 8, device="meta"),)
    stack = find_layer_stack(model)
    with first_layers(model, stack, 2):
        two = lower(capture(model, x, {}))
    with pytest.raises(NotRepeated):
        repeat_layers(two, stack)
    _, lowered = capture_and_lower(model, x, {})
    assert [op.opname for op in lowered.graph.ops].count("sigmoid") == 1
    assert canonical(lowered.graph) == canonical(lower(capture(model, x, {})).graph)
