"""Reading one kernel's entry of placement.json: the few values the picture derives its look from.

Requires: a region dict as `compiler.pipeline.placement_json` writes it. The fields added for the
          visualisation (`physical`, `role`, `bytes_per_pe`) may be absent in older artifacts.
Ensures:  each accessor returns the field when present and a plain fallback otherwise (the region
          itself, the coarse kind, None for "unknown"); nothing is recomputed from other fields.
"""
from __future__ import annotations


def physical_box(region: dict) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the PEs a region occupies on its physical wafer; without a defect remap
    (or in an older artifact) that is its placed rectangle."""
    box = region.get("physical") or region
    return int(box["x"]), int(box["y"]), int(box["w"]), int(box["h"])


def layer_of(region: dict) -> int | None:
    """The model layer the kernel belongs to; None outside the repeated layers (or if unknown)."""
    layer = region.get("layer")
    try:
        return None if layer is None or isinstance(layer, bool) else int(layer)
    except (TypeError, ValueError):
        return None


def role_of(region: dict) -> str:
    """What the kernel does within its layer (`self_attn.q_proj`); its kind in older artifacts."""
    return str(region.get("role") or region.get("kind") or "kernel")


def usable_sram(placement: dict) -> int:
    """Bytes of a PE's SRAM that kernels may fill (the target's reserve excluded); 0 if unknown."""
    target = placement.get("target", {})
    return max(0, target.get("sram_bytes_per_pe", 0) - target.get("reserved_bytes_per_pe", 0))


def sram_fraction(region: dict, placement: dict) -> float | None:
    """How full each PE of the region is: bytes per PE over the usable SRAM; None if unknown."""
    per_pe, usable = region.get("bytes_per_pe"), usable_sram(placement)
    return per_pe / usable if isinstance(per_pe, (int, float)) and usable > 0 else None


def stage_cycles(region: dict) -> int | None:
    """The kernel's stage time: cycles per pass through it."""
    cycles = region.get("cycles_per_token")
    return cycles if isinstance(cycles, (int, float)) else None


def heat_range(placement: dict, color_by: str) -> tuple[float, float]:
    """The values at the two ends of the heat ramp. SRAM use runs from empty to full; stage time
    from the fastest to the slowest stage, so that the bottleneck is the brightest region even
    when the placer has balanced every stage to within a few percent."""
    if color_by == "sram":
        return 0.0, 1.0
    cycles = [c for r in placement["regions"] if (c := stage_cycles(r)) is not None]
    low, high = (min(cycles), max(cycles)) if cycles else (0, 1)
    return low, high if high > low else low + 1
