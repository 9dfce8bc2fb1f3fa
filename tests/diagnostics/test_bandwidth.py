"""The bandwidth matrix's team mode (``bench --team``): who ran, where the
arrays were, what the result says. No timing is asserted: only that figures
exist, are finite and positive."""

from __future__ import annotations

import math
import os
import threading

import pytest

import numa_numpy as nn
from numa_numpy._diagnostics import bandwidth as _bandwidth
from numa_numpy._diagnostics.bandwidth import bandwidth_matrix, format_matrix

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def allowed_cpus_of(node):
    topo = nn.topology()
    return set(topo.node(node).cpus) & set(topo.allowed_cpus)


def team_nodes():
    return [n.id for n in nn.topology().nodes if allowed_cpus_of(n.id)]


@pytest.fixture(scope="module")
def team_result():
    return bandwidth_matrix(4 * MiB, repeats=1, team=True)


def positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_one_team_row_per_node_with_cpus_and_one_column_per_memory(team_result):
    usable = list(nn.topology().usable_nodes)
    assert team_result["team"] is True
    assert team_result["cpu_nodes"] == team_nodes()  # memory-only nodes: no row
    assert team_result["memory"] == usable + ["interleaved"]
    assert team_result["size_bytes"] == 4 * MiB and team_result["repeats"] == 1
    for key in ("copy_gbps", "triad_gbps"):
        rows = team_result[key]
        assert len(rows) == len(team_result["cpu_nodes"])
        assert all(len(row) == len(usable) + 1 for row in rows)
        assert all(positive(v) for row in rows for v in row), rows
    assert len(team_result["cells"]) == len(team_result["cpu_nodes"]) * (len(usable) + 1)


def test_each_row_uses_every_allowed_cpu_of_its_node(team_result):
    expected = [len(allowed_cpus_of(n)) for n in team_result["cpu_nodes"]]
    assert team_result["threads"] == expected
    for cell in team_result["cells"]:
        node = cell["cpu_node"]
        assert cell["threads"] == len(allowed_cpus_of(node)) == len(cell["workers"])
        assert cell["cpus"] == sorted(allowed_cpus_of(node))
        assert sorted(w["index"] for w in cell["workers"]) == list(range(cell["threads"]))
        for worker in cell["workers"]:  # the node's workers, running on the node
            assert worker["node"] == node and worker["ran_on_node"] == node
        # the slices cover the array once
        assert sum(w["elements"] for w in cell["workers"]) == team_result["size_bytes"] // 8


def test_every_workers_arrays_are_on_the_cells_memory(team_result):
    for cell in team_result["cells"]:
        mem = cell["memory"]
        pages = sum(cell["pages_by_node"].values())
        # four arrays per worker, each at least its elements' worth of pages
        least = sum(4 * math.ceil(w["elements"] * 8 / PAGE) for w in cell["workers"])
        assert pages >= least, cell
        if mem == "interleaved":
            assert set(cell["pages_by_node"]) <= {str(n) for n in nn.topology().usable_nodes}
            assert cell["policy"].startswith("interleave"), cell["policy"]
            continue
        assert cell["pages_by_node"] == {str(mem): pages}
        for worker in cell["workers"]:
            assert list(worker["pages_by_node"]) == [str(mem)], worker


def test_slices_allocated_in_the_workers_are_where_the_kernel_says():
    """What _team_cell does, asked of the kernel here: every page of every
    worker's four arrays present and on the memory node."""
    node = nn.topology().usable_nodes[-1]
    cpu_node = team_nodes()[0]
    team = nn.node_team([cpu_node])
    n = (4 * MiB) // 8
    chunks = team.plan("test", (0, n), (cpu_node,))
    with team:
        barrier = threading.Barrier(len(chunks))
        slices = _bandwidth._team_run(
            team, barrier, chunks, _bandwidth._arrays, [(node, hi - lo) for *_, lo, hi in chunks]
        )
    assert len(slices) == len(allowed_cpus_of(cpu_node))
    for arrays, (_n, _i, lo, hi) in zip(slices, chunks, strict=True):
        for a in arrays:
            assert a.size == hi - lo
            where = nn.placement(a)
            assert where.not_present == 0, where
            assert where.pages == {node: where.total_pages}, where


def test_whole_machine_rows(team_result):
    usable = set(nn.topology().usable_nodes)
    nodes = [n for n in team_nodes() if n in usable]
    local, spread = team_result["machine"]
    assert (local["memory"], spread["memory"]) == ("local", "interleaved")
    for row in (local, spread):
        assert row["nodes"] == nodes
        assert row["threads_by_node"] == {str(n): len(allowed_cpus_of(n)) for n in nodes}
        assert row["threads"] == sum(row["threads_by_node"].values()) == len(row["workers"])
        assert row["size_bytes"] == len(nodes) * team_result["size_bytes"]
        assert positive(row["copy_gbps"]) and positive(row["triad_gbps"])
        for worker in row["workers"]:
            assert worker["ran_on_node"] == worker["node"]
    for worker in local["workers"]:  # node-local: each worker on its own node
        assert list(worker["pages_by_node"]) == [str(worker["node"])], worker


def test_team_mode_leaves_no_thread_and_keeps_the_callers_affinity():
    before_threads = set(threading.enumerate())
    before_affinity = os.sched_getaffinity(0)
    bandwidth_matrix(MiB, repeats=1, team=True)
    assert set(threading.enumerate()) == before_threads
    assert os.sched_getaffinity(0) == before_affinity


def test_single_thread_mode_is_still_the_default():
    result = bandwidth_matrix(MiB, repeats=1)
    assert result["team"] is False and result["threads"] == 1
    assert "machine" not in result
    assert all("workers" not in cell and "threads" not in cell for cell in result["cells"])


def test_a_failing_worker_is_reported_not_hung():
    """One worker raises while the others wait at the barrier: the real error
    comes back (not the broken barrier it caused), and nothing hangs."""
    team = nn.node_team()
    chunks = [(n, i, 0, 1) for n in team.worker_nodes for i in range(team.threads[n])]
    if len(chunks) < 2:
        pytest.skip("needs two workers")

    def step(barrier, fail):
        if fail:
            raise nn.NumaAllocationError("node full")
        barrier.wait(timeout=60)  # a bug must fail the test, not hang it

    with team:
        barrier = threading.Barrier(len(chunks))
        args = [(barrier, False)] * (len(chunks) - 1) + [(barrier, True)]
        with pytest.raises(nn.NumaAllocationError, match="node full"):
            _bandwidth._team_run(team, barrier, chunks, step, args)
        assert barrier.broken


def test_a_cell_that_cannot_be_allocated_is_a_hole(monkeypatch):
    def full(memory, n):
        raise nn.NumaAllocationError(f"node {memory} is full")

    monkeypatch.setattr(_bandwidth, "_arrays", full)
    result = bandwidth_matrix(MiB, repeats=1, team=True)
    assert all(v is None for row in result["copy_gbps"] for v in row)
    assert all("is full" in cell["error"] for cell in result["cells"])
    assert all(row["copy_gbps"] is None and row["error"] for row in result["machine"])
    text = format_matrix(result)
    assert "| - |" in text and "whole machine, memory local: NumaAllocationError" in text


def test_format_matrix_shows_each_rows_threads_and_the_whole_machine(team_result):
    text = format_matrix(team_result)
    assert "node teams" in text and "| cpu node | threads | mem " in text
    for node, threads in zip(team_result["cpu_nodes"], team_result["threads"], strict=True):
        assert f"| {node} | {threads} | " in text
    assert "whole machine" in text and "| node-local | " in text and "| interleaved | " in text


@pytest.mark.multinode
def test_whole_machine_streams_every_node_from_its_own_memory():
    """In the lab: nodes 0 and 1 have a CPU each, 2 and 3 are memory-only."""
    topo = nn.topology()
    nodes = [n for n in team_nodes() if n in topo.usable_nodes]
    if len(nodes) < 2:
        pytest.skip("needs two NUMA nodes with CPUs and memory")
    result = bandwidth_matrix(4 * MiB, repeats=1, team=True)
    assert result["cpu_nodes"] == team_nodes()
    memory_only = [n for n in topo.usable_nodes if not allowed_cpus_of(n)]
    assert not set(memory_only) & set(result["cpu_nodes"])  # columns, never rows
    local, spread = result["machine"]
    assert local["nodes"] == nodes
    assert {w["node"] for w in local["workers"]} == set(nodes)
    for worker in local["workers"]:
        assert worker["ran_on_node"] == worker["node"]
        assert list(worker["pages_by_node"]) == [str(worker["node"])], worker
    assert set(local["pages_by_node"]) == {str(n) for n in nodes}
    # interleaved: spread over the usable nodes (which ones a few huge pages
    # reach depends on the page size; more than one, and no other)
    spread_on = set(spread["pages_by_node"])
    assert len(spread_on) >= 2 and spread_on <= {str(n) for n in topo.usable_nodes}
    # a remote cell: node 0's team on node 1's memory
    cell = next(c for c in result["cells"] if c["cpu_node"] == nodes[0] and c["memory"] == nodes[1])
    assert cell["pages_by_node"] == {str(nodes[1]): sum(cell["pages_by_node"].values())}
    assert all(w["ran_on_node"] == nodes[0] for w in cell["workers"])
    assert positive(local["copy_gbps"]) and positive(spread["triad_gbps"])
