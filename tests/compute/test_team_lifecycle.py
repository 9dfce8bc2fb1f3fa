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
import weakref

import numpy as np
import pytest
from fixtures.teams import HANG, pool_sizes, team_threads, wait_no_team_threads
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from processes import wait_for_child

import numa_numpy as nn


def _run_threads(target, args, errors, hang_message):
    """target(arg) on a thread per arg, joined with a deadline for a hang; then
    neither a hang nor an exception (the targets append theirs to `errors`)."""
    threads = [threading.Thread(target=target, args=(a,), daemon=True) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert not any(t.is_alive() for t in threads), hang_message
    assert errors == [], "".join(traceback.format_exception(errors[0]))


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
    wait_no_team_threads()


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

    _run_threads(thread, range(3), errors, "a thread hangs")
    assert not any(t.running for t in teams)
    wait_no_team_threads()


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


def test_a_launch_that_fails_half_way_leaves_no_worker_behind(monkeypatch):
    from numa_numpy._compute import team as _team

    team = nn.node_team(threads_per_node=_two_workers())
    if sum(team.threads.values()) < 2:
        pytest.skip("needs two workers")
    before = pool_sizes()
    start = _team._Worker.start
    calls = []

    def second_fails(self, started):
        calls.append(self)
        if len(calls) == 2:
            raise RuntimeError("can't start new thread")
        start(self, started)

    monkeypatch.setattr(_team._Worker, "start", second_fails)
    with pytest.raises(RuntimeError, match="new thread"):
        team.start()
    assert not team.running and nn.active_team() is None
    wait_no_team_threads(5)  # the first worker was stopped, not left waiting
    assert pool_sizes() == before
    monkeypatch.setattr(_team._Worker, "start", start)
    with team:  # and the team still starts
        assert team.on_each_worker(lambda: 1) == [1] * sum(team.threads.values())


# -- fork (item 7) -------------------------------------------------------------------


def test_fork_inside_a_team_the_child_computes_and_never_hangs():
    a = nn.partitioned_full((4096, 2), 1.0)
    team = nn.node_team(threads_per_node=_two_workers(), min_bytes=1)
    before = pool_sizes()
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
                report.append(pool_sizes() == before)  # no team runs in the child
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
        code = wait_for_child(pid, HANG)
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
    wait_no_team_threads()


def _stop_after_planning(monkeypatch, team):
    """Stop `team` right after it plans a call: another thread's last close()."""
    plan = team.plan

    def plan_then_stop(*args):
        chunks = plan(*args)
        team.close()
        return chunks

    monkeypatch.setattr(team, "plan", plan_then_stop)


@pytest.mark.skipif(
    not hasattr(np.add, "resolve_dtypes"),
    reason="node-parallel ufuncs need NumPy >= 1.24 (ufunc.resolve_dtypes)",
)
def test_a_ufunc_whose_team_stops_just_before_it_submits_runs_on_the_caller(monkeypatch):
    a = nn.partitioned_full((64, 2), 1.0)
    team = nn.node_team(threads_per_node=_two_workers(), min_bytes=1)
    _stop_after_planning(monkeypatch, team)
    with team:
        assert float((a + 1).sum()) == 2.0 * a.size
        assert not team.running
    with team:
        with pytest.raises(nn.NumaError, match="not running"):  # user code: never inline
            team.map_blocks(np.sqrt, a)
    assert not team.running
    wait_no_team_threads()


@pytest.mark.parametrize("make", ["zeros", "full", "ones"])
def test_constructors_whose_team_stops_just_before_they_submit_fill_on_the_caller(
    monkeypatch, make
):
    team = nn.node_team(threads_per_node=_two_workers(), min_bytes=1)
    _stop_after_planning(monkeypatch, team)
    with team:
        if make == "zeros":
            a, want = nn.partitioned_zeros((64, 2)), 0.0
        elif make == "full":
            a, want = nn.partitioned_full((64, 2), 7.0), 7.0
        else:
            a, want = nn.partitioned_ones((64, 2)), 1.0
        assert not team.running
    assert (a == want).all()
    wait_no_team_threads()

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
        assert any("calling thread" in note for note in info.value.__notes__)
        # a worker's exception after the caller's value: raised as well
        with pytest.raises(KeyError, match="caller's own block"):
            team.run([(node, 0, fine, ()), (node, 1, boom, ())], assist=True)
        assert team.run([(node, 0, fine, ()), (node, 1, fine, ())], assist=True) == [1, 1]


# -- hunt: a state machine over teams --------------------------------------------------


class TeamLives(RuleBasedStateMachine):
    """Teams started, closed, entered (nested, out of order, from threads and
    asyncio tasks), forked, collected unclosed, and used for ufuncs, reductions
    and map_blocks, checked against NumPy; after every step: the right active
    team, the right worker threads, and the pools at the running teams' cap or
    at the original sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.teams: list[nn.NodeTeam] = []
        self.starts: dict[int, int] = {}  # id(team) -> start() calls not closed
        self.open: list[nn.NodeTeam] = []  # entered in this context, oldest first
        self.blas = 2 if self._ncpu() >= 2 else 1
        self.baseline = pool_sizes()

    @staticmethod
    def _ncpu() -> int:
        topo = nn.topology()
        node = nn.node_team().worker_nodes[0]
        return len(set(topo.node(node).cpus) & set(topo.allowed_cpus))

    def _count(self, team: nn.NodeTeam) -> int:
        return self.starts[id(team)] + sum(t is team for t in self.open)

    def _pick(self, data: st.DataObject) -> nn.NodeTeam:
        # an index, not the team: hypothesis keeps what it draws (for its report)
        return self.teams[data.draw(st.integers(0, len(self.teams) - 1))]

    @rule(blas=st.integers(1, 2), workers=st.integers(1, 2))
    @precondition(lambda self: len(self.teams) < 3)
    def new_team(self, blas: int, workers: int) -> None:
        blas = min(blas, self.blas)
        workers = max(1, min(workers, self._ncpu() // blas))
        team = nn.node_team(threads_per_node=workers, blas_threads=blas, min_bytes=1)
        self.teams.append(team)
        self.starts[id(team)] = 0

    @rule(data=st.data())
    @precondition(lambda self: self.teams)
    def start(self, data: st.DataObject) -> None:
        team = self._pick(data)
        team.start()
        self.starts[id(team)] += 1

    @rule(data=st.data())
    @precondition(lambda self: self.teams)
    def close(self, data: st.DataObject) -> None:
        team = self._pick(data)
        if self.starts[id(team)] == 0 and any(t is team for t in self.open):
            return  # would undo an entry's start(): covered by exit_entry
        team.close()  # a stopped team: nothing
        self.starts[id(team)] = max(0, self.starts[id(team)] - 1)

    @rule(data=st.data())
    @precondition(lambda self: self.teams and len(self.open) < 4)
    def enter(self, data: st.DataObject) -> None:
        team = self._pick(data)
        team.__enter__()
        self.open.append(team)

    @rule(data=st.data())
    @precondition(lambda self: self.open)
    def exit_entry(self, data: st.DataObject) -> None:
        # usually the innermost; sometimes an older one (out of order)
        i = data.draw(st.integers(0, len(self.open) - 1))
        team = self.open[i]
        # the innermost entry of that team leaves
        j = max(k for k, t in enumerate(self.open) if t is team)
        del self.open[j]
        team.__exit__(None, None, None)

    @rule(data=st.data(), rows=st.integers(2, 300))
    @precondition(lambda self: self.teams)
    def nested_with_compute(self, data: st.DataObject, rows: int) -> None:
        outer, inner = self._pick(data), self._pick(data)
        with outer:
            assert nn.active_team() is outer
            _check_compute(outer, rows)
            with inner:
                assert nn.active_team() is inner
                _check_compute(inner, rows)
            assert nn.active_team() is outer

    @rule(data=st.data(), rows=st.integers(2, 100))
    @precondition(lambda self: self.teams)
    def enter_from_threads(self, data: st.DataObject, rows: int) -> None:
        chosen = [self._pick(data) for _ in range(2)]
        errors: list[BaseException] = []

        def user(team: nn.NodeTeam) -> None:
            try:
                assert nn.active_team() is None
                with team:
                    assert nn.active_team() is team
                    _check_compute(team, rows)
                assert nn.active_team() is None
            except BaseException as exc:  # reported below
                errors.append(exc)

        _run_threads(user, chosen, errors, "a thread entering a team hangs")

    @rule(data=st.data(), rows=st.integers(2, 100))
    @precondition(lambda self: self.teams)
    def enter_from_tasks(self, data: st.DataObject, rows: int) -> None:
        chosen = [self._pick(data) for _ in range(3)]
        expected_outer = self.open[-1] if self.open else None

        async def user(team: nn.NodeTeam, k: int) -> None:
            assert nn.active_team() is expected_outer  # copied from this context
            with team:
                await asyncio.sleep(0.001 * k)
                assert nn.active_team() is team
                await asyncio.to_thread(_check_compute, team, rows)
            assert nn.active_team() is expected_outer

        async def main() -> None:
            await asyncio.wait_for(
                asyncio.gather(*(user(t, k) for k, t in enumerate(chosen))), HANG
            )

        asyncio.run(main())

    @rule(data=st.data(), rows=st.integers(2, 50))
    @precondition(lambda self: self.teams)
    def used_while_started_and_stopped(self, data: st.DataObject, rows: int) -> None:
        team = self._pick(data)
        with team:
            ctx = contextvars.copy_context()  # the thread keeps seeing the team
        errors: list[BaseException] = []

        def user() -> None:
            try:
                for _ in range(10):
                    _check_compute(team, rows)
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=ctx.run, args=(user,), daemon=True)
        thread.start()
        while thread.is_alive():
            team.start()
            team.close()
        thread.join(HANG)
        assert errors == [], "".join(traceback.format_exception(errors[0]))

    @rule(data=st.data())
    @precondition(lambda self: self.teams)
    def error_and_cancel_inside(self, data: st.DataObject) -> None:
        team = self._pick(data)
        with pytest.raises(KeyError):
            with team:
                raise KeyError("inside")

        async def waiter(ready: asyncio.Event) -> None:
            with team:
                ready.set()
                await asyncio.sleep(HANG)  # cancelled here

        async def main() -> None:
            ready = asyncio.Event()
            task = asyncio.create_task(waiter(ready))
            await asyncio.wait_for(ready.wait(), HANG)
            assert team.running
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())

    @rule(data=st.data())
    @precondition(lambda self: any(not any(t is u for u in self.open) for t in self.teams))
    def collect_unclosed(self, data: st.DataObject) -> None:
        free = [t for t in self.teams if not any(t is u for u in self.open)]
        team = free[data.draw(st.integers(0, len(free) - 1))]
        self.teams.remove(team)
        del self.starts[id(team)]
        ref = weakref.ref(team)
        del team, free
        if ref() is not None:  # kept by a cycle (e.g. hypothesis's record of a draw)
            gc.collect()
        assert ref() is None

    @rule(rows=st.integers(2, 100))
    @precondition(lambda self: self.open)
    def fork(self, rows: int) -> None:
        team = self.open[-1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: never return into hypothesis
            code = 1
            try:
                ok = nn.active_team() is team and not team.running
                _check_compute(team, rows)
                with team:
                    _check_compute(team, rows)
                ok = ok and not team_threads() and pool_sizes() == self.baseline
                code = 0 if ok else 2
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        assert wait_for_child(pid, HANG) == 0, "the forked child failed or hung"

    @invariant()
    def active_team_is_the_innermost_entry(self) -> None:
        assert nn.active_team() is (self.open[-1] if self.open else None)

    @invariant()
    def running_matches_the_counts(self) -> None:
        for team in self.teams:
            assert team.running == (self._count(team) > 0), team

    @invariant()
    def worker_threads_are_the_running_teams(self) -> None:
        expected = sum(sum(t.threads.values()) for t in self.teams if t.running)
        deadline = time.monotonic() + HANG
        while len(team_threads()) != expected and time.monotonic() < deadline:
            time.sleep(0.005)  # a collected team's workers stop on their own
        assert len(team_threads()) == expected

    @invariant()
    def pools_at_the_running_teams_cap(self) -> None:
        running = [t.blas_threads for t in self.teams if t.running]
        if running:
            assert set(pool_sizes()) <= {min(running)}
        else:
            assert pool_sizes() == self.baseline

    def teardown(self) -> None:
        for team in reversed(self.open):
            team.__exit__(None, None, None)
        self.open.clear()
        for team in self.teams:
            while team.running:
                team.close()
        self.teams.clear()
        wait_no_team_threads()
        assert pool_sizes() == self.baseline
        assert nn.active_team() is None


def _check_compute(team: nn.NodeTeam, rows: int) -> None:
    """A small partitioned array through the team (or NumPy, when it does not
    run) equals NumPy's result."""
    a = nn.partitioned_zeros((rows, 3))
    expected = np.zeros((rows, 3))
    assert (a.view(np.ndarray) == expected).all()
    a[...] = np.arange(rows * 3, dtype=float).reshape(rows, 3)
    expected[...] = np.arange(rows * 3, dtype=float).reshape(rows, 3)
    np.testing.assert_array_equal(np.asarray(a * 2 + 1), expected * 2 + 1)
    assert float(np.sqrt(a).sum()) == pytest.approx(float(np.sqrt(expected).sum()))
    if team.running:
        try:
            mapped = team.map_blocks(lambda x: x - 1, a)
        except nn.NumaError:  # stopped meanwhile by another user: an error, not a hang
            return
        np.testing.assert_array_equal(np.asarray(mapped), expected - 1)


def test_team_lives_state_machine(baseline_pools):
    run_state_machine_as_test(
        TeamLives,
        settings=settings(max_examples=30, stateful_step_count=12, deadline=None),
    )


def test_run_raises_the_first_failure_in_task_order():
    # several tasks fail: the one listed first is raised, whichever ends first
    team = nn.node_team(threads_per_node=_two_workers())

    def fail_after(seconds: float, label: str) -> None:
        time.sleep(seconds)
        raise ValueError(label)

    with team:
        node = team.worker_nodes[0]
        for assist in (False, True):
            with pytest.raises(ValueError, match="^first"):
                team.run([(node, 0, fail_after, (0.2, "first")),
                          (node, 1, fail_after, (0.0, "second"))], assist=assist)
