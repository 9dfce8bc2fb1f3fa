"""The page queries (numa_numpy._kernel.pages): page sizes, the node of each page
(move_pages), the policy the kernel holds (get_mempolicy) and a mapping's pages
per node (numa_maps), each checked against what the test made."""

import mmap

import numa_numpy as nn
from numa_numpy._kernel import pages

MiB = 1 << 20


def test_the_base_page_is_the_systems():
    assert pages.base_page_size() == mmap.PAGESIZE


def test_every_page_of_a_bound_array_is_on_its_node():
    a = nn.numa_ones(MiB // 8, node=0, huge_pages="none")  # written: every page present
    first, status = pages.query_pages(a.ctypes.data, a.nbytes)
    page = pages.base_page_size()
    assert first == a.ctypes.data - a.ctypes.data % page
    assert len(status) == -(-(a.ctypes.data + a.nbytes - first) // page)
    assert set(status.tolist()) == {0}
    assert pages.query_pages(a.ctypes.data, 0)[1].size == 0


def test_the_policy_of_a_bound_page_and_of_this_thread():
    a = nn.numa_ones(MiB // 8, node=0, huge_pages="none")
    mode, nodes = pages.mempolicy(a.ctypes.data)
    assert nodes == (0,) and mode != 0  # MPOL_BIND, not the default
    default_mode, _ = pages.mempolicy(None)
    assert default_mode == 0  # this thread: MPOL_DEFAULT


def test_a_large_arrays_mapping_counts_its_pages_on_its_node():
    a = nn.numa_ones(8 * MiB // 8, node=0, huge_pages="none")
    (mapping,) = pages.mapping_pages(a.ctypes.data, a.nbytes)
    assert mapping.start <= a.ctypes.data < a.ctypes.data + a.nbytes <= mapping.end
    assert mapping.policy == "bind:0"
    assert mapping.pages[0] * mapping.page_size >= a.nbytes
