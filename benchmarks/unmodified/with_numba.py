"""Numba: one `@njit(parallel=True)` loop over `prange` per expression.

The warm-up call compiles (or loads the on-disk cache), so compilation is not
timed. Threads: one per CPU. The operands, timing and output are plain.py's.
"""

import os
import sys

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plain import measure  # noqa: E402


@njit(parallel=True, cache=True)
def axpy(a, b):
    out = np.empty_like(a)
    for i in prange(a.shape[0]):
        out[i] = a[i] + 3.0 * b[i]
    return out


@njit(parallel=True, cache=True)
def hypot(a, b):
    out = np.empty_like(a)
    for i in prange(a.shape[0]):
        out[i] = np.sqrt(a[i] * a[i] + b[i] * b[i])
    return out


@njit(parallel=True, cache=True)
def total(a, b):
    s = 0.0
    for i in prange(a.shape[0]):
        s += a[i]
    return s


@njit(parallel=True, cache=True)
def mul(a, b):
    out = np.empty_like(a)
    for i in prange(a.shape[0]):
        out[i] = a[i] * b[i]
    return out


EXPRESSIONS = {"axpy": axpy, "hypot": hypot, "sum": total, "mul": mul}

if __name__ == "__main__":
    numba.set_num_threads(min(os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS))
    measure(
        EXPRESSIONS,
        extra=lambda: {
            "numba": numba.__version__,
            "threads": numba.get_num_threads(),
            "threading_layer": numba.threading_layer(),
        },
    )
