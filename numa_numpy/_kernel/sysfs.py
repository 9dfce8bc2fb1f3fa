"""The kernel's files: every /sys and /proc path numa_numpy reads is named here,
and read through `KernelFiles`, which notes what it could not read instead of
raising (a container, an older kernel, a copy of another machine's tree).

Also the one cgroup locator (the mounts in /proc/self/mountinfo, else the usual
/sys/fs/cgroup layout) that the cpuset and the memory limit are both found with,
and the few files of processes read elsewhere (a start time, the pid namespace,
the threads).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KernelFiles",
    "parse_list",
    "parse_int",
    "NODE_ROOT",
    "TIER_ROOT",
    "CgroupMount",
    "cgroup_mounts",
    "cgroup_folders",
    "MemoryLimit",
    "memory_limit",
    "process_file",
    "start_time",
    "pid_namespace",
    "thread_ids",
]

# --- where the kernel keeps what numa_numpy reads (relative to a root folder) ---
NODES = "sys/devices/system/node"
# Kernel memory tiers (Linux 6.1): memory_tierN/nodelist, N the tier's abstract id.
TIERS = "sys/devices/virtual/memory_tiering"
NODE_ROOT = Path("/") / NODES
TIER_ROOT = Path("/") / TIERS
CGROUP_ROOT = "sys/fs/cgroup"  # where cgroup trees are mounted unless mountinfo says
MEMINFO = "proc/meminfo"
OSRELEASE = "proc/sys/kernel/osrelease"
THP_SIZE = "sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
# One u64 of flags per physical frame (root only: others cannot open it).
KPAGEFLAGS = Path("/proc/kpageflags")
UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as a page-rounded 2**63 - 1


def process_file(name: str, pid: int | str = "self") -> Path:
    """/proc/PID/`name` (status, cgroup, mountinfo, numa_maps, smaps, ...)."""
    return Path("/proc") / str(pid) / name


def self_file(name: str) -> str:
    """proc/self/`name`, relative: for `KernelFiles`, under its root."""
    return f"proc/self/{name}"


_ID = re.compile(r"[0-9]{1,19}", re.ASCII)


def parse_list(text: str, *, high: int | None = None) -> tuple[int, ...]:
    """Parse the kernel's list syntax ("0-3,8,10-11") into sorted ids.

    Parameters
    ----------
    text : str
        The list; surrounding whitespace and empty items are ignored.
    high : int, optional
        The largest id accepted (a range up to 2**40 is not a CPU list).

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        Not a list of ids: a word that is not a decimal id, a range that is
        open ("0-") or descending ("5-2"), an id above `high`.

    Examples
    --------
    >>> from numa_numpy._kernel.sysfs import parse_list
    >>> parse_list("0-2,5\\n")
    (0, 1, 2, 5)
    >>> parse_list("5-2")
    Traceback (most recent call last):
    ...
    ValueError: descending range '5-2'
    """
    out: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not _ID.fullmatch(lo) or (sep and not _ID.fullmatch(hi)):
            raise ValueError(f"{_clip(part)!r} is not an id or a range of ids")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"descending range {part!r}")
        if high is not None and last > high:
            raise ValueError(f"id {last} is above {high}, the largest the kernel has")
        out.update(range(first, last + 1))
    return tuple(sorted(out))


# ------------------------------------------------- reading the kernel's files
# What a file may hold before it is not a kernel file (sysfs gives at most a page,
# /proc/self/status a few KiB).
MAX_FILE_BYTES = 1 << 20
# The largest ids the kernel has: MAX_NUMNODES is at most 1 << 10 (NODES_SHIFT
# 10), NR_CPUS at most 8192 (x86 MAXSMP; 16384 leaves room).
MAX_NODE_ID = (1 << 10) - 1
MAX_CPU_ID = (1 << 14) - 1
_NUMBER = re.compile(r"-?[0-9]+", re.ASCII)


def parse_int(text: str, *, low: int = 0, high: int = (1 << 63) - 1) -> int:
    """The one integer a kernel file holds ("8\\n"), between `low` and `high`.

    Parameters
    ----------
    text : str
        The file's text; surrounding whitespace is ignored.
    low, high : int
        The range the value must lie in (inclusive).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        The text is not one decimal integer in range; the message says what it
        holds instead.

    Examples
    --------
    >>> from numa_numpy._kernel.sysfs import parse_int
    >>> parse_int("8\\n")
    8
    >>> parse_int("n/a")
    Traceback (most recent call last):
    ...
    ValueError: holds 'n/a', not a number
    """
    word = text.strip()
    if not word:
        raise ValueError("is empty, not a number")
    if not _NUMBER.fullmatch(word):
        raise ValueError(f"holds {_clip(word)!r}, not a number")
    if len(word.lstrip("-")) > 19:
        raise ValueError(f"holds {_clip(word)!r}, a number too large")
    value = int(word)
    if not low <= value <= high:
        raise ValueError(f"holds {value}, outside {low}..{high}")
    return value


def _clip(text: str, most: int = 40) -> str:
    return text if len(text) <= most else text[:most] + "..."


def _decode(data: bytes) -> str:
    """A kernel file's bytes as text; ValueError says why they are not.

    Trailing NULs are dropped: ``tar`` pads a sysfs file (which claims a page
    whatever it holds) with them up to that size.
    """
    data = data.rstrip(b"\0")
    if b"\0" in data:
        raise ValueError(f"holds a NUL byte at offset {data.index(0)}: not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


class KernelFiles:
    """Reads kernel files (sysfs, /proc, cgroup) under a root folder, and keeps a
    note of each file it could not read and why, instead of raising.

    A file that does not exist reads as None without a note (most files are
    optional: an older kernel, no HMAT, no cgroup v1). Everything else that is
    not what the kernel writes is noted and reads as None: a folder or a device
    where a file should be, a file where a folder should be, permission denied,
    bytes that are not UTF-8 text, NULs inside the text (trailing NULs, which
    ``tar`` adds to sysfs files, are dropped), more than 1 MiB, and for `integer`
    and `ids` text that is not a number or an id list in range.

    Parameters
    ----------
    root : path-like, default "/"
        The folder the kernel's layout starts at (``root/sys``, ``root/proc``).

    Attributes
    ----------
    problems : dict of str to str
        The file as it is on the machine described (``/sys/...``) -> what was
        wrong with it, in the order found.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from numa_numpy._kernel.sysfs import KernelFiles
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "nr_hugepages").write_bytes(b"8\\n" + b"\\0" * 100)  # as tar pads it
    >>> _ = (root / "cpulist").write_text("5-2\\n")
    >>> files = KernelFiles(root)
    >>> files.integer("nr_hugepages"), files.ids("cpulist"), files.text("absent")
    (8, None, None)
    >>> files.problems
    {'/cpulist': "holds '5-2': descending range '5-2'"}
    """

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(os.fspath(root))
        self.problems: dict[str, str] = {}

    def path(self, where: str | os.PathLike[str]) -> Path:
        """`where` under the root (an absolute Path is taken as it is)."""
        if isinstance(where, Path) and where.is_absolute():
            return where
        return self.root / os.fspath(where).lstrip("/")

    def shown(self, path: Path) -> str:
        """A path as it is on the machine described (without the root's prefix)."""
        if self.root == Path("/") or path == self.root:
            return str(path)
        try:
            return "/" + str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def note(self, where: str | os.PathLike[str], why: str) -> None:
        """Keep `why` as the problem of file `where` (the first problem found stays)."""
        self.problems.setdefault(self.shown(self.path(where)), why)

    def problem(self, where: str | os.PathLike[str]) -> str | None:
        """What was wrong with `where` when it was read, or None."""
        return self.problems.get(self.shown(self.path(where)))

    def text(self, where: str | os.PathLike[str], *, required: bool = False) -> str | None:
        """The text of a file, or None (noted unless the file does not exist,
        and then too when `required`)."""
        path = self.path(where)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            if required:
                self.note(path, "is missing")
            return None
        except NotADirectoryError:
            self._not_a_folder(path)
            return None
        except ValueError:  # Python's words for it differ between versions
            self.note(path, "cannot be read: its name holds a NUL byte")
            return None
        except OSError as exc:
            self.note(path, f"cannot be read: {exc.strerror or exc}")
            return None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
                self.note(path, f"is {kind}, not a file")
                return None
            chunks = []
            size = 0
            while size <= MAX_FILE_BYTES:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            self.note(path, f"cannot be read: {exc.strerror or exc}")
            return None
        finally:
            os.close(fd)
        if size > MAX_FILE_BYTES:
            self.note(path, f"holds more than {MAX_FILE_BYTES >> 20} MiB: not a kernel file")
            return None
        try:
            return _decode(b"".join(chunks))
        except ValueError as exc:
            self.note(path, str(exc))
            return None

    def _not_a_folder(self, path: Path) -> None:
        """Note the file on `path` that stands where a folder should."""
        for parent in path.parents:
            if os.path.exists(parent) and not os.path.isdir(parent):
                self.note(parent, "is a file where a folder is expected")
                return
        self.note(path, "cannot be read: a folder on its path is a file")

    def integer(
        self,
        where: str | os.PathLike[str],
        *,
        low: int = 0,
        high: int = (1 << 63) - 1,
        required: bool = False,
    ) -> int | None:
        """The integer a file holds (`parse_int`), or None (noted as for `text`)."""
        text = self.text(where, required=required)
        if text is None:
            return None
        try:
            return parse_int(text, low=low, high=high)
        except ValueError as exc:
            self.note(where, str(exc))
            return None

    def ids(
        self,
        where: str | os.PathLike[str],
        *,
        high: int = MAX_CPU_ID,
        required: bool = False,
    ) -> tuple[int, ...] | None:
        """The id list a file holds (`parse_list`, ids up to `high`), or None."""
        text = self.text(where, required=required)
        return None if text is None else self.parse_ids(text, where, high=high)

    def parse_ids(
        self, text: str, where: str | os.PathLike[str], *, high: int = MAX_CPU_ID
    ) -> tuple[int, ...] | None:
        """`text`, read from `where`, as an id list; None (noted) if it is not."""
        try:
            return parse_list(text, high=high)
        except ValueError as exc:
            self.note(where, f"holds {_clip(text.strip())!r}: {exc}")
            return None

    def names(self, where: str | os.PathLike[str]) -> list[str]:
        """The sorted names in a folder; [] when it does not exist or cannot be
        listed (noted)."""
        path = self.path(where)
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            if os.path.exists(path):
                self.note(path, "is a file where a folder is expected")
            else:
                self._not_a_folder(path)
            return []
        except ValueError:
            self.note(path, "cannot be listed: its name holds a NUL byte")
            return []
        except OSError as exc:
            self.note(path, f"cannot be listed: {exc.strerror or exc}")
            return []


def _meminfo_kib(files: KernelFiles, where: str | os.PathLike[str], key: str) -> int | None:
    """`key`'s value in a meminfo file (/proc/meminfo or a node's), in KiB; None
    (noted) when the file has no such line or its value is not "N kB"."""
    text = files.text(where, required=True)
    if text is None:
        return None
    match = re.search(rf"^(?:Node [0-9]+ )?{key}:[ \t]*(.*?)\s*$", text, re.MULTILINE)
    if match is None:
        files.note(where, f"has no {key} line")
        return None
    value = re.fullmatch(r"([0-9]{1,19}) kB", match.group(1), re.ASCII)
    if value is None:
        files.note(where, f"{key} is {_clip(match.group(1))!r}, not 'N kB'")
        return None
    return int(value.group(1))


# --- cgroups: the one way to find this process's cgroup folders -------------------


@dataclass(frozen=True)
class CgroupMount:
    """Where a cgroup hierarchy is mounted (under the root read from) and which
    folder of the hierarchy that mount shows (not "/" inside a container that
    mounts only its own cgroup)."""

    folder: Path
    shows: str = "/"


def _mountinfo_cgroups(files: KernelFiles) -> dict[str, CgroupMount]:
    """The cgroup mounts /proc/self/mountinfo lists: "v2", and each v1
    controller by name ("cpuset", "memory", ...), the first mount of each."""
    found: dict[str, CgroupMount] = {}
    for line in (files.text(self_file("mountinfo")) or "").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or not tail:
            continue
        mount = CgroupMount(files.path(fields[4]), fields[3])
        if tail[0] == "cgroup2":
            found.setdefault("v2", mount)
        elif tail[0] == "cgroup" and len(tail) >= 3:
            for option in tail[-1].split(","):
                found.setdefault(option, mount)
    return found


def cgroup_mounts(files: KernelFiles) -> dict[str, CgroupMount]:
    """The cgroup hierarchies of the tree `files` reads: from mountinfo, else
    (no mountinfo, or no cgroup in it: a copy of /sys and /proc) where systemd
    mounts them: v2 at /sys/fs/cgroup (unified/ on a hybrid host, whose
    /sys/fs/cgroup holds the v1 trees), each v1 controller in a folder of its
    name."""
    found = _mountinfo_cgroups(files)
    if found:
        return found
    base = files.path(CGROUP_ROOT)
    v2 = base
    if not os.path.exists(base / "cgroup.controllers") and os.path.isdir(base / "unified"):
        v2 = base / "unified"
    found["v2"] = CgroupMount(v2)
    for controller in ("cpuset", "memory"):
        found[controller] = CgroupMount(base / controller)
    return found


def cgroup_folders(files: KernelFiles, controller: str) -> dict[str, Path]:
    """This process's cgroup folders that hold `controller`'s files, by hierarchy
    ("v2": the unified tree; "v1": the controller's own), from /proc/self/cgroup
    and the mounts."""
    where = self_file("cgroup")
    mounts = cgroup_mounts(files)
    found: dict[str, Path] = {}
    for line in (files.text(where) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        path = path.strip()
        if ".." in Path(path.lstrip("/")).parts:  # would read outside the cgroup tree
            files.note(where, f"names a cgroup path with '..': {_clip(path)!r}")
            continue
        if hierarchy == "0":
            version, mount = "v2", mounts.get("v2")
        elif controller in controllers.split(","):
            version, mount = "v1", mounts.get(controller)
        else:
            continue
        if mount is None or version in found:
            continue
        shows = mount.shows.rstrip("/")
        if shows and (path == shows or path.startswith(shows + "/")):
            path = path[len(shows) :]
        found[version] = mount.folder / path.lstrip("/")
    return found


@dataclass(frozen=True)
class MemoryLimit:
    """The tightest limit on this process's memory, and where it comes from."""

    bytes: int
    source: str


def _limit(files: KernelFiles, path: Path) -> int | None:
    """A cgroup limit file's bytes; None for "max", absent or no limit."""
    text = (files.text(path) or "").strip()
    if text == "max" or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value < UNLIMITED else None


def _up_to(folder: Path, top: Path) -> Iterator[Path]:
    """`folder` and its parents up to `top` (the mount), within it."""
    while True:
        yield folder
        if folder == top or top not in folder.parents:
            return
        folder = folder.parent


def memory_limit(root: Path = Path("/")) -> MemoryLimit:
    """The memory this process may use: the machine's (MemTotal), or less where a
    memory cgroup limits it (v1 ``memory.limit_in_bytes``; v2 ``memory.max`` and
    ``memory.high``), checked from the process's own cgroup up to the root.

    Parameters
    ----------
    root : pathlib.Path, default Path("/")
        Where ``/proc`` and ``/sys`` are read from (tests pass a fake tree).

    Returns
    -------
    MemoryLimit
        ``bytes`` and ``source`` (``"MemTotal"`` or the cgroup file that set
        it). The cache budget's default is an eighth of it, at most 1 GiB.

    See Also
    --------
    set_cache_limit

    Examples
    --------
    >>> import numa_numpy as nn
    >>> limit = nn.memory_limit()
    >>> limit.bytes > 0, limit.source != ""
    (True, True)
    """
    files = KernelFiles(root)
    total = _meminfo_kib(files, MEMINFO, "MemTotal")
    best = MemoryLimit(total << 10, "MemTotal") if total else MemoryLimit(0, "")
    mounts = cgroup_mounts(files)
    names = {"v2": ("memory.max", "memory.high"), "v1": ("memory.limit_in_bytes",)}
    for version, folder in cgroup_folders(files, "memory").items():
        mount = mounts["v2" if version == "v2" else "memory"].folder
        for place in _up_to(folder, mount):
            for name in names[version]:
                value = _limit(files, place / name)
                if value is not None and (not best.bytes or value < best.bytes):
                    best = MemoryLimit(value, f"cgroup {version} {place / name}")
    return best


# --- files of processes -----------------------------------------------------------


def start_time(pid: int | str) -> int | None:
    """The process's start time (clock ticks after boot), None if there is none."""
    try:
        text = process_file("stat", pid).read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces and parentheses: the fields follow the last ')'
    return int(text[text.rindex(")") + 2 :].split()[19])


def pid_namespace() -> int:
    """The inode of this process's pid namespace (0 where it cannot be read):
    a pid means the same process only within one."""
    try:
        return os.stat(process_file("ns/pid")).st_ino
    except OSError:
        return 0


def thread_ids() -> list[int]:
    """The ids of this process's threads now."""
    return [int(entry) for entry in os.listdir(process_file("task"))]
