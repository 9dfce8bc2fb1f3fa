"""IPython/Jupyter magics: ``%load_ext numa_numpy``.

``%%numa POLICY [--strict] [--prefault MODE] [--huge-pages MODE] [--thread]``
    Run the cell inside ``numa_numpy.policy(POLICY, ...)``: every NumPy
    allocation the cell makes (constructors, ufunc outputs, temporaries,
    copies) follows POLICY, given in the string form (``bind:1``,
    ``interleave:0-3``, ``preferred:2``, ``local``). The scope is left when the
    cell ends, also when it raises. The value of the cell's last expression is
    displayed as usual (and computed inside the scope).

``%numa_placement EXPR``
    Evaluate EXPR in the user namespace and return ``numa_numpy.placement`` of
    its value: in Jupyter it shows as a table of pages per node.

A bad policy raises numa_numpy's own exception (``InvalidNodeError``,
``InvalidPolicyError``, ``NumaUnavailableError``, ``PolicyNotEnforcedError``
with ``--strict``) before any line of the cell runs.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

_LOADED: dict[int, Any] = {}  # id(shell) -> the NumaMagics instance registered there


def _magics_class() -> type:
    # IPython is imported only when the extension is loaded: numa_numpy itself
    # does not depend on it.
    from IPython.core import magic_arguments
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

    @magics_class
    class NumaMagics(Magics):
        """The numa_numpy magics."""

        @magic_arguments.magic_arguments()
        @magic_arguments.argument(
            "policy",
            help="the policy in its string form: bind:1, interleave:0-3, interleave, "
                 "preferred:2, preferred-many:0-1, weighted-interleave, local, default",
        )
        @magic_arguments.argument(
            "--strict", action="store_true",
            help="raise (PolicyNotEnforcedError) instead of warning when the kernel "
                 "does not enforce the policy",
        )
        @magic_arguments.argument(
            "--prefault", default="none", metavar="MODE",
            help="none (default), touch or parallel",
        )
        @magic_arguments.argument(
            "--huge-pages", "--huge_pages", dest="huge_pages", default="auto", metavar="MODE",
            help="auto (default), none, transparent, 2mb or 1gb",
        )
        @magic_arguments.argument(
            "--thread", action="store_true",
            help="also set the thread's own policy (set_mempolicy) for allocations "
                 "outside NumPy",
        )
        @cell_magic
        def numa(self, line: str, cell: str) -> Any:
            """Run the cell with every NumPy allocation under a NUMA policy.

            Example::

                %%numa bind:0 --prefault touch
                a = np.ones(10_000_000)
                b = np.sqrt(a * 2.0)     # output and temporaries on node 0
            """
            __tracebackhide__ = True  # noqa: F841 - IPython hides this frame
            import numa_numpy

            args = magic_arguments.parse_argstring(self.numa, line)
            body, last = self._compile(cell)
            glob, loc = self.shell.user_global_ns, self.shell.user_ns
            try:
                scope = numa_numpy.policy(args.policy, strict=args.strict,
                                          huge_pages=args.huge_pages, prefault=args.prefault,
                                          thread=args.thread)
                scope.__enter__()  # makes and probes the handler: a bad policy raises here
            except numa_numpy.NumaError as exc:
                # The package's own exception and message, without the frames of
                # numa_numpy's internals in the notebook's traceback.
                raise exc.with_traceback(None) from None
            try:
                exec(body, glob, loc)
                value = eval(last, glob, loc) if last is not None else None
            finally:
                scope.__exit__(None, None, None)
            # IPython's own ';' check sees the %%numa call, not the cell: do it here
            return None if _ends_with_semicolon(cell) else value

        @line_magic
        def numa_placement(self, line: str) -> Any:
            """``%numa_placement EXPR``: where the pages of EXPR's value are
            (numa_numpy.placement), shown as a table in Jupyter."""
            __tracebackhide__ = True  # noqa: F841
            import numa_numpy

            expr = line.strip()
            if not expr:
                raise UsageError("%numa_placement needs an expression, e.g. %numa_placement a")
            return numa_numpy.placement(self.shell.ev(expr))

        def _compile(self, cell: str) -> tuple[Any, Any]:
            """(code of the cell without its last expression, code of that
            expression or None), compiled the way IPython compiles cells: IPython
            syntax (%magics, !shell) transformed, AST transformers applied, and the
            source cached so tracebacks show the cell's lines."""
            shell = self.shell
            # one blank line for the %%numa line, so line numbers match the cell
            source = "\n" + shell.transform_cell(cell)
            filename = shell.compile.cache(source, shell.execution_count, raw_code=cell)
            tree = shell.compile.ast_parse(source, filename=filename)
            tree = shell.transform_ast(tree)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last_expr = ast.Expression(tree.body.pop().value)
                last = shell.compile(last_expr, filename, "eval")
            body = shell.compile(ast.Module(tree.body, type_ignores=[]), filename, "exec")
            return body, last

    return NumaMagics


def _ends_with_semicolon(cell: str) -> bool:
    """Whether the cell ends with ';' (IPython's sign to display nothing)."""
    from IPython.core.displayhook import DisplayHook

    try:
        return bool(DisplayHook.semicolon_at_end_of_expression(cell))
    except Exception:  # untokenizable (IPython syntax): display as usual
        return False


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%numa`` and ``%numa_placement`` (``%load_ext numa_numpy``)."""
    if id(ipython) in _LOADED:
        return
    magics = _magics_class()(shell=ipython)
    ipython.register_magics(magics)
    _LOADED[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics again (``%unload_ext numa_numpy``)."""
    magics = _LOADED.pop(id(ipython), None)
    if magics is None:
        return
    manager = ipython.magics_manager
    for kind, names in magics.magics.items():
        table = manager.magics.get(kind, {})
        for name in names:
            # only if it is still ours (another extension may have replaced it)
            if getattr(table.get(name), "__self__", None) is magics:
                del table[name]
    if manager.registry.get(type(magics).__name__) is magics:
        del manager.registry[type(magics).__name__]
