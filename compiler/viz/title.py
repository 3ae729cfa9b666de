"""The title block: model, target, wafers, predicted tokens/s, the bottleneck, PEs and SRAM used.

Requires: a report.json and placement.json (as dicts); any figure the report lacks is left out.
"""
from __future__ import annotations

from compiler.viz.shapes import Text

TITLE_LEFT = 24
TITLE_TOP = 24


def title_block(model: str, placement: dict, report: dict, bottleneck: str) -> list[Text]:
    """Model, target and wafers; predicted tokens/s and the bottleneck; PEs, SRAM and defects."""
    target = placement.get("target", {}).get("name", "?")
    wafers = report.get("wafers_used", placement.get("wafers", 1))
    kernels = len(placement["regions"])
    head = f"{model} on {target}: {wafers} wafer{'s' if wafers != 1 else ''}, {kernels} kernels"
    if report.get("size_only"):
        head += " (size-only)"
    lines = [Text(TITLE_LEFT, TITLE_TOP + 12, head, 20, "#111111", bold=True),
             Text(TITLE_LEFT, TITLE_TOP + 38, _throughput_line(report, bottleneck), 13, "#222222")]
    detail = _detail_line(report)
    if detail:
        lines.append(Text(TITLE_LEFT, TITLE_TOP + 58, detail, 12, "#444444"))
    return lines


def _throughput_line(report: dict, bottleneck: str) -> str:
    parts = []
    if isinstance(report.get("sequential_tokens_per_second"), (int, float)):
        parts.append(f"predicted {report['sequential_tokens_per_second']:,.0f} tokens/s batch-1")
    if isinstance(report.get("pipeline_tokens_per_second"), (int, float)):
        parts.append(f"{report['pipeline_tokens_per_second']:,.0f} tokens/s with the pipeline full")
    cycles = report.get("bottleneck_cycles")
    parts.append(f"bottleneck {bottleneck}" + (f" ({cycles:,} cycles/pass)" if isinstance(cycles, int) else ""))
    return " · ".join(parts)


def format_bytes(count: float) -> str:
    """`16.78 GiB`, `774 KiB`, `512 B`: binary units, three significant digits."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:,.3g} {unit}" if count < 1000 * size else f"{count / size:,.0f} {unit}"
    return f"{count:,.0f} B"


def _detail_line(report: dict) -> str:
    parts = []
    if isinstance(report.get("pes_used"), int):
        parts.append(f"{report['pes_used']:,} PEs used")
    if isinstance(report.get("sram_used_bytes"), int):
        parts.append(f"{format_bytes(report['sram_used_bytes'])} SRAM used")
    defects = report.get("defects")
    if isinstance(defects, dict):
        parts.append(f"{defects.get('defects', 0):,} defective PEs, "
                     f"{sum(defects.get('retired_rows', [])):,} rows retired")
    return " · ".join(parts)
