"""Targets (ir/target.py): the built-ins load, and every kind of bad TOML names the file and field."""
from __future__ import annotations

from pathlib import Path

import pytest

from ir.errors import Span, TargetError
from ir.target import BUILTIN_DIR, builtin_names, load_target, parse_target
from ir.types import DType, TensorType

TOY_TEXT = (BUILTIN_DIR / "toy.toml").read_text()


def write_toy(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the toy target with one line changed."""
    assert TOY_TEXT.count(old) == 1, old
    path = tmp_path / "bad.toml"
    path.write_text(TOY_TEXT.replace(old, new))
    return path


def target_error(path: Path) -> TargetError:
    with pytest.raises(TargetError) as info:
        load_target(path)
    return info.value


# ---------------------------------------------------------------- built-ins

def test_builtin_names():
    assert builtin_names() == ["toy", "wse2", "wse3"]


@pytest.mark.parametrize("name, fabric",
                         [("toy", (16, 16)), ("wse2", (757, 996)), ("wse3", (762, 1176))])
def test_builtins_load(name, fabric):
    target = load_target(name)
    assert target.name == name and target.fabric == fabric
    assert target.sram_bytes_per_pe == 48 * 1024
    assert 0 < target.usable_bytes_per_pe < target.sram_bytes_per_pe


def test_wse3_has_wider_simd_than_wse2():
    assert (load_target("wse2").simd_f16, load_target("wse3").simd_f16) == (4, 8)


def test_a_toml_path_loads_like_a_builtin(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(TOY_TEXT)
    assert load_target(path) == load_target("toy")


def test_unknown_builtin_and_missing_file():
    e = target_error(Path("nosuch"))
    assert "unknown target 'nosuch'" in e.message and "toy, wse2, wse3" in e.hint
    assert "does not exist" in target_error(Path("/nonexistent/t.toml")).message


# ---------------------------------------------------------------- malformed targets

def test_malformed_toml_gives_line_and_column(tmp_path):
    path = write_toy(tmp_path, "colors = 24", "colors = = 24")
    e = target_error(path)
    line = next(i for i, text in enumerate(TOY_TEXT.splitlines(), 1) if text.startswith("colors"))
    assert isinstance(e.loc, Span) and (e.loc.file, e.loc.line, e.loc.col) == (str(path), line, 10)
    assert str(e).startswith(f"{path}:{line}:10: error: malformed TOML") and "^" in str(e)


def test_missing_field(tmp_path):
    path = write_toy(tmp_path, "hop_latency_cycles = 1", "")
    e = target_error(path)
    assert "'hop_latency_cycles' is missing" in e.message and str(path) in str(e)


@pytest.mark.parametrize("field, new_value, words", [
    ("fabric_width", '"16"', "'fabric_width' must be int, got str"),
    ("colors", "true", "'colors' must be int, got bool"),
    ("clock_hz", '"fast"', "'clock_hz' must be float, got str"),
    ("hop_latency_cycles", "-1", "'hop_latency_cycles' must not be negative"),
    ("fabric_height", "0", "'fabric_height' must be positive"),
    ("reserved_bytes_per_pe", "49152", "reserved_bytes_per_pe leaves no SRAM"),  # all 48 KB
])
def test_bad_field_names_file_line_and_field(tmp_path, field, new_value, words):
    old = next(line for line in TOY_TEXT.splitlines() if line.startswith(f"{field} ="))
    e = target_error(write_toy(tmp_path, old, f"{field} = {new_value}"))
    assert words in e.message
    assert e.loc.file == str(tmp_path / "bad.toml")
    assert e.loc.text.startswith(f"{field} =") and e.loc.col == 1  # the span is the field's line


def test_unknown_field(tmp_path):
    e = target_error(write_toy(tmp_path, "colors = 24", "colors = 24\nwarp_drive = 1"))
    assert "unknown target field 'warp_drive'" in e.message and e.loc.text.startswith("warp_drive = 1")


def test_parse_target_uses_the_given_filename():
    with pytest.raises(TargetError, match=r"^inline\.toml:1:"):
        parse_target("name = ", "inline.toml")


# ---------------------------------------------------------------- timing rules

def test_timing_rules_of_the_toy_target():
    toy = load_target("toy")
    assert toy.simd_lanes(DType.f32) == 2 and toy.simd_lanes(DType.bf16) == 4
    assert toy.compute_cycles(10, DType.f32) == 5 + toy.op_overhead_cycles
    assert toy.transfer_cycles(64, hops=3) == 64 * 8 // 32 + 3
    assert toy.reduce_cycles(TensorType((4,), DType.f32), pes=1) == 0
    assert toy.reduce_cycles(TensorType((4,), DType.f32), pes=3) == 2 * (4 + 2) + 2
    # Busy cycles leave out the hops: serialisation in, the adds, serialisation of the broadcast.
    assert toy.serial_cycles(64) == 16 and toy.hop_cycles(3) == 3
    assert toy.reduce_busy_cycles(TensorType((4,), DType.f32), pes=3) == 4 + 2 + 4
    assert toy.reduce_busy_cycles(TensorType((4,), DType.f32), pes=30) == 4 + 2 + 4
    assert toy.reduce_busy_cycles(TensorType((4,), DType.f32), pes=1) == 0


def test_with_fabric_rejects_empty_fabrics():
    assert load_target("toy").with_fabric(4, 2).fabric == (4, 2)
    with pytest.raises(TargetError, match="must be positive"):
        load_target("toy").with_fabric(0, 2)
