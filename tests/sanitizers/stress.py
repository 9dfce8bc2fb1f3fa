"""Stress numa_numpy's allocator for memory checkers (valgrind memcheck, ASan).

Exercises every path of the C arena and handler: many scopes (nested, re-entered,
several policies and options), small and large blocks on both sides of every
boundary (size classes, the 64 KiB small limit, the 1 MiB fresh-calloc limit, the
4 MiB THP limit), calloc on fresh and reused memory, realloc through
ndarray.resize / np.fromiter / np.fromstring / np.loadtxt (the last without the
GIL), threads allocating and freeing in one arena at once and freeing each
other's arrays, frees after the scope and after the handler was forgotten (the
capsule destructor destroys the arena), trim / cache limits, prefault, placement
queries, strict probes and injected mmap/mbind/populate failures.

Memory checkers cannot see inside the arena: its blocks are carved out of mmap'd
chunks, not malloc'd, so memcheck/ASan treat them as plain addressable memory.
This script therefore checks the arena itself: every array is filled with a
pattern unique to it and verified before it is freed (two live blocks that
overlap, or a block handed out twice, break a pattern), and at the end the
arena's counters must be back where they started (no block leaked by the
handler) and the process's mapping count must return near its start once
every handler is released (no chunk or cached mapping leaked).

Usage: python stress.py [--scale N] [--quick]  (memcheck.sh uses --quick).
Exit status 0 and "stress OK" when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import numa_numpy as nn
from numa_numpy._kernel.lib import lib

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name

KiB, MiB = 1 << 10, 1 << 20
SMALL_LIMIT = 64 * KiB - 16
# Sizes in bytes around every boundary of the arena.
SIZES = sorted({0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 112, 113, 128, 129, 255, 256, 257,
                1000, 4095, 4096, 4097, 40000, SMALL_LIMIT - 1, SMALL_LIMIT,
                SMALL_LIMIT + 1, 64 * KiB, 100 * KiB, MiB - 1, MiB, MiB + 1,
                4 * MiB - 64, 4 * MiB, 5 * MiB + 3})

_counter = 0
failures: list[str] = []


def check(cond: bool, what: str) -> None:
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr, flush=True)


def tagged(nbytes: int, maker=np.empty) -> tuple[np.ndarray, int]:
    """A uint8 array of nbytes filled with a value unique to it."""
    global _counter
    _counter += 1
    tag = _counter % 251 + 1
    a = maker(nbytes, dtype=np.uint8)
    a[...] = tag
    return a, tag


def verify(a: np.ndarray, tag: int, what: str) -> None:
    if a.size and not (a.min() == tag and a.max() == tag):
        check(False, f"{what}: pattern {tag} overwritten (size {a.size})")


def ours(a: np.ndarray) -> bool:
    base = a if a.base is None else a.base
    return get_handler_name(base) == "numa_numpy"


def live_blocks() -> dict[str, int]:
    return {k: v["live_blocks"] for k, v in nn.memory_stats().items()}


def bound_mappings() -> int:
    """Mappings with a non-default memory policy in /proc/self/numa_maps: only
    numa_numpy calls mbind in this process, so these are the arena's chunks and
    large blocks (the unbound ones of soft mode are not counted)."""
    with open("/proc/self/numa_maps") as f:
        return sum(1 for line in f if not line.split()[1].startswith("default"))


# ---------------------------------------------------------------------------
def sizes_and_calloc(scope: nn.PolicyScope, rounds: int) -> None:
    with scope:
        for _ in range(rounds):
            arrays = [tagged(n) for n in SIZES]
            zeros = [np.zeros(n, dtype=np.uint8) for n in SIZES]
            for z in zeros:
                check(not z.any(), f"np.zeros({z.size}) not zero")
                check(ours(z), f"np.zeros({z.size}) not from numa_numpy")
            for z in zeros:  # dirty them, free them, calloc again: reused blocks
                z[...] = 0xAB
            del zeros
            zeros = [np.zeros(n, dtype=np.uint8) for n in SIZES]
            for z in zeros:
                check(not z.any(), f"reused np.zeros({z.size}) not zero")
            for a, tag in arrays:
                check(ours(a), f"np.empty({a.size}) not from numa_numpy")
                verify(a, tag, "sizes")
            del arrays, zeros
            ones = [np.ones((n + 7) // 8) for n in SIZES]  # float64 fill
            check(all((o == 1).all() for o in ones), "np.ones wrong")
            del ones


def interleaved_lifetimes(scope: nn.PolicyScope, n: int) -> None:
    """Allocate and free in a shuffled order so free lists and the cache churn."""
    rng = np.random.default_rng(1)
    with scope:
        live: list[tuple[np.ndarray, int]] = []
        for _ in range(n):
            if live and rng.random() < 0.45:
                a, tag = live.pop(int(rng.integers(len(live))))
                verify(a, tag, "churn")
                del a
            else:
                nbytes = int(SIZES[int(rng.integers(len(SIZES)))])
                live.append(tagged(nbytes, np.empty if rng.random() < 0.7 else np.zeros))
        for a, tag in live:
            verify(a, tag, "churn end")


def scopes(n: int) -> None:
    """Nesting, re-entering, several policies; arrays outliving their scope."""
    outer, inner = nn.on_node(0), nn.interleaved()
    preferred = nn.policy("preferred:0")
    survivors = []
    for i in range(n):
        with outer:
            a, ta = tagged(100 + i)
            with inner:
                b, tb = tagged(70 * KiB + i)
                with outer:  # the same scope object, nested in itself
                    c, tc = tagged(24)
                    with preferred:
                        d, td = tagged(3 * KiB)
                check(nn.current_policy() == inner.policy, "nesting lost the inner policy")
            check(nn.current_policy() == outer.policy, "nesting lost the outer policy")
            survivors.append((a, ta, b, tb, c, tc, d, td))
        check(get_handler_name() == "default_allocator", "scope leaked out")
    # Freed outside every scope, under the default handler: each goes to its own.
    for a, ta, b, tb, c, tc, d, td in survivors:
        for arr, tag in ((a, ta), (b, tb), (c, tc), (d, td)):
            verify(arr, tag, "scopes")
    del survivors

    @nn.on_node(0)
    def decorated(k: int) -> np.ndarray:
        return np.arange(k, dtype=np.int64)

    for k in (1, 1000, 20000):
        check(ours(decorated(k)), "decorated function did not allocate in scope")


def reallocs(scope: nn.PolicyScope, rounds: int) -> None:
    with scope:
        for _ in range(rounds):
            # ndarray.resize: same class, small -> small, small -> large, large ->
            # large (mremap), large -> small, to zero and back.
            for path in ([10, 12, 200, 5000, 60000, 70000, 3 * MiB, 6 * MiB, 65000, 16, 0, 33],
                         [80000, 2 * MiB, 100, MiB + 5, 4 * MiB, 9 * MiB, 1]):
                a = np.zeros(path[0], dtype=np.uint8)
                a[:] = 7
                prev = path[0]
                for n in path[1:]:
                    a.resize(n, refcheck=False)
                    keep = min(prev, n)
                    check(bool((a[:keep] == 7).all()), f"resize {prev}->{n} lost data")
                    check(not a[keep:].any(), f"resize {prev}->{n}: grown part not zero")
                    a[:] = 7
                    prev = n
                check(ours(a), "resized array not ours")
                del a
            # fromiter with no count: NumPy grows the buffer by realloc.
            for n in (0, 1, 17, 1000, 100_000):
                it = (i % 1000 for i in range(n))
                f = np.fromiter(it, dtype=np.int64)
                check(f.size == n and (n == 0 or int(f[-1]) == (n - 1) % 1000),
                      f"fromiter {n}")
                check(ours(f), "fromiter result not ours")
                del f
            # fromstring with a separator: realloc to size, and to 1 element on "".
            s = np.fromstring(" ".join(map(str, range(5000))), dtype=np.int64, sep=" ")
            check(s.size == 5000 and int(s[-1]) == 4999, "fromstring")
            e = np.fromstring("", dtype=np.float64, sep=" ")
            check(e.size == 0, "fromstring empty")
            del s, e
            # loadtxt reallocs its row buffer in C without the GIL.
            text = "\n".join(f"{i} {i * 0.5} {i % 7}" for i in range(20000))
            t = np.loadtxt(io.StringIO(text))
            check(t.shape == (20000, 3) and t[-1, 0] == 19999, "loadtxt")
            del t


def threads(scope: nn.PolicyScope, workers: int, jobs: int) -> None:
    """One arena hammered from several threads; cross-thread frees."""
    handoff: list[tuple[np.ndarray, int]] = []
    lock = threading.Lock()

    def job(i: int) -> int:
        check(get_handler_name() == "numa_numpy", "pool thread not in scope")
        rng = np.random.default_rng(i)
        local = []
        for _ in range(60):
            nbytes = int(SIZES[int(rng.integers(len(SIZES) - 4))])  # mostly < 1 MiB
            local.append(tagged(nbytes))
            if len(local) > 8:
                a, tag = local.pop(0)
                verify(a, tag, "thread")
        x = np.zeros(1000)
        x.resize(200_000, refcheck=False)
        with lock:  # leave some for another thread to free
            handoff.extend(local[:3])
            taken = [handoff.pop(0) for _ in range(min(3, len(handoff)))]
        for a, tag in taken:
            verify(a, tag, "handoff")
        return len(local)

    with ThreadPoolExecutor(workers, initializer=scope.initializer) as pool:
        list(pool.map(job, range(jobs)))
    # propagate(): a plain thread running in a copy of this context.
    with scope:
        def plain() -> None:
            a, tag = tagged(5000)
            check(ours(a), "propagate() thread not in scope")
            verify(a, tag, "propagate")
        t = threading.Thread(target=nn.propagate(plain))
    t.start()
    t.join()
    handoff.clear()


def handler_lifecycle() -> None:
    """Arrays outliving their handler: the capsule destructor frees the arena."""
    scope = nn.on_node(0, huge_pages="none")
    with scope:
        keep = [tagged(n) for n in (10, 1000, 70 * KiB, 2 * MiB)]
    nn.set_cache_limit(0)  # every large free unmaps at once
    nn.free_all_blocks()
    nn.forget_handlers()  # forget the handlers; arrays still hold capsules
    for a, tag in keep:
        verify(a, tag, "after forget_handlers")
    with scope:  # a new handler (new generation) for the same scope object
        extra = tagged(3000)
    del keep, extra
    gc.collect()
    nn.set_cache_limit(1 << 30)


def options_and_placement() -> None:
    for kw in ({"prefault": "touch"}, {"prefault": "parallel"}, {"huge_pages": "transparent"},
               {"huge_pages": "none"}, {"strict": True}):
        with nn.on_node(0, **kw):
            a, tag = tagged(3 * MiB)
            b, tb = tagged(200)
        verify(a, tag, f"options {kw}")
        verify(b, tb, f"options {kw}")
        p = nn.placement(a)
        check(p.total_pages > 0, f"placement {kw}")
        del a, b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Explicit huge pages with none reserved: soft mode falls back to normal pages.
        with nn.on_node(0, huge_pages="2mb"):
            h, th = tagged(3 * MiB)
        verify(h, th, "2mb fallback")
        del h
    for maker in (nn.numa_empty, nn.numa_zeros, nn.interleaved_zeros):
        a = maker(50_000)
        a[:] = 3
        check(float(a.sum()) == 150_000.0, f"{maker.__name__}")
        check(nn.placement(a).total_pages > 0, f"placement of {maker.__name__}")
    f = nn.numa_full((300, 300), 2.0, node=0)
    check(float(f.sum()) == 180_000.0, "numa_full")
    del a, f


def home_node() -> None:
    """A policy with a home node: mbind + set_mempolicy_home_node (syscall 450,
    Linux 5.17; unknown to valgrind 3.19, which fails it with ENOSYS)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with nn.policy(nn.Bind(0, home_node=0), huge_pages="none"):
            a, tag = tagged(2 * MiB)
            b, tb = tagged(100)
        verify(a, tag, "home_node")
        verify(b, tb, "home_node")
    for w in caught:  # e.g. a kernel (or valgrind) without set_mempolicy_home_node
        print(f"  home_node: {w.message}", flush=True)
    del a, b


def regions() -> None:
    """NumaRegion with touch and parallel prefault (nn_populate's threads), migrate()
    (mbind MPOL_MF_MOVE, move_pages), thread_policy() (set_mempolicy): used when
    this version of numa_numpy has them."""
    if hasattr(nn, "NumaRegion"):
        for prefault in ("touch", "parallel"):
            region = nn.NumaRegion(16 * MiB, node=0, prefault=prefault, huge_pages="none")
            arr = region.as_array((16 * MiB,))
            arr[:] = 5
            check(int(arr[-1]) == 5, f"NumaRegion prefault={prefault}")
            check(region.placement().not_present == 0, f"NumaRegion prefault={prefault} "
                  "left pages not present")
            del arr
            with contextlib.suppress(Exception):
                region.close()
            del region
    if hasattr(nn, "migrate"):
        with nn.on_node(0):
            m, tm = tagged(3 * MiB)
        nn.migrate(m, 0)
        verify(m, tm, "migrate ours")
        plain, tp = tagged(3 * MiB)  # NumPy's own allocator: move_pages path
        nn.migrate(plain, 0)
        verify(plain, tp, "migrate numpy's")
        del m, plain
    if hasattr(nn, "thread_policy"):
        with nn.thread_policy("bind:0"):
            t, tt = tagged(MiB)
        verify(t, tt, "thread_policy")
        del t


def injected_faults() -> None:
    """Error paths: mmap/mbind/populate failures must leave no leak behind."""
    # Fresh handlers so the mbind probe and new chunks are exercised.
    nn.forget_handlers()
    scope = nn.on_node(0, prefault="touch")
    for op, err in ((lib.NN_FAULT_MMAP, 12), (lib.NN_FAULT_POPULATE, 12)):
        with scope:  # the handler exists (and was probed) before the fault is armed
            nn.free_all_blocks()  # no cached block to reuse: the next large block is a new mapping
            lib.nn_inject_fault(op, err, 1)
            try:
                np.empty(3 * MiB // 8)  # large: a mapping of its own
                check(False, f"injected fault {op} did not fail the allocation")
            except MemoryError:
                pass
            finally:
                lib.nn_inject_fault(op, 0, 0)
            ok, tag = tagged(3 * MiB)  # and the next one works
            verify(ok, tag, "after injected fault")
            del ok
    # A refused mbind in soft mode: warns once, then allocates unbound.
    lib.nn_inject_fault(lib.NN_FAULT_MBIND, 1, 1)  # EPERM at the probe
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with nn.policy("interleave:0", huge_pages="none"):
                a, tag = tagged(2 * MiB)
                b, tb = tagged(64)
        verify(a, tag, "unbound soft mode")
        verify(b, tb, "unbound soft mode")
    finally:
        lib.nn_inject_fault(lib.NN_FAULT_MBIND, 0, 0)
    # Strict: the refusal raises and the half-made arena is destroyed.
    lib.nn_inject_fault(lib.NN_FAULT_MBIND, 1, 1)
    try:
        with nn.policy("preferred:0", strict=True, huge_pages="none"):
            pass
        check(False, "strict scope with a refused mbind did not raise")
    except nn.PolicyNotEnforcedError:
        pass
    finally:
        lib.nn_inject_fault(lib.NN_FAULT_MBIND, 0, 0)
    del a, b
    nn.forget_handlers()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1, help="multiply every loop count")
    ap.add_argument("--quick", action="store_true",
                    help="a fifth of the churn and fewer scopes/threads (for valgrind); "
                    "every path and size is still exercised")
    ap.add_argument("--skip", action="append", default=[], metavar="STEP",
                    help="leave out a step (by name; repeatable)")
    args = ap.parse_args()
    s = max(1, args.scale)
    churn, nscopes, jobs = (600, 50, 8) if args.quick else (3000, 200, 16)
    t0 = time.perf_counter()

    gc.collect()
    maps_before = bound_mappings()
    bind, inter = nn.on_node(0), nn.interleaved()
    steps = [
        ("sizes_and_calloc", lambda: (sizes_and_calloc(bind, 2 * s),
                                      sizes_and_calloc(inter, s))),
        ("interleaved_lifetimes", lambda: interleaved_lifetimes(bind, churn * s)),
        ("scopes", lambda: scopes(nscopes * s)),
        ("reallocs", lambda: reallocs(bind, s)),
        ("threads", lambda: threads(bind, 4, jobs * s)),
        ("handler_lifecycle", handler_lifecycle),
        ("options_and_placement", options_and_placement),
        ("home_node", home_node),
        ("regions", regions),
        ("injected_faults", injected_faults),
    ]
    unknown = set(args.skip) - {name for name, _ in steps}
    if unknown:
        ap.error(f"unknown step(s) {sorted(unknown)}")
    for name, step in steps:
        if name in args.skip:
            print(f"{name}: skipped", flush=True)
            continue
        t = time.perf_counter()
        before = live_blocks()
        step()
        gc.collect()
        after = live_blocks()
        # Every block handed out in the step is back (handlers that existed before).
        for key, n in before.items():
            if key in after:
                check(after[key] <= n, f"{name}: {key}: live blocks {n} -> {after[key]}")
        print(f"{name}: {time.perf_counter() - t:.2f}s", flush=True)

    for key, stats in nn.memory_stats().items():
        check(stats["live_blocks"] == 0 and stats["used_bytes"] == 0,
              f"at end {key}: {stats['live_blocks']} blocks, {stats['used_bytes']} bytes live")
    del bind, inter, steps
    nn.forget_handlers()
    gc.collect()
    # numa_numpy's constructors cache their scopes (numa_numpy._alloc.creation._SCOPES)
    # and a scope keeps the handler it last used, so after forget_handlers() those
    # handlers still hold their chunks (at most one mapping per chunk).
    from numa_numpy._alloc import creation as _creation
    stale = [sc._handler for sc in _creation._SCOPES.values() if sc._handler is not None]
    stale_chunks = sum(h.stats()["chunk_bytes"] for h in stale) // MiB
    maps_after = bound_mappings()
    # Every chunk and cached block was unmapped, except those of the stale handlers.
    check(maps_after <= maps_before + stale_chunks,
          f"policy-bound mappings {maps_before} -> {maps_after} after forget_handlers "
          f"({stale_chunks} chunk(s) of stale cached handlers allowed)")
    check(get_handler_name() == "default_allocator", "a scope leaked out of main()")
    print(f"policy-bound mappings: {maps_before} -> {maps_after} ({len(stale)} handler(s) "
          f"still held by numa_numpy's constructor cache, {stale_chunks} MiB of chunks); "
          f"total {time.perf_counter() - t0:.2f}s")
    if failures:
        print(f"stress FAILED: {len(failures)} check(s)", file=sys.stderr)
        return 1
    print("stress OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
