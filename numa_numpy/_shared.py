"""NUMA-placed arrays that several processes map, by name.

The memory is a POSIX shared-memory object (/dev/shm). Its policy is set with
mbind on the shared mapping, which the kernel keeps on the object itself (a
shared policy): pages land by it whichever process faults them in. The creator
owns the name and unlinks it (when its last array is gone, at exit, or by
`unlink()`); attaching processes never unlink.

Segment layout (format version 2; all integers little-endian)::

    offset  size  field
    0       8     magic b"NNSHARED"
    8       4     format version (2)
    12      4     meta_bytes: length of the JSON metadata at offset 64
    16      8     data_offset: where the array data starts; a multiple of the
                  creator's page size, so the data is page-aligned for mbind
    24      8     data_bytes: bytes reserved for the data (page-rounded)
    32      8     creator pid
    40      8     creator start time (field 22 of /proc/<pid>/stat, clock ticks)
    48      8     creator pid-namespace inode (0 when unknown)
    56      8     reserved (0)
    64      meta  UTF-8 JSON: {"shape": [...], "order": "C"|"F",
                  "dtype": <dtype>, "policy": "bind:0"}; <dtype> is a string
                  (``dtype.str``), {"subarray": <dtype>, "shape": [...]} or
                  {"fields": [{"name", "dtype", "offset"[, "title"]}],
                  "itemsize": n, "aligned": bool}
    ...           zero up to data_offset, then the data

The magic is written last, so a half-written segment is not mistaken for one.
"""

from __future__ import annotations

import atexit
import json
import math
import mmap
import operator
import os
import re
import secrets
import stat
import struct
import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from ._binding import bind_range, row_split
from ._enforcement import Enforcement
from ._options import AllocationOptions, HugePages, Prefault, PrefaultLike, resolve
from ._policy import Local, NodesLike, Partitioned, PolicyLike, as_policy, validate
from ._region import buffer_address
from .errors import InvalidPolicyError, NumaError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["SharedArray", "shared_empty", "shared_zeros", "attach_shared", "cleanup_shared"]

SHM_DIR = Path("/dev/shm")
PREFIX = "numa_numpy_"
MAGIC = b"NNSHARED"
VERSION = 2
FIXED = struct.Struct("<8sIIQQQQQQ")  # the 64-byte fixed part of the header
LEGACY_MAGIC = b'{"magic": "numa_numpy-shared-1"'  # format 1: JSON in a 4096-byte page
_LEGACY_NAME = re.compile(rf"{PREFIX}(\d+)_[0-9a-f]+")

_created: dict[str, int] = {}  # names this process created -> creator pid
_hooked_pid = 0  # the process whose exit hooks are installed


def _forget_inherited() -> None:
    # A forked child shares the parent's names but does not own them.
    global _hooked_pid
    _created.clear()
    _hooked_pid = 0


os.register_at_fork(after_in_child=_forget_inherited)


class _Segment(mmap.mmap):
    """The shared mapping; arrays over it keep it alive through their base."""

    name: str
    enforcement: Enforcement

    def resize(self, newsize: int) -> None:
        raise NumaError(
            "a shared segment cannot be resized: other processes map it at its "
            "size and arrays over it would point at moved memory"
        )


_NUMPY_1 = np.lib.NumpyVersion(np.__version__) < "2.0.0"


class SharedArray(np.ndarray):
    """An ndarray over a named shared-memory segment.

    Pickling it (as multiprocessing does) sends the name, and the receiver
    attaches: both processes then see the same memory. Results of ufuncs are
    plain ndarrays.

    Made by `shared_empty`, `shared_zeros` and `attach_shared`; not
    constructed directly.

    See Also
    --------
    shared_empty, attach_shared, cleanup_shared

    Examples
    --------
    >>> import pickle
    >>> import numa_numpy as nn
    >>> a = nn.shared_zeros(4, node=0)
    >>> b = pickle.loads(pickle.dumps(a))    # what a worker process receives
    >>> b[0] = 5.0
    >>> float(a[0]), a.shared_name == b.shared_name
    (5.0, True)
    >>> a.unlink()
    """

    @property
    def shared_name(self) -> str | None:
        """The segment's name in /dev/shm (None for an array not over one)."""
        segment = _segment_of(self)
        return segment.name if segment is not None else None

    def unlink(self) -> None:
        """Remove the name now (mappings stay valid). Only the creator may.

        Raises
        ------
        NumaError
            This process did not create the segment.

        Examples
        --------
        >>> import numa_numpy as nn
        >>> a = nn.shared_empty(8, node=0)
        >>> a.unlink()           # no process can attach by name any more
        >>> a[:] = 1.0           # the memory stays valid here
        """
        name = self.shared_name
        if name is None or _created.get(name) != os.getpid():
            raise NumaError(f"only the process that created {name!r} unlinks it")
        _unlink(name)

    def __array_wrap__(
        self, array: np.ndarray, context: Any = None, return_scalar: bool = False
    ) -> Any:
        if _segment_of(array) is None:
            array = array.view(np.ndarray)
        # NumPy 2 says when a scalar is due; NumPy 1 hands a 0-d result for it
        if return_scalar or (_NUMPY_1 and array.ndim == 0):
            return array[()]
        return array

    def __reduce__(self) -> Any:
        segment = _segment_of(self)
        if segment is None:
            return self.view(np.ndarray).__reduce__()
        offset = self.__array_interface__["data"][0] - buffer_address(segment)
        return (_attach_view, (segment.name, offset, self.shape, self.strides, self.dtype))


def _segment_of(a: Any) -> _Segment | None:
    base = a
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    return base if isinstance(base, _Segment) else None


def _unlink(name: str) -> None:
    if _created.get(name) == os.getpid():
        try:
            (SHM_DIR / name).unlink()
        except FileNotFoundError:
            pass
        _created.pop(name, None)


@atexit.register
def _unlink_all() -> None:
    for name, pid in list(_created.items()):
        if pid == os.getpid():
            _unlink(name)


def _install_exit_hooks() -> None:
    """Make the unlink-at-exit promise hold in multiprocessing workers too: fork
    and forkserver workers end with os._exit, which skips atexit, after running
    multiprocessing's own finalizers, so register there as well.

    SIGTERM (what Pool.terminate() sends) is deliberately not handled: a Python
    handler runs only in the main thread, and when the kernel delivers the
    signal to another thread while the main one blocks, the worker would live
    on until the main thread wakes, and Pool.terminate() would wait for it.
    cleanup_shared() removes what such a worker leaves.
    """
    global _hooked_pid
    util = sys.modules.get("multiprocessing.util")
    if util is None or _hooked_pid == os.getpid():  # not a worker, or done already
        return
    _hooked_pid = os.getpid()
    util.Finalize(None, _unlink_all, exitpriority=0)


def _start_time(pid: int | str) -> int | None:
    """The process's start time (clock ticks after boot), None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces and parentheses: the fields follow the last ')'
    return int(text[text.rindex(")") + 2 :].split()[19])


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


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
        if length < FIXED.size:  # mmap refuses an empty file with a bare ValueError
            raise NumaError(
                f"{name!r} is not a numa_numpy shared array: it holds {length} bytes, "
                f"fewer than the {FIXED.size}-byte header"
            )
        segment = _Segment(fd, length, flags=mmap.MAP_SHARED)
    finally:
        os.close(fd)
    segment.name = name
    return segment


def _dtype_to_json(dt: np.dtype) -> Any:
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"subarray": _dtype_to_json(base), "shape": list(shape)}
    if dt.names is not None:
        fields = []
        for name in dt.names:
            field_dtype, offset, *title = dt.fields[name]  # type: ignore[index]
            entry = {"name": name, "dtype": _dtype_to_json(field_dtype), "offset": offset}
            if title:
                entry["title"] = title[0]
            fields.append(entry)
        return {"fields": fields, "itemsize": dt.itemsize, "aligned": dt.isalignedstruct}
    return dt.str


def _dtype_from_json(spec: Any) -> np.dtype:
    if isinstance(spec, str):
        return np.dtype(spec)
    if "subarray" in spec:
        return np.dtype((_dtype_from_json(spec["subarray"]), tuple(spec["shape"])))
    fields = spec["fields"]
    layout: dict[str, Any] = {
        "names": [f["name"] for f in fields],
        "formats": [_dtype_from_json(f["dtype"]) for f in fields],
        "offsets": [f["offset"] for f in fields],
        "itemsize": spec["itemsize"],
    }
    if any("title" in f for f in fields):
        layout["titles"] = [f.get("title") for f in fields]
    made: np.dtype = np.dtype(layout, align=bool(spec["aligned"]))  # type: ignore[call-overload]
    return made


def _shareable(dtype: Any) -> tuple[np.dtype, Any]:
    """The dtype and its JSON form, or TypeError for one another process cannot read."""
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(
            f"a shared array cannot hold {dt}: its elements point into this process's "
            "memory (Python objects, a string arena), which another process cannot "
            "read; use a fixed-size dtype such as 'U16' or 'S16'"
        )
    try:
        spec = _dtype_to_json(dt)
        same = _dtype_from_json(json.loads(json.dumps(spec))) == dt
    except (TypeError, ValueError):
        same = False
    if not same:
        raise TypeError(f"a shared array cannot describe the dtype {dt!r} to other processes")
    return dt, spec


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        dims: tuple[int, ...] = (operator.index(shape),)
    except TypeError:
        dims = tuple(operator.index(s) for s in shape)
    if any(s < 0 for s in dims):
        raise ValueError(f"negative dimensions are not allowed: {dims}")
    return dims


def _attach_view(
    name: str, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], dtype: np.dtype
) -> SharedArray:
    """Rebuild a pickled SharedArray (or a view of one) in this process."""
    segment = _open(name, None)
    _header(segment)  # it is still one of ours
    # frombuffer holds a buffer export, so the segment stays mapped under the view
    flat = np.frombuffer(segment, np.uint8)
    return np.ndarray(shape, dtype, buffer=flat, offset=offset, strides=strides).view(SharedArray)


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
    """A new array in a named shared-memory segment, placed by a policy.

    Parameters
    ----------
    shape : int or sequence of ints
    dtype : data-type
        Any dtype whose elements are plain bytes; object-holding dtypes
        (``object``, ``StringDType``) cannot be shared.
    order : {"C", "F"}
    name : str, optional
        The name in /dev/shm (default: ``numa_numpy_<pid>_<random>``).
    node, policy, strict, prefault
        As for `numa_empty`.

    Returns
    -------
    SharedArray
        Other processes attach by ``.shared_name`` or by receiving it pickled.
        This process owns the name: it is unlinked when the last array over it
        is gone, when the process exits, or by ``unlink()``.

    Raises
    ------
    TypeError
        The dtype holds Python objects or pointers.
    NumaError
        The name exists already, or is not a valid name.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.shared_empty(4, "i4", node=0)
    >>> a[:] = 7
    >>> nn.attach_shared(a.shared_name).tolist()
    [7, 7, 7, 7]
    """
    chosen = resolve(node, policy or None) or Local()
    topo = validate(chosen)
    if chosen.parts(topo) is not None:  # the split must mean the same in every process
        chosen = Partitioned(chosen.resolved_nodes(topo))
    dtype, dtype_spec = _shareable(dtype)
    dims = _shape(shape)
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    meta = {"shape": list(dims), "order": order, "dtype": dtype_spec, "policy": str(chosen)}
    blob = json.dumps(meta).encode()
    page = mmap.PAGESIZE  # the runtime page size: 4 KiB, or 16/64 KiB on some kernels
    data_offset = -(-(FIXED.size + len(blob)) // page) * page
    data_bytes = max(page, -(-math.prod(dims) * dtype.itemsize // page) * page)
    name = name or f"{PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
    _install_exit_hooks()
    segment = _open(name, data_offset + data_bytes)
    _created[name] = os.getpid()
    weakref.finalize(segment, _unlink, name)
    try:
        fixed = FIXED.pack(
            MAGIC,
            VERSION,
            len(blob),
            data_offset,
            data_bytes,
            os.getpid(),
            _start_time("self") or 0,
            _pid_namespace(),
            0,
        )
        segment[FIXED.size : FIXED.size + len(blob)] = blob
        segment[8 : FIXED.size] = fixed[8:]
        segment[:8] = MAGIC  # last: a reader never sees a half-written header as valid
        options = AllocationOptions(chosen, bool(strict), HugePages.NONE, Prefault.coerce(prefault))
        segment.enforcement = bind_range(
            buffer_address(segment) + data_offset,
            data_bytes,
            page,
            options,
            split=(
                math.prod(dims) * dtype.itemsize,
                row_split(dims, dtype.itemsize, order)[2],
                False,
            ),
        )
    except BaseException:
        _unlink(name)
        raise
    return _array(segment, data_offset, meta)


class SharedKeywords(TypedDict, total=False):
    name: str | None
    node: NodesLike | None
    policy: PolicyLike | None
    strict: bool
    prefault: PrefaultLike


def shared_zeros(
    shape: Any, dtype: Any = float, order: str = "C", **options: Unpack[SharedKeywords]
) -> SharedArray:
    """`shared_empty`: new shared memory is already zero.

    Parameters
    ----------
    shape, dtype, order, **options
        As for `shared_empty`.

    Returns
    -------
    SharedArray

    See Also
    --------
    shared_empty

    Examples
    --------
    >>> import numa_numpy as nn
    >>> nn.shared_zeros((2, 3), node=0).sum()
    np.float64(0.0)
    """
    return shared_empty(shape, dtype, order, **options)


def partition_of(a: Any) -> tuple[tuple[int, ...], str] | None:
    """(nodes, order) of a whole shared array made under `Partitioned`, read from
    its segment's header (in any process attached to it); None otherwise."""
    segment = _segment_of(a)
    if segment is None:
        return None
    data_offset, meta = _header(segment)
    policy = as_policy(meta["policy"])
    whole = a.ctypes.data == buffer_address(segment) + data_offset and list(a.shape) == list(
        meta["shape"]
    )
    if not whole or not isinstance(policy, Partitioned) or policy.nodes is None:
        return None
    return policy.nodes, str(meta["order"])


def _array(segment: _Segment, data_offset: int, meta: dict[str, Any]) -> SharedArray:
    # frombuffer holds a buffer export, so the segment stays mapped under the array
    flat = np.frombuffer(segment, np.uint8)
    return np.ndarray(
        tuple(meta["shape"]),
        _dtype_from_json(meta["dtype"]),
        buffer=flat,
        offset=data_offset,
        order=meta["order"],
    ).view(SharedArray)


def _header(segment: _Segment) -> tuple[int, dict[str, Any]]:
    """(data offset, metadata) of a segment, or NumaError saying what is wrong."""
    name = segment.name
    fixed = FIXED.unpack_from(segment, 0)
    magic, version, meta_bytes, data_offset, data_bytes = fixed[:5]
    if magic != MAGIC:
        if bytes(segment[: len(LEGACY_MAGIC)]) == LEGACY_MAGIC:
            raise NumaError(
                f"{name!r} was made by an older numa_numpy (format 1); this one reads "
                f"format {VERSION}: create it again"
            )
        raise NumaError(f"{name!r} is not a numa_numpy shared array (or not yet initialized)")
    if version != VERSION:
        raise NumaError(f"{name!r} has shared-array format {version}; this one reads {VERSION}")
    if not FIXED.size + meta_bytes <= data_offset <= data_offset + data_bytes <= len(segment):
        raise NumaError(f"{name!r} has a corrupt header (sizes beyond the segment)")
    try:
        meta = json.loads(bytes(segment[FIXED.size : FIXED.size + meta_bytes]))
        dtype = _dtype_from_json(meta["dtype"])
        shape = _shape(meta["shape"])
        if meta["order"] not in ("C", "F"):
            raise ValueError(meta["order"])
    except (ValueError, TypeError, KeyError) as exc:
        raise NumaError(f"{name!r} has a corrupt header: {exc}") from None
    if math.prod(shape) * dtype.itemsize > data_bytes:
        raise NumaError(f"{name!r} has a corrupt header (the array exceeds its data)")
    return data_offset, meta


def attach_shared(name: str) -> SharedArray:
    """The array another process created with ``shared_empty(..., name=name)``.

    Parameters
    ----------
    name : str
        The segment's name (``a.shared_name`` in the creator).

    Returns
    -------
    SharedArray
        The same memory as the creator's array. This process never unlinks it.

    Raises
    ------
    NumaError
        No such segment, or it is not a numa_numpy shared array (empty, another
        program's, an unknown format version, a corrupt header).

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.shared_zeros(3, node=0)
    >>> b = nn.attach_shared(a.shared_name)
    >>> b[0] = 5.0
    >>> float(a[0])
    5.0
    """
    segment = _open(name, None)
    data_offset, meta = _header(segment)
    return _array(segment, data_offset, meta)


def _stale(path: Path, namespace: int) -> bool:
    """Whether `path` is a numa_numpy segment whose creator has exited."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.pread(fd, FIXED.size, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    if len(head) == FIXED.size and head[:8] == MAGIC:
        pid, started, creator_namespace = (int(x) for x in FIXED.unpack(head)[5:8])
        if creator_namespace and namespace and creator_namespace != namespace:
            return False  # another pid namespace: its pids mean nothing here
        now = _start_time(pid)
        if not started:  # no start time was recorded: only a pid that is gone is safe
            return now is None
        # a live pid with another start time is a reused pid: the creator is gone
        return now != started
    legacy = _LEGACY_NAME.fullmatch(path.name)
    if head[: len(LEGACY_MAGIC)] == LEGACY_MAGIC and legacy:
        # format 1 recorded no start time: only a pid that no process has is safe
        return _start_time(legacy.group(1)) is None
    return False


def cleanup_shared(*, dry_run: bool = False) -> list[str]:
    """Remove the shared segments whose creating process has ended.

    A creator unlinks its segments whenever Python sees it end (normal exit,
    an exception, ``sys.exit``, multiprocessing workers that finish), but a
    signal that kills it (SIGKILL, SIGTERM with no handler, as
    ``Pool.terminate()`` sends), a crash or ``os._exit`` outside
    multiprocessing leaves them in /dev/shm. A segment's header records its
    creator's pid and start time, so a pid that was reused by another process
    is not mistaken for the creator.
    Segments of other pid namespaces, or that this user cannot read or remove,
    are left alone. Also ``python -m numa_numpy cleanup [--dry-run] [--json]``.

    Parameters
    ----------
    dry_run : bool
        Only list what would be removed.

    Returns
    -------
    list of str
        The names removed (or, with ``dry_run``, that would be), sorted.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.shared_zeros(4, node=0)
    >>> a.shared_name in nn.cleanup_shared(dry_run=True)  # its creator is alive
    False
    """
    namespace = _pid_namespace()
    removed = []
    try:
        entries = sorted(SHM_DIR.iterdir())
    except OSError:
        return []
    for path in entries:
        if not _stale(path, namespace):
            continue
        if not dry_run:
            try:
                path.unlink()
            except OSError:
                continue
        removed.append(path.name)
    return removed
