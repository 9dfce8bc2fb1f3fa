"""Plain NumPy: the script every runner executes unmodified.

    BENCH_EXPR=axpy BENCH_BYTES=16777216 BENCH_REPEAT=15 python plain.py

Nothing here knows about numa_numpy: `python plain.py` is NumPy's figure,
`numa-numpy run --parallel plain.py` ours, a PNumPy wrapper PNumPy's. It makes
two float64 operands of BENCH_BYTES bytes each, warms up, times BENCH_REPEAT
samples with time.perf_counter (a sample is `inner` calls, enough to last about
a millisecond; the per-call figure is reported) and prints one JSON line: the
median seconds per call, the samples, and what the result was (a digest of its
bytes, or the sum's value) so that the runner can compare results across tools.
"""

import hashlib
import json
import os
import statistics
import time

import numpy as np

EXPRESSIONS = {
    "axpy": lambda a, b: a + 3 * b,
    "hypot": lambda a, b: np.sqrt(a * a + b * b),
    "sum": lambda a, b: a.sum(),
    "mul": lambda a, b: a * b,
}


def outcome(result):
    """What the result was: the sum's value, or a digest of the array's bytes."""
    if np.ndim(result) == 0:
        return {"value": float(result), "digest": None}
    raw = np.ascontiguousarray(np.asarray(result)).view(np.uint8)
    return {"value": None, "digest": hashlib.blake2b(raw, digest_size=16).hexdigest()}


def operands(n):
    """The two operands every tool computes on (the same values everywhere)."""
    return np.linspace(1.0, 2.0, n), np.linspace(2.0, 0.5, n)


def measure(expressions, make=operands, extra=None):
    """Time expressions[BENCH_EXPR](a, b) on make(n) and print the JSON line
    (`extra`: more fields, or a function called after the timing that gives them)."""
    name = os.environ.get("BENCH_EXPR", "axpy")
    nbytes = int(os.environ.get("BENCH_BYTES", str(16 << 20)))
    repeat = int(os.environ.get("BENCH_REPEAT", "15"))
    a, b = make(nbytes // 8)
    f = expressions[name]
    result = f(a, b)  # warm-up: first touch of the output, thread start-up, compilation
    shortest = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        f(a, b)
        shortest = min(shortest, time.perf_counter() - t0)
    inner = max(1, int(1e-3 / max(shortest, 1e-9)))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            f(a, b)
        samples.append((time.perf_counter() - t0) / inner)
    line = {
        "expr": name,
        "bytes": nbytes,
        "inner": inner,
        "median_s": statistics.median(samples),
        "samples_s": samples,
        "numpy": np.__version__,
        **outcome(result),
        **((extra() if callable(extra) else extra) or {}),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    measure(EXPRESSIONS)
