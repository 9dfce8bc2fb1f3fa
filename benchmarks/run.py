#!/usr/bin/env python
"""numa_numpy against NumPy's default allocator, in one process, interleaved.

    python benchmarks/run.py [--quick] [--json out.json] [--markdown out.md]

Every timed case alternates repetitions of the default allocator (A) and of
numa_numpy inside ``numa_numpy.on_node(0)`` (B) as ABBA ABBA ..., so that slow
phases of a noisy machine hit both sides alike; it reports the median of the
repetitions of each side and the ratio numa/default of those medians. Each
repetition times a loop of enough iterations to last at least ~5 ms. The scope
is entered once per repetition, outside the timed loop (the claim being
measured is "a whole pipeline wrapped in a scope").

The targets are informational: the runner exits 0 whatever they say.
Only the standard library, NumPy and numa_numpy are used. See README.md.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import itertools
import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import numa_numpy as nn

KiB, MiB = 1 << 10, 1 << 20
SIZES = [8, KiB, 64 * KiB, MiB, 4 * MiB, 64 * MiB, 256 * MiB]
MIN_REP_SECONDS = 0.005
NODE = 0
PAGE = mmap.PAGESIZE
MADV_HUGEPAGE = 14
MADV_POPULATE_WRITE = 23
THP = 2 * MiB


# --------------------------------------------------------------------------- results


@dataclass
class Target:
    """``kind``: 'ratio<=' / 'ratio>=' on the ratio, or 'abs<=' on the numa value."""

    kind: str
    value: float
    unit: str = ""

    def __str__(self) -> str:
        op = "<=" if self.kind.endswith("<=") else ">="
        if self.kind.startswith("ratio"):
            return f"{op} {self.value:g}x"
        return f"{op} {self.value:g} {self.unit}".rstrip()

    def check(self, ratio: float, numa: float) -> bool:
        subject = ratio if self.kind.startswith("ratio") else numa
        return subject <= self.value if self.kind.endswith("<=") else subject >= self.value


@dataclass
class Row:
    group: str
    case: str
    size: str
    unit: str  # 's' (time per op, lower is better), 'GB/s', 'MiB', 'us'
    baseline_name: str
    baseline: float  # median
    numa: float  # median
    ratio: float  # numa / baseline (medians)
    target: Target | None = None
    placed: str = "-"
    ratio_iqr: tuple[float, float] | None = None  # p25, p75 of the paired ratios
    baseline_samples: list[float] = field(default_factory=list)
    numa_samples: list[float] = field(default_factory=list)
    iterations: int = 1
    note: str = ""

    @property
    def result(self) -> str:
        if self.target is None:
            return "-"
        return "PASS" if self.target.check(self.ratio, self.numa) else "MISS"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = (
            None if self.target is None else {**asdict(self.target), "text": str(self.target)}
        )
        out["result"] = self.result
        return out


def fmt_value(value: float, unit: str) -> str:
    if unit == "s":
        for scale, name in ((1e-9, "ns"), (1e-6, "µs"), (1e-3, "ms")):
            if value < scale * 1000:
                return f"{value / scale:.3g} {name}"
        return f"{value:.3g} s"
    if unit == "us":
        return f"{value:.2f} µs"
    if unit == "GB/s":
        return f"{value:.2f} GB/s"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:.4g} {unit}"


def fmt_size(nbytes: int) -> str:
    for scale, name in ((MiB, "MiB"), (KiB, "KiB")):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale} {name}"
    return f"{nbytes} B"


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# --------------------------------------------------------------------------- timing


def interleaved(
    run_a: Callable[[], float], run_b: Callable[[], float], reps: int
) -> tuple[list[float], list[float]]:
    """Repetitions in ABBA order (A B, B A, A B, ...): each pair shares the
    machine's mood and neither side always goes first."""
    a: list[float] = []
    b: list[float] = []
    for rep in range(reps):
        if rep % 2 == 0:
            a.append(run_a())
            b.append(run_b())
        else:
            b.append(run_b())
            a.append(run_a())
    return a, b


def paired_iqr(a: list[float], b: list[float]) -> tuple[float, float]:
    ratios = [(y / x if x else float("nan")) for x, y in zip(a, b, strict=True)]
    return quantile(ratios, 0.25), quantile(ratios, 0.75)


# The clock of every single-threaded timing: this thread's CPU time by default
# (time spent descheduled while other jobs run is not the allocator's), or wall
# time with --clock wall. Prefault rows always use wall time (their work runs in
# several threads).
CLOCKS = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}
clock_ns: Callable[[], int] = CLOCKS["cpu"]


def timed_loop(loop: Callable[[int], None], iterations: int) -> float:
    """Seconds per iteration of one repetition."""
    t0 = clock_ns()
    loop(iterations)
    return (clock_ns() - t0) * 1e-9 / iterations


def calibrate(loops: list[Callable[[int], None]], cap: int = 1 << 22) -> int:
    """Iterations so that the fastest of `loops` lasts >= MIN_REP_SECONDS."""
    iterations = 1
    while True:
        fastest = min(timed_loop(loop, iterations) * iterations for loop in loops)
        if fastest >= MIN_REP_SECONDS or iterations >= cap:
            return iterations
        grow = MIN_REP_SECONDS / max(fastest, 1e-9)
        iterations = min(cap, max(iterations * 2, int(iterations * grow * 1.2) + 1))


class Bench:
    def __init__(self, quick: bool, reps: int | None, verbose: bool = True) -> None:
        self.quick = quick
        self.reps = reps if reps else (5 if quick else 15)
        self.scope = nn.on_node(NODE)
        self.rows: list[Row] = []
        self.verbose = verbose

    def log(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        tgt = f" target {row.target} {row.result}" if row.target else ""
        self.log(
            f"  {row.case:<44} {row.size:>8}  {fmt_value(row.baseline, row.unit):>11} "
            f"{fmt_value(row.numa, row.unit):>11}  x{row.ratio:.3f}{tgt}  placed={row.placed}"
        )

    def in_scope(self, loop: Callable[[int], None]) -> Callable[[int], None]:
        scope = self.scope

        def run(iterations: int) -> None:
            with scope:
                loop(iterations)

        return run

    def compare_loops(
        self,
        default_loop: Callable[[int], None],
        numa_loop: Callable[[int], None],
        reps: int,
        cap: int = 1 << 22,
    ) -> tuple[list[float], list[float], int]:
        """Time per iteration, ABBA-interleaved; the numa loop runs with the
        scope entered around (not inside) its timed loop."""
        scope = self.scope

        def numa_rep(iterations: int) -> float:
            with scope:
                return timed_loop(numa_loop, iterations)

        with scope:
            numa_loop(1)  # warm the handler and its cache
        default_loop(1)
        iterations = calibrate([default_loop, self.in_scope(numa_loop)], cap)
        # warm-up repetition of each side at the measured length
        timed_loop(default_loop, iterations)
        numa_rep(iterations)
        a, b = interleaved(
            lambda: timed_loop(default_loop, iterations), lambda: numa_rep(iterations), reps
        )
        return a, b, iterations

    def time_row(
        self,
        group: str,
        case: str,
        size: str,
        default_loop: Callable[[int], None],
        numa_loop: Callable[[int], None],
        reps: int,
        target: Target | None,
        placed: str = "-",
        cap: int = 1 << 22,
        note: str = "",
    ) -> Row:
        a, b, iterations = self.compare_loops(default_loop, numa_loop, reps, cap)
        ma, mb = statistics.median(a), statistics.median(b)
        row = Row(
            group,
            case,
            size,
            "s",
            "default",
            ma,
            mb,
            mb / ma,
            target,
            placed,
            paired_iqr(a, b),
            a,
            b,
            iterations,
            note,
        )
        self.add(row)
        return row


# --------------------------------------------------------------------------- checks


def placement_check(
    make: Callable[[], np.ndarray], scope: Any, *, all_present: bool = False
) -> str:
    """Make one array inside `scope` and ask the kernel about it: the range's
    policy must be bind:NODE and every present page on NODE."""
    with scope:
        a = make()
    return describe_placement(a, all_present=all_present)


def describe_placement(a: np.ndarray, *, all_present: bool = False) -> str:
    try:
        where = nn.placement(a)
    except Exception as exc:  # a failed check is a result, not a crash
        return f"error: {type(exc).__name__}: {exc}"
    policy = str(where.policy)
    ok = policy == f"bind:{NODE}" and str(where.requested) == f"bind:{NODE}"
    ok = ok and where.nodes <= {NODE}
    if all_present:
        ok = ok and where.not_present == 0
    present = f"{where.present_pages}/{where.total_pages}p"
    return f"{'yes' if ok else 'NO'} ({policy}, {present})"


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
            ma, mb = statistics.median(a), statistics.median(b)
            bench.add(
                Row(
                    group,
                    label,
                    fmt_size(size),
                    "s",
                    "default",
                    ma,
                    mb,
                    mb / ma,
                    target(size),
                    placed,
                    paired_iqr(a, b),
                    a,
                    b,
                    iterations,
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
    ma, mb = statistics.median(a), statistics.median(b)
    bench.add(
        Row(
            "hazard",
            "np.empty(n).fill(1) after 80x np.zeros(1 MiB)",
            "4 MiB",
            "s",
            "default",
            ma,
            mb,
            mb / ma,
            Target("ratio<=", 1.15),
            placed,
            paired_iqr(a, b),
            a,
            b,
            iterations,
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
            Row(
                "rss",
                f"RSS of {count // 1000}k live np.ones({elements})",
                fmt_size(elements * 8),
                "MiB",
                "default",
                ma,
                mb,
                mb / ma,
                target,
                results["numa"][-1]["placed"],
                paired_iqr(a, b),
                a,
                b,
                1,
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
        Row(
            "freed",
            "RSS right after each of 8 freed 400 MiB arrays (max)",
            "400 MiB",
            "MiB",
            "default",
            at_once_d,
            at_once_n,
            at_once_n / at_once_d,
            None,
            note="the issue's loop, no memory limit: what the cache holds before it decays "
            "(budget: 1/8 of the memory limit, at most 1 GiB; beyond 32 MiB MADV_FREE'd)",
        )
    )
    bench.add(
        Row(
            "freed",
            f"RSS {wait:.0f} s after the last array was freed",
            "400 MiB",
            "MiB",
            "default",
            d["later"],
            n["later"],
            n["later"] / d["later"],
            Target("ratio<=", 1.3),
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
        Row(
            "cgroup",
            "the loop in a 1200 MiB memory cgroup: RSS after each free (max)",
            "400 MiB",
            "MiB",
            "default",
            d,
            n,
            n / d,
            Target("ratio<=", 1.3),
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
            Row(
                "scope",
                case,
                "-",
                "us",
                "no-op context manager",
                ma,
                mb,
                mb / ma,
                # enter + exit, construction included: what `with` in a loop costs
                Target("abs<=", 1.0, "µs"),
                "-",
                paired_iqr(a, b),
                a,
                b,
                iterations,
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


def _address(m: mmap.mmap) -> int:
    buf = ctypes.c_char.from_buffer(m)
    try:
        return ctypes.addressof(buf)
    finally:
        del buf  # release the export so the mapping can be closed


def kernel_populate(size: int, huge: bool) -> float:
    """Seconds for mmap + MADV_POPULATE_WRITE of a private anonymous mapping
    (with huge: 2 MiB-aligned range advised MADV_HUGEPAGE first)."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    t0 = time.perf_counter_ns()
    m = mmap.mmap(-1, size + (THP if huge else 0), flags=flags)
    start = _address(m)
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
    start = _address(m)
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
            Row(
                "prefault",
                f"prefault TOUCH vs {kernel_label}",
                "64 MiB",
                "GB/s",
                kernel_label,
                mk,
                mt,
                mt / mk,
                Target("ratio>=", 0.9),
                checks["touch"],
                paired_iqr(k, t),
                k,
                t,
                1,
                note=f"numa_empty(prefault='touch', huge_pages='{huge}') incl. mmap+mbind",
            )
        )
        bench.add(
            Row(
                "prefault",
                f"prefault PARALLEL vs TOUCH ({label})",
                "64 MiB",
                "GB/s",
                "prefault TOUCH",
                mt,
                mp,
                mp / mt,
                Target("ratio>=", 1.7),
                checks["parallel"],
                paired_iqr(t, p),
                t,
                p,
                1,
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
        m1, mn = statistics.median(one), statistics.median(many)
        bench.add(
            Row(
                "prefault",
                f"ceiling: kernel populate, {nthreads} threads vs 1 "
                f"({label}; numa column = {nthreads} threads)",
                "64 MiB",
                "GB/s",
                "kernel, 1 thread",
                m1,
                mn,
                mn / m1,
                None,
                "-",
                paired_iqr(one, many),
                one,
                many,
                1,
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
    ma, mb = statistics.median(ft), statistics.median(pf)
    bench.add(
        Row(
            "prefault",
            "prefault TOUCH + fill vs np.empty + fill (first touch)",
            "64 MiB",
            "GB/s",
            "default first touch",
            ma,
            mb,
            mb / ma,
            None,
            "-",
            paired_iqr(ft, pf),
            ft,
            pf,
            1,
            note="both THP; default = glibc mmap + NumPy's MADV_HUGEPAGE",
        )
    )


# --------------------------------------------------------------------------- report


def machine_facts() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return "?"

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=os.path.dirname(os.path.abspath(__file__)),
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    topo = nn.topology()
    nodes = [
        {"id": n.id, "cpus": list(n.cpus), "memory_mib": n.memory_total >> 20} for n in topo.nodes
    ]
    return {
        "cpu_model": model,
        "cpus_online": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "libc": " ".join(platform.libc_ver()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numa_numpy": nn.__version__,
        "numa_numpy_path": os.path.dirname(nn.__file__),
        "git_head": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "numa_nodes": nodes,
        "thp_enabled": read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "thp_defrag": read("/sys/kernel/mm/transparent_hugepage/defrag"),
    }


def markdown(facts: dict[str, Any], rows: list[Row], config: dict[str, Any]) -> str:
    nodes = "; ".join(
        f"node {n['id']}: cpus {','.join(map(str, n['cpus'])) or '-'}, {n['memory_mib']} MiB"
        for n in facts["numa_nodes"]
    )
    lines = [
        "# numa_numpy vs NumPy's default allocator",
        "",
        f"- CPU: {facts['cpu_model']}; {facts['cpus_online']} CPUs online, "
        f"{facts['cpus_allowed']} allowed",
        f"- kernel {facts['kernel']}, {facts['libc']}, Python {facts['python']}, "
        f"NumPy {facts['numpy']}, numa_numpy {facts['numa_numpy']} from "
        f"`{facts['numa_numpy_path']}` (git {facts['git_head'] or '?'}"
        f"{', uncommitted changes' if facts['git_dirty'] else ''})",
        f"- NUMA: {len(facts['numa_nodes'])} node(s): {nodes}",
        f"- THP enabled: `{facts['thp_enabled']}`, defrag: `{facts['thp_defrag']}`",
        f"- run: {'quick' if config['quick'] else 'full'}, {config['reps']} repetitions "
        f"(ABBA-interleaved, >= {MIN_REP_SECONDS * 1e3:.0f} ms each; fewer for >= 64 MiB, "
        f"the ufunc workloads and RSS), numa side inside `on_node({NODE})` entered outside "
        f"the timed loop; medians; ratio = numa / baseline; "
        f"{config['seconds']:.0f} s in all",
        f"- clock: {'thread CPU time' if config['clock'] == 'cpu' else 'wall time'} "
        f"(prefault rows: wall time); load average at the end "
        f"{', '.join(f'{x:.2f}' for x in config['load_average'])} on "
        f"{facts['cpus_online']} CPUs",
        "",
        "| case | size | baseline | baseline value | numa_numpy | ratio | "
        "paired ratio p25-p75 | target | result | placed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        iqr = "-" if r.ratio_iqr is None else f"{r.ratio_iqr[0]:.2f}-{r.ratio_iqr[1]:.2f}"
        lines.append(
            f"| {r.case} | {r.size} | {r.baseline_name} | {fmt_value(r.baseline, r.unit)} | "
            f"{fmt_value(r.numa, r.unit)} | {r.ratio:.3f}x | {iqr} | "
            f"{r.target if r.target else '-'} | {r.result} | {r.placed} |"
        )
    notes = [f"- {r.case} ({r.size}): {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "Notes:", *notes]
    missed = [r for r in rows if r.result == "MISS"]
    lines += [
        "",
        f"Targets: {sum(r.result == 'PASS' for r in rows)} PASS, {len(missed)} MISS"
        + (
            ": " + "; ".join(f"{r.case} {r.size} ({r.ratio:.2f}x vs {r.target})" for r in missed)
            if missed
            else ""
        ),
    ]
    return "\n".join(lines) + "\n"


GROUPS = [
    "empty",
    "zeros",
    "fill",
    "zfill",
    "hazard",
    "rss",
    "freed",
    "cgroup",
    "scope",
    "ufunc",
    "prefault",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="skip 256 MiB and take fewer repetitions"
    )
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions per side (default 15, --quick 5)"
    )
    parser.add_argument(
        "--only", default=None, help=f"comma-separated case groups: {','.join(GROUPS)}"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: this thread's CPU time (default; robust when other "
        "jobs share the machine); wall: elapsed time",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the Markdown table")
    parser.add_argument("-q", "--silent", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(GROUPS)
    unknown = only - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; choose from {GROUPS}")

    global clock_ns
    clock_ns = CLOCKS[args.clock]
    bench = Bench(args.quick, args.reps, verbose=not args.silent)
    facts = machine_facts()
    started = time.perf_counter()
    gc.collect()
    gc.disable()
    try:
        if only & {"empty", "zeros", "fill", "zfill"}:
            allocation_cases(bench, only)
        if "hazard" in only:
            cache_hazard_case(bench)
        if "rss" in only:
            rss_case(bench)
        if "freed" in only:
            freed_rss_case(bench)
        if "cgroup" in only:
            cgroup_loop_case(bench)
        if "scope" in only:
            scope_case(bench)
        if "ufunc" in only:
            ufunc_cases(bench)
        if "prefault" in only:
            prefault_cases(bench)
    finally:
        gc.enable()
    config = {
        "quick": args.quick,
        "reps": bench.reps,
        "node": NODE,
        "clock": args.clock,
        "load_average": os.getloadavg(),
        "min_rep_seconds": MIN_REP_SECONDS,
        "seconds": time.perf_counter() - started,
    }
    text = markdown(facts, bench.rows, config)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": facts, "config": config, "rows": [r.as_json() for r in bench.rows]},
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
