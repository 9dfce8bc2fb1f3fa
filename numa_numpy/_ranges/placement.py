"""Where an array's pages are, asked of the kernel page by page (move_pages),
and the policy the kernel holds for the range (get_mempolicy MPOL_F_ADDR)."""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._alloc.bridge import HANDLER_NAME, get_handler_name
from .._alloc.handler import handler_of_arena
from .._kernel.arena import block_owner
from .._kernel.hugepages import huge_backing
from .._kernel.lib import error, lib
from .._kernel.pages import base_page_size, mapping_pages, mempolicy, query_pages
from .._policies.enforcement import Enforcement, EnforcementLevel
from .._policies.policy import Policy, policy_from_kernel
from ..errors import NumaError

__all__ = ["Placement", "placement", "span_of", "owner_of", "range_policy", "pages_of"]


@dataclass(frozen=True, repr=False)
class Placement:
    """Where the pages of an array's span are.

    ``pages``: node -> pages resident there. ``not_present``: pages not faulted
    in yet (they land by the policy at first touch). ``page_size``: the unit of
    the query (the base page; a huge page counts as page_size/base pages).
    ``policy``: what the kernel holds for the range; ``requested`` and
    ``enforcement``: what numa_numpy was asked and achieved (None when the
    memory is not numa_numpy's).

    Made by `placement`; ``print(p)`` gives one line, and Jupyter renders a
    table.

    Parameters
    ----------
    address : int
        Start of the span (the first byte the array addresses).
    nbytes : int
        Length of the span in bytes.
    page_size : int
        The unit of the counts: the base page (a transparent huge page counts
        as ``2 MiB / page_size`` pages).
    node_of_page : numpy.ndarray
        The kernel's answer per page: a node id, or a negative errno for a
        page with no memory behind it yet.
    policy : Policy or None
        What the kernel holds for the range (``get_mempolicy``).
    requested : Policy, optional
        The policy numa_numpy was asked for (None: not numa_numpy's memory).
    enforcement : Enforcement, optional
        What numa_numpy achieved: bound, or why not.
    source : {"move_pages", "numa_maps"}, default "move_pages"
        ``"numa_maps"`` where ``move_pages`` is refused (a container's
        seccomp profile): the counts are then those of the whole mappings the
        span lies in.
    huge : dict of int to dict of int to int, optional
        Bytes of the span backed by huge pages: node -> page size in bytes ->
        bytes (transparent and hugetlb pages alike; a huge page's base pages
        are all on its node).
    hugetlb : dict of int to dict of int to int, optional
        The part of `huge` from the hugetlb pools (``huge_pages="2mb"/"1gb"``).
    huge_source : {"kpageflags", "smaps", "smaps, pro-rated"} or None
        Where the huge figures come from: page by page from
        ``/proc/self/pagemap`` and ``/proc/kpageflags`` (root), per mapping
        from ``/proc/self/smaps`` (exact, or shared out by bytes where a
        mapping reaches past the span or holds pages of several nodes), or
        None when they could not be read.
    file : str, optional
        The file whose page cache holds the pages (a memmap; ``backing`` is
        then ``"file"``), None for anonymous memory. ``requested`` is set
        when a numa_numpy `memmap` placed them, None for NumPy's memmap.

    See Also
    --------
    placement : how to get one.
    numa_numpy.testing.assert_placed : assert it in a test.

    Notes
    -----
    The kernel answers for pages mapped in *this* process: pages of a shared
    array that only another process has touched count as not present here.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> where = nn.placement(nn.numa_ones(1 << 16, node=0))
    >>> where.pages, where.not_present
    ({0: 128}, 0)
    >>> where.bytes_per_node[0] == 1 << 19, where.on(0), where.fraction(0)
    (True, True, 1.0)
    >>> where.requested, where.enforcement is not None   # numa_numpy's memory
    (Bind(0), True)
    """

    address: int
    nbytes: int
    page_size: int
    node_of_page: np.ndarray = field(repr=False, compare=False)
    policy: Policy | None
    requested: Policy | None = None
    enforcement: Enforcement | None = None
    # "move_pages": page by page over the span; "numa_maps": move_pages was refused
    # (a container's seccomp profile), so the counts are those of the whole
    # mapping(s) the span lies in, from /proc/self/numa_maps
    source: str = "move_pages"
    huge: dict[int, dict[int, int]] = field(default_factory=dict, compare=False)
    hugetlb: dict[int, dict[int, int]] = field(default_factory=dict, compare=False)
    huge_source: str | None = None

    @property
    def huge_bytes(self) -> int:
        """Bytes of the span backed by huge pages of any kind."""
        return sum(sum(sizes.values()) for sizes in self.huge.values())

    @property
    def thp_bytes(self) -> int:
        """Bytes of the span backed by transparent huge pages."""
        return self.huge_bytes - sum(sum(sizes.values()) for sizes in self.hugetlb.values())

    def _huge_clause(self) -> str:
        """ "huge: N0 2 MiB x 12 (THP)", or "" when no page is huge."""
        parts = []
        for node, sizes in sorted(self.huge.items()):
            for size, nbytes in sorted(sizes.items()):
                tlb = self.hugetlb.get(node, {}).get(size, 0)
                for kind, n in (("THP", nbytes - tlb), ("hugetlb", tlb)):
                    if n > 0 and n % size == 0:
                        parts.append(f"N{node} {_size_words(size)} x {n // size} ({kind})")
                    elif n > 0:
                        parts.append(f"N{node} {n} B of {_size_words(size)} pages ({kind})")
        if not parts:
            return ""
        where = "" if self.huge_source == "kpageflags" else f", from {self.huge_source}"
        return f"huge: {', '.join(parts)}{where}"

    # the file whose page cache holds the pages (a memmap), or None: anonymous memory
    file: str | None = None

    @property
    def backing(self) -> str:
        """``"file"``: the pages are the page cache's (a memmap); else ``"anonymous"``."""
        return "anonymous" if self.file is None else "file"

    @property
    def pages(self) -> dict[int, int]:
        """Pages resident per node: ``{node: pages}`` (nodes with none left out)."""
        nodes, counts = np.unique(self.node_of_page[self.node_of_page >= 0], return_counts=True)
        return {int(n): int(c) for n, c in zip(nodes, counts, strict=True)}

    @property
    def bytes_per_node(self) -> dict[int, int]:
        """Bytes resident per node: ``{node: bytes}``."""
        return {n: c * self.page_size for n, c in self.pages.items()}

    @property
    def total_pages(self) -> int:
        """Pages in the span, present or not."""
        return int(self.node_of_page.size)

    @property
    def present_pages(self) -> int:
        """Pages with memory behind them, on some node."""
        return int((self.node_of_page >= 0).sum())

    @property
    def not_present(self) -> int:
        """Pages with no memory behind them yet: never touched (-ENOENT) or only
        read, which maps the kernel's shared zero page (-EFAULT)."""
        status = self.node_of_page
        return int(((status == -_errno.ENOENT) | (status == -_errno.EFAULT)).sum())

    @property
    def nodes(self) -> frozenset[int]:
        """Nodes holding at least one page."""
        return frozenset(self.pages)

    def fraction(self, node: int) -> float:
        """Share of the present pages that are on `node`.

        Parameters
        ----------
        node : int
            A node id.

        Returns
        -------
        float
            From 0.0 to 1.0; 0.0 when no page is present.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.placement(nn.numa_ones(1000, node=0)).fraction(0)
        1.0
        """
        present = self.present_pages
        return self.pages.get(node, 0) / present if present else 0.0

    def on(self, nodes: Any) -> bool:
        """True when every present page is on one of `nodes` (and one is present).

        Parameters
        ----------
        nodes : int or iterable of int
            The node or nodes allowed.

        Returns
        -------
        bool

        Examples
        --------
        >>> import numa_numpy as nn
        >>> where = nn.placement(nn.interleaved_ones(1 << 16))
        >>> where.on(nn.topology().usable_nodes)
        True
        """
        wanted = {nodes} if isinstance(nodes, int) else set(nodes)
        return self.present_pages > 0 and self.nodes <= wanted

    def __str__(self) -> str:
        spread = ", ".join(f"N{n}={c}" for n, c in sorted(self.pages.items())) or "none"
        text = (
            f"{self.total_pages} pages of {self.page_size} B: {spread}; "
            f"not present {self.not_present}; policy {self.policy}"
        )
        if self.source != "move_pages":
            text += f"; from {self.source} (whole mappings: move_pages is refused here)"
        if self.requested is not None:
            text += f"; requested {self.requested}, {self.enforcement}"
        if self._huge_clause():
            text += f"; {self._huge_clause()}"
        if self.file is not None:
            who = "numa_numpy.memmap" if self.requested is not None else "not numa_numpy's"
            text += f"; file-backed: page cache of {self.file} ({who})"
        return text

    def __repr__(self) -> str:
        return f"<Placement {self}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{n}</td><td>{c}</td><td>{c * self.page_size >> 10}</td></tr>"
            for n, c in sorted(self.pages.items())
        )
        if self.enforcement is not None:
            rows += f"<tr><td>enforcement</td><td colspan=2>{self.enforcement}</td></tr>"
        if self._huge_clause():
            rows += f"<tr><td>huge pages</td><td colspan=2>{self._huge_clause()[6:]}</td></tr>"
        return (
            f"<table><caption>policy {self.policy}"
            f"{'' if self.requested is None else f' (requested {self.requested})'}"
            f"</caption><thead><tr><th>node</th><th>pages</th><th>KiB</th></tr></thead>"
            f"<tbody>{rows}<tr><td>not present</td><td>{self.not_present}</td><td></td></tr>"
            "</tbody></table>"
        )


def _size_words(size: int) -> str:
    """2097152 -> "2 MiB", 1073741824 -> "1 GiB", 65536 -> "64 KiB"."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def span_of(a: np.ndarray) -> tuple[int, int]:
    """(lowest address, bytes) touched by `a`'s elements: its span."""
    if a.size == 0:
        return a.__array_interface__["data"][0], 0
    start = a.__array_interface__["data"][0]
    low = high = 0
    for extent, stride in zip(a.shape, a.strides, strict=True):
        reach = (extent - 1) * stride
        low += min(reach, 0)
        high += max(reach, 0)
    return start + low, high - low + a.itemsize


def owner_of(a: np.ndarray) -> np.ndarray | None:
    """The array that owns `a`'s memory (following .base, and the object a
    memoryview exports), if an ndarray does."""
    current: Any = a
    while isinstance(current, (np.ndarray, memoryview)):
        if isinstance(current, memoryview):
            current = current.obj
        elif current.flags.owndata:
            return current
        else:
            current = current.base
    return None


def range_policy(address: int | None) -> Policy:
    """The policy the kernel holds for the page at `address`, or for the calling
    thread when `address` is None (get_mempolicy)."""
    return policy_from_kernel(*mempolicy(address))


def _ours(a: np.ndarray) -> tuple[Policy | None, Enforcement | None]:
    owner = owner_of(a)
    if owner is None or get_handler_name(owner) != HANDLER_NAME:
        return None, None
    arena, status = block_owner(owner.ctypes.data)
    handler = handler_of_arena(arena) if arena else None
    if handler is None:
        return None, None
    enforcement = handler.enforcement
    if status & lib.NN_MAP_MIGRATED:  # rebound whole by migrate(): the kernel knows
        target = range_policy(owner.ctypes.data)
        return target, Enforcement(enforcement.level, f"migrated from {handler.policy}")
    if status & lib.NN_MAP_POLICY_FALLBACK and enforcement.level is not EnforcementLevel.NONE:
        err = handler.last_errno()
        enforcement = Enforcement(
            EnforcementLevel.NONE,
            f"the kernel refused this block's policy: {error(err, step='mbind') if err else '?'}",
        )
    return handler.policy, enforcement


pages_of = query_pages  # (first page, node or -errno per page) of a range


def _buffer_array(a: Any) -> np.ndarray:
    """An ndarray over any buffer with its own shape, strides and item size (a
    NumPy scalar, a strided memoryview); bytes where NumPy cannot read the format."""
    try:
        view = memoryview(a)
    except TypeError:
        raise TypeError(
            "placement() takes an array or an object exporting the buffer protocol, "
            f"not {type(a).__name__}"
        ) from None
    try:
        return np.asarray(view)
    except (ValueError, TypeError, NotImplementedError):
        pass
    if view.c_contiguous:  # a format NumPy does not know: only the span matters
        return np.asarray(view.cast("B"))
    raise TypeError(f"placement() cannot read a non-contiguous buffer of format {view.format!r}")


def _from_numa_maps(
    address: int, nbytes: int, requested: Policy | None, enforcement: Enforcement | None
) -> Placement:
    """move_pages refused: the node counts of the mappings the span lies in, from
    /proc/self/numa_maps (no system call); get_mempolicy may be refused too."""
    page = base_page_size()
    counts: dict[int, int] = {}
    for mapping in mapping_pages(address, nbytes):
        for node, n in mapping.pages.items():
            counts[node] = counts.get(node, 0) + n * (mapping.page_size // page)
    status = np.concatenate(
        [np.full(c, n, dtype=np.intc) for n, c in sorted(counts.items())]
        or [np.empty(0, dtype=np.intc)]
    )
    try:
        policy = range_policy(address) if nbytes else None
    except NumaError:
        policy = None
    return Placement(address, nbytes, page, status, policy, requested, enforcement, "numa_maps")


def _file_of(a: np.ndarray) -> tuple[str, Policy | None, Enforcement | None] | None:
    """(file, policy, enforcement) of a memmap `a` is or views, the policy
    and enforcement None unless numa_numpy's memmap placed it; None when no
    memmap backs `a`."""
    current: Any = a
    while isinstance(current, np.ndarray):
        if isinstance(current, np.memmap) and current.filename is not None:
            policy = getattr(current, "policy", None)
            placed = isinstance(policy, Policy)
            return (
                str(current.filename),
                policy if placed else None,
                getattr(current, "enforcement", None) if placed else None,
            )
        current = current.base
    return None


def placement(a: Any) -> Placement:
    """Ask the kernel where every page of `a`'s span is.

    Parameters
    ----------
    a : ndarray or buffer
        Any array (views and non-contiguous ones: their span), or any object
        exporting the buffer protocol (a NumPy scalar, a strided memoryview).

    Returns
    -------
    Placement
        Pages per node, pages not present yet, the kernel's policy for the
        range, and what numa_numpy was asked and achieved.

    Raises
    ------
    TypeError
        `a` is neither an array nor a buffer.
    NumaError
        The kernel refused the query for a reason other than a container's
        seccomp profile (then the counts come from ``/proc/self/numa_maps``).

    See Also
    --------
    Placement : the answer.
    migrate : move the pages to other nodes.

    Notes
    -----
    The query asks about every base page of the span (one ``move_pages``
    call), so its cost grows with the array's size.

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> a = nn.numa_ones(1 << 16, node=0)
    >>> nn.placement(a).on(0)
    True
    >>> nn.placement(memoryview(a)[::2]).nbytes == a.nbytes - 8
    True
    """
    arr = a if isinstance(a, np.ndarray) else _buffer_array(a)
    address, nbytes = span_of(arr)
    requested, enforcement = _ours(arr)
    mapped = _file_of(arr)  # a memmap: the page cache's pages, placed by numa_numpy or not
    file = None if mapped is None else mapped[0]
    if mapped is not None:
        requested, enforcement = mapped[1:]
    try:
        first, status = query_pages(address, nbytes)
    except NumaError as exc:
        if getattr(exc, "errno", None) not in (_errno.EPERM, _errno.ENOSYS):
            raise
        return replace(_from_numa_maps(address, nbytes, requested, enforcement), file=file)
    policy = range_policy(first) if nbytes else None
    page = base_page_size()
    backing = huge_backing(first, status, page)
    return Placement(
        address,
        nbytes,
        page,
        status,
        policy,
        requested,
        enforcement,
        huge=backing.huge,
        hugetlb=backing.hugetlb,
        huge_source=backing.source,
        file=file,
    )
