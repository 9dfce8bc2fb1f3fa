"""Soft vs strict when the kernel refuses: failures injected deterministically in
the C layer (the next mbind / mmap / populate fails with a chosen errno)."""

import errno
import warnings

import numpy as np
import pytest
from fixtures.faults import inject
from kernel_view import bound_bytes

import numa_numpy as nn
from numa_numpy._kernel.lib import lib


@pytest.fixture
def fresh_handlers():
    nn.forget_handlers()
    yield
    for op in (lib.NN_FAULT_MMAP, lib.NN_FAULT_MBIND, lib.NN_FAULT_POPULATE):
        lib.nn_inject_fault(op, 0, 0)
    nn.forget_handlers()


@pytest.mark.parametrize("err", [errno.EPERM, errno.EINVAL])
def test_refused_policy_soft_warns_once_and_falls_back(fresh_handlers, err, handler_name):
    inject(lib.NN_FAULT_MBIND, err)
    with pytest.warns(nn.NumaWarning, match=errno.errorcode[err]) as record:
        with nn.on_node(0):
            a = np.ones(1 << 16)
    assert len(record) == 1 and "originated from mbind" in str(record[0].message)
    where = nn.placement(a)
    assert where.requested == nn.Bind(0)
    assert where.enforcement.level is nn.EnforcementLevel.NONE
    assert errno.errorcode[err] in where.enforcement.reason
    assert where.policy == nn.Default(), "fallback memory must really be unbound"
    assert handler_name(a) == "numa_numpy" and (a == 1).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with nn.on_node(0):  # warned once: not again
            np.ones(10)


def test_refused_policy_strict_raises(fresh_handlers, handler_name):
    inject(lib.NN_FAULT_MBIND, errno.EPERM)
    with pytest.raises(nn.PolicyNotEnforcedError, match="EPERM") as info:
        with nn.on_node(0, strict=True):
            pass  # pragma: no cover
    assert info.value.errno == errno.EPERM and info.value.policy == nn.Bind(0)
    assert handler_name() == "default_allocator"
    with pytest.raises(nn.PolicyNotEnforcedError):
        inject(lib.NN_FAULT_MBIND, errno.EPERM)
        nn.numa_zeros(10, node=0, strict=True)


def test_refusal_after_the_probe_soft_marks_the_block(fresh_handlers):
    with nn.on_node(0):
        np.ones(1)  # handler made and probed
        inject(lib.NN_FAULT_MBIND, errno.EPERM)
        a = np.ones(1 << 17)  # a large block: its own mapping, refused
        b = np.ones(1 << 17)
    bad, good = nn.placement(a), nn.placement(b)
    assert bad.enforcement.level is nn.EnforcementLevel.NONE and bad.policy == nn.Default()
    assert good.enforcement.level is nn.EnforcementLevel.BEST_EFFORT
    assert good.policy == nn.Bind(0)
    stats = nn.on_node(0).handler.stats()
    assert stats["fallbacks"] == 1 and stats["last_error"] == errno.EPERM


def test_refusal_after_the_probe_strict_fails_the_allocation(fresh_handlers):
    nn.numa_zeros(1, node=0, strict=True)
    inject(lib.NN_FAULT_MBIND, errno.EINVAL)
    with pytest.raises(nn.NumaAllocationError, match="EINVAL") as info:
        nn.numa_zeros(1 << 17, node=0, strict=True)
    assert info.value.errno == errno.EINVAL and info.value.size == 8 << 17


@pytest.mark.parametrize("err", [errno.ENOMEM, errno.EIO])
def test_populate_failure_raises_and_leaks_nothing(fresh_handlers, err):
    nn.numa_zeros(1, node=0, prefault="touch")
    before = bound_bytes()
    inject(lib.NN_FAULT_POPULATE, err)
    with pytest.raises(nn.NumaAllocationError) as info:
        nn.numa_empty(1 << 20, node=0, prefault="touch", huge_pages="none")
    assert info.value.errno == err
    assert bound_bytes() == before  # the failed block's bound mapping is gone
    assert nn.on_node(0, prefault="touch").handler.stats()["large_bytes"] == 0


def test_mmap_failure_in_a_scope_is_numpys_memory_error(fresh_handlers):
    with nn.on_node(0):
        inject(lib.NN_FAULT_MMAP, errno.ENOMEM)
        with pytest.raises(MemoryError):
            np.empty(1 << 20)
        assert np.empty(1 << 20).size == 1 << 20  # the next allocation works


def test_explicit_huge_pages_without_a_pool(fresh_handlers):
    from pathlib import Path
    pool = Path("/sys/devices/system/node/node0/hugepages/hugepages-1048576kB/free_hugepages")
    if pool.exists() and int(pool.read_text()) > 0:
        pytest.skip("1 GiB huge pages are reserved here")
    with pytest.warns(nn.NumaWarning, match="no 1gb huge pages free on node 0"):
        a = nn.numa_zeros(1 << 20, node=0, huge_pages="1gb")  # soft: normal pages
    assert (a == 0).all()
    assert nn.placement(a).enforcement.level is nn.EnforcementLevel.BEST_EFFORT
    assert nn.on_node(0, huge_pages="1gb").handler.stats()["huge_fallbacks"] == 1
    with pytest.raises(nn.PolicyNotEnforcedError, match="huge pages"):
        nn.numa_zeros(1 << 20, node=0, huge_pages="1gb", strict=True)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("size", ["2mb", "1gb"])
def test_partitioned_explicit_huge_pages_says_the_real_reason_first(fresh_handlers, strict, size):
    # no pool check (its "reserve huge pages" would not help) and no warning first:
    # one InvalidPolicyError naming what no kernel can do, strict or soft
    from pathlib import Path
    kb = {"2mb": 2048, "1gb": 1048576}[size]
    pool = Path(f"/sys/devices/system/node/node0/hugepages/hugepages-{kb}kB/free_hugepages")
    if pool.exists() and int(pool.read_text()) > 0:
        pytest.skip(f"{size} huge pages are reserved here: the pool check would pass anyway")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(nn.InvalidPolicyError, match="cannot use explicit huge pages"):
            nn.partitioned_empty(10, huge_pages=size, strict=strict)
        with pytest.raises(nn.InvalidPolicyError, match="cannot use explicit huge pages"):
            nn.numa_empty(1 << 20, policy=nn.Partitioned(), huge_pages=size, strict=strict)


def test_nonexistent_node_always_raises_even_soft(fresh_handlers):
    with pytest.raises(nn.InvalidNodeError) as info:
        nn.numa_zeros(10, node=max(nn.topology().node_ids) + 1)
    assert info.value.available == nn.topology().node_ids
    with pytest.raises(nn.InvalidNodeError, match="do not exist"):
        nn.numa_zeros(10, policy=nn.Interleave([0, 500, 501]))


def test_out_of_memory_at_the_probe_is_not_a_refused_policy(fresh_handlers):
    inject(lib.NN_FAULT_MMAP, errno.ENOMEM)
    with pytest.raises(nn.NumaAllocationError, match="probe") as info:
        with nn.on_node(0):
            pass  # pragma: no cover
    assert info.value.errno == errno.ENOMEM
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "not enforced" warning: it was not refused
        with nn.on_node(0):
            a = np.ones(1 << 16)
    assert nn.placement(a).policy == nn.Bind(0)


# --- errors name the step that failed ----------------------------------------------


def _room_check_size():
    """More than node 0 has free, less than the machine's RAM (so mmap succeeds
    under the default overcommit heuristic and only the room check refuses)."""
    from pathlib import Path

    def total(path):
        line = next(t for t in Path(path).read_text().splitlines() if "MemTotal" in t)
        return int(line.split()[-2]) * 1024

    meminfo = Path("/sys/devices/system/node/node0/meminfo")
    if not meminfo.exists():
        pytest.skip("no per-node meminfo: the room check is skipped here")
    node, machine = total(meminfo), total("/proc/meminfo")
    if node + (128 << 20) < machine:  # several nodes: more than node 0 holds at all
        return node + (64 << 20)
    return node - (256 << 20)  # one node: the kernel always uses more than this


def test_room_check_refusal_is_not_reported_as_madvise(fresh_handlers):
    size = _room_check_size()
    with pytest.raises(nn.NumaAllocationError) as info:
        nn.NumaRegion(size, node=0, prefault="touch")
    assert "free-memory check" in str(info.value), str(info.value)
    assert "madvise" not in str(info.value)
    assert info.value.errno == errno.ENOMEM and info.value.step.startswith("the free-memory")
    with pytest.raises(nn.NumaAllocationError, match="free-memory check") as info:
        nn.numa_empty(size, np.uint8, node=0, prefault="touch", huge_pages="none")
    assert "mmap/mbind/populate" not in str(info.value)


def test_populate_failure_names_madvise(fresh_handlers):
    inject(lib.NN_FAULT_POPULATE, errno.EIO)
    with pytest.raises(nn.NumaAllocationError, match=r"originated from madvise\(MADV_POPULATE"):
        nn.numa_empty(1 << 20, node=0, prefault="touch", huge_pages="none")


def test_capabilities_probe_names_mmap_for_a_mapping_failure(fresh_handlers):
    inject(lib.NN_FAULT_MMAP, errno.ENOMEM)
    caps = nn.capabilities()
    assert not caps.mbind_permitted
    assert "originated from mmap" in caps.mbind_error and "mbind" not in caps.mbind_error
    inject(lib.NN_FAULT_MBIND, errno.EPERM)
    assert "originated from mbind" in nn.capabilities().mbind_error
    assert nn.capabilities().mbind_permitted


# -- partitioned: a binding per range, each one enforced --------------------------------


def test_partitioned_refused_soft_warns_once_and_is_unbound(fresh_handlers):
    inject(lib.NN_FAULT_MBIND, errno.EPERM)
    with pytest.warns(nn.NumaWarning, match="EPERM") as record:
        a = nn.partitioned_full(1 << 20, 2.0)
    assert len(record) == 1
    where = nn.placement(a)
    assert where.enforcement.level is nn.EnforcementLevel.NONE
    assert where.policy == nn.Default(), "fallback memory must really be unbound"
    assert nn.blocks(a)[0][0] == nn.topology().usable_nodes[0] and (a == 2.0).all()


def test_partitioned_refused_strict_raises_and_maps_nothing(fresh_handlers):
    inject(lib.NN_FAULT_MBIND, errno.EPERM)
    with pytest.raises(nn.PolicyNotEnforcedError, match="EPERM") as info:
        nn.partitioned_zeros(1 << 20, strict=True)
    assert isinstance(info.value.policy, nn.Partitioned)
    # after the probe: a later range's mbind refused fails the allocation itself
    nn.partitioned_zeros(1 << 20, strict=True)  # probed and working
    before = bound_bytes()
    inject(lib.NN_FAULT_MBIND, errno.EINVAL)
    with pytest.raises(nn.NumaAllocationError):
        nn.partitioned_zeros(3 << 20, strict=True)
    assert bound_bytes() <= before  # the refused mapping was unmapped, not kept


def test_partitioned_refused_after_the_probe_soft_marks_the_block(fresh_handlers):
    with nn.policy(nn.Partitioned()):
        np.ones(1)  # handler made and probed
        inject(lib.NN_FAULT_MBIND, errno.EPERM)
        a = np.ones(1 << 17)  # a large block: its own mapping, its first range refused
        b = np.ones(1 << 17)
    assert nn.placement(a).policy == nn.Default()
    assert nn.placement(a).enforcement.level is nn.EnforcementLevel.NONE
    assert nn.placement(b).policy == nn.Bind(nn.topology().usable_nodes[0])


@pytest.mark.parametrize("make", ["shared", "region", "numa_empty"])
def test_soft_refusal_still_prefaults(fresh_handlers, make):
    # one binding path, one behaviour: a refused mbind leaves the memory unbound,
    # and prefault still faults in every page (it did only for NumPy's own blocks)
    n = 1 << 18  # 2 MiB of float64: 512 base pages
    inject(lib.NN_FAULT_MBIND, errno.EPERM)
    with pytest.warns(nn.NumaWarning, match="refused"):
        if make == "shared":
            owner = a = nn.shared_zeros(n, node=0, prefault="touch")
        elif make == "region":
            owner = nn.NumaRegion(n * 8, "bind:0", prefault="touch", huge_pages="none")
            a = owner.as_array((n,), np.float64)
        else:
            owner = a = nn.numa_empty(n, node=0, prefault="touch", huge_pages="none")
    where = nn.placement(a)
    assert where.not_present == 0, where
    assert sum(where.pages.values()) >= 512
    if make == "shared":
        from numa_numpy._ranges.shared import _segment_of
        enforcement = _segment_of(a).enforcement
    else:
        enforcement = owner.enforcement if make == "region" else where.enforcement
    assert enforcement.level is nn.EnforcementLevel.NONE
    assert "refused" in enforcement.reason
    del a
    if make == "region":
        owner.close()


def test_node_shortfall_judges_plain_ids_only():
    # a node outside the cpuset is a shortfall for a plain policy; relative ids are
    # positions in the allowed set and static ids are taken by the kernel as they
    # are (the cpuset may gain them later), so neither is judged against it
    import dataclasses

    from numa_numpy._policies.enforcement import node_shortfall

    topo = dataclasses.replace(nn.topology(), allowed_nodes=())
    assert "outside this process's cpuset" in node_shortfall(nn.Bind(0), topo)
    assert node_shortfall(nn.Bind(0, static_nodes=True), topo) == ""
    assert node_shortfall(nn.Bind(0, relative_nodes=True), topo) == ""
    assert node_shortfall(nn.Bind(0), nn.topology()) == ""


@pytest.mark.parametrize("strict", [False, True])
def test_ranges_report_the_enforcement_asked_for_and_prefault_only_when_asked(strict):
    from numa_numpy._ranges.shared import _segment_of

    level = nn.EnforcementLevel.STRICT if strict else nn.EnforcementLevel.BEST_EFFORT
    region = nn.NumaRegion(1 << 20, "bind:0", prefault="none", huge_pages="none",
                           strict=strict)
    shared = nn.shared_zeros(1 << 17, node=0, prefault="none", strict=strict)
    try:
        assert region.enforcement.level is level
        assert _segment_of(shared).enforcement.level is level
        assert region.placement().not_present == 256  # nothing faulted in
        assert nn.placement(shared).not_present == nn.placement(shared).total_pages
    finally:
        region.close()
        shared.unlink()



def test_enforcement_says_applied_partly_applied_or_refused(fresh_handlers):
    # the three words of the guide's "Strict vs soft", in str(), the placement
    # and the handler's stats alike; the enum values stay what they were
    soft = nn.numa_ones(1 << 16, node=0)
    strict = nn.numa_ones(1 << 16, node=0, strict=True)
    assert str(nn.placement(soft).enforcement) == "applied"
    assert str(nn.placement(strict).enforcement) == "applied (strict)"
    assert repr(nn.placement(soft)).endswith("requested bind:0, applied>")
    with pytest.warns(nn.NumaWarning, match="huge pages"):
        partly = nn.numa_ones(1 << 16, node=0, huge_pages="1gb")
    where = nn.placement(partly)
    assert where.enforcement.level is nn.EnforcementLevel.BEST_EFFORT
    assert str(where.enforcement) == f"partly applied: {where.enforcement.reason}"
    assert "no 1gb huge pages free" in str(where)
    inject(lib.NN_FAULT_MBIND, errno.EPERM)
    with pytest.warns(nn.NumaWarning, match="EPERM"):
        with nn.on_node(0, prefault="touch"):
            refused = np.ones(1 << 16)
    words = nn.placement(refused).enforcement.words
    assert words.startswith("refused by the kernel: ") and "EPERM" in words
    assert "refused it" not in words  # said once
    stats = nn.memory_stats()
    assert stats["bind:0 strict=False huge_pages=auto prefault=touch"]["enforcement"] == words
    assert [level.value for level in nn.EnforcementLevel] == ["strict", "best-effort", "none"]
