"""pytest plugin for the ASan run (asan.sh loads it with -p asan_plugin).

The project's tests count the process's mappings (/proc/self/maps) to prove that
the arena unmaps what it maps. Under AddressSanitizer the count also moves with
the sanitizer's own memory: its shadow memory and its primary allocator's
region are reserved up front and committed piece by piece, which splits them
into more and more VMAs as the heap grows. Those ranges are fixed on x86_64
Linux (compiler-rt asan_mapping.h, asan_allocator.h):

    shadow + shadow gap   [0x00007fff8000, 0x10007fff8000)
    primary allocator     [0x600000000000, 0x640000000000)

numa_numpy's mappings never fall there (the kernel places them in HighMem, above
the shadow, below the stack), so this plugin makes kernel_view.mapping_count()
leave those two ranges out, and changes nothing else. It does nothing when
libasan is not loaded.
"""

from __future__ import annotations

from pathlib import Path

ASAN_RANGES = ((0x00007FFF8000, 0x10007FFF8000), (0x600000000000, 0x640000000000))


def _asan_loaded() -> bool:
    return "libasan" in Path("/proc/self/maps").read_text()


def _mapping_count_without_asan() -> int:
    count = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if any(a <= lo and hi <= b for a, b in ASAN_RANGES):
            continue
        count += 1
    return count


def pytest_configure(config) -> None:
    if not _asan_loaded():
        return
    try:
        import kernel_view  # tests/ is on sys.path once tests/conftest.py is loaded
    except ImportError:
        return
    kernel_view.mapping_count = _mapping_count_without_asan
