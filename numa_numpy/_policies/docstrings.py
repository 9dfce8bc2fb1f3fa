"""Docstring parts written once: the NUMA keywords (``node``, ``policy``,
``strict``, ``huge_pages``, ``prefault``, ``thread``), the policy flags and the
errors they raise. A docstring names a part on a line of its own
(``{placement_keywords}``) and `document` fills it in, indented like the
placeholder, so ``numa_zeros?`` in IPython shows the whole text. Docstrings
only: nothing here changes what a function does.
"""

from __future__ import annotations

import re
import textwrap
from typing import TypeVar

__all__ = ["DOC_PARTS", "document", "fill_doc"]

_NODE = """\
node : int, str or sequence of int, optional
    Shorthand for ``policy=Bind(node)``: the pages go only to `node`
    (numactl's syntax, such as ``"0-2,5"``, names several nodes). A node
    that does not exist raises `InvalidNodeError`, whatever `strict` says."""
_POLICY = """\
policy : Policy or str, optional
    Where the pages go: a `Policy` (`Bind`, `Interleave`, `Preferred`, ...)
    or its string form (``"interleave:0-3"``, ``"preferred:1"``,
    ``"local"``). Give `node` or `policy`, not both. With neither, the
    policy of the active numa_numpy scope is used, else `Local`."""
_ALLOCATION = """\
strict : bool, default False
    What happens when the kernel does not honour the request (it refuses
    the policy, a named node has no memory or is outside the cpuset, no
    huge pages are reserved). False (soft): one `NumaWarning` naming your
    line, the memory is unbound or in normal pages, and
    ``placement(a).enforcement`` says so. True: `PolicyNotEnforcedError`
    (or `NumaAllocationError` for a later block). A node that does not
    exist raises in both modes.
huge_pages : {"auto", "none", "transparent", "2mb", "1gb"}, default "auto"
    The page size. ``"auto"`` does what NumPy does: transparent huge pages
    (THP) for blocks of 4 MiB and more. ``"none"``: base pages only, even
    where THP is ``always``. ``"transparent"`` (or True): 2 MiB-aligned and
    ``MADV_HUGEPAGE``. ``"2mb"`` / ``"1gb"``: the hugetlbfs pools, lengths
    rounded up to the huge page. A `HugePages` member works too.
prefault : {"none", "touch", "parallel"}, default "none"
    When the pages are faulted in. ``"none"``: at first touch, placed by
    the policy. ``"touch"`` (or True): right after ``mbind``
    (``MADV_POPULATE_WRITE``), so a node out of memory raises
    `NumaAllocationError` now instead of a SIGBUS later. ``"parallel"``:
    the same from threads pinned to CPUs of the policy's nodes. A
    `Prefault` member works too."""
_THREAD = """\
thread : bool, default False
    Also set the calling OS thread's own policy (``set_mempolicy``) while
    the scope is entered, so that allocations outside NumPy (Python
    objects, other libraries) follow it too."""
_POLICY_FLAGS = """\
static_nodes : bool, default False
    ``MPOL_F_STATIC_NODES``: the node ids are physical and are not remapped
    when the process's cpuset changes.
relative_nodes : bool, default False
    ``MPOL_F_RELATIVE_NODES``: the ids are positions in the cpuset's allowed
    nodes, not node ids.
numa_balancing : bool, default False
    ``MPOL_F_NUMA_BALANCING`` (Bind and PreferredMany only, Linux 5.12): let
    automatic NUMA balancing migrate pages among the named nodes.
home_node : int, optional
    ``set_mempolicy_home_node`` (Bind and PreferredMany only, Linux 5.17):
    the node allocations start from."""
_POLICY_RAISES = """\
InvalidNodeError
    A node id that is negative, not an integer or does not parse (whether
    the node exists is checked at allocation, in every mode).
InvalidPolicyError
    Flags this policy does not take, or contradictory flags.
NumaUnavailableError
    At allocation: the running kernel lacks this mode or flag."""
_RAISES = """\
InvalidNodeError
    A node that does not exist, is negative or is not an integer (the
    message lists the nodes that exist).
InvalidPolicyError
    A malformed policy string or option value, or mode flags the policy
    does not take.
NumaUnavailableError
    The running kernel lacks the policy's mode (the message names the
    version needed).
PolicyNotEnforcedError
    ``strict=True`` and the kernel does not honour the policy or huge pages.
NumaAllocationError
    The memory cannot be had on the policy's nodes (a `MemoryError`; with
    soft enforcement only when there is no room at all)."""

DOC_PARTS: dict[str, str] = {
    "placement_keywords": "\n".join([_NODE, _POLICY, _ALLOCATION]),
    "allocation_keywords": _ALLOCATION,
    "scope_keywords": "\n".join([_ALLOCATION, _THREAD]),
    "allocation_raises": _RAISES,
    "policy_flags": _POLICY_FLAGS,
    "policy_raises": _POLICY_RAISES,
}

_Documented = TypeVar("_Documented")
_PLACEHOLDER = re.compile(r"^([ \t]*)\{(\w+)\}[ \t]*$", re.M)


def fill_doc(doc: str) -> str:
    """`doc` with each placeholder line (``{placement_keywords}``) replaced by
    its part of `DOC_PARTS`, indented like the placeholder."""

    def part(match: re.Match[str]) -> str:
        indent, name = match.groups()
        return textwrap.indent(DOC_PARTS[name], indent)

    return _PLACEHOLDER.sub(part, doc)


def document(obj: _Documented) -> _Documented:
    """Fill the shared parts into `obj`'s docstring (a decorator; docstrings
    only, behaviour unchanged; under ``python -OO`` there is nothing to fill)."""
    if obj.__doc__:
        obj.__doc__ = fill_doc(obj.__doc__)
    return obj
