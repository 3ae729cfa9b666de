"""Stamp a stack of identical layers: trace two of them, repeat the second to the model's count.

    stack = find_layer_stack(model)                  # e.g. LayerStack("model.layers", 126)
    with first_layers(model, stack, TRACED):
        captured = capture(model, args, kwargs)      # torch.export sees two layers, not 126
    lowered = repeat_layers(lower(captured), stack)  # the IR of all 126

`torch.export` of a full-size model spends nearly all its time tracing layers that are the same
computation over and over (Llama-3.1-405B has 126). For a size-only model (every parameter on the
meta device) waferc traces the model with its layer stack cut to the first two layers and stamps
the second layer's IR once for each further layer, as the placer later stamps a layer's placement.

Requires: for `find_layer_stack`, an `nn.Module`; the stack is the model's one outermost
`nn.ModuleList` of at least three layers that have the same class, parameter shapes and plain
attributes (an attribute that only counts the layer, such as `layer_idx`, may differ).
For `repeat_layers`, a graph whose ops run in the order prefix, layer 0, layer 1, suffix, the
layer ops being those whose module path is under `{stack}.0` and `{stack}.1`.
Ensures: the graph the whole model would have lowered to, up to the names of values: layer k ≥ 2
is a copy of layer 1 with parameters `{stack}.k.*` and module paths `{stack}.k…`; it takes from
layer k-1 what layer 1 takes from layer 0, and shares every other input. When layers 0 and 1 are
not the same computation (an op, attribute, type, source line or edge differs), or a value of
layer 0 is used past layer 1, `repeat_layers` raises `NotRepeated` and the caller traces the whole
model instead: stamping is an optimisation, never a change in meaning.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from compiler.frontend.capture import Captured, capture
from compiler.frontend.lower import Lowered, lower
from ir.graph import Graph, NameGen, Op, Value

TRACED = 2  # layers traced: layer 1 shows how a layer takes its inputs from the one before it
_PLAIN = (bool, int, float, str, type(None), tuple)


class NotRepeated(Exception):
    """The traced layers are not copies of one another; trace the whole model."""


@dataclass(frozen=True)
class LayerStack:
    path: str   # the ModuleList's path, e.g. "model.layers"
    count: int  # layers in the whole model


# ---------------------------------------------------------------- the module side (torch)

def find_layer_stack(model: torch.nn.Module) -> LayerStack | None:
    """The stack to stamp, for a size-only model that has one; else None."""
    if not _size_only(model):
        return None
    stacks = [(name, m) for name, m in model.named_modules()
              if isinstance(m, torch.nn.ModuleList) and len(m) > TRACED and _identical_layers(m)]
    outermost = [(name, m) for name, m in stacks
                 if not any(name.startswith(other + ".") for other, _ in stacks)]
    if len(outermost) != 1:
        return None
    name, layers = outermost[0]
    return LayerStack(name, len(layers))


@contextmanager
def first_layers(model: torch.nn.Module, stack: LayerStack, keep: int) -> Iterator[None]:
    """`model` with only the first `keep` layers of `stack`, restored afterwards."""
    parent_path, _, attr = stack.path.rpartition(".")
    parent = model.get_submodule(parent_path)
    full = getattr(parent, attr)
    setattr(parent, attr, torch.nn.ModuleList(list(full)[:keep]))
    try:
        yield
    finally:
        setattr(parent, attr, full)


def _size_only(model: torch.nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return bool(tensors) and all(t.device.type == "meta" for t in tensors)


def _identical_layers(layers: torch.nn.ModuleList) -> bool:
    signatures = [_signature(layer) for layer in layers]
    if any(len(s) != len(signatures[0]) for s in signatures):
        return False
    counters = _layer_counters(signatures)
    plain = [_without(s, counters) for s in signatures]
    return all(p == plain[0] for p in plain)


def _signature(layer: torch.nn.Module) -> list[tuple]:
    """What must agree between two layers for them to trace to the same IR, module by module."""
    return [(name, type(m).__name__,
             [(p, tuple(t.shape), t.dtype) for p, t in m.named_parameters(recurse=False)],
             [(b, tuple(t.shape), t.dtype) for b, t in m.named_buffers(recurse=False)],
             {k: v for k, v in vars(m).items() if not k.startswith("_") and isinstance(v, _PLAIN)})
            for name, m in layer.named_modules()]


def _layer_counters(signatures: list[list[tuple]]) -> set[tuple[int, str]]:
    """(module, attribute) pairs that hold the layer's own index, as `layer_idx` does: 0, 1, 2, ..."""
    counting = list(range(len(signatures)))
    return {(i, key) for i, module in enumerate(signatures[0]) for key in module[4]
            if [s[i][4].get(key) for s in signatures] == counting}


def _without(signature: list[tuple], counters: set[tuple[int, str]]) -> list[tuple]:
    return [(*module[:4], {k: v for k, v in module[4].items() if (i, k) not in counters})
            for i, module in enumerate(signature)]


# ---------------------------------------------------------------- the IR side

@dataclass
class _Interface:
    twin: dict[Value, Value]  # each value of layer 0 -> the same value of layer 1
    own_params: set[Value]    # the params of layer 1 that are its own (each copy gets its own)


@dataclass
class _Layers:
    prefix: list[Op]
    first: list[Op]
    second: list[Op]
    suffix: list[Op]


def repeat_layers(lowered: Lowered, stack: LayerStack) -> Lowered:
    """`lowered` (traced with TRACED layers of `stack`) with all `stack.count` layers."""
    graph = lowered.graph
    parts = _split(graph, stack.path)
    interface = _match(parts, lowered.params, stack.path)
    stamper = _Stamper(graph, lowered.params, stack.path, interface)
    layers = [stamper.stamp(parts.second, k) for k in range(TRACED, stack.count)]
    last = stamper.values
    suffix = [_rewired(op, last) for op in parts.suffix]
    new_graph = Graph(graph.name, graph.inputs, _params_in_layer_order(graph.params, stamper, stack.path),
                      [*parts.prefix, *parts.first, *parts.second, *(op for ops in layers for op in ops),
                       *suffix],
                      [last.get(v, v) for v in graph.outputs])
    return dataclasses.replace(lowered, graph=new_graph, params=stamper.params)


def _layer_of(op: Op, stack: str) -> int | None:
    module = op.loc.module
    if not module.startswith(stack + "."):
        return None
    index = module[len(stack) + 1:].split(".", 1)[0]
    return int(index) if index.isdigit() else None


def _split(graph: Graph, stack: str) -> _Layers:
    """The ops as prefix, layer 0, layer 1, suffix; anything else in between is NotRepeated."""
    parts = _Layers([], [], [], [])
    order = [parts.prefix, parts.first, parts.second, parts.suffix]
    stage = 0
    for op in graph.ops:
        layer = _layer_of(op, stack)
        want = {None: 0 if stage == 0 else 3, 0: 1, 1: 2}.get(layer)
        if want is None or want < stage:
            raise NotRepeated(f"{op.opname} in {op.loc.module} is out of layer order")
        stage = want
        order[stage].append(op)
    if len(parts.first) != len(parts.second) or not parts.first:
        raise NotRepeated("the traced layers differ in length")
    return parts


def _match(parts: _Layers, params: dict, stack: str) -> _Interface:
    """Check that layer 1 is layer 0, op for op, and find how a layer takes its inputs."""
    twin = {a: b for x, y in zip(parts.first, parts.second) for a, b in zip(x.results, y.results)}
    interface = _Interface(twin, set())
    inputs: dict[Value, Value] = {}   # what layer 0 reads from outside -> what layer 1 reads there
    for x, y in zip(parts.first, parts.second):
        _same_op(x, y, stack)
        for a, b in zip(x.operands, y.operands):
            if twin.get(a) is b:
                continue                                   # inside the layer
            if b in twin:                                  # layer 1 reads layer 0: a is an input
                if a in twin or inputs.setdefault(a, b) is not b:
                    raise NotRepeated(f"{y.opname} in {y.loc.module} reads layer 0 unlike layer 0 reads its inputs")
            elif not _same_input(a, b, params, stack):
                raise NotRepeated(f"{y.opname} in {y.loc.module} reads {b.name} where layer 0 reads {a.name}")
            elif a is not b:
                interface.own_params.add(b)
    if len(set(inputs.values())) != len(inputs):
        raise NotRepeated("layer 1 reads one value of layer 0 where layer 0 reads two inputs")
    _check_layer_zero_stays_inside(parts, set(twin))
    return interface


def _same_op(x: Op, y: Op, stack: str) -> None:
    module = y.loc.module.replace(f"{stack}.1", f"{stack}.0", 1)
    if (x.opname, x.attrs, [r.type for r in x.results], x.loc.module, x.loc.file, x.loc.line) != \
            (y.opname, y.attrs, [r.type for r in y.results], module, y.loc.file, y.loc.line):
        raise NotRepeated(f"{x.opname} in {x.loc.module} and {y.opname} in {y.loc.module} differ")


def _same_input(a: Value, b: Value, params: dict, stack: str) -> bool:
    """Layer 0 reads `a` where layer 1 reads `b`: the same value, or each layer's own param."""
    if a is b:
        return True
    if a.type != b.type or a.name not in params or b.name not in params:
        return False
    if b.name.startswith(f"{stack}.1."):
        return a.name == f"{stack}.0." + b.name[len(stack) + 3:]
    return _same_data(params[a.name], params[b.name])  # e.g. each layer's folded rotary table


def _same_data(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _check_layer_zero_stays_inside(parts: _Layers, made_by_first: set[Value]) -> None:
    for op in parts.suffix:
        if any(v in made_by_first for v in op.operands):
            raise NotRepeated(f"{op.opname} in {op.loc.module} reads layer 0 directly")


class _Stamper:
    """Copies of layer 1, each reading the previous copy where layer 1 reads layer 0."""

    def __init__(self, graph: Graph, params: dict, stack: str, interface: _Interface):
        self.stack = stack
        self.interface = interface
        self.params = dict(params)
        self.copies: list[dict[Value, Value]] = []  # per stamped layer: layer 1's params -> its own
        self.names = NameGen({v.name for v in [*graph.inputs, *graph.params]} |
                             {r.name for op in graph.ops for r in op.results})
        self.values: dict[Value, Value] = {}  # layer 1's values -> the latest copy's

    def stamp(self, template: list[Op], k: int) -> list[Op]:
        previous = self.values
        current: dict[Value, Value] = {}
        self.copies.append({})
        copies = []
        for op in template:
            operands = [self._operand(v, k, previous, current) for v in op.operands]
            results = [Value(self.names.unique(f"{r.name}_l{k}"), r.type) for r in op.results]
            current.update(zip(op.results, results))
            loc = dataclasses.replace(op.loc, module=op.loc.module.replace(f"{self.stack}.1", f"{self.stack}.{k}", 1))
            copies.append(Op(op.opname, operands, results, dict(op.attrs), loc))
        self.values = current
        return copies

    def _operand(self, v: Value, k: int, previous: dict, current: dict) -> Value:
        if v in current:
            return current[v]
        twin = self.interface.twin.get(v)
        if twin is not None:                        # layer 1 reads it from layer 0
            return previous.get(twin, twin)
        if v in self.interface.own_params:
            return self._param_copy(v, k, current)
        return v                                    # shared: model inputs, prefix values

    def _param_copy(self, v: Value, k: int, current: dict) -> Value:
        own = f"{self.stack}.1."
        name = f"{self.stack}.{k}.{v.name[len(own):]}" if v.name.startswith(own) else f"{v.name}.l{k}"
        copy = Value(self.names.unique(name), v.type)
        self.params[copy.name] = self.params[v.name]
        self.copies[-1][v] = copy
        current[v] = copy
        return copy

def _rewired(op: Op, last: dict[Value, Value]) -> Op:
    return dataclasses.replace(op, operands=[last.get(v, v) for v in op.operands])


def _params_in_layer_order(params: list[Value], stamper: _Stamper, stack: str) -> list[Value]:
    """The params as a whole trace lists them: layer by layer right after layer 1's, the state-dict
    params `{stack}.1.*` in one run and folded constants in another."""
    named = f"{stack}.1."
    own = stamper.interface.own_params
    order = list(params)
    for kind in (lambda p: p.name.startswith(named), lambda p: not p.name.startswith(named)):
        ones = [p for p in order if p in own and kind(p)]
        if ones:
            at = order.index(ones[-1]) + 1
            order[at:at] = [layer[p] for layer in stamper.copies for p in ones]
    return order


# ---------------------------------------------------------------- capture with stamping

def capture_and_lower(model: torch.nn.Module, args: tuple, kwargs: dict,
                      phase: Callable[[str], None] = lambda name: None) -> tuple[Captured, Lowered]:
    """Capture and lower `model`, tracing only TRACED layers of its layer stack when it has one
    (a size-only model), and the whole model when stamping does not apply."""
    stack = find_layer_stack(model)
    if stack is not None:
        phase("export")
        with first_layers(model, stack, TRACED):
            captured = capture(model, args, kwargs)
        phase("lower to IR")
        try:
            return captured, repeat_layers(lower(captured), stack)
        except NotRepeated:
            pass  # e.g. layers that alternate between two kinds: trace them all
    phase("export")
    captured = capture(model, args, kwargs)
    phase("lower to IR")
    return captured, lower(captured)
