"""What a scene is made of: drawing primitives in pixels (y grows downwards), wafers, regions.

Ensures: every shape is a frozen dataclass the SVG and PNG renderers draw the same way, and
`text_width` is the one estimate of how wide a label is (both renderers use a sans-serif font of
about this width, so a label the scene decided fits does fit).
"""
from __future__ import annotations

from dataclasses import dataclass

# Average advance of a sans-serif character (DejaVu Sans, Arial) in ems, rounded up.
CHAR_WIDTH_EM = 0.62


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float
    fill: str | None = None
    stroke: str | None = None
    stroke_width: float = 1.0
    gradient: tuple[str, ...] = ()  # left to right; replaces `fill` when given


@dataclass(frozen=True)
class Line:
    points: list[tuple[float, float]]
    color: str
    width: float
    dash: tuple[float, float] | None = None
    arrow: bool = False  # an arrowhead at the last point
    label: str = ""      # what the line means (a tooltip in SVG viewers)


@dataclass(frozen=True)
class Text:
    """Text whose vertical centre is at y; `anchor` says whether x is its start or its middle."""

    x: float
    y: float
    text: str
    size: float
    color: str
    anchor: str = "start"
    bold: bool = False
    rotate: bool = False  # read bottom to top, for tall narrow regions
    region: int | None = None  # the index of the region this labels
    halo: str | None = None    # an outline in this colour keeps lines drawn beneath off the glyphs


HALO_WIDTH = 7  # pixels across, centred on the glyph outlines: wide enough to cover a word space


def text_width(text: str, size: float) -> float:
    """The width in pixels of `text` at font size `size`, estimated."""
    return len(text) * size * CHAR_WIDTH_EM


@dataclass(frozen=True)
class WaferFrame:
    """One wafer on the page: its top-left corner in pixels, pixels per PE, size in PEs."""

    index: int
    left: float
    top: float
    scale: float
    width: int
    height: int
    defects: tuple[tuple[int, int], ...] = ()   # physical (x, y) of defective PEs
    retired_rows: tuple[int, ...] = ()

    def to_px(self, x: float, y: float) -> tuple[float, float]:
        return self.left + x * self.scale, self.top + y * self.scale

    @property
    def right(self) -> float:
        return self.left + self.width * self.scale

    @property
    def bottom(self) -> float:
        return self.top + self.height * self.scale


@dataclass(frozen=True)
class RegionShape:
    """One placed kernel: a rectangle of physical PEs on a wafer, its fill, and what to show."""

    index: int
    kernel: str
    wafer: int
    x: int
    y: int
    w: int
    h: int
    fill: str
    bottleneck: bool
    info: dict  # the kernel's placement.json entry, for tooltips and tables
