"""Huge pages as the kernel tells (numa_numpy._kernel.hugepages): the smaps,
pagemap and kpageflags parsers on bytes we did not write, and the figures of
this machine's own mappings, each source checked against the other."""

from __future__ import annotations

import os

import numpy as np
import pytest

import numa_numpy as nn
from numa_numpy._kernel import hugepages as hp
from numa_numpy._kernel.pages import query_pages

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
SMAPS = (
    "7f0000000000-7f0000801000 rw-p 00000000 00:00 0 \n"
    "Size:               8196 kB\n"
    "KernelPageSize:        4 kB\n"
    "AnonHugePages:      8192 kB\n"
    "FilePmdMapped:         0 kB\n"
    "Private_Hugetlb:       0 kB\n"
    "THPeligible:    1\n"
    "VmFlags: rd wr mr mw me ac hg\n"
    "7f0000a00000-7f0000c00000 rw-p 00000000 00:10 5 /anon_hugepage (deleted)\n"
    "KernelPageSize:     2048 kB\n"
    "Shared_Hugetlb:     2048 kB\n"
    "VmFlags: rd wr sh mr mw me ms de ht\n"
)


def test_smaps_fields():
    thp, tlb = hp.parse_smaps(SMAPS.encode())
    assert (thp.start, thp.end, thp.kernel_page) == (0x7F0000000000, 0x7F0000801000, 4096)
    assert thp.anon_huge == 8 * MiB and thp.thp_eligible is True and "hg" in thp.flags
    assert tlb.kernel_page == 2 * MiB and tlb.hugetlb == 2 * MiB and tlb.thp_eligible is None


@pytest.mark.parametrize(
    "text, words",
    [
        ("AnonHugePages: 4 kB\n", "before any mapping"),
        ("7f00-7e00 rw-p 0 0 0\n", "ends first"),
        ("7f00-7f10 rw-p 0 0 0\nAnonHugePages: lots\n", "not 'N kB'"),
        ("7f00-7f10 rw-p 0 0 0\nTHPeligible: 7\n", "not 0 or 1"),
        ("7f00-7f10 rw-p 0 0 0\nno colon here\n", "neither a mapping"),
        (b"7f00-7f10 \xff\n", "UTF-8"),
    ],
)
def test_smaps_that_is_not(text, words):
    with pytest.raises(ValueError, match=words):
        hp.parse_smaps(text if isinstance(text, bytes) else text.encode())


def test_pagemap_and_flags():
    entries = [1 << 63 | 7, 1 << 63 | 1 << 62 | 9, 0, 1 << 63]  # present, swapped, absent, no frame
    pfns = hp.parse_pagemap(b"".join(e.to_bytes(8, "little") for e in entries))
    assert pfns.tolist() == [7, 0, 0, 0]
    with pytest.raises(ValueError, match="8-byte"):
        hp.parse_pagemap(b"\0" * 12)
    with pytest.raises(ValueError, match="8-byte"):
        hp.parse_kpageflags(b"\0")


def test_folios_are_cut_at_a_new_head_or_a_gap():
    head, tail = (
        1 << hp.KPF_THP | 1 << hp.KPF_COMPOUND_HEAD,
        1 << hp.KPF_THP | 1 << hp.KPF_COMPOUND_TAIL,
    )
    flags = np.array([head, tail, head, tail, tail, tail, 0, tail], dtype=np.uint64)
    pfns = np.array([10, 11, 20, 21, 22, 23, 24, 40], dtype=np.uint64)
    sizes = hp.thp_folio_bytes(pfns, flags, PAGE) // PAGE
    assert sizes.tolist() == [2, 2, 4, 4, 4, 4, 0, 1]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_smaps_fuzz_bytes(data):
    try:
        vmas = hp.parse_smaps(data)
    except ValueError:
        return
    assert all(v.end >= v.start and v.anon_huge >= 0 for v in vmas)


_LINES = st.sampled_from(SMAPS.splitlines())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_LINES, st.text(max_size=40)), max_size=30))
def test_smaps_fuzz_lines(lines):
    try:
        vmas = hp.parse_smaps("\n".join(lines).encode("utf-8", "surrogatepass"))
    except ValueError:
        return
    assert all(isinstance(v, hp.SmapsVma) for v in vmas)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_pagemap_and_kpageflags_fuzz(data):
    for parse in (hp.parse_pagemap, hp.parse_kpageflags):
        try:
            words = parse(data)
        except ValueError:
            assert len(data) % 8
            continue
        assert words.size == len(data) // 8
    if len(data) % 16 == 0:
        half = len(data) // 2
        pfns, flags = hp.parse_kpageflags(data[:half]), hp.parse_kpageflags(data[half:])
        sizes = hp.thp_folio_bytes(pfns, flags, PAGE)
        assert (
            sizes.size == pfns.size and (sizes >= 0).all() and sizes.sum() <= sizes.size**2 * PAGE
        )


def backing(a):
    first, status = query_pages(a.ctypes.data, a.nbytes)
    return hp.huge_backing(first, status, PAGE)


def thp_possible():
    from numa_numpy._kernel import sysfs, tunables

    if tunables.thp_enabled(sysfs.KernelFiles()) in (None, "never"):
        pytest.skip("this kernel gives no transparent huge pages (enabled=never or no THP)")


def test_kpageflags_and_smaps_agree_on_this_machine(monkeypatch):
    thp_possible()
    a = nn.numa_ones(8 * MiB, dtype=np.uint8, node=0, huge_pages="transparent", prefault="touch")
    frames = backing(a)
    if frames.source != "kpageflags":
        pytest.skip(f"pagemap frames or kpageflags are not readable here ({frames.source})")
    (vma,) = hp.smaps_vmas(a.ctypes.data, a.nbytes)
    assert sum(frames.huge.get(0, {}).values()) == vma.anon_huge
    monkeypatch.setattr(hp, "_thp_from_frames", lambda *args: False)  # as an unprivileged process
    assert backing(a) == hp.HugeBacking(frames.huge, {}, "smaps")


def test_base_pages_have_no_huge_figure():
    a = nn.numa_ones(8 * MiB, dtype=np.uint8, node=0, huge_pages="none", prefault="touch")
    assert backing(a).huge == {}


def test_smaps_pro_rates_a_mapping_larger_than_the_span(monkeypatch):
    thp_possible()
    a = nn.numa_ones(8 * MiB, dtype=np.uint8, node=0, huge_pages="transparent", prefault="touch")
    monkeypatch.setattr(hp, "_thp_from_frames", lambda *args: False)
    (vma,) = hp.smaps_vmas(a.ctypes.data, a.nbytes)
    if not vma.anon_huge:
        pytest.skip("no transparent huge page was given (the kernel is short of 2 MiB pages)")
    half = backing(a[: 4 * MiB])
    assert half.source == "smaps, pro-rated"
    assert half.huge == {0: {2 * MiB: vma.anon_huge // 2}}
