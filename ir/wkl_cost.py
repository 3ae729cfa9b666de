"""Cycle and memory rules for WKL statements.

One definition used by both the compiler (to cost candidate region shapes before placement) and the
simulator (to count the cycles of the program it runs), so the estimate and the count agree.

Two counts per statement and per kernel (see ir/target.py):
* *busy* cycles (`stmt_busy_cycles`, `kernel_cycles`): serialisation and compute, the time a PE is
  occupied. A kernel's busy cycles are its pipeline *stage time*: a new pass can start that often.
* *latency* cycles (`stmt_cycles`, `kernel_latency_cycles`): busy cycles plus hop latency, the time
  one pass takes from start to finish.
"""
from __future__ import annotations

from ir import ops
from ir.target import Target
from ir.types import TensorType
from ir.wkl import Compute, KernelProgram, Load, Region, State, Store, Tile

_COLLECTIVE_SPAN = {"reduce_row": lambda w, h: w, "reduce_col": lambda w, h: h,
                    "reduce_all": lambda w, h: w * h}


def stmt_cycles(stmt, types: dict[str, TensorType], target: Target, w: int, h: int) -> int:
    """Latency of one statement on every PE of a w x h region (SPMD: all PEs in step): its busy
    cycles plus the hops its data travels.

    `types` maps the kernel's local and whole-tensor names to their types.
    """
    if isinstance(stmt, (Load, Store)):
        # Injected at the region's edge and broadcast along its rows and columns.
        return target.transfer_cycles(_moved_bytes(stmt, types), (w - 1) + (h - 1))
    if _is_collective(stmt):
        return target.reduce_cycles(stmt.type, _collective_pes(stmt, w, h))
    return stmt_busy_cycles(stmt, types, target, w, h)


def stmt_busy_cycles(stmt, types: dict[str, TensorType], target: Target, w: int, h: int) -> int:
    """Cycles one statement keeps every PE of a w x h region busy: serialisation and compute, no
    hop latency (that overlaps with the next pass in a pipeline)."""
    if isinstance(stmt, (Tile, State)):
        return 0  # resident in SRAM before the program starts
    if isinstance(stmt, (Load, Store)):
        return target.serial_cycles(_moved_bytes(stmt, types))
    if _is_collective(stmt):
        return target.reduce_busy_cycles(stmt.type, _collective_pes(stmt, w, h))
    if isinstance(stmt, Compute):
        operand_types = [types[a] for a in stmt.args]
        flops = ops.flops(stmt.op, operand_types, stmt.type, stmt.attrs)
        return target.compute_cycles(flops, stmt.type.dtype) if flops else 0
    raise TypeError(f"not a WKL statement: {stmt!r}")


def _moved_bytes(stmt: Load | Store, types: dict[str, TensorType]) -> int:
    return stmt.type.nbytes if isinstance(stmt, Load) else types[stmt.src].nbytes


def _is_collective(stmt) -> bool:
    return isinstance(stmt, Compute) and stmt.op in _COLLECTIVE_SPAN


def _collective_pes(stmt: Compute, w: int, h: int) -> int:
    return stmt.attrs.get("count") or _COLLECTIVE_SPAN[stmt.op](w, h)


def kernel_types(kp: KernelProgram) -> dict[str, TensorType]:
    types = {d.name: d.type for d in kp.ins + kp.outs}
    types.update({s.name: s.type for s in kp.body if not isinstance(s, Store)})
    return types


def kernel_cycles(kp: KernelProgram, target: Target, w: int, h: int) -> int:
    """The kernel's stage time on a w x h region: the sum of its statements' busy cycles. In a
    pipelined steady state a new pass can enter the region this often, so this bounds throughput
    (hop latency is not included: it overlaps with the next pass)."""
    types = kernel_types(kp)
    return sum(stmt_busy_cycles(s, types, target, w, h) for s in kp.body)


def kernel_latency_cycles(kp: KernelProgram, target: Target, w: int, h: int) -> int:
    """One pass through the kernel on a w x h region, start to finish: the sum of `stmt_cycles`
    (busy cycles plus hop latency). Never less than `kernel_cycles`."""
    types = kernel_types(kp)
    return sum(stmt_cycles(s, types, target, w, h) for s in kp.body)


def kernel_bytes_per_pe(kp: KernelProgram) -> int:
    """SRAM each PE needs: its resident tiles and state, plus the most buffer space live at once."""
    return max(live_bytes(kp), default=0)


def live_bytes(kp: KernelProgram) -> list[int]:
    """Bytes a PE holds while each statement runs. Tiles and state stay resident from the start;
    a loaded or computed buffer lives from its statement to the last statement that reads it, and
    its space is reused after that."""
    resident = sum(s.type.nbytes for s in kp.body if isinstance(s, (Tile, State)))
    last_read = {}
    for i, s in enumerate(kp.body):
        for name in s.args if isinstance(s, Compute) else [s.src] if isinstance(s, Store) else []:
            last_read[name] = i
    freed: dict[int, int] = {}
    live, out = resident, []
    for i, s in enumerate(kp.body):
        if isinstance(s, (Load, Compute)):
            live += s.type.nbytes
            end = max(last_read.get(s.name, i), i)
            freed[end] = freed.get(end, 0) + s.type.nbytes
        out.append(live)
        live -= freed.pop(i, 0)
    return out or [resident]


def route_cycles(nbytes: int, hops: int, src: Region | None, dst: Region | None, target: Target) -> int:
    """A whole tensor moving between two regions (or to/from the host edge)."""
    cycles = target.transfer_cycles(nbytes, hops)
    if src is not None and dst is not None and src.wafer != dst.wafer:
        cycles += target.wafer_link_cycles(nbytes) * abs(src.wafer - dst.wafer)
    return cycles
