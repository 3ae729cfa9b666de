"""Marks drawn over the regions: the dataflow path, its direction, wafer links, the bottleneck tag.

Requires: the scene's regions (in placement order, which is pipeline order) and wafer frames.
Ensures:  everything is in page pixels; the path joins kernel centres and never jumps between
          wafers (a link does that, across the gap between them).
"""
from __future__ import annotations

import math

from compiler.viz import palette
from compiler.viz.fields import stage_cycles
from compiler.viz.shapes import Box, Line, RegionShape, Text, WaferFrame, text_width

TAG_HEIGHT = 17
TAG_FONT = 11


def _center(region: RegionShape, frame: WaferFrame) -> tuple[float, float]:
    return frame.to_px(region.x + region.w / 2, region.y + region.h / 2)


def dataflow_path(regions: list[RegionShape], frames: dict[int, WaferFrame]) -> list[Line]:
    """Consecutive kernels joined centre to centre; a new polyline wherever the path changes wafer."""
    runs: list[list[tuple[float, float]]] = []
    previous = None
    for region in regions:
        point = _center(region, frames[region.wafer])
        if previous is None or previous.wafer != region.wafer:
            runs.append([])
        runs[-1].append(point)
        previous = region
    return [Line(run, palette.PATH, 1.4) for run in runs if len(run) > 1]


def direction_marks(path: list[Line], min_length: float = 40) -> list[Line]:
    """Small arrowheads halfway along each long enough step of the path: which way data flows."""
    marks = []
    for line in path:
        for (x0, y0), (x1, y1) in zip(line.points, line.points[1:]):
            length = math.hypot(x1 - x0, y1 - y0)
            if length >= min_length:
                mx, my = (x0 + x1) / 2, (y0 + y1) / 2
                back = 4 / length  # a 4-pixel shaft, just enough to orient the head
                marks.append(Line([(mx - (x1 - x0) * back, my - (y1 - y0) * back), (mx, my)],
                                  line.color, line.width, arrow=True))
    return marks


def wafer_links(regions: list[RegionShape], frames: dict[int, WaferFrame]) -> list[Line]:
    """Where the pipeline leaves one wafer for the next: a thin leader from the last kernel to its
    wafer's edge, an arrow across the gap, and a leader on to the first kernel on the next wafer."""
    links = []
    for a, b in zip(regions, regions[1:]):
        if a.wafer == b.wafer:
            continue
        fa, fb = frames[a.wafer], frames[b.wafer]
        (ax, ay), (bx, by) = _center(a, fa), _center(b, fb)
        forward = fb.left > fa.left
        leave, arrive = (fa.right, fb.left) if forward else (fa.left, fb.right)
        label = f"wafer {a.wafer} → wafer {b.wafer}: {a.kernel} → {b.kernel}"
        links += [Line([(ax, ay), (leave, ay)], palette.LINK, 1.2, dash=(5, 3), label=label),
                  Line([(leave, ay), (arrive, by)], palette.LINK, 3.0, arrow=True, label=label),
                  Line([(arrive, by), (bx, by)], palette.LINK, 1.2, dash=(5, 3), label=label)]
    return links


def bottleneck_callout(region: RegionShape, frame: WaferFrame) -> list[Box | Text]:
    """A red tag naming the slowest stage: inside its region if it fits there, else a short tag
    just above the region (below it at the wafer's top edge)."""
    cycles = stage_cycles(region.info)
    name = f"bottleneck: {region.kernel}"
    full = name + (f", {cycles:,} cycles/pass" if cycles is not None else "")
    left, top = frame.to_px(region.x, region.y)
    right, bottom = frame.to_px(region.x + region.w, region.y + region.h)
    for text in (full, name, "bottleneck"):
        width = _tag_width(text)
        if width <= right - left - 8 and TAG_HEIGHT <= bottom - top - 8:
            return _tag(text, left + (right - left - width) / 2, top + 4)
    width = _tag_width("bottleneck")
    y = top - TAG_HEIGHT - 3 if top - TAG_HEIGHT - 3 >= frame.top else bottom + 3
    x = min(max((left + right - width) / 2, frame.left), frame.right - width)
    return _tag("bottleneck", x, y)


def _tag_width(text: str) -> float:
    return text_width(text, TAG_FONT) + 10


def _tag(text: str, x: float, y: float) -> list[Box | Text]:
    width = _tag_width(text)
    return [Box(x, y, width, TAG_HEIGHT, "#ffffff", palette.BOTTLENECK, 1.5),
            Text(x + width / 2, y + TAG_HEIGHT / 2, text, TAG_FONT, palette.BOTTLENECK, anchor="middle",
                 bold=True)]
