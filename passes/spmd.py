"""SPMD lowering: one kernel on a w x h region → the WKL program every PE of the region runs.

requires: a Kernel from PartitionPass and a region shape.
ensures:  a KernelProgram whose `in`/`out` tensors are the kernel's inputs/outputs (by IR value
          name), whose tiles hold exactly the kernel's parameters, and that computes the kernel's
          ops on per-PE blocks.

Two mappings:
* linear/embedding kernels use the canonical GEMV mapping: the weight is tiled over the region
  (rows of the output over `py`, the contracted dim over `px`), the input enters along the columns,
  partial products are summed along each row with `reduce_row`, and the epilogue runs on the row's
  block of the output; the row ends (`px == w-1`) store it. A `qlinear` tiles its quantised
  weight exactly so, and its per-output-channel scale over `py` like the bias.
* vector kernels shard every value along one tensor dim over the region's PEs in row-major order
  (PE number `py*w + px`), found by propagating a seed sharding through per-op dim rules
  (`passes/shard_rules.py`); values the propagation never reaches are replicated. A slice of a
  kernel input (a block load) is a `load` of the PE's block at the slice's offset, no compute.

With a `max_context`, every decoder attention kernel also keeps its KV cache resident (`state`
buffers; see `_kept_tokens`):
split like the attention's keys across the shards, and along the context across the PEs that share
a shard, so a long context spreads over a large region even when the heads are few.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ir import ops
from ir.graph import NameGen, Op, Value
from ir.kernels import Kernel
from ir.types import TensorType
from ir.wkl import Affine, Compute, Cond, KernelProgram, Load, Slice, State, Store, TensorDecl, Tile
from passes.shard_rules import ShardPlan, is_block_load, is_cross_shard, plan_sharding

WHOLE = Slice()


@dataclass
class _Builder:
    """Accumulates a kernel body; knows which IR values already have a local on every PE."""

    kernel: Kernel
    body: list = field(default_factory=list)
    local: dict = field(default_factory=dict)  # Value computed in this kernel -> local name
    fetched: dict = field(default_factory=dict)  # (Value, slices) brought in -> local name
    names: NameGen = field(default_factory=NameGen)

    def __post_init__(self):
        self.boundary = {v.name for v in self.kernel.inputs + self.kernel.outputs}
        self.names = NameGen(self.boundary | {p.name for p in self.kernel.params})
        self.params = set(self.kernel.params)

    def fetch(self, v: Value, slices: list[Slice], local_type: TensorType) -> str:
        """The local holding `v`'s block: a value computed here, else a resident tile for a
        parameter or a load of an input (one per distinct block: a GEMV input is also needed split
        by rows when the epilogue adds it as a residual)."""
        if v in self.local:
            return self.local[v]
        key = (v, tuple(slices))
        if key in self.fetched:
            return self.fetched[key]
        if v in self.params:
            name = self.names.fresh(v.name.rsplit(".", 1)[-1])
            self.body.append(Tile(name, local_type, v.name, slices))
        else:
            name = self.names.fresh(f"{v.name}_blk")
            self.body.append(Load(name, local_type, v.name, slices))
        self.fetched[key] = name
        return name

    def compute(self, opname: str, args: list[str], t: TensorType, attrs: dict, value: Value | None = None,
                hint: str = "") -> str:
        hint = hint or (value.name if value is not None else opname)
        name = self.names.fresh(f"{hint}_blk" if hint in self.boundary else hint)
        self.body.append(Compute(name, t, opname, list(args), dict(attrs)))
        if value is not None:
            self.local[value] = name
        return name

    def program(self) -> KernelProgram:
        k = self.kernel
        return KernelProgram(
            name=k.name, ins=[TensorDecl(v.name, v.type) for v in k.inputs],
            outs=[TensorDecl(v.name, v.type) for v in k.outputs], body=self.body,
            kind=k.kind, layer=k.layer, source=str(k.loc) if k.loc.module or k.loc.file else "")


def lower_kernel(kernel: Kernel, w: int, h: int, plan: ShardPlan | None = None,
                 max_context: int | None = None) -> KernelProgram:
    """The WKL program for `kernel` on a w x h region (`plan`: a cached vector sharding plan;
    `max_context`: tokens of KV cache each attention keeps resident)."""
    if kernel.kind in ("linear", "embedding"):
        return _lower_gemv(kernel, w, h)
    return _lower_vector(kernel, w, h, plan or plan_sharding(kernel), max_context)


# ------------------------------------------------------------------ GEMV mapping

def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _lower_gemv(kernel: Kernel, w: int, h: int) -> KernelProgram:
    b = _Builder(kernel)
    anchor = kernel.ops[0]
    n_out = anchor.result.type.shape[-1]
    bn = _ceil(n_out, h)
    if anchor.opname == "embedding":
        partial = _embedding_partial(b, anchor, w, h, bn)
    else:
        partial = _linear_partial(b, anchor, w, h, bn)
    row_type = anchor.result.type.with_shape(anchor.result.type.shape[:-1] + (bn,))
    cur = b.compute("reduce_row", [partial], row_type, {}, hint=f"{anchor.result.name}_sum") if w > 1 else partial
    bias = _bias_operand(anchor)
    if bias is not None:
        bias_l = b.fetch(bias, [Slice.block(bn, "py")], bias.type.with_shape((bn,)))
        cur = b.compute("add", [cur, bias_l], row_type, {}, anchor.result)
    b.local[anchor.result] = cur
    for op in kernel.ops[1:]:
        args = [b.fetch(v, *_row_block(v, n_out, bn)) for v in op.operands]
        b.compute(op.opname, args, _row_block(op.result, n_out, bn)[1], op.attrs, op.result)
    for v in kernel.outputs:
        slices, _ = _row_block(v, n_out, bn)
        b.body.append(Store(v.name, slices, b.local[v], Cond(px=w - 1)))
    return b.program()


def _row_block(v: Value, n_out: int, bn: int) -> tuple[list[Slice], TensorType]:
    """The block of `v` a region row holds, when the output's last dim is split over rows."""
    shape = v.type.shape
    if shape and shape[-1] == n_out:
        return [WHOLE] * (len(shape) - 1) + [Slice.block(bn, "py")], v.type.with_shape(shape[:-1] + (bn,))
    return [WHOLE] * len(shape), v.type


def _bias_operand(anchor: Op) -> Value | None:
    """The bias a linear/qlinear adds after the row reduction (operands past weight and scale)."""
    first = {"linear": 2, "qlinear": 3}.get(anchor.opname)
    return anchor.operands[first] if first is not None and len(anchor.operands) > first else None


def _linear_partial(b: _Builder, anchor: Op, w: int, h: int, bn: int) -> str:
    x, weight = anchor.operands[0], anchor.operands[1]
    k_in = x.type.shape[-1]
    bk = _ceil(k_in, w)
    if anchor.opname in ("linear", "qlinear"):  # weight [N, K]
        wt = b.fetch(weight, [Slice.block(bn, "py"), Slice.block(bk, "px")], weight.type.with_shape((bn, bk)))
    else:                                       # matmul against a [K, N] weight
        wt = b.fetch(weight, [Slice.block(bk, "px"), Slice.block(bn, "py")], weight.type.with_shape((bk, bn)))
    xs = b.fetch(x, [WHOLE] * (x.type.rank - 1) + [Slice.block(bk, "px")],
                 x.type.with_shape(x.type.shape[:-1] + (bk,)))
    args = [xs, wt]
    if anchor.opname == "qlinear":  # a row's scales are tiled like its bias: the row's output block
        scale = anchor.operands[2]
        args.append(b.fetch(scale, [Slice.block(bn, "py")], scale.type.with_shape((bn,))))
    out_t = anchor.result.type.with_shape(anchor.result.type.shape[:-1] + (bn,))
    return b.compute(anchor.opname, args, out_t, {}, hint=f"{anchor.result.name}_part")


def _embedding_partial(b: _Builder, anchor: Op, w: int, h: int, bn: int) -> str:
    """Rows of the table are split over columns: each PE looks up the ids that fall in its rows."""
    table, ids = anchor.operands
    bv = _ceil(table.type.shape[0], w)
    tile = b.fetch(table, [Slice.block(bv, "px"), Slice.block(bn, "py")], table.type.with_shape((bv, bn)))
    ids_l = b.fetch(ids, [WHOLE] * ids.type.rank, ids.type)
    out_t = anchor.result.type.with_shape(anchor.result.type.shape[:-1] + (bn,))
    return b.compute("embedding", [tile, ids_l], out_t, {"offset": Affine(px=bv)},
                     hint=f"{anchor.result.name}_part")


# ------------------------------------------------------------------ vector mapping

def _lower_vector(kernel: Kernel, w: int, h: int, plan: ShardPlan, max_context: int | None) -> KernelProgram:
    b = _Builder(kernel)
    n = plan.shards(w * h)
    if max_context:
        _kv_cache(b, kernel, plan, n, w * h, max_context)
    for op in kernel.ops:
        if is_block_load(op, kernel):
            _load_block(b, op, plan, n, w)
            continue
        args = [b.fetch(v, *_shard_block(v, plan, n, w)) for v in op.operands]
        local_t = _shard_block(op.result, plan, n, w)[1]
        if n > 1 and is_cross_shard(op, plan.dims):
            _cross_shard_reduce(b, op, args, local_t, n)
        else:
            b.compute(op.opname, args, local_t, _local_attrs(op, local_t), op.result)
    for v in kernel.outputs:
        slices, _ = _shard_block(v, plan, n, w)
        replicated = plan.dims.get(v) is None or n == 1
        b.body.append(Store(v.name, slices, b.local[v], Cond(0, 0) if replicated else Cond()))
    return b.program()


def _kv_cache(b: _Builder, kernel: Kernel, plan: ShardPlan, n: int, pes: int, context: int) -> None:
    """Resident K and V caches for each attention: a shard's keys, `context` tokens long (at most
    a sliding window's keys: older ones are never read again), split along the context over the
    pes // n PEs that hold the same shard."""
    for i, op in enumerate(o for o in kernel.ops if o.opname == "sdpa" and _kept_tokens(o, context)):
        keys = _shard_block(op.operands[1], plan, n, 1)[1]
        tokens = -(-_kept_tokens(op, context) // max(1, pes // n))
        cache = keys.with_shape(keys.shape[:2] + (tokens, keys.shape[3]))
        for which in ("k", "v"):
            b.body.append(State(b.names.fresh(f"{which}_cache{i or ''}"), cache))


def _kept_tokens(sdpa: Op, context: int) -> int:
    """Tokens of keys an attention keeps: the context, or its sliding window if shorter. An
    attention that sees every key (not causal, no mask: an encoder's, BERT's) keeps none: it
    takes the whole sequence in one pass and never meets those keys again. A mask the frontend
    could not name as causal may still be a decoder's, so it keeps the cache."""
    if not sdpa.attrs.get("causal") and len(sdpa.operands) == 3:
        return 0
    return min(context, sdpa.attrs.get("window") or context)


def _load_block(b: _Builder, op: Op, plan: ShardPlan, n: int, w: int) -> None:
    """A slice of a kernel input: the PE's block of the slice, loaded from the input at the
    slice's offset along the sliced dim."""
    slices, local_t = _shard_block(op.result, plan, n, w)
    d = ops.norm_dim(op.attrs["dim"], op.result.type.rank)
    size = op.operands[0].type.shape[d]
    start, end, _ = ops.slice_bounds(size, op.attrs["start"], op.attrs["end"], 1)
    block = slices[d]
    slices[d] = Slice(Affine(start), Affine(end)) if block.whole else Slice(block.start + start, block.stop + start)
    b.local[op.result] = b.fetch(op.operands[0], slices, local_t)


def _cross_shard_reduce(b: _Builder, op: Op, args: list[str], t: TensorType, n: int) -> None:
    """sum/mean over a dim split n ways: reduce each block, sum the n partials across the PEs
    holding shards; a mean of equal blocks is the mean of the block means."""
    part = b.compute(op.opname, args, t, op.attrs, hint=f"{op.result.name}_part")
    if op.opname == "sum":
        b.compute("reduce_all", [part], t, {"count": n}, op.result)
        return
    total = b.compute("reduce_all", [part], t, {"count": n}, hint=f"{op.result.name}_sum")
    b.compute("mul", [total], t, {"scalar": 1.0 / n}, op.result)


def _shard_block(v: Value, plan: ShardPlan, n: int, w: int) -> tuple[list[Slice], TensorType]:
    d = plan.dims.get(v)
    shape = v.type.shape
    if d is None or n == 1:
        return [WHOLE] * len(shape), v.type
    blk = shape[d] // n
    start = Affine(0, px=blk, py=blk * w)
    slices = [WHOLE] * len(shape)
    slices[d] = Slice(start, start + blk)
    return slices, v.type.with_shape(shape[:d] + (blk,) + shape[d + 1:])


def _local_attrs(op: Op, local_t: TensorType) -> dict:
    """Attributes that name a whole shape are rewritten to the PE's block."""
    if op.opname in ("reshape", "expand"):
        return {**op.attrs, "shape": list(local_t.shape)}
    return dict(op.attrs)


def check_local_types(kp: KernelProgram) -> None:
    """Debug aid: every compute statement's declared type matches the op's shape rule."""
    types = {s.name: s.type for s in kp.body if not isinstance(s, Store)}
    for s in kp.body:
        if isinstance(s, Compute):
            got = ops.infer(s.op, [types[a] for a in s.args], s.attrs)
            assert got == s.type, f"{kp.name}: {s.name} declared {s.type}, rule gives {got}"


def flops_of(kernel: Kernel) -> int:
    return sum(ops.flops(op.opname, [v.type for v in op.operands], op.result.type, op.attrs)
               for op in kernel.ops)


def param_bytes(kernel: Kernel) -> int:
    return sum(p.type.nbytes for p in kernel.params)


def state_bytes(kernel: Kernel, max_context: int | None) -> int:
    """Bytes of KV cache the kernel keeps resident across its whole region (see `_kv_cache`):
    K and V for every attention, `max_context` tokens (or its window) long."""
    if not max_context or kernel.kind in ("linear", "embedding"):
        return 0
    total = 0
    for op in kernel.ops:
        if op.opname == "sdpa":
            keys = op.operands[1].type
            total += 2 * keys.nbytes // keys.shape[2] * _kept_tokens(op, max_context)
    return total
