"""The machine's NUMA topology, read from sysfs and /proc (no libnuma).

Works without sysfs (containers, WSL): the machine is then one node, 0, with every
CPU the process may use and the memory /proc/meminfo reports.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ._lib import ffi, lib

__all__ = [
    "Node",
    "Topology",
    "topology",
    "current_node",
    "current_cpu",
    "parse_list",
    "format_list",
    "kernel_version",
]

NODE_ROOT = Path("/sys/devices/system/node")


def parse_list(text: str) -> tuple[int, ...]:
    """Parse the kernel's list syntax ("0-3,8,10-11") into sorted ids."""
    out: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"not a list of ids: {text!r}")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"descending range {part!r} in {text!r}")
        out.update(range(first, last + 1))
    return tuple(sorted(out))


def format_list(ids: tuple[int, ...] | list[int] | set[int] | frozenset[int]) -> str:
    """The inverse of parse_list: (0, 1, 2, 5) -> "0-2,5"."""
    runs: list[str] = []
    ordered = sorted(ids)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _meminfo_kib(text: str, key: str) -> int | None:
    match = re.search(rf"{key}:\s+(\d+) kB", text)
    return int(match.group(1)) if match else None


def _status_list(key: str) -> tuple[int, ...] | None:
    text = _read(Path("/proc/self/status")) or ""
    match = re.search(rf"^{key}:\s*(\S*)\s*$", text, re.MULTILINE)
    return parse_list(match.group(1)) if match else None


def cpuset_cpus() -> tuple[int, ...]:
    """CPUs this process's cpuset allows (cgroup v2 or v1), else the affinity of the
    main thread. Not the calling thread's affinity, which pinning narrows."""
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" or "cpuset" in controllers.split(","):
            root = Path("/sys/fs/cgroup") / ("" if hierarchy == "0" else "cpuset")
            for name in ("cpuset.cpus.effective", "cpuset.effective_cpus"):
                text = _read(root / path.lstrip("/") / name)
                if text and text.strip():
                    return parse_list(text)
    return _status_list("Cpus_allowed_list") or tuple(sorted(os.sched_getaffinity(0)))


@lru_cache(maxsize=1)
def kernel_version() -> tuple[int, int]:
    """(major, minor) of the running kernel; (0, 0) when it cannot be read."""
    match = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@dataclass(frozen=True)
class Node:
    """One NUMA node: its CPUs, memory and distances to every node."""

    id: int
    cpus: tuple[int, ...]
    memory_total: int  # bytes
    memory_free: int  # bytes
    distances: dict[int, int] = field(compare=False, hash=False)

    @property
    def has_memory(self) -> bool:
        return self.memory_total > 0

    @property
    def has_cpus(self) -> bool:
        return bool(self.cpus)


@dataclass(frozen=True, repr=False)
class Topology:
    """The NUMA nodes of this machine and the limits of this process."""

    nodes: tuple[Node, ...]
    possible: tuple[int, ...]
    allowed_nodes: tuple[int, ...]  # cpuset Mems_allowed
    allowed_cpus: tuple[int, ...]  # the cpuset's CPUs
    kernel: tuple[int, int]
    from_sysfs: bool

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(n.id for n in self.nodes)

    @property
    def memory_nodes(self) -> tuple[int, ...]:
        """Nodes with memory, whether or not this process may use them."""
        return tuple(n.id for n in self.nodes if n.has_memory)

    @property
    def usable_nodes(self) -> tuple[int, ...]:
        """Nodes with memory that this process's cpuset allows."""
        allowed = set(self.allowed_nodes)
        return tuple(n for n in self.memory_nodes if n in allowed)

    @property
    def cpu_nodes(self) -> tuple[int, ...]:
        return tuple(n.id for n in self.nodes if n.has_cpus)

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        from .errors import InvalidNodeError

        raise InvalidNodeError(
            f"node {node_id} does not exist; nodes: {format_list(self.node_ids)}",
            nodes=(node_id,),
            available=self.node_ids,
        )

    def distance(self, a: int, b: int) -> int:
        return self.node(a).distances[b]

    def node_of_cpu(self, cpu: int) -> int | None:
        for n in self.nodes:
            if cpu in n.cpus:
                return n.id
        return None

    def __str__(self) -> str:
        """The same layout as `numactl --hardware`."""
        ids = self.node_ids
        lines = [f"available: {len(ids)} nodes ({format_list(ids)})"]
        for n in self.nodes:
            lines.append(f"node {n.id} cpus:" + "".join(f" {c}" for c in n.cpus))
            lines.append(f"node {n.id} size: {n.memory_total >> 20} MB")
            lines.append(f"node {n.id} free: {n.memory_free >> 20} MB")
        lines.append("node distances:")
        lines.append("node " + "".join(f"{i:>4}" for i in ids))
        for n in self.nodes:
            lines.append(f"{n.id:>3}: " + "".join(f"{n.distances.get(i, 0):>4}" for i in ids))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Topology\n{self}\n>"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>to {i}</th>" for i in self.node_ids)
        rows = []
        for n in self.nodes:
            dist = "".join(f"<td>{n.distances.get(i, '')}</td>" for i in self.node_ids)
            rows.append(
                f"<tr><th>{n.id}</th><td>{format_list(n.cpus) or '-'}</td>"
                f"<td>{n.memory_total >> 20}</td><td>{n.memory_free >> 20}</td>{dist}</tr>"
            )
        return (
            "<table><thead><tr><th>node</th><th>cpus</th><th>MiB</th><th>free MiB</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )


def _node_from_sysfs(node_id: int) -> Node:
    base = NODE_ROOT / f"node{node_id}"
    cpus = parse_list(_read(base / "cpulist") or "")
    meminfo = _read(base / "meminfo") or ""
    total = _meminfo_kib(meminfo, "MemTotal") or 0
    free = _meminfo_kib(meminfo, "MemFree") or 0
    return Node(node_id, cpus, total << 10, free << 10, {})


def topology() -> Topology:
    """Read the topology now (memory_free changes; everything else rarely)."""
    allowed_cpus = cpuset_cpus()
    online = _read(NODE_ROOT / "online")
    if online is None:
        meminfo = _read(Path("/proc/meminfo")) or ""
        total = (_meminfo_kib(meminfo, "MemTotal") or 0) << 10
        free = (_meminfo_kib(meminfo, "MemFree") or 0) << 10
        cpus = tuple(range(os.cpu_count() or 1))
        node = Node(0, cpus, total, free, {0: 10})
        return Topology((node,), (0,), (0,), allowed_cpus, kernel_version(), False)
    ids = parse_list(online)
    nodes = []
    for node_id in ids:
        node = _node_from_sysfs(node_id)
        row = (_read(NODE_ROOT / f"node{node_id}" / "distance") or "").split()
        node.distances.update(
            {other: int(d) for other, d in zip(ids, row, strict=True)}
            if len(row) == len(ids)
            else {other: 10 if other == node_id else 20 for other in ids}
        )
        nodes.append(node)
    possible = parse_list(_read(NODE_ROOT / "possible") or online)
    allowed_nodes = _status_list("Mems_allowed_list") or ids
    return Topology(tuple(nodes), possible, allowed_nodes, allowed_cpus, kernel_version(), True)


@lru_cache(maxsize=1)
def mask_bits() -> int:
    """Bits in the node masks passed to the kernel: covers every possible node id.

    Sized from /sys/devices/system/node/possible (node ids may exceed 63); 1024
    (the kernel's largest MAX_NUMNODES) when sysfs is missing.
    """
    text = _read(NODE_ROOT / "possible")
    highest = max(parse_list(text)) if text and text.strip() else 1023
    return max(64, (highest + 64) // 64 * 64)


def current_cpu_and_node() -> tuple[int, int]:
    cpu = ffi.new("unsigned *")
    node = ffi.new("unsigned *")
    rc = lib.nn_getcpu(cpu, node)
    if rc < 0:
        return min(os.sched_getaffinity(0)), 0
    return int(cpu[0]), int(node[0])


def current_node() -> int:
    """The node of the CPU this thread runs on right now (getcpu)."""
    return current_cpu_and_node()[1]


def current_cpu() -> int:
    """The CPU this thread runs on right now (getcpu)."""
    return current_cpu_and_node()[0]
