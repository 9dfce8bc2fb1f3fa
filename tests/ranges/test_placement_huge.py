"""placement()'s huge-page figures (issue numpy#21498: is the array on huge
pages?), per node and page size, checked against the kernel's own switches:
THP `enabled`/`defrag` and the hugetlb pool are set for the test (root) and
restored."""

from __future__ import annotations

import contextlib
import gc

import numpy as np
import pytest
from fixtures.doctor import THP, written

import numa_numpy as nn
from numa_numpy._kernel import hugepages
from numa_numpy._kernel.hugepages import smaps_vmas

MiB = 1 << 20
POOL = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"


@contextlib.contextmanager
def thp(enabled: str, defrag: str = "madvise"):
    """THP switched for the block; no cached block carries pages of before."""
    with written(f"{THP}/enabled", enabled), written(f"{THP}/defrag", defrag):
        nn.memory.free_all_blocks()
        yield
        nn.memory.free_all_blocks()


def test_transparent_gets_huge_pages_where_the_kernel_can():
    with thp("madvise", "madvise"):  # a fault compacts memory for a 2 MiB page if it must
        a = nn.numa_ones(
            8 * MiB, dtype=np.uint8, node=0, huge_pages="transparent", prefault="touch"
        )
        where = nn.placement(a)
    if where.thp_bytes == 0:
        pytest.skip("the kernel found no free 2 MiB page even after compaction")
    assert where.huge_source in ("kpageflags", "smaps")
    assert set(where.huge) == {0} and set(where.huge[0]) == {2 * MiB}
    assert where.huge[0][2 * MiB] % (2 * MiB) == 0 and where.hugetlb == {}
    (vma,) = smaps_vmas(a.ctypes.data, a.nbytes)
    assert where.thp_bytes == vma.anon_huge  # the whole-mapping figure, another source
    n = where.thp_bytes // (2 * MiB)
    assert f"huge: N0 2 MiB x {n} (THP)" in str(where)
    assert f"N0 2 MiB x {n} (THP)" in where._repr_html_()


def test_enabled_never_gives_none_and_says_so():
    with thp("never"):
        a = nn.numa_ones(
            6 * MiB, dtype=np.uint8, node=0, huge_pages="transparent", prefault="touch"
        )
        where = nn.placement(a)
    assert where.huge == {} and where.thp_bytes == 0 and where.huge_source is not None
    assert "huge:" not in str(where)


def test_no_huge_pages_even_when_thp_is_always():
    with thp("always"):
        a = nn.numa_ones(6 * MiB, dtype=np.uint8, node=0, huge_pages="none", prefault="touch")
        where = nn.placement(a)
    assert where.huge == {}


def test_smaps_figures_where_frames_cannot_be_read(monkeypatch):
    with thp("madvise", "madvise"):
        a = nn.numa_ones(
            8 * MiB, dtype=np.uint8, node=0, huge_pages="transparent", prefault="touch"
        )
        exact = nn.placement(a)
        monkeypatch.setattr(hugepages, "_thp_from_frames", lambda *args: False)
        fallback = nn.placement(a)
    if exact.thp_bytes == 0:
        pytest.skip("the kernel found no free 2 MiB page even after compaction")
    assert fallback.huge_source == "smaps" and fallback.huge == exact.huge
    assert "from smaps" in str(fallback)


def test_hugetlb_pages_per_node():
    with written(POOL, "4"):
        try:
            a = nn.numa_ones(4 * MiB, dtype=np.uint8, node=0, huge_pages="2mb", strict=True)
        except nn.NumaError as exc:
            pytest.skip(f"no 2 MiB pool pages to be had: {exc}")
        where = nn.placement(a)
        start, end = a.ctypes.data, a.ctypes.data + a.nbytes  # the huge pages it lies on:
        touched = (end - 1) // (2 * MiB) - start // (2 * MiB) + 1  # a header shares the first
        assert where.hugetlb == {0: {2 * MiB: touched * 2 * MiB}} == where.huge
        assert where.thp_bytes == 0
        assert f"N0 2 MiB x {touched} (hugetlb)" in str(where)
        del a, where
        gc.collect()
        nn.memory.free_all_blocks()  # the pool's pages go back before the pool shrinks
