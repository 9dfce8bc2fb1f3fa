"""Damaged files: every byte string nn.load is given gives an array or a
clear error (NumPy's kinds for a bad file), never a crash or a hang."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numa_numpy as nn

CLEAR = (ValueError, EOFError, OSError, KeyError, zipfile.BadZipFile, TypeError)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(40, dtype="<i4").reshape(5, 8))
    return buffer.getvalue()


GOOD = _npy()


def _outcome(path):
    """What NumPy makes of the file: 'ok' and the array, or the error."""
    try:
        return "ok", np.load(path)
    except CLEAR as exc:
        return "error", exc
    except Exception as exc:  # pickles NumPy refuses in other words
        return "error", exc


@SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes_give_an_array_or_a_clear_error(tmp_path, data):
    path = tmp_path / "any.npy"
    path.write_bytes(data)
    try:
        got = nn.load(path)
    except CLEAR:
        return
    assert isinstance(got, (np.ndarray, nn.NpzFile))


@SETTINGS
@given(
    at=st.integers(0, len(GOOD) - 1),
    byte=st.integers(0, 255),
    cut=st.integers(0, len(GOOD)),
)
def test_damaged_npy_agrees_with_numpy(tmp_path, at, byte, cut):
    data = bytearray(GOOD)
    data[at] = byte
    path = tmp_path / "d.npy"
    path.write_bytes(bytes(data[:cut]))
    kind, want = _outcome(path)
    try:
        got = nn.load(path)
    except CLEAR as exc:
        assert kind == "error", (exc, want)
        return
    assert kind == "ok", want
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes(order="A") == want.tobytes(order="A")


@SETTINGS
@given(data=st.binary(max_size=200))
def test_damaged_npz_members_give_clear_errors(tmp_path, data):
    path = tmp_path / "z.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", GOOD[:10] + data)
    try:
        with nn.load(path) as z:
            got = z["a"]
    except CLEAR:
        return
    assert isinstance(got, (np.ndarray, bytes))
