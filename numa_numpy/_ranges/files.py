"""Arrays from files, placed: `load` (.npy, .npz), `fromfile` and `memmap`.

`load` and `fromfile` allocate the destination like every ``numa_*``
constructor (the policy is set on the memory first) and read the file's bytes
straight into it (``preadv``, no intermediate copy); under `Partitioned`,
each node's block is read by workers of the C pool pinned to that node, in
parallel (``nn_files.c``; the pool starts for it). `memmap` is NumPy's memmap whose
page-cache pages are placed: read in under the policy where they are not
cached yet, moved (``move_pages``) where they are, and reported where the
kernel keeps them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import inspect
import math
import os
import stat
import struct
import tokenize
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from numpy.lib import format as npy_format
from tqdm.auto import tqdm

from .._alloc.creation import allocate_in, placement_scope
from .._alloc.scope import PolicyScope, current_policy
from .._alloc.thread import thread_policy
from .._kernel.lib import errno_counts, move_range
from .._kernel.loops import (
    MAX_PIECES,
    block_parts_at,
    ensure_workers,
    read_pieces,
    workers_per_node,
)
from .._kernel.pages import base_page_size, query_pages
from .._policies.docstrings import document
from .._policies.enforcement import Enforcement, EnforcementLevel, refuse
from .._policies.options import (
    AllocationKeywords,
    AllocationOptions,
    PlacementKeywords,
    Prefault,
    check_keywords,
    resolve,
)
from .._policies.policy import Default, Interleave, Local, Policy, validate
from ..errors import NumaError
from .binding import bind_range, page_nodes, range_cuts

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["load", "fromfile", "memmap", "NpzFile", "place_file_pages", "PROGRESS_BYTES"]

#: loads of more bytes than this show a progress bar (about 2 s from disk)
PROGRESS_BYTES = 1 << 30
_STEP = 256 << 20  # bytes per read call: the progress bar's step
_MIN_PIECE = 4 << 20  # a worker's share of a node's block is at least this
_ZIP_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06")
_MAX_HEADER_SIZE = 10000  # numpy.lib.format's default
# NumPy < 1.24 has no header limit (its readers take no max_header_size): there
# the limit is checked here, where NumPy >= 1.24 checks it itself.
_NUMPY_LIMITS_HEADERS = "max_header_size" in inspect.signature(npy_format.read_array).parameters


def _header_limit(max_header_size: int) -> dict[str, int]:
    """The max_header_size keyword for NumPy's readers, where they take it."""
    return {"max_header_size": max_header_size} if _NUMPY_LIMITS_HEADERS else {}


# -- reading bytes into placed memory ----------------------------------------------


def _bytes_of(a: np.ndarray) -> memoryview:
    """A writable byte view of `a`'s memory (contiguous, C or F)."""
    return memoryview((ctypes.c_char * a.nbytes).from_address(a.ctypes.data)).cast("B")


def _bar(nbytes: int, progress: bool | None) -> Any:
    show = nbytes > PROGRESS_BYTES if progress is None else bool(progress)
    return tqdm(
        total=nbytes, unit="B", unit_scale=True, unit_divisor=1024, disable=not show, leave=False
    )


def _truncated(shape: tuple[int, ...], itemsize: int, got: int) -> ValueError:
    """NumPy's words for a file that ends before the array's data does."""
    count = math.prod(shape)
    return ValueError(
        f"Failed to read all data for array. Expected {shape} = {count} elements, could "
        f"only read {got // max(itemsize, 1)} elements. (file seems not fully written?)"
    )


def _pieces(a: np.ndarray) -> list[tuple[int, int, int]]:
    """(address, bytes, node) pieces of `a`'s memory to read: one per worker of
    each node's block when `a` lies in a partitioned block (the pool is
    started for it), else one piece read here (node -1)."""
    address, nbytes = a.ctypes.data, a.nbytes
    found = block_parts_at(address) if nbytes else None
    if found is not None:
        ensure_workers()  # a partitioned block is read by its nodes' workers
    per_node = workers_per_node() if found is not None else {}
    if found is None or not per_node:
        return [(address, nbytes, -1)]
    start, bounds, nodes = found
    page = base_page_size()
    budget = max(1, MAX_PIECES // max(len(nodes), 1))
    pieces = []
    for lo, hi, node in zip(bounds[:-1], bounds[1:], nodes, strict=True):
        lo, hi = max(start + lo, address), min(start + hi, address + nbytes)
        if hi <= lo:
            continue
        workers = per_node.get(node, 0)
        k = max(1, min(workers, budget, (hi - lo) // _MIN_PIECE))
        cuts = [lo + (hi - lo) * i // k // page * page for i in range(k)] + [hi]
        pieces += [
            (c, d - c, node if workers else -1)
            for c, d in zip(cuts[:-1], cuts[1:], strict=True)
            if d > c
        ]
    return pieces


def _read_fd(a: np.ndarray, fd: int, offset: int, bar: Any) -> None:
    """`a.nbytes` bytes of `fd` from `offset` into `a`: in parallel by the
    workers of each block's node, else here with ``os.preadv``, in steps."""
    pieces = _pieces(a)
    base = a.ctypes.data
    if len(pieces) > 1:
        steps = max(1, -(-a.nbytes // _STEP)) if not bar.disable else 1
        for s in range(steps):
            batch = []
            for address, length, node in pieces:
                lo, hi = length * s // steps, length * (s + 1) // steps
                if hi > lo:
                    batch.append((address + lo, offset + address + lo - base, hi - lo, node))
            read_pieces(fd, batch)
            bar.update(sum(p[2] for p in batch))
        return
    view, pos = _bytes_of(a), 0
    while pos < len(view):
        got = os.preadv(fd, [view[pos : pos + _STEP]], offset + pos)
        if got == 0:
            raise _truncated(a.shape, a.itemsize, pos)
        pos += got
        bar.update(got)


def _read_stream(a: np.ndarray, stream: Any, bar: Any) -> None:
    """`a.nbytes` bytes of a stream (a compressed .npz member, a BytesIO) into
    `a`, a step at a time (``readinto``: no copy of the whole)."""
    view, pos = _bytes_of(a), 0
    while pos < len(view):
        got = stream.readinto(view[pos : pos + _STEP])
        if not got:
            raise _truncated(a.shape, a.itemsize, pos)
        pos += got
        bar.update(got)


def _fileno(fp: Any) -> int | None:
    """The descriptor of a real file, or None (a BytesIO, a zip member)."""
    try:
        fd = fp.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if not isinstance(fd, int) or not stat.S_ISREG(os.fstat(fd).st_mode):
        return None  # a pipe, a socket: read as a stream
    return fd


def _fill(
    scope: PolicyScope,
    fp: Any,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    fortran: bool,
    progress: bool | None,
    size: int | None = None,
) -> np.ndarray:
    """A placed array of `shape` read from `fp` at its position, which is left
    after the data. `size`: the bytes `fp` holds in all, when known."""
    nbytes = math.prod(shape) * dtype.itemsize
    fd = _fileno(fp)
    at = fp.tell()
    if fd is not None:
        size = os.fstat(fd).st_size
    if size is not None and size - at < nbytes:
        raise _truncated(shape, dtype.itemsize, max(size - at, 0))
    out = allocate_in(scope, lambda: np.empty(shape, dtype, order="F" if fortran else "C"))
    if nbytes:
        with _bar(nbytes, progress) as bar:
            if fd is not None:
                _read_fd(out, fd, at, bar)
                fp.seek(at + nbytes)
            else:
                _read_stream(out, fp, bar)
    return out


# -- .npy ---------------------------------------------------------------------------


def _header(fp: Any, max_header_size: int) -> tuple[tuple[int, ...], bool, np.dtype[Any]] | None:
    """(shape, fortran_order, dtype) of a .npy at `fp`'s position, read with
    NumPy's own `numpy.lib.format`; None for a version NumPy's public readers
    do not parse (3.0), left to `numpy.lib.format.read_array`."""
    version = npy_format.read_magic(fp)
    read = {
        (1, 0): npy_format.read_array_header_1_0,
        (2, 0): npy_format.read_array_header_2_0,
    }.get(version)
    if read is None:
        return None
    if not _NUMPY_LIMITS_HEADERS:
        _check_header_length(fp, version, max_header_size)
    try:
        shape, fortran_order, dtype = read(fp, **_header_limit(max_header_size))
    except (SyntaxError, tokenize.TokenError) as exc:  # NumPy's retry of old headers
        raise ValueError(f"the .npy header cannot be parsed: {exc}") from None
    # NumPy <= 2.2 reads a negative dimension as "the rest of the file"
    if any(n < 0 for n in shape):
        raise ValueError(f"the .npy header has a negative dimension: shape {shape}")
    return shape, fortran_order, dtype


def _check_header_length(fp: Any, version: tuple[int, int], max_header_size: int) -> None:
    """Refuse a header longer than `max_header_size` as NumPy >= 1.24 does
    (its words), for a NumPy whose readers do not."""
    width = 2 if version == (1, 0) else 4
    at = fp.tell()
    raw = fp.read(width)
    fp.seek(at)
    if len(raw) == width:
        length = int.from_bytes(raw, "little")
        if length > max_header_size:
            raise ValueError(
                f"Header info length ({length}) is large and may not be safe to load "
                "securely.\nTo allow loading, adjust `max_header_size` or fully trust "
                "the `.npy` file using `allow_pickle=True`."
            )


def _read_npy(
    fp: Any,
    scope: PolicyScope,
    allow_pickle: bool,
    pickle_kwargs: dict[str, Any],
    max_header_size: int,
    progress: bool | None,
    size: int | None = None,
) -> np.ndarray:
    """One .npy array from `fp`'s position, placed. Object arrays (pickles)
    and format 3.0 go through NumPy's reader, inside the placement scope."""
    start = fp.tell()
    header = _header(fp, max_header_size)
    if header is None or header[2].hasobject:
        fp.seek(start)
        return allocate_in(
            scope,
            lambda: npy_format.read_array(
                fp, allow_pickle, pickle_kwargs, **_header_limit(max_header_size)
            ),
        )
    shape, fortran, dtype = header
    return _fill(scope, fp, shape, dtype, fortran, progress, size)


# -- .npz ---------------------------------------------------------------------------


class NpzFile(Mapping[str, Any]):
    """The arrays of a .npz archive, each read and placed when asked for:
    what `load` returns for a .npz, like NumPy's `numpy.lib.npyio.NpzFile`.

    ``.files``: the member names (without ``.npy``); ``npz[name]``: the
    member as an array placed by the NUMA keywords given to `load` (a
    member that is not a .npy comes back as bytes). Members stored
    uncompressed are read straight from the archive's file, in parallel
    under `Partitioned`; compressed members are inflated into the array a
    step at a time. A context manager: ``with nn.load("a.npz") as z``.

    Parameters
    ----------
    fid : file object
        The archive, opened for reading.
    own_fid : bool
        Close `fid` with the archive.
    scope : PolicyScope
        Where the members go (`load` makes it from its NUMA keywords).
    allow_pickle, max_header_size, pickle_kwargs, progress
        As for `load`.

    See Also
    --------
    load

    Examples
    --------
    >>> import io, numpy as np, numa_numpy as nn
    >>> buffer = io.BytesIO()
    >>> np.savez(buffer, x=np.arange(4), y=np.ones((2, 2)))
    >>> _ = buffer.seek(0)
    >>> with nn.load(buffer, node=0) as z:
    ...     sorted(z.files), z["x"].tolist(), nn.placement(z["y"]).requested
    (['x', 'y'], [0, 1, 2, 3], Bind(0))
    """

    def __init__(
        self,
        fid: IO[bytes],
        own_fid: bool,
        scope: PolicyScope,
        allow_pickle: bool = False,
        max_header_size: int = _MAX_HEADER_SIZE,
        pickle_kwargs: dict[str, Any] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.zip = zipfile.ZipFile(fid)
        self.fid: IO[bytes] | None = fid
        self._own = own_fid
        self._scope = scope
        self.allow_pickle = allow_pickle
        self.max_header_size = max_header_size
        self.pickle_kwargs = pickle_kwargs or {}
        self._progress = progress
        self._names = self.zip.namelist()
        self.files = [n[:-4] if n.endswith(".npy") else n for n in self._names]

    def _member(self, key: str) -> str:
        for name, short in zip(self._names, self.files, strict=True):
            if key in (name, short):
                return name
        raise KeyError(f"{key} is not a file in the archive")

    def __getitem__(self, key: str) -> Any:
        name = self._member(key)
        info = self.zip.getinfo(name)
        with self.zip.open(name) as member:
            if member.read(6) != npy_format.MAGIC_PREFIX:
                return self.zip.read(name)
        at = self._stored_at(info)
        if at is not None and self.fid is not None:
            self.fid.seek(at)
            return _read_npy(
                self.fid, self._scope, self.allow_pickle, self.pickle_kwargs,
                self.max_header_size, self._progress, at + info.file_size,
            )  # fmt: skip
        with self.zip.open(name) as member:
            return _read_npy(
                member, self._scope, self.allow_pickle, self.pickle_kwargs,
                self.max_header_size, self._progress, info.file_size,
            )  # fmt: skip

    def _stored_at(self, info: zipfile.ZipInfo) -> int | None:
        """Where an uncompressed, unencrypted member's bytes start in the
        archive's file (read in place), or None."""
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1 or self.fid is None:
            return None
        if _fileno(self.fid) is None:
            return None
        self.fid.seek(info.header_offset)
        local = self.fid.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        return int(info.header_offset) + 30 + int(name_len) + int(extra_len)

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, key: object) -> bool:
        return key in self.files or key in self._names

    def close(self) -> None:
        """Close the archive (and its file, when `load` opened it).

        Examples
        --------
        >>> import io, numpy as np, numa_numpy as nn
        >>> buffer = io.BytesIO()
        >>> np.savez(buffer, x=np.arange(3))
        >>> z = nn.load(io.BytesIO(buffer.getvalue()))
        >>> z.close()
        >>> z.fid is None
        True
        """
        self.zip.close()
        if self._own and self.fid is not None:
            self.fid.close()
        self.fid = None

    def __enter__(self) -> NpzFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"<numa_numpy NpzFile {self.files} under {self._scope.handler.policy}>"


# -- load and fromfile -----------------------------------------------------------


def _open(file: Any) -> tuple[Any, bool]:
    """(file object, opened here) for a path or an open file."""
    if hasattr(file, "read"):
        return file, False
    return open(os.fspath(file), "rb"), True  # noqa: SIM115 - closed by the caller


@document
def load(
    file: Any,
    mmap_mode: str | None = None,
    allow_pickle: bool = False,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    *,
    max_header_size: int = _MAX_HEADER_SIZE,
    progress: bool | None = None,
    **numa: Unpack[PlacementKeywords],
) -> Any:
    """`numpy.load` whose arrays land on memory placed by a NUMA policy.

    A .npy is parsed with NumPy's own `numpy.lib.format` and its bytes read
    straight into an array allocated under the policy (no intermediate
    copy); a .npz gives an `NpzFile` whose members load the same way. Under
    `Partitioned`, each node's block is read by workers pinned to that node,
    in parallel (the pool of the parallel loops, started if need be).

    Parameters
    ----------
    file : str, path-like or file object
        The .npy or .npz (or pickle) to read; a file object is read from its
        position, and left after the array, as NumPy does.
    mmap_mode : {None, 'r+', 'r', 'w+', 'c'}, optional
        Map the .npy instead of reading it: a `memmap` whose page-cache
        pages are placed by the policy.
    allow_pickle : bool, default False
        Allow object arrays and pickles (read by NumPy, inside the policy's
        scope); refused otherwise, as by NumPy.
    fix_imports, encoding
        For pickles, as for NumPy.
    max_header_size : int, default 10000
        The largest .npy header parsed, as for NumPy.
    progress : bool, optional
        Show a progress bar (tqdm): by default for arrays over 1 GiB.
    {placement_keywords}

    Returns
    -------
    numpy.ndarray, memmap or NpzFile

    Raises
    ------
    FileNotFoundError, OSError
        The file cannot be opened or read.
    ValueError
        A damaged header, data that ends early, object data without
        `allow_pickle`, or a file object with `mmap_mode` (as NumPy).
    EOFError
        An empty file.
    TypeError
        A NUMA keyword that does not exist.
    {allocation_raises}

    See Also
    --------
    fromfile, memmap, numa_empty

    Examples
    --------
    >>> import os, tempfile, numpy as np, numa_numpy as nn
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.arange(12.0).reshape(3, 4))
    >>> a = nn.load(path, node=0)
    >>> a.sum(), nn.placement(a).on(0)
    (np.float64(66.0), True)
    """
    scope = placement_scope("load", None, **numa)
    pickle_kwargs = {"encoding": encoding, "fix_imports": fix_imports}
    fp, own = _open(file)
    try:
        start = fp.tell()
        magic = fp.read(len(npy_format.MAGIC_PREFIX))
        fp.seek(start)
        if magic.startswith(_ZIP_PREFIXES):
            archive = NpzFile(
                fp, own, scope, allow_pickle, max_header_size, pickle_kwargs, progress
            )
            own = False  # the archive closes it
            return archive
        if magic == npy_format.MAGIC_PREFIX and allow_pickle:
            max_header_size = 2**64  # as np.load: a trusted file has no header limit
        if magic == npy_format.MAGIC_PREFIX and mmap_mode:
            if not own:
                raise ValueError(
                    "Filename must be a string or a path-like object.  Memmap cannot use "
                    "existing file handles."
                )
            return _npy_memmap(fp, mmap_mode, max_header_size, numa)
        if magic == npy_format.MAGIC_PREFIX:
            return _read_npy(fp, scope, allow_pickle, pickle_kwargs, max_header_size, progress)
        return allocate_in(
            scope,
            lambda: np.load(
                fp,
                None,
                allow_pickle,
                fix_imports,
                encoding,  # type: ignore[arg-type]
                **_header_limit(max_header_size),
            ),
        )
    finally:
        if own:
            fp.close()


def _npy_memmap(fp: Any, mode: str, max_header_size: int, numa: Any) -> memmap:
    """A placed memmap of the .npy data at `fp` (a file opened by `load`)."""
    header = _header(fp, max_header_size)
    if header is None:
        raise ValueError("numa_numpy maps .npy files of format 1.0 and 2.0 only")
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise ValueError("Array can't be memory-mapped: Python objects in dtype.")
    offset = fp.tell()
    mode = "r+" if mode == "w+" else mode  # the file exists: w+ would overwrite it
    order = "F" if fortran else "C"
    return memmap(fp.name, dtype, mode, offset, shape or (), order, **numa)


@document
def fromfile(
    file: Any,
    dtype: Any = float,
    count: int = -1,
    sep: str = "",
    offset: int = 0,
    *,
    like: Any = None,
    progress: bool | None = None,
    **numa: Unpack[PlacementKeywords],
) -> np.ndarray:
    """`numpy.fromfile` whose result lands on memory placed by a NUMA policy.

    Binary data (``sep=''``) is read straight into the placed array
    (``preadv``; in parallel under `Partitioned`, by workers on each
    block's node). Text (``sep`` given) is parsed by NumPy, then copied into a
    placed array: the parse needs its own buffer.

    Parameters
    ----------
    file : str, path-like or file object
        An open file is read from its position (plus `offset`), and left
        after the data read, as NumPy does.
    dtype : data-type, default float
        The items' type (not one holding Python objects).
    count : int, default -1
        Items to read; -1: all the file holds (fewer if it holds fewer).
    sep : str, default ''
        '' for binary data, else the separator of a text file.
    offset : int, default 0
        Bytes to skip first (binary only, as for NumPy).
    like : None
        Accepted for NumPy compatibility; anything but None is a `TypeError`.
    progress : bool, optional
        Show a progress bar (tqdm): by default for reads over 1 GiB.
    {placement_keywords}

    Returns
    -------
    numpy.ndarray
        A one-dimensional array.

    Raises
    ------
    FileNotFoundError, OSError
        The file cannot be opened or read.
    ValueError
        An object dtype, 0-sized items, or an offset past the end.
    TypeError
        ``like=`` or a NUMA keyword that does not exist.
    {allocation_raises}

    See Also
    --------
    load, memmap

    Examples
    --------
    >>> import os, tempfile, numpy as np, numa_numpy as nn
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> np.arange(10, dtype=np.int32).tofile(path)
    >>> nn.fromfile(path, np.int32, offset=8, node=0).tolist()
    [2, 3, 4, 5, 6, 7, 8, 9]
    """
    scope = placement_scope("fromfile", None, **numa)
    if like is not None:
        raise TypeError("numa_numpy.fromfile does not support like=: it returns numpy.ndarray")
    dtype = np.dtype(dtype)
    if sep:
        parsed = np.fromfile(file, dtype, count, sep, offset)
        out = allocate_in(scope, lambda: np.empty(parsed.shape, dtype))
        np.copyto(out, parsed)
        return out
    if dtype.hasobject:
        raise ValueError("Cannot read into object array")
    if dtype.itemsize == 0:
        raise ValueError("The elements are 0-sized.")
    fp, own = _open(file)
    try:
        fd = _fileno(fp)
        if fd is None:  # not a file NumPy reads either: its error
            return allocate_in(scope, lambda: np.fromfile(fp, dtype, count, sep, offset))
        start = fp.tell() + int(offset)
        left = os.fstat(fd).st_size - start
        if left < 0:
            raise ValueError(f"offset {offset} is past the end of the file ({left} bytes left)")
        n = left // dtype.itemsize if count < 0 else min(int(count), left // dtype.itemsize)
        fp.seek(start)
        return _fill(scope, fp, (n,), dtype, False, progress)
    finally:
        if own:
            fp.close()


# -- memmap ---------------------------------------------------------------------------


def _options(where: str, numa: dict[str, Any]) -> AllocationOptions:
    """The options of ``node=``/``policy=`` and the rest; neither: the active
    scope's policy, else Local."""
    check_keywords(where, numa, PlacementKeywords)
    rest = dict(numa)
    chosen = resolve(rest.pop("node", None), rest.pop("policy", None))
    chosen = chosen or current_policy() or Local()
    return AllocationOptions.from_keywords(chosen, where, AllocationKeywords, **rest)


def _misplaced(status: np.ndarray, wanted: np.ndarray, policy: Policy, topo: Any) -> np.ndarray:
    """Present pages not where the policy wants them. An interleave accepts
    its nodes in any order while each holds at least 3/4 of its share."""
    present = status >= 0
    if isinstance(policy, Interleave):
        nodes = np.unique(wanted)
        counts = [(status == n).sum() for n in nodes]
        share = present.sum() / max(len(nodes), 1)
        if min(counts, default=0) >= 0.75 * share:
            return np.asarray(present & ~np.isin(status, nodes))
    return np.asarray(present & (status != wanted))


def _touch(lo: int, hi: int, policy: Policy, topo: Any) -> None:
    """Read one byte per page of [lo, hi): pages not in the page cache are
    read in by this thread, so the kernel allocates them by its task
    policy, set here to each part's (the page cache ignores a mapping's
    mbind for most file systems)."""
    page = base_page_size()
    whole = None if isinstance(policy, Local) else policy  # Local: this thread's node
    ranges: list[tuple[Policy | None, int, int]] = [(whole, lo, hi)]
    parts = policy.parts(topo)
    if parts is not None:
        cuts = [lo + -(-c // page) * page for c in range_cuts(hi - lo, page, len(parts))]
        bounds = [lo, *cuts, hi]
        ranges = [(p, a, b) for p, a, b in zip(parts, bounds[:-1], bounds[1:], strict=True)]
    for part, a, b in ranges:
        if b <= a:
            continue
        view = np.frombuffer(memoryview((ctypes.c_char * (b - a)).from_address(a)), np.uint8)
        try:
            scope = thread_policy(part) if part is not None else contextlib.nullcontext()
            with scope:
                view[::page].max()
        except NumaError:  # the thread may not take it: the move below places them
            view[::page].max()


def _why(status: np.ndarray, bad: np.ndarray) -> str:
    """The kernel's reasons for pages that stayed, in words."""
    codes = status[bad & (status < 0)]
    counts = {-int(c): int(n) for c, n in zip(*np.unique(codes, return_counts=True), strict=True)}
    words = errno_counts(counts)
    if errno.EACCES in counts:
        words += (
            "; pages that another process also maps move only with MPOL_MF_MOVE_ALL, "
            "which needs CAP_SYS_NICE"
        )
    return words


def place_file_pages(
    address: int, nbytes: int, options: AllocationOptions
) -> tuple[Enforcement, int]:
    """Place the page-cache pages a file mapping's range holds: mbind it,
    read in what is not cached under the policy, move what is elsewhere.
    (enforcement, pages moved); strict raises when pages stay off."""
    policy, page = options.policy, base_page_size()
    lo, hi = address // page * page, -(-(address + nbytes) // page) * page
    if hi <= lo or isinstance(policy, Default):
        return Enforcement(EnforcementLevel.NONE, "nothing to place"), 0
    topo = validate(policy)
    soft = replace(options, prefault=Prefault.NONE)
    enforcement = bind_range(lo, hi - lo, page, soft, split=(hi - lo, page, False))
    _touch(lo, hi, policy, topo)
    npages = (hi - lo) // page
    _, status = query_pages(lo, hi - lo)
    wanted = page_nodes(policy, topo, npages, page)
    off = _misplaced(status, wanted, policy, topo)
    targets = np.where(off, wanted, np.where(status >= 0, status, wanted)).astype(np.intc)
    after = np.empty(npages, np.intc)
    move_range(lo, npages, page, targets, after)
    stayed = (status >= 0) & ((after < 0) | (after != targets))
    moved = int((off & ~stayed).sum())
    if stayed.any() and policy.allowed_nodes(topo) is not None:  # Preferred, Local: may spill
        message = (
            f"{int(stayed.sum())} of {npages} page-cache pages could not be moved to "
            f"{policy} ({_why(after, stayed)}); they stay where the kernel put them"
        )
        refuse(options, message)
        return Enforcement(EnforcementLevel.BEST_EFFORT, message), moved
    return enforcement, moved


@document
class memmap(np.memmap):
    """`numpy.memmap` whose page-cache pages are placed by a NUMA policy.

    A file's pages live in the kernel's page cache, shared by every process
    that reads the file, and land on the node of the thread that first read
    them, whatever policy the mapping has. So on creation the mapping is
    bound (``mbind``), every page not cached yet is read in by this thread
    under the policy, and every page cached elsewhere is moved
    (``move_pages``). Pages the kernel will not move (another process maps
    them) are reported: a `NumaWarning`, or `PolicyNotEnforcedError` with
    ``strict=True``; `placement` says where they are.

    Parameters
    ----------
    filename : str, path-like or file object
        The file, as for NumPy.
    dtype : data-type, default numpy.uint8
    mode : {'r+', 'r', 'w+', 'c'}, default 'r+'
        As for NumPy; in 'c' (copy-on-write) the pages written become this
        process's own, placed by the mapping's policy.
    offset : int, default 0
        Bytes into the file where the array starts.
    shape : int or tuple of int, optional
        Default: the rest of the file, one-dimensional.
    order : {'C', 'F'}, default 'C'
    {placement_keywords}

    Attributes
    ----------
    policy : Policy
        The policy asked for.
    enforcement : Enforcement
        How far it was met.
    moved_pages : int
        Pages that were cached on other nodes and moved.

    Raises
    ------
    FileNotFoundError, ValueError
        As `numpy.memmap`.
    TypeError
        A NUMA keyword that does not exist.
    PolicyNotEnforcedError
        ``strict=True`` and pages stayed off the policy's nodes.

    See Also
    --------
    load : ``mmap_mode=`` maps a .npy this way.
    placement : the pages of a memmap are the page cache's (``.file``).

    Notes
    -----
    Every page is read in at creation: that is how a page not cached yet
    lands by the policy (``prefault`` and ``huge_pages`` do not apply).
    The placement belongs to the page cache, not to this array: after the
    memmap is gone, the pages stay where they are until the kernel drops
    them, and other processes reading the file use them there.

    Examples
    --------
    >>> import os, tempfile, numpy as np, numa_numpy as nn
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> np.arange(1 << 16, dtype=np.float64).tofile(path)
    >>> m = nn.memmap(path, np.float64, mode="r", node=0)
    >>> float(m[-1]), nn.placement(m).on(0), nn.placement(m).file == path
    (65535.0, True, True)
    """

    policy: Policy
    enforcement: Enforcement
    moved_pages: int

    def __new__(
        cls,
        filename: Any,
        dtype: Any = np.uint8,
        mode: str = "r+",
        offset: int = 0,
        shape: Any = None,
        order: str = "C",
        **numa: Unpack[PlacementKeywords],
    ) -> memmap:
        options = _options("memmap", dict(numa))
        self: memmap = super().__new__(cls, filename, dtype, mode, offset, shape, order)  # type: ignore[call-overload]
        self.policy = options.policy
        self.enforcement, self.moved_pages = place_file_pages(
            self.ctypes.data, self.nbytes, options
        )
        return self

    def __array_finalize__(self, obj: Any) -> None:
        super().__array_finalize__(obj)
        for name in ("policy", "enforcement", "moved_pages"):
            if hasattr(obj, name):
                setattr(self, name, getattr(obj, name))
