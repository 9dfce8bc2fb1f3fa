"""STREAM-style memory bandwidth from every CPU node to every memory node.

    python -m numa_numpy bench [--size-mib MiB] [--repeats N] [--json]

`bandwidth_matrix()` returns, for each NUMA node with CPUs (the thread pinned to
that node's CPUs) and each node with memory, plus an "interleaved" column (pages
spread over all usable nodes), the single-thread copy and triad bandwidth in
GB/s (best of `repeats`). The arrays come from
``numa_numpy.numa_empty(..., node=mem_node, prefault="touch")`` and the kernels
run inside ``numa_numpy.on_node(mem_node)`` with preallocated temporaries, so
nothing they touch lands elsewhere.

Bytes counted are STREAM's: copy ``b[:] = a`` moves 2 arrays, triad
``a = b + s*c`` moves 3. NumPy computes the triad in two passes through a
preallocated temporary (``np.multiply(c, s, out=t); np.add(b, t, out=a)``), so
the memory actually moved is 5 arrays' worth and the triad figure understates the
machine's bandwidth: compare triad with triad across cells, not with copy.

Importing this module does nothing but import NumPy and numa_numpy; it works on a
one-node machine (a 1 x 1 matrix plus the interleaved column).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._creation import interleaved_empty, numa_empty
from ._memory import free_all_blocks
from ._placement import placement
from ._scope import PolicyScope, interleaved, on_node
from ._topology import topology
from .errors import NumaError

__all__ = ["bandwidth_matrix", "format_matrix"]

INTERLEAVED = "interleaved"
COPY_ARRAYS = 2  # STREAM byte counts
TRIAD_ARRAYS = 3


def _best_seconds(kernel: Callable[[], None], repeats: int) -> float:
    kernel()  # warm-up: caches, TLB, lazy NumPy setup
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        kernel()
        best = min(best, time.perf_counter() - t0)
    return best


def _cell(memory: int | str, n: int, repeats: int) -> dict[str, Any]:
    """Copy and triad GB/s with every array on `memory` (a node or INTERLEAVED),
    run by the calling (already pinned) thread."""
    scope: PolicyScope
    if memory == INTERLEAVED:
        scope = interleaved(prefault="touch")

        def make() -> np.ndarray:
            return interleaved_empty(n, prefault="touch")
    else:
        assert isinstance(memory, int)
        scope = on_node(memory, prefault="touch")
        node = memory

        def make() -> np.ndarray:
            return numa_empty(n, node=node, prefault="touch")

    a, b, c, t = make(), make(), make(), make()
    a.fill(1.0)
    b.fill(2.0)
    c.fill(0.5)
    t.fill(0.0)
    scalar = 3.0

    def copy() -> None:
        np.copyto(b, a)

    def triad() -> None:
        np.multiply(c, scalar, out=t)
        np.add(b, t, out=a)

    with scope:  # anything NumPy allocates on the way lands there too
        copy_s = _best_seconds(copy, repeats)
        triad_s = _best_seconds(triad, repeats)
    where = placement(a)
    return {
        "copy_gbps": COPY_ARRAYS * a.nbytes / copy_s / 1e9,
        "triad_gbps": TRIAD_ARRAYS * a.nbytes / triad_s / 1e9,
        "copy_seconds": copy_s,
        "triad_seconds": triad_s,
        "pages_by_node": {str(k): v for k, v in where.pages.items()},
        "policy": str(where.policy),
    }


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="bandwidth", unit="cell", leave=False)


def bandwidth_matrix(
    size_bytes: int = 64 << 20, repeats: int = 5, progress: bool = False
) -> dict[str, Any]:
    """Single-thread STREAM copy and triad GB/s, CPU node x memory node.

    ``size_bytes`` is the size of each of the four float64 arrays (choose at
    least 4x the last-level cache). Returns a JSON-ready dict::

        {"size_bytes", "repeats", "cpu_nodes": [0, 1], "memory": [0, 1, "interleaved"],
         "copy_gbps": [[...], ...], "triad_gbps": [[...], ...],   # rows: cpu_nodes
         "cells": [{"cpu_node", "memory", "copy_gbps", "triad_gbps", ...}, ...]}

    The calling thread is pinned to each CPU node's allowed CPUs in turn with
    os.sched_setaffinity; its original affinity is restored before returning.
    ``progress`` draws a progress bar on stderr (tqdm).
    """
    if size_bytes < 8 or repeats < 1:
        raise ValueError("size_bytes must be >= 8 and repeats >= 1")
    topo = topology()
    allowed_cpus = set(os.sched_getaffinity(0))
    cpu_nodes = [
        node.id for node in topo.nodes if node.cpus and allowed_cpus.intersection(node.cpus)
    ]
    memory: list[int | str] = list(topo.usable_nodes) + [INTERLEAVED]
    n = size_bytes // 8
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
                    cell = {
                        "copy_gbps": None,
                        "triad_gbps": None,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
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
        "threads": 1,
        "cpu_nodes": cpu_nodes,
        "memory": memory,
        "copy_gbps": copy_rows,
        "triad_gbps": triad_rows,
        "cells": cells,
    }


def format_matrix(result: dict[str, Any]) -> str:
    """The two matrices as Markdown tables (rows: CPU node, columns: memory)."""
    columns = [f"mem {m}" if m != INTERLEAVED else INTERLEAVED for m in result["memory"]]
    out = [
        f"STREAM-style bandwidth, 1 thread, {result['size_bytes'] >> 20} MiB per array, "
        f"best of {result['repeats']} (GB/s)"
    ]
    for key, title in (("copy_gbps", "copy  b = a"), ("triad_gbps", "triad a = b + s*c")):
        out += [
            "",
            f"{title}:",
            "",
            "| cpu node | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for node, row in zip(result["cpu_nodes"], result[key], strict=True):
            cells = ["-" if v is None else f"{v:.2f}" for v in row]
            out.append(f"| {node} | " + " | ".join(cells) + " |")
    errors = [c for c in result["cells"] if c.get("error")]
    for c in errors:
        out.append(f"\ncpu node {c['cpu_node']}, memory {c['memory']}: {c['error']}")
    return "\n".join(out)
