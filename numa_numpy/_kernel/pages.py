"""Where pages are, as the kernel tells: page by page (move_pages), the policy
of a range or of the thread (get_mempolicy), the page sizes; and, with no NUMA
system call at all, per-mapping node page counts from /proc/PID/numa_maps and
the unit the kernel allocates a range in (base page, THP or hugetlb page) from
/proc/PID/smaps.

The files answer where move_pages is refused (a container's seccomp profile). A
large numa_numpy array is a mapping of its own; a small one shares its mapping
with its neighbours, so the counts are the mapping's, not the array's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .hugepages import smaps_vmas
from .lib import check, ffi, lib
from .sysfs import THP_SIZE, KernelFiles, process_file
from .topology import mask_bits

__all__ = [
    "MappingPages",
    "mapping_pages",
    "allocation_unit",
    "numa_maps",
    "base_page_size",
    "huge_page_size",
    "query_pages",
    "mempolicy",
]

_RANGE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s", re.MULTILINE)


@dataclass(frozen=True)
class MappingPages:
    """One mapping's line of numa_maps: its range, policy and pages per node.

    ``pages`` counts pages of ``page_size`` bytes (the mapping's kernel page
    size: 4 KiB, or the hugetlb page); ``policy`` is the kernel's text
    ("bind:0", "interleave:0-3", "default").
    """

    start: int
    end: int
    policy: str
    page_size: int
    pages: dict[int, int] = field(default_factory=dict)

    @property
    def bytes_per_node(self) -> dict[int, int]:
        return {node: count * self.page_size for node, count in self.pages.items()}


def _parse(line: str) -> tuple[int, str, int, dict[int, int], set[str]] | None:
    """One numa_maps line: (start, policy, page size in bytes, pages per node,
    flags such as "heap" or "huge"); None for a line too short to be one."""
    fields = line.split()
    if len(fields) < 2:
        return None
    page_kib = 4
    pages: dict[int, int] = {}
    flags: set[str] = set()
    for token in fields[2:]:
        key, _, value = token.partition("=")
        if key == "kernelpagesize_kB":
            page_kib = int(value)
        elif key.startswith("N") and key[1:].isdigit():
            pages[int(key[1:])] = int(value)
        elif not value:
            flags.add(key)
    return int(fields[0], 16), fields[1], page_kib << 10, pages, flags


def numa_maps(pid: int | str = "self") -> Iterator[tuple[str, set[str], dict[int, int]]]:
    """Each mapping of /proc/PID/numa_maps as (policy, flags such as "heap" or
    "huge", bytes per node)."""
    for line in process_file("numa_maps", pid).read_text().splitlines():
        parsed = _parse(line)
        if parsed is not None:
            _, policy, page, pages, flags = parsed
            yield policy, flags, {node: n * page for node, n in pages.items()}


def _ranges(pid: int | str) -> dict[int, int]:
    """start -> end of every mapping, from /proc/PID/maps."""
    text = process_file("maps", pid).read_text()
    return {int(a, 16): int(b, 16) for a, b in _RANGE.findall(text)}


def mapping_pages(address: int, nbytes: int, pid: int | str = "self") -> list[MappingPages]:
    """The mappings of process `pid` that overlap ``[address, address + nbytes)``,
    with their numa_maps node counts, in address order.

    Raises OSError when /proc/PID/numa_maps cannot be read (no such process, or a
    kernel built without NUMA).
    """
    ranges = _ranges(pid)
    stop = address + max(nbytes, 1)
    found = []
    for line in process_file("numa_maps", pid).read_text().splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        start, policy, page, pages, _ = parsed
        end = ranges.get(start)
        if end is None or end <= address or start >= stop:
            continue
        found.append(MappingPages(start, end, policy, page, pages))
    return sorted(found, key=lambda m: m.start)


def _thp_size() -> int:
    return KernelFiles().integer(THP_SIZE) or 2 << 20


def allocation_unit(address: int, nbytes: int, pid: int | str = "self") -> int:
    """Bytes in which the kernel placed ``[address, address + nbytes)``: the
    hugetlb page size of a hugetlb mapping, the THP size when any part of the
    range's mappings is backed by transparent huge pages, else the base page.

    An interleaved range is spread in these units, so its balance is only ever
    exact to one unit.
    """
    unit = 0
    for vma in smaps_vmas(address, nbytes, pid):
        unit = max(unit, vma.kernel_page)
        if vma.anon_huge > 0:
            unit = max(unit, _thp_size())
    return unit or os.sysconf("SC_PAGE_SIZE")


# --- the page queries: system calls --------------------------------------------


def base_page_size() -> int:
    """The kernel's base page, in bytes."""
    return int(lib.nn_base_page_size())


def huge_page_size(huge: int) -> int:
    """The page of a huge-page kind (HugePages.c_value), in bytes."""
    return int(lib.nn_huge_page_size(huge))


def query_pages(address: int, nbytes: int) -> tuple[int, np.ndarray]:
    """(first page address, node or -errno per page) for [address, address+nbytes),
    by move_pages; NumaError (errno, step) when the kernel refuses the query."""
    page = base_page_size()
    first = address - address % page
    npages = (address + nbytes - first + page - 1) // page if nbytes else 0
    status = np.empty(npages, dtype=np.intc)
    if npages:
        rc = lib.nn_query_pages(
            ffi.cast("void *", first), npages, page, ffi.cast("int *", status.ctypes.data)
        )
        check(rc, "cannot query pages", step="move_pages")
    return first, status


def mempolicy(address: int | None) -> tuple[int, tuple[int, ...]]:
    """(mode with its flags, nodes) the kernel holds for the page at `address`,
    or for the calling thread when `address` is None (get_mempolicy)."""
    mode = ffi.new("int *")
    words = ffi.new("unsigned long[]", mask_bits() // 64)
    where = ffi.NULL if address is None else ffi.cast("void *", address)
    flags = 0 if address is None else lib.NN_MPOL_F_ADDR
    rc = lib.nn_get_mempolicy(mode, words, mask_bits() + 1, where, flags)
    what = "the thread policy" if address is None else f"the policy at {address:#x}"
    check(rc, f"cannot read {what}", step="get_mempolicy")
    nodes = tuple(i for i in range(mask_bits()) if words[i // 64] >> (i % 64) & 1)
    return int(mode[0]), nodes
