"""The simulator running hand-built WKL programs: routes, tiles, loads, stores, collectives, errors
and cycle counts. References are computed here with numpy."""
from dataclasses import dataclass, replace

import ml_dtypes
import numpy as np
import pytest

from backends.sim import simulate
from backends.sim.blocks import read_block
from ir.errors import SimulationError, Span
from ir.target import load_target
from ir.types import DType, TensorType
from ir.wkl import (Affine, Compute, Cond, Endpoint, KernelProgram, Layout, Load, Program,
                    Region, Route, Slice, Store, TensorDecl, Tile)
from ir.wkl_cost import kernel_cycles, kernel_latency_cycles, kernel_types, route_cycles, stmt_cycles

TOY = load_target("toy")
ALL = Slice()


def t(*shape, dtype=DType.f32):
    return TensorType(tuple(shape), dtype)


def decl(name, *shape, dtype=DType.f32):
    return TensorDecl(name, t(*shape, dtype=dtype))


def block(size, var=None, offset=0):
    return Slice.block(size, var, offset)


def span(line, file="kernels/k.wkl"):
    return Span(file, line, 3, "  some statement")


def route(name, src, dst, hops=1, color=0):
    return Route(name, color, Endpoint(*src.split(".")), Endpoint(*dst.split(".")), hops, span(9, "layout.wkl"))


def program(kernels, regions, inputs=(), params=(), outputs=(), routes=()):
    layout = Layout("test", "toy", (16, 16), 2, list(inputs), list(params), list(outputs),
                    list(regions), list(routes))
    return Program(layout, {k.name: k for k in kernels})


# ---------------------------------------------------------------- a GEMV linear kernel on 2 x 3 PEs

N_IN, N_OUT, TOKENS = 10, 7, 3
BK, BN = 4, 4  # 3 columns x 4 = 12 >= 10 inputs, 2 rows x 4 = 8 >= 7 outputs: the edges are padded


def linear_kernel(weight_rows=block(BN, "py")):
    body = [
        Tile("wt", t(BN, BK), "W", [weight_rows, block(BK, "px")], span(3)),
        Tile("bt", t(BN), "b", [block(BN, "py")], span(4)),
        Load("xs", t(TOKENS, BK), "x", [ALL, block(BK, "px")], span(5)),
        Compute("p", t(TOKENS, BN), "linear", ["xs", "wt"], {}, span(6)),
        Compute("s", t(TOKENS, BN), "reduce_row", ["p"], {}, span(7)),
        Compute("y_blk", t(TOKENS, BN), "add", ["s", "bt"], {}, span(8)),
        Store("y", [ALL, block(BN, "py")], "y_blk", Cond(px=2), span(9)),
    ]
    return KernelProgram("lin", [decl("x", TOKENS, N_IN)], [decl("y", TOKENS, N_OUT)], body)


def linear_program(kernel=None):
    return program([kernel or linear_kernel()], [Region("lin", 0, 0, 0, 3, 2)],
                   inputs=[decl("x", TOKENS, N_IN)], params=[decl("W", N_OUT, N_IN), decl("b", N_OUT)],
                   outputs=[decl("y", TOKENS, N_OUT)],
                   routes=[route("r0", "host.x", "lin.x", hops=0), route("r1", "lin.y", "host.y", hops=4)])


@pytest.fixture
def linear_data():
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((N_OUT, N_IN)).astype(np.float32),
              "b": rng.standard_normal(N_OUT).astype(np.float32)}
    inputs = {"x": rng.standard_normal((TOKENS, N_IN)).astype(np.float32)}
    return params, inputs


def test_linear_kernel_computes_x_wt_plus_b(linear_data):
    params, inputs = linear_data
    y = simulate(linear_program(), params, inputs, TOY).outputs["y"]
    want = inputs["x"].astype(np.float64) @ params["W"].T + params["b"]
    assert y.dtype == np.float32 and y.shape == (TOKENS, N_OUT)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_changing_one_tile_slice_changes_the_output(linear_data):
    params, inputs = linear_data
    shifted = linear_program(linear_kernel(weight_rows=block(BN, "py", offset=1)))
    y = simulate(shifted, params, inputs, TOY).outputs["y"]
    want = inputs["x"] @ params["W"].T + params["b"]
    assert not np.allclose(y, want, atol=1e-3)
    # Row 0 now reads W rows 1..4; the PE rows past the end read zeros (padding), so y[:, 3] == b[3].
    np.testing.assert_allclose(y[:, 0], inputs["x"] @ params["W"][1] + params["b"][0], rtol=1e-5)
    np.testing.assert_allclose(y[:, 6], params["b"][6])


def test_blocks_outside_the_tensor_read_zero():
    whole = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = read_block(whole, ((-1, 2), (2, 6)))
    np.testing.assert_array_equal(got, [[0, 0, 0, 0], [2, 3, 0, 0], [6, 7, 0, 0]])


# ---------------------------------------------------------------- collectives through a program

def reduce_program():
    """Each PE of a 3 x 2 region loads x[3*py + px] and reduces it along its row, column and
    the whole region."""
    one = [Slice(Affine(0, px=1, py=3), Affine(1, px=1, py=3))]
    body = [
        Load("v", t(1), "x", one),
        Compute("r", t(1), "reduce_row", ["v"]),
        Compute("c", t(1), "reduce_col", ["v"]),
        Compute("a", t(1), "reduce_all", ["v"]),
        Store("rows", [block(1, "py")], "r", Cond(px=0)),
        Store("cols", [block(1, "px")], "c", Cond(py=1)),
        Store("total", [ALL], "a"),  # every PE writes the same value
    ]
    outs = [decl("rows", 2), decl("cols", 3), decl("total", 1)]
    kernel = KernelProgram("red", [decl("x", 6)], outs, body)
    return program([kernel], [Region("red", 0, 4, 4, 3, 2)], inputs=[decl("x", 6)], outputs=outs,
                   routes=[route("in", "host.x", "red.x")] +
                          [route(f"o{i}", f"red.{d.name}", f"host.{d.name}") for i, d in enumerate(outs)])


def test_reduce_row_col_and_all():
    x = np.array([1, 2, 3, 40, 50, 60], np.float32)
    out = simulate(reduce_program(), {}, {"x": x}, TOY).outputs
    np.testing.assert_array_equal(out["rows"], x.reshape(2, 3).sum(axis=1))
    np.testing.assert_array_equal(out["cols"], x.reshape(2, 3).sum(axis=0))
    np.testing.assert_array_equal(out["total"], [x.sum()])


# ---------------------------------------------------------------- partial embedding lookups

def test_partial_embedding_lookups_summed_along_rows():
    """The table's rows are split over 2 columns (offset 5*px), its columns over 2 rows."""
    body = [
        Tile("tab", t(5, 3), "E", [block(5, "px"), block(3, "py")]),
        Load("ids_l", t(4, dtype=DType.i64), "ids", [ALL]),
        Compute("part", t(4, 3), "embedding", ["tab", "ids_l"], {"offset": Affine(px=5)}),
        Compute("emb", t(4, 3), "reduce_row", ["part"]),
        Store("out", [ALL, block(3, "py")], "emb", Cond(px=1)),
    ]
    kernel = KernelProgram("emb", [decl("ids", 4, dtype=DType.i64)], [decl("out", 4, 6)], body)
    prog = program([kernel], [Region("emb", 0, 0, 0, 2, 2)], inputs=[decl("ids", 4, dtype=DType.i64)],
                   params=[decl("E", 10, 6)], outputs=[decl("out", 4, 6)],
                   routes=[route("a", "host.ids", "emb.ids"), route("b", "emb.out", "host.out")])
    table = np.arange(60, dtype=np.float32).reshape(10, 6)
    ids = np.array([0, 9, 4, 5])
    out = simulate(prog, {"E": table}, {"ids": ids}, TOY).outputs["out"]
    np.testing.assert_array_equal(out, table[ids])


# ---------------------------------------------------------------- low precision

def test_bf16_program_rounds_results_to_bf16():
    body = [Load("a", t(8, dtype=DType.bf16), "x", [ALL]),
            Tile("s", t(8, dtype=DType.bf16), "scale", [ALL]),
            Compute("p", t(8, dtype=DType.bf16), "mul", ["a", "s"]),
            Store("y", [ALL], "p", Cond(0, 0))]
    bf = decl("x", 8, dtype=DType.bf16)
    kernel = KernelProgram("k", [bf], [decl("y", 8, dtype=DType.bf16)], body)
    prog = program([kernel], [Region("k", 0, 0, 0, 1, 1)], inputs=[bf],
                   params=[decl("scale", 8, dtype=DType.bf16)], outputs=[decl("y", 8, dtype=DType.bf16)],
                   routes=[route("a", "host.x", "k.x"), route("b", "k.y", "host.y")])
    rng = np.random.default_rng(2)
    x, s = (rng.standard_normal(8).astype(ml_dtypes.bfloat16) for _ in range(2))
    y = simulate(prog, {"scale": s}, {"x": x}, TOY).outputs["y"]
    assert y.dtype == ml_dtypes.bfloat16
    want = (x.astype(np.float32) * s.astype(np.float32)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(y.astype(np.float32), want.astype(np.float32))


# ---------------------------------------------------------------- a two-kernel pipeline and cycles

def two_kernel_program():
    relu = KernelProgram("act", [decl("y", TOKENS, N_OUT)], [decl("z", TOKENS, N_OUT)], [
        Load("ys", t(TOKENS, N_OUT), "y", [ALL, ALL]),
        Compute("zs", t(TOKENS, N_OUT), "relu", ["ys"]),
        Store("z", [ALL, ALL], "zs", Cond(0, 0)),
    ])
    base = linear_program()
    layout = replace(base.layout, outputs=[decl("z", TOKENS, N_OUT)],
                     regions=base.layout.regions + [Region("act", 1, 0, 0, 1, 1)],
                     routes=[route("r0", "host.x", "lin.x", hops=0), route("r1", "lin.y", "act.y", hops=2),
                             route("r2", "act.z", "host.z", hops=3)])
    return Program(layout, {"lin": linear_kernel(), "act": relu})


def test_pipeline_of_two_kernels(linear_data):
    params, inputs = linear_data
    z = simulate(two_kernel_program(), params, inputs, TOY).outputs["z"]
    want = np.maximum(inputs["x"].astype(np.float64) @ params["W"].T + params["b"], 0)
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-5)


def test_cycle_report_is_the_sum_of_the_cost_rules(linear_data):
    prog = two_kernel_program()
    cycles = simulate(prog, *linear_data, TOY).cycles
    regions = {r.kernel: r for r in prog.layout.regions}
    want_kernels, want_latencies = {}, {}
    for name, kp in prog.kernels.items():
        r = regions[name]
        want_kernels[name] = kernel_cycles(kp, TOY, r.w, r.h)
        want_latencies[name] = sum(stmt_cycles(s, kernel_types(kp), TOY, r.w, r.h) for s in kp.body)
        assert want_latencies[name] == kernel_latency_cycles(kp, TOY, r.w, r.h)
    nbytes = TOKENS * N_OUT * 4
    want_routes = {
        "r0": route_cycles(TOKENS * N_IN * 4, 0, None, regions["lin"], TOY),
        "r1": route_cycles(nbytes, 2, regions["lin"], regions["act"], TOY),
        "r2": route_cycles(nbytes, 3, regions["act"], None, TOY),
    }
    assert cycles.kernels == want_kernels and cycles.routes == want_routes
    assert cycles.kernel_latencies == want_latencies
    assert want_latencies["lin"] > want_kernels["lin"]  # the 3x2 region's loads take hops
    assert list(cycles.kernels) == ["lin", "act"]  # execution order
    assert want_routes["r1"] > TOY.transfer_cycles(nbytes, 2)  # crossing wafers costs the link
    assert cycles.latency_cycles == sum(want_latencies.values()) + sum(want_routes.values())
    assert cycles.bottleneck_kernel == "lin" and cycles.bottleneck_cycles == want_kernels["lin"]
    assert cycles.passes_per_second == pytest.approx(TOY.clock_hz / want_kernels["lin"])
    assert cycles.latency_seconds == pytest.approx(cycles.latency_cycles / TOY.clock_hz)
    assert cycles.clock_hz == TOY.clock_hz and want_kernels["lin"] > 0


# ---------------------------------------------------------------- errors

def errors_of(prog, params, inputs) -> str:
    with pytest.raises(SimulationError) as info:
        simulate(prog, params, inputs, TOY)
    return str(info.value)


def test_missing_route_into_a_kernel(linear_data):
    prog = linear_program()
    prog.layout.routes = prog.layout.routes[1:]
    assert "no route delivers lin.x" in errors_of(prog, *linear_data)


def test_route_from_a_kernel_that_has_not_run(linear_data):
    prog = two_kernel_program()
    prog.layout.regions.reverse()
    msg = errors_of(prog, *linear_data)
    assert "layout.wkl:9:3" in msg and "route 'r1' reads lin.y" in msg and "has not run yet" in msg


def test_missing_param_points_at_the_tile(linear_data):
    params, inputs = linear_data
    msg = errors_of(linear_program(), {"b": params["b"]}, inputs)
    assert "kernels/k.wkl:3:3" in msg and "param 'W'" in msg and "was not given" in msg


def test_missing_or_misshapen_input(linear_data):
    params, inputs = linear_data
    assert "input 'x'" in errors_of(linear_program(), params, {})
    msg = errors_of(linear_program(), params, {"x": inputs["x"].astype(np.float64)})
    assert "declared f32[3, 10]" in msg and "float64" in msg
    assert "shape [10, 3]" in errors_of(linear_program(), params, {"x": inputs["x"].T.copy()})


def test_uncovered_output_names_kernel_and_tensor(linear_data):
    kernel = linear_kernel()
    kernel.body[-1] = Store("y", [ALL, block(BN, "py")], "y_blk", Cond(px=2, py=0))
    msg = errors_of(linear_program(kernel), *linear_data)
    assert "kernel 'lin'" in msg and "out 'y' unwritten" in msg and "9 of 21" in msg


def test_unknown_op_and_wrong_declared_shape_carry_the_span(linear_data):
    kernel = linear_kernel()
    kernel.body[4] = Compute("s", t(TOKENS, BN), "frobnicate", ["p"], {}, span(7))
    assert "kernels/k.wkl:7:3" in errors_of(linear_program(kernel), *linear_data)
    kernel.body[4] = Compute("s", t(TOKENS, BN + 1), "reduce_row", ["p"], {}, span(7))
    msg = errors_of(linear_program(kernel), *linear_data)
    assert "kernels/k.wkl:7:3" in msg and "declares f32[3, 5]" in msg


def test_slices_that_do_not_fit_the_local(linear_data):
    kernel = linear_kernel()
    kernel.body[2] = Load("xs", t(TOKENS, BK), "x", [ALL, block(BK + 1, "px")], span(5))
    msg = errors_of(linear_program(kernel), *linear_data)
    assert "kernels/k.wkl:5:3" in msg and "block of shape [3, 5]" in msg


@dataclass
class Shuffle:  # a statement kind the simulator has never heard of
    name: str
    span: Span | None = None


def test_unknown_statement_and_undefined_local(linear_data):
    kernel = linear_kernel()
    kernel.body.insert(0, Shuffle("q", span(2)))
    assert "kernels/k.wkl:2:3" in errors_of(linear_program(kernel), *linear_data)
    kernel = linear_kernel()
    kernel.body[3] = Compute("p", t(TOKENS, BN), "linear", ["x", "wt"], {}, span(6))
    msg = errors_of(linear_program(kernel), *linear_data)
    assert "'x' is not a local" in msg and "load it" in msg


def test_store_whose_condition_no_pe_meets(linear_data):
    kernel = linear_kernel()
    kernel.body[-1] = Store("y", [ALL, block(BN, "py")], "y_blk", Cond(px=3), span(9))
    assert "no PE of the 3 x 2 region" in errors_of(linear_program(kernel), *linear_data)


def test_route_to_nowhere(linear_data):
    prog = linear_program()
    prog.layout.routes.append(route("stray", "lin.y", "host.nothing"))
    assert "route 'stray'" in errors_of(prog, *linear_data)


def test_region_without_kernel(linear_data):
    prog = linear_program()
    prog.layout.regions.append(Region("ghost", 0, 8, 8, 1, 1, span(4, "layout.wkl")))
    assert "layout.wkl:4:3: error: region 'ghost' has no kernel" in errors_of(prog, *linear_data)
