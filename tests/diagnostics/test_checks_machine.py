"""The checks of the machine (numa_numpy._diagnostics.checks_machine): the kernel's
policies, memory tiers, sockets, and the files that could not be read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures import machine
from fixtures.doctor import (
    covers,
    diagnose,
    only,
)

import numa_numpy as nn

Severity = nn.Severity

NODE0 = "sys/devices/system/node/node0"
POOL0 = f"{NODE0}/hugepages/hugepages-2048kB"



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
