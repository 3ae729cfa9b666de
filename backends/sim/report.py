"""What a simulation returns: the program's outputs and its cycle counts.

Ensures: `CycleReport` lists, in execution order (dicts keep insertion order), the stage (busy)
cycles and the latency of every kernel and the cycles of every route; the latency of one pass is
the sum of the kernel latencies and the route cycles, and the bottleneck is the kernel with the
most stage cycles, which bounds the pipeline's throughput when successive passes stream through
the regions (hop latency overlaps with the next pass, so it does not count there).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CycleReport:
    kernels: dict[str, int]  # stage (busy) cycles of each kernel, in execution order
    routes: dict[str, int]   # cycles of each route, in the order they were used
    latency_cycles: int      # one pass: every kernel's latency and every route, one after the other
    bottleneck_kernel: str
    bottleneck_cycles: int   # the most stage cycles of any kernel
    clock_hz: float
    kernel_latencies: dict[str, int] = field(default_factory=dict)  # busy cycles plus hop latency

    @property
    def latency_seconds(self) -> float:
        return self.latency_cycles / self.clock_hz

    @property
    def passes_per_second(self) -> float:
        """Pipeline throughput: a new pass can enter each time the slowest stage finishes."""
        return self.clock_hz / self.bottleneck_cycles if self.bottleneck_cycles else float("inf")

    def to_dict(self) -> dict:
        """Plain data for a JSON report."""
        return {"kernels": dict(self.kernels), "kernel_latencies": dict(self.kernel_latencies),
                "routes": dict(self.routes),
                "latency_cycles": self.latency_cycles, "latency_seconds": self.latency_seconds,
                "bottleneck_kernel": self.bottleneck_kernel,
                "bottleneck_cycles": self.bottleneck_cycles,
                "passes_per_second": self.passes_per_second, "clock_hz": self.clock_hz}


def cycle_report(kernels: dict[str, int], routes: dict[str, int], clock_hz: float,
                 kernel_latencies: dict[str, int] | None = None) -> CycleReport:
    """The report for these per-kernel stage cycles, per-kernel latencies (the stage cycles when
    not given: no hop latency) and per-route counts; ties for the bottleneck go to the kernel that
    runs first."""
    latencies = dict(kernels if kernel_latencies is None else kernel_latencies)
    bottleneck = max(kernels, key=lambda k: kernels[k], default="")
    return CycleReport(kernels=dict(kernels), routes=dict(routes),
                       latency_cycles=sum(latencies.values()) + sum(routes.values()),
                       bottleneck_kernel=bottleneck, bottleneck_cycles=kernels.get(bottleneck, 0),
                       clock_hz=clock_hz, kernel_latencies=latencies)


@dataclass
class SimResult:
    outputs: dict[str, np.ndarray]  # the program's outputs by name
    cycles: CycleReport
