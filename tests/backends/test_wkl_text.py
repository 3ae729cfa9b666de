"""WKL text form: the printer and parser round-trip, golden files, spans and syntax errors."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backends.wkl import (emit_kernel, emit_layout, emit_program, parse_kernel, parse_layout,
                          parse_program, strip_spans)
from ir.errors import ParseError
from ir.types import DType, TensorType
from ir.wkl import (Affine, Compute, Cond, Endpoint, KernelProgram, Layout, Load, Program, Region,
                    Route, Slice, Store, TensorDecl, Tile)

GOLDEN = Path(__file__).parent.parent / "golden" / "wkl"


def f32(*shape: int) -> TensorType:
    return TensorType(shape, DType.f32)


def block(size: int, var: str) -> Slice:
    return Slice.block(size, var)


# ---------------------------------------------------------------- hand-built programs

def linear_kernel() -> KernelProgram:
    """LANGUAGE.md's example: a 64x32 weight on a 2 x 2 region, bias and relu fused."""
    return KernelProgram(
        "fc1", [TensorDecl("x", f32(4, 32))], [TensorDecl("h", f32(4, 64))],
        [Tile("w", f32(32, 16), "fc1.weight", [block(32, "py"), block(16, "px")]),
         Tile("b", f32(32), "fc1.bias", [block(32, "py")]),
         Load("xs", f32(4, 16), "x", [Slice(), block(16, "px")]),
         Compute("p", f32(4, 32), "linear", ["xs", "w"]),
         Compute("s", f32(4, 32), "reduce_row", ["p"]),
         Compute("t", f32(4, 32), "add", ["s", "b"]),
         Compute("u", f32(4, 32), "relu", ["t"]),
         Store("h", [Slice(), block(32, "py")], "u", Cond(px=1))],
        kind="linear", layer=0, source="model.fc1 (examples/mlp.py:12)")


def vector_kernel() -> KernelProgram:
    """An RMS norm on one PE, with attributes of every value kind."""
    return KernelProgram(
        "norm", [TensorDecl("h", f32(4, 64))], [TensorDecl("y", f32(4, 64))],
        [Tile("g", f32(64), "norm.weight", [Slice()]),
         Load("hs", f32(4, 64), "h", [Slice(), Slice()]),
         Compute("sq", f32(4, 64), "mul", ["hs", "hs"]),
         Compute("ms", f32(4, 1), "mean", ["sq"], {"dims": [-1], "keepdim": True}),
         Compute("e", f32(4, 1), "add", ["ms"], {"scalar": 1e-06, "swap": False}),
         Compute("r", f32(4, 1), "rsqrt", ["e"]),
         Compute("n", f32(4, 64), "mul", ["hs", "r"]),
         Compute("m", f32(4, 64), "mul", ["n", "g"], {"note": 'rms "norm"\n', "tag": None}),
         Compute("c", f32(4, 64), "maximum", ["m"],
                 {"scalar": -math.inf, "mix": [1, 2.5, "s", None, True, [-0.0, 1e300]]}),
         Store("y", [Slice(), Slice()], "c", Cond(px=0, py=0))],
        kind="vector", layer=None, source="model.norm (model.py:30)")


def mlp_layout() -> Layout:
    return Layout(
        "mlp", "toy", (16, 16), 1,
        inputs=[TensorDecl("x", f32(4, 32))],
        params=[TensorDecl("fc1.weight", f32(64, 32)), TensorDecl("fc1.bias", f32(64)),
                TensorDecl("norm.weight", f32(64))],
        outputs=[TensorDecl("y", f32(4, 64))],
        regions=[Region("fc1", 0, 0, 0, 2, 2), Region("norm", 0, 2, 0, 1, 1)],
        routes=[Route("r0", 0, Endpoint("host", "x"), Endpoint("fc1", "x"), 0),
                Route("r1", 1, Endpoint("fc1", "h"), Endpoint("norm", "h"), 1),
                Route("r2", 2, Endpoint("norm", "y"), Endpoint("host", "y"), 13)])


def mlp_program() -> Program:
    return Program(mlp_layout(), {"fc1": linear_kernel(), "norm": vector_kernel()})


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("make", [linear_kernel, vector_kernel])
def test_kernel_round_trips(make):
    kp = make()
    text = emit_kernel(kp)
    back = parse_kernel(text, f"kernels/{kp.name}.wkl")
    assert strip_spans(back) == kp
    assert emit_kernel(back) == text


def test_layout_round_trips():
    layout = mlp_layout()
    text = emit_layout(layout)
    back = parse_layout(text, "layout.wkl")
    assert strip_spans(back) == layout
    assert back.regions == layout.regions and back.routes == layout.routes  # spans do not compare
    assert emit_layout(back) == text


def test_program_round_trips_and_records_files():
    files = emit_program(mlp_program())
    assert list(files) == ["layout.wkl", "kernels/fc1.wkl", "kernels/norm.wkl"]
    back = parse_program(files)
    assert strip_spans(back.kernels) == mlp_program().kernels
    assert back.files == {"layout": "layout.wkl", "fc1": "kernels/fc1.wkl",
                          "norm": "kernels/norm.wkl"}
    assert emit_program(back) == files


def test_attribute_values_keep_their_kinds():
    attrs = parse_kernel(emit_kernel(vector_kernel()), "k.wkl").body[-2].attrs
    assert attrs == {"scalar": -math.inf, "mix": [1, 2.5, "s", None, True, [-0.0, 1e300]]}
    assert type(attrs["mix"][0]) is int and type(attrs["mix"][4]) is bool
    assert math.copysign(1.0, attrs["mix"][5][0]) == -1.0


def test_floats_print_as_repr_and_keys_sorted():
    text = emit_kernel(vector_kernel())
    assert "e : f32[4, 1] = add(ms) {scalar = 1e-06, swap = false}" in text
    assert ('c : f32[4, 64] = maximum(m) {mix = [1, 2.5, "s", none, true, [-0.0, 1e+300]], '
            "scalar = -inf}") in text
    assert 'm : f32[4, 64] = mul(n, g) {note = "rms \\"norm\\"\\n", tag = none}' in text


def test_nan_and_tuple_attributes():
    kp = KernelProgram("k", [], [], [Compute("a", f32(1), "relu", ["b"],
                                             {"x": math.nan, "shape": (2, 3)})])
    back = parse_kernel(emit_kernel(kp), "k.wkl").body[0].attrs
    assert math.isnan(back["x"])
    assert back["shape"] == [2, 3]  # tuples print as lists


def test_kernel_header_and_generated_comment():
    lines = emit_kernel(linear_kernel()).splitlines()
    assert lines[0] == "// generated by waferc"
    assert lines[1].startswith("// per PE: 2 tiles, 1 load, 4 computes, 1 store;")
    assert lines[2] == 'kernel fc1 kind linear layer 0 source "model.fc1 (examples/mlp.py:12)" {'
    assert emit_layout(mlp_layout()).startswith("// generated by waferc\n")


def test_empty_kind_and_empty_kernel_round_trip():
    kp = KernelProgram("k", [], [], [], kind="", layer=7, source="")
    text = emit_kernel(kp)
    assert 'kernel k layer 7 source "" {\n}\n' in text
    assert strip_spans(parse_kernel(text, "k.wkl")) == kp


def test_emit_rejects_names_the_parser_could_not_read_back():
    with pytest.raises(ValueError, match="'layers-0' is not a WKL name"):
        emit_kernel(KernelProgram("layers-0", [], [], []))
    with pytest.raises(ValueError, match="cannot be named 'store'"):
        emit_kernel(KernelProgram("k", [], [], [Compute("store", f32(1), "relu", ["b"])]))
    layout = mlp_layout()
    layout.routes[0] = Route("r0", 0, Endpoint("host", "x y"), Endpoint("fc1", "x"), 0)
    with pytest.raises(ValueError, match="'x y' is not a WKL name"):
        emit_layout(layout)


def test_emit_rejects_non_statements_and_odd_attributes():
    with pytest.raises(TypeError, match="not a WKL statement"):
        emit_kernel(KernelProgram("k", [], [], ["nope"]))
    with pytest.raises(TypeError, match="cannot hold a"):
        emit_kernel(KernelProgram("k", [], [], [Compute("a", f32(1), "relu", ["b"], {"x": {1}})]))


# ---------------------------------------------------------------- hypothesis

_COEF = st.integers(-1000, 1000)
_AFFINES = st.builds(Affine, _COEF, _COEF, _COEF)
_SLICES = st.one_of(st.just(Slice()), st.builds(Slice, _AFFINES, _AFFINES))
_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,8}", fullmatch=True)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=False), st.text(max_size=12))
_ATTR_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4), max_leaves=10)
_ATTRS = st.dictionaries(_NAMES, _ATTR_VALUES, max_size=5)


@settings(max_examples=60, deadline=None)
@given(slices=st.lists(_SLICES, max_size=4), attrs=_ATTRS, param=_NAMES, source=st.text(),
       where=st.builds(Cond, st.none() | st.integers(0, 99), st.none() | st.integers(0, 99)))
def test_generated_slices_and_attributes_round_trip(slices, attrs, param, source, where):
    kp = KernelProgram(
        "k", [], [TensorDecl("o", f32(1))],
        [Tile("t", f32(*[1] * len(slices)), param, slices),
         Compute("c", f32(1), "relu", ["t"], attrs),
         Store("o", slices, "c", where)],
        kind="vector", layer=3, source=source)
    text = emit_kernel(kp)
    back = parse_kernel(text, "k.wkl")
    assert strip_spans(back) == kp
    assert emit_kernel(back) == text


@settings(max_examples=50)
@given(st.builds(Affine, _COEF, _COEF, _COEF))
def test_affine_prints_canonically(a):
    assert "+ -" not in str(a)
    kp = KernelProgram("k", [], [], [Tile("t", f32(1), "p", [Slice(a, a + 1)])])
    assert parse_kernel(emit_kernel(kp), "k.wkl").body[0].slices == [Slice(a, a + 1)]


# ---------------------------------------------------------------- golden files

def assert_matches_golden(name: str, text: str) -> None:
    """Byte-for-byte against tests/golden/wkl/NAME; WAFERC_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / name
    if os.environ.get("WAFERC_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    assert path.read_bytes() == text.encode(), f"{name} differs from {path}; rerun with " \
                                               "WAFERC_UPDATE_GOLDEN=1 and review the diff"


def test_golden_layout():
    assert_matches_golden("layout.wkl", emit_layout(mlp_layout()))


@pytest.mark.parametrize("make", [linear_kernel, vector_kernel])
def test_golden_kernel(make):
    kp = make()
    assert_matches_golden(f"{kp.name}.wkl", emit_kernel(kp))


# ---------------------------------------------------------------- hand-written text and spans

HAND_WRITTEN_KERNEL = """\
// a comment line
kernel k layer none source "s" {
  tile w : f32[2] = p[-px + 4 : 6 - px]   // trailing comment
  out o : f32[8]
  store o[2*px - 1 : 2*px + 1] = w where py == 3 and px == 1
  in i : bf16[]
}
"""


def test_hand_written_kernel_parses():
    kp = parse_kernel(HAND_WRITTEN_KERNEL, "kernels/k.wkl")
    assert kp.kind == "" and kp.layer is None and kp.source == "s"
    assert kp.ins == [TensorDecl("i", TensorType((), DType.bf16), kp.ins[0].span)]
    assert kp.body[0].slices == [Slice(Affine(4, px=-1), Affine(6, px=-1))]
    assert kp.body[1].cond == Cond(px=1, py=3)
    assert kp.body[1].slices == [Slice(Affine(-1, px=2), Affine(1, px=2))]


def test_spans_point_at_the_first_token_of_each_statement():
    kp = parse_kernel(HAND_WRITTEN_KERNEL, "kernels/k.wkl")
    assert (kp.span.file, kp.span.line, kp.span.col) == ("kernels/k.wkl", 2, 1)
    assert str(kp.body[0].span) == "kernels/k.wkl:3:3"
    assert kp.body[0].span.text == "  tile w : f32[2] = p[-px + 4 : 6 - px]   // trailing comment"
    assert str(kp.outs[0].span) == "kernels/k.wkl:4:3"
    assert str(kp.body[1].span) == "kernels/k.wkl:5:3"
    layout = parse_layout(emit_layout(mlp_layout()), "layout.wkl")
    assert str(layout.inputs[0].span) == "layout.wkl:4:1"
    assert str(layout.regions[1].span) == "layout.wkl:11:1"
    assert str(layout.routes[2].span) == "layout.wkl:15:1"


def test_route_endpoints_prefer_declared_dotted_region_names():
    text = ('layout "m" target "toy" fabric 4 x 4 wafers 1\n'
            "route r color 0 a.b.c -> host.y.z hops 0\n"   # routes may precede their regions
            "region a.b wafer 0 at 0, 0 size 1 x 1\n")
    route = parse_layout(text, "layout.wkl").routes[0]
    assert route.src == Endpoint("a.b", "c") and route.dst == Endpoint("host", "y.z")


def test_layout_keywords_are_names_where_a_name_is_expected():
    text = ('layout "m" target "toy" fabric 4 x 4 wafers 1\ninput x : f32[1]\n'
            "region px wafer 0 at 0, 0 size 1 x 1\n")
    layout = parse_layout(text, "layout.wkl")
    assert layout.inputs[0].name == "x" and layout.regions[0].kernel == "px"


# ---------------------------------------------------------------- syntax errors

KERNEL_HEAD = 'kernel k layer 0 source "" {\n'


@pytest.mark.parametrize("body, where, message", [
    ("  y foo f32[4] = relu(x)\n}\n", "2:5", "expected ':' but found 'foo'"),
    ("  in x : f32[4]\n", "2:16", "expected one of 'in', 'load', 'out', 'state', 'store', 'tile', '}', "
                                  "a name but found end of file"),
    ("  in x : f33[4]\n}\n", "2:10", "unknown dtype 'f33'"),
    ("  tile t : f32[4] = p[3 px : 4]\n}\n", "2:25", "expected one of ')', '*', '+', ',', '-', "
                                                    "':', ']' but found 'px'"),
    ("  in x : f32[4] %\n}\n", "2:17", "unexpected character '%'"),
    ("  y : f32[4] = relu(x) {a = 1, a = 2}\n}\n", "2:32", "attribute 'a' is given twice"),
    ("  store o[:] = y where px == 1 and px == 2\n}\n", "2:36", "'px' appears twice"),
    ("  tile : f32[4] = p[:]\n}\n", "2:8", "expected a name but found ':'"),
])
def test_kernel_syntax_errors(body, where, message):
    with pytest.raises(ParseError) as err:
        parse_kernel(KERNEL_HEAD + body, "kernels/k.wkl")
    assert str(err.value).startswith(f"kernels/k.wkl:{where}: error: {message}")


def test_syntax_error_shows_the_line_with_a_caret():
    with pytest.raises(ParseError) as err:
        parse_kernel(KERNEL_HEAD + "  y foo f32[4] = relu(x)\n}\n", "kernels/k.wkl")
    assert str(err.value) == ("kernels/k.wkl:2:5: error: expected ':' but found 'foo'\n"
                              "      y foo f32[4] = relu(x)\n"
                              "        ^")


@pytest.mark.parametrize("text, where, message", [
    ('layout "m" target "toy" fabric 4 4 wafers 1\n', "1:34", "expected 'x' but found '4'"),
    ('layout "m\\q" target "toy" fabric 4 x 4 wafers 1\n', "1:8", "malformed string literal"),
    ('layout "m" target "toy" fabric 4 x 4 wafers 1\nroute r color 0 hostx -> a.b hops 0\n',
     "2:17", "route endpoint 'hostx' must be KERNEL.TENSOR or host.TENSOR"),
    (KERNEL_HEAD + "}\n", "1:1", "expected 'layout' but found 'kernel'"),
    ("", "1:1", "expected 'layout' but found end of file"),
])
def test_layout_syntax_errors(text, where, message):
    with pytest.raises(ParseError) as err:
        parse_layout(text, "layout.wkl")
    assert str(err.value).startswith(f"layout.wkl:{where}: error: {message}")


def test_program_file_set_errors():
    kernel = emit_kernel(linear_kernel())
    with pytest.raises(ParseError, match="needs a layout.wkl"):
        parse_program({"kernels/fc1.wkl": kernel})
    layout = emit_layout(mlp_layout())
    with pytest.raises(ParseError, match="unexpected file 'fc1.wkl'"):
        parse_program({"layout.wkl": layout, "fc1.wkl": kernel})
    with pytest.raises(ParseError) as err:
        parse_program({"layout.wkl": layout, "kernels/fc2.wkl": kernel})
    assert str(err.value).startswith("kernels/fc2.wkl:3:1: error: file 'kernels/fc2.wkl' holds "
                                     "kernel 'fc1', not 'fc2'")


def test_per_pe_affine_attribute_round_trips():
    text = ("kernel k layer none source \"\" {\n  in ids : i64[1, 4]\n  out e : f32[1, 4, 8]\n"
            "  tile t : f32[25, 8] = emb[25*px : 25*px + 25, :]\n"
            "  load i : i64[1, 4] = ids[:, :]\n"
            "  p : f32[1, 4, 8] = embedding(t, i) {offset = (25*px)}\n"
            "  store e[:, :, :] = p where px == 0\n}\n")
    kp = parse_kernel(text, "kernels/k.wkl")
    assert kp.body[2].attrs == {"offset": Affine(0, px=25)}
    assert parse_kernel(emit_kernel(kp), "kernels/k.wkl").body[2].attrs == kp.body[2].attrs


def test_state_buffer_round_trips():
    text = ("kernel k layer 0 source \"\" {\n  in x : f32[2]\n  out y : f32[2]\n"
            "  state k_cache : f16[1, 2, 64, 16]\n  load a : f32[2] = x[:]\n"
            "  store y[:] = a where px == 0\n}\n")
    kp = parse_kernel(text, "kernels/k.wkl")
    assert kp.body[0].name == "k_cache" and kp.body[0].type.shape == (1, 2, 64, 16)
    assert emit_kernel(kp).endswith(text.split("{\n", 1)[1])
