"""Node-parallel ufunc loops: what they cost when they do not split, what one
split costs, and from which size splitting pays (the default threshold).

Run: ``python benchmarks/loops_overhead.py [--quick]``. Every figure is a
ratio against plain NumPy measured in the same run (min of repeats):

1. fast path: ``np.add`` on 8 KiB (1024 float64) and on 64 elements, in a
   process where the loops are not replaced (NumPy's own) and in one where
   they are replaced with parallel mode off / on with a high threshold;
2. hand-off: one job of one empty piece per worker (nn_workers_run), in us;
3. crossover: ``np.add(a, b, out=o)`` and ``np.sqrt(a, out=o)`` with and
   without splitting for n = 2**12 .. 2**24 float64 elements.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

FAST_PATH = r"""
import json, sys, time
import numpy as np
mode = sys.argv[1]
if mode != "numpy":
    import numa_numpy as nn
    nn.set_parallel(mode == "on", threshold=1 << 30)
out = {}
for n in (64, 1024):
    a, b, o = np.ones(n), np.ones(n), np.empty(n)
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(20000):
            np.add(a, b, out=o)
        best = min(best, (time.perf_counter() - t) / 20000)
    out[n] = best * 1e9
print(json.dumps(out))
"""


def fast_path() -> None:
    figures = {}
    for mode in ("numpy", "off", "on"):
        done = subprocess.run([sys.executable, "-c", FAST_PATH, mode], capture_output=True,
                              text=True, check=True)
        figures[mode] = json.loads(done.stdout)
    print("1. fast path (np.add, out=, ns per call; ratio to NumPy's own loops)")
    for n in ("64", "1024"):
        base = figures["numpy"][n]
        print(f"   n={n:>5}: numpy {base:7.1f} ns | replaced, off {figures['off'][n]:7.1f} ns "
              f"({figures['off'][n] / base:.3f}x) | replaced, on below threshold "
              f"{figures['on'][n]:7.1f} ns ({figures['on'][n] / base:.3f}x)")


def best_of(fn, repeat: int, number: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def hand_off() -> None:
    from numa_numpy._compute import loops as public
    from numa_numpy._kernel import loops

    public.set_parallel(True)
    k = loops.worker_count()
    seconds = best_of(lambda: loops.selftest(k), 7, 2000)
    print(f"2. hand-off: one job of {k} empty pieces on {k} workers: {seconds * 1e6:.1f} us")
    public.set_parallel(False)


def crossover(quick: bool) -> None:
    import numpy as np

    import numa_numpy as nn

    print("3. crossover (time split / time whole; < 1: splitting pays)")
    nn.set_parallel(False)
    for e in range(12, 23 if quick else 25, 2):
        n = 1 << e
        a, b, o = np.random.default_rng(0).random(n), np.ones(n), np.empty(n)
        number = max(1, (1 << 22) // n)
        row = []
        calls = {
            "add": lambda a=a, b=b, o=o: np.add(a, b, out=o),
            "sqrt": lambda a=a, o=o: np.sqrt(a, out=o),
        }
        for name, fn in calls.items():
            with nn.parallel(False):
                whole = best_of(fn, 5, number)
            with nn.parallel(threshold=1):
                split = best_of(fn, 5, number)
            row.append(f"{name} {split / whole:5.2f}x ({whole * 1e6:9.1f} us whole)")
        print(f"   n=2**{e:<2}: " + " | ".join(row))


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    fast_path()
    hand_off()
    crossover(quick)
