"""The compiled extension, loaded once. Only numa_numpy's modules import this."""

import errno as _errno
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
# call that failed.

_STEPS = {
    lib.NN_STEP_MMAP: "mmap",
    lib.NN_STEP_MMAP_HUGETLB: "mmap(MAP_HUGETLB)",
    lib.NN_STEP_MBIND: "mbind",
    lib.NN_STEP_HOME_NODE: "set_mempolicy_home_node",
    lib.NN_STEP_ROOM: "the free-memory check of the bound nodes (MemFree in sysfs)",
    lib.NN_STEP_POPULATE: "madvise(MADV_POPULATE_WRITE)",
    lib.NN_STEP_HUGETLB_NODES: "the huge-page pool of the bound nodes",
    lib.NN_STEP_SET_MEMPOLICY: "set_mempolicy",
    lib.NN_STEP_GET_MEMPOLICY: "get_mempolicy",
    lib.NN_STEP_MOVE_PAGES: "move_pages",
    lib.NN_STEP_MIGRATE_PAGES: "migrate_pages",
    lib.NN_STEP_GETCPU: "getcpu",
    lib.NN_STEP_MUNMAP: "munmap",
}


def failed_step(default: str = "an unknown step") -> str:
    """The call that failed last in this thread's nn_* calls (`default` if none)."""
    return _STEPS.get(lib.nn_last_step(), default)


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
    """The exception for errno `err` of the step that failed last in this thread
    (``errno``, ``errno_name`` and ``step`` as its attributes)."""
    from ..errors import NumaError, describe_errno

    step = failed_step()
    cls = exc or NumaError
    message = f"{what}: {describe_errno(err, step)}"
    if issubclass(cls, NumaError):
        name = _errno.errorcode.get(err, str(err))
        return cls(message, errno=err, errno_name=name, step=step, **details)
    return cls(message)
