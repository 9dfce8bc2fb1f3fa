"""Introspection and control of the memory numa_numpy's handlers hold."""

from __future__ import annotations

from typing import Any

from ._handler import all_handlers, release_handlers

__all__ = ["memory_stats", "node_memory_stats", "trim", "set_cache_limit", "free_all_blocks"]


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


def node_memory_stats() -> dict[int, dict[str, int]]:
    """Per node, as the kernel places it: ``resident_bytes`` of policy-bound
    memory (numa_numpy's arenas, regions and shared arrays: every mapping with a
    policy, from /proc/self/numa_maps), ``cached_bytes`` of it held in the
    handlers' caches of freed blocks (move_pages), and ``used_bytes``, the rest.
    Pages never faulted in count nowhere."""
    from ._capabilities import numa_maps
    from ._lib import ffi, lib
    from ._placement import pages_of

    resident: dict[int, int] = {}
    for policy, _flags, per_node in numa_maps():
        if policy != "default":
            for node, nbytes in per_node.items():
                resident[node] = resident.get(node, 0) + nbytes
    cached: dict[int, int] = {}
    page = int(lib.nn_base_page_size())
    for handler in all_handlers():
        count = lib.nn_arena_cached_mappings(handler.arena, ffi.NULL, 0)
        mappings = ffi.new("nn_mapping[]", max(count, 1))
        count = min(count, lib.nn_arena_cached_mappings(handler.arena, mappings, count))
        for m in mappings[0:count]:
            _, status = pages_of(int(ffi.cast("uintptr_t", m.base)), int(m.length))
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
