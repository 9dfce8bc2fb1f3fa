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
import errno
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
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from .._kernel.lib import error
from .._kernel.sysfs import MAX_NODE_ID, pid_namespace, start_time
from .._kernel.topology import topology
from .._policies.docstrings import document
from .._policies.enforcement import Enforcement
from .._policies.options import (
    AllocationKeywords,
    AllocationOptions,
    HugePages,
    SharedPlacementKeywords,
    check_keywords,
    resolve,
)
from .._policies.policy import (
    Local,
    Partitioned,
    Policy,
    as_policy,
    validate,
)
from ..errors import NumaAllocationError, NumaError, SharedSegmentError
from .binding import bind_range, row_split
from .region import buffer_address

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
NAME_MAX = 255  # bytes in one file name (Linux's NAME_MAX)
META_KEYS = frozenset({"shape", "order", "dtype", "policy"})
# a dtype leaf as dtype.str writes it: byte order, kind, size, a datetime unit
_DTYPE_STR = re.compile(r"[<>|][a-zA-Z][0-9]{1,10}(\[[0-9]{0,10}[a-zA-Z]{1,8}\])?")
_PLAIN_KINDS = frozenset("biufcmMSUV")  # elements that are their bytes: no pointers
_MAX_NESTING = 32  # subarray / structure levels a header's dtype may have
_MAX_DIMS = 32 if np.lib.NumpyVersion(np.__version__) < "2.0.0" else 64
_FLAGS = ("static_nodes", "relative_nodes", "numa_balancing")
_nodes_seen: frozenset[int] = frozenset()  # node ids the last topology read found

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
    header: _Header | None = None  # parsed and checked once, by _header

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


def _check_name(name: Any) -> str:
    """`name` if it can name a file directly in /dev/shm, else SharedSegmentError."""
    if not isinstance(name, str):
        raise TypeError(f"a shared memory name is a str, not {type(name).__name__}")
    problem = None
    if not name:
        problem = "it is empty"
    elif "/" in name:
        problem = "it holds '/': a segment is a file directly in /dev/shm"
    elif "\0" in name:
        problem = "it holds a NUL character"
    elif name in (".", ".."):
        problem = "it names a directory"
    else:
        try:
            length = len(os.fsencode(name))
        except UnicodeError:
            problem = "it cannot be encoded as a file name"
        else:
            if length > NAME_MAX:
                problem = f"it is {length} bytes long; a name in /dev/shm has at most {NAME_MAX}"
    if problem is not None:
        raise SharedSegmentError(
            f"invalid shared memory name {name!r}: {problem}", name=name, field="name"
        )
    return name


def _open_fd(name: str, flags: int) -> int:
    """The file /dev/shm/`name`, opened; its failures in the words of shared memory."""
    try:
        return os.open(SHM_DIR / name, flags, 0o600)
    except FileExistsError:
        raise NumaError(f"shared memory {name!r} already exists") from None
    except FileNotFoundError:
        raise SharedSegmentError(
            f"no shared memory named {name!r}", name=name, field="name"
        ) from None
    except IsADirectoryError:
        raise SharedSegmentError(
            f"{name!r} is a directory in /dev/shm, not a shared array", name=name, field="name"
        ) from None
    except OSError as exc:
        what = f"cannot open shared memory {name!r}"
        if exc.errno == errno.ELOOP:
            raise SharedSegmentError(
                f"{what}: it is a symbolic link (shared memory is never opened through one)",
                name=name,
                field="name",
                errno=exc.errno,
            ) from None
        raise error(
            exc.errno or 0, what, SharedSegmentError, step="open", name=name, field="name"
        ) from None


def _create(fd: int, name: str, size: int) -> _Segment:
    """A new segment of `size` bytes over the file just made (O_EXCL: ours, so
    removed again when it cannot be sized or mapped)."""
    step = "ftruncate"
    try:
        os.ftruncate(fd, size)
        step = "mmap"
        return _Segment(fd, size, flags=mmap.MAP_SHARED)
    except (OSError, OverflowError) as exc:
        os.unlink(SHM_DIR / name)  # ours: made by this O_EXCL open
        code = getattr(exc, "errno", None) or errno.EFBIG
        raise error(
            code,
            f"cannot make a {size}-byte shared segment",
            NumaAllocationError,
            step=step,
            size=size,
        ) from None


def _existing(fd: int, name: str) -> _Segment:
    """The segment over an existing file, mapped whole once it can hold a header."""
    length = os.fstat(fd).st_size
    if length < FIXED.size:  # mmap refuses an empty file with a bare ValueError
        raise SharedSegmentError(
            f"{name!r} is not a numa_numpy shared array: it holds {length} bytes, "
            f"fewer than the {FIXED.size}-byte header",
            name=name,
            field="magic",
        )
    return _Segment(fd, length, flags=mmap.MAP_SHARED)


def _open(name: str, size: int | None) -> _Segment:
    """The segment `name`: made with `size` bytes, or (None) an existing one."""
    _check_name(name)
    # as shm_open does: no symbolic links; O_NONBLOCK so a FIFO planted there cannot hang us
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if size is not None:
        flags |= os.O_CREAT | os.O_EXCL
    fd = _open_fd(name, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SharedSegmentError(
                f"{name!r} is not a numa_numpy shared array: not a regular file",
                name=name,
                field="name",
            )
        segment = _create(fd, name, size) if size is not None else _existing(fd, name)
    finally:
        os.close(fd)
    segment.name = name
    return segment


def _close(segment: _Segment) -> None:
    """Unmap a segment that no array was made over (an attach that failed)."""
    try:
        segment.close()
    except BufferError:  # still exported: the last reference unmaps it
        pass


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
        # read back as attach_shared will read it: whatever is created can be attached
        same = _header_dtype(json.loads(json.dumps(spec))) == dt
    except (TypeError, ValueError, OverflowError, RecursionError, Warning):
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
    try:
        header = _header(segment)  # it is still one of ours
        if not isinstance(dtype, np.dtype) or not _plain(dtype):
            raise SharedSegmentError(
                f"a view of {name!r} cannot have the dtype {dtype!r}", name=name, field="view"
            )
        return _over_data(segment, header, shape, dtype, offset - header.data_offset, strides)
    except BaseException:
        _close(segment)
        raise


@document
def shared_empty(
    shape: Any,
    dtype: Any = float,
    order: str = "C",
    *,
    name: str | None = None,
    **numa: Unpack[SharedPlacementKeywords],
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
    SharedSegmentError
        The name is not a valid name in /dev/shm.
    NumaError
        The name exists already.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.shared_empty(4, "i4", node=0)
    >>> a[:] = 7
    >>> nn.attach_shared(a.shared_name).tolist()
    [7, 7, 7, 7]
    """
    check_keywords("shared_empty", numa, SharedPlacementKeywords)
    chosen = resolve(numa.pop("node", None), numa.pop("policy", None) or None) or Local()
    topo = validate(chosen)
    if chosen.parts(topo) is not None:  # the split must mean the same in every process
        chosen = Partitioned(chosen.resolved_nodes(topo))
    dtype, dtype_spec = _shareable(dtype)
    dims = _shape(shape)
    if math.prod(d for d in dims if d) * max(dtype.itemsize, 1) > sys.maxsize:
        raise ValueError(  # NumPy's words for it
            "array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum "
            "possible size."
        )
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
            start_time("self") or 0,
            pid_namespace(),
            0,
        )
        segment[FIXED.size : FIXED.size + len(blob)] = blob
        segment[8 : FIXED.size] = fixed[8:]
        segment[:8] = MAGIC  # last: a reader never sees a half-written header as valid
        header = _header(segment)  # as every attaching process will read it
        options = AllocationOptions.from_keywords(  # /dev/shm: base pages
            chosen, "shared_empty", AllocationKeywords, huge_pages=HugePages.NONE, **numa
        )
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
        return _array(segment, header)
    except BaseException:
        _unlink(name)
        _close(segment)
        raise


class SharedKeywords(SharedPlacementKeywords, total=False):
    """`shared_empty`'s keywords: the name, and the NUMA keywords."""

    name: str | None


@document
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
    header = _header(segment)
    policy = header.policy
    whole = (
        a.ctypes.data == buffer_address(segment) + header.data_offset and a.shape == header.shape
    )
    if not whole or not isinstance(policy, Partitioned) or policy.nodes is None:
        return None
    return policy.nodes, header.order


class _Header(NamedTuple):
    """A segment's header, every field checked against the segment."""

    data_offset: int
    data_bytes: int
    shape: tuple[int, ...]
    order: Literal["C", "F"]
    dtype: np.dtype
    policy: Policy


def _over_data(
    segment: _Segment,
    header: _Header,
    shape: tuple[int, ...],
    dtype: np.dtype,
    offset: int = 0,
    strides: tuple[int, ...] | None = None,
) -> SharedArray:
    """An array over the segment's data (never its header): NumPy checks that
    the shape, strides and offset stay inside it."""
    # frombuffer holds a buffer export, so the segment stays mapped under the array
    data = np.frombuffer(segment, np.uint8, header.data_bytes, header.data_offset)
    try:
        if offset < 0:
            raise ValueError(f"offset {offset} is before the data")
        made = np.ndarray(
            shape, dtype, buffer=data, offset=offset, strides=strides, order=header.order
        )
    except (ValueError, TypeError, OverflowError) as exc:
        del data
        raise SharedSegmentError(
            f"{segment.name!r}: no array of shape {shape} and dtype {dtype} fits its data: {exc}",
            name=segment.name,
            field="view" if strides is not None else "shape",
        ) from None
    return made.view(SharedArray)


def _array(segment: _Segment, header: _Header) -> SharedArray:
    return _over_data(segment, header, header.shape, header.dtype)


def _plain(dt: np.dtype) -> bool:
    """Whether every element of `dt` is its bytes: no object, no StringDType, no
    pointer of any kind (which would point into another process's memory)."""
    if dt.hasobject or not isinstance(dt, np.dtype):
        return False
    if dt.subdtype is not None:
        return _plain(dt.subdtype[0])
    if dt.names is not None:
        return all(_plain(dt.fields[n][0]) for n in dt.names)  # type: ignore[index]
    return dt.kind in _PLAIN_KINDS and type(dt) is type(np.dtype(dt.str))


def _header_int(value: Any, what: str, low: int = 0, high: int = sys.maxsize) -> int:
    if type(value) is not int:  # not bool, not float: what json.dumps wrote is an int
        raise ValueError(f"{what} is {value!r}, not an integer")
    if not low <= value <= high:
        raise ValueError(f"{what} is {value}, outside {low}..{high}")
    return value


def _header_dims(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > _MAX_DIMS:
        raise ValueError(f"{what} is {value!r}, not a list of at most {_MAX_DIMS} sizes")
    dims = tuple(_header_int(d, f"a size in {what}") for d in value)
    if math.prod(d for d in dims if d) > sys.maxsize:
        raise ValueError(f"{what} {list(dims)} has more elements than an array can")
    return dims


def _header_dtype(spec: Any, depth: int = 0) -> np.dtype:
    """The dtype a header describes, built only from the forms `_dtype_to_json` writes."""
    if depth > _MAX_NESTING:
        raise ValueError(f"nested more than {_MAX_NESTING} levels deep")
    if isinstance(spec, str):
        if spec.lstrip("<>|=")[:1] in ("O", "T"):
            raise ValueError(f"is {spec!r}: {_POINTERS}")
        if not _DTYPE_STR.fullmatch(spec):
            raise ValueError(f"{spec!r} is not the form dtype.str writes")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a deprecated alias is not what we write
            return np.dtype(spec)
    if isinstance(spec, dict) and set(spec) == {"subarray", "shape"}:
        base = _header_dtype(spec["subarray"], depth + 1)
        made: np.dtype = np.dtype((base, _header_dims(spec["shape"], "a subarray's shape")))
        return made
    if not isinstance(spec, dict) or set(spec) != {"fields", "itemsize", "aligned"}:
        raise ValueError(f"{_clip(spec)} is not a dtype description")
    fields = spec["fields"]
    if not isinstance(fields, list) or not isinstance(spec["aligned"], bool):
        raise ValueError(f"{_clip(spec)} is not a structured dtype's description")
    names, formats, offsets, titles = [], [], [], []
    for field in fields:
        if not isinstance(field, dict) or not {"name", "dtype", "offset"} <= set(field) <= {
            "name",
            "dtype",
            "offset",
            "title",
        }:
            raise ValueError(f"{_clip(field)} is not a field's description")
        if not isinstance(field["name"], str) or not isinstance(field.get("title", ""), str):
            raise ValueError(f"a field's name and title are strings, not {_clip(field)}")
        names.append(field["name"])
        formats.append(_header_dtype(field["dtype"], depth + 1))
        offsets.append(_header_int(field["offset"], "a field's offset"))
        titles.append(field.get("title"))
    layout: dict[str, Any] = {
        "names": names,
        "formats": formats,
        "offsets": offsets,
        "itemsize": _header_int(spec["itemsize"], "the itemsize"),
    }
    if any(t is not None for t in titles):
        layout["titles"] = titles
    made = np.dtype(layout, align=spec["aligned"])  # type: ignore[call-overload]
    return made


def _clip(value: Any, length: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= length else text[: length - 3] + "..."


def _header_policy(text: Any) -> Policy:
    """The policy ``str(policy)`` wrote: mode, nodes, then flags (",static_nodes",
    ",home=N"), which `as_policy` does not read."""
    if not isinstance(text, str) or not text.isascii() or len(text) > 4096:
        raise ValueError(f"{_clip(text)} is not a policy's text")
    if any(len(n) > 5 or int(n) > MAX_NODE_ID for n in re.findall("[0-9]+", text)):
        raise ValueError(f"{_clip(text)} names a node above the kernel's {MAX_NODE_ID}")
    parts = text.split(",")
    flags: dict[str, Any] = {}
    while len(parts) > 1 and (parts[-1] in _FLAGS or parts[-1].startswith("home=")):
        flag = parts.pop()
        if flag.startswith("home="):
            flags["home_node"] = _header_int(int(flag[5:]), "the home node")
        else:
            flags[flag] = True
    policy = as_policy(",".join(parts))
    if flags:
        policy = type(policy)(policy.nodes, **flags)
    if str(policy) != text:
        raise ValueError(f"{text!r} is not the form str(policy) writes")
    _check_nodes_exist(policy)
    return policy


def _check_nodes_exist(policy: Policy) -> None:
    """InvalidNodeError unless the nodes `policy` names exist here; the topology
    is read again (1 ms) only when one is not among the nodes last seen."""
    global _nodes_seen
    named = set(policy.nodes or ())
    if policy.home_node is not None:
        named.add(policy.home_node)
    if policy.relative_nodes or named <= _nodes_seen:
        return
    topo = topology()
    _nodes_seen = frozenset(topo.node_ids)
    policy.check_nodes(topo)


def _corrupt(name: str | None, field: str, why: str) -> SharedSegmentError:
    """The error of a header field that does not hold what this numa_numpy writes."""
    return SharedSegmentError(
        f"{name!r} has a corrupt header: {field} {why}", name=name, field=field
    )


def _fixed_part(segment: _Segment) -> tuple[int, int, int]:
    """(metadata bytes, data offset, data bytes) from the header's fixed part,
    checked against the segment: the magic, the format, sizes and offsets that
    lie inside it, page-aligned data past the metadata."""
    name = segment.name
    size = len(segment)
    magic, version, meta_bytes, data_offset, data_bytes = FIXED.unpack_from(segment, 0)[:5]
    if magic != MAGIC:
        if bytes(segment[: len(LEGACY_MAGIC)]) == LEGACY_MAGIC:
            raise SharedSegmentError(
                f"{name!r} was made by an older numa_numpy (format 1); this one reads "
                f"format {VERSION}: create it again",
                name=name,
                field="version",
            )
        raise SharedSegmentError(
            f"{name!r} is not a numa_numpy shared array (or not yet initialized)",
            name=name,
            field="magic",
        )
    if version != VERSION:
        raise SharedSegmentError(
            f"{name!r} has shared-array format {version}; this one reads {VERSION}",
            name=name,
            field="version",
        )
    page = mmap.PAGESIZE
    if FIXED.size + meta_bytes > size:
        raise _corrupt(
            name,
            "meta_bytes",
            f"is {meta_bytes}: the metadata would end past the {size}-byte segment",
        )
    if data_offset < FIXED.size + meta_bytes or data_offset % page or data_offset >= size:
        raise _corrupt(
            name,
            "data_offset",
            f"is {data_offset}: the data starts at the first multiple of the page size "
            f"({page}) at or after the metadata's end ({FIXED.size + meta_bytes}), "
            f"inside the {size}-byte segment",
        )
    if not 0 < data_bytes <= size - min(data_offset, size) or data_bytes % page:
        raise _corrupt(
            name,
            "data_bytes",
            f"is {data_bytes}: the data is whole pages of {page} bytes, from {data_offset} "
            f"to at most the segment's end ({size})",
        )
    return meta_bytes, data_offset, data_bytes


def _metadata(
    segment: _Segment, meta_bytes: int, data_bytes: int
) -> tuple[tuple[int, ...], Literal["C", "F"], np.dtype, Policy]:
    """(shape, order, dtype, policy) from the header's JSON metadata: a dtype
    `_dtype_to_json` writes that holds no pointers, an array that fits the data,
    a policy that names nodes that exist."""
    field = "metadata"
    try:
        text = bytes(segment[FIXED.size : FIXED.size + meta_bytes]).decode("utf-8")
        meta = json.loads(text, parse_constant=_no_constant)
        if not isinstance(meta, dict) or set(meta) != META_KEYS:
            keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"holds {_clip(keys)}, not the keys {sorted(META_KEYS)}")
        field = "order"
        order = meta["order"]
        if order != "C" and order != "F":
            raise ValueError(f"is {_clip(order)}, not 'C' or 'F'")
        field = "shape"
        shape = _header_dims(meta["shape"], "the shape")
        field = "dtype"
        dtype = _header_dtype(meta["dtype"])
        if not _plain(dtype):
            raise ValueError(f"is {dtype}: {_POINTERS}")
        if _dtype_to_json(dtype) != meta["dtype"]:
            raise ValueError(f"{_clip(meta['dtype'])} is not the form this numa_numpy writes")
        field = "shape"
        nbytes = math.prod(shape) * dtype.itemsize
        if math.prod(d for d in shape if d) * max(dtype.itemsize, 1) > sys.maxsize:
            raise ValueError(f"{list(shape)} of {dtype} is larger than any array can be")
        if nbytes > data_bytes:
            raise ValueError(
                f"{list(shape)} of {dtype} needs {nbytes} bytes; the data holds {data_bytes}"
            )
        field = "policy"
        policy = _header_policy(meta["policy"])
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError, Warning) as exc:
        # InvalidNodeError and InvalidPolicyError are ValueErrors: a policy that does not parse
        raise _corrupt(segment.name, field, str(exc) or type(exc).__name__) from None
    return shape, order, dtype, policy


def _header(segment: _Segment) -> _Header:
    """A segment's header, or SharedSegmentError naming the field that is wrong.

    Everything is checked against the segment before any array is made over
    it (`_fixed_part`, `_metadata`). Kept on the segment: the arrays over it
    were made from this reading."""
    if segment.header is None:
        meta_bytes, data_offset, data_bytes = _fixed_part(segment)
        shape, order, dtype, policy = _metadata(segment, meta_bytes, data_bytes)
        segment.header = _Header(data_offset, data_bytes, shape, order, dtype, policy)
    return segment.header


_POINTERS = (
    "its elements would be pointers into the creator's memory (Python objects, "
    "StringDType's strings); a shared array holds plain bytes only"
)


def _no_constant(text: str) -> Any:
    raise ValueError(f"holds {text}, which is not JSON")


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
    SharedSegmentError
        An invalid name, no such segment (or a directory, a link, a FIFO), or
        not a numa_numpy shared array: empty, another program's, an unknown
        format version, or a header field that does not describe an array of
        plain bytes inside the segment (``exc.field`` names it). Every field
        is checked before an array is made; nothing stays mapped or open.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.shared_zeros(3, node=0)
    >>> b = nn.attach_shared(a.shared_name)
    >>> b[0] = 5.0
    >>> float(a[0])
    5.0
    >>> try:
    ...     nn.attach_shared("no_such_segment")
    ... except nn.SharedSegmentError as exc:
    ...     print(exc.field, exc)
    name no shared memory named 'no_such_segment'
    """
    segment = _open(name, None)
    try:
        return _array(segment, _header(segment))
    except BaseException:
        _close(segment)
        raise


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
        now = start_time(pid)
        if not started:  # no start time was recorded: only a pid that is gone is safe
            return now is None
        # a live pid with another start time is a reused pid: the creator is gone
        return now != started
    legacy = _LEGACY_NAME.fullmatch(path.name)
    if head[: len(LEGACY_MAGIC)] == LEGACY_MAGIC and legacy:
        # format 1 recorded no start time: only a pid that no process has is safe
        return start_time(legacy.group(1)) is None
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
    namespace = pid_namespace()
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
