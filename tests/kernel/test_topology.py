import os
from pathlib import Path

import pytest

import numa_numpy as nn
from numa_numpy._kernel import sysfs
from numa_numpy._kernel import topology as _topology


def test_topology_matches_sysfs():
    topo = nn.topology()
    online = Path("/sys/devices/system/node/online").read_text().strip()
    assert topo.node_ids == sysfs.parse_list(online)
    assert topo.from_sysfs
    for node in topo.nodes:
        cpus = Path(f"/sys/devices/system/node/node{node.id}/cpulist").read_text()
        assert node.cpus == sysfs.parse_list(cpus)
        row = Path(f"/sys/devices/system/node/node{node.id}/distance").read_text().split()
        assert [node.distances[i] for i in topo.node_ids] == [int(x) for x in row]
        assert node.memory_total >= node.memory_free > 0 or not node.has_memory
    assert set(topo.allowed_cpus) >= os.sched_getaffinity(0)
    with nn.pinned(cpus=[min(topo.allowed_cpus)]):
        assert nn.topology().allowed_cpus == topo.allowed_cpus  # pinning is not the cpuset
    assert topo.usable_nodes and set(topo.usable_nodes) <= set(topo.allowed_nodes)


def test_numactl_hardware_layout():
    text = str(nn.topology())
    lines = text.splitlines()
    assert lines[0].startswith("available: ")
    assert "node distances:" in lines
    assert any(line.startswith("node 0 cpus:") for line in lines)
    assert "<table>" in nn.topology()._repr_html_()


def test_current_node_and_cpu_follow_the_kernel():
    topo = nn.topology()
    for cpu in sorted(os.sched_getaffinity(0)):
        saved = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, {cpu})
            assert nn.current_cpu() == cpu
            assert nn.current_node() == topo.node_of_cpu(cpu)
        finally:
            os.sched_setaffinity(0, saved)


def test_missing_sysfs_means_one_node(monkeypatch, tmp_path):
    monkeypatch.setattr(_topology, "NODE_ROOT", tmp_path / "absent")
    topo = nn.topology()
    assert topo.node_ids == (0,) and not topo.from_sysfs
    assert topo.nodes[0].memory_total > 0 and topo.nodes[0].cpus
    assert topo.distance(0, 0) == 10


def test_unknown_node_lookup_names_the_nodes():
    with pytest.raises(nn.InvalidNodeError, match="nodes: 0"):
        nn.topology().node(99)


@pytest.mark.parametrize(
    "text, ids", [("0", (0,)), ("0-3", (0, 1, 2, 3)), ("1,3-4\n", (1, 3, 4)), ("", ())]
)
def test_parse_list(text, ids):
    assert sysfs.parse_list(text) == ids


# ------------------------------------------------- tiers and HMAT (fixture tree)
def lab_tree(tmp_path, **changes):
    from fixtures import machine

    return _topology.read_topology(machine.lab(**changes).write(tmp_path))


def test_tiers_and_hmat_parsed_from_the_kernel_layout(tmp_path):
    from fixtures import machine

    topo = lab_tree(tmp_path)
    assert topo.node_ids == (0, 1, 2, 3)
    assert topo.tiers == {4: (0, 1), 72: (2, 3)}
    assert [n.tier for n in topo.nodes] == [4, 4, 72, 72]
    assert [n.memory_only for n in topo.nodes] == [False, False, True, True]
    for n in topo.nodes:
        initiators, bandwidth, latency = machine.LAB_HMAT[n.id]
        assert [a.access for a in n.access] == [0, 1]
        for a in n.access:
            assert a.initiators == initiators
            assert (a.read_bandwidth, a.write_bandwidth) == (bandwidth, bandwidth)
            assert (a.read_latency, a.write_latency) == (latency, latency)
    assert topo.distance(0, 2) == 30 and topo.distance(2, 3) == 20


def test_tiers_text_and_html_show_the_figures(tmp_path):
    topo = lab_tree(tmp_path)
    text = topo.tiers_text().splitlines()
    assert text[:2] == ["memory tier 4: nodes 0-1", "memory tier 72: nodes 2-3"]
    assert "node 2 access0 from node(s) 0-1: read 5120 MB/s 40 ns, write 5120 MB/s 40 ns" in text
    html = topo._repr_html_()
    assert "<th>tier</th>" in html and "<td>72</td>" in html
    assert "5120 MB/s, 40 ns (access0 from 0-1)" in html
    assert "tier" not in str(topo)  # the numactl --hardware layout stays as it is


def test_no_hmat_no_tiers(tmp_path):
    from fixtures import machine

    m = machine.lab(hmat=False, tiers={})
    topo = _topology.read_topology(m.write(tmp_path))
    assert topo.tiers == {} and all(n.tier is None and n.access == () for n in topo.nodes)
    assert "none reported by the firmware" in topo.tiers_text()


def test_this_machine_reports_its_tiers():
    tier_root = Path("/sys/devices/virtual/memory_tiering")
    topo = nn.topology()
    expected = {
        int(d.name[len("memory_tier") :]): sysfs.parse_list((d / "nodelist").read_text())
        for d in tier_root.glob("memory_tier*")
    }
    assert topo.tiers == dict(sorted(expected.items()))
    for n in topo.nodes:
        access0 = Path(f"/sys/devices/system/node/node{n.id}/access0/initiators")
        assert bool(n.access) == access0.is_dir()


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=4)
def test_lab_tiers_and_hmat_are_the_known_values():
    from fixtures import machine

    topo = nn.topology()
    if not os.environ.get("NUMA_LAB_HMAT"):
        assert topo.tiers == {4: (0, 1, 2, 3)}  # no firmware figures: one tier
        assert all(n.access == () for n in topo.nodes)
        return
    assert topo.tiers == machine.LAB_TIERS_HMAT
    for n in topo.nodes:
        initiators, bandwidth, latency = machine.LAB_HMAT[n.id]
        access0 = n.access[0]
        assert access0.initiators == initiators
        assert access0.read_bandwidth == bandwidth and access0.read_latency == latency


# ------------------------------------------- weighted interleave from bandwidth
def test_weights_from_the_firmware_bandwidth(tmp_path):
    from fixtures import machine

    root = machine.lab().write(tmp_path)
    proposal = nn.InterleaveWeights.from_bandwidth(topo=_topology.read_topology(root))
    assert proposal.source == "hmat"
    assert proposal.weights == {0: 4, 1: 4, 2: 1, 3: 1}  # 20480 : 5120 MB/s
    assert proposal.bandwidth == {0: 20480.0, 1: 20480.0, 2: 5120.0, 3: 5120.0}
    assert proposal.policy == nn.WeightedInterleave([0, 1, 2, 3])
    proposal.apply(root=root)
    weights = root / "sys/kernel/mm/mempolicy/weighted_interleave"
    assert [(weights / f"node{n}").read_text() for n in range(4)] == ["4\n", "4\n", "1\n", "1\n"]
    assert proposal.commands()[2] == "echo 1 > /sys/kernel/mm/mempolicy/weighted_interleave/node2"


def test_weights_need_figures(tmp_path):
    from fixtures import machine

    topo = _topology.read_topology(machine.lab(hmat=False).write(tmp_path))
    with pytest.raises(nn.NumaUnavailableError, match=r"no bandwidth \(HMAT\) for node\(s\) 0-3"):
        nn.InterleaveWeights.from_bandwidth(topo=topo)
    with pytest.raises(ValueError, match="positive"):
        nn.InterleaveWeights.from_bandwidth({0: 10.0, 1: 0.0})
    with pytest.raises(ValueError, match="node"):
        nn.InterleaveWeights.from_bandwidth({0: 10.0}, nodes=[0, 1])


def test_weights_from_measured_bandwidth():
    bench = {
        "cpu_nodes": [0, 1],
        "memory": [0, 1, "interleaved"],
        "copy_gbps": [[20.0, 9.9, 15.0], [10.0, 30.0, 15.0]],
    }
    proposal = nn.InterleaveWeights.from_bandwidth(bench, initiator=1)
    assert proposal.source == "measured" and proposal.weights == {0: 1, 1: 3}
    assert nn.InterleaveWeights.from_bandwidth(bench, initiator=0).weights == {0: 2, 1: 1}
    ratio = nn.InterleaveWeights.from_bandwidth({0: 1000.0, 5: 1.0}).weights
    assert ratio == {0: 255, 5: 1}  # the kernel keeps weights in 1-255


def test_applying_weights_without_the_kernel_feature(tmp_path):
    proposal = nn.InterleaveWeights.from_bandwidth({0: 2.0, 1: 1.0})
    with pytest.raises(nn.NumaUnavailableError, match="Linux 6.9"):
        proposal.apply(root=tmp_path)


def test_this_machine_weights_follow_its_firmware():
    topo = nn.topology()
    if all(n.access for n in topo.nodes if n.id in topo.usable_nodes):
        assert nn.InterleaveWeights.from_bandwidth().source == "hmat"
    else:
        with pytest.raises(nn.NumaUnavailableError):
            nn.InterleaveWeights.from_bandwidth()


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=4)
def test_lab_hmat_weights_applied_spread_the_pages():
    if not os.environ.get("NUMA_LAB_HMAT"):
        pytest.skip("the lab without --hmat has no firmware bandwidth")
    proposal = nn.InterleaveWeights.from_bandwidth()
    assert proposal.weights == {0: 4, 1: 4, 2: 1, 3: 1}
    folder = Path("/sys/kernel/mm/mempolicy/weighted_interleave")
    saved = {f: f.read_text() for f in folder.iterdir() if f.is_file()}
    try:
        proposal.apply()
        a = nn.numa_zeros(10 * 256 * 4096 // 8, policy=proposal.policy, huge_pages="none")
        a[:] = 1.0
        pages = nn.placement(a).pages
    finally:
        for f, text in sorted(saved.items(), key=lambda item: item[0].name == "auto"):
            f.write_text(text)  # node weights first: writing one turns 'auto' off
    total = sum(pages.values())
    for node, weight in proposal.weights.items():
        assert abs(pages[node] - total * weight / 10) <= 8, pages


# ------------------------------------- files the topology reader did not write
def test_a_tar_snapshot_padded_with_nuls_gives_the_same_topology(tmp_path):
    from fixtures import machine

    m = machine.lab()
    plain = _topology.read_topology(m.write(tmp_path / "plain"))
    root = m.write(tmp_path / "tar")
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            path.write_bytes(data + b"\0" * (4096 - len(data) % 4096))
    files = sysfs.KernelFiles(root)
    padded = _topology.read_topology(root, files)
    assert padded == plain and str(padded) == str(plain) and padded.tiers == plain.tiers
    assert [n.access for n in padded.nodes] == [n.access for n in plain.nodes]
    assert files.problems == {}


@pytest.mark.parametrize(
    "rel, content, why",
    [
        ("online", b"0-\n", "holds '0-': '0-' is not an id or a range of ids"),
        ("online", b"\n", "names no node"),
        ("online", b"\xff\n", "is not UTF-8 text (byte 0xff at offset 0)"),
        (
            "online",
            b"0-2000\n",
            "holds '0-2000': id 2000 is above 1023, the largest the kernel has",
        ),
    ],
)
def test_an_unreadable_node_list_is_one_node_and_noted(tmp_path, rel, content, why):
    from fixtures import machine

    root = machine.lab().write(tmp_path)
    (root / "sys/devices/system/node" / rel).write_bytes(content)
    files = sysfs.KernelFiles(root)
    topo = _topology.read_topology(root, files)  # before: ValueError, UnicodeDecodeError
    assert topo.node_ids == (0,) and not topo.from_sysfs
    assert topo.nodes[0].memory_total == 2097152 << 10  # from /proc/meminfo
    assert files.problems == {f"/sys/devices/system/node/{rel}": why}


def test_odd_node_files_leave_the_value_out_and_note_the_file(tmp_path):
    from fixtures import machine

    root = machine.lab().write(tmp_path)
    node = root / "sys/devices/system/node"
    (node / "node0/cpulist").write_text("a,b\n")
    (node / "node1/meminfo").write_bytes(b"Node 1 MemTotal: 1 kB\nNode 1 MemFree: \xfe kB\n")
    (node / "node2/distance").write_text("30 30 10\n")
    (node / "node2/access0/initiators/read_latency").write_text("-1\n")
    (node / "possible").write_text("0-1\n")
    (root / "sys/devices/virtual/memory_tiering/memory_tier72/nodelist").write_text("2-3-\n")
    (root / "proc/self/status").write_text("Mems_allowed_list:\t0,,x\n")
    files = sysfs.KernelFiles(root)
    topo = _topology.read_topology(root, files)
    assert topo.node(0).cpus == () and topo.node(1).cpus == (1,)
    assert topo.node(1).memory_total == 0  # the whole file was not text
    assert topo.node(2).distances == {0: 20, 1: 20, 2: 10, 3: 20}
    assert topo.node(2).access[0].read_latency is None
    assert topo.node(2).access[0].read_bandwidth == 5120
    assert topo.possible == (0, 1, 2, 3)  # never fewer than the online nodes
    assert topo.allowed_nodes == (0, 1, 2, 3)
    assert topo.tiers == {4: (0, 1)}
    assert files.problems == {
        "/proc/self/status": "holds '0,,x': 'x' is not an id or a range of ids",
        "/sys/devices/system/node/node0/cpulist": "holds 'a,b': 'a' is not an id or a range of ids",
        "/sys/devices/virtual/memory_tiering/memory_tier72/nodelist": (
            "holds '2-3-': '2-3-' is not an id or a range of ids"
        ),
        "/sys/devices/system/node/node1/meminfo": "is not UTF-8 text (byte 0xfe at offset 38)",
        "/sys/devices/system/node/node2/distance": "holds 3 distances for 4 online nodes",
        "/sys/devices/system/node/node2/access0/initiators/read_latency": (
            "holds -1, outside 0..9223372036854775807"
        ),
    }


def test_kernel_files_never_raise_for_what_they_hold(tmp_path):
    files = sysfs.KernelFiles(tmp_path)
    os.mkfifo(tmp_path / "fifo")  # reading it would wait for a writer for ever
    (tmp_path / "big").write_bytes(b"1" * ((1 << 20) + 1))
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("1\n")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert files.text("fifo") is None and files.text("big") is None
    assert files.integer("folder") is None and files.ids("file/below") is None
    assert files.text("loop") is None and files.text("absent") is None
    assert files.names("file") == [] and files.names("absent") == []
    assert files.text("nul\0name") is None
    assert files.problems == {
        "/fifo": "is a device, pipe or socket, not a file",
        "/big": "holds more than 1 MiB: not a kernel file",
        "/folder": "is a folder, not a file",
        "/file": "is a file where a folder is expected",
        "/loop": "cannot be read: Too many levels of symbolic links",
        "/nul\0name": "cannot be read: its name holds a NUL byte",
    }
    assert files.text("/file") == "1\n"  # a string stays under the root


@pytest.mark.parametrize(
    "text, high, message",
    [
        ("\u0661", None, "'\u0661' is not an id"),  # ARABIC-INDIC DIGIT ONE: isdigit() is True
        ("0-3,4-", None, "'4-' is not an id"),
        ("9" * 30, None, "is not an id"),
        ("3-1", None, "descending range '3-1'"),
        ("0-64", 63, "id 64 is above 63"),
    ],
)
def test_parse_list_refuses_what_the_kernel_does_not_write(text, high, message):
    with pytest.raises(ValueError, match=message):
        sysfs.parse_list(text, high=high)

