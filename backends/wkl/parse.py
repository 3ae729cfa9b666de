"""The WKL parser: LANGUAGE.md text to the AST of ir/wkl.py.

Requires: text in the syntax of LANGUAGE.md (grammar: wkl.lark, LALR).
Ensures: every TensorDecl, statement, KernelProgram, Region and Route carries the Span of its first
token; malformed text raises `ParseError` with the Span of the offending token and a message such
as "expected ':' but found 'foo'" (never a lark exception). Parsing what emit.py prints gives back
an AST equal to the one printed, spans aside.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr

from ir.errors import ParseError, Span
from ir.types import DType, TensorType
from ir.wkl import (HOST, Affine, Compute, Cond, Endpoint, KernelProgram, Layout, Load, Program,
                    Region, Route, Slice, State, Store, TensorDecl, Tile)

from backends.wkl.emit import KERNEL_DIR, LAYOUT_FILE

GRAMMAR_FILE = Path(__file__).parent / "wkl.lark"

# How the grammar's pattern terminals read in "expected ..." messages.
_TERMINAL_NAMES = {"NAME": ("a name",), "INT": ("an integer",), "SIGNED_INT": ("an integer",),
                   "FLOAT": ("a float",), "STRING": ("a string",), "SIGN": ("'+'", "'-'"),
                   "PE_VAR": ("'px'", "'py'"), "$END": ("end of file",)}
_KERNEL_FILE = re.compile(rf"{KERNEL_DIR}/([A-Za-z_][A-Za-z0-9_.]*)\.wkl")


# ---------------------------------------------------------------- public API

def parse_layout(text: str, filename: str) -> Layout:
    return _build(text, filename, "layout")


def parse_kernel(text: str, filename: str) -> KernelProgram:
    return _build(text, filename, "kernel")


def parse_program(files: dict[str, str]) -> Program:
    """`files` maps file names as emit_program gives them ("layout.wkl", "kernels/NAME.wkl") to text.

    `Program.files` maps each part to the file it came from: "layout" and every kernel name.
    """
    if LAYOUT_FILE not in files:
        raise ParseError(f"a WKL program needs a {LAYOUT_FILE}",
                         hint=f"got: {', '.join(sorted(files)) or 'no files'}")
    layout = parse_layout(files[LAYOUT_FILE], LAYOUT_FILE)
    kernels: dict[str, KernelProgram] = {}
    parts = {"layout": LAYOUT_FILE}
    for filename, text in files.items():
        if filename == LAYOUT_FILE:
            continue
        kp = parse_kernel(text, filename)
        _check_kernel_file_name(filename, kp)
        kernels[kp.name] = kp
        parts[kp.name] = filename
    return Program(layout, kernels, parts)


def strip_spans(node):
    """A copy of an AST (or list/dict of them) with every span set to None, for comparisons."""
    if isinstance(node, list):
        return [strip_spans(item) for item in node]
    if isinstance(node, dict):
        return {key: strip_spans(item) for key, item in node.items()}
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {f.name: None if f.name == "span" else strip_spans(getattr(node, f.name))
                   for f in dataclasses.fields(node)}
        return dataclasses.replace(node, **changes)
    return node


# ---------------------------------------------------------------- driver

@cache
def _parser() -> Lark:
    return Lark(GRAMMAR_FILE.read_text(), parser="lalr", lexer="contextual",
                start=["layout", "kernel"], propagate_positions=True, maybe_placeholders=True)


def _build(text: str, filename: str, start: str):
    # Lines as lark counts them (at "\n" only), so a span's text is the line its column is in.
    source = _SourceText(filename, [line.rstrip("\r") for line in text.split("\n")])
    try:
        tree = _parser().parse(text, start=start)
    except UnexpectedInput as err:
        raise _syntax_error(err, source) from None
    try:
        return _AstBuilder(source).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ParseError):
            raise err.orig_exc from None
        raise


def _check_kernel_file_name(filename: str, kp: KernelProgram) -> None:
    match = _KERNEL_FILE.fullmatch(filename)
    if match is None:
        raise ParseError(f"unexpected file '{filename}' in a WKL program",
                         hint=f"a program holds {LAYOUT_FILE} and {KERNEL_DIR}/NAME.wkl files")
    if match[1] != kp.name:
        raise ParseError(f"file '{filename}' holds kernel '{kp.name}', not '{match[1]}'", kp.span,
                         hint=f"kernel NAME lives in {KERNEL_DIR}/NAME.wkl")


@dataclass(frozen=True)
class _SourceText:
    """Makes Spans like ir.errors.span_at, splitting the text into lines only once."""

    file: str
    lines: list[str]

    def span(self, line: int, col: int) -> Span:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return Span(self.file, line, col, text)

    def at(self, item) -> Span:
        """The Span of a lark Token or a tree's meta (both carry line and column)."""
        return self.span(item.line, item.column)


# ---------------------------------------------------------------- syntax errors

def _syntax_error(err: UnexpectedInput, source: _SourceText) -> ParseError:
    if isinstance(err, UnexpectedToken):
        found, span = _found_token(err.token, source)
        expected = err.expected
    elif isinstance(err, UnexpectedCharacters):
        # The lexer's allowed set is per lexer state, broader than what may follow here.
        found, span = f"character '{err.char}'", source.span(err.line, err.column)
        expected = set()
    else:  # UnexpectedEOF (LALR reports most ends of input as an UnexpectedToken of $END)
        found, span = "end of file", _end_span(source)
        expected = getattr(err, "expected", None) or set()
    return ParseError(_expected_phrase(expected, found), span)


def _found_token(token: Token, source: _SourceText) -> tuple[str, Span]:
    if token.type != "$END":
        return f"'{token.value}'", source.at(token)
    # lark places $END on the last token; point just past it instead.
    if token.end_line is None:
        return "end of file", _end_span(source)
    return "end of file", source.span(token.end_line, token.end_column)


def _end_span(source: _SourceText) -> Span:
    last = max((i for i, line in enumerate(source.lines) if line.strip()), default=0)
    return source.span(last + 1, len(source.lines[last]) + 1)


def _expected_phrase(terminals, found: str) -> str:
    names = sorted({phrase for t in terminals for phrase in _describe_terminal(t)})
    if not names:
        return f"unexpected {found}"
    if len(names) == 1:
        return f"expected {names[0]} but found {found}"
    return f"expected one of {', '.join(names)} but found {found}"


def _describe_terminal(name: str) -> tuple[str, ...]:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    pattern = _parser().get_terminal(name).pattern
    return (f"'{pattern.value}'" if isinstance(pattern, PatternStr) else name.lower(),)


# ---------------------------------------------------------------- tree -> AST

@dataclass
class _RawRoute:
    """A route whose endpoints are resolved once all region names are known."""

    name: str
    color: int
    src: Token
    dst: Token
    hops: int
    span: Span


@v_args(inline=True)
class _AstBuilder(Transformer):
    """One callback per grammar rule; callbacks taking `meta` record the statement's Span."""

    def __init__(self, source: _SourceText):
        super().__init__()
        self.source = source

    def _error(self, message: str, where, hint: str = "") -> ParseError:
        return ParseError(message, self.source.at(where), hint)

    # ------------------------------------------------------------ layout

    def layout(self, model, target, width, height, wafers, *items):
        decls = {kind: _tagged(items, kind) for kind in ("input", "param", "output")}
        regions = [item for item in items if isinstance(item, Region)]
        known = {r.kernel for r in regions}
        routes = [self._resolve_route(item, known) for item in items if isinstance(item, _RawRoute)]
        return Layout(self._string(model), self._string(target), (int(width), int(height)),
                      int(wafers), decls["input"], decls["param"], decls["output"], regions, routes)

    @v_args(meta=True)
    def input_decl(self, meta, children):
        return "input", self._decl(meta, *children)

    @v_args(meta=True)
    def param_decl(self, meta, children):
        return "param", self._decl(meta, *children)

    @v_args(meta=True)
    def output_decl(self, meta, children):
        return "output", self._decl(meta, *children)

    @v_args(meta=True)
    def region(self, meta, children):
        name, wafer, x, y, w, h = children
        return Region(str(name), int(wafer), int(x), int(y), int(w), int(h), self.source.at(meta))

    @v_args(meta=True)
    def route(self, meta, children):
        name, color, src, dst, hops = children
        return _RawRoute(str(name), int(color), src, dst, int(hops), self.source.at(meta))

    def _resolve_route(self, raw: _RawRoute, kernels: set[str]) -> Route:
        return Route(raw.name, raw.color, self._endpoint(raw.src, kernels),
                     self._endpoint(raw.dst, kernels), raw.hops, raw.span)

    def _endpoint(self, token: Token, kernels: set[str]) -> Endpoint:
        # Kernel names may hold dots too: prefer the longest declared region name, else split at
        # the first dot.
        text = str(token)
        dots = [i for i, c in enumerate(text) if c == "." and 0 < i < len(text) - 1]
        for i in reversed(dots):
            if text[:i] in kernels or text[:i] == HOST:
                return Endpoint(text[:i], text[i + 1:])
        owner, _, tensor = text.partition(".")
        if not owner or not tensor:
            raise self._error(f"route endpoint '{text}' must be KERNEL.TENSOR or host.TENSOR", token)
        return Endpoint(owner, tensor)

    # ------------------------------------------------------------ kernel

    @v_args(meta=True)
    def kernel(self, meta, children):
        name, kind, layer, source, *items = children
        body = [item for item in items if not isinstance(item, tuple)]
        ins, outs = _tagged(items, "in"), _tagged(items, "out")
        return KernelProgram(str(name), ins, outs, body, kind or "", layer, self._string(source),
                             self.source.at(meta))

    def kind(self, name):
        return str(name)

    def layer_number(self, number):
        return int(number)

    def layer_none(self):
        return None

    @v_args(meta=True)
    def in_decl(self, meta, children):
        return "in", self._decl(meta, *children)

    @v_args(meta=True)
    def out_decl(self, meta, children):
        return "out", self._decl(meta, *children)

    @v_args(meta=True)
    def tile(self, meta, children):
        name, typ, param, slices = children
        return Tile(str(name), typ, str(param), slices, self.source.at(meta))

    @v_args(meta=True)
    def load(self, meta, children):
        name, typ, src, slices = children
        return Load(str(name), typ, str(src), slices, self.source.at(meta))

    @v_args(meta=True)
    def state(self, meta, children):
        name, typ = children
        return State(str(name), typ, self.source.at(meta))

    @v_args(meta=True)
    def compute(self, meta, children):
        name, typ, op, *args, attrs = children
        return Compute(str(name), typ, str(op), [str(a) for a in args], attrs or {},
                       self.source.at(meta))

    @v_args(meta=True)
    def store(self, meta, children):
        dst, slices, src, cond = children
        return Store(str(dst), slices, str(src), cond or Cond(), self.source.at(meta))

    def where(self, *terms):
        coords: dict[str, int] = {}
        for var, value in terms:
            if var in coords:
                raise self._error(f"'{var}' appears twice in a where clause", var)
            coords[str(var)] = int(value)
        return Cond(coords.get("px"), coords.get("py"))

    def cond_term(self, var, value):
        return var, value

    # ------------------------------------------------------------ shared pieces

    def _decl(self, meta, name, typ) -> TensorDecl:
        return TensorDecl(str(name), typ, self.source.at(meta))

    def type(self, dtype, *dims):
        try:
            return TensorType(tuple(int(d) for d in dims), DType(str(dtype)))
        except ValueError:
            raise self._error(f"unknown dtype '{dtype}'", dtype,
                              hint=f"dtypes: {' '.join(d.value for d in DType)}") from None

    def slices(self, *items):
        return list(items)

    def whole_slice(self):
        return Slice()

    def bounded_slice(self, start, stop):
        return Slice(start, stop)

    def affine(self, first_sign, first, *rest):
        total = _signed(first, first_sign)
        for sign, term in zip(rest[::2], rest[1::2]):
            total = _add(total, _signed(term, sign))
        return total

    def const_term(self, value):
        return Affine(int(value))

    def var_term(self, var):
        return Affine(0, **{str(var): 1})

    def scaled_term(self, coef, var):
        return Affine(0, **{str(var): int(coef)})

    def attrs(self, *items):
        result = {}
        for key, value in items:
            if str(key) in result:
                raise self._error(f"attribute '{key}' is given twice", key)
            result[str(key)] = value
        return result

    def attr(self, key, value):
        return key, value

    def affine_value(self, affine):
        return affine

    def int_value(self, token):
        return int(token)

    def float_value(self, token):
        return float(token)

    def string_value(self, token):
        return self._string(token)

    def true_value(self):
        return True

    def false_value(self):
        return False

    def none_value(self):
        return None

    def list_value(self, *items):
        return list(items)

    def _string(self, token: Token) -> str:
        try:
            return json.loads(token, strict=False)
        except json.JSONDecodeError as err:
            raise self._error(f"malformed string literal: {err.msg}", token) from None


def _tagged(items: list, tag: str) -> list[TensorDecl]:
    """The declarations among `items` that the grammar callbacks tagged as (tag, TensorDecl)."""
    return [item[1] for item in items if isinstance(item, tuple) and item[0] == tag]


def _signed(term: Affine, sign: Token | None) -> Affine:
    if sign is None or sign == "+":
        return term
    return Affine(-term.const, -term.px, -term.py)


def _add(a: Affine, b: Affine) -> Affine:
    return Affine(a.const + b.const, a.px + b.px, a.py + b.py)
