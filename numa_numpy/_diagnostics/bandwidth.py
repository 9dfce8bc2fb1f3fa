"""STREAM-style memory bandwidth from every CPU node to every memory node.

    python -m numa_numpy bench [--size-mib MiB] [--repeats N] [--team] [--json]

`bandwidth_matrix()` returns, for each NUMA node with CPUs (the thread pinned to
that node's CPUs) and each node with memory, plus an "interleaved" column (pages
spread over all usable nodes), the single-thread copy and triad bandwidth in
GB/s (best of `repeats`; every run's figure is kept, and the text shows the
median with the range over the runs). The arrays come from
``numa_numpy.numa_empty(..., node=mem_node, prefault="touch")`` and the kernels
run inside ``numa_numpy.on_node(mem_node)`` with preallocated temporaries, so
nothing they touch lands elsewhere.

With ``team=True`` (``bench --team``) each row is a node team instead of one
thread: every worker of ``node_team([cpu_node])`` (one per CPU of the node that
the cpuset allows, ``blas_threads=1``) streams its own slice of the arrays, all
of them at once (a barrier starts each repeat together), and the bandwidth is
the bytes of all slices over the wall time from the first worker's start to the
last worker's end. Two "whole machine" rows follow: one team over every node with
CPUs and memory, each node's workers streaming from arrays on their own node
("local", the machine's aggregate node-local bandwidth), and the same team on
arrays interleaved over all usable nodes. Every row says how many threads it
used. A node team is a team of the machine's CPUs, so a row can be far above one
thread's figure; one thread cannot saturate a memory controller.

Bytes counted are STREAM's: copy ``b[:] = a`` moves 2 arrays, triad
``a = b + s*c`` moves 3. NumPy computes the triad in two passes through a
preallocated temporary (``np.multiply(c, s, out=t); np.add(b, t, out=a)``), so
the memory actually moved is 5 arrays' worth and the triad figure understates the
machine's bandwidth: compare triad with triad across cells, not with copy.

Importing this module does nothing but import NumPy and numa_numpy; it works on a
one-node machine (a 1 x 1 matrix plus the interleaved column; in team mode the
whole-machine rows then measure node 0's team again).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .._alloc.cache import free_all_blocks
from .._alloc.creation import interleaved_empty, numa_empty
from .._alloc.scope import PolicyScope, interleaved, on_node
from .._compute.team import NodeTeam, node_team
from .._kernel.topology import current_node, format_list, topology
from .._ranges.placement import placement
from ..errors import NumaError

__all__ = ["bandwidth_matrix", "format_matrix"]

INTERLEAVED = "interleaved"
LOCAL = "local"  # team mode's whole-machine row: each node's workers on their own node
COPY_ARRAYS = 2  # STREAM byte counts
TRIAD_ARRAYS = 3

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Chunk = tuple[int, int, int, int]  # (worker node, worker index, start, stop)


def _run_seconds(kernel: Callable[[], None], repeats: int) -> list[float]:
    """Seconds of each of `repeats` timed runs, after one warm-up (caches, TLB,
    lazy NumPy setup)."""
    kernel()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kernel()
        runs.append(time.perf_counter() - t0)
    return runs


def _figures(nbytes: int, copy_s: list[float], triad_s: list[float]) -> Any:
    """A cell's GB/s: the best (``copy_gbps``), the median and every run's."""
    out: dict[str, Any] = {}
    for name, count, runs in (("copy", COPY_ARRAYS, copy_s), ("triad", TRIAD_ARRAYS, triad_s)):
        gbps = [count * nbytes / seconds / 1e9 for seconds in runs]
        out[f"{name}_gbps"] = max(gbps)
        out[f"{name}_median_gbps"] = statistics.median(gbps)
        out[f"{name}_runs_gbps"] = gbps
        out[f"{name}_seconds"] = min(runs)
    return out


def _scope(memory: int | str) -> PolicyScope:
    """The scope the kernels run in: anything NumPy allocates lands on `memory`."""
    if memory == INTERLEAVED:
        return interleaved(prefault="touch")
    assert isinstance(memory, int)
    return on_node(memory, prefault="touch")


def _arrays(memory: int | str, n: int) -> Arrays:
    """a, b, c and the triad's temporary t: `n` float64 each, every page on
    `memory` (a node or INTERLEAVED), faulted in and filled."""
    make: Callable[[], np.ndarray]
    if memory == INTERLEAVED:

        def make() -> np.ndarray:
            return interleaved_empty(n, prefault="touch")
    else:
        assert isinstance(memory, int)
        node = memory

        def make() -> np.ndarray:
            return numa_empty(n, node=node, prefault="touch")

    a, b, c, t = make(), make(), make(), make()
    a.fill(1.0)
    b.fill(2.0)
    c.fill(0.5)
    t.fill(0.0)
    return a, b, c, t


def _kernels(arrays: Arrays) -> tuple[Callable[[], None], Callable[[], None]]:
    a, b, c, t = arrays
    scalar = 3.0

    def copy() -> None:
        np.copyto(b, a)

    def triad() -> None:
        np.multiply(c, scalar, out=t)
        np.add(b, t, out=a)

    return copy, triad


def _cell(memory: int | str, n: int, repeats: int) -> dict[str, Any]:
    """Copy and triad GB/s with every array on `memory` (a node or INTERLEAVED),
    run by the calling (already pinned) thread."""
    arrays = _arrays(memory, n)
    copy, triad = _kernels(arrays)
    with _scope(memory):  # anything NumPy allocates on the way lands there too
        copy_s = _run_seconds(copy, repeats)
        triad_s = _run_seconds(triad, repeats)
    a = arrays[0]
    where = placement(a)
    return {
        **_figures(a.nbytes, copy_s, triad_s),
        "pages_by_node": {str(k): v for k, v in where.pages.items()},
        "policy": str(where.policy),
    }


# -- team mode -------------------------------------------------------------------


def _spans(
    barrier: threading.Barrier, kernel: Callable[[], None], repeats: int
) -> list[tuple[float, float]]:
    """(start, end) of each repeat, every one started with the team's other
    workers at the barrier; the first, a warm-up, is not returned."""
    spans = []
    for _ in range(repeats + 1):
        barrier.wait()
        t0 = time.perf_counter()
        kernel()
        spans.append((t0, time.perf_counter()))
    return spans[1:]


def _guarded(barrier: threading.Barrier, func: Callable[..., Any], *args: Any) -> Any:
    """(exception, None) or (None, func(*args)); a failure breaks the barrier so
    the other workers stop waiting for this one."""
    try:
        return None, func(*args)
    except BaseException as exc:
        barrier.abort()
        return exc, None


def _team_run(
    team: NodeTeam,
    barrier: threading.Barrier,
    chunks: list[Chunk],
    func: Callable[..., Any],
    args: list[tuple[Any, ...]],
) -> list[Any]:
    """``func(*args[k])`` in the worker of chunk k, all at once; the first real
    failure (not a broken barrier it caused elsewhere) is raised here."""
    tasks = [
        (node, index, _guarded, (barrier, func, *a))
        for (node, index, _lo, _hi), a in zip(chunks, args, strict=True)
    ]
    outcomes = team.run(tasks)
    errors = [exc for exc, _ in outcomes if exc is not None]
    if errors:
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or errors)[0]
    return [value for _, value in outcomes]


def _stream(arrays: Arrays, memory: int | str, barrier: threading.Barrier, repeats: int) -> Any:
    copy, triad = _kernels(arrays)
    with _scope(memory):  # a worker's own scope is its node's; the cell's wins here
        copy_spans = _spans(barrier, copy, repeats)
        triad_spans = _spans(barrier, triad, repeats)
    return copy_spans, triad_spans, current_node()


def _wall_seconds(spans: list[list[tuple[float, float]]]) -> list[float]:
    """Each repeat's (last worker's end - first worker's start)."""
    return [
        max(worker[r][1] for worker in spans) - min(worker[r][0] for worker in spans)
        for r in range(len(spans[0]))
    ]


def _team_cell(
    team: NodeTeam, chunks: list[Chunk], memory_of: Callable[[int], int | str], repeats: int
) -> dict[str, Any]:
    """Copy and triad GB/s of all `chunks` at once: the worker of each chunk
    allocates, fills and streams its own slice, on ``memory_of(worker node)``."""
    barrier = threading.Barrier(len(chunks))
    memories = [memory_of(node) for node, _i, _lo, _hi in chunks]
    arrays: list[Arrays] = _team_run(
        team,
        barrier,
        chunks,
        _arrays,
        [(m, hi - lo) for m, (_n, _i, lo, hi) in zip(memories, chunks, strict=True)],
    )
    barrier.reset()
    ran = _team_run(
        team,
        barrier,
        chunks,
        _stream,
        [(arr, m, barrier, repeats) for arr, m in zip(arrays, memories, strict=True)],
    )
    copy_s = _wall_seconds([copy_spans for copy_spans, _t, _n in ran])
    triad_s = _wall_seconds([triad_spans for _c, triad_spans, _n in ran])
    nbytes = sum(arr[0].nbytes for arr in arrays)
    total: dict[str, int] = {}
    workers = []
    for (node, index, lo, hi), arr, (_c, _t, seen) in zip(chunks, arrays, ran, strict=True):
        pages: dict[str, int] = {}
        for x in arr:
            for k, v in placement(x).pages.items():
                pages[str(k)] = pages.get(str(k), 0) + v
                total[str(k)] = total.get(str(k), 0) + v
        workers.append(
            {
                "node": node,
                "index": index,
                "elements": hi - lo,
                "ran_on_node": seen,
                "pages_by_node": pages,
            }
        )
    return {
        **_figures(nbytes, copy_s, triad_s),
        "threads": len(chunks),
        "pages_by_node": dict(sorted(total.items(), key=lambda kv: int(kv[0]))),
        "policy": str(placement(arrays[0][0]).policy),
        "workers": workers,
    }


def _hole(exc: NumaError) -> dict[str, Any]:
    return {"copy_gbps": None, "triad_gbps": None, "error": f"{type(exc).__name__}: {exc}"}


def _team_cells(
    team: NodeTeam,
    chunks: list[Chunk],
    placements: list[Callable[[int], int | str]],
    repeats: int,
    bar: Any,
) -> list[dict[str, Any]]:
    """One team cell per entry of `placements` (worker node -> memory), the team
    started once for all of them; a NumaError makes a hole, not a crash."""
    try:
        team.start()
    except NumaError as exc:  # the kernel refused the workers' policy
        if bar is not None:
            bar.update(len(placements))
        return [_hole(exc) for _ in placements]
    cells = []
    try:
        for memory_of in placements:
            try:
                cells.append(_team_cell(team, chunks, memory_of, repeats))
            except NumaError as exc:  # e.g. a node that is full
                cells.append(_hole(exc))
            finally:
                free_all_blocks()  # give the cached arrays back before the next cell
                if bar is not None:
                    bar.update(1)
    finally:
        team.close()
    return cells


def _on(memory: int | str) -> Callable[[int], int | str]:
    return lambda _worker_node: memory


def _local(worker_node: int) -> int:
    return worker_node


def _team_nodes() -> list[int]:
    """Nodes with CPUs the cpuset allows: the nodes `node_team` gives workers."""
    topo = topology()
    allowed = set(topo.allowed_cpus)
    return [node.id for node in topo.nodes if allowed.intersection(node.cpus)]


def _team_matrix(n: int, repeats: int, memory: list[int | str], bar: Any) -> dict[str, Any]:
    topo = topology()
    allowed = set(topo.allowed_cpus)
    cpu_nodes = _team_nodes()
    cells: list[dict[str, Any]] = []
    threads: list[int] = []
    copy_rows: list[list[float | None]] = []
    triad_rows: list[list[float | None]] = []
    for cpu_node in cpu_nodes:
        team = node_team([cpu_node], blas_threads=1)
        chunks = team.plan(("bandwidth", n), (0, n), (cpu_node,))
        cpus = sorted(allowed.intersection(topo.node(cpu_node).cpus))
        row = _team_cells(team, chunks, [_on(mem) for mem in memory], repeats, bar)
        cells += [
            {"cpu_node": cpu_node, "cpus": cpus, "threads": len(chunks), "memory": mem, **cell}
            for mem, cell in zip(memory, row, strict=True)
        ]
        threads.append(len(chunks))
        copy_rows.append([cell["copy_gbps"] for cell in row])
        triad_rows.append([cell["triad_gbps"] for cell in row])

    # The whole machine: every node with CPUs and memory, each its own block of n.
    usable = set(topo.usable_nodes)
    nodes = [node for node in cpu_nodes if node in usable]
    machine: list[dict[str, Any]] = []
    if nodes:
        team = node_team(nodes, blas_threads=1)
        chunks = team.plan(
            ("bandwidth", n, "machine"), [i * n for i in range(len(nodes) + 1)], nodes
        )
        by_node = {str(node): sum(1 for c in chunks if c[0] == node) for node in nodes}
        kinds: list[tuple[str, Callable[[int], int | str]]] = [
            (LOCAL, _local),
            (INTERLEAVED, _on(INTERLEAVED)),
        ]
        results = _team_cells(team, chunks, [memory_of for _, memory_of in kinds], repeats, bar)
        machine = [
            {
                "memory": name,
                "nodes": nodes,
                "threads": len(chunks),
                "threads_by_node": by_node,
                "size_bytes": len(nodes) * n * 8,
                **cell,
            }
            for (name, _), cell in zip(kinds, results, strict=True)
        ]
    elif bar is not None:
        bar.update(2)
    return {
        "size_bytes": n * 8,
        "repeats": repeats,
        "team": True,
        "threads": threads,
        "cpu_nodes": cpu_nodes,
        "memory": memory,
        "copy_gbps": copy_rows,
        "triad_gbps": triad_rows,
        "cells": cells,
        "machine": machine,
    }


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    # on stderr, and not drawn at all when stderr is not a terminal (disable=None)
    return tqdm(
        total=total, desc="bandwidth", unit="cell", leave=False, file=sys.stderr, disable=None
    )


def bandwidth_matrix(
    size_bytes: int = 64 << 20, repeats: int = 5, progress: bool = False, *, team: bool = False
) -> dict[str, Any]:
    """STREAM copy and triad GB/s, CPU node x memory node: one thread per CPU
    node, or (``team=True``) every worker of the node's team at once.

    One thread (the default): the calling thread is pinned to each CPU node's
    allowed CPUs in turn with os.sched_setaffinity (its original affinity is
    restored before returning) and streams arrays of `size_bytes` on each
    memory node. Team mode: for each node with CPUs the cpuset allows,
    ``node_team([cpu_node], blas_threads=1)`` (one worker per allowed CPU of the
    node) streams the same arrays split into one slice per worker; each worker
    allocates, fills and streams its own slice, and a barrier starts every
    repeat in all of them together. A cell's figure is the bytes of all slices
    over the time from the first worker's start to the last worker's end (best
    of `repeats`, after one warm-up). Then ``result["machine"]``: one team over
    every node with CPUs and memory, each node's workers streaming `size_bytes`
    per array split among them ("local": on their own node, the machine's
    aggregate; "interleaved": interleaved over all usable nodes).

    Parameters
    ----------
    size_bytes : int
        Bytes of each of the four float64 arrays (a, b, c and the triad's
        temporary); per node in team mode, split among the node's workers.
        Choose at least 4x the last-level cache.
    repeats : int
        Timed runs per kernel: ``copy_gbps`` is the best, ``copy_median_gbps``
        the median and ``copy_runs_gbps`` every run's (triad alike).
    progress : bool
        Draw a progress bar on stderr (tqdm), when stderr is a terminal.
    team : bool
        Measure node teams (all of a node's workers at once) and the whole
        machine instead of one thread per node.

    Returns
    -------
    dict
        JSON-ready::

            {"size_bytes", "repeats", "team": False, "threads": 1,
             "cpu_nodes": [0, 1], "memory": [0, 1, "interleaved"],
             "copy_gbps": [[...], ...], "triad_gbps": [[...], ...],  # rows: cpu_nodes
             "cells": [{"cpu_node", "cpus", "memory", "copy_gbps", "triad_gbps",
                        "copy_median_gbps", "triad_median_gbps", "copy_runs_gbps",
                        "triad_runs_gbps", "copy_seconds", "triad_seconds",
                        "pages_by_node", "policy"}, ...]}

        A cell that could not be measured (a full node) has None figures and an
        "error". With ``team=True``: "team": True, "threads" is the list of each
        row's workers, every cell has "threads" and "workers" (per worker: its
        node, index, elements, the node it "ran_on_node" and the "pages_by_node"
        of its four arrays, by the kernel; the cell's "pages_by_node" sums them),
        and "machine" is a list of two rows, "memory" "local" and "interleaved",
        with "nodes", "threads", "threads_by_node", "size_bytes" (per array, all
        nodes) and the cell's figures.

    Raises
    ------
    ValueError
        `size_bytes` under 8 or `repeats` under 1.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> from numa_numpy._diagnostics.bandwidth import bandwidth_matrix
    >>> one = bandwidth_matrix(1 << 20, repeats=1)
    >>> one["threads"], one["memory"][-1], len(one["copy_gbps"]) == len(one["cpu_nodes"])
    (1, 'interleaved', True)
    >>> team = bandwidth_matrix(1 << 20, repeats=1, team=True)
    >>> team["threads"] == [nn.node_team(n).threads[n] for n in team["cpu_nodes"]]
    True
    >>> all(gbps > 0 for row in team["copy_gbps"] for gbps in row)
    True
    >>> [(row["memory"], row["threads"] == sum(team["threads"])) for row in team["machine"]]
    [('local', True), ('interleaved', True)]
    """
    if size_bytes < 8 or repeats < 1:
        raise ValueError("size_bytes must be >= 8 and repeats >= 1")
    topo = topology()
    memory: list[int | str] = list(topo.usable_nodes) + [INTERLEAVED]
    n = size_bytes // 8
    if team:
        bar = _progress_bar(len(_team_nodes()) * len(memory) + 2) if progress else None
        try:
            return _team_matrix(n, repeats, memory, bar)
        finally:
            if bar is not None:
                bar.close()
    allowed_cpus = set(os.sched_getaffinity(0))
    cpu_nodes = [
        node.id for node in topo.nodes if node.cpus and allowed_cpus.intersection(node.cpus)
    ]
    original = os.sched_getaffinity(0)
    cells: list[dict[str, Any]] = []
    bar = _progress_bar(len(cpu_nodes) * len(memory)) if progress else None
    copy_rows: list[list[float | None]] = []
    triad_rows: list[list[float | None]] = []
    try:
        for cpu_node in cpu_nodes:
            cpus = sorted(allowed_cpus.intersection(topo.node(cpu_node).cpus))
            os.sched_setaffinity(0, cpus)
            copy_row: list[float | None] = []
            triad_row: list[float | None] = []
            for mem in memory:
                try:
                    cell = _cell(mem, n, repeats)
                except NumaError as exc:  # e.g. a node that is full: a hole, not a crash
                    cell = _hole(exc)
                finally:
                    free_all_blocks()  # give the cached arrays back before the next cell
                    if bar is not None:
                        bar.update(1)
                cells.append({"cpu_node": cpu_node, "cpus": cpus, "memory": mem, **cell})
                copy_row.append(cell["copy_gbps"])
                triad_row.append(cell["triad_gbps"])
            copy_rows.append(copy_row)
            triad_rows.append(triad_row)
    finally:
        os.sched_setaffinity(0, original)
        if bar is not None:
            bar.close()
    return {
        "size_bytes": n * 8,
        "repeats": repeats,
        "team": False,
        "threads": 1,
        "cpu_nodes": cpu_nodes,
        "memory": memory,
        "copy_gbps": copy_rows,
        "triad_gbps": triad_rows,
        "cells": cells,
    }


def _figure(cell: dict[str, Any], name: str) -> str:
    """A cell's `name` ("copy", "triad") GB/s: the median and, over several
    runs, their range; "-" for a hole."""
    best = cell.get(f"{name}_gbps")
    if best is None:
        return "-"
    runs = cell.get(f"{name}_runs_gbps") or [best]
    if len(runs) == 1:
        return f"{runs[0]:.2f}"
    return f"{statistics.median(runs):.2f} ({min(runs):.2f}-{max(runs):.2f})"


def _runs(repeats: int) -> str:
    return "1 run (GB/s)" if repeats == 1 else f"median of {repeats} runs (min-max), GB/s"


def _one_node_note(memory: list[int | str]) -> list[str]:
    if len(memory) != 2:  # one node with memory, and the interleaved column
        return []
    return [
        "",
        f"One NUMA node: mem {memory[0]} and interleaved are the same memory (interleaving "
        f"over one node puts every page on node {memory[0]}): any difference between the two "
        "columns is run-to-run noise, not placement.",
    ]


def format_matrix(result: dict[str, Any]) -> str:
    """The two matrices as Markdown tables (rows: CPU node, columns: memory),
    each figure the median over the runs with their range; in team mode with
    each row's threads, then the whole-machine rows."""
    team = bool(result.get("team"))
    columns = [f"mem {m}" if m != INTERLEAVED else INTERLEAVED for m in result["memory"]]
    runs = _runs(result["repeats"])
    if team:
        head = (
            "STREAM-style bandwidth, node teams (one worker per allowed CPU of the node, "
            f"all at once), {result['size_bytes'] >> 20} MiB per array split among them, "
            f"{runs}"
        )
        lead, threads = "| cpu node | threads | ", [f"{t} | " for t in result["threads"]]
    else:
        head = (
            f"STREAM-style bandwidth, 1 thread, {result['size_bytes'] >> 20} MiB per array, {runs}"
        )
        lead, threads = "| cpu node | ", [""] * len(result["cpu_nodes"])
    cells = {(c["cpu_node"], c["memory"]): c for c in result["cells"]}
    out = [head]
    for name, title in (("copy", "copy  b = a"), ("triad", "triad a = b + s*c")):
        out += [
            "",
            f"{title}:",
            "",
            lead + " | ".join(columns) + " |",
            "|---|" + "---|" * (len(columns) + team),
        ]
        for node, t in zip(result["cpu_nodes"], threads, strict=True):
            row = [_figure(cells[node, m], name) for m in result["memory"]]
            out.append(f"| {node} | {t}" + " | ".join(row) + " |")
    out += _one_node_note(result["memory"])
    if team and result["machine"]:
        out += [
            "",
            "whole machine (every node's team at once, "
            f"{result['size_bytes'] >> 20} MiB per array per node):",
            "",
            "| memory | nodes | threads | copy | triad |",
            "|---|---|---|---|---|",
        ]
        for row in result["machine"]:
            name = "node-local" if row["memory"] == LOCAL else row["memory"]
            out.append(
                f"| {name} | {format_list(row['nodes'])} | {row['threads']} | "
                f"{_figure(row, 'copy')} | {_figure(row, 'triad')} |"
            )
    errors = [c for c in result["cells"] if c.get("error")]
    for c in errors:
        out.append(f"\ncpu node {c['cpu_node']}, memory {c['memory']}: {c['error']}")
    for row in result.get("machine", []):
        if row.get("error"):
            out.append(f"\nwhole machine, memory {row['memory']}: {row['error']}")
    return "\n".join(out)
