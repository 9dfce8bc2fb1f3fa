"""The bridge to NumPy's allocator (NEP 49): the name NumPy reports for our
handler, how to ask NumPy which handler made an array, and the ContextVar in
which NumPy keeps the current handler.

Everything here depends on NumPy's internals; when a NumPy release moves them,
this is the one file to change.
"""

from __future__ import annotations

import contextvars
from typing import Any

import numpy as np

from .._kernel.arena import handler_install, handler_restore
from ..errors import NumaUnavailableError

__all__ = ["HANDLER_NAME", "get_handler_name", "numpy_handler_var", "capsule_object"]

HANDLER_NAME = "numa_numpy"

# NumPy 2 keeps it in numpy._core; NumPy 1 in numpy.core
_multiarray: Any = getattr(np, "_core", None) or np.core
get_handler_name: Any = _multiarray.multiarray.get_handler_name


# NumPy keeps the current handler in a ContextVar named "current_allocator"
# (NumPy >= 1.22) that it does not export. Once found, scopes set and reset it
# from Python with tokens: exact nesting per thread and task, at a third of the
# cost of two calls into C.
numpy_handler_var: contextvars.ContextVar[Any] | None = None


def capsule_object(capsule: Any) -> Any:
    """Install the capsule through NumPy's C API in a throwaway context and read
    it back from NumPy's ContextVar (cffi cannot hand out PyObject *)."""
    global numpy_handler_var

    def install_and_read() -> Any:
        global numpy_handler_var
        previous = handler_install(capsule)
        if previous is None:
            raise NumaUnavailableError("NumPy did not accept the numa_numpy handler")
        try:
            for var, value in contextvars.copy_context().items():
                if var.name == "current_allocator":
                    numpy_handler_var = var
                    return value
        finally:
            handler_restore(previous)
        raise NumaUnavailableError(
            "this NumPy keeps its allocator somewhere numa_numpy does not know"
        )

    return contextvars.copy_context().run(install_and_read)
