"""Colours: consecutive layers differ, a kernel kind shades every layer alike, heat ramps run low to high."""
from __future__ import annotations

import pytest

from compiler.viz import palette


def test_consecutive_layers_never_share_a_colour():
    for layer in range(100):
        assert palette.layer_color(layer, "linear") != palette.layer_color(layer + 1, "linear")


def test_layer_colours_are_stable_and_cycle():
    hues = len(palette.LAYER_HUES)
    assert palette.layer_color(3, "linear") == palette.layer_color(3 + hues, "linear") == palette.LAYER_HUES[3]


@pytest.mark.parametrize("kind", ["vector", "embedding"])
def test_a_kind_shades_every_layer_the_same_way(kind):
    """The same kernel kind is recognisable across layers: the same shade of each layer's hue."""
    for layer in range(len(palette.LAYER_HUES)):
        hue = palette.LAYER_HUES[layer]
        assert palette.layer_color(layer, kind) == palette.shade(hue, palette.KIND_SHADE[kind])
        assert palette.layer_color(layer, kind) != hue


def test_kernels_outside_layers_have_their_own_colour():
    assert palette.layer_color(None, "linear") == palette.NO_LAYER
    assert palette.NO_LAYER not in palette.LAYER_HUES


def test_role_colours_follow_first_appearance():
    colors = palette.role_colors(["q", "k", "q", "v"])
    assert list(colors) == ["q", "k", "v"]
    assert len(set(colors.values())) == 3
    assert palette.role_colors(["q", "k", "v"]) == colors


def test_heat_ramp_ends_and_clamps():
    assert palette.heat_color(0.0) == palette.VIRIDIS[0]
    assert palette.heat_color(1.0) == palette.VIRIDIS[-1]
    assert palette.heat_color(-3) == palette.VIRIDIS[0] and palette.heat_color(7) == palette.VIRIDIS[-1]


def test_heat_ramp_gets_brighter():
    brightness = [sum(palette.rgb(palette.heat_color(i / 20))) for i in range(21)]
    assert brightness[0] < brightness[10] < brightness[20]


@pytest.mark.parametrize("fill,ink", [("#ffffff", "#111111"), ("#000000", "#ffffff"),
                                      (palette.VIRIDIS[0], "#ffffff"), (palette.VIRIDIS[-1], "#111111")])
def test_text_colour_contrasts_with_the_fill(fill, ink):
    assert palette.text_color(fill) == ink


def test_mix_and_shade():
    assert palette.mix("#000000", "#ffffff", 0.5) == "#808080"
    assert palette.shade("#4080c0", 0) == "#4080c0"
    assert palette.shade("#4080c0", 1) == "#ffffff" and palette.shade("#4080c0", -1) == "#000000"
