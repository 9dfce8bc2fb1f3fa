"""The C worker pool (nn_workers.c) and the ufunc dispatcher's C door
(nn_ufunc.c), through numa_numpy._kernel.loops.

Jobs here are the pool's own test job (pieces that spin, raise a float flag,
or start a job inside themselves), so no Python runs in a worker. Placement of
a partitioned block's parts is asked of the kernel (move_pages)."""

from __future__ import annotations

import errno
import os
import threading
import time

import numpy as np
import pytest

from numa_numpy._kernel import loops
from numa_numpy._kernel.lib import ffi, lib
from numa_numpy._kernel.topology import topology
from numa_numpy.errors import NumaError

CPUS = tuple(sorted(os.sched_getaffinity(0)))


def node_groups() -> dict[int, tuple[int, ...]]:
    topo = topology()
    groups = {n.id: tuple(c for c in n.cpus if c in CPUS) for n in topo.nodes}
    return {n: c for n, c in groups.items() if c} or {0: CPUS}


@pytest.fixture
def pool():
    """A pool of one worker per allowed CPU, and none afterwards."""
    loops.stop_workers()
    loops.start_workers(node_groups())
    yield node_groups()
    loops.set_record(False)
    loops.stop_workers()


def busy_job(npieces: int = 8, spin_ns: int = 5_000_000, **kw):
    """A job long enough that sleeping workers wake and take pieces."""
    return loops.selftest(npieces, spin_ns=spin_ns, **kw)


def test_start_and_stop(pool):
    assert loops.worker_count() == sum(len(c) for c in pool.values())
    assert loops.workers_per_node() == {n: len(c) for n, c in pool.items()}
    assert loops.worker_stats()["workers"] == loops.worker_count()
    loops.stop_workers()
    assert loops.worker_count() == 0 and loops.workers_per_node() == {}
    rc, _, ran, _ = loops.selftest(2)
    assert rc == -errno.ESRCH and ran == [0, 0]


def test_ensure_workers_starts_the_pool_on_every_node_with_cpus_once(pool):
    assert loops.node_cpu_groups(None) == node_groups()
    loops.stop_workers()
    loops.ensure_workers()
    assert loops.workers_per_node() == {n: len(c) for n, c in node_groups().items()}
    loops.stop_workers()
    loops.start_workers({n: c[:1] for n, c in node_groups().items()}, per_node=1)
    loops.ensure_workers()  # running: left as it is
    assert loops.workers_per_node() == {n: 1 for n in node_groups()}


def test_node_cpu_groups_names_a_node_without_cpus():
    from numa_numpy.errors import ParallelSettingError

    with pytest.raises(ParallelSettingError, match="node 4095 has no CPUs"):
        loops.node_cpu_groups([4095])
    with pytest.raises(ParallelSettingError, match="names no node"):
        loops.node_cpu_groups([])


def test_start_twice_and_bad_arguments_say_why(pool):
    with pytest.raises(NumaError) as info:
        loops.start_workers(pool)
    assert info.value.errno == errno.EALREADY
    loops.stop_workers()
    for groups in ({}, {0: (1 << 20,)}, {-1: CPUS}):
        with pytest.raises(NumaError) as info:
            loops.start_workers(groups)
        assert info.value.errno == errno.EINVAL
    assert loops.worker_count() == 0


def test_per_node_count_is_kept(pool):
    loops.stop_workers()
    loops.start_workers(pool, per_node=1)
    assert loops.workers_per_node() == {n: 1 for n in pool}


def test_a_job_runs_every_piece_once_and_workers_take_part(pool):
    before = loops.worker_stats()
    rc, _, ran, _ = busy_job(8)
    after = loops.worker_stats()
    assert rc == 0
    assert all(r in (1, 2) for r in ran)
    assert 2 in ran, "no worker ran a piece"
    assert after["jobs"] == before["jobs"] + 1
    done = after["pieces_caller"] + after["pieces_worker"]
    assert done - before["pieces_caller"] - before["pieces_worker"] == 8
    assert ran.count(2) == after["pieces_worker"] - before["pieces_worker"]


def test_bad_job_arguments():
    assert loops.selftest(0)[0] == -errno.EINVAL
    assert loops.selftest(loops.MAX_PIECES + 1)[0] == -errno.EINVAL


def test_a_second_caller_gets_ebusy_and_runs_nothing(pool):
    busy_before = loops.worker_stats()["busy"]
    seen = None
    # On a loaded machine the long job's thread may start late, or lose the
    # race for the pool to one of our short calls: try again, a few times.
    for _attempt in range(5):
        results: list[int] = []
        long_job = threading.Thread(
            target=lambda: results.append(loops.selftest(2, spin_ns=400_000_000)[0])
        )
        long_job.start()
        deadline = time.monotonic() + 5
        while long_job.is_alive() and time.monotonic() < deadline:
            rc, _, ran, _ = loops.selftest(2)
            if rc == -errno.EBUSY:
                seen = ran
                break
            time.sleep(0.01)
        long_job.join()
        if seen is not None:
            break
    assert seen == [0, 0], "the second caller never met the first one's job"
    assert results == [0]
    assert loops.worker_stats()["busy"] > busy_before


def test_a_worker_never_splits_again(pool):
    rc, _, ran, nested = busy_job(8)
    assert rc == 0
    for who, code in zip(ran, nested, strict=True):
        # in a worker: refused outright; in the caller: the pool is its own job's
        assert code == (-errno.EDEADLK if who == 2 else -errno.EBUSY)


def test_float_flags_of_workers_reach_the_caller(pool):
    for _ in range(5):
        rc, raised, ran, _ = busy_job(8, raise_piece=-2)
        if 2 in ran:
            break
    assert rc == 0 and 2 in ran
    assert raised, "FE_DIVBYZERO raised in a worker was lost"
    rc, raised, _, _ = busy_job(4, raise_piece=-1)
    assert rc == 0 and not raised


def test_each_piece_records_its_cpu_and_node(pool):
    loops.set_record(True)
    node = next(iter(pool))
    rc, _, ran, _ = busy_job(6, nodes=[node] * 6)
    assert rc == 0
    record = loops.last_record()
    assert len(record) == 6
    topo = topology()
    for cpu, recorded in record:
        assert cpu in CPUS
        assert recorded == node == topo.node_of_cpu(cpu)
    loops.set_record(False)
    busy_job(2, spin_ns=0)
    assert loops.last_record() == [(-1, -1), (-1, -1)]


def test_a_forked_child_restarts_the_pool(pool):
    pid = os.fork()
    if pid == 0:  # the child: no workers until its first job
        code = 10
        try:
            if loops.worker_count() == 0 and loops.worker_stats()["forked"] == 1:
                code = 11
                rc, _, ran, _ = busy_job(8)
                stats = loops.worker_stats()
                if rc == 0 and stats["restarts"] == 1 and loops.worker_count() > 0:
                    code = 12 if 2 in ran else 13
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 12
    assert busy_job(2)[0] == 0  # the parent's pool is untouched


def test_a_replaced_loop_in_a_worker_runs_whole(pool):
    loops.install_loops()
    assert "add dd->d" in loops.loop_names()
    buf = np.arange(4096, dtype=np.float64)
    loops.set_thread_mode(1, 2)
    try:
        before = loops.loop_stats()
        rc = loops.nested_check("add dd->d", buf)
        after = loops.loop_stats()
    finally:
        loops.set_thread_mode(-1)
    assert rc == 0
    np.testing.assert_array_equal(buf, 2 * np.arange(4096.0))
    assert after["split"] == before["split"]
    assert after["nested"] + after["busy"] - before["nested"] - before["busy"] == 2
    assert loops.nested_check("no such loop", buf) == -errno.EINVAL


def test_modes_and_their_checks():
    with pytest.raises(NumaError):
        loops.set_mode(True, 0)
    with pytest.raises(NumaError):
        loops.set_thread_mode(2, 5)
    loops.set_thread_mode(1, 7)
    assert loops.thread_mode() == (1, 7)
    seen = []
    other = threading.Thread(target=lambda: seen.append(loops.thread_mode()))
    other.start()
    other.join()
    assert seen == [(-1, 0)]  # the override is this thread's
    loops.set_thread_mode(-1)
    assert loops.thread_mode() == (-1, 0)


def two_part_block(nbytes: int):
    """A large block of an arena split in two parts, both bound to one node."""
    node = next(iter(node_groups()))
    words = [1 << node % 64 if i == node // 64 else 0 for i in range(node // 64 + 1)]
    mask = ffi.new("unsigned long[]", words)
    binding = {"mode": lib.NN_MPOL_BIND, "home_node": -1, "maxnode": 64 * len(words) + 1,
               "nwords": len(words), "mask": mask}
    arena = lib.nn_arena_new(ffi.new("nn_binding *", binding), lib.NN_HUGE_NONE, ffi.NULL, 0)
    parts = ffi.new("nn_binding[]", [binding, binding])
    assert lib.nn_arena_set_parts(arena, parts, 2) == 0
    ptr = lib.nn_arena_malloc(arena, nbytes)
    assert ptr != ffi.NULL
    return node, arena, ptr, mask


def test_partitioned_blocks_are_found_by_any_address_and_forgotten_on_free():
    node, arena, ptr, _mask = two_part_block(8 << 20)
    base = int(ffi.cast("uintptr_t", ptr))
    try:
        found = loops.block_parts_at(base + (5 << 20))
        assert found is not None
        start, bounds, nodes = found
        assert start == base and bounds[0] == 0 and bounds[-1] == 8 << 20
        assert len(bounds) == 3 and 0 < bounds[1] < 8 << 20
        assert nodes == [node, node]
        assert loops.block_parts_at(base + (8 << 20)) is None
    finally:
        lib.nn_arena_free(arena, ptr)
    assert loops.block_parts_at(base + 4096) is None
    lib.nn_arena_destroy(arena)


def test_pieces_of_a_partitioned_block_run_on_its_parts_nodes(pool):
    loops.install_loops()
    node, arena, ptr, _mask = two_part_block(8 << 20)
    try:
        x = np.frombuffer(ffi.buffer(ptr, 8 << 20), dtype=np.float64)
        x[:] = 1.5
        pages = ffi.new("int[]", 2)
        start, bounds, _ = loops.block_parts_at(int(ffi.cast("uintptr_t", ptr)))
        page = lib.nn_base_page_size()
        for i, offset in enumerate(bounds[:2]):  # the kernel's word on each part
            lib.nn_query_pages(ffi.cast("char *", ptr) + offset, 1, page, pages + i)
        assert list(pages) == [node, node]
        loops.set_record(True)
        loops.set_thread_mode(1, 2)
        before = loops.loop_stats()
        np.multiply(x, 2.0, out=x)
        after = loops.loop_stats()
        record = loops.last_record()
    finally:
        loops.set_thread_mode(-1)
        loops.set_record(False)
    assert after["split"] == before["split"] + 1
    per_node = loops.workers_per_node()[node]
    assert after["local_pieces"] - before["local_pieces"] == 2 * per_node
    assert len(record) == 2 * per_node
    assert {n for _, n in record} == {node}
    assert np.all(x == 3.0)
    del x
    lib.nn_arena_free(arena, ptr)
    lib.nn_arena_destroy(arena)
