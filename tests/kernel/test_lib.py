"""The door to the C layer (numa_numpy._kernel.lib): the step a failed call names,
each step's name from the C layer."""

import errno

import pytest
from fixtures.faults import inject

import numa_numpy as nn
from numa_numpy._kernel.lib import lib


def test_the_c_layer_reports_the_failing_step():
    from numa_numpy._kernel.lib import check, clear_step, failed_step

    clear_step()
    assert failed_step("none") == "none"
    inject(lib.NN_FAULT_MMAP, errno.EAGAIN)
    from numa_numpy._kernel.lib import ffi
    from numa_numpy._policies.cstructs import binding_struct

    binding, _mask = binding_struct(nn.Bind(0), nn.topology())
    plan = ffi.new("nn_prefault_plan *", {"mode": lib.NN_PREFAULT_NONE})
    out = ffi.new("nn_mapping *")
    rc = lib.nn_map(binding, 4096, 0, lib.NN_HUGE_NONE, plan, lib.NN_MAP_STRICT, out)
    assert rc == -errno.EAGAIN and failed_step() == "mmap"
    with pytest.raises(nn.NumaError, match=r"mapping: .*EAGAIN, originated from mmap\)") as info:
        check(rc, "mapping")
    assert info.value.errno == errno.EAGAIN and info.value.step == "mmap"
    assert lib.nn_check_room(binding, 1 << 62) == -errno.ENOMEM
    assert failed_step().startswith("the free-memory check")
    with pytest.raises(nn.NumaAllocationError):
        check(-errno.ENOMEM, "x", nn.NumaAllocationError, size=1, policy=None)


def test_every_step_has_its_name_from_the_c_layer():
    from numa_numpy._kernel.lib import ffi

    names = {
        "MMAP": "mmap",
        "MMAP_HUGETLB": "mmap(MAP_HUGETLB)",
        "MBIND": "mbind",
        "HOME_NODE": "set_mempolicy_home_node",
        "ROOM": "the free-memory check of the bound nodes (MemFree in sysfs)",
        "POPULATE": "madvise(MADV_POPULATE_WRITE)",
        "HUGETLB_NODES": "the huge-page pool of the bound nodes",
        "SET_MEMPOLICY": "set_mempolicy",
        "GET_MEMPOLICY": "get_mempolicy",
        "MOVE_PAGES": "move_pages",
        "MIGRATE_PAGES": "migrate_pages",
        "GETCPU": "getcpu",
        "MUNMAP": "munmap",
    }
    for step, name in names.items():
        assert ffi.string(lib.nn_step_name(getattr(lib, f"NN_STEP_{step}"))).decode() == name
    for unknown in (0, -1, max(getattr(lib, f"NN_STEP_{s}") for s in names) + 1):
        assert lib.nn_step_name(unknown) == ffi.NULL
