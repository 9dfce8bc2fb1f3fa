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
import gc
import json
import os
import sys
import time
from collections.abc import Callable

# The sibling modules: `python benchmarks/run.py` puts benchmarks/ first on sys.path.
from cases import (
    allocation_cases,
    cache_hazard_case,
    cgroup_loop_case,
    freed_rss_case,
    prefault_cases,
    rss_case,
    scope_case,
    ufunc_cases,
)
from harness import (
    CLOCKS,
    MIN_REP_SECONDS,
    NODE,
    Bench,
    use_clock,
)
from report import (
    machine_facts,
    markdown,
)

# Every group but the allocation ones (which allocation_cases runs together),
# in the order they run.
CASES: dict[str, Callable[[Bench], None]] = {
    "hazard": cache_hazard_case,
    "rss": rss_case,
    "freed": freed_rss_case,
    "cgroup": cgroup_loop_case,
    "scope": scope_case,
    "ufunc": ufunc_cases,
    "prefault": prefault_cases,
}
GROUPS = ["empty", "zeros", "fill", "zfill", *CASES]


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

    use_clock(args.clock)
    bench = Bench(args.quick, args.reps, verbose=not args.silent)
    facts = machine_facts()
    started = time.perf_counter()
    gc.collect()
    gc.disable()
    try:
        if only & {"empty", "zeros", "fill", "zfill"}:
            allocation_cases(bench, only)
        for group, case in CASES.items():
            if group in only:
                case(bench)
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
