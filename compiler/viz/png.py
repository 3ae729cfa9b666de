"""The scene as a PNG, drawn with Pillow (no cairo, no browser): for slides and papers.

Requires: a `Scene` from compiler/viz/scene.py; Pillow.
Ensures:  the same picture as compiler/viz/svg.py draws from the same scene: drawn at `SUPERSAMPLE`
          times the size and scaled down, which smooths edges and text; a one-PE defect stays a
          visible dot. Fonts: DejaVu Sans when installed, else Pillow's bundled default font.
"""
from __future__ import annotations

import io
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from compiler.viz import palette
from compiler.viz.scene import Scene
from compiler.viz.shapes import HALO_WIDTH, Box, Line, Text, WaferFrame

SUPERSAMPLE = 2
_FONT_FILES = {False: ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
               True: ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")}
_PIL_ANCHOR = {"start": "lm", "middle": "mm", "end": "rm"}


def render_png(scene: Scene) -> bytes:
    """The picture as PNG bytes."""
    k = SUPERSAMPLE
    image = Image.new("RGB", (round(scene.width) * k, round(scene.height) * k), "#ffffff")
    draw = ImageDraw.Draw(image)
    for frame in scene.wafers:
        _regions(draw, scene, frame, k)
    for line in scene.path + scene.path_arrows:
        _line(draw, line, k)
    for label in scene.labels:  # halos hide the path under labels, not the defects drawn next
        if label.halo:
            _text(image, draw, replace(label, color=label.halo), k, halo=True)
    for frame in scene.wafers:
        _marks(draw, scene, frame, k)
    for item in [*scene.links, *scene.labels, *scene.callouts, *scene.title, *scene.captions, *scene.legend]:
        _primitive(image, draw, item, k)
    small = image.reduce(k)  # averaging k x k pixels: the anti-aliasing
    # A picture of flat fills needs no more than a 256-colour palette; it makes the file ~3x smaller.
    small = small.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", compress_level=9)
    return out.getvalue()


def _pe_box(frame: WaferFrame, x: float, y: float, w: float, h: float, k: int) -> list[float]:
    """A rectangle of PEs as image pixel bounds (inclusive) at supersampling k."""
    (x0, y0), (x1, y1) = frame.to_px(x, y), frame.to_px(x + w, y + h)
    return [x0 * k, y0 * k, x1 * k - 1, y1 * k - 1]


def _regions(draw: ImageDraw.ImageDraw, scene: Scene, frame: WaferFrame, k: int) -> None:
    draw.rectangle(_pe_box(frame, 0, 0, frame.width, frame.height, k), fill=palette.EMPTY_FABRIC,
                   outline=palette.WAFER_EDGE, width=2 * k)
    for r in scene.regions:
        if r.wafer == frame.index:
            draw.rectangle(_pe_box(frame, r.x, r.y, r.w, r.h, k), fill=r.fill, outline="#ffffff", width=1)


def _marks(draw: ImageDraw.ImageDraw, scene: Scene, frame: WaferFrame, k: int) -> None:
    """Retired rows, defects and the bottleneck's outline."""
    for y in frame.retired_rows:
        _dashed(draw, [frame.to_px(0, y + 0.5), frame.to_px(frame.width, y + 0.5)], palette.DEFECT, 1.2, (4, 3), k)
    draw.point(_defect_pixels(frame, k), fill=palette.DEFECT)
    for r in scene.regions:
        if r.wafer == frame.index and r.bottleneck:
            draw.rectangle(_pe_box(frame, r.x, r.y, r.w, r.h, k), outline=palette.BOTTLENECK, width=3 * k)


def _defect_pixels(frame: WaferFrame, k: int) -> list[tuple[int, int]]:
    """Every image pixel a defect covers: at least one output pixel per defective PE, so that
    one PE in a million still shows. One `point` call for all of them is fast at 100k defects."""
    dot = max(1, round(frame.scale * k))
    offsets = [(i, j) for i in range(dot) for j in range(dot)]
    pixels = []
    for x, y in frame.defects:
        px, py = frame.to_px(x, y)
        pixels += [(round(px * k) + i, round(py * k) + j) for i, j in offsets]
    return pixels


def _primitive(image: Image.Image, draw: ImageDraw.ImageDraw, item: Box | Line | Text, k: int) -> None:
    if isinstance(item, Box):
        _box(draw, item, k)
    elif isinstance(item, Line):
        _line(draw, item, k)
    else:
        _text(image, draw, item, k)


def _box(draw: ImageDraw.ImageDraw, b: Box, k: int) -> None:
    x0, y0, x1, y1 = b.x * k, b.y * k, (b.x + b.w) * k - 1, (b.y + b.h) * k - 1
    if b.gradient:
        steps = max(1, round(x1 - x0))
        for i in range(steps + 1):
            color = palette.heat_color(i / steps) if b.gradient == palette.VIRIDIS else b.gradient[0]
            draw.line([(x0 + i, y0), (x0 + i, y1)], fill=color)
    elif b.fill:
        draw.rectangle([x0, y0, x1, y1], fill=b.fill)
    if b.stroke:
        draw.rectangle([x0, y0, x1, y1], outline=b.stroke, width=max(1, round(b.stroke_width * k)))


def _line(draw: ImageDraw.ImageDraw, line: Line, k: int) -> None:
    points = line.points
    if line.arrow:  # stop the shaft where the head begins
        points = [*points[:-1], _back_off(points[-2], points[-1], 3 * line.width)]
    if line.dash:
        _dashed(draw, points, line.color, line.width, line.dash, k)
    else:
        draw.line([(x * k, y * k) for x, y in points], fill=line.color, width=round(line.width * k),
                  joint="curve")
    if line.arrow:
        _arrowhead(draw, line.points[-2], line.points[-1], line.color, 4 * line.width * k, k)


def _back_off(a: tuple[float, float], b: tuple[float, float], distance: float) -> tuple[float, float]:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    t = max(0.0, 1 - distance / length)
    return a[0] + dx * t, a[1] + dy * t


def _arrowhead(draw, a, b, color: str, size: float, k: int) -> None:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    ux, uy = dx / length, dy / length
    tip = (b[0] * k, b[1] * k)
    base = (tip[0] - ux * size, tip[1] - uy * size)
    half = size / 2
    draw.polygon([tip, (base[0] - uy * half, base[1] + ux * half), (base[0] + uy * half, base[1] - ux * half)],
                 fill=color)


def _dashed(draw, points, color: str, width: float, dash: tuple[float, float], k: int) -> None:
    on, off = dash
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
        t = 0.0
        while t < length:
            end = min(t + on, length)
            a = (x0 + (x1 - x0) * t / length, y0 + (y1 - y0) * t / length)
            b = (x0 + (x1 - x0) * end / length, y0 + (y1 - y0) * end / length)
            draw.line([(a[0] * k, a[1] * k), (b[0] * k, b[1] * k)], fill=color, width=max(1, round(width * k)))
            t = end + off


def _text(image: Image.Image, draw: ImageDraw.ImageDraw, t: Text, k: int, halo: bool = False) -> None:
    """The text, or with `halo` its outline alone (Pillow strokes outside the glyph only: half the
    SVG halo's width)."""
    font = _font(round(t.size * k), t.bold)
    halo = {"stroke_width": round(HALO_WIDTH / 2 * k), "stroke_fill": t.color} if halo else {}
    if not t.rotate:
        draw.text((t.x * k, t.y * k), t.text, fill=t.color, font=font, anchor=_PIL_ANCHOR[t.anchor], **halo)
        return
    pad = 2 + halo.get("stroke_width", 0)
    left, top, right, bottom = font.getbbox(t.text, anchor="lm")
    stamp = Image.new("RGBA", (right - left + 2 * pad, bottom - top + 2 * pad), (0, 0, 0, 0))
    ImageDraw.Draw(stamp).text((pad - left, pad - top), t.text, fill=t.color, font=font, anchor="lm", **halo)
    stamp = stamp.rotate(90, expand=True)
    image.paste(stamp, (round(t.x * k - stamp.width / 2), round(t.y * k - stamp.height / 2)), stamp)


@lru_cache(maxsize=32)
def _font(size: int, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in _FONT_FILES[bold]:
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def write_png(scene: Scene, path: Path) -> None:
    path.write_bytes(render_png(scene))
