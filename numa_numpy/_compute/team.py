"""Node teams: worker threads per NUMA node, pinned to the node's allowed CPUs,
allocating under the node's policy, with BLAS/OpenMP pools capped.

A team is the execution half of node-local compute and knows no arrays: it
runs the tasks it is given on the workers of their nodes. The data half
(partitioned arrays, their ufunc dispatch, ``map_blocks``) is
numa_numpy._compute.parallel, which attaches the team's operations over
arrays (``NodeTeam.map_blocks``); `replicas` holds read-only copies per node.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import queue
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._alloc.scope import on_node
from .._alloc.thread import pinned, thread_policy
from .._kernel.topology import current_node, format_list, topology
from .._policies.policy import Bind, NodesLike, parse_nodes
from ..errors import InvalidNodeError, NumaError
from . import pools as _pools

__all__ = ["NodeTeam", "node_team", "active_team"]

#: Arrays smaller than this many bytes are computed by NumPy on the calling
#: thread even inside a team: below it, handing blocks to workers costs more
#: than it saves (measured on a 2-core host, see benchmarks/teams.py).
DEFAULT_MIN_BYTES = 16 << 20

# The teams entered in this context, innermost first, as a linked list of
# (team, next outer node): a ContextVar of immutable nodes, like the scopes'.
# Each thread and asyncio task has its own; a copied context (a task created,
# asyncio.to_thread, contextvars.copy_context) sees the teams entered where it
# was copied, and never later changes. No ContextVar tokens: leaving a team
# needs nothing from the context that entered it.
_Entry = tuple["NodeTeam", Any]
_ACTIVE: contextvars.ContextVar[_Entry | None] = contextvars.ContextVar(
    "numa_numpy_active_team", default=None
)
_STOP = object()
#: Every team not yet collected, for the fork handler.
_TEAMS: weakref.WeakSet[NodeTeam] = weakref.WeakSet()
#: In a worker thread, ``state`` is its team's _State.
_WORKER = threading.local()
#: Seconds run() waits for a result before checking that the workers it
#: queued to are alive (a worker that died cannot run what it was given).
_LIVENESS = 1.0


def active_team() -> NodeTeam | None:
    """The team the calling thread (or asyncio task) is inside, if any.

    Returns
    -------
    NodeTeam or None
        The innermost team entered with ``with team:`` in this context.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.active_team() is None
    True
    >>> with nn.node_team() as team:
    ...     nn.active_team() is team
    True
    """
    top = _ACTIVE.get()
    return None if top is None else top[0]


class _State:
    """What the team's finalizer needs, kept apart from the team (the team
    itself must be collectable): the running workers and the pool hold."""

    __slots__ = ("workers", "hold", "forked")

    def __init__(self) -> None:
        self.workers: dict[int, list[_Worker]] = {}
        self.hold: int | None = None
        self.forked = False  # set in a forked child: the workers stayed in the parent


def _finalize(state: _State) -> None:
    """A team collected without close(): stop its workers (not joined: this
    may run in any thread, a worker's included) and drop its pool hold."""
    workers, state.workers = state.workers, {}
    hold, state.hold = state.hold, None
    for ws in workers.values():
        for w in ws:
            w.tasks.put(_STOP)
    _pools.release(hold)


def _after_fork_in_child() -> None:
    for team in list(_TEAMS):
        team._reset_after_fork()


class _Worker:
    """One pinned thread with its own task queue."""

    def __init__(self, state: _State, node: int, index: int, cpus: frozenset[int]) -> None:
        self.node = node
        self.index = index
        self.cpus = cpus
        self.tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._main,
            name=f"numa-team-node{node}-{index}",
            daemon=True,  # a team never closed must not hang interpreter exit
        )
        self._state = state  # never the team: a team must be collectable while it runs

    def _main(self) -> None:
        started: queue.SimpleQueue[BaseException | None] = self._started
        _WORKER.state = self._state
        try:
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(pinned(cpus=self.cpus))
                    stack.enter_context(thread_policy(Bind(self.node)))
                    stack.enter_context(on_node(self.node))
                except BaseException as exc:  # reported to start(), which raises it
                    started.put(exc)
                    return
                started.put(None)
                get = self.tasks.get
                while True:
                    task = get()
                    if task is _STOP:
                        break
                    func, args, results, slot = task
                    try:
                        results.put((slot, None, func(*args)))
                    except BaseException as exc:
                        results.put((slot, exc, None))
                    del task, func, args, results
        except BaseException as exc:  # leaving a scope failed: keep the report
            started.put(exc)

    def start(self, started: queue.SimpleQueue[BaseException | None]) -> None:
        self._started = started
        self.thread.start()


class NodeTeam:
    """Worker threads per NUMA node; see :func:`node_team`.

    A context manager (re-entrant, reusable, usable from several threads and
    asyncio tasks at once): entering starts the workers if they are not
    running and makes the team the caller's active team (per thread and per
    task, like the scopes); leaving the last entry stops and joins them.

    Its life cycle is safe against the other users of a team: work submitted
    while another thread stops it either runs (the stop waits for it) or is
    refused (ufuncs and reductions then run on the calling thread, run() and
    map_blocks raise NumaError), never left waiting. In a child forked while
    the team runs, the team is stopped (its workers stayed in the parent):
    ufuncs run on the child's thread, entering it again starts the child's own
    workers. A team collected without close() stops its workers and releases
    its BLAS/OpenMP cap.

    Parameters
    ----------
    nodes, threads_per_node, blas_threads, min_bytes
        As for :func:`node_team`.

    Attributes
    ----------
    nodes : tuple of int
        The nodes the team serves (memory-only ones included).
    worker_nodes : tuple of int
        The nodes that have workers.
    serving : dict of int to int
        For each node, the node whose workers compute its blocks.
    threads : dict of int to int
        Workers per worker node.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> team = nn.NodeTeam(threads_per_node=1)
    >>> with team:
    ...     team.running
    True
    >>> team.running
    False
    """

    #: ``team.map_blocks(func, *arrays, out=None)``: attached by
    #: numa_numpy._compute.parallel (documented there), which knows the arrays.
    map_blocks: Callable[..., Any]

    def __init__(
        self,
        nodes: NodesLike | None = None,
        *,
        threads_per_node: int | None = None,
        blas_threads: int = 1,
        min_bytes: int | None = None,
    ) -> None:
        topo = topology()
        chosen = topo.usable_nodes if nodes is None else parse_nodes(nodes)
        for n in chosen:
            topo.node(n)  # InvalidNodeError for nodes that do not exist
        if isinstance(blas_threads, bool) or int(blas_threads) < 1:
            raise ValueError(f"blas_threads must be a positive int, not {blas_threads!r}")
        self.blas_threads = int(blas_threads)
        allowed = set(topo.allowed_cpus)
        cpus_of = {n.id: frozenset(set(n.cpus) & allowed) for n in topo.nodes}
        cpu_nodes = [n for n in topo.node_ids if cpus_of[n]]
        if not cpu_nodes:
            raise InvalidNodeError(
                "no node has CPUs this process may run on", nodes=chosen, available=topo.node_ids
            )
        serve: dict[int, int] = {}
        for n in chosen:
            if cpus_of[n]:
                serve[n] = n
            else:  # memory-only (or no allowed CPU): the nearest node with CPUs
                serve[n] = _nearest(topo, n, cpu_nodes)
        self.nodes: tuple[int, ...] = tuple(chosen)
        self.serving: dict[int, int] = serve
        self.worker_nodes: tuple[int, ...] = tuple(sorted(set(serve.values())))
        self.threads: dict[int, int] = {}
        for n in self.worker_nodes:
            ncpu = len(cpus_of[n])
            if threads_per_node is None:
                count = max(1, ncpu // self.blas_threads)
            else:
                if isinstance(threads_per_node, bool) or int(threads_per_node) < 1:
                    raise ValueError(
                        f"threads_per_node must be a positive int, not {threads_per_node!r}"
                    )
                count = int(threads_per_node)
                if count * self.blas_threads > ncpu:
                    raise ValueError(
                        f"{count} workers x {self.blas_threads} BLAS threads exceed node {n}'s "
                        f"{ncpu} allowed CPUs ({format_list(cpus_of[n])}); lower "
                        "threads_per_node or blas_threads"
                    )
            self.threads[n] = count
        self._cpus = cpus_of
        self.min_bytes = DEFAULT_MIN_BYTES if min_bytes is None else int(min_bytes)
        self._lock = threading.Lock()  # the life cycle: start/close counts, launch, stop
        # Taken around publishing or withdrawing the workers and around queueing
        # tasks to them: a stop's _STOP lands after every task queued before it,
        # and a worker runs its queue in order, so no queued task is left unrun.
        self._gate = threading.Lock()
        self._entries = 0
        self._workers: dict[int, list[_Worker]] = {}
        self._state = _State()
        self._plans: dict[Any, list[tuple[_Worker, int, int, int]]] = {}
        weakref.finalize(self, _finalize, self._state).atexit = False
        _TEAMS.add(self)

    # -- life cycle -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the workers are started."""
        return bool(self._workers)

    def start(self) -> NodeTeam:
        """Start the workers (counted: each start needs a close).

        Examples
        --------
        >>> import numa_numpy as nn
        >>> team = nn.node_team(threads_per_node=1).start()
        >>> len(team.workers()) == len(team.worker_nodes)
        True
        >>> team.close()

        Returns
        -------
        NodeTeam
            This team.

        Raises
        ------
        PolicyNotEnforcedError
            The kernel refused a worker's task policy (the team is not started).
        """
        with self._lock:
            if self._entries == 0:
                self._launch()
            self._entries += 1
        return self

    def close(self) -> None:
        """Undo one start(); the last one stops and joins every worker and
        releases the team's BLAS/OpenMP cap (the pools get their sizes from
        before the first running team back when no team runs). Tasks queued
        before the stop still run. Closing a stopped team does nothing.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> team = nn.node_team().start()
        >>> team.close()
        >>> team.running, team.workers()
        (False, [])
        """
        with self._lock:
            if self._entries == 0:
                return
            self._entries -= 1
            if self._entries:
                return
            every, hold = self._withdraw()
        # Joined outside the lock: a worker's task may start or enter the team.
        try:
            me = threading.current_thread()
            for w in every:
                if w.thread is not me:  # the last close() from a worker's own task
                    w.thread.join()
        finally:
            _pools.release(hold)

    def _launch(self) -> None:
        started: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        workers = {
            n: [_Worker(self._state, n, i, self._cpus[n]) for i in range(self.threads[n])]
            for n in self.worker_nodes
        }
        launched: list[_Worker] = []
        hold = None
        try:  # whatever fails (a thread that cannot start, an interrupt): none left running
            for ws in workers.values():
                for w in ws:
                    w.start(started)
                    launched.append(w)
            failures = [exc for exc in (started.get() for _ in launched) if exc is not None]
            if failures:
                raise failures[0]
            # Process-wide (threadpoolctl cannot limit one thread): while the
            # team runs, every BLAS/OpenMP pool has at most blas_threads threads.
            hold = _pools.hold(self.blas_threads)
        except BaseException:
            for w in launched:
                w.tasks.put(_STOP)
            for w in launched:
                w.thread.join()
            raise
        with self._gate:
            self._state.workers = workers
            self._state.hold = hold
            self._state.forked = False
            self._workers = workers

    def _withdraw(self) -> tuple[list[_Worker], int | None]:
        """Stop taking tasks and tell every worker to stop after its queue."""
        with self._gate:
            every = [w for ws in self._workers.values() for w in ws]
            hold = self._state.hold
            self._workers = {}
            self._state.workers = {}
            self._state.hold = None
            for w in every:
                w.tasks.put(_STOP)
        self._plans.clear()
        return every, hold

    def _reset_after_fork(self) -> None:
        """In a forked child: the workers (and the pool hold) stayed in the
        parent. The team is stopped here; entering it again starts workers of
        the child's own. Inherited ``with team:`` blocks leave it harmlessly."""
        self._lock = threading.Lock()  # another thread may have held them at fork()
        self._gate = threading.Lock()
        self._entries = 0
        self._workers = {}
        self._state.forked = bool(self._state.workers) or self._state.forked
        self._state.workers = {}
        self._state.hold = None  # the pools dropped the parent's holds (_pools)
        self._plans = {}

    def __enter__(self) -> NodeTeam:
        self.start()
        _ACTIVE.set((self, _ACTIVE.get()))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            top = _ACTIVE.get()
            if top is not None and top[0] is self:
                _ACTIVE.set(top[1])
            else:
                self._exit_out_of_order(top)
        finally:
            self.close()

    def _exit_out_of_order(self, top: _Entry | None) -> None:
        newer: list[NodeTeam] = []  # the teams entered after this one, innermost first
        node = top
        while node is not None and node[0] is not self:
            newer.append(node[0])
            node = node[1]
        if node is None:
            warnings.warn(
                f"numa_numpy: {self!r} exited in a context (thread or task) that has not "
                "entered it, e.g. a generator resumed from another task: its start() is "
                "undone, and the context that entered it still sees it as active",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        # Splice this entry out: the teams entered after it stay active, and
        # when they leave, the team from before this one is active again.
        chain: _Entry | None = node[1]
        for team in reversed(newer):
            chain = (team, chain)
        _ACTIVE.set(chain)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        per = ", ".join(f"node {n}: {self.threads[n]}" for n in self.worker_nodes)
        served = {m: s for m, s in self.serving.items() if m != s}
        extra = f" memory-only {served}" if served else ""
        return f"<NodeTeam {state} workers {{{per}}}{extra} blas_threads={self.blas_threads}>"

    # -- running work -----------------------------------------------------------

    def workers(self, node: int | None = None) -> list[threading.Thread]:
        """The worker threads (of one node, or all), while the team runs.

        Parameters
        ----------
        node : int, optional
            Only this node's workers.

        Returns
        -------
        list of threading.Thread
            Empty when the team is not running.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> with nn.node_team(threads_per_node=1) as team:
        ...     [t.name for t in team.workers(team.worker_nodes[0])]
        ['numa-team-node0-0']
        """
        return [
            w.thread for n, ws in self._workers.items() if node is None or n == node for w in ws
        ]

    def in_worker(self) -> bool:
        """Whether the calling thread is one of this team's workers.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> with nn.node_team() as team:
        ...     team.in_worker(), set(team.on_each_worker(team.in_worker))
        (False, {True})
        """
        return getattr(_WORKER, "state", None) is self._state

    def _require_running(self) -> None:
        if not self._workers:
            if self._state.forked:
                raise NumaError(
                    f"{self!r} is not running in this process: its workers stayed in the "
                    "parent when this process was forked; enter it again (with team: ...) "
                    "to start workers of this process"
                )
            raise NumaError(f"{self!r} is not running: enter it (with team: ...) or call start()")

    def run(
        self,
        tasks: Sequence[tuple[int, int, Callable[..., Any], tuple[Any, ...]]],
        *,
        assist: bool = False,
    ) -> list[Any]:
        """Run ``func(*args)`` for each (node, worker index, func, args) and
        return the results in order; the first exception (in task order) is
        raised here with the worker's traceback (and a note naming the worker,
        or the calling thread for the task it ran itself).

        With ``assist=True`` the calling thread runs one task of the node it is
        running on itself instead of waiting (one thread wake-up fewer per call;
        the team's ufuncs and reductions do, map_blocks never does: user
        functions always run in workers, under the worker's scopes); and if the
        team is not running (another thread stopped it, or this process was
        forked from the one that started it), the calling thread runs every
        task itself.

        Every task is either queued to a running worker, which runs it (a
        team's stop waits for the tasks queued before it), or not queued at
        all: run() never waits for a task that no thread will run.

        Parameters
        ----------
        tasks : sequence of (node, worker index, func, args)
            The worker index is taken modulo the node's worker count.
        assist : bool
            Let the calling thread run one task of its current node (every
            task, when the team is not running).

        Returns
        -------
        list
            ``func(*args)`` of each task, in task order.

        Raises
        ------
        NumaError
            The team is not running (without `assist`), or a worker given a
            task exited without running it.
        Exception
            The first (in task order) exception a task raised.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> with nn.node_team() as team:
        ...     n = team.worker_nodes[0]
        ...     team.run([(n, 0, pow, (2, 3)), (n, 1, pow, (3, 2))])
        [8, 9]
        >>> team.run([(n, 0, pow, (2, 5))], assist=True)  # stopped: the caller runs it
        [32]
        """
        if self.in_worker():  # nested call from a worker: run inline, no deadlock
            return [func(*args) for _n, _i, func, args in tasks]
        results: queue.SimpleQueue[tuple[int, BaseException | None, Any]] = queue.SimpleQueue()
        mine = -1
        if assist and len(tasks) > 1:
            here = current_node()
            mine = next((i for i, task in enumerate(tasks) if task[0] == here), -1)
        given: dict[int, _Worker] = {}
        with self._gate:  # see __init__: a stop cannot come between these puts
            workers = self._workers
            if workers:
                for slot, (node, index, func, args) in enumerate(tasks):
                    if slot != mine:
                        ws = workers[node]
                        w = given[slot] = ws[index % len(ws)]
                        w.tasks.put((func, args, results, slot))
        if not workers:
            if assist:
                return [func(*args) for _n, _i, func, args in tasks]
            self._require_running()
        outcome: tuple[int, BaseException | None, Any] | None = None
        if mine >= 0:
            func, args = tasks[mine][2], tasks[mine][3]
            try:
                outcome = (mine, None, func(*args))
            except BaseException as exc:
                outcome = (mine, exc, None)
        return _collect(results, tasks, given, outcome)

    def on_each_worker(self, func: Callable[..., Any], *args: Any) -> list[Any]:
        """Call ``func(*args)`` once in every worker; results in worker order.

        Parameters
        ----------
        func : callable
            Called in each worker thread, under that worker's node scope.
        *args
            Passed to every call.

        Returns
        -------
        list
            One result per worker, node by node.

        Raises
        ------
        NumaError
            The team is not running.
        Exception
            The first exception a call raised, with its traceback.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> with nn.node_team(threads_per_node=1) as team:
        ...     nodes = team.on_each_worker(nn.current_node)
        >>> nodes == list(team.worker_nodes)
        True
        """
        self._require_running()
        tasks = [(n, i, func, args) for n in self.worker_nodes for i in range(self.threads[n])]
        return self.run(tasks)

    def plan(
        self, key: Any, bounds: Sequence[int], nodes: Sequence[int]
    ) -> list[tuple[int, int, int, int]]:
        """(node, worker index, start, stop) chunks: each node's block of rows
        [bounds[i], bounds[i+1]) split evenly among the workers serving it
        (cached by `key`).

        Parameters
        ----------
        key : hashable
            Names the layout (bounds and nodes) for the cache.
        bounds : sequence of int
            ``len(nodes) + 1`` row boundaries.
        nodes : sequence of int
            The node of each block.

        Returns
        -------
        list of (int, int, int, int)
            The worker node, the worker index and the rows of each chunk.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> team = nn.node_team(0, threads_per_node=1)
        >>> team.plan("example", (0, 100), (0,))
        [(0, 0, 0, 100)]
        """
        cached = self._plans.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        chunks: list[tuple[int, int, int, int]] = []
        for i, node in enumerate(nodes):
            lo, hi = bounds[i], bounds[i + 1]
            if hi <= lo:
                continue
            server = self.serving.get(node)
            if server is None:  # a node outside the team: the nearest worker node
                server = _nearest(topology(), node, self.worker_nodes)
            count = min(self.threads[server], hi - lo)
            for j in range(count):
                a = lo + (hi - lo) * j // count
                b = lo + (hi - lo) * (j + 1) // count
                chunks.append((server, j, a, b))
        if len(self._plans) > 256:
            self._plans.clear()
        self._plans[key] = chunks  # type: ignore[assignment]
        return chunks


def _nearest(topo: Any, node: int, candidates: Sequence[int]) -> int:
    """The candidate nearest to `node` by the firmware's distance (ties: lower id)."""
    return min(candidates, key=lambda c: (topo.distance(node, c), c))


def _collect(
    results: queue.SimpleQueue[tuple[int, BaseException | None, Any]],
    tasks: Sequence[tuple[int, int, Callable[..., Any], tuple[Any, ...]]],
    given: dict[int, _Worker],
    outcome: tuple[int, BaseException | None, Any] | None,
) -> list[Any]:
    """Wait for the result of every task given to a worker; raise the first
    exception in task order (the caller's own task's, `outcome`, included)."""
    values: list[Any] = [None] * len(tasks)
    errors: dict[int, BaseException] = {}
    waiting = set(given)

    def take(item: tuple[int, BaseException | None, Any]) -> None:
        slot, exc, value = item
        waiting.discard(slot)
        if exc is not None:
            errors[slot] = exc
        else:
            values[slot] = value

    if outcome is not None:
        take(outcome)
    while waiting:
        try:
            take(results.get(timeout=_LIVENESS))
            continue
        except queue.Empty:
            pass
        # A worker runs its queue in order until _STOP, and puts each result
        # before it exits: one that exited with a task of ours not reported
        # (checked again after reading what is there) never ran that task.
        dead = {slot for slot in waiting if not given[slot].thread.is_alive()}
        while dead:
            try:
                take(results.get_nowait())
            except queue.Empty:
                break
        lost = sorted(dead & waiting)
        if lost:
            w = given[lost[0]]
            raise NumaError(
                f"numa_numpy team worker {w.index} of node {w.node} exited without running "
                f"{len(lost)} task(s) it was given"
            )
    if errors:
        slot = min(errors)
        exc = errors[slot]
        if slot in given:
            where = f"team worker {given[slot].index} of node {given[slot].node}"
        else:
            where = f"the calling thread, which ran the task of node {tasks[slot][0]} itself"
        note = f"(raised in numa_numpy {where}" + (
            f"; {len(errors) - 1} other task(s) failed too)" if len(errors) > 1 else ")"
        )
        if hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note(note)
        else:  # 3.10: what add_note stores (PEP 678); the traceback does not print it
            exc.__notes__ = [*getattr(exc, "__notes__", ()), note]
        raise exc
    return values


def node_team(
    nodes: NodesLike | None = None,
    *,
    threads_per_node: int | None = None,
    blas_threads: int = 1,
    min_bytes: int | None = None,
) -> NodeTeam:
    """A team of worker threads per NUMA node.

    Every node of `nodes` with CPUs this process may use gets
    `threads_per_node` workers. Each worker is pinned to the node's allowed
    CPUs (the cpuset's CPUs of that node: ``os.sched_setaffinity``), runs under
    ``thread_policy(Bind(node))`` (its own non-NumPy allocations) and
    ``on_node(node)`` (its NumPy allocations) for its whole life. Memory-only
    nodes (CXL, HBM in flat mode) get no workers: their blocks are computed by
    the workers of the nearest node with CPUs, by the firmware's distance
    (ties: the lower id), reading and writing the memory-only node remotely.

    While the team runs, BLAS/OpenMP pools are capped to `blas_threads`
    threads through threadpoolctl. That cap is process-wide (threadpoolctl
    sets the libraries' global pool sizes): workers x blas_threads never
    exceeds a node's CPUs. With several teams running, the smallest of their
    `blas_threads` applies; the sizes from before the first of them are
    restored when the last one stops (or is collected).

    ``with team:`` starts the workers (if not running) and makes the team the
    active one for the calling thread or task: inside it, ufuncs and
    reductions on partitioned arrays of at least `min_bytes` run node-parallel.
    Leaving the last ``with`` stops and joins every worker. A team can be
    entered again later, from several threads at once, and nested.

    Parameters
    ----------
    nodes : int, str or iterable of int, optional
        The nodes the team serves (default: every node with memory this
        process may use).
    threads_per_node : int, optional
        Workers per node with CPUs (default: the node's allowed CPUs divided by
        `blas_threads`, at least 1).
    blas_threads : int
        Threads each BLAS/OpenMP pool may use while the team runs (default 1).
    min_bytes : int, optional
        Smallest array (bytes) the team computes in parallel; smaller ones are
        NumPy's on the calling thread (default 16 MiB, measured).

    Returns
    -------
    NodeTeam
        Not started: enter it (``with``) or call ``start()``.

    Raises
    ------
    InvalidNodeError
        A node does not exist, or no node has CPUs this process may use.
    ValueError
        ``threads_per_node * blas_threads`` exceeds a node's allowed CPUs, or a
        count is not positive.

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> a = nn.partitioned_full((1 << 18,), 4.0)
    >>> with nn.node_team() as team:
    ...     c = np.sqrt(a * 2.0 + 1.0)
    ...     s = c.sum()
    >>> float(s)
    786432.0
    """
    return NodeTeam(
        nodes, threads_per_node=threads_per_node, blas_threads=blas_threads, min_bytes=min_bytes
    )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
