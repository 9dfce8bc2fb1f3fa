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
from typing import Any, TypeVar

from . import _handler
from ._handler import AllocationOptions, Handler, handler_for
from ._lib import ffi, lib
from ._policy import (
    Bind,
    HugePages,
    HugePagesLike,
    Interleave,
    NodesLike,
    Policy,
    PolicyLike,
    Prefault,
    PrefaultLike,
    as_policy,
)
from ._thread import thread_policy
from .errors import NumaError

F = TypeVar("F", bound=Callable[..., Any])

# (handler NumPy had before, our handler) for every scope entered in this context.
_stack: contextvars.ContextVar[tuple[tuple[Any, Handler], ...]] = contextvars.ContextVar(
    "numa_numpy_scopes", default=()
)


class PolicyScope:
    """A policy made NumPy's allocator: a context manager and a decorator.

    Nesting restores the outer policy exactly. The same object may be entered
    again, nested, and from several threads or tasks at once.
    """

    __slots__ = ("options", "thread", "_handler", "_generation")

    def __init__(
        self,
        policy: PolicyLike,
        *,
        strict: bool = False,
        huge_pages: HugePagesLike = HugePages.AUTO,
        prefault: PrefaultLike = Prefault.NONE,
        thread: bool = False,
    ) -> None:
        self.options = AllocationOptions(
            as_policy(policy),
            bool(strict),
            HugePages.coerce(huge_pages),
            Prefault.coerce(prefault),
        )
        # thread=True: also the OS thread's task policy (set_mempolicy), so that
        # allocations outside NumPy (Python objects, other libraries) follow it.
        self.thread = thread_policy(self.options.policy) if thread else None
        self._handler: Handler | None = None
        self._generation = -1

    @property
    def policy(self) -> Policy:
        return self.options.policy

    @property
    def handler(self) -> Handler:
        """The handler (made and probed on first use: raises for bad policies)."""
        if self._handler is None or self._generation != _handler.generation:
            self._generation = _handler.generation
            self._handler = handler_for(self.options)
        return self._handler

    def __enter__(self) -> PolicyScope:
        handler = self.handler
        if self.thread is not None:
            self.thread.__enter__()
        previous = lib.nn_handler_install(handler.capsule)
        if previous == ffi.NULL:
            if self.thread is not None:
                self.thread.__exit__(None, None, None)
            raise NumaError("NumPy did not accept the numa_numpy handler")
        _stack.set(_stack.get() + ((previous, handler),))
        return self

    def __exit__(self, *exc: object) -> None:
        stack = _stack.get()
        _stack.set(stack[:-1])
        lib.nn_handler_restore(stack[-1][0])
        if self.thread is not None:
            self.thread.__exit__(None, None, None)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]

    def initializer(self) -> None:
        """Enter this scope for the rest of the calling thread's life: pass it as
        `ThreadPoolExecutor(initializer=scope.initializer)`."""
        self.__enter__()

    def __repr__(self) -> str:
        o = self.options
        return (
            f"<numa_numpy scope {o.policy} strict={o.strict} "
            f"huge_pages={o.huge_pages.value} prefault={o.prefault.value}>"
        )


def policy(
    policy: PolicyLike,
    *,
    strict: bool = False,
    huge_pages: HugePagesLike = HugePages.AUTO,
    prefault: PrefaultLike = Prefault.NONE,
    thread: bool = False,
) -> PolicyScope:
    """A scope in which NumPy allocates under `policy` (a Policy or "bind:1");
    thread=True also sets the thread's own policy for non-NumPy allocations."""
    return PolicyScope(
        policy, strict=strict, huge_pages=huge_pages, prefault=prefault, thread=thread
    )


def on_node(
    node: NodesLike,
    *,
    strict: bool = False,
    huge_pages: HugePagesLike = HugePages.AUTO,
    prefault: PrefaultLike = Prefault.NONE,
    thread: bool = False,
) -> PolicyScope:
    """A scope in which NumPy allocates on `node` (Bind)."""
    return PolicyScope(
        Bind(node), strict=strict, huge_pages=huge_pages, prefault=prefault, thread=thread
    )


def interleaved(
    nodes: NodesLike | None = None,
    *,
    strict: bool = False,
    huge_pages: HugePagesLike = HugePages.AUTO,
    prefault: PrefaultLike = Prefault.NONE,
    thread: bool = False,
) -> PolicyScope:
    """A scope in which NumPy interleaves pages over `nodes` (None: all with memory)."""
    return PolicyScope(
        Interleave(nodes), strict=strict, huge_pages=huge_pages, prefault=prefault, thread=thread
    )


def current_policy() -> Policy | None:
    """The policy of the innermost numa_numpy scope here, or None outside scopes."""
    stack = _stack.get()
    return stack[-1][1].policy if stack else None


def current_handler() -> Handler | None:
    stack = _stack.get()
    return stack[-1][1] if stack else None


def propagate(func: F) -> F:
    """Wrap `func` to run in a copy of the caller's context, so a new thread
    allocates under the scopes active where `propagate` was called."""
    context = contextvars.copy_context()

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(func, *args, **kwargs)

    return run  # type: ignore[return-value]
