"""The kernel's settings, each read in one place (numa_numpy._kernel.tunables):
from a machine described in the kernel's layout, from damaged files (None and a
note, never an exception), and from this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures import machine

from numa_numpy._kernel import tunables
from numa_numpy._kernel.sysfs import KernelFiles

NODE0 = "sys/devices/system/node/node0"


def files_of(tmp_path: Path, **changes: object) -> KernelFiles:
    return KernelFiles(machine.lab(**changes).write(tmp_path))


def test_thp_modes(tmp_path):
    files = files_of(tmp_path, thp_enabled="always", thp_defrag="defer+madvise")
    assert tunables.thp_enabled(files) == "always"
    assert tunables.thp_defrag(files) == "defer+madvise"
    (files.root / tunables.THP / "enabled").write_text("always madvise never\n")  # none chosen
    (files.root / tunables.THP / "defrag").unlink()
    assert tunables.thp_enabled(files) is None and tunables.thp_defrag(files) is None
    assert files.problems == {}  # a kernel without THP is no damage


def test_huge_page_pools_and_free_pages(tmp_path):
    files = files_of(tmp_path, huge_pages={0: (8, 6)})
    assert tunables.huge_page_pools(files, 0) == {2048: (8, 6)}
    assert tunables.huge_page_pools(files, 1) == {2048: (0, 0)}
    assert tunables.huge_page_pools(files, 7) == {}  # no such node
    assert tunables.free_huge_pages(files, 0, 2048) == 6
    assert tunables.free_huge_pages(files, 0, 1 << 20) is None  # no 1 GiB pool
    assert files.problems == {}


def test_huge_page_pools_of_damaged_files(tmp_path):
    files = files_of(tmp_path, huge_pages={0: (8, 6)})
    pools = files.root / NODE0 / "hugepages"
    (pools / "hugepages-2048kB/nr_hugepages").write_text("n/a\n")
    (pools / "hugepages-1048576kB").mkdir()  # a pool folder without its counts
    (pools / "hugepages-XkB").mkdir()  # not a pool
    (pools / "hugepages-64kB").write_text("a file, not a folder\n")
    assert tunables.huge_page_pools(files, 0) == {1 << 20: (0, 0), 2048: (0, 6)}
    assert tunables.free_huge_pages(files, 0, 1 << 20) is None
    assert (
        "holds 'n/a', not a number"
        in files.problems[f"/{NODE0}/hugepages/hugepages-2048kB/nr_hugepages"]
    )
    assert files.problems[f"/{NODE0}/hugepages/hugepages-1048576kB/free_hugepages"] == "is missing"


@pytest.mark.parametrize("text, mode", [("0\n", 0), ("1\n", 1), ("3\n", 3), ("on\n", None)])
def test_numa_balancing(tmp_path, text, mode):
    files = files_of(tmp_path)
    (files.root / tunables.NUMA_BALANCING).write_text(text)
    assert tunables.numa_balancing(files) == mode
    assert (files.problem(tunables.NUMA_BALANCING) is None) == (mode is not None)


def test_no_numa_balancing_is_no_problem(tmp_path):
    files = files_of(tmp_path, numa_balancing=None)
    assert tunables.numa_balancing(files) is None
    assert files.problem(tunables.NUMA_BALANCING) is None


@pytest.mark.parametrize(
    "text, enabled", [(None, None), ("true", True), ("1", True), ("false", False), ("0", False)]
)
def test_demotion(tmp_path, text, enabled):
    assert tunables.demotion_enabled(files_of(tmp_path, demotion_enabled=text)) is enabled


def test_interleave_weights(tmp_path):
    files = files_of(tmp_path)
    assert tunables.has_interleave_weights(files)
    assert tunables.interleave_weights(files, range(4)) == {0: 1, 1: 1, 2: 1, 3: 1}
    (files.root / tunables.WEIGHTS_DIR / "node2").write_text("300\n")  # no u8
    (files.root / tunables.WEIGHTS_DIR / "node3").write_text("7\n")
    assert tunables.interleave_weights(files, [0, 2, 3, 9]) == {0: 1, 3: 7}
    assert list(files.problems) == [f"/{tunables.WEIGHTS_DIR}/node2"]
    older = files_of(tmp_path / "old", weights=False)
    assert not tunables.has_interleave_weights(older)
    assert tunables.interleave_weights(older, range(4)) == {}


def test_package_ids(tmp_path):
    files = files_of(tmp_path, packages={0: 3, 1: -1})
    assert tunables.package_id(files, 0) == 3
    assert tunables.package_id(files, 1) == -1  # what some firmware says: unknown
    assert tunables.package_id(files, 5) is None


def test_seccomp_and_cgroups(tmp_path):
    files = files_of(tmp_path, seccomp=2, cgroup="0::/docker/abc\n1:cpuset:/job\n")
    assert tunables.seccomp_mode(files) == "2"
    assert tunables.cgroup_memberships(files) == [
        ("/proc/self/cgroup", "/docker/abc"),
        ("/proc/self/cgroup", "/job"),
    ]
    (files.root / "proc/1").mkdir()
    (files.root / "proc/1/cgroup").write_text("0::/init.scope\n")
    assert tunables.cgroup_memberships(files)[-1] == ("/proc/1/cgroup", "/init.scope")
    (files.root / "proc/self/status").write_text("Name:\tpython\n")
    assert tunables.seccomp_mode(files) is None


def test_every_reader_on_this_machine():
    files = KernelFiles()
    nodes = [int(n[4:]) for n in files.names("sys/devices/system/node") if n[4:].isdigit()]
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists():
        assert f"[{tunables.thp_enabled(files)}]" in thp.read_text()
        assert tunables.thp_defrag(files) is not None
    for node in nodes:
        for kib, (total, free) in tunables.huge_page_pools(files, node).items():
            assert 0 <= free <= total or total == 0
            assert tunables.free_huge_pages(files, node, kib) == free
    assert tunables.has_interleave_weights(files) == os.path.isdir(
        "/sys/kernel/mm/mempolicy/weighted_interleave"
    )
    weights = tunables.interleave_weights(files, nodes)
    assert all(0 <= w <= 255 for w in weights.values())
    assert tunables.seccomp_mode(files) in ("0", "1", "2")
    assert tunables.package_id(files, 0) is not None or not os.path.exists(
        "/sys/devices/system/cpu"
    )
    tunables.numa_balancing(files), tunables.demotion_enabled(files)
    tunables.cgroup_memberships(files)
    assert files.problems == {}
