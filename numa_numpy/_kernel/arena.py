"""The C allocator's API, wrapped: arenas of policy-bound memory, the NumPy
handler capsules over them, the process-wide cache of freed blocks, and what the
allocator records per block (its owner, its mapping, its split).

Thin on purpose: the decisions (which policy, strict or soft, what to tell the
user) are made above; these only call the C side and raise NumaError (errno,
step) for what it refuses. Arenas and capsules travel as cffi pointers.
"""

from __future__ import annotations

import errno as _errno
from typing import Any

from .lib import check, clear_step, error, ffi, lib

__all__ = [
    "arena_new",
    "arena_set_parts",
    "arena_probe",
    "arena_destroy",
    "handler_new",
    "handler_install",
    "handler_restore",
    "block_owner",
    "block_mapping",
    "partition_cuts",
    "cache_configure",
    "cache_stats",
]


def address_of(pointer: Any) -> int:
    """A C pointer (an arena) as the int that names it."""
    return int(ffi.cast("uintptr_t", pointer))


# --- arenas ------------------------------------------------------------------------


def arena_new(binding: Any, huge: int, plan: Any, strict: bool) -> Any:
    """A new arena for the binding struct, or None when it cannot be made."""
    arena = lib.nn_arena_new(binding, huge, plan, int(strict))
    return None if arena == ffi.NULL else arena


def arena_set_parts(arena: Any, bindings: list[Any]) -> None:
    """Split the arena's blocks between these bindings (one per part)."""
    array = ffi.new("nn_binding[]", bindings)
    check(lib.nn_arena_set_parts(arena, array, len(bindings)), step="the arena")


def arena_probe(arena: Any) -> None:
    """Map and bind one page as the arena would: NumaError when the kernel
    refuses the binding, or (errno ENOMEM, step mmap) when no page could be mapped."""
    clear_step()
    rc = lib.nn_arena_probe(arena)
    if rc == -_errno.ENOMEM:  # no page to probe with: out of memory, not a refusal
        raise error(_errno.ENOMEM, step="mmap")
    check(rc, fallback="mbind")


def arena_disable_binding(arena: Any, err: int) -> None:
    """From now on the arena maps unbound memory (the kernel refused with `err`)."""
    lib.nn_arena_disable_binding(arena, err)


def arena_destroy(arena: Any) -> None:
    lib.nn_arena_destroy(arena)


def arena_set_cache_limit(arena: Any, nbytes: int) -> None:
    """The arena's own cap on the freed blocks it keeps."""
    lib.nn_arena_set_cache_limit(arena, nbytes)


def arena_stats(arena: Any = None, arena_id: int | None = None) -> Any:
    """The arena's counters (an nn_arena_stats), by pointer or, for an arena that
    may be gone, by id (None when it is)."""
    out = ffi.new("nn_arena_stats *")
    if arena_id is None:
        lib.nn_arena_stats_get(arena, out)
    elif lib.nn_arena_stats_by_id(arena_id, out) < 0:
        return None
    return out


def arena_trim(arena: Any = None, arena_id: int | None = None) -> int:
    """Unmap the arena's cached free blocks (by pointer, or by id); the bytes."""
    if arena_id is not None:
        return max(0, int(lib.nn_arena_trim_by_id(arena_id)))
    return int(lib.nn_arena_trim(arena))


def arena_cached_mappings(arena: Any) -> list[tuple[int, int]]:
    """(address, length) of the freed blocks the arena caches now."""
    count = lib.nn_arena_cached_mappings(arena, ffi.NULL, 0)
    mappings = ffi.new("nn_mapping[]", max(count, 1))
    count = min(count, lib.nn_arena_cached_mappings(arena, mappings, count))
    return [(address_of(m.base), int(m.length)) for m in mappings[0:count]]


def arena_ids() -> set[int]:
    """The ids of every arena still alive."""
    count = lib.nn_arena_ids(ffi.NULL, 0)
    ids = ffi.new("unsigned long long[]", max(count, 1) + 16)
    count = min(lib.nn_arena_ids(ids, len(ids)), len(ids))
    return set(ids[0:count])


def next_block(granule: int, cuts: Any = ffi.NULL, ncuts: int = 0) -> None:
    """How this thread's next split block is cut: never inside a `granule`
    (a row), or at the `ncuts` byte offsets `cuts`."""
    lib.nn_arena_next_block(granule, cuts, ncuts)


# --- NumPy handlers (capsules) -------------------------------------------------------


def handler_new(arena: Any, name: str) -> Any:
    """A "mem_handler" capsule over the arena, or None when it cannot be made."""
    capsule = lib.nn_handler_new(arena, name.encode())
    return None if capsule == ffi.NULL else capsule


def handler_release(capsule: Any) -> None:
    lib.nn_handler_release(capsule)


def handler_install(capsule: Any) -> Any:
    """Make the capsule NumPy's current handler; the previous one, or None when
    NumPy refused."""
    previous = lib.nn_handler_install(capsule)
    return None if previous == ffi.NULL else previous


def handler_restore(previous: Any) -> None:
    lib.nn_handler_restore(previous)


def handler_arena(capsule: object) -> int:
    """The address of the arena a capsule object serves (0: not ours)."""
    return address_of(lib.nn_handler_arena(ffi.cast("void *", id(capsule))))


# --- blocks --------------------------------------------------------------------------


def block_owner(address: int) -> tuple[int, int]:
    """(address of the arena, status flags NN_MAP_*) of the block starting at
    `address`; (0, 0) when no arena of ours made it."""
    status = ffi.new("int *")
    arena = lib.nn_block_owner(ffi.cast("void *", address), ffi.NULL, status)
    return (address_of(arena), int(status[0])) if arena != ffi.NULL else (0, 0)


def block_parts(address: int, out: Any, most: int) -> int:
    """The part bounds (bytes) the allocator recorded for a split block, into
    `out` (size_t[most]); the number of parts (0 or less: not split)."""
    return int(lib.nn_block_parts(ffi.cast("void *", address), out, most))


def block_mapping(address: int) -> tuple[int, int] | None:
    """(address, length) of the mapping a large block has to itself; None for a
    small block that shares its pages."""
    base, length = ffi.new("void **"), ffi.new("size_t *")
    if lib.nn_block_mapping(ffi.cast("void *", address), base, length) < 0:
        return None
    return address_of(base[0]), int(length[0])


def block_mark_migrated(address: int) -> None:
    """The block was rebound whole (migrate): its policy is the kernel's now."""
    lib.nn_block_mark_migrated(ffi.cast("void *", address))


def partition_cuts(nbytes: int, granule: int, thp: bool, k: int) -> list[int]:
    """The k - 1 byte offsets at which the allocator splits `nbytes` between k
    nodes, never inside a `granule`."""
    cuts = ffi.new("size_t[]", k - 1)
    lib.nn_partition_cuts(nbytes, max(granule, 1), int(thp), k, cuts)
    return [int(c) for c in cuts]


# --- the process-wide cache of freed blocks ------------------------------------------


def cache_configure(budget: int, hot_limit: int, decay_ms: int) -> None:
    """The cache's budget, its hot share and the decay (-1: none)."""
    lib.nn_cache_configure(budget, hot_limit, decay_ms)


def cache_stats() -> dict[str, int]:
    """The cache's counters."""
    out = ffi.new("nn_cache_stats *")
    lib.nn_cache_stats_get(out)
    return {name: int(getattr(out, name)) for name in dir(out)}


def cache_lazy_resident() -> int:
    """Of the MADV_FREE'd cached blocks, the bytes still in memory (mincore)."""
    return int(lib.nn_cache_lazy_resident())


def cache_trim() -> int:
    """Unmap every cached free block; the bytes given back."""
    return int(lib.nn_cache_trim())


def cache_resume() -> None:
    """Restart the decay thread (stopped around fork)."""
    lib.nn_cache_resume()
