"""Constant folding and causal-mask recognition on an exported FX graph.

Requires: an `ExportedProgram` whose graph signature says which placeholders are parameters,
buffers, constants and user inputs.
Ensures: a `Folding` naming every node that depends on no user input and no parameter (only on
constants, factories such as `arange`, and buffers): such nodes are computed here with torch on the
CPU and never lowered. Only the *frontier* (folded values that lowered nodes read) is evaluated and
kept. Buffers on the `meta` device give meta results, i.e. size-only constants.

Before the frontier is chosen, each `scaled_dot_product_attention` whose mask folds to a pattern
the IR's sdpa states by attributes is recorded in `sdpa_masks`, and lowering drops that mask
operand, so it is never materialised. The patterns, the same for every batch and head (`MaskPattern`):
* every key visible (an encoder's bidirectional mask, e.g. BERT without padding): no attribute;
* top-left causal, key j visible to query i iff j <= i: `causal=True`;
* a causal sliding window of W keys, j <= i and i - j < W (Mistral's): `causal=True, window=W`.
Any other mask stays a folded constant operand.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Number

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind
from torch.fx import Node

from compiler.frontend.capture import first_line, source_loc
from ir.errors import CompilerError

SDPA = torch.ops.aten.scaled_dot_product_attention.default
_FOLDABLE_INPUTS = (InputKind.BUFFER, InputKind.CONSTANT_TENSOR)


@dataclass(frozen=True)
class MaskPattern:
    """What a recognised sdpa mask allows: every key (not causal, no window), the causal keys, or
    the last `window` causal keys (key j visible to query i iff j <= i and i - j < window)."""

    causal: bool = False
    window: int | None = None


@dataclass
class Folding:
    folded: set[Node]       # computed at compile time, never lowered
    frontier: set[Node]     # folded nodes (buffer placeholders too) that lowered nodes read
    constants: dict[Node, torch.Tensor | Number]  # values of the frontier's call_function nodes
    sdpa_masks: dict[Node, MaskPattern]  # sdpa nodes whose mask operand is dropped for attributes

    @property
    def causal_sdpa(self) -> set[Node]:
        """sdpa nodes whose mask is the causal pattern (with or without a window)."""
        return {node for node, pattern in self.sdpa_masks.items() if pattern.causal}


def fold_constants(exported: ExportedProgram) -> Folding:
    """Find the foldable nodes, recognise sdpa mask patterns, then evaluate the frontier."""
    folded = foldable_nodes(exported)
    evaluator = ConstantEvaluator(exported)
    patterns = {node: _folded_mask_pattern(node, folded, evaluator)
                for node in exported.graph.nodes if node.target is SDPA}
    recognised = {node: pattern for node, pattern in patterns.items() if pattern is not None}
    frontier = _frontier(exported.graph.nodes, folded, set(recognised))
    computed = [n for n in exported.graph.nodes if n in frontier and n.op == "call_function"]
    constants = {node: evaluator.value(node) for node in computed}
    return Folding(folded, frontier, constants, recognised)


def foldable_nodes(exported: ExportedProgram) -> set[Node]:
    kinds = {spec.arg.name: spec.kind for spec in exported.graph_signature.input_specs}
    foldable: set[Node] = set()
    for node in exported.graph.nodes:
        if node.op == "placeholder":
            if kinds.get(node.name) in _FOLDABLE_INPUTS:
                foldable.add(node)
        elif node.op == "call_function" and all(n in foldable for n in node.all_input_nodes):
            foldable.add(node)
    return foldable


def _frontier(nodes, folded: set[Node], masks_dropped: set[Node]) -> set[Node]:
    frontier: set[Node] = set()
    for user in nodes:
        if user in folded or user.op == "placeholder":
            continue
        dropped_mask = sdpa_mask(user) if user in masks_dropped else None
        frontier.update(n for n in user.all_input_nodes if n in folded and n is not dropped_mask)
    return frontier


def sdpa_mask(node: Node):
    """The `attn_mask` argument of an sdpa node (a Node, or None)."""
    return node.args[3] if len(node.args) > 3 else node.kwargs.get("attn_mask")


def _folded_mask_pattern(node: Node, folded: set[Node], evaluator: "ConstantEvaluator"):
    """The pattern of sdpa `node`'s mask, if the mask is a folded constant with one."""
    mask = sdpa_mask(node)
    if not isinstance(mask, Node) or mask not in folded:
        return None
    q_len = node.args[0].meta["val"].shape[-2]
    k_len = node.args[1].meta["val"].shape[-2]
    return mask_pattern(evaluator.value(mask), q_len, k_len)


def is_causal_mask(mask: torch.Tensor, q_len: int, k_len: int) -> bool:
    """True if `mask` allows exactly keys j <= i for query i (bool, or additive 0 / -inf)."""
    return mask_pattern(mask, q_len, k_len) == MaskPattern(causal=True)


def mask_pattern(mask: torch.Tensor, q_len: int, k_len: int) -> MaskPattern | None:
    """The pattern a mask (bool, or additive 0 / -inf) broadcast to [..., q_len, k_len] follows
    for every batch and head alike; None if it follows none (or has no values: meta)."""
    allowed = _allowed_keys(mask, q_len, k_len)
    if allowed is None:
        return None
    causal = torch.ones(q_len, k_len, dtype=torch.bool).tril()
    if torch.equal(allowed, causal):  # first: a single query's [1, 1] mask stays causal, as before
        return MaskPattern(causal=True)
    if bool(allowed.all()):
        return MaskPattern()
    # A window shorter than the queries shows in the last query's row: it sees exactly `window` keys.
    window = int(allowed[-1].sum())
    if 0 < window < q_len and torch.equal(allowed, causal & ~causal.tril(-window)):
        return MaskPattern(causal=True, window=window)
    return None


def _allowed_keys(mask, q_len: int, k_len: int) -> torch.Tensor | None:
    """The [q_len, k_len] bool matrix of visible keys, if `mask` is one matrix broadcast over its
    leading dims; None for meta or integer masks, and additive masks with other values than
    0 (visible) and -inf or the dtype's minimum (hidden)."""
    if not isinstance(mask, torch.Tensor) or mask.device.type == "meta" or mask.dim() < 2:
        return None
    try:
        full = mask.expand(*mask.shape[:-2], q_len, k_len).reshape(-1, q_len, k_len)
    except RuntimeError:  # does not broadcast to [q_len, k_len]: not ours to judge
        return None
    if mask.dtype == torch.bool:
        allowed = full
    elif mask.dtype.is_floating_point:
        # HF's additive masks use 0 for visible keys and -inf or dtype-min for hidden ones.
        hidden = (full == float("-inf")) | (full <= torch.finfo(mask.dtype).min)
        if not torch.equal(full == 0, ~hidden):
            return None
        allowed = ~hidden
    else:
        return None
    return allowed[0] if bool((allowed == allowed[:1]).all()) else None


def state_tensor(exported: ExportedProgram, target: str) -> torch.Tensor:
    """A parameter, buffer or lifted constant by its state_dict name."""
    if target in exported.constants:  # non-persistent buffers and tensor constants live here
        return exported.constants[target]
    return exported.state_dict[target]


class ConstantEvaluator:
    """Runs folded nodes with torch, memoised. Factories run on the CPU; meta inputs stay meta."""

    def __init__(self, exported: ExportedProgram):
        self.exported = exported
        self.targets = {spec.arg.name: spec.target for spec in exported.graph_signature.input_specs}
        self.memo: dict[Node, object] = {}
        self.position = {node: i for i, node in enumerate(exported.graph.nodes)}

    def value(self, node: Node):
        for needed in self._unevaluated_ancestors(node):
            self.memo[needed] = self._evaluate(needed)
        return self.memo[node]

    def _unevaluated_ancestors(self, node: Node) -> list[Node]:
        """`node` and what it needs that is not memoised yet, in graph (topological) order."""
        seen, stack = set(), [node]
        while stack:
            current = stack.pop()
            if current in seen or current in self.memo:
                continue
            seen.add(current)
            stack.extend(current.all_input_nodes)
        return sorted(seen, key=self.position.__getitem__)

    def _evaluate(self, node: Node):
        if node.op == "placeholder":
            return state_tensor(self.exported, self.targets[node.name])
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: self.memo[n])
        args, kwargs = _on_one_device(args, kwargs)
        try:
            with torch.no_grad():
                return node.target(*args, **kwargs)
        except Exception as exc:  # e.g. an op with no meta kernel: say which node, not a traceback
            raise CompilerError(f"cannot compute {node.target} at compile time: "
                                f"{first_line(exc)}", source_loc(node)) from None


def _on_one_device(args, kwargs):
    """Move tensors (and device arguments) to meta if any input is meta, else to the CPU."""
    leaves = torch.utils._pytree.tree_leaves((args, kwargs))
    meta = any(isinstance(x, torch.Tensor) and x.device.type == "meta" for x in leaves)
    device = torch.device("meta" if meta else "cpu")

    def move(x):
        if isinstance(x, torch.Tensor):
            return x.to(device)
        return device if isinstance(x, torch.device) else x

    return torch.utils._pytree.tree_map(move, (args, kwargs))
