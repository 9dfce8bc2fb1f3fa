"""The calling thread's own NUMA state: its CPU affinity and its task memory
policy (set_mempolicy), which governs every allocation that is not NumPy's
(Python objects, other libraries' buffers). Both are per OS thread, not per
asyncio task."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._binding import binding_struct
from ._lib import lib
from ._placement import range_policy
from ._policy import Policy, PolicyLike, as_policy, parse_nodes, validate
from ._topology import format_list, topology
from .errors import InvalidNodeError, PolicyNotEnforcedError, describe_errno

__all__ = ["pinned", "thread_policy", "get_thread_policy"]

F = TypeVar("F", bound=Callable[..., Any])


class _ThreadScope:
    """Enter/exit with a per-thread stack of saved states; usable as a decorator."""

    _saved = threading.local()

    def _push(self, state: Any) -> None:
        stack = getattr(self._saved, "stack", None)
        if stack is None:
            stack = self._saved.stack = []
        stack.append(state)

    def _pop(self) -> Any:
        return self._saved.stack.pop()

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]

    def __enter__(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class pinned(_ThreadScope):
    """Pin the calling thread to the CPUs of `node` (or to `cpus`), and restore
    its affinity on exit. A context manager and a decorator."""

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

    def __enter__(self) -> pinned:
        self._push(os.sched_getaffinity(0))
        os.sched_setaffinity(0, self.cpus)
        return self

    def __exit__(self, *exc: object) -> None:
        os.sched_setaffinity(0, self._pop())


def get_thread_policy() -> Policy:
    """The calling thread's task policy (get_mempolicy with no address)."""
    return range_policy(None)


def _set_thread_policy(policy: Policy) -> int:
    binding, _mask = binding_struct(policy, topology())
    return int(lib.nn_set_mempolicy(binding.mode, binding.mask, binding.maxnode))


class thread_policy(_ThreadScope):
    """Set the calling thread's task policy (set_mempolicy) and restore the
    previous one on exit. Refusal raises PolicyNotEnforcedError: a task policy is
    always asked for explicitly, so it is strict."""

    def __init__(self, policy: PolicyLike) -> None:
        self.policy = as_policy(policy)
        if self.policy.home_node is not None:
            raise TypeError("home_node applies to ranges (scopes, regions), not threads")

    def __enter__(self) -> thread_policy:
        validate(self.policy)
        previous = get_thread_policy()
        rc = _set_thread_policy(self.policy)
        if rc < 0:
            reason = describe_errno(-rc, "set_mempolicy")
            raise PolicyNotEnforcedError(
                f"the kernel refused {self.policy} for this thread: {reason}",
                policy=self.policy,
                errno=-rc,
                reason=reason,
            )
        self._push(previous)
        return self

    def __exit__(self, *exc: object) -> None:
        _set_thread_policy(self._pop())
