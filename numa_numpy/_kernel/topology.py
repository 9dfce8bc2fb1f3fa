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

from ..errors import InvalidNodeError
from .lib import getcpu
from .sysfs import (
    MAX_CPU_ID,
    MAX_NODE_ID,
    MEMINFO,
    NODE_ROOT,
    NODES,
    OSRELEASE,
    TIER_ROOT,
    TIERS,
    KernelFiles,
    _clip,
    _meminfo_kib,
    cgroup_folders,
    parse_int,
    self_file,
)

__all__ = [
    "Node",
    "Topology",
    "AccessClass",
    "topology",
    "current_node",
    "current_cpu",
    "format_list",
    "kernel_version",
    "node_free_bytes",
]


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


def _status_list(files: KernelFiles, key: str, *, high: int) -> tuple[int, ...] | None:
    """The id list of `key` in /proc/self/status (None: absent or not a list, noted)."""
    where = self_file("status")
    match = re.search(rf"^{key}:[ \t]*(.*?)\s*$", files.text(where) or "", re.MULTILINE)
    return files.parse_ids(match.group(1), where, high=high) if match else None


def cpuset_files(root: Path = Path("/"), files: KernelFiles | None = None) -> dict[str, Path]:
    """The cgroup folders of this process that hold cpuset files, by hierarchy
    ("v2", "v1"), from /proc/self/cgroup: where `cpuset.mems` and the CPUs live."""
    return cgroup_folders(files or KernelFiles(root), "cpuset")


def cpuset_cpus(root: Path = Path("/"), files: KernelFiles | None = None) -> tuple[int, ...]:
    """CPUs this process's cpuset allows (cgroup v2 or v1), else the affinity of the
    main thread. Not the calling thread's affinity, which pinning narrows."""
    files = files or KernelFiles(root)
    for folder in cpuset_files(files=files).values():
        for name in ("cpuset.cpus.effective", "cpuset.effective_cpus"):
            text = files.text(folder / name)
            if text and text.strip():
                cpus = files.parse_ids(text, folder / name, high=MAX_CPU_ID)
                if cpus:
                    return cpus
    live = files.root == Path("/")
    return _status_list(files, "Cpus_allowed_list", high=MAX_CPU_ID) or (
        tuple(sorted(os.sched_getaffinity(0))) if live else ()
    )


@lru_cache(maxsize=1)
def kernel_version() -> tuple[int, int]:
    """(major, minor) of the running kernel; (0, 0) when it cannot be read."""
    match = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@dataclass(frozen=True)
class AccessClass:
    """How fast a node's memory is, as the firmware (ACPI HMAT) tells the kernel.

    One access class of ``/sys/devices/system/node/nodeN/accessK/initiators/``:
    class 0 is measured from the nearest initiators of any kind, class 1 from the
    nearest CPUs. Bandwidths are in MB/s, latencies in nanoseconds, as the kernel
    reports them; a value the firmware did not give is None.

    Parameters
    ----------
    access : int
        The access class: 0 or 1.
    initiators : tuple of int
        The nodes these figures are measured from.
    read_bandwidth, write_bandwidth : int or None
        MB/s.
    read_latency, write_latency : int or None
        Nanoseconds.

    See Also
    --------
    Node.access, Topology.tiers_text

    Examples
    --------
    >>> import numa_numpy as nn
    >>> rows = [(node.id, access) for node in nn.topology().nodes for access in node.access]
    >>> all(a.access in (0, 1) for _, a in rows)  # no rows where the firmware has no HMAT
    True
    >>> print(nn.AccessClass(1, (0,), 80000, 60000, 90, 100))
    access1 from node(s) 0: read 80000 MB/s 90 ns, write 60000 MB/s 100 ns
    """

    access: int  # 0 or 1
    initiators: tuple[int, ...]  # the nodes these figures are measured from
    read_bandwidth: int | None
    write_bandwidth: int | None
    read_latency: int | None
    write_latency: int | None

    def __str__(self) -> str:
        def fig(value: int | None, unit: str) -> str:
            return "?" if value is None else f"{value} {unit}"

        return (
            f"access{self.access} from node(s) {format_list(self.initiators) or '?'}: "
            f"read {fig(self.read_bandwidth, 'MB/s')} {fig(self.read_latency, 'ns')}, "
            f"write {fig(self.write_bandwidth, 'MB/s')} {fig(self.write_latency, 'ns')}"
        )


@dataclass(frozen=True)
class Node:
    """One NUMA node: its CPUs, memory and distances to every node.

    ``tier`` is the kernel memory tier the node's memory belongs to (the N of
    ``/sys/devices/virtual/memory_tiering/memory_tierN``; a smaller N is a faster
    tier), None where the kernel has no tiers or the node has no memory.
    ``access`` holds the firmware's access characteristics (HMAT), empty where
    the firmware gives none.

    Parameters
    ----------
    id : int
        The node id.
    cpus : tuple of int
        The node's CPUs (empty for a memory-only node).
    memory_total, memory_free : int
        Bytes, from ``/sys/devices/system/node/nodeN/meminfo``.
    distances : dict of int to int
        The firmware's (SLIT) distance to every node; 10 is local.
    tier : int, optional
        The kernel memory tier.
    access : tuple of AccessClass, default ()
        The HMAT figures.

    See Also
    --------
    Topology.node, topology

    Examples
    --------
    >>> import numa_numpy as nn
    >>> node = nn.topology().node(0)
    >>> node.id, node.has_cpus, node.distances[0]
    (0, True, 10)
    >>> node.memory_free <= node.memory_total
    True
    """

    id: int
    cpus: tuple[int, ...]
    memory_total: int  # bytes
    memory_free: int  # bytes
    distances: dict[int, int] = field(compare=False, hash=False)
    tier: int | None = None
    access: tuple[AccessClass, ...] = ()

    @property
    def has_memory(self) -> bool:
        """Whether the node has memory (some nodes have only CPUs)."""
        return self.memory_total > 0

    @property
    def has_cpus(self) -> bool:
        """Whether the node has CPUs."""
        return bool(self.cpus)

    @property
    def memory_only(self) -> bool:
        """Memory and no CPUs: CXL, HBM in flat mode, device memory."""
        return self.has_memory and not self.has_cpus


@dataclass(frozen=True, repr=False)
class Topology:
    """The NUMA nodes of this machine and the limits of this process.

    Made by `topology`. ``print(topo)`` is laid out like ``numactl
    --hardware``; Jupyter shows a table.

    Parameters
    ----------
    nodes : tuple of Node
        Every online node.
    possible : tuple of int
        The node ids the kernel could ever have (sizes the node masks).
    allowed_nodes : tuple of int
        The cpuset's ``Mems_allowed``: nodes this process may allocate on.
    allowed_cpus : tuple of int
        The CPUs this process may run on.
    kernel : tuple of int
        The running kernel's (major, minor) version.
    from_sysfs : bool
        False where sysfs has no NUMA information (some containers): the
        machine is then described as one node.

    See Also
    --------
    topology, Node

    Examples
    --------
    >>> import numa_numpy as nn
    >>> topo = nn.topology()
    >>> far = topo.usable_nodes[-1]            # the last node with memory we may use
    >>> far in topo.memory_nodes, topo.distance(far, far)
    (True, 10)
    >>> set(topo.cpu_nodes) <= set(topo.node_ids)
    True
    """

    nodes: tuple[Node, ...]
    possible: tuple[int, ...]
    allowed_nodes: tuple[int, ...]  # cpuset Mems_allowed
    allowed_cpus: tuple[int, ...]  # the cpuset's CPUs
    kernel: tuple[int, int]
    from_sysfs: bool

    @property
    def node_ids(self) -> tuple[int, ...]:
        """Every online node id, ascending."""
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
        """Nodes with CPUs."""
        return tuple(n.id for n in self.nodes if n.has_cpus)

    def node(self, node_id: int) -> Node:
        """The `Node` with id `node_id`.

        Parameters
        ----------
        node_id : int

        Returns
        -------
        Node

        Raises
        ------
        InvalidNodeError
            No such node (the message lists the nodes that exist).

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.topology().node(0).id
        0
        """
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise InvalidNodeError(
            f"node {node_id} does not exist; nodes: {format_list(self.node_ids)}",
            nodes=(node_id,),
            available=self.node_ids,
        )

    def distance(self, a: int, b: int) -> int:
        """The firmware's distance from node `a` to node `b` (10: local).

        Parameters
        ----------
        a, b : int
            Node ids.

        Returns
        -------
        int
            As ``numactl --hardware`` shows it; remote nodes are larger (20,
            21, ...), a relative measure of latency.

        Raises
        ------
        InvalidNodeError
            `a` does not exist.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.topology().distance(0, 0)
        10
        """
        return self.node(a).distances[b]

    @property
    def tiers(self) -> dict[int, tuple[int, ...]]:
        """Kernel memory tier -> its nodes, fastest tier first (empty without tiers)."""
        out: dict[int, list[int]] = {}
        for n in self.nodes:
            if n.tier is not None:
                out.setdefault(n.tier, []).append(n.id)
        return {tier: tuple(out[tier]) for tier in sorted(out)}

    def tiers_text(self) -> str:
        """Memory tiers and HMAT access characteristics, one line per fact
        (what `python -m numa_numpy info` prints after the node table).

        Examples
        --------
        >>> import numa_numpy as nn
        >>> topo = nn.topology()
        >>> lines = topo.tiers_text().splitlines()   # one line per tier, then HMAT
        >>> len([line for line in lines if line.startswith("memory tier")]) == len(topo.tiers)
        True
        """
        lines = []
        for tier, ids in self.tiers.items():
            lines.append(f"memory tier {tier}: nodes {format_list(ids)}")
        for n in self.nodes:
            for access in n.access:
                lines.append(f"node {n.id} {access}")
        if not any(n.access for n in self.nodes):
            lines.append("access characteristics (HMAT): none reported by the firmware")
        return "\n".join(lines)

    def node_of_cpu(self, cpu: int) -> int | None:
        """The node CPU `cpu` belongs to, or None for a CPU not online.

        Parameters
        ----------
        cpu : int

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.topology().node_of_cpu(nn.current_cpu()) == nn.current_node()
        True
        """
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
            hmat = "<br>".join(
                f"{a.read_bandwidth or '?'} MB/s, {a.read_latency or '?'} ns "
                f"(access{a.access} from {format_list(a.initiators)})"
                for a in n.access
            )
            rows.append(
                f"<tr><th>{n.id}</th><td>{format_list(n.cpus) or '-'}</td>"
                f"<td>{n.memory_total >> 20}</td><td>{n.memory_free >> 20}</td>"
                f"<td>{'-' if n.tier is None else n.tier}</td><td>{hmat or '-'}</td>{dist}</tr>"
            )
        return (
            "<table><thead><tr><th>node</th><th>cpus</th><th>MiB</th><th>free MiB</th>"
            "<th>tier</th><th>read (HMAT)</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )


def _access_classes(files: KernelFiles, base: Path) -> tuple[AccessClass, ...]:
    """nodeN/access0 and access1 (Linux 5.2+; present only with an HMAT)."""
    classes = []
    for access in (0, 1):
        folder = base / f"access{access}" / "initiators"
        if not os.path.isdir(folder):
            continue
        names = files.names(folder)
        initiators = tuple(
            sorted(int(n[4:]) for n in names if re.fullmatch(r"node[0-9]{1,4}", n, re.ASCII))
        )
        figures = [
            files.integer(folder / name)
            for name in ("read_bandwidth", "write_bandwidth", "read_latency", "write_latency")
        ]
        classes.append(AccessClass(access, initiators, *figures))
    return tuple(classes)


def memory_tiers(
    root: Path = Path("/"), files: KernelFiles | None = None
) -> dict[int, tuple[int, ...]]:
    """Kernel memory tier id -> nodes, from memory_tiering/memory_tierN/nodelist."""
    files = files or KernelFiles(root)
    live = files.root == Path("/")
    base = TIER_ROOT if live else files.path(TIERS)
    tiers: dict[int, tuple[int, ...]] = {}
    for name in files.names(base):
        match = re.fullmatch(r"memory_tier([0-9]{1,9})", name, re.ASCII)
        if match and os.path.isdir(base / name):
            ids = files.ids(base / name / "nodelist", high=MAX_NODE_ID)
            if ids is not None:
                tiers[int(match.group(1))] = ids
    return dict(sorted(tiers.items()))


def _node_from_sysfs(
    files: KernelFiles, node_root: Path, node_id: int, tiers: dict[int, tuple[int, ...]]
) -> Node:
    base = node_root / f"node{node_id}"
    cpus = files.ids(base / "cpulist", high=MAX_CPU_ID, required=True) or ()
    total = _meminfo_kib(files, base / "meminfo", "MemTotal") or 0
    free = _meminfo_kib(files, base / "meminfo", "MemFree") or 0
    tier = next((t for t, ids in tiers.items() if node_id in ids), None)
    return Node(node_id, cpus, total << 10, free << 10, {}, tier, _access_classes(files, base))


def _distances(
    files: KernelFiles, node_root: Path, node_id: int, ids: tuple[int, ...]
) -> dict[int, int]:
    """Node `node_id`'s distance to each node: its distance file, or (none, or one
    that does not hold a distance per node, noted) 10 to itself and 20 to others."""
    where = node_root / f"node{node_id}" / "distance"
    text = files.text(where)
    if text is not None:
        try:
            row = [parse_int(word, low=0, high=255) for word in text.split()]
        except ValueError:
            files.note(where, f"holds {_clip(text.strip())!r}, not distances (0-255)")
        else:
            if len(row) == len(ids):
                return dict(zip(ids, row, strict=True))
            files.note(where, f"holds {len(row)} distances for {len(ids)} online nodes")
    return {other: 10 if other == node_id else 20 for other in ids}


def _release(files: KernelFiles) -> tuple[int, int]:
    if files.root == Path("/"):
        return kernel_version()
    text = files.text(OSRELEASE) or ""
    match = re.match(r"([0-9]{1,9})\.([0-9]{1,9})", text.strip(), re.ASCII)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def read_topology(root: Path = Path("/"), files: KernelFiles | None = None) -> Topology:
    """The topology as the files under `root` describe it: "/" for this machine,
    or a copy of another machine's /sys and /proc laid out as the kernel does
    (tests, a snapshot sent in a bug report).

    Never raises for what the files hold: a file that cannot be read, or does not
    hold what the kernel writes there, is left out (a node list that cannot be
    read makes it one node, as without sysfs) and noted in `files`, when given.
    """
    files = files or KernelFiles(root)
    live = files.root == Path("/")
    node_root = NODE_ROOT if live else files.path(NODES)
    allowed_cpus = cpuset_cpus(files=files)
    ids = files.ids(node_root / "online", high=MAX_NODE_ID)
    if not ids:
        if ids == ():
            files.note(node_root / "online", "names no node")
        total = (_meminfo_kib(files, MEMINFO, "MemTotal") or 0) << 10
        free = (_meminfo_kib(files, MEMINFO, "MemFree") or 0) << 10
        cpus = tuple(range(os.cpu_count() or 1)) if live else allowed_cpus
        node = Node(0, cpus, total, free, {0: 10})
        return Topology((node,), (0,), (0,), allowed_cpus, _release(files), False)
    tiers = memory_tiers(files=files)
    nodes = []
    for node_id in ids:
        node = _node_from_sysfs(files, node_root, node_id, tiers)
        node.distances.update(_distances(files, node_root, node_id, ids))
        nodes.append(node)
    possible = files.ids(node_root / "possible", high=MAX_NODE_ID) or ids
    possible = tuple(sorted(set(possible) | set(ids)))
    allowed_nodes = _status_list(files, "Mems_allowed_list", high=MAX_NODE_ID) or ids
    return Topology(tuple(nodes), possible, allowed_nodes, allowed_cpus, _release(files), True)


def topology() -> Topology:
    """The NUMA topology of this machine, as this process sees it.

    Read now from sysfs and /proc (free memory changes; everything else rarely):
    nodes with their CPUs, memory, distances, kernel memory tier and the
    firmware's access characteristics (HMAT), and the cpuset's limits.

    Returns
    -------
    Topology
        ``str()`` is laid out like ``numactl --hardware``; ``tiers_text()`` adds
        the tiers and HMAT figures; in Jupyter it shows as a table.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> topo = nn.topology()
    >>> 0 in topo.node_ids or not topo.from_sysfs
    True
    >>> all(n.tier is None or n.tier >= 0 for n in topo.nodes)
    True
    """
    return read_topology()


@lru_cache(maxsize=1)
def mask_bits() -> int:
    """Bits in the node masks passed to the kernel: covers every possible node id.

    Sized from /sys/devices/system/node/possible (node ids may exceed 63); 1024
    (the kernel's largest MAX_NUMNODES) when sysfs is missing.
    """
    ids = KernelFiles().ids(NODE_ROOT / "possible", high=MAX_NODE_ID)
    highest = max(ids) if ids else MAX_NODE_ID
    return max(64, (highest + 64) // 64 * 64)


def node_free_bytes(node: int) -> int | None:
    """MemFree of `node` now (its sysfs meminfo), None where it cannot be read."""
    kib = _meminfo_kib(KernelFiles(), NODE_ROOT / f"node{node}" / "meminfo", "MemFree")
    return None if kib is None else kib << 10


def current_cpu_and_node() -> tuple[int, int]:
    """(CPU, node) of this thread now; (the lowest allowed CPU, 0) without getcpu."""
    return getcpu() or (min(os.sched_getaffinity(0)), 0)


def current_node() -> int:
    """The node of the CPU this thread runs on right now (getcpu).

    Returns
    -------
    int
        The node id; 0 where ``getcpu`` is unavailable. The answer can be stale
        the moment it returns unless the thread is pinned (see `pinned`).

    See Also
    --------
    current_cpu, pinned

    Examples
    --------
    >>> import numa_numpy as nn
    >>> with nn.pinned(node=0):
    ...     nn.current_node()
    0
    """
    return current_cpu_and_node()[1]


def current_cpu() -> int:
    """The CPU this thread runs on right now (getcpu).

    Returns
    -------
    int
        The CPU number (the lowest allowed CPU where ``getcpu`` is
        unavailable).

    See Also
    --------
    current_node, pinned

    Examples
    --------
    >>> import os
    >>> import numa_numpy as nn
    >>> nn.current_cpu() in os.sched_getaffinity(0)
    True
    """
    return current_cpu_and_node()[0]
