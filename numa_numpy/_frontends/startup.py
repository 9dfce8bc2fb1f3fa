"""A policy for the whole process, from the environment, at interpreter start.

``numa_numpy_startup.pth``, installed with the package into site-packages, runs
one line at every interpreter start: when none of the variables below is set it
reads ``os.environ`` (which ``site`` has already imported) and stops, importing
nothing; when one is set it imports this module and calls `activate`.

``NUMA_NUMPY_POLICY=POLICY``
    Every NumPy allocation of the process follows POLICY (the string form:
    ``interleave``, ``bind:1``, ``partitioned``, ...): the main thread's context
    enters the policy's scope before the program's first line, and every thread
    started through ``threading`` (thread pools included) enters it before its
    first line. A policy that does not parse, or names nodes this machine does
    not have, prints one line on stderr and the program runs unplaced.
``NUMA_NUMPY_PARALLEL=1``
    NumPy's large ufunc calls split over workers pinned per node (``numa_numpy._compute.loops``).
``NUMA_NUMPY_REPORT=1`` or ``NUMA_NUMPY_REPORT=FILE``
    At exit, the per-node report (`numa_numpy._frontends.report`) on stderr, and
    as JSON into FILE. Only the first Python process that sees the variable
    reports: it names itself in ``NUMA_NUMPY_REPORT_PID`` for its children.

The same session state serves the ``%numa_policy`` line magic
(`set_session_policy`, `set_parallel_mode`).
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .._alloc.handler import active_handler
from .._alloc.scope import PolicyScope, policy
from .._policies.policy import Policy, as_policy, validate
from ..errors import NumaError

__all__ = [
    "ENV_POLICY",
    "ENV_PARALLEL",
    "ENV_REPORT",
    "ENV_REPORT_PID",
    "activate",
    "parse_policy",
    "session_policy",
    "set_session_policy",
    "set_parallel_mode",
]

ENV_POLICY = "NUMA_NUMPY_POLICY"
ENV_PARALLEL = "NUMA_NUMPY_PARALLEL"
ENV_REPORT = "NUMA_NUMPY_REPORT"
ENV_REPORT_PID = "NUMA_NUMPY_REPORT_PID"
ACCEPTED = (
    "MODE or MODE:NODES with MODE one of bind, preferred, preferred-many, interleave, "
    "weighted-interleave, partitioned, local, default (e.g. interleave, bind:0, "
    "interleave:0-3, partitioned)"
)


class _Session:
    """What this process runs under: the scope every context and new thread
    enters, whether the loops run in parallel, and what happened on the way
    (for the report)."""

    scope: PolicyScope | None = None
    parallel: bool = False
    events: list[str] = []
    activated: bool = False  # site runs a venv's .pth files twice (venv(), then main())


def parse_policy(text: str) -> Policy:
    """The policy `text` names, checked against this machine.

    Parameters
    ----------
    text : str
        The string form of a policy (``interleave``, ``bind:1``, ``partitioned``).

    Returns
    -------
    Policy

    Raises
    ------
    InvalidPolicyError, InvalidNodeError, NumaUnavailableError
        The text does not parse, names nodes this machine lacks, or a mode its
        kernel lacks.

    Examples
    --------
    >>> from numa_numpy._frontends.startup import parse_policy
    >>> parse_policy("interleave")
    Interleave()
    >>> parse_policy("nodes:0")
    Traceback (most recent call last):
    ...
    numa_numpy.InvalidPolicyError: unknown policy 'nodes' in 'nodes:0'; known: ...
    """
    chosen = as_policy(text)
    validate(chosen)
    return chosen


def session_policy() -> Policy | None:
    """The policy the whole process (or the IPython session) runs under, or None.

    Examples
    --------
    >>> from numa_numpy._frontends.startup import session_policy
    >>> session_policy() is None
    True
    """
    return None if _Session.scope is None else _Session.scope.policy


def _enter_here(scope: PolicyScope) -> None:
    """Enter `scope` in the calling context unless its handler is current here."""
    if active_handler() is not scope.handler:
        scope.__enter__()  # never exited: the layer lives in this context


def _leave_here(scope: PolicyScope) -> None:
    """Leave `scope` in the calling context if it is the innermost one here."""
    if active_handler() is scope.handler:
        scope.__exit__(None, None, None)


def set_session_policy(chosen: Policy | str | None) -> PolicyScope | None:
    """Make `chosen` the policy of the calling context and of every thread
    started from now on (None: back to NumPy's own allocator).

    Parameters
    ----------
    chosen : Policy, str or None
        The policy, or None to stop.

    Returns
    -------
    PolicyScope or None
        The scope now in force.

    Raises
    ------
    NumaError
        A policy that does not parse, or that the kernel refuses in strict mode;
        nothing changes then.

    Examples
    --------
    >>> import numpy as np
    >>> import numa_numpy as nn
    >>> from numa_numpy._frontends.startup import set_session_policy
    >>> _ = set_session_policy("bind:0")
    >>> nn.placement(np.ones(1 << 16)).requested
    Bind(0)
    >>> set_session_policy(None)
    >>> nn.current_policy() is None
    True
    """
    if isinstance(chosen, str):
        chosen = parse_policy(chosen)
    new = None if chosen is None else policy(chosen)
    if new is not None:
        _ = new.handler  # made and probed now: a refusal raises before anything changes
    old = _Session.scope
    if old is not None:
        _leave_here(old)
    _Session.scope = new
    if new is not None:
        _enter_here(new)
        _install_thread_hook()
    return new


def enter_session_here() -> None:
    """Enter the session's scope in the calling context, if there is one and it
    is not current here (an IPython cell run in a fresh copy of the context)."""
    scope = _Session.scope
    if scope is not None:
        _enter_here(scope)


def _install_thread_hook() -> None:
    """Every `threading.Thread` enters the session's scope before its first line
    (its own scopes, initializers and `propagate` still apply inside)."""
    original: Callable[[threading.Thread], None] = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]
    if getattr(original, "numa_numpy_hook", False):
        return

    def _bootstrap_inner(self: threading.Thread) -> None:
        scope = _Session.scope
        if scope is not None:
            try:
                scope.__enter__()
            except Exception as exc:  # the thread runs, unplaced, and says why
                print(f"numa_numpy: thread {self.name} runs unplaced: {exc}", file=sys.stderr)
        original(self)

    _bootstrap_inner.numa_numpy_hook = True  # type: ignore[attr-defined]
    threading.Thread._bootstrap_inner = _bootstrap_inner  # type: ignore[attr-defined]


def set_parallel_mode(on: bool) -> bool:
    """Split NumPy's large ufunc calls over the pinned workers (on=True) or not; False when this
    build has no parallel loops (a message on stderr says so).

    Parameters
    ----------
    on : bool
        Parallel mode on or off.

    Returns
    -------
    bool
        Whether the mode is now as asked.

    Examples
    --------
    >>> from numa_numpy._frontends.startup import set_parallel_mode
    >>> set_parallel_mode(False) in (True, False)
    True
    """
    try:
        # imported by name, at call time: the parallel loops are an optional part
        loops: Any = importlib.import_module("numa_numpy._compute.loops")
    except ImportError as exc:
        if on:
            _say(
                "numa_numpy: parallel mode is not available in this build "
                f"(numa_numpy._compute.loops: {exc}); NumPy's own loops run"
            )
        _Session.parallel = False
        return not on
    loops.set_parallel(on)
    _Session.parallel = on
    return True


def _say(message: str) -> None:
    print(message, file=sys.stderr)
    _Session.events.append(message)


def _activate_policy(text: str) -> None:
    try:
        set_session_policy(parse_policy(text))
    except (NumaError, ValueError, TypeError) as exc:
        _say(
            f"numa_numpy: {ENV_POLICY}={text!r} is not a policy here ({exc}); "
            f"accepted: {ACCEPTED}. The program runs unplaced"
        )
    else:
        _Session.events.append(f"policy {text} set for the process and its threads")


def _report_at_exit(destination: str) -> None:
    from .report import write_report  # imported only by a process that reports

    write_report(
        destination, policy=session_policy(), parallel=_Session.parallel, events=_Session.events
    )


def _claim_report(environ: Mapping[str, str]) -> str | None:
    """The report's destination ('' for stderr only) if this process reports."""
    destination = environ.get(ENV_REPORT, "")
    if not destination:
        return None
    owner = environ.get(ENV_REPORT_PID)
    if owner is not None and owner != str(os.getpid()):
        return None  # a child of the process that reports
    os.environ[ENV_REPORT_PID] = str(os.getpid())
    return "" if destination == "1" else destination


def activate(environ: Mapping[str, str] | None = None) -> None:
    """Apply ``NUMA_NUMPY_POLICY``, ``_PARALLEL`` and ``_REPORT`` (the startup
    hook calls this). Never raises: a problem is one line on stderr.

    Parameters
    ----------
    environ : mapping, optional
        The variables (default: ``os.environ``).

    Examples
    --------
    >>> from numa_numpy._frontends.startup import activate
    >>> activate({})                   # nothing set: nothing happens
    """
    if environ is None:
        if _Session.activated:
            return
        _Session.activated = True
        environ = os.environ
    try:
        text = environ.get(ENV_POLICY, "").strip()
        if text:
            _activate_policy(text)
        if environ.get(ENV_PARALLEL, "") not in ("", "0"):
            set_parallel_mode(True)
        destination = _claim_report(environ)
        if destination is not None:
            atexit.register(_report_at_exit, destination)
    except Exception as exc:  # the program runs whatever happens here
        print(f"numa_numpy: startup hook failed: {type(exc).__name__}: {exc}", file=sys.stderr)
