"""Binding an existing range to a policy: mbind, then populate, then (strict)
verify page by page. Used by regions, shared arrays and migration; the NumPy
handler does the same in C for its own blocks."""

from __future__ import annotations

import math

import numpy as np

from .._kernel.arena import partition_cuts
from .._kernel.lib import apply_binding, check_room, errno_of, lib, populate, rephrase
from .._kernel.pages import query_pages
from .._kernel.topology import Topology, current_node, format_list
from .._policies.cstructs import binding_struct, prefault_plan
from .._policies.enforcement import (
    Enforcement,
    EnforcementLevel,
    node_shortfall,
    refuse,
    refuse_or_warn,
)
from .._policies.options import AllocationOptions, Prefault
from .._policies.policy import Interleave, Local, Policy, validate
from ..errors import NumaAllocationError, NumaError


def off_policy_pages(address: int, length: int, policy: Policy, topo: Topology) -> int:
    """Present pages of the range that are not on the nodes the policy allows."""
    allowed = policy.allowed_nodes(topo)
    if allowed is None:
        return 0
    _, status = query_pages(address, length)
    present = status[status >= 0]
    return int((~(present[:, None] == list(allowed)).any(axis=1)).sum()) if present.size else 0


def range_cuts(nbytes: int, granule: int, k: int, thp: bool = False) -> list[int]:
    """The k - 1 cuts (byte offsets) that split `nbytes` between k nodes: the C
    allocator's rule (`nn_partition_cuts`), never inside a `granule` (a row)."""
    if k <= 1:
        return []
    return partition_cuts(nbytes, granule, thp, k)


def row_split(shape: tuple[int, ...], itemsize: int, order: str) -> tuple[int, int, int]:
    """(axis, rows, bytes per row) of an array split into contiguous blocks of
    rows: axis 0, or the last axis in F order (each block one byte range)."""
    axis = len(shape) - 1 if order == "F" and len(shape) > 1 else 0
    nrows = shape[axis] if shape else 1
    return axis, nrows, math.prod(shape) * itemsize // nrows if nrows else 0


def _pieces(
    policy: Policy,
    topo: Topology,
    address: int,
    length: int,
    page_size: int,
    split: tuple[int, int, bool] | None,
) -> list[tuple[Policy, int, int]]:
    """(policy, address, length) of each range to bind: the whole range, or
    for Partitioned one range per node, cut by the allocator's rule over
    split = (bytes, row size, THP), each cut rounded up to the page (the page
    holding a cut is the earlier node's)."""
    parts = policy.parts(topo)
    if parts is None:
        return [(policy, address, length)]
    nbytes, granule, thp = split or (length, 1, False)
    ends = [
        min(length, -(-c // page_size) * page_size)
        for c in range_cuts(nbytes, granule, len(parts), thp)
    ]
    bounds = [0, *ends, length]
    return [
        (part, address + lo, hi - lo)
        for part, lo, hi in zip(parts, bounds[:-1], bounds[1:], strict=True)
        if hi > lo
    ]


def _bind(binding: object, address: int, length: int, flags: int) -> NumaError | None:
    """mbind one range; None, or the kernel's refusal."""
    try:
        apply_binding(binding, address, length, flags)
    except NumaError as exc:
        return exc
    return None


def bind_range(
    address: int,
    length: int,
    page_size: int,
    options: AllocationOptions,
    *,
    move: bool = False,
    extra_reason: str = "",
    split: tuple[int, int, bool] | None = None,
) -> Enforcement:
    """Apply options.policy to [address, address+length), populate it when asked,
    verify it when strict. Raises as the options say; returns the enforcement.
    A Partitioned policy binds one range per node, cut by `split` (bytes, row
    size, THP; default: the whole range, by the byte)."""
    policy = options.policy
    topo = validate(policy)
    reasons = [r for r in (node_shortfall(policy, topo), extra_reason) if r]
    if reasons:
        refuse_or_warn(options, "; ".join(reasons))
    level = EnforcementLevel.STRICT if options.strict else EnforcementLevel.BEST_EFFORT
    pieces = _pieces(policy, topo, address, length, page_size, split)
    structs = [binding_struct(part, topo) for part, _a, _n in pieces]  # (binding, mask)
    flags = lib.NN_MPOL_MF_MOVE if move else 0
    refused = ""  # soft: a refused range stays unbound, the others are bound and all prefaulted
    for (binding, _mask), (_part, start, size) in zip(structs, pieces, strict=True):
        refusal = _bind(binding, start, size, flags)
        if refusal is not None and not refused:
            refused = f"the kernel refused it: {refusal}"
            refuse_or_warn(options, refused, errno_of(refusal))  # strict raises here
    if refused:
        level = EnforcementLevel.NONE
        reasons.append(refused)
    if options.prefault is not Prefault.NONE:
        plan, _cpus = prefault_plan(options, topo)
        try:
            for (binding, _mask), (_part, _start, size) in zip(structs, pieces, strict=True):
                check_room(binding, size)
            populate(address, length, page_size, plan)
        except NumaError as exc:  # the room check or the populate: the step says which
            raise rephrase(
                exc,
                f"cannot fault in {length} bytes under {policy}",
                NumaAllocationError,
                size=length,
                policy=policy,
            ) from None
        if options.strict:  # verified only when strict: a soft binding is not read back
            for part, start, size in pieces:
                off = off_policy_pages(start, size, part, topo)
                if off:
                    allowed = part.allowed_nodes(topo) or frozenset()
                    refuse(
                        options,
                        f"strict {policy}: {off} pages are off node {format_list(allowed)}",
                        reason=f"{off} pages off-policy",
                    )
    return Enforcement(level, "; ".join(reasons))


def page_nodes(policy: Policy, topo: Topology, npages: int, page: int) -> np.ndarray:
    """The node each of `npages` pages of a range should be on: each part's
    node for `Partitioned` (cut as `range_cuts` cuts), round robin over an
    interleave's nodes, this thread's node for Local, the first node else."""
    parts = policy.parts(topo)
    if parts is not None:
        ends = [-(-c // page) for c in range_cuts(npages * page, page, len(parts))]
        bounds = [0, *ends, npages]
        out = np.empty(npages, np.intc)
        for part, a, b in zip(parts, bounds[:-1], bounds[1:], strict=True):
            out[a:b] = part.resolved_nodes(topo)[0]
        return out
    if isinstance(policy, Local):
        return np.full(npages, current_node(), np.intc)
    nodes = list(policy.resolved_nodes(topo))
    if isinstance(policy, Interleave):
        return np.resize(np.asarray(nodes, np.intc), npages)
    return np.full(npages, nodes[0], np.intc)
