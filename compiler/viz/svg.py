"""The scene as SVG text: one `<rect>` per placed kernel, in its wafer's PE coordinates.

Requires: a `Scene` from compiler/viz/scene.py.
Ensures:  a standalone, well-formed SVG document. Each wafer is a group scaled from PEs to pixels,
          so a region's `x`, `y`, `width`, `height` attributes are exactly its physical PE
          rectangle; regions carry `class="region"`, `data-index` (its place in placement.json),
          `data-kernel`, `data-wafer` and a `<title>` (a tooltip in any SVG viewer). Defects are one
          path per wafer. Every text taken from the artifact (model, kernel and module names) is
          XML-escaped, so a name cannot inject markup. The same scene gives the same bytes.
"""
from __future__ import annotations

from html import escape

from compiler.viz import palette
from compiler.viz.fields import layer_of
from compiler.viz.scene import Scene
from compiler.viz.shapes import HALO_WIDTH, Box, Line, RegionShape, Text, WaferFrame

FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"
_ANCHOR = {"start": "start", "middle": "middle", "end": "end"}


def render_svg(scene: Scene, other_legends: dict[str, list] | None = None) -> str:
    """The whole picture as an SVG document. `other_legends` (colour mode -> legend items) are
    added hidden, for a page that switches colour modes (compiler/viz/html.py)."""
    legends = {scene.color_by: scene.legend, **(other_legends or {})}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(scene.width)}" height="{_n(scene.height)}" '
        f'viewBox="0 0 {_n(scene.width)} {_n(scene.height)}" font-family="{FONT}">',
        f"<title>{escape(scene.title[0].text)}</title>",
        _defs(scene, legends),
        f'<rect class="page" width="{_n(scene.width)}" height="{_n(scene.height)}" fill="#ffffff"/>',
        '<g id="wafers">', *(_wafer(scene, frame) for frame in scene.wafers), "</g>",
        '<g id="dataflow" pointer-events="none">', *(_line(x) for x in scene.path + scene.path_arrows), "</g>",
        # Halos hide the path under labels, but not the defects drawn over them (nor the glyphs).
        '<g id="label-halos" pointer-events="none">', *(_halo(t) for t in scene.labels if t.halo), "</g>",
        '<g id="marks" pointer-events="none">', *(_marks(scene, frame) for frame in scene.wafers), "</g>",
        '<g id="links" pointer-events="none">', *(_line(line) for line in scene.links), "</g>",
        '<g id="labels" pointer-events="none">', *(_text(t) for t in scene.labels), "</g>",
        '<g id="callouts" pointer-events="none">', *(_primitive(item) for item in scene.callouts), "</g>",
        '<g id="title">', *(_text(t) for t in scene.title + scene.captions), "</g>",
        *(_legend(mode, items, visible=mode == scene.color_by) for mode, items in legends.items()),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def _legend(mode: str, items: list, visible: bool) -> str:
    hidden = "" if visible else ' display="none"'
    return "\n".join([f'<g class="legend" data-mode="{escape(mode)}"{hidden}>',
                      *(_primitive(item) for item in items), "</g>"])


def _defs(scene: Scene, legends: dict[str, list]) -> str:
    items = [item for legend in legends.values() for item in legend]
    gradients = {item.gradient for item in items if isinstance(item, Box) and item.gradient}
    stops = [
        f'<linearGradient id="{_gradient_id(g)}">' + "".join(
            f'<stop offset="{i / (len(g) - 1):.3f}" stop-color="{c}"/>' for i, c in enumerate(g))
        + "</linearGradient>" for g in sorted(gradients)]
    colors = sorted({line.color for line in scene.path_arrows + scene.links if line.arrow}
                    | {i.color for i in items if isinstance(i, Line) and i.arrow})
    markers = [f'<marker id="{_arrow_id(c)}" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="5" '
               f'markerHeight="5" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="{c}"/></marker>'
               for c in colors]
    return "<defs>" + "".join(stops + markers) + "</defs>"


def _wafer(scene: Scene, frame: WaferFrame) -> str:
    regions = [r for r in scene.regions if r.wafer == frame.index]
    parts = [f'<g class="wafer" data-wafer="{frame.index}" '
             f'transform="translate({_n(frame.left)} {_n(frame.top)}) scale({frame.scale:.6g})">',
             f'<rect class="fabric" width="{frame.width}" height="{frame.height}" fill="{palette.EMPTY_FABRIC}" '
             f'stroke="{palette.WAFER_EDGE}" stroke-width="1.5" vector-effect="non-scaling-stroke"/>',
             *(_region(r) for r in regions),
             "</g>"]
    return "\n".join(parts)


def _marks(scene: Scene, frame: WaferFrame) -> str:
    """Retired rows, defects and the bottleneck's outline, in the wafer's PE coordinates."""
    parts = [_retired_rows(frame), _defects(frame),
             *(_bottleneck(r) for r in scene.regions if r.wafer == frame.index and r.bottleneck)]
    body = "\n".join(p for p in parts if p)
    if not body:
        return ""
    return (f'<g class="wafer-marks" data-wafer="{frame.index}" '
            f'transform="translate({_n(frame.left)} {_n(frame.top)}) scale({frame.scale:.6g})">\n{body}\n</g>')


def _region(r: RegionShape) -> str:
    return (f'<rect class="region" id="region-{r.index}" data-index="{r.index}" '
            f'data-kernel="{escape(r.kernel)}" data-wafer="{r.wafer}" x="{r.x}" y="{r.y}" '
            f'width="{r.w}" height="{r.h}" fill="{r.fill}" stroke="#ffffff" stroke-width="0.5" '
            f'vector-effect="non-scaling-stroke"><title>{escape(region_tooltip(r))}</title></rect>')


def region_tooltip(r: RegionShape) -> str:
    """One line about a region, for viewers that show an SVG `<title>` on hover."""
    info = r.info
    layer = layer_of(info)
    parts = [r.kernel, f"layer {layer}" if layer is not None else "no layer", str(info.get("kind", "?"))]
    if isinstance(info.get("cycles_per_token"), int):
        parts.append(f"{info['cycles_per_token']:,} cycles/pass")
    parts.append(f"{r.w}×{r.h} PEs")
    return " · ".join(parts)


def _bottleneck(r: RegionShape) -> str:
    return (f'<rect class="bottleneck" x="{r.x}" y="{r.y}" width="{r.w}" height="{r.h}" fill="none" '
            f'stroke="{palette.BOTTLENECK}" stroke-width="3" vector-effect="non-scaling-stroke" '
            f'pointer-events="none"/>')


def _retired_rows(frame: WaferFrame) -> str:
    if not frame.retired_rows:
        return ""
    d = "".join(f"M0 {y + 0.5}H{frame.width}" for y in frame.retired_rows)
    return (f'<path class="retired-rows" d="{d}" stroke="{palette.DEFECT}" stroke-width="1.2" '
            f'stroke-dasharray="4 3" vector-effect="non-scaling-stroke" pointer-events="none"/>')


def _defects(frame: WaferFrame) -> str:
    if not frame.defects:
        return ""
    d = "".join(f"M{x} {y}h1v1h-1z" for x, y in frame.defects)
    # A stroke that does not scale keeps a one-PE defect visible however far the picture is zoomed out.
    return (f'<path class="defects" d="{d}" fill="{palette.DEFECT}" stroke="{palette.DEFECT}" '
            f'stroke-width="0.8" vector-effect="non-scaling-stroke" pointer-events="none"/>')


def _primitive(item: Box | Line | Text) -> str:
    if isinstance(item, Box):
        return _box(item)
    return _line(item) if isinstance(item, Line) else _text(item)


def _box(b: Box) -> str:
    fill = f"url(#{_gradient_id(b.gradient)})" if b.gradient else (b.fill or "none")
    stroke = f' stroke="{b.stroke}" stroke-width="{_n(b.stroke_width)}"' if b.stroke else ""
    return f'<rect x="{_n(b.x)}" y="{_n(b.y)}" width="{_n(b.w)}" height="{_n(b.h)}" fill="{fill}"{stroke}/>'


def _line(line: Line) -> str:
    points = " ".join(f"{_n(x)},{_n(y)}" for x, y in line.points)
    extra = f' stroke-dasharray="{_n(line.dash[0])} {_n(line.dash[1])}"' if line.dash else ""
    extra += f' marker-end="url(#{_arrow_id(line.color)})"' if line.arrow else ""
    title = f"<title>{escape(line.label)}</title>" if line.label else ""
    return (f'<polyline points="{points}" fill="none" stroke="{line.color}" stroke-width="{_n(line.width)}" '
            f'stroke-linejoin="round" stroke-linecap="round"{extra}>{title}</polyline>')


def _text(t: Text) -> str:
    return f"<text{_text_attributes(t)} fill=\"{t.color}\">{escape(t.text)}</text>"


def _halo(t: Text) -> str:
    """The label's outline alone, in the colour of its region."""
    return (f'<text class="halo"{_text_attributes(t)} fill="{t.halo}" stroke="{t.halo}" '
            f'stroke-width="{HALO_WIDTH}" stroke-linejoin="round">{escape(t.text)}</text>')


def _text_attributes(t: Text) -> str:
    weight = ' font-weight="bold"' if t.bold else ""
    rotate = f' transform="rotate(-90 {_n(t.x)} {_n(t.y)})"' if t.rotate else ""
    index = f' data-index="{t.region}"' if t.region is not None else ""
    return (f' x="{_n(t.x)}" y="{_n(t.y)}" font-size="{_n(t.size)}" text-anchor="{_ANCHOR[t.anchor]}" '
            f'dominant-baseline="central"{weight}{rotate}{index}')


def _gradient_id(colors: tuple[str, ...]) -> str:
    return "ramp-" + "".join(c[1:] for c in colors)[:24]


def _arrow_id(color: str) -> str:
    return f"arrow-{color[1:]}"


def _n(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros (smaller files)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
