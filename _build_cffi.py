"""Build numa_numpy._numa: one cffi out-of-line (API mode) extension.

The C sources and the cdef live as plain files in numa_numpy/_csrc/.
"""

import os
from pathlib import Path

import numpy
from cffi import FFI

# Built against NumPy 2's headers the module runs on NumPy 1.22+ too; built
# against NumPy 1's it cannot import (no PyArray_ImportNumPyAPI). pip's build
# isolation brings NumPy 2 (pyproject.toml's build requirements).
if int(numpy.__version__.split(".")[0]) < 2:
    raise RuntimeError(
        f"numa_numpy builds against NumPy >= 2.0's headers; this environment has NumPy "
        f"{numpy.__version__}: build without --no-build-isolation, or with numpy>=2 installed"
    )

CSRC = Path(__file__).resolve().parent / "numa_numpy" / "_csrc"
SOURCES = [
    "nn_syscalls.c",
    "nn_mapping.c",
    "nn_arena.c",
    "nn_small.c",
    "nn_large.c",
    "nn_cache.c",
    "nn_blocks.c",
    "nn_placement.c",
    "nn_handler.c",
    "nn_workers.c",
    "nn_ufunc.c",
    "nn_files.c",
]

# NumPy's headers do not compile under Py_LIMITED_API, which cffi sets by default.
extra_compile_args = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
extra_compile_args += os.environ.get("NUMA_NUMPY_CFLAGS", "").split()
extra_link_args = os.environ.get("NUMA_NUMPY_LDFLAGS", "").split()

ffibuilder = FFI()
ffibuilder.cdef((CSRC / "numa_numpy.cdef").read_text())
ffibuilder.set_source(
    "numa_numpy._numa",
    '#include "nn_syscalls.h"\n#include "nn_mapping.h"\n#include "nn_arena.h"\n'
    '#include "nn_placement.h"\n#include "nn_handler.h"\n#include "nn_workers.h"\n'
    '#include "nn_ufunc.h"\n#include "nn_files.h"\n',
    sources=[str((CSRC / name).relative_to(Path.cwd())) if CSRC.is_relative_to(Path.cwd())
             else str(CSRC / name) for name in SOURCES],
    include_dirs=[str(CSRC), numpy.get_include()],
    define_macros=[("_CFFI_NO_LIMITED_API", None)],
    py_limited_api=False,
    extra_compile_args=extra_compile_args,
    extra_link_args=extra_link_args,
    libraries=["pthread", "m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
