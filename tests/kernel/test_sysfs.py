"""The kernel's files as _kernel/sysfs.py finds them: one cgroup locator for the
cpuset (the topology's CPUs) and the memory limit (the cache's budget)."""

from __future__ import annotations

from pathlib import Path

from numa_numpy._alloc.cache import memory_limit as cache_memory_limit
from numa_numpy._kernel import sysfs
from numa_numpy._kernel.topology import cpuset_cpus, cpuset_files

GiB = 1 << 30


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cgroup_v2_mounted_elsewhere_holds_both_the_cpuset_and_the_memory_limit(tmp_path):
    root = tree(
        tmp_path,
        {
            "proc/meminfo": "MemTotal:       16777216 kB\n",
            "proc/self/cgroup": "0::/job\n",
            "proc/self/mountinfo": (
                "24 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                "30 24 0:26 / /run/cg rw,relatime - cgroup2 cgroup2 rw\n"
            ),
            "run/cg/job/cpuset.cpus.effective": "2-3\n",
            "run/cg/job/memory.max": f"{GiB}\n",
            # where the tree usually is: nothing of this process's there
            "sys/fs/cgroup/job/cpuset.cpus.effective": "0\n",
            "sys/fs/cgroup/job/memory.max": f"{GiB // 2}\n",
        },
    )
    assert cpuset_files(root) == {"v2": root / "run/cg/job"}
    assert cpuset_cpus(root) == (2, 3)
    limit = sysfs.memory_limit(root)
    assert limit == sysfs.MemoryLimit(GiB, f"cgroup v2 {root / 'run/cg/job/memory.max'}")
    assert cache_memory_limit(root) == limit  # the cache's budget reads the same


def test_a_v1_mount_of_a_cgroup_namespace_shows_its_own_folder(tmp_path):
    # a container that mounts only its cgroup: /proc/self/cgroup names the host's
    # path, which the mount shows at its top
    root = tree(
        tmp_path,
        {
            "proc/meminfo": "MemTotal:       16777216 kB\n",
            "proc/self/cgroup": "5:memory:/docker/abc\n3:cpuset:/docker/abc\n",
            "proc/self/mountinfo": (
                "31 25 0:27 /docker/abc /sys/fs/cgroup/cpuset ro - cgroup cgroup rw,cpuset\n"
                "32 25 0:28 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
            ),
            "sys/fs/cgroup/cpuset/cpuset.effective_cpus": "1\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": f"{2 * GiB}\n",
        },
    )
    assert cpuset_files(root) == {"v1": root / "sys/fs/cgroup/cpuset"}
    assert cpuset_cpus(root) == (1,)
    limit = sysfs.memory_limit(root)
    assert limit.bytes == 2 * GiB
    assert limit.source.endswith("sys/fs/cgroup/memory/memory.limit_in_bytes")


def test_without_mountinfo_the_cgroups_are_where_systemd_mounts_them(tmp_path):
    # a copy of /sys and /proc (a bug report's tree) has no mountinfo
    root = tree(
        tmp_path,
        {
            "proc/meminfo": "MemTotal:       16777216 kB\n",
            "proc/self/cgroup": "0::/job\n",
            "sys/fs/cgroup/unified/job/cpuset.cpus.effective": "0-1\n",
            "sys/fs/cgroup/unified/job/memory.high": f"{GiB}\n",
            "sys/fs/cgroup/memory/.keep": "",
        },
    )
    assert cpuset_files(root) == {"v2": root / "sys/fs/cgroup/unified/job"}
    assert cpuset_cpus(root) == (0, 1)
    assert sysfs.memory_limit(root).bytes == GiB


def test_a_cgroup_path_with_dot_dot_is_noted_and_not_followed(tmp_path):
    root = tree(tmp_path, {"proc/self/cgroup": "0::/../../etc\n"})
    files = sysfs.KernelFiles(root)
    assert sysfs.cgroup_folders(files, "cpuset") == {}
    assert "names a cgroup path with '..'" in files.problem("proc/self/cgroup")
