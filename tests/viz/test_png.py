"""The PNG: drawn with Pillow from the same scene as the SVG, regions in their colours, not blank."""
from __future__ import annotations

import io

import pytest

from compiler.viz import build_scene, render
from compiler.viz import palette
from tests.viz.artifacts import viz_data, wafer_scale_data

Image = pytest.importorskip("PIL.Image")


def decode(data: bytes):
    return Image.open(io.BytesIO(data)).convert("RGB")


def close(a: tuple[int, int, int], b: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def test_png_has_the_scene_size_and_is_not_blank(any_artifact):
    data = viz_data(any_artifact)
    scene = build_scene(data)
    image = decode(render(data, ".png"))
    assert image.size == (round(scene.width), round(scene.height))
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 20


def test_region_centres_have_their_fill(one_wafer):
    data = viz_data(one_wafer)
    scene = build_scene(data, "kind")
    image = decode(render(data, ".png", "kind"))
    frame = scene.wafers[0]
    labelled = {t.region for t in scene.labels}
    checked = 0
    for region in scene.regions:
        if region.w < 2 or region.h < 2 or region.bottleneck:
            continue
        # A quarter of the way in, clear of the centred label and the dataflow path.
        x, y = frame.to_px(region.x + region.w / 4, region.y + region.h / 4)
        assert close(image.getpixel((int(x), int(y))), palette.rgb(region.fill)), region.kernel
        checked += 1
    assert checked >= 3 and labelled


def test_defects_are_visible(defective):
    data = viz_data(defective)
    frame = build_scene(data).wafers[0]
    image = decode(render(data, ".png"))
    x, y = next(iter(frame.defects))
    px, py = frame.to_px(x + 0.5, y + 0.5)
    assert close(image.getpixel((int(px), int(py))), palette.rgb(palette.DEFECT), 40)


def test_wafer_scale_png_is_modest():
    image_bytes = render(wafer_scale_data(columns=40, rows=20, defects=9000), ".png")
    assert len(image_bytes) < 700_000
    assert decode(image_bytes).size[1] < 1100
