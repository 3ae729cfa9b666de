"""The WKL checker: one test per check of LANGUAGE.md, each pinning the message and FILE:LINE:COL.

Every test edits one line of a valid two-kernel program (written as WKL text, so spans are real)
and expects the checker to point at the edited statement.
"""
from __future__ import annotations

import pytest

from backends.wkl import check_program, parse_program
from ir.errors import VerifyError
from ir.target import load_target
from ir.wkl import Program

TOY = load_target("toy")

LAYOUT = """\
layout "mlp" target "toy" fabric 16 x 16 wafers 1

input x : f32[4, 32]
param fc1.weight : f32[64, 32]
param fc1.bias : f32[64]
param fc2.weight : f32[10, 64]
output y : f32[4, 10]

region fc1 wafer 0 at 0, 0 size 2 x 2
region fc2 wafer 0 at 2, 0 size 1 x 1

route r0 color 0 host.x -> fc1.x hops 0
route r1 color 1 fc1.h -> fc2.h hops 1
route r2 color 2 fc2.y -> host.y hops 3
"""

FC1 = """\
kernel fc1 kind linear layer 0 source "model.fc1 (examples/mlp.py:12)" {
  in x : f32[4, 32]
  out h : f32[4, 64]
  tile w : f32[32, 16] = fc1.weight[32*py : 32*py + 32, 16*px : 16*px + 16]
  tile b : f32[32] = fc1.bias[32*py : 32*py + 32]
  load xs : f32[4, 16] = x[:, 16*px : 16*px + 16]
  p : f32[4, 32] = linear(xs, w)
  s : f32[4, 32] = reduce_row(p)
  t : f32[4, 32] = add(s, b)
  u : f32[4, 32] = relu(t)
  store h[:, 32*py : 32*py + 32] = u where px == 1
}
"""

FC2 = """\
kernel fc2 kind linear layer 1 source "model.fc2" {
  in h : f32[4, 64]
  out y : f32[4, 10]
  tile w : f32[10, 64] = fc2.weight[:, :]
  load hs : f32[4, 64] = h[:, :]
  p : f32[4, 10] = linear(hs, w)
  q : f32[4, 10] = softmax(p) {dim = -1}
  store y[:, :] = q
}
"""

FILES = {"layout.wkl": LAYOUT, "kernels/fc1.wkl": FC1, "kernels/fc2.wkl": FC2}


def program(edits: dict[str, tuple[str, str]] | None = None, extra: dict[str, str] | None = None,
            drop: tuple[str, ...] = ()) -> Program:
    """The program with, per file, one text replaced (`old`, `new`), files added or dropped."""
    files = {name: text for name, text in FILES.items() if name not in drop}
    for name, (old, new) in (edits or {}).items():
        assert old in files[name], f"{old!r} is not in {name}"
        files[name] = files[name].replace(old, new, 1)
    return parse_program({**files, **(extra or {})})


def check_error(**kwargs) -> str:
    with pytest.raises(VerifyError) as err:
        check_program(program(**kwargs), TOY)
    return str(err.value)


def test_valid_program_passes():
    check_program(program(), TOY)


# ---------------------------------------------------------------- names

def test_duplicate_local():
    err = check_error(edits={"kernels/fc1.wkl": ("  t : f32[4, 32] = add",
                                                 "  s : f32[4, 32] = add")})
    assert err.startswith("kernels/fc1.wkl:9:3: error: 's' is defined twice in kernel 'fc1' "
                          "(first at kernels/fc1.wkl:8:3)")


def test_duplicate_layout_declaration():
    err = check_error(edits={"layout.wkl": ("output y :", "output x :")})
    assert err.startswith("layout.wkl:7:1: error: 'x' is declared twice in the layout "
                          "(first at layout.wkl:3:1)")


def test_duplicate_region():
    err = check_error(edits={"layout.wkl": ("region fc2", "region fc1")})
    assert err.startswith("layout.wkl:10:1: error: region 'fc1' is declared twice")


def test_region_named_host():
    err = check_error(edits={"layout.wkl": ("region fc2", "region host")})
    assert err.startswith("layout.wkl:10:1: error: 'host' names the program boundary")


def test_undefined_local():
    err = check_error(edits={"kernels/fc1.wkl": ("relu(t)", "relu(q)")})
    assert err.startswith("kernels/fc1.wkl:10:3: error: undefined local 'q' in kernel 'fc1'")


def test_kernel_input_used_as_a_local():
    err = check_error(edits={"kernels/fc1.wkl": ("linear(xs, w)", "linear(x, w)")})
    assert err.startswith("kernels/fc1.wkl:7:3: error: undefined local 'x' in kernel 'fc1'")
    assert "hint: load a block of it into a local first" in err


def test_undefined_parameter():
    err = check_error(edits={"kernels/fc1.wkl": ("fc1.bias[", "fc1.bais[")})
    assert err.startswith("kernels/fc1.wkl:5:3: error: undefined parameter 'fc1.bais'")


def test_load_from_something_not_an_in():
    err = check_error(edits={"kernels/fc1.wkl": ("= x[:,", "= h[:,")})
    assert err.startswith("kernels/fc1.wkl:6:3: error: load from 'h', which is not an `in` "
                          "of kernel 'fc1'")


# ---------------------------------------------------------------- compute types

def test_compute_type_differs_from_inferred():
    err = check_error(edits={"kernels/fc1.wkl": ("p : f32[4, 32]", "p : f32[4, 16]")})
    assert err.startswith("kernels/fc1.wkl:7:3: error: 'p' is declared f32[4, 16] but linear "
                          "gives f32[4, 32]")


def test_unknown_op():
    err = check_error(edits={"kernels/fc1.wkl": ("relu(t)", "frobnicate(t)")})
    assert err.startswith("kernels/fc1.wkl:10:3: error: unknown op 'frobnicate'")


def test_shape_rule_rejects_operands():
    err = check_error(edits={"kernels/fc2.wkl": ("linear(hs, w)", "matmul(hs, w)")})
    assert err.startswith("kernels/fc2.wkl:6:3: error: matmul of f32[4, 64] and f32[10, 64]: "
                          "inner dims differ")


def test_missing_attribute():
    err = check_error(edits={"kernels/fc2.wkl": ("softmax(p) {dim = -1}", "softmax(p)")})
    assert err.startswith("kernels/fc2.wkl:7:3: error: 'softmax' needs attribute(s) dim")


def test_malformed_attribute():
    err = check_error(edits={"kernels/fc2.wkl": ("softmax(p) {dim = -1}", "sum(p) {dims = 1.5}")})
    assert err.startswith("kernels/fc2.wkl:7:3: error: invalid attributes for 'sum':")


# ---------------------------------------------------------------- slices

def test_slice_rank_differs():
    err = check_error(edits={"kernels/fc1.wkl": ("32*py + 32]\n", "32*py + 32, :]\n")})
    assert err.startswith("kernels/fc1.wkl:5:3: error: tile 'b' has 2 slice(s), but the tensor "
                          "is f32[64] and the local is f32[32]")


def test_slice_block_width_differs():
    err = check_error(edits={"kernels/fc1.wkl": ("16*px + 16]", "16*px + 8]")})
    assert err.startswith("kernels/fc1.wkl:4:3: error: tile 'w': slice `16*px : 16*px + 8` of "
                          "dim 1 selects 8 element(s) but the local is f32[32, 16]")


def test_slice_width_varies_across_pes():
    err = check_error(edits={"kernels/fc1.wkl": ("x[:, 16*px : 16*px + 16]",
                                                 "x[:, 16*px : py + 16*px + 16]")})
    assert err.startswith("kernels/fc1.wkl:6:3: error: load 'xs': slice `16*px : py + 16*px + 16` "
                          "of dim 1 has a different width on different PEs")


def test_tile_dtype_differs_from_parameter():
    err = check_error(edits={"kernels/fc1.wkl": ("tile b : f32[32]", "tile b : f16[32]")})
    assert err.startswith("kernels/fc1.wkl:5:3: error: tile 'b' is f16 but parameter 'fc1.bias' "
                          "is f32")


# ---------------------------------------------------------------- stores

def test_store_into_something_not_an_out():
    err = check_error(edits={"kernels/fc1.wkl": ("store h[", "store x[")})
    assert err.startswith("kernels/fc1.wkl:11:3: error: store into 'x', which is not an `out` "
                          "of kernel 'fc1'")


def test_store_of_a_local_that_does_not_fit_the_block():
    err = check_error(edits={"kernels/fc1.wkl": ("= u where", "= xs where")})
    assert err.startswith("kernels/fc1.wkl:11:3: error: store of 'xs': slice `32*py : 32*py + 32` "
                          "of dim 1 selects 32 element(s) but the local is f32[4, 16]")


def test_out_never_stored():
    err = check_error(edits={"kernels/fc2.wkl": ("  store y[:, :] = q\n", "")})
    assert err.startswith("kernels/fc2.wkl:3:3: error: out 'y' of kernel 'fc2' is never stored")


# ---------------------------------------------------------------- routes

def test_route_to_a_missing_region():
    err = check_error(edits={"layout.wkl": ("fc1.h -> fc2.h", "fc1.h -> fc3.h")})
    assert err.startswith("layout.wkl:13:1: error: route 'r1' goes to fc3.h, but there is no "
                          "region 'fc3'")


def test_route_from_a_missing_kernel_tensor():
    err = check_error(edits={"layout.wkl": ("fc1.h -> fc2.h", "fc1.q -> fc2.h")})
    assert err.startswith("layout.wkl:13:1: error: route 'r1' comes from fc1.q, but kernel 'fc1' "
                          "has no out 'q'")


def test_route_from_a_missing_host_tensor():
    err = check_error(edits={"layout.wkl": ("host.x ->", "host.z ->")})
    assert err.startswith("layout.wkl:12:1: error: route 'r0' comes from host.z, but the program "
                          "has no input 'z'")


def test_route_types_differ():
    err = check_error(edits={"layout.wkl": ("input x : f32[4, 32]", "input x : f32[4, 33]")})
    assert err.startswith("layout.wkl:12:1: error: route 'r0' carries host.x (f32[4, 33]) but "
                          "fc1.x is f32[4, 32]")


def test_kernel_in_without_route():
    err = check_error(edits={"layout.wkl": ("route r0 color 0 host.x -> fc1.x hops 0\n", "")})
    assert err.startswith("kernels/fc1.wkl:2:3: error: in 'x' of kernel 'fc1' has no route into it")


def test_program_output_without_route():
    err = check_error(edits={"layout.wkl": ("route r2 color 2 fc2.y -> host.y hops 3\n", "")})
    assert err.startswith("layout.wkl:7:1: error: program output 'y' has no route into it")


def test_two_routes_into_one_tensor():
    second_route = "route r3 color 3 host.x -> fc1.x hops 0\n"
    err = check_error(edits={"layout.wkl": ("hops 3\n", "hops 3\n" + second_route)})
    assert err.startswith("layout.wkl:15:1: error: route 'r3' goes to fc1.x, which route 'r0' "
                          "already feeds")


# ---------------------------------------------------------------- regions and files

def test_regions_overlap():
    err = check_error(edits={"layout.wkl": ("fc2 wafer 0 at 2, 0", "fc2 wafer 0 at 1, 1")})
    assert err.startswith("layout.wkl:10:1: error: region 'fc2' overlaps region 'fc1' on wafer 0")


def test_region_leaves_the_fabric():
    err = check_error(edits={"layout.wkl": ("fc2 wafer 0 at 2, 0", "fc2 wafer 0 at 16, 0")})
    assert err.startswith("layout.wkl:10:1: error: region 'fc2' (columns 16..16, rows 0..0) leaves "
                          "the 16 x 16 fabric")


def test_region_on_a_missing_wafer():
    err = check_error(edits={"layout.wkl": ("region fc2 wafer 0", "region fc2 wafer 1")})
    assert err.startswith("layout.wkl:10:1: error: region 'fc2' is on wafer 1 but the layout has "
                          "wafers 0..0")


def test_region_without_kernel_file():
    err = check_error(drop=("kernels/fc2.wkl",))
    assert err.startswith("layout.wkl:10:1: error: region 'fc2' has no kernel program")
    assert "hint: expected kernels/fc2.wkl" in err


def test_kernel_file_without_region():
    fc3 = FC2.replace("kernel fc2", "kernel fc3")
    err = check_error(extra={"kernels/fc3.wkl": fc3})
    assert err.startswith("kernels/fc3.wkl:1:1: error: kernel 'fc3' has no region in the layout")


# ---------------------------------------------------------------- SRAM

def test_pe_over_its_sram():
    # 128 x 96 f32 is 48 KB, more than toy's 40 KB left after its 8 KB reserve.
    big_tile = "  tile bw : f32[128, 96] = big[:, :]\n"
    err = check_error(edits={"layout.wkl": ("output y", "param big : f32[128, 96]\noutput y"),
                             "kernels/fc2.wkl": ("  load hs", big_tile + "  load hs")})
    assert err.startswith("kernels/fc2.wkl:5:3: error: kernel 'fc2' needs 52896 bytes per PE for "
                          "tiles and buffers, but target 'toy' leaves 40960 (49152 SRAM - 8192 "
                          "reserved); it runs out here")


def test_built_program_without_spans_still_names_the_problem():
    built = program()
    for stmt in built.kernels["fc1"].body:
        stmt.span = None
    built.kernels["fc1"].body[3].args = ["nope", "w"]
    with pytest.raises(VerifyError) as err:
        check_program(built, TOY)
    assert str(err.value) == "error: undefined local 'nope' in kernel 'fc1'"
