"""Colours for the placement picture: a stable palette per layer, per kernel role, and heat maps.

Ensures:
- the same inputs always give the same colour (no randomness, no dependence on dict order);
- consecutive layers never share a hue (`LAYER_HUES` cycles, and has more than one entry);
- within a layer, the kernel kind shifts lightness only, so a layer stays one hue and a kind
  (a projection, a norm or the attention core) looks the same in every layer;
- heat colours run through a perceptually even ramp (viridis) from low to high;
- `text_color` picks black or white, whichever is readable on a fill.
"""
from __future__ import annotations

# Tableau 10 without its red (kept for the bottleneck) and grey (kept for kernels outside layers).
LAYER_HUES = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7")
NO_LAYER = "#6b7785"   # embedding, final norm, head: kernels outside the repeated layers
# Tableau 20, ordered so that roles met one after another (q, k, v, ...) differ strongly.
ROLE_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
               "#ff9da7", "#9c755f", "#bab0ac", "#a0cbe8", "#ffbe7d", "#8cd17d", "#86bcb6",
               "#f1ce63", "#d4a6c8", "#fabfd2", "#d7b5a6", "#79706e", "#499894")
# viridis at nine evenly spaced points; heat colours interpolate between them.
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962",
           "#addc30", "#fde725")
BOTTLENECK = "#d62728"
DEFECT = "#c00000"
PATH = "#262626"
LINK = "#d62728"
EMPTY_FABRIC = "#eef0f3"
WAFER_EDGE = "#59606b"

# How a kernel kind shades its layer's hue: mix with white (> 0) or black (< 0).
KIND_SHADE = {"linear": 0.0, "vector": 0.5, "embedding": -0.35}


def layer_color(layer: int | None, kind: str) -> str:
    """The fill of a kernel in `--color-by layer`: its layer's hue, shaded by its kind."""
    base = NO_LAYER if layer is None else LAYER_HUES[layer % len(LAYER_HUES)]
    return shade(base, KIND_SHADE.get(kind, 0.25))


def role_colors(roles: list[str]) -> dict[str, str]:
    """A colour per role, in order of first appearance (so a model's colours never change
    between compiles); past the palette's end colours repeat."""
    ordered = list(dict.fromkeys(roles))
    return {role: ROLE_COLORS[i % len(ROLE_COLORS)] for i, role in enumerate(ordered)}


def heat_color(fraction: float) -> str:
    """A colour on the viridis ramp for `fraction` in [0, 1] (clamped)."""
    t = min(1.0, max(0.0, fraction)) * (len(VIRIDIS) - 1)
    i = min(int(t), len(VIRIDIS) - 2)
    return mix(VIRIDIS[i], VIRIDIS[i + 1], t - i)


def shade(color: str, amount: float) -> str:
    """Lighter towards white for amount > 0, darker towards black for amount < 0."""
    return mix(color, "#ffffff", amount) if amount >= 0 else mix(color, "#000000", -amount)


def mix(a: str, b: str, t: float) -> str:
    """The colour a fraction `t` of the way from `a` to `b`."""
    ra, rb = rgb(a), rgb(b)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ra, rb))


def rgb(color: str) -> tuple[int, int, int]:
    """`#rrggbb` as three 0-255 integers."""
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def text_color(fill: str) -> str:
    """Black on light fills, white on dark ones (by relative luminance, WCAG's formula)."""
    return "#111111" if _luminance(fill) > 0.36 else "#ffffff"


def _luminance(color: str) -> float:
    def linear(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
