"""CostPass: what each kernel costs on the region shapes it could be given.

`KernelCostModel` answers "what does this kernel cost on a w x h region?" for any shape, which is
what the wafer-scale placer asks thousands of times; answers are memoised per kernel *signature*,
so the 32 identical decoder layers of a Llama are lowered once per shape, not 32 times.

requires: a KernelGraph and a target.
ensures:  one KernelCost per kernel (same order) whose `shapes` fit the target's SRAM per PE after
          the reserve, keep only shapes no other shape beats on both PEs and cycles, and are listed
          fastest first. Costs come from lowering the kernel for that shape and applying the
          target's WKL cycle rules (ir/wkl_cost.py), the same rules the simulator counts with;
          `ShapeCost.cycles` is the stage time (`kernel_cycles`: busy cycles, no hop latency),
          which is what limits pipeline throughput and what the placers minimise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ir.errors import PlacementError
from ir.kernels import Kernel, KernelCost, KernelGraph, ShapeCost
from ir.target import Target
from ir.wkl_cost import kernel_bytes_per_pe, kernel_cycles
from passes.shard_rules import plan_sharding
from passes.spmd import flops_of, lower_kernel, param_bytes, state_bytes

SIDES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def kernel_signature(kernel: Kernel) -> tuple:
    """The kernel up to the names of its values: identical layers have equal signatures."""
    index: dict = {}

    def ref(v):
        return index.setdefault(v, (len(index), str(v.type)))

    for v in kernel.inputs + kernel.params:
        ref(v)
    body = tuple((op.opname, tuple(ref(v) for v in op.operands), ref(op.result), repr(sorted(op.attrs.items())))
                 for op in kernel.ops)
    return (kernel.kind, body, tuple(ref(v) for v in kernel.outputs))


@dataclass
class KernelCostModel:
    """One kernel's cost on any region shape: lowered to WKL and costed with the target's rules."""

    kernel: Kernel
    target: Target
    cache: dict = field(default_factory=dict)  # shared between models: (signature, w, h) -> ShapeCost | None
    max_context: int | None = None  # tokens of KV cache attention kernels keep resident

    def __post_init__(self):
        self.signature = kernel_signature(self.kernel)
        self.plan = plan_sharding(self.kernel) if self.kernel.kind == "vector" else None
        self.flops = flops_of(self.kernel)
        self.param_bytes = param_bytes(self.kernel)
        # What the kernel keeps resident however it is shaped: weights and KV cache.
        self.resident_bytes = self.param_bytes + state_bytes(self.kernel, self.max_context)
        self.min_pes = max(1, -(-self.resident_bytes // self.target.usable_bytes_per_pe))

    @property
    def max_useful_pes(self) -> int | None:
        """A vector kernel computes on at most `parallelism` PEs; None means no limit."""
        return self.plan.parallelism if self.plan is not None else None

    def cost(self, w: int, h: int) -> ShapeCost | None:
        """The cost on a w x h region, or None when some PE's tiles and buffers exceed its SRAM."""
        key = (self.signature, self.max_context, w, h)
        if key not in self.cache:
            kp = lower_kernel(self.kernel, w, h, self.plan, self.max_context)
            nbytes = kernel_bytes_per_pe(kp)
            fits = nbytes <= self.target.usable_bytes_per_pe
            self.cache[key] = ShapeCost(w, h, nbytes, kernel_cycles(kp, self.target, w, h)) if fits else None
        return self.cache[key]


@dataclass(frozen=True)
class CostPass:
    target: Target
    tokens: int = 1  # tokens per pass, to state FLOPs per token
    max_context: int | None = None
    max_shapes: int = 8

    name = "cost"

    def run(self, kg: KernelGraph) -> list[KernelCost]:
        cache: dict = {}
        return [self.cost(k, cache) for k in kg.kernels]

    def cost(self, kernel: Kernel, cache: dict | None = None) -> KernelCost:
        model = KernelCostModel(kernel, self.target, {} if cache is None else cache, self.max_context)
        shapes = [c for w, h in self._candidates(model) if (c := model.cost(w, h)) is not None]
        if not shapes:
            raise self._does_not_fit(kernel)
        return KernelCost(kernel.name, model.flops // max(self.tokens, 1), model.param_bytes,
                          _spread(_pareto(shapes), self.max_shapes))

    def _does_not_fit(self, kernel: Kernel) -> PlacementError:
        t = self.target
        pes = t.fabric_width * t.fabric_height
        need = -(-param_bytes(kernel) // t.usable_bytes_per_pe)
        return PlacementError(
            f"kernel '{kernel.name}' does not fit the {t.fabric_width}x{t.fabric_height} fabric: its "
            f"weights alone are {param_bytes(kernel):,} bytes, at least {need:,} PEs at "
            f"{t.usable_bytes_per_pe:,} usable bytes each, and no region shape of the {pes:,} PEs "
            f"holds its tiles and buffers", kernel.loc,
            hint="one kernel must fit on one wafer: use a larger target or --fabric-dims")

    def _candidates(self, model: KernelCostModel) -> list[tuple[int, int]]:
        fw, fh = self.target.fabric
        sides_w = [s for s in SIDES if s <= fw]
        sides_h = [s for s in SIDES if s <= fh]
        if model.plan is None:
            return [(w, h) for h in sides_h for w in sides_w]
        # A vector kernel computes on at most `parallelism` PEs (only the count matters, not the
        # aspect); more PEs can still be needed to hold a KV cache.
        par = model.plan.parallelism
        counts = [p for p in range(1, par + 1) if par % p == 0]
        counts += [par << k for k in range(1, 12) if par << k <= fw * fh]
        return [shape for p in counts if (shape := _near_square(p, fw, fh))]


def _near_square(p: int, fw: int, fh: int) -> tuple[int, int] | None:
    fits = [(p // h, h) for h in range(1, p + 1) if p % h == 0 and p // h <= fw and h <= fh]
    return min(fits, key=lambda s: (abs(s[0] - s[1]), -s[0])) if fits else None


def _pareto(shapes: list[ShapeCost]) -> list[ShapeCost]:
    """Shapes not dominated on (PEs, cycles), fastest first; ties to the squarer, then wider."""
    ordered = sorted(shapes, key=lambda s: (s.cycles, s.w * s.h, abs(s.w - s.h), -s.w))
    front, best_area = [], None
    for s in ordered:
        if best_area is None or s.w * s.h < best_area:
            front.append(s)
            best_area = s.w * s.h
    return front


def _spread(front: list[ShapeCost], n: int) -> list[ShapeCost]:
    """At most n shapes from the front, evenly spaced, keeping both the fastest and the smallest."""
    if len(front) <= n:
        return front
    picks = sorted({round(i * (len(front) - 1) / (n - 1)) for i in range(n)})
    return [front[i] for i in picks]
