"""Node teams over their whole life: entered from threads and asyncio tasks,
stopped while other threads use them, forked, collected without close(), and
overlapping with other teams (the BLAS/OpenMP pool caps are process-wide).

Every wait on a thread, task or child process here has a deadline: a hang is
a failure, not a stuck suite.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import numa_numpy as nn

HANG = 30  # seconds: a deadline for a hang, not a timing claim


def _team_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("numa-team-")]


def _wait_no_team_threads(timeout: float = HANG) -> None:
    deadline = time.monotonic() + timeout
    while _team_threads() and time.monotonic() < deadline:
        time.sleep(0.01)  # workers of a collected team stop on their own
    assert _team_threads() == []


def _pools() -> list[int]:
    return [p["num_threads"] for p in threadpool_info()]


@pytest.fixture
def baseline_pools():
    """A known pool size (3) that no team below asks for, restored afterwards."""
    if not threadpool_info():
        pytest.skip("NumPy loaded no BLAS that threadpoolctl can see")
    with threadpool_limits(limits=3):
        if set(_pools()) != {3}:
            pytest.skip(f"the pools refuse 3 threads: {_pools()}")
        yield [3] * len(_pools())


def _two_workers() -> int:
    """Two workers on the first worker node when it has two CPUs, else one."""
    topo = nn.topology()
    node = nn.node_team().worker_nodes[0]
    return min(2, len(set(topo.node(node).cpus) & set(topo.allowed_cpus)))


# -- asyncio tasks and threads (issue 22, item 3) ------------------------------------


def test_one_team_entered_by_two_asyncio_tasks():
    team = nn.node_team(threads_per_node=1)
    seen: list[bool] = []

    async def user() -> None:
        seen.append(nn.active_team() is None)
        with team:
            seen.append(nn.active_team() is team and team.running)
            await asyncio.sleep(0.01)  # the other task enters and leaves meanwhile
            seen.append(nn.active_team() is team and team.running)
        seen.append(nn.active_team() is None)

    async def main() -> object:
        await asyncio.wait_for(asyncio.gather(user(), user(), user()), HANG)
        return nn.active_team()

    assert asyncio.run(main()) is None
    assert seen == [True] * 12
    assert not team.running
    _wait_no_team_threads()


def test_teams_entered_from_threads_and_tasks_at_once():
    a = nn.partitioned_full((256, 3), 2.0)
    teams = [nn.node_team(threads_per_node=1, min_bytes=1) for _ in range(2)]
    errors: list[BaseException] = []

    async def task(k: int) -> None:
        outer, inner = teams[k % 2], teams[(k + 1) % 2]
        with outer:
            await asyncio.sleep(0.001 * (k % 3))
            assert nn.active_team() is outer
            with inner:
                await asyncio.sleep(0.001 * (k % 2))
                assert nn.active_team() is inner
                assert float((a * k).sum()) == 2.0 * k * a.size
            assert nn.active_team() is outer
        assert nn.active_team() is None

    async def tasks(k: int) -> None:
        await asyncio.wait_for(asyncio.gather(*(task(k + j) for j in range(4))), HANG)

    def thread(k: int) -> None:
        try:
            for _ in range(5):
                asyncio.run(tasks(k))
                with teams[k % 2]:
                    assert nn.active_team() is teams[k % 2]
                assert nn.active_team() is None
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(k,), daemon=True) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    assert errors == [], "".join(traceback.format_exception(errors[0]))
    assert not any(t.running for t in teams)
    _wait_no_team_threads()


def test_teams_left_out_of_order_restore_what_each_replaced():
    first, second = nn.node_team(threads_per_node=1), nn.node_team(threads_per_node=1)
    first.__enter__()
    second.__enter__()
    assert nn.active_team() is second
    first.__exit__(None, None, None)  # the older entry leaves first
    assert nn.active_team() is second and not first.running
    second.__exit__(None, None, None)
    assert nn.active_team() is None  # not the stale first team
    assert not second.running


def test_exit_in_a_context_that_did_not_enter_warns_and_still_closes():
    team = nn.node_team(threads_per_node=1)
    team.__enter__()
    with pytest.warns(RuntimeWarning, match="not entered"):
        contextvars.Context().run(team.__exit__, None, None, None)
    assert not team.running  # the entry's start() was undone
    assert nn.active_team() is team  # the entering context keeps its view
    team.__exit__(None, None, None)  # this context's entry: its start() is gone already
    assert nn.active_team() is None and not team.running


# -- fork (item 7) -------------------------------------------------------------------


def _wait_for_child(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None (after killing it) if it has not exited in time."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)  # polling a child for exit; not synchronisation


def test_fork_inside_a_team_the_child_computes_and_never_hangs():
    a = nn.partitioned_full((4096, 2), 1.0)
    team = nn.node_team(threads_per_node=_two_workers(), min_bytes=1)
    before = _pools()
    read, write = os.pipe()
    with team:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            os.close(read)
            report = []
            try:
                report.append(nn.active_team() is team)  # the context is inherited
                report.append(team.running)  # the workers are not
                report.append(float((a + 1).sum()))  # on this thread, no hang
                try:
                    team.on_each_worker(lambda: 1)
                    report.append("ran")
                except nn.NumaError as exc:
                    report.append("fork" in str(exc))
                report.append(_pools() == before)  # no team runs in the child
                with team:  # entered again: workers of the child's own
                    report.append(float((a + 2).sum()))
                    report.append(team.on_each_worker(lambda: 1) == [1] * len(team.workers()))
                report.append(not team.running)
            except BaseException:
                report.append(traceback.format_exc())
            finally:
                os.write(write, repr(report).encode())
                os._exit(0)
        os.close(write)
        code = _wait_for_child(pid, HANG)
        with os.fdopen(read) as f:
            report = f.read()
        assert code is not None, f"the forked child hung after {report!r}"
        assert report == repr([True, False, 4.0 * 4096, True, True, 6.0 * 4096, True, True])
        assert float((a + 1).sum()) == 4.0 * 4096  # the parent's team is untouched
        assert team.running
    assert not team.running


# -- stopped while in use (item 8) ---------------------------------------------------


def test_team_stopped_and_started_while_another_thread_uses_it():
    a = nn.partitioned_full((4096, 2), 1.0)
    team = nn.node_team(threads_per_node=_two_workers(), min_bytes=1)
    with team:
        ctx = contextvars.copy_context()  # the user thread sees the team active
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0, 0]

    def user() -> None:
        try:
            while not stop.is_set():
                assert float((a + 1).sum()) == 2.0 * a.size  # the ufunc and the reduction
                try:
                    assert team.on_each_worker(lambda: 7) == [7] * sum(team.threads.values())
                    done[1] += 1
                except nn.NumaError:  # run() without assist: an error, not a hang
                    pass
                done[0] += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=ctx.run, args=(user,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        team.start()
        time.sleep(0.0005)
        team.close()
    stop.set()
    thread.join(HANG)
    assert not thread.is_alive(), "the user thread hangs on a task never run"
    assert errors == [], "".join(traceback.format_exception(errors[0]))
    assert done[0] > 0
    assert not team.running
    _wait_no_team_threads()


ASYNC_OWNER = """
import asyncio, time
import numa_numpy as nn

a = nn.partitioned_full((4096, 2), 1.0)
team = nn.node_team(threads_per_node={workers}, min_bytes=1)

def loop(seconds):
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        assert float((a + 1).sum()) == 2.0 * a.size
        n += 1
    return n

async def main():
    with team:  # the task's context (and to_thread's copy of it) sees the team
        user = asyncio.create_task(asyncio.to_thread(loop, 1.0))
    while not user.done():
        team.start()
        await asyncio.sleep(0)
        team.close()
        await asyncio.sleep(0)
    return await user

print("iterations", asyncio.run(main()) > 0)
"""


def test_team_stopped_while_asyncio_to_thread_uses_it():
    source = textwrap.dedent(ASYNC_OWNER.format(workers=_two_workers()))
    try:
        done = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, timeout=HANG * 2
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"asyncio.run hangs (a task queued to a stopped team): {exc.stderr!r}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "iterations True"


# -- BLAS/OpenMP pools (items 9, 10) -------------------------------------------------


def test_a_team_collected_without_close_releases_the_pool_cap(baseline_pools):
    team = nn.node_team(threads_per_node=1, blas_threads=1)
    team.start()
    assert _pools() == [1] * len(baseline_pools)
    del team
    gc.collect()
    _wait_no_team_threads()
    assert _pools() == baseline_pools


def test_overlapping_teams_share_one_reference_counted_cap(baseline_pools):
    ncpu = min(len(nn.topology().node(n).cpus) for n in nn.node_team().worker_nodes)
    if ncpu < 2:
        pytest.skip("needs a node with two CPUs (blas_threads=2)")
    a = nn.node_team(threads_per_node=1, blas_threads=1)
    b = nn.node_team(threads_per_node=1, blas_threads=2)
    ones, twos = [1] * len(baseline_pools), [2] * len(baseline_pools)
    a.start()
    assert _pools() == ones
    b.start()
    assert _pools() == ones  # the smaller cap of the two running teams
    a.close()
    assert _pools() == twos  # b still runs: its cap, not the originals
    b.close()
    assert _pools() == baseline_pools  # the originals, not a's cap
    b.start()
    a.start()
    b.close()
    assert _pools() == ones
    a.close()
    assert _pools() == baseline_pools


def test_pool_originals_are_those_before_the_first_team():
    if not threadpool_info():
        pytest.skip("NumPy loaded no BLAS that threadpoolctl can see")
    before = _pools()
    with nn.node_team(threads_per_node=1, blas_threads=1):
        with nn.node_team(threads_per_node=1, blas_threads=1):
            assert set(_pools()) == {1}
        assert set(_pools()) == {1}
    assert _pools() == before


# -- run(assist=True): the caller's own task (item 18) -------------------------------


def test_run_assist_raises_the_callers_own_exception():
    team = nn.node_team(threads_per_node=_two_workers())
    ran: list[str] = []

    def boom() -> None:
        ran.append(threading.current_thread().name)
        raise KeyError("the caller's own block")

    def fine() -> int:
        ran.append(threading.current_thread().name)
        return 1

    with team:
        node = nn.current_node()
        if node not in team.worker_nodes:
            pytest.skip("the calling thread runs on a node without workers")
        with pytest.raises(KeyError, match="caller's own block") as info:
            team.run([(node, 0, boom, ()), (node, 1, fine, ())], assist=True)
        assert ran[0] == threading.current_thread().name  # the caller ran it
        assert len(ran) == 2  # the worker's task ran too, before run() returned
        if sys.version_info >= (3, 11):
            assert any("calling thread" in note for note in info.value.__notes__)
        # a worker's exception after the caller's value: raised as well
        with pytest.raises(KeyError, match="caller's own block"):
            team.run([(node, 0, fine, ()), (node, 1, boom, ())], assist=True)
        assert team.run([(node, 0, fine, ()), (node, 1, fine, ())], assist=True) == [1, 1]
