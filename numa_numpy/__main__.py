"""python -m numa_numpy [info|check] [--json]: the topology, like
`numactl --hardware`, and a self-check that allocates on every node with memory
and verifies placement page by page. Exit status 0 only when every check passes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from ._creation import interleaved_zeros, numa_zeros
from ._placement import placement
from ._scope import on_node
from ._topology import Topology, topology

CHECK_BYTES = 8 << 20


def _check_node(node: int) -> dict[str, Any]:
    """Constructor (large, prefaulted by writing) and scope (small temporaries)."""
    results = {}
    big = numa_zeros(CHECK_BYTES // 8, node=node, strict=True)
    big[:] = 1.0
    where = placement(big)
    results["constructor 8 MiB"] = (where.on(node) and where.not_present == 0, str(where))
    with on_node(node, strict=True):
        x = np.arange(1000.0)
        y = np.sqrt(x * 2.0 + 1.0)  # output and temporaries come from the scope
    where = placement(y)
    results["scope ufunc output"] = (where.on(node), str(where))
    return results


def self_check(topo: Topology) -> dict[str, Any]:
    report: dict[str, Any] = {}
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
        report["interleave"] = {"all nodes": (where.nodes == set(nodes), str(where))}
    except Exception as exc:
        report["interleave"] = {"error": (False, f"{type(exc).__name__}: {exc}")}
    return report


def _passed(report: dict[str, Any]) -> bool:
    return all(ok for checks in report.values() for ok, _ in checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numa_numpy", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["info", "check"], default=None,
                        help="info: topology only; check: self-check only (default: both)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    topo = topology()
    report = self_check(topo) if args.command in (None, "check") else {}
    ok = _passed(report)
    if args.json:
        out: dict[str, Any] = {}
        if args.command in (None, "info"):
            out["topology"] = {
                "nodes": [{"id": n.id, "cpus": n.cpus, "memory_total": n.memory_total,
                           "memory_free": n.memory_free, "distances": n.distances}
                          for n in topo.nodes],
                "allowed_nodes": topo.allowed_nodes, "allowed_cpus": topo.allowed_cpus,
                "kernel": ".".join(map(str, topo.kernel)),
            }
        if report:
            out["check"] = {group: {name: {"ok": ok_, "detail": d}
                                    for name, (ok_, d) in checks.items()}
                            for group, checks in report.items()}
            out["passed"] = ok
        print(json.dumps(out, indent=2, default=list))
    else:
        if args.command in (None, "info"):
            print(topo)
        for group, checks in report.items():
            for name, (ok_, detail) in checks.items():
                print(f"{'PASS' if ok_ else 'FAIL'} {group}: {name}: {detail}")
        if report:
            print("self-check passed" if ok else "self-check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
