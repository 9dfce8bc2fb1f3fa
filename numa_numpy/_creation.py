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

from ._handler import active_handler
from ._lib import clear_step, failed_step
from ._options import HugePages, HugePagesLike, Prefault, PrefaultLike, resolve
from ._policy import Interleave, Local, NodesLike, PolicyLike
from ._scope import _BY_VALUE as _SCOPES  # noqa: F401 - the scope cache, read by tests
from ._scope import PolicyScope, default_scope, scope_for
from .errors import NumaAllocationError, describe_errno

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import AllocationKeywords, PlacementKeywords

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


def _scope(
    node: NodesLike | None = None,
    policy: PolicyLike | None = None,
    strict: bool = False,
    huge_pages: HugePagesLike = HugePages.AUTO,
    prefault: PrefaultLike = Prefault.NONE,
) -> PolicyScope:
    """The (cached) scope for a constructor's NUMA keywords; an unknown keyword
    is a TypeError, as for any Python function."""
    chosen = resolve(node, policy)
    if chosen is None:  # the active scope's policy, with these options
        active = active_handler()
        chosen = active.policy if active else Local()
        return PolicyScope(chosen, strict=strict, huge_pages=huge_pages, prefault=prefault)
    if strict is False and huge_pages is HugePages.AUTO and prefault is Prefault.NONE:
        return default_scope(chosen)
    return scope_for(chosen, strict, huge_pages, prefault)


def _allocate(scope: PolicyScope, make: Callable[[], T]) -> T:
    with scope:
        clear_step()  # the arena's nn_map runs in this thread: read its failing step after
        try:
            return make()
        except MemoryError as exc:
            if isinstance(exc, NumaAllocationError):
                raise
            handler = scope.handler
            err = handler.last_errno() or 12
            raise NumaAllocationError(
                f"cannot allocate under {handler.policy}: {exc}; "
                f"{describe_errno(err, failed_step('the allocator (mmap, mbind or populate)'))}",
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


def numa_empty(
    shape: ShapeLike,
    dtype: DTypeLike | None = float,
    order: Order = "C",
    *,
    device: Any = None,
    like: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """np.empty under a NUMA policy."""
    _refuse(like, device)
    return _allocate(_scope(**numa), lambda: np.empty(shape, dtype, order))


def numa_zeros(
    shape: ShapeLike,
    dtype: DTypeLike | None = float,
    order: Order = "C",
    *,
    device: Any = None,
    like: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """np.zeros under a NUMA policy."""
    _refuse(like, device)
    return _allocate(_scope(**numa), lambda: np.zeros(shape, dtype, order))


def numa_ones(
    shape: ShapeLike,
    dtype: DTypeLike | None = None,
    order: Order = "C",
    *,
    device: Any = None,
    like: Any = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """np.ones under a NUMA policy."""
    _refuse(like, device)
    return _allocate(_scope(**numa), lambda: np.ones(shape, dtype, order))


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
    """np.full under a NUMA policy."""
    _refuse(like, device)
    return _allocate(_scope(**numa), lambda: np.full(shape, fill_value, dtype, order))


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
    """np.empty_like under a NUMA policy."""
    _refuse(None, device)
    return _allocate(_scope(**numa), lambda: np.empty_like(prototype, dtype, order, subok, shape))


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
    """np.zeros_like under a NUMA policy."""
    _refuse(None, device)
    return _allocate(_scope(**numa), lambda: np.zeros_like(a, dtype, order, subok, shape))


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
    """np.ones_like under a NUMA policy."""
    _refuse(None, device)
    return _allocate(_scope(**numa), lambda: np.ones_like(a, dtype, order, subok, shape))


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
    """np.full_like under a NUMA policy."""
    _refuse(None, device)
    return _allocate(
        _scope(**numa), lambda: np.full_like(a, fill_value, dtype, order, subok, shape)
    )


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
    """np.array that always copies `object` onto the policy's memory."""
    _refuse(like, None)
    if copy is False:
        raise TypeError(
            "numa_array always copies onto the policy's memory: copy=False cannot be honoured"
        )

    def make() -> np.ndarray:
        out = np.array(object, dtype, copy=True, order=order, subok=subok, ndmin=ndmin)
        # ndmin reshapes the copy into a view: give the caller the owner itself.
        return out if out.flags.owndata else out.copy(order="K")

    return _allocate(_scope(**numa), make)


def interleaved_empty(
    shape: ShapeLike,
    dtype: DTypeLike | None = float,
    order: Order = "C",
    *,
    nodes: NodesLike | None = None,
    **options: Unpack[AllocationKeywords],
) -> np.ndarray:
    """np.empty with pages interleaved over `nodes` (None: every usable node)."""
    scope = _scope(policy=Interleave(nodes), **options)
    return _allocate(scope, lambda: np.empty(shape, dtype, order))


def interleaved_zeros(
    shape: ShapeLike,
    dtype: DTypeLike | None = float,
    order: Order = "C",
    *,
    nodes: NodesLike | None = None,
    **options: Unpack[AllocationKeywords],
) -> np.ndarray:
    """np.zeros with pages interleaved over `nodes`."""
    scope = _scope(policy=Interleave(nodes), **options)
    return _allocate(scope, lambda: np.zeros(shape, dtype, order))


def interleaved_ones(
    shape: ShapeLike,
    dtype: DTypeLike | None = None,
    order: Order = "C",
    *,
    nodes: NodesLike | None = None,
    **options: Unpack[AllocationKeywords],
) -> np.ndarray:
    """np.ones with pages interleaved over `nodes`."""
    scope = _scope(policy=Interleave(nodes), **options)
    return _allocate(scope, lambda: np.ones(shape, dtype, order))


def interleaved_full(
    shape: ShapeLike,
    fill_value: Any,
    dtype: DTypeLike | None = None,
    order: Order = "C",
    *,
    nodes: NodesLike | None = None,
    **options: Unpack[AllocationKeywords],
) -> np.ndarray:
    """np.full with pages interleaved over `nodes`."""
    scope = _scope(policy=Interleave(nodes), **options)
    return _allocate(scope, lambda: np.full(shape, fill_value, dtype, order))
