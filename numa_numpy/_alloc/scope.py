"""Scopes: inside, every NumPy allocation uses a policy's handler.

NumPy keeps its current handler in a ContextVar, so a scope is per thread and
per asyncio task. New threads start with NumPy's default handler: use
`PolicyScope.initializer` for thread pools or `propagate` to carry the caller's.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._policies.docstrings import document
from .._policies.enforcement import warn
from .._policies.options import AllocationOptions, ScopeKeywords
from .._policies.policy import Bind, Interleave, NodesLike, Policy, PolicyLike, as_policy
from . import bridge as _bridge
from . import handler as _handler
from .handler import Handler, active_handler, handler_for
from .resume import run_inside
from .thread import thread_policy

if TYPE_CHECKING:
    from typing_extensions import Unpack

F = TypeVar("F", bound=Callable[..., Any])


# The scopes open in this context, innermost first, as a linked list of
# (scope, token of NumPy's ContextVar to reset on exit, next outer node). A
# ContextVar of immutable nodes: each thread and task has its own, and a copied
# context never sees later changes.
_Node = tuple["PolicyScope", "contextvars.Token[Any]", Any]
_OPEN: contextvars.ContextVar[_Node | None] = contextvars.ContextVar(
    "numa_numpy_open_scopes", default=None
)


def _restore(var: contextvars.ContextVar[Any], token: contextvars.Token[Any]) -> None:
    """Put back what `token`'s set replaced, in a context other than the one
    that made it (reset refuses): the value it replaced, or the variable's default."""
    old = token.old_value
    var.set(contextvars.Context().run(var.get) if old is token.MISSING else old)


@document
class PolicyScope:
    """A policy made NumPy's allocator: a context manager and a decorator.

    Inside ``with scope:`` every NumPy allocation of this thread or asyncio task
    (constructors, ufunc outputs, temporaries, copies, reductions) gets its
    memory from a handler that places pages by `policy`. Usually made by
    `on_node`, `interleaved` or `policy`, which return cached scopes.

    Nesting restores the outer policy exactly. The same object may be entered
    again, nested, and from several threads or tasks at once: what an entry
    saved lives in the context (thread/task), not in the object.

    An exit out of order (a scope held across a ``yield`` or ``await`` and
    closed after a scope entered before it) removes only this scope's layer:
    the newer scope stays active until it exits, then the policy from before
    this one returns. It warns (NumaWarning), since a scope then outlived the
    block that opened it.

    Parameters
    ----------
    policy : Policy or str
        Where the pages go: a `Policy` or its string form (``"bind:1"``).
    {scope_keywords}

    Raises
    ------
    {allocation_raises}

    See Also
    --------
    on_node, interleaved, policy : the cached ways to make one.
    current_policy : the policy of the innermost scope active here.
    propagate : carry the caller's scopes into a new thread.

    Notes
    -----
    NumPy keeps its allocator in a ``ContextVar``: a scope applies to the
    thread or task that entered it, and a new thread starts with NumPy's
    default allocator (see `propagate` and `initializer`). The handler is made
    and the policy probed (one page bound) at the first entry, so a policy the
    kernel refuses raises or warns where the scope is entered.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> scope = nn.PolicyScope(nn.Bind(0), prefault="touch")
    >>> scope
    <numa_numpy scope bind:0 strict=False huge_pages=auto prefault=touch>
    >>> with scope:
    ...     a = np.ones(1000) * 2.0      # output and temporaries on node 0
    >>> nn.placement(a).on(0)
    True
    >>> @nn.on_node(0)
    ... def build(n):
    ...     return np.zeros(n)
    >>> nn.placement(build(1 << 16)).requested
    Bind(0)
    """

    __slots__ = (
        "options",
        "thread",
        "_handler",
        "_handler_generation",
        "_generation",
        "_capsule",
        "_var",
    )

    def __init__(
        self,
        policy: PolicyLike,
        **options: Unpack[ScopeKeywords],
    ) -> None:
        thread = options.pop("thread", False)
        self.options = AllocationOptions.from_keywords(
            policy, "PolicyScope", ScopeKeywords, **options
        )
        # thread=True: also the OS thread's task policy (set_mempolicy), so that
        # allocations outside NumPy (Python objects, other libraries) follow it.
        self.thread = thread_policy(self.options.policy) if thread else None
        # the handler is made (and probed) at the first entry, not here
        self._handler: Handler | None = None
        self._handler_generation = -1
        self._generation = -1
        self._capsule: Any = None
        self._var: contextvars.ContextVar[Any] = None  # type: ignore[assignment]

    @property
    def policy(self) -> Policy:
        """The `Policy` this scope allocates under."""
        return self.options.policy

    @property
    def handler(self) -> Handler:
        """The handler (made and probed on first use: raises for bad policies)."""
        handler = self._handler
        if handler is None or self._handler_generation != _handler.generation:
            generation = _handler.generation
            handler = self._handler = handler_for(self.options)
            self._handler_generation = generation
        return handler

    def _resolve(self) -> None:
        generation = _handler.generation
        self._capsule = self.handler.capsule_object
        self._var = _bridge.numpy_handler_var  # type: ignore[assignment]
        # published last: another thread's __enter__ trusts it to mean "resolved"
        self._generation = generation

    def __enter__(self) -> PolicyScope:
        # The hot path: a generation check and two ContextVar sets.
        if self._generation != _handler.generation:
            self._resolve()
        if self.thread is not None:
            self.thread.__enter__()
        _OPEN.set((self, self._var.set(self._capsule), _OPEN.get()))
        return self

    def __exit__(self, *exc: object) -> None:
        top = _OPEN.get()
        if top is not None and top[0] is self:
            _OPEN.set(top[2])
            try:
                self._var.reset(top[1])
            except (ValueError, RuntimeError):  # made (or used) in the context copied from
                _restore(self._var, top[1])
        else:
            self._exit_out_of_order(top)
        if self.thread is not None:
            self.thread.__exit__(None, None, None)

    def _exit_out_of_order(self, top: _Node | None) -> None:
        newer: list[_Node] = []  # the nodes above this scope's, innermost first
        node = top
        while node is not None and node[0] is not self:
            newer.append(node)
            node = node[2]
        if node is None:
            warn(
                f"numa_numpy: {self!r} exited in a context (thread or task) where it is "
                "not open, e.g. a generator resumed from another task: nothing is "
                "restored here, and the context that entered it keeps it"
            )
            return
        # Splice this layer out: the scope entered just after it inherits its
        # token, so that scope's exit restores what this one replaced. NumPy's
        # handler stays the newest scope's meanwhile.
        chain: _Node | None = node[2]
        inherited: contextvars.Token[Any] | None = node[1]
        for scope, own_token, _ in reversed(newer):  # outermost of them first
            chain = (scope, inherited or own_token, chain)
            inherited = None
        _OPEN.set(chain)
        warn(
            f"numa_numpy: {self!r} exited while {newer[-1][0]!r}, entered after it in "
            "this context, is still open (a scope held across a yield or await): that "
            "scope stays active until it exits, and then the policy from before this "
            "one returns"
        )

    def __call__(self, func: F) -> F:
        """Decorate a function, coroutine function, generator function or async
        generator function: its body runs inside the scope, and (generators) at
        every resumption, without the scope reaching the caller in between.
        With ``thread=True`` the thread policy is set like `thread_policy`'s:
        around each step of a coroutine, not while other tasks run."""
        if self.thread is not None and (
            inspect.isgeneratorfunction(func)
            or inspect.iscoroutinefunction(func)
            or inspect.isasyncgenfunction(func)
        ):
            # NumPy's allocator belongs to the task and may stay set across an
            # await; the thread policy belongs to the OS thread, shared by every
            # task, so it is set around each step only (see thread_policy).
            numpy_part = scope_for(self.options.policy, **self.options.keywords())
            return run_inside(numpy_part, self.thread(func), task_local=True)
        return run_inside(self, func, task_local=True)

    def stats(self) -> dict[str, Any]:
        """This scope's handler: used, cached and mapped bytes, live blocks, fallbacks.

        Returns
        -------
        dict
            Counters of the scope's handler (bytes in use, cached and mapped,
            live blocks, allocations that fell back to unbound memory).

        See Also
        --------
        memory_stats : the same for every handler.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> import numpy as np
        >>> scope = nn.on_node(0)
        >>> before = scope.stats()["live_blocks"]
        >>> with scope:
        ...     a = np.ones(1 << 20)             # one 8 MiB block of the scope's handler
        >>> scope.stats()["live_blocks"] - before, scope.stats()["used_bytes"] >= a.nbytes
        (1, True)
        """
        return self.handler.stats()

    def initializer(self) -> None:
        """Enter this scope for the rest of the calling thread's life: pass it as
        `ThreadPoolExecutor(initializer=scope.initializer)`.

        See Also
        --------
        propagate : run one function under the caller's scopes in another thread.

        Examples
        --------
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> import numpy as np
        >>> import numa_numpy as nn
        >>> far = nn.topology().usable_nodes[-1]
        >>> with ThreadPoolExecutor(2, initializer=nn.on_node(far).initializer) as pool:
        ...     a = pool.submit(np.ones, 1 << 16).result()   # allocated on `far`
        >>> nn.placement(a).on(far)
        True
        """
        self.__enter__()  # never exited: the layer lives in the thread's own context

    def __repr__(self) -> str:
        o = self.options
        return (
            f"<numa_numpy scope {o.policy} strict={o.strict} "
            f"huge_pages={o.huge_pages.value} prefault={o.prefault.value}>"
        )


# Scopes are values: the same policy and options give the same scope object, so
# `with nn.on_node(0):` in a loop builds nothing after the first time. Looked up
# only after the arguments are validated (0.0 == 0 as a dict key).
_CACHE_LIMIT = 1024
_BY_ID: dict[int, tuple[Policy, PolicyScope]] = {}  # id(policy) -> (it, its default scope)
_BY_NODE: dict[int, PolicyScope] = {}  # on_node(int)
_INTERLEAVED: dict[int | None, PolicyScope] = {}  # interleaved() and interleaved(int)
_BY_VALUE: dict[Policy, PolicyScope] = {}  # policy -> default scope
_BY_TEXT: dict[str, PolicyScope] = {}  # "bind:1" -> default scope
_BY_OPTIONS: dict[tuple[AllocationOptions, bool], PolicyScope] = {}


def _bounded(cache: dict[Any, Any]) -> dict[Any, Any]:
    if len(cache) >= _CACHE_LIMIT:  # user-made keys (strings, policies): stay bounded
        cache.clear()
    return cache


def default_scope(policy: Policy) -> PolicyScope:
    """The scope of `policy` with default options (cached)."""
    hit = _BY_ID.get(id(policy))
    if hit is not None and hit[0] is policy:  # the entry holds the policy: ids stay unique
        return hit[1]
    scope = _BY_VALUE.get(policy)
    if scope is None:
        scope = _bounded(_BY_VALUE)[policy] = PolicyScope(policy)
        _bounded(_BY_ID)[id(policy)] = (policy, scope)
    return scope


def scope_for(
    policy: Policy, where: str = "PolicyScope", /, **options: Unpack[ScopeKeywords]
) -> PolicyScope:
    """The scope of `policy` with these options (validated, then cached); an
    unknown keyword is a TypeError naming `where`, the caller."""
    thread = bool(options.pop("thread", False))
    allocation = AllocationOptions.from_keywords(policy, where, ScopeKeywords, **options)
    key = (allocation, thread)
    scope = _BY_OPTIONS.get(key)
    if scope is None:
        scope = PolicyScope(policy, thread=thread, **allocation.keywords())
        _bounded(_BY_OPTIONS)[key] = scope
    return scope


def forget_scopes() -> None:
    """Drop the cached scopes (and with them their handlers)."""
    for cache in (_BY_ID, _BY_NODE, _INTERLEAVED, _BY_VALUE, _BY_TEXT, _BY_OPTIONS):
        cache.clear()


@document
def policy(policy: PolicyLike, **options: Unpack[ScopeKeywords]) -> PolicyScope:
    """A scope in which NumPy allocates under `policy` (a Policy or "bind:1");
    thread=True also sets the thread's own policy for non-NumPy allocations.

    Parameters
    ----------
    policy : Policy or str
        Any policy (`Bind`, `Preferred`, `Interleave`, ...) or its string form
        (``"bind:1"``, ``"interleave:0-3"``, ``"preferred:2"``, ``"local"``).
    {scope_keywords}

    Returns
    -------
    PolicyScope
        A context manager and decorator; the same arguments give the same
        (cached) object.

    Raises
    ------
    {allocation_raises}

    See Also
    --------
    on_node, interleaved : the common cases.
    PolicyScope : what it returns.

    Notes
    -----
    Scopes nest: leaving one restores the outer policy exactly. They apply
    per thread and per asyncio task. A decorated function, coroutine,
    generator or async generator runs inside the scope at every resumption.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> with nn.policy("preferred:0"):
    ...     a = np.arange(1e5)
    >>> nn.placement(a).requested
    Preferred(0)
    >>> with nn.policy(nn.Interleave(), huge_pages="none"):
    ...     b = np.zeros(1 << 20)
    """
    if not options:
        if type(policy) is str:
            scope = _BY_TEXT.get(policy)
            if scope is None:
                scope = _bounded(_BY_TEXT)[policy] = default_scope(as_policy(policy))
            return scope
        if isinstance(policy, Policy):
            return default_scope(policy)
    return scope_for(as_policy(policy), "policy", **options)


@document
def on_node(node: NodesLike, **options: Unpack[ScopeKeywords]) -> PolicyScope:
    """A scope in which NumPy allocates on `node` (Bind).

    Parameters
    ----------
    node : int, str or sequence of int
        The node (or nodes, e.g. ``"0-1"``) the pages are bound to.
    {scope_keywords}

    Returns
    -------
    PolicyScope
        A context manager and decorator; the same arguments give the same
        (cached) object.

    Raises
    ------
    {allocation_raises}

    See Also
    --------
    policy : any policy.
    numa_zeros : one array with ``node=``.

    Notes
    -----
    `Bind` never spills: when the nodes are full, the allocation fails
    (`NumaAllocationError`) rather than taking memory elsewhere. Use
    ``policy(Preferred(n))`` to spill. ``with nn.on_node(0):`` in a loop costs
    about half a microsecond (the scope is cached). Whether the node exists,
    and whether the kernel accepts the policy, is checked where the scope is
    first entered, not where it is made.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> far = nn.topology().usable_nodes[-1]   # 0 on one node
    >>> a = nn.numa_ones((1000, 1000))
    >>> with nn.on_node(far):
    ...     c = np.sqrt(a * 2.0 + 1.0)         # output and temporaries on `far`
    >>> nn.placement(c).fraction(far)
    1.0
    """
    if options:
        return scope_for(Bind(node), "on_node", **options)
    if type(node) is not int:  # validated by Bind: 0.0 and True are no node ids
        return default_scope(Bind(node))
    scope = _BY_NODE.get(node)
    if scope is None:
        scope = _bounded(_BY_NODE)[node] = default_scope(Bind(node))
    return scope


@document
def interleaved(nodes: NodesLike | None = None, **options: Unpack[ScopeKeywords]) -> PolicyScope:
    """A scope in which NumPy interleaves pages over `nodes` (None: all with memory).

    Parameters
    ----------
    nodes : int, str or sequence of int, optional
        The nodes the pages go round-robin over; None (default): every usable
        node with memory.
    {scope_keywords}

    Returns
    -------
    PolicyScope
        A context manager and decorator; the same arguments give the same
        (cached) object.

    Raises
    ------
    {allocation_raises}

    See Also
    --------
    interleaved_zeros : one interleaved array.
    WeightedInterleave : pages in proportion to per-node weights.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> with nn.interleaved():
    ...     table = np.random.default_rng(0).random(1 << 20)
    >>> nn.placement(table).requested
    Interleave()
    """
    if options:
        return scope_for(Interleave(nodes), "interleaved", **options)
    if not (nodes is None or type(nodes) is int):
        return default_scope(Interleave(nodes))
    scope = _INTERLEAVED.get(nodes)
    if scope is None:
        scope = _bounded(_INTERLEAVED)[nodes] = default_scope(Interleave(nodes))
    return scope


def current_policy() -> Policy | None:
    """The policy of the numa_numpy scope active here, or None outside scopes.

    Returns
    -------
    Policy or None
        The innermost scope's policy in this thread or task.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.current_policy() is None
    True
    >>> with nn.on_node(0):
    ...     nn.current_policy()
    Bind(0)
    """
    handler = active_handler()
    return handler.policy if handler else None


def propagate(func: F) -> F:
    """Wrap `func` to run in a copy of the caller's context, so a new thread
    allocates under the scopes active where `propagate` was called.

    Parameters
    ----------
    func : callable
        The function to run, typically a thread's target.

    Returns
    -------
    callable
        `func` wrapped; each call runs in a fresh copy of the context captured
        here.

    See Also
    --------
    PolicyScope.initializer : a whole pool thread under one scope.

    Examples
    --------
    >>> import threading
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> out = []
    >>> with nn.on_node(0):
    ...     t = threading.Thread(target=nn.propagate(lambda: out.append(np.ones(100))))
    ...     t.start()
    >>> t.join()
    >>> nn.placement(out[0]).requested
    Bind(0)
    """
    context = contextvars.copy_context()

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(func, *args, **kwargs)

    return run  # type: ignore[return-value]
