"""Arrays from files on a machine with several NUMA nodes: the page cache's
pages, placed, proven page by page by the kernel (move_pages through
placement()).

Skipped on a one-node machine; CI runs them in the NUMA lab (tests/lab), a
4-node guest: nodes 0 and 1 with CPUs, nodes 2 and 3 memory-only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import numa_numpy as nn

pytestmark = pytest.mark.multinode

MiB = 1 << 20


@pytest.fixture(autouse=True)
def give_memory_back():
    yield
    import gc

    gc.collect()
    nn.forget_handlers()


def _drop(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _on_node(node: int, work) -> None:
    """Run `work()` in a thread pinned to `node`'s CPUs: the page-cache pages
    it creates land there (first touch)."""
    cpus = nn.topology().node(node).cpus

    def pinned() -> None:
        os.sched_setaffinity(0, cpus)
        work()

    t = threading.Thread(target=pinned)
    t.start()
    t.join()


def _read(path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


@pytest.fixture
def cached_on_0(tmp_path):
    """A 16 MiB file whose page cache a thread on node 0 filled."""
    topo = nn.topology()
    if 0 not in topo.cpu_nodes or len(topo.usable_nodes) < 2:
        pytest.skip("needs node 0 with CPUs and a second node with memory")
    path = tmp_path / "data.bin"
    # Written there too: on tmpfs (the lab's /tmp) the written pages are the
    # cache, and dropping them does nothing.
    _on_node(0, lambda: np.arange(2 * MiB, dtype=np.float64).tofile(path))
    _drop(path)
    _on_node(0, lambda: _read(path))
    probe = np.memmap(path, np.float64, "r")
    probe[:: 4096 // 8].sum()  # map every page: the kernel can say where
    assert nn.placement(probe).fraction(0) > 0.9  # the page cache really is on node 0
    del probe
    return path


def test_memmap_moves_a_cached_file_to_node_1_page_by_page(cached_on_0):
    m = nn.memmap(cached_on_0, np.float64, "r", node=1, strict=True)
    where = nn.placement(m)
    assert where.not_present == 0 and where.pages == {1: where.total_pages}, where
    assert m.moved_pages > 0.9 * where.total_pages
    assert where.file == str(cached_on_0) and where.requested == nn.Bind(1)
    assert float(m[-1]) == 2 * MiB - 1


def test_memmap_of_a_cold_file_is_read_in_on_the_node(tmp_path):
    path = tmp_path / "cold.bin"
    np.ones(2 * MiB).tofile(path)
    _drop(path)
    m = nn.memmap(path, np.float64, "r", node=1, strict=True)
    where = nn.placement(m)
    assert where.pages == {1: where.total_pages}, where


def test_memmap_interleave_spreads_a_file_cached_on_one_node(cached_on_0):
    nodes = nn.topology().usable_nodes
    m = nn.memmap(cached_on_0, np.float64, "r", policy=nn.Interleave(nodes))
    where = nn.placement(m)
    share = where.total_pages / len(nodes)
    assert all(where.pages.get(n, 0) >= 0.75 * share for n in nodes), where


def test_partitioned_load_puts_each_block_on_its_node(tmp_path):
    nodes = nn.topology().usable_nodes
    path = tmp_path / "p.npy"
    want = np.arange(8 * MiB // 8 * len(nodes), dtype=np.float64)
    np.save(path, want)
    from numa_numpy._kernel import loops

    loops.stop_workers()  # the load starts the pool itself
    loops.set_record(True)
    try:
        got = nn.load(path, policy=nn.Partitioned(nodes), strict=True, progress=False)
        record = loops.last_record()  # the one read job: (cpu, node) per piece
    finally:
        loops.set_record(False)
    assert (got == want).all()
    topo = nn.topology()
    ran_on = {node for _cpu, node in record}
    assert {n for n in nodes if n in topo.cpu_nodes} <= ran_on, record
    assert all(topo.node_of_cpu(cpu) == node for cpu, node in record if node >= 0), record
    blocks = nn.blocks(got)
    assert [node for node, _rows in blocks] == list(nodes)
    for node, rows in blocks:
        part = got[rows.start + 512 : rows.stop - 512]  # whole pages inside the block
        where = nn.placement(part)
        assert where.not_present == 0 and where.nodes == {node}, (node, where)


HOLD = """
import mmap, sys, time
f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
sum(m[i] for i in range(0, len(m), 4096))  # map every page in this process
print("mapped", flush=True)
time.sleep(120)
"""


def test_pages_another_process_maps_warn_soft_and_raise_strict(cached_on_0, tmp_path):
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    cpus = ",".join(map(str, nn.topology().node(0).cpus))
    child = subprocess.Popen(
        ["taskset", "-c", cpus, sys.executable, str(script), str(cached_on_0)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "mapped"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = nn.memmap(cached_on_0, np.float64, "r", node=1)
        numa = [w for w in caught if issubclass(w.category, nn.NumaWarning)]
        assert len(numa) == 1 and "another process" in str(numa[0].message), numa
        where = nn.placement(m)
        assert where.pages.get(0, 0) > 0.9 * where.total_pages, where  # where they are
        with pytest.raises(nn.PolicyNotEnforcedError, match="EACCES"):
            nn.memmap(cached_on_0, np.float64, "r", node=1, strict=True)
    finally:
        child.kill()
        child.wait()
