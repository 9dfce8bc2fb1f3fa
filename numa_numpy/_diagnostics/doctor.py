"""The NUMA doctor: why placement is refused or undone on this machine or in this
container, and the exact fix.

Every check reads the kernel (sysfs, /proc, the cgroup files) or asks it by
calling the policy system calls once. The files are read under a root folder
(``/`` by default), so a copy of another machine's /sys and /proc can be
diagnosed too.
"""

from __future__ import annotations

import enum
import errno as _errno
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._kernel.lib import clear_step, failed_step, ffi, lib
from .._kernel.topology import (
    MAX_NODE_ID,
    KernelFiles,
    Topology,
    cpuset_files,
    format_list,
    mask_bits,
    read_topology,
)
from ..errors import describe_errno

__all__ = ["Severity", "Finding", "Diagnosis", "doctor"]


class Severity(enum.Enum):
    """How much a finding matters for placement, in increasing order.

    ``OK``: checked, nothing to do. ``INFO``: worth knowing. ``WARNING``: some
    placements are undone, slowed or refused. ``ERROR``: placement is defeated
    (no policy can be applied); ``python -m numa_numpy doctor`` then exits 1.

    See Also
    --------
    Finding, doctor

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.Severity.WARNING, nn.Severity.WARNING.value
    (<Severity.WARNING: 'warning'>, 'warning')
    >>> max(nn.Severity, key=lambda s: s.rank)
    <Severity.ERROR: 'error'>
    """

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        """Position in increasing severity: OK 0, INFO 1, WARNING 2, ERROR 3."""
        return list(Severity).index(self)


@dataclass(frozen=True)
class Finding:
    """One result of the doctor.

    Attributes
    ----------
    check : str
        The check's name ("policy-syscalls", "cpuset", "container", "thp",
        "numa-balancing", "huge-pages", "kernel", "tiers", "sockets",
        "threads", and "files" for the files that could not be read).
    severity : Severity
    summary : str
        What was found.
    impact : str
        What it means for placement ("" when nothing).
    fix : str
        The exact change that removes it ("" when nothing is to be done).
    details : dict
        The raw values behind the finding (errnos, node lists, file values).

    Parameters
    ----------
    check, severity, summary, impact, fix, details
        The attributes above, in that order.

    See Also
    --------
    Diagnosis, doctor

    Examples
    --------
    >>> import numa_numpy as nn
    >>> finding = nn.doctor().of("kernel")[0]
    >>> finding.check, isinstance(finding.severity, nn.Severity)
    ('kernel', True)
    >>> print(nn.Finding("thp", nn.Severity.INFO, "THP is madvise", fix="nothing"))
    [info] thp: THP is madvise
        fix: nothing
    """

    check: str
    severity: Severity
    summary: str
    impact: str = ""
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready values (severity as its string).

        Examples
        --------
        >>> import numa_numpy as nn
        >>> nn.Finding("thp", nn.Severity.OK, "fine").as_dict()["severity"]
        'ok'
        """
        return {
            "check": self.check,
            "severity": self.severity.value,
            "summary": self.summary,
            "impact": self.impact,
            "fix": self.fix,
            "details": self.details,
        }

    def __str__(self) -> str:
        lines = [f"[{self.severity.value}] {self.check}: {self.summary}"]
        if self.impact:
            lines.append(f"    means: {self.impact}")
        if self.fix:
            lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Diagnosis:
    """Everything the doctor found, most severe first.

    Iterating gives the findings; ``healthy`` is False when a finding defeats
    placement (severity ERROR); ``exit_status`` is what ``python -m numa_numpy
    doctor`` exits with (0 healthy, 1 not).

    Parameters
    ----------
    findings : tuple of Finding
        Most severe first.

    See Also
    --------
    doctor : how to get one.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> diagnosis = nn.doctor()
    >>> diagnosis  # doctest: +ELLIPSIS
    <Diagnosis ...>
    >>> diagnosis.exit_status == (0 if diagnosis.healthy else 1)
    True
    >>> all(f.severity is not nn.Severity.OK for f in diagnosis.problems)
    True
    """

    findings: tuple[Finding, ...]

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    @property
    def healthy(self) -> bool:
        """False when a finding defeats placement (severity ERROR)."""
        return all(f.severity is not Severity.ERROR for f in self.findings)

    @property
    def exit_status(self) -> int:
        """What ``numa-numpy doctor`` exits with: 0 healthy, 1 not."""
        return 0 if self.healthy else 1

    @property
    def problems(self) -> tuple[Finding, ...]:
        """The findings that are more than OK."""
        return tuple(f for f in self.findings if f.severity is not Severity.OK)

    def of(self, check: str) -> tuple[Finding, ...]:
        """The findings of one check, by its name.

        Parameters
        ----------
        check : str
            A check's name (``"cpuset"``, ``"thp"``, ``"kernel"``, ...).

        Returns
        -------
        tuple of Finding
            Empty when the check found nothing to report or did not run.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> [f.check for f in nn.doctor().of("kernel")]
        ['kernel']
        """
        return tuple(f for f in self.findings if f.check == check)

    def as_dict(self) -> dict[str, Any]:
        """``{"healthy": bool, "findings": [...]}``: what ``doctor --json`` prints.

        Examples
        --------
        >>> import json
        >>> import numa_numpy as nn
        >>> sorted(json.loads(json.dumps(nn.doctor().as_dict())))
        ['findings', 'healthy']
        """
        return {"healthy": self.healthy, "findings": [f.as_dict() for f in self.findings]}

    def __str__(self) -> str:
        head = "healthy: nothing defeats placement" if self.healthy else "placement is DEFEATED"
        return "\n".join([*map(str, self.findings), head])

    def __repr__(self) -> str:
        counts = {s: sum(f.severity is s for f in self.findings) for s in Severity}
        text = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
        return f"<Diagnosis {'healthy' if self.healthy else 'DEFEATED'}: {text}>"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{f.severity.value}</td><td>{html.escape(f.check)}</td>"
            f"<td>{html.escape(f.summary)}</td><td>{html.escape(f.impact)}</td>"
            f"<td><code>{html.escape(f.fix)}</code></td></tr>"
            for f in self.findings
        )
        return (
            "<table><thead><tr><th>severity</th><th>check</th><th>found</th>"
            f"<th>means</th><th>fix</th></tr></thead><tbody>{rows}</tbody></table>"
        )


# ------------------------------------------------------------------ the host
@dataclass
class _Host:
    """What every check reads: files under `root` (through `files`, which notes
    each one it cannot read), and the topology they describe."""

    root: Path
    topo: Topology
    live: bool
    files: KernelFiles

    def read(self, where: str | Path) -> str | None:
        return self.files.text(where)

    def status(self, key: str) -> str | None:
        match = re.search(rf"^{key}:\s*(.*?)\s*$", self.read("proc/self/status") or "", re.M)
        return match.group(1) if match else None

    def shown(self, path: Path) -> str:
        """A path as it is on the machine described (without a fixture's root)."""
        return self.files.shown(path)


def _bracketed(text: str | None) -> str | None:
    """The selected word of a sysfs choice file: "always [madvise] never"."""
    match = re.search(r"\[(\S+)\]", text or "")
    return match.group(1) if match else None


# ---------------------------------------------------- policy system calls
def _in_fresh_thread(call: Callable[[], int]) -> int:
    """Run a probe in a thread of its own: a thread policy it sets dies with it."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(call()), name="numa-doctor-probe")
    thread.start()
    thread.join()
    return result[0]


def _probe_mbind(topo: Topology) -> int:
    """0, or the errno of mbind on a fresh mapping (-1: it never got to mbind)."""
    from .._policies.cstructs import binding_struct
    from .._policies.policy import Bind

    node = topo.usable_nodes[0] if topo.usable_nodes else 0
    binding, _mask = binding_struct(Bind(node), topo)
    plan = ffi.new("nn_prefault_plan *", {"mode": lib.NN_PREFAULT_NONE})
    mapping = ffi.new("nn_mapping *")
    clear_step()
    rc = lib.nn_map(
        binding, int(lib.nn_base_page_size()), 0, lib.NN_HUGE_NONE, plan, lib.NN_MAP_STRICT, mapping
    )
    if rc == 0:
        lib.nn_unmap(mapping)
        return 0
    return -rc if failed_step("") == "mbind" else -1


def _node_mask(nodes: tuple[int, ...]) -> Any:
    words = ffi.new("unsigned long[]", mask_bits() // 64)
    for node in nodes:
        words[node // 64] |= 1 << (node % 64)
    return words


def _probe_calls(topo: Topology) -> dict[str, int]:
    """Each NUMA policy system call -> 0 when permitted, else its errno."""
    results = {"mbind": _probe_mbind(topo)}
    results["set_mempolicy"] = _in_fresh_thread(
        lambda: -min(0, int(lib.nn_set_mempolicy(lib.NN_MPOL_DEFAULT, ffi.NULL, 0)))
    )
    mode = ffi.new("int *")
    results["get_mempolicy"] = -min(0, int(lib.nn_get_mempolicy(mode, ffi.NULL, 0, ffi.NULL, 0)))
    page = int(lib.nn_base_page_size())
    buffer = np.ones(2 * page, dtype=np.uint8)  # written: its pages are present
    first = buffer.ctypes.data + (-buffer.ctypes.data) % page
    status = ffi.new("int[1]")
    results["move_pages"] = -min(
        0, int(lib.nn_query_pages(ffi.cast("void *", first), 1, page, status))
    )
    # same nodes on both sides: nothing moves, only the permission is asked
    mask = _node_mask(topo.allowed_nodes or (0,))
    results["migrate_pages"] = -min(0, int(lib.nn_migrate_pages(0, mask_bits() + 1, mask, mask)))
    return {call: err for call, err in results.items() if err != -1}


_SECCOMP_FIX = (
    "Docker/Podman: run the container with `--cap-add SYS_NICE` (the default seccomp "
    "profile then allows mbind, set_mempolicy, get_mempolicy, move_pages and "
    "migrate_pages), or with `--security-opt seccomp=PROFILE.json` whose profile "
    'allows them; Kubernetes: `securityContext: {capabilities: {add: ["SYS_NICE"]}}` '
    "or a seccompProfile that allows them"
)


def _check_syscalls(host: _Host, probe: Callable[[Topology], dict[str, int]]) -> list[Finding]:
    # the calls ask the running kernel: about its own nodes, not a copy's
    results = probe(host.topo if host.live else read_topology())
    refused = {call: err for call, err in results.items() if err}
    seccomp = host.status("Seccomp")
    details: dict[str, Any] = {
        "calls": {c: (_errno.errorcode.get(e, str(e)) if e else "ok") for c, e in results.items()},
        "seccomp": seccomp,
    }
    if not refused:
        return [
            Finding(
                "policy-syscalls",
                Severity.OK,
                f"the kernel lets this process call {', '.join(results)}",
                details=details,
            )
        ]
    listed = "; ".join(f"{c}: {describe_errno(e, c)}" for c, e in refused.items())
    policy_refused = {"mbind", "set_mempolicy"} & set(refused)
    if policy_refused:
        severity = Severity.ERROR
        impact = (
            "no memory policy can be applied: arrays land where first touch puts them; "
            "strict=True raises PolicyNotEnforcedError, soft mode warns once and falls back"
        )
    else:
        severity = Severity.WARNING
        impact = (
            "policies apply, but the kernel cannot be asked page by page where memory is "
            "(placement() answers per mapping from /proc/self/numa_maps) and migrate() fails"
        )
    errs = set(refused.values())
    fixes = []
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
        impact += f". Cause: {cause}"
        fixes.append(_SECCOMP_FIX)
    if _errno.ENOSYS in errs:
        impact += (
            ". ENOSYS: the kernel was built without NUMA support (CONFIG_NUMA=n), or a "
            "sandbox (gVisor) or a seccomp filter answers as if the call did not exist"
        )
        fixes.append(
            "boot a kernel built with CONFIG_NUMA=y (every distribution kernel is); under "
            "gVisor use the runc runtime; a seccomp profile must SCMP_ACT_ALLOW these calls"
        )
    if not fixes:
        fixes.append("see the errno: the call itself refused its arguments here")
    return [
        Finding(
            "policy-syscalls",
            severity,
            f"refused: {listed}",
            impact,
            "; or ".join(fixes),
            details,
        )
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


def _check_container(host: _Host) -> list[Finding]:
    evidence = []
    if os.path.exists(host.root / ".dockerenv"):
        evidence.append(("Docker", "/.dockerenv exists"))
    if os.path.exists(host.root / "run/.containerenv"):
        evidence.append(("Podman", "/run/.containerenv exists"))
    for source in ("proc/self/cgroup", "proc/1/cgroup"):
        for line in (host.read(source) or "").splitlines():
            path = line.partition(":")[2].partition(":")[2]
            for key, name in _RUNTIMES.items():
                if key in path:
                    evidence.append((name, f"/{source} names {path}"))
                    break
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
def _check_cpuset(host: _Host) -> list[Finding]:
    topo = host.topo
    machine_mems = topo.memory_nodes
    allowed = tuple(n for n in machine_mems if n in set(topo.allowed_nodes))
    machine_cpus = tuple(sorted({c for n in topo.nodes for c in n.cpus}))
    cpus = tuple(c for c in topo.allowed_cpus if c in set(machine_cpus)) or topo.allowed_cpus
    files = cpuset_files(files=host.files)
    cgroup: dict[str, Any] = {}
    cgroup_mems = None
    folder = None
    for version, candidate in files.items():
        names = ("cpuset.mems.effective",) if version == "v2" else ("cpuset.effective_mems",)
        for name in (*names, "cpuset.mems"):
            text = host.read(candidate / name)
            if text and text.strip():
                cgroup[f"{version}:{name}"] = text.strip()
                mems = host.files.parse_ids(text, candidate / name, high=MAX_NODE_ID)
                if cgroup_mems is None and mems is not None:
                    cgroup_mems, folder = mems, candidate
    details = {
        "memory_nodes": list(machine_mems),
        "mems_allowed": list(topo.allowed_nodes),
        "cpus": list(machine_cpus),
        "cpus_allowed": list(topo.allowed_cpus),
        "cgroup": cgroup,
    }
    where = host.shown(folder) if folder is not None else "<the cgroup>"
    findings = []
    if set(machine_mems) - set(allowed):
        outside = [n for n in machine_mems if n not in allowed]
        defeated = len(machine_mems) > 1 and len(allowed) <= 1
        findings.append(
            Finding(
                "cpuset",
                Severity.ERROR if defeated else Severity.WARNING,
                f"this process may use memory nodes {format_list(allowed) or 'none'} of "
                f"{format_list(machine_mems)} (Mems_allowed_list)",
                f"a policy naming node(s) {format_list(outside)} is refused (EINVAL): strict "
                "raises, soft falls back"
                + ("; with one node left there is no placement to choose" if defeated else ""),
                "widen the cpuset's memory nodes: Docker `--cpuset-mems="
                f"{format_list(machine_mems)}`; systemd `AllowedMemoryNodes="
                f"{format_list(machine_mems)}`; or `echo {format_list(machine_mems)} > "
                f"{where}/cpuset.mems`",
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
    if set(machine_cpus) - set(cpus):
        without = [
            n.id for n in topo.nodes if n.cpus and not (set(n.cpus) & set(topo.allowed_cpus))
        ]
        findings.append(
            Finding(
                "cpuset",
                Severity.WARNING if without else Severity.INFO,
                f"this process may run on CPUs {format_list(cpus)} of "
                f"{format_list(machine_cpus)}"
                + (f": none of node(s) {format_list(without)}" if without else ""),
                (
                    f"pinning to node(s) {format_list(without)} fails and first-touch "
                    "(Local) memory never comes from them"
                    if without
                    else "thread pools sized from os.cpu_count() oversubscribe these CPUs"
                ),
                "widen the cpuset's CPUs: Docker `--cpuset-cpus="
                f"{format_list(machine_cpus)}`; systemd `AllowedCPUs="
                f"{format_list(machine_cpus)}`; or `echo {format_list(machine_cpus)} > "
                f"{where}/cpuset.cpus`",
                details,
            )
        )
    if not findings:
        findings.append(
            Finding(
                "cpuset",
                Severity.OK,
                f"the cpuset allows every memory node ({format_list(machine_mems)}) and "
                f"every CPU ({format_list(machine_cpus)})",
                details=details,
            )
        )
    return findings


# ------------------------------------------------------------------ THP
_THP = "sys/kernel/mm/transparent_hugepage"


def _check_thp(host: _Host) -> list[Finding]:
    enabled = _bracketed(host.read(f"{_THP}/enabled"))
    defrag = _bracketed(host.read(f"{_THP}/defrag"))
    details = {"enabled": enabled, "defrag": defrag}
    if enabled is None:
        return [
            Finding(
                "thp",
                Severity.INFO,
                "transparent huge pages are not available in this kernel",
                "huge_pages='transparent' gives base pages",
                details=details,
            )
        ]
    findings = []
    if enabled == "always":
        findings.append(
            Finding(
                "thp",
                Severity.WARNING,
                "transparent huge pages: enabled=always",
                "every large anonymous mapping may get 2 MiB pages, so an interleave is "
                "spread in 2 MiB units (a 4 MiB array over 4 nodes is not balanced) and "
                "khugepaged may collapse pages of different nodes into one",
                f"echo madvise > /{_THP}/enabled (numa_numpy then asks for huge pages per "
                "array with huge_pages='transparent')",
                details,
            )
        )
    elif enabled == "never":
        findings.append(
            Finding(
                "thp",
                Severity.INFO,
                "transparent huge pages: enabled=never",
                "huge_pages='transparent' gives base pages: more TLB misses and page "
                "faults (512x more than with 2 MiB pages)",
                f"echo madvise > /{_THP}/enabled",
                details,
            )
        )
    if defrag == "always":
        findings.append(
            Finding(
                "thp",
                Severity.WARNING,
                "transparent huge pages: defrag=always",
                "a page fault that finds no free 2 MiB page stalls in direct compaction "
                "(milliseconds), also for later unrelated allocations",
                f"echo defer+madvise > /{_THP}/defrag",
                details,
            )
        )
    if not findings:
        findings.append(
            Finding(
                "thp",
                Severity.OK,
                f"transparent huge pages: enabled={enabled}, defrag={defrag}",
                details=details,
            )
        )
    return findings


# ---------------------------------------------------------- NUMA balancing
def _check_balancing(host: _Host) -> list[Finding]:
    where = "proc/sys/kernel/numa_balancing"
    mode = host.files.integer(where, high=(1 << 31) - 1)
    if mode is None:
        why = host.files.problem(where)
        if why is None:  # no such file: a kernel without NUMA balancing
            return [Finding("numa-balancing", Severity.OK, "no automatic NUMA balancing here")]
        return [
            Finding(
                "numa-balancing",
                Severity.INFO,
                f"whether automatic NUMA balancing is on is unknown: /{where} {why}",
                "if it is on, the kernel moves default and preferred memory towards the "
                "CPUs touching it",
                "`sysctl kernel.numa_balancing` on the machine tells",
                {"numa_balancing": None, "problem": why},
            )
        ]
    details = {"numa_balancing": mode}
    fix = "echo 0 > /proc/sys/kernel/numa_balancing (or boot with numa_balancing=disable)"
    if mode == 0:
        return [
            Finding(
                "numa-balancing", Severity.OK, "automatic NUMA balancing is off", details=details
            )
        ]
    if len(host.topo.memory_nodes) < 2:
        return [
            Finding(
                "numa-balancing",
                Severity.INFO,
                f"automatic NUMA balancing is on (mode {mode}) with one memory node",
                "nothing to move here, but its page-table scans still cost time",
                fix,
                details,
            )
        ]
    if mode & 1:
        return [
            Finding(
                "numa-balancing",
                Severity.WARNING,
                f"automatic NUMA balancing is on (kernel.numa_balancing={mode})",
                "the kernel moves pages of default and preferred memory towards the CPUs "
                "touching them, so first-touch and Preferred placement drift; it scans page "
                "tables periodically (milliseconds each); Bind and Interleave stay put",
                fix,
                details,
            )
        ]
    return [
        Finding(
            "numa-balancing",
            Severity.INFO,
            f"memory-tiering balancing is on (kernel.numa_balancing={mode})",
            "hot pages on slower tiers are promoted to faster nodes: placement on a slow "
            "tier does not last for memory that is used often",
            "echo 0 > /proc/sys/kernel/numa_balancing to keep pages where they are placed",
            details,
        )
    ]


# ------------------------------------------------------------ huge pages
def _check_huge_pages(host: _Host) -> list[Finding]:
    pools: dict[str, dict[int, tuple[int, int]]] = {}
    for node in host.topo.memory_nodes:
        base = f"sys/devices/system/node/node{node}/hugepages"
        for name in host.files.names(base):
            match = re.fullmatch(r"hugepages-([0-9]{1,12}kB)", name, re.ASCII)
            if match is None or not os.path.isdir(host.root / base / name):
                continue
            total, free = (
                host.files.integer(f"{base}/{name}/{count}", required=True) or 0
                for count in ("nr_hugepages", "free_hugepages")
            )
            pools.setdefault(match.group(1), {})[node] = (total, free)
    details = {
        size: {str(n): {"total": t, "free": f} for n, (t, f) in per.items()}
        for size, per in pools.items()
    }
    reserved = {size: per for size, per in pools.items() if any(t for t, _ in per.values())}
    if not reserved:
        return [
            Finding(
                "huge-pages",
                Severity.INFO,
                "no huge-page pool is reserved on any node",
                "huge_pages='2MB' or '1GB' fails (or falls back) until a pool is reserved",
                "echo N > /sys/devices/system/node/nodeX/hugepages/hugepages-2048kB/"
                "nr_hugepages (N pages on node X, as root)",
                details,
            )
        ]
    findings = []
    for size, per in reserved.items():
        empty = [n for n in host.topo.memory_nodes if per.get(n, (0, 0))[0] == 0]
        text = ", ".join(f"node {n}: {f}/{t} free" for n, (t, f) in sorted(per.items()) if t)
        if empty:
            findings.append(
                Finding(
                    "huge-pages",
                    Severity.WARNING,
                    f"{size} huge pages reserved only on some nodes ({text}); none on node(s) "
                    f"{format_list(empty)}",
                    f"explicit {size} huge pages bound to node(s) {format_list(empty)} fail "
                    "(or fall back to base pages)",
                    f"echo N > /sys/devices/system/node/node{empty[0]}/hugepages/"
                    f"hugepages-{size}/nr_hugepages (as root; per node that needs them)",
                    details,
                )
            )
        else:
            findings.append(
                Finding("huge-pages", Severity.OK, f"{size} huge pages: {text}", details=details)
            )
    return findings


# ------------------------------------------------------------------ kernel
def _features() -> tuple[tuple[str, tuple[int, int]], ...]:
    """Each policy (by its own min_kernel) and kernel feature numa_numpy uses."""
    from .._policies.policy import (
        Bind,
        Default,
        Interleave,
        Local,
        Preferred,
        PreferredMany,
        WeightedInterleave,
    )

    policies = (Default, Local, Bind, Preferred, PreferredMany, Interleave, WeightedInterleave)
    return tuple((cls.name, cls.min_kernel) for cls in policies) + _KERNEL_FEATURES


_KERNEL_FEATURES = (
    ("MADV_POPULATE_WRITE (prefault that reports ENOMEM)", (5, 14)),
    ("set_mempolicy_home_node", (5, 17)),
    ("MADV_COLLAPSE", (6, 1)),
    ("memory tiers", (6, 1)),
)


def _check_kernel(host: _Host) -> list[Finding]:
    kernel = host.topo.kernel
    text = f"{kernel[0]}.{kernel[1]}"
    if kernel == (0, 0):
        return [Finding("kernel", Severity.INFO, "the kernel version could not be read")]
    missing = [(name, need) for name, need in _features() if kernel < need]
    details = {"kernel": text, "missing": {n: f"{v[0]}.{v[1]}" for n, v in missing}}
    if missing:
        return [
            Finding(
                "kernel",
                Severity.INFO,
                f"kernel {text} lacks: "
                + ", ".join(f"{n} (needs {v[0]}.{v[1]})" for n, v in missing),
                "these policies raise NumaUnavailableError (strict) or fall back (soft)",
                f"a kernel >= {max(v for _, v in missing)[0]}.{max(v for _, v in missing)[1]}",
                details,
            )
        ]
    if not os.path.isdir(host.root / "sys/kernel/mm/mempolicy/weighted_interleave"):
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
def _demotion(host: _Host) -> bool | None:
    text = (host.read("sys/kernel/mm/numa/demotion_enabled") or "").strip().lower()
    return None if not text else text in ("1", "y", "true")


def _check_tiers(host: _Host) -> list[Finding]:
    topo = host.topo
    only = [n.id for n in topo.nodes if n.memory_only]
    tiers = topo.tiers
    details: dict[str, Any] = {
        "memory_only": only,
        "tiers": {str(t): list(ids) for t, ids in tiers.items()},
        "demotion_enabled": _demotion(host),
    }
    if not only:
        text = "; ".join(f"tier {t}: nodes {format_list(ids)}" for t, ids in tiers.items())
        return [
            Finding(
                "tiers",
                Severity.OK,
                "no memory-only node" + (f" ({text})" if text else ""),
                details=details,
            )
        ]
    head = f"memory-only node(s) {format_list(only)} (no CPUs: CXL, HBM or device memory)"
    use = "first-touch and Local never land there: name them in a policy (Bind, Interleave)"
    tier_of = {n.id: n.tier for n in topo.nodes if n.has_memory}
    if not tiers:
        return [Finding("tiers", Severity.INFO, head + "; this kernel shows no memory tiers", use)]
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


# ----------------------------------------------------------------- sockets
def _check_sockets(host: _Host) -> list[Finding]:
    package_of: dict[int, set[int]] = {}
    for node in host.topo.nodes:
        packages = set()
        for cpu in node.cpus:
            package = host.files.integer(
                f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id",
                low=-1,  # what some architectures give when the firmware does not say
                high=(1 << 31) - 1,
            )
            if package is not None:
                packages.add(package)
        if packages:
            package_of[node.id] = packages
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
    if not findings:
        findings.append(
            Finding(
                "sockets",
                Severity.OK,
                "one node per socket" if nodes_of else "no socket information",
                details=details,
            )
        )
    return findings


# --------------------------------------------------------- thread pools
def _check_threads(host: _Host) -> list[Finding]:
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


# ------------------------------------------------------------------- files
_FILES_SHOWN = 5


def _check_files(host: _Host) -> list[Finding]:
    """One finding for every file a check could not read, naming each and why;
    nothing when every file read."""
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


# -------------------------------------------------------------------- doctor
def doctor(*, root: str | os.PathLike[str] = "/", probe: bool | None = None) -> Diagnosis:
    """Find what refuses, undoes or slows memory placement here, and how to fix it.

    Checks: the policy system calls (mbind, set_mempolicy, get_mempolicy,
    move_pages, migrate_pages: each called once, harmlessly), the cpuset's memory
    nodes and CPUs (cgroup v1 and v2), container detection, transparent huge pages
    (``enabled`` and ``defrag``), automatic NUMA balancing, huge-page pools per
    node, the kernel version against each policy, memory-only nodes and memory
    tiers, nodes per socket (SNC/NPS), and BLAS/OpenMP thread pools against the
    CPUs this process may use (threadpoolctl).

    Parameters
    ----------
    root : path-like, default "/"
        Read sysfs and /proc under this folder: a copy of another machine's
        files laid out as the kernel does (``root/sys/...``, ``root/proc/...``).
    probe : bool, optional
        Call the policy system calls of this process. Default: only when `root`
        is "/" (the calls ask the running kernel, not the files).

    Returns
    -------
    Diagnosis
        The findings, most severe first; ``healthy`` is False when one defeats
        placement (severity ERROR).

    Examples
    --------
    >>> import numa_numpy as nn
    >>> report = nn.doctor()
    >>> {f.check for f in report} >= {"policy-syscalls", "cpuset", "thp"}
    True
    >>> worst = max((f.severity for f in report), key=list(nn.Severity).index)
    >>> report.exit_status == (1 if worst is nn.Severity.ERROR else 0) == (not report.healthy)
    True
    """
    where = Path(os.fspath(root))
    live = where.resolve() == Path("/")
    where = Path("/") if live else where
    files = KernelFiles(where)
    if not os.path.isdir(where):
        files.note(where, "is not a folder" if os.path.exists(where) else "does not exist")
    host = _Host(where, read_topology(where, files), live, files)
    if probe is None:
        probe = live
    checks: list[Callable[[], list[Finding]]] = [
        lambda: _check_container(host),
        lambda: _check_cpuset(host),
        lambda: _check_thp(host),
        lambda: _check_balancing(host),
        lambda: _check_huge_pages(host),
        lambda: _check_kernel(host),
        lambda: _check_tiers(host),
        lambda: _check_sockets(host),
    ]
    if probe:
        checks.insert(0, lambda: _check_syscalls(host, _probe_calls))
    if live:
        checks.append(lambda: _check_threads(host))
    findings = [finding for check in checks for finding in check()]
    findings += _check_files(host)  # last: what every check above could not read
    findings.sort(key=lambda f: -f.severity.rank)  # stable: check order within a severity
    return Diagnosis(tuple(findings))


def refusal_hint() -> str:
    """For a failed self-check: which policy calls the kernel refuses here (if
    any), and where to look next."""
    files = KernelFiles()
    host = _Host(Path("/"), read_topology(files=files), True, files)
    refused = {call: err for call, err in _probe_calls(host.topo).items() if err}
    pointer = "run `python -m numa_numpy doctor` for the cause and the exact fix"
    if not refused:
        return f"no policy call is refused; {pointer}"
    listed = "; ".join(f"{c}: {describe_errno(e, c)}" for c, e in refused.items())
    return f"refused here: {listed}; {pointer}"
