import gc
import threading
from pathlib import Path

import numpy as np
import pytest
from kernel_view import bound_bytes, numa_maps_entry

import numa_numpy as nn
from numa_numpy._ranges import region as _region

POOL = Path("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages")


@pytest.fixture
def reserved_2mb_pages():
    """Reserve 2 MiB huge pages on node 0 for the test, restore the pool after."""
    try:
        before = int(POOL.read_text())
        POOL.write_text(str(before + 4))
    except OSError:
        pytest.skip("cannot reserve huge pages here (needs root and a writable sysfs)")
    if int(POOL.read_text()) < before + 4:
        POOL.write_text(str(before))
        pytest.skip("the kernel could not reserve 4 huge pages")
    yield
    POOL.write_text(str(before))


def test_region_is_a_bound_buffer():
    region = nn.NumaRegion(1 << 20, "bind:0", prefault="touch", strict=True)
    assert region.nbytes == len(region) == 1 << 20 and region.requested_bytes == 1 << 20
    assert region.policy == nn.Bind(0)
    assert region.enforcement.level is nn.EnforcementLevel.STRICT
    where = region.placement()
    assert where.not_present == 0 and where.pages == {0: 256}
    assert where.policy == nn.Bind(0)
    assert numa_maps_entry(region.address).policy == "bind:0"
    view = memoryview(region)
    view[:4] = b"abcd"
    assert bytes(np.frombuffer(region, np.uint8, 4)) == b"abcd"
    a = region.as_array((256, 512), np.float64, order="F")
    assert a.flags.f_contiguous and a.base is not None
    a[0, 0] = 2.5
    assert np.frombuffer(region, np.float64, 1)[0] == 2.5  # zero-copy
    del view, a


def test_close_refuses_while_views_exist_then_releases():
    gc.collect()
    bound = bound_bytes()
    region = nn.NumaRegion(1 << 20, node=0)
    arr = region.as_array(1 << 17, np.float64)
    with pytest.raises(BufferError):
        region.close()
    del arr
    gc.collect()
    region.close()
    assert region.closed
    with pytest.raises(ValueError, match="closed"):
        region.address
    assert bound_bytes() == bound  # the region's bound mapping is gone


def test_region_lives_while_an_array_over_it_does():
    arr = nn.NumaRegion(1 << 16, node=0).as_array(1 << 13, np.float64)
    gc.collect()
    arr[:] = 4.0  # the region object is gone from our hands; the mapping is not
    assert arr.sum() == 4.0 * (1 << 13)


def test_with_releases_early():
    with nn.NumaRegion(4096, node=0) as region:
        region[:3] = b"xyz"
    assert region.closed


def test_threads_share_a_region():
    region = nn.NumaRegion(8 * 4096, node=0)
    arr = region.as_array(8 * 512, np.int64)

    def fill(i):
        arr[i * 512:(i + 1) * 512] = i

    threads = [threading.Thread(target=fill, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (arr.reshape(8, 512) == np.arange(8)[:, None]).all()


@pytest.mark.parametrize("size, error", [
    (0, ValueError), (-5, ValueError), (np.int64(-5), ValueError),
    (1.5, TypeError), (True, TypeError), (np.float64(4096), TypeError), ("4096", TypeError),
])
def test_bad_sizes_name_the_size(size, error):
    with pytest.raises(error, match="size must be") as info:
        nn.NumaRegion(size, node=0)
    assert not isinstance(info.value, nn.InvalidPolicyError)  # a size is not a policy
    assert str(int(size) if error is ValueError else repr(size)) in str(info.value)


@pytest.mark.parametrize("size", [np.int64(4096), np.uint32(8192), np.intp(1)])
def test_numpy_integer_sizes(size):
    region = nn.NumaRegion(size, node=0)
    assert region.requested_bytes == int(size) and type(region.requested_bytes) is int
    assert len(region) >= int(size)


def test_resize_is_refused_and_nothing_moves():
    # mmap.resize would mremap the mapping: .address, repr and arrays would be stale
    region = nn.NumaRegion(1 << 16, node=0)
    address, text = region.address, repr(region)
    arr = region.as_array(16, np.uint8)
    del arr  # resize would be possible with no export
    with pytest.raises(nn.NumaError, match="cannot be resized"):
        region.resize(1 << 20)
    assert len(region) == 1 << 16 and region.address == address == _region.buffer_address(region)
    assert repr(region) == text


def test_migrate_an_array_over_a_region_says_why_not_follow_base():
    arr = nn.NumaRegion(1 << 16, node=0).as_array(1 << 13, np.float64)
    with pytest.raises(nn.MigrationError, match="NumaRegion") as info:
        nn.migrate(arr, 0)
    assert ".base" not in str(info.value)


def test_bad_nodes_and_keywords():
    with pytest.raises(nn.InvalidNodeError, match="does not exist"):
        nn.NumaRegion(4096, node=99)
    with pytest.raises(TypeError, match="not both"):
        nn.NumaRegion(4096, "bind:0", node=0)


def test_transparent_huge_pages_region():
    region = nn.NumaRegion(3 << 20, node=0, huge_pages="transparent")
    assert region.huge_pages is nn.HugePages.TRANSPARENT
    assert len(region) == 4 << 20  # rounded to 2 MiB so the kernel can align it


def test_explicit_2mb_pages_on_node_0(reserved_2mb_pages):
    region = nn.NumaRegion(3 << 20, node=0, huge_pages="2mb", prefault="touch", strict=True)
    assert region.huge_pages is nn.HugePages.EXPLICIT_2MB
    assert len(region) == 4 << 20 and region.address % (2 << 20) == 0
    entry = numa_maps_entry(region.address)
    assert entry.page_kib == 2048 and entry.pages == {0: 2} and entry.policy == "bind:0"
    assert region.enforcement.level is nn.EnforcementLevel.STRICT


def test_explicit_huge_pages_in_a_scope(reserved_2mb_pages):
    a = nn.numa_zeros(3 << 20, np.uint8, node=0, huge_pages="2mb", strict=True)
    a[:] = 1
    entry = numa_maps_entry(a.ctypes.data)
    assert entry.page_kib == 2048 and entry.pages == {0: 2}


def test_region_soft_fallback_without_huge_pages():
    free = Path("/sys/devices/system/node/node0/hugepages/hugepages-1048576kB/free_hugepages")
    if free.exists() and int(free.read_text()):
        pytest.skip("1 GiB pages are reserved here")
    with pytest.warns(nn.NumaWarning, match="1gb"):
        region = nn.NumaRegion(1 << 20, node=0, huge_pages="1gb")
    assert region.huge_pages is nn.HugePages.TRANSPARENT
    assert "1gb" in region.enforcement.reason
    with pytest.raises(nn.PolicyNotEnforcedError, match="1gb"):
        nn.NumaRegion(1 << 20, node=0, huge_pages="1gb", strict=True)


def test_region_populate_failure_is_an_allocation_error_and_unmaps():
    from numa_numpy._kernel.lib import lib
    gc.collect()
    bound = bound_bytes()
    lib.nn_inject_fault(lib.NN_FAULT_POPULATE, 12, 1)
    try:
        with pytest.raises(nn.NumaAllocationError, match="ENOMEM"):
            nn.NumaRegion(1 << 20, node=0, prefault="touch")
    finally:
        lib.nn_inject_fault(lib.NN_FAULT_POPULATE, 0, 0)
    gc.collect()
    assert bound_bytes() == bound  # the region's bound mapping is gone


def test_parallel_prefault_places_every_page():
    region = nn.NumaRegion(8 << 20, node=0, prefault="parallel", huge_pages="none", strict=True)
    where = region.placement()
    assert where.not_present == 0 and where.pages == {0: 2048}
    assert "<table>" in region._repr_html_() and "bind:0" in repr(region)


def test_unmapped_when_the_region_and_its_arrays_are_gone():
    gc.collect()
    bound = bound_bytes()
    region = nn.NumaRegion(1 << 20, node=0, prefault="touch")
    arr = region.as_array(1 << 17, np.float64)
    view = memoryview(region)
    del region
    gc.collect()
    assert bound_bytes() >= bound + (1 << 20)  # the arrays keep it mapped
    del arr
    gc.collect()
    assert bound_bytes() >= bound + (1 << 20)
    del view
    gc.collect()
    assert bound_bytes() == bound
