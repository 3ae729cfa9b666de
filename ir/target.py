"""Hardware targets and their timing rules.

A target is a validated description of one wafer and the links between wafers, loaded from TOML
(the built-ins live in ir/targets/). The cycle rules are methods here so that the compiler's cost
estimates and the simulator's counts come from the same place.

Each data movement has two parts: *busy* cycles (serialisation, the adds of a reduction), which
occupy a PE and so bound how often a pipelined pass can start, and *hop latency*, the flight time
along the links, which delays a pass but overlaps with the next one.
"""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ir.errors import Span, TargetError, span_at
from ir.types import DType, TensorType

BUILTIN_DIR = Path(__file__).parent / "targets"


@dataclass(frozen=True)
class Target:
    name: str
    fabric_width: int
    fabric_height: int
    sram_bytes_per_pe: int
    reserved_bytes_per_pe: int
    simd_f32: int
    simd_f16: int
    clock_hz: float
    link_bits_per_cycle: int
    hop_latency_cycles: int
    colors: int
    op_overhead_cycles: int
    wafer_link_bits_per_s: float
    wafer_link_latency_s: float
    description: str = ""

    # ------------------------------------------------------------ capacity

    @property
    def fabric(self) -> tuple[int, int]:
        return (self.fabric_width, self.fabric_height)

    @property
    def usable_bytes_per_pe(self) -> int:
        return self.sram_bytes_per_pe - self.reserved_bytes_per_pe

    def with_fabric(self, width: int, height: int) -> "Target":
        if width < 1 or height < 1:
            raise TargetError(f"fabric dims must be positive, got {width},{height}")
        return replace(self, fabric_width=width, fabric_height=height)

    # ------------------------------------------------------------ timing rules

    def simd_lanes(self, dtype: DType) -> int:
        """Elements a PE processes per cycle: fp16-class types get the fp16 lanes."""
        return self.simd_f32 if dtype in (DType.f32, DType.i32, DType.i64) else self.simd_f16

    def compute_cycles(self, flops: int, dtype: DType) -> int:
        return math.ceil(flops / self.simd_lanes(dtype)) + self.op_overhead_cycles

    def serial_cycles(self, nbytes: int) -> int:
        """Cycles a link is busy pushing `nbytes` through: what a sender (or receiver) spends."""
        return math.ceil(nbytes * 8 / self.link_bits_per_cycle)

    def hop_cycles(self, hops: int) -> int:
        """Latency of a path of `hops` links: the first word's flight, which keeps no PE busy."""
        return hops * self.hop_latency_cycles

    def transfer_cycles(self, nbytes: int, hops: int) -> int:
        """Streaming `nbytes` over a path of `hops` links, start to last word: serialisation plus
        per-hop latency."""
        return self.serial_cycles(nbytes) + self.hop_cycles(hops)

    def reduce_busy_cycles(self, t: TensorType, pes: int) -> int:
        """The cycles each PE spends on an all-reduce of a local over `pes` PEs in a line: in the
        pipelined chain it receives, adds and forwards its block, then it passes the broadcast
        result on. The hops along the line are latency (`reduce_cycles`), not work."""
        if pes <= 1:
            return 0
        adds = math.ceil(t.numel / self.simd_lanes(t.dtype))
        return self.serial_cycles(t.nbytes) + adds + self.serial_cycles(t.nbytes)

    def reduce_cycles(self, t: TensorType, pes: int) -> int:
        """All-reduce of a local over `pes` PEs in a line, start to finish: the busy cycles plus
        (pes - 1) hops in and (pes - 1) hops of broadcast back."""
        if pes <= 1:
            return 0
        return self.reduce_busy_cycles(t, pes) + 2 * self.hop_cycles(pes - 1)

    def wafer_link_cycles(self, nbytes: int) -> int:
        seconds = nbytes * 8 / self.wafer_link_bits_per_s + self.wafer_link_latency_s
        return math.ceil(seconds * self.clock_hz)


# ---------------------------------------------------------------- loading

_POSITIVE = {"fabric_width", "fabric_height", "sram_bytes_per_pe", "simd_f32", "simd_f16",
             "clock_hz", "link_bits_per_cycle", "colors", "wafer_link_bits_per_s"}


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load_target(spec: str | Path) -> Target:
    """A built-in name (`toy`, `wse2`, `wse3`) or the path of a TOML file."""
    path = Path(spec)
    if path.suffix != ".toml":
        path = BUILTIN_DIR / f"{spec}.toml"
        if not path.is_file():
            raise TargetError(f"unknown target '{spec}'",
                              hint=f"built-in targets: {', '.join(builtin_names())}; or give a .toml file")
    elif not path.is_file():
        raise TargetError(f"target file '{spec}' does not exist")
    return parse_target(path.read_text(), str(spec))


def parse_target(text: str, filename: str) -> Target:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+), column (\d+)", str(e))
        line, col = (int(m[1]), int(m[2])) if m else (1, 1)
        raise TargetError(f"malformed TOML: {str(e).split(' (at')[0]}",
                          span_at(filename, text, line, col)) from None
    flat = {**data.get("target", {}), **{k: v for k, v in data.items() if not isinstance(v, dict)}}
    values = {}
    for f in fields(Target):
        where = _key_span(text, filename, f.name)
        if f.name not in flat:
            if f.name == "description":
                continue
            raise TargetError(f"target field '{f.name}' is missing", Span(filename, 1, 1))
        values[f.name] = _check_field(f.name, f.type, flat[f.name], where)
    unknown = sorted(set(flat) - {f.name for f in fields(Target)})
    if unknown:
        raise TargetError(f"unknown target field '{unknown[0]}'", _key_span(text, filename, unknown[0]))
    target = Target(**values)
    if target.reserved_bytes_per_pe >= target.sram_bytes_per_pe:
        raise TargetError("reserved_bytes_per_pe leaves no SRAM for data",
                          _key_span(text, filename, "reserved_bytes_per_pe"))
    return target


def _check_field(name: str, typ: str, value, where: Span):
    want = {"int": int, "float": (int, float), "str": str}[typ.split()[0]]
    if isinstance(value, bool) or not isinstance(value, want):
        raise TargetError(f"target field '{name}' must be {typ}, got {type(value).__name__}", where)
    if name in _POSITIVE and value <= 0:
        raise TargetError(f"target field '{name}' must be positive, got {value}", where)
    if typ != "str" and value < 0:
        raise TargetError(f"target field '{name}' must not be negative, got {value}", where)
    return float(value) if typ == "float" else value


def _key_span(text: str, filename: str, key: str) -> Span:
    for i, line in enumerate(text.splitlines(), 1):
        m = re.match(rf"\s*{re.escape(key)}\s*=", line)
        if m:
            return Span(filename, i, line.index(key) + 1, line)
    return Span(filename, 1, 1)


def target_to_toml(t: Target) -> str:
    """The target as a TOML file `parse_target` reads back to the same Target (deterministic)."""
    lines = ["[target]"]
    for f in fields(Target):
        value = getattr(t, f.name)
        lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
