"""The IR verifier: is a `Graph` well formed?

Requires: any `Graph`, however it was built.
Ensures: `verify_graph` returns only if
  * every value name is a valid IR name and unique across inputs, params and op results;
  * every op is in the `ir.ops` registry, has a legal number of operands, its required attributes,
    attribute values the text form can hold, exactly one result, and a result type equal to what
    `ir.ops.infer` gives;
  * every operand is an input, a param or the result of an earlier op (the op order is a valid
    topological order), and every graph output is defined.
Unused inputs and params are fine. Otherwise it raises `VerifyError` carrying the op's `SourceLoc`.

`check_op` is shared with the IR parser (`ir/text.py`), which reports the same problems at a
position in the IR text instead.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ir.errors import VerifyError
from ir.graph import Graph, Op, Value
from ir.ops import REGISTRY, ShapeError, infer, lookup

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")

# Shape rules index into attribute values; a wrong kind of value (a string where a list belongs)
# surfaces as one of these rather than as ShapeError.
_BAD_ATTR_ERRORS = (TypeError, ValueError, KeyError, IndexError, ArithmeticError)


@dataclass(frozen=True)
class OpProblem:
    """What is wrong with one op, before a location is attached."""

    message: str
    in_result_type: bool = False  # the declared result type, not the op itself, is at fault
    hint: str = ""


def verify_graph(g: Graph) -> None:
    """Raise `VerifyError` for the first problem found in `g`; return None if it is well formed."""
    _check_names(g)
    defined: set[Value] = set(g.inputs) | set(g.params)
    produced = {r for op in g.ops for r in op.results}
    for op in g.ops:
        _check_operands_defined(op, defined, produced)
        problem = check_op(op)
        if problem:
            raise VerifyError(f"{_describe(op)}: {problem.message}", op.loc, problem.hint)
        defined.update(op.results)
    for v in g.outputs:
        if v not in defined:
            raise VerifyError(f"graph @{g.name}: output %{v.name} is not defined by any input, "
                              f"param or op")


def check_op(op: Op) -> OpProblem | None:
    """The first problem with `op` taken on its own (operands assumed defined), or None."""
    if lookup(op.opname) is None:
        return OpProblem(f"unknown op '{op.opname}'", hint=_did_you_mean(op.opname))
    bad_attr = attr_problem(op.attrs)
    if bad_attr:
        return OpProblem(bad_attr)
    if len(op.results) != 1:
        return OpProblem(f"'{op.opname}' has {len(op.results)} results; IR ops have exactly one")
    try:
        expected = infer(op.opname, [v.type for v in op.operands], op.attrs)
    except ShapeError as e:  # also wrong arity and missing attributes
        return OpProblem(str(e))
    except _BAD_ATTR_ERRORS as e:
        return OpProblem(f"the attributes of '{op.opname}' do not fit it ({type(e).__name__}: {e})")
    declared = op.results[0].type
    if declared != expected:
        return OpProblem(f"'{op.opname}' gives {expected}, but %{op.results[0].name} is declared "
                         f"{declared}", in_result_type=True)
    return None


def attr_problem(attrs: dict) -> str | None:
    """Why `attrs` cannot be printed as an IR attribute dict, or None if it can."""
    for key, value in attrs.items():
        if not isinstance(key, str) or not NAME_RE.fullmatch(key):
            return f"attribute name {key!r} is not a valid name"
        if not _is_attr_value(value):
            return f"attribute '{key}' holds a {type(value).__name__}, which IR attributes cannot"
    return None


def _is_attr_value(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_is_attr_value(v) for v in value)


def _check_names(g: Graph) -> None:
    seen: set[str] = set()
    for value, op in _definitions(g):
        where = op.loc if op else None
        what = _describe(op) if op else f"graph @{g.name}"
        if not NAME_RE.fullmatch(value.name):
            raise VerifyError(f"{what}: '{value.name}' is not a valid value name",
                              where, hint="names match [A-Za-z_][A-Za-z0-9_.]*")
        if value.name in seen:
            raise VerifyError(f"{what}: value name %{value.name} is defined twice", where,
                              hint="inputs, params and op results share one namespace")
        seen.add(value.name)


def _definitions(g: Graph) -> list[tuple[Value, Op | None]]:
    """Every value the graph defines, with the op defining it (None for inputs and params)."""
    decls = [(v, None) for v in g.inputs + g.params]
    return decls + [(r, op) for op in g.ops for r in op.results]


def _check_operands_defined(op: Op, defined: set[Value], produced: set[Value]) -> None:
    for v in op.operands:
        if v in defined:
            continue
        if v in produced:
            raise VerifyError(f"{_describe(op)}: operand %{v.name} is used before the op that "
                              f"defines it", op.loc, hint="ops must be in topological order")
        raise VerifyError(f"{_describe(op)}: operand %{v.name} is not defined by any input, "
                          f"param or op", op.loc)


def _describe(op: Op) -> str:
    names = ", ".join(f"%{r.name}" for r in op.results)
    return f"op {names} = {op.opname}" if names else f"op {op.opname}"


def _did_you_mean(opname: str) -> str:
    close = difflib.get_close_matches(opname, REGISTRY, n=1)
    return f"did you mean '{close[0]}'?" if close else ""
