"""Fuzz the doctor, the topology reader and the readers of the kernel's settings
with damaged /sys and /proc trees (issue 22, "untrusted bytes").

A tree given to ``doctor(root=...)`` is a copy someone made (``tar``, ``cp``, a
bug report): its files may hold anything. Start from the fixture machines and
from a copy of this machine's own files, damage the contents (random bytes, NUL
padding, truncation, emptiness, bytes that are not UTF-8, huge and negative
numbers, broken id lists) and the structure (files deleted, a file where a
folder was and the reverse, symbolic-link loops, pipes, bogus ``nodeN``
folders), and check that every tree gives a `Diagnosis` (and a `Topology`, and
settings of the kinds `tunables` promises) that can be printed and turned to
JSON, or one of numa_numpy's errors: never another exception, and never a hang
(a pipe read would wait for a writer for ever).

The suite runs 50 trees; by hand, more::

    NUMA_FUZZ_EXAMPLES=5000 python -m pytest -q tests/kernel/test_sysfs_fuzz.py -p no:randomly
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fixtures import machine

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import numa_numpy as nn  # noqa: E402
from numa_numpy._kernel import (
    sysfs,
    tunables,  # noqa: E402
)
from numa_numpy._kernel import topology as _topology  # noqa: E402

EXAMPLES = int(os.environ.get("NUMA_FUZZ_EXAMPLES", "50"))
DIR = object()  # an empty folder in a tree description


# ------------------------------------------------------------------ the seeds
def _copy_this_machine(root: Path) -> Path:
    """The files the doctor and the topology read, copied from this machine."""
    live = [
        "sys/devices/system/node",
        "sys/devices/virtual/memory_tiering",
        "sys/kernel/mm/transparent_hugepage/enabled",
        "sys/kernel/mm/transparent_hugepage/defrag",
        "sys/kernel/mm/mempolicy/weighted_interleave",
        "sys/kernel/mm/numa/demotion_enabled",
        "proc/sys/kernel/numa_balancing",
        "proc/sys/kernel/osrelease",
        "proc/self/status",
        "proc/self/cgroup",
        "proc/1/cgroup",
        "proc/meminfo",
        ".dockerenv",
    ]
    cpus = Path("/sys/devices/system/cpu")
    live += [
        f"sys/devices/system/cpu/{c.name}/topology/physical_package_id"
        for c in cpus.glob("cpu[0-9]*")
    ]
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        path = line.split(":", 2)[2].lstrip("/")
        for name in ("cpuset.mems.effective", "cpuset.cpus.effective", "cpuset.mems"):
            live.append(str(Path("sys/fs/cgroup") / path / name))

    def copy(rel: str, depth: int) -> None:
        source = Path("/") / rel
        try:
            if source.is_dir():
                if depth > 4:
                    return
                for child in source.iterdir():
                    if child.name in {"compact", "reclaim", "power", "uevent", "subsystem"}:
                        continue
                    if child.is_symlink() and child.is_dir():
                        continue  # sysfs links back up the tree: copy files only
                    copy(f"{rel}/{child.name}", depth + 1)
                return
            data = source.read_bytes()
        except OSError:
            return
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    for rel in live:
        copy(rel, 0)
    return root


def _describe(root: Path) -> dict[str, object]:
    """A tree as {relative path: bytes or DIR}."""
    tree: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_file():
            tree[rel] = path.read_bytes()
        elif path.is_dir() and not any(path.iterdir()):
            tree[rel] = DIR
    return tree


def _seeds() -> dict[str, dict[str, object]]:
    machines = {
        "lab": machine.lab(huge_pages={0: (8, 6), 1: (2, 2)}, numa_balancing=1),
        "lab-no-hmat": machine.lab(hmat=False, demotion_enabled="false"),
        "snc-container": machine.Machine(
            cpus={0: (0, 1), 1: (2, 3)},
            packages={0: 0, 1: 0, 2: 0, 3: 0},
            mems_allowed=(0,),
            cgroup="0::/docker/abc\n",
            cgroup_files={"docker/abc/cpuset.mems.effective": "0\n"},
            dockerenv=True,
            seccomp=2,
        ),
        "v1-old-kernel": machine.Machine(
            cpus={0: (0,), 1: (1,)},
            cgroup="4:cpuset:/job\n0::/\n",
            cgroup_files={"cpuset/job/cpuset.effective_mems": "0-1\n"},
            release="5.4.0",
            thp_enabled="always",
            thp_defrag="always",
        ),
    }
    seeds = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, m in machines.items():
            seeds[name] = _describe(m.write(Path(scratch) / name))
        seeds["this-machine"] = _describe(_copy_this_machine(Path(scratch) / "this"))
    return seeds


SEEDS = _seeds()


def _materialize(tree: dict[str, object], root: Path) -> Path:
    """Write `tree` under `root` (which may hold a tree already: each path is
    made afresh, never written in place)."""
    for rel, value in sorted(tree.items()):
        path = root / rel
        try:
            if path.is_symlink() or path.is_file() or path.is_fifo():
                path.unlink()
            elif path.is_dir() and value is not DIR:
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            if value is DIR:
                path.mkdir(exist_ok=True)
            elif isinstance(value, tuple):  # ("link", target) or ("fifo",)
                if value[0] == "link":
                    path.symlink_to(value[1])
                else:
                    os.mkfifo(path)
            else:
                assert isinstance(value, bytes)
                path.write_bytes(value)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue  # an earlier damage made this path impossible: keep that one
    return root


_SEED_ROOTS: dict[str, Path] = {}
_SCRATCH = Path(tempfile.mkdtemp(prefix="numa-numpy-sysfs-seeds-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)


def _damaged_tree(seed: str, tree: dict[str, object], root: Path) -> Path:
    """`tree`, a damaged copy of seed `seed`, under `root`: the seed's files
    linked (fast, where writing a hundred small files is slow), then what differs
    removed and made afresh."""
    if seed not in _SEED_ROOTS:
        _SEED_ROOTS[seed] = _materialize(SEEDS[seed], _SCRATCH / seed)
    shutil.copytree(_SEED_ROOTS[seed], root, copy_function=os.link, symlinks=True)
    base = SEEDS[seed]
    for rel in sorted(set(base) - set(tree), reverse=True):
        path = root / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    changed = {rel: value for rel, value in tree.items() if base.get(rel, None) != value}
    return _materialize(changed, root)


# ------------------------------------------------------------------ the damage
GARBAGE = [
    b"",
    b"\n",
    b" ",
    b"0-",
    b"-",
    b"5-2",
    b"a,b",
    b",",
    b"1,,2",
    b"0-1-2",
    b"0x10",
    b"n/a",
    b"-1",
    b"-0",
    b"0-99999999",
    b"0-4294967295",
    b"18446744073709551616",
    b"9" * 400,
    b"\xb2",  # SUPERSCRIPT TWO in Latin-1; its UTF-8 form is below
    "\u00b2".encode(),
    "\u0661".encode(),  # ARABIC-INDIC DIGIT ONE
    b"[always] [never]",
    b"[]",
    b"Node 0 MemTotal: kB",
    b"MemTotal: -5 kB",
    b"\xff\xfe\x00\x01",
    b"\0",
    b"0\x001",
]


def _numbers_replaced(data: bytes, by: bytes) -> bytes:
    import re

    return re.sub(rb"[0-9]+", lambda _: by, data)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    seed = draw(st.sampled_from(sorted(SEEDS)))
    tree = dict(SEEDS[seed])
    for _ in range(draw(st.integers(1, 6))):
        files = sorted(k for k, v in tree.items() if isinstance(v, bytes))
        if not files:
            break
        rel = draw(st.sampled_from(files))
        data = tree[rel]
        assert isinstance(data, bytes)
        op = draw(
            st.sampled_from(
                [
                    "random",
                    "garbage",
                    "nul-pad",
                    "nul-inside",
                    "truncate",
                    "empty",
                    "not-utf8",
                    "huge",
                    "negative",
                    "delete",
                    "file-to-folder",
                    "folder-to-file",
                    "link-loop",
                    "link-out",
                    "fifo",
                    "bogus-node",
                    "more-online",
                ]
            )
        )
        if op == "random":
            tree[rel] = draw(st.binary(max_size=80))
        elif op == "garbage":
            tree[rel] = draw(st.sampled_from(GARBAGE)) + draw(st.sampled_from([b"", b"\n"]))
        elif op == "nul-pad":
            tree[rel] = data + b"\0" * draw(st.integers(1, 5000))
        elif op == "nul-inside":
            at = draw(st.integers(0, len(data)))
            tree[rel] = data[:at] + b"\0" + data[at:]
        elif op == "truncate":
            tree[rel] = data[: draw(st.integers(0, max(0, len(data) - 1)))]
        elif op == "empty":
            tree[rel] = b""
        elif op == "not-utf8":
            at = draw(st.integers(0, len(data)))
            tree[rel] = (
                data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + data[at:]
            )
        elif op == "huge":
            digits = draw(st.sampled_from([b"4294967296", b"9" * 25, b"1" * 5000, b"65535"]))
            tree[rel] = _numbers_replaced(data, digits)
        elif op == "negative":
            tree[rel] = _numbers_replaced(data, b"-1")
        elif op == "delete":
            del tree[rel]
        elif op == "file-to-folder":
            del tree[rel]
            tree[f"{rel}/{Path(rel).name}"] = data
        elif op == "folder-to-file":
            parent = str(Path(rel).parent)
            if parent != ".":
                for key in [k for k in tree if k == parent or k.startswith(parent + "/")]:
                    del tree[key]
                tree[parent] = draw(st.sampled_from([b"", b"1\n", b"\xff"]))
        elif op == "link-loop":
            tree[rel] = ("link", Path(rel).name)
        elif op == "link-out":
            tree[rel] = ("link", draw(st.sampled_from(["/", "/dev/zero", "/proc/self/mem"])))
        elif op == "fifo":
            tree[rel] = ("fifo",)
        elif op == "bogus-node":
            node = draw(st.sampled_from([5, 63, 64, 900, 1023, 1024, 70000]))
            base = f"sys/devices/system/node/node{node}"
            tree[f"{base}/cpulist"] = draw(st.sampled_from(GARBAGE + [b"0\n", b"0-3\n"]))
            tree[f"{base}/meminfo"] = f"Node {node} MemTotal: 1024 kB\n".encode()
            tree[f"{base}/hugepages/hugepages-2048kB/nr_hugepages"] = draw(
                st.sampled_from(GARBAGE + [b"4\n"])
            )
            if draw(st.booleans()):
                online = "sys/devices/system/node/online"
                before = tree.get(online)
                text = before if isinstance(before, bytes) else b"0"
                tree[online] = text.rstrip(b"\n") + b"," + str(node).encode() + b"\n"
        elif op == "more-online":
            tree["sys/devices/system/node/online"] = draw(
                st.sampled_from([b"0-1023\n", b"0-3,7\n", b"1\n", b"0,0,0\n"])
            )
    return seed, tree


# ------------------------------------------------------------------ the checks
def _check_topology(root: Path) -> None:
    files = sysfs.KernelFiles(root)
    topo = _topology.read_topology(root, files)
    assert isinstance(topo, nn.Topology) and topo.nodes
    assert all(0 <= i <= _topology.MAX_NODE_ID for i in topo.node_ids)
    assert set(topo.node_ids) <= set(topo.possible)
    assert all(0 <= c <= _topology.MAX_CPU_ID for n in topo.nodes for c in n.cpus)
    str(topo), topo._repr_html_(), topo.tiers_text()
    for why in files.problems.values():
        assert isinstance(why, str) and why


def _check_tunables(root: Path) -> _topology.KernelFiles:
    """Every reader of `tunables`, over the tree's nodes and CPUs and some it
    does not have: a value of its kind, or None."""
    files = sysfs.KernelFiles(root)
    topo = _topology.read_topology(root, sysfs.KernelFiles(root))
    nodes = [*topo.node_ids, 5, 1023]
    assert isinstance(tunables.thp_enabled(files), (str, type(None)))
    assert isinstance(tunables.thp_defrag(files), (str, type(None)))
    for node in nodes:
        for kib, (total, free) in tunables.huge_page_pools(files, node).items():
            assert kib >= 0 and total >= 0 and free >= 0
        free = tunables.free_huge_pages(files, node, 2048)
        assert free is None or free >= 0
    balancing = tunables.numa_balancing(files)
    assert balancing is None or 0 <= balancing < 1 << 31
    assert tunables.demotion_enabled(files) in (None, True, False)
    assert isinstance(tunables.has_interleave_weights(files), bool)
    weights = tunables.interleave_weights(files, nodes)
    assert set(weights) <= set(nodes) and all(0 <= w <= 255 for w in weights.values())
    for cpu in [c for n in topo.nodes for c in n.cpus][:64] + [16383]:
        package = tunables.package_id(files, cpu)
        assert package is None or -1 <= package < 1 << 31
    assert isinstance(tunables.seccomp_mode(files), (str, type(None)))
    assert all(
        isinstance(a, str) and isinstance(b, str) for a, b in tunables.cgroup_memberships(files)
    )
    for why in files.problems.values():
        assert isinstance(why, str) and why
    return files


def _check_doctor(root: Path) -> nn.Diagnosis:
    try:
        report = nn.doctor(root=root)
    except nn.NumaError:  # one of ours, naming what was wrong, is allowed
        raise AssertionError("the doctor gives findings, not errors") from None
    assert isinstance(report, nn.Diagnosis) and len(report) >= 8
    assert all(isinstance(f, nn.Finding) for f in report)
    data = report.as_dict()
    assert json.loads(json.dumps(data)) == data
    str(report), repr(report), report._repr_html_()
    for finding in report.of("files"):
        assert finding.severity is nn.Severity.WARNING
        assert all(path.startswith("/") for path in finding.details["files"])
    return report


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(damaged())
def test_every_damaged_tree_gives_a_diagnosis_and_a_topology(damage):
    with tempfile.TemporaryDirectory() as scratch:
        root = _damaged_tree(*damage, Path(scratch) / "root")
        _check_topology(root)
        _check_tunables(root)
        _check_doctor(root)


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_every_seed_reads_without_a_note(tmp_path, seed):
    root = _materialize(SEEDS[seed], tmp_path)
    files = sysfs.KernelFiles(root)
    _topology.read_topology(root, files)
    assert files.problems == {}
    assert _check_tunables(root).problems == {}
    assert not _check_doctor(root).of("files")


def test_the_copy_of_this_machine_describes_this_machine(tmp_path):
    # A fresh copy, read right after it is made: a node's MemTotal changes while
    # the suite runs on machines whose memory is hot-plugged or ballooned.
    root = _copy_this_machine(tmp_path / "this")
    copied, here = _topology.read_topology(root), nn.topology()
    assert copied.node_ids == here.node_ids and copied.possible == here.possible
    assert [n.cpus for n in copied.nodes] == [n.cpus for n in here.nodes]
    assert [n.distances for n in copied.nodes] == [n.distances for n in here.nodes]
    assert copied.tiers == here.tiers and copied.kernel == here.kernel
    assert [n.memory_total for n in copied.nodes] == [n.memory_total for n in here.nodes]


def test_the_cli_doctor_on_a_damaged_tree(tmp_path):
    help_text = subprocess.run(
        [sys.executable, "-m", "numa_numpy", "doctor", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    tree = dict(SEEDS["lab"])
    tree["sys/devices/system/node/node0/cpulist"] = b"0-\n"
    tree["sys/devices/system/node/node1/meminfo"] = b"\xff\xfe"
    tree["proc/sys/kernel/numa_balancing"] = b"n/a\n"
    root = _materialize(tree, tmp_path / "tree")
    for path in list(root.rglob("*")):
        if path.is_file():
            path.write_bytes(path.read_bytes() + b"\0" * 512)
    expected = nn.doctor(root=root)
    done = subprocess.run(
        [sys.executable, "-m", "numa_numpy", "doctor", "--root", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    if "--root" not in help_text:  # a usage error, not a crash
        assert done.returncode == 2 and "unrecognized arguments: --root" in done.stderr
        pytest.skip("`python -m numa_numpy doctor` takes no --root here")
    assert done.returncode == expected.exit_status, done.stderr
    assert json.loads(done.stdout) == json.loads(json.dumps(expected.as_dict()))
    shutil.rmtree(root)
