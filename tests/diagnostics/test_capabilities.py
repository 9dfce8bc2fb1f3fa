"""What the kernel can do, as read by capabilities() (numa_numpy._diagnostics.capabilities)."""



import numa_numpy as nn
from numa_numpy._kernel import topology as _topology


def test_capabilities_read_odd_files_as_absent(tmp_path, monkeypatch):
    from fixtures import machine

    from numa_numpy._diagnostics import capabilities as _capabilities

    root = machine.lab().write(tmp_path)
    node_root = root / "sys/devices/system/node"
    weights = root / "sys/kernel/mm/mempolicy/weighted_interleave"
    (node_root / "node1/hugepages/hugepages-2048kB/nr_hugepages").write_text("n/a\n")
    (node_root / "node1/hugepages/hugepages-XkB").mkdir()
    (node_root / "node0/hugepages/hugepages-1048576kB").mkdir()
    (node_root / "node0/hugepages/hugepages-1048576kB/free_hugepages").write_bytes(b"\xff")
    (weights / "node2").write_text("300\n")
    (node_root / "node3/cpulist").write_text("0-\n")
    monkeypatch.setattr(_topology, "NODE_ROOT", node_root)
    monkeypatch.setattr(_capabilities, "KernelFiles", lambda: _topology.KernelFiles(root))
    caps = nn.capabilities()  # before: ValueError
    assert caps.huge_pages[0] == {"1GB": (0, 0), "2MB": (0, 0)}
    assert caps.huge_pages[1] == {"2MB": (0, 0)}
    assert caps.interleave_weights == {0: 1, 1: 1, 3: 1}  # 300 is no weight (1-255)
