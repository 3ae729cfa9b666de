"""The Python API: `compile()` a model into an artifact, `load()` one back, call it like the model.

    cm = compiler.compile(model, (x,), target="toy")
    y = cm(x)                    # runs the WKL program on the simulator
    cm.save("build/mlp"); compiler.load("build/mlp")(x)

A CompiledModel is only its artifact: the same object results from compiling and from loading, and
running it parses the WKL text in the artifact, so what runs is exactly what was saved.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends.sim import simulate
from backends.wkl import parse_program
from compiler.artifact import Artifact, load_tensors, save_tensors
from compiler.pipeline import CompileOptions, compile_graph, placement_json, report_json
from ir.errors import CompilerError, SimulationError
from ir.target import Target, load_target, parse_target, target_to_toml
from passes.defects import DefectMap
from passes.quantize import parse_weight_dtype
from ir.text import print_graph


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    cycles: object  # backends.sim CycleReport
    max_abs_error: float | None = None


DEFAULT_MAX_CONTEXT = 8192


def compile(model, example_args=(), example_kwargs=None, *, target="toy", fabric_dims=None,
            wafers=None, max_context=None, batch=1, layout="throughput", defects=None, defect_rate=0.0,
            weight_dtype=None, seed=0, time_limit=10.0, progress=None, timings=False) -> "CompiledModel":
    """Compile an nn.Module (with example inputs), a saved torch.export `.pt2` file, or
    `"hf:PRESET"` / `"hf:PATH"` (a Hugging Face architecture from its config.json, size-only).

    max_context: tokens of KV cache each attention keeps resident; by default, for a Hugging Face
    decoder, 8192, or the model's `max_position_embeddings` when that is smaller (an encoder and
    a plain nn.Module keep none unless given one). defects: a file of defective PEs (`wafer x y`
    per line), or defect_rate: a random map of that density drawn from `seed`; the placement then
    uses a logical fabric remapped around them. weight_dtype: "fp16", "bf16", "fp8" or "int8" stores
    the weights of linear layers (and, for fp16/bf16, embeddings) in that type, fp8/int8 per output
    channel with an f32 scale (the simulator dequantises); None keeps the model's own. timings:
    record compile seconds per phase in report.json (they differ between runs, so artifacts are
    then no longer byte-identical).
    """
    from compiler import frontend  # torch is imported only when compiling

    tgt = resolve_target(target, fabric_dims)
    opts = CompileOptions(tgt, seed=seed, time_limit_s=time_limit, wafers=wafers, layout=layout,
                          defects=_defect_maps(defects, defect_rate, seed, tgt),
                          progress=progress, weight_dtype=parse_weight_dtype(weight_dtype))
    opts.phase("build model")
    name = _model_name(model)
    if isinstance(model, str) and model.startswith("hf:"):
        from compiler.hf import build_hf_model
        model, example_args, example_kwargs = build_hf_model(model[3:], batch=batch)
    opts.max_context = max_context if max_context is not None else _default_context(model)
    if isinstance(model, (str, Path)):
        opts.phase("export")
        captured = frontend.capture_pt2(Path(model))
        opts.phase("lower to IR")
        lowered = frontend.lower(captured)
    else:
        captured, lowered = frontend.capture_and_lower(model, tuple(example_args),
                                                       dict(example_kwargs or {}), opts.phase)
    compiled = compile_graph(lowered.graph, opts, model_name=name, params=lowered.params)
    opts.phase("run eager")
    expected = frontend.eager_outputs(captured)
    opts.phase("write artifact")
    artifact = _artifact(compiled, lowered, captured, expected, tgt, opts.phase_seconds if timings else None)
    opts.phase(None)
    cm = CompiledModel(artifact)
    cm.compile_seconds = dict(opts.phase_seconds)
    return cm


def _defect_maps(path, rate: float, seed: int, target: Target):
    """The defect map as a function of the wafer count (the placer may need more wafers)."""
    if path is not None and rate:
        raise CompilerError("give either defects (a file) or defect_rate, not both")
    if path is not None:
        return lambda wafers: DefectMap.from_file(path, target.fabric, wafers)
    if rate:
        return lambda wafers: DefectMap.random(rate, seed, target.fabric, wafers)
    return None


def _default_context(model) -> int | None:
    """HF decoders keep a KV cache for the default context (or their own maximum, if smaller).
    An encoder keeps none: its attention modules are not causal (`is_causal`, which HF sets on
    every attention), so they see the whole sequence in one pass and never meet its keys again.
    (A size-only compile traces one token, whose mask cannot tell the two apart.)"""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    causal = any(getattr(m, "is_causal", False) is True for m in model.modules())
    return min(DEFAULT_MAX_CONTEXT, limit) if causal else None


def resolve_target(target: str | Path | Target, fabric_dims=None) -> Target:
    tgt = target if isinstance(target, Target) else load_target(target)
    return tgt.with_fabric(*fabric_dims) if fabric_dims else tgt


def load(path) -> "CompiledModel":
    return CompiledModel(Artifact.read(Path(path)))


def _model_name(model) -> str:
    if isinstance(model, str) and model.startswith("hf:"):
        return Path(model[3:]).name
    return Path(model).stem if isinstance(model, (str, Path)) else type(model).__name__


def _artifact(compiled, lowered, captured, expected, target: Target, seconds: dict | None) -> Artifact:
    size_only = any(a is None for a in lowered.params.values())
    graph = compiled.graph
    signature = {
        "model": compiled.program.layout.model,
        "inputs": [{"name": v.name, "type": str(v.type)} for v in graph.inputs],
        "outputs": compiled.output_names,
        "out_spec": lowered.out_spec,
        "size_only": size_only,
    }
    files = {
        "model.ir": print_graph(graph).encode(),
        "placement.json": _json(placement_json(compiled, target)),
        "report.json": _json(report_json(compiled, target, size_only, seconds)),
        "signature.json": _json(signature),
        "target.toml": target_to_toml(target).encode(),
        **{name: text.encode() for name, text in compiled.wkl_files.items()},
    }
    if not size_only:
        files["weights.safetensors"] = save_tensors({p.name: compiled.params[p.name] for p in graph.params})
        files["inputs.safetensors"] = save_tensors(dict(zip(lowered.input_names, captured.example_numpy())))
        files["expected.safetensors"] = save_tensors(dict(zip(compiled.output_names, expected)))
    return Artifact(files)


def _json(data) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


class CompiledModel:
    """A compiled artifact that runs on the simulator and returns what the model returns."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.compile_seconds: dict[str, float] = {}  # per phase, when this object was compiled here
        self.signature = json.loads(artifact.files["signature.json"])
        self.report = json.loads(artifact.files["report.json"])
        self.target = parse_target(artifact.files["target.toml"].decode(), "target.toml")
        self.program = parse_program({k: v.decode() for k, v in artifact.files.items() if k.endswith(".wkl")})

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.signature["inputs"]]

    @property
    def size_only(self) -> bool:
        return self.signature["size_only"]

    def save(self, path) -> None:
        self.artifact.write(Path(path))

    def visualize(self, path, color_by: str = "layer") -> Path:
        """Draw the placement to `path`: .svg, .png or .html (the report page), by its suffix.
        color_by: "layer", "kind", "sram" (SRAM use per PE) or "stage-time"."""
        from compiler.viz import VizData, write_visualisation

        data = VizData.from_artifact(self.artifact)
        return write_visualisation(data, path, color_by, compile_seconds=self.compile_seconds or None)

    def _repr_svg_(self) -> str:
        """The placement picture, which Jupyter shows inline."""
        from compiler.viz import VizData, render

        return render(VizData.from_artifact(self.artifact), ".svg").decode()

    def run(self, inputs: dict[str, np.ndarray] | None = None) -> RunResult:
        """Simulate on `inputs` (by input name), or on the example inputs saved at compile time."""
        if self.size_only:
            raise SimulationError("this artifact was compiled size-only (no weights); it cannot be run",
                                  hint="compile the model with real weights to simulate it")
        default = inputs is None
        if default:
            inputs = load_tensors(self.artifact.files["inputs.safetensors"])
        params = load_tensors(self.artifact.files["weights.safetensors"])
        result = simulate(self.program, params, inputs, self.target)
        error = None
        if default:
            expected = load_tensors(self.artifact.files["expected.safetensors"])
            error = max((float(np.max(np.abs(result.outputs[k].astype(np.float64) - v.astype(np.float64))))
                         for k, v in expected.items() if v.size), default=0.0)
        return RunResult(result.outputs, result.cycles, error)

    def __call__(self, *args, **kwargs):
        import torch
        from torch.utils import _pytree

        inputs = self._bind(args, kwargs)
        outputs = self.run({k: v.detach().cpu().numpy() for k, v in inputs.items()}).outputs
        leaves = [torch.from_numpy(np.ascontiguousarray(outputs[n])) for n in self.signature["outputs"]]
        spec = self.signature["out_spec"]
        return _pytree.tree_unflatten(leaves, _pytree.treespec_loads(spec)) if spec else tuple(leaves)

    def _bind(self, args, kwargs) -> dict:
        names = self.input_names
        if len(args) > len(names):
            raise CompilerError(f"the compiled model takes {len(names)} tensor input(s) "
                                f"({', '.join(names)}), got {len(args)}")
        bound = dict(zip(names, args))
        bound.update({k: v for k, v in kwargs.items() if k in names})
        missing = [n for n in names if n not in bound]
        if missing:
            raise CompilerError(f"missing input(s): {', '.join(missing)}")
        return bound
