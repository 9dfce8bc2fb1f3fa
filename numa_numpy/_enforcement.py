"""Strict or soft: the one decision, and warnings that point at the user's line."""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING

from .errors import NumaWarning, PolicyNotEnforcedError

if TYPE_CHECKING:
    from ._handler import AllocationOptions

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The `stacklevel` that makes warnings.warn, called by our caller, name the
    first frame outside numa_numpy: counted, because the depth depends on the
    path (a constructor, a scope, a decorator, a region...)."""
    frame = sys._getframe(1)  # the function that calls warnings.warn: level 1
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn(message: str, category: type[Warning] = NumaWarning) -> None:
    """warnings.warn attributed to the user's line."""
    warnings.warn(message, category, stacklevel=user_stacklevel())


def refuse_or_warn(options: AllocationOptions, reason: str, err: int = 0) -> None:
    """Strict: raise PolicyNotEnforcedError. Soft: one NumaWarning at the user's line."""
    if options.strict:
        raise PolicyNotEnforcedError(
            f"strict {options.policy}: {reason}", policy=options.policy, errno=err, reason=reason
        )
    warn(
        f"numa_numpy: {options.policy} is not fully enforced: {reason}; "
        "pass strict=True to raise instead"
    )
