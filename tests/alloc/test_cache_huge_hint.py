"""MADV_HUGEPAGE lives no longer than the block that asked for it: a block
going to the process cache gets MADV_NOHUGEPAGE, a reuse that wants huge pages
advises again, one that does not keeps none (numpy#31590). Read back from the
kernel: the VmFlags and THPeligible of the block's mapping in smaps."""

from __future__ import annotations

import numpy as np

import numa_numpy as nn
from numa_numpy._kernel.hugepages import smaps_vmas

MiB = 1 << 20


def advice(address: int) -> tuple[set[str], bool | None]:
    (vma,) = smaps_vmas(address, 1)
    return set(vma.flags) & {"hg", "nh"}, vma.thp_eligible


def test_a_cached_block_keeps_no_hint():
    a = nn.numa_ones(8 * MiB, dtype=np.uint8, node=0, huge_pages="transparent")
    address = a.ctypes.data
    assert advice(address)[0] == {"hg"}
    del a
    flags, eligible = advice(address)
    assert "hg" not in flags and "nh" in flags
    assert eligible is False
    # the same request reuses the block and asks again
    b = nn.numa_ones(8 * MiB, dtype=np.uint8, node=0, huge_pages="transparent")
    assert b.ctypes.data == address
    assert advice(address)[0] == {"hg"}


def test_a_reuse_without_huge_pages_gets_no_hint():
    # huge_pages="auto": THP from 4 MiB; a 3.5 MiB request fits the freed 4 MiB block
    a = nn.numa_ones(4 * MiB, dtype=np.uint8, node=0, huge_pages="auto")
    address = a.ctypes.data
    assert advice(address)[0] == {"hg"}
    del a
    b = nn.numa_ones(7 * MiB // 2, dtype=np.uint8, node=0, huge_pages="auto")
    assert b.ctypes.data == address, "the freed block was not reused"
    assert "hg" not in advice(address)[0]
    del b
    c = nn.numa_ones(4 * MiB, dtype=np.uint8, node=0, huge_pages="auto")
    assert c.ctypes.data == address
    assert advice(address)[0] == {"hg"}


def test_an_unmapped_block_leaves_no_hint():
    a = nn.numa_ones(8 * MiB, dtype=np.uint8, node=0, huge_pages="transparent")
    address = a.ctypes.data
    del a
    nn.memory.free_all_blocks()  # the cache gives its blocks back to the kernel
    assert all("hg" not in v.flags for v in smaps_vmas(address, 8 * MiB))
