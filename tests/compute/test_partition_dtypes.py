"""Every team path over NumPy's dtype families equals NumPy or falls back to it.

Each check runs inside ``node_team(min_bytes=1)`` so the node-parallel path is
the one taken wherever it applies: ufuncs, reductions, the partitioned
constructors (and NumPy's ``*_like`` of a partitioned array) and
``map_blocks``, over bool, every integer, float16/32/64, complex64/128,
datetime64/timedelta64 in several units, bytes, str, void, structured,
object, byte-swapped and (NumPy 2) StringDType arrays; then a stateful test
over partitioned arrays' lifecycles against a plain NumPy copy.
"""

# ruff: noqa: B023 - every lambda below is called before its loop moves on

import operator
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import numa_numpy as nn

needs_parallel_ufuncs = pytest.mark.skipif(
    not hasattr(np.add, "resolve_dtypes"),
    reason="node-parallel ufuncs need NumPy >= 1.24 (ufunc.resolve_dtypes)",
)
HAS_STRINGDTYPE = hasattr(np, "dtypes") and hasattr(np.dtypes, "StringDType")

ROWS = 600  # several chunks per worker; well over min_bytes=1

DTYPES = [
    "?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16",
    ">i4", ">f8", "M8[s]", "M8[D]", "M8[ns]", "m8[ms]", "m8[s]", "S5", "U4", "V8",
    [("a", "<i4"), ("b", "S3")], [("x", "<f8"), ("y", "U2")], "O",
]
if HAS_STRINGDTYPE:
    DTYPES.append(np.dtypes.StringDType())


def dtype_id(d):
    return "StringDType" if HAS_STRINGDTYPE and isinstance(d, np.dtypes.StringDType) else str(d)


def sample(dtype, shape):
    """Deterministic values of `dtype`: negatives, zeros, repeats, and the
    family's odd values (NaN, inf, NaT, empty strings)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    ints = (np.arange(n, dtype=np.int64) * 37) % 101 - 50
    kind = dtype.kind
    if kind == "b":
        data = ints % 3 == 0
    elif kind in "iu":
        data = ints.astype(dtype) if kind == "i" else (ints + 50).astype(dtype)
    elif kind in "fc":
        data = (ints / 4).astype(dtype)
        if kind == "c":
            data = data + (ints % 7).astype(dtype) * 1j
        data[3::97] = np.nan
        data[5::89] = np.inf
        data[7::83] = -np.inf
        data[13::71] = -0.0  # beside the 0.0s: min and max must pick NumPy's zero
    elif kind in "mM":
        data = ints.astype(dtype)
        data[11::79] = np.array("NaT", dtype=dtype)
    elif kind in "SU":
        data = np.array([str(i % 13) * (i % 3) for i in ints], dtype=dtype)
    elif kind == "V" and dtype.names is None:
        data = (np.arange(n * dtype.itemsize) % 251).astype(np.uint8).view(dtype)
    elif kind == "V":
        data = np.zeros(n, dtype)
        for name in dtype.names:
            data[name] = sample(dtype.fields[name][0], (n,))
    elif kind == "O":
        data = np.empty(n, dtype)
        data[:] = [int(i) if i % 2 else float(i) / 2 for i in ints]
    else:  # StringDType
        data = np.array([str(i) * (i % 3) for i in ints], dtype=dtype)
    return np.ascontiguousarray(data).reshape(shape)


def partitioned(data, order="C"):
    a = nn.partitioned_empty(data.shape, data.dtype, order)
    a[...] = data
    return a


def _kinds(ws):
    return sorted({str(w.message) for w in ws if issubclass(w.category, RuntimeWarning)})


def outcome(func, *args):
    """func(*args): its result or exception, and the RuntimeWarnings it gave."""
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        try:
            result = func(*args)
        except Exception as exc:
            result = exc
    return result, _kinds(ws)


def assert_same(got, expected, *, close=False):
    if isinstance(expected, Exception):
        assert type(got) is type(expected), (got, expected)
        return
    assert not isinstance(got, Exception), got
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same(g, e, close=close)
        return
    g, e = np.asarray(got), np.asarray(expected)
    assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, e.dtype, g.shape, e.shape)
    if e.dtype.hasobject or e.dtype.kind in "TO":
        assert [repr(x) for x in g.ravel().tolist()] == [repr(x) for x in e.ravel().tolist()]
    elif close and e.dtype.kind in "fc":
        # past overflow a reassociated complex product may give nan+nanj for inf+nanj
        finite = np.isfinite(e)
        np.testing.assert_array_equal(np.isfinite(g), finite)
        np.testing.assert_allclose(g[finite], e[finite],
                                   rtol=2e-3 if e.dtype.itemsize <= 4 else 1e-9)
    elif e.dtype.kind in "fcmM":
        np.testing.assert_array_equal(g, e)  # NaN and NaT where NumPy has them
    else:
        assert g.tobytes() == e.tobytes()


def both(func, *args, close=False):
    """func on the arguments and on plain copies: the same result (`close`:
    float sums and products are reassociated, block by block) and the same
    warnings (not for `close` ones: inf - inf may meet in one block and not
    in NumPy's pairwise order, or the other way round)."""
    plain = [np.array(x) if isinstance(x, nn.PartitionedArray) else x for x in args]
    expected, w_np = outcome(func, *plain)
    got, w_us = outcome(func, *args)
    assert_same(got, expected, close=close)
    if not close:
        assert w_us == w_np
    return got


@pytest.fixture
def team():
    with nn.node_team(min_bytes=1) as t:
        yield t


# -- ufuncs ------------------------------------------------------------------------

UFUNCS = sorted(
    (u for u in vars(np).values() if isinstance(u, np.ufunc) and u.signature is None
     and u.nin in (1, 2)),
    key=lambda u: u.__name__,
)
UNARY = [u for u in UFUNCS if u.nin == 1]
BINARY = [u for u in UFUNCS if u.nin == 2]


def scalar_of(data):
    """A scalar of the array's kind, and a Python scalar (NEP 50 treats it
    weakly: its value may not fit the array's dtype)."""
    item = data.ravel()[1]
    kind = data.dtype.kind
    weak = item.item() if kind in "biufc" else 3 if kind in "mM" else "x" if kind in "SUT" else None
    return item, weak


@needs_parallel_ufuncs
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_every_ufunc_equals_numpy(team, dtype):
    data = sample(dtype, (ROWS, 3))
    a, b = partitioned(data), partitioned(data[::-1].copy(), "F")
    row = data[1].copy()
    item, weak = scalar_of(data)
    if not np.dtype(dtype).flags & 0x09 and np.dtype(dtype).kind in "biufcmMSU":
        assert type(a == a) is nn.PartitionedArray  # the node-parallel path is the one tested
    with np.errstate(all="warn"):
        for ufunc in UNARY:
            both(ufunc, a)
        for op in (operator.eq, operator.ne, operator.lt, operator.add, operator.mul):
            both(op, a, b)  # ndarray's operators (structured == compares fields)
        lo, hi = np.sort(data.ravel()[[2, 9]])
        both(lambda x: np.clip(x, lo, hi), a)  # three inputs (a ufunc in NumPy 2)
        both(lambda x: x.clip(row, hi), a)
        for ufunc in BINARY:
            both(ufunc, a, b)
            both(ufunc, a, row)  # broadcast along the blocks' other axis
            both(ufunc, item, a)
            if weak is not None:
                both(ufunc, a, weak)


@needs_parallel_ufuncs
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ufuncs_with_out_dtype_and_where_equal_numpy(team, dtype):
    data = sample(dtype, (ROWS,))
    a = partitioned(data)
    with np.errstate(all="ignore"):
        for ufunc in (np.add, np.multiply, np.maximum, np.equal, np.logical_or, np.divmod,
                      np.negative, np.isnan, np.isnat, np.modf):
            args = (a,) * ufunc.nin
            expected, _ = outcome(ufunc, *(data,) * ufunc.nin)
            if isinstance(expected, Exception):
                with pytest.raises(type(expected)):
                    ufunc(*args)
                continue
            first = expected[0] if isinstance(expected, tuple) else expected
            o_us, o_np = nn.partitioned_empty(a.shape, first.dtype), np.empty(a.shape, first.dtype)
            outs_us = (o_us,) + (None,) * (ufunc.nout - 1)
            outs_np = (o_np,) + (None,) * (ufunc.nout - 1)
            got = ufunc(*args, out=outs_us)
            want = ufunc(*(data,) * ufunc.nin, out=outs_np)
            assert_same(got, want)
            assert (got[0] if ufunc.nout > 1 else got) is o_us
            both(lambda *x: ufunc(*x, dtype=first.dtype), *args)
            both(lambda *x: ufunc(*x, dtype=object), *args)  # Python objects: NumPy's path
            both(lambda *x: ufunc(*x, casting="unsafe", dtype=first.dtype), *args)
            both(lambda *x: ufunc(*x, where=data.astype(bool) if data.dtype.kind in "biuf"
                                  else True, out=np.zeros_like(expected)
                                  if ufunc.nout == 1 else None), *args)


@needs_parallel_ufuncs
def test_python_object_results_take_numpys_path(team):
    """Object (and StringDType) results hold Python objects: the GIL serialises
    their loops anyway, and Python code must run in the caller's thread, under
    its contexts (decimal, warnings filters), not in a worker's."""
    a = partitioned(sample("i8", (ROWS, 3)))
    assert type(both(lambda x: np.add(x, x, dtype=object), a)) is np.ndarray
    assert type(both(lambda x: np.multiply.reduce(x, axis=0, dtype=object), a)) is np.ndarray
    if HAS_STRINGDTYPE:
        u = partitioned(sample("U4", (ROWS,)))
        got = both(lambda x: np.add(x, x, dtype=np.dtypes.StringDType), u)
        assert type(got) is np.ndarray


# -- reductions ----------------------------------------------------------------------

REDUCE_UFUNCS = [np.add, np.multiply, np.minimum, np.maximum, np.fmin, np.fmax,
                 np.logical_and, np.logical_or, np.bitwise_and, np.bitwise_or, np.bitwise_xor]
METHODS = ["sum", "prod", "min", "max", "any", "all", "mean", "std", "argmax", "ptp"]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("order", ["C", "F"])
def test_every_reduction_equals_numpy(team, dtype, order):
    data = sample(dtype, (ROWS, 3))
    a = partitioned(data, order)
    with np.errstate(all="warn"):
        for axis in (None, 0, 1, (0, 1)):
            if axis == (1 if order == "C" else 0) or (axis is None and order == "F"):
                continue  # reductions that miss the split axis are NumPy's path anyway
            for keepdims in (False, True):
                for ufunc in REDUCE_UFUNCS:
                    both(lambda x: ufunc.reduce(x, axis=axis, keepdims=keepdims), a,
                         close=ufunc in (np.add, np.multiply))
                for method in ("sum", "prod", "min", "max", "any", "all"):
                    both(lambda x: getattr(x, method)(axis=axis, keepdims=keepdims), a,
                         close=method in ("sum", "prod"))
        for method in METHODS:
            both(lambda x: getattr(x, method)(), a, close=method in ("sum", "prod", "mean", "std"))
        for acc in (None, np.int64, np.float64):
            both(lambda x: x.sum(dtype=acc), a, close=True)
            both(lambda x: np.add.reduce(x, axis=None, dtype=acc, keepdims=True), a, close=True)


@pytest.mark.parametrize("dtype", ["i1", "u2", "?", "f2"])
def test_reductions_with_a_narrow_dtype_keep_it(team, dtype):
    data = sample(dtype, (ROWS,))
    a = partitioned(data)
    for acc in ("i1", "i4", "u4", "f2"):
        both(lambda x: x.sum(dtype=acc), a, close=True)
        both(lambda x: np.multiply.reduce(x, dtype=acc), a, close=True)


# -- constructors ----------------------------------------------------------------------


def _fill_values(dtype):
    dtype = np.dtype(dtype)
    values = [0, 1, -1, 300, 2.5, 1 + 2j, "7", b"7", None, (1, "a"), [1, 2, 3],
              np.arange(3), np.ones((ROWS, 1)), np.arange(ROWS * 3).reshape(ROWS, 3)]
    values.append(sample(dtype, (3,))[1])
    values.append(sample(dtype, (ROWS, 3)))
    return values


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("order", ["C", "F"])
def test_constructors_equal_numpy(team, dtype, order):
    shape = (ROWS, 3)
    for ours, theirs in [(nn.partitioned_zeros, np.zeros), (nn.partitioned_ones, np.ones)]:
        expected, w_np = outcome(theirs, shape, dtype, order)
        got, w_us = outcome(ours, shape, dtype, order)
        assert_same(got, expected)
        assert w_us == w_np
    empty = nn.partitioned_empty(shape, dtype, order)
    assert empty.dtype == np.dtype(dtype) and empty.shape == shape
    assert empty.flags.f_contiguous if order == "F" else empty.flags.c_contiguous
    if np.dtype(dtype).flags & 0x09:  # NumPy initialises these items even in np.empty
        assert_same(empty, np.empty(shape, dtype, order))
    for value in _fill_values(dtype):
        expected, w_np = outcome(lambda v: np.full(shape, v, dtype, order), value)
        got, w_us = outcome(lambda v: nn.partitioned_full(shape, v, dtype, order), value)
        assert_same(got, expected)
        assert w_us == w_np
    plain = sample(dtype, shape)
    a = partitioned(plain, order)
    for like in (np.zeros_like, np.ones_like, np.empty_like):
        assert_same(like(a) if like is not np.empty_like else like(a).shape,
                    like(plain) if like is not np.empty_like else like(plain).shape)
    for value in (0, 1, sample(dtype, (3,))[2]):
        assert_same(outcome(np.full_like, a, value)[0], outcome(np.full_like, plain, value)[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_zero_dimensional_arrays_equal_numpy(team, dtype):
    """0-d: no rows to split; every path gives NumPy's answer."""
    value = sample(dtype, (3,))[1]
    for ours, theirs in [(nn.partitioned_zeros, np.zeros), (nn.partitioned_ones, np.ones),
                         (nn.partitioned_empty, np.empty)]:
        got, expected = outcome(ours, (), dtype)[0], outcome(theirs, (), dtype)[0]
        assert_same(got if ours is not nn.partitioned_empty else got.shape,
                    expected if theirs is not np.empty else expected.shape)
    a, plain = nn.partitioned_full((), value, dtype), np.full((), value, dtype)
    assert_same(a, plain)
    rows = partitioned(sample(dtype, (ROWS,)))
    with np.errstate(all="ignore"):
        for func in (lambda x: x + x, lambda x: x == x, np.negative, np.isnan,
                     lambda x: x.max(), lambda x: x.sum(),
                     lambda x: np.maximum.reduce(x, axis=None)):
            both(func, a)
        both(np.add, a, rows)  # a 0-d partitioned array beside one with rows
        both(np.minimum, rows, a)
    with pytest.raises(TypeError, match="rows to split"):
        team.map_blocks(np.copy, a)


@pytest.mark.parametrize("dtype", [None, "i2", "f4", "U3", "O"])
def test_full_infers_and_broadcasts_as_numpy(team, dtype):
    for value in (7, 2.5, "ab", [1, 2, 3], [[1], [2]], np.arange(6).reshape(2, 3), (1, 2, 3)):
        for shape in [(2, 3), (4000, 3), (0, 3)]:
            expected, w_np = outcome(lambda: np.full(shape, value, dtype))
            got, w_us = outcome(lambda: nn.partitioned_full(shape, value, dtype))
            assert_same(got, expected)
            assert w_us == w_np


# -- map_blocks ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_map_blocks_equals_numpy(team, dtype):
    data = sample(dtype, (ROWS, 3))
    a = partitioned(data)
    for func in (np.copy, lambda x: x[:, ::-1], np.zeros_like, lambda x: x.astype(object)):
        got = team.map_blocks(func, a)
        assert type(got) is nn.PartitionedArray
        assert_same(got, func(data))
    out = np.empty_like(data)
    assert team.map_blocks(np.copy, a, out=out) is out
    assert_same(out, data)
    for rows in (data[:0], data[:1]):
        assert_same(team.map_blocks(np.copy, partitioned(rows)), rows)


# -- lifecycles ------------------------------------------------------------------------

LIFE_DTYPES = ["f8", "f4", "i8", "i4", "u1", "c16", "m8[s]", "M8[ms]", "?"]


class PartitionedLife(RuleBasedStateMachine):
    """One partitioned array through NumPy's in-place and copying operations,
    each compared, inside a team, with the same operations on a NumPy copy."""

    def __init__(self):
        super().__init__()
        self.team = nn.node_team(min_bytes=1).start()
        self.ours = None
        self.mirror = None

    def teardown(self):
        self.team.close()

    @rule(dtype=st.sampled_from(LIFE_DTYPES), rows=st.integers(0, 5000),
          cols=st.sampled_from([1, 2, 3, 4]), order=st.sampled_from("CF"),
          how=st.sampled_from(["zeros", "ones", "full", "empty", "scope"]))
    def make(self, dtype, rows, cols, order, how):
        shape = (rows, cols)
        three = np.array(3).astype(dtype)
        if how == "scope":  # NumPy's own array in a Partitioned scope: it owns its memory
            with nn.policy(nn.Partitioned()):
                self.ours = np.full(shape, three, dtype, order)
            self.mirror = np.full(shape, three, dtype, order)
            return
        if how == "empty":
            self.ours = nn.partitioned_empty(shape, dtype, order)
            self.ours[...] = sample(dtype, shape)
        else:
            self.ours = {"zeros": nn.partitioned_zeros, "ones": nn.partitioned_ones,
                         "full": lambda s, d, o: nn.partitioned_full(s, three, d, o),
                         }[how](shape, dtype, order)
        # a partitioned array is a view of the block NumPy allocated (ndarray.resize
        # refuses it, as any view): so is its mirror
        self.mirror = np.array(self.ours, order=order)[...]

    def _both_inplace(self, change):
        """Apply `change` to both; NumPy refusing it means we must refuse it too."""
        try:
            change(self.mirror)
        except (ValueError, TypeError, AttributeError) as exc:
            with pytest.raises(type(exc)):
                change(self.ours)
            return
        change(self.ours)

    @precondition(lambda self: self.ours is not None)
    @rule(data=st.data())
    def reshape_in_place(self, data):
        size = self.ours.size
        divisors = [d for d in range(1, min(size, 64) + 1) if size % d == 0] or [1]
        cols = data.draw(st.sampled_from(divisors))
        shape = (size // cols, cols) if size else (0, cols)
        self._both_inplace(lambda x: setattr(x, "shape", shape))

    @precondition(lambda self: self.ours is not None)
    @rule(to=st.sampled_from(["i4", "f4", "u1", "i8", "f8", "c8", "i2"]))
    def dtype_view_in_place(self, to):
        self._both_inplace(lambda x: setattr(x, "dtype", np.dtype(to)))

    @precondition(lambda self: self.ours is not None)
    @rule(flatten=st.booleans())
    def reshape_copy(self, flatten):
        self.ours = self.ours.reshape(-1) if flatten else self.ours.reshape(self.ours.shape)
        self.mirror = self.mirror.reshape(-1) if flatten else self.mirror.reshape(
            self.mirror.shape)

    @precondition(lambda self: self.ours is not None and self.ours.ndim)
    @rule(start=st.integers(0, 8), step=st.sampled_from([1, 1, 2, -1]))
    def slice_rows(self, start, step):
        self.ours, self.mirror = self.ours[start::step], self.mirror[start::step]

    @precondition(lambda self: self.ours is not None)
    @rule(extra=st.integers(-100, 100), copy=st.booleans())
    def resize(self, extra, copy):
        if copy:  # a copy owns its memory: resize works on both
            self.ours, self.mirror = self.ours.copy(), self.mirror.copy()
        new = max(self.ours.size + extra, 0)
        self._both_inplace(lambda x: x.resize(new, refcheck=False))

    @precondition(lambda self: self.ours is not None)
    @rule()
    def pickle_round_trip(self):
        self.ours = pickle.loads(pickle.dumps(self.ours))
        self.mirror = pickle.loads(pickle.dumps(self.mirror))

    @precondition(lambda self: self.ours is not None)
    @rule(op=st.sampled_from(["add", "mul", "neg", "max", "sum", "min", "eq", "iadd", "map"]))
    def compute(self, op):
        ops = {
            "add": lambda x: x + x,
            "mul": lambda x: x * 3 if x.dtype.kind != "M" else x,
            "neg": lambda x: np.negative(x) if x.dtype.kind not in "bM" else ~x
            if x.dtype.kind == "b" else x,
            "max": lambda x: x.max(axis=0) if x.ndim and len(x) else x,
            "min": lambda x: np.minimum.reduce(x, axis=None) if x.size else x,
            "sum": lambda x: x.sum(axis=0) if x.dtype.kind != "M" else x,
            "eq": lambda x: x == x,
        }
        if op == "iadd":
            if self.mirror.dtype.kind in "Mb":
                return
            with np.errstate(all="ignore"):
                self.mirror += 1 if self.mirror.dtype.kind != "m" else np.timedelta64(1, "s")
                self.ours += 1 if self.ours.dtype.kind != "m" else np.timedelta64(1, "s")
            return
        if op == "map":
            if not self.ours.ndim:
                return
            got = self.team.map_blocks(np.copy, self.ours)
            assert_same(got, self.mirror)
            return
        with np.errstate(all="ignore"):
            expected, _ = outcome(ops[op], self.mirror)
            got, _ = outcome(ops[op], self.ours)
        assert_same(got, expected, close=op == "sum")

    @invariant()
    def same_as_numpy(self):
        if self.ours is not None:
            assert self.ours.shape == self.mirror.shape and self.ours.dtype == self.mirror.dtype
            assert_same(np.array(self.ours), self.mirror)
            layout = getattr(self.ours, "layout", None)
            if layout is not None:  # a layout, when used, describes the array as it is
                assert layout.shape == self.ours.shape
                blocks = nn.blocks(self.ours)
                assert blocks[0][1].start == 0
                assert blocks[-1][1].stop == self.ours.shape[layout.axis]


PartitionedLife.TestCase.settings = settings(
    max_examples=25, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_partitioned_lifecycle_equals_numpy = needs_parallel_ufuncs(PartitionedLife.TestCase)


@needs_parallel_ufuncs
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(LIFE_DTYPES), rows=st.integers(1, 3000), cols=st.integers(1, 5),
       to=st.sampled_from(["i1", "f4", "i8", "c16"]))
def test_in_place_shape_and_dtype_changes_equal_numpy(team, dtype, rows, cols, to):
    data = sample(dtype, (rows, cols))
    a, plain = partitioned(data), data.copy()
    for x in (a, plain):
        x.shape = (rows * cols,)
        try:
            x.dtype = np.dtype(to)
        except ValueError:
            pass
    assert a.shape == plain.shape and a.dtype == plain.dtype
    with np.errstate(all="ignore"):
        both(lambda x: x + x, a)
        both(lambda x: np.maximum.reduce(x), a)
        both(lambda x: x.sum(), a, close=True)
