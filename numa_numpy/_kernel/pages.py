"""Per-mapping node page counts from /proc/PID/numa_maps, and the unit the kernel
allocates a range in (base page, THP or hugetlb page) from /proc/PID/smaps.

These need no NUMA system call at all, so they answer where move_pages is refused
(a container's seccomp profile). A large numa_numpy array is a mapping of its own;
a small one shares its mapping with its neighbours, so the counts are the
mapping's, not the array's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MappingPages", "mapping_pages", "allocation_unit", "numa_maps"]

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
    for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines():
        parsed = _parse(line)
        if parsed is not None:
            _, policy, page, pages, flags = parsed
            yield policy, flags, {node: n * page for node, n in pages.items()}


def _ranges(pid: int | str) -> dict[int, int]:
    """start -> end of every mapping, from /proc/PID/maps."""
    text = Path(f"/proc/{pid}/maps").read_text()
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
    for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines():
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
    try:
        return int(Path("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size").read_text())
    except (OSError, ValueError):
        return 2 << 20


def allocation_unit(address: int, nbytes: int, pid: int | str = "self") -> int:
    """Bytes in which the kernel placed ``[address, address + nbytes)``: the
    hugetlb page size of a hugetlb mapping, the THP size when any part of the
    range's mappings is backed by transparent huge pages, else the base page.

    An interleaved range is spread in these units, so its balance is only ever
    exact to one unit.
    """
    text = Path(f"/proc/{pid}/smaps").read_text()
    stop = address + max(nbytes, 1)
    unit = 0
    inside = False
    for line in text.splitlines():
        match = _RANGE.match(line + " ")
        if match and "-" in line.split()[0]:
            start, end = int(match.group(1), 16), int(match.group(2), 16)
            inside = start < stop and end > address
            continue
        if not inside:
            continue
        key, _, value = line.partition(":")
        kib = value.split()[0] if value.split() else ""
        if key == "KernelPageSize" and kib.isdigit():
            unit = max(unit, int(kib) << 10)
        elif key == "AnonHugePages" and kib.isdigit() and int(kib) > 0:
            unit = max(unit, _thp_size())
    return unit or os.sysconf("SC_PAGE_SIZE")
