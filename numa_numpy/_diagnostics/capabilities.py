"""What this kernel and process can do: policy modes, huge-page pools per node,
weighted-interleave weights, THP mode, and whether mbind is permitted here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._kernel import probes, tunables
from .._kernel.pages import numa_maps
from .._kernel.sysfs import KernelFiles
from .._kernel.topology import kernel_version, topology
from .._policies.cstructs import binding_struct
from .._policies.policy import (
    Bind,
    Default,
    Interleave,
    Local,
    Preferred,
    PreferredMany,
    WeightedInterleave,
)
from ..errors import NumaError

__all__ = ["Capabilities", "capabilities", "process_memory"]


@dataclass(frozen=True)
class Capabilities:
    """What this kernel and process can do, as `capabilities` found it.

    ``print(caps)`` gives a readable summary (what ``numa-numpy info`` prints).

    Parameters
    ----------
    kernel : tuple of int
        The running kernel's (major, minor) version.
    policies : dict of str to bool
        Policy name (``"bind"``, ``"weighted-interleave"``, ...) -> whether this
        kernel has the mode.
    mbind_permitted : bool
        False where the kernel refuses ``mbind`` to this process (a container's
        seccomp profile): soft scopes then warn and leave memory unbound.
    mbind_error : str
        Why not, or ``""``.
    transparent_huge_pages : str
        ``"always"``, ``"madvise"``, ``"never"`` or ``"unavailable"``.
    huge_pages : dict, optional
        Node -> {``"2MB"``/``"1GB"``: (total, free)} pages of the hugetlbfs pools.
    interleave_weights : dict of int to int, optional
        Node -> weight used by `WeightedInterleave` (empty before Linux 6.9).

    See Also
    --------
    doctor : what these mean for placement here, and the fixes.
    topology

    Examples
    --------
    >>> import numa_numpy as nn
    >>> caps = nn.capabilities()
    >>> caps.policies["bind"]
    True
    >>> caps.transparent_huge_pages in ("always", "madvise", "never", "unavailable")
    True
    >>> sorted(caps.as_dict())[:3]
    ['huge_pages', 'interleave_weights', 'kernel']
    """

    kernel: tuple[int, int]
    policies: dict[str, bool]  # policy name -> the kernel has it
    mbind_permitted: bool  # False in containers whose seccomp profile refuses it
    mbind_error: str
    transparent_huge_pages: str  # always / madvise / never / unavailable
    huge_pages: dict[int, dict[str, tuple[int, int]]] = field(default_factory=dict)
    interleave_weights: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-ready values (what ``numa-numpy info --json`` prints).

        Examples
        --------
        >>> import json
        >>> import numa_numpy as nn
        >>> isinstance(json.dumps(nn.capabilities().as_dict()), str)
        True
        """
        return {
            "kernel": ".".join(map(str, self.kernel)),
            "policies": self.policies,
            "mbind_permitted": self.mbind_permitted,
            "mbind_error": self.mbind_error,
            "transparent_huge_pages": self.transparent_huge_pages,
            "huge_pages": {
                str(n): {size: {"total": t, "free": f} for size, (t, f) in pools.items()}
                for n, pools in self.huge_pages.items()
            },
            "interleave_weights": {str(n): w for n, w in self.interleave_weights.items()},
        }

    def __str__(self) -> str:
        lines = [
            f"kernel: {self.kernel[0]}.{self.kernel[1]}",
            "policies: "
            + ", ".join(f"{name}{'' if ok else ' (no)'}" for name, ok in self.policies.items()),
            f"mbind: {'permitted' if self.mbind_permitted else 'refused: ' + self.mbind_error}",
            f"transparent huge pages: {self.transparent_huge_pages}",
        ]
        for node, pools in self.huge_pages.items():
            text = ", ".join(f"{size} {free}/{total} free" for size, (total, free) in pools.items())
            lines.append(f"node {node} huge pages: {text or 'none'}")
        if self.interleave_weights:
            lines.append(
                "weighted interleave weights: "
                + " ".join(f"N{n}={w}" for n, w in self.interleave_weights.items())
            )
        return "\n".join(lines)


def _probe_mbind() -> str:
    """'' when the kernel lets this process bind memory, else why not."""
    topo = topology()
    node = topo.usable_nodes[0] if topo.usable_nodes else 0
    binding, _mask = binding_struct(Bind(node), topo)  # _mask keeps the node mask alive
    try:
        probes.bind_one_page(binding)
    except NumaError as exc:  # its step tells a failed mmap from a refused mbind
        return str(exc)
    return ""


Pools = dict[str, tuple[int, int]]  # "2MB"/"1GB" -> (total, free) pages


def _huge_pages(files: KernelFiles, nodes: tuple[int, ...]) -> dict[int, Pools]:
    """Node -> {"2MB"/"1GB": (total, free)} pages of its hugetlbfs pools."""
    huge = {}
    for node in nodes:
        pools = tunables.huge_page_pools(files, node)
        huge[node] = {
            (f"{kib >> 10}MB" if kib < (1 << 20) else f"{kib >> 20}GB"): counts
            for kib, counts in pools.items()
        }
    return huge


def capabilities() -> Capabilities:
    """What this kernel and process can do: policy modes, huge-page pools per
    node, weighted-interleave weights, THP mode, and whether mbind is permitted.

    Read now (binding one probe page tells whether ``mbind`` is permitted).

    Returns
    -------
    Capabilities

    See Also
    --------
    doctor, topology

    Examples
    --------
    >>> import numa_numpy as nn
    >>> caps = nn.capabilities()
    >>> caps.mbind_permitted == (caps.mbind_error == "")   # refused: the error says why
    True
    >>> caps.policies["bind"], caps.policies["local"]          # every kernel has these
    (True, True)
    """
    kernel = kernel_version()
    topo = topology()
    policies = {
        cls.name: kernel >= cls.min_kernel or kernel == (0, 0)
        for cls in (Default, Local, Bind, Preferred, PreferredMany, Interleave, WeightedInterleave)
    }
    files = KernelFiles()  # what cannot be read is left out, as on a kernel without it
    weights = tunables.interleave_weights(files, topo.node_ids)
    policies["weighted-interleave"] &= tunables.has_interleave_weights(files)
    thp = tunables.thp_enabled(files) or "unavailable"
    huge = _huge_pages(files, topo.node_ids)
    refused = _probe_mbind()
    return Capabilities(kernel, policies, not refused, refused, thp, huge, weights)


def process_memory(pid: int | str = "self") -> dict[str, dict[int, int]]:
    """Per-node memory of a process by kind (Huge, Heap, Stack, Private), in bytes,
    from /proc/PID/numa_maps: what `numastat -p PID` shows.

    Parameters
    ----------
    pid : int or str, default "self"
        The process; reading another's needs the right to (same user or root).

    Returns
    -------
    dict
        ``{"Huge": {node: bytes}, "Heap": ..., "Stack": ..., "Private": ...}``.

    Raises
    ------
    OSError
        The process's numa_maps cannot be read: `FileNotFoundError` for no
        such process, `PermissionError` without the right to read it.

    See Also
    --------
    node_memory_stats : numa_numpy's own memory per node.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> usage = nn.process_memory()
    >>> sorted(usage)
    ['Heap', 'Huge', 'Private', 'Stack']
    >>> sum(usage["Private"].values()) > 0
    True
    """
    usage: dict[str, dict[int, int]] = {"Huge": {}, "Heap": {}, "Stack": {}, "Private": {}}
    for _policy, flags, per_node in numa_maps(pid):
        kind = next((k for k in ("Huge", "Heap", "Stack") if k.lower() in flags), "Private")
        for node, nbytes in per_node.items():
            usage[kind][node] = usage[kind].get(node, 0) + nbytes
    return usage
