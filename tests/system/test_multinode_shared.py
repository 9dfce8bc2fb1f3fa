"""Shared arrays whose header takes more than one page keep their data bound to
the policy's node, in every process (the NUMA lab: python tests/lab/run.py)."""

from __future__ import annotations

import mmap
import subprocess
import sys

import numpy as np
import pytest
from kernel_view import numa_maps_entry

import numa_numpy as nn
from numa_numpy._ranges import shared as _shared

pytestmark = pytest.mark.multinode

WIDE = np.dtype([(f"column_{i:03d}", "f8") for i in range(250)])  # a 2-page header

CHILD = """
import sys, numa_numpy as nn
a = nn.attach_shared(sys.argv[1])
for field in a.dtype.names:  # this process faults every page in
    a[field] = 1.0
print(nn.current_node())
"""


def test_a_long_header_leaves_the_data_bound_to_a_far_node(tmp_path):
    topo = nn.topology()
    cpu_node = next(n for n in topo.cpu_nodes if n in topo.usable_nodes)
    far = next(n for n in reversed(topo.usable_nodes) if n != cpu_node)
    a = nn.shared_zeros(1000, WIDE, node=far, strict=True)
    segment = _shared._segment_of(a)
    offset = a.ctypes.data - _shared.buffer_address(segment)
    assert offset >= 2 * mmap.PAGESIZE and offset % mmap.PAGESIZE == 0
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cpus = ",".join(map(str, topo.node(cpu_node).cpus))
    out = subprocess.run(["taskset", "-c", cpus, sys.executable, str(script), a.shared_name],
                         capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == str(cpu_node)  # the child ran on another node
    assert float(a["column_249"].sum()) == 1000.0  # maps the child's pages here
    where = nn.placement(a)
    assert where.not_present == 0 and where.pages == {far: where.total_pages}, where
    assert numa_maps_entry(a.ctypes.data).policy == f"bind:{far}"


FILL = """
import sys, numa_numpy as nn
a = nn.attach_shared(sys.argv[1])
a[...] = 2.0  # this process first-touches every page
print([node for node, _rows in nn.blocks(a)])
"""


def _inner_pages(start: int, stop: int) -> np.ndarray:
    """The whole pages inside [start, stop), as a byte array (boundary pages
    belong to the earlier block)."""
    page = mmap.PAGESIZE
    lo, hi = -(-start // page) * page, stop // page * page
    return np.ctypeslib.as_array((np.ctypeslib.ctypes.c_uint8 * max(hi - lo, 0)).from_address(lo))


def test_partitioned_shared_array_blocks_on_their_nodes_from_another_process(tmp_path):
    from numa_numpy.testing import assert_placed

    topo = nn.topology()
    nodes = topo.usable_nodes
    assert len(nodes) >= 2
    a = nn.shared_zeros((3001, 1000), np.float32, policy=nn.Partitioned(), strict=True)
    try:
        script = tmp_path / "fill.py"
        script.write_text(FILL)
        cpus = ",".join(map(str, topo.node(topo.cpu_nodes[0]).cpus))
        out = subprocess.run(["taskset", "-c", cpus, sys.executable, str(script), a.shared_name],
                             capture_output=True, text=True, timeout=300, check=True)
        assert out.stdout.strip() == str(list(nodes))  # the child reads the same split
        assert float(a.sum()) == 2.0 * a.size
        for node, rows in nn.blocks(a):
            block = a[rows]
            pages = _inner_pages(block.ctypes.data, block.ctypes.data + block.nbytes)
            if pages.size:
                assert_placed(pages, node)
    finally:
        a.unlink()


def test_partitioned_region_ranges_on_their_nodes():
    from numa_numpy._ranges.binding import range_cuts
    from numa_numpy.testing import assert_placed

    nodes = nn.topology().usable_nodes
    region = nn.NumaRegion(24 << 20, policy=nn.Partitioned(), prefault="touch", strict=True)
    try:
        base = np.frombuffer(region, np.uint8).ctypes.data
        thp = region.huge_pages is nn.HugePages.TRANSPARENT
        bounds = [0, *range_cuts(len(region), 1, len(nodes), thp), len(region)]
        for node, lo, hi in zip(nodes, bounds, bounds[1:]):
            assert_placed(_inner_pages(base + lo, base + hi), node)
    finally:
        region.close()
