"""The README's promises about shared names: the creator unlinks them whenever
Python sees it end (multiprocessing workers included), attaching or forked
processes never do, and what SIGKILL leaves behind `cleanup_shared` removes."""

import fcntl
import json
import multiprocessing as mp
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import numa_numpy as nn

SHM = Path("/dev/shm")
_KEPT = []  # a worker's arrays, alive until the worker ends


@pytest.fixture
def sweeping():
    """Serialize with other test sessions on this host that sweep /dev/shm: their
    cleanup_shared() would remove the segment this test just orphaned."""
    with open(Path(tempfile.gettempdir()) / "numa_numpy-tests-cleanup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _create_and_keep(i):
    _KEPT.extend(nn.shared_zeros(100, node=0) for _ in range(2))
    return os.getpid(), [a.shared_name for a in _KEPT]


def _names(results):
    return {name for _, names in results for name in names}


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_pool_workers_unlink_what_they_created_when_closed(method):
    pool = mp.get_context(method).Pool(2)
    try:
        names = _names(pool.map(_create_and_keep, range(6), chunksize=1))
        assert names and all((SHM / n).exists() for n in names)  # alive while the workers are
    finally:
        pool.close()
        pool.join()
    assert [n for n in names if (SHM / n).exists()] == []


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_process_pool_executor_workers_unlink_what_they_created(method):
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as pool:
        names = _names(pool.map(_create_and_keep, range(6)))
        assert names and all((SHM / n).exists() for n in names)
    assert [n for n in names if (SHM / n).exists()] == []


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_what_terminated_pool_workers_leave_cleanup_removes(method, sweeping):
    # `with Pool()` ends with terminate(): SIGTERM kills a worker before any
    # Python code of it can run, unless it had finished first
    with mp.get_context(method).Pool(2) as pool:
        names = _names(pool.map(_create_and_keep, range(6), chunksize=1))
        assert names and all((SHM / n).exists() for n in names)
    left = {n for n in names if (SHM / n).exists()}
    assert left <= set(nn.cleanup_shared(dry_run=True))  # every creator is gone
    assert left <= set(nn.cleanup_shared())
    assert [n for n in names if (SHM / n).exists()] == []


def _touch(a):
    a[:] = 1


def _exit_at_once(a):
    a[:] = 2
    os._exit(0)  # no atexit, no finalizers: the child owns nothing to unlink


@pytest.mark.parametrize("target", [_touch, _exit_at_once])
def test_a_forked_child_never_unlinks_its_parents_names(target):
    a = nn.shared_zeros(10, node=0)
    proc = mp.get_context("fork").Process(target=target, args=(a,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert (SHM / a.shared_name).exists() and a.sum() in (10, 20)
    b = nn.attach_shared(a.shared_name)  # still attachable by name
    assert b.shape == (10,)


def _forked_child_creates_then_exits(name_out):
    a = nn.shared_zeros(10, node=0)
    name_out.put(a.shared_name)
    # the inherited weakref finalizers and atexit entries are the parent's: the
    # child's own array must still be unlinked when the child ends normally


def test_a_forked_child_unlinks_its_own_names():
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_forked_child_creates_then_exits, args=(queue,))
    proc.start()
    name = queue.get(timeout=60)
    proc.join(60)
    assert proc.exitcode == 0 and not (SHM / name).exists()


CHILD = """
import os, signal, sys, time
import numa_numpy as nn
a = nn.shared_zeros(10, node=0)
print(a.shared_name, flush=True)
how = sys.argv[1]
if how == "exception":
    raise RuntimeError("boom")
if how == "exit":
    sys.exit(3)
time.sleep(120)
"""


def _child(how):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().strip()


@pytest.mark.parametrize("how", ["exception", "exit"])
def test_a_script_unlinks_at_exit_however_python_ends(how):
    proc, name = _child(how)
    assert name.startswith("numa_numpy_")
    proc.wait(60)
    assert proc.returncode != 0 and not (SHM / name).exists()


def test_sigkill_leaves_the_segment_and_cleanup_removes_it(sweeping):
    proc, name = _child("sleep")
    try:
        assert name not in nn.cleanup_shared(dry_run=True)  # its creator lives
        assert name not in nn.cleanup_shared()
        assert (SHM / name).exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    assert (SHM / name).exists()  # SIGKILL runs nothing in the process
    assert name in nn.cleanup_shared(dry_run=True)
    assert (SHM / name).exists()  # a dry run removes nothing
    assert name in nn.cleanup_shared()
    assert not (SHM / name).exists()
    assert name not in nn.cleanup_shared(dry_run=True)


def test_cleanup_cli(sweeping):
    proc, name = _child("sleep")
    proc.kill()
    proc.wait(60)
    cli = [sys.executable, "-m", "numa_numpy", "cleanup"]
    dry = subprocess.run([*cli, "--dry-run", "--json"], capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0 and name in json.loads(dry.stdout)["segments"]
    assert json.loads(dry.stdout)["dry_run"] is True and (SHM / name).exists()
    out = subprocess.run([*cli, "--dry-run"], capture_output=True, text=True, timeout=60)
    assert f"/dev/shm/{name}" in out.stdout and "would remove" in out.stdout
    out = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"/dev/shm/{name}" in out.stdout
    assert not (SHM / name).exists()


def _set_creator(name, *, start=None, namespace=None):
    with open(SHM / name, "r+b") as f:
        if start is not None:
            f.seek(40)
            f.write(struct.pack("<Q", start))
        if namespace is not None:
            f.seek(48)
            f.write(struct.pack("<Q", namespace))


def test_cleanup_is_not_fooled_by_a_reused_pid(sweeping):
    a = nn.shared_zeros(10, node=0)
    name = a.shared_name
    assert name not in nn.cleanup_shared()  # this process made it and lives
    # the same pid with another start time: the pid now belongs to another process
    _set_creator(name, start=1)
    assert name in nn.cleanup_shared() and not (SHM / name).exists()
    a[:] = 5  # the mapping outlives the name
    assert a.sum() == 50


def test_cleanup_leaves_other_pid_namespaces_alone(sweeping):
    a = nn.shared_zeros(10, node=0)
    _set_creator(a.shared_name, start=1, namespace=12345)  # not ours: cannot judge
    assert a.shared_name not in nn.cleanup_shared()
    assert (SHM / a.shared_name).exists()


def test_cleanup_removes_format_1_leftovers_only_when_their_pid_is_gone(sweeping):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, timeout=60)
    dead_pid = int(gone.stdout)
    header = b'{"magic": "numa_numpy-shared-1", "shape": [1]}'.ljust(8192, b"\0")
    dead = SHM / f"numa_numpy_{dead_pid}_0123456789ab"
    alive = SHM / f"numa_numpy_{os.getpid()}_0123456789ab"
    foreign = SHM / f"numa_numpy_{dead_pid}_not_ours"
    for path, content in ((dead, header), (alive, header), (foreign, b"other program")):
        path.write_bytes(content)
    try:
        removed = nn.cleanup_shared()
        assert dead.name in removed and not dead.exists()
        assert alive.exists() and foreign.exists()
    finally:
        for path in (dead, alive, foreign):
            path.unlink(missing_ok=True)


def _attach_write_and_end(name, how):
    b = nn.attach_shared(name)
    b[:] = 4
    if how == "exception":
        raise RuntimeError("the attacher fails")


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("how", ["return", "exception"])
def test_attaching_processes_never_unlink(method, how):
    a = nn.shared_zeros(10, node=0)
    proc = mp.get_context(method).Process(target=_attach_write_and_end, args=(a.shared_name, how))
    proc.start()
    proc.join(60)
    assert proc.exitcode == (0 if how == "return" else 1)
    assert a.sum() == 40 and (SHM / a.shared_name).exists()
    assert nn.attach_shared(a.shared_name).sum() == 40


def _receive(a):  # a pickled SharedArray: the worker attaches
    return float(a.sum())


def test_workers_that_received_the_array_never_unlink():
    a = nn.shared_zeros(10, node=0)
    a[:] = 1
    pool = mp.get_context("fork").Pool(2)
    try:
        assert pool.map(_receive, [a] * 4) == [10.0] * 4
    finally:
        pool.close()  # the workers run their exit hooks
        pool.join()
    assert (SHM / a.shared_name).exists()


def _create_report_and_wait(queue):
    _KEPT.append(nn.shared_zeros(10, node=0))
    queue.put(_KEPT[-1].shared_name)
    time.sleep(120)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_killed_by_sigterm_leaves_its_segment_to_cleanup(method, sweeping):
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_create_report_and_wait, args=(queue,))
    proc.start()
    name = queue.get(timeout=60)
    proc.terminate()  # what Pool.terminate() does to its workers
    proc.join(60)
    assert proc.exitcode == -signal.SIGTERM  # it dies at once, as without numa_numpy
    assert (SHM / name).exists()
    assert name in nn.cleanup_shared() and not (SHM / name).exists()
