"""The exceptions and warnings numa_numpy raises: all rooted in NumaError."""

from __future__ import annotations

import errno as _errno
import os
from typing import Any

__all__ = [
    "NumaError",
    "InvalidNodeError",
    "InvalidPolicyError",
    "NumaAllocationError",
    "NumaUnavailableError",
    "PolicyNotEnforcedError",
    "MigrationError",
    "CacheSettingError",
    "ParallelSettingError",
    "SharedSegmentError",
    "NumaWarning",
]


class NumaError(Exception):
    """Base class of every numa_numpy error. Extra details live in attributes.

    Errors from a system call carry ``errno`` and ``step`` (the call that
    failed: ``mmap``, ``mbind``, ``madvise(MADV_POPULATE_WRITE)``, ...); every
    error pickles with its attributes, so a worker process's error arrives
    whole.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> try:
    ...     nn.numa_zeros(4, node=4095)
    ... except nn.NumaError as exc:             # every numa_numpy error
    ...     print(type(exc).__name__, exc.nodes)
    InvalidNodeError (4095,)
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.__dict__.update(details)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the attributes across pickling (multiprocessing sends errors back).
        details = {k: v for k, v in self.__dict__.items() if not k.startswith("__")}
        return (_rebuild, (type(self), str(self), details))


def _rebuild(cls: type[NumaError], message: str, details: dict[str, Any]) -> NumaError:
    return cls(message, **details)


class InvalidNodeError(NumaError, ValueError):
    """A node that does not exist, has no memory, or is not a valid node id.

    Attributes: ``nodes`` (the offending ids) and ``available`` (the ids that exist).
    Raised in soft and strict mode alike: a node that does not exist is a
    mistake, not a machine's limit. It is a `ValueError`.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> try:
    ...     with nn.on_node(4095):             # checked where the scope is entered
    ...         pass
    ... except nn.InvalidNodeError as exc:
    ...     print(exc)                          # doctest: +ELLIPSIS
    node 4095 does not exist; nodes on this machine: ...
    """


class InvalidPolicyError(NumaError, ValueError):
    """A policy that cannot be expressed: bad syntax or flags the kernel rejects.

    Also raised for an unknown ``huge_pages=`` or ``prefault=`` value. It is a
    `ValueError`.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> try:
    ...     nn.as_policy("bogus:1")
    ... except nn.InvalidPolicyError as exc:
    ...     print(str(exc)[:35])
    unknown policy 'bogus' in 'bogus:1'
    """


class NumaAllocationError(NumaError, MemoryError):
    """Memory could not be allocated under the policy.

    Attributes: ``size`` (bytes), ``policy`` and ``errno``. It is a
    `MemoryError`, so code that handles NumPy's out-of-memory handles it too.
    With ``prefault="touch"`` a node out of memory raises it at allocation
    instead of a SIGBUS at first touch.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> try:
    ...     nn.numa_empty(1 << 50, node=0)  # 8 PiB: more than any address space
    ... except nn.NumaAllocationError as exc:
    ...     print(exc.size, exc.errno, isinstance(exc, MemoryError))
    9007199254740992 12 True
    """


class NumaUnavailableError(NumaError, OSError):
    """The kernel lacks what was asked for (a policy mode, a system call).

    The message names the kernel version needed (``needed``). It is an
    `OSError`; raised in soft and strict mode alike.

    Examples
    --------
    >>> import pickle, numa_numpy as nn
    >>> err = nn.NumaUnavailableError(
    ...     "weighted-interleave needs Linux 6.9 or newer; this kernel is 6.1", needed=(6, 9)
    ... )
    >>> isinstance(err, OSError), pickle.loads(pickle.dumps(err)).needed
    (True, (6, 9))
    """


class PolicyNotEnforcedError(NumaError):
    """strict=True and the kernel did not place memory as the policy says.

    Attributes: ``policy``, ``errno`` (0 when no system call failed) and ``reason``.
    In soft mode (the default) the same situation gives one `NumaWarning`
    and a fallback, recorded in ``placement(a).enforcement``.

    Examples
    --------
    Its attributes survive pickling (process pools send errors back):

    >>> import pickle, numa_numpy as nn
    >>> err = nn.PolicyNotEnforcedError(
    ...     "strict bind:1: the kernel refused it", policy=nn.Bind(1), errno=1, reason="refused"
    ... )
    >>> back = pickle.loads(pickle.dumps(err))
    >>> back.policy, back.errno, back.reason
    (Bind(1), 1, 'refused')
    """


class MigrationError(NumaError, ValueError):
    """migrate() refused an array whose pages it cannot move safely (a view, or
    a small block that shares its pages with other arrays).

    Copy such an array instead: ``numa_array(a, policy=...)``.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_ones(1 << 20, node=0)
    >>> try:
    ...     nn.migrate(a[2:], 0)
    ... except nn.MigrationError as exc:
    ...     print(str(exc)[:30])
    migrate() moves whole pages, w
    """


class CacheSettingError(NumaError, ValueError):
    """A cache limit or decay time that cannot be used (negative, not a number).

    Examples
    --------
    >>> import numa_numpy as nn
    >>> try:
    ...     nn.set_cache_limit(-1)
    ... except nn.CacheSettingError as exc:
    ...     print(exc)
    cache limit must be >= 0 bytes, not -1
    """


class ParallelSettingError(NumaError, ValueError):
    """A parallel-mode setting that cannot be used: a threshold that is not an
    int >= 1, a node without CPUs or that does not exist, a switch that is not
    a bool, or a bad ``NUMA_NUMPY_PARALLEL_THRESHOLD``. It is a `ValueError`.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> try:
    ...     nn.set_parallel(True, threshold=-1)
    ... except nn.ParallelSettingError as exc:
    ...     print(exc)
    parallel threshold must be an int >= 1 (elements), not -1
    """


class SharedSegmentError(NumaError, ValueError):
    """A shared-memory name or segment that numa_numpy cannot use.

    Raised by `attach_shared` (and by unpickling a `SharedArray`) for a name
    that is not a valid name in /dev/shm (empty, holding ``/`` or a NUL, longer
    than 255 bytes), that names nothing, a directory or another non-file, and
    for a segment whose header numa_numpy did not write: another program's, an
    older format, or any field that does not describe an array inside the
    segment. Every field is checked before an array is made, and nothing stays
    mapped or open after the error. Attributes: ``name`` and ``field`` (what
    is at fault: ``"name"``, ``"magic"``, ``"version"``, ``"meta_bytes"``,
    ``"data_offset"``, ``"data_bytes"``, ``"metadata"``, ``"dtype"``,
    ``"shape"``, ``"order"``, ``"policy"`` or ``"view"``). It is a
    `ValueError`.

    Examples
    --------
    >>> import numa_numpy as nn
    >>> try:
    ...     nn.attach_shared("no/such/segment")
    ... except nn.SharedSegmentError as exc:
    ...     print(exc.field, isinstance(exc, ValueError))
    name True
    """


class NumaWarning(RuntimeWarning):
    """A policy was not enforced and numa_numpy fell back (soft mode).

    Issued once per cause, attributed to the caller's line (not numa_numpy's).
    Make it an error with ``warnings.simplefilter("error", nn.NumaWarning)``,
    or pass ``strict=True`` to get `PolicyNotEnforcedError` instead.

    Examples
    --------
    >>> import warnings, numa_numpy as nn
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", nn.NumaWarning)  # soft refusals now raise
    ...     a = nn.numa_zeros(16, node=0)  # enforced here: no warning, no error
    >>> issubclass(nn.NumaWarning, RuntimeWarning)
    True
    """


for _cls in (
    NumaError,
    InvalidNodeError,
    InvalidPolicyError,
    NumaAllocationError,
    NumaUnavailableError,
    PolicyNotEnforcedError,
    MigrationError,
    SharedSegmentError,
    NumaWarning,
):
    _cls.__module__ = "numa_numpy"


def describe_errno(err: int, call: str) -> str:
    """'Operation not permitted (EPERM, originated from mbind)'."""
    name = _errno.errorcode.get(err, str(err))
    return f"{os.strerror(err)} ({name}, originated from {call})"
