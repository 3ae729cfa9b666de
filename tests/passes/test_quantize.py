"""QuantizePass: the types and names it produces, the per-channel data, and the GEMV lowering and
costs of the `qlinear` it makes."""
import ml_dtypes
import numpy as np
import pytest

from ir import ops
from ir.errors import CompilerError
from ir.target import load_target
from ir.text import parse_graph, print_graph
from ir.types import DType, TensorType
from ir.wkl import Compute, Tile
from ir.wkl_cost import kernel_bytes_per_pe, kernel_cycles
from passes.partition import PartitionPass
from passes.quantize import (QuantizePass, dequantize_per_channel, parse_weight_dtype,
                             quantize_per_channel, weight_dtype_name)
from passes.spmd import check_local_types, lower_kernel
from tests.builders import GraphBuilder


def small_model(tied: bool = False):
    """embedding -> linear (bias) -> matmul against a [K, N] param -> lm_head linear."""
    b = GraphBuilder("m")
    ids = b.input("ids", 1, 4, dtype=DType.i64)
    table = b.param("embed.weight", 32, 16)
    e = b.op("embedding", table, ids, name="e", module="embed")
    h = b.op("linear", e, b.param("up.weight", 24, 16), b.param("up.bias", 24), name="h", module="up")
    g = b.op("matmul", b.op("relu", h, name="r"), b.param("conv.weight", 24, 16), name="g", module="conv")
    head = table if tied else b.param("lm_head.weight", 32, 16)
    return b.done(b.op("linear", g, head, name="logits", module="lm_head"))


def random_data(graph, seed=0):
    rng = np.random.default_rng(seed)
    return {p.name: rng.standard_normal(p.type.shape).astype(np.float32) for p in graph.params}


def by_result(graph):
    return {op.result.name: op for op in graph.ops}


def param_types(graph):
    return {p.name: str(p.type) for p in graph.params}


@pytest.mark.parametrize("dtype", [DType.fp8, DType.i8])
def test_fp8_and_int8_turn_linears_into_qlinear_with_per_channel_scales(dtype):
    graph = small_model()
    results = {op.result.name: op.result.type for op in graph.ops}
    graph, data = QuantizePass(dtype).run(graph, random_data(graph))
    ops_ = by_result(graph)
    assert [op.opname for op in graph.ops] == ["embedding", "qlinear", "relu", "qlinear", "qlinear"]
    assert {op.result.name: op.result.type for op in graph.ops} == results  # activations keep f32
    assert [v.name for v in ops_["h"].operands] == ["e", "up.weight", "up.weight_scale", "up.bias"]
    # The [K, N] matmul weight is stored transposed, under a new name.
    assert [v.name for v in ops_["g"].operands[1:]] == [f"conv.weight_{dtype}", f"conv.weight_{dtype}_scale"]
    assert param_types(graph) == {
        "embed.weight": "f32[32, 16]",  # tables keep the model's dtype
        "up.weight": f"{dtype}[24, 16]", "up.weight_scale": "f32[24]", "up.bias": "f32[24]",
        f"conv.weight_{dtype}": f"{dtype}[16, 24]", f"conv.weight_{dtype}_scale": "f32[16]",
        "lm_head.weight": f"{dtype}[32, 16]", "lm_head.weight_scale": "f32[32]"}
    assert sorted(data) == sorted(param_types(graph))
    assert data["up.weight"].dtype == {DType.fp8: ml_dtypes.float8_e4m3fn, DType.i8: np.int8}[dtype]


def test_quantised_graph_prints_and_parses_back():
    graph, _ = QuantizePass(DType.fp8).run(small_model())
    text = print_graph(graph)
    assert "qlinear(" in text and "fp8[24, 16]" in text
    assert print_graph(parse_graph(text)) == text


def test_bf16_casts_weights_and_tables_and_keeps_the_lookup_dtype():
    graph = small_model()
    graph, data = QuantizePass(DType.bf16).run(graph, random_data(graph))
    assert [op.opname for op in graph.ops] == ["embedding", "cast", "linear", "relu", "matmul", "linear"]
    lookup, cast = graph.ops[:2]
    assert str(lookup.result.type) == "bf16[1, 4, 16]" and cast.result.name == "e"
    assert str(cast.result.type) == "f32[1, 4, 16]" and cast.attrs == {"dtype": "f32"}
    assert param_types(graph)["conv.weight"] == "bf16[24, 16]"  # a cast keeps the layout and name
    assert param_types(graph)["up.bias"] == "f32[24]"            # biases are not weights
    assert data["up.weight"].dtype == ml_dtypes.bfloat16


def test_tied_table_is_cast_once_but_quantised_for_the_head_only():
    cast, _ = QuantizePass(DType.f16).run(small_model(tied=True))
    assert param_types(cast)["embed.weight"] == "f16[32, 16]"
    assert by_result(cast)["logits"].operands[1].name == "embed.weight"
    quant, _ = QuantizePass(DType.fp8).run(small_model(tied=True))
    assert param_types(quant)["embed.weight"] == "f32[32, 16]"
    assert param_types(quant)["embed.weight_fp8"] == "fp8[32, 16]"
    assert by_result(quant)["logits"].operands[1].name == "embed.weight_fp8"


def test_size_only_changes_types_and_has_no_data():
    graph, data = QuantizePass(DType.i8).run(small_model(), {})
    assert "i8[24, 16]" in param_types(graph).values()
    assert all(v is None for v in data.values()) and sorted(data) == sorted(param_types(graph))


def test_weights_already_of_the_type_are_left_alone():
    b = GraphBuilder()
    x = b.input("x", 2, 8, dtype=DType.bf16)
    graph = b.done(b.op("linear", x, b.param("w", 4, 8, dtype=DType.bf16)))
    graph, _ = QuantizePass(DType.bf16).run(graph)
    assert [op.opname for op in graph.ops] == ["linear"] and param_types(graph) == {"w": "bf16[4, 8]"}


def test_matmul_weight_data_is_transposed_before_quantising():
    graph = small_model()
    data = random_data(graph)
    graph, out = QuantizePass(DType.i8).run(graph, data)
    wq, scale = quantize_per_channel(data["conv.weight"].T, DType.i8)
    np.testing.assert_array_equal(out["conv.weight_i8"], wq)
    np.testing.assert_array_equal(out["conv.weight_i8_scale"], scale)


def test_int8_rounds_to_nearest_with_absmax_scales_and_unit_scale_for_zero_rows():
    w = np.array([[0.5, -1.27, 0.004], [0.0, 0.0, 0.0], [2.0, 1.0, -0.5]], np.float32)
    wq, scale = quantize_per_channel(w, DType.i8)
    np.testing.assert_allclose(scale, [1.27 / 127, 1.0, 2.0 / 127], rtol=1e-6)
    assert wq.dtype == np.int8 and wq.tolist() == [[50, -127, 0], [0, 0, 0], [127, 64, -32]]
    err = np.abs(dequantize_per_channel(wq, scale) - w)
    assert np.all(err <= scale[:, None] / 2 + 1e-7)


def test_fp8_uses_the_whole_e4m3_range_per_row():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 64)).astype(np.float32) * np.logspace(-3, 3, 8, dtype=np.float32)[:, None]
    wq, scale = quantize_per_channel(w, DType.fp8)
    assert wq.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(np.abs(wq.astype(np.float32)).max(axis=1), 448.0)
    back = dequantize_per_channel(wq, scale)
    # e4m3 keeps 3 mantissa bits: each element within 2^-4 of itself, above the subnormals.
    big = np.abs(w) > scale[:, None] * 2 ** -6
    assert np.all(np.abs(back - w)[big] <= np.abs(w)[big] * 2 ** -4 + 1e-12)


def test_non_finite_weights_are_refused_with_the_ops_location():
    graph = small_model()
    data = random_data(graph)
    data["up.weight"][3, 2] = np.inf
    with pytest.raises(CompilerError, match="'up.weight' holds inf or nan, so it has no scale") as e:
        QuantizePass(DType.fp8).run(graph, data)
    assert "in up (model.py:1)" in str(e.value)


def test_weight_dtype_names():
    assert parse_weight_dtype("int8") is DType.i8 and parse_weight_dtype(None) is None
    assert parse_weight_dtype(DType.fp8) is DType.fp8 and weight_dtype_name(DType.f16) == "fp16"
    with pytest.raises(CompilerError) as e:
        parse_weight_dtype("fp4")
    assert str(e.value) == "error: weight dtype 'fp4' is not one of fp16, bf16, fp8, int8"


def test_qlinear_shape_rule_and_flops_count_the_dequantisation():
    x, wq, s = TensorType((3, 16), DType.f32), TensorType((8, 16), DType.fp8), TensorType((8,), DType.f32)
    out = ops.infer("qlinear", [x, wq, s], {})
    assert out == TensorType((3, 8), DType.f32)
    linear = ops.flops("linear", [x, wq.with_dtype(DType.f32)], out, {})
    assert ops.flops("qlinear", [x, wq, s], out, {}) == linear + 8 * 16
    with pytest.raises(ops.ShapeError, match="fp8 or i8"):
        ops.infer("qlinear", [x, wq.with_dtype(DType.bf16), s], {})
    with pytest.raises(ops.ShapeError, match="one float per row"):
        ops.infer("qlinear", [x, wq, TensorType((16,), DType.f32)], {})


def lowered_head(dtype, w=4, h=4):
    graph, _ = QuantizePass(dtype).run(small_model())
    kernel = next(k for k in PartitionPass().run(graph).kernels if k.name == "lm_head")
    kp = lower_kernel(kernel, w, h)
    check_local_types(kp)
    return kernel, kp


def test_gemv_tiles_the_quantised_weight_like_linear_and_the_scale_like_a_bias():
    kernel, kp = lowered_head(DType.fp8)
    assert kernel.kind == "linear"
    tiles = {t.param: t for t in kp.body if isinstance(t, Tile)}
    weight, scale = tiles["lm_head.weight"], tiles["lm_head.weight_scale"]
    assert str(weight.type) == "fp8[8, 4]" and [str(s) for s in weight.slices] == ["8*py : 8*py + 8", "4*px : 4*px + 4"]
    assert str(scale.type) == "f32[8]" and [str(s) for s in scale.slices] == ["8*py : 8*py + 8"]
    part = next(s for s in kp.body if isinstance(s, Compute) and s.op == "qlinear")
    assert part.args[1:] == [weight.name, scale.name]


def test_smaller_weights_need_less_sram_per_pe_and_dequantising_costs_cycles():
    target = load_target("toy")
    graph = small_model()
    head = next(k for k in PartitionPass().run(graph).kernels if k.name == "lm_head")
    plain = lower_kernel(head, 1, 1)
    _, fp8 = lowered_head(DType.fp8, 1, 1)
    _, bf16 = lowered_head(DType.bf16, 1, 1)
    weight = 32 * 16
    assert kernel_bytes_per_pe(plain) - kernel_bytes_per_pe(bf16) == weight * 2
    assert kernel_bytes_per_pe(plain) - kernel_bytes_per_pe(fp8) == weight * 3 - 32 * 4  # plus the scales
    assert kernel_cycles(fp8, target, 1, 1) > kernel_cycles(plain, target, 1, 1)
