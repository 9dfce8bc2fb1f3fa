"""The checks of the memory settings (numa_numpy._diagnostics.checks_memory):
transparent huge pages, NUMA balancing and the huge page pools, from files and
switched on this machine where it allows."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import machine
from fixtures.doctor import (
    THP,
    covers,
    diagnose,
    only,
    written,
)

import numa_numpy as nn

Severity = nn.Severity



@covers("thp")
@pytest.mark.parametrize(
    "enabled, defrag, expected",
    [
        ("always", "madvise", [(Severity.WARNING, "enabled=always")]),
        ("never", "madvise", [(Severity.INFO, "enabled=never")]),
        # defrag is thp-defrag's to explain: one warning for defrag=always, not two
        ("madvise", "always", [(Severity.OK, "enabled=madvise, defrag=always")]),
        ("always", "always", [(Severity.WARNING, "enabled=always")]),
        ("madvise", "defer+madvise", [(Severity.OK, "enabled=madvise, defrag=defer+madvise")]),
    ],
)
def test_thp_modes_from_files(tmp_path, enabled, defrag, expected):
    m = machine.lab(thp_enabled=enabled, thp_defrag=defrag)
    findings = diagnose(tmp_path, m).of("thp")
    assert [(f.severity, f.summary.split(": ")[-1]) for f in findings] == expected


@pytest.mark.parametrize("mode, severity", [("always", "warning"), ("never", "info")])
def test_thp_enabled_switched_on_this_machine(mode, severity):
    with written(f"{THP}/enabled", mode):
        findings = nn.doctor(probe=False).of("thp")
    assert any(f.severity.value == severity and f"enabled={mode}" in f.summary for f in findings)


def test_thp_defrag_switched_on_this_machine():
    with written(f"{THP}/defrag", "always"):
        findings = nn.doctor(probe=False).of("thp-defrag")
    assert any(f.severity is Severity.WARNING and "defrag=always" in f.summary for f in findings)


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


def test_no_pool_names_huge_page_values_the_api_takes(tmp_path):
    import re

    from numa_numpy._policies.options import HugePages

    impact = only(diagnose(tmp_path, machine.lab()), "huge-pages").impact
    named = re.findall(r"'([^']+)'", impact)
    assert named == ["2mb", "1gb"], impact
    assert [HugePages(value).value for value in named] == named  # spelled as the API spells them


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
