"""The IR verifier: one test per kind of malformed graph, each error carrying the op's SourceLoc."""
from __future__ import annotations

import pytest

from ir.errors import SourceLoc, VerifyError
from ir.graph import Graph, Op, Value
from ir.types import DType, TensorType
from ir.verify import verify_graph

FC1 = SourceLoc("model.fc1", "examples/mlp.py", 12)
ACT = SourceLoc("model.act", "examples/mlp.py", 13)


def t(*shape: int) -> TensorType:
    return TensorType(tuple(shape), DType.f32)


def mlp() -> Graph:
    """x -> linear(fc1) -> relu, built by hand so each test can break one thing."""
    x, w, b = Value("x", t(4, 32)), Value("fc1.weight", t(64, 32)), Value("fc1.bias", t(64))
    h, r = Value("h", t(4, 64)), Value("r", t(4, 64))
    ops = [Op("linear", [x, w, b], [h], loc=FC1), Op("relu", [h], [r], loc=ACT)]
    return Graph("mlp", inputs=[x], params=[w, b], ops=ops, outputs=[r])


def verify_error(g: Graph) -> VerifyError:
    with pytest.raises(VerifyError) as info:
        verify_graph(g)
    return info.value


def test_well_formed_graph_passes():
    verify_graph(mlp())


def test_unused_inputs_and_params_are_fine():
    g = mlp()
    g.inputs.append(Value("unused_in", t(2)))
    g.params.append(Value("unused_param", t(3)))
    verify_graph(g)


def test_unknown_op():
    g = mlp()
    g.ops[1].opname = "relux"
    e = verify_error(g)
    assert "unknown op 'relux'" in e.message and e.hint == "did you mean 'relu'?"
    assert e.loc == ACT


def test_wrong_arity():
    g = mlp()
    g.ops[1].operands.append(g.inputs[0])
    e = verify_error(g)
    assert "'relu' takes 1..1 operands, got 2" in e.message and e.loc == ACT


def test_missing_required_attribute():
    g = mlp()
    g.ops[1].opname = "softmax"
    e = verify_error(g)
    assert "needs attribute(s) dim" in e.message and e.loc == ACT


def test_attribute_of_the_wrong_kind():
    g = mlp()
    g.ops[1].opname, g.ops[1].attrs = "sum", {"dims": "all"}
    e = verify_error(g)
    assert "the attributes of 'sum' do not fit it" in e.message and e.loc == ACT


def test_attribute_value_the_text_form_cannot_hold():
    g = mlp()
    g.ops[1].attrs = {"dtype": DType.f16}
    assert "attribute 'dtype' holds a DType" in verify_error(g).message


def test_result_type_differs_from_the_shape_rule():
    g = mlp()
    g.ops[0].results[0].type = t(4, 65)
    e = verify_error(g)
    assert e.message == "op %h = linear: 'linear' gives f32[4, 64], but %h is declared f32[4, 65]"
    assert e.loc == FC1
    assert str(e).startswith("error: op %h = linear") and "in model.fc1 (examples/mlp.py:12)" in str(e)


def test_operands_that_do_not_fit():
    g = mlp()
    g.ops[0].operands[1] = Value("fc1.weight", t(64, 31))
    g.params[0] = g.ops[0].operands[1]
    e = verify_error(g)
    assert "inner dims differ" in e.message and e.loc == FC1


def test_use_before_definition():
    g = mlp()
    g.ops.reverse()
    e = verify_error(g)
    assert "operand %h is used before the op that defines it" in e.message and e.loc == ACT


def test_undefined_value():
    g = mlp()
    g.ops[1].operands = [Value("h", t(4, 64))]  # same name, but not the value linear defines
    e = verify_error(g)
    assert "operand %h is not defined by any input, param or op" in e.message and e.loc == ACT


@pytest.mark.parametrize("rename, where", [
    (lambda g: setattr(g.params[0], "name", "x"), None),      # param vs input
    (lambda g: setattr(g.ops[0].result, "name", "fc1.bias"), FC1),  # result vs param
    (lambda g: setattr(g.ops[1].result, "name", "h"), ACT),   # result vs result
])
def test_duplicate_names_share_one_namespace(rename, where):
    g = mlp()
    rename(g)
    e = verify_error(g)
    assert "is defined twice" in e.message and e.loc == where


def test_invalid_value_name():
    g = mlp()
    g.ops[0].result.name = "0.h"
    e = verify_error(g)
    assert "'0.h' is not a valid value name" in e.message and e.loc == FC1


def test_ops_have_exactly_one_result():
    g = mlp()
    g.ops[1].results.append(Value("r2", t(4, 64)))
    e = verify_error(g)
    assert "'relu' has 2 results" in e.message and e.loc == ACT


def test_output_not_defined():
    g = mlp()
    g.outputs.append(Value("ghost", t(1)))
    e = verify_error(g)
    assert e.message == "graph @mlp: output %ghost is not defined by any input, param or op"


def test_inputs_may_be_outputs():
    g = mlp()
    g.outputs.append(g.inputs[0])
    verify_graph(g)
