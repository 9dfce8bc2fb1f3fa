"""python -m numa_numpy [info|check|doctor|maps PID|bench|cleanup] [--json]
       python -m numa_numpy run [--policy POLICY] [--parallel] [--report[=FILE]]
                                [--] (SCRIPT.py | -m MODULE | -c CODE | COMMAND) [ARGS...]

info   the topology (like `numactl --hardware`) and the kernel's capabilities
check  a self-check: allocate on every node with memory, verify page by page
doctor what refuses, undoes or slows placement here (seccomp, cpuset, THP,
       NUMA balancing, tiers, thread pools...) and the exact fix; exits 0 when
       healthy, 1 when a finding defeats placement; --root DIR diagnoses a
       copy of another machine's /sys and /proc (e.g. a tar of them)
maps   per-node memory of a process by kind (like `numastat -p PID`)
bench  the NUMA bandwidth matrix (copy and triad, CPU node x memory node), one
       thread per node; --team: every worker of a node's team at once, and the
       whole machine (each node's team on its own memory)
cleanup  remove shared arrays (/dev/shm) whose creating process has ended,
       e.g. by SIGKILL; --dry-run lists them
run    run a program with every NumPy allocation under POLICY and no change to
       its code (`numa-numpy run --policy interleave --parallel job.py`); it
       becomes the program, whose exit status is run's; `run --help` for more

With no command: info, then check. Exit status: 0 when everything passed,
1 when a check failed, 2 for a usage error, 3 when the process to inspect does
not exist or cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ._alloc.creation import interleaved_zeros, numa_zeros
from ._alloc.scope import on_node
from ._diagnostics.capabilities import capabilities, process_memory
from ._diagnostics.doctor import doctor, refusal_hint
from ._frontends import run
from ._kernel.topology import Topology, topology
from ._ranges.placement import placement
from ._ranges.shared import cleanup_shared

CHECK_BYTES = 8 << 20
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_PROCESS = 0, 1, 2, 3


def _check_node(node: int) -> dict[str, tuple[bool, str]]:
    """Constructor (large, written) and scope (small ufunc output and temporaries)."""
    results = {}
    big = numa_zeros(CHECK_BYTES // 8, node=node, strict=True)
    big[:] = 1.0
    where = placement(big)
    results["constructor 8 MiB"] = (where.on(node) and where.not_present == 0, str(where))
    with on_node(node, strict=True):
        x = np.arange(1000.0)
        y = np.sqrt(x * 2.0 + 1.0)
    where = placement(y)
    results["scope ufunc output"] = (where.on(node), str(where))
    return results


def self_check(topo: Topology) -> dict[str, dict[str, tuple[bool, str]]]:
    report: dict[str, dict[str, tuple[bool, str]]] = {}
    for node in topo.usable_nodes:
        try:
            report[f"node {node}"] = _check_node(node)
        except Exception as exc:  # a failed check is a result, not a crash
            report[f"node {node}"] = {"error": (False, f"{type(exc).__name__}: {exc}")}
    nodes = topo.usable_nodes
    try:
        a = interleaved_zeros(len(nodes) * (4 << 20) // 8, nodes=nodes, huge_pages="none")
        a[:] = 1.0
        where = placement(a)
        balanced = max(where.pages.values()) - min(where.pages.values()) <= 1
        report["interleave"] = {
            f"nodes {','.join(map(str, nodes))}": (
                where.nodes == set(nodes) and balanced,
                str(where),
            )
        }
    except Exception as exc:
        report["interleave"] = {"error": (False, f"{type(exc).__name__}: {exc}")}
    return report


def _passed(report: dict[str, dict[str, tuple[bool, str]]]) -> bool:
    return all(ok for checks in report.values() for ok, _ in checks.values())


def _topology_dict(topo: Topology) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": n.id,
                "cpus": n.cpus,
                "memory_total": n.memory_total,
                "memory_free": n.memory_free,
                "distances": n.distances,
                "tier": n.tier,
                "access": [vars(a) for a in n.access],
            }
            for n in topo.nodes
        ],
        "allowed_nodes": topo.allowed_nodes,
        "allowed_cpus": topo.allowed_cpus,
        "kernel": ".".join(map(str, topo.kernel)),
    }


def _maps_table(pid: str, usage: dict[str, dict[int, int]]) -> str:
    nodes = sorted({n for per_node in usage.values() for n in per_node})
    head = "".join(f"{'Node ' + str(n):>16}" for n in nodes) + f"{'Total':>16}"
    lines = [f"Per-node process memory usage (in MBs) for PID {pid}", f"{'':<16}{head}"]
    totals = dict.fromkeys(nodes, 0)
    for kind, per_node in usage.items():
        row = "".join(f"{per_node.get(n, 0) / 2**20:>16.2f}" for n in nodes)
        lines.append(f"{kind:<16}{row}{sum(per_node.values()) / 2**20:>16.2f}")
        for n in nodes:
            totals[n] += per_node.get(n, 0)
    row = "".join(f"{totals[n] / 2**20:>16.2f}" for n in nodes)
    lines.append(f"{'Total':<16}{row}{sum(totals.values()) / 2**20:>16.2f}")
    return "\n".join(lines)


def _bench(args: argparse.Namespace) -> tuple[int, Any, str]:
    from ._diagnostics.bandwidth import bandwidth_matrix, format_matrix

    result = bandwidth_matrix(
        size_bytes=args.size_mib << 20,
        repeats=args.repeats,
        progress=not args.json,
        team=args.team,
    )
    return EXIT_OK, result, format_matrix(result)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m numa_numpy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", choices=list(COMMANDS))
    parser.add_argument("pid", nargs="?", help="for maps: the process id (default: self)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--size-mib", type=int, default=64, help="bench: array size")
    parser.add_argument("--repeats", type=int, default=5, help="bench: best of N")
    parser.add_argument(
        "--team",
        action="store_true",
        help="bench: every worker of each node's team at once, plus the whole machine",
    )
    parser.add_argument("--dry-run", action="store_true", help="cleanup: only list")
    parser.add_argument("--root", help="doctor: a copy of another machine's /sys and /proc")
    # intermixed: options may come before the pid too (`maps --json 1234`)
    args = parser.parse_intermixed_args(argv)
    if args.pid is not None and args.command != "maps":
        parser.error("a pid is only for `maps`")
    if args.pid is not None and not (args.pid == "self" or args.pid.isdigit()):
        parser.error(f"maps takes a process id (a number or 'self'), not {args.pid!r}")
    if args.dry_run and args.command != "cleanup":
        parser.error("--dry-run is only for `cleanup`")
    if args.team and args.command != "bench":
        parser.error("--team is only for `bench`")
    if args.root is not None and args.command != "doctor":
        parser.error("--root is only for `doctor`")
    return args


def _cleanup(args: argparse.Namespace) -> int:
    names = cleanup_shared(dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "segments": names}))
    else:
        verb = "would remove" if args.dry_run else "removed"
        head = f"{verb} {len(names)} shared segment(s) whose creator has ended"
        print("\n".join([head] + [f"  /dev/shm/{name}" for name in names]))
    return EXIT_OK


def _maps(args: argparse.Namespace) -> int:
    pid = args.pid or "self"
    try:
        usage = process_memory(pid)
    except (OSError, ValueError) as exc:
        print(f"cannot read /proc/{pid}/numa_maps: {exc}", file=sys.stderr)
        return EXIT_NO_PROCESS
    print(
        json.dumps({k: {str(n): b for n, b in v.items()} for k, v in usage.items()})
        if args.json
        else _maps_table(pid, usage)
    )
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    diagnosis = doctor() if args.root is None else doctor(root=args.root)
    print(json.dumps(diagnosis.as_dict(), indent=2) if args.json else str(diagnosis))
    return diagnosis.exit_status


def _bench_command(args: argparse.Namespace) -> int:
    status, data, text = _bench(args)
    print(json.dumps(data, indent=2) if args.json else text)
    return status


def _check(topo: Topology, out: dict[str, Any], lines: list[str]) -> int:
    """The self-check, into `out` (JSON) and `lines` (text); its exit status."""
    report = self_check(topo)
    passed = _passed(report)
    out["check"] = {
        group: {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()}
        for group, checks in report.items()
    }
    out["passed"] = passed
    lines += [
        f"{'PASS' if ok else 'FAIL'} {group}: {name}: {detail}"
        for group, checks in report.items()
        for name, (ok, detail) in checks.items()
    ]
    lines.append("self-check passed" if passed else "self-check FAILED")
    if not passed:  # say what the kernel refuses, and where the fix is
        out["doctor"] = refusal_hint()
        lines.append(out["doctor"])
    return EXIT_OK if passed else EXIT_FAILED


def _info_and_check(args: argparse.Namespace) -> int:
    """`info`, `check`, or both (no command)."""
    topo = topology()
    out: dict[str, Any] = {}
    lines: list[str] = []
    status = EXIT_OK
    if args.command in (None, "info"):
        caps = capabilities()
        out["topology"] = _topology_dict(topo)
        out["capabilities"] = caps.as_dict()
        lines += [str(topo), topo.tiers_text(), str(caps)]
    if args.command in (None, "check"):
        status = _check(topo, out, lines)
    print(json.dumps(out, indent=2, default=list) if args.json else "\n".join(lines))
    return status


# A new command: a function from the parsed arguments to the exit status, here.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "info": _info_and_check,
    "check": _info_and_check,
    "doctor": _doctor,
    "maps": _maps,
    "bench": _bench_command,
    "cleanup": _cleanup,
}
# Commands that take the rest of the line as their own (not parsed here).
PASS_THROUGH: dict[str, Callable[[list[str]], int]] = {"run": run.main}


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in PASS_THROUGH:
        return PASS_THROUGH[words[0]](words[1:])
    args = _parse(argv)
    return COMMANDS.get(args.command, _info_and_check)(args)


if __name__ == "__main__":
    sys.exit(main())
