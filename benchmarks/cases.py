"""The benchmark cases: each function times one group of rows (see README.md)
and adds them to the Bench it is given."""

from __future__ import annotations

import ctypes
import functools
import gc
import itertools
import json
import mmap
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    MADV_HUGEPAGE,
    MADV_POPULATE_WRITE,
    NODE,
    PAGE,
    SIZES,
    THP,
    Bench,
    KiB,
    MiB,
    Row,
    Target,
    calibrate,
    describe_placement,
    fmt_size,
    interleaved,
    placement_check,
    timed_loop,
)

import numa_numpy as nn
from numa_numpy._ranges.region import buffer_address

# --------------------------------------------------------------------------- cases


def allocation_cases(bench: Bench, only: set[str]) -> None:
    sizes = [s for s in SIZES if not (bench.quick and s > 64 * MiB)]
    empty, zeros, rep_ = np.empty, np.zeros, itertools.repeat

    def make_empty(n: int) -> Callable[[int], None]:
        def loop(iterations: int) -> None:
            for _ in rep_(None, iterations):
                empty(n)

        return loop

    def make_zeros(n: int) -> Callable[[int], None]:
        def loop(iterations: int) -> None:
            for _ in rep_(None, iterations):
                zeros(n)

        return loop

    def make_fill(n: int) -> Callable[[int], None]:
        def loop(iterations: int) -> None:
            for _ in rep_(None, iterations):
                empty(n).fill(1.0)

        return loop

    def make_zfill(n: int) -> Callable[[int], None]:
        def loop(iterations: int) -> None:
            for _ in rep_(None, iterations):
                zeros(n).fill(1.0)

        return loop

    def zfilled(n: int) -> np.ndarray:
        a = np.zeros(n)
        a.fill(1.0)
        return a

    def filled(n: int) -> np.ndarray:
        a = np.empty(n)
        a.fill(1.0)
        return a

    ops: list[
        tuple[
            str,
            str,
            Callable[[int], Callable[[int], None]],
            Callable[[int], Target | None],
            Callable[[int], np.ndarray],
        ]
    ] = [
        (
            "empty",
            "np.empty(n)",
            make_empty,
            lambda s: Target("ratio<=", 1.10),
            lambda n: np.empty(n),
        ),
        (
            "zeros",
            "np.zeros(n)",
            make_zeros,
            lambda s: Target("ratio<=", 1.0) if s >= 64 * KiB else None,
            lambda n: np.zeros(n),
        ),
        ("fill", "np.empty(n).fill(1)", make_fill, lambda s: Target("ratio<=", 1.15), filled),
        # No target: shows what calloc's fresh mappings cost once the array is written.
        ("zfill", "np.zeros(n).fill(1)", make_zfill, lambda s: None, zfilled),
    ]
    for group, label, maker, target, make_one in ops:
        if group not in only:
            continue
        bench.log(f"{label} (float64)")
        for size in sizes:
            n = max(1, size // 8)
            nn.free_all_blocks()  # every case starts with an empty large-block cache
            gc.collect()
            reps = bench.reps if size < 64 * MiB else max(5, bench.reps // 2)
            loop = maker(n)
            a, b, iterations = bench.compare_loops(loop, loop, reps)
            placed = placement_check(functools.partial(make_one, n), bench.scope)
            bench.add(
                Row.paired(
                    group=group,
                    case=label,
                    size=fmt_size(size),
                    unit="s",
                    baseline_name="default",
                    target=target(size),
                    placed=placed,
                    baseline_samples=a,
                    numa_samples=b,
                    iterations=iterations,
                )
            )
        nn.free_all_blocks()


def cache_hazard_case(bench: Bench) -> None:
    """A pipeline that makes big zeros and then big scratch arrays: the freed
    calloc mappings fill the 64-slot cache, and later blocks of another size
    can no longer be cached."""
    bench.log("cache after a burst of zeros")
    n_small, n_big = MiB // 8, 4 * MiB // 8
    empty, zeros, rep_ = np.empty, np.zeros, itertools.repeat

    def burst() -> None:
        for _ in range(80):
            zeros(n_small)

    def loop(iterations: int) -> None:
        for _ in rep_(None, iterations):
            empty(n_big).fill(1.0)

    nn.free_all_blocks()
    burst()
    with bench.scope:
        burst()
    a, b, iterations = bench.compare_loops(loop, loop, bench.reps)
    stats = _stats()
    placed = placement_check(lambda: np.empty(n_big), bench.scope)
    bench.add(
        Row.paired(
            group="hazard",
            case="np.empty(n).fill(1) after 80x np.zeros(1 MiB)",
            size="4 MiB",
            unit="s",
            baseline_name="default",
            target=Target("ratio<=", 1.15),
            placed=placed,
            baseline_samples=a,
            numa_samples=b,
            iterations=iterations,
            note=f"numa cache after the burst: {stats.get('cached_bytes', 0) >> 20} MiB "
            "in 64 slots of 1 MiB mappings",
        )
    )
    nn.free_all_blocks()


def _stats() -> dict[str, Any]:
    for key, value in nn.memory_stats().items():
        if key.startswith(f"bind:{NODE} ") and "huge_pages=auto prefault=none" in key:
            return value
    return {}


RSS_SCRIPT = r"""
import gc, json, sys
import numpy as np
import numa_numpy as nn

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

count, elements = int(sys.argv[2]), int(sys.argv[3])
keep = [None] * count
scope = nn.on_node(0) if sys.argv[1] == "numa" else None
if scope is not None:
    scope.__enter__()
np.ones(elements); gc.collect(); gc.disable()
before = rss_kib()
for i in range(count):
    keep[i] = np.ones(elements)
after = rss_kib()
placed = "-"
if scope is not None:
    where = nn.placement(keep[count // 2])
    placed = "yes" if str(where.policy) == "bind:0" and where.nodes <= {0} else "NO"
    placed += f" ({where.policy})"
    scope.__exit__(None, None, None)
print(json.dumps({"delta_kib": after - before, "placed": placed}))
"""


def rss_case(bench: Bench) -> None:
    # (arrays, float64 elements, target): the 200k x np.ones(8) case carries the
    # project's target; the others show what size-class rounding costs at sizes
    # where the 16-byte block header pushes a power of two into the next class.
    cases = [(200_000, 8, Target("ratio<=", 1.15)), (100_000, 128, None), (25_000, 512, None)]
    for count, elements, target in cases:
        bench.log(f"RSS of {count} live np.ones({elements})")

        def run(variant: str, count: int = count, elements: int = elements) -> dict[str, Any]:
            out = subprocess.run(
                [sys.executable, "-c", RSS_SCRIPT, variant, str(count), str(elements)],
                check=True,
                capture_output=True,
                text=True,
            )
            result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
            return result

        results: dict[str, list[dict[str, Any]]] = {"default": [], "numa": []}
        a, b = interleaved(
            functools.partial(_run_keep, run, "default", results),
            functools.partial(_run_keep, run, "numa", results),
            3 if bench.quick else 5,
        )
        ma, mb = statistics.median(a), statistics.median(b)
        per = f"{ma * MiB / count:.0f} vs {mb * MiB / count:.0f} B per array"
        bench.add(
            Row.paired(
                group="rss",
                case=f"RSS of {count // 1000}k live np.ones({elements})",
                size=fmt_size(elements * 8),
                unit="MiB",
                baseline_name="default",
                target=target,
                placed=results["numa"][-1]["placed"],
                baseline_samples=a,
                numa_samples=b,
                note=per + " (data + ndarray object; fresh subprocess per run)",
            )
        )


# The loop of issue 15: 400 MiB allocated and freed once in each of four scopes,
# twice. Prints VmRSS (MiB) after each freed array, then after waiting
# sys.argv[2] seconds with nothing allocated (the cache's decay time).
LOOP_SCRIPT = r"""
import contextlib, json, sys, time
import numpy as np
MiB = 1 << 20

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

if sys.argv[1] == "numa":
    import numa_numpy as nn
    scopes = [nn.on_node(0), nn.interleaved(), nn.policy("preferred:0"), nn.policy("local")]
else:
    scopes = [contextlib.nullcontext()] * 4
after = []
for _ in range(2):
    for scope in scopes:
        with scope:
            a = np.ones(400 * MiB // 8)
        del a
        after.append(rss())
wait = float(sys.argv[2])
time.sleep(wait)
print(json.dumps({"after": after, "later": rss()}))
"""


def _decay_seconds() -> float:
    decay = nn.memory_stats().get("process", {}).get("decay_s")
    return 10.0 if decay is None else float(decay)


def freed_rss_case(bench: Bench) -> None:
    """RSS once a workload's arrays are all freed: at once (what the cache holds)
    and after the decay time with nothing allocated meanwhile (the target: back
    to NumPy's). One fresh subprocess per side: the wait dominates."""
    wait = _decay_seconds() + 1.0
    bench.log(f"RSS after the loop's arrays are freed (waits {wait:.0f} s)")
    out = {}
    for variant in ("default", "numa"):
        done = subprocess.run(
            [sys.executable, "-c", LOOP_SCRIPT, variant, str(wait)],
            check=True,
            capture_output=True,
            text=True,
        )
        out[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    d, n = out["default"], out["numa"]
    at_once_d, at_once_n = max(d["after"]), max(n["after"])
    bench.add(
        Row.compared(
            group="freed",
            case="RSS right after each of 8 freed 400 MiB arrays (max)",
            size="400 MiB",
            unit="MiB",
            baseline_name="default",
            baseline=at_once_d,
            numa=at_once_n,
            note="the issue's loop, no memory limit: what the cache holds before it decays "
            "(budget: 1/8 of the memory limit, at most 1 GiB; beyond 32 MiB MADV_FREE'd)",
        )
    )
    bench.add(
        Row.compared(
            group="freed",
            case=f"RSS {wait:.0f} s after the last array was freed",
            size="400 MiB",
            unit="MiB",
            baseline_name="default",
            baseline=d["later"],
            numa=n["later"],
            target=Target("ratio<=", 1.3),
            note=f"decay time {wait - 1:.0f} s; nothing allocated meanwhile; the rest of the "
            "gap is numa_numpy's own import (about 7 MiB)",
        )
    )


def cgroup_loop_case(bench: Bench) -> None:
    """The loop inside a 1200 MiB memory cgroup (created and removed here, as a
    container runtime would): both allocators must finish."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    try:
        from memcg import MemoryCgroup, Unavailable
    except ImportError:
        bench.log("cgroup: tests/memcg.py not found: skipped")
        return
    bench.log("the loop in a 1200 MiB memory cgroup")
    outcome: dict[str, tuple[float, str]] = {}
    try:
        for variant in ("default", "numa"):
            with MemoryCgroup.create(1200 << 20) as group:
                done = group.run(
                    LOOP_SCRIPT.replace("sys.argv[1]", repr(variant)).replace(
                        "float(sys.argv[2])", "0.0"
                    )
                )
                if done.returncode == 0:
                    after = json.loads(done.stdout.strip().splitlines()[-1])["after"]
                    outcome[variant] = (max(after), "finished")
                else:
                    kills = group.oom_kills()
                    outcome[variant] = (
                        float("inf"),
                        f"exit {done.returncode}, {kills} OOM kill(s)",
                    )
    except Unavailable as exc:
        bench.log(f"cgroup: no memory cgroup can be created here: {exc}")
        return
    (d, d_how), (n, n_how) = outcome["default"], outcome["numa"]
    bench.add(
        Row.compared(
            group="cgroup",
            case="the loop in a 1200 MiB memory cgroup: RSS after each free (max)",
            size="400 MiB",
            unit="MiB",
            baseline_name="default",
            baseline=d,
            numa=n,
            target=Target("ratio<=", 1.3),
            note=f"default: {d_how}; numa_numpy: {n_how}",
        )
    )


def _run_keep(
    run: Callable[[str], dict[str, Any]], variant: str, results: dict[str, list[dict[str, Any]]]
) -> float:
    result = run(variant)
    results[variant].append(result)
    return float(result["delta_kib"]) / 1024


class _NoOp:
    def __enter__(self) -> _NoOp:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _scope_loops(node: int) -> list[tuple[str, Callable[[int], None]]]:
    """`with ...: pass` loops for the forms users write, built inside the loop as in
    user code, and one scope object re-entered (what a pipeline stage does)."""
    rep_ = itertools.repeat
    text = f"bind:{node}"
    reused = nn.on_node(node)

    def constructed_on_node(iterations: int) -> None:
        for _ in rep_(None, iterations):
            with nn.on_node(node):
                pass

    def constructed_policy_text(iterations: int) -> None:
        for _ in rep_(None, iterations):
            with nn.policy(text):
                pass

    def constructed_policy_value(iterations: int) -> None:
        for _ in rep_(None, iterations):
            with nn.policy(nn.Bind(node)):
                pass

    def constructed_interleaved(iterations: int) -> None:
        for _ in rep_(None, iterations):
            with nn.interleaved():
                pass

    def reentered(iterations: int) -> None:
        for _ in rep_(None, iterations):
            with reused:
                pass

    return [
        (f"with nn.on_node({node}): pass", constructed_on_node),
        (f'with nn.policy("{text}"): pass', constructed_policy_text),
        (f"with nn.policy(nn.Bind({node})): pass", constructed_policy_value),
        ("with nn.interleaved(): pass", constructed_interleaved),
        ("with scope: pass (one object re-entered)", reentered),
    ]


def _us_per_iteration(loop: Callable[[int], None], iterations: int) -> float:
    return timed_loop(loop, iterations) * 1e6


def scope_case(bench: Bench) -> None:
    bench.log("scope enter+exit")
    noop, rep_ = _NoOp(), itertools.repeat
    loops = _scope_loops(NODE)
    for _, loop in loops:
        loop(1)  # the handlers are made and probed on first use

    def with_noop(iterations: int) -> None:
        for _ in rep_(None, iterations):
            with noop:
                pass

    for case, loop in loops:
        iterations = calibrate([with_noop, loop])
        a, b = interleaved(
            functools.partial(_us_per_iteration, with_noop, iterations),
            functools.partial(_us_per_iteration, loop, iterations),
            bench.reps,
        )
        ma, mb = statistics.median(a), statistics.median(b)
        bench.add(
            Row.paired(
                group="scope",
                case=case,
                size="-",
                unit="us",
                baseline_name="no-op context manager",
                target=Target("abs<=", 1.0, "µs"),
                baseline_samples=a,
                numa_samples=b,
                iterations=iterations,
                note=f"net of the no-op: {mb - ma:.2f} µs",
            )
        )


def stencil_1d(u: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        u = u + 0.1 * (np.roll(u, 1) - 2 * u + np.roll(u, -1))
    return u


def stencil_2d(u: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        u = u + 0.1 * (
            np.roll(u, 1, 0) + np.roll(u, -1, 0) + np.roll(u, 1, 1) + np.roll(u, -1, 1) - 4 * u
        )
    return u


def ufunc_cases(bench: Bench) -> None:
    steps = 200
    workloads = [
        ("1-D roll stencil, 200 steps", stencil_1d, (MiB // 8,)),
        ("1-D roll stencil, 200 steps", stencil_1d, (4 * MiB // 8,)),
        ("2-D 5-point roll stencil, 200 steps", stencil_2d, (512, 512)),
    ]
    reps = 3 if bench.quick else max(5, bench.reps // 2)
    rng = np.random.default_rng(0)
    for label, func, shape in workloads:
        bench.log(f"{label} {shape}")
        nn.free_all_blocks()
        init = rng.random(shape)

        def loop(
            iterations: int, func: Callable[..., np.ndarray] = func, init: np.ndarray = init
        ) -> None:
            for _ in range(iterations):
                func(init.copy(), steps)  # the copy is made under the active allocator

        with bench.scope:
            out = func(init.copy(), 2)
        placed = describe_placement(out)
        bench.time_row(
            "ufunc",
            label,
            fmt_size(init.nbytes) + (" 2-D" if len(shape) > 1 else ""),
            loop,
            loop,
            reps,
            Target("ratio<=", 1.05),
            placed,
            cap=1,
        )
        nn.free_all_blocks()


# ---- prefault

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int


def kernel_populate(size: int, huge: bool) -> float:
    """Seconds for mmap + MADV_POPULATE_WRITE of a private anonymous mapping
    (with huge: 2 MiB-aligned range advised MADV_HUGEPAGE first)."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    t0 = time.perf_counter_ns()
    m = mmap.mmap(-1, size + (THP if huge else 0), flags=flags)
    start = buffer_address(m)
    if huge:
        start = (start + THP - 1) & ~(THP - 1)
        _libc.madvise(start, size, MADV_HUGEPAGE)
    rc = _libc.madvise(start, size, MADV_POPULATE_WRITE)
    t1 = time.perf_counter_ns()
    m.close()
    if rc != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_POPULATE_WRITE)")
    return (t1 - t0) * 1e-9


def kernel_populate_threads(size: int, huge: bool, nthreads: int) -> float:
    """Seconds for MADV_POPULATE_WRITE of one mapping split over `nthreads`
    threads (ctypes releases the GIL around madvise): the kernel's own parallel
    population rate, i.e. the most PARALLEL can hope for here."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    m = mmap.mmap(-1, size + (THP if huge else 0), flags=flags)
    start = buffer_address(m)
    if huge:
        start = (start + THP - 1) & ~(THP - 1)
        _libc.madvise(start, size, MADV_HUGEPAGE)
    unit = THP if huge else PAGE
    per = size // nthreads // unit * unit
    bounds = [
        (start + i * per, per if i < nthreads - 1 else size - i * per) for i in range(nthreads)
    ]
    rcs = [0] * nthreads

    def work(i: int) -> None:
        rcs[i] = _libc.madvise(bounds[i][0], bounds[i][1], MADV_POPULATE_WRITE)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, nthreads)]
    t0 = time.perf_counter_ns()
    for t in threads:
        t.start()
    work(0)
    for t in threads:
        t.join()
    t1 = time.perf_counter_ns()
    m.close()
    if any(rcs):
        raise OSError(ctypes.get_errno(), "madvise(MADV_POPULATE_WRITE)")
    return (t1 - t0) * 1e-9


def numa_populate(size: int, prefault: str, huge: str, fill: bool = False) -> float:
    t0 = time.perf_counter_ns()
    a = nn.numa_empty(size // 8, node=NODE, prefault=prefault, huge_pages=huge)
    if fill:
        a.fill(1.0)
    t1 = time.perf_counter_ns()
    del a
    nn.free_all_blocks()  # the next one is a fresh mapping again, not a cache hit
    return (t1 - t0) * 1e-9


def first_touch(size: int) -> float:
    t0 = time.perf_counter_ns()
    a = np.empty(size // 8)
    a.fill(1.0)
    t1 = time.perf_counter_ns()
    del a
    return (t1 - t0) * 1e-9


def _rate(gb: float, func: Callable[..., float], *args: Any) -> float:
    """GB/s of one timed call that returns seconds."""
    return gb / func(*args)


def prefault_cases(bench: Bench) -> None:
    size = 64 * MiB
    reps = bench.reps if not bench.quick else 5
    gb = size / 1e9
    bench.log("prefault 64 MiB")
    nn.free_all_blocks()
    for huge, label, kernel_label in (
        ("none", "4 KiB pages", "kernel populate (4 KiB)"),
        ("auto", "THP (huge_pages=auto)", "kernel populate (THP)"),
    ):
        kernel_huge = huge != "none"
        # warm-up, and the placement of one array of each kind
        kernel_populate(size, kernel_huge)
        checks = {}
        for prefault in ("touch", "parallel"):
            a = nn.numa_empty(size // 8, node=NODE, prefault=prefault, huge_pages=huge)
            checks[prefault] = describe_placement(a, all_present=True)
            del a
            nn.free_all_blocks()
        samples: dict[str, list[float]] = {"kernel": [], "touch": [], "parallel": []}
        runners = {
            "kernel": functools.partial(kernel_populate, size, kernel_huge),
            "touch": functools.partial(numa_populate, size, "touch", huge),
            "parallel": functools.partial(numa_populate, size, "parallel", huge),
        }
        order = list(runners)
        for rep in range(reps):  # rotate the order so no variant always goes first
            for name in order[rep % 3 :] + order[: rep % 3]:
                samples[name].append(gb / runners[name]())
        k, t, p = (samples[name] for name in ("kernel", "touch", "parallel"))
        mk, mt, mp = (statistics.median(s) for s in (k, t, p))
        bench.add(
            Row.paired(
                group="prefault",
                case=f"prefault TOUCH vs {kernel_label}",
                size="64 MiB",
                unit="GB/s",
                baseline_name=kernel_label,
                target=Target("ratio>=", 0.9),
                placed=checks["touch"],
                baseline_samples=k,
                numa_samples=t,
                note=f"numa_empty(prefault='touch', huge_pages='{huge}') incl. mmap+mbind",
            )
        )
        bench.add(
            Row.paired(
                group="prefault",
                case=f"prefault PARALLEL vs TOUCH ({label})",
                size="64 MiB",
                unit="GB/s",
                baseline_name="prefault TOUCH",
                target=Target("ratio>=", 1.7),
                placed=checks["parallel"],
                baseline_samples=t,
                numa_samples=p,
                note=f"{len(os.sched_getaffinity(0))} CPUs allowed",
            )
        )
    # The machine's ceiling for PARALLEL: the kernel populating with as many
    # threads as PARALLEL uses, against one.
    nthreads = max(1, len(set(nn.topology().node(NODE).cpus) & os.sched_getaffinity(0)))
    for thp, label in ((False, "4 KiB"), (True, "THP")):
        kernel_populate_threads(size, thp, nthreads)
        one, many = interleaved(
            functools.partial(_rate, gb, kernel_populate_threads, size, thp, 1),
            functools.partial(_rate, gb, kernel_populate_threads, size, thp, nthreads),
            reps,
        )
        bench.add(
            Row.paired(
                group="prefault",
                case=f"ceiling: kernel populate, {nthreads} threads vs 1 "
                f"({label}; numa column = {nthreads} threads)",
                size="64 MiB",
                unit="GB/s",
                baseline_name="kernel, 1 thread",
                baseline_samples=one,
                numa_samples=many,
                note="what PARALLEL can reach here: no allocator involved",
            )
        )
    # Time to a written array: prefault + fill vs first touch by the fill.
    first_touch(size)
    numa_populate(size, "touch", "auto", fill=True)
    ft, pf = interleaved(
        functools.partial(_rate, gb, first_touch, size),
        functools.partial(_rate, gb, numa_populate, size, "touch", "auto", True),
        reps,
    )
    bench.add(
        Row.paired(
            group="prefault",
            case="prefault TOUCH + fill vs np.empty + fill (first touch)",
            size="64 MiB",
            unit="GB/s",
            baseline_name="default first touch",
            baseline_samples=ft,
            numa_samples=pf,
            note="both THP; default = glibc mmap + NumPy's MADV_HUGEPAGE",
        )
    )
