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
    "NumaWarning",
]


class NumaError(Exception):
    """Base class of every numa_numpy error. Extra details live in attributes."""

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
    """


class InvalidPolicyError(NumaError, ValueError):
    """A policy that cannot be expressed: bad syntax or flags the kernel rejects."""


class NumaAllocationError(NumaError, MemoryError):
    """Memory could not be allocated under the policy.

    Attributes: ``size`` (bytes), ``policy`` and ``errno``.
    """


class NumaUnavailableError(NumaError, OSError):
    """The kernel lacks what was asked for (a policy mode, a system call)."""


class PolicyNotEnforcedError(NumaError):
    """strict=True and the kernel did not place memory as the policy says.

    Attributes: ``policy``, ``errno`` (0 when no system call failed) and ``reason``.
    """


class MigrationError(NumaError, ValueError):
    """migrate() refused an array whose pages it cannot move safely (a view, or
    a small block that shares its pages with other arrays)."""


class CacheSettingError(NumaError, ValueError):
    """A cache limit or decay time that cannot be used (negative, not a number)."""


class NumaWarning(RuntimeWarning):
    """A policy was not enforced and numa_numpy fell back (soft mode)."""


for _cls in (
    NumaError,
    InvalidNodeError,
    InvalidPolicyError,
    NumaAllocationError,
    NumaUnavailableError,
    PolicyNotEnforcedError,
    MigrationError,
    NumaWarning,
):
    _cls.__module__ = "numa_numpy"


def describe_errno(err: int, call: str) -> str:
    """'Operation not permitted (EPERM, originated from mbind)'."""
    name = _errno.errorcode.get(err, str(err))
    return f"{os.strerror(err)} ({name}, originated from {call})"
