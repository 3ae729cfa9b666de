"""The placement picture as plain data: what to draw where, computed once from an artifact's JSON.

Requires: an artifact's `placement.json`, `report.json` and model name (`VizData`), as written by
          compiler/pipeline.py. Fields added to placement.json later (`physical`, `role`,
          `bytes_per_pe`, ...) are optional: an older artifact is drawn with what it has.
Ensures:  `build_scene` returns a `Scene` in pixel units that the SVG, PNG and HTML renderers draw
          without further decisions: wafers side by side to one scale, one `RegionShape` per
          placed kernel (in placement order, at its physical PE coordinates), the dataflow path
          through consecutive kernels, the links between wafers, labels only where they fit, a
          title block and a legend. Regions are rectangles, never PEs, so the scene of a wafer of
          900,000 PEs holds a few hundred shapes (plus one point per defective PE).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from compiler.artifact import Artifact
from compiler.viz import palette
from compiler.viz.fields import heat_range, layer_of, physical_box, role_of, sram_fraction, stage_cycles
from compiler.viz.legend import legend_items
from compiler.viz.marks import bottleneck_callout, dataflow_path, direction_marks, wafer_links
from compiler.viz.shapes import HALO_WIDTH, Box, Line, RegionShape, Text, WaferFrame, text_width
from compiler.viz.title import title_block
from ir.errors import ArtifactError, CompilerError

COLOR_MODES = ("layer", "kind", "sram", "stage-time")

MARGIN = 24
TITLE_HEIGHT = 74
CAPTION_HEIGHT = 24
WAFER_GAP = 64          # room between wafers for the links drawn across
LEGEND_WIDTH = 270
MAX_WAFER_HEIGHT = 860  # pixels; a wafer of 1,176 rows is drawn at about 0.73 px per PE
MAX_WAFERS_WIDTH = 2300
LABEL_SIZES = (15, 13, 11, 9)


@dataclass(frozen=True)
class VizData:
    """What the picture is made from: an artifact's placement, report and model name."""

    placement: dict
    report: dict
    model: str

    @classmethod
    def from_artifact(cls, artifact: Artifact, where: str = "artifact") -> "VizData":
        placement = _json(artifact, "placement.json", where)
        report = _json(artifact, "report.json", where)
        signature = _json(artifact, "signature.json", where) if "signature.json" in artifact.files else {}
        _check_regions(placement, f"{where}/placement.json")
        return cls(placement, report, str(signature.get("model", "model")))


def _check_regions(placement: dict, where: str) -> None:
    """Every region names its kernel and has a rectangle of whole PEs: the least a picture needs."""
    regions = placement.get("regions")
    if not isinstance(regions, list) or not regions:
        raise ArtifactError(f"'{where}' has no placed regions to draw")
    for i, region in enumerate(regions):
        named = isinstance(region, dict) and isinstance(region.get("kernel"), str)
        box = (region.get("physical") or region) if named else {}
        if not named or not all(isinstance(box.get(k), int) and box[k] >= 0 for k in ("x", "y", "w", "h")):
            raise ArtifactError(f"'{where}': region {i} needs a kernel name and whole-PE x, y, w, h")


def _json(artifact: Artifact, name: str, where: str) -> dict:
    if name not in artifact.files:
        raise ArtifactError(f"'{where}' has no {name}; it is not a complete waferc artifact")
    try:
        data = json.loads(artifact.files[name])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"'{where}/{name}' is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"'{where}/{name}' must hold a JSON object")
    return data


@dataclass(frozen=True)
class Scene:
    width: float
    height: float
    color_by: str
    wafers: list[WaferFrame]
    regions: list[RegionShape]
    path: list[Line]        # the dataflow through consecutive kernels, one polyline per wafer run
    path_arrows: list[Line]  # arrowheads along the path, showing its direction
    links: list[Line]       # wafer to wafer
    labels: list[Text]      # inside regions
    title: list[Text]
    captions: list[Text]    # above each wafer
    legend: list[Box | Line | Text]
    callouts: list[Box | Text]  # the bottleneck's tag
    bottleneck: str


def build_scene(data: VizData, color_by: str = "layer") -> Scene:
    """Lay out the picture of `data`, coloured by layer, kernel kind, SRAM use or stage time."""
    if color_by not in COLOR_MODES:
        raise CompilerError(f"unknown colour mode '{color_by}'", hint=f"use one of: {', '.join(COLOR_MODES)}")
    regions_json = data.placement["regions"]
    bottleneck = str(data.report.get("bottleneck_kernel") or _slowest(regions_json))
    wafers = _wafer_frames(data.placement)
    frames = {w.index: w for w in wafers}
    fills = region_fills(data.placement, color_by)
    regions = [_region_shape(i, r, fills[i], bottleneck) for i, r in enumerate(regions_json)]
    callouts = [item for r in regions if r.bottleneck for item in bottleneck_callout(r, frames[r.wafer])]
    path = dataflow_path(regions, frames)
    legend_left = max(w.right for w in wafers) + MARGIN
    legend = legend_items(data.placement, data.report, color_by, legend_left, MARGIN + TITLE_HEIGHT)
    bottom = max([w.bottom for w in wafers] + [_bottom(item) for item in legend + callouts])
    return Scene(
        width=legend_left + LEGEND_WIDTH, height=bottom + MARGIN, color_by=color_by, wafers=wafers,
        regions=regions, path=path, path_arrows=direction_marks(path), links=wafer_links(regions, frames),
        labels=[t for r in regions if (t := region_label(r, frames[r.wafer]))],
        title=title_block(data.model, data.placement, data.report, bottleneck),
        captions=[_caption(w, regions) for w in wafers],
        legend=legend, callouts=callouts, bottleneck=bottleneck)


def _slowest(regions: list[dict]) -> str:
    return max(regions, key=lambda r: r.get("cycles_per_token", 0))["kernel"]


def _bottom(item: Box | Line | Text) -> float:
    if isinstance(item, Box):
        return item.y + item.h
    if isinstance(item, Line):
        return max(y for _, y in item.points)
    return item.y + item.size


# ---------------------------------------------------------------- wafers


def _wafer_frames(placement: dict) -> list[WaferFrame]:
    """Wafers side by side, all to one scale: as large as fits the page's height and width."""
    width, height = _physical_dims(placement)
    count = max(int(placement.get("wafers", 1)), 1 + max(int(r.get("wafer", 0)) for r in placement["regions"]))
    scale = min(MAX_WAFER_HEIGHT / height, (MAX_WAFERS_WIDTH - (count - 1) * WAFER_GAP) / (count * width))
    top = MARGIN + TITLE_HEIGHT + CAPTION_HEIGHT
    defects = _defects_by_wafer(placement.get("defects") or [])
    retired = (placement.get("remap") or {}).get("retired_rows") or []
    return [WaferFrame(i, MARGIN + i * (width * scale + WAFER_GAP), top, scale, width, height,
                       defects.get(i, ()), tuple(retired[i]) if i < len(retired) else ())
            for i in range(count)]


def _physical_dims(placement: dict) -> tuple[int, int]:
    remap = placement.get("remap") or {}
    dims = remap.get("physical_dims") or placement.get("target", {}).get("fabric_dims")
    if not dims:  # a hand-made placement: the extent of its regions
        boxes = [physical_box(r) for r in placement["regions"]]
        dims = (max(x + w for x, _, w, _ in boxes), max(y + h for _, y, _, h in boxes))
    return int(dims[0]), int(dims[1])


def _defects_by_wafer(defects: list) -> dict[int, tuple[tuple[int, int], ...]]:
    by_wafer: dict[int, list[tuple[int, int]]] = {}
    for wafer, x, y in defects:
        by_wafer.setdefault(int(wafer), []).append((int(x), int(y)))
    return {w: tuple(points) for w, points in by_wafer.items()}


def _caption(frame: WaferFrame, regions: list[RegionShape]) -> Text:
    used = sum(r.info["w"] * r.info["h"] for r in regions if r.wafer == frame.index)
    share = used / (frame.width * frame.height)
    kernels = sum(1 for r in regions if r.wafer == frame.index)
    text = f"wafer {frame.index}: {frame.width}×{frame.height} PEs, {kernels} kernels, {share:.0%} of PEs used"
    return Text(frame.left, frame.top - CAPTION_HEIGHT / 2, _fit_text(text, frame.right - frame.left, 12),
                12, "#333333")


# ---------------------------------------------------------------- regions


def _region_shape(index: int, region: dict, fill: str, bottleneck: str) -> RegionShape:
    x, y, w, h = physical_box(region)
    return RegionShape(index, str(region["kernel"]), int(region.get("wafer", 0)), x, y, w, h, fill,
                       region["kernel"] == bottleneck, region)


def region_fills(placement: dict, color_by: str) -> list[str]:
    """The fill of every region, in placement order, for one colour mode."""
    regions = placement["regions"]
    if color_by == "layer":
        return [palette.layer_color(layer_of(r), str(r.get("kind", ""))) for r in regions]
    if color_by == "kind":
        colors = palette.role_colors([role_of(r) for r in regions])
        return [colors[role_of(r)] for r in regions]
    value = sram_fraction if color_by == "sram" else lambda r, _: stage_cycles(r)
    values = [value(r, placement) for r in regions]
    low, high = heat_range(placement, color_by)
    return [palette.heat_color((v - low) / (high - low)) if v is not None else palette.NO_LAYER
            for v in values]


# ---------------------------------------------------------------- labels


def region_label(region: RegionShape, frame: WaferFrame) -> Text | None:
    """The most informative label that fits inside the region, across or along it, if any. Its
    halo in the region's colour hides the dataflow path where it runs under the label."""
    # The placed size, not the physical box: around defects, neighbouring boxes overlap a little.
    w_px, h_px = region.info["w"] * frame.scale, region.info["h"] * frame.scale
    cx, cy = frame.to_px(region.x + region.w / 2, region.y + region.h / 2)
    style = {"color": palette.text_color(region.fill), "anchor": "middle", "region": region.index,
             "halo": region.fill}
    for text in label_candidates(region.info):
        for size in LABEL_SIZES:
            # The label and its halo stay inside the region.
            along, across = text_width(text, size) + HALO_WIDTH, size + HALO_WIDTH
            if along <= w_px and across <= h_px:
                return Text(cx, cy, text, size, **style)
            if h_px > w_px and along <= h_px and across <= w_px:
                return Text(cx, cy, text, size, rotate=True, **style)
    return None


def label_candidates(region: dict) -> list[str]:
    """Label texts from the most to the least informative. A kernel in a layer is named by layer
    and role (`L3 q_proj`) the same way in every layer; any other by its kernel name."""
    role = role_of(region).split(".")[-1]
    layer = layer_of(region)
    if layer is None:
        return [str(region["kernel"]), role]
    return [f"L{layer} {role}", role, f"L{layer}"]


def _fit_text(text: str, width: float, size: float) -> str:
    while text and text_width(text, size) > width:
        text = text[:-2] + "…"
    return text


