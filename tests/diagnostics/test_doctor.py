"""The doctor: each check is shown the condition it looks for, created for real
where this machine allows it (fault injection, a seccomp filter, a restricted
cpuset, THP and NUMA-balancing switches) and in the kernel's file layout where it
cannot (several nodes, memory-only nodes, tiers, sockets, a container)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import cgroup, machine, seccomp
from fixtures.faults import injected

import numa_numpy as nn
from numa_numpy._diagnostics import registry
from numa_numpy._kernel.lib import lib
from numa_numpy._kernel.topology import format_list

Severity = nn.Severity
REPO = Path(__file__).resolve().parents[2]
COVERED: set[str] = set()  # the checks that have a dedicated test (see `covers`)


def covers(*checks: str):
    """Mark a test as a dedicated test of the registered checks named: every
    registered check must have one (test_every_registered_check_has_a_test)."""

    def mark(test):
        COVERED.update(checks)
        return test

    return mark


def only(diagnosis: nn.Diagnosis, check: str) -> nn.Finding:
    findings = diagnosis.of(check)
    assert len(findings) == 1, [str(f) for f in findings]
    return findings[0]


def diagnose(tmp_path: Path, m: machine.Machine) -> nn.Diagnosis:
    return nn.doctor(root=m.write(tmp_path))


@contextlib.contextmanager
def written(path: str, value: str):
    """Write a kernel switch for the duration of the block (root), then restore it."""
    file = Path(path)
    if not file.exists() or not os.access(file, os.W_OK):
        pytest.skip(f"{path} is not writable here (needs root)")
    before = file.read_text()
    saved = before[before.index("[") + 1 : before.index("]")] if "[" in before else before.strip()
    try:
        file.write_text(value)
    except OSError as exc:
        pytest.skip(f"cannot write {path}: {exc}")
    try:
        yield
    finally:
        file.write_text(saved)
        assert file.read_text() == before, f"{path} was not restored"


# ------------------------------------------------------------- the report
def test_this_machine_is_diagnosed_by_every_check():
    report = nn.doctor()
    names = {f.check for f in report}
    # every check runs here; "files" speaks only of files that could not be read
    assert names == {c.name for c in registry.checks()} - {"files"}
    assert len(names) >= 10
    ranks = [f.severity.rank for f in report]
    assert ranks == sorted(ranks, reverse=True)  # most severe first
    assert report.exit_status == (0 if report.healthy else 1)
    assert only(report, "policy-syscalls").severity is Severity.OK  # CI may bind memory
    text = str(report)
    assert text.splitlines()[-1].startswith("healthy")
    data = report.as_dict()
    assert json.loads(json.dumps(data)) == data
    assert "<table>" in report._repr_html_()
    assert repr(report).startswith("<Diagnosis healthy")


def test_a_finding_shows_what_it_means_and_the_fix(tmp_path):
    report = diagnose(tmp_path, machine.lab(thp_enabled="always"))
    thp = only(report, "thp")
    assert str(thp).splitlines() == [
        f"[warning] thp: {thp.summary}",
        f"    means: {thp.impact}",
        f"    fix: {thp.fix}",
    ]


# ------------------------------------------------------------ the registry
def _lab_tree(root: Path) -> Path:
    """The lab machine's files, with a pool, balancing, a container's cgroup and
    two nodes on one socket: every check has something to read."""
    m = machine.lab(
        huge_pages={0: (8, 6)},
        numa_balancing=1,
        cgroup="0::/docker/abc\n",
        cgroup_files={"docker/abc/cpuset.mems.effective": "0-3\n"},
        packages={0: 0, 1: 0},
        demotion_enabled="true",
    )
    return m.write(root)


def _run_check(check: registry.Check, root: Path) -> tuple[list[nn.Finding], dict[str, str]]:
    """The check's findings on the files under `root`, and what could not be read;
    its findings carry its name and turn to JSON."""
    host = registry.Host.of(root)
    try:
        findings = check.run(host)
    except nn.NumaError:  # one of ours, naming what was wrong, is allowed
        return [], host.files.problems
    assert isinstance(findings, list) and all(isinstance(f, nn.Finding) for f in findings)
    assert {f.check for f in findings} <= {check.name}
    assert all(json.loads(json.dumps(f.as_dict())) == f.as_dict() for f in findings)
    return findings, host.files.problems


DAMAGE = {  # more kinds of damage, mixed, in tests/kernel/test_sysfs_fuzz.py
    "words": lambda path: path.write_text("n/a [x] 5-2 -1\n"),
    "not-utf8": lambda path: path.write_bytes(b"\xff\xfe\n"),
    "folder": lambda path: (path.unlink(), (path / "x").mkdir(parents=True)),
}


@pytest.mark.parametrize("check", registry.checks(), ids=lambda c: c.name)
def test_every_registered_check_reads_a_healthy_tree(tmp_path, check):
    findings, problems = _run_check(check, _lab_tree(tmp_path))
    assert problems == {}  # it read every file it needed as the kernel writes it
    assert bool(findings) == (check.name != "files")  # "files" names only problems


@pytest.mark.parametrize("check", registry.checks(), ids=lambda c: c.name)
def test_every_registered_check_survives_each_file_damaged(tmp_path, check):
    """Each file of the tree damaged in turn, each way: the check gives findings
    (or one of our errors), never another exception."""
    root = _lab_tree(tmp_path / "tree")
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    seen = 0
    for rel in files:
        data = (root / rel).read_bytes()
        for how, damage in DAMAGE.items():
            damage(root / rel)
            try:
                _, problems = _run_check(check, root)
            except Exception as exc:
                raise AssertionError(f"{check.name} on /{rel} made {how}: {exc!r}") from exc
            seen += bool(problems)
            if (root / rel).is_dir():
                __import__("shutil").rmtree(root / rel)
            (root / rel).write_bytes(data)
    assert seen  # the damage was noticed
    findings, _ = _run_check(check, root / "absent")  # and no tree at all
    assert check.name != "files" or findings


def test_every_registered_check_has_a_test():
    names = {c.name for c in registry.checks()}
    assert not names - COVERED, f"no test marked @covers(...) for {sorted(names - COVERED)}"
    assert not COVERED - names, f"@covers names no registered check: {sorted(COVERED - names)}"


def test_the_registry_orders_checks_and_refuses_a_name_or_place_taken():
    found = registry.checks()
    assert [c.order for c in found] == sorted(c.order for c in found)
    assert len({c.name for c in found}) == len({c.order for c in found}) == len(found)
    assert found[-1].name == "files"  # last: it names what the others could not read
    with pytest.raises(ValueError, match="taken"):
        registry.check(found[0].name, order=12345)(lambda host: [])
    with pytest.raises(ValueError, match="taken"):
        registry.check("another", order=found[0].order)(lambda host: [])
    assert registry.checks() == found


def test_a_new_check_is_one_registered_function(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.check("example", order=55)
    def example(host: registry.Host) -> list[nn.Finding]:
        return [nn.Finding("example", Severity.INFO, f"{len(host.topo.nodes)} nodes")]

    report = diagnose(tmp_path, machine.lab())
    assert only(report, "example").summary == "4 nodes"
    infos = [f.check for f in report if f.severity is Severity.INFO]
    assert infos.index("example") < infos.index("huge-pages")  # its order: 55 < 60


@pytest.mark.parametrize(
    "probe, live, expected",
    [(False, False, set()), (True, False, {"policy-syscalls"}), (True, True, None)],
)
def test_what_a_check_needs_decides_where_it_runs(tmp_path, probe, live, expected):
    root = "/" if live else machine.lab().write(tmp_path)
    ran = {f.check for f in nn.doctor(root=root, probe=probe)}
    needing = {c.name for c in registry.checks() if c.needs != registry.Needs.FILES}
    assert needing == {"policy-syscalls", "threads"}
    if expected is None:
        assert needing <= ran
    else:
        assert ran & needing == expected
    for c in registry.checks():
        assert c.applies(probe=True, live=True)
        assert c.applies(probe=False, live=False) == (c.needs == registry.Needs.FILES)


# ------------------------------------------------------- policy system calls
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


def run_under_seccomp(err: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "tests/fixtures/seccomp.py"), err, "--"]
        + [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",  # the installed numa_numpy, not the checkout's source tree
    )


needs_seccomp = pytest.mark.skipif(
    not seccomp.supported(), reason="the seccomp fixture knows x86_64 and aarch64"
)


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


@needs_seccomp
def test_cli_doctor_exit_status_and_json_under_seccomp():
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/fixtures/seccomp.py"), "EPERM", "--"]
        + [sys.executable, "-m", "numa_numpy", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["healthy"] is False


def test_cli_doctor_healthy_here_and_usage_errors(capsys):
    from numa_numpy.__main__ import main

    assert main(["doctor"]) == nn.doctor().exit_status
    out = capsys.readouterr().out
    assert "[ok] policy-syscalls" in out
    assert main(["doctor", "--json"]) == nn.doctor().exit_status
    data = json.loads(capsys.readouterr().out)
    assert data["healthy"] is (nn.doctor().exit_status == 0)
    assert {f["check"] for f in data["findings"]} >= {"policy-syscalls", "thp"}
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "123"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["info", "--root", "/"])  # only the doctor reads a copied tree
    assert exc.value.code == 2


# ------------------------------------------------------------------ cpuset
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


DOCTOR_JSON = "import json, numa_numpy as nn; print(json.dumps(nn.doctor().as_dict()))"


def finding_of(stdout: str, check: str) -> list[dict]:
    return [f for f in json.loads(stdout)["findings"] if f["check"] == check]


needs_cpuset = [
    pytest.mark.skipif(cgroup.hierarchy() is None, reason="needs root and a cpuset cgroup"),
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to leave one out"),
]


def last_cpu_only(code: str, env: dict[str, str] | None = None) -> tuple[int, Path, str]:
    """Run `code` in a child in a new cpuset cgroup that allows only the last CPU."""
    last = max(os.sched_getaffinity(0))
    with cgroup.restricted_cpuset(str(last), format_list(nn.topology().usable_nodes)) as folder:
        return last, folder, cgroup.run_in(folder, code, env)


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


# ----------------------------------------------------------- containers
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


# --------------------------------------------------------------------- THP
@covers("thp")
@pytest.mark.parametrize(
    "enabled, defrag, expected",
    [
        ("always", "madvise", [(Severity.WARNING, "enabled=always")]),
        ("never", "madvise", [(Severity.INFO, "enabled=never")]),
        ("madvise", "always", [(Severity.WARNING, "defrag=always")]),
        (
            "always",
            "always",
            [(Severity.WARNING, "enabled=always"), (Severity.WARNING, "defrag=always")],
        ),
        ("madvise", "defer+madvise", [(Severity.OK, "enabled=madvise, defrag=defer+madvise")]),
    ],
)
def test_thp_modes_from_files(tmp_path, enabled, defrag, expected):
    m = machine.lab(thp_enabled=enabled, thp_defrag=defrag)
    findings = diagnose(tmp_path, m).of("thp")
    assert [(f.severity, f.summary.split(": ")[-1]) for f in findings] == expected


THP = "/sys/kernel/mm/transparent_hugepage"


@pytest.mark.parametrize("mode, severity", [("always", "warning"), ("never", "info")])
def test_thp_enabled_switched_on_this_machine(mode, severity):
    with written(f"{THP}/enabled", mode):
        findings = nn.doctor(probe=False).of("thp")
    assert any(f.severity.value == severity and f"enabled={mode}" in f.summary for f in findings)


def test_thp_defrag_switched_on_this_machine():
    with written(f"{THP}/defrag", "always"):
        findings = nn.doctor(probe=False).of("thp")
    assert any(f.severity is Severity.WARNING and "defrag=always" in f.summary for f in findings)


# ------------------------------------------------------------ NUMA balancing
@pytest.mark.parametrize(
    "mode, nodes, severity",
    [(0, 4, Severity.OK), (1, 4, Severity.WARNING), (2, 4, Severity.INFO), (1, 1, Severity.INFO)],
)
def test_numa_balancing_from_files(tmp_path, mode, nodes, severity):
    m = machine.lab(numa_balancing=mode) if nodes == 4 else machine.Machine(cpus={0: (0, 1)})
    m.numa_balancing = mode
    finding = only(diagnose(tmp_path, m), "numa-balancing")
    assert finding.severity is severity
    if severity is Severity.WARNING:
        assert "echo 0 > /proc/sys/kernel/numa_balancing" in finding.fix


BALANCING_OFF_FIX = "echo 0 > /proc/sys/kernel/numa_balancing (or boot with numa_balancing=disable)"


@covers("numa-balancing")
@pytest.mark.parametrize(
    "mode, cpus, memory, severity, summary, fix",
    [
        (0, 2, 2, Severity.OK, "automatic NUMA balancing is off", ""),
        (
            1,
            1,
            1,
            Severity.INFO,
            "automatic NUMA balancing is on (mode 1) with one memory node",
            BALANCING_OFF_FIX,
        ),
        (
            2,
            1,
            1,
            Severity.INFO,
            "automatic NUMA balancing is on (mode 2) with one memory node",
            BALANCING_OFF_FIX,
        ),
        # two nodes, one of them without memory: still one memory node
        (
            1,
            2,
            1,
            Severity.INFO,
            "automatic NUMA balancing is on (mode 1) with one memory node",
            BALANCING_OFF_FIX,
        ),
        # exactly two memory nodes: the smallest machine where pages can move
        (
            1,
            2,
            2,
            Severity.WARNING,
            "automatic NUMA balancing is on (kernel.numa_balancing=1)",
            BALANCING_OFF_FIX,
        ),
        (
            3,
            2,
            2,
            Severity.WARNING,
            "automatic NUMA balancing is on (kernel.numa_balancing=3)",
            BALANCING_OFF_FIX,
        ),
        (
            2,
            2,
            2,
            Severity.INFO,
            "memory-tiering balancing is on (kernel.numa_balancing=2)",
            "echo 0 > /proc/sys/kernel/numa_balancing to keep pages where they are placed",
        ),
        (
            1,
            3,
            3,
            Severity.WARNING,
            "automatic NUMA balancing is on (kernel.numa_balancing=1)",
            BALANCING_OFF_FIX,
        ),
        (
            1,
            8,
            8,
            Severity.WARNING,
            "automatic NUMA balancing is on (kernel.numa_balancing=1)",
            BALANCING_OFF_FIX,
        ),
    ],
)
def test_numa_balancing_severity_by_memory_nodes(
    tmp_path, mode, cpus, memory, severity, summary, fix
):
    m = machine.Machine(
        cpus={n: (n,) for n in range(cpus)},
        memory_mib={n: 512 if n < memory else 0 for n in range(cpus)},
        numa_balancing=mode,
    )
    finding = only(diagnose(tmp_path, m), "numa-balancing")
    assert (finding.severity, finding.summary, finding.fix) == (severity, summary, fix)
    assert finding.details == {"numa_balancing": mode}


def test_numa_balancing_switched_on_this_machine():
    with written("/proc/sys/kernel/numa_balancing", "1"):
        on = only(nn.doctor(probe=False), "numa-balancing")
    off = only(nn.doctor(probe=False), "numa-balancing")
    assert on.details["numa_balancing"] == 1 and on.severity is not Severity.OK
    assert off.details["numa_balancing"] == int(Path("/proc/sys/kernel/numa_balancing").read_text())


# -------------------------------------------------------------- huge pages
@covers("huge-pages")
def test_huge_page_pool_on_some_nodes_only(tmp_path):
    finding = only(diagnose(tmp_path, machine.lab(huge_pages={0: (8, 6)})), "huge-pages")
    assert finding.severity is Severity.WARNING
    assert "node 0: 6/8 free" in finding.summary and "node(s) 1-3" in finding.summary
    assert "node1/hugepages/hugepages-2048kB/nr_hugepages" in finding.fix


def test_huge_page_pools_everywhere_or_nowhere(tmp_path):
    pools = {n: (4, 4) for n in range(4)}
    assert (
        only(diagnose(tmp_path / "a", machine.lab(huge_pages=pools)), "huge-pages").severity
        is Severity.OK
    )
    assert only(diagnose(tmp_path / "b", machine.lab()), "huge-pages").severity is Severity.INFO


# ------------------------------------------------------------------ kernel
@covers("kernel")
def test_old_kernel_lacks_policies(tmp_path):
    finding = only(diagnose(tmp_path, machine.lab(release="5.10.0-28-amd64")), "kernel")
    assert finding.severity is Severity.INFO
    assert "kernel 5.10 lacks" in finding.summary
    assert "preferred-many (needs 5.15)" in finding.summary
    assert "weighted-interleave (needs 6.9)" in finding.summary
    assert "local" not in finding.summary.split("lacks: ")[1].split(" (")[0]
    assert finding.fix == "a kernel >= 6.9"


def test_new_kernel_has_every_policy(tmp_path):
    assert only(diagnose(tmp_path, machine.lab()), "kernel").severity is Severity.OK
    no_weights = machine.lab(weights=False)
    assert (
        "no weighted-interleave weights"
        in only(diagnose(tmp_path / "b", no_weights), "kernel").summary
    )


# ------------------------------------------------------------------- tiers
@covers("tiers")
def test_memory_only_nodes_in_the_dram_tier(tmp_path):
    finding = only(diagnose(tmp_path, machine.lab(hmat=False)), "tiers")
    assert finding.severity is Severity.WARNING
    assert "memory-only node(s) 2-3" in finding.summary and "tier (4)" in finding.summary
    assert "HMAT" in finding.fix


def test_memory_only_nodes_in_their_own_tier(tmp_path):
    finding = only(diagnose(tmp_path, machine.lab()), "tiers")
    assert finding.severity is Severity.INFO
    assert "tier 4: nodes 0-1; tier 72: nodes 2-3" in finding.summary
    off = only(diagnose(tmp_path / "b", machine.lab(demotion_enabled="false")), "tiers")
    assert "demotion is off" in off.summary and "demotion_enabled" in off.fix


def test_no_memory_only_nodes(tmp_path):
    m = machine.Machine(cpus={0: (0,), 1: (1,)}, tiers={4: (0, 1)})
    assert only(diagnose(tmp_path, m), "tiers").severity is Severity.OK


# ----------------------------------------------------------------- sockets
@covers("sockets")
def test_two_nodes_per_socket_is_sub_numa_clustering(tmp_path):
    m = machine.Machine(cpus={0: (0, 1), 1: (2, 3)}, packages={0: 0, 1: 0, 2: 0, 3: 0})
    finding = only(diagnose(tmp_path, m), "sockets")
    assert finding.severity is Severity.INFO
    assert finding.summary.startswith("2 nodes per socket (socket 0: nodes 0-1)")
    assert "SNC" in finding.summary and "NPS" in finding.summary


def test_one_node_over_two_sockets(tmp_path):
    m = machine.Machine(cpus={0: (0, 1)}, packages={0: 0, 1: 1})
    finding = only(diagnose(tmp_path, m), "sockets")
    assert "node(s) 0 span several sockets" in finding.summary


def test_one_node_per_socket(tmp_path):
    m = machine.Machine(cpus={0: (0,), 1: (1,)}, packages={0: 0, 1: 1})
    assert only(diagnose(tmp_path, m), "sockets").severity is Severity.OK


# ------------------------------------------------------------ thread pools
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


# ---------------------------------------------------------- the self-check
@needs_seccomp
def test_failed_self_check_names_the_refused_calls_and_points_at_the_doctor():
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/fixtures/seccomp.py"), "EPERM", "--"]
        + [sys.executable, "-m", "numa_numpy", "check"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert done.returncode == 1
    last = done.stdout.strip().splitlines()[-1]
    assert "refused here: mbind: Operation not permitted (EPERM" in last
    assert "python -m numa_numpy doctor" in last


# ------------------------------------------------------------- in the lab
LAB_CODE = "import json, numa_numpy as nn; print(json.dumps(nn.doctor(probe=False).as_dict()))"


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=2)
def test_lab_restricted_cpuset_mems():
    if cgroup.hierarchy() is None:
        pytest.skip("no writable cpuset cgroup in this guest")
    topo = nn.topology()
    node = topo.usable_nodes[-1]
    with cgroup.restricted_cpuset(str(max(topo.allowed_cpus)), str(node)) as folder:
        out = cgroup.run_in(folder, LAB_CODE)
    mems = [f for f in finding_of(out, "cpuset") if "memory nodes" in f["summary"]]
    assert len(mems) == 1 and mems[0]["severity"] == "error"
    assert mems[0]["details"]["mems_allowed"] == [node]
    assert f"memory nodes {node} of {format_list(topo.memory_nodes)}" in mems[0]["summary"]


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=2)
def test_lab_numa_balancing_on_and_off():
    with written("/proc/sys/kernel/numa_balancing", "1"):
        on = only(nn.doctor(probe=False), "numa-balancing")
    with written("/proc/sys/kernel/numa_balancing", "0"):
        off = only(nn.doctor(probe=False), "numa-balancing")
    assert on.severity is Severity.WARNING and "numa_balancing=1" in on.summary
    assert off.severity is Severity.OK


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=2)
@pytest.mark.parametrize(
    "file, mode, severity",
    [
        ("enabled", "always", "warning"),
        ("enabled", "never", "info"),
        ("defrag", "always", "warning"),
    ],
)
def test_lab_thp_modes(file, mode, severity):
    with written(f"{THP}/{file}", mode):
        findings = nn.doctor(probe=False).of("thp")
    assert any(f.severity.value == severity and f"{file}={mode}" in f.summary for f in findings)


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=4)
def test_lab_memory_only_nodes_and_tiers():
    finding = only(nn.doctor(probe=False), "tiers")
    assert finding.details["memory_only"] == [2, 3]
    if os.environ.get("NUMA_LAB_HMAT"):
        assert finding.details["tiers"] == {"4": [0, 1], "72": [2, 3]}
        assert finding.severity is Severity.INFO
    else:
        assert finding.details["tiers"] == {"4": [0, 1, 2, 3]}
        assert finding.severity is Severity.WARNING


# ------------------------------- a container's seccomp profile (issue 14 item 4)
SCENARIO = """
import json, warnings
import numa_numpy as nn
from numa_numpy._kernel.pages import mapping_pages

out = {"nodes": list(nn.topology().node_ids)}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    a = nn.numa_zeros(1 << 20, node=0)  # 8 MiB: a mapping of its own
    a[:] = 1.0
    b = nn.numa_ones(1 << 20, node=0)
out["warnings"] = [
    (w.category.__name__, str(w.message), w.filename) for w in caught
]
try:
    nn.numa_zeros(1 << 20, node=0, strict=True)
    out["strict"] = None
except nn.PolicyNotEnforcedError as exc:
    out["strict"] = [str(exc), exc.errno]
out["numa_maps"] = [(m.policy, m.pages) for m in mapping_pages(a.ctypes.data, a.nbytes)]
out["doctor"] = nn.doctor().as_dict()
print(json.dumps(out))
"""


@needs_seccomp
def test_container_seccomp_profile_without_cap_sys_nice(tmp_path):
    script = tmp_path / "user_code.py"
    script.write_text(SCENARIO)
    done = subprocess.run(
        [sys.executable, str(REPO / "tests/fixtures/seccomp.py"), "EPERM", "--"]
        + [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["nodes"] == list(nn.topology().node_ids)  # topology needs no policy call
    # soft: one clear warning for both arrays, at the user's line
    ((category, message, filename),) = out["warnings"]
    assert category == "NumaWarning" and filename == str(script)
    assert "Operation not permitted (EPERM, originated from mbind)" in message
    assert out["strict"][1] == errno.EPERM and "EPERM" in out["strict"][0]
    # the memory is still where first touch put it, and numa_maps (no syscall) says so
    ((policy, pages),) = out["numa_maps"]
    assert policy == "default"  # the kernel was never given bind:0
    assert sum(pages.values()) >= (8 << 20) // 4096
    finding = next(f for f in out["doctor"]["findings"] if f["check"] == "policy-syscalls")
    assert finding["severity"] == "error" and "--cap-add SYS_NICE" in finding["fix"]
    assert "Seccomp: 2" in finding["impact"]


@needs_seccomp
def test_placement_answers_from_numa_maps_under_seccomp():
    code = (
        "import json, numa_numpy as nn\n"
        "a = nn.numa_ones(1 << 20, node=0)\n"
        "where = nn.placement(a)\n"
        "print(json.dumps([where.source, where.pages, where.page_size]))\n"
    )
    done = run_under_seccomp("EPERM", code)
    assert done.returncode == 0, done.stderr
    source, pages, page_size = json.loads(done.stdout)
    assert source == "numa_maps"
    assert sum(pages.values()) * page_size >= 8 << 20


# ------------------------------------------------ files the doctor did not write
NODE0 = "sys/devices/system/node/node0"
POOL0 = f"{NODE0}/hugepages/hugepages-2048kB"


def tar_padded(root: Path) -> Path:
    """What `tar` makes of sysfs: each file claims a page, holds less, and is padded
    with NULs up to the size it claimed."""
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            path.write_bytes(data + b"\0" * (4096 - len(data) % 4096))
    return root


def test_a_tar_snapshot_padded_with_nuls_reads_as_its_files(tmp_path):
    m = machine.lab(huge_pages={0: (8, 6)}, numa_balancing=1, cpus_allowed=(0,))
    plain = diagnose(tmp_path / "plain", m)
    padded = nn.doctor(root=tar_padded(m.write(tmp_path / "tar")))
    assert [f.as_dict() for f in padded] == [f.as_dict() for f in plain]
    assert not padded.of("files")
    assert only(padded, "huge-pages").severity is Severity.WARNING  # the pools were read


def _replace(root: Path, rel: str, content: bytes | None) -> None:
    path = root / rel
    if path.is_dir():
        path.rmdir() if not any(path.iterdir()) else __import__("shutil").rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if content is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _a_folder(root: Path, rel: str) -> None:
    _replace(root, rel, None)
    (root / rel).mkdir(parents=True)
    (root / rel / "x").write_text("1\n")


ODD_FILES = [
    # (what the tree holds, the file named, what the finding says is wrong with it)
    (f"{POOL0}/nr_hugepages", b"\n", f"/{POOL0}/nr_hugepages", "is empty, not a number"),
    (f"{POOL0}/nr_hugepages", b"n/a\n", f"/{POOL0}/nr_hugepages", "holds 'n/a', not a number"),
    (f"{POOL0}/nr_hugepages", b"-3\n", f"/{POOL0}/nr_hugepages", "holds -3, outside 0.."),
    (f"{POOL0}/free_hugepages", b"9" * 40 + b"\n", f"/{POOL0}/free_hugepages", "too large"),
    (f"{POOL0}/nr_hugepages", None, f"/{POOL0}/nr_hugepages", "is missing"),
    (
        f"{NODE0}/meminfo",
        b"Node 0 MemTotal: \xff\xfe kB\n",
        f"/{NODE0}/meminfo",
        "is not UTF-8 text (byte 0xff at offset 17)",
    ),
    (f"{NODE0}/meminfo", b"Node 0 MemTotal: lots\n", f"/{NODE0}/meminfo", "MemTotal is 'lots'"),
    (f"{NODE0}/cpulist", b"0-\n", f"/{NODE0}/cpulist", "holds '0-': '0-' is not an id"),
    (f"{NODE0}/cpulist", b"5-2\n", f"/{NODE0}/cpulist", "descending range '5-2'"),
    (f"{NODE0}/cpulist", b"a,b\n", f"/{NODE0}/cpulist", "'a' is not an id"),
    (f"{NODE0}/cpulist", b"0-16384\n", f"/{NODE0}/cpulist", "id 16384 is above 16383"),
    (f"{NODE0}/distance", b"10 x 30 30\n", f"/{NODE0}/distance", "not distances (0-255)"),
    (f"{NODE0}/distance", b"10 20\n", f"/{NODE0}/distance", "2 distances for 4 online"),
    (
        "sys/devices/system/node/online",
        b"0\x001\n",
        "/sys/devices/system/node/online",
        "holds a NUL byte at offset 1",
    ),
    (
        "proc/self/status",
        b"Cpus_allowed_list:\t1-0\nMems_allowed_list:\t0-3\n",
        "/proc/self/status",
        "descending range '1-0'",
    ),
    (
        "proc/sys/kernel/numa_balancing",
        "\u00b2\n".encode(),
        "/proc/sys/kernel/numa_balancing",
        "holds '\u00b2', not a number",
    ),
    (
        "sys/devices/system/cpu/cpu0/topology/physical_package_id",
        b"--1\n",
        "/sys/devices/system/cpu/cpu0/topology/physical_package_id",
        "holds '--1', not a number",
    ),
    (
        "sys/fs/cgroup/cpuset.mems.effective",
        b"0-1,x\n",
        "/sys/fs/cgroup/cpuset.mems.effective",
        "'x' is not an id",
    ),
    (
        "sys/devices/virtual/memory_tiering/memory_tier4/nodelist",
        b"\xc3\n",
        "/sys/devices/virtual/memory_tiering/memory_tier4/nodelist",
        "is not UTF-8 text",
    ),
    (
        "sys/devices/system/node/online",
        "folder",
        "/sys/devices/system/node/online",
        "is a folder, not a file",
    ),
    (NODE0, b"node0 is a file\n", f"/{NODE0}", "is a file where a folder is expected"),
]


@covers("files")
@pytest.mark.parametrize(
    "rel, content, shown, why",
    ODD_FILES,
    ids=[f"{Path(shown).name}-{why.split(',')[0][:24]}" for _, _, shown, why in ODD_FILES],
)
def test_a_file_it_cannot_read_is_a_finding_naming_it(tmp_path, rel, content, shown, why):
    root = machine.lab(
        huge_pages={0: (8, 6)}, cgroup_files={"cpuset.mems.effective": "0-3\n"}
    ).write(tmp_path)
    if content == "folder":
        _a_folder(root, rel)
    else:
        _replace(root, rel, content)
    report = nn.doctor(root=root)  # before: IndexError, ValueError, UnicodeDecodeError
    finding = only(report, "files")
    assert finding.severity is Severity.WARNING and report.healthy
    assert shown in finding.details["files"], finding.details
    assert why in finding.details["files"][shown]
    assert f"{shown} {finding.details['files'][shown]}" in finding.summary
    assert finding.fix.startswith("copy the files again from the machine")
    assert json.loads(json.dumps(report.as_dict())) == report.as_dict()


def test_unreadable_files_are_listed_five_at_most_in_the_summary(tmp_path):
    root = machine.lab().write(tmp_path)
    for n in range(4):
        (root / f"sys/devices/system/node/node{n}/cpulist").write_bytes(b"\xff\n")
        (root / f"sys/devices/system/node/node{n}/distance").write_bytes(b"?\n")
    finding = only(nn.doctor(root=root), "files")
    assert finding.summary.startswith("8 file(s) could not be read as the kernel writes them: ")
    assert finding.summary.endswith("; and 3 more") and len(finding.details["files"]) == 8


def test_an_unreadable_balancing_switch_is_unknown_not_off(tmp_path):
    m = machine.lab()
    root = m.write(tmp_path)
    (root / "proc/sys/kernel/numa_balancing").write_text("on\n")
    finding = only(nn.doctor(root=root), "numa-balancing")
    assert finding.severity is Severity.INFO
    assert finding.summary == (
        "whether automatic NUMA balancing is on is unknown: "
        "/proc/sys/kernel/numa_balancing holds 'on', not a number"
    )
    (root / "proc/sys/kernel/numa_balancing").unlink()
    assert only(nn.doctor(root=root), "numa-balancing").summary == (
        "no automatic NUMA balancing here"
    )


def test_the_probe_asks_about_this_machine_not_the_copy(tmp_path):
    # the copy's node 900 would not fit this kernel's node masks
    m = machine.Machine(cpus={0: (0,), 900: (1,)})
    report = nn.doctor(root=m.write(tmp_path), probe=True)
    assert only(report, "policy-syscalls").severity is Severity.OK
    assert not report.of("files")


def test_this_machine_reads_every_file():
    report = nn.doctor()
    assert not report.of("files"), [str(f) for f in report.of("files")]


def test_a_root_that_is_no_folder_is_named(tmp_path):
    absent = tmp_path / "absent"
    files = only(nn.doctor(root=absent), "files").details["files"]
    assert files[str(absent)] == "does not exist"
    (tmp_path / "file").write_text("x\n")
    files = only(nn.doctor(root=tmp_path / "file"), "files").details["files"]
    assert files == {str(tmp_path / "file"): "is not a folder"}
