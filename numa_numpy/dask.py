"""Dask workers laid out one per NUMA node (``pip install 'numa_numpy[dask]'``).

An optional extra: ``import numa_numpy`` never imports dask; this module needs
``dask.distributed``.

- `NumaWorkerPlugin(node)`: a `distributed.WorkerPlugin` that pins a worker to
  the CPUs of `node` and runs every one of its tasks under the node's policy
  (`Bind(node)` unless told otherwise), so the arrays its tasks make land there.
- `numa_cluster()`: a `LocalCluster` with one worker process per NUMA node that
  has CPUs, named ``numa-node-N``, with the resource ``numa-node-N`` (one unit per
  thread) so that ``client.submit(f, resources={"numa-node-1": 1})`` runs `f` on
  node 1.
- `worker_node_map(client)`: ``{worker address: node}`` for the workers that run
  the plugin.

How the policy reaches the tasks
--------------------------------
numa_numpy's scopes live in NumPy's allocator ``ContextVar``: they are per thread
and per asyncio task. `distributed` runs each task in its thread pool inside a
*copy of the event loop's context* (``run_in_executor_with_context``), not in the
pool thread's own context, so a scope entered by a pool initializer
(``ThreadPoolExecutor(initializer=on_node(n).initializer)``) is not seen by the
tasks (tested: `current_policy()` is None inside them). The plugin therefore:

1. wraps the worker's ``execute`` coroutine (the one coroutine through which every
   task runs) in the scope, so the context that `distributed` copies into the
   pool thread (and in which ``async def`` tasks run) carries the policy;
2. replaces each thread-pool executor of the worker (``"default"``, ``"actor"``
   and any other ``ThreadPoolExecutor``; never the process-wide ``"offload"``
   pool, which only (de)serializes) with a `NumaThreadPoolExecutor` of the same
   size: a `distributed` thread pool (so ``secede``/``rejoin`` work) whose threads
   pin themselves to the node's CPUs before their first task (and take the
   thread policy when ``thread_policy=True``), and which runs every call inside
   the scope (actor methods are run without the context copy);
3. with ``pin="process"`` pins every thread the worker process has at setup
   (``sched_setaffinity`` on each ``/proc/self/task`` entry: pinning "the process"
   with ``os.sched_setaffinity(0, ...)`` moves only the calling thread), so the
   event loop, and the threads it starts later, run on the node too.

``teardown`` undoes all three (the original executors come back, unless the worker
is closing, in which case the worker shuts down the NUMA pools itself).

Not covered: functions sent with ``client.run`` run in the worker's event loop,
outside the scope; data a worker receives from other workers or the client is
allocated where it is deserialized (see "Where placement is not carried" in the
user guide, docs/guide/scopes.md).

An existing cluster and the ``dask worker`` CLI
-----------------------------------------------
``client.register_plugin(NumaWorkerPlugin(1))`` installs the plugin on *every*
worker of the cluster (and on workers that join later): right when the whole
cluster should use node 1. For one node per worker, either start each worker with
this module as a preload::

    dask worker tcp://scheduler:8786 --name numa-node-1 --nthreads 8 \\
        --resources "numa-node-1=8" --preload numa_numpy.dask --numa-node 1

(options of the preload: ``--numa-node N`` (required), ``--numa-policy POLICY``
(default ``bind:N``), ``--numa-pin process|threads|none``, ``--numa-thread-policy``).
Give the scheduler's address as the positional argument: `dask worker` takes the
first option it does not know for that argument when it is missing, so with
``--scheduler-file`` set the node and policy by environment instead
(``NUMA_NUMPY_DASK_NODE=1 NUMA_NUMPY_DASK_POLICY=bind:1,3 dask worker
--scheduler-file s.json --preload numa_numpy.dask``). Or attach plugins to running
workers with ``attach_plugins(client, {address: node, ...})``, which uses
``client.run``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

# The ignores keep mypy quiet both with the extra installed and without it.
try:
    import click  # type: ignore[import-not-found, unused-ignore]
    import distributed  # type: ignore[import-not-found, unused-ignore]
    from distributed import (  # type: ignore[import-not-found, unused-ignore]
        LocalCluster,
        Nanny,
        WorkerPlugin,
    )
    from distributed._concurrent_futures_thread import (  # type: ignore[import-not-found, unused-ignore]
        ThreadPoolExecutor as _VendoredThreadPoolExecutor,
    )
    from distributed.core import Status  # type: ignore[import-not-found, unused-ignore]
    from distributed.threadpoolexecutor import (  # type: ignore[import-not-found, unused-ignore]
        ThreadPoolExecutor as _DaskThreadPoolExecutor,
    )
    from distributed.utils import (  # type: ignore[import-not-found, unused-ignore]
        _offload_executor,
    )
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "numa_numpy.dask needs dask.distributed, an optional extra: "
        "pip install 'numa_numpy[dask]'"
        f" ({error})"
    ) from error

from ._alloc.scope import PolicyScope
from ._alloc.scope import policy as _policy_scope
from ._alloc.thread import pinned
from ._alloc.thread import thread_policy as _ThreadPolicy
from ._kernel.sysfs import thread_ids
from ._kernel.topology import topology
from ._policies.docstrings import document
from ._policies.options import AllocationKeywords, AllocationOptions
from ._policies.policy import Bind, Policy, PolicyLike, as_policy, parse_nodes
from .errors import InvalidNodeError

if TYPE_CHECKING:
    from distributed import Client, Worker
    from typing_extensions import Unpack

__all__ = [
    "NumaWorkerPlugin",
    "NumaThreadPoolExecutor",
    "numa_cluster",
    "worker_node_map",
    "attach_plugins",
    "resource_name",
    "default_nodes",
    "dask_setup",
]

Pin = Literal["process", "threads"]
T = TypeVar("T")

#: distributed's pools subclass its own copy of the standard library's.
_THREAD_POOLS = (concurrent.futures.ThreadPoolExecutor, _VendoredThreadPoolExecutor)

#: Worker states in which teardown leaves the NUMA pools to the worker's close().
_CLOSING = frozenset({Status.closing, Status.closing_gracefully, Status.closed, Status.failed})


def resource_name(node: int) -> str:
    """The worker name and resource of `node` in a `numa_cluster`: "numa-node-N"."""
    return f"numa-node-{int(node)}"


class NumaThreadPoolExecutor(_DaskThreadPoolExecutor):  # type: ignore[misc, unused-ignore]
    """`distributed`'s thread pool, with its threads on a NUMA node.

    Each thread, before its first call, pins itself to `cpus` (when given) and
    enters `thread_policy` (when given) for the rest of its life; every call runs
    inside `scope`. The class name keeps "ThreadPoolExecutor": `distributed` runs
    tasks with their context only in executors named so.
    """

    def __init__(
        self,
        max_workers: int,
        *,
        scope: PolicyScope,
        cpus: frozenset[int] | None = None,
        thread_policy: _ThreadPolicy | None = None,
        thread_name_prefix: str = "numa-Dask-Threads",
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call, unused-ignore]
            max_workers, thread_name_prefix=thread_name_prefix
        )
        self.scope = scope
        self.cpus = cpus
        self.thread_policy = thread_policy
        self._ready = threading.local()

    def _prepare_thread(self) -> None:
        if self.cpus is not None:
            os.sched_setaffinity(0, self.cpus)
        if self.thread_policy is not None:
            self.thread_policy.__enter__()  # for the thread's life; it dies with the pool
        self._ready.done = True

    def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if not getattr(self._ready, "done", False):
            self._prepare_thread()
        with self.scope:
            return fn(*args, **kwargs)

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override, unused-ignore]
        return super().submit(  # type: ignore[no-untyped-call, unused-ignore]
            self._call, fn, *args, **kwargs
        )


class _Installed:
    """What `NumaWorkerPlugin.setup` changed on one worker, to undo it."""

    __slots__ = ("worker", "execute", "previous_execute", "executors", "affinity")

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.execute: Any = None
        self.previous_execute: Any = None  # the instance attribute it replaced, if any
        self.executors: dict[str, tuple[concurrent.futures.Executor, NumaThreadPoolExecutor]] = {}
        self.affinity: dict[int, set[int]] = {}  # thread id -> its affinity before


@document
class NumaWorkerPlugin(WorkerPlugin):  # type: ignore[misc, unused-ignore]
    """Run a dask worker on NUMA node `node`: its threads pinned to the node's
    CPUs, every task inside ``numa_numpy.policy(policy)`` (default `Bind(node)`).

    - `policy`: where the tasks' NumPy arrays go (a Policy or "interleave:0,2").
    - `pin`: "process" pins every thread of the worker process (use it when the
      worker has its process to itself, as under a Nanny); "threads" pins only the
      task threads (workers sharing a process); None pins nothing.
    - `thread_policy`: also set the task threads' own kernel policy
      (``set_mempolicy``), so allocations outside NumPy (Python objects, other
      libraries) follow `policy` too. Under Bind, such an allocation that finds the
      node full meets the OOM killer instead of spilling.
    - `strict`, `huge_pages`, `prefault`: as for `numa_numpy.policy`.

    The plugin's name is "numa-numpy": a worker runs at most one, and registering
    another replaces the first (its teardown runs). See the module's docstring for
    how the policy reaches the tasks.
    """

    name = "numa-numpy"
    idempotent = False

    def __init__(
        self,
        node: int,
        *,
        policy: PolicyLike | None = None,
        pin: Pin | None = "process",
        thread_policy: bool = False,
        **options: Unpack[AllocationKeywords],
    ) -> None:
        ids = parse_nodes(node)
        if len(ids) != 1:
            raise InvalidNodeError(f"a worker runs on one node, not {node!r}", nodes=ids)
        if pin not in ("process", "threads", None):
            raise ValueError(f"pin must be 'process', 'threads' or None, not {pin!r}")
        self.node = ids[0]
        self.policy: Policy = as_policy(policy) if policy is not None else Bind(self.node)
        self.pin: Pin | None = pin
        self.thread_policy = bool(thread_policy)
        self.options = AllocationOptions.from_keywords(
            self.policy, "NumaWorkerPlugin", AllocationKeywords, **options
        )
        o = self.options  # as attributes too, as before
        self.strict, self.huge_pages, self.prefault = o.strict, o.huge_pages, o.prefault
        self._installed: _Installed | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_installed"] = None  # what setup changed stays with its worker
        return state

    def __repr__(self) -> str:
        return (
            f"NumaWorkerPlugin(node={self.node}, policy={self.policy}, pin={self.pin!r}, "
            f"thread_policy={self.thread_policy})"
        )

    def scope(self) -> PolicyScope:
        """A new scope of this plugin's policy and options."""
        return _policy_scope(self.policy, **self.options.keywords())

    def setup(self, worker: Worker) -> None:
        if self._installed is not None:
            raise RuntimeError(f"{self!r} is already set up on {self._installed.worker.address}")
        scope = self.scope()
        scope.handler  # noqa: B018 - made and probed now: a refused policy fails setup
        cpus = pinned(node=self.node).cpus if self.pin is not None else None
        task_thread_policy = _ThreadPolicy(self.policy) if self.thread_policy else None
        if task_thread_policy is not None:  # refused here rather than in every thread
            with task_thread_policy:
                pass

        done = _Installed(worker)
        try:
            if self.pin == "process":
                assert cpus is not None
                done.affinity = _pin_every_thread(cpus)
            for key, executor in list(worker.executors.items()):
                if executor is _offload_executor or not isinstance(executor, _THREAD_POOLS):
                    continue
                numa_pool = NumaThreadPoolExecutor(
                    getattr(executor, "_max_workers", None) or worker.state.nthreads,
                    scope=self.scope(),
                    cpus=cpus,
                    thread_policy=task_thread_policy,
                    thread_name_prefix=_pool_name(worker, key, executor, self.node),
                )
                worker.executors[key] = numa_pool
                done.executors[key] = (executor, numa_pool)
            done.previous_execute = worker.__dict__.get("execute")
            done.execute = _in_scope(worker.execute, scope)
            worker.execute = done.execute  # type: ignore[method-assign, unused-ignore]
        except BaseException:
            self._undo(done, closing=False)
            raise
        self._installed = done

    def teardown(self, worker: Worker) -> None:
        done, self._installed = self._installed, None
        if done is not None:
            self._undo(done, closing=worker.status in _CLOSING)

    @staticmethod
    def _undo(done: _Installed, *, closing: bool) -> None:
        worker = done.worker
        if done.execute is not None and worker.__dict__.get("execute") is done.execute:
            if done.previous_execute is None:
                del worker.execute
            else:
                worker.execute = done.previous_execute  # type: ignore[method-assign, unused-ignore]
        for key, (original, numa_pool) in done.executors.items():
            if worker.executors.get(key) is not numa_pool:
                continue  # replaced again since: not ours to touch
            if closing:  # the worker's close() shuts its executors down, ours included
                original.shutdown(wait=False)
            else:
                worker.executors[key] = original
                numa_pool.shutdown(wait=False)  # type: ignore[no-untyped-call, unused-ignore]
        for tid, cpus in done.affinity.items():
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:  # the thread has ended
                pass

    @property
    def installed(self) -> bool:
        """Whether this plugin object is set up on a worker (in this process)."""
        return self._installed is not None


def _pool_name(worker: Worker, key: str, executor: Any, node: int) -> str:
    prefix = getattr(executor, "_thread_name_prefix", None)
    if not prefix:
        prefix = f"{worker.name}-Dask-{key.capitalize()}-Threads"
    return f"{prefix}-numa{node}"


def _in_scope(execute: Callable[..., Awaitable[Any]], scope: PolicyScope) -> Any:
    """Worker.execute run inside `scope`: the scope is set in the task's context,
    which distributed copies into the pool thread that runs the task."""

    @functools.wraps(execute)
    async def execute_in_scope(*args: Any, **kwargs: Any) -> Any:
        with scope:
            return await execute(*args, **kwargs)

    return execute_in_scope


def _pin_every_thread(cpus: frozenset[int]) -> dict[int, set[int]]:
    """Pin every thread of this process to `cpus`; their affinities before."""
    before: dict[int, set[int]] = {}
    me = threading.get_native_id()
    for tid in thread_ids():
        try:
            previous = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # ended meanwhile
            continue
        except OSError:
            if tid == me:
                raise
            continue
        before[tid] = previous
    return before


# -- a cluster with one worker per node ---------------------------------------------


def default_nodes() -> tuple[int, ...]:
    """The nodes a `numa_cluster` uses by default: nodes with CPUs and memory that
    this process's cpuset allows."""
    topo = topology()
    usable = set(topo.usable_nodes)
    allowed = set(topo.allowed_cpus)
    return tuple(n for n in topo.cpu_nodes if n in usable and set(topo.node(n).cpus) & allowed)


def numa_cluster(
    nodes: int | str | Iterable[int] | None = None,
    *,
    threads_per_worker: int | None = None,
    policy_for: Mapping[int, PolicyLike] | Callable[[int], PolicyLike] | None = None,
    thread_policy: bool = False,
    **kwargs: Any,
) -> LocalCluster:
    """A `distributed.LocalCluster` with one worker per NUMA node.

    - `nodes`: the nodes (default `default_nodes()`: with CPUs and memory, allowed
      here). Each must have CPUs this process may use.
    - `threads_per_worker`: default, the node's allowed CPUs.
    - `policy_for`: node -> policy of its worker (a mapping or a function;
      default `Bind(node)`), e.g. ``{0: "bind:0,2"}`` to give a CPU node's worker
      a memory-only node as well.
    - `thread_policy`: see `NumaWorkerPlugin`.
    - everything else goes to `LocalCluster` (``dashboard_address=None``,
      ``silence_logs=...``, ``processes=False``, ``memory_limit=...`` ...). With
      processes (the default), each worker pins its whole process; with
      ``processes=False`` the workers share one, and only their task threads are
      pinned.

    Worker ``numa-node-N`` (the scheduler's name) has the resource
    ``{"numa-node-N": threads}``: ``resources={"numa-node-N": 1}`` routes a task
    there and still lets it run on all of the worker's threads. The memory limit
    defaults, as in LocalCluster, to the machine's memory divided among the
    workers. Do not `scale` the cluster: new workers would be plain ones.
    With ``asynchronous=True``, ``await`` the result as you would a LocalCluster.
    """
    if "n_workers" in kwargs:
        raise TypeError("numa_cluster starts one worker per node: pass nodes=, not n_workers=")
    topo = topology()
    ids = default_nodes() if nodes is None else parse_nodes(nodes)
    if not ids:
        raise InvalidNodeError(
            "no NUMA node with CPUs and memory is allowed for this process", nodes=()
        )
    allowed = set(topo.allowed_cpus)
    threads: dict[int, int] = {}
    for node in ids:
        cpus = set(topo.node(node).cpus) & allowed  # node(): InvalidNodeError if missing
        if not cpus:
            raise InvalidNodeError(
                f"node {node} has no CPU this process may use: a worker cannot run there "
                "(give a memory-only node to a worker through policy_for=)",
                nodes=(node,),
                available=topo.cpu_nodes,
            )
        threads[node] = int(threads_per_worker) if threads_per_worker else len(cpus)
    policies = {node: _policy_of(policy_for, node) for node in ids}

    processes = kwargs.get("processes")
    worker_class = kwargs.get("worker_class")
    if processes is None:
        processes = worker_class is None or issubclass(worker_class, Nanny)
    pin: Pin = "process" if processes else "threads"
    resources = dict(kwargs.pop("resources", None) or {})
    plugins = list(kwargs.pop("plugins", None) or ())
    kwargs.setdefault("memory_limit", 1.0 / len(ids))  # a float <= 1: a fraction of RAM

    cluster = LocalCluster(n_workers=0, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]
    base = cluster.new_spec
    for node in ids:
        name = resource_name(node)
        options = dict(base["options"])
        options.update(
            nthreads=threads[node],
            resources={**resources, name: threads[node]},
            plugins=[
                *plugins,
                NumaWorkerPlugin(node, policy=policies[node], pin=pin, thread_policy=thread_policy),
            ],
        )
        cluster.worker_spec[name] = {"cls": base["cls"], "options": options}
    if cluster.asynchronous:
        return cluster  # `await cluster` starts them
    try:
        cluster.sync(cluster._correct_state)  # type: ignore[no-untyped-call, unused-ignore]
    except BaseException:
        cluster.close()
        raise
    return cluster


def _policy_of(
    policy_for: Mapping[int, PolicyLike] | Callable[[int], PolicyLike] | None, node: int
) -> Policy:
    if policy_for is None:
        return Bind(node)
    if isinstance(policy_for, Mapping):
        chosen = policy_for.get(node)
        return Bind(node) if chosen is None else as_policy(chosen)
    return as_policy(policy_for(node))


# -- existing clusters ----------------------------------------------------------------


def _plugin_node(dask_worker: Worker) -> int | None:
    for plugin in dask_worker.plugins.values():
        if isinstance(plugin, NumaWorkerPlugin) and plugin.installed:
            return plugin.node
    return None


def worker_node_map(client: Client) -> Any:
    """``{worker address: node}`` for the workers running a `NumaWorkerPlugin`
    (asked of the workers with ``client.run``). With an asynchronous client,
    await the result."""

    def keep(found: Mapping[str, int | None]) -> dict[str, int]:
        return {address: node for address, node in found.items() if node is not None}

    if client.asynchronous:

        async def ask() -> dict[str, int]:
            return keep(await client.run(_plugin_node))

        return ask()
    return keep(client.run(_plugin_node))


async def _add_plugin(plugin: NumaWorkerPlugin, dask_worker: Worker) -> None:
    await dask_worker.plugin_add(plugin=plugin, catch_errors=False)


def attach_plugins(client: Client, nodes: Mapping[str, int], **plugin_options: Any) -> None:
    """Set up `NumaWorkerPlugin(node, **plugin_options)` on each worker of
    `nodes` (``{worker address: node}``) of a running cluster (synchronous
    client). Unlike ``client.register_plugin``, which sends one plugin to every
    worker, this gives each worker its own node; workers that join later, or
    restart, get none."""
    for address, node in nodes.items():
        plugin = NumaWorkerPlugin(node, **plugin_options)
        client.run(_add_plugin, plugin, workers=[address])


# -- `dask worker --preload numa_numpy.dask --numa-node N` ---------------------------


async def _preload_setup(
    worker: Any,
    numa_node: int,
    numa_policy: str | None,
    numa_pin: str,
    numa_thread_policy: bool,
) -> None:
    if not isinstance(worker, distributed.Worker):
        raise TypeError(
            "numa_numpy.dask is a worker preload (--preload), not a nanny or scheduler one"
        )
    pins: dict[str, Pin | None] = {"process": "process", "threads": "threads", "none": None}
    plugin = NumaWorkerPlugin(
        numa_node,
        policy=numa_policy,
        pin=pins[numa_pin],
        thread_policy=numa_thread_policy,
    )
    await _add_plugin(plugin, worker)


#: The preload hook: ``dask worker ... --preload numa_numpy.dask --numa-node N``
#: (`distributed` parses the options after the preload with this click command).
dask_setup = click.Command(
    "numa_numpy.dask",
    callback=_preload_setup,
    params=[
        click.Option(
            ["--numa-node"],
            type=int,
            required=True,
            envvar="NUMA_NUMPY_DASK_NODE",
            help="this worker's node",
        ),
        click.Option(
            ["--numa-policy"],
            default=None,
            envvar="NUMA_NUMPY_DASK_POLICY",
            help='its policy, e.g. "bind:1,3" (default bind:N)',
        ),
        click.Option(
            ["--numa-pin"],
            type=click.Choice(["process", "threads", "none"]),
            default="process",
            show_default=True,
            help="pin the whole worker process, its task threads only, or nothing",
        ),
        click.Option(
            ["--numa-thread-policy"],
            is_flag=True,
            default=False,
            help="also set the task threads' kernel policy (set_mempolicy)",
        ),
    ],
)
