"""Decorators that run a body inside a context manager at every resumption.

One implementation for the NumPy scopes (`PolicyScope`) and the OS thread's
state (`pinned`, `thread_policy`). A generator, coroutine or async generator
runs in pieces, and its caller (or, under asyncio, other tasks) runs between
them; entering the context manager once around the call that creates the
object, or once for its whole life, would put the state on the wrong code.
Here each piece enters it and leaves it before control goes back.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

Scope = AbstractContextManager[Any]


def _steps(inner: Any, scope: Scope) -> Generator[Any, Any, Any]:
    """Drive `inner` (a generator, a coroutine, or an async generator's
    asend/athrow awaitable) one step at a time, inside `scope` during each step
    only. What it yields (a value, or to an event loop the future it waits on)
    goes to our caller; what the caller sends, throws or closes goes to it."""
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            with scope:
                if thrown is None:
                    yielded = inner.send(sent)
                else:
                    yielded = inner.throw(thrown)
        except StopIteration as stop:
            return stop.value
        finally:
            thrown = None
        try:
            sent = yield yielded
        except GeneratorExit:
            with scope:
                inner.close()
            raise
        except BaseException as exc:  # throw(): passed in, inside the scope
            thrown, sent = exc, None


class _Stepped:
    """An awaitable that runs `inner` step by step inside `scope` (see `_steps`)."""

    __slots__ = ("_inner", "_scope")

    def __init__(self, inner: Awaitable[Any], scope: Scope) -> None:
        self._inner = inner
        self._scope = scope

    def __await__(self) -> Generator[Any, Any, Any]:
        return _steps(self._inner, self._scope)


def run_inside(scope: Scope, func: F, *, task_local: bool) -> F:
    """Wrap `func` so that its body runs inside `scope`.

    Parameters
    ----------
    scope : context manager
        Entered and exited once per piece of the body, so it must be reusable
        (re-entrant, its exits restoring what its entries found).
    func : callable
        A function (one piece: the call), a generator function (each
        ``next``/``send``/``throw``/``close``), an async generator function
        (each ``asend``/``athrow``/``aclose``) or a coroutine function.
    task_local : bool
        Whether what `scope` sets belongs to the asyncio task (a ContextVar,
        as NumPy's allocator): then it may stay entered while the body awaits,
        since the event loop switches contexts with tasks. False for the state
        of the OS thread (CPU affinity, the task memory policy): every task of
        the loop runs on that thread, so it is entered around each step of a
        coroutine (from one ``await`` that suspends to the next) and left
        before the loop runs anything else.
    """
    if inspect.isasyncgenfunction(func):
        return _async_generator(scope, func, task_local)  # type: ignore[return-value]
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def run_generator(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            return (yield from _steps(func(*args, **kwargs), scope))

        return run_generator  # type: ignore[return-value]
    if inspect.iscoroutinefunction(func):
        if task_local:

            @functools.wraps(func)
            async def run_held(*args: Any, **kwargs: Any) -> Any:
                with scope:
                    return await func(*args, **kwargs)

            return run_held  # type: ignore[return-value]

        @functools.wraps(func)
        async def run_stepped(*args: Any, **kwargs: Any) -> Any:
            return await _Stepped(func(*args, **kwargs), scope)

        return run_stepped  # type: ignore[return-value]

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with scope:
            return func(*args, **kwargs)

    return run  # type: ignore[return-value]


def _async_generator(
    scope: Scope, func: Callable[..., AsyncGenerator[Any, Any]], task_local: bool
) -> Callable[..., AsyncGenerator[Any, Any]]:
    async def held(step: Awaitable[Any]) -> Any:
        with scope:
            return await step

    def stepped(step: Awaitable[Any]) -> Awaitable[Any]:
        return _Stepped(step, scope)

    resume: Callable[[Awaitable[Any]], Awaitable[Any]] = held if task_local else stepped

    @functools.wraps(func)
    async def run(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = func(*args, **kwargs)
        try:
            item = await resume(agen.__anext__())
        except StopAsyncIteration:
            return
        while True:
            try:
                sent = yield item
            except GeneratorExit:
                await resume(agen.aclose())
                raise
            except BaseException as thrown:  # athrow(): passed in, inside the scope
                try:
                    item = await resume(agen.athrow(thrown))
                except StopAsyncIteration:
                    return
            else:
                try:
                    item = await resume(agen.asend(sent))
                except StopAsyncIteration:
                    return

    return run
