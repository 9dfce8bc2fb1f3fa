import os
import threading

import numpy as np
import pytest

import numa_numpy as nn
from kernel_view import numa_maps_entry


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
