"""The options of an allocation, in one place: huge pages, prefaulting,
strictness, and which policy ``node=`` / ``policy=`` name.

Every constructor, scope, region, shared array, partitioned constructor and the
dask plugin takes these keywords as one bundle (``**numa:
Unpack[PlacementKeywords]`` and its kin below) and turns them into an
`AllocationOptions` with `AllocationOptions.from_keywords`, which rejects an
unknown keyword as Python would. A new allocation keyword goes here only: a key
of `AllocationKeywords` (its type), a field of `AllocationOptions` (its default)
and an entry of `_COERCE` (how the user's value becomes the field's); if it
reaches C, also its C struct (``cstructs.py``) and, for every docstring at once,
its part in ``docstrings.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypedDict, Union

from .._kernel.lib import lib
from ..errors import InvalidPolicyError
from .docstrings import keyword_defaults
from .policy import Bind, NodesLike, Policy, PolicyLike, as_policy

__all__ = [
    "HugePages",
    "Prefault",
    "HugePagesLike",
    "PrefaultLike",
    "AllocationKeywords",
    "PlacementKeywords",
    "ScopeKeywords",
    "SharedPlacementKeywords",
    "AllocationOptions",
    "check_keywords",
    "resolve",
]


class _Option(enum.Enum):
    """A keyword's choices: a member, its value as a string, or True/False."""

    @classmethod
    def coerce(cls, value: Any) -> Any:
        keyword, when_true, _ = _OPTIONS[cls]
        if isinstance(value, cls):
            return value
        if value is None or value is False:
            return cls["NONE"]
        if value is True:
            return cls[when_true]
        try:
            return cls(str(value).lower())
        except ValueError:
            raise InvalidPolicyError(
                f"{keyword}={value!r}: expected one of {[m.value for m in cls]}"
            ) from None

    @property
    def c_value(self) -> int:
        """The C layer's constant for this choice."""
        return int(getattr(lib, _OPTIONS[type(self)][2] + self.name))


class HugePages(_Option):
    """Page size for large blocks and regions: the ``huge_pages=`` keyword.

    Every keyword that takes it also takes the value as a string
    (``"2mb"``), True (``TRANSPARENT``) or False/None (``NONE``).

    ``AUTO``: like NumPy, transparent huge pages (THP) for blocks of 4 MiB and
    more. ``NONE``: base pages only (``MADV_NOHUGEPAGE``), even where THP is
    ``always``. ``TRANSPARENT``: 2 MiB-aligned and ``MADV_HUGEPAGE``.
    ``EXPLICIT_2MB`` / ``EXPLICIT_1GB``: the hugetlbfs pools
    (``MAP_HUGETLB``), lengths rounded up to the huge page.

    See Also
    --------
    Prefault, numa_empty

    Notes
    -----
    A transparent huge page is one 2 MiB unit on one node: interleaving and
    `placement` see it as 512 base pages on the same node. Explicit huge pages
    need a pool reserved on the nodes (``nr_hugepages``; see `doctor`); with
    none left, soft mode falls back to normal pages and strict mode raises.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.HugePages("2mb"), nn.HugePages.coerce(True)
    (<HugePages.EXPLICIT_2MB: '2mb'>, <HugePages.TRANSPARENT: 'transparent'>)
    >>> a = nn.numa_zeros(1 << 22, node=0, huge_pages=nn.HugePages.NONE)
    """

    AUTO = "auto"  # like NumPy: transparent huge pages for blocks >= 4 MiB
    NONE = "none"  # base pages only (MADV_NOHUGEPAGE), even where THP is "always"
    TRANSPARENT = "transparent"  # 2 MiB-aligned + MADV_HUGEPAGE
    EXPLICIT_2MB = "2mb"  # hugetlbfs pool (MAP_HUGETLB | MAP_HUGE_2MB)
    EXPLICIT_1GB = "1gb"  # hugetlbfs pool (MAP_HUGETLB | MAP_HUGE_1GB)


class Prefault(_Option):
    """Whether pages are faulted in at allocation (after the policy is set):
    the ``prefault=`` keyword.

    ``NONE``: pages land at first touch, by the policy. ``TOUCH`` (True):
    ``MADV_POPULATE_WRITE`` right after ``mbind`` (a write per page on older
    kernels), so a node out of memory raises `NumaAllocationError` now rather
    than a SIGBUS later. ``PARALLEL``: the same from threads pinned to CPUs of
    the policy's nodes.

    See Also
    --------
    HugePages, numa_empty

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.Prefault.coerce("touch"), nn.Prefault.coerce(False)
    (<Prefault.TOUCH: 'touch'>, <Prefault.NONE: 'none'>)
    >>> a = nn.numa_empty(1 << 20, node=0, prefault=nn.Prefault.TOUCH)
    >>> nn.placement(a).not_present
    0
    """

    NONE = "none"
    TOUCH = "touch"  # MADV_POPULATE_WRITE, or a write per page on old kernels
    PARALLEL = "parallel"  # threads pinned to CPUs of the policy's nodes


# keyword, the member True means, the prefix of the C constants
_OPTIONS: dict[type[_Option], tuple[str, str, str]] = {
    HugePages: ("huge_pages", "TRANSPARENT", "NN_HUGE_"),
    Prefault: ("prefault", "TOUCH", "NN_PREFAULT_"),
}

HugePagesLike = Union[HugePages, str, bool, None]
PrefaultLike = Union[Prefault, str, bool, None]


class AllocationKeywords(TypedDict, total=False):
    """The keywords every constructor, scope and region takes after NumPy's."""

    strict: bool
    huge_pages: HugePagesLike
    prefault: PrefaultLike


class PlacementKeywords(AllocationKeywords, total=False):
    """What the constructors add: where, as a node or a policy."""

    node: NodesLike | None
    policy: PolicyLike | None


class ScopeKeywords(AllocationKeywords, total=False):
    """A scope's keywords: the allocation options, and whether the thread's own
    policy follows too."""

    thread: bool


class SharedPlacementKeywords(TypedDict, total=False):
    """A shared array's: `PlacementKeywords` but ``huge_pages`` (a segment in
    /dev/shm is of base pages)."""

    node: NodesLike | None
    policy: PolicyLike | None
    strict: bool
    prefault: PrefaultLike


@dataclass(frozen=True)
class AllocationOptions:
    """Everything that selects a handler (and binds a region or shared array).

    The field defaults are the keywords' defaults."""

    policy: Policy
    strict: bool = False
    huge_pages: HugePages = HugePages.AUTO
    prefault: Prefault = Prefault.NONE

    @classmethod
    def from_keywords(
        cls, policy: PolicyLike, where: str = "", bundle: type = AllocationKeywords, /, **numa: Any
    ) -> AllocationOptions:
        """Options from the keywords as users write them (strings, True/False).

        `numa` may hold any keyword of `bundle` (the TypedDict the caller
        takes: its other keys, such as ``thread``, are the caller's to read);
        any other is a TypeError naming `where` (the function), as Python's.
        """
        check_keywords(where, numa, bundle)
        values = {name: coerce(numa[name]) for name, coerce in _COERCE.items() if name in numa}
        return cls(as_policy(policy), **values)

    def keywords(self) -> dict[str, Any]:
        """The options as keywords again (``PolicyScope(policy, **o.keywords())``)."""
        return {name: getattr(self, name) for name in _COERCE}


# how a keyword's value as users write it becomes the field's, in the order
# they are checked
_COERCE: dict[str, Callable[[Any], Any]] = {
    "strict": bool,
    "huge_pages": HugePages.coerce,
    "prefault": Prefault.coerce,
}
#: each keyword's value when not given (the fields' defaults): what the
#: signatures show, and what a constructor's fast path compares with
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(AllocationOptions)[1:]}
keyword_defaults(node=None, policy=None, **DEFAULTS, thread=False)


_ORDER = ("node", "policy", *_COERCE, "thread")


def _names(bundle: type) -> list[str]:
    """The keys of `bundle`, in the order the docstrings describe them."""
    keys = bundle.__annotations__
    return sorted(keys, key=lambda k: _ORDER.index(k) if k in _ORDER else -1)


def check_keywords(where: str, given: Mapping[str, Any], bundle: type) -> None:
    """A TypeError, in Python's words, for each keyword in `given` that the
    TypedDict `bundle` lacks, naming the ones it has."""
    keys = bundle.__annotations__
    unknown = [name for name in given if name not in keys]
    if not unknown:
        return
    accepted = _names(bundle)
    quoted = ", ".join(repr(name) for name in unknown)
    what = f"an unexpected keyword argument {quoted}"
    if len(unknown) > 1:
        what = f"unexpected keyword arguments {quoted}"
    caller = f"{where}() got" if where else "got"
    raise TypeError(f"{caller} {what} (its NUMA keywords: {', '.join(accepted)})")


def resolve(node: NodesLike | None = None, policy: PolicyLike | None = None) -> Policy | None:
    """The policy that ``node=`` (Bind) or ``policy=`` names; None when neither
    is given. Both at once is a TypeError. The policy is built (and so
    validated) here, before any cache is asked: a float node equals an int as a
    dict key, but is never a node id."""
    if node is not None and policy is not None:
        raise TypeError("pass node= or policy=, not both")
    if node is not None:
        return Bind(node)
    if policy is not None:
        return policy if isinstance(policy, Policy) else as_policy(policy)
    return None
