import os
from pathlib import Path

import pytest

import numa_numpy as nn
from numa_numpy import _topology


def test_topology_matches_sysfs():
    topo = nn.topology()
    online = Path("/sys/devices/system/node/online").read_text().strip()
    assert topo.node_ids == _topology.parse_list(online)
    assert topo.from_sysfs
    for node in topo.nodes:
        cpus = Path(f"/sys/devices/system/node/node{node.id}/cpulist").read_text()
        assert node.cpus == _topology.parse_list(cpus)
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


@pytest.mark.parametrize("text, ids", [("0", (0,)), ("0-3", (0, 1, 2, 3)),
                                       ("1,3-4\n", (1, 3, 4)), ("", ())])
def test_parse_list(text, ids):
    assert _topology.parse_list(text) == ids
