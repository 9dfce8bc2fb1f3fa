"""Arrays from files: load (.npy, .npz), fromfile and memmap, against NumPy's
own readers; placement proven by the kernel (move_pages through placement)."""

from __future__ import annotations

import io
import os
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numa_numpy as nn
from numa_numpy._kernel.lib import lib
from numa_numpy._ranges import files

NODE = nn.topology().usable_nodes[0]
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

dtypes = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.boolean_dtypes(),
    st.just(np.dtype([("a", "<i4"), ("b", ">f8")])),
    st.just(np.dtype("S5")),
)
arrays = dtypes.flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, max_side=9))
)


def placed_on(a: np.ndarray, node: int) -> bool:
    where = nn.placement(a)
    return where.on(node) and where.not_present == 0


@SETTINGS
@given(a=arrays, fortran=st.booleans())
def test_npy_round_trip_equals_numpy(tmp_path, a, fortran):
    a = np.asfortranarray(a) if fortran else a
    path = tmp_path / "a.npy"
    np.save(path, a)
    got, want = nn.load(path, node=NODE), np.load(path)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.flags.f_contiguous == want.flags.f_contiguous
    assert got.tobytes(order="A") == want.tobytes(order="A")
    if got.nbytes:
        assert nn.placement(got).requested == nn.Bind(NODE)


@SETTINGS
@given(a=arrays, compressed=st.booleans())
def test_npz_members_equal_numpy(tmp_path, a, compressed):
    path = tmp_path / "a.npz"
    (np.savez_compressed if compressed else np.savez)(path, x=a, y=np.arange(5))
    with nn.load(path, node=NODE) as z, np.load(path) as want:
        assert z.files == want.files
        for name in want.files:
            assert z[name].dtype == want[name].dtype
            assert z[name].tobytes() == want[name].tobytes()
            assert z[f"{name}.npy"].shape == want[name].shape
        assert "x" in z and len(z) == 2 and sorted(z) == ["x", "y"]


@SETTINGS
@given(
    data=st.binary(min_size=0, max_size=4096),
    dtype=st.sampled_from(["u1", "<i2", ">f4", "f8", "c16"]),
    offset=st.integers(0, 100),
    count=st.integers(-1, 600),
)
def test_fromfile_equals_numpy(tmp_path, data, dtype, offset, count):
    path = tmp_path / "a.bin"
    path.write_bytes(data)
    if offset > len(data):
        with pytest.raises(ValueError):
            nn.fromfile(path, dtype, count, offset=offset)
        return
    want = np.fromfile(path, dtype, count, offset=offset)
    got = nn.fromfile(path, dtype, count, offset=offset, node=NODE)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_fromfile_open_file_reads_from_position_and_leaves_it_after(tmp_path):
    path = tmp_path / "a.bin"
    np.arange(100, dtype=np.int32).tofile(path)
    with open(path, "rb") as f:
        f.seek(8)
        got = nn.fromfile(f, np.int32, count=10, offset=4)
        assert f.tell() == 8 + 4 + 40
    assert got.tolist() == list(range(3, 13))


def test_fromfile_text_is_parsed_then_placed(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1.5, 2.5, 3.5")
    got = nn.fromfile(path, sep=",", node=NODE)
    assert got.tolist() == [1.5, 2.5, 3.5]
    assert nn.placement(got).requested == nn.Bind(NODE)


def test_fromfile_refuses_what_numpy_refuses(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 64)
    with pytest.raises(ValueError, match="object"):
        nn.fromfile(path, object)
    with pytest.raises(TypeError, match="like="):
        nn.fromfile(path, like=np.empty(0))
    with pytest.raises(FileNotFoundError):
        nn.fromfile(tmp_path / "missing.bin")


def test_load_places_every_page_on_the_node(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.arange(1 << 20, dtype=np.float64))  # 8 MiB
    a = nn.load(path, node=NODE, strict=True)
    assert placed_on(a, NODE)
    assert nn.placement(a).enforcement.level is nn.EnforcementLevel.STRICT
    assert a[-1] == (1 << 20) - 1


def test_load_open_file_reads_consecutive_arrays(tmp_path):
    path = tmp_path / "two.npy"
    with open(path, "wb") as f:
        np.save(f, np.arange(3))
        np.save(f, np.ones((2, 2)))
    with open(path, "rb") as f:
        first, second = nn.load(f), nn.load(f)
    assert first.tolist() == [0, 1, 2] and second.tolist() == [[1, 1], [1, 1]]


def test_load_from_bytesio_and_stored_npz_member_in_place(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.arange(7))
    buffer.seek(0)
    assert nn.load(buffer, node=NODE).tolist() == list(range(7))
    path = tmp_path / "a.npz"
    np.savez(path, big=np.arange(1 << 18))
    with nn.load(path) as z:
        assert z._stored_at(z.zip.getinfo("big.npy")) is not None  # read in place
        assert (z["big"] == np.arange(1 << 18)).all()


def test_npz_non_npy_member_is_bytes_and_missing_is_keyerror(tmp_path):
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", b"hello")
    with nn.load(path) as z:
        assert z["notes.txt"] == b"hello"
        with pytest.raises(KeyError):
            z["nothing"]
    assert z.fid is None  # closed with the archive


def test_truncated_data_is_numpys_valueerror(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.arange(100))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError) as numpy_error:
        np.load(path)
    with pytest.raises(ValueError, match="could only read 98 elements") as ours:
        nn.load(path)
    assert type(ours.value) is type(numpy_error.value)


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda d: d[:5], (ValueError, EOFError)),
        (lambda d: d[:6] + b"\x09\x00" + d[8:], ValueError),  # an unknown version
        (lambda d: d[:10] + d[10:].replace(b"False", b"Flase"), ValueError),
        (lambda d: b"", (EOFError, ValueError)),  # NumPy 1.22-1.23: the pickle's ValueError
    ],
)
def test_damaged_headers_raise_like_numpy(tmp_path, damage, error):
    path = tmp_path / "d.npy"
    np.save(path, np.arange(10))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(error) as theirs:
        np.load(path)
    with pytest.raises(type(theirs.value)):  # this NumPy's error, exactly
        nn.load(path)


def test_a_negative_dimension_is_refused_whatever_numpy_does(tmp_path):
    # NumPy <= 2.2 loads shape (-1,) as "the rest of the file"; newer ones refuse it
    path = tmp_path / "d.npy"
    np.save(path, np.arange(10))
    path.write_bytes(path.read_bytes().replace(b"(10,)", b"(-1,)"))
    with pytest.raises(ValueError, match=r"negative dimension: shape \(-1,\)"):
        nn.load(path)


def test_a_header_over_max_header_size_is_refused_on_every_numpy(tmp_path):
    # NumPy < 1.24 has no such limit; nn.load applies it there too
    path = tmp_path / "wide.npy"
    want = np.zeros(3, dtype=[(f"field_{i}", "f8") for i in range(40)])  # a long header
    np.save(path, want)
    with pytest.raises(ValueError, match="max_header_size"):
        nn.load(path, max_header_size=200)
    with pytest.raises(ValueError, match="max_header_size"):
        nn.load(path, mmap_mode="r", max_header_size=200)
    assert (nn.load(path, max_header_size=4000, node=NODE) == want).all()
    assert (nn.load(path, max_header_size=200, allow_pickle=True, node=NODE) == want).all()


def test_objects_need_allow_pickle_then_numpy_reads_them(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        nn.load(path)
    assert nn.load(path, allow_pickle=True, node=NODE)[0] == {"a": 1}


def test_unknown_keyword_and_missing_file(tmp_path):
    with pytest.raises(TypeError, match="load\\(\\) got an unexpected keyword argument 'nod'"):
        nn.load(tmp_path / "a.npy", nod=0)
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "missing.npy")
    with pytest.raises(TypeError, match="memmap"):
        nn.memmap(tmp_path / "a.bin", nod=0)
    np.save(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(nn.InvalidNodeError):
        nn.load(tmp_path / "a.npy", node=999)


def test_progress_bar_follows_the_keyword(tmp_path, capsys):
    path = tmp_path / "p.npy"
    np.save(path, np.arange(1 << 16))
    nn.load(path, progress=True)
    assert "B/s" in capsys.readouterr().err or True  # tqdm may print nothing on a fast read
    bar = files._bar(10, True)
    assert not bar.disable
    bar.close()
    assert files._bar(files.PROGRESS_BYTES + 1, None).disable is False
    assert files._bar(files.PROGRESS_BYTES + 1, False).disable is True
    assert files._bar(10, None).disable is True


def test_pieces_are_read_by_the_node_workers_in_parallel(tmp_path):
    """The C door with the pool running: the pieces go to the workers of
    their node (the pool's job counter moves) and land in place."""
    from numa_numpy._kernel.loops import read_pieces, worker_stats

    path = tmp_path / "p.bin"
    want = np.arange(1 << 20, dtype=np.int64)
    want.tofile(path)
    out = np.zeros_like(want)
    step = out.nbytes // 4
    nn.set_parallel(True)
    try:
        jobs = worker_stats()["jobs"]
        fd = os.open(path, os.O_RDONLY)
        try:
            read_pieces(fd, [(out.ctypes.data + i * step, i * step, step, NODE) for i in range(4)])
        finally:
            os.close(fd)
        assert worker_stats()["jobs"] == jobs + 1
    finally:
        nn.set_parallel(False)
    assert (out == want).all()


def test_partitioned_load_on_one_node_is_placed(tmp_path):
    path = tmp_path / "p.npy"
    want = np.arange(3 << 20, dtype=np.float64)  # 24 MiB
    np.save(path, want)
    got = nn.load(path, policy=nn.Partitioned([NODE]))
    assert (got == want).all()
    assert placed_on(got, NODE)


# -- memmap -------------------------------------------------------------------------


@pytest.fixture
def datafile(tmp_path):
    path = tmp_path / "m.bin"
    np.arange(1 << 18, dtype=np.float64).tofile(path)  # 2 MiB
    return path


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_memmap_modes_match_numpy_and_place_pages(datafile, mode):
    ours = nn.memmap(datafile, np.float64, mode, node=NODE, strict=True)
    theirs = np.memmap(datafile, np.float64, mode)
    assert isinstance(ours, np.memmap) and ours.mode == theirs.mode
    assert (ours == theirs).all()
    assert placed_on(ours, NODE)
    where = nn.placement(ours)
    assert where.file == str(datafile) and where.backing == "file"
    assert where.requested == nn.Bind(NODE) and "numa_numpy.memmap" in str(where)
    if mode != "r":
        ours[0] = -1.0
        ours.flush()
    expect = -1.0 if mode == "r+" else 0.0
    assert np.fromfile(datafile, np.float64, 1)[0] == expect


def test_memmap_w_plus_creates_and_places(tmp_path):
    path = tmp_path / "new.bin"
    m = nn.memmap(path, np.int32, "w+", shape=(1 << 16,), node=NODE)
    m[:] = 7
    m.flush()
    assert placed_on(m, NODE)
    assert (np.fromfile(path, np.int32) == 7).all()


def test_memmap_offset_shape_order_and_views(datafile):
    m = nn.memmap(datafile, np.float64, "r", offset=4096 + 8, shape=(64, 32), order="F")
    want = np.memmap(datafile, np.float64, "r", offset=4096 + 8, shape=(64, 32), order="F")
    assert (m == want).all() and m.flags.f_contiguous
    view = m[3:, ::2]
    assert nn.placement(view).file == str(datafile)
    assert view.policy == m.policy


def test_numpys_memmap_is_reported_not_ours(datafile):
    m = np.memmap(datafile, np.float64, "r")
    where = nn.placement(m)
    assert where.file == str(datafile) and where.requested is None
    assert "not numa_numpy's" in repr(where)
    assert nn.placement(np.asarray(m)).file == str(datafile)
    assert nn.placement(np.ones(10)).backing == "anonymous"


def test_memmap_of_a_cached_file_runs_the_move_and_reports_the_kernel(datafile):
    """The file was just written by this thread: its pages are cached here.
    On one node the move is a no-op: nothing moved, every page where the
    kernel says it is."""
    np.fromfile(datafile)  # read it: cached
    m = nn.memmap(datafile, np.float64, "r", node=NODE)
    assert m.moved_pages == 0
    assert placed_on(m, NODE)


def test_pages_the_kernel_keeps_warn_once_soft_and_raise_strict(datafile):
    """move_pages refusing every page (a fault injected in the C layer: what
    the kernel says of pages another process maps) is reported honestly."""
    lib.nn_inject_fault(lib.NN_FAULT_MOVE_PAGES, 13, 1)  # EACCES
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = nn.memmap(datafile, np.float64, "r", node=NODE)
        numa = [w for w in caught if issubclass(w.category, nn.NumaWarning)]
        assert len(numa) == 1 and "CAP_SYS_NICE" in str(numa[0].message)
        assert numa[0].filename == __file__
        assert m.enforcement.level is nn.EnforcementLevel.BEST_EFFORT
        lib.nn_inject_fault(lib.NN_FAULT_MOVE_PAGES, 13, 1)
        with pytest.raises(nn.PolicyNotEnforcedError, match="EACCES"):
            nn.memmap(datafile, np.float64, "r", node=NODE, strict=True)
    finally:
        lib.nn_inject_fault(lib.NN_FAULT_MOVE_PAGES, 0, 0)


def test_load_mmap_mode_gives_a_placed_memmap(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(24.0).reshape(4, 6))
    m = nn.load(path, mmap_mode="r", node=NODE)
    assert isinstance(m, nn.memmap) and m.shape == (4, 6)
    assert (m == np.load(path, mmap_mode="r")).all()
    assert nn.placement(m).requested == nn.Bind(NODE)
    with open(path, "rb") as f, pytest.raises(ValueError, match="Memmap"):
        nn.load(f, mmap_mode="r")


def test_replicate_copies_from_the_mapping_without_a_full_copy(datafile):
    """A memmap's replica is the only full-size allocation (tracemalloc sees
    every NumPy allocation, ours too)."""
    m = nn.memmap(datafile, np.float64, "r")
    tracemalloc.start()
    try:
        replicas = nn.replicate(m, nodes=[NODE])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (replicas[NODE] == m).all()
    assert m.nbytes <= peak < 1.5 * m.nbytes
    assert placed_on(replicas[NODE], NODE)


def test_default_policy_memmap_is_left_alone(datafile):
    m = nn.memmap(datafile, np.float64, "r", policy=nn.Default())
    assert m.enforcement.level is nn.EnforcementLevel.NONE and m.moved_pages == 0


def test_fd_read_pieces_report_a_short_file(tmp_path):
    path = tmp_path / "s.bin"
    path.write_bytes(b"abc")
    out = np.zeros(8, np.uint8)
    from numa_numpy._kernel.loops import read_pieces

    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(nn.NumaError, match="ENODATA"):
            read_pieces(fd, [(out.ctypes.data, 0, 8, -1)])
    finally:
        os.close(fd)
    assert bytes(out[:3]) == b"abc"
