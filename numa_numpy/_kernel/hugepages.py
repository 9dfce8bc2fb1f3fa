"""Which pages of a range are huge, as the kernel tells: per base page from
/proc/self/pagemap and /proc/kpageflags where they can be read (root), else
per mapping from /proc/self/smaps (AnonHugePages, FilePmdMapped,
Private_Hugetlb/Shared_Hugetlb, KernelPageSize).

The parsers take the bytes the kernel wrote and give a result or ValueError
saying what the bytes are not; `huge_backing` puts the answers together with
the node of each base page (move_pages), since a huge page's base pages are all
on one node.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from .sysfs import KPAGEFLAGS, THP_SIZE, KernelFiles, _decode, process_file

__all__ = [
    "SmapsVma",
    "HugeBacking",
    "parse_smaps",
    "parse_pagemap",
    "parse_kpageflags",
    "thp_folio_bytes",
    "smaps_vmas",
    "huge_backing",
    "KPF_COMPOUND_HEAD",
    "KPF_COMPOUND_TAIL",
    "KPF_HUGE",
    "KPF_THP",
]

# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h)
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17  # a hugetlb page
KPF_THP = 22  # part of a transparent huge page (any large anonymous or file folio)
# /proc/PID/pagemap: bit 63 present, 62 swapped, bits 0-54 the frame (0 unless
# the reader has CAP_SYS_ADMIN)
_PRESENT = np.uint64(1 << 63)
_SWAPPED = np.uint64(1 << 62)
_PFN = np.uint64((1 << 55) - 1)
_HEADER = re.compile(r"([0-9a-f]{1,16})-([0-9a-f]{1,16})(?: .*)?", re.ASCII)
_KIB = re.compile(r"([0-9]{1,15}) kB", re.ASCII)
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(.*)", re.ASCII)
_FIELDS = {
    "KernelPageSize": "kernel_page",
    "AnonHugePages": "anon_huge",
    "FilePmdMapped": "file_pmd",
    "ShmemPmdMapped": "file_pmd",
    "Private_Hugetlb": "hugetlb",
    "Shared_Hugetlb": "hugetlb",
}


@dataclass(frozen=True)
class SmapsVma:
    """One mapping of smaps: its range and the huge-page figures (bytes)."""

    start: int
    end: int
    kernel_page: int = 0  # 0: smaps did not say
    anon_huge: int = 0  # AnonHugePages: PMD-mapped anonymous THP
    file_pmd: int = 0  # FilePmdMapped + ShmemPmdMapped: PMD-mapped file THP
    hugetlb: int = 0  # Private_Hugetlb + Shared_Hugetlb
    flags: frozenset[str] = frozenset()  # VmFlags: "hg" MADV_HUGEPAGE, "nh" MADV_NOHUGEPAGE
    thp_eligible: bool | None = None


def parse_smaps(data: bytes | str) -> list[SmapsVma]:
    """The mappings of an smaps file, in its order.

    Parameters
    ----------
    data : bytes or str
        What /proc/PID/smaps holds.

    Returns
    -------
    list of SmapsVma

    Raises
    ------
    ValueError
        The bytes are not smaps: not UTF-8 text, a field before the first
        mapping, a line that is neither a mapping nor "Key: value", a range
        that ends before it starts, a size field that is not "N kB".

    Examples
    --------
    >>> from numa_numpy._kernel.hugepages import parse_smaps
    >>> text = "7f0000000000-7f0000400000 rw-p 00000000 00:00 0\\n"
    >>> text += "KernelPageSize:        4 kB\\nAnonHugePages:      4096 kB\\nVmFlags: rd wr hg\\n"
    >>> vma, = parse_smaps(text)
    >>> vma.anon_huge >> 20, sorted(vma.flags)
    (4, ['hg', 'rd', 'wr'])
    """
    text = _decode(data) if isinstance(data, bytes) else data
    vmas: list[SmapsVma] = []
    current: dict[str, object] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.fullmatch(line)
        if header:
            start, end = int(header.group(1), 16), int(header.group(2), 16)
            if end < start:
                raise ValueError(f"line {number}: the range {header.group(0)[:40]!r} ends first")
            if current is not None:
                vmas.append(SmapsVma(**current))  # type: ignore[arg-type]
            current = {"start": start, "end": end}
            continue
        if not line.strip():
            continue
        key = _KEY.fullmatch(line)
        if key is None:
            raise ValueError(f"line {number} is neither a mapping nor 'Key: value'")
        if current is None:
            raise ValueError(f"line {number}: {key.group(1)[:40]!r} comes before any mapping")
        _field(current, key.group(1), key.group(2).strip(), number)
    if current is not None:
        vmas.append(SmapsVma(**current))  # type: ignore[arg-type]
    return vmas


def _field(vma: dict[str, object], key: str, value: str, number: int) -> None:
    """Keep one smaps field of the mapping being read (others are ignored)."""
    if key == "VmFlags":
        vma["flags"] = frozenset(value.split())
    elif key == "THPeligible":
        if value not in ("0", "1"):
            raise ValueError(f"line {number}: THPeligible is {value[:40]!r}, not 0 or 1")
        vma["thp_eligible"] = value == "1"
    elif key in _FIELDS:
        kib = _KIB.fullmatch(value)
        if kib is None:
            raise ValueError(f"line {number}: {key} is {value[:40]!r}, not 'N kB'")
        name = _FIELDS[key]
        vma[name] = int(vma.get(name, 0)) + (int(kib.group(1)) << 10)  # type: ignore[call-overload]


def _words(data: bytes, what: str) -> np.ndarray:
    if len(data) % 8:
        raise ValueError(f"{what} holds {len(data)} bytes, not a whole number of 8-byte entries")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def parse_pagemap(data: bytes) -> np.ndarray:
    """The frame of each page in pagemap bytes (one u64 each); 0 for a page not
    present (or swapped), and for every page when the reader may not see frames.

    Raises ValueError when the bytes are not whole 8-byte entries.

    Examples
    --------
    >>> from numa_numpy._kernel.hugepages import parse_pagemap
    >>> parse_pagemap((1 << 63 | 42).to_bytes(8, "little") + bytes(8)).tolist()
    [42, 0]
    """
    entries = _words(data, "pagemap")
    present = (entries & _PRESENT) != 0
    present &= (entries & _SWAPPED) == 0
    return np.where(present, entries & _PFN, np.uint64(0))


def parse_kpageflags(data: bytes) -> np.ndarray:
    """The flags of each frame in kpageflags bytes (one u64 each).

    Raises ValueError when the bytes are not whole 8-byte entries.

    Examples
    --------
    >>> from numa_numpy._kernel.hugepages import KPF_THP, parse_kpageflags
    >>> int(parse_kpageflags((1 << KPF_THP).to_bytes(8, "little"))[0]) >> KPF_THP & 1
    1
    """
    return _words(data, "kpageflags")


def thp_folio_bytes(pfns: np.ndarray, flags: np.ndarray, page: int) -> np.ndarray:
    """Per page, the bytes of the transparent huge page (large folio) it lies in,
    0 for a page that is not part of one.

    A folio is a run of pages with the THP flag: a compound head, then tails on
    the frames that follow. A folio cut by the ends of the pages given counts
    only its pages there (the caller reads whole 2 MiB windows).

    Examples
    --------
    >>> import numpy as np
    >>> from numa_numpy._kernel.hugepages import thp_folio_bytes
    >>> head, tail = 1 << 22 | 1 << 15, 1 << 22 | 1 << 16
    >>> flags = np.array([head, tail, tail, tail, 0], dtype=np.uint64)
    >>> thp_folio_bytes(np.arange(8, 13, dtype=np.uint64), flags, 4096).tolist()
    [16384, 16384, 16384, 16384, 0]
    """
    group, counts = _folios(pfns, flags)
    sizes: np.ndarray = counts[group].astype(np.int64) * page
    return sizes


def _folios(pfns: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(folio number per page, 0 for none; pages per folio number)."""
    if pfns.shape != flags.shape:
        raise ValueError(f"{pfns.size} frames but {flags.size} flags")
    thp = ((flags >> np.uint64(KPF_THP)) & np.uint64(1)).astype(bool) & (pfns != 0)
    head = ((flags >> np.uint64(KPF_COMPOUND_HEAD)) & np.uint64(1)).astype(bool)
    tail = ((flags >> np.uint64(KPF_COMPOUND_TAIL)) & np.uint64(1)).astype(bool)
    follows = np.zeros(pfns.size, dtype=bool)
    follows[1:] = thp[:-1] & (pfns[1:] == pfns[:-1] + np.uint64(1)) & tail[1:] & ~head[1:]
    group = np.cumsum(thp & ~follows) * thp
    counts = np.bincount(group, minlength=1)
    counts[0] = 0
    return group, counts


def smaps_vmas(address: int, nbytes: int, pid: int | str = "self") -> list[SmapsVma]:
    """The smaps mappings of process `pid` overlapping ``[address, address +
    nbytes)``. OSError when smaps cannot be read; ValueError when it is not smaps."""
    stop = address + max(nbytes, 1)
    vmas = parse_smaps(process_file("smaps", pid).read_bytes())
    return [v for v in vmas if v.start < stop and v.end > address]


def _pread_words(path: os.PathLike[str], first: int, count: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, count * 8, first * 8)
    finally:
        os.close(fd)


def _frame_flags(pfns: np.ndarray) -> np.ndarray:
    """kpageflags of each frame (0 where pfns is 0), read run by run of
    consecutive frames. OSError when /proc/kpageflags cannot be read."""
    flags = np.zeros(pfns.size, dtype=np.uint64)
    wanted = np.unique(pfns[pfns != 0])
    if not wanted.size:
        return flags
    breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
    runs = np.split(wanted, breaks)
    found = np.empty(wanted.size, dtype=np.uint64)
    fd = os.open(KPAGEFLAGS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        at = 0
        for run in runs:
            data = os.pread(fd, run.size * 8, int(run[0]) * 8)
            words = parse_kpageflags(data)
            if words.size != run.size:
                raise OSError(f"kpageflags gave {words.size} of {run.size} frames")
            found[at : at + run.size] = words
            at += run.size
    finally:
        os.close(fd)
    present = pfns != 0
    flags[present] = found[np.searchsorted(wanted, pfns[present])]
    return flags


@dataclass(frozen=True)
class HugeBacking:
    """The huge pages a range lies on: node -> page size -> bytes of those
    pages (a huge page partly in the range counts whole).

    ``huge`` counts every huge page (transparent and hugetlb), ``hugetlb`` the
    part from the hugetlb pools. ``source``: "kpageflags" (page by page),
    "smaps" (per mapping, exact), "smaps, pro-rated" (a mapping larger than the
    range, or one whose pages are on several nodes, shared out by bytes), or
    None (smaps could not be read).
    """

    huge: dict[int, dict[int, int]] = field(default_factory=dict)
    hugetlb: dict[int, dict[int, int]] = field(default_factory=dict)
    source: str | None = None


def _add(table: dict[int, dict[int, int]], node: int, size: int, nbytes: int) -> None:
    if nbytes > 0:
        sizes = table.setdefault(node, {})
        sizes[size] = sizes.get(size, 0) + nbytes


def _page_slice(vma: SmapsVma, first: int, npages: int, page: int) -> slice:
    lo = max(0, (vma.start - first) // page)
    hi = min(npages, max(0, -(-(vma.end - first) // page)))
    return slice(lo, max(lo, hi))


def _nodes_in(status: np.ndarray) -> dict[int, int]:
    nodes, counts = np.unique(status[status >= 0], return_counts=True)
    return {int(n): int(c) for n, c in zip(nodes, counts, strict=True)}


def _hugetlb_pages(
    vmas: list[SmapsVma], first: int, status: np.ndarray, page: int, out: HugeBacking
) -> np.ndarray:
    """Count the present pages of hugetlb mappings (every page of one is huge);
    the mask of the pages they cover."""
    covered = np.zeros(status.size, dtype=bool)
    for vma in vmas:
        if vma.kernel_page > page:
            where = _page_slice(vma, first, status.size, page)
            covered[where] = True
            index = np.arange(where.start, where.stop)
            ids = (first + index * page - vma.start) // vma.kernel_page
            for node in _nodes_in(status[where]):
                n = np.unique(ids[status[where] == node]).size * vma.kernel_page
                _add(out.huge, node, vma.kernel_page, n)
                _add(out.hugetlb, node, vma.kernel_page, n)
    return covered


def _thp_from_smaps(
    vmas: list[SmapsVma], first: int, status: np.ndarray, page: int, out: HugeBacking
) -> bool:
    """THP bytes per node from each mapping's PMD-mapped figure; True when one
    had to be shared out (the mapping reaches past the range, or its pages are
    on several nodes)."""
    pmd = KernelFiles().integer(THP_SIZE) or 2 << 20
    span_lo, span_hi = first, first + status.size * page
    prorated = False
    for vma in vmas:
        thp = vma.anon_huge + vma.file_pmd
        if not thp or vma.kernel_page > page:
            continue
        # a PMD-mapped page lies on a PMD boundary wholly inside the mapping
        lo, hi = -(-vma.start // pmd) * pmd, vma.end // pmd * pmd
        inside = max(0, min(hi, span_hi) - max(lo, span_lo))
        share = thp
        if hi > lo and inside < hi - lo:
            share = thp * inside // (hi - lo)
            prorated = True
        nodes = _nodes_in(status[_page_slice(vma, first, status.size, page)])
        if len(nodes) > 1:
            prorated = True
        total = sum(nodes.values())
        for node, n in nodes.items():
            _add(out.huge, node, pmd, share * n // total)
    return prorated


def _thp_from_frames(
    first: int, status: np.ndarray, page: int, skip: np.ndarray, out: HugeBacking
) -> bool:
    """THP bytes per node and folio size, page by page; False when this process
    may not see frames (then nothing is counted)."""
    window = 2 << 20
    lo = first - first % window
    hi = -(-(first + status.size * page) // window) * window
    data = _pread_words(process_file("pagemap"), lo // page, (hi - lo) // page)
    raw = _words(data, "pagemap")
    pfns = parse_pagemap(data)
    if ((raw & _PRESENT) != 0).any() and not pfns.any():
        return False  # present pages, no frames: not privileged
    group, counts = _folios(pfns, _frame_flags(pfns))
    offset = (first - lo) // page
    group = group[offset : offset + status.size]
    counted = (group > 0) & (status >= 0) & ~skip
    for node in _nodes_in(status[counted]):
        for folio in np.unique(group[counted & (status == node)]).tolist():
            _add(out.huge, node, int(counts[folio]) * page, int(counts[folio]) * page)
    return True


def huge_backing(first: int, status: np.ndarray, page: int) -> HugeBacking:
    """The huge pages behind the pages from `first` (move_pages' node or
    -errno for each base page in `status`).

    Page by page from pagemap and kpageflags where this process may read them
    (root), else per mapping from smaps; hugetlb mappings from smaps always
    (every page of one is huge, of its KernelPageSize).

    Examples
    --------
    >>> import numpy as np, numa_numpy as nn
    >>> from numa_numpy._kernel.hugepages import huge_backing
    >>> a = nn.numa_ones(1 << 20, node=0, huge_pages="none")
    >>> huge_backing(a.ctypes.data, np.zeros(a.nbytes // 4096, dtype=np.intc), 4096).huge
    {}
    """
    out = HugeBacking()
    if not status.size:
        return out
    try:
        vmas = smaps_vmas(first, status.size * page)
    except (OSError, ValueError):
        return out
    covered = _hugetlb_pages(vmas, first, status, page, out)
    try:
        exact = _thp_from_frames(first, status, page, covered, out)
    except (OSError, ValueError):
        exact = False
    if exact:
        return HugeBacking(out.huge, out.hugetlb, "kpageflags")
    prorated = _thp_from_smaps(vmas, first, status, page, out)
    return HugeBacking(out.huge, out.hugetlb, "smaps, pro-rated" if prorated else "smaps")
