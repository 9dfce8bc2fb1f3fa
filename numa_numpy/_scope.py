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

from . import _handler
from ._handler import AllocationOptions, Handler, active_handler, handler_for
from ._policy import (
    AllocationKeywords,
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

if TYPE_CHECKING:
    from typing_extensions import Unpack

F = TypeVar("F", bound=Callable[..., Any])


class PolicyScope:
    """A policy made NumPy's allocator: a context manager and a decorator.

    Nesting restores the outer policy exactly. The same object may be entered
    again, nested, and from several threads or tasks at once.
    """

    __slots__ = ("options", "thread", "_handler", "_generation", "_tokens", "_capsule", "_var")

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
        self._tokens: list[contextvars.Token[Any]] = []  # one per entry not yet exited
        self._capsule: Any = None
        self._var: contextvars.ContextVar[Any] | None = None

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

    def _resolve(self) -> None:
        self._capsule = self.handler.capsule_object
        self._var = _handler.numpy_handler_var

    def __enter__(self) -> PolicyScope:
        # The hot path is two slot reads and a ContextVar.set: it runs around
        # every block of a pipeline, so it stays small.
        if self._generation != _handler.generation or self._var is None:
            self._resolve()
        if self.thread is not None:
            self.thread.__enter__()
        self._tokens.append(self._var.set(self._capsule))  # type: ignore[union-attr]
        return self

    def __exit__(self, *exc: object) -> None:
        tokens = self._tokens
        try:
            token = tokens[-1]
            self._var.reset(token)  # type: ignore[union-attr]
            tokens.remove(token)  # by identity: another thread may have appended since
        except (ValueError, RuntimeError, IndexError):
            self._exit_other_context()
        if self.thread is not None:
            self.thread.__exit__(None, None, None)

    def _exit_other_context(self) -> None:
        """The same scope object entered in several threads or tasks: reset the
        newest token made in this context (reset refuses the others)."""
        for token in reversed(list(self._tokens)):
            try:
                self._var.reset(token)  # type: ignore[union-attr]
            except (ValueError, RuntimeError):  # another context's, or just used by its owner
                continue
            self._tokens.remove(token)
            return
        raise NumaError(f"{self!r} exited in a context where it was not entered")

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

    def stats(self) -> dict[str, Any]:
        """This scope's handler: used, cached and mapped bytes, live blocks, fallbacks."""
        return self.handler.stats()

    def initializer(self) -> None:
        """Enter this scope for the rest of the calling thread's life: pass it as
        `ThreadPoolExecutor(initializer=scope.initializer)`."""
        # a scope object of its own: its token never exits, and must not sit in
        # this object's list for other threads' exits to scan
        PolicyScope(
            self.options.policy,
            strict=self.options.strict,
            huge_pages=self.options.huge_pages,
            prefault=self.options.prefault,
            thread=self.thread is not None,
        ).__enter__()

    def __repr__(self) -> str:
        o = self.options
        return (
            f"<numa_numpy scope {o.policy} strict={o.strict} "
            f"huge_pages={o.huge_pages.value} prefault={o.prefault.value}>"
        )


class ScopeKeywords(AllocationKeywords, total=False):
    """A scope's keywords: the allocation options, and whether the thread's own
    policy follows too."""

    thread: bool


def policy(policy: PolicyLike, **options: Unpack[ScopeKeywords]) -> PolicyScope:
    """A scope in which NumPy allocates under `policy` (a Policy or "bind:1");
    thread=True also sets the thread's own policy for non-NumPy allocations."""
    return PolicyScope(policy, **options)


def on_node(node: NodesLike, **options: Unpack[ScopeKeywords]) -> PolicyScope:
    """A scope in which NumPy allocates on `node` (Bind)."""
    return PolicyScope(Bind(node), **options)


def interleaved(nodes: NodesLike | None = None, **options: Unpack[ScopeKeywords]) -> PolicyScope:
    """A scope in which NumPy interleaves pages over `nodes` (None: all with memory)."""
    return PolicyScope(Interleave(nodes), **options)


def current_policy() -> Policy | None:
    """The policy of the numa_numpy scope active here, or None outside scopes."""
    handler = active_handler()
    return handler.policy if handler else None


def propagate(func: F) -> F:
    """Wrap `func` to run in a copy of the caller's context, so a new thread
    allocates under the scopes active where `propagate` was called."""
    context = contextvars.copy_context()

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(func, *args, **kwargs)

    return run  # type: ignore[return-value]
