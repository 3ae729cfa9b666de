"""The legend beside the wafers: what the fill colours, outlines, lines and marks mean.

Requires: a placement.json and report.json (as dicts) and the colour mode.
Ensures:  `legend_items` returns primitives stacked downwards from (left, top), within
          `LEGEND_WIDTH` pixels: the colour key for the mode (layer hues and kind shades, one
          swatch per kernel role, or a heat ramp with its range), then a key for every mark the
          picture holds (bottleneck outline, dataflow path, wafer links, defects, retired rows).
"""
from __future__ import annotations

from compiler.viz import palette
from compiler.viz.fields import heat_range, layer_of, role_of, usable_sram
from compiler.viz.shapes import Box, Line, Text

ROW = 20
SWATCH = 14
HEADING = 14
BODY = 12
MAX_ROLE_ROWS = 20


class _Stack:
    """Primitives placed one row under another."""

    def __init__(self, left: float, top: float):
        self.left, self.y, self.items = left, top, []

    def heading(self, text: str) -> None:
        self.items.append(Text(self.left, self.y + ROW / 2, text, HEADING, "#111111", bold=True))
        self.y += ROW + 2

    def text(self, text: str, indent: float = 0) -> None:
        self.items.append(Text(self.left + indent, self.y + ROW / 2, text, BODY, "#333333"))
        self.y += ROW

    def swatch(self, fill: str, text: str, stroke: str | None = "#555555") -> None:
        self.items.append(Box(self.left, self.y + (ROW - SWATCH) / 2, SWATCH, SWATCH, fill, stroke, 0.6))
        self.text(text, indent=SWATCH + 8)

    def line(self, color: str, width: float, text: str, dash=None, arrow=False) -> None:
        mid = self.y + ROW / 2
        self.items.append(Line([(self.left, mid), (self.left + 26, mid)], color, width, dash, arrow))
        self.text(text, indent=34)

    def gap(self, pixels: float = 10) -> None:
        self.y += pixels


def legend_items(placement: dict, report: dict, color_by: str, left: float, top: float) -> list:
    stack = _Stack(left, top)
    {"layer": _layer_key, "kind": _kind_key, "sram": _sram_key, "stage-time": _stage_key}[color_by](
        stack, placement, report)
    stack.gap(14)
    _marks_key(stack, placement)
    return stack.items


def _layer_key(stack: _Stack, placement: dict, report: dict) -> None:
    layers = sorted({layer for r in placement["regions"] if (layer := layer_of(r)) is not None})
    stack.heading("Colour: layer")
    if layers:
        hues = palette.LAYER_HUES
        for i, hue in enumerate(hues[:min(len(hues), len(layers))]):
            repeats = ", ".join(f"{l}" for l in layers if l % len(hues) == i)
            stack.swatch(hue, f"layer {_shorten(repeats, 30)}")
    stack.gap(6)
    stack.text("shade says the kernel kind:")
    stack.swatch(palette.layer_color(0, "linear"), "linear (projections, MLP)")
    stack.swatch(palette.layer_color(0, "vector"), "vector (norms, attention core)")
    stack.swatch(palette.NO_LAYER, "outside the layers (embed, head)")


def _kind_key(stack: _Stack, placement: dict, report: dict) -> None:
    colors = palette.role_colors([role_of(r) for r in placement["regions"]])
    stack.heading("Colour: kernel kind")
    for role, color in list(colors.items())[:MAX_ROLE_ROWS]:
        stack.swatch(color, _shorten(role, 34))
    if len(colors) > MAX_ROLE_ROWS:
        stack.text(f"... and {len(colors) - MAX_ROLE_ROWS} more (colours repeat)")


def _sram_key(stack: _Stack, placement: dict, report: dict) -> None:
    usable = usable_sram(placement)
    stack.heading("Colour: SRAM use per PE")
    _ramp(stack, "0%", "100%")
    stack.text(f"of the {usable / 1024:,.0f} KiB a PE has for data" if usable > 0 else "of a PE's SRAM")


def _stage_key(stack: _Stack, placement: dict, report: dict) -> None:
    low, high = heat_range(placement, "stage-time")
    stack.heading("Colour: stage time")
    _ramp(stack, f"{low:,.0f}", f"{high:,.0f} cycles")
    stack.text("cycles per pass, fastest to slowest;")
    stack.text("the slowest stage sets the throughput")


def _ramp(stack: _Stack, low: str, high: str) -> None:
    width = 200
    stack.items.append(Box(stack.left, stack.y + 2, width, 16, None, "#555555", 0.6,
                           gradient=palette.VIRIDIS))
    stack.y += 22
    stack.items.append(Text(stack.left, stack.y + 6, low, BODY, "#333333"))
    stack.items.append(Text(stack.left + width, stack.y + 6, high, BODY, "#333333", anchor="end"))
    stack.y += 16


def _marks_key(stack: _Stack, placement: dict) -> None:
    stack.heading("Marks")
    stack.items.append(Box(stack.left + 1, stack.y + 3, SWATCH, SWATCH, None, palette.BOTTLENECK, 2.5))
    stack.text("bottleneck (slowest stage)", indent=SWATCH + 8)
    stack.line(palette.PATH, 1.4, "dataflow, kernel to kernel")
    wafers = {r.get("wafer", 0) for r in placement["regions"]}
    if len(wafers) > 1:
        stack.line(palette.LINK, 2.6, "wafer-to-wafer link", arrow=True)
    if placement.get("defects"):
        stack.items.append(Box(stack.left + 5, stack.y + ROW / 2 - 2, 4, 4, palette.DEFECT))
        stack.text(f"defective PE ({len(placement['defects']):,})", indent=SWATCH + 8)
    if any((placement.get("remap") or {}).get("retired_rows") or []):
        stack.line(palette.DEFECT, 1.2, "retired row", dash=(4, 3))
    stack.swatch(palette.EMPTY_FABRIC, "unused PEs")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
