"""Node-parallel ufuncs, reductions and map_blocks over partitioned arrays
(numa_numpy._compute.parallel): each block computed by its node's workers, the
results equal to NumPy's."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numa_numpy as nn

# Node-parallel ufuncs decide each loop's dtypes with ufunc.resolve_dtypes
# (NumPy 1.24); older NumPy computes them on NumPy's own path (same results).
needs_parallel_ufuncs = pytest.mark.skipif(
    not hasattr(np.add, "resolve_dtypes"),
    reason="node-parallel ufuncs need NumPy >= 1.24 (ufunc.resolve_dtypes)",
)


@pytest.fixture
def team():
    """min_bytes=0: every array goes through the parallel path."""
    with nn.node_team(min_bytes=0) as t:
        yield t


@needs_parallel_ufuncs
def test_example_from_the_issue(team):
    a = nn.partitioned_full((1 << 18,), 4.0)
    c = np.sqrt(a * 2.0 + 1.0)
    s = c.sum()
    assert type(c) is nn.PartitionedArray and c.layout is not None
    assert nn.blocks(c) == nn.blocks(a)
    assert s == 3.0 * (1 << 18)


DTYPES = [np.int8, np.uint8, np.int32, np.int64, np.float32, np.float64, np.complex128, np.bool_]


@st.composite
def operands(draw):
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    shape = (draw(st.integers(2, 70)),) + shape[1:]
    order = draw(st.sampled_from(["C", "F"]))
    values = draw(
        st.lists(
            st.one_of(
                st.integers(-300, 300),
                st.floats(allow_nan=True, allow_infinity=True, width=32),
            ),
            min_size=1,
            max_size=5,
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = np.resize(np.array(values, dtype=np.float64), shape)
        data = data.astype(dtype) if dtype is not np.bool_ else data > 0
    return data, order


def _partitioned(data, order):
    a = nn.partitioned_empty(data.shape, data.dtype, order)
    a[...] = data
    return a


def _same(got, expected):
    assert type(got) in (np.ndarray, nn.PartitionedArray, type(expected)) or np.isscalar(got)
    got_arr, exp_arr = np.asarray(got), np.asarray(expected)
    assert got_arr.dtype == exp_arr.dtype
    assert got_arr.shape == exp_arr.shape
    np.testing.assert_array_equal(got_arr, exp_arr)


def _both(func, *args):
    """func on the arguments, and on their plain copies; errors and warnings too."""
    plain = [np.array(x) if isinstance(x, nn.PartitionedArray) else x for x in args]
    with warnings.catch_warnings(record=True) as w_np:
        warnings.simplefilter("always")
        try:
            expected = func(*plain)
        except Exception as exc:
            expected = exc
    with warnings.catch_warnings(record=True) as w_us:
        warnings.simplefilter("always")
        try:
            got = func(*args)
        except Exception as exc:
            got = exc
    if isinstance(expected, Exception):
        assert type(got) is type(expected), (got, expected)
        return
    assert not isinstance(got, Exception), got
    _same(got, expected)
    kinds = lambda ws: sorted({str(x.message) for x in ws if x.category is RuntimeWarning})  # noqa: E731
    assert kinds(w_us) == kinds(w_np)


BINARY = [np.add, np.subtract, np.multiply, np.true_divide, np.floor_divide, np.maximum,
          np.minimum, np.power, np.equal, np.less, np.logical_and, np.bitwise_xor,
          np.arctan2, np.hypot, np.fmod]


UNARY = [np.sqrt, np.negative, np.absolute, np.exp, np.log, np.sin, np.isnan, np.square,
         np.invert, np.reciprocal, np.floor, np.sign]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    x=operands(),
    y=operands(),
    scalar=st.one_of(st.integers(-300, 300), st.floats(), st.sampled_from([np.float32(2.5),
                                                                          np.int8(-3), 2j])),
    ufunc=st.sampled_from(BINARY),
    unary=st.sampled_from(UNARY),
    mode=st.sampled_from(["same", "scalar", "row", "col", "view", "zerod"]),
)
def test_ufuncs_equal_numpy(team, x, y, scalar, ufunc, unary, mode):
    data, order = x
    a = _partitioned(data, order)
    other = y[0]
    with np.errstate(all="warn"):
        _both(unary, a)
        if mode == "same":
            b = _partitioned(np.resize(other, data.shape).astype(other.dtype), y[1])
            _both(ufunc, a, b)
        elif mode == "scalar":
            _both(ufunc, a, scalar)
            _both(ufunc, scalar, a)
        elif mode == "row":  # broadcast along the other axes: split only when spanning
            _both(ufunc, a, np.resize(other, data.shape[1:]).astype(other.dtype))
        elif mode == "col":
            _both(ufunc, a, np.resize(other, data.shape[:1] + (1,) * (data.ndim - 1)))
        elif mode == "view":  # strided views: NumPy's path
            _both(ufunc, a[::2], np.resize(other, a[::2].shape).astype(other.dtype))
        else:
            _both(ufunc, a, np.array(scalar))
        # broadcasting past the blocks: NumPy's path, and its result
        _both(ufunc, a[:1], a)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=operands(), which=st.sampled_from(["sum", "prod", "min", "max"]),
       axis=st.sampled_from([None, 0, -1, (0, 1)]), keepdims=st.booleans(),
       dtype=st.sampled_from([None, np.float64, np.int64]))
def test_reductions_equal_numpy(team, x, which, axis, keepdims, dtype):
    data, order = x
    if which == "prod" and data.dtype.kind in "fc":
        # partial products of large values overflow where NumPy's order meets a 0
        # first: keep magnitudes <= 1 (rounding and underflow only)
        data = np.clip(data.real, -1, 1).astype(data.dtype)
    a = _partitioned(data, order)
    if isinstance(axis, tuple) and data.ndim < 2:
        axis = 0
    kw = {"axis": axis, "keepdims": keepdims}
    if which in ("sum", "prod") and dtype is not None and data.dtype != np.complex128:
        kw["dtype"] = dtype

    def red(arr):
        return getattr(arr, which)(**kw)

    plain = np.array(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = red(plain)
        except Exception as exc:
            with pytest.raises(type(exc)):
                red(a)
            return
        got = red(a)
    g, e = np.asarray(got), np.asarray(expected)
    assert g.dtype == e.dtype and g.shape == e.shape
    if g.dtype.kind in "fc" and which in ("sum", "prod") and not np.all(np.isfinite(e)):
        # past overflow a reassociated complex product may give inf+0j for inf+nanj
        np.testing.assert_array_equal(np.isfinite(g), np.isfinite(e))
    elif g.dtype.kind in "fc" and which in ("sum", "prod"):
        # block partials combined in order: rounding may differ from pairwise sums
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-30, equal_nan=True)
    else:
        np.testing.assert_array_equal(g, e)  # integers, min/max: exact


@pytest.mark.parametrize("dtype", ["M8[s]", "M8[D]", "m8[ms]", "m8[s]"])
@pytest.mark.parametrize("nat", [None, 0, 777])
def test_datetime_and_timedelta_reductions_equal_numpy(dtype, nat):
    data = (np.arange(2000, dtype=np.int64) * 37 % 1000 - 300).astype(dtype).reshape(1000, 2)
    if nat is not None:
        data[nat, 1] = np.datetime64("NaT") if dtype[0] == "M" else np.timedelta64("NaT")
    a = _partitioned(data, "C")
    reductions = [
        lambda x: x.max(),
        lambda x: x.min(axis=0),
        lambda x: np.minimum.reduce(x),
        lambda x: np.maximum.reduce(x, axis=None, keepdims=True),
        lambda x: np.fmax.reduce(x, axis=None),  # skips NaT
        lambda x: np.fmin.reduce(x, axis=0),
    ]
    if dtype[0] == "m":
        reductions += [lambda x: x.sum(), lambda x: np.add.reduce(x, axis=0)]
    with nn.node_team(min_bytes=1):
        for red in reductions:
            _both(red, a)
            got, expected = red(a), red(data)
            assert np.asarray(got).dtype == np.asarray(expected).dtype
            assert str(got) == str(expected)  # NaT where NumPy has NaT


def test_integer_overflow_wraps_as_numpy(team):
    a = _partitioned(np.full(1000, 120, np.int8), "C")
    _both(np.add, a, a)
    assert (a + a).dtype == np.int8 and int((a + a)[0]) == -16
    assert a.sum() == np.full(1000, 120, np.int8).sum()  # int64 accumulator, exact
    big = _partitioned(np.full(1000, 2**62, np.int64), "C")
    assert big.sum() == np.full(1000, 2**62, np.int64).sum()  # wraps exactly as NumPy
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        with pytest.raises(OverflowError):
            a + 1000  # NEP 50: a Python int out of range for int8


def test_floating_errors_follow_the_callers_errstate(team):
    a = _partitioned(np.array([0.0, 1.0, -1.0, 2.0] * 100), "C")
    with np.errstate(all="raise"):
        divide = "divide by zero encountered in (true_)?divide"  # NumPy 1 says true_divide
        with pytest.raises(FloatingPointError, match=divide):
            1.0 / a
        with pytest.raises(FloatingPointError, match="invalid value encountered in sqrt"):
            np.sqrt(a)
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.log(a)
    seen = []
    with np.errstate(all="call", call=lambda kind, flag: seen.append((kind, flag))):
        np.log(a)
    assert ("divide by zero", 1) in seen and ("invalid value", 8) in seen
    with pytest.warns(RuntimeWarning, match="invalid value encountered in sqrt"):
        np.sqrt(a)
    nan = _partitioned(np.array([1.0, np.nan, 3.0] * 100), "C")
    assert np.isnan(nan.max()) and np.isnan(nan.min()) and np.isnan(nan.sum())
    assert np.fmax.reduce(nan) == 3.0


@needs_parallel_ufuncs
def test_out_and_in_place(team):
    a = _partitioned(np.arange(1000.0), "C")
    b = _partitioned(np.ones(1000), "C")
    ident = id(a)
    a += b
    assert id(a) == ident and a.layout is not None and a[0] == 1.0
    out = np.empty(1000)
    assert np.add(a, b, out=out) is out and out[999] == 1001.0
    np.add(a[1:], a[:-1], out=a[1:])  # overlapping: NumPy's path
    exp = np.arange(1000.0) + 1
    exp[1:] = exp[1:] + exp[:-1]
    np.testing.assert_array_equal(a, exp)
    q, r = np.divmod(a, 7.0)
    assert type(q) is nn.PartitionedArray and np.array_equal(q * 7.0 + r, a)
    with pytest.raises(TypeError):
        np.add(a, 1.5, out=np.empty(1000, np.int64))
    w = np.add(a, 1, where=a > 10)  # where=: NumPy's path
    assert type(w) is np.ndarray


@pytest.mark.parametrize("in_team", [False, True])
def test_multi_output_ufuncs_with_a_partial_out(in_team):
    data = np.arange(-500, 1500) / 7.0
    p = _partitioned(data, "C")
    with nn.node_team(min_bytes=1) if in_team else warnings.catch_warnings():
        for call in (
            lambda x, o: np.divmod(x, 3, out=(o, None)),
            lambda x, o: np.divmod(x, 3, out=(None, o)),
            lambda x, o: np.modf(x, None, o),
            lambda x, o: np.modf(x, o, None),
            lambda x, o: np.frexp(x, out=(None, o.view(np.ndarray).astype(np.int32))),
        ):
            o_us, o_np = nn.partitioned_empty(data.shape), np.empty(data.shape)
            got, expected = call(p, o_us), call(data, o_np)
            assert isinstance(got, tuple) and len(got) == len(expected) == 2
            for g, e in zip(got, expected, strict=True):
                assert (g is o_us) == (e is o_np)  # the caller's own out, else a new array
                assert g is not None and g.dtype == e.dtype
                np.testing.assert_array_equal(g, e)
            if in_team and hasattr(np.add, "resolve_dtypes"):  # the parallel path allocated it
                assert any(type(g) is nn.PartitionedArray and g is not o_us for g in got)


def test_fallbacks_without_team_and_non_elementwise():
    a = _partitioned(np.arange(12.0).reshape(3, 4), "C")
    r = a + 1
    assert type(r) is np.ndarray  # no team: NumPy's own path, a plain result
    with nn.node_team(min_bytes=0):
        assert type(np.add.accumulate(a)) is np.ndarray
        assert np.array_equal(np.add.outer(a[0], a[0]), np.add.outer(np.arange(4.0),
                                                                    np.arange(4.0)))
        assert np.matmul(a, a.T).shape == (3, 3)
        assert a.sum(axis=1).tolist() == [6.0, 22.0, 38.0]
        assert np.add(a, [1, 2, 3, 4]).tolist() == (np.arange(12.0).reshape(3, 4)
                                                    + [1, 2, 3, 4]).tolist()
        s = np.add.reduce(a, axis=None, initial=5.0)
        assert s == 71.0


def test_map_blocks(team):
    a = _partitioned(np.arange(2000.0).reshape(1000, 2), "C")
    b = team.map_blocks(lambda x: x * 2, a)
    assert type(b) is nn.PartitionedArray and nn.blocks(b) == nn.blocks(a)
    np.testing.assert_array_equal(b, np.arange(2000.0).reshape(1000, 2) * 2)
    s, d = team.map_blocks(lambda x, y: (x + y, x - y), a, b)
    np.testing.assert_array_equal(s, 3 * np.asarray(a))
    out = np.empty((1000, 2))
    assert team.map_blocks(np.negative, a, out=out) is out and out[1, 1] == -3.0
    assert team.map_blocks(lambda x: None, a) is None
    partial = team.map_blocks(lambda x, k: float(x.sum()) * k, a, 2)
    assert sum(partial) == 2 * float(np.arange(2000.0).sum())
    plain = np.arange(10.0)  # a plain array: split by the team's nodes
    np.testing.assert_array_equal(team.map_blocks(np.sqrt, plain), np.sqrt(plain))
    with pytest.raises(TypeError):
        team.map_blocks(lambda: 1)


@pytest.mark.parametrize("make", [
    lambda: nn.partitioned_zeros((0, 3), np.int16),
    lambda: nn.partitioned_zeros(0, np.float32),
    lambda: np.zeros((0, 2)),  # a plain array: split by the team's nodes
], ids=["partitioned-2d", "partitioned-1d", "plain"])
def test_map_blocks_of_no_rows_is_funcs_result_on_no_rows(make):
    a = make()
    with nn.node_team(min_bytes=1) as team:
        for func in (np.sqrt, lambda x: x.astype("U2"), lambda x: (x, x * 2)):
            got, expected = team.map_blocks(func, a), func(a.view(np.ndarray))
            got = got if isinstance(got, tuple) else (got,)
            expected = expected if isinstance(expected, tuple) else (expected,)
            assert len(got) == len(expected)
            for g, e in zip(got, expected, strict=True):
                assert type(g) is nn.PartitionedArray and g.shape == e.shape and g.dtype == e.dtype
        out = np.empty(a.shape)
        assert team.map_blocks(np.negative, a, out=out) is out
        assert [float(x) for x in team.map_blocks(np.sum, a)] == [0.0]  # one chunk's result
        assert team.map_blocks(lambda x: None, a) is None
        with pytest.raises(TypeError, match="rows to split"):
            team.map_blocks(np.sqrt, nn.partitioned_zeros(()))  # no rows at all


@needs_parallel_ufuncs
def test_min_bytes_is_the_smallest_array_that_runs_in_the_team():
    # the threshold is inclusive for ufuncs and reductions alike: an array of
    # exactly min_bytes runs block by block, one byte less stays on NumPy's path
    a = nn.partitioned_full((64, 4), 2.0)
    for min_bytes, parallel in ((a.nbytes, True), (a.nbytes + 1, False)):
        with nn.node_team(min_bytes=min_bytes) as team:
            planned = []
            plan = team.plan
            team.plan = lambda *args, **kw: planned.append(args) or plan(*args, **kw)
            total = a.sum()
            assert (len(planned) > 0) is parallel, (min_bytes, planned)
            assert (type(a + 1.0) is nn.PartitionedArray) is parallel
            del team.plan
        assert total == 2.0 * a.size


@needs_parallel_ufuncs
def test_comparisons_with_python_ints_out_of_the_dtypes_range_equal_numpy():
    # NumPy 2 compares an int8 array with 128 exactly; arithmetic with it raises
    a = nn.partitioned_zeros(64, np.int8)
    plain = np.zeros(64, np.int8)
    with nn.node_team(min_bytes=1):
        for op in (np.equal, np.not_equal, np.less, np.greater_equal):
            for value in (128, -129, 1 << 70):
                try:
                    expected = op(plain, value)
                except OverflowError:  # NumPy 1: comparisons cast too
                    with pytest.raises(OverflowError):
                        op(a, value)
                    continue
                np.testing.assert_array_equal(op(a, value), expected)
        with pytest.raises(OverflowError):
            np.add(a, 128)
