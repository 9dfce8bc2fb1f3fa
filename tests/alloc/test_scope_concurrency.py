"""Scopes under threads, thread pools, asyncio, decorators, fork and pickle, and
NumPy's realloc paths under a scope.

NumPy keeps its current memory handler in a ContextVar, which numa_numpy's
scopes set: each thread and each asyncio task has its own. Every check here
compares what a thread / task set against what it sees (current_policy() and
NumPy's handler name), and each array's recorded policy (placement().requested,
read back through the block header -> arena -> handler) against the scope it was
made in.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import io
import os
import pickle
import queue
import random
import sys
import threading
import time
import traceback
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from processes import wait_for_child

import numa_numpy as nn

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name

DEFAULT = "default_allocator"
OURS = nn.HANDLER_NAME

# Whether a new threading.Thread starts in a copy of its creator's context
# (Python 3.14's -X thread_inherit_context, on by default in free-threaded builds).
THREADS_INHERIT_CONTEXT = bool(getattr(sys.flags, "thread_inherit_context", 0))


def scopes() -> list[nn.PolicyScope]:
    return [nn.on_node(0), nn.policy("interleave"), nn.policy(nn.Default())]


def held_by_handlers() -> dict[str, tuple[int, int]]:
    """(used bytes, live blocks) per numa_numpy handler."""
    return {key: (s["used_bytes"], s["live_blocks"]) for key, s in nn.memory_stats().items()}


def requested(a: np.ndarray):
    return nn.placement(a).requested


def check_here(expected) -> None:
    """The current thread/task is under `expected` (a Policy, or None for none),
    and a fresh array says so too."""
    assert nn.current_policy() == expected
    a = np.ones(257)
    if expected is None:
        assert get_handler_name() == DEFAULT
        assert get_handler_name(a) == DEFAULT
        assert requested(a) is None
    else:
        assert get_handler_name() == OURS
        assert get_handler_name(a) == OURS
        assert requested(a) == expected


@pytest.fixture
def fast_switching():
    """Make the interpreter switch threads often, so that threads interleave
    inside their scopes (more chances for cross-talk to show)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


class Errors:
    """Exceptions from other threads, with their tracebacks, for the main thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[str] = []

    def guard(self, fn):
        def run(*args):
            try:
                fn(*args)
            except BaseException:
                with self.lock:
                    self.items.append(
                        f"{threading.current_thread().name}:\n{traceback.format_exc()}"
                    )

        return run

    def check(self) -> None:
        assert not self.items, "\n".join(self.items)


# ---- threads -----------------------------------------------------------------------


def test_eight_threads_keep_their_own_scopes_and_free_each_others_arrays(fast_switching):
    nthreads, duration = 8, 2.0
    all_scopes = scopes()
    inboxes = [queue.Queue() for _ in range(nthreads)]
    errors = Errors()
    stats_lock = threading.Lock()
    stats = {"iterations": 0, "received": 0, "freed_by_receiver": 0}
    start = threading.Barrier(nthreads)
    for scope in all_scopes:
        # Handlers made (and probed) here; what is left lazy for the first entry
        # (the capsule object) the workers race for, as real code would.
        _ = scope.handler
    gc.collect()
    held_before = held_by_handlers()

    def receive(box: list) -> tuple[int, int]:
        """Check an array another thread made, then drop it here (the last
        reference, unless the sender has not let go of it yet)."""
        a, value, policy = box.pop()
        assert get_handler_name(a) == OURS
        assert requested(a) == policy
        assert (a == value).all()
        gone = weakref.ref(a)
        del a
        return 1, int(gone() is None)

    def worker(idx: int) -> None:
        rng = random.Random(idx)
        my_inbox, next_inbox = inboxes[idx], inboxes[(idx + 1) % nthreads]
        received = freed = iterations = 0
        start.wait()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            iterations += 1
            outer = rng.choice(all_scopes)
            value = idx * 1_000_000 + iterations
            with outer:
                assert nn.current_policy() == outer.policy
                assert get_handler_name() == OURS
                made = [
                    np.full(rng.choice([1, 100, 5000, 70_000]), value, dtype=np.int64)
                    for _ in range(3)
                ]
                inner = rng.choice(all_scopes)
                with inner:
                    assert nn.current_policy() == inner.policy
                    nested = np.full(rng.choice([3, 9000]), value, dtype=np.int64)
                    assert requested(nested) == inner.policy
                # The outer scope is back, whatever other threads did meanwhile.
                assert nn.current_policy() == outer.policy
                assert get_handler_name() == OURS
                made.append(np.full(rng.choice([7, 20_000]), value, dtype=np.int64))
                for a in made:
                    assert get_handler_name(a) == OURS
                    assert requested(a) == outer.policy
                    assert (a == value).all()
            assert nn.current_policy() is None
            assert get_handler_name() == DEFAULT
            assert get_handler_name(np.empty(4)) == DEFAULT
            # Half the arrays go to the next thread to be checked and freed there.
            for a in made[::2]:
                next_inbox.put((a, value, outer.policy))
            del made, a, nested
            while True:
                try:
                    box = [my_inbox.get_nowait()]
                except queue.Empty:
                    break
                got, dropped = receive(box)
                received += got
                freed += dropped
        with stats_lock:
            stats["iterations"] += iterations
            stats["received"] += received
            stats["freed_by_receiver"] += freed

    threads = [
        threading.Thread(target=errors.guard(worker), args=(i,), name=f"worker-{i}")
        for i in range(nthreads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors.check()
    # What is left in the queues is checked and freed here, in the main thread.
    for inbox in inboxes:
        while not inbox.empty():
            receive([inbox.get_nowait()])
    assert nn.current_policy() is None and get_handler_name() == DEFAULT
    # Every array made in the workers has been freed, whichever thread freed it:
    # the arenas' books balance (used bytes and live blocks back where they were).
    gc.collect()
    assert held_by_handlers() == held_before
    # The cross-thread path was exercised (not a timing claim: any progress at all).
    assert stats["iterations"] >= nthreads
    assert stats["received"] > 0 and stats["freed_by_receiver"] > 0


def test_first_use_of_a_handler_in_two_threads_at_once():
    """White box, deterministic: a handler makes the Python object of its capsule
    lazily, on first entry of a scope (Handler.capsule_object), and current_policy()
    finds the handler from that object. Park the first thread (with a trace
    function) at the first line where the object is visible to other threads,
    and enter the scope from a second thread meanwhile: it must see its policy
    (and numa_empty() must use it), not None / Local()."""
    from numa_numpy._alloc import handler as _handler

    nn.forget_handlers()  # fresh handlers: none has made its capsule object yet
    scope = nn.policy(nn.Interleave(0))
    handler = scope.handler
    prop = getattr(type(handler), "capsule_object", None)
    if not isinstance(prop, property) or getattr(handler, "_capsule_object", 1) is not None:
        pytest.skip("the handler's capsule object is no longer made lazily")
    code = prop.fget.__code__
    reached, release = threading.Event(), threading.Event()
    errors = Errors()
    seen: dict[str, object] = {}

    def tracer(frame, event, arg):
        if frame.f_code is not code:
            return None

        def local(frame, event, arg):
            if (
                event == "line"
                and not reached.is_set()
                and frame.f_locals.get("self") is handler
                and handler._capsule_object is not None
            ):
                reached.set()
                release.wait()
            return local

        return local

    def first_user():
        sys.settrace(tracer)
        try:
            _ = handler.capsule_object
        finally:
            sys.settrace(None)

    def second_user():
        with scope:
            seen["policy"] = nn.current_policy()
            seen["numa_empty"] = requested(nn.numa_empty(100))

    first = threading.Thread(target=errors.guard(first_user))
    first.start()
    assert reached.wait(30), "the first user never published the capsule object"
    second = threading.Thread(target=errors.guard(second_user))
    second.start()
    # A bounded wait, not synchronisation: a handler that makes other threads
    # wait for the first one (a lock) blocks the second user until release; one
    # that does not lets it run while the first is parked. Either way the
    # outcome checked below must be the same.
    second.join(timeout=5)
    release.set()
    first.join()
    second.join()
    errors.check()
    assert seen == {"policy": nn.Interleave(0), "numa_empty": nn.Interleave(0)}
    assert _handler.active_handler() is None  # and nothing leaked into this thread


@pytest.mark.skipif(THREADS_INHERIT_CONTEXT, reason="threads inherit the creator's context")
def test_a_thread_started_inside_a_scope_gets_the_default_handler():
    errors = Errors()

    def probe():
        check_here(None)

    with nn.on_node(0):
        t = threading.Thread(target=errors.guard(probe))
        t.start()
        t.join()
        check_here(nn.Bind(0))
    errors.check()


def test_propagate_carries_the_scope_into_a_thread():
    errors = Errors()
    release = threading.Event()
    made: list[np.ndarray] = []

    def probe():
        check_here(nn.Bind(0))
        made.append(np.arange(50_000))
        release.wait()
        # Still under the scope after the creator left it.
        check_here(nn.Bind(0))

    with nn.on_node(0):
        carried = nn.propagate(probe)
    # Started outside the scope: propagate took the context when it was called.
    t = threading.Thread(target=errors.guard(carried))
    t.start()
    check_here(None)
    release.set()
    t.join()
    errors.check()
    assert len(made) == 1
    assert requested(made[0]) == nn.Bind(0)
    assert (made[0] == np.arange(50_000)).all()

    # And propagate outside any scope carries "no scope".
    bare = nn.propagate(errors.guard(lambda: check_here(None)))
    with nn.policy("interleave"):
        t = threading.Thread(target=bare)
        t.start()
        t.join()
    errors.check()


def test_thread_pool_initializer_and_propagate():
    scope = nn.policy("interleave")

    def task(n: int):
        a = np.full(n, n)
        return nn.current_policy(), get_handler_name(), get_handler_name(a), requested(a), a

    with ThreadPoolExecutor(max_workers=3, initializer=scope.initializer) as pool:
        results = list(pool.map(task, range(1, 40, 3)))
    for n, (policy, current, of_array, req, a) in zip(range(1, 40, 3), results, strict=False):
        assert (policy, current, of_array, req) == (nn.Interleave(), OURS, OURS, nn.Interleave())
        assert (a == n).all()

    # A pool without the initializer allocates with NumPy's default, even when
    # the pool is created and used inside a scope; propagate carries it per task.
    with nn.on_node(0):
        with ThreadPoolExecutor(max_workers=2) as pool:
            plain = pool.submit(task, 10).result()
            carried = pool.submit(nn.propagate(task), 10).result()
    if not THREADS_INHERIT_CONTEXT:
        assert plain[:4] == (None, DEFAULT, DEFAULT, None)
    assert carried[:4] == (nn.Bind(0), OURS, OURS, nn.Bind(0))
    check_here(None)


# ---- asyncio -----------------------------------------------------------------------


def test_two_tasks_keep_their_own_scopes_across_awaits():
    log: list[tuple[str, int]] = []

    async def body(name, scope, mine: asyncio.Event, theirs: asyncio.Event):
        check_here(None)
        with scope:
            mine.set()
            await theirs.wait()  # both tasks are now inside their scopes
            for i in range(6):
                check_here(scope.policy)
                a = np.full(3000 * (i + 1), i)
                await asyncio.sleep(0)
                assert requested(a) == scope.policy and (a == i).all()
                log.append((name, i))
        check_here(None)
        return name

    async def main():
        a_in, b_in = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(
            body("bind", nn.on_node(0), a_in, b_in),
            body("interleave", nn.policy("interleave"), b_in, a_in),
        )

    assert asyncio.run(main()) == ["bind", "interleave"]
    # They really interleaved: the log alternates between the tasks.
    names = [name for name, _ in log]
    assert len(names) == 12
    assert sum(x != y for x, y in zip(names, names[1:], strict=False)) >= 10
    check_here(None)


# ---- decorators --------------------------------------------------------------------


def test_decorator_on_a_sync_function():
    @nn.on_node(0)
    def make(n):
        check_here(nn.Bind(0))
        return np.arange(n)

    @nn.policy("interleave")
    def fails():
        check_here(nn.Interleave())
        raise KeyError("inside")

    a = make(10_000)
    check_here(None)
    assert requested(a) == nn.Bind(0) and (a == np.arange(10_000)).all()
    assert make.__name__ == "make"
    with pytest.raises(KeyError):
        fails()
    check_here(None)


def test_decorator_on_an_async_function():
    @nn.policy("interleave")
    async def make(n):
        check_here(nn.Interleave())
        await asyncio.sleep(0)
        check_here(nn.Interleave())
        return np.arange(n)

    @nn.on_node(0)
    async def outer():
        check_here(nn.Bind(0))
        inner = await make(500)
        check_here(nn.Bind(0))  # the inner coroutine's scope ended with it
        return inner, np.arange(7)

    assert inspect.iscoroutinefunction(make) and inspect.iscoroutinefunction(outer)
    inner, own = asyncio.run(outer())
    assert requested(inner) == nn.Interleave() and (inner == np.arange(500)).all()
    assert requested(own) == nn.Bind(0)
    check_here(None)


# ---- nesting -----------------------------------------------------------------------


def test_nesting_three_deep_restores_each_outer_policy_exactly():
    bind, inter, default = scopes()
    with bind:
        check_here(nn.Bind(0))
        with inter:
            check_here(nn.Interleave())
            with default:
                check_here(nn.Default())
                with bind:  # the same scope object again, innermost
                    check_here(nn.Bind(0))
                check_here(nn.Default())
            check_here(nn.Interleave())
        check_here(nn.Bind(0))
    check_here(None)


# ---- fork --------------------------------------------------------------------------

CHILD_FAILURES = {
    2: "the parent's numa array changed in the child",
    3: "the small numa array changed in the child",
    4: "the parent's numa array does not report its policy in the child",
    5: "writing / resizing the inherited array failed",
    6: "a scope in the child did not use numa_numpy's handler",
    7: "an array made under a scope in the child has the wrong policy or values",
    8: "the child is not back on NumPy's default handler after the scope",
    9: "an exception in the child",
}


def _child(big: np.ndarray, small: np.ndarray) -> int:
    if not (big == np.arange(big.size)).all():
        return 2
    if not (small == -np.arange(small.size)).all():
        return 3
    if requested(big) != nn.Bind(0) or get_handler_name(big) != OURS:
        return 4
    big += 1  # copy-on-write pages of the child's own
    small.resize(300_000, refcheck=False)  # realloc in the child: small -> large
    if not (
        (big == np.arange(big.size) + 1).all()
        and (small[:100] == -np.arange(100)).all()
        and not small[100:].any()
        and requested(small) == nn.Bind(0)
    ):
        return 5
    with nn.policy("interleave"):
        if get_handler_name() != OURS:
            return 6
        fresh = np.arange(400_000)
        if (
            requested(fresh) != nn.Interleave()
            or not (fresh[-3:] == [399_997, 399_998, 399_999]).all()
        ):
            return 7
    if get_handler_name() != DEFAULT or nn.current_policy() is not None:
        return 8
    del big, small, fresh  # freed in the child
    return 0


def test_a_numa_array_stays_valid_in_a_forked_child():
    with nn.on_node(0):
        big = np.arange(1_000_000)
        small = -np.arange(100)
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 9
        try:
            code = _child(big, small)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    code = wait_for_child(pid, 60)
    assert code is not None, "the forked child hung"
    assert code == 0, CHILD_FAILURES.get(code, f"child exit status {code}")
    # The child's writes were its own.
    assert (big == np.arange(1_000_000)).all() and (small == -np.arange(100)).all()
    assert requested(big) == nn.Bind(0)


def test_fork_while_another_thread_is_inside_the_allocator():
    """A thread holding an arena's lock at fork() must not leave it held in the
    child (the lock's owner does not exist there): the child allocates from the
    same arena. The other thread calls the arena through cffi, which releases
    the GIL, so fork() can land while it holds the lock."""
    from numa_numpy._kernel.lib import ffi, lib

    scope = nn.on_node(0)
    arena = scope.handler.arena
    stop = threading.Event()
    errors = Errors()

    def hammer():
        while not stop.is_set():
            for _ in range(100):
                p = lib.nn_arena_malloc(arena, 200)
                if p == ffi.NULL:
                    raise MemoryError("nn_arena_malloc failed")
                lib.nn_arena_free(arena, p)

    thread = threading.Thread(target=errors.guard(hammer))
    thread.start()
    results = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            for _ in range(120):  # each fork has a small chance to land in the lock
                pid = os.fork()
                if pid == 0:
                    code = 1
                    try:
                        with scope:
                            a = np.full(1000, 7)
                        p = lib.nn_arena_malloc(arena, 200)
                        code = 0 if (a == 7).all() and p != ffi.NULL else 2
                    finally:
                        os._exit(code)
                results.append(wait_for_child(pid, 20))
                if results[-1] is None:
                    break
    finally:
        stop.set()
        thread.join()
    errors.check()
    assert None not in results, "a forked child hung on an arena lock held at fork()"
    assert results == [0] * len(results)


# ---- pickle ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trips_values_but_not_placement(protocol):
    with nn.on_node(0):
        a = np.arange(200_000, dtype=np.float64).reshape(400, 500)[:, ::2]  # a view too
        b = np.arange(300_000, dtype=np.int32)
    for original in (a, b):
        data = pickle.dumps(original, protocol=protocol)
        # Placement is not pickled: a pickle holds values, dtype and shape only,
        # so the unpickled array never comes back bound to node 0. Where its
        # memory comes from is up to NumPy: a copy would use the handler active
        # where it is unpickled, but NumPy 2.x (observed with 2.4) makes no copy
        # for an aligned contiguous array: it wraps the pickle's own buffer (the
        # bytes object, or the protocol 5 buffer), so the array owns no memory
        # and reports no policy even when unpickled inside a scope. Copy it
        # inside a scope to put it on a node.
        for where in (None, nn.policy("interleave")):
            if where is None:
                back = pickle.loads(data)
            else:
                with where:
                    back = pickle.loads(data)
            assert back.dtype == original.dtype and back.shape == original.shape
            assert np.array_equal(back, original)
            if where is None:
                assert requested(back) is None
                assert get_handler_name(back) in (None, DEFAULT)
            else:
                assert requested(back) in (None, where.policy)
            with nn.policy("interleave"):
                moved = back.copy()
            assert requested(moved) == nn.Interleave() and np.array_equal(moved, original)


# ---- NumPy's realloc paths under a scope --------------------------------------------


def both_ways(make):
    """make() under on_node(0) and without a scope."""
    with nn.on_node(0):
        scoped = make()
    return scoped, make()


def test_ndarray_resize_reallocs_through_the_arena():
    def make():
        a = np.arange(10, dtype=np.int64)
        a.resize(200_000, refcheck=False)  # small block -> large block
        grown = a.copy()
        a[-1] = 5
        a.resize(300_000, refcheck=False)  # large -> larger (mremap)
        a.resize(6, refcheck=False)  # large -> small
        return a, grown

    (scoped, scoped_grown), (plain, plain_grown) = both_ways(make)
    assert get_handler_name(plain) == DEFAULT
    assert np.array_equal(scoped_grown, plain_grown)
    assert np.array_equal(scoped, plain) and np.array_equal(scoped, np.arange(6))
    assert get_handler_name(scoped) == OURS
    assert requested(scoped) == nn.Bind(0)

    with nn.on_node(0):
        a = np.arange(10, dtype=np.int64)
    a.resize(200_000, refcheck=False)  # outside the scope: still a's own handler
    assert requested(a) == nn.Bind(0)
    assert (a[:10] == np.arange(10)).all() and not a[10:].any()


def test_fromiter_without_count():
    def make():
        return np.fromiter((i * i for i in range(120_000)), dtype=np.int64)

    scoped, plain = both_ways(make)
    assert np.array_equal(scoped, plain) and scoped[-1] == 119_999**2
    assert get_handler_name(scoped) == OURS and requested(scoped) == nn.Bind(0)


def test_loadtxt_of_a_few_thousand_lines():
    text = "\n".join(f"{i} {i * 0.5} {-i}" for i in range(5000))

    def make():
        return np.loadtxt(io.StringIO(text))

    scoped, plain = both_ways(make)
    assert scoped.shape == (5000, 3)
    assert np.array_equal(scoped, plain)
    assert get_handler_name(scoped) == OURS and requested(scoped) == nn.Bind(0)


def test_fromstring_with_separator():
    numbers = " ".join(str(i) for i in range(20_000))

    for text in ("", numbers):

        def make(text=text):
            return np.fromstring(text, sep=" ")

        scoped, plain = both_ways(make)
        assert scoped.shape == plain.shape == ((0,) if not text else (20_000,))
        assert np.array_equal(scoped, plain)
        assert get_handler_name(scoped) == OURS and scoped.flags.owndata
        assert requested(scoped) == nn.Bind(0)
