"""Node teams against NumPy single-threaded, numexpr and a hand-written split.

    python benchmarks/teams.py [--sizes 16,64,256] [--reps 9] [--threads N] [--markdown FILE]

One process, one run: every variant of a row is timed round-robin (one call of
each per repetition, so drift hits them alike) and the median is reported.

Rows: ``a + 3*b``, ``np.sqrt(a*a + b*b)`` and ``a.sum()`` on float64 arrays of
each size (per operand). Variants:

- numpy: plain ndarrays, the expression as written, one thread;
- team: partitioned arrays inside ``with node_team():``, the same expression;
- numexpr: ``numexpr.evaluate`` with the team's thread count (a peer that fuses
  the expression into one pass; the bench extra: ``pip install numa_numpy[bench]``);
- split: a hand-written ThreadPoolExecutor over as many row ranges as the team
  has workers, each evaluating the expression on its range into a preallocated
  output (allocated inside the timed call, as the others allocate theirs).

Then the per-call overhead (a team ufunc on an 8-element array with the
threshold at 0, minus NumPy's time for the same call), the threshold sweep
(``a + b`` from 64 KiB up: team over NumPy) and the cost below the threshold
(a partitioned array inside a team falls back to NumPy: its time over a plain
ndarray's).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import numa_numpy as nn

try:
    import numexpr as ne
except ImportError:  # the bench extra is not installed
    ne = None


_EVICT = np.ones(256 << 17)  # 256 MiB: more than any last-level cache here


def _round_robin(
    variants: dict[str, Callable[..., Any]],
    reps: int,
    args: tuple[Any, ...] | None = None,
    evict: bool = False,
) -> dict[str, float]:
    """Median seconds per variant, one call of each per repetition (variant i
    called with args[i] when given: no closure in the timed call)."""
    calls = [
        (name, f, () if args is None or args[i] is None else (args[i],))
        for i, (name, f) in enumerate(variants.items())
    ]
    for _name, f, extra in calls:  # warm: caches, first touch, thread start
        f(*extra)
        f(*extra)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(reps):
        for name, f, extra in calls:
            if evict:  # operands come from memory, not from the last variant's cache
                _EVICT.sum()
            t0 = time.perf_counter()
            f(*extra)
            samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def _fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e9:.0f} ns"


def _split_runner(pool: ThreadPoolExecutor, workers: int) -> Callable[..., Any]:
    def run(n: int, body: Callable[[slice], Any]) -> list[Any]:
        cuts = [n * i // workers for i in range(workers + 1)]
        return list(pool.map(body, [slice(cuts[i], cuts[i + 1]) for i in range(workers)]))

    return run


def _cases(
    n: int, split: Callable[..., Any]
) -> list[tuple[str, dict[str, Callable[[], Any] | None]]]:
    a, b = nn.partitioned_full(n, 1.5), nn.partitioned_full(n, 2.5)
    # the other variants read the same memory (plain views): same placement and
    # the same cache state, so only the execution differs
    pa, pb = a.view(np.ndarray), b.view(np.ndarray)
    env = {"pa": pa, "pb": pb}

    def split_axpy() -> np.ndarray:
        out = np.empty(n)
        split(n, lambda s: np.add(pa[s], 3 * pb[s], out=out[s]))
        return out

    def split_hyp() -> np.ndarray:
        out = np.empty(n)

        def body(s: slice) -> None:
            np.sqrt(np.add(pa[s] * pa[s], pb[s] * pb[s], out=out[s]), out=out[s])

        split(n, body)
        return out

    def split_sum() -> float:
        return float(sum(split(n, lambda s: pa[s].sum())))

    def numexpr(text: str) -> Callable[[], Any] | None:
        return (lambda: ne.evaluate(text, local_dict=env)) if ne is not None else None

    return [
        (
            "a + 3*b",
            {
                "numpy": lambda: pa + 3 * pb,
                "team": lambda: a + 3 * b,
                "numexpr": numexpr("pa + 3*pb"),
                "split": split_axpy,
            },
        ),
        (
            "np.sqrt(a*a + b*b)",
            {
                "numpy": lambda: np.sqrt(pa * pa + pb * pb),
                "team": lambda: np.sqrt(a * a + b * b),
                "numexpr": numexpr("sqrt(pa*pa + pb*pb)"),
                "split": split_hyp,
            },
        ),
        (
            "a.sum()",
            {
                "numpy": lambda: pa.sum(),
                "team": lambda: a.sum(),
                "numexpr": numexpr("sum(pa)"),
                "split": split_sum,
            },
        ),
    ]


def _pair(kib: int) -> tuple[Any, Any, Any, Any]:
    n = (kib << 10) // 8
    return (
        nn.partitioned_full(n, 1.0),
        nn.partitioned_full(n, 2.0),
        np.full(n, 1.0),
        np.full(n, 2.0),
    )


def bench_rows(sizes_mib: list[int], reps: int, team: nn.NodeTeam) -> list[dict[str, Any]]:
    workers = sum(team.threads.values())
    pool = ThreadPoolExecutor(workers)
    split = _split_runner(pool, workers)
    if ne is not None:
        ne.set_num_threads(workers)
    rows = []
    for mib in sizes_mib:
        for name, variants in _cases((mib << 20) // 8, split):
            live = {k: v for k, v in variants.items() if v is not None}
            with team:
                t = _round_robin(live, reps, evict=True)
            rows.append({"case": name, "mib": mib, **t})
            print(
                f"  {name} {mib} MiB: " + ", ".join(f"{k} {_fmt(v)}" for k, v in t.items()),
                file=sys.stderr,
            )
    pool.shutdown()
    return rows


def overhead(team: nn.NodeTeam, reps: int) -> dict[str, float]:
    tiny = nn.partitioned_full(8, 1.0)
    plain = np.full(8, 1.0)
    zero = nn.node_team(team.nodes, threads_per_node=None, min_bytes=0)
    with zero:
        t = _round_robin(
            {
                "team": lambda: tiny + 1.0,
                "numpy": lambda: plain + 1.0,
                "roundtrip": lambda: zero.on_each_worker(int),
                "team_sum": lambda: tiny.sum(),
                "numpy_sum": lambda: plain.sum(),
            },
            reps * 200,
        )
    return t


def threshold_sweep(team: nn.NodeTeam, reps: int) -> list[tuple[int, float, float]]:
    zero = nn.node_team(team.nodes, min_bytes=0)
    out = []
    for kib in (64, 256, 1024, 2048, 4096, 8192, 16384, 32768):
        a, b, pa, pb = _pair(kib)
        with zero:
            t = _round_robin({"team": a.__add__, "numpy": pa.__add__}, reps * 10, (b, pb))
        out.append((kib, t["team"], t["numpy"]))
    return out


def below_threshold(team: nn.NodeTeam, reps: int) -> list[tuple[int, float, float, float]]:
    out = []
    for kib in (1, 64, 512, (team.min_bytes >> 10) - 8):
        a, b, pa, pb = _pair(kib)
        with team:
            t = _round_robin(
                {"team": a.__add__, "numpy": pa.__add__, "team_sum": a.sum, "numpy_sum": pa.sum},
                reps * 50,
                (b, pb, None, None),
            )
        out.append((kib, t["team"] / t["numpy"], t["team_sum"] / t["numpy_sum"], t["numpy"]))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="16,64,256", help="MiB per operand, comma-separated")
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--threads", type=int, default=None, help="workers per node")
    p.add_argument("--markdown", default=None, help="also write the tables here")
    args = p.parse_args(argv)
    team = nn.node_team(threads_per_node=args.threads)
    workers = sum(team.threads.values())
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{len(nn.topology().nodes)} NUMA node(s), kernel {platform.release()}, "
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"numexpr {ne.__version__ if ne else 'absent'}; team: {team!r} ({workers} workers); "
        f"medians of {args.reps} round-robin repetitions; load average before the run "
        f"{os.getloadavg()[0]:.2f} (other jobs share these 2 CPUs).",
        "",
        "| case | size | NumPy 1 thread | team | numexpr | split | team vs NumPy | "
        "team vs numexpr | team vs split |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in bench_rows([int(s) for s in args.sizes.split(",")], args.reps, team):
        nx = r.get("numexpr")
        lines.append(
            f"| `{r['case']}` | {r['mib']} MiB | {_fmt(r['numpy'])} | {_fmt(r['team'])} | "
            f"{_fmt(nx) if nx else '-'} | {_fmt(r['split'])} | "
            f"{r['numpy'] / r['team']:.2f}x | {(nx / r['team']) if nx else float('nan'):.2f}x | "
            f"{r['split'] / r['team']:.2f}x |"
        )
    o = overhead(team, args.reps)
    lines += [
        "",
        "Speed-ups are the other variant's median over the team's (above 1: the team is faster).",
        "",
        "| per call (8 elements, threshold 0) | time |",
        "|---|---|",
        f"| NumPy `a + 1.0` | {_fmt(o['numpy'])} |",
        f"| team `a + 1.0` | {_fmt(o['team'])} (overhead {_fmt(o['team'] - o['numpy'])}) |",
        f"| NumPy `a.sum()` | {_fmt(o['numpy_sum'])} |",
        f"| team `a.sum()` | {_fmt(o['team_sum'])} "
        f"(overhead {_fmt(o['team_sum'] - o['numpy_sum'])}) |",
        f"| a no-op on every worker and back (`on_each_worker`) | {_fmt(o['roundtrip'])} |",
        "",
        "| `a + b` size | team, threshold 0 | NumPy | team / NumPy |",
        "|---|---|---|---|",
    ]
    for kib, t_team, t_np in threshold_sweep(team, args.reps):
        lines.append(f"| {kib} KiB | {_fmt(t_team)} | {_fmt(t_np)} | {t_team / t_np:.2f}x |")
    lines += [
        "",
        f"Below the threshold ({team.min_bytes >> 10} KiB) inside a team: a partitioned "
        "array's time over a plain ndarray's (NumPy's path both).",
        "",
        "| size | `a + b` | `a.sum()` | NumPy `a + b` |",
        "|---|---|---|---|",
    ]
    for kib, r_add, r_sum, t_np in below_threshold(team, args.reps):
        lines.append(f"| {kib} KiB | {r_add:.3f}x | {r_sum:.3f}x | {_fmt(t_np)} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
