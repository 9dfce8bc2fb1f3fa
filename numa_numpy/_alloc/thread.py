"""The calling thread's own NUMA state: its CPU affinity and its task memory
policy (set_mempolicy), which governs every allocation that is not NumPy's
(Python objects, other libraries' buffers). Both are per OS thread, not per
asyncio task."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .._kernel.lib import errno_of, rephrase, set_mempolicy
from .._kernel.pages import mempolicy
from .._kernel.topology import format_list, topology
from .._policies.cstructs import binding_struct
from .._policies.enforcement import refuse
from .._policies.options import AllocationOptions
from .._policies.policy import (
    Policy,
    PolicyLike,
    as_policy,
    parse_nodes,
    policy_from_kernel,
    validate,
)
from ..errors import InvalidNodeError, NumaError
from .resume import run_inside

__all__ = ["pinned", "thread_policy", "get_thread_policy"]

F = TypeVar("F", bound=Callable[..., Any])


class _ThreadScope:
    """Enter/exit with a stack of saved states per OS thread and per kind (CPU
    affinity and the task policy each have their own); usable as a decorator.

    These states belong to the OS thread, not to an asyncio task or a generator:
    two such scopes held across ``await``/``yield`` can overlap on one thread.
    Exits in the order of the entries restore exactly what each entry saved;
    an exit out of order raises NumaError (after keeping the stack consistent:
    the newer scope's state stays, and its exit restores what this one saved).
    """

    _stacks: threading.local

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._stacks = threading.local()  # one stack per kind, never shared

    def _stack(self) -> list[list[Any]]:
        try:
            return self._stacks.entries  # type: ignore[no-any-return]
        except AttributeError:
            self._stacks.entries = []
            return self._stacks.entries  # type: ignore[no-any-return]

    def _push(self, state: Any) -> None:
        self._stack().append([self, state])

    def _pop(self) -> Any:
        """What this scope's own entry saved (the newest entry of this object)."""
        stack = self._stack()
        if stack and stack[-1][0] is self:
            return stack.pop()[1]
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] is self:
                break
        else:
            raise NumaError(
                f"{self!r} exited on a thread where it was not entered: thread-level "
                "scopes (pinned, thread_policy) must be exited on the OS thread that "
                "entered them"
            )
        _, saved = stack.pop(i)
        newer = stack[i]
        newer[1] = saved  # the newer scope restores, on its exit, what this one found
        raise NumaError(
            f"{self!r} exited while {newer[0]!r}, entered after it on the same OS thread, "
            "is still active. CPU affinity and the task memory policy belong to the OS "
            "thread, not to an asyncio task or a generator: held across await or yield "
            "they overlap. The thread keeps the newer setting, and its exit restores "
            "the one found before this scope. Enter thread-level scopes around code that "
            "does not await (or give each its own thread: asyncio.to_thread)"
        )

    def __call__(self, func: F) -> F:
        """Decorate a function, generator function, coroutine function or async
        generator function: its body runs under this state at every resumption,
        and the caller, or another asyncio task running while it awaits, finds
        the thread's own state between them (the state is the OS thread's, which
        all tasks of an event loop share)."""
        return run_inside(self, func, task_local=False)

    def __enter__(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class pinned(_ThreadScope):
    """Pin the calling thread to the CPUs of `node` (or to `cpus`), and restore
    its affinity on exit. A context manager and a decorator.

    As a decorator it pins the body of a function, and of a generator, async
    generator or coroutine function at every resumption: each ``next``,
    ``send``, ``throw`` and ``close`` (``asend``, ``athrow``, ``aclose``), and
    each step of a coroutine from one ``await`` to the next. Between them the
    thread has its affinity from before, so the caller, and the other asyncio
    tasks that run on the thread while the body awaits, are not pinned.

    Parameters
    ----------
    node : int, optional
        Pin to this node's CPUs (those the process's cpuset allows).
    cpus : iterable of int, optional
        Pin to these CPUs instead. Give `node` or `cpus`, exactly one.

    Raises
    ------
    TypeError
        Both or neither of `node` and `cpus`.
    InvalidNodeError
        The node does not exist or has no CPUs, or none of the CPUs is allowed.

    See Also
    --------
    thread_policy : the thread's memory policy.
    on_node : the memory of NumPy's allocations.

    Notes
    -----
    Pinning decides where the thread *runs*, not where its memory goes: with
    `Local` (first touch) the two coincide. Pinned contexts nest per thread and
    must exit in order (an out-of-order exit raises). The affinity belongs to
    the OS thread, not to an asyncio task: decorate a coroutine rather than
    hold ``with pinned(...)`` across an ``await``.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> near = nn.topology().cpu_nodes[-1]
    >>> with nn.pinned(node=near), nn.on_node(near):
    ...     a = np.ones(1 << 16)             # runs and allocates on `near`
    ...     nn.current_node() == near
    True
    >>> nn.pinned(cpus=[0])
    <numa_numpy pinned cpus=0>

    A decorated generator runs pinned at every resumption, its caller not:

    >>> import asyncio, os
    >>> before = os.sched_getaffinity(0)
    >>> cpu = min(before)
    >>> @nn.pinned(cpus=[cpu])
    ... def rows(n):
    ...     for i in range(n):
    ...         yield os.sched_getaffinity(0) == {cpu}
    >>> g = rows(2)
    >>> next(g), os.sched_getaffinity(0) == before
    (True, True)
    >>> next(g), os.sched_getaffinity(0) == before
    (True, True)

    A decorated coroutine runs pinned from one ``await`` to the next; the
    tasks that run meanwhile are not pinned:

    >>> @nn.pinned(cpus=[cpu])
    ... async def step():
    ...     await asyncio.sleep(0)           # other tasks run here
    ...     return os.sched_getaffinity(0) == {cpu}
    >>> async def other():
    ...     return os.sched_getaffinity(0) == before
    >>> async def main():
    ...     return await asyncio.gather(step(), other())
    >>> asyncio.run(main())
    [True, True]
    """

    def __init__(self, node: int | None = None, *, cpus: Iterable[int] | None = None) -> None:
        if (node is None) == (cpus is None):
            raise TypeError("pass a node or cpus=, exactly one")
        topo = topology()
        if node is not None:
            (node_id,) = parse_nodes(node)
            chosen = set(topo.node(node_id).cpus)
            if not chosen:
                raise InvalidNodeError(
                    f"node {node_id} has no CPUs; nodes with CPUs: {format_list(topo.cpu_nodes)}",
                    nodes=(node_id,),
                    available=topo.cpu_nodes,
                )
        else:
            chosen = {int(c) for c in cpus}  # type: ignore[union-attr]
        usable = chosen & set(topo.allowed_cpus)
        if not usable:
            raise InvalidNodeError(
                f"none of CPUs {format_list(chosen)} is allowed for this process "
                f"(cpuset: {format_list(topo.allowed_cpus)})",
                nodes=(node,),
                available=topo.node_ids,
            )
        self.cpus = frozenset(usable)

    def __repr__(self) -> str:
        return f"<numa_numpy pinned cpus={format_list(self.cpus)}>"

    def __enter__(self) -> pinned:
        self._push(os.sched_getaffinity(0))
        os.sched_setaffinity(0, self.cpus)
        return self

    def __exit__(self, *exc: object) -> None:
        os.sched_setaffinity(0, self._pop())


def get_thread_policy() -> Policy:
    """The calling thread's task policy (get_mempolicy with no address).

    Returns
    -------
    Policy
        `Default` unless the thread (or ``numactl``, for the whole process)
        set one.

    See Also
    --------
    thread_policy, current_policy

    Examples
    --------
    >>> import numa_numpy as nn
    >>> with nn.thread_policy("bind:0"):
    ...     nn.get_thread_policy()
    Bind(0)
    """
    return policy_from_kernel(*mempolicy(None))


def _set_thread_policy(policy: Policy) -> NumaError | None:
    """Set the calling thread's task policy; None, or the kernel's refusal."""
    binding, _mask = binding_struct(policy, topology())
    try:
        set_mempolicy(binding.mode, binding.mask, binding.maxnode)
    except NumaError as exc:
        return exc
    return None


class thread_policy(_ThreadScope):
    """Set the calling thread's task policy (set_mempolicy) and restore the
    previous one on exit. Refusal raises PolicyNotEnforcedError: a task policy is
    always asked for explicitly, so it is strict.

    A context manager and a decorator. The task policy places every
    allocation of the OS thread that has no policy of its own: Python
    objects, other libraries' buffers, and NumPy arrays made outside
    numa_numpy scopes.

    As a decorator it sets the policy for the body of a function, and of a
    generator, async generator or coroutine function at every resumption:
    each ``next``, ``send``, ``throw`` and ``close`` (``asend``, ``athrow``,
    ``aclose``), and each step of a coroutine from one ``await`` to the next.
    Between them the thread has its policy from before, so the caller, and
    the other asyncio tasks that run on the thread while the body awaits,
    allocate under their own.

    Parameters
    ----------
    policy : Policy or str
        Any policy but one with ``home_node`` (that applies to ranges).

    Raises
    ------
    TypeError
        A policy with ``home_node``.
    InvalidNodeError, NumaUnavailableError
        On entry: a node that does not exist, a mode the kernel lacks.
    PolicyNotEnforcedError
        On entry: the kernel refuses the policy for this thread.

    See Also
    --------
    get_thread_policy, pinned
    policy : ``policy(p, thread=True)`` sets both.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> with nn.thread_policy(nn.Preferred(0)) as scope:
    ...     nn.get_thread_policy()
    Preferred(0)
    >>> scope
    <numa_numpy thread_policy preferred:0>

    A decorated generator runs under the policy at every resumption, its
    caller under its own:

    >>> before = nn.get_thread_policy()      # Default() unless numactl set one
    >>> @nn.thread_policy("bind:0")
    ... def names(n):
    ...     for i in range(n):
    ...         yield [str(j) for j in range(1000)], nn.get_thread_policy()
    >>> g = names(2)
    >>> next(g)[1], nn.get_thread_policy() == before
    (Bind(0), True)
    >>> next(g)[1], nn.get_thread_policy() == before
    (Bind(0), True)
    """

    def __init__(self, policy: PolicyLike) -> None:
        self.policy = as_policy(policy)
        if self.policy.home_node is not None:
            raise TypeError("home_node applies to ranges (scopes, regions), not threads")

    def __repr__(self) -> str:
        return f"<numa_numpy thread_policy {self.policy}>"

    def __enter__(self) -> thread_policy:
        validate(self.policy)
        previous = get_thread_policy()
        refusal = _set_thread_policy(self.policy)
        if refusal is not None:
            reason = str(refusal)
            always_strict = AllocationOptions(self.policy, strict=True)
            message = f"the kernel refused {self.policy} for this thread: {reason}"
            refuse(always_strict, message, reason=reason, err=errno_of(refusal))
        self._push(previous)
        return self

    def __exit__(self, *exc: object) -> None:
        previous = self._pop()
        refusal = _set_thread_policy(previous)
        # A thread left under the inner policy would place everything it allocates
        # from now on wrongly: say so rather than carry on.
        if refusal is not None:
            raise rephrase(
                refusal, f"cannot restore this thread's policy {previous} on leaving {self!r}"
            )
