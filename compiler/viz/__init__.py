"""Pictures of a placement: SVG, PNG and a self-contained HTML report, from an artifact's JSON.

    from compiler.viz import VizData, write_visualisation
    write_visualisation(VizData.from_artifact(artifact), "llama.png", color_by="stage-time")

Requires: an artifact's placement.json and report.json (compiler/pipeline.py writes them).
Ensures:  `write_visualisation` picks the format from the file suffix (.svg, .png, .html) and
          raises a `CompilerError` for any other; every format is drawn from one `Scene`.
"""
from __future__ import annotations

from pathlib import Path

from compiler.viz.scene import COLOR_MODES, Scene, VizData, build_scene
from ir.errors import CompilerError

FORMATS = (".svg", ".png", ".html")

__all__ = ["COLOR_MODES", "FORMATS", "Scene", "VizData", "build_scene", "render", "write_visualisation"]


def render(data: VizData, fmt: str, color_by: str = "layer", compile_seconds: dict | None = None) -> bytes:
    """The picture of `data` in format `fmt` (".svg", ".png" or ".html") as bytes."""
    if fmt == ".svg":
        from compiler.viz.svg import render_svg
        return render_svg(build_scene(data, color_by)).encode()
    if fmt == ".png":
        from compiler.viz.png import render_png  # Pillow is needed for PNG only
        return render_png(build_scene(data, color_by))
    if fmt == ".html":
        from compiler.viz.html import render_html
        return render_html(data, color_by, compile_seconds).encode()
    raise CompilerError(f"cannot draw a placement as '{fmt or 'a file without a suffix'}'",
                        hint=f"name the output file with one of: {', '.join(FORMATS)}")


def write_visualisation(data: VizData, path: str | Path, color_by: str = "layer",
                        compile_seconds: dict | None = None) -> Path:
    """Write the picture to `path`, in the format its suffix names; returns the path."""
    out = Path(path)
    content = render(data, out.suffix.lower(), color_by, compile_seconds)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(content)
    except OSError as e:
        raise CompilerError(f"cannot write '{out}': {e.strerror or e}") from None
    return out
