import json
import mmap
import multiprocessing as mp
import os
import pickle
import struct
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numa_numpy as nn


def _fill_in_child(name, value):
    a = nn.attach_shared(name)
    a[:] = value
    return int(os.getpid())


def _row_sum(a, i):  # receives a pickled SharedArray: attaches, no copy
    a[i] += 1
    return float(a[i].sum()), a.shared_name


def test_create_attach_and_see_the_same_memory():
    a = nn.shared_zeros((4, 5), np.int32, node=0, prefault="touch")
    b = nn.attach_shared(a.shared_name)
    b[2, 3] = 9
    assert a[2, 3] == 9 and b.dtype == np.int32 and b.shape == (4, 5)
    where = nn.placement(a)
    assert where.policy == nn.Bind(0) and where.pages == {0: where.total_pages}


def test_processes_write_through_the_name():
    a = nn.shared_zeros(1000, node=0)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_fill_in_child, args=(a.shared_name, 3.0))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert (a == 3.0).all()


def test_process_pool_receives_the_array_not_a_copy():
    a = nn.shared_zeros((4, 100), node=0)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        results = list(pool.map(_row_sum, [a] * 4, range(4)))
    assert [r[0] for r in results] == [100.0] * 4
    assert {r[1] for r in results} == {a.shared_name}
    assert (a == 1).all()  # the workers wrote into our memory


def test_views_pickle_as_views():
    a = nn.shared_zeros((6, 8), np.float32, node=0)
    a[:] = np.arange(48).reshape(6, 8)
    v = a[::-2, 1:5]
    w = pickle.loads(pickle.dumps(v))
    np.testing.assert_array_equal(w, v)
    w[0, 0] = -1
    assert a[5, 1] == -1
    assert type(a + 1) is np.ndarray  # ufunc results are ordinary arrays
    assert type(pickle.loads(pickle.dumps(a + 1))) is np.ndarray


def test_structured_and_fortran():
    dt = np.dtype([("x", "<i2"), ("y", "<f8", (2,))])
    a = nn.shared_zeros((3, 2), dt, order="F", node=0)
    b = nn.attach_shared(a.shared_name)
    assert b.dtype == dt and b.flags.f_contiguous


def test_creator_unlinks_attachers_do_not():
    a = nn.shared_zeros(10, name=f"nn_test_{os.getpid()}", node=0)
    path = Path("/dev/shm") / a.shared_name
    assert path.exists()
    b = nn.attach_shared(a.shared_name)
    with pytest.raises(nn.NumaError, match="only the process that created"):
        pickle.loads(pickle.dumps(b)).unlink() if False else _attached_unlink(a.shared_name)
    del b
    a.unlink()
    assert not path.exists()
    a[:] = 1  # the mapping outlives the name
    assert a.sum() == 10


def _attached_unlink(name):
    from numa_numpy import _shared
    owner = _shared._created.pop(name)
    try:
        nn.attach_shared(name).unlink()
    finally:
        _shared._created[name] = owner


def test_name_released_when_the_last_array_dies():
    import gc
    a = nn.shared_zeros(10, node=0)
    path = Path("/dev/shm") / a.shared_name
    view = a[2:]
    del a
    gc.collect()
    assert path.exists()  # the view keeps it
    del view
    gc.collect()
    assert not path.exists()


def test_bad_names():
    with pytest.raises(nn.NumaError, match="no shared memory named"):
        nn.attach_shared("numa_numpy_does_not_exist")
    a = nn.shared_zeros(1, node=0)
    with pytest.raises(nn.NumaError, match="already exists"):
        nn.shared_zeros(1, name=a.shared_name, node=0)
    with pytest.raises(nn.NumaError, match="invalid"):
        nn.shared_zeros(1, name="a/b", node=0)
    with pytest.raises(nn.InvalidNodeError):
        nn.shared_zeros(1, node=42)


# --- the segment format: a header sized to what it holds (issue 16 item 1) ---

SHM = Path("/dev/shm")
WIDE = np.dtype([(f"column_{i:03d}", "f8") for i in range(250)])  # a 6 KiB description


def _data_offset(a):
    return a.__array_interface__["data"][0] - nn._shared.buffer_address(nn._shared._segment_of(a))


@pytest.mark.parametrize("count", [10, 1, 0])
def test_a_long_dtype_description_does_not_run_into_the_data(count):
    a = nn.shared_zeros(count, dtype=WIDE, node=0)
    assert np.count_nonzero(a.view(np.uint8)) == 0  # the header wrote nothing into the data
    b = nn.attach_shared(a.shared_name)
    assert b.dtype == WIDE and b.shape == (count,)
    if count:
        b["column_249"][-1] = 2.5
        assert a["column_249"][-1] == 2.5
    # the header takes whole pages: the data stays page-aligned for mbind
    assert _data_offset(a) % mmap.PAGESIZE == 0 and _data_offset(a) > 4096


def test_the_header_is_sized_in_runtime_pages(monkeypatch):
    # issue 11: kernels with 16/64 KiB pages need the data at a page multiple of theirs
    monkeypatch.setattr(mmap, "PAGESIZE", 65536)
    a = nn.shared_zeros(100, node=0)
    assert _data_offset(a) == 65536
    assert os.path.getsize(SHM / a.shared_name) == 2 * 65536
    version, meta_bytes, data_offset, data_bytes = struct.unpack_from(
        "<IIQQ", (SHM / a.shared_name).read_bytes(), 8)
    assert (version, data_offset, data_bytes) == (2, 65536, 65536)
    assert nn.attach_shared(a.shared_name).shape == (100,)


def test_the_documented_layout():
    a = nn.shared_zeros((3, 2), "<i4", order="F", node=0)
    raw = (SHM / a.shared_name).read_bytes()
    magic, version, meta_bytes, data_offset, data_bytes, pid, started, _ns, reserved = \
        struct.unpack_from("<8sIIQQQQQQ", raw)
    assert magic == b"NNSHARED" and version == 2 and reserved == 0
    assert pid == os.getpid() and started == int(
        Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    meta = json.loads(raw[64:64 + meta_bytes])
    assert meta == {"shape": [3, 2], "order": "F", "dtype": "<i4", "policy": "bind:0"}
    assert data_offset == mmap.PAGESIZE and data_bytes == mmap.PAGESIZE
    assert raw[64 + meta_bytes:data_offset].strip(b"\0") == b""


def _shareable_dtypes():
    leaves = hnp.scalar_dtypes() | hnp.unicode_string_dtypes() | hnp.byte_string_dtypes()
    nested = hnp.nested_dtypes(subtype_strategy=leaves, max_itemsize=1 << 12)
    long_structs = st.integers(100, 400).map(
        lambda n: np.dtype([(f"field_number_{i}", "u1", (2,)) for i in range(n)]))
    subarrays = hnp.array_dtypes(leaves, allow_subarrays=True)
    return leaves | nested | long_structs | subarrays


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=_shareable_dtypes(), shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                          max_side=5),
       order=st.sampled_from("CF"), data=st.data())
def test_any_plain_dtype_and_shape_round_trips(dtype, shape, order, data):
    a = nn.shared_zeros(shape, dtype, order=order, node=0)
    flat = np.frombuffer(nn._shared._segment_of(a), np.uint8)
    start = _data_offset(a)
    assert np.count_nonzero(flat[start:]) == 0  # the header stayed out of the data
    payload = data.draw(st.binary(min_size=a.nbytes, max_size=a.nbytes))
    flat[start:start + a.nbytes] = np.frombuffer(payload, np.uint8)
    assert a.tobytes(order="A") == payload
    for other in (nn.attach_shared(a.shared_name), pickle.loads(pickle.dumps(a, protocol=5))):
        assert other.dtype == dtype and other.shape == a.shape
        assert other.flags.f_contiguous == a.flags.f_contiguous
        assert other.tobytes(order="A") == a.tobytes(order="A")
        assert other.__array_interface__["data"][0] % mmap.PAGESIZE == 0


# StringDType (NumPy 2) keeps its strings in an allocator of its own, like object
_OBJECT_HOLDING = [object, [("a", "f8"), ("b", "O")]]
if hasattr(np, "dtypes") and hasattr(np.dtypes, "StringDType"):
    _OBJECT_HOLDING.append(np.dtypes.StringDType())


@pytest.mark.parametrize("dtype", _OBJECT_HOLDING)
def test_object_holding_dtypes_are_refused_clearly(dtype, recwarn):
    before = set(os.listdir(SHM))
    with pytest.raises(TypeError, match="cannot hold .* another process cannot read"):
        nn.shared_zeros(3, dtype=dtype, node=0)
    assert not recwarn.list  # no pickle warning on the way
    assert set(os.listdir(SHM)) - before == set()  # nothing created


def _long_structured_row(a):
    return float(a["column_100"].sum()), a.shape


def test_a_long_structured_array_reaches_a_spawned_worker():
    a = nn.shared_zeros(7, dtype=WIDE, node=0)
    a["column_100"] = 3
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        assert pool.submit(_long_structured_row, a).result() == (21.0, (7,))


def _raw_segment(name, content):
    path = SHM / name
    path.write_bytes(content)
    return path


def test_attach_an_empty_or_foreign_segment():
    name = f"nn_test_foreign_{os.getpid()}"
    path = _raw_segment(name, b"")
    try:
        with pytest.raises(nn.NumaError, match="not a numa_numpy shared array"):
            nn.attach_shared(name)  # mmap alone raises a bare ValueError on an empty file
        path.write_bytes(b"x" * 8192)
        with pytest.raises(nn.NumaError, match="not a numa_numpy shared array"):
            nn.attach_shared(name)
        path.write_bytes(b'{"magic": "numa_numpy-shared-1", "shape": [1]}'.ljust(8192, b"\0"))
        with pytest.raises(nn.NumaError, match="older numa_numpy"):
            nn.attach_shared(name)
    finally:
        path.unlink()


def test_a_header_that_lies_is_refused():
    a = nn.shared_zeros(10, node=0)
    path = SHM / a.shared_name
    with open(path, "r+b") as f:
        f.seek(24)
        f.write(struct.pack("<Q", 1 << 40))  # data_bytes beyond the file
    with pytest.raises(nn.NumaError, match="corrupt header"):
        nn.attach_shared(a.shared_name)


def test_attach_validates_under_python_O():
    # issue 11: attach_shared validated with assert, which -O removes
    name = f"nn_test_optimized_{os.getpid()}"
    path = _raw_segment(name, b'{"magic": "other", "shape": [1], "order": "C", '
                              b'"descr": "<f8"}'.ljust(8192, b"\0"))
    try:
        code = ("import numa_numpy as nn, sys\n"
                f"try: nn.attach_shared({name!r})\n"
                "except nn.NumaError as e: print('refused:', e); sys.exit(0)\n"
                "sys.exit(1)\n")
        out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "not a numa_numpy shared array" in out.stdout
    finally:
        path.unlink()


def test_the_segment_cannot_be_resized():
    a = nn.shared_zeros(10, node=0)
    segment = nn._shared._segment_of(a)
    with pytest.raises(nn.NumaError, match="cannot be resized"):
        segment.resize(1 << 20)
    assert len(segment) == os.path.getsize(SHM / a.shared_name)
