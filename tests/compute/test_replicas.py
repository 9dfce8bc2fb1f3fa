import numpy as np
import pytest

import numa_numpy as nn
from numa_numpy._compute import replicas as _replicas


def test_one_read_only_copy_per_node():
    src = np.arange(12.0).reshape(3, 4)
    r = nn.replicate(src)
    assert r.nodes == nn.topology().usable_nodes and len(r) == len(r.nodes)
    for node in r:
        copy = r[node]
        np.testing.assert_array_equal(copy, src)
        assert not np.shares_memory(copy, src)
        assert not copy.flags.writeable
        with pytest.raises(ValueError):
            copy[0, 0] = 1.0
        assert nn.placement(copy).on(node)
    src[0, 0] = 99.0  # a copy: later changes are not seen
    assert r[r.nodes[0]][0, 0] == 0.0
    assert r.local() is r.for_node(nn.current_node())
    assert r.nbytes == src.nbytes * len(r)
    assert "Replicas" in repr(r)
    assert 0 in r


def test_errors():
    r = nn.replicate([1, 2, 3], nodes=0)
    with pytest.raises(nn.InvalidNodeError, match="no replica on node 5"):
        r[5]
    with pytest.raises(nn.InvalidNodeError):
        nn.replicate([1], nodes=99)
    with pytest.raises(nn.InvalidNodeError):
        nn.replicate([1], nodes=-1)


def test_budget_refuses_before_copying(monkeypatch):
    monkeypatch.setattr(_replicas, "_free_bytes", lambda node: 1 << 20)
    with pytest.raises(nn.NumaAllocationError, match="does not fit on node 0") as info:
        nn.replicate(np.zeros(1 << 18))  # 2 MiB, 1 MiB free
    assert isinstance(info.value, MemoryError)
    assert "fewer nodes" in str(info.value)


def test_real_free_memory_is_read():
    free = _replicas._free_bytes(0)
    assert 0 < free <= nn.topology().node(0).memory_total


def test_map_blocks_passes_each_worker_its_local_copy():
    table = nn.replicate(np.arange(10.0))
    a = nn.partitioned_full(1000, 3, dtype=np.int64)
    with nn.node_team() as team:
        out = team.map_blocks(lambda idx, t: t[idx], a, table)
        seen = team.map_blocks(lambda idx, t: t is table.for_node(nn.current_node()), a, table)
    assert type(out) is nn.PartitionedArray and np.all(out == 3.0)
    assert all(seen)
