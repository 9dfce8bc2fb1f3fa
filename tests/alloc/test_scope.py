import numpy as np
import pytest

import numa_numpy as nn


def test_every_allocation_in_a_scope_uses_the_policy(handler_name):
    base = np.arange(1000.0)
    with nn.on_node(0) as scope:
        assert handler_name() == "numa_numpy"
        assert nn.current_policy() == nn.Bind(0) == scope.policy
        made = {
            "empty": np.empty(10),
            "ufunc output": np.sqrt(base),
            "expression": base * 2 + 1,  # the temporary of base * 2 too
            "copy": base.copy(),
            "concatenate": np.concatenate([base, base]),
            "reduction": base.reshape(10, 100).sum(axis=0),
            "fancy index": base[[1, 5, 7]],
            "astype": base.astype(np.float32),
            "large": np.ones(1 << 20),
        }
    assert handler_name() == "default_allocator"
    assert nn.current_policy() is None
    for what, a in made.items():
        assert handler_name(a) == "numa_numpy", what
        assert nn.placement(a).requested == nn.Bind(0), what
        assert nn.placement(a).policy == nn.Bind(0), what
    assert handler_name(base) == "default_allocator"
    assert handler_name(np.empty(3)) == "default_allocator"


def test_nesting_restores_the_outer_policy_exactly():
    with nn.policy("interleave:0"):
        with nn.on_node(0):
            with nn.policy(nn.Local()):
                assert nn.placement(np.ones(4)).requested == nn.Local()
            assert nn.current_policy() == nn.Bind(0)
            assert nn.placement(np.ones(4)).requested == nn.Bind(0)
        assert nn.current_policy() == nn.Interleave(0)
        assert nn.placement(np.ones(4)).requested == nn.Interleave(0)
    assert nn.current_policy() is None


def test_same_scope_object_reentered_and_nested():
    scope = nn.on_node(0)
    with scope:
        with scope:
            assert nn.current_policy() == nn.Bind(0)
        assert nn.current_policy() == nn.Bind(0)
    assert nn.current_policy() is None


def test_scope_exits_on_exception():
    with pytest.raises(RuntimeError):
        with nn.on_node(0):
            raise RuntimeError("boom")
    assert nn.current_policy() is None


def test_decorator(handler_name):
    @nn.interleaved()
    def compute(n):
        return np.arange(n) * 2, handler_name()

    out, name = compute(5)
    assert name == "numa_numpy" and handler_name(out) == "numa_numpy"
    assert nn.placement(out).requested == nn.Interleave()
    assert compute.__name__ == "compute"


def test_bad_node_raises_at_entry_and_leaves_numpy_alone(handler_name):
    with pytest.raises(nn.InvalidNodeError, match="node 77 does not exist"):
        with nn.on_node(77):
            pass  # pragma: no cover
    assert handler_name() == "default_allocator"


def test_prefault_option_faults_pages_at_allocation():
    with nn.on_node(0, prefault="touch"):
        a = np.empty(1 << 20)  # 8 MiB, never written
    where = nn.placement(a)
    assert where.not_present == 0 and where.pages == {0: where.total_pages}
    nn.free_all_blocks()  # else the cache may hand back a block faulted by an earlier test
    # no prefault: none of the data's pages is present (the header has its own page)
    b = nn.numa_empty(1 << 20, node=0, huge_pages="none")
    assert nn.placement(b).present_pages == 0
    assert nn.placement(b).not_present == nn.placement(b).total_pages == 2048


def test_transparent_huge_pages_align_large_blocks():
    nn.free_all_blocks()
    a = nn.numa_empty(4 << 20, np.uint8, node=0, huge_pages="transparent")
    assert a.ctypes.data % (2 << 20) == 0  # data on a huge-page boundary
    b = nn.numa_empty(4 << 20, np.uint8, node=0, huge_pages="none")
    assert b.ctypes.data % 4096 == 0
    b[0] = 1
    assert nn.placement(b).present_pages == 1  # none means 4 KiB pages


# --- the common forms are cached values -------------------------------------------


def test_common_forms_return_one_cached_scope_per_policy():
    # `with nn.on_node(0):` in a loop builds nothing after the first time
    assert nn.on_node(0) is nn.on_node(0) is nn.policy(nn.Bind(0)) is nn.policy("bind:0")
    assert nn.interleaved() is nn.interleaved() is nn.policy(nn.Interleave())
    assert nn.Bind(0) is nn.Bind(0) and nn.Interleave() is nn.Interleave()
    assert nn.on_node(0, strict=True) is nn.on_node(0, strict=True) is not nn.on_node(0)
    assert nn.on_node(0, thread=True) is not nn.on_node(0)
    assert nn.policy("bind:0", prefault=True) is nn.on_node(0, prefault="touch")
    # equal values from other spellings share it too
    assert nn.on_node(np.int64(0)) is nn.on_node(0) is nn.on_node([0]) is nn.on_node("0")


def test_a_cached_scope_nests_and_serves_several_threads_at_once():
    import threading

    errors, barrier = [], threading.Barrier(4)

    def work():
        try:
            for _ in range(200):
                with nn.on_node(0):
                    barrier.wait(10) if _ == 0 else None
                    with nn.interleaved():
                        assert nn.current_policy() == nn.Interleave()
                        with nn.on_node(0):
                            assert nn.current_policy() == nn.Bind(0)
                    assert nn.current_policy() == nn.Bind(0)
                assert nn.current_policy() is None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_cached_scopes_are_forgotten_with_their_handlers():
    scope = nn.on_node(0)
    with scope:
        pass
    nn.forget_handlers()
    assert nn.on_node(0) is not scope  # a new scope, a new handler
    with nn.on_node(0):
        assert nn.current_policy() == nn.Bind(0)
    with scope:  # the old object still works: it re-resolves its handler
        assert nn.current_policy() == nn.Bind(0)


# --- a scope held across yield, exited out of order -------------------------------


def test_a_scope_held_across_yield_does_not_outlive_every_with():
    # the example: the generator's scope exits after the caller's
    def gen():
        with nn.on_node(0):
            yield 1
            yield 2

    with pytest.warns(nn.NumaWarning, match="still open") as record:
        with nn.interleaved():
            g = gen()
            next(g)
        # the caller's with has ended; the generator's scope is still open
        assert nn.current_policy() == nn.Bind(0)
        list(g)
    assert record[0].filename == __file__
    assert nn.current_policy() is None  # was: Interleave, for good
    a = np.ones(1 << 20)
    assert nn.placement(a).requested is None


def test_an_inner_generator_scope_closed_inside_a_later_caller_scope():
    # the other order: the generator's scope opens first and closes inside the caller's
    def gen():
        with nn.on_node(0):
            yield 1
            yield 2

    g = gen()
    next(g)  # leaks Bind(0) into the caller until the generator's with ends
    with pytest.warns(nn.NumaWarning, match="still open"):
        with nn.interleaved():
            list(g)  # exits the generator's scope under the caller's
            assert nn.current_policy() == nn.Interleave()  # the caller's, still
        # leaving the caller's scope restores what was there before both
    assert nn.current_policy() is None


def test_an_async_generator_scope_held_across_yield_and_tasks():
    import asyncio

    async def agen():
        with nn.on_node(0):
            yield 1
            yield 2

    async def first(g):
        with nn.interleaved():
            await g.__anext__()
        return nn.current_policy()  # this task's context still has the open scope

    async def second(g):
        async for _ in g:  # finishes the generator in another task's context
            pass
        return nn.current_policy()

    async def main():
        g = agen()
        with pytest.warns(nn.NumaWarning):
            left_in_first = await asyncio.create_task(first(g))
        with pytest.warns(nn.NumaWarning, match="not open"):
            in_second = await asyncio.create_task(second(g))
        return left_in_first, in_second, nn.current_policy()

    left_in_first, in_second, here = asyncio.run(main())
    assert left_in_first == nn.Bind(0)  # the generator's own scope, still open there
    assert in_second is None  # nothing leaked into the task that closed it
    assert here is None and nn.current_policy() is None


def test_tasks_each_unwind_their_own_scopes_in_any_interleaving():
    import asyncio

    async def body(scope, go, done):
        with scope:
            await go.wait()
            assert nn.current_policy() == scope.policy
        done.set()
        return nn.current_policy()

    async def main():
        e1, e2, d1, d2 = (asyncio.Event() for _ in range(4))
        with nn.interleaved():
            t1 = asyncio.create_task(body(nn.on_node(0), e1, d1))
            t2 = asyncio.create_task(body(nn.on_node(0, strict=True), e2, d2))
            await asyncio.sleep(0)
            e1.set()  # t1 exits first although t2 entered later
            await d1.wait()
            e2.set()
            results = await asyncio.gather(t1, t2)
        return results, nn.current_policy()

    results, after = asyncio.run(main())
    assert results == [nn.Interleave(), nn.Interleave()] and after is None


# --- warnings name the user's line ------------------------------------------------


def test_soft_warnings_name_the_callers_file_for_every_path():
    import errno
    import warnings

    from numa_numpy._kernel.lib import lib

    def refused(make):
        nn.forget_handlers()  # a new handler: probed (and refused) again
        lib.nn_inject_fault(lib.NN_FAULT_MBIND, errno.EPERM, 1)
        try:
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                make()
        finally:
            lib.nn_inject_fault(lib.NN_FAULT_MBIND, 0, 0)
        ours = [w for w in record if issubclass(w.category, nn.NumaWarning)]
        assert ours, "no NumaWarning"
        return ours

    def scope():
        with nn.on_node(0):
            pass

    @nn.on_node(0)
    def decorated():
        return 1

    def region():
        nn.NumaRegion(1 << 16, node=0).close()

    for make in (
        scope,
        decorated,
        lambda: nn.numa_zeros(10, node=0),
        lambda: nn.policy("bind:0").handler,
        lambda: nn.interleaved_ones(10),
        region,
    ):
        for w in refused(make):
            assert w.filename == __file__, (make, w.filename, str(w.message))
    nn.forget_handlers()


def test_a_scope_open_in_a_copied_context_exits_there(handler_name):
    # a task or copy_context() made inside a scope holds it too; exiting it there
    # restores what the scope replaced, though the token belongs to the parent
    import contextvars

    scope = nn.on_node(0)
    scope.__enter__()
    copy = contextvars.copy_context()
    scope.__exit__(None, None, None)
    assert nn.current_policy() is None

    def inside():
        assert nn.current_policy() == nn.Bind(0)
        scope.__exit__(None, None, None)
        return nn.current_policy(), handler_name()

    assert copy.run(inside) == (None, "default_allocator")

