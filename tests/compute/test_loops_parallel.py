"""Node-parallel ufunc loops (numa_numpy._compute.loops): with parallel mode on
and the threshold tiny (every call of two or more elements is split), NumPy's
ufuncs give the very bytes they give serially; reductions agree within the
documented reassociation (integers exactly); float errors raise exactly when
they do serially; threads, asyncio tasks and a forked child compute right.
Every test checks that calls were split, so none passes vacuously."""

from __future__ import annotations

import asyncio
import os
import threading
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numa_numpy as nn
from numa_numpy._compute import loops

BINARY = [np.add, np.subtract, np.multiply, np.true_divide, np.floor_divide, np.maximum,
          np.minimum, np.fmax, np.fmin, np.less, np.less_equal, np.greater,
          np.greater_equal, np.equal, np.not_equal, np.logical_and, np.logical_or,
          np.logical_xor]
UNARY = [np.negative, np.absolute, np.sqrt, np.exp, np.log, np.sin, np.cos, np.tan,
         np.logical_not]
DTYPES = [np.bool_, np.int32, np.int64, np.float32, np.float64, np.complex64, np.complex128]
SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def process_mode_restored():
    yield
    nn.set_parallel(False, threshold=loops.DEFAULT_THRESHOLD)


def splits() -> int:
    info = nn.parallel_info()
    return int(info["split"]) + int(info["reduce_split"])


def outcome(fn, *args, **kw):
    """(result, None) or (None, the exception's type), warnings silenced."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kw), None
        except (TypeError, ValueError) as e:  # no loop for the dtype: both alike
            return None, type(e)


def serial_and_parallel(fn, *args, **kw):
    with nn.parallel(False):
        want = outcome(fn, *args, **kw)
    with nn.parallel(threshold=2):
        got = outcome(fn, *args, **kw)
    return want, got


def assert_same_bytes(want, got):
    want, got = np.asarray(want), np.asarray(got)
    assert want.dtype == got.dtype and want.shape == got.shape
    assert np.array_equal(want, got, equal_nan=want.dtype.kind in "fc")
    assert want.tobytes() == got.tobytes()


def assert_same_outcome(pair):
    (want, want_exc), (got, got_exc) = pair
    assert want_exc == got_exc
    if want_exc is None:
        assert_same_bytes(want, got)


@st.composite
def operands(draw, count: int):
    """`count` arrays of one shape and dtype, strided, reversed or F-ordered."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(st.sampled_from([(0,), (1,), (2,), (3,), (7,), (255,), (1023,), (2049,),
                                  (33, 17), (4, 257), (1, 600)]))
    arrays = []
    for _ in range(count):
        a = draw(hnp.arrays(dtype, shape, elements=hnp.from_dtype(dtype)))
        view = draw(st.sampled_from(["plain", "reversed", "step2", "fortran"]))
        if view == "reversed":
            a = a[::-1]
        elif view == "step2":
            a = np.repeat(a, 2, axis=0)[::2]
        elif view == "fortran":
            a = np.asfortranarray(a)
        arrays.append(a)
    return arrays


def check_split(arrays, before):
    """float64 has a replaced loop for every ufunc here: two elements or more split."""
    if arrays[0].dtype == np.float64 and arrays[0].size >= 2:
        assert splits() > before, "a float64 call was not split"


@SETTINGS
@given(st.sampled_from(BINARY), operands(2))
def test_binary_ufuncs_give_numpys_bytes(fn, ab):
    before = splits()
    assert_same_outcome(serial_and_parallel(fn, *ab))
    check_split(ab, before)


@SETTINGS
@given(st.sampled_from(UNARY), operands(1))
def test_unary_ufuncs_give_numpys_bytes(fn, a):
    before = splits()
    assert_same_outcome(serial_and_parallel(fn, *a))
    check_split(a, before)


def test_the_property_tests_split_calls():
    before = splits()
    a = np.arange(1000.0)
    with nn.parallel(threshold=2):
        np.add(a, a)
    assert splits() == before + 1
    with nn.parallel(threshold=len(a) + 1):
        np.add(a, a)  # below its threshold: whole
    assert splits() == before + 1


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.float64, np.complex128])
def test_in_place_aliased_and_broadcast_outputs(dtype):
    rng = np.random.default_rng(7)
    base = (rng.standard_normal(4099) * 1000).astype(dtype)
    before = splits()
    cases = [
        lambda a: np.add(a, a, out=a),
        lambda a: np.multiply(a, 3, out=a),
        lambda a: np.subtract(a[::-1], a, out=a),  # NumPy copies the overlap
        lambda a: np.add(a[1:], a[:-1], out=a[1:]),
        lambda a: np.negative(a[::2], out=a[::2]),
        lambda a: np.add(a, dtype(2)),
        lambda a: np.maximum(dtype(5), a) if a.dtype.kind != "c" else a + 1,
        lambda a: np.add(a.reshape(1, -1), np.ones((3, 1), dtype)),
    ]
    for case in cases:
        with nn.parallel(False):
            x = base.copy()
            want = case(x)
        with nn.parallel(threshold=2):
            y = base.copy()
            got = case(y)
        assert_same_bytes(want, got)
        assert_same_bytes(x, y)
    assert splits() > before


def test_nan_inf_overflow_and_division_by_zero():
    f = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324] * 300)
    i = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min, -1, 0, 1, 7] * 300)
    i32 = i.astype(np.int32)
    before = splits()
    for fn, args in [
        (np.add, (f, f)), (np.multiply, (f, f[::-1])), (np.true_divide, (f, f[::-1])),
        (np.maximum, (f, f[::-1])), (np.fmin, (f, f[::-1])), (np.sqrt, (f,)),
        (np.exp, (f,)), (np.log, (f,)), (np.sin, (f,)),
        (np.add, (i, i)), (np.multiply, (i, i[::-1])), (np.negative, (i,)),
        (np.absolute, (i32,)), (np.floor_divide, (i, i[::-1])), (np.true_divide, (i, i[::-1])),
        (np.floor_divide, (i32, i32[::-1])), (np.subtract, (i32, i32[::-1])),
    ]:
        assert_same_outcome(serial_and_parallel(fn, *args))
    assert splits() > before


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.int64])
@pytest.mark.parametrize("fn", [np.add, np.multiply, np.maximum, np.minimum,
                                np.logical_and, np.logical_or])
def test_integer_reductions_are_exact(dtype, fn):
    rng = np.random.default_rng(3)
    a = rng.integers(-50, 50, size=100_003).astype(dtype)
    before = nn.parallel_info()["reduce_split"]
    for arg in (a, a[::3], a[::-1]):
        (want, _), (got, _) = serial_and_parallel(fn.reduce, arg)
        assert_same_bytes(want, got)
    assert nn.parallel_info()["reduce_split"] > before


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-4), (np.float64, 1e-12)])
def test_float_reductions_agree_within_the_reassociation(dtype, rtol):
    rng = np.random.default_rng(5)
    a = rng.random(200_001).astype(dtype)
    b = rng.random((301, 257)).astype(dtype)
    before = nn.parallel_info()["reduce_split"]
    for fn, arg, kw in [(np.add.reduce, a, {}), (np.sum, a[::2], {}),
                        (np.multiply.reduce, 1 + a[:2000] / 1000, {}), (np.sum, b, {"axis": 1}),
                        (np.sum, b, {"axis": 0}), (np.max, a, {}), (np.fmin.reduce, a, {})]:
        (want, _), (got, _) = serial_and_parallel(fn, arg, **kw)
        np.testing.assert_allclose(got, want, rtol=rtol)
        assert np.asarray(got).dtype == np.asarray(want).dtype
    with_nan = a.copy()
    with_nan[150_000] = np.nan
    (want, _), (got, _) = serial_and_parallel(np.maximum.reduce, with_nan)
    assert np.isnan(want) and np.isnan(got)
    assert nn.parallel_info()["reduce_split"] > before


@pytest.mark.parametrize("where", [0, 5000, 9999])
@pytest.mark.parametrize(
    "what,fn,value",
    [("divide", np.true_divide, 0.0), ("invalid", np.sqrt, -1.0),
     ("overflow", np.exp, 1000.0), ("invalid", np.log, -1.0)],
)
def test_errstate_raise_is_kept(where, what, fn, value):
    a = np.ones(10_000)
    a[where] = value
    args = (np.ones(10_000), a) if fn is np.true_divide else (a,)
    before = splits()
    for mode in (False, True):
        with nn.parallel(mode, threshold=2), np.errstate(all="raise"):
            with pytest.raises(FloatingPointError, match=what):
                fn(*args)
            fn(*(np.ones(10_000) for _ in args))  # nothing raised: nothing left over
    assert splits() == before + 2
    with nn.parallel(threshold=2), np.errstate(all="ignore"):
        assert_same_bytes(fn(*args), np.asarray(fn(*args)))


def test_integer_division_by_zero_warns_as_serially():
    a, b = np.arange(10_000), np.zeros(10_000, dtype=np.int64)
    b[:-1] = 3
    for mode in (False, True):
        with nn.parallel(mode, threshold=2), np.errstate(divide="raise"):
            with pytest.raises(FloatingPointError):
                np.floor_divide(a, b)


def test_several_threads_at_once():
    nn.set_parallel(True, threshold=2)
    rng = np.random.default_rng(11)
    data = [rng.standard_normal(50_000) for _ in range(4)]
    with nn.parallel(False):
        want = [np.sqrt(np.abs(d)) * d + d for d in data]
    got: dict[int, list[np.ndarray]] = {}

    def work(i):
        got[i] = [np.sqrt(np.abs(data[i])) * data[i] + data[i] for _ in range(20)]

    before = splits()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for r in got[i]:
            assert_same_bytes(want[i], r)
    assert splits() > before


def test_asyncio_tasks():
    a = np.arange(100_000.0)
    with nn.parallel(False):
        want = np.cos(a) * a

    async def task(mode):
        out = []
        for _ in range(5):
            with nn.parallel(mode, threshold=2):
                out.append(np.cos(a) * a)
            await asyncio.sleep(0)
        return out

    async def main():
        return await asyncio.gather(task(True), task(False), task(True))

    before = splits()
    for results in asyncio.run(main()):
        for r in results:
            assert_same_bytes(want, r)
    assert splits() >= before + 20


def test_a_forked_child_computes_and_splits():
    nn.set_parallel(True, threshold=2)
    a = np.arange(200_000, dtype=np.int64)
    want = a * a + a
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            before = splits()
            got = a * a + a
            code = 0 if np.array_equal(got, want) and splits() > before else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_overrides_nest_and_belong_to_the_thread():
    nn.set_parallel(True, threshold=1000)
    assert nn.parallel_info()["thread"] is None
    with nn.parallel(False):
        assert nn.parallel_info()["thread"] is False
        with nn.parallel(threshold=5):
            assert nn.parallel_info()["thread"] is True
            seen = []
            t = threading.Thread(target=lambda: seen.append(nn.parallel_info()["thread"]))
            t.start()
            t.join()
            assert seen == [None]
        assert nn.parallel_info()["thread"] is False
        before = splits()
        np.add(np.ones(5000), 1)  # off in this thread
        assert splits() == before
    before = splits()
    np.add(np.ones(5000), 1)  # on for the process
    assert splits() == before + 1


def test_info_reports_the_settings():
    nn.set_parallel(True, threshold=12345)
    info = nn.parallel_info()
    assert info["enabled"] is True and info["threshold"] == 12345
    assert info["loops_installed"] > 100 and info["numpy"] == np.__version__
    assert sum(info["workers"].values()) >= 1
    nn.set_parallel(False)
    assert nn.parallel_info()["enabled"] is False
    assert nn.parallel_info()["threshold"] == 12345


def test_nodes_choose_the_workers():
    topo = nn.topology()
    allowed = set(topo.allowed_cpus)
    node = next(n for n in topo.nodes if set(n.cpus) & allowed)
    nn.set_parallel(True, nodes=[node.id])
    assert nn.parallel_info()["workers"] == {node.id: len(set(node.cpus) & allowed)}
    with nn.parallel(threshold=2):
        before = splits()
        np.add(np.ones(100), 1)
        assert splits() == before + 1
    nn.set_parallel(True, nodes=None)  # the nodes stay those chosen last
    assert set(nn.parallel_info()["workers"]) == {node.id}


@pytest.mark.parametrize("call", [
    lambda: nn.set_parallel(True, threshold=-1),
    lambda: nn.set_parallel(True, threshold=0),
    lambda: nn.set_parallel(True, threshold=2.5),
    lambda: nn.set_parallel(1),
    lambda: nn.set_parallel(True, nodes=[4095]),
    lambda: nn.set_parallel(True, nodes=[]),
    lambda: nn.parallel("yes"),
    lambda: nn.parallel(threshold=-3),
])
def test_bad_settings_raise(call):
    with pytest.raises(nn.ParallelSettingError):
        call()


def test_threshold_from_the_environment(monkeypatch):
    monkeypatch.setattr(loops, "_state", {"threshold": None, "nodes": None})
    monkeypatch.setenv("NUMA_NUMPY_PARALLEL_THRESHOLD", "4096")
    nn.set_parallel(True)
    assert nn.parallel_info()["threshold"] == 4096
    monkeypatch.setenv("NUMA_NUMPY_PARALLEL_THRESHOLD", "many")
    with pytest.raises(nn.ParallelSettingError, match="NUMA_NUMPY_PARALLEL_THRESHOLD"):
        nn.set_parallel(True)
    monkeypatch.setenv("NUMA_NUMPY_PARALLEL_THRESHOLD", "-5")
    with pytest.raises(nn.ParallelSettingError):
        nn.set_parallel(True)
    monkeypatch.delenv("NUMA_NUMPY_PARALLEL_THRESHOLD")


@pytest.mark.multinode
def test_pieces_of_a_partitioned_array_run_on_the_nodes_of_its_pages():
    from numa_numpy._kernel import loops as kernel_loops

    nodes = [n for n in nn.topology().usable_nodes if n in nn.topology().cpu_nodes][:2]
    if len(nodes) < 2:
        pytest.skip("needs two nodes with both CPUs and memory")
    nn.set_parallel(True, threshold=2)
    a = np.asarray(nn.partitioned_full(1 << 22, 1.5, nodes=nodes))
    pages = nn.placement(a).pages
    assert set(pages) == set(nodes)  # the kernel's word on where the parts are
    kernel_loops.set_record(True)
    try:
        before = nn.parallel_info()["local_pieces"]
        np.multiply(a, 2.0, out=a)
        record = kernel_loops.last_record()
    finally:
        kernel_loops.set_record(False)
    workers = nn.parallel_info()["workers"]
    assert nn.parallel_info()["local_pieces"] - before == sum(workers[n] for n in nodes)
    assert [node for _, node in record] == [n for n in nodes for _ in range(workers[n])]
    assert all(nn.topology().node_of_cpu(cpu) == node for cpu, node in record)
    assert np.all(a == 3.0)
