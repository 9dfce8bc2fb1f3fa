"""The doctor's checks of what this process may do: the policy system calls, the
container it runs in, its cpuset, and its thread pools."""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

from .._kernel import probes, tunables
from .._kernel.sysfs import MAX_NODE_ID
from .._kernel.topology import Topology, cpuset_files, format_list, read_topology
from .._policies.cstructs import binding_struct
from .._policies.policy import Bind
from ..errors import NumaError
from .findings import Finding, Severity
from .registry import Host, Needs, check

__all__ = ["probe_calls"]


# ---------------------------------------------------- policy system calls
def probe_calls(topo: Topology) -> dict[str, NumaError | None]:
    """Each NUMA policy system call -> None when the kernel permits it to this
    process, else its error (mbind probed on a page bound to a node of `topo`)."""
    node = topo.usable_nodes[0] if topo.usable_nodes else 0
    binding, _mask = binding_struct(Bind(node), topo)  # _mask keeps the node mask alive
    return probes.policy_calls(binding, topo.allowed_nodes or (0,))


_SECCOMP_FIX = (
    "Docker/Podman: run the container with `--cap-add SYS_NICE` (the default seccomp "
    "profile then allows mbind, set_mempolicy, get_mempolicy, move_pages and "
    "migrate_pages), or with `--security-opt seccomp=PROFILE.json` whose profile "
    'allows them; Kubernetes: `securityContext: {capabilities: {add: ["SYS_NICE"]}}` '
    "or a seccompProfile that allows them"
)


def _refused_impact(refused: set[str]) -> tuple[Severity, str]:
    """How bad the refusal of these calls is, and what it means."""
    if {"mbind", "set_mempolicy"} & refused:
        return Severity.ERROR, (
            "no memory policy can be applied: arrays land where first touch puts them; "
            "strict=True raises PolicyNotEnforcedError, soft mode warns once and falls back"
        )
    return Severity.WARNING, (
        "policies apply, but the kernel cannot be asked page by page where memory is "
        "(placement() answers per mapping from /proc/self/numa_maps) and migrate() fails"
    )


def _refusal_causes(errs: set[int], seccomp: str | None) -> tuple[str, list[str]]:
    """What the errnos tell of the cause (appended to the impact), and the fixes."""
    causes, fixes = "", []
    if _errno.EPERM in errs or _errno.EACCES in errs:
        if seccomp == "2":
            cause = (
                "a seccomp filter is installed in this process (Seccomp: 2 in "
                "/proc/self/status): container runtimes' default profiles refuse these calls "
                "unless the container has CAP_SYS_NICE"
            )
        else:
            cause = (
                f"no seccomp filter (Seccomp: {seccomp or '?'}): a security module "
                "(SELinux, AppArmor) or a sandbox refuses them; look for denials in the "
                "audit log (`ausearch -m avc`, `dmesg`)"
            )
        causes += f". Cause: {cause}"
        fixes.append(_SECCOMP_FIX)
    if _errno.ENOSYS in errs:
        causes += (
            ". ENOSYS: the kernel was built without NUMA support (CONFIG_NUMA=n), or a "
            "sandbox (gVisor) or a seccomp filter answers as if the call did not exist"
        )
        fixes.append(
            "boot a kernel built with CONFIG_NUMA=y (every distribution kernel is); under "
            "gVisor use the runc runtime; a seccomp profile must SCMP_ACT_ALLOW these calls"
        )
    if not fixes:
        fixes.append("see the errno: the call itself refused its arguments here")
    return causes, fixes


@check("policy-syscalls", order=10, needs=Needs.SYSCALLS)
def check_syscalls(host: Host) -> list[Finding]:
    """Whether the kernel lets this process call each policy system call."""
    # the calls ask the running kernel: about its own nodes, not a copy's
    results = probe_calls(host.topo if host.live else read_topology())
    refused = {call: exc for call, exc in results.items() if exc is not None}
    seccomp = tunables.seccomp_mode(host.files)
    details: dict[str, Any] = {
        "calls": {c: getattr(e, "errno_name", "?") if e else "ok" for c, e in results.items()},
        "seccomp": seccomp,
    }
    if not refused:
        summary = f"the kernel lets this process call {', '.join(results)}"
        return [Finding("policy-syscalls", Severity.OK, summary, details=details)]
    severity, impact = _refused_impact(set(refused))
    causes, fixes = _refusal_causes({getattr(e, "errno", 0) for e in refused.values()}, seccomp)
    summary = "refused: " + "; ".join(map(str, refused.values()))
    return [
        Finding("policy-syscalls", severity, summary, impact + causes, "; or ".join(fixes), details)
    ]


# ------------------------------------------------------------- containers
_RUNTIMES = {
    "kubepods": "Kubernetes",
    "docker": "Docker",
    "libpod": "Podman",
    "containerd": "containerd",
    "crio": "CRI-O",
    "lxc": "LXC",
}


@check("container", order=20)
def check_container(host: Host) -> list[Finding]:
    """Whether this runs in a container that says so (its marker files, or a
    runtime named in the cgroup paths)."""
    evidence = []
    if os.path.exists(host.files.path(".dockerenv")):
        evidence.append(("Docker", "/.dockerenv exists"))
    if os.path.exists(host.files.path("run/.containerenv")):
        evidence.append(("Podman", "/run/.containerenv exists"))
    for source, path in tunables.cgroup_memberships(host.files):
        name = next((name for key, name in _RUNTIMES.items() if key in path), None)
        if name is not None:
            evidence.append((name, f"{source} names {path}"))
    if not evidence:
        return [Finding("container", Severity.OK, "not in a container that says so")]
    runtimes = sorted({name for name, _ in evidence})
    return [
        Finding(
            "container",
            Severity.INFO,
            f"running in a container ({', '.join(runtimes)}): {evidence[0][1]}",
            "containers often refuse the policy system calls (seccomp without "
            "CAP_SYS_NICE) and limit the nodes (--cpuset-mems): see policy-syscalls "
            "and cpuset",
            details={"evidence": [why for _, why in evidence]},
        )
    ]


# ----------------------------------------------------------------- cpuset
def _cgroup_mems(host: Host) -> tuple[dict[str, str], tuple[int, ...] | None, Any]:
    """The cgroup's cpuset memory files ({"v2:cpuset.mems": text}), the first
    node list among them, and the folder it came from (None: none read)."""
    cgroup: dict[str, str] = {}
    cgroup_mems = None
    folder = None
    for version, candidate in cpuset_files(files=host.files).items():
        names = ("cpuset.mems.effective",) if version == "v2" else ("cpuset.effective_mems",)
        for name in (*names, "cpuset.mems"):
            text = host.read(candidate / name)
            if text and text.strip():
                cgroup[f"{version}:{name}"] = text.strip()
                mems = host.files.parse_ids(text, candidate / name, high=MAX_NODE_ID)
                if cgroup_mems is None and mems is not None:
                    cgroup_mems, folder = mems, candidate
    return cgroup, cgroup_mems, folder


def _mems_findings(
    topo: Topology, cgroup_mems: tuple[int, ...] | None, where: str, details: dict[str, Any]
) -> list[Finding]:
    """The memory nodes this process may not use, and a cgroup that says otherwise."""
    machine_mems = topo.memory_nodes
    allowed = tuple(n for n in machine_mems if n in set(topo.allowed_nodes))
    findings = []
    if set(machine_mems) - set(allowed):
        outside = [n for n in machine_mems if n not in allowed]
        defeated = len(machine_mems) > 1 and len(allowed) <= 1
        every = format_list(machine_mems)
        findings.append(
            Finding(
                "cpuset",
                Severity.ERROR if defeated else Severity.WARNING,
                f"this process may use memory nodes {format_list(allowed) or 'none'} of "
                f"{every} (Mems_allowed_list)",
                f"a policy naming node(s) {format_list(outside)} is refused (EINVAL): strict "
                "raises, soft falls back"
                + ("; with one node left there is no placement to choose" if defeated else ""),
                f"widen the cpuset's memory nodes: Docker `--cpuset-mems={every}`; systemd "
                f"`AllowedMemoryNodes={every}`; or `echo {every} > {where}/cpuset.mems`",
                details,
            )
        )
    if cgroup_mems is not None and set(cgroup_mems) != set(topo.allowed_nodes):
        findings.append(
            Finding(
                "cpuset",
                Severity.WARNING,
                f"the cgroup's cpuset allows memory nodes {format_list(cgroup_mems)} but the "
                f"kernel applies {format_list(topo.allowed_nodes)} to this process",
                "the container runtime's --cpuset-mems did not take effect (or a parent "
                "cgroup narrows it); placement follows Mems_allowed_list",
                f"check the parents of {where}: each must allow the nodes in cpuset.mems",
                details,
            )
        )
    return findings


def _cpus_finding(topo: Topology, where: str, details: dict[str, Any]) -> list[Finding]:
    """The CPUs this process may not run on, and the nodes left without one."""
    machine_cpus = tuple(details["cpus"])
    cpus = tuple(c for c in topo.allowed_cpus if c in set(machine_cpus)) or topo.allowed_cpus
    if not set(machine_cpus) - set(cpus):
        return []
    without = [n.id for n in topo.nodes if n.cpus and not (set(n.cpus) & set(topo.allowed_cpus))]
    every = format_list(machine_cpus)
    return [
        Finding(
            "cpuset",
            Severity.WARNING if without else Severity.INFO,
            f"this process may run on CPUs {format_list(cpus)} of {every}"
            + (f": none of node(s) {format_list(without)}" if without else ""),
            (
                f"pinning to node(s) {format_list(without)} fails and first-touch "
                "(Local) memory never comes from them"
                if without
                else "thread pools sized from os.cpu_count() oversubscribe these CPUs"
            ),
            f"widen the cpuset's CPUs: Docker `--cpuset-cpus={every}`; systemd "
            f"`AllowedCPUs={every}`; or `echo {every} > {where}/cpuset.cpus`",
            details,
        )
    ]


@check("cpuset", order=30)
def check_cpuset(host: Host) -> list[Finding]:
    """The memory nodes and CPUs the cpuset leaves this process (cgroup v1 and v2)."""
    topo = host.topo
    cgroup, cgroup_mems, folder = _cgroup_mems(host)
    details: dict[str, Any] = {
        "memory_nodes": list(topo.memory_nodes),
        "mems_allowed": list(topo.allowed_nodes),
        "cpus": sorted({c for n in topo.nodes for c in n.cpus}),
        "cpus_allowed": list(topo.allowed_cpus),
        "cgroup": cgroup,
    }
    where = host.shown(folder) if folder is not None else "<the cgroup>"
    findings = _mems_findings(topo, cgroup_mems, where, details)
    findings += _cpus_finding(topo, where, details)
    if findings:
        return findings
    summary = (
        f"the cpuset allows every memory node ({format_list(topo.memory_nodes)}) and "
        f"every CPU ({format_list(details['cpus'])})"
    )
    return [Finding("cpuset", Severity.OK, summary, details=details)]


# --------------------------------------------------------- thread pools
@check("threads", order=100, needs=Needs.LIVE)
def check_threads(host: Host) -> list[Finding]:
    """BLAS/OpenMP thread pools against the CPUs this process may use."""
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - a declared dependency
        return [Finding("threads", Severity.INFO, "threadpoolctl is not installed")]
    cpus = set(host.topo.allowed_cpus) & os.sched_getaffinity(0) or os.sched_getaffinity(0)
    pools = threadpool_info()
    details = {
        "cpus": len(cpus),
        "pools": [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "filepath")}
            for p in pools
        ],
    }
    over = [p for p in pools if int(p.get("num_threads") or 0) > len(cpus)]
    if not over:
        text = ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in pools)
        return [
            Finding(
                "threads",
                Severity.OK,
                f"thread pools fit the {len(cpus)} CPU(s) this process may use"
                + (f" ({text})" if text else " (no BLAS/OpenMP pool loaded)"),
                details=details,
            )
        ]
    text = ", ".join(f"{p['internal_api']} ({p['user_api']}): {p['num_threads']}" for p in over)
    n = len(cpus)
    return [
        Finding(
            "threads",
            Severity.WARNING,
            f"thread pools larger than the {n} CPU(s) this process may use: {text}",
            "threads time-share the CPUs (BLAS calls slow down many-fold) and node-local "
            "work is disturbed by threads that cannot run where they were meant to",
            f"export OMP_NUM_THREADS={n} OPENBLAS_NUM_THREADS={n} MKL_NUM_THREADS={n} before "
            f"Python starts, or call threadpoolctl.threadpool_limits({n})",
            details,
        )
    ]
