"""numa_numpy.dask: one dask worker per NUMA node, tasks under the node's policy.

Every fact about placement is computed inside the tasks (by the worker, which
asks its kernel) and sent back as a small dict: pages of a process are only
visible to that process. The one-node tests run anywhere distributed is
installed; the multinode one runs in the NUMA lab (nodes 0 and 1 have a CPU).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import numa_numpy as nn

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

from distributed import Client, LocalCluster  # noqa: E402

from numa_numpy.dask import (  # noqa: E402
    NumaThreadPoolExecutor,
    NumaWorkerPlugin,
    attach_plugins,
    default_nodes,
    numa_cluster,
    resource_name,
    worker_node_map,
)

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name

MiB = 1 << 20
QUIET = {"dashboard_address": None, "silence_logs": logging.ERROR}
# Without a dashboard a scheduler still serves /health on 8787; a second cluster
# alive at the same time takes a free port instead, with this warning.
pytestmark = pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning")
RESULT_TIMEOUT = 60


def facts(nbytes: int = 8 * 10**6) -> dict:
    """Run in a task: allocate like any NumPy code and report where it went."""
    a = np.ones(nbytes // 8)  # np.ones(10**6) by default
    b = a * 2.0 + 1.0  # a ufunc output (and its temporary)
    where = [nn.placement(x) for x in (a, b)]
    return {
        "policy": nn.current_policy(),
        "requested": [w.requested for w in where],
        "pages": [w.pages for w in where],
        "total_pages": [w.total_pages for w in where],
        "not_present": [w.not_present for w in where],
        "handler": get_handler_name(a),
        "node": nn.current_node(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "thread": threading.current_thread().name,
        "pid": os.getpid(),
    }


def slow_facts(delay: float) -> dict:
    time.sleep(delay)  # keeps its thread busy, so that the others are used too
    return facts(MiB)


async def async_facts() -> dict:
    await asyncio.sleep(0)
    return facts(MiB)


def seceding_facts() -> dict:
    distributed.secede()
    distributed.rejoin()
    return facts(MiB)


class Counter:
    """An actor: its methods run in the worker's actor pool, without the context
    copy that ordinary tasks get."""

    def facts(self) -> dict:
        return facts(MiB)


def policy_in_task() -> object:
    return nn.current_policy()


def assert_on(f: dict, node: int, policy: nn.Policy) -> None:
    assert f["policy"] == policy, f
    assert f["requested"] == [policy, policy], f
    assert f["handler"] == "numa_numpy", f
    assert f["not_present"] == [0, 0], f  # np.ones and the ufunc wrote every page
    for pages, total in zip(f["pages"], f["total_pages"], strict=True):
        assert pages == {node: total}, f  # every page, by move_pages, on the node


@pytest.fixture(scope="module")
def one_node_cluster():
    """numa_cluster() with its defaults: a worker process per CPU node (one here)."""
    with numa_cluster(**QUIET) as cluster, Client(cluster) as client:
        client.wait_for_workers(len(default_nodes()), timeout=RESULT_TIMEOUT)
        yield cluster, client
    assert cluster.status.name == "closed"


def test_importing_numa_numpy_does_not_import_dask():
    code = "import sys, numa_numpy; print(sorted({'dask', 'distributed'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_distributed_names_the_extra():
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "try:\n    import numa_numpy.dask\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'numa_numpy[dask]'" in out.stdout, out.stdout + out.stderr


def test_cluster_has_one_named_worker_per_node(one_node_cluster):
    cluster, client = one_node_cluster
    topo = nn.topology()
    nodes = default_nodes()
    assert nodes == tuple(n for n in topo.cpu_nodes if n in topo.usable_nodes)
    workers = client.scheduler_info()["workers"]
    by_name = {w["name"]: (address, w) for address, w in workers.items()}
    assert set(by_name) == {f"numa-node-{n}" for n in nodes}
    for node in nodes:
        address, info = by_name[resource_name(node)]
        threads = len(set(topo.node(node).cpus) & set(topo.allowed_cpus))
        assert info["nthreads"] == threads
        assert info["resources"] == {f"numa-node-{node}": threads}
    assert worker_node_map(client) == {by_name[resource_name(n)][0]: n for n in nodes}
    assert all(pid != os.getpid() for pid in client.run(os.getpid).values())  # processes


def test_task_allocates_under_the_nodes_policy(one_node_cluster):
    _, client = one_node_cluster
    node = default_nodes()[0]
    f = client.submit(facts, resources={f"numa-node-{node}": 1}, pure=False).result(
        timeout=RESULT_TIMEOUT
    )
    assert f["requested"][0] == nn.Bind(node)
    assert_on(f, node, nn.Bind(node))
    assert f["node"] == node
    assert set(f["affinity"]) <= set(nn.topology().node(node).cpus)
    assert f"-numa{node}-" in f["thread"]  # a thread of the plugin's pool
    assert f["pid"] != os.getpid()


def test_every_task_thread_runs_under_the_policy(one_node_cluster):
    _, client = one_node_cluster
    node = default_nodes()[0]
    bind = nn.Bind(node)
    threads = client.scheduler_info()["workers"]
    nthreads = sum(w["nthreads"] for w in threads.values())
    futures = [client.submit(slow_facts, 0.3, pure=False) for _ in range(3 * nthreads)]
    results = client.gather(futures)
    pool_threads = {f["thread"] for f in results}
    assert len(pool_threads) == nthreads, pool_threads  # every thread of the pool took part
    # an async task (run by the event loop) and one that leaves and rejoins the pool
    results += client.gather(
        [client.submit(async_facts, pure=False), client.submit(seceding_facts, pure=False)]
    )
    for f in results:
        assert_on(f, node, bind)
        assert f["node"] == node
    actor = client.submit(Counter, actor=True).result(timeout=RESULT_TIMEOUT)
    f = actor.facts().result(timeout=RESULT_TIMEOUT)
    assert_on(f, node, bind)
    assert "Actor" in f["thread"]


def test_resources_route_tasks(one_node_cluster):
    _, client = one_node_cluster
    node = default_nodes()[0]
    where = worker_node_map(client)
    address = next(a for a, n in where.items() if n == node)
    future = client.submit(os.getpid, resources={f"numa-node-{node}": 1}, pure=False)
    future.result(timeout=RESULT_TIMEOUT)
    assert client.who_has([future])[future.key] == (address,)
    # a node no worker has: the task waits (the scheduler knows of no such resource)
    stuck = client.submit(os.getpid, resources={"numa-node-99": 1}, pure=False)
    with pytest.raises(TimeoutError):
        stuck.result(timeout=1)
    stuck.cancel()


def test_policy_for_and_threads_per_worker_in_one_process():
    node = default_nodes()[0]
    with (
        numa_cluster(
            [node], processes=False, threads_per_worker=1, policy_for=nn.Preferred, **QUIET
        ) as cluster,
        Client(cluster) as client,
    ):
        (worker,) = cluster.workers.values()
        plugin = worker.plugins["numa-numpy"]
        assert plugin.pin == "threads"  # workers sharing a process pin their pools only
        assert isinstance(worker.executors["default"], NumaThreadPoolExecutor)
        f = client.submit(facts, pure=False).result(timeout=RESULT_TIMEOUT)
        assert_on(f, node, nn.Preferred(node))
        assert client.scheduler_info()["workers"][worker.address]["nthreads"] == 1


def thread_policy_in_task() -> object:
    return nn.get_thread_policy()


def test_asynchronous_cluster_with_thread_policy():
    node = default_nodes()[0]

    async def main() -> tuple[dict, object, dict]:
        cluster = numa_cluster(
            [node], processes=False, asynchronous=True, thread_policy=True, **QUIET
        )
        async with cluster, Client(cluster, asynchronous=True) as client:
            f = await client.submit(facts, pure=False)
            kernel = await client.submit(thread_policy_in_task, pure=False)
            return f, kernel, await worker_node_map(client)

    f, kernel, where = asyncio.run(main())
    assert_on(f, node, nn.Bind(node))
    assert kernel == nn.Bind(node)  # the pool thread's own policy (set_mempolicy)
    assert list(where.values()) == [node]
    assert nn.get_thread_policy() == nn.Default()  # this thread's is untouched


def test_numa_cluster_refuses_before_starting_anything():
    with pytest.raises(TypeError, match="nodes="):
        numa_cluster(n_workers=2)
    with pytest.raises(nn.InvalidNodeError):
        numa_cluster([max(nn.topology().node_ids) + 1])
    with pytest.raises(nn.InvalidNodeError):
        NumaWorkerPlugin([0, 1])
    with pytest.raises(ValueError, match="pin"):
        NumaWorkerPlugin(0, pin="everything")


@pytest.fixture
def plain_cluster():
    """One in-process worker: its objects can be inspected from the test."""
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, **QUIET) as cluster,
        Client(cluster) as client,
    ):
        yield cluster, client


def test_register_plugin_and_teardown_restore_the_worker(plain_cluster):
    cluster, client = plain_cluster
    node = default_nodes()[0]
    (worker,) = cluster.workers.values()
    before = dict(worker.executors)
    assert client.submit(policy_in_task, pure=False).result() is None

    client.register_plugin(NumaWorkerPlugin(node, pin="threads"))
    assert worker_node_map(client) == {worker.address: node}
    for key in ("default", "actor"):
        assert isinstance(worker.executors[key], NumaThreadPoolExecutor)
    assert worker.executors["offload"] is before["offload"]
    assert "execute" in worker.__dict__
    assert_on(client.submit(facts, pure=False).result(timeout=RESULT_TIMEOUT), node, nn.Bind(node))

    client.unregister_worker_plugin("numa-numpy")
    assert worker.executors == before
    assert "execute" not in worker.__dict__
    assert client.submit(policy_in_task, pure=False).result() is None
    assert worker_node_map(client) == {}


def test_attach_plugins_gives_each_worker_its_node(plain_cluster):
    cluster, client = plain_cluster
    node = default_nodes()[0]
    (address,) = client.scheduler_info()["workers"]
    attach_plugins(client, {address: node}, pin="threads", policy=nn.Preferred(node))
    assert worker_node_map(client) == {address: node}
    f = client.submit(facts, pure=False).result(timeout=RESULT_TIMEOUT)
    assert_on(f, node, nn.Preferred(node))


def preload_cluster(argv):
    """One in-process worker that loads numa_numpy.dask as a preload with `argv`."""
    return LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        preload=["numa_numpy.dask"],
        preload_argv=argv,
        **QUIET,
    )


def test_preload_for_the_dask_worker_cli():
    node = default_nodes()[0]
    with (
        preload_cluster(["--numa-node", str(node), "--numa-pin", "threads"]) as cluster,
        Client(cluster) as client,
    ):
        f = client.submit(facts, pure=False).result(timeout=RESULT_TIMEOUT)
        assert_on(f, node, nn.Bind(node))
        assert worker_node_map(client) == {next(iter(cluster.scheduler_info["workers"])): node}


def test_preload_takes_the_node_from_the_environment(monkeypatch):
    node = default_nodes()[0]
    monkeypatch.setenv("NUMA_NUMPY_DASK_NODE", str(node))
    monkeypatch.setenv("NUMA_NUMPY_DASK_POLICY", f"preferred:{node}")
    with (
        preload_cluster(["--numa-pin", "none"]) as cluster,
        Client(cluster) as client,
    ):
        f = client.submit(facts, pure=False).result(timeout=RESULT_TIMEOUT)
        assert_on(f, node, nn.Preferred(node))
        (worker,) = cluster.workers.values()
        assert worker.plugins["numa-numpy"].pin is None


def test_dask_worker_cli_with_the_preload(tmp_path):
    """The real `dask worker` command line, against an in-process scheduler."""
    node = default_nodes()[0]
    with (
        LocalCluster(n_workers=0, processes=False, protocol="tcp://", **QUIET) as cluster,
        Client(cluster) as client,
    ):
        command = [
            os.path.join(os.path.dirname(sys.executable), "dask"),
            "worker",
            cluster.scheduler_address,
            "--name",
            resource_name(node),
            "--nthreads",
            "1",
            "--resources",
            f"{resource_name(node)}=1",
            "--no-nanny",
            "--no-dashboard",
            "--preload",
            "numa_numpy.dask",
            "--numa-node",
            str(node),
        ]
        # tasks are pickled by reference to this module: the worker must import it
        # (worker processes that a Nanny spawns inherit sys.path instead)
        path = os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")])
        log = tmp_path / "worker.log"
        with open(log, "wb") as sink:
            worker = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": path},
            )
        try:
            client.wait_for_workers(1, timeout=RESULT_TIMEOUT)
            future = client.submit(facts, resources={resource_name(node): 1}, pure=False)
            f = future.result(timeout=RESULT_TIMEOUT)
            assert_on(f, node, nn.Bind(node))
            assert f["pid"] == worker.pid and f["node"] == node
            assert list(worker_node_map(client).values()) == [node]
        finally:
            worker.terminate()
            worker.wait(timeout=RESULT_TIMEOUT)
            print(log.read_text())
        assert "Starting Worker plugin numa-numpy" in log.read_text()


@pytest.mark.multinode
def test_workers_on_nodes_0_and_1_allocate_on_their_node():
    """The lab: two worker processes, on nodes 0 and 1; each task's arrays are, page
    by page, on its worker's node, and the task runs on a CPU of that node."""
    nodes = (0, 1)
    topo = nn.topology()
    assert all(topo.node(n).cpus for n in nodes), topo
    start = time.monotonic()
    with numa_cluster(nodes, **QUIET) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=300)
        started = time.monotonic()
        where = worker_node_map(client)
        assert sorted(where.values()) == [0, 1], where
        pids = {}
        for node in nodes:
            futures = [
                client.submit(facts, size, resources={f"numa-node-{node}": 1}, pure=False)
                for size in (MiB, 6 * MiB)  # 6 MiB: transparent huge pages
            ]
            for f in client.gather(futures):
                assert_on(f, node, nn.Bind(node))
                assert f["node"] == node, f
                assert set(f["affinity"]) == set(topo.node(node).cpus), f
                pids.setdefault(node, set()).add(f["pid"])
            (address,) = {client.who_has([fut])[fut.key][0] for fut in futures}
            assert where[address] == node
        assert len(pids[0] | pids[1]) == 2 and not pids[0] & pids[1], pids  # two processes
        done = time.monotonic()
    print(
        f"\nnuma_cluster lab timing: start {started - start:.1f} s, tasks "
        f"{done - started:.1f} s, close {time.monotonic() - done:.1f} s"
    )
