"""Placement pictures of the acceptance cases, as PNGs (and the 8B report page), into one directory.

    .venv/bin/python bench/viz.py [--out bench/pictures] [--only 8b-wse3] [--html]

Each case compiles (the Llama-3.1 presets size-only, on the meta device), then draws its placement
coloured by layer; the 8B case is also drawn as a stage-time heat map. Render times are printed
per picture (medians of three renders; compile times are not part of them).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import compiler
from compiler.modelspec import resolve_model
from compiler.viz import VizData, render

CASES = {
    "llama-tiny-toy": dict(model="examples/llama_tiny.py:model", target="toy"),
    "llama-8b-wse3": dict(model="hf:llama-3.1-8b", target="wse3", wafers=1),
    # As few wafers as it fits on: four with the current placer (the table prints the count).
    "llama-70b-wse3": dict(model="hf:llama-3.1-70b", target="wse3", wafers=None),
    "llama-8b-wse3-1pct-defects": dict(model="hf:llama-3.1-8b", target="wse3", wafers=1,
                                       defect_rate=0.01, seed=1),
}
EXTRA_MODES = {"llama-8b-wse3": ["stage-time"]}


def compile_case(spec: dict):
    options = {k: v for k, v in spec.items() if k != "model"}
    if spec["model"].startswith("hf:"):
        return compiler.compile(spec["model"], **options)
    model = resolve_model(spec["model"])
    return compiler.compile(model.model, model.args, model.kwargs, **options)


def draw(data: VizData, path: Path, mode: str) -> float:
    """Write the picture; the median seconds of three renders."""
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        content = render(data, path.suffix, mode)
        seconds.append(time.perf_counter() - start)
    path.write_bytes(content)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "pictures")
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    parser.add_argument("--html", action="store_true", help="also write NAME.html report pages")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| picture | kernels | wafers | render s (median of 3) | size KB |")
    print("|---|---|---|---|---|")
    for name in args.only or CASES:
        cm = compile_case(CASES[name])
        data = VizData.from_artifact(cm.artifact)
        jobs = [(f"{name}.png", "layer")] + [(f"{name}-{m}.png", m) for m in EXTRA_MODES.get(name, [])]
        jobs += [(f"{name}.html", "layer")] if args.html else []
        for file, mode in jobs:
            seconds = draw(data, args.out / file, mode)
            print(f"| {file} | {len(data.placement['regions'])} | {cm.report['wafers_used']} | {seconds:.2f} | "
                  f"{(args.out / file).stat().st_size / 1024:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
