"""numa-numpy [COMMAND] [--json]: the command line (also `python -m numa_numpy`).

With no command: info, then check. `numa-numpy COMMAND --help` lists a
command's own options; `numa-numpy --version` prints the version. Exit status:
0 when everything passed, 1 when a check failed, 2 for a usage error, 3 when
the process to inspect does not exist or cannot be read. `run` passes the rest
of the line to `numa_numpy._frontends.run` (its own parser and help).
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
from ._kernel.topology import Topology, format_list, topology
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


# name -> (one line for the command list, what `COMMAND --help` says)
ABOUT: dict[str, tuple[str, str]] = {
    "info": (
        "the topology and the kernel's capabilities",
        "The topology (like `numactl --hardware`), the memory tiers and the kernel's "
        "capabilities (policies, mbind, huge pages, THP).",
    ),
    "check": (
        "a self-check: allocate on every node with memory, verify page by page",
        "Allocate on every node with memory (a constructor, a scope) and interleaved, "
        "and verify every page with move_pages. Exit status 1 when a check fails.",
    ),
    "doctor": (
        "what refuses, undoes or slows placement here, and the fix",
        "What refuses, undoes or slows placement here (seccomp, cpuset, THP, NUMA "
        "balancing, tiers, thread pools...) and the exact fix. Exit status 0 when "
        "healthy, 1 when a finding defeats placement.",
    ),
    "maps": (
        "per-node memory of a process by kind (like `numastat -p PID`)",
        "Per-node memory of a process by kind (heap, stack, files, ...), read from "
        "/proc/PID/numa_maps. Exit status 3 when the process cannot be read.",
    ),
    "bench": (
        "the NUMA bandwidth matrix (copy and triad, CPU node x memory node)",
        "STREAM-style copy and triad bandwidth, CPU node x memory node, one thread "
        "per node (--team: every worker of a node's team at once, and the whole "
        "machine). Each figure is the median over the runs, with their range.",
    ),
    "cleanup": (
        "remove shared arrays whose creating process has ended",
        "Remove shared arrays (/dev/shm) whose creating process has ended, e.g. by SIGKILL.",
    ),
    "run": (
        "run a program with every NumPy allocation under a policy",
        "Run a program with every NumPy allocation under a policy; `numa-numpy run "
        "--help` for its options.",
    ),
}


def _version() -> str:
    """The installed distribution's version, else the package's own."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numa-numpy")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        from . import __version__

        return __version__


def _pid(text: str) -> str:
    if text == "self" or text.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"maps takes a process id (a number or 'self'), not {text!r}")


def _command_options(name: str, sub: argparse.ArgumentParser) -> None:
    """The options of command `name`, and nothing else."""
    if name == "run":
        sub.add_argument("rest", nargs=argparse.REMAINDER, help="run's own command line")
        return
    # SUPPRESS: `numa-numpy --json info` and `numa-numpy info --json` both count
    sub.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    if name == "maps":
        sub.add_argument("pid", nargs="?", type=_pid, help="the process id (default: self)")
    elif name == "doctor":
        sub.add_argument(
            "--root", metavar="DIR", help="diagnose a copy of another machine's /sys and /proc"
        )
    elif name == "bench":
        sub.add_argument(
            "--size-mib", type=int, default=64, metavar="MiB", help="MiB per array (default 64)"
        )
        sub.add_argument(
            "--repeats", type=int, default=5, metavar="N", help="timed runs per figure (default 5)"
        )
        sub.add_argument(
            "--team",
            action="store_true",
            help="every worker of each node's team at once, plus the whole machine",
        )
    elif name == "cleanup":
        sub.add_argument("--dry-run", action="store_true", help="only list them")


def parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line's parser and, by name, its commands' subparsers (each
    with its own options and ``--help``)."""
    top = argparse.ArgumentParser(
        prog="numa-numpy",
        description="NumPy arrays on NUMA nodes: the machine, its self-check, what "
        "defeats placement, and programs run under a policy.",
        epilog="With no command: info, then check. Exit status: 0 passed, 1 a check "
        "failed, 2 usage error, 3 no such process (maps).",
    )
    top.add_argument("--version", action="version", version=f"numa-numpy {_version()}")
    top.add_argument("--json", action="store_true", help="machine-readable output")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    subs = {}
    for name, (short, long) in ABOUT.items():
        subs[name] = commands.add_parser(name, help=short, description=long, add_help=name != "run")
        _command_options(name, subs[name])
    return top, subs


def _parse(argv: list[str]) -> argparse.Namespace:
    top, subs = parser()
    args, extra = top.parse_known_args(argv)
    if extra:  # say whose option it is, in the words of the command given
        owners = [
            name
            for name, sub in subs.items()
            if name != args.command and extra[0] in sub._option_string_actions
        ]
        whose = f" (an option of {', '.join(owners)})" if owners else ""
        where = subs[args.command] if args.command else top
        where.error(f"unrecognized arguments: {' '.join(extra)}{whose}")
    for name, default in (("pid", None), ("root", None), ("team", False), ("dry_run", False)):
        if not hasattr(args, name):  # another command's option: its default here
            setattr(args, name, default)
    args.size_mib = getattr(args, "size_mib", 64)
    args.repeats = getattr(args, "repeats", 5)
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


def one_node_note(topo: Topology) -> str | None:
    """What a one-node machine gives and does not, in words (None: several nodes).

    Parameters
    ----------
    topo : Topology
        The machine, as `topology()` or ``read_topology(root)`` reads it.

    Returns
    -------
    str or None
        The note the main command prints after the topology when this process
        has exactly one node with memory to use; None otherwise.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> from numa_numpy.__main__ import one_node_note
    >>> note = one_node_note(nn.topology())
    >>> (note is None) == (len(nn.topology().usable_nodes) != 1)
    True
    """
    if len(topo.usable_nodes) != 1:
        return None
    node = topo.usable_nodes[0]
    if len(topo.node_ids) == 1:
        where = "This machine has one NUMA node"
    else:
        where = (
            f"This process may use one NUMA node with memory (node {node} of "
            f"{format_list(topo.node_ids)}: the others are outside its cpuset or have none)"
        )
    return (
        f"{where}: every page is on node {node}, and there is nowhere else to place memory.\n"
        "Still useful here: huge pages, prefault, shared arrays, and node teams and "
        "parallel loops (they run on all the cores).\n"
        f"Not here: placement gains. Binding, interleaving and partitioning all put every "
        f"page on node {node}; they cost little and gain nothing until there are more nodes."
    )


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
        note = one_node_note(topo)
        if note is not None:
            out["one_node"] = note
            lines.append(note)
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
    """The ``numa-numpy`` command line; returns its exit status.

    Parameters
    ----------
    argv : list of str, optional
        The words after the program's name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 when everything passed, 1 when a check failed, 2 for a usage error
        (argparse exits with 2 itself), 3 when the process `maps` should read
        cannot be read; `run`: the program's own.

    Examples
    --------
    >>> from numa_numpy.__main__ import main
    >>> main(["cleanup", "--dry-run", "--json"])  # doctest: +ELLIPSIS
    {"dry_run": true, "segments": [...]}
    0
    """
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in PASS_THROUGH:
        return PASS_THROUGH[words[0]](words[1:])
    args = _parse(words)
    if args.command in PASS_THROUGH:  # after a top-level option: `numa-numpy --json run ...`
        return PASS_THROUGH[args.command](args.rest)
    return COMMANDS.get(args.command, _info_and_check)(args)


if __name__ == "__main__":
    sys.exit(main())
