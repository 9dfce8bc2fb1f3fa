"""Partitioned arrays: one mapping split into contiguous page-aligned ranges,
one per node, in order; and node-parallel ufuncs and reductions over them
inside a node team.

Node-parallel ufuncs need NumPy 1.24 or newer: each block's loop dtypes are
decided by ``ufunc.resolve_dtypes``, exactly as NumPy decides them. With older
NumPy, ufuncs on partitioned arrays run on NumPy's own path (same results, one
thread, plain ndarray results); ``map_blocks`` works on every NumPy.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from .._alloc.creation import _allocate as _allocate_in
from .._alloc.creation import _scope as placement_scope
from .._alloc.handler import handler_of_arena
from .._alloc.scope import PolicyScope, default_scope
from .._kernel.lib import ffi, lib
from .._policies.docstrings import document
from .._policies.enforcement import warn
from .._policies.options import AllocationKeywords, check_keywords
from .._policies.policy import NodesLike, Partitioned, Policy, parse_nodes
from .._ranges.binding import range_cuts, row_split
from .._ranges.shared import partition_of

try:
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # NumPy 1
    from numpy.core.numeric import normalize_axis_tuple  # type: ignore[attr-defined,no-redef,unused-ignore]
from ..errors import InvalidPolicyError
from .team import NodeTeam, active_team

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "Partitioned",
    "PartitionedArray",
    "partitioned_empty",
    "partitioned_zeros",
    "partitioned_ones",
    "partitioned_full",
    "blocks",
]

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


class PartitionedArray(np.ndarray):
    """An ndarray whose blocks of rows live on different nodes (see
    :func:`partitioned_empty`). Views and results NumPy computes on its own
    are plain ndarrays; only arrays made by the partitioned constructors, a
    team's ufuncs and ``map_blocks`` carry a layout.

    Made by the ``partitioned_*`` constructors, not called directly. Pickles
    as a plain ndarray.

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> a = nn.partitioned_zeros((6, 2), nodes=0)
    >>> a.layout.bounds, a.layout.axis
    ((0, 6), 0)
    >>> a[1:].layout is None
    True
    """

    #: The layout and what it was made for (see `_fingerprint`), set together
    #: (one attribute: a thread never sees one without the other). NumPy lets
    #: an array's shape, dtype, strides (and, in NumPy 1, data) change in
    #: place, and a layout of other rows would split the wrong memory.
    _split: tuple[Layout, tuple[Any, ...]] | None = None

    def __array_finalize__(self, obj: Any) -> None:
        self._split = None  # views do not keep the layout: their rows differ

    def __reduce__(self) -> Any:  # pickles as a plain ndarray
        return np.asarray(self).view(np.ndarray).__reduce__()

    @property
    def layout(self) -> Layout | None:
        """The row split (None for views, and for arrays whose shape, dtype or
        strides were changed in place to rows the allocator's split does not
        describe)."""
        return _valid_layout(self)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        team = _ACTIVE_GET()
        if team is not None and team._workers:
            result = _parallel(team, ufunc, method, inputs, kwargs)
            if result is not NotImplemented:
                return result
        return _numpy(ufunc, method, inputs, kwargs)


def _ACTIVE_GET() -> NodeTeam | None:  # noqa: N802 - a hot alias
    return active_team()


def _fingerprint(x: np.ndarray) -> tuple[Any, ...]:
    """What a layout is valid for: the memory, shape, strides and item size."""
    return (x.ctypes.data, x.shape, x.strides, x.itemsize, x.nbytes)


def _valid_layout(x: PartitionedArray) -> Layout | None:
    """`x`'s layout if it still describes `x`; else (its shape, dtype, strides
    or memory were changed in place: ``a.shape = ...``, ``a.dtype = ...``)
    the split the allocator recorded, read again for what `x` is now, or None
    (then NumPy's own path runs)."""
    split = x._split
    if split is None:
        return None
    now = _fingerprint(x)
    if split[1] == now:
        return split[0]
    fresh = _allocator_layout(x)
    if fresh is not None:  # else keep the old one: valid again if x changes back
        x._split = (fresh, now)
    return fresh


def _plain(x: Any) -> Any:
    return x.view(np.ndarray) if isinstance(x, PartitionedArray) else x


def _numpy(ufunc: np.ufunc, method: str, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """NumPy's own single-threaded path: the same call on plain ndarray views."""
    args = tuple(_plain(x) for x in inputs)
    out = kwargs.get("out")
    if out is not None or isinstance(kwargs.get("where"), PartitionedArray):
        kwargs = dict(kwargs)
        if out is not None:
            kwargs["out"] = tuple(_plain(o) for o in out)
        if "where" in kwargs:
            kwargs["where"] = _plain(kwargs["where"])
    result = getattr(ufunc, method)(*args, **kwargs)
    if out is not None:  # hand back the caller's own objects (a += 1 keeps a)
        if len(out) == 1:
            return out[0]
        # a partial out= (out=(o, None)): NumPy's own result where none was given
        return tuple(r if o is None else o for o, r in zip(out, result, strict=True))
    return result


# -- constructors ------------------------------------------------------------------


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


@lru_cache(maxsize=256)
def _policy_of(nodes: tuple[int, ...]) -> Partitioned:
    return Partitioned(nodes)  # interning costs a ufunc's output 3 us


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def _byte_bounds(address: int, size: int, k: int) -> list[int] | None:
    """The part bounds (bytes, 0..size) the allocator recorded for the block
    at `address` (nn_block_owner accepted it); None if it is not split."""
    out = ffi.new("size_t[]", k + 1)
    parts = lib.nn_block_parts(ffi.cast("void *", address), out, k + 1)
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
    if isinstance(a, PartitionedArray) and a._split is not None:
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
    arena = lib.nn_block_owner(ffi.cast("void *", a.ctypes.data), ffi.NULL, ffi.NULL)
    handler = handler_of_arena(int(ffi.cast("uintptr_t", arena))) if arena != ffi.NULL else None
    if contiguous is None or handler is None:
        return None
    nodes = handler.nodes  # as the arena split it, whatever the topology says now
    byte_bounds = _byte_bounds(a.ctypes.data, a.nbytes, len(nodes))
    if byte_bounds is None:
        return None
    axis, nrows, rowbytes = row_split(a.shape, a.itemsize, contiguous)
    bounds = _rows(byte_bounds, rowbytes, nrows, len(nodes))
    return Layout(a.shape, axis, nodes, bounds, contiguous)


def _allocate(
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    order: str,
    scope: PolicyScope,
    bounds: tuple[int, ...] | None = None,
    zero: bool = False,
) -> PartitionedArray:
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
        lib.nn_arena_next_block(0, cuts, k - 1)
    else:
        lib.nn_arena_next_block(max(rowbytes, 1), ffi.NULL, 0)
    make: Any = np.zeros if zero else np.empty
    try:
        root = _allocate_in(scope, lambda: make(shape, dtype, order))
    finally:
        lib.nn_arena_next_block(0, ffi.NULL, 0)  # unused by a small block: not for the next
    byte_bounds = _byte_bounds(root.ctypes.data, root.nbytes, k) if rowbytes else None
    if byte_bounds is None:  # an empty array: no rows to place
        actual: tuple[int, ...] = (0,) + (nrows,) * k
    else:
        actual = _rows(byte_bounds, rowbytes, nrows, k)
    arr = root.view(PartitionedArray)
    arr._split = (Layout(shape, axis, nodes, actual, order), _fingerprint(arr))
    return arr  # type: ignore[no-any-return]


def _output(shape: tuple[int, ...], dtype: np.dtype[Any], layout: Layout) -> PartitionedArray:
    """An output split like `layout`'s array (a ufunc's, map_blocks')."""
    scope = default_scope(_policy_of(layout.nodes))
    return _allocate(shape, dtype, layout.order, scope, layout.bounds)


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


#: dtype flags NPY_ITEM_REFCOUNT and NPY_NEEDS_INIT: items NumPy initialises
#: itself (object references, StringDType's strings); never written by workers
_NUMPY_INITIALISES = 0x01 | 0x08


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


def _index(layout: Layout, lo: int, hi: int) -> tuple[Any, ...]:
    return (slice(None),) * layout.axis + (slice(lo, hi),)


# -- node-parallel ufuncs ------------------------------------------------------------

_CALL_KWARGS = frozenset({"out", "dtype", "casting", "signature"})
_REDUCE_UFUNCS = frozenset(
    {
        np.add,
        np.multiply,
        np.minimum,
        np.maximum,
        np.fmin,
        np.fmax,
        np.logical_and,
        np.logical_or,
        np.bitwise_and,
        np.bitwise_or,
        np.bitwise_xor,
    }
)
_ERRORS = ("divide by zero", "overflow", "underflow", "invalid value")
_FLAGS = {"divide by zero": 1, "overflow": 2, "underflow": 4, "invalid value": 8}
_ERR_KEYS = {
    "divide by zero": "divide",
    "overflow": "over",
    "underflow": "under",
    "invalid value": "invalid",
}


def _run_block(call: Any, args: tuple[Any, ...], kwargs: dict[str, Any], errs: set[str]) -> Any:
    """In a worker: the ufunc on one chunk, floating-point errors recorded (the
    caller reports them under its own np.errstate)."""
    with np.errstate(all="call", call=lambda kind, _flag: errs.add(kind)):
        return call(*args, **kwargs)


def _report(errs: set[str], name: str) -> None:
    """What NumPy would have done with these floating-point errors, under the
    caller's np.errstate."""
    if not errs:
        return
    settings = np.geterr()
    for kind in _ERRORS:
        if kind not in errs:
            continue
        mode = settings[_ERR_KEYS[kind]]  # type: ignore[literal-required]
        message = f"{kind} encountered in {name}"
        if mode == "ignore":
            continue
        if mode == "raise":
            raise FloatingPointError(message)
        if mode == "warn":
            warn(message, RuntimeWarning)
        elif mode == "print":
            print(f"Warning: {message}")
        elif mode == "call":
            np.geterrcall()(kind, _FLAGS[kind])  # type: ignore[misc,operator,unused-ignore]
        elif mode == "log":
            np.geterrcall().write(f"Warning: {message}\n")  # type: ignore[union-attr,operator,unused-ignore]


def _parallel(
    team: NodeTeam, ufunc: np.ufunc, method: str, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if team.in_worker():
        return NotImplemented
    if method == "__call__":
        return _parallel_call(team, ufunc, inputs, kwargs)
    if method == "reduce":
        return _parallel_reduce(team, ufunc, inputs, kwargs)
    return NotImplemented


_WEAK = (int, float, complex)


def _convert_scalars(
    ufunc: np.ufunc, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...] | None:
    """Python scalars converted once, here, to the dtype of the loop NumPy
    picks (NEP 50), so a conversion's warning or error ("overflow encountered
    in cast", OverflowError) is raised once under the caller's np.errstate, as
    NumPy does, and not once per block under the loop's name. None when NumPy
    cannot say which loop or the scalar does not fit it (then NumPy's own
    path runs)."""
    if not any(type(x) in _WEAK for x in inputs):
        return inputs
    if "dtype" in kwargs:
        return None
    try:
        options = {"casting": kwargs.get("casting", "same_kind")}
        if kwargs.get("signature") is not None:
            options["signature"] = kwargs["signature"]
        loop = ufunc.resolve_dtypes(
            tuple(type(x) if type(x) in _WEAK else x.dtype for x in inputs) + (None,) * ufunc.nout,
            **options,
        )
    except Exception:
        return None
    try:
        return tuple(
            np.asarray(x, dtype=loop[i]) if type(x) in _WEAK else x for i, x in enumerate(inputs)
        )
    except OverflowError:
        # an int out of the loop's range: NumPy decides (an error for arithmetic,
        # an answer for comparisons, which NumPy 2 evaluates exactly)
        return None


def _lead(
    arrays: Sequence[Any], shape: tuple[int, ...] | None
) -> tuple[PartitionedArray, Layout] | tuple[None, None]:
    """The first partitioned array (of `shape`) with rows (not 0-d) whose
    layout still describes it, and that layout."""
    for x in arrays:
        if isinstance(x, PartitionedArray) and x._split is not None and x.ndim:
            if shape is None or x.shape == shape:
                layout = _valid_layout(x)
                if layout is not None:
                    return x, layout
    return None, None


def _parallel_call(
    team: NodeTeam, ufunc: np.ufunc, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if ufunc.signature is not None or not _CALL_KWARGS.issuperset(kwargs):
        return NotImplemented
    out = kwargs.get("out")
    for x in inputs:  # lists, objects with their own protocols: NumPy decides
        if not isinstance(x, (np.ndarray, np.generic, int, float, complex, bool)):
            return NotImplemented
        if isinstance(x, (np.ndarray, np.generic)) and x.dtype.hasobject:
            return NotImplemented  # Python objects: the GIL serialises them anyway
    lead, layout = _lead(inputs, None)
    if lead is None and out is not None:
        lead, layout = _lead([o for o in out if o is not None], None)
    if lead is None or layout is None:
        return NotImplemented
    if lead.nbytes < team.min_bytes or lead.shape[layout.axis] < 2:
        return NotImplemented
    shape = lead.shape
    try:
        full = np.broadcast_shapes(*(np.shape(x) for x in inputs))
    except ValueError:
        return NotImplemented  # NumPy raises its own error
    if full != shape:
        return NotImplemented  # the result would broadcast past the blocks
    axis, ndim = layout.axis, len(shape)
    if out is not None:
        for o in out:
            if o is None:  # a partial out=: allocated here, as NumPy would
                continue
            if not isinstance(o, np.ndarray) or o.shape != shape or o.dtype.hasobject:
                return NotImplemented
            for x in inputs:
                if isinstance(x, np.ndarray) and x is not o and np.may_share_memory(o, x):
                    return NotImplemented  # overlapping in-place: NumPy's buffering
    converted = _convert_scalars(ufunc, inputs, kwargs)
    if converted is None:
        return NotImplemented
    inputs = converted
    split: list[bool] = []
    for x in inputs:
        if isinstance(x, np.ndarray) and x.ndim:
            ax = axis - (ndim - x.ndim)
            split.append(ax >= 0 and x.shape[ax] != 1)
        else:
            split.append(False)

    def pieces(lo: int, hi: int) -> tuple[Any, ...]:
        index = (slice(None),) * axis + (slice(lo, hi),)
        return tuple(
            _plain(x)[index[ndim - x.ndim :]] if s else _plain(x)
            for x, s in zip(inputs, split, strict=True)
        )

    kw = {k: v for k, v in kwargs.items() if k != "out"}
    # NumPy's own type resolution (and its errors), on zero rows
    if out is None:
        probe = ufunc(*pieces(0, 0), **kw)
    else:
        empty = (slice(None),) * axis + (slice(0, 0),)
        zero = tuple(None if o is None else _plain(o)[empty] for o in out)
        probe = ufunc(*pieces(0, 0), out=zero, **kw)
    probes = probe if isinstance(probe, tuple) else (probe,)
    if any(p.dtype.flags & _NUMPY_INITIALISES for p in probes):
        return NotImplemented  # object or StringDType results (dtype=object): NumPy's path
    given = (None,) * len(probes) if out is None else out
    outs = tuple(
        _output(shape, p.dtype, layout) if o is None else o
        for o, p in zip(given, probes, strict=True)
    )
    plain_outs = tuple(_plain(o) for o in outs)
    errs: set[str] = set()
    call = ufunc.__call__
    tasks = []
    for n, i, lo, hi in team.plan(layout.key(), layout.bounds, layout.nodes):
        index = (slice(None),) * axis + (slice(lo, hi),)
        block_kw = dict(kw)
        block_kw["out"] = tuple(o[index] for o in plain_outs)
        tasks.append((n, i, _run_block, (call, pieces(lo, hi), block_kw, errs)))
    team.run(tasks, assist=True)
    _report(errs, ufunc.__name__)
    return outs[0] if len(outs) == 1 else outs


def _parallel_reduce(
    team: NodeTeam, ufunc: np.ufunc, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if ufunc not in _REDUCE_UFUNCS or len(inputs) != 1:
        return NotImplemented
    (a,) = inputs
    if not isinstance(a, PartitionedArray) or a.nbytes < team.min_bytes:
        return NotImplemented
    layout = _valid_layout(a)
    if layout is None:
        return NotImplemented
    if a.dtype.hasobject:
        return NotImplemented
    try:  # dtype=object: Python objects, the GIL serialises them anyway
        if np.dtype(kwargs.get("dtype")).flags & _NUMPY_INITIALISES:
            return NotImplemented
    except TypeError:
        return NotImplemented  # NumPy raises its own error
    if kwargs.get("out") is not None or "initial" in kwargs:
        return NotImplemented
    if kwargs.get("where", True) is not True:
        return NotImplemented
    if not {"axis", "dtype", "keepdims", "where", "out"}.issuperset(kwargs):
        return NotImplemented
    ndim = a.ndim
    axis = kwargs.get("axis", 0)
    try:
        axes = (
            tuple(range(ndim)) if axis is None else tuple(sorted(normalize_axis_tuple(axis, ndim)))
        )
    except Exception:
        return NotImplemented  # NumPy raises its own error
    if layout.axis not in axes:
        return NotImplemented
    dtype = kwargs.get("dtype")
    keepdims = bool(kwargs.get("keepdims", False))
    plain = a.view(np.ndarray)
    chunks = team.plan(layout.key(), layout.bounds, layout.nodes)
    if not chunks:
        return NotImplemented
    errs: set[str] = set()
    reduce = ufunc.reduce
    tasks = []
    for n, i, lo, hi in chunks:
        piece = plain[_index(layout, lo, hi)]
        tasks.append(
            (
                n,
                i,
                _run_block,
                (reduce, (piece,), {"axis": axes, "dtype": dtype, "keepdims": True}, errs),
            )
        )
    partials = team.run(tasks, assist=True)
    _report(errs, "reduce")
    # combined in block order: deterministic for a given layout and team
    stacked = np.concatenate(partials, axis=layout.axis)
    # the partials' dtype is the result's: named for integers and booleans (or
    # add and multiply would widen an int32 sum=dtype asked for); others keep
    # their dtype by themselves, and a unit (datetime64, timedelta64) or size
    # may not be named in dtype= at all (TypeError)
    kind = stacked.dtype.kind
    combine = stacked.dtype if kind in "biu" else None
    result = ufunc.reduce(stacked, axis=layout.axis, dtype=combine, keepdims=True)
    if not keepdims:
        result = result.reshape([s for d, s in enumerate(result.shape) if d not in axes])
        if result.ndim == 0:
            return result[()]
    return result


# -- map_blocks ------------------------------------------------------------------------


def map_blocks(team: NodeTeam, func: Any, arrays: tuple[Any, ...], out: Any) -> Any:
    """NodeTeam.map_blocks (documented there)."""
    from .replicas import Replicas

    team._require_running()
    _, found = _lead(arrays, None)
    for x in arrays if found is None else ():  # NumPy's arrays from a Partitioned scope
        found = layout_of(x) if isinstance(x, np.ndarray) and x.ndim else None
        if found is not None:
            break
    if found is not None:
        layout = found
    else:
        first = next((x for x in arrays if isinstance(x, np.ndarray) and x.ndim), None)
        if first is None:
            raise TypeError("map_blocks() needs at least one array with rows to split")
        order = "F" if first.flags.f_contiguous and not first.flags.c_contiguous else "C"
        axis, nrows, rowbytes = row_split(first.shape, first.itemsize, order)
        bounds = _split(nrows, rowbytes, len(team.nodes), False)
        layout = Layout(first.shape, axis, team.nodes, bounds, order)
    axis = layout.axis
    nrows = layout.shape[axis] if layout.shape else 1
    ndim = len(layout.shape)
    roles: list[str] = []
    for x in arrays:
        if isinstance(x, Replicas):
            roles.append("replica")
        elif isinstance(x, np.ndarray) and x.ndim == ndim and x.shape[axis] == nrows:
            roles.append("split")
        else:
            roles.append("whole")

    def args_for(node: int, lo: int, hi: int) -> tuple[Any, ...]:
        index = _index(layout, lo, hi)
        return tuple(
            _plain(x)[index] if r == "split" else x.for_node(node) if r == "replica" else x
            for x, r in zip(arrays, roles, strict=True)
        )

    chunks = team.plan(layout.key(), layout.bounds, layout.nodes)
    if not chunks:  # no rows: func still runs, once, on the empty rows (as NumPy's would)
        server = team.plan(("one row", layout.nodes[0]), (0, 1), layout.nodes[:1])[0][0]
        chunks = [(server, 0, 0, nrows)]
    results = team.run([(n, i, func, args_for(n, lo, hi)) for n, i, lo, hi in chunks])
    if all(r is None for r in results):
        return None
    first_result = results[0] if results else None
    multi = isinstance(first_result, tuple)

    def rows_match(r: Any) -> bool:
        rs = r if isinstance(r, tuple) else (r,)
        return all(isinstance(x, np.ndarray) and x.ndim == ndim for x in rs)

    if not results or not all(rows_match(r) for r in results):
        if out is not None:
            raise TypeError("map_blocks(out=...) needs func to return the chunk's rows")
        return results
    per = [r if isinstance(r, tuple) else (r,) for r in results]
    for (_n, _i, lo, hi), r in zip(chunks, per, strict=True):
        if any(x.shape[axis] != hi - lo for x in r):
            if out is not None:
                raise ValueError("func returned a different number of rows than it was given")
            return results
    if out is None:
        shapes = [list(x.shape) for x in per[0]]
        for s in shapes:
            s[axis] = nrows
        outs: tuple[np.ndarray, ...] = tuple(
            _output(tuple(s), x.dtype, layout) for s, x in zip(shapes, per[0], strict=True)
        )
    else:
        outs = out if isinstance(out, tuple) else (out,)
    targets = [_plain(o) for o in outs]

    def copy(index: tuple[Any, ...], r: tuple[np.ndarray, ...]) -> None:
        for t, x in zip(targets, r, strict=True):
            t[index] = x

    team.run(
        [
            (n, i, copy, (_index(layout, lo, hi), r))
            for (n, i, lo, hi), r in zip(chunks, per, strict=True)
        ]
    )
    if out is not None:
        return out
    return outs if multi else outs[0]
