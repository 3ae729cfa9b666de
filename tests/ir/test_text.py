"""The IR text form: exact round trips, the golden MLP, and parse errors with FILE:LINE:COL."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ir.errors import ParseError, SourceLoc, Span
from ir.graph import Graph, Op, Value
from ir.ops import infer
from ir.text import format_attrs, format_op, parse_graph, print_graph
from ir.types import DType, TensorType
from ir.verify import verify_graph

GOLDEN = Path(__file__).parents[1] / "golden" / "ir"
F32 = DType.f32


def t(*shape: int, dtype: DType = F32) -> TensorType:
    return TensorType(tuple(shape), dtype)


def add_op(g: Graph, name: str, opname: str, operands: list[Value], attrs=None,
           loc: SourceLoc = SourceLoc()) -> Value:
    """Append an op whose result type comes from the shape rule."""
    attrs = attrs or {}
    result = Value(name, infer(opname, [v.type for v in operands], attrs))
    g.ops.append(Op(opname, operands, [result], attrs, loc))
    return result


def mlp_graph() -> Graph:
    g = Graph("mlp")
    x = Value("x", t(4, 32))
    g.inputs = [x]
    w1, b1, w2 = Value("fc1.weight", t(64, 32)), Value("fc1.bias", t(64)), Value("fc2.weight", t(10, 64))
    g.params = [w1, b1, w2]
    h = add_op(g, "h", "linear", [x, w1, b1], loc=SourceLoc("model.fc1", "examples/mlp.py", 12))
    r = add_op(g, "r", "relu", [h], loc=SourceLoc("model.act", "examples/mlp.py", 13))
    y = add_op(g, "y", "linear", [r, w2], loc=SourceLoc("model.fc2", "examples/mlp.py", 14))
    s = add_op(g, "s", "mul", [y], {"scalar": 0.5, "swap": False})
    g.outputs = [y, s]
    return g


def structure(g: Graph):
    """Everything the text form must preserve, in a comparable form (nan compared by repr)."""
    def attrs(a):
        return sorted((k, repr(v)) for k, v in a.items())
    decls = [(v.name, v.type) for v in g.inputs], [(v.name, v.type) for v in g.params]
    ops = [(op.opname, [v.name for v in op.operands], [(r.name, r.type) for r in op.results],
            attrs(op.attrs), op.loc) for op in g.ops]
    return g.name, decls, ops, [v.name for v in g.outputs]


def assert_round_trips(g: Graph) -> str:
    text = print_graph(g)
    parsed = parse_graph(text)
    assert structure(parsed) == structure(g)
    assert print_graph(parsed) == text
    return text


# ---------------------------------------------------------------- printing and round trips

def test_mlp_round_trips():
    assert_round_trips(mlp_graph())


def test_mlp_matches_golden_file():
    text = print_graph(mlp_graph())
    golden = GOLDEN / "mlp.ir"
    if os.environ.get("WAFERC_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), "printed IR changed; rerun with WAFERC_UPDATE_GOLDEN=1 and review"


def test_golden_file_parses_to_the_mlp():
    assert structure(parse_graph((GOLDEN / "mlp.ir").read_text())) == structure(mlp_graph())


def test_op_line_format():
    op = mlp_graph().ops[0]
    assert format_op(op) == ('%h : f32[4, 64] = linear(%x, %fc1.weight, %fc1.bias) '
                             'loc("model.fc1" at "examples/mlp.py":12)')


EVERY_ATTR_KIND = {
    "small": 3, "negative": -7, "huge": 9223372036854775807, "beyond_i64": 2**70,
    "quarter": 0.25, "tiny": 1e-06, "big": 1e+20, "neg_zero": -0.0,
    "inf": math.inf, "neg_inf": -math.inf, "nan": math.nan,
    "yes": True, "no": False, "nothing": None,
    "plain": "f16", "tricky": 'say "hi"\\ \n\t\x00 caf\u00e9 \u2028 // not a comment',
    "ints": [1, -2, 3], "mixed": [1, 2.5, "a", None, True], "nested": [[1, 2], []], "empty": [],
}


def test_every_attr_kind_round_trips():
    g = Graph("attrs")
    x = Value("x", t(2, 3))
    g.inputs = [x]
    g.outputs = [add_op(g, "y", "relu", [x], dict(EVERY_ATTR_KIND))]
    text = assert_round_trips(g)
    parsed = parse_graph(text).ops[0].attrs
    assert math.isnan(parsed["nan"]) and parsed["inf"] == math.inf and parsed["huge"] == 2**63 - 1
    assert math.copysign(1, parsed["neg_zero"]) == -1 and parsed["tricky"] == EVERY_ATTR_KIND["tricky"]
    assert len(text.splitlines()) == 5  # strings never break a line


def test_attr_dict_syntax():
    attrs = {"swap": False, "scalar": 1.0, "dims": [0, -1], "eps": 1e-05, "name": None, "s": "a\"b"}
    assert format_attrs(attrs) == ('{dims = [0, -1], eps = 1e-05, name = none, s = "a\\"b", '
                                   'scalar = 1.0, swap = false}')


def test_tuple_attrs_print_as_lists():
    g = Graph("view")
    x = Value("x", t(2, 3))
    g.inputs = [x]
    g.outputs = [add_op(g, "y", "reshape", [x], {"shape": (3, 2)})]
    text = print_graph(g)
    assert "{shape = [3, 2]}" in text
    assert parse_graph(text).ops[0].attrs == {"shape": [3, 2]}


@pytest.mark.parametrize("loc, printed", [
    (SourceLoc(), None),
    (SourceLoc("model.fc1"), 'loc("model.fc1")'),
    (SourceLoc("", "a.py", 3), 'loc("" at "a.py":3)'),
    (SourceLoc("m", "dir with \"quotes\"/a.py", 7), 'loc("m" at "dir with \\"quotes\\"/a.py":7)'),
])
def test_locations(loc, printed):
    g = Graph("g")
    x = Value("x", t(1))
    g.inputs = [x]
    g.outputs = [add_op(g, "y", "neg", [x], loc=loc)]
    line = assert_round_trips(g).splitlines()[2]
    assert line.endswith(printed) if printed else "loc(" not in line


def test_quoted_graph_name_scalars_and_no_outputs():
    g = Graph("llama-3.1 8b")
    x = Value("x", t(dtype=DType.bf16))
    g.inputs = [x]
    add_op(g, "y", "exp", [x])
    text = assert_round_trips(g)
    assert text == 'graph @"llama-3.1 8b" {\n  input %x : bf16[]\n  %y : bf16[] = exp(%x)\n  return\n}\n'


def test_parser_accepts_comments_and_free_layout():
    text = """// a hand-written graph
    graph @g{input %x:f32[2]   // the input
    %y : f32[2] = add(%x, %x)
      {}
    return %y}"""
    g = parse_graph(text)
    verify_graph(g)
    assert [op.opname for op in g.ops] == ["add"] and g.ops[0].attrs == {}


# ---------------------------------------------------------------- random graphs

_FIRST = "abcxyzABZ_"
NAMES = st.builds(str.__add__, st.sampled_from(_FIRST), st.text(_FIRST + "019.", max_size=5))
TWELVE_NAMES = st.lists(NAMES, min_size=12, max_size=12, unique=True)
UNARY = ["neg", "exp", "relu", "silu", "tanh", "abs"]
BINARY = ["add", "sub", "mul", "maximum"]


@st.composite
def elementwise_graphs(draw) -> Graph:
    """Small graphs of elementwise, reshape and permute ops over one shape family."""
    names = iter(draw(TWELVE_NAMES))
    g = Graph(draw(st.text(max_size=8)) or "g")
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    g.inputs = [Value(next(names), t(*shape)) for _ in range(draw(st.integers(1, 2)))]
    g.params = [Value(next(names), t(*shape)) for _ in range(draw(st.integers(0, 2)))]
    values = g.inputs + g.params
    for _ in range(draw(st.integers(0, 7))):
        values.append(draw(_random_op(g, next(names), values)))
    g.outputs = draw(st.lists(st.sampled_from(values), max_size=3))
    return g


@st.composite
def _random_op(draw, g: Graph, name: str, values: list[Value]) -> Value:
    x = draw(st.sampled_from(values))
    loc = SourceLoc(draw(st.text(max_size=6)), draw(st.text(max_size=6)), draw(st.integers(0, 999)))
    kind = draw(st.sampled_from(["unary", "binary", "scalar", "reshape", "permute"]))
    if kind == "unary":
        return add_op(g, name, draw(st.sampled_from(UNARY)), [x], loc=loc)
    if kind == "binary":
        same = [v for v in values if v.type == x.type]
        return add_op(g, name, draw(st.sampled_from(BINARY)), [x, draw(st.sampled_from(same))], loc=loc)
    if kind == "scalar":
        attrs = {"scalar": draw(st.floats() | st.integers()), "swap": draw(st.booleans())}
        return add_op(g, name, draw(st.sampled_from(BINARY)), [x], attrs, loc)
    if kind == "reshape":
        return add_op(g, name, "reshape", [x], {"shape": [x.type.numel]}, loc)
    perm = draw(st.permutations(range(x.type.rank)))
    return add_op(g, name, "permute", [x], {"perm": list(perm)}, loc)


@settings(max_examples=60, deadline=None)
@given(elementwise_graphs())
def test_random_graphs_verify_and_round_trip(g):
    verify_graph(g)
    verify_graph(parse_graph(assert_round_trips(g)))


MLP_TEXT = print_graph(mlp_graph())


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(MLP_TEXT) - 1), st.integers(0, 3), st.text(max_size=3))
def test_corrupted_text_gives_parse_error_or_a_graph(start, length, insert):
    """Whatever the damage, the parser answers with a graph or a ParseError, never a lark error."""
    text = MLP_TEXT[:start] + insert + MLP_TEXT[start + length:]
    try:
        verify_graph(parse_graph(text, "m.ir"))
    except ParseError as e:
        assert isinstance(e.loc, Span) and str(e).startswith("m.ir:")


# ---------------------------------------------------------------- parse errors

def parse_error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_graph(text, "bad.ir")
    return info.value


def mutate(old: str, new: str) -> str:
    assert MLP_TEXT.count(old) == 1, old
    return MLP_TEXT.replace(old, new)


# (mutation of the golden MLP text, words in the message, line, column)
SYNTAX_ERRORS = [
    (("f32[4, 32]", "f33[4, 32]"), "unexpected 'f33', expected a dtype", 2, 14),
    (("%x : f32", "%x f32"), "unexpected 'f32', expected ':'", 2, 12),
    (("0.5", "0.5.1"), "unexpected character '.'", 9, 42),
    (("return %y, %s", "return %y,"), "unexpected '}', expected a value name", 11, 1),
    (("return %y, %s\n}", "return %y, %s"), "unexpected end of input, expected one of ',', '}'", 10, 16),
    (("relu(%h)", "relu(%h"), "unexpected 'loc', expected one of ')', ','", 7, 29),
    (("%r : f32[4, 64]", "%r : f32[4, -64]"), "dimension -64 is negative", 7, 15),
    (("swap = false", "swap = \"\\q\""), "malformed string literal", 9, 51),
    (("swap = false", "scalar = false"), "attribute 'scalar' is given twice", 9, 44),
]


@pytest.mark.parametrize("edit, words, line, col", SYNTAX_ERRORS)
def test_syntax_errors_point_at_line_and_column(edit, words, line, col):
    text = mutate(*edit)
    e = parse_error(text)
    assert words in e.message
    assert (e.loc.file, e.loc.line, e.loc.col) == ("bad.ir", line, col)
    source_line = text.splitlines()[line - 1]
    assert str(e).splitlines()[:3] == [f"bad.ir:{line}:{col}: error: {e.message}",
                                      f"    {source_line}", "    " + " " * (col - 1) + "^"]


SEMANTIC_ERRORS = [
    (("%r : f32[4, 64] = relu", "%r : f32[4, 65] = relu"), "'relu' gives f32[4, 64], but %r is "
     "declared f32[4, 65]", 7, 8),
    (("relu(%h)", "relux(%h)"), "unknown op 'relux'", 7, 21),
    (("relu(%h)", "relu(%h, %h)"), "'relu' takes 1..1 operands, got 2", 7, 21),
    (("relu(%h)", "reshape(%h)"), "needs attribute(s) shape", 7, 21),
    (("relu(%h)", "relu(%q)"), "%q is not defined", 7, 26),
    (("relu(%h)", "relu(%y)"), "%y is used before it is defined (on line 8)", 7, 26),
    (("param %fc1.bias", "param %x"), "value name %x is defined twice", 4, 9),
    (("%r : f32", "%h : f32"), "value name %h is defined twice", 7, 3),
    (("return %y, %s", "return %y, %z"), "%z is not defined", 10, 14),
    (("mul(%y) {scalar = 0.5, swap = false}", "mul(%y)"), "needs a 'scalar' attribute", 9, 21),
]


@pytest.mark.parametrize("edit, words, line, col", SEMANTIC_ERRORS)
def test_semantic_errors_point_at_line_and_column(edit, words, line, col):
    e = parse_error(mutate(*edit))
    assert words in e.message
    assert (e.loc.line, e.loc.col) == (line, col)
    assert str(e).startswith(f"bad.ir:{line}:{col}: error: ") and "^" in str(e)


def test_unknown_op_suggests_a_name():
    assert parse_error(mutate("relu(%h)", "relux(%h)")).hint == "did you mean 'relu'?"


def test_empty_and_truncated_text():
    assert "expected 'graph'" in parse_error("").message
    e = parse_error("graph @g {\n  input %x : f32[2]\n\n")
    assert (e.loc.line, e.loc.col) == (2, 20) and "end of input" in e.message


def test_excerpt_is_the_line_lark_counted():
    # A form feed or U+2028 in a comment is a line break to str.splitlines(), not to the parser.
    e = parse_error("// odd\x0c comment \u2028 here\ngraph @g {\n  return %y\n}\n")
    assert (e.loc.line, e.loc.col, e.loc.text) == (3, 10, "  return %y")


# ---------------------------------------------------------------- what the printer refuses

def test_printer_refuses_ops_with_several_results():
    g = mlp_graph()
    g.ops[0].results.append(Value("extra", t(1)))
    with pytest.raises(ValueError, match="2 results"):
        print_graph(g)


def test_printer_refuses_attr_values_it_cannot_write():
    with pytest.raises(TypeError, match="DType"):
        format_attrs({"dtype": DType.f16})
