import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numa_numpy as nn

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)
dtypes = st.one_of(hnp.scalar_dtypes(), st.just(np.dtype([("a", "<i4"), ("b", "<f8", (2,))])))
orders = st.sampled_from(["C", "F"])


def same_layout(ours, theirs):
    assert type(ours) is np.ndarray
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    if ours.size:  # an empty array's strides address nothing; NumPy 1.x and 2.x differ
        assert ours.strides == theirs.strides
    assert ours.flags.c_contiguous == theirs.flags.c_contiguous
    assert ours.flags.f_contiguous == theirs.flags.f_contiguous
    assert ours.flags.owndata


def is_ours(a, handler_name):
    assert handler_name(a) == nn.HANDLER_NAME == "numa_numpy"
    where = nn.placement(a)
    assert where.requested == nn.Bind(0)
    if a.nbytes:
        assert where.policy == nn.Bind(0), "the kernel does not hold the policy for the range"


@settings(max_examples=60, deadline=None)
@given(shape=shapes, dtype=dtypes, order=orders)
def test_empty_zeros_ones_match_numpy(shape, dtype, order, handler_name):
    for ours, theirs in [
        (nn.numa_empty(shape, dtype, order, node=0), np.empty(shape, dtype, order)),
        (nn.numa_zeros(shape, dtype, order, node=0), np.zeros(shape, dtype, order)),
        (nn.numa_ones(shape, dtype, order, node=0), np.ones(shape, dtype, order)),
    ]:
        same_layout(ours, theirs)
        is_ours(ours, handler_name)
    np.testing.assert_array_equal(nn.numa_zeros(shape, dtype, order, node=0),
                                  np.zeros(shape, dtype, order))
    np.testing.assert_array_equal(nn.numa_ones(shape, dtype, order, node=0),
                                  np.ones(shape, dtype, order))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=hnp.scalar_dtypes(), order=orders, data=st.data())
def test_full_and_likes_match_numpy(shape, dtype, order, data, handler_name):
    fill = data.draw(hnp.from_dtype(dtype))
    np.testing.assert_array_equal(nn.numa_full(shape, fill, dtype, order, node=0),
                                  np.full(shape, fill, dtype, order))
    proto = np.asfortranarray(np.empty(shape, dtype)) if order == "F" else np.empty(shape, dtype)
    for like_order in ["K", "A", "C", "F"]:
        pairs = [
            (nn.numa_empty_like(proto, order=like_order, node=0),
             np.empty_like(proto, order=like_order)),
            (nn.numa_zeros_like(proto, order=like_order, node=0),
             np.zeros_like(proto, order=like_order)),
            (nn.numa_ones_like(proto, order=like_order, node=0),
             np.ones_like(proto, order=like_order)),
            (nn.numa_full_like(proto, fill, order=like_order, node=0),
             np.full_like(proto, fill, order=like_order)),
        ]
        for ours, theirs in pairs:
            same_layout(ours, theirs)
            is_ours(ours, handler_name)
        for ours, theirs in pairs[1:]:
            np.testing.assert_array_equal(ours, theirs)


@settings(max_examples=40, deadline=None)
@given(a=hnp.arrays(hnp.scalar_dtypes(), shapes), ndmin=st.integers(0, 5))
def test_numa_array_copies_onto_the_policy(a, ndmin, handler_name):
    ours = nn.numa_array(a, ndmin=ndmin, node=0)
    theirs = np.array(a, ndmin=ndmin)
    same_layout(ours, theirs)
    np.testing.assert_array_equal(ours, theirs)
    is_ours(ours, handler_name)
    if a.nbytes:
        assert not np.shares_memory(ours, a)


def test_numa_array_from_python_objects(handler_name):
    ours = nn.numa_array([[1, 2], [3, 4]], dtype=np.int16, node=0)
    np.testing.assert_array_equal(ours, np.array([[1, 2], [3, 4]], dtype=np.int16))
    is_ours(ours, handler_name)


def test_like_keeps_subclass_when_subok():
    m = np.ma.masked_array([1.0, 2.0], mask=[0, 1])
    out = nn.numa_zeros_like(m, node=0)
    assert isinstance(out, np.ma.MaskedArray)
    assert type(nn.numa_zeros_like(m, subok=False, node=0)) is np.ndarray


def test_shape_argument_of_likes():
    out = nn.numa_ones_like(np.zeros((2, 3)), shape=(4, 5), node=0)
    assert out.shape == (4, 5) and (out == 1).all()


@pytest.mark.parametrize("make", [nn.interleaved_empty, nn.interleaved_zeros,
                                  nn.interleaved_ones])
def test_interleaved_constructors(make, handler_name):
    a = make((64, 1024), np.float32)
    assert a.shape == (64, 1024) and a.dtype == np.float32
    assert handler_name(a) == "numa_numpy"
    where = nn.placement(a)
    assert where.requested == nn.Interleave()
    assert where.policy == nn.Interleave(nn.topology().usable_nodes)


def test_interleaved_full_and_explicit_nodes():
    a = nn.interleaved_full(1000, 7, np.int64, nodes=[0])
    assert (a == 7).all()
    assert nn.placement(a).policy == nn.Interleave(0)


def test_policy_keyword_and_string_forms():
    a = nn.numa_zeros(10, policy="preferred:0")
    assert nn.placement(a).policy == nn.Preferred(0)
    b = nn.numa_zeros(10, policy=nn.Interleave([0]))
    assert nn.placement(b).policy == nn.Interleave(0)


def test_default_policy_is_the_active_scope_else_local():
    assert nn.placement(nn.numa_zeros(100)).requested == nn.Local()
    with nn.policy("interleave:0"):
        assert nn.placement(nn.numa_zeros(100)).requested == nn.Interleave(0)


@pytest.mark.parametrize("kwargs, words", [
    (dict(node=0, policy="bind:0"), "not both"),
    (dict(like=np.zeros(1)), "like="),
    (dict(device="cuda"), "device="),
])
def test_arguments_we_cannot_honour_raise_type_error(kwargs, words):
    with pytest.raises(TypeError, match=words):
        nn.numa_empty(3, **kwargs)


def test_numa_array_refuses_copy_false():
    with pytest.raises(TypeError, match="always copies"):
        nn.numa_array([1, 2], copy=False, node=0)


def test_device_cpu_accepted():
    assert nn.numa_zeros(3, device="cpu", node=0).sum() == 0


@pytest.mark.parametrize("shape, error", [
    (-1, ValueError), ((2, -3), ValueError), (2**62, (ValueError, MemoryError)),
    ((2**40, 2**40), ValueError), (1.5, TypeError),
])
def test_bad_shapes_raise_like_numpy(shape, error):
    with pytest.raises(error):
        np.empty(shape)
    with pytest.raises(error):
        nn.numa_empty(shape, node=0)


def test_allocation_failure_is_a_numa_allocation_error():
    from numa_numpy._kernel.lib import lib
    lib.nn_inject_fault(lib.NN_FAULT_MMAP, 12, 1)
    try:
        with pytest.raises(nn.NumaAllocationError) as info:
            nn.numa_empty(1 << 20, node=0)
    finally:
        lib.nn_inject_fault(lib.NN_FAULT_MMAP, 0, 0)
    err = info.value
    assert isinstance(err, MemoryError)
    assert err.errno == 12 and err.policy == nn.Bind(0) and err.size == 8 << 20
    assert "ENOMEM" in str(err) and "bind:0" in str(err)


def test_object_and_structured_dtypes_work():
    o = nn.numa_full(3, None, dtype=object, node=0)
    o[1] = {"k": [1, 2]}
    assert o[1] == {"k": [1, 2]} and o[0] is None
    s = nn.numa_zeros(4, dtype=[("x", "i2"), ("y", "f4")], node=0)
    s["y"] = 2.5
    assert s["y"].sum() == 10 and s["x"].sum() == 0


@pytest.mark.parametrize("bad", [0.0, 1.0, True, False, np.float64(0), np.float64(1), np.bool_(0)])
def test_a_float_or_bool_node_is_refused_even_after_the_int_was_used(bad):
    # regression: the constructors' scope cache keyed on the raw node, and 0.0 == 0
    # as a dict key, so node=0.0 succeeded once node=0 had been used
    nn.numa_zeros(4, node=0)
    nn.numa_zeros(4, node=1 if 1 in nn.topology().node_ids else 0)
    with nn.on_node(0):
        pass
    for make in (
        lambda: nn.numa_zeros(4, node=bad),
        lambda: nn.numa_empty(4, node=bad),
        lambda: nn.on_node(bad),
        lambda: nn.numa_zeros(4, policy=nn.Bind(bad)),
    ):
        with pytest.raises(nn.InvalidNodeError, match="must be an int"):
            make()


def test_a_numpy_integer_node_is_a_node_id(handler_name):
    nn.numa_zeros(4, node=0)
    a = nn.numa_zeros(4, node=np.int64(0))
    b = nn.numa_ones(4, node=np.uint8(0), strict=True)
    for x in (a, b):
        assert handler_name(x) == "numa_numpy" and nn.placement(x).requested == nn.Bind(0)
    assert nn.on_node(np.int64(0)).policy == nn.Bind(0)
