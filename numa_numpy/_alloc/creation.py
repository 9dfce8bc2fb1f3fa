"""NumPy's constructors, allocating under a NUMA policy.

Each takes NumPy's arguments first and the NUMA keywords after `*`:
``node=`` (shorthand for Bind(node)) or ``policy=``, plus ``strict``,
``huge_pages`` and ``prefault``. With neither node nor policy the active
numa_numpy scope's policy is used, else Local().
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, SupportsIndex, TypeVar, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .._kernel.lib import clear_step, error
from .._policies.docstrings import document
from .._policies.options import (
    DEFAULTS,
    AllocationKeywords,
    PlacementKeywords,
    check_keywords,
    resolve,
)
from .._policies.policy import Interleave, Local, NodesLike, Policy
from ..errors import NumaAllocationError
from .handler import active_handler
from .scope import _BY_VALUE as _SCOPES  # noqa: F401 - the scope cache, read by tests
from .scope import PolicyScope, default_scope, scope_for

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "numa_empty",
    "numa_zeros",
    "numa_ones",
    "numa_full",
    "numa_empty_like",
    "numa_zeros_like",
    "numa_ones_like",
    "numa_full_like",
    "numa_array",
    "interleaved_empty",
    "interleaved_zeros",
    "interleaved_ones",
    "interleaved_full",
]

T = TypeVar("T")
ShapeLike = Union[SupportsIndex, Sequence[SupportsIndex]]
Order = Literal["C", "F"]
OrderKACF = Literal["K", "A", "C", "F"]


def placement_scope(where: str, placed: Policy | None, /, **numa: Any) -> PolicyScope:
    """The (cached) scope for a constructor's NUMA keywords; `placed`: the
    policy the constructor fixes itself (``interleaved_*``), which then takes
    no node= or policy=. An unknown keyword is a TypeError naming `where`, the
    constructor, as for any Python function."""
    if placed is None:
        check_keywords(where, numa, PlacementKeywords)
        chosen = resolve(numa.pop("node", None), numa.pop("policy", None))
    else:
        check_keywords(where, numa, AllocationKeywords)
        chosen = placed
    if chosen is None:  # the active scope's policy, with these options
        active = active_handler()
        return PolicyScope(active.policy if active else Local(), **numa)
    if all(value is DEFAULTS[name] for name, value in numa.items()):
        return default_scope(chosen)
    return scope_for(chosen, where, **numa)


def allocate_in(scope: PolicyScope, make: Callable[[], T]) -> T:
    """`make()` under `scope`, a failed allocation raised as NumaAllocationError
    naming the step that failed (the constructors' second step, after
    `placement_scope`; the partitioned constructors take both)."""
    with scope:
        clear_step()  # the arena's nn_map runs in this thread: read its failing step after
        try:
            return make()
        except MemoryError as exc:
            if isinstance(exc, NumaAllocationError):
                raise
            handler = scope.handler
            err = handler.last_errno() or 12
            why = error(err, fallback="the allocator (mmap, mbind or populate)")
            raise NumaAllocationError(
                f"cannot allocate under {handler.policy}: {exc}; {why}",
                size=_requested_bytes(exc),
                policy=handler.policy,
                errno=err,
            ) from exc


def _requested_bytes(exc: MemoryError) -> int:
    shape = getattr(exc, "_total_size", None)
    return int(shape) if shape is not None else 0


def _refuse(like: Any, device: Any) -> None:
    """Arguments NumPy takes that a NUMA allocation cannot honour."""
    if like is not None:
        raise TypeError(
            "numa_numpy constructors do not support like=: they always return numpy.ndarray"
        )
    if device not in (None, "cpu"):
        raise TypeError(f"device={device!r}: numa_numpy allocates host memory ('cpu') only")


@document
def numa_empty(
    shape: ShapeLike,
    dtype: DTypeLike | None = float,
    order: Order = "C",
    *,
    device: Any = None,
    like: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.empty` whose memory the kernel places by a NUMA policy.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the new array, as for NumPy.
    dtype : data-type, optional
        As for NumPy; default float64.
    order : {'C', 'F'}, default 'C'
        Row-major (C) or column-major (Fortran) memory layout.
    device : {None, 'cpu'}, optional
        Accepted for NumPy compatibility; only ``"cpu"`` (host memory).
    like : None
        Accepted for NumPy compatibility; anything but None is a `TypeError`.
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        An uninitialised array that owns its memory (NumPy frees it through numa_numpy).

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None.

    See Also
    --------
    numa_zeros, numa_empty_like, interleaved_empty
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> far = nn.topology().usable_nodes[-1]   # 0 on a one-node machine
    >>> a = nn.numa_empty((1000, 1000), np.float32, node=far, prefault="touch")
    >>> a.shape, a.dtype
    ((1000, 1000), dtype('float32'))
    >>> nn.placement(a).on(far)   # every page is on `far`
    True
    """
    _refuse(like, device)
    return allocate_in(
        placement_scope("numa_empty", None, **numa), lambda: np.empty(shape, dtype, order)
    )


@document
def numa_zeros(
    shape: ShapeLike,
    dtype: DTypeLike | None = float,
    order: Order = "C",
    *,
    device: Any = None,
    like: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.zeros` whose memory the kernel places by a NUMA policy.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the new array, as for NumPy.
    dtype : data-type, optional
        As for NumPy; default float64.
    order : {'C', 'F'}, default 'C'
        Row-major (C) or column-major (Fortran) memory layout.
    device : {None, 'cpu'}, optional
        Accepted for NumPy compatibility; only ``"cpu"`` (host memory).
    like : None
        Accepted for NumPy compatibility; anything but None is a `TypeError`.
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        An array of zeros that owns its memory.

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None.

    See Also
    --------
    numa_empty, numa_zeros_like, interleaved_zeros
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_zeros((512, 512), node=0)
    >>> float(a.sum())
    0.0
    >>> nn.placement(a).requested
    Bind(0)
    """
    _refuse(like, device)
    return allocate_in(
        placement_scope("numa_zeros", None, **numa), lambda: np.zeros(shape, dtype, order)
    )


@document
def numa_ones(
    shape: ShapeLike,
    dtype: DTypeLike | None = None,
    order: Order = "C",
    *,
    device: Any = None,
    like: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.ones` whose memory the kernel places by a NUMA policy.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the new array, as for NumPy.
    dtype : data-type, optional
        As for NumPy; default float64.
    order : {'C', 'F'}, default 'C'
        Row-major (C) or column-major (Fortran) memory layout.
    device : {None, 'cpu'}, optional
        Accepted for NumPy compatibility; only ``"cpu"`` (host memory).
    like : None
        Accepted for NumPy compatibility; anything but None is a `TypeError`.
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        An array of ones that owns its memory.

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None.

    See Also
    --------
    numa_full, numa_ones_like, interleaved_ones
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_ones(4, dtype="int8", policy="preferred:0")
    >>> a
    array([1, 1, 1, 1], dtype=int8)
    """
    _refuse(like, device)
    return allocate_in(
        placement_scope("numa_ones", None, **numa), lambda: np.ones(shape, dtype, order)
    )


@document
def numa_full(
    shape: ShapeLike,
    fill_value: Any,
    dtype: DTypeLike | None = None,
    order: Order = "C",
    *,
    device: Any = None,
    like: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.full` whose memory the kernel places by a NUMA policy.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the new array, as for NumPy.
    fill_value : scalar or array_like
        The value every element gets.
    dtype : data-type, optional
        As for NumPy; default the type of `fill_value`.
    order : {'C', 'F'}, default 'C'
        Row-major (C) or column-major (Fortran) memory layout.
    device : {None, 'cpu'}, optional
        Accepted for NumPy compatibility; only ``"cpu"`` (host memory).
    like : None
        Accepted for NumPy compatibility; anything but None is a `TypeError`.
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        An array filled with `fill_value`; its pages are written, so all are placed.

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None.

    See Also
    --------
    numa_ones, numa_full_like, interleaved_full
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> far = nn.topology().usable_nodes[-1]
    >>> a = nn.numa_full((256, 256), 7.5, node=far)
    >>> float(a[0, 0]), nn.placement(a).fraction(far)
    (7.5, 1.0)
    """
    _refuse(like, device)
    return allocate_in(
        placement_scope("numa_full", None, **numa), lambda: np.full(shape, fill_value, dtype, order)
    )


@document
def numa_empty_like(
    prototype: ArrayLike,
    dtype: DTypeLike | None = None,
    order: OrderKACF = "K",
    subok: bool = True,
    shape: ShapeLike | None = None,
    *,
    device: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.empty_like` whose memory the kernel places by a NUMA policy.

    Parameters
    ----------
    prototype : array_like
        The array whose shape (and, by default, dtype and layout) the result takes.
    dtype : data-type, optional
        Overrides the data type of the result.
    order : {'K', 'A', 'C', 'F'}, default 'K'
        Memory layout of the result, as for NumPy ('K': as close to `prototype` as possible).
    subok : bool, default True
        Return a subclass of `prototype`'s type where it has one, as NumPy does.
    shape : int or tuple of int, optional
        Overrides the shape of the result.
    device : {None, 'cpu'}, optional
        Accepted for NumPy compatibility; only ``"cpu"`` (host memory).
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        An uninitialised array like `prototype`.

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None.

    See Also
    --------
    numa_empty, numa_zeros_like
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> x = np.arange(6.0).reshape(2, 3)
    >>> y = nn.numa_empty_like(x, node=0)
    >>> y.shape, y.dtype
    ((2, 3), dtype('float64'))
    """
    _refuse(None, device)
    return allocate_in(
        placement_scope("numa_empty_like", None, **numa),
        lambda: np.empty_like(prototype, dtype, order, subok, shape),
    )


@document
def numa_zeros_like(
    a: ArrayLike,
    dtype: DTypeLike | None = None,
    order: OrderKACF = "K",
    subok: bool = True,
    shape: ShapeLike | None = None,
    *,
    device: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.zeros_like` whose memory the kernel places by a NUMA policy.

    Parameters
    ----------
    a : array_like
        The array whose shape (and, by default, dtype and layout) the result takes.
    dtype : data-type, optional
        Overrides the data type of the result.
    order : {'K', 'A', 'C', 'F'}, default 'K'
        Memory layout of the result, as for NumPy ('K': as close to `a` as possible).
    subok : bool, default True
        Return a subclass of `a`'s type where it has one, as NumPy does.
    shape : int or tuple of int, optional
        Overrides the shape of the result.
    device : {None, 'cpu'}, optional
        Accepted for NumPy compatibility; only ``"cpu"`` (host memory).
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        An array of zeros like `a`.

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None.

    See Also
    --------
    numa_zeros, numa_empty_like
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> nn.numa_zeros_like(np.eye(2, dtype=np.int32), node=0)
    array([[0, 0],
           [0, 0]], dtype=int32)
    """
    _refuse(None, device)
    return allocate_in(
        placement_scope("numa_zeros_like", None, **numa),
        lambda: np.zeros_like(a, dtype, order, subok, shape),
    )


@document
def numa_ones_like(
    a: ArrayLike,
    dtype: DTypeLike | None = None,
    order: OrderKACF = "K",
    subok: bool = True,
    shape: ShapeLike | None = None,
    *,
    device: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.ones_like` whose memory the kernel places by a NUMA policy.

    Parameters
    ----------
    a : array_like
        The array whose shape (and, by default, dtype and layout) the result takes.
    dtype : data-type, optional
        Overrides the data type of the result.
    order : {'K', 'A', 'C', 'F'}, default 'K'
        Memory layout of the result, as for NumPy ('K': as close to `a` as possible).
    subok : bool, default True
        Return a subclass of `a`'s type where it has one, as NumPy does.
    shape : int or tuple of int, optional
        Overrides the shape of the result.
    device : {None, 'cpu'}, optional
        Accepted for NumPy compatibility; only ``"cpu"`` (host memory).
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        An array of ones like `a`.

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None.

    See Also
    --------
    numa_ones, numa_full_like
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> nn.numa_ones_like(np.zeros(3), policy=nn.Interleave())
    array([1., 1., 1.])
    """
    _refuse(None, device)
    return allocate_in(
        placement_scope("numa_ones_like", None, **numa),
        lambda: np.ones_like(a, dtype, order, subok, shape),
    )


@document
def numa_full_like(
    a: ArrayLike,
    fill_value: Any,
    dtype: DTypeLike | None = None,
    order: OrderKACF = "K",
    subok: bool = True,
    shape: ShapeLike | None = None,
    *,
    device: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.full_like` whose memory the kernel places by a NUMA policy.

    Parameters
    ----------
    a : array_like
        The array whose shape (and, by default, dtype and layout) the result takes.
    fill_value : scalar or array_like
        The value every element gets.
    dtype : data-type, optional
        Overrides the data type of the result.
    order : {'K', 'A', 'C', 'F'}, default 'K'
        Memory layout of the result, as for NumPy ('K': as close to `a` as possible).
    subok : bool, default True
        Return a subclass of `a`'s type where it has one, as NumPy does.
    shape : int or tuple of int, optional
        Overrides the shape of the result.
    device : {None, 'cpu'}, optional
        Accepted for NumPy compatibility; only ``"cpu"`` (host memory).
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        An array like `a` filled with `fill_value`.

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None.

    See Also
    --------
    numa_full, numa_ones_like
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> x = nn.numa_empty((1000, 1000), np.float32, order="F", node=0)
    >>> y = nn.numa_full_like(x, 7, policy="interleave")   # or "interleave:0-3"
    >>> y.flags.f_contiguous, float(y[0, 0])
    (True, 7.0)
    """
    _refuse(None, device)
    return allocate_in(
        placement_scope("numa_full_like", None, **numa),
        lambda: np.full_like(a, fill_value, dtype, order, subok, shape),
    )


@document
def numa_array(
    object: ArrayLike,
    dtype: DTypeLike | None = None,
    *,
    copy: bool | None = True,
    order: OrderKACF = "K",
    subok: bool = False,
    ndmin: int = 0,
    like: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.array` that always copies `object` onto memory placed by a NUMA policy.

    Parameters
    ----------
    object : array_like
        What to copy: an array, a nested sequence, a scalar or anything with
        ``__array__``.
    dtype : data-type, optional
        The data type of the result; by default inferred as NumPy does.
    copy : {True, None}, default True
        The data is always copied (that is how it reaches the policy's
        memory); False is a `TypeError`.
    order : {'K', 'A', 'C', 'F'}, default 'K'
        Memory layout of the result, as for NumPy.
    subok : bool, default False
        Keep ndarray subclasses, as for NumPy.
    ndmin : int, default 0
        Minimum number of dimensions of the result; the result owns its memory
        (NumPy would return a view).
    like : None
        Accepted for NumPy compatibility; anything but None is a `TypeError`.
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        A new array with a copy of `object`'s data.

    Raises
    ------
    {allocation_raises}
    TypeError
        ``like=`` or a `device` other than ``"cpu"``, both `node` and
        `policy`, or a `policy` that is not a Policy, a string or None, or ``copy=False``.

    See Also
    --------
    numa_empty_like, migrate
    placement : where the pages of an array are, from the kernel.
    on_node, policy : scopes that place every NumPy allocation inside them.

    Notes
    -----
    The policy is set on the memory before NumPy writes to it. Pages that are
    never written are not placed yet (the kernel places a page at its first
    touch, by the policy): ``placement(a).not_present`` counts them.
    ``prefault="touch"`` places them all now. Freed memory goes back to
    numa_numpy's cache for the next array of the same policy.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> z = nn.numa_array([[1, 2], [3, 4]], dtype=np.int16, policy=nn.Preferred(0))
    >>> z
    array([[1, 2],
           [3, 4]], dtype=int16)
    >>> z.flags.owndata
    True
    """
    _refuse(like, None)
    if copy is False:
        raise TypeError(
            "numa_array always copies onto the policy's memory: copy=False cannot be honoured"
        )

    def make() -> np.ndarray:
        out = np.array(object, dtype, copy=True, order=order, subok=subok, ndmin=ndmin)
        # ndmin reshapes the copy into a view: give the caller the owner itself.
        return out if out.flags.owndata else out.copy(order="K")

    return allocate_in(placement_scope("numa_array", None, **numa), make)


@document
def interleaved_empty(
    shape: ShapeLike,
    dtype: DTypeLike | None = float,
    order: Order = "C",
    *,
    nodes: NodesLike | None = None,
    **options: Unpack[AllocationKeywords],
) -> np.ndarray:
    """`numpy.empty` with its pages interleaved over NUMA nodes.

    The same as ``numa_empty(..., policy=Interleave(nodes))``: bandwidth of
    several memory controllers for an array every thread reads.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the new array, as for NumPy.
    dtype : data-type, optional
        As for NumPy; default float64.
    order : {'C', 'F'}, default 'C'
        Row-major (C) or column-major (Fortran) memory layout.
    nodes : int, str or sequence of int, optional
        The nodes to interleave over; None (default): every usable node with
        memory. The pages go round-robin, one page per node in turn.
    {allocation_keywords}

    Returns
    -------
    numpy.ndarray
        A new array whose pages go round-robin over `nodes`.

    Raises
    ------
    {allocation_raises}

    See Also
    --------
    numa_empty : the same with any policy.
    interleaved : a scope that interleaves every NumPy allocation inside it.
    Interleave, WeightedInterleave : the policies.

    Notes
    -----
    Interleaving is by base page: a transparent huge page (2 MiB) lands whole
    on one node, so blocks given THP interleave in 2 MiB units.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> b = nn.interleaved_empty(10_000_000)   # spread over every node with memory
    >>> b.nbytes
    80000000
    """
    scope = placement_scope("interleaved_empty", Interleave(nodes), **options)
    return allocate_in(scope, lambda: np.empty(shape, dtype, order))


@document
def interleaved_zeros(
    shape: ShapeLike,
    dtype: DTypeLike | None = float,
    order: Order = "C",
    *,
    nodes: NodesLike | None = None,
    **options: Unpack[AllocationKeywords],
) -> np.ndarray:
    """`numpy.zeros` with its pages interleaved over NUMA nodes.

    The same as ``numa_zeros(..., policy=Interleave(nodes))``: bandwidth of
    several memory controllers for an array every thread reads.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the new array, as for NumPy.
    dtype : data-type, optional
        As for NumPy; default float64.
    order : {'C', 'F'}, default 'C'
        Row-major (C) or column-major (Fortran) memory layout.
    nodes : int, str or sequence of int, optional
        The nodes to interleave over; None (default): every usable node with
        memory. The pages go round-robin, one page per node in turn.
    {allocation_keywords}

    Returns
    -------
    numpy.ndarray
        A new array whose pages go round-robin over `nodes`.

    Raises
    ------
    {allocation_raises}

    See Also
    --------
    numa_zeros : the same with any policy.
    interleaved : a scope that interleaves every NumPy allocation inside it.
    Interleave, WeightedInterleave : the policies.

    Notes
    -----
    Interleaving is by base page: a transparent huge page (2 MiB) lands whole
    on one node, so blocks given THP interleave in 2 MiB units.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.interleaved_zeros((1024, 1024), prefault="touch")
    >>> where = nn.placement(a)
    >>> sorted(where.pages) == sorted(nn.topology().usable_nodes)  # a page on each node
    True

    With two nodes or more (this one runs in the NUMA lab), base pages alternate:

    >>> two = nn.topology().usable_nodes[:2]
    >>> b = nn.interleaved_ones(1 << 18, nodes=two, huge_pages="none")
    >>> counts = nn.placement(b).pages
    >>> spread = sorted(counts.values())
    >>> len(spread) == 2 and spread[1] - spread[0] <= 1  # doctest: +MULTINODE
    True
    """
    scope = placement_scope("interleaved_zeros", Interleave(nodes), **options)
    return allocate_in(scope, lambda: np.zeros(shape, dtype, order))


@document
def interleaved_ones(
    shape: ShapeLike,
    dtype: DTypeLike | None = None,
    order: Order = "C",
    *,
    nodes: NodesLike | None = None,
    **options: Unpack[AllocationKeywords],
) -> np.ndarray:
    """`numpy.ones` with its pages interleaved over NUMA nodes.

    The same as ``numa_ones(..., policy=Interleave(nodes))``: bandwidth of
    several memory controllers for an array every thread reads.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the new array, as for NumPy.
    dtype : data-type, optional
        As for NumPy; default the default float.
    order : {'C', 'F'}, default 'C'
        Row-major (C) or column-major (Fortran) memory layout.
    nodes : int, str or sequence of int, optional
        The nodes to interleave over; None (default): every usable node with
        memory. The pages go round-robin, one page per node in turn.
    {allocation_keywords}

    Returns
    -------
    numpy.ndarray
        A new array whose pages go round-robin over `nodes`.

    Raises
    ------
    {allocation_raises}

    See Also
    --------
    numa_ones : the same with any policy.
    interleaved : a scope that interleaves every NumPy allocation inside it.
    Interleave, WeightedInterleave : the policies.

    Notes
    -----
    Interleaving is by base page: a transparent huge page (2 MiB) lands whole
    on one node, so blocks given THP interleave in 2 MiB units.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.interleaved_ones(3, nodes=[0])
    array([1., 1., 1.])
    """
    scope = placement_scope("interleaved_ones", Interleave(nodes), **options)
    return allocate_in(scope, lambda: np.ones(shape, dtype, order))


@document
def interleaved_full(
    shape: ShapeLike,
    fill_value: Any,
    dtype: DTypeLike | None = None,
    order: Order = "C",
    *,
    nodes: NodesLike | None = None,
    **options: Unpack[AllocationKeywords],
) -> np.ndarray:
    """`numpy.full` with its pages interleaved over NUMA nodes.

    The same as ``numa_full(..., policy=Interleave(nodes))``: bandwidth of
    several memory controllers for an array every thread reads.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the new array, as for NumPy.
    fill_value : scalar or array_like
        The value every element gets.
    dtype : data-type, optional
        As for NumPy; default the type of `fill_value`.
    order : {'C', 'F'}, default 'C'
        Row-major (C) or column-major (Fortran) memory layout.
    nodes : int, str or sequence of int, optional
        The nodes to interleave over; None (default): every usable node with
        memory. The pages go round-robin, one page per node in turn.
    {allocation_keywords}

    Returns
    -------
    numpy.ndarray
        A new array whose pages go round-robin over `nodes`.

    Raises
    ------
    {allocation_raises}

    See Also
    --------
    numa_full : the same with any policy.
    interleaved : a scope that interleaves every NumPy allocation inside it.
    Interleave, WeightedInterleave : the policies.

    Notes
    -----
    Interleaving is by base page: a transparent huge page (2 MiB) lands whole
    on one node, so blocks given THP interleave in 2 MiB units.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.interleaved_full(1 << 20, 2.0, nodes=nn.topology().usable_nodes)
    >>> float(a.sum())
    2097152.0
    """
    scope = placement_scope("interleaved_full", Interleave(nodes), **options)
    return allocate_in(scope, lambda: np.full(shape, fill_value, dtype, order))
