from ir.types import DType, TensorType
from ir.wkl import Compute, KernelProgram, Load, Slice, State, Store, TensorDecl, Tile
from ir.wkl_cost import kernel_bytes_per_pe, live_bytes

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
