"""The doctor's checks of the machine: the kernel's version against each policy,
memory-only nodes and memory tiers, nodes per socket, and (last) the files the
other checks could not read."""

from __future__ import annotations

from typing import Any

from .._kernel import tunables
from .._kernel.topology import format_list
from .._policies.policy import (
    Bind,
    Default,
    Interleave,
    Local,
    Preferred,
    PreferredMany,
    WeightedInterleave,
)
from .findings import Finding, Severity
from .registry import Host, check

__all__: list[str] = []


# ------------------------------------------------------------------ kernel
_KERNEL_FEATURES = (
    ("MADV_POPULATE_WRITE (prefault that reports ENOMEM)", (5, 14)),
    ("set_mempolicy_home_node", (5, 17)),
    ("MADV_COLLAPSE", (6, 1)),
    ("memory tiers", (6, 1)),
)


def _features() -> tuple[tuple[str, tuple[int, int]], ...]:
    """Each policy (by its own min_kernel) and kernel feature numa_numpy uses."""
    policies = (Default, Local, Bind, Preferred, PreferredMany, Interleave, WeightedInterleave)
    return tuple((cls.name, cls.min_kernel) for cls in policies) + _KERNEL_FEATURES


@check("kernel", order=70)
def check_kernel(host: Host) -> list[Finding]:
    """The kernel's version against what each policy and feature needs."""
    kernel = host.topo.kernel
    text = f"{kernel[0]}.{kernel[1]}"
    if kernel == (0, 0):
        return [Finding("kernel", Severity.INFO, "the kernel version could not be read")]
    missing = [(name, need) for name, need in _features() if kernel < need]
    details = {"kernel": text, "missing": {n: f"{v[0]}.{v[1]}" for n, v in missing}}
    if missing:
        newest = max(v for _, v in missing)
        return [
            Finding(
                "kernel",
                Severity.INFO,
                f"kernel {text} lacks: "
                + ", ".join(f"{n} (needs {v[0]}.{v[1]})" for n, v in missing),
                "these policies raise NumaUnavailableError (strict) or fall back (soft)",
                f"a kernel >= {newest[0]}.{newest[1]}",
                details,
            )
        ]
    if not tunables.has_interleave_weights(host.files):
        return [
            Finding(
                "kernel",
                Severity.INFO,
                f"kernel {text} has every policy, but no weighted-interleave weights in sysfs",
                "weighted interleave uses weight 1 everywhere (a plain interleave)",
                details=details,
            )
        ]
    return [Finding("kernel", Severity.OK, f"kernel {text} has every policy", details=details)]


# ------------------------------------------------------------------- tiers
def _tiered_findings(host: Host, head: str, use: str, details: dict[str, Any]) -> list[Finding]:
    """Memory-only nodes on a kernel that shows tiers: in the fast tier, or in
    their own with demotion on or off."""
    tiers = host.topo.tiers
    tier_of = {n.id: n.tier for n in host.topo.nodes if n.has_memory}
    if len(set(tier_of.values())) <= 1:
        return [
            Finding(
                "tiers",
                Severity.WARNING,
                f"{head} sit in the same kernel memory tier "
                f"({next(iter(tiers))}) as the nodes with CPUs",
                f"{use}; the kernel neither demotes cold pages to them nor promotes hot pages "
                "from them, and treats them as equally fast",
                "the firmware must describe the slower memory (ACPI HMAT, CXL CDAT) so the "
                "kernel gives it a tier of its own (`dmesg | grep -i hmat`); a driver can set "
                "it too (`daxctl reconfigure-device --mode=system-ram` for CXL/PMEM)",
                details,
            )
        ]
    text = "; ".join(f"tier {t}: nodes {format_list(ids)}" for t, ids in tiers.items())
    if details["demotion_enabled"] is False:
        return [
            Finding(
                "tiers",
                Severity.INFO,
                f"{head}; tiers {text}; demotion is off",
                f"{use}; cold pages stay on the fast tier under memory pressure",
                "echo 1 > /sys/kernel/mm/numa/demotion_enabled (and echo 2 > "
                "/proc/sys/kernel/numa_balancing to promote hot pages)",
                details,
            )
        ]
    return [Finding("tiers", Severity.INFO, f"{head}; tiers {text}", use, details=details)]


@check("tiers", order=80)
def check_tiers(host: Host) -> list[Finding]:
    """Memory-only nodes (CXL, HBM) and the kernel's memory tiers."""
    topo = host.topo
    only = [n.id for n in topo.nodes if n.memory_only]
    tiers = topo.tiers
    details: dict[str, Any] = {
        "memory_only": only,
        "tiers": {str(t): list(ids) for t, ids in tiers.items()},
        "demotion_enabled": tunables.demotion_enabled(host.files),
    }
    if not only:
        text = "; ".join(f"tier {t}: nodes {format_list(ids)}" for t, ids in tiers.items())
        summary = "no memory-only node" + (f" ({text})" if text else "")
        return [Finding("tiers", Severity.OK, summary, details=details)]
    head = f"memory-only node(s) {format_list(only)} (no CPUs: CXL, HBM or device memory)"
    use = "first-touch and Local never land there: name them in a policy (Bind, Interleave)"
    if not tiers:
        return [Finding("tiers", Severity.INFO, head + "; this kernel shows no memory tiers", use)]
    return _tiered_findings(host, head, use, details)


# ----------------------------------------------------------------- sockets
def _nodes_per_package(host: Host) -> dict[int, set[int]]:
    """Node -> the packages (sockets) of its CPUs, for the nodes whose CPUs say."""
    package_of: dict[int, set[int]] = {}
    for node in host.topo.nodes:
        ids = (tunables.package_id(host.files, cpu) for cpu in node.cpus)
        packages = {package for package in ids if package is not None}
        if packages:
            package_of[node.id] = packages
    return package_of


@check("sockets", order=90)
def check_sockets(host: Host) -> list[Finding]:
    """Nodes per socket: sub-NUMA clustering (SNC, NPS2/4) or nodes over sockets."""
    package_of = _nodes_per_package(host)
    nodes_of: dict[int, list[int]] = {}
    for node_id, packages in package_of.items():
        for package in packages:
            nodes_of.setdefault(package, []).append(node_id)
    details = {"nodes_per_package": {str(p): ids for p, ids in sorted(nodes_of.items())}}
    findings = []
    shared = {p: ids for p, ids in nodes_of.items() if len(ids) > 1}
    if shared:
        most = max(len(ids) for ids in shared.values())
        text = "; ".join(
            f"socket {p}: nodes {format_list(ids)}" for p, ids in sorted(shared.items())
        )
        findings.append(
            Finding(
                "sockets",
                Severity.INFO,
                f"{most} nodes per socket ({text}): sub-NUMA clustering (Intel SNC) or "
                "AMD NPS2/NPS4",
                "nodes of one socket are close (see the distances): bind to a node for the "
                "lowest latency, interleave over a socket's nodes for its full bandwidth",
                "nothing to fix; the firmware setup (SNC off / NPS1) makes one node per socket",
                details,
            )
        )
    spanning = [n for n, packages in package_of.items() if len(packages) > 1]
    if spanning:
        findings.append(
            Finding(
                "sockets",
                Severity.INFO,
                f"node(s) {format_list(spanning)} span several sockets (AMD NPS0 or the "
                "firmware's memory interleaving)",
                "placement cannot tell those sockets' memory apart",
                "the firmware setup: NPS1 or more, or memory interleaving off",
                details,
            )
        )
    if findings:
        return findings
    summary = "one node per socket" if nodes_of else "no socket information"
    return [Finding("sockets", Severity.OK, summary, details=details)]


# ------------------------------------------------------------------- files
_FILES_SHOWN = 5


@check("files", order=1000)
def check_files(host: Host) -> list[Finding]:
    """One finding for every file a check could not read, naming each and why;
    nothing when every file read. Runs last: it reports what the others met."""
    problems = dict(host.files.problems)
    if not problems:
        return []
    listed = "; ".join(f"{path} {why}" for path, why in list(problems.items())[:_FILES_SHOWN])
    more = len(problems) - _FILES_SHOWN
    if host.live:
        fix = (
            "run the doctor as a user who may read these files (root); a file the kernel "
            "itself gives wrongly is a kernel or sandbox (gVisor, a FUSE /proc) defect"
        )
    else:
        fix = (
            "copy the files again from the machine (`cp -r` or `tar` keep them as the "
            "kernel gives them; trailing NULs are fine), or repair the ones named"
        )
    return [
        Finding(
            "files",
            Severity.WARNING,
            f"{len(problems)} file(s) could not be read as the kernel writes them: {listed}"
            + (f"; and {more} more" if more > 0 else ""),
            "the checks that read them went on without them (a value missing, a node "
            "without CPUs or memory, one node for an unreadable node list): their "
            "findings may be wrong or missing",
            fix,
            {"files": problems},
        )
    ]
