"""The NUMA doctor: why placement is refused or undone on this machine or in this
container, and the exact fix.

Every check reads the kernel (sysfs, /proc, the cgroup files) or asks it by
calling the policy system calls once. The files are read under a root folder
(``/`` by default), so a copy of another machine's /sys and /proc can be
diagnosed too. Each check is a function registered where it is written
(`registry.check`, in the ``checks_*`` modules); the doctor runs them in order.
"""

from __future__ import annotations

import os

from .._kernel.topology import topology

# the checks register themselves as their modules load
from . import checks_machine, checks_memory, checks_process  # noqa: F401
from .checks_process import probe_calls
from .findings import Diagnosis, Finding, Severity
from .registry import Host, checks

__all__ = ["Severity", "Finding", "Diagnosis", "doctor", "refusal_hint"]


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
    host = Host.of(root)
    if probe is None:
        probe = host.live
    findings = [
        finding
        for check in checks()
        if check.applies(probe=probe, live=host.live)
        for finding in check.run(host)
    ]  # "files" runs last: it names what every check before it could not read
    findings.sort(key=lambda f: -f.severity.rank)  # stable: check order within a severity
    return Diagnosis(tuple(findings))


def refusal_hint() -> str:
    """For a failed self-check: which policy calls the kernel refuses here (if
    any), and where to look next."""
    refused = [exc for exc in probe_calls(topology()).values() if exc is not None]
    pointer = "run `python -m numa_numpy doctor` for the cause and the exact fix"
    if not refused:
        return f"no policy call is refused; {pointer}"
    return f"refused here: {'; '.join(map(str, refused))}; {pointer}"
