"""Artifacts for the visualisation tests, made by the real pipeline from small hand-built graphs.

`compile_artifact` returns a size-only artifact (placement.json, report.json, signature.json, the
target and the WKL program), so the pictures are drawn from exactly what `waferc compile` writes
(conftest.py makes the fixtures: one wafer, two wafers, a defective wafer, and a model whose name
and module paths hold HTML).
"""
from __future__ import annotations

import json

from compiler.artifact import Artifact
from compiler.pipeline import CompileOptions, compile_graph, placement_json, report_json
from compiler.viz import VizData
from ir.target import load_target, target_to_toml
from tests.builders import GraphBuilder

HOSTILE_MODEL = '<script>alert("model")</script>'
HOSTILE_MODULE = "model.layers.0.mlp.<img src=x onerror=alert(1)>"


def layered_graph(layers: int = 3, hostile: bool = False):
    """x -> a vector kernel -> per layer: up_proj (relu fused), down_proj -> lm_head."""
    b = GraphBuilder("m")
    h = b.op("relu", b.input("x", 1, 64), module="model.input_norm")
    for layer in range(layers):
        up_module = HOSTILE_MODULE if hostile and layer == 0 else f"model.layers.{layer}.mlp.up_proj"
        up = b.op("linear", h, b.param(f"model.layers.{layer}.mlp.up_proj.weight", 128, 64), module=up_module)
        act = b.op("relu", up, module=f"model.layers.{layer}.mlp.act")
        h = b.op("linear", act, b.param(f"model.layers.{layer}.mlp.down_proj.weight", 64, 128),
                 module=f"model.layers.{layer}.mlp.down_proj")
    return b.done(b.op("linear", h, b.param("lm_head.weight", 32, 64), module="lm_head"))


def compile_artifact(graph, fabric=None, model_name: str = "tiny", **options) -> Artifact:
    target = load_target("toy")
    if fabric:
        target = target.with_fabric(*fabric)
    compiled = compile_graph(graph, CompileOptions(target, time_limit_s=1.0, **options), model_name=model_name)
    signature = {"model": model_name, "inputs": [{"name": v.name, "type": str(v.type)} for v in graph.inputs],
                 "outputs": compiled.output_names, "out_spec": None, "size_only": True}
    return Artifact({
        "placement.json": _json(placement_json(compiled, target)),
        "report.json": _json(report_json(compiled, target, size_only=True, seconds={"place": 0.5})),
        "signature.json": _json(signature),
        "target.toml": target_to_toml(target).encode(),
        **{name: text.encode() for name, text in compiled.wkl_files.items()},
    })


def _json(data) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def viz_data(artifact: Artifact) -> VizData:
    return VizData.from_artifact(artifact)


def placement_of(artifact: Artifact) -> dict:
    return json.loads(artifact.files["placement.json"])


def wafer_scale_data(columns: int = 40, rows: int = 20, defects: int = 9000) -> VizData:
    """A synthetic wse3-sized placement: `columns` x `rows` regions tiling a 762 x 1176 wafer (one
    layer per column, like the 8B placement), plus `defects` scattered defective PEs."""
    width, height = 762, 1176
    w, h = width // columns, height // rows
    regions = [{"kernel": f"layers_{c}_k{r}", "kind": "linear" if r % 3 else "vector", "layer": c,
                "role": f"mlp.k{r}", "wafer": 0, "x": c * w, "y": r * h, "w": w, "h": h,
                "bytes_per_pe": 1000 + 37 * r, "cycles_per_token": 2000 + 13 * (c + r)}
               for c in range(columns) for r in range(rows)]
    placement = {"target": {"name": "wse3", "fabric_dims": [width, height], "sram_bytes_per_pe": 49152,
                            "reserved_bytes_per_pe": 8192},
                 "wafers": 1, "regions": regions, "routes": [],
                 "defects": [[0, (i * 7919) % width, (i * 104729) % height] for i in range(defects)]}
    report = {"bottleneck_kernel": regions[-1]["kernel"], "bottleneck_cycles": regions[-1]["cycles_per_token"]}
    return VizData(placement, report, "synthetic")
