"""Read-only copies of an array, one per node, within the nodes' free memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .._alloc.creation import numa_array
from .._kernel.topology import current_node, format_list, node_free_bytes, topology
from .._policies.policy import NodesLike, parse_nodes
from ..errors import InvalidNodeError, NumaAllocationError

__all__ = ["Replicas", "replicate"]

#: Free memory a replica leaves on its node, beyond its own size: the kernel's
#: reserves, page tables and the rest of the process are not ours to take.
HEADROOM_FRACTION = 0.05


def _free_bytes(node: int) -> int:
    """MemFree of `node` now (sysfs), else topology()'s figure."""
    free = node_free_bytes(node)
    return free if free is not None else topology().node(node).memory_free


class Replicas:
    """One read-only copy of an array per node; see :func:`replicate`.

    ``r[node]`` is the copy on `node`, ``len(r)`` and ``iter(r)`` the nodes.

    Parameters
    ----------
    copies : dict of int to ndarray
        The copies by node (:func:`replicate` makes them).

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> r = nn.replicate(np.ones(3), nodes=0)
    >>> list(r), r.nbytes
    ([0], 24)
    """

    def __init__(self, copies: dict[int, np.ndarray]) -> None:
        self._copies = copies
        self.nodes: tuple[int, ...] = tuple(copies)
        self._nearest: dict[int, int] = {}

    def __getitem__(self, node: int) -> np.ndarray:
        try:
            return self._copies[node]
        except KeyError:
            raise InvalidNodeError(
                f"no replica on node {node}; replicas on {format_list(self.nodes)}",
                nodes=(node,),
                available=self.nodes,
            ) from None

    def __len__(self) -> int:
        return len(self._copies)

    def __iter__(self) -> Iterator[int]:
        return iter(self._copies)

    def __contains__(self, node: object) -> bool:
        return node in self._copies

    @property
    def nbytes(self) -> int:
        """Bytes held by all the copies together."""
        return sum(c.nbytes for c in self._copies.values())

    def for_node(self, node: int) -> np.ndarray:
        """The copy on `node`, or on the nearest node that has one (by the
        firmware's distance; ties: the lower id).

        Parameters
        ----------
        node : int

        Returns
        -------
        ndarray

        Raises
        ------
        InvalidNodeError
            `node` does not exist.

        Examples
        --------
        >>> import numpy as np, numa_numpy as nn
        >>> r = nn.replicate(np.arange(2), nodes=0)
        >>> r.for_node(0) is r[0]
        True
        """
        if node in self._copies:
            return self._copies[node]
        best = self._nearest.get(node)
        if best is None:
            topo = topology()
            best = min(self.nodes, key=lambda n: (topo.distance(node, n), n))
            self._nearest[node] = best
        return self._copies[best]

    def local(self) -> np.ndarray:
        """The copy nearest to the node the calling thread runs on now
        (getcpu). In a team worker, that is the worker's node.

        Returns
        -------
        ndarray
            A read-only array.

        Examples
        --------
        >>> import numpy as np, numa_numpy as nn
        >>> r = nn.replicate(np.arange(4.0))
        >>> r.local().tolist()
        [0.0, 1.0, 2.0, 3.0]
        """
        return self.for_node(current_node())

    def __repr__(self) -> str:
        some = next(iter(self._copies.values()))
        return (
            f"<Replicas {some.shape} {some.dtype} on nodes {format_list(self.nodes)}, "
            f"{self.nbytes} bytes>"
        )


def replicate(a: Any, nodes: NodesLike | None = None) -> Replicas:
    """Copy `a` onto each node, read-only: ``r[node]``, ``r.local()``.

    For read-mostly data every node's workers read (lookup tables, model
    weights, the small operand of every block): each reads its own node's copy
    at local bandwidth. The copies are budgeted: each node must have the
    array's size free, plus 5% of the node's memory as headroom, or nothing
    is copied. Inside :meth:`NodeTeam.map_blocks`, a Replicas argument is
    passed to each worker as its node's copy (a memory-only node's block
    gets the copy of the node whose workers compute it).

    Parameters
    ----------
    a : array_like
        The data (copied; later changes to `a` are not seen).
    nodes : int, str or iterable of int, optional
        Where to put copies (default: every node with memory this process may
        use).

    Returns
    -------
    Replicas

    Raises
    ------
    NumaAllocationError
        A node lacks the free memory for its copy (nothing is allocated).
    InvalidNodeError
        A node does not exist, has no memory, or `nodes` does not parse.

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> r = nn.replicate(np.arange(3), nodes=0)
    >>> r[0].tolist(), r[0].flags.writeable
    ([0, 1, 2], False)
    """
    topo = topology()
    chosen = topo.usable_nodes if nodes is None else parse_nodes(nodes)
    source = np.asarray(a)
    for n in chosen:
        node = topo.node(n)
        if not node.has_memory:
            raise InvalidNodeError(
                f"node {n} has no memory; nodes with memory: {format_list(topo.memory_nodes)}",
                nodes=(n,),
                available=topo.memory_nodes,
            )
        free = _free_bytes(n)
        need = source.nbytes + int(node.memory_total * HEADROOM_FRACTION)
        if need > free:
            raise NumaAllocationError(
                f"a {source.nbytes}-byte replica does not fit on node {n}: {free} bytes free, "
                f"{need} needed (the copy plus {HEADROOM_FRACTION:.0%} of the node as "
                f"headroom); {len(chosen)} copies would take {source.nbytes * len(chosen)} "
                "bytes. Replicate onto fewer nodes (nodes=) or interleave the array instead",
                size=source.nbytes,
                errno=12,
            )
    copies: dict[int, np.ndarray] = {}
    for n in chosen:
        copy = numa_array(source, node=n)
        copy.flags.writeable = False
        copies[n] = copy
    return Replicas(copies)
