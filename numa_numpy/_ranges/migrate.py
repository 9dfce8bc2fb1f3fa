"""Moving an existing array's pages to another policy."""

from __future__ import annotations

import errno
import operator
from typing import Any

import numpy as np

from .._alloc.bridge import HANDLER_NAME, get_handler_name
from .._kernel.arena import block_mapping, block_mark_migrated
from .._kernel.lib import errno_counts, errno_of, move_range
from .._kernel.pages import base_page_size
from .._kernel.topology import format_list
from .._policies.enforcement import refuse
from .._policies.options import AllocationOptions
from .._policies.policy import (
    Bind,
    Default,
    Policy,
    PolicyLike,
    as_policy,
    validate,
)
from ..errors import InvalidPolicyError, MigrationError, NumaError
from .binding import bind_range, off_policy_pages, page_nodes
from .placement import Placement, owner_of, placement, span_of

__all__ = ["migrate"]


def _target(policy_or_node: Any) -> Policy:
    if isinstance(policy_or_node, (Policy, str)):
        return as_policy(policy_or_node)
    return Bind(
        operator.index(policy_or_node) if not isinstance(policy_or_node, bool) else policy_or_node
    )


def migrate(a: np.ndarray, policy_or_node: PolicyLike | int, *, strict: bool = False) -> Placement:
    """Move the pages of `a` under a new policy (a Policy, "bind:1", or a node)
    and return where they are now.

    numa_numpy's own large arrays are rebound whole (mbind with MPOL_MF_MOVE):
    their present pages move and later faults follow the new policy. Other
    arrays (NumPy's allocator) have the pages that lie entirely inside them moved
    with move_pages; the pages at either end, which may hold other data, stay.
    Views and numa_numpy's small arrays share pages with other data and are
    refused (MigrationError). Pages the kernel could not move are reported by a
    NumaWarning, or PolicyNotEnforcedError with strict=True.

    Parameters
    ----------
    a : numpy.ndarray
        The array whose pages move (an owner, not a view).
    policy_or_node : Policy, str or int
        The target: a policy, its string form, or a node id (``Bind(node)``).
    strict : bool, default False
        Raise `PolicyNotEnforcedError` instead of warning when some pages
        could not be moved.

    Returns
    -------
    Placement
        Where the pages are after the move.

    Raises
    ------
    TypeError
        `a` is not an ndarray.
    MigrationError
        `a` is a view or a small numa_numpy array sharing pages with others,
        or the target is `Default` (it has no place).
    InvalidNodeError, NumaUnavailableError
        The target names nodes that do not exist, or a mode the kernel lacks.
    InvalidPolicyError
        The target is `Partitioned`: an array's split lives with the memory it
        was allocated in; allocate a partitioned copy instead.
    PolicyNotEnforcedError
        ``strict=True`` and pages stayed where they were.

    See Also
    --------
    placement, numa_array : a placed copy instead of a move.

    Notes
    -----
    Moving pages costs a copy per page in the kernel; unpresent pages are not
    moved but follow the new policy when first touched (numa_numpy's own
    arrays only).

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> far = nn.topology().usable_nodes[-1]
    >>> a = np.ones(1 << 20)                  # NumPy's allocator, local memory
    >>> where = nn.migrate(a, far)
    >>> where.fraction(far) > 0.99            # all but the pages at either end
    True
    >>> b = nn.numa_ones(1 << 20, node=0)
    >>> nn.migrate(b, nn.Interleave()).on(nn.topology().usable_nodes)
    True
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"migrate() takes an ndarray, not {type(a).__name__}")
    target = _target(policy_or_node)
    if isinstance(target, Default):
        raise MigrationError("migrate() needs a target policy with a place: Default has none")
    topo = validate(target)
    owner = owner_of(a)
    if owner is None:
        raise MigrationError(_not_owned(a))
    if owner is not a:
        raise MigrationError(
            "migrate() moves whole pages, which a view shares with the rest "
            "of the array it views: migrate the array that owns the memory "
            "(follow .base)"
        )
    if a.nbytes == 0:
        return placement(a)
    if target.parts(topo) is not None:
        raise InvalidPolicyError(
            f"migrate() cannot move pages to {target}: the split of an array lives with the "
            "memory it was allocated in (blocks() reads it there); allocate a partitioned "
            "copy instead: partitioned_empty(a.shape, a.dtype) and assign",
            policy=target,
        )
    options = AllocationOptions(target, bool(strict))
    if get_handler_name(a) == HANDLER_NAME:
        mapping = block_mapping(a.ctypes.data)
        if mapping is None:
            raise MigrationError(
                f"this {a.nbytes}-byte array is a small block that shares its pages with other "
                "arrays; copy it instead: numa_array(a, policy=...)"
            )
        address, length = mapping
        bind_range(address, length, base_page_size(), options, move=True)
        block_mark_migrated(a.ctypes.data)
        _report(address, length, options, topo)
    else:
        _move_inner_pages(a, options, topo)
    return placement(a)


def _not_owned(a: np.ndarray) -> str:
    """Why an array over a buffer (a region, a shared segment, bytes) is refused:
    no array owns that memory, so following .base leads nowhere."""
    from .region import NumaRegion
    from .shared import _segment_of

    base: Any = a
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if _segment_of(a) is not None:
        return (
            "migrate() cannot move a shared array: other processes map its pages and "
            "the policy belongs to the shared object; create a new one with "
            "shared_zeros(..., policy=...) and copy into it"
        )
    if isinstance(base, NumaRegion):
        return (
            "migrate() cannot move an array over a NumaRegion: the region's policy "
            "is its own; create a NumaRegion with the new policy and copy into it"
        )
    return (
        f"migrate() moves memory an array owns; this array is over a "
        f"{type(base).__name__} buffer: copy it instead: numa_array(a, policy=...)"
    )


def _report(address: int, length: int, options: AllocationOptions, topo: Any) -> None:
    off = off_policy_pages(address, length, options.policy, topo)
    if off:
        allowed = options.policy.allowed_nodes(topo) or frozenset()
        message = (
            f"{off} pages could not be moved to node {format_list(allowed)} "
            "(pages shared with another process move only with CAP_SYS_NICE)"
        )
        refuse(options, message)


def _move_inner_pages(a: np.ndarray, options: AllocationOptions, topo: Any) -> None:
    target = options.policy
    page = base_page_size()
    address, nbytes = span_of(a)
    first = (address + page - 1) // page * page
    last = (address + nbytes) // page * page
    npages = max(0, (last - first) // page)
    if not npages:
        return
    per_page = page_nodes(target, topo, npages, page)
    status = np.empty(npages, dtype=np.intc)
    refusal: NumaError | None = None
    try:
        move_range(first, npages, page, per_page, status)
    except NumaError as exc:
        refusal = exc
    if refusal is not None:
        reason = str(refusal)
        refuse(
            options,
            f"cannot move pages to {target}: {reason}",
            reason=reason,
            err=errno_of(refusal),
        )
        return
    wanted = per_page
    # status: the node each page is on now, or -errno (-ENOENT: never touched: fine)
    misplaced = int(((status >= 0) & (status != wanted)).sum())
    errors = status[(status < 0) & (status != -errno.ENOENT)]
    failed = misplaced + int(errors.size)
    if failed:
        why = errno_counts(
            {
                -int(code): int(count)
                for code, count in zip(*np.unique(errors, return_counts=True), strict=True)
            }
        )
        message = (
            f"{failed} of {npages} pages could not be moved to {target}"
            f" ({misplaced} elsewhere{', ' + why if why else ''})"
        )
        refuse(options, message)
