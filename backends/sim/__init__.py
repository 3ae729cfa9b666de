"""The functional and cycle simulator: runs a WKL `Program` with numpy and counts its cycles.

It is the executable definition of WKL (see `ir/wkl.py`): what it computes comes from the program
alone, so a wrong program gives a wrong answer. It imports neither torch nor compiler/ or passes/.

    result = simulate(program, params, inputs, target)
    result.outputs["y"], result.cycles.latency_cycles, result.cycles.passes_per_second
"""
from backends.sim.numerics import numpy_dtype
from backends.sim.program import simulate
from backends.sim.report import CycleReport, SimResult

__all__ = ["simulate", "SimResult", "CycleReport", "numpy_dtype"]
