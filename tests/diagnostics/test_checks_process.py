"""The checks of the process's own limits (numa_numpy._diagnostics.checks_process):
policy system calls refused (fault injection, a seccomp filter), the cpuset, a
container, the thread pools."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from fixtures import machine
from fixtures.doctor import (
    DOCTOR_JSON,
    covers,
    diagnose,
    finding_of,
    last_cpu_only,
    needs_cpuset,
    needs_seccomp,
    only,
    run_under_seccomp,
)
from fixtures.faults import injected

import numa_numpy as nn
from numa_numpy._kernel.lib import lib
from numa_numpy._kernel.topology import format_list

Severity = nn.Severity



@covers("policy-syscalls")
@pytest.mark.parametrize(
    "err, words",
    [
        (errno.EPERM, ["--cap-add SYS_NICE", "seccomp"]),
        (errno.ENOSYS, ["CONFIG_NUMA=y"]),
    ],
)
def test_refused_mbind_by_fault_injection(err, words):
    with injected(lib.NN_FAULT_MBIND, err):
        report = nn.doctor()
    finding = only(report, "policy-syscalls")
    assert finding.severity is Severity.ERROR and not report.healthy
    assert report.exit_status == 1
    assert finding.details["calls"]["mbind"] == errno.errorcode[err]
    assert finding.details["calls"]["set_mempolicy"] == "ok"
    assert "mbind" in finding.summary and "set_mempolicy" not in finding.summary
    for word in words:
        assert word in finding.fix
    assert "PolicyNotEnforcedError" in finding.impact
    # the switch is off again: the same process is healthy
    assert only(nn.doctor(), "policy-syscalls").severity is Severity.OK


@pytest.mark.skipif(
    not hasattr(lib, "NN_FAULT_SET_MEMPOLICY"), reason="this build has no set_mempolicy fault"
)
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_refused_set_mempolicy_by_fault_injection(err):
    with injected(lib.NN_FAULT_SET_MEMPOLICY, err):
        report = nn.doctor()
    finding = only(report, "policy-syscalls")
    assert finding.severity is Severity.ERROR and report.exit_status == 1
    assert finding.details["calls"]["set_mempolicy"] == errno.errorcode[err]
    assert finding.details["calls"]["mbind"] == "ok"
    assert finding.summary.startswith("refused: set_mempolicy: ")


SECCOMP_FIX = (
    "Docker/Podman: run the container with `--cap-add SYS_NICE` (the default seccomp "
    "profile then allows mbind, set_mempolicy, get_mempolicy, move_pages and "
    "migrate_pages), or with `--security-opt seccomp=PROFILE.json` whose profile "
    'allows them; Kubernetes: `securityContext: {capabilities: {add: ["SYS_NICE"]}}` '
    "or a seccompProfile that allows them"
)


NO_FILTER_CAUSE = (
    "Cause: no seccomp filter (Seccomp: {}): a security module (SELinux, AppArmor) or a "
    "sandbox refuses them; look for denials in the audit log (`ausearch -m avc`, `dmesg`)"
)


FILTER_CAUSE = (
    "Cause: a seccomp filter is installed in this process (Seccomp: 2 in /proc/self/status): "
    "container runtimes' default profiles refuse these calls unless the container has "
    "CAP_SYS_NICE"
)


@pytest.mark.parametrize("err", [errno.EACCES, errno.EPERM])
def test_a_denied_mbind_gets_the_permission_fix(err):
    # EACCES is what SELinux and AppArmor answer; EPERM what seccomp profiles do
    with injected(lib.NN_FAULT_MBIND, err):
        finding = only(nn.doctor(), "policy-syscalls")
    seccomp = finding.details["seccomp"]
    assert finding.severity is Severity.ERROR
    assert finding.summary.startswith("refused: mbind: ")
    assert finding.fix == SECCOMP_FIX
    cause = FILTER_CAUSE if seccomp == "2" else NO_FILTER_CAUSE.format(seccomp or "?")
    assert finding.impact.endswith(". " + cause)


def test_an_errno_that_is_no_permission_gets_no_permission_fix():
    with injected(lib.NN_FAULT_MBIND, errno.EINVAL):
        finding = only(nn.doctor(), "policy-syscalls")
    assert finding.fix == "see the errno: the call itself refused its arguments here"
    assert "Cause:" not in finding.impact


@needs_seccomp
@pytest.mark.parametrize("err", ["EPERM", "ENOSYS"])
def test_refused_by_a_seccomp_filter(err):
    code = "import json, numa_numpy as nn; print(json.dumps(nn.doctor().as_dict()))"
    done = run_under_seccomp(err, code)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] is False
    finding = next(f for f in report["findings"] if f["check"] == "policy-syscalls")
    assert finding["severity"] == "error"
    assert finding["details"]["calls"] == {
        "mbind": err,
        "set_mempolicy": err,
        "get_mempolicy": "ok",  # not in the filter
        "move_pages": err,
        "migrate_pages": err,
    }
    assert finding["details"]["seccomp"] == "2"
    if err == "EPERM":
        assert "Seccomp: 2" in finding["impact"] and "--cap-add SYS_NICE" in finding["fix"]
    else:
        assert "CONFIG_NUMA" in finding["impact"]


@needs_seccomp
def test_refused_with_eacces_by_a_seccomp_filter():
    code = "import json, numa_numpy as nn; print(json.dumps(nn.doctor().as_dict()))"
    done = run_under_seccomp("EACCES", code)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    finding = next(f for f in report["findings"] if f["check"] == "policy-syscalls")
    assert finding["details"]["calls"]["mbind"] == "EACCES"
    assert finding["fix"] == SECCOMP_FIX
    assert finding["impact"].endswith(". " + FILTER_CAUSE)


@covers("cpuset")
def test_mems_restricted_to_one_node_defeats_placement(tmp_path):
    report = diagnose(tmp_path, machine.lab(mems_allowed=(1,)))
    finding = only(report, "cpuset")
    assert finding.severity is Severity.ERROR and not report.healthy
    assert "memory nodes 1 of 0-3" in finding.summary
    assert "node(s) 0,2-3" in finding.impact
    assert "--cpuset-mems=0-3" in finding.fix


def test_mems_restricted_to_some_nodes_is_a_warning(tmp_path):
    finding = only(diagnose(tmp_path, machine.lab(mems_allowed=(0, 1))), "cpuset")
    assert finding.severity is Severity.WARNING
    assert "memory nodes 0-1 of 0-3" in finding.summary


@pytest.mark.parametrize(
    "lines, files, shown",
    [
        ("0::/docker/abc\n", {"docker/abc/cpuset.mems.effective": "0-3\n"}, "/sys/fs/cgroup"),
        ("3:cpuset:/kubepods/x\n", {"cpuset/kubepods/x/cpuset.effective_mems": "0-3\n"}, "v1"),
    ],
)
def test_cgroup_mems_that_did_not_take_effect(tmp_path, lines, files, shown):
    m = machine.lab(mems_allowed=(0,), cgroup=lines, cgroup_files=files)
    findings = diagnose(tmp_path, m).of("cpuset")
    mismatch = [f for f in findings if "did not take effect" in f.impact]
    assert len(mismatch) == 1
    assert "allows memory nodes 0-3" in mismatch[0].summary
    assert "applies 0" in mismatch[0].summary
    assert str(tmp_path) not in mismatch[0].fix  # paths as on the machine described


def test_cpus_of_a_node_outside_the_cpuset(tmp_path):
    finding = only(diagnose(tmp_path, machine.lab(cpus_allowed=(0,))), "cpuset")
    assert finding.severity is Severity.WARNING
    assert "CPUs 0 of 0-1: none of node(s) 1" in finding.summary
    assert "--cpuset-cpus=0-1" in finding.fix


def test_unrestricted_cpuset_is_ok(tmp_path):
    finding = only(diagnose(tmp_path, machine.lab()), "cpuset")
    assert finding.severity is Severity.OK


@needs_cpuset[0]
@needs_cpuset[1]
def test_child_in_a_restricted_cpuset_cgroup():
    machine_cpus = sorted(c for n in nn.topology().nodes for c in n.cpus)
    last, folder, out = last_cpu_only(DOCTOR_JSON)
    (cpuset,) = finding_of(out, "cpuset")
    assert cpuset["severity"] == "info"  # the node keeps a CPU
    assert f"CPUs {last} of {format_list(machine_cpus)}" in cpuset["summary"]
    assert cpuset["details"]["cpus_allowed"] == [last]
    assert cpuset["details"]["cpus"] == machine_cpus
    assert any(
        key.endswith(("cpuset.effective_mems", "mems.effective"))
        for key in cpuset["details"]["cgroup"]
    )
    assert f"> {folder}/cpuset.cpus" in cpuset["fix"]


@needs_cpuset[0]
@needs_cpuset[1]
def test_child_blas_pool_against_its_cpuset():
    pytest.importorskip("threadpoolctl")
    env = {k: v for k, v in os.environ.items() if not k.endswith("NUM_THREADS")}
    _, _, plain = last_cpu_only(DOCTOR_JSON, env)
    (threads,) = finding_of(plain, "threads")
    if not threads["details"]["pools"]:
        pytest.skip("NumPy loaded no BLAS that threadpoolctl can see")
    assert threads["severity"] == "ok", threads  # OpenBLAS sized itself to the cpuset
    # a pool sized for the whole machine, as code that counts os.cpu_count() does
    grow = "import numpy, threadpoolctl; threadpoolctl.threadpool_limits(2)\n"
    _, _, crowded = last_cpu_only(grow + DOCTOR_JSON, env)
    (threads,) = finding_of(crowded, "threads")
    assert threads["severity"] == "warning"
    assert "larger than the 1 CPU(s)" in threads["summary"]
    assert "OMP_NUM_THREADS=1" in threads["fix"]


@covers("container")
@pytest.mark.parametrize(
    "changes, runtime",
    [
        ({"dockerenv": True}, "Docker"),
        ({"containerenv": True}, "Podman"),
        (
            {"cgroup": "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-1.scope\n"},
            "Kubernetes",
        ),
        ({}, None),
    ],
)
def test_container_detection(tmp_path, changes, runtime):
    finding = only(diagnose(tmp_path, machine.lab(**changes)), "container")
    if runtime is None:
        assert finding.severity is Severity.OK
    else:
        assert finding.severity is Severity.INFO
        assert runtime in finding.summary


def test_container_detection_here_follows_the_files():
    finding = only(nn.doctor(), "container")
    marked = Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    if marked:
        assert finding.severity is Severity.INFO


@covers("threads")
def test_blas_pool_larger_than_the_cpus():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    cpus = len(os.sched_getaffinity(0))
    with threadpoolctl.threadpool_limits(cpus + 3, user_api="blas"):
        crowded = only(nn.doctor(probe=False), "threads")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        fitting = only(nn.doctor(probe=False), "threads")
    if not any(p["user_api"] == "blas" for p in fitting.details["pools"]):
        pytest.skip("NumPy loaded no BLAS that threadpoolctl can see")
    assert crowded.severity is Severity.WARNING
    assert f": {cpus + 3}" in crowded.summary
    assert f"threadpool_limits({cpus})" in crowded.fix
    assert fitting.severity is Severity.OK
