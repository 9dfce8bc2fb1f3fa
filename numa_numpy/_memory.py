"""Introspection and control of the memory numa_numpy's handlers hold."""

from __future__ import annotations

from typing import Any

from ._handler import all_handlers, release_handlers

__all__ = ["memory_stats", "trim", "set_cache_limit", "free_all_blocks"]


def memory_stats() -> dict[str, dict[str, Any]]:
    """Per policy handler: used, cached and mapped bytes, live blocks, fallbacks."""
    out: dict[str, dict[str, Any]] = {}
    for handler in all_handlers():
        o = handler.options
        key = (
            f"{o.policy} strict={o.strict} huge_pages={o.huge_pages.value} "
            f"prefault={o.prefault.value}"
        )
        out[key] = {**handler.stats(), "enforcement": str(handler.enforcement)}
    return out


def trim() -> int:
    """Unmap every cached (freed) large block; returns the bytes given back."""
    return sum(handler.trim() for handler in all_handlers())


def set_cache_limit(nbytes: int) -> None:
    """Bytes of freed large blocks each existing policy handler keeps for reuse
    (default 1 GiB each)."""
    if nbytes < 0:
        raise ValueError(f"cache limit must be >= 0, not {nbytes}")
    for handler in all_handlers():
        handler.set_cache_limit(nbytes)


def free_all_blocks() -> int:
    """Trim every handler and forget them all: each one's chunks and cache are
    unmapped as soon as its last array is freed. Returns the bytes trimmed now."""
    from . import _creation

    released = trim()
    release_handlers()
    _creation.forget_scopes()
    return released
