import numpy as np
import pytest
from kernel_view import numa_maps_entry

import numa_numpy as nn


def test_placement_matches_numa_maps_page_by_page():
    a = nn.numa_zeros(3 << 20, np.uint8, node=0, huge_pages="none")
    a[:] = 1  # fault every page in
    where = nn.placement(a)
    entry = numa_maps_entry(a.ctypes.data)
    assert entry.policy == "bind:0"
    assert where.policy == nn.Bind(0)
    assert where.not_present == 0
    assert where.pages == {0: where.total_pages}
    # numa_maps counts the whole mapping (header page included): same node, >= our span
    assert set(entry.pages) == {0} and entry.pages[0] >= where.total_pages
    assert where.bytes_per_node == {0: where.total_pages * where.page_size}
    assert where.fraction(0) == 1.0 and where.on(0) and where.on([0, 1])


def test_untouched_pages_are_reported_not_present():
    nn.free_all_blocks()  # a fresh mapping, not a cached one
    a = nn.numa_empty(1 << 20, np.uint8, node=0, huge_pages="none")
    where = nn.placement(a)
    # the block's header has a page of its own, before the page-aligned data
    assert a.ctypes.data % 4096 == 0
    assert where.total_pages == 256 and where.present_pages == 0
    assert where.not_present == 256
    a[: 10 * 4096] = 7
    assert nn.placement(a).present_pages == 10


def test_views_and_non_contiguous_arrays_report_their_span():
    a = nn.numa_zeros((512, 1024), np.float64, node=0)  # 4 MiB
    a[:] = 1
    col = a[:, 3]
    span = nn.placement(col)
    assert span.nbytes == 511 * 8192 + 8
    assert span.requested == nn.Bind(0)
    assert span.pages == {0: span.total_pages}
    back = a[::-1, ::-2]
    assert nn.placement(back).nbytes == a.nbytes - 8
    assert nn.placement(a[5:6, 10:11]).total_pages == 1


def test_placement_of_memory_that_is_not_ours():
    a = np.ones(1 << 16)
    where = nn.placement(a)
    assert where.requested is None and where.enforcement is None
    assert where.policy == nn.Default()
    assert where.on(0)


def test_placement_of_a_buffer():
    buf = bytearray(b"x" * 10000)
    assert nn.placement(buf).nbytes == 10000


def test_empty_array_has_no_pages():
    where = nn.placement(nn.numa_empty(0, node=0))
    assert where.nbytes == 0 and where.total_pages == 0 and where.pages == {}


def test_small_blocks_in_a_scope_are_bound_too():
    with nn.on_node(0):
        tiny = np.ones(2)  # 16 bytes: carved from a bound chunk
    where = nn.placement(tiny)
    assert where.policy == nn.Bind(0) and where.requested == nn.Bind(0)
    assert numa_maps_entry(tiny.ctypes.data).policy == "bind:0"


def test_str_and_html():
    a = nn.numa_ones(1000, node=0)
    where = nn.placement(a)
    assert "N0=" in str(where) and "bind:0" in str(where)
    assert "<table>" in where._repr_html_()


def test_pages_only_read_are_not_present():
    nn.free_all_blocks()
    a = nn.numa_zeros(1 << 20, np.uint8, node=0, huge_pages="none")
    assert a.sum() == 0  # reading maps the kernel's shared zero page: no memory used
    where = nn.placement(a)
    assert where.present_pages == 0 and where.not_present == where.total_pages == 256
    a[:4096] = 1
    assert nn.placement(a).present_pages == 1


def test_terminal_repr_shows_the_pages():
    a = nn.numa_ones(1000, node=0)
    assert repr(nn.placement(a)).startswith("<Placement ") and "N0=" in repr(nn.placement(a))
    assert "available:" in repr(nn.topology())
    assert nn.on_node(0).stats()["live_blocks"] >= 1


def test_placement_of_a_numpy_scalar():
    # README: any buffer works; NumPy scalars export a 0-d buffer
    where = nn.placement(np.float64(3))
    assert where.nbytes == 8 and where.total_pages == 1 and where.requested is None


def test_placement_of_a_strided_memoryview():
    a = nn.numa_zeros(1 << 16, np.float64, node=0)
    a[:] = 1
    where = nn.placement(memoryview(a)[::2])
    assert where.nbytes == a.nbytes - 8  # the span from the first to the last element
    assert where.address == a.ctypes.data and where.requested == nn.Bind(0)
    assert where.pages == {0: where.total_pages}


def test_placement_of_something_that_is_no_buffer():
    with pytest.raises(TypeError, match="buffer protocol, not list"):
        nn.placement([1, 2, 3])


def test_placement_past_one_batch_reports_each_page_itself():
    # move_pages is asked 4096 pages at a time: touch only pages of the second
    # batch and every page must report its own state (a batch writing its status
    # at the wrong offset shows here)
    from numa_numpy._kernel.lib import lib

    page = int(lib.nn_base_page_size())
    npages = 4096 + 904
    region = nn.NumaRegion(npages * page, "bind:0", prefault="none", huge_pages="none")
    try:
        view = np.frombuffer(region, np.uint8)
        touched = np.arange(4096 + 3, npages, 5)
        view[touched * page] = 1
        where = region.placement()
        expected = np.full(npages, -1)
        expected[touched] = 0
        np.testing.assert_array_equal(np.where(where.node_of_page >= 0, 0, -1), expected)
        assert where.not_present == npages - touched.size
        del view
    finally:
        region.close()


def test_pages_the_kernel_could_not_take_just_now_are_tried_again():
    # move_pages says -EBUSY for pages it cannot isolate yet (freshly faulted ones
    # wait in per-CPU batches): those pages, and only those, are tried again
    import errno

    from numa_numpy._kernel.lib import ffi, lib

    page = int(lib.nn_base_page_size())
    npages = 64
    region = nn.NumaRegion(npages * page, "bind:0", prefault="touch", huge_pages="none")
    targets = np.zeros(1, dtype=np.intc)
    status = np.full(npages, 12345, dtype=np.intc)
    try:
        assert lib.nn_inject_fault(lib.NN_FAULT_MOVE_PAGES, errno.EBUSY, 1) == 0
        rc = lib.nn_move_range(ffi.cast("void *", region.address), npages, page,
                               ffi.cast("int *", targets.ctypes.data), 1, 0,
                               ffi.cast("int *", status.ctypes.data))
        assert rc == 0
        np.testing.assert_array_equal(status, 0)  # every page answered again: on node 0
        # always busy: three rounds of single-page retries, then the page keeps
        # its -EBUSY (no endless loop); the call used exactly 1 + 3 * 64 answers
        assert lib.nn_inject_fault(lib.NN_FAULT_MOVE_PAGES, errno.EBUSY, 1 + 3 * npages) == 0
        rc = lib.nn_move_range(ffi.cast("void *", region.address), npages, page,
                               ffi.cast("int *", targets.ctypes.data), 1, 0,
                               ffi.cast("int *", status.ctypes.data))
        assert rc == 0 and (status == -errno.EBUSY).all(), status[:4]
        rc = lib.nn_move_range(ffi.cast("void *", region.address), npages, page,
                               ffi.cast("int *", targets.ctypes.data), 1, 0,
                               ffi.cast("int *", status.ctypes.data))
        assert rc == 0 and (status == 0).all(), status[:4]
    finally:
        lib.nn_inject_fault(lib.NN_FAULT_MOVE_PAGES, 0, 0)
        region.close()
