"""CanonicalizePass on hand-built graphs: each rule, the GQA rewrite, and that meaning is kept."""
import pytest
import torch

from ir.errors import VerifyError
from ir.types import DType
from passes.canonicalize import CanonicalizePass
from tests.builders import GraphBuilder
from tests.ir_torch_eval import run_graph


def canonical_run(graph, inputs):
    """Outputs before and after the pass, and the canonical graph."""
    before = run_graph(graph, inputs, {})
    after_graph = CanonicalizePass().run(graph)
    return before, run_graph(after_graph, inputs, {}), after_graph


def opnames(graph):
    return [op.opname for op in graph.ops]


def test_identity_views_and_casts_vanish():
    b = GraphBuilder()
    x = b.input("x", 2, 3)
    y = b.op("reshape", x, shape=[2, 3])
    y = b.op("permute", y, perm=[0, 1])
    y = b.op("expand", y, shape=[2, 3])
    y = b.op("cast", y, dtype="f32")
    graph = b.done(b.op("relu", y, name="out"))
    before, after, graph = canonical_run(graph, {"x": torch.randn(2, 3)})
    assert opnames(graph) == ["relu"] and graph.ops[0].operands == [x]
    torch.testing.assert_close(after, before)


def test_identity_as_graph_output_is_replaced_by_its_operand():
    b = GraphBuilder()
    x = b.input("x", 4)
    graph = CanonicalizePass().run(b.done(b.op("reshape", x, shape=[4])))
    assert graph.ops == [] and graph.outputs == [x]


def test_reshape_chains_merge():
    b = GraphBuilder()
    x = b.input("x", 2, 3, 4)
    y = b.op("reshape", x, shape=[6, 4])
    graph = b.done(b.op("reshape", y, shape=[4, 6], name="out"))
    before, after, graph = canonical_run(graph, {"x": torch.randn(2, 3, 4)})
    (op,) = graph.ops
    assert op.opname == "reshape" and op.operands == [x] and op.result.name == "out"
    torch.testing.assert_close(after, before)


def test_permute_chains_compose():
    b = GraphBuilder()
    x = b.input("x", 2, 3, 4)
    y = b.op("permute", x, perm=[1, 2, 0])
    graph = b.done(b.op("permute", y, perm=[2, 0, 1]), b.op("permute", y, perm=[0, 2, 1]))
    before, after, graph = canonical_run(graph, {"x": torch.randn(2, 3, 4)})
    assert graph.outputs[0] is x  # the first pair composes to the identity
    (op,) = graph.ops
    assert op.operands == [x] and op.attrs["perm"] == [1, 0, 2]
    torch.testing.assert_close(after, before)


def repeat_kv(b, kv, n, interleave=True):
    """HF's repeat_kv ([B,H,S,D] -> [B,H*n,S,D], each head n times in a row), or a tiling."""
    bsz, heads, seq, dim = kv.type.shape
    if interleave:
        u = b.op("reshape", kv, shape=[bsz, heads, 1, seq, dim])
        e = b.op("expand", u, shape=[bsz, heads, n, seq, dim])
    else:
        u = b.op("reshape", kv, shape=[bsz, 1, heads, seq, dim])
        e = b.op("expand", u, shape=[bsz, n, heads, seq, dim])
    return b.op("reshape", e, shape=[bsz, heads * n, seq, dim])


def gqa_graph(interleave=True):
    b = GraphBuilder()
    q = b.input("q", 1, 4, 5, 8)
    k = b.input("k", 1, 2, 5, 8)
    v = b.input("v", 1, 2, 5, 8)
    out = b.op("sdpa", q, repeat_kv(b, k, 2, interleave), repeat_kv(b, v, 2, interleave),
               scale=0.3, causal=True, name="attn")
    inputs = {name: torch.randn(*value.type.shape) for name, value in zip("qkv", (q, k, v))}
    return b.done(out), (q, k, v), inputs


def test_gqa_reads_kv_heads_directly():
    graph, (q, k, v), inputs = gqa_graph()
    before, after, graph = canonical_run(graph, inputs)
    assert opnames(graph) == ["sdpa"]
    assert graph.ops[0].operands == [q, k, v]
    assert graph.ops[0].attrs == {"scale": 0.3, "causal": True}
    torch.testing.assert_close(after, before)


def test_tiled_heads_are_not_mistaken_for_gqa():
    # [B,1,H,S,D] expanded along dim 1 repeats the whole block: head h reads kv head h % H,
    # which is not sdpa's grouping, so the copy must stay.
    graph, _, inputs = gqa_graph(interleave=False)
    before, after, graph = canonical_run(graph, inputs)
    assert opnames(graph).count("expand") == 2
    torch.testing.assert_close(after, before)


def test_dead_ops_and_unused_params_are_removed():
    b = GraphBuilder()
    x = b.input("x", 4)
    w = b.param("w", 4)
    b.param("unused", 4)
    b.op("exp", b.op("mul", x, w))
    graph = CanonicalizePass().run(b.done(b.op("neg", x)))
    assert opnames(graph) == ["neg"] and graph.params == []
    assert graph.inputs == [x]  # inputs are the interface: kept even if unused


def test_result_types_are_verified():
    b = GraphBuilder()
    x = b.input("x", 4)
    graph = b.done(b.op("neg", x))
    graph.ops[0].results[0].type = graph.ops[0].results[0].type.with_dtype(DType.i64)
    with pytest.raises(VerifyError, match="declared"):
        CanonicalizePass().run(graph)
