"""The compiled extension, loaded once. Only numa_numpy's modules import this."""

from pathlib import Path

try:
    from .._numa import ffi, lib
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess
    if exc.name != "numa_numpy._numa":
        raise
    _here = Path(__file__).resolve().parent.parent  # the package folder
    if (_here.parent / "_build_cffi.py").exists():
        # Like NumPy from its source directory: say why, and what to do.
        raise ImportError(
            f"numa_numpy is being imported from its source tree ({_here.parent}), whose C "
            "extension numa_numpy._numa is not built. Python put the current directory "
            "first on sys.path (python -m, python -c, the REPL): run from another "
            "directory to use the installed numa_numpy, use the `numa-numpy` command, "
            "or build the extension in place with `pip install -e .`"
        ) from None
    raise ImportError(
        f"numa_numpy's C extension numa_numpy._numa is missing from {_here}: "
        "reinstall numa_numpy (pip install --force-reinstall numa_numpy)"
    ) from None

__all__ = ["ffi", "lib"]


# --- C return codes -> exceptions ------------------------------------------------
# Every nn_* function returns -errno and notes which step failed in a per-thread
# slot (nn_last_step); this is the one place that turns that into the name of the
# call that failed (the names are the C layer's: nn_step_name).


def failed_step(default: str = "an unknown step") -> str:
    """The call that failed last in this thread's nn_* calls (`default` if none)."""
    name = lib.nn_step_name(lib.nn_last_step())
    return ffi.string(name).decode() if name != ffi.NULL else default


def clear_step() -> None:
    """Forget the last failure, before a call whose failure is read afterwards."""
    lib.nn_clear_step()


def check(rc: int, what: str, exc: type[Exception] | None = None, **details: object) -> int:
    """`rc` when >= 0; else raise `exc` (NumaError by default) saying `what`
    failed, with the errno and the exact step the C side reported."""
    if rc >= 0:
        return rc
    raise error(-rc, what, exc, **details)


def error(err: int, what: str, exc: type[Exception] | None = None, **details: object) -> Exception:
    """The exception for errno `err` of the step that failed last in this thread."""
    from ..errors import NumaError, describe_errno

    step = failed_step()
    cls = exc or NumaError
    message = f"{what}: {describe_errno(err, step)}"
    if issubclass(cls, NumaError):
        return cls(message, errno=err, step=step, **details)
    return cls(message)
