"""A small MLP: `waferc compile examples/mlp.py:model --target toy -o build/mlp`."""
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, d_in=32, d_hidden=64, d_out=16):
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(d_hidden, d_hidden, bias=False)
        self.fc3 = nn.Linear(d_hidden, d_out)

    def forward(self, x):
        h = self.act(self.fc1(self.norm(x)))
        h = torch.relu(self.fc2(h)) + h
        return torch.softmax(self.fc3(h), dim=-1)


torch.manual_seed(0)
model = MLP().eval()
example_inputs = (torch.randn(4, 32),)
