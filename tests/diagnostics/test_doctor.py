"""The doctor: each check is shown the condition it looks for, created for real
where this machine allows it (fault injection, a seccomp filter, a restricted
cpuset, THP and NUMA-balancing switches) and in the kernel's file layout where it
cannot (several nodes, memory-only nodes, tiers, sockets, a container)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import cgroup, machine
from fixtures.doctor import (
    REPO,
    THP,
    diagnose,
    finding_of,
    needs_seccomp,
    only,
    run_under_seccomp,
    written,
)

import numa_numpy as nn
from numa_numpy._diagnostics import registry
from numa_numpy._kernel.topology import format_list

Severity = nn.Severity


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
        findings = nn.doctor(probe=False).of("thp" if file == "enabled" else "thp-defrag")
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
