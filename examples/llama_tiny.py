"""A 2-layer Llama with grouped-query attention, built from a config (random weights, fixed seed):
`waferc compile examples/llama_tiny.py:model --target toy -o build/llama`."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

torch.manual_seed(0)
config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
model = LlamaForCausalLM(config).eval()
example_inputs = (torch.randint(0, config.vocab_size, (1, 8)),)
