"""A 2-layer GPT-2 built from a config (random weights, fixed seed):
`waferc compile examples/gpt2_tiny.py:model --target toy -o build/gpt2`."""
import torch
from transformers import GPT2Config, GPT2LMHeadModel

torch.manual_seed(0)
config = GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                    bos_token_id=0, eos_token_id=0)
model = GPT2LMHeadModel(config).eval()
example_inputs = (torch.randint(0, config.vocab_size, (1, 8)),)
