"""The scene: one shape per kernel where placement.json puts it, labels that fit, paths, links, legends."""
from __future__ import annotations

import itertools
import json

import pytest

from compiler.artifact import Artifact
from compiler.viz import COLOR_MODES, VizData, build_scene
from compiler.viz import palette
from compiler.viz.shapes import Box, Text, text_width
from ir.errors import ArtifactError, CompilerError
from tests.viz.artifacts import placement_of, viz_data, wafer_scale_data


def test_one_region_per_kernel_in_placement_order(any_artifact):
    placement = placement_of(any_artifact)
    scene = build_scene(viz_data(any_artifact))
    assert [r.kernel for r in scene.regions] == [r["kernel"] for r in placement["regions"]]
    assert [r.index for r in scene.regions] == list(range(len(placement["regions"])))


def test_regions_sit_at_their_physical_boxes(any_artifact):
    for shape, region in zip(build_scene(viz_data(any_artifact)).regions, placement_of(any_artifact)["regions"]):
        box = region["physical"]
        assert (shape.wafer, shape.x, shape.y, shape.w, shape.h) == (region["wafer"], box["x"], box["y"],
                                                                     box["w"], box["h"])


def test_without_defects_the_physical_box_is_the_region(one_wafer):
    for region in placement_of(one_wafer)["regions"]:
        assert region["physical"] == {k: region[k] for k in ("x", "y", "w", "h")}


def test_defects_move_regions_off_defective_rows(defective):
    """The remapped boxes skip retired rows: a region spanning one is drawn taller than placed."""
    placement = placement_of(defective)
    retired = set(placement["remap"]["retired_rows"][0])
    assert retired and placement["defects"]
    for region in placement["regions"]:
        box = region["physical"]
        crossed = sum(1 for y in retired if box["y"] <= y < box["y"] + box["h"])
        assert box["h"] == region["h"] + crossed
        assert box["w"] >= region["w"] and box["x"] >= region["x"]


def test_defects_and_retired_rows_are_drawn(defective):
    placement = placement_of(defective)
    frame = build_scene(viz_data(defective)).wafers[0]
    assert sorted(frame.defects) == sorted((x, y) for _, x, y in placement["defects"])
    assert frame.retired_rows == tuple(placement["remap"]["retired_rows"][0])


def test_wafers_side_by_side_to_one_scale(two_wafers):
    scene = build_scene(viz_data(two_wafers))
    first, second = scene.wafers
    assert first.scale == second.scale and first.top == second.top
    assert second.left > first.right
    assert (first.width, first.height) == (80, 80)


def test_path_joins_consecutive_kernels_and_links_cross_wafers(two_wafers):
    scene = build_scene(viz_data(two_wafers))
    runs = [len(list(group)) for _, group in itertools.groupby(scene.regions, key=lambda r: r.wafer)]
    # A polyline per run of kernels on one wafer (a run of one kernel has nothing to join).
    assert [len(line.points) for line in scene.path] == [n for n in runs if n > 1]
    crossings = sum(1 for a, b in zip(scene.regions, scene.regions[1:]) if a.wafer != b.wafer)
    arrows = [line for line in scene.links if line.arrow]
    assert crossings == 1 and len(arrows) == 1
    (x0, _), (x1, _) = arrows[0].points
    assert x0 == scene.wafers[0].right and x1 == scene.wafers[1].left


def test_arrows_point_along_the_path(one_wafer):
    scene = build_scene(viz_data(one_wafer))
    steps = {((x0 + x1) / 2, (y0 + y1) / 2): (x1 - x0, y1 - y0)
             for line in scene.path for (x0, y0), (x1, y1) in zip(line.points, line.points[1:])}
    assert scene.path_arrows
    for arrow in scene.path_arrows:
        (tx, ty), (hx, hy) = arrow.points
        dx, dy = steps[(hx, hy)]  # the head sits halfway along a step ...
        assert arrow.arrow and (hx - tx) * dx + (hy - ty) * dy > 0  # ... and points the same way


def test_one_wafer_has_no_links(one_wafer):
    assert build_scene(viz_data(one_wafer)).links == []


def test_labels_fit_inside_their_regions(any_artifact):
    scene = build_scene(viz_data(any_artifact))
    frames = {w.index: w for w in scene.wafers}
    shapes = {r.index: r for r in scene.regions}
    assert scene.labels
    for label in scene.labels:
        region, frame = shapes[label.region], frames[shapes[label.region].wafer]
        along, across = region.w * frame.scale, region.h * frame.scale
        if label.rotate:
            along, across = across, along
        assert text_width(label.text, label.size) <= along and label.size <= across


def test_layer_labels_name_the_layer_and_role(one_wafer):
    texts = {t.text for t in build_scene(viz_data(one_wafer)).labels}
    assert any(t in texts for t in ("L0 up_proj", "up_proj", "L0"))


@pytest.mark.parametrize("mode", COLOR_MODES)
def test_every_colour_mode_fills_every_region(one_wafer, mode):
    scene = build_scene(viz_data(one_wafer), mode)
    assert all(r.fill.startswith("#") and len(r.fill) == 7 for r in scene.regions)
    assert any(isinstance(item, Text) and item.bold for item in scene.legend)


def test_layer_mode_colours_by_layer(one_wafer):
    scene = build_scene(viz_data(one_wafer), "layer")
    for shape in scene.regions:
        assert shape.fill == palette.layer_color(shape.info["layer"], shape.info["kind"])


def test_kind_mode_gives_a_role_one_colour_across_layers(one_wafer):
    scene = build_scene(viz_data(one_wafer), "kind")
    by_role = {}
    for shape in scene.regions:
        by_role.setdefault(shape.info["role"], set()).add(shape.fill)
    assert by_role["mlp.up_proj"] == by_role["mlp.up_proj"] and len(by_role["mlp.up_proj"]) == 1
    assert by_role["mlp.up_proj"] != by_role["mlp.down_proj"]


def test_stage_time_heat_map_makes_the_bottleneck_brightest(any_artifact):
    scene = build_scene(viz_data(any_artifact), "stage-time")
    slowest = max(scene.regions, key=lambda r: r.info["cycles_per_token"])
    assert slowest.fill == palette.VIRIDIS[-1]
    assert [r.kernel for r in scene.regions if r.bottleneck] == [scene.bottleneck]


def test_sram_heat_map_follows_bytes_per_pe(one_wafer):
    scene = build_scene(viz_data(one_wafer), "sram")
    fullest = max(scene.regions, key=lambda r: r.info["bytes_per_pe"])
    emptiest = min(scene.regions, key=lambda r: r.info["bytes_per_pe"])
    assert sum(palette.rgb(fullest.fill)) > sum(palette.rgb(emptiest.fill))


def test_bottleneck_is_outlined_and_named(one_wafer):
    scene = build_scene(viz_data(one_wafer))
    report = json.loads(one_wafer.files["report.json"])
    assert scene.bottleneck == report["bottleneck_kernel"]
    tags = [c.text for c in scene.callouts if isinstance(c, Text)]
    assert len(tags) == 1 and tags[0].startswith("bottleneck")
    assert f"bottleneck {scene.bottleneck} (" in " ".join(t.text for t in scene.title)


def test_bottleneck_tag_goes_inside_a_region_with_room():
    data = wafer_scale_data(columns=2, rows=2, defects=0)  # regions of 381 x 588 PEs
    scene = build_scene(data)
    region = next(r for r in scene.regions if r.bottleneck)
    box = next(c for c in scene.callouts if isinstance(c, Box))
    (left, top), (right, bottom) = (scene.wafers[0].to_px(region.x, region.y),
                                    scene.wafers[0].to_px(region.x + region.w, region.y + region.h))
    assert left <= box.x and box.x + box.w <= right and top <= box.y and box.y + box.h <= bottom
    assert region.kernel in next(c.text for c in scene.callouts if isinstance(c, Text))


def test_title_block_names_model_target_wafers_and_tokens_per_second(two_wafers):
    text = " ".join(t.text for t in build_scene(viz_data(two_wafers)).title)
    assert "tiny on toy: 2 wafers" in text and "tokens/s" in text and "bottleneck" in text


def test_legend_keys_only_the_marks_drawn(one_wafer, two_wafers, defective):
    def legend_text(artifact):
        return " ".join(i.text for i in build_scene(viz_data(artifact)).legend if isinstance(i, Text))
    assert "wafer-to-wafer" not in legend_text(one_wafer) and "defective" not in legend_text(one_wafer)
    assert "wafer-to-wafer" in legend_text(two_wafers)
    assert "defective PE" in legend_text(defective) and "retired row" in legend_text(defective)


def test_everything_lies_on_the_page(any_artifact):
    scene = build_scene(viz_data(any_artifact))
    boxes = [i for i in scene.legend + scene.callouts if isinstance(i, Box)]
    assert all(0 <= b.x and b.x + b.w <= scene.width and 0 <= b.y and b.y + b.h <= scene.height for b in boxes)
    assert all(w.right <= scene.width and w.bottom <= scene.height for w in scene.wafers)
    points = [p for line in scene.path + scene.links for p in line.points]
    assert all(0 <= x <= scene.width and 0 <= y <= scene.height for x, y in points)


def test_wafer_scale_scene_is_rectangles_not_pes():
    data = wafer_scale_data(columns=40, rows=20)
    scene = build_scene(data)
    assert len(scene.regions) == 800 and scene.wafers[0].width * scene.wafers[0].height > 890_000
    assert len(scene.path) == 1 and len(scene.path[0].points) == 800


def test_unknown_colour_mode_is_a_compiler_error(one_wafer):
    with pytest.raises(CompilerError, match="unknown colour mode 'rainbow'"):
        build_scene(viz_data(one_wafer), "rainbow")


@pytest.mark.parametrize("placement,message", [
    ({"regions": []}, "no placed regions"),
    ({"regions": [{"kernel": "a", "x": 0, "y": 0, "w": 2}]}, "region 0 needs"),
    ({"regions": [{"x": 0, "y": 0, "w": 2, "h": 1}]}, "region 0 needs"),
])
def test_malformed_placement_is_an_artifact_error(placement, message):
    artifact = Artifact({"placement.json": json.dumps(placement).encode(), "report.json": b"{}"})
    with pytest.raises(ArtifactError, match=message):
        VizData.from_artifact(artifact, "out")


def test_missing_report_is_an_artifact_error(one_wafer):
    artifact = Artifact({"placement.json": one_wafer.files["placement.json"]})
    with pytest.raises(ArtifactError, match="has no report.json"):
        VizData.from_artifact(artifact, "out")


def test_a_minimal_hand_made_placement_still_draws():
    """Only kernel names and rectangles: no target, no report figures, layers as strings."""
    placement = {"regions": [{"kernel": "fc0", "layer": "0", "x": 0, "y": 0, "w": 2, "h": 4},
                             {"kernel": "fc1", "layer": "1", "x": 2, "y": 0, "w": 1, "h": 2}]}
    artifact = Artifact({"placement.json": json.dumps(placement).encode(), "report.json": b"{}"})
    for mode in COLOR_MODES:
        scene = build_scene(VizData.from_artifact(artifact), mode)
        assert (scene.wafers[0].width, scene.wafers[0].height) == (3, 4) and len(scene.regions) == 2
