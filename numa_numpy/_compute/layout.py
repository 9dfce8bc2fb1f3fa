"""Where a partitioned array's rows live: the layout rule, the blocks the
allocator splits at those rows, the split it recorded read back in rows, and
the check that a layout still describes its array.

Layout rule (what :func:`blocks` returns): the array is split along its
partition axis (axis 0 for C order and 1-D arrays, the last axis for F order,
so every block is one contiguous byte range) into one block of rows per node,
in node order. The memory is one block of numa_numpy's allocator under a
`Partitioned` policy, split by the same rule as any block NumPy allocates in
a ``policy(Partitioned(...))`` scope: boundaries at rows whose byte offset is
a multiple of the 2 MiB THP unit (blocks of 4 MiB and more, which start on
such a boundary), else of the base page, choosing the largest unit that still
gives every node at least one unit; the units are then shared as evenly as
possible (block sizes differ by at most one unit). When no unit gives every
node one (rows of odd sizes), rows are split evenly and the page holding a
boundary lives on the earlier block's node. Arrays of 64 KiB and less share
pages with other small blocks: all their rows are on the first node.

An array carries its layout in a ``_split`` record (`PartitionedArray` does,
see numa_numpy._compute.parallel): the layout and what it was made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .._alloc.creation import allocate_in
from .._alloc.handler import handler_of_arena
from .._alloc.scope import PolicyScope
from .._kernel.arena import block_owner, block_parts, next_block
from .._kernel.lib import ffi
from .._policies.policy import Partitioned
from .._ranges.binding import range_cuts, row_split
from .._ranges.shared import partition_of

__all__ = ["Layout", "blocks", "layout_of"]

THP_UNIT = 2 << 20


@dataclass(frozen=True)
class Layout:
    """How a partitioned array's rows map to nodes."""

    shape: tuple[int, ...]
    axis: int
    nodes: tuple[int, ...]
    bounds: tuple[int, ...]  # len(nodes) + 1 row indices along `axis`
    order: str

    def key(self) -> tuple[Any, ...]:
        return (self.axis, self.bounds, self.nodes)


def _split(nrows: int, rowbytes: int, k: int, thp: bool) -> tuple[int, ...]:
    """Row boundaries for k blocks by the allocator's one rule (see the
    module's layout rule): cuts on multiples of the THP unit when `thp`, else
    of the base page, never inside a row; rows shared evenly when no unit
    gives every block one."""
    if k <= 1 or not nrows or not rowbytes:
        return (0,) + (nrows,) * k
    cuts = range_cuts(nrows * rowbytes, rowbytes, k, thp)
    return (0,) + tuple(c // rowbytes for c in cuts) + (nrows,)


@lru_cache(maxsize=256)
def _policy_of(nodes: tuple[int, ...]) -> Partitioned:
    return Partitioned(nodes)  # interning costs a ufunc's output 3 us


def _index(layout: Layout, lo: int, hi: int) -> tuple[Any, ...]:
    return (slice(None),) * layout.axis + (slice(lo, hi),)


def _fingerprint(x: np.ndarray) -> tuple[Any, ...]:
    """What a layout is valid for: the memory, shape, strides and item size."""
    return (x.ctypes.data, x.shape, x.strides, x.itemsize, x.nbytes)


def _valid_layout(x: Any) -> Layout | None:
    """`x`'s layout (from its ``_split`` record) if it still describes `x`;
    else (its shape, dtype, strides or memory were changed in place:
    ``a.shape = ...``, ``a.dtype = ...``) the split the allocator recorded,
    read again for what `x` is now, or None (then NumPy's own path runs)."""
    split = x._split
    if split is None:
        return None
    now = _fingerprint(x)
    if split[1] == now:
        return split[0]  # type: ignore[no-any-return]
    fresh = _allocator_layout(x)
    if fresh is not None:  # else keep the old one: valid again if x changes back
        x._split = (fresh, now)
    return fresh


def _byte_bounds(address: int, size: int, k: int) -> list[int] | None:
    """The part bounds (bytes, 0..size) the allocator recorded for the block
    at `address` (nn_block_owner accepted it); None if it is not split."""
    out = ffi.new("size_t[]", k + 1)
    parts = block_parts(address, out, k + 1)
    return [min(int(b), size) for b in out[0 : parts + 1]] if 0 < parts <= k else None


def _rows(byte_bounds: list[int], rowbytes: int, nrows: int, k: int) -> tuple[int, ...]:
    """Row bounds from byte bounds: a row belongs to the block where it
    starts; a small block (one part) puts every row in the first."""
    rows = [min(nrows, -(-b // rowbytes)) for b in byte_bounds[:-1]] + [nrows]
    return tuple(rows + [nrows] * (k + 1 - len(rows)))


def layout_of(a: Any) -> Layout | None:
    """A partitioned array's layout: a PartitionedArray's own, a partitioned
    shared array's (from its header), or, for an array NumPy allocated in a
    ``policy(Partitioned(...))`` scope (or a contiguous view starting where its
    memory starts), the split the allocator recorded."""
    if isinstance(a, np.ndarray) and getattr(a, "_split", None) is not None:
        return _valid_layout(a)
    if not isinstance(a, np.ndarray) or not a.size or not a.ndim:
        return None
    shared = partition_of(a)
    if shared is not None:  # the split follows from the header's nodes and order
        nodes, order = shared
        axis, nrows, rowbytes = row_split(a.shape, a.itemsize, order)
        return Layout(a.shape, axis, nodes, _split(nrows, rowbytes, len(nodes), False), order)
    return _allocator_layout(a)


def _allocator_layout(a: np.ndarray) -> Layout | None:
    """The split the allocator recorded for the block `a` starts at, in rows
    of `a` as it is now (None: not contiguous, not such a block, or empty)."""
    if not a.size or not a.ndim:
        return None
    contiguous = "C" if a.flags.c_contiguous else "F" if a.flags.f_contiguous else None
    arena, _status = block_owner(a.ctypes.data)
    handler = handler_of_arena(arena) if arena else None
    if contiguous is None or handler is None:
        return None
    nodes = handler.nodes  # as the arena split it, whatever the topology says now
    byte_bounds = _byte_bounds(a.ctypes.data, a.nbytes, len(nodes))
    if byte_bounds is None:
        return None
    axis, nrows, rowbytes = row_split(a.shape, a.itemsize, contiguous)
    bounds = _rows(byte_bounds, rowbytes, nrows, len(nodes))
    return Layout(a.shape, axis, nodes, bounds, contiguous)


def _allocate_split(
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    order: str,
    scope: PolicyScope,
    bounds: tuple[int, ...] | None = None,
    zero: bool = False,
) -> tuple[np.ndarray, Layout]:
    """One block of a Partitioned scope's arena: split by the arena's rule,
    never inside a row, or at `bounds` (a ufunc's output follows its input).
    The layout is what the allocator recorded."""
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    axis, nrows, rowbytes = row_split(shape, dtype.itemsize, order)
    nodes = scope.handler.nodes
    k = len(nodes)
    if bounds is not None and rowbytes and k > 1:
        cuts = ffi.new("size_t[]", [b * rowbytes for b in bounds[1:-1]])
        next_block(0, cuts, k - 1)
    else:
        next_block(max(rowbytes, 1))
    make: Any = np.zeros if zero else np.empty
    try:
        root = allocate_in(scope, lambda: make(shape, dtype, order))
    finally:
        next_block(0)  # unused by a small block: not for the next
    byte_bounds = _byte_bounds(root.ctypes.data, root.nbytes, k) if rowbytes else None
    if byte_bounds is None:  # an empty array: no rows to place
        actual: tuple[int, ...] = (0,) + (nrows,) * k
    else:
        actual = _rows(byte_bounds, rowbytes, nrows, k)
    return root, Layout(shape, axis, nodes, actual, order)


def blocks(a: np.ndarray) -> list[tuple[int, slice]]:
    """The (node, rows) pairs of a partitioned array, in order.

    Rows are a slice along the partition axis (axis 0 for C order, the last
    axis for F order: ``a.layout.axis``). Block boundaries fall on multiples
    of the 2 MiB THP unit (arrays of 4 MiB or more where THP is on) or of the
    base page, where the row size allows; otherwise the page holding a
    boundary lives on the earlier block's node. Blocks of tiny arrays may be
    empty.

    Parameters
    ----------
    a : PartitionedArray
        An array from a partitioned constructor, a team's ufunc or
        ``map_blocks`` (not a view of one).

    Returns
    -------
    list of (int, slice)

    Raises
    ------
    TypeError
        `a` carries no layout (a plain ndarray, or a view).

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.partitioned_zeros((8, 4), nodes=0)
    >>> nn.blocks(a)
    [(0, slice(0, 8, None))]
    """
    layout = layout_of(a)
    if layout is None:
        raise TypeError(
            "blocks() takes an array made by partitioned_empty/zeros/ones/full, a team "
            "ufunc, map_blocks or NumPy in a policy(Partitioned(...)) scope; views inside "
            "it and other arrays carry no layout"
        )
    b = layout.bounds
    return [(n, slice(b[i], b[i + 1])) for i, n in enumerate(layout.nodes)]
