"""The compiled extension, loaded once. Only numa_numpy's modules import this."""

from pathlib import Path

try:
    from ._numa import ffi, lib
except ModuleNotFoundError as exc:  # pragma: no cover - exercised in a subprocess
    if exc.name != f"{__package__}._numa":
        raise
    _here = Path(__file__).resolve().parent
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
