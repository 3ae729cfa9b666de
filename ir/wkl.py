"""The WKL program as data: what the compiler builds, the WKL printer writes, the parser reads back
and the simulator runs. (The text form and its grammar live in backends/wkl; the meaning of each
statement is defined here, and backends/sim is its executable definition.)

A program is a `Layout` plus one `KernelProgram` per region. Values come in two scopes:

* **whole tensors** — a kernel's `in` and `out` declarations and the layout's program inputs,
  parameters and outputs. They cross region boundaries on routes.
* **locals** — per-PE arrays named in a kernel body. Every PE of the region runs the same body
  (SPMD); a PE knows its coordinates in the region as `px` (column, 0..w-1) and `py` (row, 0..h-1),
  and index expressions may use them.

Kernel body statements, in order:

* `Tile`: `tile NAME : T = PARAM[slices]` — the PE keeps that block of a parameter resident in its
  SRAM. Parts of the block outside the parameter's bounds are zero (padding).
* `Load`: `load NAME : T = IN[slices]` — the fabric delivers that block of an `in` tensor to the
  PE (edge injection plus row/column broadcast). Out-of-bounds parts are zero.
* `State`: `state NAME : T` — a buffer the PE keeps resident across runs (a KV cache), zero when
  the program is loaded. It counts against the PE's SRAM like a tile.
* `Compute`: `NAME : T = op(args) {attrs}` — an op from `ir.ops` applied to the PE's locals with the
  IR's meaning; collectives (`reduce_row`, `reduce_col`, `reduce_all`) combine a local across PEs.
* `Store`: `store OUT[slices] = NAME where px == a and py == b` — PEs meeting the condition write
  their local into that block of an `out` tensor; parts outside the tensor's bounds are dropped.
  Every element of every `out` must be written by the end of the kernel.

Every slice bound is an affine expression in `px` and `py`; a `Slice` with no bounds is `:`
(the whole dimension). The block a slice list selects always has the local type's shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ir.errors import Span
from ir.types import TensorType

PE_VARS = ("px", "py")


@dataclass(frozen=True)
class Affine:
    """const + sum(coef * var) over the PE coordinates."""

    const: int = 0
    px: int = 0
    py: int = 0

    def eval(self, px: int, py: int) -> int:
        return self.const + self.px * px + self.py * py

    def __add__(self, k: int) -> "Affine":
        return Affine(self.const + k, self.px, self.py)

    def __str__(self) -> str:
        terms = [f"{c}*{v}" if c != 1 else v for v, c in (("py", self.py), ("px", self.px)) if c]
        if self.const or not terms:
            terms.append(str(self.const))
        return " + ".join(terms).replace("+ -", "- ")


@dataclass(frozen=True)
class Slice:
    start: Affine | None = None  # None, None means the whole dimension (`:`)
    stop: Affine | None = None

    @property
    def whole(self) -> bool:
        return self.start is None

    @staticmethod
    def block(size: int, var: str | None, offset: int = 0) -> "Slice":
        """The `size`-wide block number `var` (a PE coordinate, or fixed at 0 when None)."""
        start = Affine(offset, **({var: size} if var else {}))
        return Slice(start, start + size)

    def __str__(self) -> str:
        return ":" if self.whole else f"{self.start} : {self.stop}"


@dataclass(frozen=True)
class Cond:
    """`where px == a and py == b`; a None coordinate is unconstrained."""

    px: int | None = None
    py: int | None = None

    def holds(self, px: int, py: int) -> bool:
        return (self.px is None or self.px == px) and (self.py is None or self.py == py)


@dataclass
class Tile:
    name: str
    type: TensorType
    param: str
    slices: list[Slice]
    span: Span | None = None


@dataclass
class Load:
    name: str
    type: TensorType
    src: str
    slices: list[Slice]
    span: Span | None = None


@dataclass
class State:
    name: str
    type: TensorType
    span: Span | None = None


@dataclass
class Compute:
    name: str
    type: TensorType
    op: str
    args: list[str]
    attrs: dict = field(default_factory=dict)
    span: Span | None = None


@dataclass
class Store:
    dst: str
    slices: list[Slice]
    src: str
    cond: Cond = field(default_factory=Cond)
    span: Span | None = None


Stmt = Union[Tile, Load, State, Compute, Store]


@dataclass
class TensorDecl:
    """An `in`/`out` of a kernel, or a program input/param/output in the layout."""

    name: str
    type: TensorType
    span: Span | None = None


@dataclass
class KernelProgram:
    name: str
    ins: list[TensorDecl]
    outs: list[TensorDecl]
    body: list[Stmt]
    # Provenance, printed as comments and kept for reports; not needed to run.
    kind: str = ""
    layer: int | None = None
    source: str = ""
    span: Span | None = None


@dataclass(frozen=True)
class Region:
    """A kernel's rectangle of PEs: x, y is the top-left PE; w columns by h rows."""

    kernel: str
    wafer: int
    x: int
    y: int
    w: int
    h: int
    span: Span | None = field(default=None, compare=False)

    @property
    def area(self) -> int:
        return self.w * self.h


@dataclass(frozen=True)
class Endpoint:
    """`host.NAME` (a program input/output) or `KERNEL.NAME` (a kernel's in/out)."""

    kernel: str  # "host" for the program boundary
    tensor: str

    def __str__(self) -> str:
        return f"{self.kernel}.{self.tensor}"


HOST = "host"


@dataclass(frozen=True)
class Route:
    name: str
    color: int
    src: Endpoint
    dst: Endpoint
    hops: int
    span: Span | None = field(default=None, compare=False)


@dataclass
class Layout:
    model: str
    target: str
    fabric: tuple[int, int]  # (width, height) in PEs
    wafers: int
    inputs: list[TensorDecl]
    params: list[TensorDecl]
    outputs: list[TensorDecl]
    regions: list[Region]   # in execution order
    routes: list[Route]


@dataclass
class Program:
    layout: Layout
    kernels: dict[str, KernelProgram]
    # Which file each part came from, for error messages: "layout.wkl", "kernels/NAME.wkl".
    files: dict[str, str] = field(default_factory=dict)
