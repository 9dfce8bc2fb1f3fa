"""The C block allocator (nn_arena.c and its nn_small.c, nn_large.c, nn_cache.c,
nn_blocks.c), called directly through cffi.

A hypothesis state machine drives malloc / calloc / realloc / free over the three
paths (small blocks carved from 1 MiB policy-bound chunks, large blocks below
4 MiB, large blocks from 4 MiB on, which get transparent huge pages under
NN_HUGE_AUTO) and checks after every step what a malloc must guarantee, plus the
arena's own bookkeeping. It runs on an arena bound to node 0, one under the
default policy, and one bound to node 0 asking for explicit 2 MiB pages where
none are reserved (every large block falls back to normal pages). Focused tests
cover the large-block cache, trim, dirty-block calloc, realloc failure and soft /
strict mbind refusal (the last two with the extension's deterministic fault
injection).

What the kernel says is read independently of the package: /proc/self/maps and
numa_maps (tests/kernel_view.py) and /proc/self/pagemap (present bits).
"""

from __future__ import annotations

import errno
import gc
import itertools
import struct
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import kernel_view
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from numa_numpy._kernel.lib import ffi, lib

KiB, MiB = 1 << 10, 1 << 20
HEADER = 16  # bytes before every user pointer (the block header)
PAGE = int(lib.nn_base_page_size())
CHUNK = 1 * MiB
DEFAULT_CACHE_LIMIT = 1 << 30
MAX_SIZE = 9 * MiB

# Mapping-count slack: /proc/self/maps counts VMAs, not mmap calls. The kernel
# merges adjacent anonymous mappings with equal flags and policy (so the arena's
# mappings may add fewer lines than it made and then, when unmapped, split a
# neighbour back), and the interpreter maps and unmaps its own arenas (pymalloc,
# hypothesis' bookkeeping) while the test runs. Neither is the arena's doing, so
# the count is allowed to end a few lines above where it started; a leaked chunk
# or large block is also caught exactly, for the bound arena, by bind_bytes().
MAPS_TOLERANCE = 6


# ---- helpers -----------------------------------------------------------------------


def address(ptr) -> int:
    return int(ffi.cast("uintptr_t", ptr))


def binding(mode: str):
    """node 0 ("bind") or the default policy ("default") as an nn_binding
    (the mask is kept alive by the struct's owner: cffi ties it to the struct)."""
    if mode == "bind":
        mask = ffi.new("unsigned long[]", [1])
        b = ffi.new(
            "nn_binding *",
            {"mode": lib.NN_MPOL_BIND, "home_node": -1, "maxnode": 65, "nwords": 1, "mask": mask},
        )
        _KEEP.append(mask)
        return b
    return ffi.new("nn_binding *", {"mode": lib.NN_MPOL_DEFAULT, "home_node": -1})


_KEEP: list = []


def new_arena(mode: str, *, strict: int = 0, huge: int | None = None, prefault=None):
    """An arena bound to node 0 ("bind") or under the default policy ("default")."""
    huge = lib.NN_HUGE_AUTO if huge is None else huge
    plan = ffi.new("nn_prefault_plan *", {"mode": prefault or lib.NN_PREFAULT_NONE})
    arena = lib.nn_arena_new(binding(mode), huge, plan, strict)
    assert arena != ffi.NULL
    return arena


def test_size_class_tables_are_inverses():
    """size_class(request) and class_bytes(class) agree for every small request
    (the C side's _Static_asserts pin the table's shape)."""
    assert lib.nn_arena_check_size_classes() == 0


def stats(arena) -> dict[str, int]:
    out = ffi.new("nn_arena_stats *")
    lib.nn_arena_stats_get(arena, out)
    return {name: int(getattr(out, name)) for name in dir(out)}


def owner(ptr):
    """(arena, recorded size, status bits) as nn_block_owner reports them."""
    size = ffi.new("size_t *")
    status = ffi.new("int *")
    arena = lib.nn_block_owner(ptr, size, status)
    return arena, int(size[0]), int(status[0])


def mapping(ptr) -> tuple[int, int]:
    """(base, length) of a large block's own mapping (nn_block_mapping)."""
    base, length = ffi.new("void **"), ffi.new("size_t *")
    assert lib.nn_block_mapping(ptr, base, length) == 0
    return address(base[0]), int(length[0])


def _small_limit() -> int:
    probe = new_arena("default")
    try:
        return stats(probe)["small_limit"]
    finally:
        lib.nn_arena_destroy(probe)


SMALL_LIMIT = _small_limit()  # largest request served from chunks


def bind_bytes() -> int:
    """Bytes of every VMA whose policy the kernel reports as bind:... Nothing but
    numa_numpy binds memory in this process, so this counts bound arenas' chunks,
    large blocks and cache exactly, whatever VMAs the kernel merged."""
    policy_at = {entry.start: entry.policy for entry in kernel_view.numa_maps()}
    total = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if policy_at.get(lo, "").startswith("bind"):
            total += hi - lo
    return total


def range_policy(addr: int) -> str:
    return kernel_view.numa_maps_entry(addr).policy


def is_bound_vma(addr: int) -> bool:
    try:
        return range_policy(addr).startswith("bind")
    except LookupError:
        return False


def pages_spanned(addr: int, nbytes: int) -> int:
    return (addr + nbytes - 1) // PAGE - addr // PAGE + 1


def resident_pages(addr: int, nbytes: int) -> int:
    """Pages of [addr, addr+nbytes) present in memory (/proc/self/pagemap bit 63)."""
    first = addr // PAGE
    count = pages_spanned(addr, nbytes)
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(first * 8)
        entries = struct.unpack(f"{count}Q", f.read(count * 8))
    return sum(entry >> 63 for entry in entries)


def vm_size() -> int:
    """Bytes of address space mapped by this process (VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) << 10
    raise LookupError("no VmSize")


def vm_flags(addr: int) -> set[str]:
    """VmFlags of the VMA holding `addr` (/proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
        elif inside and head == "VmFlags:":
            return set(line.split()[1:])
    raise LookupError(f"{addr:#x} is not mapped")


@pytest.fixture
def clear_faults():
    """Fault injection is process-wide: always clear it, pass or fail."""
    yield
    for op in (lib.NN_FAULT_MMAP, lib.NN_FAULT_MBIND, lib.NN_FAULT_POPULATE):
        assert lib.nn_inject_fault(op, 0, 0) == 0


# Byte patterns: block k holds PATTERN[k % 251 :][:size]. Never 0 (so a calloc
# that hands back a dirty block shows), and shifted per block, so one block
# written over another shows too.
PATTERN = (np.arange(MAX_SIZE + 251, dtype=np.uint32) % 251 + 1).astype(np.uint8)


def fill(ptr, size: int, seed: int) -> None:
    assert size <= MAX_SIZE
    if size:
        off = seed % 251
        ffi.memmove(
            ptr,
            PATTERN[off : off + size].tobytes()
            if size < 4096
            else memoryview(PATTERN[off : off + size]),
            size,
        )


def view(ptr, size: int) -> np.ndarray:
    return np.frombuffer(ffi.buffer(ptr, size), dtype=np.uint8) if size else np.empty(0, np.uint8)


def holds(ptr, size: int, seed: int) -> bool:
    off = seed % 251
    return bool(np.array_equal(view(ptr, size), PATTERN[off : off + size]))


def is_zero(ptr, size: int) -> bool:
    return not view(ptr, size).any()


# ---- the state machine -------------------------------------------------------------


@dataclass(eq=False)
class Block:
    ptr: object
    size: int
    seed: int

    @property
    def addr(self) -> int:
        return address(self.ptr)


SMALL = st.integers(1, SMALL_LIMIT)
# Medium: large blocks without transparent huge pages (below 4 MiB).
MEDIUM = st.one_of(st.integers(SMALL_LIMIT + 1, MiB), st.integers(MiB, 4 * MiB))
LARGE = st.integers(4 * MiB + 1, MAX_SIZE)
BOUNDARY = st.sampled_from(
    [
        1,
        15,
        16,
        17,
        32,
        112,
        113,
        128,
        129,
        4096,
        32752,
        32753,
        SMALL_LIMIT - 1,
        SMALL_LIMIT,
        SMALL_LIMIT + 1,
        64 * KiB,
        64 * KiB + 1,
        MiB - 64,
        MiB,
        4 * MiB - 1,
        4 * MiB,
        4 * MiB + 1,
    ]
)
# A few repeated sizes make free lists and the large-block cache hand blocks back.
REPEATED = st.sampled_from([24, 700, 9000, 200_000, 700_000, 2 * MiB + 5])
SIZES = st.one_of(SMALL, BOUNDARY, REPEATED, MEDIUM, LARGE)


class ArenaMachine(RuleBasedStateMachine):
    MODE = "bind"
    HUGE = None  # NN_HUGE_AUTO: THP advice from 4 MiB

    blocks = Bundle("blocks")

    def __init__(self) -> None:
        super().__init__()
        gc.collect()
        # blocks other tests left in the process cache would decay (be unmapped)
        # while this runs, and the bound bytes below would drop under the baseline
        lib.nn_cache_trim()
        self.maps_before = kernel_view.mapping_count()
        self.bind_before = bind_bytes() if self.MODE == "bind" else 0
        self.arena = new_arena(self.MODE, huge=self.HUGE)
        self.live: dict[int, Block] = {}
        self.seeds = itertools.count(1)
        self.freed_large: list[int] = []  # sizes of freed large blocks (maybe cached)

    # -- helpers --

    def adopt(self, ptr, size: int, *, zeroed: bool = False, keeps=None) -> Block:
        """Track a block just returned (so teardown frees it even if a check below
        fails), check it, and give it a pattern of its own. `keeps`: (bytes,
        seed) the block must start with (a realloc's preserved prefix)."""
        assert ptr != ffi.NULL, f"allocation of {size} bytes failed: {stats(self.arena)}"
        addr = address(ptr)
        assert addr not in self.live, f"{addr:#x} handed out twice"
        block = self.live[addr] = Block(ptr, size, next(self.seeds))
        assert addr % 16 == 0, f"{addr:#x} is not 16-byte aligned"
        if zeroed:
            assert is_zero(ptr, size), f"calloc({size}) returned non-zero bytes"
        if keeps is not None:
            keep, seed = keeps
            off = seed % 251
            assert np.array_equal(view(ptr, keep), PATTERN[off : off + keep]), (
                f"realloc to {size} lost some of the first {keep} bytes"
            )
        fill(ptr, size, block.seed)
        return block

    def release(self, block: Block) -> None:
        del self.live[block.addr]

    # -- rules --

    @rule(target=blocks, size=SIZES)
    def malloc(self, size):
        return self.adopt(lib.nn_arena_malloc(self.arena, size), size)

    @rule(target=blocks, size=SIZES, elsize=st.sampled_from([1, 2, 8, 24]))
    def calloc(self, size, elsize):
        nelem = max(size // elsize, 1)
        return self.adopt(
            lib.nn_arena_calloc(self.arena, nelem, elsize), nelem * elsize, zeroed=True
        )

    @rule(
        target=blocks,
        block=consumes(blocks),
        zero=st.booleans(),
        delta=st.one_of(
            st.just(0),
            st.integers(-3 * PAGE, 3 * PAGE),
            st.sampled_from([1, 16, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE]),
        ),
    )
    def free_then_allocate_nearby(self, block, zero, delta):
        """The block just freed (dirty with its pattern) is the one a free list or
        the cache hands back first for the same size (calloc must zero it); a
        size a little off tests the size class / the cache's fit instead."""
        lib.nn_arena_free(self.arena, block.ptr)
        self.release(block)
        size = min(max(block.size + delta, 0), MAX_SIZE)
        if zero:
            return self.adopt(lib.nn_arena_calloc(self.arena, size, 1), size, zeroed=True)
        return self.adopt(lib.nn_arena_malloc(self.arena, size), size)

    @rule(block=consumes(blocks))
    def free(self, block):
        lib.nn_arena_free(self.arena, block.ptr)
        self.release(block)
        if block.size > SMALL_LIMIT:
            self.freed_large.append(block.size)

    @precondition(lambda self: self.freed_large)
    @rule(target=blocks, data=st.data(), zero=st.booleans())
    def allocate_near_a_freed_large_size(self, data, zero):
        """Sizes around a cached mapping's: the cache's fit test decides between
        reusing it (up to a quarter too big) and mapping afresh (too small)."""
        base = data.draw(st.sampled_from(self.freed_large), "freed size")
        delta = data.draw(
            st.one_of(
                st.integers(-3 * PAGE, 3 * PAGE),
                st.integers(-(base // 4) - PAGE, -(base // 4) + PAGE),
            ),
            "delta",
        )
        size = min(max(base + delta, SMALL_LIMIT + 1), MAX_SIZE)
        if zero:
            return self.adopt(lib.nn_arena_calloc(self.arena, 1, size), size, zeroed=True)
        return self.adopt(lib.nn_arena_malloc(self.arena, size), size)

    def _realloc(self, block: Block, size: int) -> Block:
        assert holds(block.ptr, block.size, block.seed)
        ptr = lib.nn_arena_realloc(self.arena, block.ptr, size)
        assert ptr != ffi.NULL, f"realloc {block.size} -> {size} failed: {stats(self.arena)}"
        self.release(block)
        return self.adopt(ptr, size, keeps=(min(block.size, size), block.seed))

    @rule(target=blocks, block=consumes(blocks), size=SIZES)
    def realloc(self, block, size):
        return self._realloc(block, size)

    @rule(target=blocks, block=consumes(blocks), data=st.data())
    def realloc_across_the_small_large_boundary(self, block, data):
        if block.size <= SMALL_LIMIT:
            size = data.draw(st.one_of(MEDIUM, LARGE, st.just(SMALL_LIMIT + 1)), "to large")
        else:
            size = data.draw(st.one_of(SMALL, st.just(SMALL_LIMIT), st.just(0)), "to small")
        return self._realloc(block, size)

    @rule(target=blocks, block=consumes(blocks), delta=st.integers(-4096, 4096))
    def realloc_nearby(self, block, delta):
        """Small changes: in place within a size class or an mremap of the mapping."""
        return self._realloc(block, min(max(block.size + delta, 0), MAX_SIZE))

    @rule(target=blocks, size=SIZES)
    def realloc_null(self, size):
        return self.adopt(lib.nn_arena_realloc(self.arena, ffi.NULL, size), size)

    @rule()
    def trim(self):
        before = stats(self.arena)["cached_bytes"]
        assert lib.nn_arena_trim(self.arena) == before
        assert stats(self.arena)["cached_bytes"] == 0

    @rule(limit=st.sampled_from([0, 1 * MiB, 8 * MiB, DEFAULT_CACHE_LIMIT]))
    def set_cache_limit(self, limit):
        lib.nn_arena_set_cache_limit(self.arena, limit)
        s = stats(self.arena)
        assert s["cache_limit"] == limit
        assert s["cached_bytes"] <= limit

    # -- invariants --

    @invariant()
    def bookkeeping_matches(self):
        s = stats(self.arena)
        assert s["used_bytes"] == sum(b.size for b in self.live.values())
        assert s["live_blocks"] == len(self.live)
        assert s["cached_bytes"] <= s["cache_limit"]
        assert s["chunk_bytes"] % CHUNK == 0
        assert s["fallbacks"] == 0
        if self.HUGE == lib.NN_HUGE_EXPLICIT_2MB:
            # Every fresh large mapping asked for hugetlb pages and fell back.
            assert (s["huge_fallbacks"] == 0) == (s["last_error"] == 0)
        else:
            assert s["huge_fallbacks"] == 0 and s["last_error"] == 0

    @invariant()
    def blocks_know_their_arena_and_size(self):
        mapped = 0
        base, length = ffi.new("void **"), ffi.new("size_t *")
        spans = []
        for block in self.live.values():
            arena, size, status = owner(block.ptr)
            assert arena == self.arena
            assert size == block.size
            expected = lib.NN_MAP_BOUND if self.MODE == "bind" else 0
            if self.HUGE == lib.NN_HUGE_EXPLICIT_2MB and block.size > SMALL_LIMIT:
                expected |= lib.NN_MAP_HUGE_FALLBACK
            assert status == expected
            if block.size <= SMALL_LIMIT:
                assert lib.nn_block_mapping(block.ptr, base, length) < 0
                continue
            # A large block's own mapping: page-aligned, holds its header and
            # data, and is at most a quarter bigger than that (the cache's fit
            # rule); no two mappings overlap.
            assert lib.nn_block_mapping(block.ptr, base, length) == 0
            start, length_ = address(base[0]), int(length[0])
            need = -(-(block.addr + block.size - start) // PAGE) * PAGE
            assert start % PAGE == 0 and length_ % PAGE == 0
            assert start <= block.addr - HEADER - 8  # room for a head before it
            if self.HUGE == lib.NN_HUGE_EXPLICIT_2MB:
                # The cache sizes a hugetlb request in 2 MiB pages, so a
                # fallback mapping may serve a request up to that much smaller.
                need_max = -(-need // (2 * MiB)) * (2 * MiB)
                assert need <= length_ <= need_max + need_max // 4
            else:
                assert need <= length_ <= need + need // 4
            spans.append((start, start + length_))
            mapped += length_
        spans.sort()
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))
        assert stats(self.arena)["large_bytes"] == mapped

    @invariant()
    def aligned_and_disjoint(self):
        # Header included: a block's header must not sit inside another block.
        spans = sorted((b.addr - HEADER, b.addr + b.size) for b in self.live.values())
        for addr, _ in spans:
            assert (addr + HEADER) % 16 == 0
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, f"blocks overlap at {start:#x}"

    @invariant()
    def contents_preserved(self):
        for block in self.live.values():
            assert holds(block.ptr, block.size, block.seed), (
                f"block of {block.size} at {block.addr:#x} was overwritten"
            )

    def teardown(self):
        for block in list(self.live.values()):
            lib.nn_arena_free(self.arena, block.ptr)
            self.release(block)
        s = stats(self.arena)
        assert (s["used_bytes"], s["live_blocks"], s["large_bytes"]) == (0, 0, 0)
        assert lib.nn_arena_trim(self.arena) == s["cached_bytes"]
        lib.nn_arena_destroy(self.arena)
        if self.MODE == "bind":
            # Exact: every bound chunk, large block and cached mapping is gone.
            assert bind_bytes() == self.bind_before
        assert kernel_view.mapping_count() <= self.maps_before + MAPS_TOLERANCE


class DefaultArenaMachine(ArenaMachine):
    MODE = "default"


class HugeFallbackArenaMachine(ArenaMachine):
    """Bound to node 0, asking for explicit 2 MiB pages where none are reserved:
    soft mode falls back to normal pages for every large block (the path where
    the block's layout in its mapping changes)."""

    HUGE = lib.NN_HUGE_EXPLICIT_2MB


def free_2mb_hugepages() -> int:
    try:
        return int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read_text())
    except OSError:
        return 0


MACHINE_SETTINGS = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestBoundArena = ArenaMachine.TestCase
TestBoundArena.settings = MACHINE_SETTINGS
TestDefaultArena = DefaultArenaMachine.TestCase
TestDefaultArena.settings = MACHINE_SETTINGS
TestHugeFallbackArena = pytest.mark.skipif(
    free_2mb_hugepages() > 0, reason="2 MiB huge pages are reserved here: no fallback"
)(HugeFallbackArenaMachine.TestCase)
TestHugeFallbackArena.settings = MACHINE_SETTINGS


# ---- focused tests -----------------------------------------------------------------


@pytest.fixture
def arena():
    made = []

    def make(mode="bind", **kw):
        made.append(new_arena(mode, **kw))
        return made[-1]

    yield make
    for a in made:
        lib.nn_arena_destroy(a)


def test_a_new_arena_has_no_cache_cap_of_its_own(arena):
    """The numbers are the Python layer's (numa_numpy._alloc.budget): until a
    handler sets its cap, an arena is held by the process's budget alone."""
    assert stats(arena())["cache_limit"] == SIZE_MAX


def test_block_owner_and_layout_of_each_path(arena):
    a = arena()
    for size in (0, 1, SMALL_LIMIT, SMALL_LIMIT + 1, 4 * MiB + 1):
        p = lib.nn_arena_malloc(a, size)
        assert p != ffi.NULL and address(p) % 16 == 0
        assert owner(p) == (a, size, lib.NN_MAP_BOUND)
        assert range_policy(address(p)) == "bind:0"
        lib.nn_arena_free(a, p)
    # Not ours: NumPy's own memory has no header magic.
    foreign = np.zeros(64, dtype=np.uint8)
    assert (
        lib.nn_block_owner(ffi.cast("void *", foreign.ctypes.data + 32), ffi.NULL, ffi.NULL)
        == ffi.NULL
    )


def test_cache_limit_zero_unmaps_freed_large_blocks_at_once(arena):
    a = arena()
    lib.nn_arena_set_cache_limit(a, 0)
    before = bind_bytes()
    p = lib.nn_arena_malloc(a, 2 * MiB)
    fill(p, 2 * MiB, 3)
    addr = address(p)
    assert is_bound_vma(addr)
    assert bind_bytes() == before + mapping(p)[1]
    lib.nn_arena_free(a, p)
    s = stats(a)
    assert s["cached_bytes"] == 0 and s["large_bytes"] == 0
    assert not is_bound_vma(addr)
    assert bind_bytes() == before
    assert lib.nn_arena_trim(a) == 0


def test_a_limit_smaller_than_the_block_does_not_cache_it(arena):
    a = arena()
    lib.nn_arena_set_cache_limit(a, 1 * MiB)
    before = bind_bytes()
    p = lib.nn_arena_malloc(a, 2 * MiB)
    lib.nn_arena_free(a, p)
    assert stats(a)["cached_bytes"] == 0
    assert bind_bytes() == before


def test_positive_cache_limit_reuses_the_faulted_mapping(arena):
    a = arena()
    lib.nn_arena_set_cache_limit(a, 64 * MiB)
    size = 2 * MiB
    p = lib.nn_arena_malloc(a, size)
    addr = address(p)
    fill(p, size, 7)  # faults every page in
    assert resident_pages(addr, size) == pages_spanned(addr, size)
    _, length = mapping(p)
    lib.nn_arena_free(a, p)
    s = stats(a)
    assert s["cached_bytes"] == length
    assert s["large_bytes"] == 0 and s["used_bytes"] == 0
    # Still mapped, still bound, pages still there.
    assert is_bound_vma(addr)
    assert resident_pages(addr, size) == pages_spanned(addr, size)

    q = lib.nn_arena_malloc(a, size - 1000)  # within a quarter: the cached one fits
    assert address(q) == addr
    s = stats(a)
    assert s["cached_bytes"] == 0
    assert s["large_bytes"] == length
    # The block handed back is the one whose pages were faulted in before the free.
    assert resident_pages(addr, size - 1000) == pages_spanned(addr, size - 1000)
    assert holds(q, size - 1000, 7)  # malloc does not clear: the very same pages
    assert owner(q) == (a, size - 1000, lib.NN_MAP_BOUND)
    lib.nn_arena_free(a, q)


def test_cache_is_best_fit_within_a_quarter(arena):
    a = arena()
    p = lib.nn_arena_malloc(a, 2 * MiB)
    lib.nn_arena_free(a, p)
    cached = stats(a)["cached_bytes"]
    # Far smaller than the cached mapping: a fresh one, the cache stays.
    q = lib.nn_arena_malloc(a, 1 * MiB)
    assert address(q) != address(p)
    assert stats(a)["cached_bytes"] == cached
    # Larger than the cached mapping: never the cached one.
    r = lib.nn_arena_malloc(a, 2 * MiB + PAGE)
    assert address(r) != address(p)
    assert stats(a)["cached_bytes"] == cached
    for x in (q, r):
        lib.nn_arena_free(a, x)


def test_lowering_the_limit_below_the_cache_trims_it(arena):
    a = arena()
    before = bind_bytes()
    ptrs = [lib.nn_arena_malloc(a, n * MiB) for n in (1, 2, 3)]
    lengths = [mapping(p)[1] for p in ptrs]
    for p in ptrs:
        lib.nn_arena_free(a, p)
    assert stats(a)["cached_bytes"] == sum(lengths)
    lib.nn_arena_set_cache_limit(a, 1 * MiB)
    assert stats(a)["cached_bytes"] <= 1 * MiB
    lib.nn_arena_trim(a)
    assert bind_bytes() == before


def test_trim_returns_the_bytes_it_released(arena):
    a = arena()
    before = bind_bytes()
    sizes = [SMALL_LIMIT + 1, 300_000, 1 * MiB, 3 * MiB + 17, 5 * MiB]
    ptrs = [lib.nn_arena_malloc(a, n) for n in sizes]
    assert all(p != ffi.NULL for p in ptrs)
    expected = sum(mapping(p)[1] for p in ptrs)
    for p, n in zip(ptrs, sizes, strict=False):
        fill(p, n, n)
        lib.nn_arena_free(a, p)
    assert stats(a)["cached_bytes"] == expected
    assert bind_bytes() == before + expected
    assert lib.nn_arena_trim(a) == expected
    assert stats(a)["cached_bytes"] == 0
    assert bind_bytes() == before
    assert lib.nn_arena_trim(a) == 0


@pytest.mark.parametrize("size", [24, 4000, SMALL_LIMIT, 100_000, 900_000])
def test_calloc_zeroes_a_reused_dirty_block(arena, size):
    a = arena()
    p = lib.nn_arena_malloc(a, size)
    ffi.memmove(p, b"\xab" * size, size)
    length = mapping(p)[1] if size > SMALL_LIMIT else 0
    lib.nn_arena_free(a, p)
    cached = stats(a)["cached_bytes"]
    q = lib.nn_arena_calloc(a, size // 4, 4) if size % 4 == 0 else lib.nn_arena_calloc(a, size, 1)
    assert address(q) == address(p), "expected the freed block back (free list / cache)"
    if size > SMALL_LIMIT:
        assert cached == length and stats(a)["cached_bytes"] == 0
    assert is_zero(q, size)
    lib.nn_arena_free(a, q)


@pytest.mark.parametrize("size", [2 * MiB, 5 * MiB, 40 * MiB])
def test_calloc_after_freeing_a_dirty_large_block_is_zero_and_bound(arena, size):
    """Whether the arena memsets a reused mapping, gives its pages back
    (MADV_DONTNEED) or maps afresh, the block is zero and keeps the policy."""
    a = arena()
    p = lib.nn_arena_malloc(a, size)
    ffi.memmove(p, b"\xcd" * size, size)
    lib.nn_arena_free(a, p)
    q = lib.nn_arena_calloc(a, size // 8, 8)
    assert q != ffi.NULL and is_zero(q, size)
    assert owner(q) == (a, size, lib.NN_MAP_BOUND)
    assert range_policy(address(q)) == "bind:0"
    assert range_policy(address(q) + size - 1) == "bind:0"
    lib.nn_arena_free(a, q)


def test_calloc_overflow_fails(arena):
    a = arena()
    assert lib.nn_arena_calloc(a, 1 << 62, 8) == ffi.NULL
    assert stats(a)["live_blocks"] == 0


def test_failed_realloc_to_large_leaves_the_small_block_intact(arena, clear_faults):
    a = arena()
    p = lib.nn_arena_malloc(a, 1000)
    fill(p, 1000, 11)
    before = stats(a)
    assert lib.nn_inject_fault(lib.NN_FAULT_MMAP, errno.ENOMEM, 1) == 0
    assert lib.nn_arena_realloc(a, p, 2 * MiB) == ffi.NULL
    assert lib.nn_inject_fault(lib.NN_FAULT_MMAP, 0, 0) == 0
    after = stats(a)
    assert holds(p, 1000, 11)
    assert owner(p) == (a, 1000, lib.NN_MAP_BOUND)
    assert (after["used_bytes"], after["live_blocks"]) == (before["used_bytes"], 1)
    assert after["last_error"] == errno.ENOMEM
    # With the fault gone the same realloc works and keeps the contents.
    q = lib.nn_arena_realloc(a, p, 2 * MiB)
    assert q != ffi.NULL
    off = 11 % 251
    assert np.array_equal(view(q, 1000), PATTERN[off : off + 1000])
    lib.nn_arena_free(a, q)


def test_failed_realloc_of_a_large_block_leaves_it_intact(arena):
    a = arena()
    size = 3 * MiB
    p = lib.nn_arena_malloc(a, size)
    fill(p, size, 5)
    # No mremap and no fresh mapping can give 4 EiB: both paths fail.
    assert lib.nn_arena_realloc(a, p, 1 << 62) == ffi.NULL
    assert holds(p, size, 5)
    assert owner(p) == (a, size, lib.NN_MAP_BOUND)
    s = stats(a)
    assert (s["used_bytes"], s["live_blocks"]) == (size, 1)
    assert s["last_error"] == errno.ENOMEM
    lib.nn_arena_free(a, p)


def test_failed_chunk_mapping_fails_a_small_malloc(arena, clear_faults):
    a = arena()
    assert lib.nn_inject_fault(lib.NN_FAULT_MMAP, errno.ENOMEM, 1) == 0
    assert lib.nn_arena_malloc(a, 100) == ffi.NULL
    s = stats(a)
    assert (s["live_blocks"], s["chunk_bytes"], s["last_error"]) == (0, 0, errno.ENOMEM)
    p = lib.nn_arena_malloc(a, 100)  # the fault was for one mmap only
    assert p != ffi.NULL
    lib.nn_arena_free(a, p)


@pytest.mark.parametrize("size", [100, 2 * MiB], ids=["chunk", "large"])
def test_refused_mbind_in_soft_mode_returns_an_unbound_block(arena, clear_faults, size):
    a = arena(strict=0)
    assert lib.nn_inject_fault(lib.NN_FAULT_MBIND, errno.EPERM, 1) == 0
    p = lib.nn_arena_malloc(a, size)
    assert p != ffi.NULL
    s = stats(a)
    assert s["fallbacks"] == 1
    assert s["last_error"] == errno.EPERM
    arena_of, recorded, status = owner(p)
    assert (arena_of, recorded) == (a, size)
    assert status & lib.NN_MAP_POLICY_FALLBACK and not status & lib.NN_MAP_BOUND
    # The kernel agrees: no policy on that range.
    assert range_policy(address(p)) == "default"
    fill(p, size, 9)
    assert holds(p, size, 9)
    lib.nn_arena_free(a, p)
    # The next mapping is bound again.
    q = lib.nn_arena_malloc(a, 3 * MiB)
    assert owner(q)[2] == lib.NN_MAP_BOUND and range_policy(address(q)) == "bind:0"
    assert stats(a)["fallbacks"] == 1
    lib.nn_arena_free(a, q)


@pytest.mark.parametrize("size", [100, 2 * MiB], ids=["chunk", "large"])
def test_refused_mbind_in_strict_mode_fails_without_leaking(arena, clear_faults, size):
    a = arena(strict=1)
    tries = 16
    gc.collect()
    vm_before = vm_size()
    assert lib.nn_inject_fault(lib.NN_FAULT_MBIND, errno.EPERM, tries) == 0
    for _ in range(tries):
        assert lib.nn_arena_malloc(a, size) == ffi.NULL
    s = stats(a)
    assert s["last_error"] == errno.EPERM
    assert (s["live_blocks"], s["used_bytes"], s["chunk_bytes"], s["large_bytes"]) == (0, 0, 0, 0)
    assert s["fallbacks"] == 0
    # Every refused mapping (>= 2 MiB each: a chunk is over-mapped 2x) was
    # unmapped again: 16 leaks would add >= 32 MiB of address space.
    assert vm_size() - vm_before < tries * MiB
    p = lib.nn_arena_malloc(a, size)
    assert p != ffi.NULL and owner(p)[2] == lib.NN_MAP_BOUND
    lib.nn_arena_free(a, p)


def test_disabled_binding_marks_every_mapping_as_fallback(arena):
    a = arena()
    lib.nn_arena_disable_binding(a, errno.EPERM)
    p = lib.nn_arena_malloc(a, 2 * MiB)
    s = stats(a)
    assert s["enforced"] == 0 and s["last_error"] == errno.EPERM and s["fallbacks"] == 1
    assert owner(p)[2] == lib.NN_MAP_POLICY_FALLBACK
    assert range_policy(address(p)) == "default"
    lib.nn_arena_free(a, p)


def test_thp_block_from_4_mib_is_huge_page_aligned(arena):
    a = arena()
    p = lib.nn_arena_malloc(a, 4 * MiB)
    q = lib.nn_arena_malloc(a, 4 * MiB - 1)
    # AUTO: from 4 MiB a mapping advised MADV_HUGEPAGE (VmFlags "hg") and
    # 2 MiB-aligned (its data or its start) so that huge pages can back it;
    # below 4 MiB, no advice.
    base, _ = mapping(p)
    assert address(p) % (2 * MiB) == 0 or base % (2 * MiB) == 0
    assert "hg" in vm_flags(address(p))
    assert "hg" not in vm_flags(address(q))
    assert owner(p) == (a, 4 * MiB, lib.NN_MAP_BOUND)
    # NN_HUGE_NONE means none, even where THP is "always": MADV_NOHUGEPAGE ("nh").
    none = arena(huge=lib.NN_HUGE_NONE)
    r = lib.nn_arena_malloc(none, 5 * MiB)
    assert "nh" in vm_flags(address(r)) and "hg" not in vm_flags(address(r))
    lib.nn_arena_free(none, r)
    for x in (p, q):
        lib.nn_arena_free(a, x)


def test_a_migrated_large_block_is_unmapped_on_free_not_cached(arena):
    a = arena()
    before = bind_bytes()
    p = lib.nn_arena_malloc(a, 2 * MiB)
    q = lib.nn_arena_malloc(a, 100)
    assert lib.nn_block_mark_migrated(q) < 0  # small blocks share pages: refused
    assert lib.nn_block_mark_migrated(p) == 0
    assert owner(p)[2] & lib.NN_MAP_MIGRATED
    lib.nn_arena_free(a, p)
    assert stats(a)["cached_bytes"] == 0
    assert not is_bound_vma(address(p))
    lib.nn_arena_free(a, q)
    assert bind_bytes() == before + CHUNK  # the chunk stays for small blocks


# ---- issue 11's suspects in the arena's C --------------------------------------------


def run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` (with this module's helpers' imports) in a child: a regression
    here would be a segfault, which must not take the test session with it."""
    prologue = (
        "import ctypes, errno, mmap\n"
        "from numa_numpy._kernel.lib import ffi, lib\n"
        "PAGE = int(lib.nn_base_page_size())\n"
        "mask = ffi.new('unsigned long[]', [1])\n"
        "b = ffi.new('nn_binding *', {'mode': lib.NN_MPOL_BIND, 'home_node': -1,\n"
        "                             'maxnode': 65, 'nwords': 1, 'mask': mask})\n"
        "a = lib.nn_arena_new(b, lib.NN_HUGE_AUTO, ffi.NULL, 0)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


SIZE_MAX = (1 << 64) - 1


def test_sizes_near_size_max_fail_cleanly():
    """malloc/calloc/realloc of sizes whose header page and rounding would wrap
    around: NULL and ENOMEM (before: a one-page mapping was handed out as a
    block of SIZE_MAX bytes, and writing its header faulted)."""
    done = run_isolated(
        f"""
        sizes = [{SIZE_MAX}, {SIZE_MAX} - 100, {SIZE_MAX} - PAGE, {SIZE_MAX} - 2 * PAGE + 1,
                 (1 << 63) + 5, (1 << 63) - 1]
        for size in sizes:
            assert lib.nn_arena_malloc(a, size) == ffi.NULL, size
            assert lib.nn_arena_calloc(a, 1, size) == ffi.NULL, size
        p = lib.nn_arena_malloc(a, 3 << 20)
        q = lib.nn_arena_malloc(a, 100)
        ffi.memmove(p, b"x" * 4096, 4096)
        for size in sizes:
            assert lib.nn_arena_realloc(a, p, size) == ffi.NULL, size
            assert lib.nn_arena_realloc(a, q, size) == ffi.NULL, size
        assert ffi.buffer(p, 4096)[:] == b"x" * 4096
        out = ffi.new("nn_arena_stats *")
        lib.nn_arena_stats_get(a, out)
        assert (out.live_blocks, out.last_error) == (2, errno.ENOMEM)
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_block_owner_of_foreign_pointers_is_null_without_reading_them():
    """nn_block_owner promises NULL for a pointer that is not ours. Foreign
    pointers at the start of a page after an unmapped or PROT_NONE page, and a
    buffer that holds a forged header, must neither crash nor be claimed
    (before: the header was read directly, a segfault for the first two)."""
    done = run_isolated(
        """
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        base = libc.mmap(None, 4 * PAGE, 3, 0x22, -1, 0)  # rw, private|anonymous
        assert libc.munmap(base, PAGE) == 0             # page 0: unmapped
        assert libc.mprotect(base + 2 * PAGE, PAGE, 0) == 0  # page 2: PROT_NONE
        for addr in (base + PAGE, base + 3 * PAGE):
            assert lib.nn_block_owner(ffi.cast("void *", addr), ffi.NULL, ffi.NULL) == ffi.NULL
        # a forged small-block header (size, size class 3, the magic) in foreign memory
        forged = ctypes.create_string_buffer(64)
        ctypes.memmove(ctypes.addressof(forged) + 16,
                       (64).to_bytes(8, "little") + (3).to_bytes(4, "little")
                       + (0x4E554D41).to_bytes(4, "little"), 16)
        ptr = ffi.cast("void *", ctypes.addressof(forged) + 32)
        assert lib.nn_block_owner(ptr, ffi.NULL, ffi.NULL) == ffi.NULL
        # and ours still are
        p = lib.nn_arena_malloc(a, 100)
        q = lib.nn_arena_malloc(a, 2 << 20)
        assert lib.nn_block_owner(p, ffi.NULL, ffi.NULL) == a
        assert lib.nn_block_owner(q, ffi.NULL, ffi.NULL) == a
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_realloc_growth_prefaults_the_new_tail_in_a_prefault_arena():
    a = new_arena("bind", huge=lib.NN_HUGE_NONE, prefault=lib.NN_PREFAULT_TOUCH)
    try:
        p = lib.nn_arena_malloc(a, 2 * MiB)
        assert resident_pages(address(p), 2 * MiB) == pages_spanned(address(p), 2 * MiB)
        q = lib.nn_arena_realloc(a, p, 8 * MiB)  # mremap: the tail is new
        assert q != ffi.NULL
        assert resident_pages(address(q), 8 * MiB) == pages_spanned(address(q), 8 * MiB)
        assert range_policy(address(q) + 8 * MiB - 1) == "bind:0"
        lib.nn_arena_free(a, q)
    finally:
        lib.nn_arena_destroy(a)


def test_chunk_growth_from_many_threads_at_once():
    """Chunks are mapped without the arena's lock now (mmap + mbind no longer
    hold up other threads' small blocks): threads racing to grow keep every
    chunk accounted, none leaked, and blocks never overlap."""
    a = new_arena("bind")
    gc.collect()
    before = bind_bytes()
    per_thread: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def grab(out: list[int]) -> None:
        barrier.wait()
        for _ in range(2000):  # 2000 x 1 KiB per thread: several chunks each
            p = lib.nn_arena_malloc(a, 1000)
            assert p != ffi.NULL
            out.append(address(p))

    threads = [threading.Thread(target=grab, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ptrs = sorted(p for out in per_thread for p in out)
    assert len(ptrs) == 8000
    assert all(b - a_ >= 1000 + HEADER for a_, b in zip(ptrs, ptrs[1:], strict=False))
    s = stats(a)
    assert s["live_blocks"] == 8000
    assert bind_bytes() - before == s["chunk_bytes"]  # every mapped chunk is counted
    used_chunks = {p & ~(CHUNK - 1) for p in ptrs}
    # a lost race keeps its chunk as the spare: at most one unused per arena
    assert s["chunk_bytes"] // CHUNK - len(used_chunks) <= 1
    for p in ptrs:
        lib.nn_arena_free(a, ffi.cast("void *", p))
    lib.nn_arena_destroy(a)
    assert bind_bytes() == before


# ---- the process-wide cache ----------------------------------------------------------


def cache_stats() -> dict[str, int]:
    out = ffi.new("nn_cache_stats *")
    lib.nn_cache_stats_get(out)
    return {name: int(getattr(out, name)) for name in dir(out)}


@pytest.fixture
def process_cache():
    """Set the process-wide cache for a test; the package's defaults after."""
    import numa_numpy as nn

    lib.nn_cache_trim()
    yield lib.nn_cache_configure
    nn.set_cache_limit()
    nn.set_cache_decay()


# The cache's clock is coarse (CLOCK_MONOTONIC_COARSE: a few ms per tick): frees
# meant to have different ages are this far apart.
TICK_S = 0.05


def test_one_budget_evicts_the_oldest_block_of_any_arena(arena, process_cache):
    """By age, not by the order the arenas were made in: the oldest block is in
    the arena made last (a scan that prefers either end of the list of arenas,
    or ignores the time, keeps the wrong one)."""
    process_cache(12 * MiB, 12 * MiB, -1)
    first, second = arena(), arena()
    p = lib.nn_arena_malloc(first, 5 * MiB)
    q = lib.nn_arena_malloc(second, 5 * MiB)
    r = lib.nn_arena_malloc(first, 5 * MiB)
    old, kept = address(q), address(p)
    lib.nn_arena_free(second, q)  # oldest, in the arena made second
    time.sleep(TICK_S)
    lib.nn_arena_free(first, p)
    assert cache_stats()["cached_bytes"] == stats(second)["cached_bytes"] * 2 > 0
    time.sleep(TICK_S)
    lib.nn_arena_free(first, r)  # over the budget: the oldest (second's) goes
    assert stats(second)["cached_bytes"] == 0
    assert stats(first)["cached_bytes"] == cache_stats()["cached_bytes"] <= 12 * MiB
    assert not is_bound_vma(old)
    assert is_bound_vma(kept)


@pytest.mark.parametrize("cap", ["budget", "arena"])
def test_eviction_within_one_arena_takes_its_oldest_block(arena, process_cache, cap):
    """Three blocks freed at different times into one arena whose cache holds
    two: the first freed goes (process budget: evict_global; the arena's own
    cap: make_room), the two newer stay cached."""
    if cap == "budget":
        process_cache(12 * MiB, 12 * MiB, -1)
    else:
        process_cache(1 << 30, 32 * MiB, -1)
    a = arena()
    if cap == "arena":
        lib.nn_arena_set_cache_limit(a, 12 * MiB)
    ptrs = [lib.nn_arena_malloc(a, 5 * MiB) for _ in range(3)]
    addrs = [address(p) for p in ptrs]
    length = mapping(ptrs[0])[1]
    for p in ptrs:
        lib.nn_arena_free(a, p)
        time.sleep(TICK_S)
    assert stats(a)["cached_bytes"] == 2 * length
    assert not is_bound_vma(addrs[0])  # the oldest was unmapped
    assert is_bound_vma(addrs[1]) and is_bound_vma(addrs[2])
    # and the cache hands back the newer two
    again = [lib.nn_arena_malloc(a, 5 * MiB) for _ in range(2)]
    assert sorted(address(p) for p in again) == sorted(addrs[1:])
    for p in again:
        lib.nn_arena_free(a, p)


def test_blocks_beyond_the_hot_allowance_are_cooled_not_dropped(arena, process_cache):
    process_cache(64 * MiB, 4 * MiB, -1)
    a = arena()
    p = lib.nn_arena_malloc(a, 3 * MiB)
    q = lib.nn_arena_malloc(a, 3 * MiB)
    fill(p, 3 * MiB, 1)
    fill(q, 3 * MiB, 2)
    lib.nn_arena_free(a, p)
    assert cache_stats()["lazy_bytes"] == 0  # within the hot allowance
    lib.nn_arena_free(a, q)
    s = cache_stats()
    assert s["hot_bytes"] <= 4 * MiB and s["lazy_bytes"] > 0
    assert s["cached_bytes"] == s["hot_bytes"] + s["lazy_bytes"]
    # the oldest (p) was cooled: reused, malloc may see old bytes or zeros, calloc zeros
    again = lib.nn_arena_calloc(a, 3 * MiB, 1)
    assert is_zero(again, 3 * MiB)
    assert range_policy(address(again)) == "bind:0"
    lib.nn_arena_free(a, again)


def test_decay_unmaps_from_the_thread(arena, process_cache):
    process_cache(64 * MiB, 32 * MiB, 100)
    a = arena()
    p = lib.nn_arena_malloc(a, 2 * MiB)
    old = address(p)
    lib.nn_arena_free(a, p)
    assert stats(a)["cached_bytes"] > 0 and cache_stats()["decay_thread"] == 1
    for _ in range(100):  # out of the cache, then unmapped (after the arena's lock)
        if stats(a)["cached_bytes"] == 0 and not is_bound_vma(old):
            break
        time.sleep(0.05)
    assert stats(a)["cached_bytes"] == 0
    assert not is_bound_vma(old)


# ---- partitioned arenas: one block, a binding per range ------------------------------
#
# On one node the parts are told apart by their modes: part 0 binds node 0,
# part 1 prefers it, part 2 interleaves over it. numa_maps then shows one VMA
# per part, each with its own policy, starting exactly where its range starts.


def _part_bindings():
    mask = ffi.new("unsigned long[]", [1])
    _KEEP.append(mask)
    modes = (lib.NN_MPOL_BIND, lib.NN_MPOL_PREFERRED, lib.NN_MPOL_INTERLEAVE)
    return ffi.new(
        "nn_binding[]",
        [{"mode": m, "home_node": -1, "maxnode": 65, "nwords": 1, "mask": mask} for m in modes],
    )


def partitioned_arena(*, huge: int | None = None, prefault=None):
    arena = new_arena("bind", huge=huge, prefault=prefault)
    assert lib.nn_arena_set_parts(arena, _part_bindings(), 3) == 0
    return arena


def block_bounds(ptr) -> list[int]:
    bounds = ffi.new("size_t[]", lib.NN_MAX_PARTS + 1)
    k = lib.nn_block_parts(ptr, bounds, lib.NN_MAX_PARTS + 1)
    return [int(b) for b in bounds[0 : k + 1]] if k else []


def _policy_at(addr: int) -> str:
    return kernel_view.numa_maps_entry(addr).policy


def _rule(size: int, granule: int, thp: bool, k: int = 3) -> list[int]:
    cuts = ffi.new("size_t[]", k - 1)
    lib.nn_partition_cuts(size, granule, int(thp), k, cuts)
    return [0] + [int(c) for c in cuts] + [size]


@pytest.mark.parametrize(
    "size, thp", [(10 << 20, True), (300 << 10, False), ((10 << 20) + 12345, True)]
)
def test_partitioned_block_binds_each_range(size, thp):
    arena = partitioned_arena()
    try:
        ptr = lib.nn_arena_malloc(arena, size)
        base = address(ptr)
        bounds = block_bounds(ptr)
        assert bounds == _rule(size, 1, thp)  # the default rule, as recorded
        unit = (2 << 20) if thp else PAGE
        assert all(b % unit == 0 for b in bounds[1:-1]) and bounds[1] > 0
        expected = ("bind:0", "prefer:0", "interleave:0")
        for (lo, hi), policy in zip(zip(bounds, bounds[1:], strict=False), expected, strict=True):
            assert _policy_at(base + lo) == policy
            assert _policy_at(base + hi - 1) == policy
            start, _end = kernel_view.mapping_of(base + lo)
            if lo:
                assert start == base + lo  # the range starts a VMA of its own
        assert _policy_at(base - PAGE) == "bind:0"  # the header page: the first part's
        lib.nn_arena_free(arena, ptr)
    finally:
        lib.nn_arena_destroy(arena)


def test_partitioned_block_takes_the_callers_cuts_and_granule():
    arena = partitioned_arena()
    try:
        lib.nn_arena_next_block(0, ffi.new("size_t[]", [100_000, 250_000]), 2)
        ptr = lib.nn_arena_malloc(arena, 600_000)
        assert block_bounds(ptr) == [0, 100_000, 250_000, 600_000]
        base = address(ptr)
        # the page holding a cut is the earlier part's; the next page the later's
        assert _policy_at(base + 100_000) == "bind:0"
        assert _policy_at(base + (-(-100_000 // PAGE)) * PAGE) == "prefer:0"
        # the request was for that one block: the next follows the default rule
        other = lib.nn_arena_malloc(arena, 600_000)
        assert block_bounds(other) == _rule(600_000, 1, False)
        row = 3 * 8000  # rows of 24000 bytes are never split
        lib.nn_arena_next_block(row, ffi.NULL, 0)
        rows = lib.nn_arena_malloc(arena, 250 * row)
        got = block_bounds(rows)
        assert got == _rule(250 * row, row, True) and all(b % row == 0 for b in got)
        small = lib.nn_arena_malloc(arena, 1000)  # a chunk's block: one part
        assert block_bounds(small) == [0, 1000]
        for p in (ptr, other, rows, small):
            lib.nn_arena_free(arena, p)
    finally:
        lib.nn_arena_destroy(arena)


def test_partitioned_cache_reuses_only_the_same_cuts():
    arena = partitioned_arena()
    try:
        size = 8 << 20
        first = lib.nn_arena_malloc(arena, size)
        kept = address(first)
        lib.nn_arena_free(arena, first)
        lib.nn_arena_next_block(0, ffi.new("size_t[]", [1 << 20, 2 << 20]), 2)
        other = lib.nn_arena_malloc(arena, size)  # other cuts: a mapping of its own
        assert address(other) != kept and block_bounds(other)[1:3] == [1 << 20, 2 << 20]
        again = lib.nn_arena_malloc(arena, size)  # the default cuts: the cached one
        assert address(again) == kept and block_bounds(again) == _rule(size, 1, True)
        assert _policy_at(address(other) + (1 << 20)) == "prefer:0"
        lib.nn_arena_free(arena, other)
        lib.nn_arena_free(arena, again)
    finally:
        lib.nn_arena_destroy(arena)


def test_partitioned_arena_refuses_what_cannot_be_split():
    arena = new_arena("bind", huge=lib.NN_HUGE_EXPLICIT_2MB)
    try:
        assert lib.nn_arena_set_parts(arena, _part_bindings(), 3) == -errno.EINVAL
    finally:
        lib.nn_arena_destroy(arena)
    arena = partitioned_arena()
    try:
        assert lib.nn_arena_set_parts(arena, _part_bindings(), 3) == -errno.EINVAL  # once
        assert lib.nn_arena_set_parts(arena, _part_bindings(), 0) == -errno.EINVAL
        assert lib.nn_arena_probe(arena) == 0  # every part's binding is probed
    finally:
        lib.nn_arena_destroy(arena)


def test_partitioned_prefault_and_realloc():
    arena = partitioned_arena(prefault=lib.NN_PREFAULT_TOUCH)
    try:
        size = 6 << 20
        ptr = lib.nn_arena_malloc(arena, size)
        bounds = block_bounds(ptr)
        entry = kernel_view.numa_maps_entry(address(ptr) + bounds[1])
        assert entry.policy == "prefer:0" and sum(entry.pages.values()) > 0  # faulted in
        data = np.frombuffer(ffi.buffer(ptr, size), np.uint8)
        data[:] = np.arange(size, dtype=np.uint64).astype(np.uint8)
        # A split block is several VMAs, which mremap cannot move: realloc
        # copies into a block split for its new size.
        grown = lib.nn_arena_realloc(arena, ptr, 12 << 20)
        assert block_bounds(grown) == _rule(12 << 20, 1, True)
        moved = np.frombuffer(ffi.buffer(grown, size), np.uint8)
        assert np.array_equal(moved, np.arange(size, dtype=np.uint64).astype(np.uint8))
        assert _policy_at(address(grown) + (12 << 20) - 1) == "interleave:0"
        lib.nn_arena_free(arena, grown)
    finally:
        lib.nn_arena_destroy(arena)


# ---- emptied chunks leave the small blocks (issue 22, item 14) ------------------------
#
# A chunk whose every small block is free again is no longer kept for small
# blocks: its free blocks come off the free lists and the chunk goes to the
# process-wide cache under the same budget, hot share and decay as a freed large
# block (or is unmapped where the cache keeps nothing). Only the chunk being
# carved stays. Blocks of SMALL_LIMIT take 64 KiB + 16: 15 fit in a chunk.

PER_CHUNK = (CHUNK - 64) // (SMALL_LIMIT + HEADER)


def fill_chunks(a, nchunks: int, size: int = SMALL_LIMIT) -> list:
    per = (CHUNK - 64) // (size + HEADER)
    ptrs = [lib.nn_arena_malloc(a, size) for _ in range(per * nchunks)]
    assert all(p != ffi.NULL for p in ptrs)
    for p in ptrs:
        ffi.memmove(p, b"\xab" * size, size)
    assert len({address(p) & ~(CHUNK - 1) for p in ptrs}) == nchunks
    return ptrs


def test_emptied_chunks_are_unmapped_when_the_cache_keeps_nothing(arena, process_cache):
    process_cache(64 * MiB, 32 * MiB, 0)  # decay 0: nothing is cached
    a = arena()
    before = bind_bytes()
    ptrs = fill_chunks(a, 4)
    assert bind_bytes() == before + 4 * CHUNK
    for p in ptrs:
        lib.nn_arena_free(a, p)
    # three chunks emptied and given back; the one being carved stays
    assert bind_bytes() == before + CHUNK
    s = stats(a)
    assert s["chunk_bytes"] == CHUNK and s["cached_bytes"] == 0
    assert s["released_chunk_bytes"] == 3 * CHUNK
    # the free lists hold nothing of the unmapped chunks: a new round maps afresh
    again = fill_chunks(a, 4)
    assert stats(a)["chunk_bytes"] == 4 * CHUNK
    for p in again:
        lib.nn_arena_free(a, p)
    assert bind_bytes() == before + CHUNK


def test_emptied_chunks_go_to_the_cache_and_come_back_dirty_but_calloc_is_zero(
    arena, process_cache
):
    process_cache(64 * MiB, 32 * MiB, -1)
    a = arena()
    before = bind_bytes()
    ptrs = fill_chunks(a, 3)
    for p in ptrs:
        lib.nn_arena_free(a, p)
    s, c = stats(a), cache_stats()
    assert s["chunk_bytes"] == CHUNK
    assert s["cached_bytes"] == s["cached_chunk_bytes"] == 2 * CHUNK
    assert c["cached_chunk_bytes"] == c["cached_bytes"] == 2 * CHUNK
    assert bind_bytes() == before + 3 * CHUNK  # cached: still mapped and bound
    # Reused as chunks (no new mapping); their bytes are old, calloc clears them.
    zeroed = [lib.nn_arena_calloc(a, 1, SMALL_LIMIT) for _ in range(3 * PER_CHUNK)]
    assert {address(p) & ~(CHUNK - 1) for p in zeroed} == {address(p) & ~(CHUNK - 1) for p in ptrs}
    assert all(is_zero(p, SMALL_LIMIT) for p in zeroed)
    s = stats(a)
    assert s["chunk_bytes"] == 3 * CHUNK and s["cached_bytes"] == 0
    assert cache_stats()["cached_chunk_bytes"] == 0
    assert bind_bytes() == before + 3 * CHUNK
    for p in zeroed:
        lib.nn_arena_free(a, p)
    # large blocks never take a cached chunk: a 1 MiB request maps its own
    big = lib.nn_arena_malloc(a, CHUNK - 2 * PAGE)
    assert address(big) & ~(CHUNK - 1) not in {address(p) & ~(CHUNK - 1) for p in ptrs}
    lib.nn_arena_free(a, big)
    cached = stats(a)["cached_bytes"]
    assert cached >= 2 * CHUNK
    assert lib.nn_arena_trim(a) == cached
    assert bind_bytes() == before + CHUNK


def test_emptied_chunks_count_against_the_budget(arena, process_cache):
    process_cache(2 * MiB, 2 * MiB, -1)
    a = arena()
    before = bind_bytes()
    for p in fill_chunks(a, 6):
        lib.nn_arena_free(a, p)
    c = cache_stats()
    assert c["cached_bytes"] == c["cached_chunk_bytes"] == 2 * CHUNK
    assert bind_bytes() == before + 3 * CHUNK  # the current chunk and the budget's two
    assert stats(a)["released_chunk_bytes"] == 5 * CHUNK


def test_emptied_chunks_decay_like_large_blocks(arena, process_cache):
    process_cache(64 * MiB, 32 * MiB, 100)
    a = arena()
    before = bind_bytes()
    decayed = cache_stats()["decayed_bytes"]
    for p in fill_chunks(a, 3):
        lib.nn_arena_free(a, p)
    assert stats(a)["cached_chunk_bytes"] == 2 * CHUNK
    # The decay thread takes entries out under the arena's lock and counts them
    # as it unmaps them, after: wait for both, not for the first alone.
    for _ in range(100):
        if (
            stats(a)["cached_bytes"] == 0
            and cache_stats()["decayed_bytes"] - decayed == 2 * CHUNK
        ):
            break
        time.sleep(0.05)
    assert stats(a)["cached_bytes"] == 0
    assert cache_stats()["decayed_bytes"] - decayed == 2 * CHUNK
    assert bind_bytes() == before + CHUNK


def test_an_emptied_current_chunk_is_carved_again(arena):
    """The chunk being carved is never given back; when every block of it is
    free and a request does not fit what is left, it is carved from the start
    again rather than a new chunk being mapped."""
    a = arena()
    before = bind_bytes()
    ptrs = fill_chunks(a, 1, 56 * KiB)  # 18 blocks of 56 KiB: 15 KiB left over
    for p in ptrs:
        lib.nn_arena_free(a, p)
    q = lib.nn_arena_calloc(a, 1, SMALL_LIMIT)  # another class; does not fit the rest
    assert address(q) & ~(CHUNK - 1) == address(ptrs[0]) & ~(CHUNK - 1)
    assert is_zero(q, SMALL_LIMIT)
    assert stats(a)["chunk_bytes"] == CHUNK and bind_bytes() == before + CHUNK
    # the old 56 KiB blocks are off the free list: the next one is carved after q
    r = lib.nn_arena_malloc(a, 56 * KiB)
    assert address(r) == address(q) + SMALL_LIMIT + HEADER
    lib.nn_arena_free(a, q)
    lib.nn_arena_free(a, r)


def test_small_blocks_from_many_threads_keep_chunks_consistent(process_cache):
    """Threads allocating and freeing small blocks of mixed classes, so chunks
    empty, go to the cache and come back while others carve: no block
    overlaps or loses its bytes, and every chunk is accounted for."""
    process_cache(8 * MiB, 4 * MiB, -1)
    a = new_arena("bind")
    before = bind_bytes()
    errors: list[str] = []
    barrier = threading.Barrier(3)

    def churn(seed: int) -> None:
        rng = np.random.default_rng(seed)
        live: list[tuple[object, int, int]] = []
        barrier.wait()
        for step in range(3000):
            if live and (len(live) > 300 or rng.random() < 0.45):
                p, size, s = live.pop(int(rng.integers(len(live))))
                if not holds(p, size, s):
                    errors.append(f"block of {size} overwritten")
                lib.nn_arena_free(a, p)
            else:
                size = int(rng.choice([16, 100, 1000, 8000, 40_000, SMALL_LIMIT]))
                p = lib.nn_arena_malloc(a, size)
                fill(p, size, seed * 10_000 + step)
                live.append((p, size, seed * 10_000 + step))
        for p, size, s in live:
            if not holds(p, size, s):
                errors.append(f"block of {size} overwritten")
            lib.nn_arena_free(a, p)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = stats(a)
    assert s["live_blocks"] == 0 and s["used_bytes"] == 0
    assert s["released_chunk_bytes"] > 0
    assert bind_bytes() - before == s["chunk_bytes"] + s["cached_bytes"]
    lib.nn_arena_destroy(a)
    assert bind_bytes() == before
