"""IPython/Jupyter magics: ``%load_ext numa_numpy``.

``%%numa POLICY [--strict] [--prefault MODE] [--huge-pages MODE] [--thread]``
    Run the cell inside ``numa_numpy.policy(POLICY, ...)``: every NumPy
    allocation the cell makes (constructors, ufunc outputs, temporaries,
    copies) follows POLICY, given in the string form (``bind:1``,
    ``interleave:0-3``, ``preferred:2``, ``local``). The scope is left when the
    cell ends, also when it raises. The value of the cell's last expression is
    displayed as usual (it is computed inside the scope).

``%numa_policy POLICY [--parallel]`` and ``%numa_policy off``
    For the rest of the session (every later cell, and every thread started
    from now on), NumPy allocates under POLICY, as ``numa-numpy run --policy``
    places a whole program; ``--parallel`` also runs NumPy's loops on the node
    teams. ``off`` gives NumPy its own allocator back (and parallel mode off).
    A ``%%numa`` cell still runs under its own policy.

``%numa_placement EXPR``
    Evaluate EXPR in the user namespace and return ``numa_numpy.placement`` of
    its value: in Jupyter it shows as a table of pages per node.

A bad policy raises numa_numpy's own exception (``InvalidNodeError``,
``InvalidPolicyError``, ``NumaUnavailableError``, ``PolicyNotEnforcedError``
with ``--strict``) before any line of the cell runs.

IPython is imported only when the extension is loaded (numa_numpy does not
depend on it), and only at run time, so type checking needs no IPython either.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import shlex
from typing import Any, NoReturn

from .._alloc.scope import policy
from .._ranges.placement import placement
from ..errors import NumaError
from .startup import enter_session_here, session_policy, set_parallel_mode, set_session_policy

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def _ipython(module: str) -> Any:
    return importlib.import_module(f"IPython.{module}")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad magic line as IPython's UsageError."""

    def error(self, message: str) -> NoReturn:
        raise _ipython("core.error").UsageError(f"{self.prog}: {message}\n{self.format_usage()}")


def _parser() -> _Parser:
    parser = _Parser(
        prog="%%numa",
        add_help=False,
        allow_abbrev=False,
        description="Run the cell with every NumPy allocation under a NUMA "
        "policy (numa_numpy.policy).",
    )
    parser.add_argument(
        "policy",
        help="the policy in its string form: bind:1, "
        "interleave:0-3, interleave, preferred:2, preferred-many:0-1, "
        "weighted-interleave, local, default",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="raise PolicyNotEnforcedError instead of warning when the "
        "kernel does not enforce the policy",
    )
    parser.add_argument(
        "--prefault", default="none", metavar="MODE", help="none (default), touch or parallel"
    )
    parser.add_argument(
        "--huge-pages",
        "--huge_pages",
        dest="huge_pages",
        default="auto",
        metavar="MODE",
        help="auto (default), none, transparent, 2mb or 1gb",
    )
    parser.add_argument(
        "--thread",
        action="store_true",
        help="also set the thread's own policy (set_mempolicy) for allocations outside NumPy",
    )
    return parser


_PARSER = _parser()


def _line_parser() -> _Parser:
    parser = _Parser(
        prog="%numa_policy",
        add_help=False,
        allow_abbrev=False,
        description="Every NumPy allocation of the rest of the session (later cells, "
        "new threads) under a NUMA policy; 'off' to stop.",
    )
    parser.add_argument("policy", help="the policy in its string form (bind:1, interleave), or off")
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="also split large ufunc calls over workers pinned per node",
    )
    return parser


_LINE_PARSER = _line_parser()


class _Magics:
    """The magics of one shell, registered as plain functions."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self._hooked = False  # pre_run_cell registered (by %numa_policy)

    def numa(self, line: str, cell: str) -> Any:
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame
        try:
            words = shlex.split(line)
        except ValueError as exc:
            _PARSER.error(str(exc))
        args = _PARSER.parse_args(words)
        body, last = self._compile(cell)
        glob, loc = self.shell.user_global_ns, self.shell.user_ns
        try:
            scope = policy(
                args.policy,
                strict=args.strict,
                huge_pages=args.huge_pages,
                prefault=args.prefault,
                thread=args.thread,
            )
            scope.__enter__()  # makes and probes the handler: a bad policy raises here
        except NumaError as exc:
            # numa_numpy's own exception and message, without the frames of the
            # package's internals in the notebook's traceback
            raise exc.with_traceback(None) from None
        try:
            exec(body, glob, loc)
            value = eval(last, glob, loc) if last is not None else None
        finally:
            scope.__exit__(None, None, None)
        # IPython's own ';' check sees the %%numa call, not the cell: do it here
        return None if _ends_with_semicolon(cell) else value

    def numa_policy(self, line: str) -> Any:
        """%numa_policy POLICY [--parallel] | off: the policy of every later cell
        and every new thread; returns the policy now in force (None: off)."""
        __tracebackhide__ = True  # noqa: F841
        try:
            words = shlex.split(line)
        except ValueError as exc:
            _LINE_PARSER.error(str(exc))
        args = _LINE_PARSER.parse_args(words)
        if args.policy.lower() == "off":
            set_session_policy(None)
            set_parallel_mode(False)
            return None
        try:
            set_session_policy(args.policy)
        except NumaError as exc:  # as %%numa: our message, not our frames
            raise exc.with_traceback(None) from None
        set_parallel_mode(args.parallel)
        self._hook_cells()
        return session_policy()

    def _hook_cells(self) -> None:
        """Before each cell: enter the session's policy where the cell runs (a
        kernel may run each cell in a fresh copy of the context)."""
        if not self._hooked:
            self.shell.events.register("pre_run_cell", self._pre_run_cell)
            self._hooked = True

    def _pre_run_cell(self, info: Any = None) -> None:
        enter_session_here()

    def unhook(self) -> None:
        if self._hooked:
            self.shell.events.unregister("pre_run_cell", self._pre_run_cell)
            self._hooked = False

    def numa_placement(self, line: str) -> Any:
        """%numa_placement EXPR: where the pages of EXPR's value are
        (numa_numpy.placement); shown as a table in Jupyter."""
        __tracebackhide__ = True  # noqa: F841
        expr = line.strip()
        if not expr:
            raise _ipython("core.error").UsageError(
                "%numa_placement needs an expression, e.g. %numa_placement a"
            )
        return placement(self.shell.ev(expr))

    def _compile(self, cell: str) -> tuple[Any, Any]:
        """(code of the cell without its last expression, code of that expression
        or None), compiled as IPython compiles cells: IPython syntax (%magics,
        !shell) transformed, AST transformers applied, and the source cached so
        that tracebacks show the cell's lines."""
        shell = self.shell
        # one blank line for the %%numa line, so line numbers match the cell's
        source = "\n" + shell.transform_cell(cell)
        filename = shell.compile.cache(source, shell.execution_count, raw_code=cell)
        tree = shell.transform_ast(shell.compile.ast_parse(source, filename=filename))
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = shell.compile(ast.Expression(tree.body.pop().value), filename, "eval")
        body = shell.compile(ast.Module(tree.body, type_ignores=[]), filename, "exec")
        return body, last


_Magics.numa.__doc__ = (
    "Run the cell with every NumPy allocation under a NUMA policy.\n\n"
    "Example::\n\n"
    "    %%numa bind:0 --prefault touch\n"
    "    a = np.ones(10_000_000)\n"
    "    b = np.sqrt(a * 2.0)     # output and temporaries on node 0\n\n" + _PARSER.format_help()
)


def _ends_with_semicolon(cell: str) -> bool:
    """Whether the cell ends with ';' (IPython's sign to display nothing)."""
    try:
        return bool(_ipython("core.displayhook").DisplayHook.semicolon_at_end_of_expression(cell))
    except Exception:  # not tokenizable (IPython syntax): display as usual
        return False


_LOADED: dict[int, _Magics] = {}  # id(shell) -> the magics registered there

_KINDS = {"numa": "cell", "numa_policy": "line", "numa_placement": "line"}


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%numa``, ``%numa_policy`` and ``%numa_placement``
    (``%load_ext numa_numpy``)."""
    if id(ipython) in _LOADED:
        return
    magics = _Magics(ipython)
    for name, kind in _KINDS.items():
        ipython.register_magic_function(getattr(magics, name), magic_kind=kind, magic_name=name)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics again (``%unload_ext numa_numpy``)."""
    magics = _LOADED.pop(id(ipython), None)
    if magics is None:
        return
    magics.unhook()
    manager = ipython.magics_manager
    for name, kind in _KINDS.items():
        # only where it is still ours (another extension may have replaced it)
        if getattr(manager.magics[kind].get(name), "__self__", None) is magics:
            del manager.magics[kind][name]
            if getattr(getattr(manager.user_magics, name, None), "__self__", None) is magics:
                delattr(manager.user_magics, name)
