"""The kernel's memory settings, each read in this one place from the file the
kernel shows it in: transparent huge pages, the hugetlb pools of each node,
automatic NUMA balancing, demotion, the weighted-interleave weights, the CPUs'
packages, and what /proc says of this process (its seccomp mode, its cgroups).

Every reader takes a `KernelFiles`, whose root is "/" for this machine or a
copied tree; a file that is missing or does not hold what the kernel writes
reads as None (noted in the reader, as `KernelFiles` does), never as an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from .sysfs import KernelFiles

__all__ = [
    "THP",
    "WEIGHTS_DIR",
    "NUMA_BALANCING",
    "thp_enabled",
    "thp_defrag",
    "huge_page_pools",
    "free_huge_pages",
    "numa_balancing",
    "demotion_enabled",
    "has_interleave_weights",
    "interleave_weights",
    "package_id",
    "seccomp_mode",
    "cgroup_memberships",
]

# Paths relative to the reader's root (``files.path`` puts them under it).
THP = "sys/kernel/mm/transparent_hugepage"
WEIGHTS_DIR = "sys/kernel/mm/mempolicy/weighted_interleave"
NUMA_BALANCING = "proc/sys/kernel/numa_balancing"
DEMOTION = "sys/kernel/mm/numa/demotion_enabled"
NODES = "sys/devices/system/node"
CPUS = "sys/devices/system/cpu"
STATUS = "proc/self/status"
MAX_WEIGHT = 255  # the kernel keeps each weight in a u8
_POOL = re.compile(r"hugepages-([0-9]{1,12})kB", re.ASCII)


def _selected(text: str | None) -> str | None:
    """The selected word of a sysfs choice file: "always [madvise] never"."""
    match = re.search(r"\[(\S+)\]", text or "")
    return match.group(1) if match else None


def thp_enabled(files: KernelFiles) -> str | None:
    """The transparent-huge-page mode ("always", "madvise", "never"); None when
    the kernel has no THP (or the file cannot be read)."""
    return _selected(files.text(f"{THP}/enabled"))


def thp_defrag(files: KernelFiles) -> str | None:
    """What a THP fault does without a free huge page ("always", "defer",
    "defer+madvise", "madvise", "never"); None without THP."""
    return _selected(files.text(f"{THP}/defrag"))


def huge_page_pools(files: KernelFiles, node: int) -> dict[int, tuple[int, int]]:
    """The hugetlb pools of `node`: page size in KiB -> (total, free) pages, in
    the order of the kernel's folder names. A pool whose counts cannot be read
    counts 0 (noted: the kernel always writes both)."""
    base = f"{NODES}/node{node}/hugepages"
    pools = {}
    for name in files.names(base):
        match = _POOL.fullmatch(name)
        if match is None or not os.path.isdir(files.path(f"{base}/{name}")):
            continue
        total, free = (
            files.integer(f"{base}/{name}/{count}", required=True) or 0
            for count in ("nr_hugepages", "free_hugepages")
        )
        pools[int(match.group(1))] = (total, free)
    return pools


def free_huge_pages(files: KernelFiles, node: int, kib: int) -> int | None:
    """Free pages in the `kib` KiB hugetlb pool of `node`; None when the node
    has no such pool (or its count cannot be read)."""
    return files.integer(f"{NODES}/node{node}/hugepages/hugepages-{kib}kB/free_hugepages")


def numa_balancing(files: KernelFiles) -> int | None:
    """kernel.numa_balancing (0 off, bit 0 NUMA balancing, bit 1 memory-tiering
    promotion); None without NUMA balancing, or when unreadable
    (``files.problem(NUMA_BALANCING)`` then says why)."""
    return files.integer(NUMA_BALANCING, high=(1 << 31) - 1)


def demotion_enabled(files: KernelFiles) -> bool | None:
    """Whether reclaim demotes cold pages to a slower memory tier; None when
    the kernel does not say."""
    text = (files.text(DEMOTION) or "").strip().lower()
    return None if not text else text in ("1", "y", "true")


def has_interleave_weights(files: KernelFiles) -> bool:
    """Whether the kernel has weighted-interleave weights (Linux 6.9)."""
    return os.path.isdir(files.path(WEIGHTS_DIR))


def interleave_weights(files: KernelFiles, nodes: Iterable[int]) -> dict[int, int]:
    """The weighted-interleave weight of each of `nodes` that has one (1-255);
    empty before Linux 6.9."""
    weights = {}
    for node in nodes:
        weight = files.integer(f"{WEIGHTS_DIR}/node{node}", high=MAX_WEIGHT)
        if weight is not None:
            weights[node] = weight
    return weights


def write_interleave_weight(files: KernelFiles, node: int, weight: int) -> None:
    """Set `node`'s weighted-interleave weight (root only: OSError otherwise)."""
    Path(files.path(f"{WEIGHTS_DIR}/node{node}")).write_text(f"{weight}\n")


def package_id(files: KernelFiles, cpu: int) -> int | None:
    """The physical package (socket) of `cpu`; -1 where the firmware does not
    say (some architectures); None when unreadable."""
    return files.integer(
        f"{CPUS}/cpu{cpu}/topology/physical_package_id", low=-1, high=(1 << 31) - 1
    )


def seccomp_mode(files: KernelFiles) -> str | None:
    """This process's seccomp mode as /proc/self/status says it ("0" none,
    "1" strict, "2" a filter); None when it does not say."""
    match = re.search(r"^Seccomp:\s*(.*?)\s*$", files.text(STATUS) or "", re.M)
    return match.group(1) if match else None


def cgroup_memberships(files: KernelFiles) -> list[tuple[str, str]]:
    """(file, cgroup path) for each line of this process's and init's cgroup
    files, the file as it is on the machine described: container runtimes
    name themselves in these paths."""
    found = []
    for pid in ("self", "1"):
        where = f"proc/{pid}/cgroup"
        shown = files.shown(files.path(where))
        for line in (files.text(where) or "").splitlines():
            found.append((shown, line.partition(":")[2].partition(":")[2]))
    return found
