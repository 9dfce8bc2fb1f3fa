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
from numa_numpy._ranges import shared as _shared


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
    from numa_numpy._ranges import shared as _shared
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
    return a.__array_interface__["data"][0] - _shared.buffer_address(_shared._segment_of(a))


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
    flat = np.frombuffer(_shared._segment_of(a), np.uint8)
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
    segment = _shared._segment_of(a)
    with pytest.raises(nn.NumaError, match="cannot be resized"):
        segment.resize(1 << 20)
    assert len(segment) == os.path.getsize(SHM / a.shared_name)


# --- attach_shared trusts nothing in a segment (issue 22 item 11) ---

def _layout_of(name):
    """(fixed fields, metadata) of a segment, read with the documented layout."""
    raw = (SHM / name).read_bytes()
    fixed = list(struct.unpack_from("<8sIIQQQQQQ", raw))
    return fixed, json.loads(raw[64:64 + fixed[2]])


def _forge(tag, meta=None, raw_meta=None, fill=b"\xff", **fields):
    """A copy of a real segment (100 float64, bind:0) under a new name, with its
    metadata replaced (re-encoded, meta_bytes kept right unless given) and fixed
    fields overridden; the data is filled with `fill` (non-zero "pointers")."""
    a = nn.shared_zeros(100, node=0)
    fixed, real = _layout_of(a.shared_name)
    raw = bytearray((SHM / a.shared_name).read_bytes())
    a.unlink()
    blob = raw_meta if raw_meta is not None else json.dumps(
        real if meta is None else {**real, **meta}).encode()
    fixed[2] = len(blob)
    data_offset = -(-(64 + len(blob)) // mmap.PAGESIZE) * mmap.PAGESIZE
    fixed[3] = data_offset
    names = ["magic", "version", "meta_bytes", "data_offset", "data_bytes"]
    for key, value in fields.items():
        fixed[names.index(key)] = value
    body = fill * mmap.PAGESIZE if fill else b""
    raw = struct.pack("<8sIIQQQQQQ", *fixed) + blob
    raw = raw.ljust(data_offset, b"\0") + body.ljust(mmap.PAGESIZE, b"\0")
    name = f"nn_test_forged_{tag}_{os.getpid()}"
    _raw_segment(name, bytes(raw))
    return name


def _open_here(name):
    """This process's file descriptors and mappings of `name`."""
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds += os.readlink(f"/proc/self/fd/{fd}").endswith("/" + name)
        except OSError:
            pass
    maps = [line for line in Path("/proc/self/maps").read_text().splitlines()
            if line.split(" ")[-1].startswith(str(SHM / name))]
    return fds, maps


_POINTER_DTYPES = [
    "|O", "O", "T", "|T16",
    {"fields": [{"name": "a", "dtype": "<f8", "offset": 0},
                {"name": "b", "dtype": "|O", "offset": 8}], "itemsize": 16, "aligned": False},
    {"subarray": "|O", "shape": [2]},
]


def test_a_header_naming_a_pointer_dtype_is_refused_not_crashed():
    """A forged header saying object (|O) over bytes 0xff..: attaching built
    object pointers into the shared bytes and reading them segfaulted;
    StringDType ('T') raised MemoryError. Run in a child so a crash is a failure."""
    names = [_forge(f"ptr{i}", {"dtype": spec}) for i, spec in enumerate(_POINTER_DTYPES)]
    code = (
        "import sys, numa_numpy as nn\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        a = nn.attach_shared(name)\n"
        "        print('attached', name, a.dtype, repr(a)[:20])\n"
        "    except nn.SharedSegmentError as exc:\n"
        "        print('refused', exc.field, exc)\n"
        "    except BaseException as exc:\n"
        "        print('raw', type(exc).__name__, exc)\n"
    )
    try:
        out = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code, *names],
                             capture_output=True, text=True, timeout=120)
    finally:
        for name in names:
            (SHM / name).unlink()
    lines = out.stdout.splitlines()
    assert out.returncode == 0, f"rc {out.returncode}: {out.stdout}{out.stderr[-2000:]}"
    assert len(lines) == len(names) and all(
        line.startswith("refused dtype") for line in lines), out.stdout
    assert all("pointers into the creator's memory" in line for line in lines), out.stdout


_MAX_DIMS = 32 if np.lib.NumpyVersion(np.__version__) < "2.0.0" else 64
# (what is forged, the field the error must name)
def _padded_meta(length):
    """Valid metadata of 100 float64 on bind:0, padded with JSON's own whitespace."""
    blob = b'{"shape": [100], "order": "C", "dtype": "<f8", "policy": "bind:0"'
    return blob + b" " * (length - len(blob) - 1) + b"}"


_BAD_HEADERS = {
    "magic": (dict(magic=b"NNSHAREX"), "magic"),
    "version": (dict(version=3), "version"),
    "meta_bytes_past_end": (dict(meta_bytes=1 << 31), "meta_bytes"),
    "data_offset_zero": (dict(data_offset=0), "data_offset"),
    "data_offset_unaligned": (dict(data_offset=mmap.PAGESIZE + 8), "data_offset"),
    "data_offset_past_end": (dict(data_offset=1 << 40), "data_offset"),
    "data_bytes_past_end": (dict(data_bytes=1 << 40), "data_bytes"),
    "data_bytes_zero": (dict(data_bytes=0), "data_bytes"),
    "data_bytes_partial_page": (dict(data_bytes=800), "data_bytes"),
    "not_utf8": (dict(raw_meta=b'{"shape": [1], "\xff": 1}'), "metadata"),
    "not_json": (dict(raw_meta=b'{"shape": [1'), "metadata"),
    "a_list": (dict(raw_meta=b'[1, 2]'), "metadata"),
    "deep_nesting": (dict(raw_meta=b"[" * 100_000 + b"]" * 100_000), "metadata"),
    "nan": (dict(raw_meta=b'{"shape": [NaN], "order": "C", "dtype": "<f8", '
                          b'"policy": "bind:0"}'), "metadata"),
    "missing_key": (dict(raw_meta=b'{"shape": [1], "order": "C", "dtype": "<f8"}'), "metadata"),
    "unknown_key": (dict(meta={"strides": [8]}), "metadata"),
    "order_K": (dict(meta={"order": "K"}), "order"),
    "order_number": (dict(meta={"order": 1}), "order"),
    "order_list": (dict(meta={"order": ["C"]}), "order"),
    "shape_negative": (dict(meta={"shape": [-1]}), "shape"),
    "shape_float": (dict(meta={"shape": [1.5]}), "shape"),
    "shape_bool": (dict(meta={"shape": [True]}), "shape"),
    "shape_string": (dict(meta={"shape": "4"}), "shape"),
    "shape_huge": (dict(meta={"shape": [1 << 63]}), "shape"),
    "shape_overflows": (dict(meta={"shape": [0, 1 << 62, 1 << 62]}), "shape"),
    "shape_too_many_dims": (dict(meta={"shape": [1] * (_MAX_DIMS + 1)}), "shape"),
    "shape_beyond_data": (dict(meta={"shape": [10**6]}), "shape"),
    # fewer elements than data bytes, more bytes than the data: counted in bytes
    "shape_beyond_data_in_bytes": (dict(meta={"shape": [mmap.PAGESIZE // 8 + 1]}), "shape"),
    # the data offset past the metadata's length but inside header + metadata
    "data_offset_inside_the_header": (dict(
        raw_meta=_padded_meta(mmap.PAGESIZE - 40), data_offset=mmap.PAGESIZE), "data_offset"),
    "dtype_object": (dict(meta={"dtype": "|O"}), "dtype"),
    "dtype_stringdtype": (dict(meta={"dtype": "T"}), "dtype"),
    "dtype_junk": (dict(meta={"dtype": "<f8x"}), "dtype"),
    "dtype_alias": (dict(meta={"dtype": "float64"}), "dtype"),
    "dtype_number": (dict(meta={"dtype": 8}), "dtype"),
    "dtype_huge_void": (dict(meta={"dtype": "|V9999999999"}), "dtype"),
    "dtype_negative_subarray": (dict(meta={"dtype": {"subarray": "<f8", "shape": [-1]}}), "dtype"),
    "dtype_huge_subarray": (dict(meta={"dtype": {"subarray": "<f8", "shape": [1 << 40]}}),
                            "dtype"),
    "dtype_deep": (dict(meta={"dtype": json.loads('{"subarray": ' * 200 + '"<f8"'
                                                  + ', "shape": [1]}' * 200)}), "dtype"),
    "dtype_field_negative_offset": (dict(meta={"dtype": {"fields": [
        {"name": "a", "dtype": "<f8", "offset": -8}], "itemsize": 8, "aligned": False}}), "dtype"),
    "dtype_field_bad_name": (dict(meta={"dtype": {"fields": [
        {"name": 3, "dtype": "<f8", "offset": 0}], "itemsize": 8, "aligned": False}}), "dtype"),
    "dtype_itemsize_bool": (dict(meta={"dtype": {"fields": [
        {"name": "a", "dtype": "|u1", "offset": 0}], "itemsize": True, "aligned": False}}),
        "dtype"),
    "policy_number": (dict(meta={"policy": 5}), "policy"),
    "policy_unknown": (dict(meta={"policy": "bogus:1"}), "policy"),
    "policy_missing_node": (dict(meta={"policy": "bind:1000"}), "policy"),
    "policy_giant_range": (dict(meta={"policy": "partitioned:0-99999999999"}), "policy"),
    "policy_bad_flag": (dict(meta={"policy": "bind:0,home=x"}), "policy"),
    "policy_not_canonical": (dict(meta={"policy": " BIND : 0 "}), "policy"),
}


@pytest.mark.parametrize("case", sorted(_BAD_HEADERS))
def test_every_header_field_is_checked_before_an_array_is_made(case):
    forged, field = _BAD_HEADERS[case]
    name = _forge(case, **forged)
    try:
        assert _open_here(name) == (0, [])
        with pytest.raises(nn.SharedSegmentError) as info:
            nn.attach_shared(name)
        assert info.value.field == field and info.value.name == name, info.value
        assert isinstance(info.value, nn.NumaError) and isinstance(info.value, ValueError)
        assert repr(name) in str(info.value)
        assert pickle.loads(pickle.dumps(info.value)).field == field
        del info
        assert _open_here(name) == (0, [])  # nothing left mapped or open
    finally:
        (SHM / name).unlink()


def test_a_shape_is_checked_in_bytes_before_any_array_is_tried():
    # refused by the header check (which names the bytes), not later by NumPy
    # finding the buffer too small
    elements = mmap.PAGESIZE // 8 + 1
    name = _forge("bytes", meta={"shape": [elements]})
    try:
        with pytest.raises(nn.SharedSegmentError,
                           match=f"needs {elements * 8} bytes; the data holds {mmap.PAGESIZE}"):
            nn.attach_shared(name)
    finally:
        (SHM / name).unlink()


def test_the_forger_makes_a_valid_segment_when_told_nothing():
    # the cases above fail for their field, not for the way they were made
    name = _forge("valid", fill=b"")
    try:
        b = nn.attach_shared(name)
        assert b.shape == (100,) and b.dtype == np.float64 and not b.any()
    finally:
        (SHM / name).unlink()


def _fifo(path):
    os.mkfifo(path)


def _symlink(path):
    os.symlink(SHM / "nn_test_nowhere", path)


def _directory(path):
    path.mkdir()


@pytest.mark.parametrize("make", [_directory, _fifo, _symlink])
def test_what_is_not_a_segment_file_is_refused(make):
    # a directory gave a raw IsADirectoryError; a FIFO, mmap's ENODEV; a symlink
    # was followed (shm_open never does)
    name = f"nn_test_{make.__name__[1:]}_{os.getpid()}"
    path = SHM / name
    make(path)
    try:
        with pytest.raises(nn.SharedSegmentError) as info:
            nn.attach_shared(name)
        assert info.value.field == "name" and name in str(info.value)
        assert _open_here(name) == (0, [])
    finally:
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


@pytest.mark.parametrize("name, why", [
    ("", "empty"),
    ("a\0b", "NUL"),
    ("x" * 256, "256 bytes long"),
    ("é" * 128, "256 bytes long"),
    ("a/b", "'/'"),
    (".", "directory"),
    ("..", "directory"),
])
def test_names_that_cannot_name_a_segment(name, why):
    # a NUL gave a raw ValueError, a long name a raw OSError (ENAMETOOLONG)
    calls = [nn.attach_shared]
    if name:  # shared_zeros(name="") picks a name of its own
        calls.append(lambda n: nn.shared_zeros(1, name=n, node=0))
    for call in calls:
        with pytest.raises(nn.SharedSegmentError, match=why) as info:
            call(name)
        assert info.value.field == "name" and info.value.name == name
    with pytest.raises(TypeError, match="a shared memory name is a str"):
        nn.attach_shared(b"numa_numpy_x")


def test_the_longest_name_works():
    a = nn.shared_zeros(3, name="n" * 255, node=0)
    assert nn.attach_shared("n" * 255).shape == (3,)
    a.unlink()


def test_a_missing_segment_is_a_shared_segment_error():
    with pytest.raises(nn.SharedSegmentError, match="no shared memory named") as info:
        nn.attach_shared(f"nn_test_missing_{os.getpid()}")
    assert info.value.field == "name"


@pytest.mark.parametrize("flags", [{"static_nodes": True}, {"relative_nodes": True}])
def test_a_policy_with_flags_reads_back(flags):
    # the header writes str(policy) ("bind:0,static_nodes"), which as_policy does
    # not parse: every team path's layout lookup raised InvalidNodeError on it
    a = nn.shared_zeros(1 << 14, policy=nn.Bind(0, **flags), node=None)
    b = nn.attach_shared(a.shared_name)
    assert _shared.partition_of(b) is None  # not partitioned: no layout
    assert _shared._header(_shared._segment_of(b)).policy == nn.Bind(0, **flags)
    with nn.node_team(min_bytes=1):
        assert float((b + 1).sum()) == 1 << 14


def test_a_pickled_view_cannot_reach_outside_the_data():
    a = nn.shared_zeros(16, node=0)
    start = _data_offset(a)
    view = _shared._attach_view
    w = view(a.shared_name, start + 8, (2,), (8,), np.dtype("<f8"))
    w[0] = 3.0
    assert a[1] == 3.0
    for offset, shape, strides, dtype in [
        (0, (8,), (1,), np.dtype("u1")),                   # the header
        (start - 8, (2,), (8,), np.dtype("<f8")),          # straddling it
        (start, (2,), (-8,), np.dtype("<f8")),             # backwards into it
        (start, (10,), (mmap.PAGESIZE,), np.dtype("<f8")),  # past the data
        (start, (2,), (8,), np.dtype(object)),             # pointers
    ]:
        with pytest.raises(nn.SharedSegmentError) as info:
            view(a.shared_name, offset, shape, strides, dtype)
        assert info.value.field == "view"


# --- metadata ending at a page boundary (issue 22 item 18: the data offset must
# count the 64-byte fixed header, or the data overlaps the metadata's last bytes) ---

def _meta_bytes(name):
    return _layout_of(name)[0][2]


def _with_meta_bytes(target):
    """A shared array whose JSON metadata is exactly `target` bytes: a structured
    dtype whose first field's name is padded to length."""
    def make(k):
        return nn.shared_zeros(5, np.dtype([("n" * k, "<i4"), ("value", "<f8")]), node=0)
    probe = make(1)
    length = _meta_bytes(probe.shared_name)
    probe.unlink()
    a = make(1 + target - length)
    assert _meta_bytes(a.shared_name) == target
    return a


def _check_in_child(names_and_offsets):
    out = []
    for name, expected_offset in names_and_offsets:
        b = nn.attach_shared(name)
        offset = _data_offset(b)
        aligned = b.__array_interface__["data"][0] % mmap.PAGESIZE == 0
        seen = b["value"].tolist(), b[b.dtype.names[0]].tolist()
        b["value"] *= -1
        out.append((offset == expected_offset, aligned, seen))
    return out


def test_metadata_ending_at_a_page_boundary_keeps_the_data_clear():
    page = mmap.PAGESIZE
    # the fixed header (64) plus the metadata ending 1 before, at, and 1 past a page
    targets = [page - 64 - 1, page - 64, page - 64 + 1, 2 * page - 64, 2 * page - 64 + 1]
    arrays, jobs = [], []
    for target in targets:
        a = _with_meta_bytes(target)
        expected = -(-(64 + target) // page) * page
        fixed, _meta = _layout_of(a.shared_name)  # the metadata still parses
        assert fixed[3] == _data_offset(a) == expected, (target, fixed[3])
        assert np.count_nonzero(a.view(np.uint8)) == 0  # no metadata byte in the data
        a["value"] = np.arange(5) + 0.5
        a[a.dtype.names[0]] = 7
        arrays.append(a)
        jobs.append((a.shared_name, expected))
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        results = pool.submit(_check_in_child, jobs).result(timeout=120)
    for a, (same_offset, aligned, (values, firsts)) in zip(arrays, results):
        assert same_offset and aligned
        assert values == [0.5, 1.5, 2.5, 3.5, 4.5] and firsts == [7] * 5
        np.testing.assert_array_equal(a["value"], -(np.arange(5) + 0.5))  # the child's writes
        _layout_of(a.shared_name)  # and the metadata is still intact after them


@pytest.mark.parametrize("shape, error", [
    (1 << 60, ValueError),          # more bytes than an array can have: NumPy's ValueError
    ((0, 1 << 62), ValueError),
    ((1 << 40, 1 << 40), ValueError),
    (1 << 44, nn.NumaAllocationError),  # 128 TiB: no address space for the mapping
])
def test_a_segment_that_cannot_be_made_leaves_no_file(shape, error):
    # 1 << 60 gave a raw OverflowError from ftruncate and left an empty file in
    # /dev/shm under the name, so the next try said "already exists"
    name = f"nn_test_too_big_{os.getpid()}"
    for _ in range(2):
        with pytest.raises(error):
            nn.shared_zeros(shape, name=name, node=0)
        assert not (SHM / name).exists()
