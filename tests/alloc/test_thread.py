import os
import threading

import numpy as np
import pytest
from kernel_view import numa_maps_entry

import numa_numpy as nn


def test_pinned_sets_and_restores_affinity():
    before = os.sched_getaffinity(0)
    cpu = max(before)
    with nn.pinned(cpus=[cpu]):
        assert os.sched_getaffinity(0) == {cpu}
        assert nn.current_cpu() == cpu
        with nn.pinned(node=0):
            assert os.sched_getaffinity(0) == set(nn.topology().node(0).cpus) & before
        assert os.sched_getaffinity(0) == {cpu}
    assert os.sched_getaffinity(0) == before


def test_pinned_decorator_and_errors():
    @nn.pinned(cpus=[0])
    def where():
        return os.sched_getaffinity(0)
    assert where() == {0}
    with pytest.raises(TypeError):
        nn.pinned()
    with pytest.raises(nn.InvalidNodeError, match="does not exist"):
        nn.pinned(node=9)
    with pytest.raises(nn.InvalidNodeError, match="allowed for this process"):
        nn.pinned(cpus=[4096])


def test_thread_policy_sets_reads_and_restores():
    assert nn.get_thread_policy() == nn.Default()
    with nn.thread_policy("bind:0"):
        assert nn.get_thread_policy() == nn.Bind(0)
        with nn.thread_policy(nn.Interleave(0, static_nodes=True)):
            assert nn.get_thread_policy() == nn.Interleave(0, static_nodes=True)
        assert nn.get_thread_policy() == nn.Bind(0)
        buf = bytearray(1 << 22)  # a non-NumPy allocation follows the thread policy
        assert numa_maps_entry(np.frombuffer(buf, np.uint8).ctypes.data).policy in (
            "bind:0", "default")  # glibc may reuse an older heap mapping
    assert nn.get_thread_policy() == nn.Default()


def test_thread_policy_is_per_thread_and_inherited_by_new_threads():
    seen = {}
    asked, answered = threading.Event(), threading.Event()

    def existing():
        asked.wait(30)
        seen["existing"] = nn.get_thread_policy()
        answered.set()

    t = threading.Thread(target=existing)
    t.start()
    with nn.thread_policy("bind:0"):
        asked.set()
        answered.wait(30)
        child = threading.Thread(target=lambda: seen.setdefault("new", nn.get_thread_policy()))
        child.start()
        child.join()
    t.join()
    assert seen["existing"] == nn.Default()  # another thread's policy is untouched
    assert seen["new"] == nn.Bind(0)  # the kernel copies the creator's policy at clone


def test_thread_policy_refused_is_strict():
    with pytest.raises(nn.InvalidNodeError):
        with nn.thread_policy("bind:50"):
            pass  # pragma: no cover
    with pytest.raises(TypeError, match="home_node"):
        nn.thread_policy(nn.Bind(0, home_node=0))


def test_home_node_is_applied():
    a = nn.numa_zeros(1 << 18, policy=nn.Bind(0, home_node=0), strict=True)
    assert nn.placement(a).policy == nn.Bind(0)


def test_scope_with_thread_sets_both_and_restores_both(handler_name):
    with nn.on_node(0, thread=True):
        assert nn.get_thread_policy() == nn.Bind(0)
        assert handler_name() == "numa_numpy"
        with nn.policy("interleave:0", thread=True):
            assert nn.get_thread_policy() == nn.Interleave(0)
        assert nn.get_thread_policy() == nn.Bind(0)
    assert nn.get_thread_policy() == nn.Default()
    with nn.on_node(0):  # without thread=True the task policy is left alone
        assert nn.get_thread_policy() == nn.Default()


def _two_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    return cpus[0], cpus[1]


def test_pinned_and_thread_policy_in_interleaved_tasks_restore_their_own_state():
    # regression: one per-thread stack for both kinds, so a task leaving pinned()
    # popped the other task's saved policy (TypeError: 'Default' object is not iterable)
    import asyncio

    c0, _ = _two_cpus()
    before = os.sched_getaffinity(0)

    async def pin(entered, release):
        with nn.pinned(cpus=[c0]):
            entered.set()
            await release.wait()
        return os.sched_getaffinity(0)

    async def policy(pinned_in, release):
        await pinned_in.wait()
        with nn.thread_policy("bind:0"):
            release.set()
            await asyncio.sleep(0.01)  # pin() leaves pinned() while this is inside
            inside = nn.get_thread_policy()
        return inside

    async def main():
        entered, release = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(pin(entered, release), policy(entered, release))

    affinity_after_pin, inside = asyncio.run(main())
    assert affinity_after_pin == before  # exactly what pinned's own entry saved
    assert inside == nn.Bind(0)
    assert os.sched_getaffinity(0) == before
    assert nn.get_thread_policy() == nn.Default()


def test_same_kind_thread_scopes_overlapping_across_awaits_raise_a_clear_error():
    import asyncio

    c0, c1 = _two_cpus()
    before = os.sched_getaffinity(0)

    async def first(entered, release):
        with nn.pinned(cpus=[c0]):
            entered.set()
            await release.wait()  # leaves while second() is still inside its pinned()

    async def second(entered, release, done):
        await entered.wait()
        with nn.pinned(cpus=[c1]):
            release.set()
            await done.wait()
            inside = os.sched_getaffinity(0)
        return inside

    async def main():
        entered, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(first(entered, release))
        t2 = asyncio.create_task(second(entered, release, done))
        with pytest.raises(nn.NumaError, match="belong to the OS thread") as info:
            await t1
        assert "pinned" in str(info.value)
        done.set()
        return await t2

    inside = asyncio.run(main())
    assert inside == {c1}  # the thread kept the newer setting
    assert os.sched_getaffinity(0) == before  # and the newer exit restored the original


def test_thread_policy_out_of_order_in_generators_raises_and_restores():
    def gen():
        with nn.thread_policy("bind:0"):
            yield

    g = gen()
    next(g)
    scope = nn.thread_policy(nn.Interleave(0))
    scope.__enter__()
    with pytest.raises(nn.NumaError, match="exited while"):
        list(g)  # the generator's scope exits under the later one
    assert nn.get_thread_policy() == nn.Interleave(0)
    scope.__exit__(None, None, None)
    assert nn.get_thread_policy() == nn.Default()


def test_thread_policy_exit_checks_the_restore():
    import errno

    from numa_numpy._alloc.thread import _set_thread_policy
    from numa_numpy._kernel.lib import lib

    scope = nn.thread_policy("bind:0")
    scope.__enter__()
    lib.nn_inject_fault(lib.NN_FAULT_SET_MEMPOLICY, errno.EPERM, 1)
    try:
        with pytest.raises(nn.NumaError, match=r"cannot restore .*originated from set_mempolicy"):
            scope.__exit__(None, None, None)
    finally:
        lib.nn_inject_fault(lib.NN_FAULT_SET_MEMPOLICY, 0, 0)
        assert _set_thread_policy(nn.Default()) is None  # set, no refusal
    assert nn.get_thread_policy() == nn.Default()
