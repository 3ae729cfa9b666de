"""Build small IR graphs by hand for unit tests."""
from __future__ import annotations

from ir import ops
from ir.errors import SourceLoc
from ir.graph import Graph, Op, Value
from ir.types import DType, TensorType


class GraphBuilder:
    def __init__(self, name: str = "g"):
        self.graph = Graph(name)

    def input(self, name: str, *shape: int, dtype: DType = DType.f32) -> Value:
        v = Value(name, TensorType(shape, dtype))
        self.graph.inputs.append(v)
        return v

    def param(self, name: str, *shape: int, dtype: DType = DType.f32) -> Value:
        v = Value(name, TensorType(shape, dtype))
        self.graph.params.append(v)
        return v

    def op(self, opname: str, *operands: Value, name: str | None = None, module: str = "", **attrs) -> Value:
        t = ops.infer(opname, [v.type for v in operands], attrs)
        v = Value(name or f"v{len(self.graph.ops)}", t)
        self.graph.ops.append(Op(opname, list(operands), [v], attrs, SourceLoc(module, "model.py", 1)))
        return v

    def done(self, *outputs: Value) -> Graph:
        self.graph.outputs = list(outputs)
        return self.graph
