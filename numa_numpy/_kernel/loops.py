"""The C worker pool and the replaced ufunc loops, wrapped.

Thin on purpose, like `arena`: the decisions (which nodes, which threshold,
when to install) are made in ``_compute.loops``; these call the C side
(``nn_workers.c``, ``nn_ufunc.c``) and raise NumaError (errno) for what it
refuses. Node CPU lists come from the caller (read from sysfs by the topology);
the C side pins each worker to its node's CPUs that this thread may run on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import ParallelSettingError
from .lib import check, clear_step, ffi, lib
from .topology import topology

__all__ = [
    "node_cpu_groups",
    "ensure_workers",
    "start_workers",
    "stop_workers",
    "worker_count",
    "workers_per_node",
    "in_worker",
    "install_loops",
    "loop_names",
    "set_mode",
    "set_thread_mode",
    "thread_mode",
    "loop_stats",
    "worker_stats",
    "set_record",
    "last_record",
    "selftest",
    "nested_check",
    "block_parts_at",
    "read_pieces",
    "MAX_PIECES",
]

MAX_PIECES: int = int(lib.NN_MAX_PIECES)


def node_cpu_groups(nodes: Iterable[int] | None) -> dict[int, tuple[int, ...]]:
    """{node: its CPUs this process may use} for `nodes` (None: every node
    with some); ParallelSettingError for a node without such CPUs."""
    topo = topology()
    allowed = set(topo.allowed_cpus)
    groups = {n.id: tuple(c for c in n.cpus if c in allowed) for n in topo.nodes}
    if nodes is None:
        chosen = [n for n, cpus in groups.items() if cpus]
        return {n: groups[n] for n in chosen} or {0: tuple(sorted(os.sched_getaffinity(0)))}
    wanted = list(nodes)
    for n in wanted:
        if isinstance(n, bool) or not isinstance(n, int) or not groups.get(n):
            raise ParallelSettingError(
                f"node {n!r} has no CPUs this process may run on; nodes with CPUs: "
                f"{sorted(k for k, v in groups.items() if v)}",
                nodes=(n,),
            )
    if not wanted:
        raise ParallelSettingError("nodes= names no node", nodes=())
    return {n: groups[n] for n in dict.fromkeys(wanted)}


def ensure_workers() -> None:
    """The pool running on every node with CPUs, unless it runs already (or a
    forked child's pool restarts on its first job). For callers below the
    compute layer that need workers per node (a partitioned file read)."""
    if not worker_count() and not worker_stats()["forked"]:
        start_workers(node_cpu_groups(None))


def start_workers(groups: Mapping[int, Sequence[int]], per_node: int = 0) -> None:
    """Start the pool: for each node id, workers pinned to its CPUs (those this
    thread may run on); `per_node` workers per node, 0 for one per CPU."""
    nodes = list(groups)
    cpus = [int(c) for n in nodes for c in groups[n]]
    clear_step()
    rc = lib.nn_workers_start(
        ffi.new("int[]", nodes or [0]),
        ffi.new("int[]", [len(groups[n]) for n in nodes] or [0]),
        len(nodes),
        ffi.new("int[]", cpus or [0]),
        per_node,
    )
    check(rc, "starting the worker threads", fallback="pthread_create")


def stop_workers() -> None:
    """Stop and join every worker (a no-op when none runs)."""
    clear_step()
    check(lib.nn_workers_stop(), "stopping the worker threads", fallback="pthread_join")


def worker_count() -> int:
    """Workers running now (0 in a forked child until its first split call)."""
    return int(lib.nn_workers_count())


def workers_per_node() -> dict[int, int]:
    """{node id: workers} of the running pool."""
    out = ffi.new("int[]", 64)
    n = min(int(lib.nn_workers_nodes(out, 64)), 64)
    return {int(out[i]): int(lib.nn_workers_on_node(out[i])) for i in range(n)}


def in_worker() -> bool:
    """Whether the calling thread is one of the pool's workers."""
    return bool(lib.nn_workers_in_worker())


def install_loops() -> int:
    """Replace NumPy's loops (once); how many are ours."""
    clear_step()
    return check(lib.nn_ufunc_install(), "replacing NumPy's ufunc loops", fallback="import_umath")


def loop_names() -> tuple[str, ...]:
    """The replaced loops, as "add dd->d"."""
    return tuple(
        ffi.string(lib.nn_ufunc_loop_name(i)).decode() for i in range(lib.nn_ufunc_installed())
    )


def set_mode(on: bool, threshold: int) -> None:
    """The process-wide mode and threshold (elements, >= 1)."""
    check(lib.nn_ufunc_set_mode(int(on), threshold), "setting the parallel mode")


def set_thread_mode(mode: int, threshold: int = 0) -> None:
    """This thread's override: -1 follow the process, 0 off, 1 on (threshold)."""
    check(lib.nn_ufunc_set_thread_mode(mode, threshold), "setting the thread's parallel mode")


def thread_mode() -> tuple[int, int]:
    """This thread's override (-1, 0 or 1) and its threshold."""
    threshold = ffi.new("long long *")
    mode = lib.nn_ufunc_thread_mode(threshold)
    return int(mode), int(threshold[0])


def _fields(struct: object, names: Sequence[str]) -> dict[str, int]:
    return {name: int(getattr(struct, name)) for name in names}


def loop_stats() -> dict[str, int]:
    """The dispatcher's counters (split, reduce_split, serial, busy, nested,
    local_pieces) and settings (installed, on, threshold)."""
    out = ffi.new("nn_ufunc_stats *")
    lib.nn_ufunc_stats_get(out)
    names = ("split", "reduce_split", "serial", "busy", "nested", "local_pieces")
    return _fields(out, (*names, "installed", "on", "threshold"))


def worker_stats() -> dict[str, int]:
    """The pool's counters (jobs, pieces_caller, pieces_worker, busy, restarts,
    workers, forked)."""
    out = ffi.new("nn_workers_stats *")
    lib.nn_workers_stats_get(out)
    names = ("jobs", "pieces_caller", "pieces_worker", "busy", "restarts", "workers", "forked")
    return _fields(out, names)


def set_record(on: bool) -> None:
    """Test hook: make every piece record the CPU and node it ran on."""
    lib.nn_workers_set_record(int(on))


def last_record() -> list[tuple[int, int]]:
    """(CPU, node) of each piece of the last job (-1 where not recorded)."""
    cpus = ffi.new("int[]", MAX_PIECES)
    nodes = ffi.new("int[]", MAX_PIECES)
    k = min(int(lib.nn_workers_record(cpus, nodes, MAX_PIECES)), MAX_PIECES)
    return [(int(cpus[i]), int(nodes[i])) for i in range(k)]


def selftest(
    npieces: int, nodes: Sequence[int] | None = None, spin_ns: int = 0, raise_piece: int = -1
) -> tuple[int, bool, list[int], list[int]]:
    """Run a job without NumPy: (rc, FE_DIVBYZERO raised in this thread
    afterwards, per piece 1 run by this thread / 2 by a worker / 0 not run,
    per piece the code a job started inside it got). raise_piece: the piece
    that raises FE_DIVBYZERO (-2: every piece a worker runs). Codes are
    returned, not raised: the tests look at -EBUSY and -EDEADLK."""
    flags = ffi.new("int *")
    ran = ffi.new("int[]", max(npieces, 1))
    nested = ffi.new("int[]", max(npieces, 1))
    node_arg = ffi.new("int[]", list(nodes)) if nodes is not None else ffi.NULL
    rc = lib.nn_workers_selftest(npieces, node_arg, spin_ns, raise_piece, flags, ran, nested)
    return (
        int(rc),
        bool(flags[0]),
        [int(ran[i]) for i in range(npieces)],
        [int(nested[i]) for i in range(npieces)],
    )


def nested_check(loop: str, buffer: Any) -> int:
    """Test hook: a job whose two pieces call the replaced `loop` ("add dd->d")
    in place on halves of `buffer` (a float64 array); returns the job's code."""
    pointer = ffi.cast("double *", buffer.ctypes.data)
    return int(lib.nn_ufunc_nested_check(loop.encode(), pointer, buffer.size))


def block_parts_at(address: int) -> tuple[int, list[int], list[int]] | None:
    """For an address inside a live partitioned block: (data start, part bounds
    in bytes, part nodes); None when it is in none."""
    start = ffi.new("char **")
    bounds = ffi.new("size_t[]", int(lib.NN_REG_PARTS) + 1)
    nodes = ffi.new("int[]", int(lib.NN_REG_PARTS))
    k = lib.nn_parts_find(ffi.cast("void *", address), start, bounds, nodes, lib.NN_REG_PARTS)
    if k == 0:
        return None
    base = int(ffi.cast("uintptr_t", start[0]))
    return base, [int(bounds[i]) for i in range(k + 1)], [int(nodes[i]) for i in range(k)]


def read_pieces(fd: int, pieces: Sequence[tuple[int, int, int, int]]) -> None:
    """Read pieces of file `fd` into memory, each (address, file offset,
    length, node) on a worker of its node (-1: any thread), in parallel when
    the pool runs, else here in order (``nn_files.c``). Raises NumaError with
    the first failed piece's errno (ENODATA: the file ended first)."""
    if not pieces:
        return
    if len(pieces) > MAX_PIECES:
        raise ValueError(f"{len(pieces)} pieces: at most {MAX_PIECES} per read")
    dests = ffi.new("char *[]", [ffi.cast("char *", p[0]) for p in pieces])
    offsets = ffi.new("long long[]", [p[1] for p in pieces])
    lengths = ffi.new("size_t[]", [p[2] for p in pieces])
    nodes = ffi.new("int[]", [p[3] for p in pieces])
    rc = lib.nn_files_read(fd, dests, offsets, lengths, nodes, len(pieces), ffi.NULL)
    check(rc, "reading the file", step="preadv")
