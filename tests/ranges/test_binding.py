"""Binding a range of memory (numa_numpy._ranges.binding): a Partitioned policy
over a region or a shared array binds one range per part, cut on pages or rows."""

import mmap

import numpy as np
import pytest

import numa_numpy as nn

PAGE = mmap.PAGESIZE


class _ThreeModes(nn.Partitioned):
    """On one node, parts told apart by their modes (numa_maps shows each)."""

    def parts(self, topo):
        return (nn.Bind(0), nn.Preferred(0), nn.Interleave(0))


def test_region_binds_one_range_per_part():
    from kernel_view import mapping_of, numa_maps_entry

    from numa_numpy._ranges.binding import range_cuts

    size = 3 * (1 << 20) + 5 * PAGE  # no THP: cuts on pages
    region = nn.NumaRegion(size, policy=_ThreeModes(), huge_pages="none", prefault="touch")
    base = np.frombuffer(region, np.uint8).ctypes.data
    cuts = range_cuts(len(region), 1, 3)
    bounds = [0, *cuts, len(region)]
    assert all(c % PAGE == 0 for c in cuts) and cuts[0] > 0
    for (lo, hi), policy in zip(
        zip(bounds, bounds[1:], strict=False), ("bind:0", "prefer:0", "interleave:0"), strict=True
    ):
        assert numa_maps_entry(base + lo).policy == policy
        assert numa_maps_entry(base + hi - 1).policy == policy
        if lo:
            assert mapping_of(base + lo)[0] == base + lo  # each range its own VMA
    region.close()


def test_shared_array_binds_rows_per_part_and_blocks_read_the_header():
    import pickle

    from kernel_view import numa_maps_entry

    from numa_numpy._ranges.binding import range_cuts, row_split

    # 700 rows of 3000 bytes: cuts fall between rows, on page multiples when they can
    shape, dtype = (700, 375), np.float64
    a = nn.shared_zeros(shape, dtype, policy=nn.Partitioned())
    try:
        usable = nn.topology().usable_nodes
        assert [n for n, _ in nn.blocks(a)] == list(usable)
        assert nn.blocks(pickle.loads(pickle.dumps(a))) == nn.blocks(a)  # in any process
        _axis, nrows, rowbytes = row_split(shape, 8, "C")
        nbytes = nrows * rowbytes
        assert (nbytes, rowbytes) == (700 * 3000, 3000)
        assert all(c % rowbytes == 0 for c in range_cuts(nbytes, rowbytes, 3))
        with pytest.raises(TypeError):
            nn.blocks(a[1:])  # a view: not the whole array
        assert numa_maps_entry(a.ctypes.data).policy == f"bind:{usable[0]}"
    finally:
        a.unlink()
    f = nn.shared_zeros((5, 6000), np.float32, order="F", policy="partitioned")
    try:
        assert nn.blocks(f)[-1][1].stop == 6000  # F order: split along the last axis
    finally:
        f.unlink()


@pytest.mark.parametrize("k", [2, 3, 4])
def test_cuts_fall_on_pages_as_soon_as_every_node_gets_one(k):
    # exactly k pages (the last one partly used) is enough for one page per node:
    # every cut is on a page, not an even split of the bytes
    from numa_numpy._kernel.lib import lib
    from numa_numpy._ranges.binding import range_cuts

    page = int(lib.nn_base_page_size())
    for size in (k * page, k * page - 100, (k - 1) * page + 1):
        cuts = range_cuts(size, 1, k)
        assert all(c % page == 0 for c in cuts), (size, cuts)
        assert cuts == [i * page for i in range(1, k)], (size, cuts)
    # fewer pages than nodes: bytes are split evenly instead
    assert range_cuts((k - 1) * page, 1, k) == [i * (k - 1) * page // k for i in range(1, k)]
