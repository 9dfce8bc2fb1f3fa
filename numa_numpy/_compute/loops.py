"""Node-parallel ufunc loops for every array: the process-wide switch, the
per-thread override and what they did.

With parallel mode on, NumPy's own inner loops of the common elementwise
ufuncs (arithmetic, comparisons, min/max, logical, sqrt/exp/log/sin/cos/tan
over bool, int32, int64, float32, float64, complex64, complex128) and their
reductions run split over worker threads pinned per NUMA node, for calls of
at least `threshold` elements; smaller calls cost one comparison more. The
loops are replaced the first time parallel mode is turned on (in any way).

The override of `parallel` is per thread (the C dispatcher reads a
thread-local, as it runs without the GIL): asyncio tasks of one thread share
it, so a ``with parallel():`` block that awaits lets the other tasks of its
thread run in its mode until it exits. Results are the same either way
(elementwise bit for bit, reductions as documented), only the speed differs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from .._kernel import loops as _k
from ..errors import ParallelSettingError

__all__ = ["set_parallel", "parallel", "parallel_info", "DEFAULT_THRESHOLD"]

#: Elements a call needs before it is split (see benchmarks/loops_overhead.py).
DEFAULT_THRESHOLD = 1 << 20
THRESHOLD_ENV = "NUMA_NUMPY_PARALLEL_THRESHOLD"

_lock = threading.Lock()
_state: dict[str, Any] = {"threshold": None, "nodes": None}


def _check_threshold(threshold: object, what: str = "parallel threshold") -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ParallelSettingError(
            f"{what} must be an int >= 1 (elements), not {threshold!r}", threshold=threshold
        )
    return threshold


def _default_threshold() -> int:
    raw = os.environ.get(THRESHOLD_ENV, "").strip()
    if not raw:
        return DEFAULT_THRESHOLD
    try:
        value = int(raw.replace("_", ""), 0)
    except ValueError:
        raise ParallelSettingError(
            f"{THRESHOLD_ENV}={raw!r} is not an int", threshold=raw
        ) from None
    return _check_threshold(value, THRESHOLD_ENV)


def _current_threshold() -> int:
    value = _state["threshold"]
    return int(value) if value is not None else _default_threshold()


def _ensure_running(nodes: Iterable[int] | None = None) -> None:
    """Loops installed and workers running (on `nodes` when given); lock held.
    A forked child's workers start again in C, on its first split call."""
    _k.install_loops()
    if nodes is None and (_k.worker_count() or _k.worker_stats()["forked"]):
        return  # running: no topology read on every parallel() block
    groups = _k.node_cpu_groups(nodes if nodes is not None else _state["nodes"])
    if nodes is not None:
        _state["nodes"] = tuple(groups)
    if _k.worker_count() and groups != _state.get("groups"):
        _k.stop_workers()
    if not _k.worker_count():
        _k.start_workers(groups)
        _state["groups"] = groups


def set_parallel(
    enabled: bool, *, threshold: int | None = None, nodes: Iterable[int] | None = None
) -> None:
    """Turn node-parallel ufunc loops on or off for the whole process.

    Parameters
    ----------
    enabled : bool
        On: calls of NumPy's replaced loops with at least `threshold` elements
        run split over the worker threads (results as NumPy's: elementwise
        bit for bit; float reductions reassociated). Off: NumPy's loops run
        whole, at the cost of one comparison per call.
    threshold : int, optional
        Fewest elements a call must have to be split (>= 1). Default: the
        value set last, else ``NUMA_NUMPY_PARALLEL_THRESHOLD``, else
        `DEFAULT_THRESHOLD` (2**20).
    nodes : iterable of int, optional
        The nodes whose CPUs run the workers (default: every node with CPUs
        this process may use); one worker per allowed CPU of each.

    Raises
    ------
    ParallelSettingError
        `enabled` not a bool, a bad threshold or a node without CPUs.

    See Also
    --------
    parallel, parallel_info

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> nn.set_parallel(True, threshold=1000)
    >>> a = np.arange(100_000.0)
    >>> bool(np.array_equal(np.sqrt(a) + a, np.sqrt(a) + a))
    True
    >>> nn.parallel_info()["enabled"]
    True
    >>> nn.set_parallel(False)
    """
    if not isinstance(enabled, bool):
        raise ParallelSettingError(f"enabled must be a bool, not {enabled!r}", enabled=enabled)
    value = _check_threshold(threshold) if threshold is not None else None
    with _lock:
        if enabled:
            _ensure_running(nodes)
        elif nodes is not None:  # checked, used from the next start
            _state["nodes"] = tuple(_k.node_cpu_groups(nodes))
            if _k.worker_count() and _k.node_cpu_groups(nodes) != _state.get("groups"):
                _k.stop_workers()
        if value is not None:
            _state["threshold"] = value
        _k.set_mode(enabled, _current_threshold())


class parallel:  # noqa: N801 - used like a function, as a context manager
    """Parallel loops on (or off) in this thread for the duration of a block.

    Nestable; the previous setting of the thread comes back on exit. The
    override belongs to the thread (other threads follow `set_parallel`);
    asyncio tasks of one thread share it (see the module's notes).

    Parameters
    ----------
    enabled : bool, default True
        On or off in this thread, whatever the process-wide switch says.
    threshold : int, optional
        Fewest elements a call must have to be split here (default: the
        process's threshold).

    Raises
    ------
    ParallelSettingError
        `enabled` not a bool or a bad threshold.

    See Also
    --------
    set_parallel, parallel_info

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> a = np.ones(10_000, dtype=np.int64)
    >>> with nn.parallel(threshold=1000):
    ...     int(np.add.reduce(a)), nn.parallel_info()["thread"]
    (10000, True)
    >>> print(nn.parallel_info()["thread"])
    None
    """

    def __init__(self, enabled: bool = True, *, threshold: int | None = None) -> None:
        if not isinstance(enabled, bool):
            raise ParallelSettingError(f"enabled must be a bool, not {enabled!r}", enabled=enabled)
        self.enabled = enabled
        self.threshold = _check_threshold(threshold) if threshold is not None else None
        self._saved: list[tuple[int, int]] = []

    def __enter__(self) -> parallel:
        if self.enabled:
            with _lock:
                _ensure_running()
        threshold = self.threshold if self.threshold is not None else _current_threshold()
        self._saved.append(_k.thread_mode())
        _k.set_thread_mode(int(self.enabled), threshold)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        mode, threshold = self._saved.pop()
        _k.set_thread_mode(mode, threshold)

    def __repr__(self) -> str:
        return f"parallel({self.enabled}, threshold={self.threshold})"


def parallel_info() -> dict[str, Any]:
    """What parallel mode is set to and what it did so far.

    Returns
    -------
    dict
        ``enabled`` (the process-wide switch), ``thread`` (this thread's
        override: True, False or None), ``threshold`` (process-wide, in
        elements), ``workers`` ({node: worker threads}), ``split`` and
        ``reduce_split`` (calls run in pieces), ``serial`` (large calls run
        whole: mode off, overlapping operands, a step of 0, fewer elements
        than the threshold), ``busy`` (run whole: another thread's call held
        the workers), ``nested`` (run whole: called from a worker),
        ``local_pieces`` (pieces sent to the node holding their part of a
        partitioned array), ``loops_installed`` and ``numpy`` (its version).

    See Also
    --------
    set_parallel, parallel

    Examples
    --------
    >>> import numa_numpy as nn
    >>> info = nn.parallel_info()
    >>> sorted(info)[:4]
    ['busy', 'enabled', 'local_pieces', 'loops_installed']
    """
    import numpy as np

    stats = _k.loop_stats()
    mode, _ = _k.thread_mode()
    return {
        "enabled": bool(stats["on"]),
        "thread": None if mode < 0 else bool(mode),
        "threshold": _current_threshold(),
        "workers": _k.workers_per_node(),
        "split": stats["split"],
        "reduce_split": stats["reduce_split"],
        "serial": stats["serial"],
        "busy": stats["busy"],
        "nested": stats["nested"],
        "local_pieces": stats["local_pieces"],
        "loops_installed": stats["installed"],
        "numpy": np.__version__,
    }
