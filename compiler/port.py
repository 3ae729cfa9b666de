"""Port a model module by module: what compiles, what does not, where and why.

    report = port_model("hf:path/to/dir")             # or "hf:PRESET", "file.py:NAME"
    report.ported, report.modules[0].stages, report.to_markdown()

Requires: a model spec as `waferc compile` takes it (`.pt2` programs have no modules to port), built
on the CPU: an `hf:` model from its config with random weights drawn from `seed`, or with the
directory's safetensors weights (compiler/weights.py); a `file.py:NAME` model as the file builds it.
Ensures: one forward pass on the example inputs records, for each distinct module type, the real
arguments of the first instance called; each type is then exported, lowered, placed and simulated on
its own, and the whole model last. A row per module type says which stages passed, how far the
simulated output is from eager, and for a failure the unsupported op(s) (all of them, not only the
first) with the module path in the whole model and the model's source file:line. A type that is
never called, returns no tensors, or has no ops left after lowering (dropout in eval, rotary tables
folded to constants) still gets a row, its remaining stages skipped. Every failure is recorded, never
raised: one module's failure does not stop the others. Same model and seed give the same report
(placement search is bounded by deterministic work, and nothing records the time). Other instances
of a type (other shapes) are exercised only inside the whole model's row.

How a module is cut out: its call is replayed with the recorded arguments. Float tensors become the
module's inputs; integer and bool tensors that are not the model's own inputs (position ids, cache
positions, masks: the compiler folds them in the whole model) and non-tensor arguments are frozen
into the module, and the outputs are flattened to their tensors.
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils import _pytree as pytree

from compiler import hf, weights
from compiler.api import DEFAULT_MAX_CONTEXT, resolve_target
from compiler.modelspec import HF_PREFIX, ModelSpecError, resolve_model
from compiler.presets import CONFIG_FILE
from ir.errors import CompilerError, SourceLoc, Span, UnsupportedOpError
from ir.target import Target

STAGES = ("export", "lower", "place", "simulate")
OK, FAILED, SKIPPED, NOT_RUN = "ok", "failed", "skipped", "not run"
# CP-SAT deterministic seconds per placement: enough to place, not to polish (a port asks whether
# a module places; `waferc compile` searches for the best layout).
PLACEMENT_WORK = 0.01
PLACEMENT_TIME_LIMIT_S = 120.0  # wall-clock safety net only
DEFAULT_SEQ = 8                 # tokens of an hf: model's example input: attention sees a real sequence
DEFAULT_MAX_WEIGHT_BYTES = 2 * 10**9  # what port builds and simulates on this machine
# Largest |simulated - eager| accepted, relative to max(1, largest |eager|), by output dtype.
_TOLERANCE = {"float32": 1e-4, "float64": 1e-4, "float16": 1e-2, "bfloat16": 3e-2}
_CONTAINERS = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.ParameterList, torch.nn.ParameterDict)
_INNER = "inner"  # the attribute the cut-out module hangs from in its wrapper
_ATEN_NAME = re.compile(r"\baten\.[\w.]+\w")
# Frames of torch and of waferc itself are not the model's source.
_LIBRARY_DIRS = (str(Path(torch.__file__).parent) + os.sep, str(Path(__file__).parent) + os.sep)
Progress = Callable[[str], None]


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class Failure:
    """Why a stage failed: the op (for an unsupported one), where in the model, and the message."""

    stage: str
    message: str
    op: str = ""
    module: str = ""   # path in the whole model, "" for the top
    file: str = ""
    line: int = 0
    source: str = ""   # the source line, stripped
    hint: str = ""

    @property
    def cause(self) -> tuple:
        """What failed and at which source line, in whichever module (instance) it is met."""
        return (self.stage, self.op or self.message, self.file, self.line)

    @property
    def key(self) -> tuple:
        """The same failure: the same cause in the same module."""
        return (*self.cause, self.module)

    @property
    def what(self) -> str:
        return f"unsupported op {self.op}" if self.op else self.message

    @property
    def source_place(self) -> str:
        return f"{self.file}:{self.line}" if self.file else "<unknown source>"


@dataclass
class ModuleResult:
    """One module type: the instance ported, how many there are, and how far it got."""

    type: str
    path: str                     # the instance ported ("" for the whole model)
    instances: int
    stages: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STAGES, NOT_RUN))
    max_error: float | None = None
    tolerance: float | None = None
    note: str = ""
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s in (OK, SKIPPED) for s in self.stages.values())

    @property
    def failed_stage(self) -> str | None:
        return next((s for s, v in self.stages.items() if v == FAILED), None)

    def to_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class PortReport:
    model: str          # the spec as given
    name: str
    architecture: str
    weights: str        # "random (seed 0)" or what was loaded
    target: str
    fabric: tuple[int, int]
    seed: int
    modules: list[ModuleResult]   # module types in the order the forward pass first calls them
    whole: ModuleResult

    @property
    def ported(self) -> bool:
        return self.whole.ok

    @property
    def rows(self) -> list[ModuleResult]:
        return [*self.modules, self.whole]

    def to_json(self) -> dict:
        return {
            "model": self.model, "name": self.name, "architecture": self.architecture,
            "weights": self.weights, "target": self.target, "fabric": list(self.fabric),
            "seed": self.seed, "ported": self.ported,
            "module_types_ok": sum(r.ok for r in self.modules), "module_types": len(self.modules),
            "modules": [r.to_json() for r in self.modules], "whole_model": self.whole.to_json(),
        }

    def to_markdown(self) -> str:
        verdict = "yes" if self.ported else f"**no** (fails at {self.whole.failed_stage or 'a stage'})"
        lines = [f"# Port report: {self.name}", "",
                 f"Model `{self.model}` ({self.architecture}); weights: {self.weights}; target "
                 f"{self.target} {self.fabric[0]}x{self.fabric[1]}; seed {self.seed}.", "",
                 f"Whole model ported: {verdict}. Module types ported: "
                 f"{sum(r.ok for r in self.modules)} of {len(self.modules)}.", "",
                 *_markdown_table(self), *_markdown_failures(self)]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PortOptions:
    target: Target
    seed: int = 0
    wafers: int | None = None
    max_context: int | None = None


# ---------------------------------------------------------------- porting


def port_model(spec: str, *, target: str | Path | Target = "toy", fabric_dims=None, wafers=None,
               seed: int = 0, seq: int = DEFAULT_SEQ, max_weight_bytes: int = DEFAULT_MAX_WEIGHT_BYTES,
               progress: Progress | None = None) -> PortReport:
    """Build the model `spec` names (on the CPU) and port it; a spec that names no buildable model
    raises a `CompilerError`, but nothing that goes wrong while porting does. `progress` is told
    each module type as its port starts."""
    tgt = resolve_target(target, fabric_dims)
    built = build_port_model(spec, seed=seed, seq=seq, max_weight_bytes=max_weight_bytes)
    return port_module(built.module, built.args, built.kwargs, target=tgt, wafers=wafers, seed=seed,
                       model=spec, name=built.name, architecture=built.architecture,
                       weights=built.weights, progress=progress)


def port_module(module: torch.nn.Module, args: tuple, kwargs: dict | None = None, *,
                target: str | Path | Target = "toy", fabric_dims=None, wafers=None, seed: int = 0,
                model: str = "", name: str = "", architecture: str = "",
                weights: str = "as given", progress: Progress | None = None) -> PortReport:
    """Port an nn.Module built on the CPU, called as `module(*args, **kwargs)`."""
    tgt = resolve_target(target, fabric_dims)
    opts = PortOptions(tgt, seed, wafers, _default_context(module))
    root, calls = record_calls(module, tuple(args), dict(kwargs or {}))
    results = []
    for call in [*calls, root]:
        if progress is not None:
            progress(call.type)
        results.append(port_call(call, opts))
    arch = architecture or type(module).__name__
    return PortReport(model or arch, name or arch, arch, weights, tgt.name, tgt.fabric, seed,
                      results[:-1], results[-1])


def _default_context(model: torch.nn.Module) -> int | None:
    """As `compiler.compile` does: the model's own maximum context, up to the default."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(DEFAULT_MAX_CONTEXT, limit) if isinstance(limit, int) else None


# ---------------------------------------------------------------- building the model


@dataclass
class PortModel:
    module: torch.nn.Module
    args: tuple
    kwargs: dict
    name: str
    architecture: str
    weights: str


def build_port_model(spec: str, *, seed: int = 0, seq: int = DEFAULT_SEQ,
                     max_weight_bytes: int = DEFAULT_MAX_WEIGHT_BYTES) -> PortModel:
    """The model `spec` names, on the CPU with real numbers (an `hf:` model with its directory's
    safetensors weights, or random ones drawn from `seed`)."""
    if spec.startswith(HF_PREFIX):
        return _build_hf(spec.removeprefix(HF_PREFIX), spec, seed, seq, max_weight_bytes)
    if spec.endswith(".pt2"):
        raise ModelSpecError(f"'{spec}' is an exported program: it has no modules to port one by one",
                             hint="port the nn.Module it was exported from (FILE.py:NAME), or "
                                  f"`waferc compile {spec}` to compile it whole")
    resolved = resolve_model(spec)
    stem = Path(spec.rpartition(":")[0]).stem
    return PortModel(resolved.model, resolved.args, resolved.kwargs, f"{stem}-{resolved.name}",
                     type(resolved.model).__name__, "as the file builds them")


def _build_hf(name_or_path: str, spec: str, seed: int, seq: int, max_weight_bytes: int) -> PortModel:
    source = hf.locate_config(name_or_path)
    directory = source.config_file.parent
    checkpoint = weights.find_checkpoint(directory)  # fail on pickles or a missing shard before building
    _check_size(directory, spec, max_weight_bytes)
    module, args, kwargs = hf.build_hf_model(directory, device="cpu", seed=seed, seq=seq)
    loaded = weights.load_weights(module, checkpoint) if checkpoint else None
    described = loaded.describe() if loaded else f"random (seed {seed})"
    return PortModel(module, args, kwargs, source.name, type(module).__name__, described)


def _check_size(directory: Path, spec: str, max_weight_bytes: int) -> None:
    """Refuse, before allocating them, weights too big to build and simulate on this machine."""
    meta_model, _, _ = hf.build_hf_model(directory, device="meta")
    tensors = {id(t): t for t in meta_model.state_dict(keep_vars=True).values()}.values()
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    if nbytes > max_weight_bytes:
        params = sum(t.numel() for t in tensors)
        raise CompilerError(
            f"{spec} has {params / 1e9:.3g} billion parameters ({nbytes / 1e9:.3g} GB): too big to "
            "port, which builds and simulates the model on this machine "
            f"(limit {max_weight_bytes / 1e9:.3g} GB)",
            hint="port a smaller config of the same architecture (hf:DIR), raise --max-weight-gb, or "
                 f"compile it size-only with `waferc compile {spec}`")


# ---------------------------------------------------------------- recording the calls


@dataclass
class ModuleCall:
    """The first call of one module type, replayable on its own."""

    type: str
    path: str
    module: torch.nn.Module
    instances: int
    leaves: list | None = None        # the call's (args, kwargs) flattened; tensors cloned
    spec: pytree.TreeSpec | None = None
    live: list[int] = field(default_factory=list)  # indices of the leaves that become inputs
    tensor_outputs: int | None = None  # how many tensors the call returned

    @property
    def called(self) -> bool:
        return self.leaves is not None

    def wrapper(self) -> "CallWith":
        frozen = [None if i in self.live else leaf for i, leaf in enumerate(self.leaves)]
        return CallWith(self.module, self.spec, frozen, self.live)

    def inputs(self) -> tuple[torch.Tensor, ...]:
        return tuple(self.leaves[i] for i in self.live)


class CallWith(torch.nn.Module):
    """`inner` called with the recorded arguments, the live ones taken from `forward`'s; returns the
    output's tensors as a flat tuple."""

    def __init__(self, inner: torch.nn.Module, spec: pytree.TreeSpec, frozen: list, live: list[int]):
        super().__init__()
        self.inner = inner
        self.spec, self.frozen, self.live = spec, frozen, live

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        leaves = list(self.frozen)
        for index, tensor in zip(self.live, inputs):
            leaves[index] = tensor
        args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return _tensor_leaves(self.inner(*args, **kwargs))


def record_calls(model: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[ModuleCall, list[ModuleCall]]:
    """Run the model once; the whole model's call, and one call per submodule type (first-call
    order, then the types never called)."""
    if _is_hf_model(model):
        kwargs = {"use_cache": False, **kwargs}  # no KV cache object threading through the modules
    calls = _calls_by_type(model)
    root = ModuleCall(type(model).__name__, "", model, 1)
    order: list[ModuleCall] = []
    recorder = _Recorder(root, calls, order)
    handles = [m.register_forward_pre_hook(recorder.before(path), with_kwargs=True)
               for path, m in model.named_modules()]
    handles += [m.register_forward_hook(recorder.after, with_kwargs=True) for _, m in model.named_modules()]
    try:
        with torch.no_grad():
            model.eval()(*args, **kwargs)
    except Exception as e:  # the user's model must run on its own example inputs
        raise CompilerError(f"the model's forward pass on its example inputs raised "
                            f"{type(e).__name__}: {_first_line(e)}") from None
    finally:
        for handle in handles:
            handle.remove()
    never_called = [c for c in calls.values() if not c.called]
    return root, order + never_called


def _calls_by_type(model: torch.nn.Module) -> dict[type, ModuleCall]:
    calls: dict[type, ModuleCall] = {}
    for path, m in model.named_modules():
        if not path or isinstance(m, _CONTAINERS):
            continue
        if type(m) in calls:
            calls[type(m)].instances += 1
        else:
            calls[type(m)] = ModuleCall(type(m).__name__, path, m, 1)
    _disambiguate(list(calls.values()))
    return calls


def _disambiguate(calls: list[ModuleCall]) -> None:
    """Two classes of one name (from different files) get their module's name too."""
    names = [c.type for c in calls]
    for c in calls:
        if names.count(c.type) > 1:
            c.type = f"{type(c.module).__module__}.{type(c.module).__qualname__}"


class _Recorder:
    """The forward hooks: keep the first call of each type (and of the whole model)."""

    def __init__(self, root: ModuleCall, calls: dict[type, ModuleCall], order: list[ModuleCall]):
        self.root, self.calls, self.order = root, calls, order
        self.model_inputs: set[int] = set()

    def _call_of(self, module: torch.nn.Module) -> ModuleCall | None:
        return self.root if module is self.root.module else self.calls.get(type(module))

    def before(self, path: str) -> Callable:
        def hook(m, args, kwargs):
            call = self._call_of(m)
            if call is None or call.called:
                return
            if call is not self.root:  # the first instance called, not the first declared
                call.path, call.module = path, m
            leaves, call.spec = pytree.tree_flatten((args, kwargs))
            if call is self.root:
                self.model_inputs = {id(x) for x in leaves if isinstance(x, torch.Tensor)}
            call.live = [i for i, x in enumerate(leaves) if self._is_input(x, call)]
            call.leaves = [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in leaves]
            if call is not self.root:
                self.order.append(call)
        return hook

    def _is_input(self, leaf, call: ModuleCall) -> bool:
        if not isinstance(leaf, torch.Tensor):
            return False
        return call is self.root or leaf.is_floating_point() or id(leaf) in self.model_inputs

    def after(self, m: torch.nn.Module, args, kwargs, output) -> None:
        call = self._call_of(m)
        if call is not None and call.module is m and call.called and call.tensor_outputs is None:
            call.tensor_outputs = len(_tensor_leaves(output))


def _tensor_leaves(tree) -> tuple[torch.Tensor, ...]:
    return tuple(x for x in pytree.tree_leaves(tree) if isinstance(x, torch.Tensor))


def _is_hf_model(model: torch.nn.Module) -> bool:
    transformers = sys.modules.get("transformers")  # an HF model means it is imported already
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


# ---------------------------------------------------------------- the stages of one module


class _StageFailed(Exception):
    """Ends a module's port after its failure has been recorded."""


class _Stages:
    """Runs one module's stages in order, recording each one's outcome in its ModuleResult."""

    def __init__(self, call: ModuleCall):
        self.call = call
        self.result = ModuleResult(call.type, call.path, call.instances)

    def run(self, stage: str, step: Callable, *args):
        try:
            value = step(*args)
        except _Failures as e:
            self._fail(stage, e.failures)
        except CompilerError as e:
            self._fail(stage, [_failure(stage, e, self.call.path)])
        except Exception as e:  # a bug in waferc on this module must not stop the others
            self._fail(stage, [Failure(stage, f"internal error: {type(e).__name__}: {_first_line(e)}",
                                       module=self.call.path)])
        self.result.stages[stage] = OK
        return value

    def _fail(self, stage: str, failures: list[Failure]):
        self.result.stages[stage] = FAILED
        self.result.failures.extend(failures)
        raise _StageFailed

    def skip_rest(self, note: str) -> None:
        self.result.note = note
        for stage, status in self.result.stages.items():
            if status == NOT_RUN:
                self.result.stages[stage] = SKIPPED


class _Failures(Exception):
    def __init__(self, failures: list[Failure]):
        super().__init__(failures[0].message)
        self.failures = failures


def port_call(call: ModuleCall, opts: PortOptions) -> ModuleResult:
    """Export, lower, place and simulate one recorded call; every outcome lands in the result."""
    stages = _Stages(call)
    if not call.called:
        stages.skip_rest("not called in the forward pass")
    elif not call.tensor_outputs:
        stages.skip_rest("returns no tensors")
    else:
        try:
            _run_stages(stages, call, opts)
        except _StageFailed:
            pass
    return stages.result


def _run_stages(stages: _Stages, call: ModuleCall, opts: PortOptions) -> None:
    captured = stages.run("export", _export, call)
    lowered = stages.run("lower", _lower, captured, call)
    if not lowered.graph.ops:
        stages.skip_rest(_nothing_to_place(lowered.graph))
        return
    compiled = stages.run("place", _place, lowered, call, opts)
    error, tolerance = stages.run("simulate", _simulate, compiled, lowered, captured, opts.target)
    stages.result.max_error, stages.result.tolerance = error, tolerance


def _export(call: ModuleCall):
    from compiler import frontend

    try:
        return frontend.capture(call.wrapper(), call.inputs())
    except CompilerError as e:
        raise _Failures([_export_failure(e, call)]) from None


def _export_failure(e: CompilerError, call: ModuleCall) -> Failure:
    """torch.export's errors carry no location: the deepest frame of the model's own code in the
    traceback gives the file:line, and the deepest module whose forward is running, the path."""
    failure = _failure("export", e, call.path)
    original = e.__cause__ or e.__context__
    if original is None or failure.file:
        return failure
    paths = {id(m): p for p, m in call.module.named_modules()}
    where, module = None, ""
    for frame, line in traceback.walk_tb(original.__traceback__):
        file = frame.f_code.co_filename
        if not file.startswith(_LIBRARY_DIRS):
            where = (file, line)
        module = paths.get(id(frame.f_locals.get("self")), module)
    if where is None:
        return failure
    path = ".".join(p for p in (call.path, module) if p)
    return _replace(failure, module=path, file=where[0], line=where[1],
                    source=SourceLoc(path, *where).excerpt().strip())


def _lower(captured, call: ModuleCall):
    from compiler import frontend

    try:
        return frontend.lower(captured)
    except UnsupportedOpError as e:
        # Lowering stops at the first unsupported op; a port lists them all.
        raised = _failure("lower", e, call.path)
        others = [f for f in _unsupported_ops(captured, call.path) if f.key != raised.key]
        raise _Failures([raised, *others]) from None


def _unsupported_ops(captured, path: str) -> list[Failure]:
    """Every node lowering would reach (not folded away) that has no lowering rule."""
    from compiler.frontend.capture import source_loc
    from compiler.frontend.fold import fold_constants
    from compiler.frontend.lower import ATEN_OPS

    exported = captured.exported
    folding = fold_constants(exported)
    failures = {}
    for node in exported.graph.nodes:
        if node.op != "call_function" or node in folding.folded or node.target in ATEN_OPS:
            continue
        loc = source_loc(node)
        op = _op_name(node.target)
        failure = _located(Failure("lower", f"unsupported operation {op}", op), loc, path)
        failures.setdefault(failure.key, failure)
    return list(failures.values())


def _op_name(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


def _nothing_to_place(graph) -> str:
    inputs = set(graph.inputs)
    if all(v in inputs for v in graph.outputs):
        return "identity in inference"
    return "folds to constants"


def _place(lowered, call: ModuleCall, opts: PortOptions):
    from compiler.pipeline import CompileOptions, compile_graph

    options = CompileOptions(opts.target, seed=opts.seed, time_limit_s=PLACEMENT_TIME_LIMIT_S,
                             wafers=opts.wafers, max_context=opts.max_context,
                             placement_work=PLACEMENT_WORK)
    return compile_graph(lowered.graph, options, model_name=call.type)


def _simulate(compiled, lowered, captured, target: Target) -> tuple[float, float]:
    """Run the placed program on the recorded inputs; its largest difference from eager."""
    from backends.sim import simulate
    from compiler import frontend

    inputs = dict(zip(lowered.input_names, captured.example_numpy()))
    outputs = simulate(compiled.program, lowered.params, inputs, target).outputs
    expected = frontend.eager_outputs(captured)
    # (error, tolerance) per output; the worst relative to its tolerance speaks for the module.
    errors = [_error(outputs[name], want) for name, want in zip(compiled.output_names, expected)]
    error, tolerance = max(errors, key=lambda e: e[0] / e[1] if e[1] else math.inf * e[0], default=(0.0, 0.0))
    if not error <= tolerance:  # also catches NaN
        raise CompilerError(f"simulated output differs from eager by {error:.3g} "
                            f"(tolerance {tolerance:.3g})")
    return error, tolerance


def _error(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """Largest |got - want| and the tolerance for it: by dtype, relative to the output's scale
    (integer outputs must be exact)."""
    got64, want64 = np.asarray(got).astype(np.float64), np.asarray(want).astype(np.float64)
    if not want64.size:
        return 0.0, 0.0
    scale = max(1.0, float(np.max(np.abs(want64))))
    return float(np.max(np.abs(got64 - want64))), _TOLERANCE.get(str(want.dtype), 0.0) * scale


# ---------------------------------------------------------------- failures, located


def _failure(stage: str, e: CompilerError, path: str) -> Failure:
    op = m[0] if (m := _ATEN_NAME.search(e.message)) and isinstance(e, UnsupportedOpError) else ""
    failure = Failure(stage, e.message.splitlines()[0] if e.message else type(e).__name__, op,
                      module=path, hint=e.hint)
    if isinstance(e.loc, SourceLoc):
        return _located(failure, e.loc, path)
    if isinstance(e.loc, Span):
        return _replace(failure, file=e.loc.file, line=e.loc.line, source=e.loc.text.strip())
    return failure


def _located(failure: Failure, loc: SourceLoc, path: str) -> Failure:
    module = model_path(path, loc.module)
    if loc.file.startswith(_LIBRARY_DIRS):  # an op of a torch module (nn.Linear) called from the wrapper
        return _replace(failure, module=module)
    return _replace(failure, module=module, file=loc.file, line=loc.line, source=loc.excerpt().strip())


def model_path(instance: str, traced: str) -> str:
    """A module path traced inside the wrapper (`inner.q_proj`) as a path in the whole model."""
    parts = traced.split(".") if traced else []
    if parts[:1] == [_INNER]:
        parts = parts[1:]
    return ".".join(p for p in (instance, ".".join(parts)) if p)


def _replace(failure: Failure, **changes) -> Failure:
    return Failure(**{**asdict(failure), **changes})


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


# ---------------------------------------------------------------- text forms


def stage_cell(status: str) -> str:
    return {OK: "ok", FAILED: "FAIL", SKIPPED: "skip", NOT_RUN: "-"}[status]


def error_cell(row: ModuleResult) -> str:
    return "-" if row.max_error is None else f"{row.max_error:.2g}"


def row_label(row: ModuleResult, whole: bool = False) -> str:
    return f"{row.type} (whole model)" if whole else row.type


def row_remark(row: ModuleResult) -> str:
    """The note, or the first failure in a few words: op, module path and file:line."""
    if not row.failures:
        return row.note
    first = row.failures[0]
    more = f" (+{len(row.failures) - 1} more)" if len(row.failures) > 1 else ""
    where = f" at {first.module or '<top>'} ({Path(first.file).name}:{first.line})" if first.file else ""
    return f"{first.op or first.message}{where}{more}"


def row_causes(row: ModuleResult) -> str:
    """The note, or what failed in a word or two (the unsupported ops, or the message), each once."""
    causes = dict.fromkeys(short_op_name(f.op) if f.op else f.message for f in row.failures)
    return ", ".join(causes) if causes else row.note


def short_op_name(op: str) -> str:
    """`aten.cumprod.default` as `cumprod`; other overloads keep their name (`div.Tensor_mode`)."""
    return op.removeprefix("aten.").removesuffix(".default")


@dataclass(frozen=True)
class FailureGroup:
    """One cause met in several places: the module paths it is in and the module types it breaks."""

    failure: Failure
    modules: tuple[str, ...]
    types: tuple[str, ...]


def distinct_failures(report: PortReport) -> list[FailureGroup]:
    """Each failure once (by what failed and at which source line), in the order first met. A
    module type that contains a failing one fails the same way: it is listed, not repeated."""
    groups: dict[tuple, tuple[Failure, dict, dict]] = {}
    for row in report.rows:
        for f in row.failures:
            _, modules, types = groups.setdefault(f.cause, (f, {}, {}))
            modules[f.module or "<top>"] = types[row.type] = None
    return [FailureGroup(f, tuple(m), tuple(t)) for f, m, t in groups.values()]


def _markdown_table(report: PortReport) -> list[str]:
    lines = ["| module type | instances | " + " | ".join(STAGES) + " | max error | notes |",
             "|---|---:|" + "---|" * len(STAGES) + "---:|---|"]
    for row in report.rows:
        cells = [f"`{row_label(row, row is report.whole)}`", str(row.instances),
                 *(stage_cell(row.stages[s]) for s in STAGES), error_cell(row), _md(row_remark(row))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _markdown_failures(report: PortReport) -> list[str]:
    groups = distinct_failures(report)
    if not groups:
        return []
    lines = ["", "## What does not port", ""]
    for group in groups:
        f = group.failure
        modules = ", ".join(f"`{m}`" for m in group.modules)
        what = f"unsupported op `{f.op}`" if f.op else _md(f.message)
        lines.append(f"- {f.stage}: {what}, in {modules} (`{f.source_place}`); "
                     f"fails {', '.join(f'`{t}`' for t in group.types)}")
        if f.source:
            lines.append(f"  `{_md(f.source)}`")
    return lines


def _md(text: str) -> str:
    return text.replace("|", "\\|")


# ---------------------------------------------------------------- writing


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text(path: Path, text: str) -> None:
    """Atomically: a fresh temporary file beside `path`, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(report: PortReport, out: Path) -> None:
    write_json(out / "port.json", report.to_json())
    write_text(out / "port.md", report.to_markdown())


# ---------------------------------------------------------------- many models: the support matrix


@dataclass
class MatrixRow:
    """One model directory: its port report, or why it could not be built."""

    directory: str          # relative to the matrix's root
    architecture: str
    report: PortReport | None = None
    build_error: str = ""

    @property
    def ported(self) -> bool:
        return self.report is not None and self.report.ported

    def cells(self) -> list[str]:
        if self.report is None:
            return ["FAIL", *(["-"] * len(STAGES))]
        return ["ok", *(stage_cell(self.report.whole.stages[s]) for s in STAGES)]

    def types_cell(self) -> str:
        if self.report is None:
            return "-"
        return f"{sum(r.ok for r in self.report.modules)}/{len(self.report.modules)}"

    def to_json(self) -> dict:
        return {"directory": self.directory, "architecture": self.architecture, "ported": self.ported,
                "build_error": self.build_error,
                "report": self.report.to_json() if self.report else None}


@dataclass
class SupportMatrix:
    root: str
    rows: list[MatrixRow]

    @property
    def ported(self) -> bool:
        return all(r.ported for r in self.rows)

    def to_json(self) -> dict:
        return {"root": self.root, "stages": ["build", *STAGES], "ported": self.ported,
                "models": [r.to_json() for r in self.rows]}

    def to_markdown(self) -> str:
        header = ["model", "architecture", "build", *STAGES, "module types ok", "notes"]
        lines = [f"# Support matrix: {self.root}", "",
                 f"{sum(r.ported for r in self.rows)} of {len(self.rows)} models port whole.", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [f"`{row.directory}`", row.architecture, *row.cells(), row.types_cell(),
                     _md(matrix_note(row))]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def matrix_note(row: MatrixRow) -> str:
    """Why a model does not port: its build error, or each distinct failure with its source line."""
    if row.report is None:
        return row.build_error
    causes = [g.failure for g in distinct_failures(row.report)]
    return "; ".join(f"{short_op_name(f.op) if f.op else f.message}"
                     f"{f' at {Path(f.file).name}:{f.line}' if f.file else ''}" for f in causes)


def model_directories(root: Path) -> list[Path]:
    """Every directory under `root` (at any depth, hidden ones aside) holding a config.json."""
    found = sorted(p.parent for p in root.rglob(CONFIG_FILE)
                   if not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not found:
        raise CompilerError(f"no model directories (holding {CONFIG_FILE}) under '{root}'")
    return found


def port_all(root: str | Path, *, progress: Progress | None = None, **options) -> SupportMatrix:
    """Port every model directory under `root` (`options` as for `port_model`); one that cannot be
    built gets a row saying why."""
    root = Path(root)
    if not root.is_dir():
        raise CompilerError(f"'{root}' is not a directory")
    rows = []
    for directory in model_directories(root):
        relative = directory.relative_to(root).as_posix()
        told = (lambda what, where=relative: progress(f"{where}: {what}")) if progress else None
        rows.append(_matrix_row(directory, relative, told, options))
    return SupportMatrix(root.resolve().name, rows)


def _matrix_row(directory: Path, relative: str, progress: Progress | None, options: dict) -> MatrixRow:
    architecture = _architecture_of(directory)
    try:
        report = port_model(f"hf:{directory}", progress=progress, **options)
    except CompilerError as e:
        return MatrixRow(relative, architecture, build_error=e.message.splitlines()[0])
    return MatrixRow(relative, report.architecture, report)


def _architecture_of(directory: Path) -> str:
    """The architecture config.json names (before building: for a model that fails to build)."""
    try:
        raw = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "?"
    names = raw.get("architectures") if isinstance(raw, dict) else None
    if isinstance(names, list) and names:
        return str(names[0])
    return str(raw.get("model_type", "?")) if isinstance(raw, dict) else "?"


