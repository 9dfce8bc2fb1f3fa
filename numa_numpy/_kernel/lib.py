"""The compiled extension, loaded once. Only numa_numpy's modules import this."""

import errno as _errno
from pathlib import Path
from typing import Any

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


def check(
    rc: int,
    what: str = "",
    exc: type[Exception] | None = None,
    *,
    step: str | None = None,
    fallback: str = "an unknown step",
    **details: object,
) -> int:
    """`rc` when >= 0; else raise `exc` (NumaError by default) saying `what`
    failed, with the errno and the exact step the C side reported."""
    if rc >= 0:
        return rc
    raise error(-rc, what, exc, step=step, fallback=fallback, **details)


def error(
    err: int,
    what: str = "",
    exc: type[Exception] | None = None,
    *,
    step: str | None = None,
    fallback: str = "an unknown step",
    **details: object,
) -> Exception:
    """The exception for errno `err`: of `step` when the caller knows the call
    (an OSError of its own), else of the step that failed last in this thread
    (`fallback` if none). Without `what` the message is the errno's words alone,
    for a caller to put in its own context (`rephrase`). The exception carries
    ``errno``, ``errno_name`` and ``step``."""
    from ..errors import NumaError, describe_errno

    step = step or failed_step(fallback)
    cls = exc or NumaError
    words = describe_errno(err, step)
    message = f"{what}: {words}" if what else words
    if issubclass(cls, NumaError):
        name = _errno.errorcode.get(err, str(err))
        return cls(message, errno=err, errno_name=name, step=step, **details)
    return cls(message)


def rephrase(
    exc: Exception, what: str, cls: type[Exception] | None = None, **details: object
) -> Exception:
    """`exc` (raised by a wrapper here) in the caller's words: "`what`: why", as
    `cls`, keeping its errno and step."""
    from ..errors import NumaError

    cls = cls or type(exc)
    message = f"{what}: {exc}" if what else str(exc)
    if issubclass(cls, NumaError):
        kept = ("errno", "errno_name", "step")
        known = {k: getattr(exc, k) for k in kept if k not in details and hasattr(exc, k)}
        return cls(message, **known, **details)
    return cls(message)


def errno_of(exc: BaseException) -> int:
    """The errno an exception of ours (or an OSError) carries; 0 if none."""
    return int(getattr(exc, "errno", 0) or 0)


def errno_counts(counts: dict[int, int]) -> str:
    """How many of a batch (pages) failed with each errno: "3 EFAULT, 1 EBUSY"."""
    import errno as _errno

    return ", ".join(
        f"{count} {_errno.errorcode.get(code, str(code))}" for code, count in counts.items()
    )


# --- system calls used above the kernel layer -----------------------------------
# Each raises NumaError (errno, step) with the errno's words as its message; the
# caller puts it in its own context (`rephrase`) or lets it through.


def apply_binding(binding: Any, address: int, length: int, flags: int = 0) -> None:
    """mbind a range (and set its home node) as the binding struct says."""
    rc = lib.nn_apply_binding(binding, ffi.cast("void *", address), length, flags)
    check(rc, fallback="mbind")


def check_room(binding: Any, length: int) -> None:
    """Raise when the binding's nodes have not `length` bytes free (MemFree)."""
    check(lib.nn_check_room(binding, length))


def populate(address: int, length: int, page_size: int, plan: Any) -> None:
    """Fault a bound range in, as the prefault plan says."""
    check(lib.nn_populate(ffi.cast("void *", address), length, page_size, plan))


def move_range(address: int, npages: int, page_size: int, nodes: Any, status: Any) -> None:
    """move_pages for `npages` pages from `address`, page i to nodes[i % len]
    (int32 arrays); each page's node or -errno lands in `status`."""
    rc = lib.nn_move_range(
        ffi.cast("void *", address),
        npages,
        page_size,
        ffi.cast("int *", nodes.ctypes.data),
        nodes.size,
        0,
        ffi.cast("int *", status.ctypes.data),
    )
    check(rc, step="move_pages")


def set_mempolicy(mode: int, mask: Any, maxnode: int) -> None:
    """The calling thread's task policy."""
    check(lib.nn_set_mempolicy(mode, mask, maxnode), fallback="set_mempolicy")


def hugetlb_flags(huge: int) -> int:
    """The mmap flags (MAP_HUGETLB and the page size) of a huge-page kind."""
    return int(lib.nn_hugetlb_flags(huge))


def getcpu() -> tuple[int, int] | None:
    """(CPU, node) this thread runs on now; None where getcpu is refused."""
    cpu = ffi.new("unsigned *")
    node = ffi.new("unsigned *")
    if lib.nn_getcpu(cpu, node) < 0:
        return None
    return int(cpu[0]), int(node[0])
