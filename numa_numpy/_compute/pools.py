"""BLAS/OpenMP thread-pool caps: process-wide state, owned here only.

threadpoolctl sets each library's global pool size, so the caps of every team
that runs are one shared resource: a reference-counted hold per running team.
The size applied is the smallest ``blas_threads`` of the holds; each library's
size from before the first hold is recorded (a library loaded later: when it
is first capped) and put back when the last hold is released.

A release may come from a garbage-collected team's finalizer, i.e. from any
thread at any allocation, even one made while this module holds its lock: it
is queued and applied by whoever holds the lock next (or right away when the
lock is free), never waited for.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
from typing import Any

__all__ = ["hold", "release", "holds", "cap"]

_lock = threading.Lock()
_holds: dict[int, int] = {}  # hold id -> blas_threads
_original: dict[str, int] = {}  # library path -> its pool size before the first hold
_applied: int | None = None  # the size applied, None when nothing is held
_ids = itertools.count(1)
_pending: collections.deque[int] = collections.deque()  # releases waiting for the lock


def _libraries() -> list[Any]:
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped,unused-ignore]

    return list(ThreadpoolController().lib_controllers)


def _apply(size: int) -> None:
    """Cap every loaded pool at `size`, recording the sizes found the first time."""
    global _applied
    for lib in _libraries():
        _original.setdefault(lib.filepath, lib.num_threads)
        if lib.num_threads != size:
            lib.set_num_threads(size)
    _applied = size


def _restore() -> None:
    global _applied
    for lib in _libraries():
        size = _original.get(lib.filepath)
        if size is not None and lib.num_threads != size:
            lib.set_num_threads(size)
    _original.clear()
    _applied = None


def _settle() -> None:
    """Make the pools what the holds say (called with the lock held)."""
    while _pending:
        _holds.pop(_pending.popleft(), None)
    if _holds:
        size = min(_holds.values())
        if size != _applied:
            _apply(size)
    elif _applied is not None:
        _restore()


def _drain() -> None:
    """Apply queued releases if the lock is free; if it is not, its holder does."""
    while _pending:
        if not _lock.acquire(blocking=False):
            return  # its holder drains after releasing it
        try:
            _settle()
        finally:
            _lock.release()


def hold(blas_threads: int) -> int:
    """Cap every BLAS/OpenMP pool at `blas_threads` (or less, if another hold
    asks less) until :func:`release` of the returned id.

    Parameters
    ----------
    blas_threads : int
        The most threads each pool may use while this hold lasts.

    Returns
    -------
    int
        The hold's id, for :func:`release`.

    Examples
    --------
    >>> from numa_numpy._compute import pools as _pools
    >>> h = _pools.hold(1)
    >>> _pools.cap()
    1
    >>> _pools.release(h)
    >>> _pools.cap() is None
    True
    """
    ident = next(_ids)
    with _lock:
        _holds[ident] = int(blas_threads)
        try:
            _settle()
        except BaseException:
            _holds.pop(ident, None)
            raise
    _drain()
    return ident


def release(ident: int | None) -> None:
    """Drop a hold (unknown or already released ids: nothing). The last one
    puts back every pool's size from before the first.

    Safe from a finalizer: it never waits for the lock.

    Parameters
    ----------
    ident : int or None
        A :func:`hold`'s id.

    Examples
    --------
    >>> from numa_numpy._compute import pools as _pools
    >>> _pools.release(_pools.hold(2))
    >>> _pools.holds()
    0
    """
    if ident is None:
        return
    _pending.append(ident)
    _drain()


def holds() -> int:
    """How many holds are live (queued releases counted as released).

    Examples
    --------
    >>> from numa_numpy._compute import pools as _pools
    >>> _pools.holds()
    0
    """
    with _lock:
        _settle()
        count = len(_holds)
    _drain()
    return count


def cap() -> int | None:
    """The size applied to the pools now, None when no hold is live.

    Examples
    --------
    >>> from numa_numpy._compute import pools as _pools
    >>> _pools.cap() is None
    True
    """
    with _lock:
        _settle()
        size = _applied
    _drain()
    return size


def _after_fork_in_child() -> None:
    """No team runs in a forked child (its workers stayed in the parent): the
    holds are the parent's, so drop them and put the pools back."""
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork()
    _pending.clear()
    had = bool(_holds) or _applied is not None
    _holds.clear()
    if had:
        try:
            _restore()
        except Exception:  # never fail a fork over pool sizes
            _original.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
