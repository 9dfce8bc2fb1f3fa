"""The partitioned constructors (numa_numpy._compute.partition): values, dtypes and
orders as NumPy's, memory owned through the handler, freed blocks reused and
trimmed."""

import numpy as np
import pytest

import numa_numpy as nn
from numa_numpy._alloc.bridge import get_handler_name


def test_constructors_values_dtypes_orders():
    a = nn.partitioned_empty((4, 5), np.int32)
    assert type(a) is nn.PartitionedArray and a.dtype == np.int32 and a.shape == (4, 5)
    assert nn.partitioned_zeros(7).tolist() == [0.0] * 7
    assert nn.partitioned_ones((2, 2), int).dtype == np.dtype(int)
    f = nn.partitioned_full((3, 4), 2.5, order="F")
    assert f.flags.f_contiguous and f.layout.axis == 1 and float(f.sum()) == 30.0
    assert nn.partitioned_full(3, 7).dtype == np.array(7).dtype
    assert nn.partitioned_zeros(0).shape == (0,)
    assert nn.partitioned_zeros(()).shape == ()
    with pytest.raises(ValueError):
        nn.partitioned_empty(4, order="K")
    with pytest.raises(ValueError):
        nn.partitioned_empty(-1)
    with pytest.raises(nn.InvalidNodeError):
        nn.partitioned_empty(4, nodes=99)
    with pytest.raises(nn.InvalidPolicyError):
        nn.partitioned_empty(4, policy=nn.Bind(0))
    with pytest.raises(TypeError):
        nn.blocks(np.zeros(3))
    with pytest.raises(TypeError):
        nn.blocks(nn.partitioned_zeros(4)[1:])  # views carry no layout


ZERO_DTYPES = ["U3", "S3", "V4", [("a", "S2"), ("b", "<i4"), ("c", "U2")], object,
               [("o", object), ("s", "S2")], "M8[s]", "m8[D]", "c8", "?", "f2", ">i8"]


def _same_values(got, expected):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if expected.dtype.hasobject or expected.dtype.kind == "T":
        assert got.tolist() == expected.tolist()
        assert [type(x) for x in got.ravel().tolist()] == [
            type(x) for x in expected.ravel().tolist()]
    else:
        assert got.tobytes(order="A") == expected.tobytes(order="A")


@pytest.mark.parametrize("dtype", ZERO_DTYPES, ids=str)
@pytest.mark.parametrize("order", ["C", "F"])
def test_zeros_are_numpys_zeros_for_every_dtype(dtype, order):
    with nn.node_team(min_bytes=1):
        for shape in [(3000,), (700, 3), (0, 4)]:
            _same_values(nn.partitioned_zeros(shape, dtype, order), np.zeros(shape, dtype, order))


def test_partitioned_arrays_own_memory_through_the_handler():
    a = nn.partitioned_full((1 << 20,), 3.0, prefault="touch")
    owner = a.base
    assert type(owner) is np.ndarray and owner.flags.owndata
    assert get_handler_name(owner) == "numa_numpy"
    where = nn.placement(a)
    assert where.not_present == 0 and set(where.pages) <= set(nn.topology().usable_nodes)
    assert pickle_roundtrip(a).tolist()[:3] == [3.0, 3.0, 3.0]


def pickle_roundtrip(a):
    import pickle

    return pickle.loads(pickle.dumps(a))


def test_freed_blocks_are_reused_and_trimmed():
    nn.free_all_blocks()
    a = nn.partitioned_zeros(1 << 20)
    address = a.ctypes.data
    del a
    assert nn.get_memory_pool().free_bytes() >= 8 << 20
    b = nn.partitioned_zeros(1 << 20)
    assert b.ctypes.data == address
    b[:] = 5.0
    del b
    c = nn.partitioned_empty(1 << 20)
    assert c.ctypes.data == address  # empty may hold old values: like np.empty
    del c
    z = nn.partitioned_zeros(1 << 20)
    assert z.ctypes.data == address and not z.any()  # zeros are zeros, reused or not
    del z
    assert nn.free_all_blocks() >= 8 << 20


def test_freed_blocks_follow_the_process_budget():
    nn.free_all_blocks()
    budget = nn.get_memory_pool().get_cache_limit()
    try:
        nn.set_cache_limit(0)  # nothing may be kept
        b = nn.partitioned_zeros(1 << 20)
        del b
        assert nn.get_memory_pool().free_bytes() == 0
    finally:
        nn.set_cache_limit(budget)


def test_migrate_to_partitioned_is_refused_and_moves_nothing():
    a = nn.numa_ones(1 << 20, node=0)
    before = nn.placement(a)
    with pytest.raises(nn.InvalidPolicyError, match="partitioned copy"):
        nn.migrate(a, nn.Partitioned())
    assert nn.placement(a).pages == before.pages and (a == 1).all()
