"""Placement assertions for test suites: where did the kernel put this array?

``assert_placed(a, where)`` and ``assert_interleaved(a)`` ask the kernel where
every page of an array is and fail with the per-node page table. The pytest
plugin (``numa_numpy.testing.plugin``, registered through the ``pytest11`` entry
point, so installed with numa_numpy) adds the ``numa_topology`` fixture and the
``@pytest.mark.numa(min_nodes=2)`` marker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._kernel.pages import allocation_unit
from .._kernel.topology import current_node, format_list, topology
from .._policies.policy import Interleave, Local, Policy, Preferred, as_policy
from .._ranges.placement import Placement, placement

__all__ = ["assert_placed", "assert_interleaved"]


def _size(nbytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f} {unit}"
    return f"{nbytes} B"


def _table(where: Placement, expected: Iterable[int]) -> str:
    """The per-node page table of a failure message."""
    wanted = set(expected)
    pages = where.pages
    present = where.present_pages
    lines = [f"  {'node':>4} {'pages':>10} {'bytes':>12} {'share':>7}"]
    for node in sorted(set(pages) | wanted):
        count = pages.get(node, 0)
        share = f"{100 * count / present:.1f}%" if present else "-"
        mark = "" if node in wanted else "  <- not expected"
        lines.append(
            f"  {node:>4} {count:>10} {_size(count * where.page_size):>12} {share:>7}{mark}"
        )
    lines.append(
        f"  not present: {where.not_present} page(s); page size {where.page_size} B; "
        f"kernel policy {where.policy}"
    )
    return "\n".join(lines)


def _nodes_of(where: Any) -> tuple[tuple[int, ...], Policy | None]:
    """(expected nodes, the policy when `where` is one)."""
    if isinstance(where, bool):
        raise TypeError("where must be a node, nodes or a policy, not a bool")
    if isinstance(where, int):
        return (int(where),), None
    if isinstance(where, (str, Policy)):
        policy = as_policy(where)
        if isinstance(policy, Local):
            return (current_node(),), policy
        if isinstance(policy, Preferred):
            return tuple(policy.nodes or (current_node(),)), policy
        nodes = policy.resolved_nodes(topology())
        if not nodes:
            raise ValueError(f"{policy} names no node: nothing to assert placement against")
        return tuple(nodes), policy
    try:
        nodes = tuple(int(n) for n in where)
    except TypeError:
        raise TypeError(
            f"where must be a node (int), nodes (iterable of int) or a policy, "
            f"not {type(where).__name__}"
        ) from None
    if not nodes:
        raise ValueError("where names no node")
    return nodes, None


def assert_placed(a: Any, where: Any, *, tolerance: float = 0.0) -> None:
    """Assert that the pages of `a` are on the node(s) `where` names.

    Parameters
    ----------
    a : array_like
        An ndarray (or any buffer); its span is asked page by page. Only pages
        that are present count: write the array first.
    where : int, iterable of int, str or Policy
        A node, a set of nodes, or a policy ("bind:1", ``Interleave([0, 1])``):
        every present page must be on its nodes; an interleave must also be
        balanced (see `assert_interleaved`).
    tolerance : float, default 0.0
        The share of present pages (0 to 1) that may be elsewhere.

    Raises
    ------
    AssertionError
        With the per-node page table, when more than `tolerance` of the present
        pages are on other nodes, or no page is present.
    TypeError, ValueError
        When `where` or `tolerance` is not one of the forms above.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> from numa_numpy.testing import assert_placed
    >>> node = nn.topology().usable_nodes[0]
    >>> a = nn.numa_ones(1 << 16, node=node)
    >>> assert_placed(a, node)
    >>> assert_placed(a, f"bind:{node}")
    """
    if not 0.0 <= float(tolerance) <= 1.0:
        raise ValueError(f"tolerance is a share of the pages, 0 to 1; not {tolerance!r}")
    nodes, policy = _nodes_of(where)
    where_now = placement(a)
    present = where_now.present_pages
    described = f"{policy}" if policy is not None else f"node(s) {format_list(nodes)}"
    if present == 0:
        raise AssertionError(
            f"assert_placed({described}): no page of the array is present (never written, "
            f"or only read), so the kernel has placed nothing yet\n{_table(where_now, nodes)}"
        )
    outside = sum(c for n, c in where_now.pages.items() if n not in nodes)
    if outside > tolerance * present:
        raise AssertionError(
            f"assert_placed({described}): {outside} of {present} present pages "
            f"({100 * outside / present:.1f}%) are outside node(s) {format_list(nodes)} "
            f"(tolerance {100 * tolerance:.1f}%)\n{_table(where_now, nodes)}"
        )
    if isinstance(policy, Interleave) and len(nodes) > 1:
        assert_interleaved(a, nodes)


def assert_interleaved(a: Any, nodes: Iterable[int] | None = None) -> None:
    """Assert that the pages of `a` are spread evenly over `nodes`.

    Even means: every present page on one of `nodes`, and the page counts of
    any two nodes differ by at most one allocation unit, the size the kernel
    actually placed the range in (the base page; 2 MiB where transparent huge
    pages back it; the huge page of a hugetlb mapping). The message states
    that unit.

    Parameters
    ----------
    a : array_like
        The array (write it first: only present pages count).
    nodes : iterable of int, optional
        The nodes it should be spread over. Default: the nodes of the interleave
        policy the kernel holds for the array's memory, else every node with
        memory that this process may use.

    Raises
    ------
    AssertionError
        With the per-node page table, when a page is elsewhere, a node holds
        none (while the array spans at least one unit per node), or the counts
        differ by more than one unit.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> from numa_numpy.testing import assert_interleaved
    >>> a = nn.interleaved_ones(1 << 20, huge_pages="none")
    >>> assert_interleaved(a)
    """
    where = placement(a)
    if nodes is None:
        policy = where.policy
        if isinstance(policy, Interleave) and policy.nodes:
            wanted: tuple[int, ...] = tuple(policy.nodes)
        else:
            wanted = topology().usable_nodes
    else:
        wanted = tuple(sorted({int(n) for n in nodes}))
    unit = max(allocation_unit(where.address, where.nbytes), where.page_size)
    unit_pages = unit // where.page_size
    kind = (
        "base page"
        if unit == where.page_size
        else f"{_size(unit)} = {unit_pages} pages of {where.page_size} B"
    )
    pages = {n: where.pages.get(n, 0) for n in wanted}
    present = where.present_pages
    head = f"assert_interleaved(nodes {format_list(wanted)}, allocation unit {kind})"
    problem = ""
    outside = present - sum(pages.values())
    units = present / unit_pages
    if present == 0:
        problem = "no page of the array is present (write it first)"
    elif outside:
        problem = f"{outside} present page(s) are outside nodes {format_list(wanted)}"
    elif units >= len(wanted) and min(pages.values()) == 0:
        empty = [n for n, c in pages.items() if c == 0]
        problem = f"node(s) {format_list(empty)} hold no page"
    elif max(pages.values()) - min(pages.values()) > unit_pages:
        problem = (
            f"page counts differ by {max(pages.values()) - min(pages.values())}, more than "
            f"one allocation unit ({unit_pages} page(s))"
        )
    if problem:
        raise AssertionError(f"{head}: {problem}\n{_table(where, wanted)}")
