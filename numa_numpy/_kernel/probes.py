"""The system calls the doctor and `capabilities` make once, harmlessly, to ask
the kernel what it permits this process.

Each probe returns, or raises the NumaError `lib.error` makes: its ``errno``,
``errno_name`` and ``step`` (the call that failed) are the kernel's answer, and
its message says it in words.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import NumaError
from .lib import check, clear_step, ffi, lib
from .topology import mask_bits

__all__ = [
    "base_page_size",
    "bind_one_page",
    "set_policy_permitted",
    "get_policy",
    "query_one_page",
    "migrate_within",
    "policy_calls",
]


def base_page_size() -> int:
    """The kernel's base page size in bytes."""
    return int(lib.nn_base_page_size())


def bind_one_page(binding: Any, what: str = "binding one page of memory") -> None:
    """Map one base page under `binding` (an ``nn_binding *``, strictly) and
    unmap it: raises when the kernel refuses, ``step`` telling a refused
    mbind from a failed mmap."""
    plan = ffi.new("nn_prefault_plan *", {"mode": lib.NN_PREFAULT_NONE})
    mapping = ffi.new("nn_mapping *")
    clear_step()
    page, strict = base_page_size(), lib.NN_MAP_STRICT
    check(lib.nn_map(binding, page, 0, lib.NN_HUGE_NONE, plan, strict, mapping), what)
    lib.nn_unmap(mapping)


# A mode no kernel has (flag bits clear): set_mempolicy checks it before it
# changes anything, so EINVAL proves the call reached the kernel.
_NO_SUCH_MODE = 0x1000


def set_policy_permitted() -> None:
    """Ask set_mempolicy with a mode no kernel has: EINVAL says the kernel
    would take the call (nothing changes, in this thread or any; no thread is
    started, so it works at interpreter shutdown too); a seccomp filter's
    EPERM or a kernel without NUMA's ENOSYS is raised."""
    clear_step()
    rc = int(lib.nn_set_mempolicy(_NO_SUCH_MODE, ffi.NULL, 0))
    if rc == -errno.EINVAL:
        clear_step()  # the answer we asked for, not a failure
    else:
        check(rc, "set_mempolicy")


def get_policy() -> None:
    """get_mempolicy of this thread (its mode only)."""
    mode = ffi.new("int *")
    clear_step()
    check(int(lib.nn_get_mempolicy(mode, ffi.NULL, 0, ffi.NULL, 0)), "get_mempolicy")


def query_one_page() -> None:
    """move_pages asked where one present page of this process is (nothing moves)."""
    page = base_page_size()
    buffer = np.ones(2 * page, dtype=np.uint8)  # written: its pages are present
    first = buffer.ctypes.data + (-buffer.ctypes.data) % page
    status = ffi.new("int[1]")
    clear_step()
    check(int(lib.nn_query_pages(ffi.cast("void *", first), 1, page, status)), "move_pages")


def migrate_within(nodes: tuple[int, ...]) -> None:
    """migrate_pages of this process from `nodes` to the same nodes: nothing
    moves, only the permission is asked."""
    words = ffi.new("unsigned long[]", mask_bits() // 64)
    for node in nodes:
        words[node // 64] |= 1 << (node % 64)
    clear_step()
    check(int(lib.nn_migrate_pages(0, mask_bits() + 1, words, words)), "migrate_pages")


def policy_calls(binding: Any, nodes: tuple[int, ...]) -> dict[str, NumaError | None]:
    """Each NUMA policy system call -> None when the kernel permits it to this
    process, else the error it raised. mbind is probed through `binding` and
    left out when the mapping failed before mbind; migrate_pages over `nodes`."""
    results: dict[str, NumaError | None] = {}
    probes: dict[str, Callable[[], None]] = {
        "mbind": lambda: bind_one_page(binding, "mbind"),
        "set_mempolicy": set_policy_permitted,
        "get_mempolicy": get_policy,
        "move_pages": query_one_page,
        "migrate_pages": lambda: migrate_within(nodes),
    }
    for call, probe in probes.items():
        try:
            probe()
        except NumaError as exc:
            if call == "mbind" and getattr(exc, "step", "") != "mbind":
                continue  # the mapping failed before mbind was asked
            results[call] = exc
        else:
            results[call] = None
    return results
