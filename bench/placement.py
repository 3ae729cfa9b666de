"""Placement at wafer scale: full-size Llama-3.1 models compiled size-only, a table of results.

    .venv/bin/python bench/placement.py [--runs 3] [--only 8b-wse3]

Each row compiles a bundled preset on the meta device (no weights) and reads the artifact's
report; times are medians over --runs compiles on this machine (noisy: quote medians, not minima).
"""
from __future__ import annotations

import argparse
import statistics
import time

import compiler

ROWS = {
    "8b-wse3": dict(model="hf:llama-3.1-8b", target="wse3", wafers=1),
    "70b-wse3x4": dict(model="hf:llama-3.1-70b", target="wse3", wafers=4),
    "405b-fp8-auto-wse3": dict(model="hf:llama-3.1-405b", target="wse3", wafers=None, weight_dtype="fp8"),
    "8b-wse3-0.1%": dict(model="hf:llama-3.1-8b", target="wse3", wafers=1, defect_rate=0.001),
    "8b-wse3-1%": dict(model="hf:llama-3.1-8b", target="wse3", wafers=1, defect_rate=0.01),
    "8b-wse2": dict(model="hf:llama-3.1-8b", target="wse2", wafers=None),
}


def run_row(spec: dict, runs: int) -> dict:
    reports, place_s, total_s = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        cm = compiler.compile(spec["model"], target=spec["target"], wafers=spec["wafers"],
                              defect_rate=spec.get("defect_rate", 0.0),
                              weight_dtype=spec.get("weight_dtype"), timings=True)
        total_s.append(time.perf_counter() - start)
        place_s.append(cm.compile_seconds.get("place", 0.0))
        reports.append(cm.report)
    r = reports[-1]
    return {"wafers": f"{r['wafers_used']} / {r['wafers_lower_bound']}",
            "ratio": r.get("bottleneck_ratio_to_ideal"), "hops": r["hop_distance_total"],
            "real_ratio": r["bottleneck_cycles"] / r["ideal_stage_cycles"] if r.get("ideal_stage_cycles") else None,
            "packing": r.get("bottleneck_ratio_to_ideal_real"),
            "place_s": statistics.median(place_s), "total_s": statistics.median(total_s),
            "tokens_s": r["sequential_tokens_per_second"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=sorted(ROWS), action="append")
    args = parser.parse_args()
    print(f"| case | wafers used / lower bound | bottleneck / ideal (compute-only) | real bottleneck / ideal "
          f"| real bottleneck / real ideal | total hops | place s | compile s (median of {args.runs}) "
          f"| predicted batch-1 tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.only or ROWS:
        row = run_row(ROWS[name], args.runs)
        ratio, real, packing = (f"{row[k]:.3f}" if row[k] else "-"
                                for k in ("ratio", "real_ratio", "packing"))
        print(f"| {name} | {row['wafers']} | {ratio} | {real} | {packing} | {row['hops']:,} | {row['place_s']:.2f} | "
              f"{row['total_s']:.1f} | {row['tokens_s']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
