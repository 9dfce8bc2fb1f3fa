"""Weighted-interleave weights proportional to each node's bandwidth: from the
firmware's HMAT figures (sysfs) or from measured bandwidth (``bench``), and the
root-only way to hand them to the kernel
(``/sys/kernel/mm/mempolicy/weighted_interleave/nodeN``, Linux 6.9)."""

from __future__ import annotations

import errno as _errno
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._kernel.sysfs import KernelFiles
from .._kernel.topology import Topology, current_node, format_list, topology
from .._kernel.tunables import WEIGHTS_DIR, has_interleave_weights, write_interleave_weight
from ..errors import NumaError, NumaUnavailableError
from .policy import WeightedInterleave

__all__ = ["InterleaveWeights", "propose_weights", "WEIGHTS_DIR"]

MAX_WEIGHT = 255  # the kernel keeps each weight in a u8 (1-255)


@dataclass(frozen=True)
class InterleaveWeights:
    """Proposed weighted-interleave weights, with the bandwidth they come from.

    ``policy`` is the `WeightedInterleave` over the weighted nodes. The weights
    are the kernel's, global to the machine: `apply` writes them (root only),
    `commands` shows the same as shell lines.

    Made by `InterleaveWeights.from_bandwidth`.

    Parameters
    ----------
    weights : dict of int to int
        Node -> weight (pages per round).
    bandwidth : dict of int to float
        Node -> the bandwidth the weight is proportional to.
    source : {"hmat", "measured"}
        Where the bandwidth comes from: the firmware's HMAT, or a measurement.

    See Also
    --------
    WeightedInterleave

    Examples
    --------
    >>> import numa_numpy as nn
    >>> w = nn.InterleaveWeights({0: 3, 1: 1}, {0: 300.0, 1: 100.0}, "measured")
    >>> w.policy
    WeightedInterleave('0-1')
    >>> print(w)
    weighted interleave from measured bandwidth: N0=3 (300), N1=1 (100)
    """

    weights: dict[int, int]
    bandwidth: dict[int, float] = field(compare=False)
    source: str  # "hmat" or "measured"

    @property
    def policy(self) -> WeightedInterleave:
        """The `WeightedInterleave` over the weighted nodes."""
        return WeightedInterleave(tuple(sorted(self.weights)))

    @classmethod
    def from_bandwidth(
        cls,
        bandwidth: Any = None,
        *,
        nodes: Any = None,
        initiator: int | None = None,
        topo: Topology | None = None,
    ) -> InterleaveWeights:
        """Propose node weights proportional to each node's bandwidth.

        Parameters
        ----------
        bandwidth : mapping or bench result, optional
            ``{node: bandwidth}`` in any unit, or the result of
            ``numa_numpy._diagnostics.bandwidth.bandwidth_matrix()`` (``python -m numa_numpy
            bench --json``: the copy bandwidth seen from `initiator`'s CPUs). Default:
            the firmware's figures (HMAT, `Node.access`) for `nodes`.
        nodes : iterable of int, optional
            The nodes to weight (default: every usable node, or those measured).
        initiator : int, optional
            For a bench result: the CPU node whose row is used (default: this
            thread's node).
        topo : Topology, optional
            Where the HMAT figures are read (default: this machine's).

        Returns
        -------
        InterleaveWeights
            ``weights`` ({node: 1-255}, the slowest node 1), ``bandwidth``,
            ``source`` ("hmat" or "measured"), ``policy`` (`WeightedInterleave`
            over the nodes), ``commands()`` and ``apply()``: the weights are the
            machine's (``/sys/kernel/mm/mempolicy/weighted_interleave/nodeN``)
            and only root may write them.

        Raises
        ------
        NumaUnavailableError
            No bandwidth given and the firmware reports none (no HMAT).
        ValueError
            A bandwidth that is not positive, or a node without one.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> proposal = nn.InterleaveWeights.from_bandwidth({0: 20480, 2: 5120})
        >>> proposal.weights
        {0: 4, 2: 1}
        >>> proposal.commands()[0]
        'echo 4 > /sys/kernel/mm/mempolicy/weighted_interleave/node0'
        """
        return propose_weights(bandwidth, nodes=nodes, initiator=initiator, topo=topo)

    def commands(self) -> list[str]:
        """Shell lines that apply the weights (run as root).

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.InterleaveWeights({0: 2}, {0: 1.0}, "hmat").commands()
        ['echo 2 > /sys/kernel/mm/mempolicy/weighted_interleave/node0']
        """
        return [f"echo {w} > /{WEIGHTS_DIR}/node{n}" for n, w in sorted(self.weights.items())]

    def apply(self, *, root: str | os.PathLike[str] = "/") -> None:
        """Write the weights to the kernel (root only; they act on new allocations).

        Parameters
        ----------
        root : str or os.PathLike, default "/"
            The file system root the sysfs path is under (tests pass a folder).

        Raises
        ------
        NumaUnavailableError
            The kernel has no weighted interleave (before 6.9).
        NumaError
            Without the privilege (errno EACCES/EPERM); the message gives the
            ``sudo`` command.

        Examples
        --------
        >>> import os, tempfile
        >>> import numa_numpy as nn
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(root + "/sys/kernel/mm/mempolicy/weighted_interleave")
        >>> nn.InterleaveWeights({0: 2}, {0: 1.0}, "hmat").apply(root=root)
        >>> open(root + "/sys/kernel/mm/mempolicy/weighted_interleave/node0").read().strip()
        '2'
        """
        files = KernelFiles(root)
        if not has_interleave_weights(files):
            raise NumaUnavailableError(
                f"/{WEIGHTS_DIR} does not exist: weighted interleave needs Linux 6.9",
                needed=(6, 9),
            )
        for node, weight in sorted(self.weights.items()):
            try:
                write_interleave_weight(files, node, weight)
            except PermissionError as exc:
                raise NumaError(
                    f"cannot write /{WEIGHTS_DIR}/node{node}: {exc.strerror}; the weights "
                    "are the machine's and only root may set them: "
                    f"sudo sh -c '{'; '.join(self.commands())}'",
                    errno=exc.errno or _errno.EACCES,
                ) from None

    def __str__(self) -> str:
        parts = ", ".join(
            f"N{n}={w} ({self.bandwidth[n]:g})" for n, w in sorted(self.weights.items())
        )
        return f"weighted interleave from {self.source} bandwidth: {parts}"


def _hmat_bandwidth(topo: Topology, nodes: tuple[int, ...]) -> dict[int, float]:
    found: dict[int, float] = {}
    for node in nodes:
        classes = topo.node(node).access
        # access1 counts CPU initiators only (what the kernel's own weights use)
        chosen = next((a for a in classes if a.access == 1), None) or next(iter(classes), None)
        if chosen is None:
            continue
        figures = [b for b in (chosen.read_bandwidth, chosen.write_bandwidth) if b]
        if figures:
            found[node] = float(min(figures))
    missing = [n for n in nodes if n not in found]
    if missing:
        raise NumaUnavailableError(
            f"the firmware reports no bandwidth (HMAT) for node(s) {format_list(missing)}: "
            "measure it instead, WeightedInterleave.from_bandwidth(bandwidth_matrix())",
            nodes=tuple(missing),
        )
    return found


def _measured(result: Mapping[str, Any], initiator: int | None) -> dict[int, float]:
    """Bandwidth per memory node from bandwidth_matrix()'s result, for one CPU node."""
    cpu_nodes = list(result["cpu_nodes"])
    row_node = initiator if initiator is not None else current_node()
    if row_node not in cpu_nodes:
        row_node = cpu_nodes[0]
    row = result["copy_gbps"][cpu_nodes.index(row_node)]
    return {
        int(mem): float(gbps)
        for mem, gbps in zip(result["memory"], row, strict=True)
        if isinstance(mem, int) and not isinstance(mem, bool)
    }


def _weights(bandwidth: Mapping[int, float]) -> dict[int, int]:
    """Integer weights proportional to bandwidth: the slowest node 1, at most 255,
    reduced by their common divisor."""
    if not bandwidth or min(bandwidth.values()) <= 0:
        raise ValueError(f"bandwidth must be positive for every node: {dict(bandwidth)}")
    low, high = min(bandwidth.values()), max(bandwidth.values())
    scale = 1.0 / low if high / low <= MAX_WEIGHT else MAX_WEIGHT / high
    raw = {n: max(1, min(MAX_WEIGHT, round(b * scale))) for n, b in bandwidth.items()}
    common = math.gcd(*raw.values())
    return {n: w // common for n, w in sorted(raw.items())}


def propose_weights(
    bandwidth: Mapping[Any, Any] | None = None,
    *,
    nodes: Any = None,
    initiator: int | None = None,
    topo: Topology | None = None,
) -> InterleaveWeights:
    """See `InterleaveWeights.from_bandwidth`."""
    if bandwidth is None:
        topo = topo or topology()
        wanted = tuple(nodes) if nodes is not None else topo.usable_nodes
        measured, source = _hmat_bandwidth(topo, wanted), "hmat"
    elif "copy_gbps" in bandwidth:
        measured, source = _measured(bandwidth, initiator), "measured"
    else:
        measured = {int(n): float(b) for n, b in bandwidth.items()}
        source = "measured"
    if bandwidth is not None and nodes is not None:
        wanted = tuple(int(n) for n in nodes)
        missing = [n for n in wanted if n not in measured]
        if missing:
            raise ValueError(f"no bandwidth given for node(s) {format_list(missing)}")
        measured = {n: measured[n] for n in wanted}
    return InterleaveWeights(_weights(measured), measured, source)


def _deprecated_from_bandwidth(cls: type, *args: Any, **kwargs: Any) -> InterleaveWeights:
    """Deprecated: use `InterleaveWeights.from_bandwidth` (kept for one release;
    the weights moved beside the policy they feed, so that policies know
    nothing of weights).

    Parameters
    ----------
    *args, **kwargs
        Those of `InterleaveWeights.from_bandwidth`.

    Examples
    --------
    >>> import warnings
    >>> import numa_numpy as nn
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     nn.WeightedInterleave.from_bandwidth({0: 2.0, 1: 1.0}).weights
    {0: 2, 1: 1}
    """
    warnings.warn(
        "WeightedInterleave.from_bandwidth() moved to InterleaveWeights.from_bandwidth()",
        DeprecationWarning,
        stacklevel=2,
    )
    return InterleaveWeights.from_bandwidth(*args, **kwargs)


# attached from here, the module above the policy, so the arrow runs one way
setattr(WeightedInterleave, "from_bandwidth", classmethod(_deprecated_from_bandwidth))  # noqa: B010
