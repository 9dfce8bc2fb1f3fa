"""Introspection and control of the memory numa_numpy's handlers hold.

Freed large blocks (above 64 KiB), and the 1 MiB chunks small arrays are
carved from once every array in them is freed, are kept in one cache for the
whole process, so that their pages are reused without faulting them in again. The cache has a
budget derived from the process's memory limit (cgroup v1 or v2, else the
machine's memory), keeps at most a small "hot" share of it as it is and marks
the rest MADV_FREE, so the kernel takes those pages back under memory pressure
instead of killing anyone, and a block unused for the decay time (10 s unless
set) is unmapped by a thread that exists only while something is cached.
"""

from __future__ import annotations

import html
import operator
import os
import warnings
from typing import Any

from .._kernel import arena as _arena
from .._kernel.pages import base_page_size, numa_maps, query_pages
from .._kernel.sysfs import MemoryLimit, memory_limit
from ..errors import CacheSettingError
from .budget import DEFAULT_DECAY_S, cache_rule, hot_limit
from .handler import all_handlers, release_handlers
from .scope import forget_scopes

__all__ = [
    "MemoryPool",
    "MemoryStats",
    "get_memory_pool",
    "memory_stats",
    "node_memory_stats",
    "free_all_blocks",
    "forget_handlers",
    "set_cache_limit",
    "set_cache_decay",
    "memory_limit",
]


class _Settings:
    limit: MemoryLimit = MemoryLimit(0, "")
    budget: int = 0
    decay_s: float | None = DEFAULT_DECAY_S


def _apply() -> None:
    budget = _Settings.budget
    decay = _Settings.decay_s
    decay_ms = -1 if decay is None else round(decay * 1000)
    _arena.cache_configure(budget, hot_limit(budget), decay_ms)


def set_cache_limit(nbytes: int | None = None) -> None:
    """The process-wide budget for freed large blocks kept for reuse, in bytes,
    over all policies together. None: the default, an eighth of the process's
    memory limit (its cgroup's, else the machine's) and at most 1 GiB, read
    again now. 0 keeps nothing: every large block is unmapped when freed.

    Parameters
    ----------
    nbytes : int, optional
        The budget in bytes (NumPy integers too); None for the default.

    Raises
    ------
    CacheSettingError
        Not a number of bytes, or negative (a `ValueError`).

    See Also
    --------
    set_cache_decay, MemoryPool.set_cache_limit, memory_stats

    Notes
    -----
    Freed large blocks are budgeted, and so are the 1 MiB chunks small arrays
    are carved from once every array in a chunk is freed (the chunk being
    carved stays); a chunk holding one live array stays with it. Cached blocks
    stay placed and faulted in, which is why a cached ``np.empty`` is cheap,
    and why RSS monitors count them.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.set_cache_limit(256 << 20)
    >>> nn.get_memory_pool().get_cache_limit()
    268435456
    >>> nn.set_cache_limit()      # back to the default
    """
    if nbytes is None:
        _Settings.limit = memory_limit()
        _Settings.budget = cache_rule(_Settings.limit.bytes).budget
    else:
        try:
            value = operator.index(nbytes)  # NumPy integers too
        except TypeError:
            value = -1
        if isinstance(nbytes, bool) or value == -1 and not isinstance(nbytes, int):
            raise CacheSettingError(f"cache limit must be a number of bytes, not {nbytes!r}")
        if value < 0:
            raise CacheSettingError(f"cache limit must be >= 0 bytes, not {value}")
        _Settings.budget = value
    _apply()


def set_cache_decay(seconds: float | None = DEFAULT_DECAY_S) -> None:
    """How long a freed block may sit unused in the cache before its memory goes
    back to the system (default 10 s, like jemalloc's ``dirty_decay_ms``). 0
    keeps nothing (every large block is unmapped when freed); None keeps blocks
    until the budget, `free_all_blocks()` or `forget_handlers()` removes them.

    Parameters
    ----------
    seconds : float or None, default 10.0
        Seconds, finite and >= 0, or None for no decay.

    Raises
    ------
    CacheSettingError
        Not a number, negative, infinite or NaN.

    See Also
    --------
    set_cache_limit, free_all_blocks

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.set_cache_decay(2.5)
    >>> nn.memory_stats()["process"]["decay_s"]
    2.5
    >>> nn.set_cache_decay()      # back to 10 s
    """
    if seconds is not None:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            raise CacheSettingError(
                f"cache decay must be a number of seconds or None, not {seconds!r}"
            ) from None
        if not value >= 0 or value == float("inf"):
            raise CacheSettingError(f"cache decay must be >= 0 seconds and finite, not {value}")
        seconds = value
    _Settings.decay_s = seconds
    _apply()


def _cache_stats() -> dict[str, Any]:
    return _arena.cache_stats()


_COLUMNS = (  # (heading, key, MiB?) of the readable table
    ("used MiB", "used_bytes", True),
    ("cached MiB", "cached_bytes", True),
    ("chunks MiB", "chunk_bytes", True),
    ("live blocks", "live_blocks", False),
    ("fallbacks", "fallbacks", False),
    ("enforcement", "enforcement", False),
)


def _cell(entry: dict[str, Any], key: str, mib: bool) -> str:
    value = entry.get(key, "-")
    return f"{value / 2**20:.1f}" if mib and isinstance(value, int) else str(value)


class MemoryStats(dict[str, dict[str, Any]]):
    """What `memory_stats` returns: the plain dict of counters (index it as
    before), shown as a table of handlers and the process's totals.

    ``repr()`` (the REPL) and ``_repr_html_`` (a notebook) give one row per
    handler, its bytes in live arrays, freed blocks kept for reuse and small
    arrays' chunks (MiB), live blocks, fallbacks and enforcement, then the
    ``"process"`` totals and the cache's budget.

    Parameters
    ----------
    entries : dict, optional
        Handler key -> counters, and ``"process"``, as `memory_stats` builds it.

    See Also
    --------
    memory_stats

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_ones(1 << 20, node=0)
    >>> stats = nn.memory_stats()
    >>> isinstance(stats, dict) and stats["process"]["used_bytes"] >= a.nbytes
    True
    >>> print(repr(stats).splitlines()[0])  # doctest: +ELLIPSIS
    memory_stats(): ... handler(s), ... MiB in live arrays, ... MiB cached...
    >>> "<table>" in stats._repr_html_()
    True
    """

    def _rows(self) -> list[tuple[str, list[str]]]:
        return [
            (
                "process (all handlers)" if name == "process" else name,
                [_cell(entry, key, mib) for _, key, mib in _COLUMNS],
            )
            for name, entry in self.items()
        ]

    def _summary(self) -> str:
        proc = self.get("process", {})

        def mib(key: str) -> str:
            return f"{proc.get(key, 0) / 2**20:.1f}"

        return (
            f"memory_stats(): {proc.get('handlers', len(self) - 1)} handler(s), "
            f"{mib('used_bytes')} MiB in live arrays, {mib('cached_bytes')} MiB cached"
            + (
                f" (budget {mib('budget')} MiB, from {proc.get('memory_limit_source', '?')})"
                if "budget" in proc
                else ""
            )
        )

    def __repr__(self) -> str:
        heads = ["handler"] + [head for head, _, _ in _COLUMNS]
        rows = self._rows()
        widths = [max([len(heads[0])] + [len(name) for name, _ in rows])]
        widths += [
            max([len(head)] + [len(cells[i]) for _, cells in rows])
            for i, head in enumerate(heads[1:])
        ]

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
            return "  ".join([first, *rest, cells[-1]]).rstrip()

        table = [line(heads)] + [line([name, *cells]) for name, cells in rows]
        return "\n".join([self._summary(), *table])

    def _repr_html_(self) -> str:
        heads = "".join(f"<th>{head}</th>" for head in ["handler"] + [h for h, _, _ in _COLUMNS])
        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(name)}</td>"
            + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
            + "</tr>"
            for name, cells in self._rows()
        )
        return (
            f"<table><caption>{html.escape(self._summary())}</caption>"
            f"<thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>"
        )


def memory_stats() -> MemoryStats:
    """Per policy handler: used, cached and mapped bytes, live blocks, fallbacks.

    The entry ``"process"`` holds the process-wide cache and totals:
    ``budget`` (bytes of freed blocks all handlers may keep together),
    ``memory_limit`` and ``memory_limit_source`` (what the budget was derived
    from), ``hot_limit`` (of the budget, blocks kept as they are),
    ``decay_s`` (None: no decay), ``cached_bytes`` (mapped in cached blocks
    now) = ``hot_bytes`` (kept as they are) + ``lazy_bytes`` (MADV_FREE'd: the
    kernel may take their pages), ``lazy_resident_bytes`` (of the lazy blocks,
    what is still in memory now, asked of the kernel: the rest it took back, or
    was never written), ``reclaimed_bytes`` (cumulative: pages of lazy blocks
    that were not in memory when the block was finally unmapped),
    ``decayed_bytes`` and ``evicted_bytes`` (cumulative: unmapped after the
    decay time / to stay within the budget), ``cached_chunk_bytes`` (of
    ``cached_bytes``, emptied chunks of small arrays), ``decay_thread``, and
    the sums over handlers of ``used_bytes``, ``live_blocks``, ``chunk_bytes``,
    ``large_bytes``, ``released_chunk_bytes``, ``fallbacks`` and
    ``huge_fallbacks`` (so a loop over all entries reads it as a totals row).

    Per handler, ``chunk_bytes`` is what is mapped for small arrays now,
    ``cached_bytes`` what its cache holds (freed large blocks and emptied
    chunks), of which ``cached_chunk_bytes`` emptied chunks, and
    ``released_chunk_bytes`` (cumulative) the chunks given back once every
    small array in them was freed: to the cache, or unmapped. Handlers
    forgotten by `forget_handlers()` but still in use (by a thread's scope, a
    live array) are listed with ``retired: True``.

    Returns
    -------
    MemoryStats
        A dict: one entry per handler, keyed by its policy and options
        (``"bind:0 strict=False huge_pages=auto prefault=none"``), and
        ``"process"``; shown as a table in the REPL and in notebooks.

    See Also
    --------
    node_memory_stats : the same per node, as the kernel placed it.
    get_memory_pool : CuPy's pool methods.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_ones(1 << 20, node=0)
    >>> stats = nn.memory_stats()
    >>> stats["process"]["used_bytes"] >= a.nbytes
    True
    >>> any(key.startswith("bind:0 ") for key in stats)
    True
    """
    out: dict[str, dict[str, Any]] = {}
    totals = dict.fromkeys(
        (
            "used_bytes",
            "live_blocks",
            "chunk_bytes",
            "large_bytes",
            "released_chunk_bytes",
            "fallbacks",
            "huge_fallbacks",
        ),
        0,
    )
    for handler in all_handlers():
        stats = handler.stats()
        if not stats:  # a retired handler whose arena went away just now
            continue
        o = handler.options
        key = (
            f"{o.policy} strict={o.strict} huge_pages={o.huge_pages.value} "
            f"prefault={o.prefault.value}"
        )
        if handler.retired:
            key += f" (retired #{handler.id})"
        out[key] = {
            **stats,
            "enforcement": str(handler.enforcement),
            "retired": handler.retired,
        }
        for name in totals:
            totals[name] += stats[name]
    cache = _cache_stats()
    decay_ms = cache.pop("decay_ms")
    out["process"] = {
        "budget": cache.pop("limit"),
        "memory_limit": _Settings.limit.bytes,
        "memory_limit_source": _Settings.limit.source,
        "decay_s": None if decay_ms < 0 else decay_ms / 1000,
        **cache,
        "lazy_resident_bytes": _arena.cache_lazy_resident(),
        "handlers": len(out),
        **totals,
        "enforcement": "-",  # a totals row: no policy of its own
    }
    return MemoryStats(out)


def free_all_blocks() -> int:
    """Release every cached free block (CuPy's name and meaning): unmap the
    freed large blocks of every handler, those still in use after
    `forget_handlers()` included. Returns the bytes given back.

    Returns
    -------
    int
        Bytes unmapped.

    See Also
    --------
    forget_handlers, set_cache_decay, MemoryPool.free_all_blocks

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_empty(1 << 22, node=0)   # a 32 MiB block
    >>> del a                                # freed into the cache
    >>> nn.free_all_blocks() >= 32 << 20     # the block (and its header page)
    True
    >>> nn.get_memory_pool().free_bytes(), nn.free_all_blocks()
    (0, 0)
    """
    return _arena.cache_trim()


def forget_handlers() -> int:
    """`free_all_blocks()`, then forget every handler: the next scope makes (and
    probes) fresh ones. A forgotten handler still in use (a thread's scope, live
    arrays) stays listed by `memory_stats()` and its freed blocks are released by
    `free_all_blocks()` until its last user is gone; then its chunks are
    unmapped. Returns the bytes given back now.

    Returns
    -------
    int
        Bytes unmapped now.

    See Also
    --------
    free_all_blocks

    Examples
    --------
    >>> import numa_numpy as nn
    >>> first = nn.on_node(0).handler
    >>> a = nn.numa_empty(1 << 22, node=0); del a  # a cached block
    >>> nn.forget_handlers() >= 32 << 20     # released with the handlers
    True
    >>> nn.on_node(0).handler is first       # the next scope makes a new one
    False
    """
    released = free_all_blocks()
    release_handlers()
    forget_scopes()
    return released


class MemoryPool:
    """The process's pool of numa_numpy memory, with CuPy's pool methods.

    One pool serves every policy: each policy has its handler (see
    `memory_stats()` for the figures per handler), and the freed large blocks
    of all of them share one cache and one budget.

    See Also
    --------
    get_memory_pool : the one pool of the process.
    memory_stats : per-handler figures.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> pool = nn.get_memory_pool()
    >>> a = nn.numa_zeros(1 << 20, node=0)
    >>> pool.used_bytes() >= a.nbytes
    True
    >>> pool.total_bytes() == pool.used_bytes() + pool.free_bytes()
    True
    """

    def used_bytes(self) -> int:
        """Bytes of live blocks: memory that arrays use now.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> pool = nn.get_memory_pool()
        >>> before = pool.used_bytes()
        >>> a = nn.numa_empty(1 << 20, node=0)  # 8 MiB, live
        >>> pool.used_bytes() - before >= a.nbytes
        True
        """
        return int(memory_stats()["process"]["used_bytes"])

    def free_bytes(self) -> int:
        """Bytes of freed blocks the pool keeps for reuse (its cache).

        Examples
        --------
        >>> import numa_numpy as nn
        >>> pool = nn.get_memory_pool()
        >>> _ = pool.free_all_blocks()
        >>> a = nn.numa_empty(1 << 20, node=0); del a  # 8 MiB freed, kept for reuse
        >>> pool.free_bytes() >= 8 << 20
        True
        """
        return _arena.cache_stats()["cached_bytes"]

    def total_bytes(self) -> int:
        """used_bytes() + free_bytes().

        Examples
        --------
        >>> import numa_numpy as nn
        >>> pool = nn.get_memory_pool()
        >>> pool.total_bytes() == pool.used_bytes() + pool.free_bytes()
        True
        """
        return self.used_bytes() + self.free_bytes()

    def free_all_blocks(self) -> int:
        """See `numa_numpy.free_all_blocks`: release the cached free blocks and
        return the bytes given back.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> pool = nn.get_memory_pool()
        >>> a = nn.numa_empty(1 << 20, node=0); del a  # 8 MiB freed into the cache
        >>> pool.free_all_blocks() >= 8 << 20, pool.free_bytes()
        (True, 0)
        """
        return free_all_blocks()

    def set_cache_limit(self, size: int | None = None) -> None:
        """Limit the bytes of free blocks the pool keeps, its cache (None: the
        default, an eighth of the process's memory limit, at most 1 GiB): the
        same as `numa_numpy.set_cache_limit`. It does not cap used memory, as
        CuPy's ``set_limit`` does: the kernel (the memory cgroup) does that
        for host memory.

        Parameters
        ----------
        size : int, optional
            Bytes; None for the default.

        Raises
        ------
        CacheSettingError
            Not a number of bytes, or negative.

        See Also
        --------
        get_cache_limit, numa_numpy.set_cache_limit

        Examples
        --------
        >>> import numa_numpy as nn
        >>> pool = nn.get_memory_pool()
        >>> pool.set_cache_limit(64 << 20)
        >>> pool.get_cache_limit()
        67108864
        >>> pool.set_cache_limit()
        """
        set_cache_limit(size)

    def get_cache_limit(self) -> int:
        """The limit `set_cache_limit` set, in bytes: the cache's budget.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.get_memory_pool().get_cache_limit() > 0
        True
        """
        return _Settings.budget

    def set_limit(self, size: int | None = None) -> None:
        """Deprecated: `set_cache_limit`, the name that says what it limits
        (the cache of free blocks, not the memory in use as CuPy's
        ``set_limit``). Warns DeprecationWarning; goes in the next release.

        Parameters
        ----------
        size : int, optional
            Bytes; None for the default.

        Examples
        --------
        >>> import warnings
        >>> import numa_numpy as nn
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     nn.get_memory_pool().set_limit(None)
        >>> caught[0].category.__name__
        'DeprecationWarning'
        """
        _deprecated("set_limit", "set_cache_limit")
        self.set_cache_limit(size)

    def get_limit(self) -> int:
        """Deprecated: `get_cache_limit`. Warns DeprecationWarning; goes in
        the next release.

        Examples
        --------
        >>> import warnings
        >>> import numa_numpy as nn
        >>> pool = nn.get_memory_pool()
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DeprecationWarning)
        ...     pool.get_limit() == pool.get_cache_limit()
        True
        """
        _deprecated("get_limit", "get_cache_limit")
        return self.get_cache_limit()

    def __repr__(self) -> str:
        return (
            f"<numa_numpy MemoryPool used={self.used_bytes()} free={self.free_bytes()} "
            f"limit={self.get_cache_limit()}>"
        )


def _deprecated(old: str, new: str) -> None:
    """The warning of a renamed pool method, pointing at its caller's line."""
    warnings.warn(
        f"MemoryPool.{old}() is deprecated: use MemoryPool.{new}(), which does the same "
        "(it limits the cache of free blocks, not the memory in use)",
        DeprecationWarning,
        stacklevel=3,
    )


_POOL = MemoryPool()


def get_memory_pool() -> MemoryPool:
    """The process's memory pool (CuPy: ``cupy.get_default_memory_pool()``).

    Returns
    -------
    MemoryPool
        The same object every call.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.get_memory_pool()  # doctest: +ELLIPSIS
    <numa_numpy MemoryPool used=... free=... limit=...>
    """
    return _POOL


def node_memory_stats() -> dict[int, dict[str, int]]:
    """Per node, as the kernel places it: ``resident_bytes`` of policy-bound
    memory (numa_numpy's arenas, regions and shared arrays: every mapping with a
    policy, from /proc/self/numa_maps), ``cached_bytes`` of it held in the
    handlers' caches of freed blocks (move_pages), and ``used_bytes``, the rest.
    Pages never faulted in (or taken back by the kernel) count nowhere.

    Returns
    -------
    dict of int to dict
        ``{node: {"resident_bytes": ..., "cached_bytes": ..., "used_bytes": ...}}``.

    See Also
    --------
    memory_stats : per policy handler.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_ones(1 << 20, node=0)
    >>> nn.node_memory_stats()[0]["resident_bytes"] >= a.nbytes
    True
    """
    resident: dict[int, int] = {}
    for policy, _flags, per_node in numa_maps():
        if policy != "default":
            for node, nbytes in per_node.items():
                resident[node] = resident.get(node, 0) + nbytes
    cached: dict[int, int] = {}
    page = base_page_size()
    for handler in all_handlers():
        for base, length in handler.cached_mappings():
            _, status = query_pages(base, length)
            for node in status[status >= 0].tolist():
                cached[node] = cached.get(node, 0) + page
    return {
        n: {
            "resident_bytes": resident.get(n, 0),
            "cached_bytes": cached.get(n, 0),
            "used_bytes": max(0, resident.get(n, 0) - cached.get(n, 0)),
        }
        for n in sorted(set(resident) | set(cached))
    }


set_cache_limit()


def _resume_after_fork() -> None:
    # Stopped by the C fork handler; restarted here, after Python has counted
    # threads for its fork-with-threads warning.
    _arena.cache_resume()


os.register_at_fork(after_in_parent=_resume_after_fork, after_in_child=_resume_after_fork)
