from ir.types import DType
from passes.partition import PartitionPass, layer_of
from tests.builders import GraphBuilder


def mlp_block():
    b = GraphBuilder()
    x = b.input("x", 4, 32)
    h = b.op("linear", x, b.param("up.weight", 64, 32), b.param("up.bias", 64), name="h", module="up")
    a = b.op("gelu", h, name="a", approximate="none")
    y = b.op("linear", a, b.param("down.weight", 32, 64), name="y", module="down")
    r = b.op("add", y, x, name="r")
    n = b.op("layer_norm", r, b.param("ln.weight", 32), name="n", ndim=1, eps=1e-5)
    return b.done(n)


def test_anchor_absorbs_elementwise_epilogue():
    kg = PartitionPass().run(mlp_block())
    assert [(k.kind, [op.opname for op in k.ops]) for k in kg.kernels] == [
        ("linear", ["linear", "gelu"]), ("linear", ["linear", "add"]), ("vector", ["layer_norm"])]
    up, down, norm = kg.kernels
    assert [v.name for v in down.inputs] == ["a", "x"]  # the residual arrives as a second input
    assert [p.name for p in up.params] == ["up.weight", "up.bias"]
    assert [v.name for v in norm.outputs] == ["n"]


def test_value_used_by_two_kernels_is_an_output():
    b = GraphBuilder()
    x = b.input("x", 2, 8)
    h = b.op("linear", x, b.param("w", 8, 8), name="h")
    s = b.op("softmax", h, name="s", dim=-1)
    t = b.op("linear", h, b.param("w2", 8, 8), name="t")
    kg = PartitionPass().run(b.done(s, t))
    first = kg.kernels[0]
    assert [v.name for v in first.outputs] == ["h"]
    assert {k.kind for k in kg.kernels} == {"linear", "vector"}


def test_gating_multiply_joins_the_later_projection():
    # Llama MLP: silu(gate(x)) * up(x) -> both projections ready at once; the multiply needs both.
    b = GraphBuilder()
    x = b.input("x", 1, 4, 16)
    g = b.op("linear", x, b.param("gate.weight", 32, 16), name="g")
    s = b.op("silu", g, name="s")
    u = b.op("linear", x, b.param("up.weight", 32, 16), name="u")
    m = b.op("mul", s, u, name="m")
    kg = PartitionPass().run(b.done(m))
    assert [[op.opname for op in k.ops] for k in kg.kernels] == [["linear"], ["linear", "silu", "mul"]]
    assert [v.name for v in kg.kernels[1].inputs] == ["x", "u"]


def test_vector_ops_between_anchors_form_one_kernel():
    b = GraphBuilder()
    ids = b.input("ids", 1, 4, dtype=DType.i64)
    e = b.op("embedding", b.param("emb", 16, 8), ids, name="e")
    p = b.op("pow", e, name="p", scalar=2.0)
    m = b.op("mean", p, name="m", dims=[-1], keepdim=True)
    r = b.op("rsqrt", m, name="r")
    n = b.op("mul", e, r, name="n")
    kg = PartitionPass().run(b.done(n))
    assert [k.kind for k in kg.kernels] == ["embedding", "vector"]
    assert len(kg.kernels[1].ops) == 4


def test_layer_index_from_module_path():
    assert layer_of("model.layers.3.self_attn.q_proj") == 3
    assert layer_of("transformer.h.11.mlp.c_fc") == 11
    assert layer_of("lm_head") is None
