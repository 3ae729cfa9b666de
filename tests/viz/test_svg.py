"""The SVG, parsed as XML: region rectangles at placement.json's coordinates, names escaped."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from compiler.viz import COLOR_MODES, build_scene, render
from compiler.viz.svg import render_svg
from tests.viz.artifacts import HOSTILE_MODEL, HOSTILE_MODULE, placement_of, viz_data, wafer_scale_data

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(artifact_or_data, mode: str = "layer") -> ET.Element:
    data = artifact_or_data if not hasattr(artifact_or_data, "files") else viz_data(artifact_or_data)
    return ET.fromstring(render(data, ".svg", mode))


def wafer_transform(group: ET.Element) -> tuple[float, float, float]:
    match = re.fullmatch(r"translate\(([\d.]+) ([\d.]+)\) scale\(([\d.e-]+)\)", group.get("transform"))
    return float(match[1]), float(match[2]), float(match[3])


def test_region_rectangles_match_placement_json(any_artifact):
    placement = placement_of(any_artifact)
    root = parse(any_artifact)
    rects = root.findall(".//svg:rect[@class='region']", NS)
    assert len(rects) == len(placement["regions"])
    for rect in rects:
        region = placement["regions"][int(rect.get("data-index"))]
        box = region["physical"]  # the logical region itself without defects
        assert rect.get("data-kernel") == region["kernel"]
        assert rect.get("data-wafer") == str(region["wafer"])
        assert [int(rect.get(k)) for k in ("x", "y", "width", "height")] == [box["x"], box["y"], box["w"], box["h"]]


def test_regions_sit_inside_their_scaled_wafer(any_artifact):
    placement = placement_of(any_artifact)
    width, height = placement["target"]["fabric_dims"]
    for group in parse(any_artifact).findall(".//svg:g[@class='wafer']", NS):
        _, _, scale = wafer_transform(group)
        fabric = group.find("svg:rect[@class='fabric']", NS)
        assert (int(fabric.get("width")), int(fabric.get("height"))) == (width, height)
        assert scale > 0
        for rect in group.findall("svg:rect[@class='region']", NS):
            assert rect.get("data-wafer") == group.get("data-wafer")
            assert int(rect.get("x")) + int(rect.get("width")) <= width
            assert int(rect.get("y")) + int(rect.get("height")) <= height


def test_wafers_are_drawn_side_by_side(two_wafers):
    groups = parse(two_wafers).findall(".//svg:g[@class='wafer']", NS)
    (x0, y0, s0), (x1, y1, s1) = (wafer_transform(g) for g in groups)
    assert s0 == s1 and y0 == y1 and x1 > x0 + 80 * s0


def test_defects_are_one_path_with_a_square_per_defect(defective):
    placement = placement_of(defective)
    path = parse(defective).find(".//svg:path[@class='defects']", NS)
    squares = re.findall(r"M(\d+) (\d+)h1v1h-1z", path.get("d"))
    assert sorted((int(x), int(y)) for x, y in squares) == sorted((x, y) for _, x, y in placement["defects"])
    rows = parse(defective).find(".//svg:path[@class='retired-rows']", NS)
    assert rows is not None and rows.get("d").count("M") == len(placement["remap"]["retired_rows"][0])


def test_bottleneck_has_an_outline(one_wafer):
    root = parse(one_wafer)
    outline = root.find(".//svg:rect[@class='bottleneck']", NS)
    region = root.find(".//svg:rect[@class='region'][@data-kernel='%s']" % build_scene(viz_data(one_wafer)).bottleneck, NS)
    assert [outline.get(k) for k in "xy"] == [region.get(k) for k in "xy"]


def test_links_between_wafers_have_arrowheads(two_wafers):
    lines = parse(two_wafers).findall(".//svg:g[@id='links']/svg:polyline", NS)
    assert any(line.get("marker-end") for line in lines)


@pytest.mark.parametrize("mode", COLOR_MODES)
def test_every_mode_is_well_formed_with_a_legend(one_wafer, mode):
    root = parse(one_wafer, mode)
    legend = root.find(".//svg:g[@class='legend']", NS)
    assert legend.get("data-mode") == mode and legend.get("display") is None


def test_names_holding_markup_are_escaped(hostile):
    """The model name and a module path holding HTML come back out of the XML as plain text."""
    for mode in ("layer", "kind"):
        text = render(viz_data(hostile), ".svg", mode).decode()
        assert "<script" not in text and "<img" not in text
        root = ET.fromstring(text)  # still well-formed
        assert root.find("svg:title", NS).text.startswith(HOSTILE_MODEL)
    legend = root.findall(".//svg:g[@class='legend']/svg:text", NS)
    assert "mlp." + HOSTILE_MODULE.split(".")[-1] in [t.text for t in legend]  # the role, in kind mode


def test_same_artifact_same_bytes(defective):
    assert render(viz_data(defective), ".svg") == render(viz_data(defective), ".svg")


def test_wafer_scale_svg_stays_small():
    """800 regions and 9,000 defects on a 900,000-PE wafer: regions are rectangles, not PEs."""
    text = render_svg(build_scene(wafer_scale_data(columns=40, rows=20, defects=9000)))
    root = ET.fromstring(text)
    assert len(root.findall(".//svg:rect[@class='region']", NS)) == 800
    assert len(text) < 600_000
