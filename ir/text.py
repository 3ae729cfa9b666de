"""The IR's text form: `print_graph` writes a `Graph`, `parse_graph` reads it back.

    graph @mlp {
      input %x : f32[4, 32]
      param %fc1.weight : f32[64, 32]
      %h : f32[4, 64] = linear(%x, %fc1.weight) loc("model.fc1" at "examples/mlp.py":12)
      %s : f32[4, 64] = add(%h) {scalar = 1.0, swap = false}
      return %s
    }

Inputs print first, then params, then ops in graph order, then the outputs. Attribute dicts use
the WKL syntax (backends/wkl/LANGUAGE.md): keys sorted, the dict left out when empty. `loc(...)`
is left out when the op's SourceLoc is empty, and shortened to `loc("module")` when it has no file.
Strings are JSON-quoted, so any string survives; a graph name that is not a plain name prints
quoted (`@"llama-3.1"`). `//` starts a comment in parsed text.

Requires (print): one result per op and attribute values of the kinds `verify_graph` accepts.
Ensures: `print_graph(parse_graph(print_graph(g))) == print_graph(g)`, and the parsed graph has
the same names, types, attributes (tuples come back as lists), locations, op order and outputs.

`parse_graph` checks what the verifier checks while it reads, so a graph it returns passes
`verify_graph`; every problem, a result type that disagrees with the op's shape rule included, is
a `ParseError` pointing at FILE:LINE:COL of the IR text.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from ir.errors import ParseError, SourceLoc, Span
from ir.graph import Attr, Graph, Op, Value
from ir.types import DType, TensorType
from ir.verify import NAME_RE, check_op

GRAMMAR = Path(__file__).with_name("ir.lark")

# ---------------------------------------------------------------- printing


def print_graph(g: Graph) -> str:
    """The text form of `g`, ending in a newline."""
    lines = [f"graph @{_graph_name(g.name)} {{"]
    lines += [f"  input %{v.name} : {v.type}" for v in g.inputs]
    lines += [f"  param %{v.name} : {v.type}" for v in g.params]
    lines += [f"  {format_op(op)}" for op in g.ops]
    lines.append(f"  return {_value_list(g.outputs)}".rstrip())
    lines.append("}")
    return "\n".join(lines) + "\n"


def format_op(op: Op) -> str:
    """One op as it prints inside a graph: `%r : T = name(%a, %b) {attrs} loc(...)`."""
    if len(op.results) != 1:
        raise ValueError(f"{op!r} has {len(op.results)} results; the IR text form holds one")
    result = op.results[0]
    text = f"%{result.name} : {result.type} = {op.opname}({_value_list(op.operands)})"
    if op.attrs:
        text += " " + format_attrs(op.attrs)
    if op.loc != SourceLoc():
        text += " " + format_loc(op.loc)
    return text


def format_attrs(attrs: dict[str, Attr]) -> str:
    """`{key = value, ...}` with keys sorted, as in IR and WKL text."""
    return "{" + ", ".join(f"{k} = {format_attr_value(attrs[k])}" for k in sorted(attrs)) + "}"


def format_attr_value(value: Attr) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)  # `1e-06`, `inf`, `nan`; exact for every float
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_attr_value(v) for v in value) + "]"
    raise TypeError(f"an IR attribute cannot hold a {type(value).__name__}: {value!r}")


def format_loc(loc: SourceLoc) -> str:
    if not loc.file and not loc.line:
        return f"loc({quote_string(loc.module)})"
    return f"loc({quote_string(loc.module)} at {quote_string(loc.file)}:{loc.line})"


# Line breaks to editors and str.splitlines() that JSON leaves unescaped; escaped so that one
# printed line is one line to every tool.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def quote_string(s: str) -> str:
    """A double-quoted string with JSON escapes; never spans lines."""
    quoted = json.dumps(s, ensure_ascii=False)
    return "".join(_LINE_BREAKS.get(c, c) for c in quoted)


def _graph_name(name: str) -> str:
    return name if NAME_RE.fullmatch(name) else quote_string(name)


def _value_list(values: list[Value]) -> str:
    return ", ".join(f"%{v.name}" for v in values)


# ---------------------------------------------------------------- parsing


def parse_graph(text: str, filename: str = "<ir>") -> Graph:
    """The graph printed in `text`; `ParseError` with FILE:LINE:COL if it is malformed."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, filename) from None
    return _GraphBuilder(text, filename).build(tree)


@functools.cache
def _parser() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", maybe_placeholders=True)


class _GraphBuilder:
    """Turns a parse tree into a Graph, checking names, uses and types in text order."""

    def __init__(self, text: str, filename: str):
        self.text = text
        self.filename = filename
        self.values: dict[str, Value] = {}
        self.defined_later: dict[str, int] = {}  # op result name -> its line, for better errors

    def build(self, tree: Tree) -> Graph:
        name_token, *body, ret = tree.children
        g = Graph(self.graph_name(name_token))
        self.defined_later = {str(n.children[0])[1:]: n.children[0].line
                              for n in body if n.data == "op"}
        for node in body:
            if node.data == "decl":
                self.add_decl(g, node)
            else:
                g.ops.append(self.build_op(node))
        g.outputs = self.operands(ret.children[0])
        return g

    def add_decl(self, g: Graph, node: Tree) -> None:
        kind, name_token, type_node = node.children
        value = self.define(name_token, self.tensor_type(type_node))
        (g.inputs if kind == "input" else g.params).append(value)

    def build_op(self, node: Tree) -> Op:
        name_token, type_node, opname, operands_node, attrs_node, loc_node = node.children
        operands = self.operands(operands_node)
        result = self.define(name_token, self.tensor_type(type_node))
        op = Op(str(opname), operands, [result], self.attrs(attrs_node), self.loc(loc_node))
        problem = check_op(op)
        if problem:
            at = type_node.children[0] if problem.in_result_type else opname
            raise self.error(problem.message, at, problem.hint)
        return op

    # ------------------------------------------------------------ pieces

    def define(self, name_token: Token, typ: TensorType) -> Value:
        name = str(name_token)[1:]
        if name in self.values:
            raise self.error(f"value name %{name} is defined twice", name_token,
                             "inputs, params and op results share one namespace")
        self.values[name] = Value(name, typ)
        return self.values[name]

    def operands(self, node: Tree | None) -> list[Value]:
        return [self.use(token) for token in node.children] if node else []

    def use(self, name_token: Token) -> Value:
        name = str(name_token)[1:]
        if name in self.values:
            return self.values[name]
        if name in self.defined_later:
            raise self.error(f"%{name} is used before it is defined (on line "
                             f"{self.defined_later[name]})", name_token)
        raise self.error(f"%{name} is not defined", name_token)

    def tensor_type(self, node: Tree) -> TensorType:
        dtype, *dims = node.children
        for d in dims:
            if d is not None and int(d) < 0:
                raise self.error(f"dimension {d} is negative", d)
        return TensorType(tuple(int(d) for d in dims if d is not None), DType(str(dtype)))

    def attrs(self, node: Tree | None) -> dict[str, Attr]:
        out: dict[str, Attr] = {}
        for attr in node.children if node else []:
            if attr is None:  # `{}`
                continue
            key, value = attr.children
            if key in out:
                raise self.error(f"attribute '{key}' is given twice", key)
            out[str(key)] = self.attr_value(value)
        return out

    def attr_value(self, node: Tree) -> Attr:
        if node.data == "list":
            return [self.attr_value(v) for v in node.children if v is not None]
        if node.data in _CONSTANTS:
            return _CONSTANTS[node.data]
        token = node.children[0]
        if node.data == "int":
            return int(token)
        if node.data == "float":
            return float(token)
        return self.string(token)

    def graph_name(self, token: Token) -> str:
        name = str(token)[1:]  # after the `@`; quoted when not a plain name
        if not name.startswith('"'):
            return name
        return self.string(Token("STRING", name, line=token.line, column=token.column + 1))

    def loc(self, node: Tree | None) -> SourceLoc:
        if node is None:
            return SourceLoc()
        module, file, line = node.children
        if file is None:
            return SourceLoc(self.string(module))
        return SourceLoc(self.string(module), self.string(file), int(line))

    def string(self, token: Token) -> str:
        try:
            return json.loads(token, strict=False)  # strict=False: a raw tab inside is fine
        except json.JSONDecodeError as e:
            raise self.error(f"malformed string literal: {e.msg}", token) from None

    def error(self, message: str, token: Token, hint: str = "") -> ParseError:
        return ParseError(message, _span(self.filename, self.text, token.line, token.column), hint)


_CONSTANTS = {"true": True, "false": False, "none": None}


# ---------------------------------------------------------------- syntax errors

# How the grammar's named terminals read in "expected ..." messages.
_TERMINAL_WORDS = {
    "VALUE_NAME": "a value name like %x", "GRAPH_NAME": "a graph name like @mlp",
    "NAME": "a name", "INT": "an integer", "FLOAT": "a float", "STRING": "a string",
    "DTYPE": "a dtype (" + ", ".join(d.value for d in DType) + ")",
    "DECL_KIND": "'input', 'param'", "$END": "end of input", "<END-OF-FILE>": "end of input",
}


def _syntax_error(e: UnexpectedInput, text: str, filename: str) -> ParseError:
    if isinstance(e, UnexpectedCharacters):
        found, expected = f"character {text[e.pos_in_stream]!r}", e.allowed
    elif isinstance(e, UnexpectedToken) and e.token.type != "$END":
        found, expected = f"'{_shorten(e.token)}'", _acceptable(e)
    else:  # the text stops early: point just after its last token
        message = f"unexpected end of input{_expected_words(_acceptable(e))}"
        return ParseError(message, _end_span(text, filename))
    span = _span(filename, text, e.line, e.column)
    return ParseError(f"unexpected {found}{_expected_words(expected)}", span)


def _acceptable(e: UnexpectedInput) -> set[str]:
    # LALR merges states, so `e.expected` may list terminals that would fail one step later;
    # the interactive parser tries each one and keeps those really accepted here.
    parser = getattr(e, "interactive_parser", None)
    return parser.accepts() if parser else e.expected


def _expected_words(terminals) -> str:
    words = sorted({_terminal_word(t) for t in terminals or ()})
    if not words:
        return ""
    return f", expected {words[0]}" if len(words) == 1 else f", expected one of {', '.join(words)}"


def _terminal_word(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:  # a lark-internal name; better shown raw than lost
        return name
    return f"'{pattern.value}'" if isinstance(pattern, PatternStr) else name


def _end_span(text: str, filename: str) -> Span:
    """Just after the last non-blank character, where the missing text belongs."""
    lines = text.rstrip().split("\n")
    return _span(filename, text, len(lines), len(lines[-1]) + 1)


def _span(filename: str, text: str, line: int, col: int) -> Span:
    """`ir.errors.span_at`, but with lines split at "\n" only, as lark counts them: splitlines()
    also breaks at form feeds and U+2028, which may sit in comments or strings."""
    lines = text.split("\n")
    source_line = lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""
    return Span(filename, line, col, source_line)


def _shorten(token: Token) -> str:
    s = str(token)
    return s if len(s) <= 24 else s[:21] + "..."
