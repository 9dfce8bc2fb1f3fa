"""NUMA-placed arrays that several processes map, by name.

The memory is a POSIX shared-memory object (/dev/shm). Its policy is set with
mbind on the shared mapping, which the kernel keeps on the object itself (a
shared policy): pages land by it whichever process faults them in. The creator
owns the name and unlinks it (when its last array is gone, at exit, or by
`unlink()`); attaching processes never unlink.
"""

from __future__ import annotations

import atexit
import json
import mmap
import os
import secrets
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from ._binding import bind_range
from ._handler import AllocationOptions, Enforcement
from ._policy import (
    Bind,
    HugePages,
    Local,
    NodesLike,
    PolicyLike,
    Prefault,
    PrefaultLike,
    as_policy,
)
from ._region import buffer_address
from .errors import InvalidPolicyError, NumaError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SharedArray", "shared_empty", "shared_zeros", "attach_shared"]

SHM_DIR = Path("/dev/shm")
HEADER = 4096  # metadata page; the data starts page-aligned after it
MAGIC = "numa_numpy-shared-1"

_created: dict[str, int] = {}  # names this process created -> creator pid


class _Segment(mmap.mmap):
    """The shared mapping; arrays over it keep it alive through their base."""

    name: str
    enforcement: Enforcement


class SharedArray(np.ndarray):
    """An ndarray over a named shared-memory segment. Pickling it (as
    multiprocessing does) sends the name, and the receiver attaches: both
    processes then see the same memory. Results of ufuncs are plain ndarrays."""

    @property
    def shared_name(self) -> str | None:
        segment = _segment_of(self)
        return segment.name if segment is not None else None

    def unlink(self) -> None:
        """Remove the name now (mappings stay valid). Only the creator may."""
        name = self.shared_name
        if name is None or _created.get(name) != os.getpid():
            raise NumaError(f"only the process that created {name!r} unlinks it")
        _unlink(name)

    def __array_wrap__(
        self, array: np.ndarray, context: Any = None, return_scalar: bool = False
    ) -> Any:
        if _segment_of(array) is None:
            array = array.view(np.ndarray)
        return array[()] if return_scalar else array

    def __reduce__(self) -> Any:
        segment = _segment_of(self)
        if segment is None:
            return self.view(np.ndarray).__reduce__()
        offset = self.__array_interface__["data"][0] - buffer_address(segment)
        return (
            _attach_view,
            (
                segment.name,
                offset,
                self.shape,
                self.strides,
                np.lib.format.dtype_to_descr(self.dtype),
            ),
        )


def _segment_of(a: Any) -> _Segment | None:
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return base if isinstance(base, _Segment) else None


def _unlink(name: str) -> None:
    if _created.pop(name, None) == os.getpid():
        try:
            (SHM_DIR / name).unlink()
        except FileNotFoundError:
            pass


@atexit.register
def _unlink_all() -> None:
    for name, pid in list(_created.items()):
        if pid == os.getpid():
            _unlink(name)


def _open(name: str, size: int | None) -> _Segment:
    if not name or "/" in name or name in (".", ".."):
        raise InvalidPolicyError(f"invalid shared memory name {name!r}")
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if size is not None else 0)
    try:
        fd = os.open(SHM_DIR / name, flags, 0o600)
    except FileExistsError:
        raise NumaError(f"shared memory {name!r} already exists") from None
    except FileNotFoundError:
        raise NumaError(f"no shared memory named {name!r}") from None
    try:
        if size is not None:
            os.ftruncate(fd, size)
        length = os.fstat(fd).st_size
        segment = _Segment(fd, length, flags=mmap.MAP_SHARED)
    finally:
        os.close(fd)
    segment.name = name
    return segment


def _descr(descr: Any) -> Any:
    """JSON turns a structured dtype's descr tuples into lists; NumPy wants tuples."""
    if isinstance(descr, list):
        return [
            tuple(_descr(x) for x in field) if isinstance(field, list) else field for field in descr
        ]
    return descr


def _attach_view(
    name: str, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], descr: Any
) -> SharedArray:
    """Rebuild a pickled SharedArray (or a view of one) in this process."""
    segment = _open(name, None)
    # frombuffer holds a buffer export, so the segment stays mapped under the view
    flat = np.frombuffer(segment, np.uint8)
    return np.ndarray(
        shape,
        np.lib.format.descr_to_dtype(_descr(descr)),
        buffer=flat,
        offset=offset,
        strides=strides,
    ).view(SharedArray)


def shared_empty(
    shape: Any,
    dtype: Any = float,
    order: str = "C",
    *,
    name: str | None = None,
    node: NodesLike | None = None,
    policy: PolicyLike | None = None,
    strict: bool = False,
    prefault: PrefaultLike = Prefault.NONE,
) -> SharedArray:
    """A new shared array under a policy; other processes attach by `name`
    (default: a fresh unique name, see `.shared_name`)."""
    if node is not None and policy is not None:
        raise TypeError("pass node= or policy=, not both")
    chosen = Bind(node) if node is not None else as_policy(policy or Local())
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    page = mmap.PAGESIZE
    size = HEADER + max(page, (nbytes + page - 1) // page * page)
    name = name or f"numa_numpy_{os.getpid()}_{secrets.token_hex(6)}"
    segment = _open(name, size)
    _created[name] = os.getpid()
    weakref.finalize(segment, _unlink, name)
    try:
        meta = {
            "magic": MAGIC,
            "shape": shape,
            "order": order,
            "policy": str(chosen),
            "descr": np.lib.format.dtype_to_descr(dtype),
        }
        blob = json.dumps(meta).encode()
        segment[: len(blob)] = blob
        options = AllocationOptions(chosen, bool(strict), HugePages.NONE, Prefault.coerce(prefault))
        segment.enforcement = bind_range(
            buffer_address(segment) + HEADER, size - HEADER, page, options
        )
    except BaseException:
        _unlink(name)
        raise
    return _array(segment, meta)


class SharedKeywords(TypedDict, total=False):
    name: str | None
    node: NodesLike | None
    policy: PolicyLike | None
    strict: bool
    prefault: PrefaultLike


def shared_zeros(
    shape: Any, dtype: Any = float, order: str = "C", **options: Unpack[SharedKeywords]
) -> SharedArray:
    """shared_empty: new shared memory is already zero."""
    return shared_empty(shape, dtype, order, **options)


def _array(segment: _Segment, meta: dict[str, Any]) -> SharedArray:
    dtype = np.lib.format.descr_to_dtype(_descr(meta["descr"]))
    shape = tuple(meta["shape"])
    flat = np.frombuffer(segment, dtype, int(np.prod(shape, dtype=np.int64)), HEADER)
    return flat.reshape(shape, order="F" if meta["order"] == "F" else "C").view(SharedArray)


def attach_shared(name: str) -> SharedArray:
    """The array another process created with shared_empty(..., name=name)."""
    segment = _open(name, None)
    raw = bytes(segment[:HEADER]).rstrip(b"\0")
    try:
        meta = json.loads(raw)
        assert meta["magic"] == MAGIC
    except (ValueError, AssertionError, KeyError):
        raise NumaError(f"{name!r} is not a numa_numpy shared array") from None
    return _array(segment, meta)
