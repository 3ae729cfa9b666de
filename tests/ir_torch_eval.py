"""A test-only evaluator of IR graphs with torch functions: the oracle for frontend and pass tests.

Requires: a `Graph` whose ops are in the `ir.ops` registry, its inputs by name (tensors or arrays)
and its params by name (numpy arrays, e.g. `Lowered.params`).
Ensures: `run_graph` returns the graph's outputs as torch tensors, computed op by op with the IR's
meaning (one function per op in `OPS`), and fails if any op's result shape or dtype differs from
the type the IR declares for it.
"""
from __future__ import annotations

import math
import operator

import ml_dtypes
import numpy as np
import torch
import torch.nn.functional as F

from ir.graph import Graph, Op
from ir.types import DType

TORCH_DTYPES = {DType.f32: torch.float32, DType.f16: torch.float16, DType.bf16: torch.bfloat16,
                DType.fp8: torch.float8_e4m3fn, DType.i64: torch.int64, DType.i32: torch.int32,
                DType.i8: torch.int8, DType.bool: torch.bool}


def run_graph(graph: Graph, inputs: dict, params: dict) -> list[torch.Tensor]:
    env = {v: _tensor(inputs[v.name]) for v in graph.inputs}
    env.update({p: _tensor(params[p.name]) for p in graph.params})
    for op in graph.ops:
        result = OPS[op.opname]([env[v] for v in op.operands], op.attrs)
        _check_type(op, result)
        env[op.result] = result
    return [env[v] for v in graph.outputs]


def _tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if x.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(x.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(x))


def _check_type(op: Op, result: torch.Tensor) -> None:
    want = op.result.type
    got = (tuple(result.shape), result.dtype)
    assert got == (want.shape, TORCH_DTYPES[want.dtype]), f"{op}: computed {got}, IR says {want}"


# ---------------------------------------------------------------- op meanings

def _unary(fn):
    return lambda args, attrs: fn(args[0])


def _binary(fn):
    def run(args, attrs):
        if len(args) == 2:
            return fn(*args)
        x, scalar = args[0], attrs["scalar"]
        # A python scalar keeps the tensor's dtype, as in torch's own scalar overloads.
        return fn(scalar, x) if attrs.get("swap", False) else fn(x, scalar)
    return run


def _pow(a, b):
    return torch.pow(a, b)


def _maximum(a, b):
    return torch.clamp(a, min=b) if not isinstance(b, torch.Tensor) else torch.maximum(a, b)


def _minimum(a, b):
    return torch.clamp(a, max=b) if not isinstance(b, torch.Tensor) else torch.minimum(a, b)


def _reduce(fn):
    def run(args, attrs):
        return fn(args[0], dim=list(attrs["dims"]), keepdim=attrs.get("keepdim", False))
    return run


def _layer_norm(args, attrs):
    x = args[0]
    shape = x.shape[x.dim() - attrs["ndim"]:]
    weight = args[1] if len(args) > 1 else None
    bias = args[2] if len(args) > 2 else None
    return F.layer_norm(x, shape, weight, bias, attrs["eps"])


def _linear(args, attrs):
    return F.linear(*args)


def _slice(args, attrs):
    x, d = args[0], attrs["dim"]
    index = [slice(None)] * x.dim()
    index[d] = slice(attrs["start"], attrs["end"], attrs.get("step", 1))
    return x[tuple(index)]


def _sdpa(args, attrs):
    """Query head h reads kv head h // (Hq / Hkv); `causal` is torch's top-left is_causal, and a
    `window` of W hides keys j with i - j >= W from query i."""
    q, k, v = args[:3]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    mask = args[3] if len(args) > 3 else None
    if attrs["causal"] or attrs.get("window"):
        visible = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool)
        if attrs["causal"]:
            visible = visible.tril()
        if attrs.get("window"):
            visible = visible & ~visible.new_ones(visible.shape).tril(-attrs["window"])
        mask = visible if mask is None else _combine_masks(visible, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attrs["scale"])


def _combine_masks(causal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return causal & mask
    return mask.masked_fill(~causal, -math.inf)


OPS = {
    **{name: _binary(fn) for name, fn in {
        "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
        "pow": _pow, "maximum": _maximum, "minimum": _minimum,
        "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
        "gt": operator.gt, "ge": operator.ge,
        "logical_and": torch.logical_and, "logical_or": torch.logical_or}.items()},
    **{name: _unary(fn) for name, fn in {
        "neg": torch.neg, "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
        "rsqrt": torch.rsqrt, "relu": torch.relu, "silu": F.silu, "sigmoid": torch.sigmoid,
        "tanh": torch.tanh, "abs": torch.abs}.items()},
    "gelu": lambda args, attrs: F.gelu(args[0], approximate=attrs.get("approximate", "none")),
    "cast": lambda args, attrs: args[0].to(TORCH_DTYPES[DType(attrs["dtype"])]),
    "where": lambda args, attrs: torch.where(*args),
    "sum": _reduce(torch.sum),
    "mean": _reduce(torch.mean),
    "amax": _reduce(torch.amax),
    "softmax": lambda args, attrs: torch.softmax(args[0], attrs["dim"]),
    "layer_norm": _layer_norm,
    "linear": _linear,
    "matmul": lambda args, attrs: torch.matmul(*args),
    "embedding": lambda args, attrs: F.embedding(args[1], args[0]),
    "reshape": lambda args, attrs: args[0].reshape(attrs["shape"]),
    "permute": lambda args, attrs: args[0].permute(attrs["perm"]),
    "expand": lambda args, attrs: args[0].expand(attrs["shape"]),
    "slice": _slice,
    "cat": lambda args, attrs: torch.cat(args, attrs["dim"]),
    "sdpa": _sdpa,
}


def run_lowered(lowered, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run a frontend `Lowered` on its tensor inputs, given in the graph's input order."""
    return run_graph(lowered.graph, dict(zip(lowered.input_names, inputs)), lowered.params)
