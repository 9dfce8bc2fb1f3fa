"""Nothing accumulates: scopes and arrays leave RSS and the mapping count where
they were (within a stated tolerance: the allocator keeps its chunks and cache)."""

import gc

import numpy as np
from kernel_view import bound_bytes, mapping_count, rss_bytes

import numa_numpy as nn

MiB = 1 << 20


def test_scope_enter_exit_does_not_leak():
    scope = nn.on_node(0)
    for _ in range(1000):  # warm up: handler, caches, interpreter
        with scope:
            pass
    gc.collect()
    rss, maps = rss_bytes(), mapping_count()
    for _ in range(1_000_000):
        with scope:
            pass
    gc.collect()
    # a million cycles that each leaked a token, a capsule reference or a 48-byte
    # object would grow RSS by >= 45 MiB; allow 2 MiB of interpreter noise.
    assert rss_bytes() - rss < 2 * MiB
    assert mapping_count() <= maps + 2


def test_many_small_and_large_arrays_return_to_baseline():
    nn.forget_handlers()
    with nn.on_node(0):
        for _ in range(3):  # reach the steady state of chunks and cache
            keep = [np.ones(8) for _ in range(10_000)]
            big = [np.ones(300_000) for _ in range(8)]
            del keep, big
    gc.collect()
    rss, maps = rss_bytes(), mapping_count()
    with nn.on_node(0):
        for _ in range(100):
            keep = [np.ones(8) for _ in range(10_000)]
            big = [np.ones(300_000) for _ in range(8)]
            del keep, big
    gc.collect()
    # a million small and 800 large arrays went through; freed memory is reused
    assert rss_bytes() - rss < 4 * MiB
    assert mapping_count() <= maps + 4


def test_forget_handlers_unmaps_after_the_last_array_dies():
    nn.forget_handlers()
    gc.collect()
    bound = bound_bytes()
    with nn.policy("bind:0", prefault="touch"):
        arrays = [np.ones(1 << 18) for _ in range(6)] + [np.ones(8) for _ in range(100)]
    assert bound_bytes() >= bound + 6 * (2 << 20) + (1 << 20)  # 6 blocks and a chunk
    nn.forget_handlers()  # handler forgotten, but the arrays keep its arena alive
    assert all((a == 1).all() for a in arrays)
    del arrays
    gc.collect()
    assert bound_bytes() <= bound  # every chunk and block of the forgotten handler unmapped


def test_node_memory_stats_follow_the_kernel():
    nn.forget_handlers()
    gc.collect()
    zero = {"resident_bytes": 0, "cached_bytes": 0, "used_bytes": 0}
    before = nn.node_memory_stats().get(0, zero)
    with nn.on_node(0, prefault="touch"):
        a = np.ones(2 << 20)  # 16 MiB, every page faulted on node 0
    held = nn.node_memory_stats()[0]
    assert held["resident_bytes"] - before["resident_bytes"] >= 16 * MiB
    assert held["used_bytes"] - before["used_bytes"] >= 16 * MiB
    del a  # back to the handler's cache: still resident, now cached
    freed = nn.node_memory_stats()[0]
    assert freed["cached_bytes"] - held["cached_bytes"] >= 16 * MiB
    assert freed["used_bytes"] <= held["used_bytes"] - 16 * MiB
    nn.free_all_blocks()
    assert nn.node_memory_stats().get(0, zero)["cached_bytes"] == 0
