"""What the kernel says, read independently of numa_numpy's own code paths:
/proc/self/numa_maps, /proc/self/maps and /proc/self/status. Tests cross-check
numa_numpy.placement() (move_pages) against these."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass
class NumaMapsEntry:
    start: int
    policy: str
    pages: dict[int, int]  # node -> pages of kernelpagesize_kB
    page_kib: int
    anon: int
    fields: dict[str, str]


def numa_maps() -> list[NumaMapsEntry]:
    entries = []
    for line in Path("/proc/self/numa_maps").read_text().splitlines():
        parts = line.split()
        pages: dict[int, int] = {}
        fields: dict[str, str] = {}
        for token in parts[2:]:
            key, _, value = token.partition("=")
            match = re.fullmatch(r"N(\d+)", key)
            if match:
                pages[int(match.group(1))] = int(value)
            else:
                fields[key] = value
        entries.append(NumaMapsEntry(int(parts[0], 16), parts[1], pages,
                                     int(fields.get("kernelpagesize_kB", "4")),
                                     int(fields.get("anon", "0")), fields))
    return entries


def mapping_of(address: int) -> tuple[int, int]:
    """(start, end) of the VMA holding `address`, from /proc/self/maps."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= address < hi:
            return lo, hi
    raise LookupError(f"{address:#x} is not mapped")


def numa_maps_entry(address: int) -> NumaMapsEntry:
    start, _ = mapping_of(address)
    for entry in numa_maps():
        if entry.start == start:
            return entry
    raise LookupError(f"no numa_maps line for the mapping at {start:#x}")


def mapping_count() -> int:
    return len(Path("/proc/self/maps").read_text().splitlines())


def rss_bytes() -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) << 10


def bound_bytes() -> int:
    """Bytes in mappings that carry a NUMA policy (numa_numpy's, by construction):
    unlike the mapping count, untouched by the interpreter's own memory."""
    policies = {entry.start: entry.policy for entry in numa_maps()}
    total = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if policies.get(lo, "default") != "default":
            total += hi - lo
    return total
