"""Docstring parts written once: the NUMA keywords (``node``, ``policy``,
``strict``, ``huge_pages``, ``prefault``, ``thread``), the policy flags and the
errors they raise. A docstring names a part on a line of its own
(``{placement_keywords}``) and `document` fills it in, indented like the
placeholder, so ``numa_zeros?`` in IPython shows the whole text.

A function that takes the keywords as a bundle (``**numa:
Unpack[PlacementKeywords]``) shows them one by one all the same: `document`
gives it a ``__signature__`` with each keyword of the TypedDict, its type and
its default (`keyword_defaults`, which ``options.py`` calls once), for
``help()``, ``inspect.signature`` and Sphinx. Docstrings and signatures only:
nothing here changes what a function does.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import typing
from typing import Any, TypeVar

__all__ = ["DOC_PARTS", "document", "fill_doc", "keyword_defaults", "show_keywords"]

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


_DEFAULTS: dict[str, Any] = {}
_UNPACK = re.compile(r"^(?:typing(?:_extensions)?\.)?Unpack\[(\w+)\]$")


def keyword_defaults(**defaults: Any) -> None:
    """Register what each bundled keyword is when not given, in the order the
    signatures show them (a keyword not registered defaults to None and comes
    first)."""
    _DEFAULTS.update(defaults)


def _bundle(func: Any, annotation: Any) -> Any:
    """The TypedDict a ``**kwargs: Unpack[...]`` annotation names, or None."""
    if isinstance(annotation, str):
        match = _UNPACK.match(annotation.strip("'\""))
        if match is None:
            return None
        found = getattr(func, "__globals__", {}).get(match.group(1))
        if found is None:
            raise TypeError(f"{func.__qualname__}: {annotation} names no TypedDict of its module")
        return found
    args = typing.get_args(annotation)
    return args[0] if args and "Unpack" in repr(typing.get_origin(annotation)) else None


def _annotation(value: Any) -> Any:
    return value.__forward_arg__ if isinstance(value, typing.ForwardRef) else value


def show_keywords(func: Any) -> None:
    """Give `func` a ``__signature__`` in which its ``**bundle`` of NUMA
    keywords is spelled out, keyword by keyword; nothing when it has none."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    params = list(signature.parameters.values())
    if not params or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        return
    bundle = _bundle(func, params[-1].annotation)
    if bundle is None:
        return
    order = list(_DEFAULTS)
    names = sorted(bundle.__annotations__, key=lambda k: order.index(k) if k in order else -1)
    keywords = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=_DEFAULTS.get(name),
            annotation=_annotation(bundle.__annotations__[name]),
        )
        for name in names
    ]
    func.__signature__ = signature.replace(parameters=params[:-1] + keywords)


def document(obj: _Documented) -> _Documented:
    """Fill the shared parts into `obj`'s docstring (a decorator; docstrings
    only, behaviour unchanged; under ``python -OO`` there is nothing to fill),
    and spell out its bundled keywords in its signature (a class's: its
    ``__init__`` or ``__new__``)."""
    if obj.__doc__:
        obj.__doc__ = fill_doc(obj.__doc__)
    if isinstance(obj, type):
        for method in ("__new__", "__init__"):
            if method in vars(obj):
                show_keywords(getattr(obj, method))
    else:
        show_keywords(obj)
    return obj
