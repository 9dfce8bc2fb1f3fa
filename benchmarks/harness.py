"""The benchmark harness: rows and targets, ABBA-interleaved timing on a chosen
clock, and the placement check every numa row carries."""

from __future__ import annotations

import mmap
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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

    @classmethod
    def paired(
        cls, *, baseline_samples: list[float], numa_samples: list[float], **fields: Any
    ) -> Row:
        """A row from ABBA-paired samples: their medians, the ratio of the medians
        and the spread (p25, p75) of the paired ratios."""
        a, b = baseline_samples, numa_samples
        ma, mb = statistics.median(a), statistics.median(b)
        return cls(
            baseline=ma,
            numa=mb,
            ratio=mb / ma,
            ratio_iqr=paired_iqr(a, b),
            baseline_samples=a,
            numa_samples=b,
            **fields,
        )

    @classmethod
    def compared(cls, *, baseline: float, numa: float, **fields: Any) -> Row:
        """A row from one figure per side, and their ratio."""
        return cls(baseline=baseline, numa=numa, ratio=numa / baseline, **fields)

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


def use_clock(name: str) -> None:
    """Time single-threaded loops on CLOCKS[name] from now on."""
    global clock_ns
    clock_ns = CLOCKS[name]


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
        row = Row.paired(
            group=group,
            case=case,
            size=size,
            unit="s",
            baseline_name="default",
            target=target,
            placed=placed,
            baseline_samples=a,
            numa_samples=b,
            iterations=iterations,
            note=note,
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
