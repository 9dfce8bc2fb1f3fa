"""Explicit regions: one policy-bound mapping that exports the buffer protocol."""

from __future__ import annotations

import ctypes
import mmap
import operator
from typing import TYPE_CHECKING, Any, SupportsIndex

import numpy as np

from .._kernel.lib import hugetlb_flags, lib
from .._kernel.pages import base_page_size, huge_page_size
from .._policies.docstrings import document
from .._policies.enforcement import Enforcement, huge_page_shortfall, refuse_if_strict
from .._policies.options import AllocationKeywords, AllocationOptions, HugePages, resolve
from .._policies.policy import Local, NodesLike, Policy, PolicyLike, validate
from ..errors import NumaAllocationError, NumaError
from .binding import bind_range
from .placement import Placement, placement

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["NumaRegion"]

THP_SIZE = 2 << 20


def buffer_address(buffer: Any) -> int:
    """Address of a writable buffer (the temporary export is released at once)."""
    view = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(view)
    finally:
        del view


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _size(size: Any) -> int:
    """A region's size as an int: NumPy integers too; never a bool or a float."""
    if isinstance(size, (bool, np.bool_)):
        raise TypeError(f"a region's size must be an integer number of bytes, not {size!r}")
    try:
        nbytes = operator.index(size)
    except TypeError:
        raise TypeError(
            f"a region's size must be an integer number of bytes, not {size!r}"
        ) from None
    if nbytes <= 0:
        raise ValueError(f"a region's size must be positive, not {nbytes}")
    return nbytes


@document
class NumaRegion(mmap.mmap):
    """A policy-bound anonymous mapping: ``NumaRegion(size, policy, *, node,
    strict, huge_pages, prefault)``.

    It is a buffer (``memoryview(region)``, ``np.frombuffer(region)``,
    ``region.as_array(shape, dtype)``), unmapped when the region and every view or
    array over it are gone. ``close()`` and ``with`` release it early and raise
    BufferError while views are exported. ``enforcement`` says how far the
    policy and the huge-page request were met. It keeps its size: ``resize()``
    raises NumaError.

    Parameters
    ----------
    size : int
        Bytes (NumPy integers too), rounded up to the page size.
    policy : Policy or str, optional
        Where the pages go (default: Local, whatever scope is active).
    node : int, str or sequence of int, optional
        Shorthand for ``policy=Bind(node)``; give `node` or `policy`, not both.
    {allocation_keywords}

    Raises
    ------
    TypeError
        `size` is not an integer (a float, a bool, a string).
    ValueError
        `size` is not positive.
    InvalidNodeError, InvalidPolicyError
        The policy names nodes that do not exist, or cannot be expressed.
    PolicyNotEnforcedError
        ``strict=True`` and the request was not met.

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> with nn.NumaRegion(np.int64(1 << 16), node=0) as region:
    ...     grid = region.as_array((64, 128), np.float64)
    ...     grid[:] = 1.0
    ...     total = float(grid.sum())
    ...     del grid
    >>> total
    8192.0
    """

    requested_bytes: int
    policy: Policy
    huge_pages: HugePages
    enforcement: Enforcement
    _address: int
    _page_size: int

    def __new__(
        cls,
        size: SupportsIndex,
        policy: PolicyLike | None = None,
        *,
        node: NodesLike | None = None,
        **numa: Unpack[AllocationKeywords],
    ) -> NumaRegion:
        chosen = resolve(node, policy or None) or Local()
        size = _size(size)
        options = AllocationOptions.from_keywords(chosen, "NumaRegion", AllocationKeywords, **numa)
        topo = validate(chosen)
        huge = options.huge_pages
        if huge is HugePages.AUTO:
            huge = HugePages.TRANSPARENT if size >= lib.NN_AUTO_THP_MIN else HugePages.NONE
        reason = huge_page_shortfall(AllocationOptions(chosen, huge_pages=huge), topo)
        region = None
        if huge in (HugePages.EXPLICIT_2MB, HugePages.EXPLICIT_1GB):
            if not reason:
                region, reason = cls._map_hugetlb(size, huge)
            if region is None:
                refuse_if_strict(options, reason)  # soft: bind_range warns with the rest
                huge = HugePages.TRANSPARENT  # soft: normal pages, THP where possible
        if region is None:
            region = cls._map_normal(size, huge, options)
        page = region._page_size
        region.requested_bytes = size
        region.policy = chosen
        region.huge_pages = huge
        region._address = buffer_address(region)
        try:
            enforcement = bind_range(
                region._address,
                len(region),
                page,
                options,
                extra_reason=reason if reason else "",
                split=(len(region), 1, huge is HugePages.TRANSPARENT),
            )
        except BaseException:
            region.close()
            raise
        region.enforcement = enforcement
        return region

    @classmethod
    def _map_hugetlb(cls, size: int, huge: HugePages) -> tuple[NumaRegion | None, str]:
        """A hugetlb mapping, or None and why not."""
        page = huge_page_size(huge.c_value)
        flags = mmap.MAP_PRIVATE | hugetlb_flags(huge.c_value)
        try:
            region = mmap.mmap.__new__(cls, -1, _round_up(size, page), flags=flags)
        except OSError as exc:
            return None, f"no {huge.value} huge pages could be mapped ({exc.strerror})"
        region._page_size = page
        return region, ""

    @classmethod
    def _map_normal(cls, size: int, huge: HugePages, options: AllocationOptions) -> NumaRegion:
        """A mapping of base pages, advised for THP (or against it) as asked."""
        page = base_page_size()
        # a 2 MiB multiple lets the kernel align the mapping for THP
        length = _round_up(size, THP_SIZE if huge is HugePages.TRANSPARENT else page)
        try:
            region = mmap.mmap.__new__(cls, -1, length, flags=mmap.MAP_PRIVATE)
        except OSError as exc:
            raise NumaAllocationError(
                f"cannot map {size} bytes: {exc}", size=size, policy=options.policy, errno=exc.errno
            ) from None
        if huge is HugePages.TRANSPARENT:
            region.madvise(mmap.MADV_HUGEPAGE)
        elif options.huge_pages is HugePages.NONE:  # none even where THP is "always"
            region.madvise(mmap.MADV_NOHUGEPAGE)
        region._page_size = page
        return region

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # mmap takes no __init__ args
        pass

    @property
    def nbytes(self) -> int:
        """Bytes mapped: requested_bytes rounded up to the page size."""
        return len(self)

    @property
    def address(self) -> int:
        """The start address of the mapping (ValueError once closed)."""
        if self.closed:
            raise ValueError("the region is closed")
        return self._address

    def resize(self, newsize: int) -> None:
        """Refused: a region keeps its size.

        mmap's resize() moves the mapping (mremap): the address, every array
        over the region and the binding of a new tail would no longer be true.

        Parameters
        ----------
        newsize : int
            Ignored.

        Raises
        ------
        NumaError
            Always.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> region = nn.NumaRegion(4096, node=0)
        >>> region.resize(8192)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        numa_numpy.NumaError: a NumaRegion cannot be resized ...
        """
        raise NumaError(
            f"a NumaRegion cannot be resized (to {newsize!r} bytes): mremap would move "
            "the mapping under its address and arrays; create a new region and copy"
        )

    def as_array(
        self, shape: Any, dtype: Any = np.uint8, order: str = "C", offset: int = 0
    ) -> np.ndarray:
        """A zero-copy ndarray over the region; it keeps the region alive and
        close() refuses while it exists.

        Parameters
        ----------
        shape : int or tuple of int
            The array's shape.
        dtype : data-type, default numpy.uint8
        order : {'C', 'F'}, default 'C'
        offset : int, default 0
            Bytes from the region's start.

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        ValueError
            The array does not fit in the region from `offset`.

        Examples
        --------
        >>> import numpy as np
        >>> import numa_numpy as nn
        >>> region = nn.NumaRegion(1 << 20, node=0)
        >>> a = region.as_array((256, 512), np.float64)
        >>> a.fill(2.0)
        >>> region.placement().on(0)
        True
        """
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        count = int(np.prod(shape, dtype=np.int64))
        # frombuffer holds a buffer export (np.ndarray(buffer=...) would not, and
        # close() could then unmap memory under a live array).
        flat = np.frombuffer(self, dtype, count, offset)
        return flat.reshape(shape, order="F" if order == "F" else "C")

    def placement(self) -> Placement:
        """Where the region's pages are: ``placement(region)``.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.NumaRegion(1 << 16, node=0, prefault="touch").placement().pages
        {0: 16}
        """
        return placement(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} bytes at {self._address:#x}"
        return (
            f"<NumaRegion {self.policy} {state} huge_pages={self.huge_pages.value} "
            f"enforcement={self.enforcement}>"
        )

    def _repr_html_(self) -> str:
        return (
            f"<table><tr><th>policy</th><td>{self.policy}</td></tr>"
            f"<tr><th>bytes</th><td>{len(self) if not self.closed else 'closed'}</td></tr>"
            f"<tr><th>huge pages</th><td>{self.huge_pages.value}</td></tr>"
            f"<tr><th>enforcement</th><td>{self.enforcement}</td></tr></table>"
        )
