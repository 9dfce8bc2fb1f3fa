import gc
import os
import threading
import traceback

import numpy as np
import pytest

import numa_numpy as nn
from numa_numpy._compute.team import DEFAULT_MIN_BYTES

# Node-parallel ufuncs decide each loop's dtypes with ufunc.resolve_dtypes
# (NumPy 1.24); older NumPy computes them on NumPy's own path (same results).
needs_parallel_ufuncs = pytest.mark.skipif(
    not hasattr(np.add, "resolve_dtypes"),
    reason="node-parallel ufuncs need NumPy >= 1.24 (ufunc.resolve_dtypes)",
)


def _team_threads():
    return [t for t in threading.enumerate() if t.name.startswith("numa-team-")]


def test_team_workers_pinned_and_scoped():
    topo = nn.topology()
    with nn.node_team() as team:
        assert team.running and nn.active_team() is team
        seen = team.on_each_worker(
            lambda: (
                nn.current_node(),
                os.sched_getaffinity(0),
                nn.get_thread_policy(),
                nn.current_policy(),
            )
        )
        assert len(seen) == sum(team.threads.values())
        for node, affinity, thread_pol, numpy_pol in seen:
            assert affinity == set(topo.node(node).cpus) & set(topo.allowed_cpus)
            assert thread_pol == nn.Bind(node)
            assert numpy_pol == nn.Bind(node)
        assert len(_team_threads()) == len(seen)
    assert nn.active_team() is None
    assert not team.running
    assert _team_threads() == []


def test_default_threads_per_node_and_blas_cap():
    from threadpoolctl import threadpool_info

    topo = nn.topology()
    team = nn.node_team(threads_per_node=1, blas_threads=1)
    before = [p["num_threads"] for p in threadpool_info()]
    with team:
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert [p["num_threads"] for p in threadpool_info()] == before
    for n in team.worker_nodes:
        allowed = set(topo.node(n).cpus) & set(topo.allowed_cpus)
        assert nn.node_team().threads[n] == len(allowed)
    with pytest.raises(ValueError, match="exceed node"):
        nn.node_team(threads_per_node=len(os.sched_getaffinity(0)) + 1)
    with pytest.raises(ValueError, match="blas_threads"):
        nn.node_team(blas_threads=0)
    with pytest.raises(nn.InvalidNodeError):
        nn.node_team(nodes=99)


def test_worker_exception_propagates_with_traceback():
    def boom(x):
        raise KeyError(f"bad block {x.shape}")

    a = nn.partitioned_zeros(64)
    with nn.node_team() as team:
        with pytest.raises(KeyError, match="bad block") as info:
            team.map_blocks(boom, a)
        text = "".join(traceback.format_exception(info.value))
        assert "in boom" in text  # the worker's frames
        assert any("team worker" in note for note in info.value.__notes__)
        # the team still works afterwards
        assert team.on_each_worker(lambda: 1) == [1] * sum(team.threads.values())
    assert _team_threads() == []


def test_reusable_nested_and_not_running():
    team = nn.node_team()
    with pytest.raises(nn.NumaError, match="not running"):
        team.on_each_worker(lambda: 1)
    for _ in range(3):
        with team:
            with team:  # nested: one set of workers
                assert len(_team_threads()) == sum(team.threads.values())
            assert team.running
        assert not team.running
    assert _team_threads() == []
    team.close()  # closing a stopped team is harmless


@needs_parallel_ufuncs
def test_team_from_several_threads_at_once():
    a = nn.partitioned_full((1 << 16, 4), 2.0)
    team = nn.node_team(min_bytes=0)
    errors = []

    def user(k):
        try:
            with team:
                for _ in range(20):
                    c = a * k + 1.0
                    assert type(c) is nn.PartitionedArray and c.layout is not None
                    assert float(c.sum()) == (2.0 * k + 1.0) * a.size
                    parts = team.map_blocks(lambda x: float(x.sum()), a)
                    assert sum(parts) == 2.0 * a.size
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _team_threads() == []


def test_nested_call_from_worker_runs_inline():
    a = nn.partitioned_full(1 << 12, 3.0)
    with nn.node_team(min_bytes=0) as team:
        inner = team.map_blocks(lambda x: team.on_each_worker(lambda: 2), a)
        assert all(r == [2] * sum(team.threads.values()) for r in inner)


def test_no_thread_or_memory_leak_after_many_teams():
    import resource

    a = nn.partitioned_full(1 << 15, 1.0)
    for _ in range(5):
        with nn.node_team(min_bytes=0):
            (a + 1.0).sum()
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    threads0 = threading.active_count()
    for _ in range(100):
        with nn.node_team(min_bytes=0) as team:
            (a + 1.0).sum()
            team.map_blocks(np.sqrt, a)
    gc.collect()
    assert threading.active_count() == threads0
    assert _team_threads() == []
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 64 << 10  # KiB


def test_default_min_bytes_keeps_small_arrays_on_caller():
    small = nn.partitioned_full(16, 1.0)
    assert small.nbytes < DEFAULT_MIN_BYTES
    with nn.node_team():
        r = small + 1.0
    assert type(r) is np.ndarray  # NumPy's own path: a plain result


def test_memory_only_nodes_are_served_by_nearest_cpu_node():
    topo = nn.topology()
    team = nn.node_team()
    for node, server in team.serving.items():
        assert topo.node(server).has_cpus
        if topo.node(node).has_cpus and set(topo.node(node).cpus) & set(topo.allowed_cpus):
            assert server == node
        else:
            others = [n for n in topo.cpu_nodes if set(topo.node(n).cpus) & set(topo.allowed_cpus)]
            assert topo.distance(node, server) == min(topo.distance(node, n) for n in others)


# -- the NUMA lab ------------------------------------------------------------------------


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=2)
def test_lab_workers_run_on_their_nodes_cpus():
    topo = nn.topology()
    with nn.node_team(threads_per_node=1) as team:
        assert len(team.worker_nodes) >= 2
        for _ in range(20):
            seen = team.on_each_worker(lambda: (nn.current_cpu(), nn.current_node()))
            for (cpu, node), expected in zip(seen, team.worker_nodes, strict=True):
                assert node == expected
                assert cpu in topo.node(expected).cpus
        for mem_node, server in team.serving.items():
            if topo.node(mem_node).memory_only:
                assert server != mem_node and topo.node(server).has_cpus


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=2)
@pytest.mark.parametrize("count", [2, 3, 4])
def test_lab_partitioned_blocks_on_their_nodes(count):
    from numa_numpy._compute.layout import THP_UNIT, _byte_bounds, layout_of
    from numa_numpy.testing import assert_placed

    usable = nn.topology().usable_nodes
    if len(usable) < count:
        pytest.skip(f"needs {count} nodes with memory")
    nodes = usable[:count]
    page = os.sysconf("SC_PAGE_SIZE")
    for shape, dtype, order in [
        (((64 << 20) // 8,), np.float64, "C"),
        ((3001, 1000), np.float32, "C"),
        ((1000, 2049), np.float64, "F"),
        ((5000,), np.int16, "C"),
    ]:
        with nn.node_team(nodes, min_bytes=0) as team:
            a = nn.partitioned_full(shape, 1, dtype, order, nodes=nodes)
            b = a * 2 + 1  # ufunc outputs
            c = team.map_blocks(lambda x: x + 1, a)  # map_blocks outputs
        with nn.policy(nn.Partitioned(nodes)):  # NumPy's own allocations in a scope
            d = np.full(shape, 1, dtype, order)
            e = d * 2 + 1
        for arr in (a, b, c, d, e):
            layout = layout_of(arr)
            assert [n for n, _ in nn.blocks(arr)] == list(nodes)
            plain = arr.view(np.ndarray)
            base = plain.ctypes.data
            if any(arr is x for x in (d, e)):
                # a scope's block is cut by the byte (a row may straddle a cut):
                # check the byte ranges the allocator recorded, and that each
                # row is in the block where it starts
                cuts = _byte_bounds(base, plain.nbytes, len(nodes))
                rowbytes = plain.nbytes // layout.shape[layout.axis]
                starts = [r.start for _, r in nn.blocks(arr)][: len(cuts) - 1]
                assert starts == [-(-c // rowbytes) for c in cuts[:-1]]
                ranges = [(base + lo, base + hi) for lo, hi in zip(cuts, cuts[1:])]
            else:
                ranges = []
                for node, rows in nn.blocks(arr):
                    block = plain[(slice(None),) * layout.axis + (rows,)]
                    start = block.__array_interface__["data"][0]
                    ranges.append((start, start + block.nbytes))
                    if block.size and arr.nbytes >= 4 << 20:  # never a row split
                        assert rows.start == 0 or (start - base) % page == 0
                        if layout.shape == ((64 << 20) // 8,):
                            # rows of 8 bytes: every boundary on a 2 MiB (THP) unit
                            assert start % THP_UNIT == 0
                        assert_placed(block, node)
            for node, (lo, hi) in zip(nodes, ranges):
                # the page holding a boundary is the earlier block's: whole pages
                inner_lo, inner_hi = -(-lo // page) * page, hi // page * page
                if inner_hi > inner_lo:
                    pages = np.frombuffer(
                        (np.ctypeslib.as_ctypes_type(np.uint8) * (inner_hi - inner_lo))
                        .from_address(inner_lo),
                        np.uint8,
                    )
                    assert_placed(pages, node)
        assert int(b.sum()) == int(e.sum()) == 3 * a.size


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=2)
def test_lab_replicas_on_their_nodes():
    from numa_numpy.testing import assert_placed

    src = np.arange(1 << 20, dtype=np.float64)
    r = nn.replicate(src)
    assert r.nodes == nn.topology().usable_nodes
    for node in r:
        assert_placed(r[node], node)
        np.testing.assert_array_equal(r[node], src)
    with nn.node_team(threads_per_node=1) as team:
        a = nn.partitioned_zeros(len(team.nodes) * 1024)

        def which(chunk, replica):
            return (nn.current_node(), nn.placement(replica).nodes)

        for node, where in team.map_blocks(which, a, r):
            assert where == {node}
        assert team.on_each_worker(lambda: nn.placement(r.local()).nodes) == [
            {n} for n in team.worker_nodes
        ]


def test_docstring_examples_run():
    import doctest

    from numa_numpy._compute import layout as _layout
    from numa_numpy._compute import parallel as _parallel
    from numa_numpy._compute import partition as _partition
    from numa_numpy._compute import pools as _pools
    from numa_numpy._compute import replicas as _replicas
    from numa_numpy._compute import team as _team

    for module in (_team, _pools, _layout, _parallel, _partition, _replicas):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
        assert result.attempted > 0


def test_the_team_knows_no_arrays():
    # the executor imports no array module of ours (nor NumPy): the operations
    # over arrays are attached to it by numa_numpy._compute.parallel
    import ast
    from pathlib import Path

    from numa_numpy._compute import parallel as _parallel
    from numa_numpy._compute import team as _team

    tree = ast.parse(Path(_team.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
            imported.update(f".{a.name}" for a in node.names if node.level == 1 and not node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    arrays = {"numpy", ".layout", ".parallel", ".partition", ".replicas"}
    assert not imported & arrays, imported & arrays
    assert nn.NodeTeam.map_blocks is _parallel.map_blocks
