"""Node-parallel compute on partitioned arrays: `PartitionedArray` and its
ufunc and reduction dispatch into the active node team, and ``map_blocks``.
A new operation a team runs over partitioned arrays belongs here; it is
attached to `NodeTeam` at the end of this module, as ``map_blocks`` is (the
team itself knows no arrays).

Node-parallel ufuncs need NumPy 1.24 or newer: each block's loop dtypes are
decided by ``ufunc.resolve_dtypes``, exactly as NumPy decides them. With older
NumPy, ufuncs on partitioned arrays run on NumPy's own path (same results, one
thread, plain ndarray results); ``map_blocks`` works on every NumPy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._alloc.scope import PolicyScope, default_scope
from .._policies.enforcement import warn
from .._ranges.binding import row_split
from .layout import (
    Layout,
    _allocate_split,
    _fingerprint,
    _index,
    _policy_of,
    _split,
    _valid_layout,
    layout_of,
)
from .replicas import Replicas

try:
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # NumPy 1
    from numpy.core.numeric import normalize_axis_tuple  # type: ignore[attr-defined,no-redef,unused-ignore]
from .team import NodeTeam, active_team

__all__ = ["PartitionedArray", "map_blocks"]

Chunk = tuple[int, int, int, int]  # (worker node, worker index, first row, end row)


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


def _allocate(
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    order: str,
    scope: PolicyScope,
    bounds: tuple[int, ...] | None = None,
    zero: bool = False,
) -> PartitionedArray:
    """A partitioned array of one block of a Partitioned scope's arena (see
    `_allocate_split`), carrying the layout the allocator recorded."""
    root, layout = _allocate_split(shape, dtype, order, scope, bounds, zero)
    arr = root.view(PartitionedArray)
    arr._split = (layout, _fingerprint(arr))
    return arr


def _output(shape: tuple[int, ...], dtype: np.dtype[Any], layout: Layout) -> PartitionedArray:
    """An output split like `layout`'s array (a ufunc's, map_blocks')."""
    scope = default_scope(_policy_of(layout.nodes))
    return _allocate(shape, dtype, layout.order, scope, layout.bounds)


#: dtype flags NPY_ITEM_REFCOUNT and NPY_NEEDS_INIT: items NumPy initialises
#: itself (object references, StringDType's strings); never written by workers
_NUMPY_INITIALISES = 0x01 | 0x08


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


def _elementwise_inputs(inputs: tuple[Any, ...]) -> bool:
    """Whether every input is an array or a scalar of plain dtypes: lists and
    objects with their own protocols are NumPy's to decide, and Python objects
    (which the GIL serialises anyway) are NumPy's to compute."""
    for x in inputs:
        if not isinstance(x, (np.ndarray, np.generic, int, float, complex, bool)):
            return False
        if isinstance(x, (np.ndarray, np.generic)) and x.dtype.hasobject:
            return False
    return True


def _outs_fit(out: tuple[Any, ...], inputs: tuple[Any, ...], shape: tuple[int, ...]) -> bool:
    """Whether the given outputs can be written block by block: arrays of the
    result's shape, of plain dtypes, not overlapping an input (overlapping in
    place needs NumPy's buffering). A None (a partial out=) is allocated here."""
    for o in out:
        if o is None:
            continue
        if not isinstance(o, np.ndarray) or o.shape != shape or o.dtype.hasobject:
            return False
        for x in inputs:
            if isinstance(x, np.ndarray) and x is not o and np.may_share_memory(o, x):
                return False
    return True


def _call_layout(
    team: NodeTeam, ufunc: np.ufunc, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[int, ...], Layout] | None:
    """The result's shape and the layout a ufunc call splits by (its first
    partitioned input's, else its first partitioned output's), or None when
    NumPy's own path runs: a gufunc, keywords other than out, dtype, casting
    and signature, an array under the team's min_bytes, or a result that
    broadcasts past the blocks."""
    if ufunc.signature is not None or not _CALL_KWARGS.issuperset(kwargs):
        return None
    out = kwargs.get("out")
    if not _elementwise_inputs(inputs):
        return None
    lead, layout = _lead(inputs, None)
    if lead is None and out is not None:
        lead, layout = _lead([o for o in out if o is not None], None)
    if lead is None or layout is None:
        return None
    if lead.nbytes < team.min_bytes or lead.shape[layout.axis] < 2:
        return None
    shape = lead.shape
    try:
        full = np.broadcast_shapes(*(np.shape(x) for x in inputs))
    except ValueError:
        return None  # NumPy raises its own error
    if full != shape:
        return None  # the result would broadcast past the blocks
    if out is not None and not _outs_fit(out, inputs, shape):
        return None
    return shape, layout


def _slicer(inputs: tuple[Any, ...], axis: int, ndim: int) -> Callable[[int, int], tuple[Any, ...]]:
    """``pieces(lo, hi)``: the inputs for rows [lo, hi) of the result (an
    input that broadcasts along the partition axis is passed whole)."""
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

    return pieces


def _call_outputs(
    ufunc: np.ufunc,
    pieces: Callable[[int, int], tuple[Any, ...]],
    kw: dict[str, Any],
    out: tuple[Any, ...] | None,
    shape: tuple[int, ...],
    layout: Layout,
) -> tuple[Any, ...] | None:
    """The outputs: the given ones, and one split like `layout` for each not
    given, of the dtype NumPy's own type resolution (and its errors) gives on
    zero rows; None for object or StringDType results (NumPy's path)."""
    if out is None:
        probe = ufunc(*pieces(0, 0), **kw)
    else:
        empty = (slice(None),) * layout.axis + (slice(0, 0),)
        zero = tuple(None if o is None else _plain(o)[empty] for o in out)
        probe = ufunc(*pieces(0, 0), out=zero, **kw)
    probes = probe if isinstance(probe, tuple) else (probe,)
    if any(p.dtype.flags & _NUMPY_INITIALISES for p in probes):
        return None  # object or StringDType results (dtype=object): NumPy's path
    given = (None,) * len(probes) if out is None else out
    return tuple(
        _output(shape, p.dtype, layout) if o is None else o
        for o, p in zip(given, probes, strict=True)
    )


def _parallel_call(
    team: NodeTeam, ufunc: np.ufunc, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A ufunc's __call__ block by block in the team's workers (each chunk of
    rows by its node's workers), or NotImplemented: NumPy's own path."""
    found = _call_layout(team, ufunc, inputs, kwargs)
    if found is None:
        return NotImplemented
    shape, layout = found
    converted = _convert_scalars(ufunc, inputs, kwargs)
    if converted is None:
        return NotImplemented
    pieces = _slicer(converted, layout.axis, len(shape))
    kw = {k: v for k, v in kwargs.items() if k != "out"}
    outs = _call_outputs(ufunc, pieces, kw, kwargs.get("out"), shape, layout)
    if outs is None:
        return NotImplemented
    plain_outs = tuple(_plain(o) for o in outs)
    errs: set[str] = set()
    call = ufunc.__call__
    tasks = []
    for n, i, lo, hi in team.plan(layout.key(), layout.bounds, layout.nodes):
        index = (slice(None),) * layout.axis + (slice(lo, hi),)
        block_kw = dict(kw)
        block_kw["out"] = tuple(o[index] for o in plain_outs)
        tasks.append((n, i, _run_block, (call, pieces(lo, hi), block_kw, errs)))
    team.run(tasks, assist=True)
    _report(errs, ufunc.__name__)
    return outs[0] if len(outs) == 1 else outs


def _reduce_axes(
    team: NodeTeam, ufunc: np.ufunc, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[PartitionedArray, Layout, tuple[int, ...]] | None:
    """The array, its layout and the axes a reduction runs over when it runs
    block by block: one of the associative ufuncs, over the partition axis,
    of a partitioned array of at least the team's min_bytes, with no out=,
    initial= or where=; else None (NumPy's own path)."""
    if ufunc not in _REDUCE_UFUNCS or len(inputs) != 1:
        return None
    (a,) = inputs
    if not isinstance(a, PartitionedArray) or a.nbytes < team.min_bytes:
        return None
    layout = _valid_layout(a)
    if layout is None:
        return None
    if a.dtype.hasobject:
        return None
    try:  # dtype=object: Python objects, the GIL serialises them anyway
        if np.dtype(kwargs.get("dtype")).flags & _NUMPY_INITIALISES:
            return None
    except TypeError:
        return None  # NumPy raises its own error
    if kwargs.get("out") is not None or "initial" in kwargs:
        return None
    if kwargs.get("where", True) is not True:
        return None
    if not {"axis", "dtype", "keepdims", "where", "out"}.issuperset(kwargs):
        return None
    ndim = a.ndim
    axis = kwargs.get("axis", 0)
    try:
        axes = (
            tuple(range(ndim)) if axis is None else tuple(sorted(normalize_axis_tuple(axis, ndim)))
        )
    except Exception:
        return None  # NumPy raises its own error
    if layout.axis not in axes:
        return None
    return a, layout, axes


def _combine(
    ufunc: np.ufunc, partials: list[Any], layout: Layout, axes: tuple[int, ...], keepdims: bool
) -> Any:
    """The blocks' partial reductions reduced once more, in block order
    (deterministic for a given layout and team)."""
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


def _parallel_reduce(
    team: NodeTeam, ufunc: np.ufunc, inputs: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A reduction block by block in the team's workers, the partials combined
    here, or NotImplemented: NumPy's own path."""
    found = _reduce_axes(team, ufunc, inputs, kwargs)
    if found is None:
        return NotImplemented
    a, layout, axes = found
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
    return _combine(ufunc, partials, layout, axes, keepdims)


# -- map_blocks ------------------------------------------------------------------------


def _map_layout(team: NodeTeam, arrays: tuple[Any, ...]) -> Layout:
    """The split map_blocks follows: the first partitioned argument's, else
    the split NumPy's allocator recorded for an argument (a Partitioned
    scope's array), else the first array's rows split over the team's nodes
    by the layout rule."""
    _, found = _lead(arrays, None)
    for x in arrays if found is None else ():  # NumPy's arrays from a Partitioned scope
        found = layout_of(x) if isinstance(x, np.ndarray) and x.ndim else None
        if found is not None:
            break
    if found is not None:
        return found
    first = next((x for x in arrays if isinstance(x, np.ndarray) and x.ndim), None)
    if first is None:
        raise TypeError("map_blocks() needs at least one array with rows to split")
    order = "F" if first.flags.f_contiguous and not first.flags.c_contiguous else "C"
    axis, nrows, rowbytes = row_split(first.shape, first.itemsize, order)
    bounds = _split(nrows, rowbytes, len(team.nodes), False)
    return Layout(first.shape, axis, team.nodes, bounds, order)


def _chunk_arguments(
    arrays: tuple[Any, ...], layout: Layout
) -> Callable[[int, int, int], tuple[Any, ...]]:
    """``args_for(node, lo, hi)``: a chunk's arguments: the rows [lo, hi) of
    an array as long as the layout's along its axis, the node's copy of a
    Replicas, anything else unchanged."""
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

    return args_for


def _row_results(
    results: list[Any], chunks: list[Chunk], layout: Layout, out: Any
) -> list[tuple[np.ndarray, ...]] | None:
    """Each chunk's results as a tuple of arrays of the chunk's rows; None when
    ``func`` returned anything else (map_blocks then returns the list), which
    `out` cannot take (TypeError, ValueError)."""
    axis, ndim = layout.axis, len(layout.shape)

    def rows_match(r: Any) -> bool:
        rs = r if isinstance(r, tuple) else (r,)
        return all(isinstance(x, np.ndarray) and x.ndim == ndim for x in rs)

    if not results or not all(rows_match(r) for r in results):
        if out is not None:
            raise TypeError("map_blocks(out=...) needs func to return the chunk's rows")
        return None
    per = [r if isinstance(r, tuple) else (r,) for r in results]
    for (_n, _i, lo, hi), r in zip(chunks, per, strict=True):
        if any(x.shape[axis] != hi - lo for x in r):
            if out is not None:
                raise ValueError("func returned a different number of rows than it was given")
            return None
    return per


def _write_blocks(
    team: NodeTeam,
    per: list[tuple[np.ndarray, ...]],
    chunks: list[Chunk],
    layout: Layout,
    out: Any,
) -> tuple[np.ndarray, ...]:
    """The chunks' results copied into `out`, or into new arrays split like
    `layout`, each chunk by the worker that computed it."""
    if out is None:
        nrows = layout.shape[layout.axis] if layout.shape else 1
        shapes = [list(x.shape) for x in per[0]]
        for s in shapes:
            s[layout.axis] = nrows
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
    return outs


def map_blocks(team: NodeTeam, func: Callable[..., Any], *arrays: Any, out: Any = None) -> Any:
    """Run ``func`` on each node's block of rows in that node's workers.

    Each node's block (see :func:`blocks`) is split among the node's workers
    (memory-only nodes' blocks among the workers of the nearest node with
    CPUs); ``func`` is called once per chunk with, for each argument: the
    chunk's rows of an array that spans the partition axis, the worker's
    local copy of a :class:`Replicas`, anything else unchanged. So ``func``
    must treat rows independently (elementwise work, per-row work).

    A method of `NodeTeam`: ``team.map_blocks(func, *arrays, out=None)``.

    Parameters
    ----------
    func : callable
        ``func(*chunks)``; runs in worker threads, under the node's scope.
    *arrays
        Partitioned arrays (their blocks decide the split; the first one
        leads), other arrays of the same length along the partition axis,
        Replicas, or other values.
    out : ndarray or tuple of ndarrays, optional
        Where to write the results (each chunk's result is copied into the
        chunk's rows of `out`).

    Returns
    -------
    ndarray, tuple, list or None
        When ``func`` returns arrays with the chunk's rows, a partitioned
        array (one per result) laid out as the leading argument, each block
        written by its node's worker (or `out`); when it returns None, None;
        otherwise the list of per-chunk results, in block order.

    Raises
    ------
    NumaError
        The team is not running.
    TypeError
        No argument is an array to split.
    Exception
        The first exception ``func`` raised in a worker, with its traceback.

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> a = nn.partitioned_full(1 << 16, 2.0)
    >>> with nn.node_team() as team:
    ...     b = team.map_blocks(np.sqrt, a)
    ...     partial = team.map_blocks(np.sum, b)
    >>> bool(np.isclose(sum(partial), np.sqrt(2.0) * (1 << 16)))
    True
    """
    team._require_running()
    layout = _map_layout(team, arrays)
    chunks = team.plan(layout.key(), layout.bounds, layout.nodes)
    if not chunks:  # no rows: func still runs, once, on the empty rows (as NumPy's would)
        nrows = layout.shape[layout.axis] if layout.shape else 1
        server = team.plan(("one row", layout.nodes[0]), (0, 1), layout.nodes[:1])[0][0]
        chunks = [(server, 0, 0, nrows)]
    args_for = _chunk_arguments(arrays, layout)
    results = team.run([(n, i, func, args_for(n, lo, hi)) for n, i, lo, hi in chunks])
    if all(r is None for r in results):
        return None
    per = _row_results(results, chunks, layout, out)
    if per is None:
        return results
    outs = _write_blocks(team, per, chunks, layout, out)
    if out is not None:
        return out
    return outs if isinstance(results[0], tuple) else outs[0]


# The team runs what it is given and knows no arrays: the operations over
# partitioned arrays are attached to it here, where the arrays are known.
NodeTeam.map_blocks = map_blocks
