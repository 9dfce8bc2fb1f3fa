"""The partitioned constructors: ``partitioned_empty``, ``_zeros``,
``_ones`` and ``_full``, arrays split into one block of rows per node by the
layout rule (numa_numpy._compute.layout), written by each block's node's
workers inside a running team (numa_numpy._compute.parallel runs their
ufuncs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._alloc.creation import placement_scope
from .._policies.docstrings import document
from .._policies.options import AllocationKeywords, check_keywords
from .._policies.policy import NodesLike, Partitioned, Policy, parse_nodes
from .._ranges.binding import row_split
from ..errors import InvalidPolicyError
from .layout import _index, _policy_of, _valid_layout
from .parallel import _NUMPY_INITIALISES, PartitionedArray, _allocate
from .team import NodeTeam, active_team

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "partitioned_empty",
    "partitioned_zeros",
    "partitioned_ones",
    "partitioned_full",
]


def _policy(nodes: NodesLike | None, policy: Policy | None) -> Partitioned:
    """The constructors' policy. Whether its nodes exist, have memory and are
    allowed is the handler's to check, once, as for every policy (strict
    raises, soft warns)."""
    if policy is not None:
        if not isinstance(policy, Partitioned):
            raise InvalidPolicyError(
                f"partitioned constructors take a Partitioned policy, not {policy}", policy=policy
            )
        if nodes is not None:
            raise TypeError("pass nodes= or policy=, not both")
        return policy
    return Partitioned() if nodes is None else _policy_of(parse_nodes(nodes))


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def _new(
    where: str,
    shape: Any,
    dtype: Any,
    order: str,
    nodes: NodesLike | None,
    policy: Partitioned | None,
    zero: bool = False,
    /,
    **options: Any,
) -> PartitionedArray:
    """What the constructors share: the policy and its (cached) scope; an
    unknown keyword is a TypeError naming `where`, the constructor."""
    check_keywords(where, options, AllocationKeywords)
    scope = placement_scope(where, _policy(nodes, policy), **options)
    return _allocate(_shape(shape), np.dtype(dtype), order, scope, zero=zero)


def _writers(dtype: np.dtype[Any]) -> NodeTeam | None:
    """The running team whose workers write a new array's blocks (their
    writes are the first touch), or None: written here, by NumPy."""
    team = active_team()
    if team is None or not team._workers or team.in_worker():
        return None
    return None if dtype.flags & _NUMPY_INITIALISES else team


def _zero(arr: PartitionedArray, team: NodeTeam) -> None:
    """Zero bytes everywhere (what np.zeros gives every dtype it does not
    initialise itself), each block by its node's workers."""
    layout = _valid_layout(arr)
    if layout is None or not arr.nbytes:
        return
    raw = arr.view(np.ndarray).reshape(-1, order="A").view(np.uint8)  # memory order
    rowbytes = row_split(arr.shape, arr.itemsize, layout.order)[2]

    def zero(lo: int, hi: int) -> None:
        raw[lo * rowbytes : hi * rowbytes] = 0

    chunks = team.plan(layout.key(), layout.bounds, layout.nodes)
    team.run([(n, i, zero, (lo, hi)) for n, i, lo, hi in chunks], assist=True)


def _fill(arr: PartitionedArray, value: Any) -> None:
    """Write `value` everywhere as np.full does (``copyto``, unsafe casting,
    broadcasting): by each block's local workers when a team runs (their
    writes are the first touch), else here."""
    plain = arr.view(np.ndarray)
    team = _writers(arr.dtype) if arr.ndim and arr.size else None  # 0-d: no rows
    layout = _valid_layout(arr)
    src = None
    if team is not None and layout is not None:
        try:  # converted once, here: NumPy's errors and warnings, once
            src = np.empty(np.shape(value), arr.dtype)
            np.copyto(src, value, casting="unsafe")
            if np.broadcast_shapes(src.shape, plain.shape) != plain.shape:
                src = None
        except Exception:
            src = None  # NumPy's own copyto below raises its own error
    if team is None or layout is None or src is None:
        np.copyto(plain, value, casting="unsafe")
        return
    axis = layout.axis - (plain.ndim - src.ndim)
    spans = axis >= 0 and src.shape[axis] != 1

    def fill(lo: int, hi: int) -> None:
        part = src[(slice(None),) * axis + (slice(lo, hi),)] if spans else src
        np.copyto(plain[_index(layout, lo, hi)], part)

    chunks = team.plan(layout.key(), layout.bounds, layout.nodes)
    team.run([(n, i, fill, (lo, hi)) for n, i, lo, hi in chunks], assist=True)


@document
def partitioned_empty(
    shape: Any,
    dtype: Any = float,
    order: str = "C",
    *,
    nodes: NodesLike | None = None,
    policy: Partitioned | None = None,
    **options: Unpack[AllocationKeywords],
) -> PartitionedArray:
    """An uninitialised array split into one block of rows per node.

    The memory is one block of numa_numpy's allocator (NumPy owns it and
    frees it through numa_numpy, as for `numa_empty`) under a `Partitioned`
    policy: each node's range of pages is bound to that node (mbind) before
    anything touches it, so every page lands on its block's node wherever it
    is first written. The split follows the layout rule of :func:`blocks`.

    Parameters
    ----------
    shape : int or tuple of int
    dtype : data-type, optional
    order : {"C", "F"}
        C order splits along axis 0, F order along the last axis.
    nodes : int, str or iterable of int, optional
        The nodes, in block order (default: every node with memory this
        process may use). Memory-only nodes are allowed.
    policy : Partitioned, optional
        The same as ``nodes=policy.nodes``.
    strict : bool, default False
        Raise `PolicyNotEnforcedError` when the kernel refuses a node's
        binding, instead of warning once and allocating unbound.
    huge_pages : HugePages or str, default "auto"
        "auto" (transparent huge pages from 4 MiB), "transparent" or "none";
        explicit huge pages raise InvalidPolicyError (a block's header shares
        its first huge page; a `NumaRegion` splits hugetlb memory instead).
    prefault : Prefault, str or bool, default "none"
        "touch" or "parallel" faults every page in now, each on its node.

    Returns
    -------
    PartitionedArray
        An ndarray subclass; inside a :func:`node_team` its ufuncs and
        reductions run node-parallel.

    Raises
    ------
    InvalidNodeError
        A node does not exist or `nodes` does not parse.
    InvalidPolicyError
        `policy` is not Partitioned, or explicit huge pages were asked for.
    PolicyNotEnforcedError
        `strict` and a node without memory, outside this process's cpuset, or
        whose binding the kernel refused (soft mode warns once instead).
    NumaAllocationError
        The memory could not be had (with prefault: not enough on a node).
    ValueError
        A negative dimension or an unknown order.

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> a = nn.partitioned_empty((1024, 512), np.float32, nodes=0)
    >>> nn.blocks(a)
    [(0, slice(0, 1024, None))]
    """
    return _new("partitioned_empty", shape, dtype, order, nodes, policy, **options)


@document
def partitioned_zeros(
    shape: Any,
    dtype: Any = float,
    order: str = "C",
    *,
    nodes: NodesLike | None = None,
    policy: Partitioned | None = None,
    **options: Unpack[AllocationKeywords],
) -> PartitionedArray:
    """Zeros split into one block of rows per node (see
    :func:`partitioned_empty`): what ``np.zeros`` gives, for every dtype
    (zero bytes; ``0`` in object fields). Outside a team the memory is zeroed
    as `numa_zeros` does (fresh pages are left untouched: each faults in on
    its node when first written); inside a running team each block's bytes
    are zeroed by its node's workers, faulting the pages in parallel (dtypes
    NumPy initialises itself, object and StringDType, are zeroed by NumPy).

    Parameters
    ----------
    shape, dtype, order, nodes, policy, strict, huge_pages, prefault
        As for :func:`partitioned_empty`.

    Returns
    -------
    PartitionedArray

    Raises
    ------
    InvalidNodeError, InvalidPolicyError, PolicyNotEnforcedError, NumaAllocationError, ValueError
        As for :func:`partitioned_empty`.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> float(nn.partitioned_zeros((100, 3)).sum())
    0.0
    >>> with nn.node_team(min_bytes=1):
    ...     nn.partitioned_zeros(2, "U3").tolist()
    ['', '']
    """
    team = _writers(np.dtype(dtype))
    arr = _new("partitioned_zeros", shape, dtype, order, nodes, policy, team is None, **options)
    if team is not None:
        _zero(arr, team)
    return arr


@document
def partitioned_ones(
    shape: Any,
    dtype: Any = float,
    order: str = "C",
    *,
    nodes: NodesLike | None = None,
    policy: Partitioned | None = None,
    **options: Unpack[AllocationKeywords],
) -> PartitionedArray:
    """Ones split into one block of rows per node (see
    :func:`partitioned_full`).

    Parameters
    ----------
    shape, dtype, order, nodes, policy, strict, huge_pages, prefault
        As for :func:`partitioned_empty`.

    Returns
    -------
    PartitionedArray

    Raises
    ------
    InvalidNodeError, InvalidPolicyError, PolicyNotEnforcedError, NumaAllocationError, ValueError
        As for :func:`partitioned_empty`.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> int(nn.partitioned_ones(10, int).sum())
    10
    """
    check_keywords("partitioned_ones", options, AllocationKeywords)
    return partitioned_full(shape, 1, dtype, order, nodes=nodes, policy=policy, **options)


@document
def partitioned_full(
    shape: Any,
    fill_value: Any,
    dtype: Any = None,
    order: str = "C",
    *,
    nodes: NodesLike | None = None,
    policy: Partitioned | None = None,
    **options: Unpack[AllocationKeywords],
) -> PartitionedArray:
    """`fill_value` everywhere, split into one block of rows per node, written
    as ``np.full`` writes it (unsafe casting; an array `fill_value`
    broadcasts). Inside a running team each block is written by its node's
    workers (the first touch); outside one, by the caller (the range
    policies place the pages all the same).

    Parameters
    ----------
    shape, order, nodes, policy, strict, huge_pages, prefault
        As for :func:`partitioned_empty`.
    fill_value : scalar or array_like
        Broadcast to `shape`, as for ``np.full``.
    dtype : data-type, optional
        Default: ``np.array(fill_value).dtype``, as for ``np.full``.

    Returns
    -------
    PartitionedArray

    Raises
    ------
    InvalidNodeError, InvalidPolicyError, PolicyNotEnforcedError, NumaAllocationError, ValueError
        As for :func:`partitioned_empty`.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.partitioned_full((2, 3), 7).tolist()
    [[7, 7, 7], [7, 7, 7]]
    >>> nn.partitioned_full((2, 3), [1, 2, 3]).tolist()
    [[1, 2, 3], [1, 2, 3]]
    """
    if dtype is None:
        dtype = np.array(fill_value).dtype
    arr = _new("partitioned_full", shape, dtype, order, nodes, policy, **options)
    _fill(arr, fill_value)
    return arr
