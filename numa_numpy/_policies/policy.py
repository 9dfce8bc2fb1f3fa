"""Memory policies as small immutable values (the options of an allocation are
in _options).

A policy says where pages go; it is turned into the kernel's (mode, nodemask,
maxnode) only when memory is allocated, against the topology of that moment.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Union

import numpy as np

from .._kernel.lib import lib
from .._kernel.sysfs import MAX_NODE_ID, parse_list
from .._kernel.topology import Topology, format_list, mask_bits, topology
from ..errors import InvalidNodeError, InvalidPolicyError, NumaUnavailableError
from .docstrings import document

__all__ = [
    "Policy",
    "Default",
    "Local",
    "Bind",
    "Preferred",
    "PreferredMany",
    "Interleave",
    "WeightedInterleave",
    "Partitioned",
    "NodesLike",
    "PolicyLike",
    "as_policy",
    "parse_nodes",
]

NodesLike = Union[int, str, Iterable[int]]


def parse_nodes(nodes: Any) -> tuple[int, ...]:
    """Node ids from an int, an iterable of ints or numactl's syntax ("0-2,5").

    Raises InvalidNodeError for negative ids, bools, floats, empty sets and text
    that does not parse. Whether the nodes exist is checked at allocation.

    Parameters
    ----------
    nodes : int, str or iterable of int
        ``3``, ``[0, 2]``, ``range(4)`` or ``"0-2,5"``.

    Returns
    -------
    tuple of int
        The ids, sorted, without repeats.

    Raises
    ------
    InvalidNodeError
        As above.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.parse_nodes("0-2,5")
    (0, 1, 2, 5)
    >>> nn.parse_nodes(3)
    (3,)
    """
    if isinstance(nodes, bool):
        raise InvalidNodeError(f"a node id must be an int, not {nodes!r}", nodes=(nodes,))
    if isinstance(nodes, str):
        try:  # bounded: "0-99999999999" is no node list, not a set to build
            ids = parse_list(nodes, high=MAX_NODE_ID)
        except ValueError:
            raise InvalidNodeError(
                f"cannot parse node list {nodes!r}: expected ids and ranges like '0-2,5' "
                f"(ids up to {MAX_NODE_ID}, the kernel's limit)",
                nodes=(nodes,),
            ) from None
    elif isinstance(nodes, Iterable):
        ids = tuple(sorted({_node_id(n) for n in nodes}))
    else:
        ids = (_node_id(nodes),)
    if not ids:
        raise InvalidNodeError("empty node set: name at least one node", nodes=())
    return ids


def _node_id(value: Any) -> int:
    # NumPy 1.x's bool_ still has a (deprecated) __index__: refuse it by type
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise InvalidNodeError(f"a node id must be an int, not {value!r}", nodes=(value,))
    node = operator.index(value)
    if node < 0:
        available = topology().node_ids
        raise InvalidNodeError(
            f"node {node} is negative; nodes on this machine: {format_list(available)}",
            nodes=(node,),
            available=available,
        )
    return node


_INTERNED: dict[tuple[type, int | None], Any] = {}


class _Interned(type):
    """Policies are immutable values: `Bind(1)` and `Interleave()` (no flags)
    return one shared object, so building them in a loop costs a dict lookup
    and a scope can be found by the policy's identity."""

    def __call__(cls, nodes: Any = None, /, **flags: Any) -> Any:
        if not flags and (nodes is None or type(nodes) is int):  # not bool, not float
            try:
                return _INTERNED[cls, nodes]
            except KeyError:
                policy = super().__call__(nodes)  # validates: a bad one raises, uncached
                if len(_INTERNED) < 4096:
                    _INTERNED[cls, nodes] = policy
                return policy
        if nodes is None:  # Bind(nodes=1) arrives as a keyword
            return super().__call__(**flags)
        return super().__call__(nodes, **flags)


@dataclass(frozen=True, repr=False, init=False)
@document
class Policy(metaclass=_Interned):
    """Base of the policy values. Subclasses fix the kernel mode.

    Policies are small immutable values: they compare and hash by value, and
    the same call gives the same object (``Bind(1) is Bind(1)``), so scopes
    and handlers are cached by policy.
    ``str(p)`` is the string form (``"bind:1"``) accepted wherever a policy is;
    ``repr(p)`` is the constructor call.

    Parameters
    ----------
    nodes : int, str or sequence of int, optional
        The node ids: ``1``, ``[0, 2]`` or numactl's syntax ``"0-2,5"``.
    {policy_flags}

    Raises
    ------
    {policy_raises}

    See Also
    --------
    as_policy : a policy from its string form.
    Bind, Preferred, PreferredMany, Interleave, WeightedInterleave, Local, Default

    Examples
    --------
    >>> import numa_numpy as nn
    >>> p = nn.Bind(0)
    >>> p, str(p), p is nn.Bind(0), p == nn.Bind("0")
    (Bind(0), 'bind:0', True, True)
    >>> isinstance(p, nn.Policy)
    True
    """

    mode: ClassVar[int]
    name: ClassVar[str]
    min_kernel: ClassVar[tuple[int, int]] = (2, 6)
    takes_nodes: ClassVar[bool] = True
    allows_balancing: ClassVar[bool] = False
    every_node_by_default: ClassVar[bool] = False  # nodes=None: every usable node

    nodes: tuple[int, ...] | None
    static_nodes: bool
    relative_nodes: bool
    numa_balancing: bool
    home_node: int | None

    def __init__(
        self,
        nodes: NodesLike | None = None,
        *,
        static_nodes: bool = False,
        relative_nodes: bool = False,
        numa_balancing: bool = False,
        home_node: int | None = None,
    ) -> None:
        init = object.__setattr__  # frozen: set once, here
        init(self, "nodes", None if nodes is None else parse_nodes(nodes))
        init(self, "static_nodes", bool(static_nodes))
        init(self, "relative_nodes", bool(relative_nodes))
        init(self, "numa_balancing", bool(numa_balancing))
        init(self, "home_node", None if home_node is None else _node_id(home_node))
        self._validate()

    def _validate(self) -> None:
        if self.nodes is not None and not self.takes_nodes:
            raise InvalidPolicyError(f"{self.name} takes no nodes")
        if self.static_nodes and self.relative_nodes:
            raise InvalidPolicyError(
                f"{self.name}: static_nodes and relative_nodes exclude each other"
            )
        if (self.static_nodes or self.relative_nodes) and not self.takes_nodes:
            raise InvalidPolicyError(f"{self.name} takes no nodes, so no node flags")
        if self.numa_balancing and not self.allows_balancing:
            raise InvalidPolicyError(
                f"{self.name}: numa_balancing is only for Bind and PreferredMany"
            )
        if self.home_node is not None and not self.allows_balancing:
            raise InvalidPolicyError(f"{self.name}: home_node is only for Bind and PreferredMany")

    # --- what the kernel is given -------------------------------------------------

    def resolved_nodes(self, topo: Topology) -> tuple[int, ...]:
        """The nodes this policy names on `topo`: for Interleave and
        Partitioned without nodes every usable node with memory, for
        Local/Default none.

        Parameters
        ----------
        topo : Topology
            The machine, from `topology`.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Bind("0").resolved_nodes(nn.topology()), nn.Local().resolved_nodes(nn.topology())
        ((0,), ())
        """
        if self.nodes is None and self.every_node_by_default:
            return topo.usable_nodes
        return self.nodes or ()

    def parts(self, topo: Topology) -> tuple[Policy, ...] | None:
        """The policies of an allocation's consecutive ranges; None when one
        policy covers the whole allocation (every policy but `Partitioned`).

        Parameters
        ----------
        topo : Topology
            The machine, from `topology`.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Bind(0).parts(nn.topology()) is None
        True
        """
        return None

    def kernel_mode(self) -> int:
        """The kernel's ``MPOL_*`` mode with the ``MPOL_F_*`` flags ORed in.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Bind(0).kernel_mode()   # MPOL_BIND
        2
        """
        mode = self.mode
        if self.static_nodes:
            mode |= lib.NN_MPOL_F_STATIC_NODES
        if self.relative_nodes:
            mode |= lib.NN_MPOL_F_RELATIVE_NODES
        if self.numa_balancing:
            mode |= lib.NN_MPOL_F_NUMA_BALANCING
        return mode

    def check_kernel(self, topo: Topology) -> None:
        """Raise `NumaUnavailableError` if the running kernel lacks this mode or flag.

        Parameters
        ----------
        topo : Topology
            The machine, from `topology`.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Bind(0).check_kernel(nn.topology())   # bind exists since 2.6
        """
        needed = self.min_kernel
        if self.numa_balancing:
            needed = max(needed, (5, 12))
        if self.home_node is not None:
            needed = max(needed, (5, 17))
        if topo.kernel != (0, 0) and topo.kernel < needed:
            raise NumaUnavailableError(
                f"{self} needs Linux {needed[0]}.{needed[1]} or newer; "
                f"this kernel is {topo.kernel[0]}.{topo.kernel[1]}",
                policy=self,
                needed=needed,
            )

    def check_nodes(self, topo: Topology) -> None:
        """Every named node must exist (always an error, soft mode or not).

        Parameters
        ----------
        topo : Topology
            The machine, from `topology`.

        Raises
        ------
        InvalidNodeError
            A named node (or the home node) does not exist.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Bind(0).check_nodes(nn.topology())
        >>> nn.Bind(4095).check_nodes(nn.topology())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        numa_numpy.InvalidNodeError: node 4095 does not exist; ...
        """
        named = set(self.resolved_nodes(topo))
        if self.home_node is not None:
            named.add(self.home_node)
        if self.relative_nodes:
            return  # relative ids are positions in the allowed set, not node ids
        missing = sorted(named - set(topo.node_ids))
        if missing:
            raise InvalidNodeError(
                f"node{'s' if len(missing) > 1 else ''} {format_list(missing)} "
                f"do{'es' if len(missing) == 1 else ''} not exist; "
                f"nodes on this machine: {format_list(topo.node_ids)}",
                nodes=tuple(missing),
                available=topo.node_ids,
            )

    def nodemask(self, topo: Topology) -> list[int]:
        """The node mask as a list of unsigned longs sized for every possible node.

        Parameters
        ----------
        topo : Topology
            The machine, from `topology`.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Bind(0).nodemask(nn.topology())[0]   # bit 0
        1
        """
        words = [0] * (mask_bits() // 64)
        for node in self.resolved_nodes(topo):
            if node >= mask_bits():
                raise InvalidNodeError(
                    f"node {node} is beyond the kernel's node ids "
                    f"(possible: {format_list(topo.possible)})",
                    nodes=(node,),
                    available=topo.node_ids,
                )
            words[node // 64] |= 1 << (node % 64)
        return words

    def kernel_args(self, topo: Topology) -> tuple[int, list[int], int, int]:
        """(mode with flags, mask words, maxnode, home node or -1) for the kernel.

        Parameters
        ----------
        topo : Topology
            The machine, from `topology`.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> mode, mask, maxnode, home = nn.Bind(0).kernel_args(nn.topology())
        >>> mode, mask[0], home
        (2, 1, -1)
        """
        words = self.nodemask(topo) if self.takes_nodes else []
        return (
            self.kernel_mode(),
            words,
            mask_bits() + 1 if words else 0,
            -1 if self.home_node is None else self.home_node,
        )

    def allowed_nodes(self, topo: Topology) -> frozenset[int] | None:
        """Nodes every page must be on under this policy, or None when pages may
        legally go anywhere (Default, Local, Preferred spill over).

        Parameters
        ----------
        topo : Topology
            The machine, from `topology`.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Bind(0).allowed_nodes(nn.topology()), nn.Preferred(0).allowed_nodes(nn.topology())
        (frozenset({0}), None)
        """
        if isinstance(self, (Bind, Interleave, Partitioned)) and not self.relative_nodes:
            return frozenset(self.resolved_nodes(topo))
        return None

    def __repr__(self) -> str:
        args = []
        if self.nodes is not None:  # Bind(0), Bind('0-2,5'): what the constructor takes
            one = len(self.nodes) == 1
            args.append(str(self.nodes[0]) if one else repr(format_list(self.nodes)))
        args += [
            f"{flag}=True"
            for flag in ("static_nodes", "relative_nodes", "numa_balancing")
            if getattr(self, flag)
        ]
        if self.home_node is not None:
            args.append(f"home_node={self.home_node}")
        return f"{type(self).__name__}({', '.join(args)})"

    def __str__(self) -> str:
        text = self.name
        if self.nodes is not None:
            text += ":" + format_list(self.nodes)
        for flag in ("static_nodes", "relative_nodes", "numa_balancing"):
            if getattr(self, flag):
                text += f",{flag}"
        if self.home_node is not None:
            text += f",home={self.home_node}"
        return text


@dataclass(frozen=True, repr=False, init=False)
class Default(Policy):
    """The thread's policy (set_mempolicy / numactl), else the kernel's default.

    ``MPOL_DEFAULT``: the memory gets no policy of its own. Takes no nodes and
    no flags.

    See Also
    --------
    Local : pages on the node of the CPU that first touches them.
    thread_policy : set the thread's own policy.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_zeros(1000, policy=nn.Default())
    >>> nn.Default(), str(nn.Default())
    (Default(), 'default')
    """

    mode: ClassVar[int] = lib.NN_MPOL_DEFAULT
    name: ClassVar[str] = "default"
    takes_nodes: ClassVar[bool] = False


@dataclass(frozen=True, repr=False, init=False)
class Local(Policy):
    """Pages on the node of the CPU that first touches them.

    ``MPOL_LOCAL`` (first touch): the thread that first writes a page decides
    its node, so initialise an array from the threads that will use it. The
    constructors' policy outside any scope. Takes no nodes and no flags.

    See Also
    --------
    Bind : pages on chosen nodes whichever CPU touches them.
    pinned : keep the thread on one node's CPUs.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_ones(1000, policy="local")
    >>> nn.placement(a).requested
    Local()
    """

    mode: ClassVar[int] = lib.NN_MPOL_LOCAL
    name: ClassVar[str] = "local"
    min_kernel: ClassVar[tuple[int, int]] = (3, 8)
    takes_nodes: ClassVar[bool] = False


def _required(cls_name: str, nodes: Any) -> None:
    if nodes is None:
        raise InvalidPolicyError(f"{cls_name} needs nodes")


@dataclass(frozen=True, repr=False, init=False)
@document
class Bind(Policy):
    """Pages only on these nodes; allocation fails rather than spilling.

    ``MPOL_BIND``. ``node=n`` of the constructors and `on_node` mean
    ``Bind(n)``. When the nodes are full the allocation fails
    (`NumaAllocationError` with prefault, else the kernel's OOM handling at
    first touch) instead of taking memory elsewhere: use `Preferred` to spill.

    Parameters
    ----------
    nodes : int, str or sequence of int
        The node ids: ``1``, ``[0, 2]`` or numactl's syntax ``"0-2,5"``.
    {policy_flags}

    Raises
    ------
    {policy_raises}

    See Also
    --------
    on_node : a scope binding every NumPy allocation.
    Preferred, PreferredMany : the same, spilling when full.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> far = nn.topology().usable_nodes[-1]
    >>> a = nn.numa_zeros(1 << 20, policy=nn.Bind(far), prefault=True)
    >>> nn.placement(a).on(far)
    True
    >>> far != 0 and nn.placement(a).on(far)  # doctest: +MULTINODE
    True
    >>> nn.Bind("0-1"), str(nn.Bind([0, 1], static_nodes=True))
    (Bind('0-1'), 'bind:0-1,static_nodes')
    """

    mode: ClassVar[int] = lib.NN_MPOL_BIND
    name: ClassVar[str] = "bind"
    allows_balancing: ClassVar[bool] = True

    def _validate(self) -> None:
        _required("Bind", self.nodes)
        super()._validate()


@dataclass(frozen=True, repr=False, init=False)
@document
class Preferred(Policy):
    """Pages on this node while it has room, then on the nearest others.

    ``MPOL_PREFERRED``: one node. Spilling is legal, so `placement` reports
    pages elsewhere without a warning.

    Parameters
    ----------
    nodes : int
        The preferred node (exactly one; `PreferredMany` takes several).
    {policy_flags}

    Raises
    ------
    {policy_raises}

    See Also
    --------
    PreferredMany, Bind

    Examples
    --------
    >>> import numa_numpy as nn
    >>> p = nn.Preferred(0)
    >>> p.node, str(p)
    (0, 'preferred:0')
    >>> a = nn.numa_ones(1000, policy=p)
    """

    mode: ClassVar[int] = lib.NN_MPOL_PREFERRED
    name: ClassVar[str] = "preferred"

    def _validate(self) -> None:
        _required("Preferred", self.nodes)
        super()._validate()
        if self.nodes is not None and len(self.nodes) != 1:
            raise InvalidPolicyError(
                f"Preferred takes one node, not {format_list(self.nodes)}; "
                "use PreferredMany for several"
            )

    @property
    def node(self) -> int:
        """The preferred node."""
        assert self.nodes is not None
        return self.nodes[0]


@dataclass(frozen=True, repr=False, init=False)
@document
class PreferredMany(Policy):
    """Pages on any of these nodes while they have room (Linux 5.15).

    ``MPOL_PREFERRED_MANY``; on older kernels using it raises
    `NumaUnavailableError`.

    Parameters
    ----------
    nodes : int, str or sequence of int
        The preferred nodes.
    {policy_flags}

    Raises
    ------
    {policy_raises}

    See Also
    --------
    Preferred, Bind

    Examples
    --------
    >>> import numa_numpy as nn
    >>> p = nn.PreferredMany("0")
    >>> p, str(p)
    (PreferredMany(0), 'preferred-many:0')
    """

    mode: ClassVar[int] = lib.NN_MPOL_PREFERRED_MANY
    name: ClassVar[str] = "preferred-many"
    min_kernel: ClassVar[tuple[int, int]] = (5, 15)
    allows_balancing: ClassVar[bool] = True

    def _validate(self) -> None:
        _required("PreferredMany", self.nodes)
        super()._validate()


@dataclass(frozen=True, repr=False, init=False)
@document
class Interleave(Policy):
    """Pages round-robin over these nodes (None: every usable node with memory).

    ``MPOL_INTERLEAVE``: page *i* goes to the *i*-th node in turn, giving an
    array the bandwidth of several memory controllers. A transparent huge
    page lands whole on one node (2 MiB units).

    Parameters
    ----------
    nodes : int, str or sequence of int, optional
        The node ids; None (default): every usable node with memory, resolved
        when memory is allocated.
    {policy_flags}

    Raises
    ------
    {policy_raises}

    See Also
    --------
    interleaved : a scope; interleaved_zeros : one array.
    WeightedInterleave : in proportion to per-node weights.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_zeros(1 << 20, policy=nn.Interleave(), prefault=True)
    >>> sorted(nn.placement(a).pages) == sorted(nn.topology().usable_nodes)
    True
    >>> str(nn.Interleave("0-3"))
    'interleave:0-3'
    """

    mode: ClassVar[int] = lib.NN_MPOL_INTERLEAVE
    name: ClassVar[str] = "interleave"
    every_node_by_default: ClassVar[bool] = True


@dataclass(frozen=True, repr=False, init=False)
@document
class WeightedInterleave(Interleave):
    """Interleave in proportion to the weights in
    /sys/kernel/mm/mempolicy/weighted_interleave/nodeN (Linux 6.9).

    ``MPOL_WEIGHTED_INTERLEAVE``: node *n* gets ``weight[n]`` pages in each
    round. The weights are system-wide (root writes them);
    `InterleaveWeights.from_bandwidth` proposes them from measured bandwidth.

    Parameters
    ----------
    nodes : int, str or sequence of int, optional
        The node ids; None (default): every usable node with memory.
    {policy_flags}

    Raises
    ------
    {policy_raises}

    See Also
    --------
    Interleave, InterleaveWeights

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.WeightedInterleave(), str(nn.WeightedInterleave("0-1"))
    (WeightedInterleave(), 'weighted-interleave:0-1')
    """

    mode: ClassVar[int] = lib.NN_MPOL_WEIGHTED_INTERLEAVE
    name: ClassVar[str] = "weighted-interleave"
    min_kernel: ClassVar[tuple[int, int]] = (6, 9)


@dataclass(frozen=True, repr=False, init=False)
@document
class Partitioned(Policy):
    """Split each allocation into contiguous ranges, one per node, in order.

    A block of NumPy's (in a scope), a ``partitioned_*`` array, a
    `NumaRegion` or a shared array is one mapping whose first range is bound
    to the first node, the next range to the next node, and so on (a Bind per
    range), so node *i*'s workers find their rows on node *i*. Range
    boundaries fall on multiples of the 2 MiB THP unit (blocks of 4 MiB and
    more) or of the base page, the units shared as evenly as possible;
    `blocks` gives each node's rows (shared arrays included). Blocks of 64 KiB
    and less share pages with other blocks and are bound to the first node.

    Parameters
    ----------
    nodes : int, str or sequence of int, optional
        The nodes, in the order of their ranges (default: every node with
        memory this process may use, resolved when memory is allocated).

    Raises
    ------
    InvalidNodeError
        `nodes` does not parse.
    InvalidPolicyError
        For a thread (`thread_policy`) and for `migrate` (pages already
        placed); for NumPy's blocks (scopes, constructors) in explicit huge
        pages.

    See Also
    --------
    partitioned_empty, blocks, node_team

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> nodes = nn.topology().usable_nodes
    >>> with nn.policy(nn.Partitioned()):
    ...     a = np.ones(1 << 20)          # 8 MiB, split between the nodes
    >>> [node for node, _rows in nn.blocks(a)] == list(nodes)
    True
    >>> str(nn.Partitioned("0-1"))
    'partitioned:0-1'
    """

    mode: ClassVar[int] = -1  # no single kernel mode: a Bind per range
    name: ClassVar[str] = "partitioned"

    every_node_by_default: ClassVar[bool] = True

    def parts(self, topo: Topology) -> tuple[Policy, ...]:
        """One Bind per node, in range order.

        Parameters
        ----------
        topo : Topology
            The machine, from `topology`.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Partitioned([0]).parts(nn.topology())
        (Bind(0),)
        """
        return tuple(Bind(n) for n in self.resolved_nodes(topo))

    def kernel_args(self, topo: Topology) -> tuple[int, list[int], int, int]:
        raise InvalidPolicyError(
            "Partitioned splits an allocation between nodes range by range (scopes, "
            "constructors, NumaRegion, shared arrays); the kernel has no such mode for a "
            "thread (thread_policy)",
            policy=self,
        )


PolicyLike = Union[Policy, str]

_BY_NAME: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        Default,
        Local,
        Bind,
        Preferred,
        PreferredMany,
        Interleave,
        WeightedInterleave,
        Partitioned,
    )
}
_BY_NAME.update(
    {
        "membind": Bind,
        "preferred_many": PreferredMany,
        "weighted_interleave": WeightedInterleave,
        "weighted": WeightedInterleave,
    }
)
_BY_MODE: dict[int, type[Policy]] = {
    cls.mode: cls
    for cls in (Default, Local, Bind, Preferred, PreferredMany, Interleave, WeightedInterleave)
}


def as_policy(value: PolicyLike) -> Policy:
    """A Policy from a Policy or its string form ("bind:1", "interleave:0-3",
    "preferred:2", "local", "interleave" for every node).

    Parameters
    ----------
    value : Policy or str
        A policy (returned as is) or ``"mode"`` / ``"mode:nodes"``, the form
        ``str(policy)`` gives.

    Returns
    -------
    Policy

    Raises
    ------
    TypeError
        `value` is neither a Policy nor a string.
    InvalidPolicyError
        An unknown mode or a malformed string (a `ValueError`).
    InvalidNodeError
        Node ids that do not parse.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.as_policy("interleave:0-3")
    Interleave('0-3')
    >>> nn.as_policy("preferred:2"), nn.as_policy("local")
    (Preferred(2), Local())
    """
    if isinstance(value, Policy):
        return value
    if not isinstance(value, str):
        # a wrong type is a TypeError, as Python's own functions say
        raise TypeError(
            "policy must be a numa_numpy Policy (e.g. nn.Bind(0), nn.Interleave()) or "
            f"a string like 'bind:0', 'interleave:0-3', 'local'; not {type(value).__name__}"
        )
    name, _, nodes = value.strip().partition(":")
    cls = _BY_NAME.get(name.strip().lower())
    if cls is None:
        raise InvalidPolicyError(
            f"unknown policy {name!r} in {value!r}; known: {', '.join(sorted(_BY_NAME))}"
        )
    if not cls.takes_nodes:
        if nodes.strip():
            raise InvalidPolicyError(f"{cls.name} takes no nodes: {value!r}")
        return cls()
    return cls(nodes.strip() if nodes.strip() else None)


def policy_from_kernel(mode: int, nodes: tuple[int, ...]) -> Policy:
    """The Policy value for what get_mempolicy reports."""
    flags = mode & lib.NN_MPOL_MODE_FLAGS
    cls = _BY_MODE.get(mode & ~lib.NN_MPOL_MODE_FLAGS, Default)
    kwargs = {
        "static_nodes": bool(flags & lib.NN_MPOL_F_STATIC_NODES),
        "relative_nodes": bool(flags & lib.NN_MPOL_F_RELATIVE_NODES),
        "numa_balancing": bool(flags & lib.NN_MPOL_F_NUMA_BALANCING),
    }
    if not cls.takes_nodes:
        return cls()
    return cls(nodes, **kwargs)


def validate(policy: Policy, topo: Topology | None = None) -> Topology:
    """Kernel support and node existence: the checks that raise in any mode."""
    topo = topo or topology()
    policy.check_kernel(topo)
    policy.check_nodes(topo)
    return topo
