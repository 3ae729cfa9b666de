import pytest

from ir.kernels import Kernel
from ir.target import load_target
from ir.types import DType
from ir.wkl import Compute, Load, State, Store, Tile
from ir.wkl_cost import kernel_bytes_per_pe
from passes.cost import CostPass, KernelCostModel
from passes.partition import PartitionPass
from passes.shard_rules import plan_sharding
from passes.spmd import check_local_types, lower_kernel, state_bytes
from tests.builders import GraphBuilder


def attention_kernel(hq=4, hkv=2, s=8, d=16, causal=True) -> Kernel:
    b = GraphBuilder()
    q = b.input("q", 1, s, hq * d)
    k = b.input("k", 1, s, hkv * d)
    v = b.input("v", 1, s, hkv * d)
    heads = []
    for t, n in ((q, hq), (k, hkv), (v, hkv)):
        r = b.op("reshape", t, name=f"{t.name}4", shape=[1, s, n, d])
        heads.append(b.op("permute", r, name=f"{t.name}h", perm=[0, 2, 1, 3]))
    o = b.op("sdpa", *heads, name="o", scale=0.25, causal=causal)
    ot = b.op("permute", o, name="ot", perm=[0, 2, 1, 3])
    out = b.op("reshape", ot, name="out", shape=[1, s, hq * d])
    kg = PartitionPass().run(b.done(out))
    (kernel,) = kg.kernels
    return kernel


def test_attention_shards_over_kv_heads_keeping_query_groups_together():
    kernel = attention_kernel()
    plan = plan_sharding(kernel)
    by_name = {v.name: d for v, d in plan.dims.items()}
    assert plan.parallelism == 2  # two kv heads, each with its two query heads
    assert by_name["qh"] == 1 and by_name["kh"] == 1 and by_name["q"] == 2
    kp = lower_kernel(kernel, 2, 1)
    check_local_types(kp)
    sdpa = next(s for s in kp.body if isinstance(s, Compute) and s.op == "sdpa")
    assert sdpa.type.shape == (1, 2, 8, 16)  # two query heads per PE


def test_norm_over_many_tokens_shards_the_tokens_and_needs_no_collective():
    b = GraphBuilder()
    x = b.input("x", 1, 64, 16)
    p = b.op("pow", x, scalar=2.0)
    m = b.op("mean", p, dims=[-1], keepdim=True)
    r = b.op("rsqrt", b.op("add", m, scalar=1e-6))
    y = b.op("mul", b.op("mul", x, r), b.param("norm.weight", 16))
    (kernel,) = PartitionPass().run(b.done(y)).kernels
    plan = plan_sharding(kernel)
    assert plan.parallelism == 64 and plan.dims[kernel.inputs[0]] == 1
    kp = lower_kernel(kernel, 4, 2)
    check_local_types(kp)
    assert not any(isinstance(s, Compute) and s.op == "reduce_all" for s in kp.body)
    tile = next(s for s in kp.body if isinstance(s, Tile))
    assert tile.type.shape == (16,)  # the weight is needed whole by every PE


def test_unshardable_kernel_is_replicated_and_stored_once():
    b = GraphBuilder()
    x = b.input("x", 8)
    y = b.op("softmax", x, dim=0)
    (kernel,) = PartitionPass().run(b.done(y)).kernels
    assert plan_sharding(kernel).parallelism == 1
    kp = lower_kernel(kernel, 2, 2)
    store = next(s for s in kp.body if isinstance(s, Store))
    assert (store.cond.px, store.cond.py) == (0, 0)


@pytest.mark.parametrize("w,h", [(1, 1), (3, 2), (4, 4), (5, 7)])
def test_linear_tiles_cover_the_weight_and_types_check(w, h):
    b = GraphBuilder()
    x = b.input("x", 3, 40)
    y = b.op("linear", x, b.param("w", 24, 40), b.param("b", 24))
    z = b.op("silu", y)
    (kernel,) = PartitionPass().run(b.done(z)).kernels
    kp = lower_kernel(kernel, w, h)
    check_local_types(kp)
    weight = next(s for s in kp.body if isinstance(s, Tile) and s.param == "w")
    bn, bk = weight.type.shape
    assert bn * h >= 24 and bk * w >= 40 and (bn - 1) * h < 24 and (bk - 1) * w < 40
    load = next(s for s in kp.body if isinstance(s, Load))
    assert load.slices[1].start.px == bk  # the input is split along the region's columns
    assert any(isinstance(s, Compute) and s.op == "reduce_row" for s in kp.body) == (w > 1)


def test_embedding_offsets_each_column_to_its_rows_of_the_table():
    b = GraphBuilder()
    ids = b.input("ids", 1, 5, dtype=DType.i64)
    e = b.op("embedding", b.param("emb", 100, 8), ids)
    (kernel,) = PartitionPass().run(b.done(e)).kernels
    kp = lower_kernel(kernel, 4, 2)
    look = next(s for s in kp.body if isinstance(s, Compute) and s.op == "embedding")
    assert look.attrs["offset"].px == 25


def test_cost_shapes_fit_sram_and_trade_pes_for_cycles():
    b = GraphBuilder()
    x = b.input("x", 8, 256)
    y = b.op("linear", x, b.param("w", 256, 256))
    kg = PartitionPass().run(b.done(y))
    target = load_target("toy")
    (cost,) = CostPass(target).run(kg)
    assert all(s.bytes_per_pe <= target.usable_bytes_per_pe for s in cost.shapes)
    cycles = [s.cycles for s in cost.shapes]
    areas = [s.w * s.h for s in cost.shapes]
    assert cycles == sorted(cycles) and areas == sorted(areas, reverse=True)
    # 256x256 f32 is 256 KiB: it cannot sit on fewer than 7 PEs.
    assert min(areas) * target.usable_bytes_per_pe >= 256 * 256 * 4
    kp = lower_kernel(kg.kernels[0], cost.shapes[-1].w, cost.shapes[-1].h)
    assert kernel_bytes_per_pe(kp) == cost.shapes[-1].bytes_per_pe


def test_norm_over_a_long_hidden_dim_splits_it_and_completes_the_mean_across_pes():
    # One decode token: the only parallel dim is the hidden dim the norm reduces over.
    b = GraphBuilder()
    x = b.input("x", 1, 1, 64)
    m = b.op("mean", b.op("pow", x, scalar=2.0), dims=[-1], keepdim=True)
    y = b.op("mul", b.op("mul", x, b.op("rsqrt", b.op("add", m, scalar=1e-6))), b.param("g", 64))
    (kernel,) = PartitionPass().run(b.done(y)).kernels
    plan = plan_sharding(kernel)
    assert plan.parallelism == 64 and plan.dims[kernel.inputs[0]] == 2 and plan.dims[m] is None
    kp = lower_kernel(kernel, 4, 2)
    check_local_types(kp)
    ops_ = [s.op for s in kp.body if isinstance(s, Compute)]
    assert ops_[:4] == ["pow", "mean", "reduce_all", "mul"]
    reduce = next(s for s in kp.body if isinstance(s, Compute) and s.op == "reduce_all")
    assert reduce.attrs == {"count": 8}
    tile = next(s for s in kp.body if isinstance(s, Tile))
    assert tile.type.shape == (8,)  # the norm weight is split with the hidden dim


def test_attention_keeps_its_kv_cache_resident_split_over_the_region():
    kernel = attention_kernel(hq=4, hkv=2, s=8, d=16)
    kp = lower_kernel(kernel, 4, 2, max_context=1024)  # 2 shards (kv heads), 4 PEs per shard
    states = [s for s in kp.body if isinstance(s, State)]
    assert [s.name for s in states] == ["k_cache", "v_cache"]
    assert all(s.type.shape == (1, 1, 256, 16) for s in states)  # 1024 tokens over 4 PEs
    small = lower_kernel(kernel, 2, 1, max_context=1024)
    assert kernel_bytes_per_pe(kp) < kernel_bytes_per_pe(small)
    assert not any(isinstance(s, State) for s in lower_kernel(kernel, 4, 2).body)


def test_bidirectional_attention_keeps_no_kv_cache():
    # An encoder's attention (BERT's) sees the whole sequence in one pass: nothing to keep.
    kernel = attention_kernel(causal=False)
    assert not any(isinstance(s, State) for s in lower_kernel(kernel, 4, 2, max_context=1024).body)
    assert state_bytes(kernel, 1024) == 0
    assert KernelCostModel(kernel, load_target("toy"), max_context=1024).min_pes == 1


def test_the_kv_cache_counts_toward_a_kernels_memory_minimum():
    kernel = attention_kernel(hq=4, hkv=2, s=8, d=16)
    kp = lower_kernel(kernel, 4, 2, max_context=1024)
    held = sum(s.type.nbytes for s in kp.body if isinstance(s, State)) * 4 * 2  # every PE's share
    assert state_bytes(kernel, 1024) == held == 2 * 2 * 1024 * 16 * 4  # K and V, 2 heads, f32
    target = load_target("toy")
    cached = KernelCostModel(kernel, target, max_context=1024)
    assert cached.resident_bytes == held
    assert cached.min_pes == -(-held // target.usable_bytes_per_pe) > 1
    assert KernelCostModel(kernel, target).min_pes == 1  # no cache: nothing resident
