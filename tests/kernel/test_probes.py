"""The system-call probes of the doctor and `capabilities`
(numa_numpy._kernel.probes): they return when the kernel permits the call, and
raise our error, with the errno, its name and the step, when it refuses."""

from __future__ import annotations

import errno
import os

import pytest
from fixtures.faults import injected

import numa_numpy as nn
from numa_numpy._kernel import probes
from numa_numpy._kernel.lib import lib
from numa_numpy._policies.cstructs import binding_struct
from numa_numpy._policies.policy import Bind

CALLS = ["mbind", "set_mempolicy", "get_mempolicy", "move_pages", "migrate_pages"]


@pytest.fixture
def binding():
    topo = nn.topology()
    binding, mask = binding_struct(Bind(topo.usable_nodes[0]), topo)
    yield binding
    del mask


def test_base_page_size():
    assert probes.base_page_size() == os.sysconf("SC_PAGESIZE")


def test_every_call_is_permitted_here(binding):
    probes.bind_one_page(binding)
    probes.set_policy_permitted()
    probes.get_policy()
    probes.query_one_page()
    probes.migrate_within(nn.topology().allowed_nodes)
    assert probes.policy_calls(binding, nn.topology().allowed_nodes) == dict.fromkeys(CALLS)


@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_a_refused_mbind_says_so(binding, err):
    with injected(lib.NN_FAULT_MBIND, err), pytest.raises(nn.NumaError) as info:
        probes.bind_one_page(binding, "binding a probe")
    name = errno.errorcode[err]
    assert (info.value.errno, info.value.errno_name, info.value.step) == (err, name, "mbind")
    assert str(info.value) == f"binding a probe: {os.strerror(err)} ({name}, originated from mbind)"
    with injected(lib.NN_FAULT_MBIND, err):
        calls = probes.policy_calls(binding, (0,))
    assert str(calls["mbind"]).startswith(f"mbind: {os.strerror(err)} ({name}")
    assert [c for c, e in calls.items() if e is not None] == ["mbind"]


def test_a_failed_mapping_is_no_answer_about_mbind(binding):
    with injected(lib.NN_FAULT_MMAP, errno.ENOMEM), pytest.raises(nn.NumaError) as info:
        probes.bind_one_page(binding)
    assert info.value.step == "mmap" and "originated from mmap" in str(info.value)
    with injected(lib.NN_FAULT_MMAP, errno.ENOMEM):
        calls = probes.policy_calls(binding, (0,))
    assert "mbind" not in calls and list(calls) == CALLS[1:]


@pytest.mark.skipif(
    not hasattr(lib, "NN_FAULT_SET_MEMPOLICY"), reason="this build has no set_mempolicy fault"
)
def test_a_refused_set_mempolicy_is_raised():
    with injected(lib.NN_FAULT_SET_MEMPOLICY, errno.EPERM), pytest.raises(nn.NumaError) as info:
        probes.set_policy_permitted()
    assert (info.value.errno_name, info.value.step) == ("EPERM", "set_mempolicy")
    assert str(info.value).startswith("set_mempolicy: Operation not permitted (EPERM")


def test_asking_set_mempolicy_leaves_the_threads_policy_as_it_was():
    node = nn.topology().usable_nodes[0]
    with nn.thread_policy(Bind(node)):
        before = nn.get_thread_policy()
        probes.set_policy_permitted()
        assert nn.get_thread_policy() == before == Bind(node)


def test_the_probe_runs_at_interpreter_shutdown(tmp_path):
    # CPython 3.12.0-3.12.1 refuse new threads in atexit callbacks, where the
    # run report asks the doctor; the probe starts none.
    import subprocess
    import sys

    code = (
        "import atexit\n"
        "from numa_numpy._kernel import probes\n"
        "atexit.register(lambda: (probes.set_policy_permitted(), print('asked')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "asked", out.stderr
