from dataclasses import replace

import pytest

from ir.target import load_target
from ir.types import DType, TensorType
from ir.wkl import Compute, KernelProgram, Load, Slice, State, Store, TensorDecl, Tile
from ir.wkl_cost import (kernel_bytes_per_pe, kernel_cycles, kernel_latency_cycles, kernel_types,
                         live_bytes, stmt_busy_cycles, stmt_cycles)

TOY = load_target("toy")

F = TensorType((256,), DType.f32)  # 1 KiB


def test_buffers_are_reused_after_their_last_read_while_tiles_and_state_stay():
    body = [Tile("w", F, "p", [Slice()]), State("cache", F),
            Load("a", F, "x", [Slice()]),
            Compute("b", F, "exp", ["a"]),       # a dies here
            Compute("c", F, "neg", ["b"]),       # b dies here
            Compute("d", F, "add", ["c", "w"]),  # c dies here
            Store("y", [Slice()], "d")]
    kp = KernelProgram("k", [TensorDecl("x", F)], [TensorDecl("y", F)], body)
    assert live_bytes(kp) == [2048, 2048, 3072, 4096, 4096, 4096, 3072]
    assert kernel_bytes_per_pe(kp) == 4096  # two resident + two buffers, never all four at once


def load_reduce_store_kernel() -> KernelProgram:
    """Each PE loads x, multiplies by its weight tile, all-reduces along its row and stores."""
    return KernelProgram("k", [TensorDecl("x", F)], [TensorDecl("y", F)], [
        Tile("w", F, "p", [Slice()]),
        Load("a", F, "x", [Slice()]),
        Compute("b", F, "mul", ["a", "w"]),
        Compute("c", F, "reduce_row", ["b"]),
        Store("y", [Slice()], "c")])


SHAPES = [(1, 1), (2, 1), (4, 4), (16, 3), (64, 64)]


@pytest.mark.parametrize("index", [1, 3, 4])  # the load, the row reduce, the store
def test_busy_cycles_of_moves_and_reduces_do_not_depend_on_the_perimeter(index):
    kp = load_reduce_store_kernel()
    stmt, types = kp.body[index], kernel_types(kp)
    busy = {(w, h): stmt_busy_cycles(stmt, types, TOY, w, h) for w, h in SHAPES if w > 1}
    latency = {(w, h): stmt_cycles(stmt, types, TOY, w, h) for w, h in SHAPES if w > 1}
    assert len(set(busy.values())) == 1 and min(busy.values()) > 0
    assert latency[(2, 1)] < latency[(16, 3)] < latency[(64, 64)]  # hops grow with the region
    assert all(latency[s] > busy[s] for s in busy)


def test_hop_latency_is_the_only_difference():
    kp = load_reduce_store_kernel()
    types = kernel_types(kp)
    load, reduce, store = kp.body[1], kp.body[3], kp.body[4]
    w, h = 16, 3
    edge_hops = (w - 1) + (h - 1)
    assert stmt_cycles(load, types, TOY, w, h) - stmt_busy_cycles(load, types, TOY, w, h) == edge_hops
    assert stmt_cycles(store, types, TOY, w, h) - stmt_busy_cycles(store, types, TOY, w, h) == edge_hops
    assert stmt_cycles(reduce, types, TOY, w, h) - stmt_busy_cycles(reduce, types, TOY, w, h) == 2 * (w - 1)
    assert stmt_busy_cycles(load, types, TOY, w, h) == F.nbytes * 8 // TOY.link_bits_per_cycle


@pytest.mark.parametrize("w,h", SHAPES)
def test_stage_time_is_at_most_the_latency_and_equal_without_hop_latency(w, h):
    kp = load_reduce_store_kernel()
    busy, latency = kernel_cycles(kp, TOY, w, h), kernel_latency_cycles(kp, TOY, w, h)
    assert busy <= latency
    assert (busy < latency) == ((w, h) != (1, 1))
    no_hops = replace(TOY, hop_latency_cycles=0)
    assert kernel_cycles(kp, no_hops, w, h) == kernel_latency_cycles(kp, no_hops, w, h) == busy
    # The per-task overhead is busy time: it is in both counts.
    more_overhead = replace(TOY, op_overhead_cycles=TOY.op_overhead_cycles + 5)
    assert kernel_cycles(kp, more_overhead, w, h) == busy + 5
    assert kernel_latency_cycles(kp, more_overhead, w, h) == latency + 5
