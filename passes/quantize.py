"""QuantizePass: store the weights of the linear and embedding kernels in a smaller type.

requires: a canonical, verified IR graph; optionally the data of its params (numpy arrays by param
          name). Data that is None or absent means a size-only compile: only the types change.
ensures:
  * fp16/bf16 — a plain cast, no scale: the [N, K] weight of every `linear`, the rank-2 weight of
    every `matmul` against a param and every `embedding` table is stored in that type. A lookup's
    result keeps its old dtype through a `cast` after the `embedding`, so activations downstream
    are unchanged.
  * fp8 (e4m3) / int8 — per output channel: every `linear` against a param becomes
    `qlinear(x, wq, scale[, bias])`, and every `matmul` against a rank-2 [K, N] param becomes
    `qlinear` against the transposed weight. Channel n is quantised symmetrically, rounding to
    nearest: scale[n] = max|w[n]| / qmax (qmax = 448 for fp8, 127 for int8; 1 for an all-zero
    channel), wq[n] = w[n] / scale[n] in the quantised type, and `scale` is an f32 vector.
    Embedding tables keep the model's dtype: a lookup copies one row per token and has no
    matmul to dequantise into, and a table is a small share of a large model's weights (4 of
    810 GB for Llama-3.1-405B); a tied lm_head is still quantised, under its own name.
  * every op result keeps its type, so activations, biases, norm weights and KV caches keep their
    dtype; weights already of the requested type are left alone.
  * a rewritten weight keeps its param name when nothing else reads the original and its layout
    is unchanged; otherwise it is named `NAME_<dtype>` (a table tied to an lm_head, a transposed
    matmul weight). A scale is named `<weight>_scale`. Unused params are dropped, the graph
    verifies, and the returned data covers exactly the graph's params.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

from ir.errors import CompilerError, SourceLoc
from ir.graph import Graph, NameGen, Op, Value
from ir.ops import QUANTISED_DTYPES
from ir.types import DType, TensorType
from ir.verify import verify_graph

ParamData = dict[str, "np.ndarray | None"]

# The --weight-dtype spellings and the IR types they store weights in.
WEIGHT_DTYPES: dict[str, DType] = {"fp16": DType.f16, "bf16": DType.bf16, "fp8": DType.fp8,
                                   "int8": DType.i8}
QMAX = {DType.fp8: float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max), DType.i8: 127.0}
_NUMPY = {DType.f16: np.dtype(np.float16), DType.bf16: np.dtype(ml_dtypes.bfloat16),
          DType.fp8: np.dtype(ml_dtypes.float8_e4m3fn), DType.i8: np.dtype(np.int8)}
_WEIGHT_OPERAND = {"linear": 1, "matmul": 1, "embedding": 0}

# How one use of a weight is rewritten: cast in place, quantise its rows ([N, K] layout) or
# quantise its columns ([K, N] layout, stored transposed).
CAST, ROWS, COLS = "cast", "rows", "cols"


def parse_weight_dtype(name: "str | DType | None") -> DType | None:
    """The IR type for a --weight-dtype value (None: the model's own), or a one-line error."""
    if name is None or name in WEIGHT_DTYPES.values():
        return name
    if isinstance(name, str) and name in WEIGHT_DTYPES:
        return WEIGHT_DTYPES[name]
    raise CompilerError(f"weight dtype {str(name)!r} is not one of {', '.join(WEIGHT_DTYPES)}")


def weight_dtype_name(dtype: DType | None) -> str | None:
    """The --weight-dtype spelling of a weight type (as report.json records it)."""
    return next((k for k, v in WEIGHT_DTYPES.items() if v is dtype), None)


# ---------------------------------------------------------------- data

def quantize_per_channel(weight: np.ndarray, dtype: DType) -> tuple[np.ndarray, np.ndarray]:
    """(wq, scale) for an [N, K] weight with weight ≈ wq * scale[:, None], one scale per row."""
    w = np.asarray(weight).astype(np.float32)
    absmax = np.max(np.abs(w), axis=1) if w.size else np.zeros(w.shape[0], np.float32)
    scale = np.where(absmax > 0, absmax / np.float32(QMAX[dtype]), 1).astype(np.float32)
    # absmax / scale can round to just above qmax: clip before the conversion.
    q = np.clip(w / scale[:, None], -QMAX[dtype], QMAX[dtype])
    if dtype is DType.i8:
        q = np.rint(q)  # to nearest, ties to even (fp8 conversion rounds the same way)
    return q.astype(_NUMPY[dtype]), scale


def dequantize_per_channel(wq: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The f32 weight a `qlinear` computes with: row n of wq times scale[n]."""
    return wq.astype(np.float32) * scale.astype(np.float32)[:, None]


def _cast_data(weight: np.ndarray | None, dtype: DType) -> np.ndarray | None:
    return None if weight is None else np.asarray(weight).astype(np.float32).astype(_NUMPY[dtype])


# ---------------------------------------------------------------- the pass

@dataclass(frozen=True)
class QuantizePass:
    dtype: DType  # one of WEIGHT_DTYPES' values

    name = "quantize"

    def run(self, graph: Graph, params: ParamData | None = None) -> tuple[Graph, ParamData]:
        """Rewrite `graph` in place; return it with the data of its params after the rewrite."""
        if self.dtype not in WEIGHT_DTYPES.values():
            raise CompilerError(f"weights cannot be stored as {self.dtype}")
        rewriter = _Rewriter(graph, dict(params or {}), self.dtype)
        graph.ops = [new for op in graph.ops for new in rewriter.rewrite(op)]
        graph.params = rewriter.new_params()
        graph.remove_dead()
        verify_graph(graph)
        return graph, {p.name: rewriter.data.get(p.name) for p in graph.params}


@dataclass
class _NewWeight:
    weight: Value
    scale: Value | None = None


@dataclass
class _Rewriter:
    graph: Graph
    data: ParamData
    dtype: DType
    made: dict = field(default_factory=dict)  # (param, how) -> _NewWeight

    def __post_init__(self):
        self.params = set(self.graph.params)
        self.names = NameGen({v.name for v in self.graph.inputs + self.graph.params} |
                             {r.name for op in self.graph.ops for r in op.results})
        self.uses = self._uses_by_param()

    def rewrite(self, op: Op) -> list[Op]:
        """The ops that replace `op` (just `op` when it reads no weight to rewrite)."""
        use = weight_use(op, self.params, self.dtype)
        if use is None:
            return [op]
        new = self._new_weight(op.operands[_WEIGHT_OPERAND[op.opname]], use, op.loc)
        if op.opname == "embedding":
            return self._cast_lookup(op, new.weight)
        x, rest = op.operands[0], op.operands[2:]  # rest: a linear's bias
        if use == CAST:
            return [Op(op.opname, [x, new.weight] + rest, op.results, dict(op.attrs), op.loc)]
        return [Op("qlinear", [x, new.weight, new.scale] + rest, op.results, dict(op.attrs), op.loc)]

    def new_params(self) -> list[Value]:
        """The params in their old order, each followed by (or replaced by) what it became."""
        made: dict[Value, list[Value]] = {}
        for (orig, _), new in self.made.items():
            made.setdefault(orig, []).extend(v for v in (new.weight, new.scale) if v is not None)
        out = []
        for p in self.graph.params:
            mine = made.get(p, [])
            out += mine if any(v.name == p.name for v in mine) else [p] + mine
        return out

    # ------------------------------------------------------------ helpers

    def _uses_by_param(self) -> dict[Value, set]:
        """For each param, how each of its uses would be rewritten (None: a use left alone)."""
        uses: dict[Value, set] = {p: set() for p in self.params}
        for op in self.graph.ops:
            use = weight_use(op, self.params, self.dtype)
            for i, v in enumerate(op.operands):
                if v in uses:
                    uses[v].add(use if use and i == _WEIGHT_OPERAND[op.opname] else None)
        for v in self.graph.outputs:
            if v in uses:
                uses[v].add(None)
        return uses

    def _new_weight(self, weight: Value, how: str, loc: SourceLoc) -> _NewWeight:
        if (weight, how) not in self.made:
            keep_name = self.uses[weight] == {how} and how != COLS
            name = weight.name if keep_name else self.names.unique(f"{weight.name}_{self.dtype}")
            self.made[weight, how] = (self._cast(weight, name) if how == CAST
                                      else self._quantize(weight, name, how == COLS, loc))
        return self.made[weight, how]

    def _cast(self, weight: Value, name: str) -> _NewWeight:
        self.data[name] = _cast_data(self.data.get(weight.name), self.dtype)
        return _NewWeight(Value(name, weight.type.with_dtype(self.dtype)))

    def _quantize(self, weight: Value, name: str, transposed: bool, loc: SourceLoc) -> _NewWeight:
        rows, cols = weight.type.shape[::-1] if transposed else weight.type.shape
        scale = Value(self.names.unique(f"{name}_scale"), TensorType((rows,), DType.f32))
        w = self.data.get(weight.name)
        if w is not None:
            w = np.asarray(w).T if transposed else np.asarray(w)
            if not np.all(np.isfinite(w.astype(np.float32))):
                raise CompilerError(f"weight '{weight.name}' holds inf or nan, so it has no scale", loc)
            self.data[name], self.data[scale.name] = quantize_per_channel(w, self.dtype)
        return _NewWeight(Value(name, TensorType((rows, cols), self.dtype)), scale)

    def _cast_lookup(self, op: Op, table: Value) -> list[Op]:
        """embedding from the cast table, then a cast back to the lookup's old dtype."""
        result = op.result
        lookup = Value(self.names.unique(f"{result.name}_{self.dtype}"),
                       result.type.with_dtype(self.dtype))
        return [Op("embedding", [table, op.operands[1]], [lookup], dict(op.attrs), op.loc),
                Op("cast", [lookup], [result], {"dtype": result.type.dtype.value}, op.loc)]

def weight_use(op: Op, params: set[Value], dtype: DType) -> str | None:
    """How this pass rewrites `op`'s weight param to store it as `dtype`, or None to leave it."""
    index = _WEIGHT_OPERAND.get(op.opname)
    if index is None or op.operands[index] not in params:
        return None
    weight = op.operands[index].type
    if weight.rank != 2 or weight.dtype == dtype or not weight.dtype.is_float:
        return None
    if dtype not in QUANTISED_DTYPES:
        return CAST
    if op.opname == "embedding":
        return None  # tables keep the model's dtype (see the module docstring)
    return ROWS if op.opname == "linear" else COLS
