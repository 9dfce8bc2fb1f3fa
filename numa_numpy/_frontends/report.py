"""The report of a run (``numa-numpy run --report``): at exit, per node, what
NumPy holds there through numa_numpy's handlers and the peak, per handler its
figures, and what the doctor says about this run.

Per node, ``in_use_bytes`` and ``resident_bytes`` are the kernel's own figures
at exit (``numa_maps`` of the policy-bound mappings, less the blocks the
handlers keep cached for reuse). ``peak_bytes`` is each handler's high-water
mark (the C allocator's ``peak_bytes``) spread over the nodes its policy names,
evenly for interleave and partitioned: the sum of the handlers' peaks, an upper
bound when they peak at different moments. The peak of a handler that names no
node (``local``, ``default``) is in ``unattributed_peak_bytes``, except on a
machine with one usable node, where every page is on that node.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from .._alloc.cache import node_memory_stats
from .._alloc.handler import Handler, all_handlers
from .._compute.loops import parallel_info
from .._diagnostics.doctor import doctor
from .._diagnostics.findings import Severity
from .._kernel.topology import Topology, topology
from .._policies.enforcement import EnforcementLevel
from .._policies.policy import Policy

__all__ = ["collect_report", "format_report", "write_report"]


def _spread(policy: Policy, nbytes: int, topo: Topology) -> dict[int, int] | None:
    """`nbytes` over the nodes `policy` names (None: it names none)."""
    nodes = policy.resolved_nodes(topo)
    if not nodes and len(topo.usable_nodes) == 1:
        nodes = topo.usable_nodes
    if not nodes:
        return None
    share, rest = divmod(nbytes, len(nodes))
    return {node: share + (1 if i < rest else 0) for i, node in enumerate(nodes)}


def _handler_entry(handler: Handler, stats: dict[str, Any]) -> dict[str, Any]:
    o = handler.options
    return {
        "policy": str(o.policy),
        "options": f"strict={o.strict} huge_pages={o.huge_pages.value} prefault={o.prefault.value}",
        "peak_bytes": stats["peak_bytes"],
        "used_bytes": stats["used_bytes"],
        "live_blocks": stats["live_blocks"],
        "fallbacks": stats["fallbacks"],
        "huge_fallbacks": stats["huge_fallbacks"],
        "enforcement": str(handler.enforcement),
    }


def _about_handler(entry: dict[str, Any], level: EnforcementLevel) -> list[str]:
    """What a handler's figures say about the run, in words."""
    said = []
    name = entry["policy"]
    if level is EnforcementLevel.NONE:
        said.append(
            f"{name}: policy refused, soft mode fell back to unbound memory "
            f"({entry['enforcement']})"
        )
    elif level is EnforcementLevel.BEST_EFFORT and entry["enforcement"] != "applied":
        said.append(f"{name}: {entry['enforcement']}")  # partly applied: why
    if entry["fallbacks"]:
        said.append(
            f"{name}: {entry['fallbacks']} mapping(s) left unbound in soft mode "
            "(the kernel refused their policy)"
        )
    if entry["huge_fallbacks"]:
        said.append(
            f"{name}: explicit huge pages unavailable {entry['huge_fallbacks']} time(s): "
            "normal pages used"
        )
    return said


def _handlers(topo: Topology) -> tuple[list[dict[str, Any]], dict[int, int], int, list[str]]:
    """(handler entries, peak per node, unattributed peak, what they say)."""
    entries: list[dict[str, Any]] = []
    peaks: dict[int, int] = {}
    unattributed = 0
    said: list[str] = []
    for handler in all_handlers():
        stats = handler.stats()
        if not stats:
            continue
        entry = _handler_entry(handler, stats)
        entries.append(entry)
        said += _about_handler(entry, handler.enforcement.level)
        spread = _spread(handler.policy, entry["peak_bytes"], topo)
        if spread is None:
            unattributed += entry["peak_bytes"]
            continue
        for node, nbytes in spread.items():
            peaks[node] = peaks.get(node, 0) + nbytes
    return entries, peaks, unattributed, said


def _doctor_findings() -> list[dict[str, Any]]:
    """The doctor's warnings and errors for this process (never raises)."""
    try:
        diagnosis = doctor()
    except Exception as exc:  # the report still comes
        return [{"check": "doctor", "severity": "warning", "summary": f"did not run: {exc}"}]
    return [
        finding.as_dict()
        for finding in diagnosis
        if finding.severity in (Severity.WARNING, Severity.ERROR)
    ]


def collect_report(
    *, policy: Policy | None = None, parallel: bool = False, events: Iterable[str] = ()
) -> dict[str, Any]:
    """The report of this process now, as JSON-ready values.

    Parameters
    ----------
    policy : Policy, optional
        The policy the process runs under (for the heading).
    parallel : bool
        Whether parallel mode is on.
    events : iterable of str
        What the startup hook had to say.

    Returns
    -------
    dict
        ``pid``, ``policy``, ``parallel``, ``nodes`` (per node ``in_use_bytes``,
        ``resident_bytes``, ``peak_bytes``), ``unattributed_peak_bytes``,
        ``handlers``, ``loops`` (with parallel mode on: the calls the parallel
        loops split, ran whole and sent to their part's node, and the workers
        per node; else None), ``run`` (sentences about this run) and
        ``findings`` (the doctor's warnings and errors).

    Examples
    --------
    >>> import numa_numpy as nn
    >>> from numa_numpy._frontends.report import collect_report
    >>> a = nn.numa_ones(1 << 20, node=0)
    >>> report = collect_report()
    >>> report["nodes"][0]["in_use_bytes"] >= a.nbytes
    True
    """
    topo = topology()
    entries, peaks, unattributed, said = _handlers(topo)
    per_node = node_memory_stats()
    nodes = sorted(set(per_node) | set(peaks))
    return {
        "pid": os.getpid(),
        "policy": None if policy is None else str(policy),
        "parallel": parallel,
        "nodes": {
            node: {
                "in_use_bytes": per_node.get(node, {}).get("used_bytes", 0),
                "resident_bytes": per_node.get(node, {}).get("resident_bytes", 0),
                "peak_bytes": peaks.get(node, 0),
            }
            for node in nodes
        },
        "unattributed_peak_bytes": unattributed,
        "handlers": entries,
        "loops": _loops() if parallel else None,
        "run": list(events) + said,
        "findings": _doctor_findings(),
    }


def _loops() -> dict[str, Any]:
    info = parallel_info()
    keys = ("split", "reduce_split", "serial", "busy", "nested", "local_pieces", "workers")
    return {key: info[key] for key in keys}


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def format_report(report: dict[str, Any]) -> str:
    """The report as text, for stderr.

    Parameters
    ----------
    report : dict
        What `collect_report` returns.

    Returns
    -------
    str

    Examples
    --------
    >>> from numa_numpy._frontends.report import collect_report, format_report
    >>> print(format_report(collect_report()).splitlines()[0])  # doctest: +ELLIPSIS
    numa-numpy report, pid ...: policy none, parallel off
    """
    head = (
        f"numa-numpy report, pid {report['pid']}: policy {report['policy'] or 'none'}, "
        f"parallel {'on' if report['parallel'] else 'off'}"
    )
    lines = [head, f"{'node':>6}{'in use':>14}{'resident':>14}{'peak':>14}"]
    for node, row in report["nodes"].items():
        lines.append(
            f"{node:>6}{_mib(row['in_use_bytes']):>14}{_mib(row['resident_bytes']):>14}"
            f"{_mib(row['peak_bytes']):>14}"
        )
    if report["unattributed_peak_bytes"]:
        lines.append(f"peak of local/default handlers: {_mib(report['unattributed_peak_bytes'])}")
    for entry in report["handlers"]:
        lines.append(
            f"handler {entry['policy']} ({entry['options']}): peak {_mib(entry['peak_bytes'])}, "
            f"in use {_mib(entry['used_bytes'])}, {entry['enforcement']}"
        )
    loops = report.get("loops")
    if loops:
        workers = ", ".join(f"N{node}: {n}" for node, n in loops["workers"].items())
        lines.append(
            f"parallel loops: {loops['split']} calls split, {loops['reduce_split']} reductions "
            f"split, {loops['local_pieces']} pieces on their part's node, "
            f"{loops['serial'] + loops['busy'] + loops['nested']} large calls whole; "
            f"workers {workers or 'none'}"
        )
    lines += [f"run: {sentence}" for sentence in report["run"]]
    lines += [f"doctor [{f['severity']}] {f['check']}: {f['summary']}" for f in report["findings"]]
    if not report["findings"]:
        lines.append("doctor: nothing on this machine refuses or undoes placement")
    return "\n".join(lines)


def write_report(
    destination: str = "",
    *,
    policy: Policy | None = None,
    parallel: bool = False,
    events: Iterable[str] = (),
) -> None:
    """Print the report on stderr, and write it as JSON to `destination` if
    one is given; never raises (it runs at exit).

    Parameters
    ----------
    destination : str
        A file for the JSON ('' for none).
    policy, parallel, events
        As for `collect_report`.

    Examples
    --------
    >>> from numa_numpy._frontends.report import write_report
    >>> write_report()                     # the text goes to stderr
    """
    try:
        report = collect_report(policy=policy, parallel=parallel, events=events)
        print(format_report(report), file=sys.stderr)
        if destination:
            with open(destination, "w") as out:
                json.dump(report, out, indent=2)
                out.write("\n")
    except Exception as exc:  # at exit: say it, do not mask the program's status
        print(f"numa_numpy: report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
