"""Handlers (numa_numpy._alloc.handler): one per policy and options, cached;
retired by forget_handlers, still found while in use and gone with the last
array they hold."""

import gc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fixtures.cache import wait_for
from kernel_view import bound_bytes

import numa_numpy as nn

MiB = 1 << 20


def test_arrays_outlive_their_scope_and_handler_is_cached():
    scope = nn.on_node(0)
    with scope:
        a = np.full(1 << 18, 3.0)
    assert (a == 3.0).all()
    assert nn.on_node(0).handler is scope.handler  # one handler per policy and options


def test_options_select_distinct_handlers():
    assert nn.on_node(0).handler is not nn.on_node(0, prefault="touch").handler
    assert nn.on_node(0).handler is not nn.on_node(0, strict=True).handler


def retired_since(known: set[int]) -> list[dict]:
    """Stats of the retired handlers made after `known` was taken (other tests
    may leave retired handlers of their own alive)."""
    return [
        s
        for k, s in nn.memory_stats().items()
        if k != "process" and s["retired"] and s["id"] not in known
    ]


def handler_ids() -> set[int]:
    return {s["id"] for k, s in nn.memory_stats().items() if k != "process"}


def test_forget_handlers_keeps_handlers_in_use_reachable(cache_settings):
    nn.forget_handlers()
    known = handler_ids()
    scope = nn.on_node(0)
    kept: list[np.ndarray] = []

    def work(n: int) -> tuple[object, bool]:
        a = np.ones(n)
        kept.append(a)
        return nn.current_policy(), nn.placement(a).requested == nn.Bind(0)

    with ThreadPoolExecutor(1, initializer=scope.initializer) as pool:
        assert pool.submit(work, 1 << 20).result() == (nn.Bind(0), True)
        before = kept[0]
        nn.forget_handlers()  # the worker's context still holds the old handler
        # arrays made before: still ours, still with their policy
        assert nn.placement(before).requested == nn.Bind(0)
        # the worker keeps allocating into that handler: it is still found
        assert pool.submit(work, 4 << 20).result() == (nn.Bind(0), True)
        retired = retired_since(known)
        assert len(retired) == 1, retired
        assert retired[0]["live_blocks"] == 2
        assert retired[0]["used_bytes"] == (1 << 20) * 8 + (4 << 20) * 8
        # and trimmable: a block freed in the worker is cached, free_all_blocks() releases it
        pool.submit(lambda: kept.pop()).result()
        pool.submit(lambda: gc.collect()).result()
        retired_cached = sum(s["cached_bytes"] for s in retired_since(known))
        assert retired_cached >= 32 * MiB
        assert nn.free_all_blocks() >= retired_cached
    # the pool keeps its initializer, a bound method of the scope, and a scope
    # holds its handler's capsule: all of them must go for the handler to go
    del before, scope, pool
    kept.clear()
    gc.collect()
    # the worker thread, its context and every array are gone: so is the handler
    assert wait_for(lambda: not retired_since(known))


def test_retired_handler_dies_with_its_last_array():
    nn.forget_handlers()
    gc.collect()
    known = handler_ids()
    bound = bound_bytes()
    with nn.on_node(0):
        a = np.ones(1 << 20)
        small = [np.ones(8) for _ in range(100)]
    nn.forget_handlers()
    assert [s["live_blocks"] for s in retired_since(known)] == [101]
    del a, small
    gc.collect()
    assert retired_since(known) == []
    assert bound_bytes() <= bound
