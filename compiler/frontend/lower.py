"""Lower a captured FX graph of ATen ops to waferc's IR.

Requires: a `Captured` program (see capture.py) with static shapes.
Ensures: a `Lowered` whose `graph` holds one IR op (or a few) per remaining ATen node, each typed by
`ir.ops` and checked against the shape and dtype torch recorded for that node, and each carrying a
`SourceLoc` (the innermost module path and the user's file:line). Compile-time values are folded
first (fold.py); no-ops (`clone`, `detach`, eval-mode `dropout`, same-dtype `to`, ...) vanish.
Parameters and used buffers become IR params named by their state_dict target
(`model.layers.0.self_attn.q_proj.weight`), folded values become params named `const.<node>`; their
data is in `params` (None when it lives on the `meta` device: a size-only compile). Non-tensor user
inputs (HF's `use_cache`) are dropped. The first ATen op without a table entry, in graph order,
raises `UnsupportedOpError` naming it, with its location.

Each entry of `ATEN_OPS` takes a `NodeBuilder` and the node's arguments as the ATen schema names
them (FX nodes already replaced by IR values), and returns the node's IR value.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from numbers import Number
from typing import Callable

import numpy as np
import torch
from torch.export.graph_signature import InputKind, OutputKind
from torch.fx import Node
from torch.fx.node import map_arg

from compiler.frontend.capture import Captured, source_loc, to_numpy
from compiler.frontend.fold import Folding, MaskPattern, fold_constants, state_tensor
from ir import ops
from ir.errors import CompilerError, SourceLoc, UnsupportedOpError, VerifyError
from ir.graph import Graph, NameGen, Op, Value
from ir.types import DType, TensorType
from ir.verify import NAME_RE


@dataclass
class Lowered:
    graph: Graph
    params: dict[str, np.ndarray | None]  # by IR param name; None = size only (meta device)
    input_names: list[str]                # the graph's tensor user inputs, in call order
    out_spec: str | None                  # the model's output pytree spec (`treespec_dumps` JSON)


def lower(captured: Captured) -> Lowered:
    """Fold constants, then translate the exported graph node by node."""
    exported = captured.exported
    lowering = _Lowering(exported, fold_constants(exported), captured.name, captured.window)
    for node in exported.graph.nodes:
        lowering.visit(node)
    graph = lowering.graph
    return Lowered(graph, lowering.params, [v.name for v in graph.inputs], captured.out_spec)


# ---------------------------------------------------------------- types and data

_DTYPES = {torch.float32: DType.f32, torch.float16: DType.f16, torch.bfloat16: DType.bf16,
           torch.float8_e4m3fn: DType.fp8, torch.int64: DType.i64, torch.int32: DType.i32,
           torch.int8: DType.i8, torch.bool: DType.bool}


def ir_dtype(dtype: torch.dtype, loc: SourceLoc | None = None) -> DType:
    if dtype not in _DTYPES:
        raise CompilerError(f"tensors of dtype {dtype} are not supported", loc,
                            hint=f"supported dtypes: {', '.join(str(d) for d in _DTYPES)}")
    return _DTYPES[dtype]


def tensor_type(t: torch.Tensor, loc: SourceLoc | None = None) -> TensorType:
    return TensorType(tuple(int(d) for d in t.shape), ir_dtype(t.dtype, loc))


# ---------------------------------------------------------------- the walk over the FX graph

class _Lowering:
    """Walks the exported graph in order; one `_visit_<opcode>` method per FX opcode."""

    def __init__(self, exported, folding: Folding, name: str, window: int | None = None):
        self.exported = exported
        self.folding = folding
        self.window = window  # the model's sliding window (`Captured.window`)
        self.graph = Graph(name)
        self.params: dict[str, np.ndarray | None] = {}
        self.env: dict[Node, object] = {}  # FX node -> IR Value, python literal, or _Pieces
        self.specs = {spec.arg.name: spec for spec in exported.graph_signature.input_specs}
        # Reserve every FX name, so helper values named `<node>_<tag>` never take a node's name.
        self.names = NameGen({n.name for n in exported.graph.nodes})

    def visit(self, node: Node) -> None:
        getattr(self, f"_visit_{node.op}")(node)

    def _visit_placeholder(self, node: Node) -> None:
        spec = self.specs[node.name]
        val = node.meta.get("val")
        if spec.kind == InputKind.USER_INPUT:
            if isinstance(val, torch.Tensor):
                self.env[node] = self._add_input(node.name, tensor_type(val))
            else:  # e.g. `use_cache=False`: export specialised on it, nothing reads it
                self.env[node] = val
        elif self._placeholder_is_read(node, spec.kind):
            data = state_tensor(self.exported, spec.target)
            self.env[node] = self._add_param(spec.target, tensor_type(val), to_numpy(data))

    def _placeholder_is_read(self, node: Node, kind: InputKind) -> bool:
        if kind == InputKind.PARAMETER:
            return bool(node.users)
        return node in self.folding.frontier

    def _visit_call_function(self, node: Node) -> None:
        if node in self.folding.constants:
            self.env[node] = self._add_constant(node, self.folding.constants[node])
        elif node not in self.folding.folded:
            self.env[node] = self._translate(node)

    def _visit_get_attr(self, node: Node) -> None:
        pass  # submodules of higher-order ops; the op that calls one is reported as unsupported

    def _visit_output(self, node: Node) -> None:
        for spec, arg in zip(self.exported.graph_signature.output_specs, node.args[0]):
            if spec.kind != OutputKind.USER_OUTPUT:
                raise UnsupportedOpError(f"the model mutates state ({spec.kind.name} of "
                                         f"{spec.target}); waferc compiles pure inference graphs")
            value = self.env.get(arg) if isinstance(arg, Node) else arg
            if not isinstance(value, Value):
                raise CompilerError(f"model output {spec.arg.name} is not a tensor ({value!r})")
            self.graph.outputs.append(value)

    def _translate(self, node: Node):
        loc = source_loc(node)
        builder = ATEN_OPS.get(node.target)
        if builder is None:
            raise UnsupportedOpError(f"unsupported operation {_op_name(node)}", loc,
                                     hint="waferc lowers the ATen ops listed in "
                                          "compiler/frontend/lower.py ATEN_OPS")
        args, kwargs = map_arg((node.args, node.kwargs), self._lookup)
        result = builder(NodeBuilder(self, node, loc), *args, **kwargs)
        if isinstance(result, Value):
            _check_matches_torch(node, result, loc)
        return result

    def _lookup(self, node: Node):
        if node in self.env:
            return self.env[node]
        if node in self.folding.folded:
            return None  # only a recognised sdpa mask, folded away, is read without being kept
        raise KeyError(f"{node.name} is used before it is lowered")

    def _add_input(self, name: str, ttype: TensorType) -> Value:
        value = Value(name, ttype)  # the placeholder's name, reserved for it in `names`
        self.graph.inputs.append(value)
        return value

    def _add_param(self, name: str, ttype: TensorType, data: np.ndarray | None) -> Value:
        value = Value(self._param_name(name), ttype)
        self.graph.params.append(value)
        self.params[value.name] = data
        return value

    def _param_name(self, target: str) -> str:
        """The state_dict name itself, unless it is no IR name (`0.weight` of a top-level
        Sequential) or clashes with an input's name; then the nearest fresh name."""
        name = target if NAME_RE.fullmatch(target) else "_" + re.sub(r"[^A-Za-z0-9_.]", "_", target)
        if name in self.names.taken:
            return self.names.fresh(name)
        self.names.taken.add(name)
        return name

    def _add_constant(self, node: Node, value):
        if isinstance(value, Number):
            return value  # e.g. a folded `.item()`: a python literal in its users' arguments
        if not isinstance(value, torch.Tensor):
            raise CompilerError(f"cannot fold {_op_name(node)} producing {type(value).__name__}",
                                source_loc(node))
        return self._add_param(f"const.{node.name}", tensor_type(value, source_loc(node)),
                               to_numpy(value))


def _op_name(node: Node) -> str:
    """`aten.cumprod.default` for ATen ops, the function's name for python callables."""
    if isinstance(node.target, torch._ops.OpOverload):
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target))


def _check_matches_torch(node: Node, value: Value, loc: SourceLoc) -> None:
    # A mismatch is a bug in a table entry, reported at the user's line to make it findable.
    expected = tensor_type(node.meta["val"], loc)
    if value.type != expected:
        raise VerifyError(f"internal error: lowering {_op_name(node)} gave {value.type}, "
                          f"torch computes {expected}", loc)


class NodeBuilder:
    """What a table entry uses to emit the IR ops of one FX node."""

    def __init__(self, lowering: _Lowering, node: Node, loc: SourceLoc):
        self.node = node
        self.loc = loc
        self._lowering = lowering
        self._own_name_used = False

    @property
    def out(self) -> TensorType:
        """The node's result type as torch recorded it."""
        return tensor_type(self.node.meta["val"], self.loc)

    @property
    def mask_pattern(self) -> MaskPattern | None:
        """The pattern of an sdpa node's folded mask, when lowering states it by attributes."""
        return self._lowering.folding.sdpa_masks.get(self.node)

    @property
    def model_window(self) -> int | None:
        """The sliding window the model's config declares for every attention, if any."""
        return self._lowering.window

    def emit(self, opname: str, operands: list[Value], tag: str = "", **attrs) -> Value:
        """Append an op. Untagged, its value takes the node's name; tagged ones are helpers."""
        try:
            rtype = ops.infer(opname, [v.type for v in operands], attrs)
        except ops.ShapeError as exc:
            raise VerifyError(f"{_op_name(self.node)}: {exc}", self.loc) from None
        value = Value(self._value_name(tag), rtype)
        self._lowering.graph.ops.append(Op(opname, list(operands), [value], attrs, self.loc))
        return value

    def cast(self, value: Value, dtype: DType) -> Value:
        if value.type.dtype == dtype:
            return value
        return self.emit("cast", [value], tag=f"to_{dtype}", dtype=dtype.value)

    def promoted_dtype(self) -> DType:
        """torch's type promotion over the node's first two arguments."""
        a, b = (x.meta["val"] if isinstance(x, Node) else x for x in self.node.args[:2])
        return ir_dtype(torch.result_type(a, b), self.loc)

    def unsupported(self, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"unsupported use of {_op_name(self.node)}: {why}", self.loc)

    def _value_name(self, tag: str) -> str:
        if tag:
            return self._lowering.names.fresh(f"{self.node.name}_{tag}")
        if self._own_name_used:
            return self._lowering.names.fresh(self.node.name)
        self._own_name_used = True
        return self.node.name


# ---------------------------------------------------------------- table entries: elementwise

Builder = Callable[..., object]


def _unary(opname: str) -> Builder:
    def build(b: NodeBuilder, x: Value) -> Value:
        return b.emit(opname, [b.cast(x, b.out.dtype)])
    return build


def _arith(opname: str, swap: bool = False) -> Builder:
    """Binary arithmetic computed in torch's result dtype; `swap` for `rsub` (other - self)."""
    def build(b: NodeBuilder, x, y, *, alpha=1, rounding_mode=None) -> Value:
        if alpha != 1:
            raise b.unsupported(f"alpha={alpha}")
        if rounding_mode is not None:
            raise b.unsupported(f"rounding_mode={rounding_mode!r}")
        x, y = (y, x) if swap else (x, y)
        return _binary(b, opname, x, y, b.out.dtype)
    return build


def _compare(opname: str) -> Builder:
    def build(b: NodeBuilder, x, y) -> Value:
        return _binary(b, opname, x, y, b.promoted_dtype())
    return build


def _logical(opname: str) -> Builder:
    def build(b: NodeBuilder, x: Value, y: Value) -> Value:
        if not all(isinstance(v, Value) and v.type.dtype == DType.bool for v in (x, y)):
            raise b.unsupported("only bool tensors are supported")
        return b.emit(opname, [x, y])
    return build


def _binary(b: NodeBuilder, opname: str, x, y, dtype: DType) -> Value:
    """Two tensors, or a tensor and a python scalar (`scalar` attr; `swap` if it is on the left)."""
    if isinstance(x, Value) and isinstance(y, Value):
        return b.emit(opname, [b.cast(x, dtype), b.cast(y, dtype)])
    if isinstance(x, Value):
        return b.emit(opname, [b.cast(x, dtype)], scalar=y)
    return b.emit(opname, [b.cast(y, dtype)], scalar=x, swap=True)


def _gelu(b: NodeBuilder, x: Value, *, approximate: str = "none") -> Value:
    return b.emit("gelu", [x], approximate=approximate)


def _where(b: NodeBuilder, cond: Value, x: Value, y: Value) -> Value:
    if not all(isinstance(v, Value) for v in (cond, x, y)):
        raise b.unsupported("python scalar operands")
    dtype = b.out.dtype
    return b.emit("where", [cond, b.cast(x, dtype), b.cast(y, dtype)])


def _convert(b: NodeBuilder, x: Value, *args, **kwargs) -> Value:
    """Every `to`/`_to_copy` overload: a cast if the dtype changes, else nothing (devices are
    ours to choose)."""
    return b.cast(x, b.out.dtype)


def _identity(b: NodeBuilder, x: Value, *args, **kwargs) -> Value:
    return x


def _dropout(b: NodeBuilder, x: Value, p: float, train: bool) -> Value:
    if train:
        raise b.unsupported("dropout in training mode")
    return x


def _no_value(b: NodeBuilder, *args, **kwargs) -> None:
    return None  # runtime assertions about metadata torch already checked while tracing


# ---------------------------------------------------------------- table entries: reductions, norms

def _reduction(opname: str) -> Builder:
    def build(b: NodeBuilder, x: Value, dim=None, keepdim: bool = False, *, dtype=None) -> Value:
        rank = x.type.rank
        dims = [dim] if isinstance(dim, int) else list(dim or range(rank))
        x = b.cast(x, b.out.dtype)  # `dtype=`, and sums of ints/bools accumulate in i64
        return b.emit(opname, [x], dims=[ops.norm_dim(d, rank) for d in dims], keepdim=keepdim)
    return build


def _softmax(b: NodeBuilder, x: Value, dim: int, dtype_or_half=None) -> Value:
    x = b.cast(x, b.out.dtype)
    return b.emit("softmax", [x], dim=ops.norm_dim(dim, x.type.rank))


def _layer_norm(b: NodeBuilder, x: Value, normalized_shape, weight=None, bias=None,
                eps: float = 1e-5, cudnn_enable: bool = True) -> Value:
    if weight is None and bias is not None:
        raise b.unsupported("a bias without a weight")
    operands = [v for v in (x, weight, bias) if v is not None]
    return b.emit("layer_norm", operands, ndim=len(normalized_shape), eps=float(eps))


# ---------------------------------------------------------------- table entries: contractions

def _linear(b: NodeBuilder, x: Value, weight: Value, bias: Value | None = None) -> Value:
    return b.emit("linear", [x, weight] + ([bias] if bias is not None else []))


def _addmm(b: NodeBuilder, bias: Value, x: Value, w: Value, *, beta=1, alpha=1) -> Value:
    """GPT-2's Conv1D: bias + x @ W with W stored [in, out] (so not a `linear`)."""
    if beta != 1 or alpha != 1:
        raise b.unsupported(f"beta={beta}, alpha={alpha}")
    return b.emit("add", [b.emit("matmul", [x, w], tag="mm"), bias])


def _matmul(b: NodeBuilder, x: Value, y: Value) -> Value:
    """mm, bmm and matmul; 1-d operands are made 2-d and the result reshaped as torch does."""
    if x.type.rank >= 2 and y.type.rank >= 2:
        return b.emit("matmul", [x, y])
    if x.type.rank == 1:
        x = b.emit("reshape", [x], tag="row", shape=[1, x.type.shape[0]])
    if y.type.rank == 1:
        y = b.emit("reshape", [y], tag="col", shape=[y.type.shape[0], 1])
    product = b.emit("matmul", [x, y], tag="mm")
    return b.emit("reshape", [product], shape=list(b.out.shape))


def _embedding(b: NodeBuilder, table: Value, ids: Value, *args, **kwargs) -> Value:
    return b.emit("embedding", [table, ids])


def _sdpa(b: NodeBuilder, q: Value, k: Value, v: Value, attn_mask=None, dropout_p: float = 0.0,
          is_causal: bool = False, *, scale=None, enable_gqa: bool = False) -> Value:
    if dropout_p:
        raise b.unsupported(f"dropout_p={dropout_p}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.type.shape[-1])
    pattern = b.mask_pattern  # a recognised mask is dropped for attributes
    masked = attn_mask is not None and pattern is None
    operands = [q, k, v] + ([attn_mask] if masked else [])
    causal = bool(is_causal or (pattern is not None and pattern.causal))
    window = pattern.window if pattern is not None else None
    if window is None and causal and not masked and b.model_window is not None \
            and k.type.shape[-2] <= b.model_window:
        # The trace is no longer than the window, so its mask could not show it; the KV cache
        # must still keep only the window's keys. Within the trace it hides nothing.
        window = b.model_window
    return b.emit("sdpa", operands, scale=float(scale), causal=causal,
                  **({"window": window} if window else {}))


# ---------------------------------------------------------------- table entries: data movement

def _reshape_to_result(b: NodeBuilder, x: Value, *args, **kwargs) -> Value:
    """view/reshape/squeeze/unsqueeze/flatten: the target shape is torch's (with -1 resolved)."""
    return b.emit("reshape", [x], shape=list(b.out.shape))


def _expand(b: NodeBuilder, x: Value, size, *, implicit: bool = False) -> Value:
    return b.emit("expand", [x], shape=list(b.out.shape))


def _permute(b: NodeBuilder, x: Value, dims) -> Value:
    return b.emit("permute", [x], perm=[ops.norm_dim(d, x.type.rank) for d in dims])


def _transpose(b: NodeBuilder, x: Value, dim0: int, dim1: int) -> Value:
    perm = list(range(x.type.rank))
    d0, d1 = ops.norm_dim(dim0, x.type.rank), ops.norm_dim(dim1, x.type.rank)
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return b.emit("permute", [x], perm=perm)


def _t(b: NodeBuilder, x: Value) -> Value:
    return _transpose(b, x, 0, 1) if x.type.rank == 2 else x


def _cat(b: NodeBuilder, tensors: list[Value], dim: int = 0) -> Value:
    values = [b.cast(t, b.out.dtype) for t in tensors]
    return b.emit("cat", values, dim=ops.norm_dim(dim, values[0].type.rank))


def _slice(b: NodeBuilder, x: Value, dim: int = 0, start=None, end=None, step: int = 1) -> Value:
    return _emit_slice(b, x, ops.norm_dim(dim, x.type.rank), start, end, step)


def _emit_slice(b: NodeBuilder, x: Value, dim: int, start, end, step: int = 1, tag: str = ""):
    # Python slicing semantics: negative bounds count from the end, ends clamp to the size.
    start, end, step = slice(start, end, step).indices(x.type.shape[dim])
    attrs = {"dim": dim, "start": start, "end": end} | ({"step": step} if step != 1 else {})
    return b.emit("slice", [x], tag=tag, **attrs)


def _select(b: NodeBuilder, x: Value, dim: int, index: int) -> Value:
    dim = ops.norm_dim(dim, x.type.rank)
    index = index % x.type.shape[dim]
    row = _emit_slice(b, x, dim, index, index + 1, tag="slice")
    return b.emit("reshape", [row], shape=list(b.out.shape))


@dataclass
class _Pieces:
    """A split's results, made into slices only when a `getitem` reads one (no dead slices)."""

    source: Value
    dim: int
    bounds: list[tuple[int, int]]
    squeeze: bool = False  # unbind drops the split dimension


def _split(b: NodeBuilder, x: Value, split_size: int, dim: int = 0) -> _Pieces:
    dim = ops.norm_dim(dim, x.type.rank)
    size = x.type.shape[dim]
    return _Pieces(x, dim, [(i, min(i + split_size, size)) for i in range(0, size, split_size)])


def _chunk(b: NodeBuilder, x: Value, chunks: int, dim: int = 0) -> _Pieces:
    size = x.type.shape[ops.norm_dim(dim, x.type.rank)]
    return _split(b, x, max(1, -(-size // chunks)), dim)  # torch: ceil(size / chunks) per piece


def _split_with_sizes(b: NodeBuilder, x: Value, split_sizes, dim: int = 0) -> _Pieces:
    starts = np.cumsum([0, *split_sizes]).tolist()
    return _Pieces(x, ops.norm_dim(dim, x.type.rank), list(zip(starts[:-1], starts[1:])))


def _unbind(b: NodeBuilder, x: Value, dim: int = 0) -> _Pieces:
    dim = ops.norm_dim(dim, x.type.rank)
    return _Pieces(x, dim, [(i, i + 1) for i in range(x.type.shape[dim])], squeeze=True)


def _getitem(b: NodeBuilder, pieces, index: int) -> Value:
    if not isinstance(pieces, _Pieces):
        raise b.unsupported(f"indexing a {type(pieces).__name__}")
    start, end = pieces.bounds[index]
    if not pieces.squeeze:
        return _emit_slice(b, pieces.source, pieces.dim, start, end)
    piece = _emit_slice(b, pieces.source, pieces.dim, start, end, tag="slice")
    return b.emit("reshape", [piece], shape=list(b.out.shape))


# ---------------------------------------------------------------- the table

aten = torch.ops.aten

ATEN_OPS: dict[object, Builder] = {
    aten.linear.default: _linear,
    aten.addmm.default: _addmm,
    aten.mm.default: _matmul,
    aten.bmm.default: _matmul,
    aten.matmul.default: _matmul,
    aten.embedding.default: _embedding,
    aten.scaled_dot_product_attention.default: _sdpa,
    aten.add.Tensor: _arith("add"), aten.add.Scalar: _arith("add"),
    aten.sub.Tensor: _arith("sub"), aten.sub.Scalar: _arith("sub"),
    aten.rsub.Tensor: _arith("sub", swap=True), aten.rsub.Scalar: _arith("sub", swap=True),
    aten.mul.Tensor: _arith("mul"), aten.mul.Scalar: _arith("mul"),
    aten.div.Tensor: _arith("div"), aten.div.Scalar: _arith("div"),
    aten.div.Tensor_mode: _arith("div"),
    aten.pow.Tensor_Scalar: _arith("pow"), aten.pow.Tensor_Tensor: _arith("pow"),
    aten.pow.Scalar: _arith("pow"),
    aten.maximum.default: _arith("maximum"), aten.minimum.default: _arith("minimum"),
    **{getattr(aten, name).default: _unary(name)
       for name in ("neg", "exp", "log", "sqrt", "rsqrt", "relu", "silu", "sigmoid", "tanh",
                    "abs")},
    aten.gelu.default: _gelu,
    **{getattr(getattr(aten, name), overload): _compare(name)
       for name in ("eq", "ne", "lt", "le", "gt", "ge") for overload in ("Tensor", "Scalar")},
    aten.logical_and.default: _logical("logical_and"),
    aten.logical_or.default: _logical("logical_or"),
    aten.__and__.Tensor: _logical("logical_and"), aten.bitwise_and.Tensor: _logical("logical_and"),
    aten.__or__.Tensor: _logical("logical_or"), aten.bitwise_or.Tensor: _logical("logical_or"),
    aten.where.self: _where,
    aten.mean.dim: _reduction("mean"), aten.mean.default: _reduction("mean"),
    aten.sum.dim_IntList: _reduction("sum"), aten.sum.default: _reduction("sum"),
    aten.amax.default: _reduction("amax"),
    aten.softmax.int: _softmax, aten._softmax.default: _softmax,
    aten.layer_norm.default: _layer_norm,
    **{op: _reshape_to_result for op in (
        aten.view.default, aten.reshape.default, aten._unsafe_view.default,
        aten.unsqueeze.default, aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims,
        aten.flatten.using_ints, aten.unflatten.int)},
    aten.expand.default: _expand,
    aten.permute.default: _permute,
    aten.transpose.int: _transpose,
    aten.t.default: _t,
    aten.cat.default: _cat,
    aten.slice.Tensor: _slice,
    aten.select.int: _select,
    aten.split.Tensor: _split,
    aten.split_with_sizes.default: _split_with_sizes,
    aten.chunk.default: _chunk,
    aten.unbind.int: _unbind,
    operator.getitem: _getitem,
    **{op: _convert for op in (aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten.to.other,
                               aten._to_copy.default, aten.type_as.default)},
    **{op: _identity for op in (aten.detach.default, aten.clone.default, aten.alias.default,
                                aten.contiguous.default, aten.lift_fresh_copy.default)},
    aten.dropout.default: _dropout,
    aten._assert_tensor_metadata.default: _no_value,
    aten._assert_scalar.default: _no_value,
}
