"""Enforcement: whether the kernel can honour a request, and what happens when
it cannot. Strict raises PolicyNotEnforcedError, soft warns once at the user's
line: `refuse` is the one place that decides. A new enforcement rule (a
shortfall the kernel would not report) goes here.
"""

from __future__ import annotations

import enum
import os
import sys
import warnings
from dataclasses import dataclass

from .._kernel.sysfs import KernelFiles
from .._kernel.topology import Topology, format_list
from .._kernel.tunables import free_huge_pages
from ..errors import NumaWarning, PolicyNotEnforcedError
from .options import AllocationOptions, HugePages
from .policy import Policy

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


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


def refuse(
    options: AllocationOptions,
    message: str,
    soft_message: str | None = None,
    *,
    reason: str | None = None,
    err: int = 0,
) -> None:
    """The one strict/soft decision. Strict: raise PolicyNotEnforcedError(message)
    (its ``reason`` is `reason`, else the message). Soft: one NumaWarning saying
    `soft_message` (else the message) at the user's line."""
    if options.strict:
        raise PolicyNotEnforcedError(
            message, policy=options.policy, errno=err, reason=message if reason is None else reason
        )
    warn(message if soft_message is None else soft_message)


def refuse_or_warn(options: AllocationOptions, reason: str, err: int = 0) -> None:
    """`refuse` in the words of a policy that is not (fully) enforced."""
    refuse(
        options,
        f"strict {options.policy}: {reason}",
        f"numa_numpy: {options.policy} is not fully enforced: {reason}; "
        "pass strict=True to raise instead",
        reason=reason,
        err=err,
    )


def refuse_if_strict(options: AllocationOptions, reason: str) -> None:
    """Strict: raise now, as `refuse_or_warn` would. Soft: nothing yet; the
    caller passes `reason` on to the binding (bind_range), which warns once for
    every shortfall together."""
    if options.strict:
        refuse_or_warn(options, reason)


class EnforcementLevel(enum.Enum):
    """How far numa_numpy applied a policy: the ``level`` of an `Enforcement`.

    ``STRICT``: applied, and a refusal would have raised (``strict=True``).
    ``BEST_EFFORT``: applied in soft mode, or only partly (see the reason).
    ``NONE``: not applied, the memory is unbound (see the reason).
    `Enforcement.words` says which in words: "applied", "partly applied:
    <why>", "refused: <why>".

    See Also
    --------
    Enforcement, Placement.enforcement

    Examples
    --------
    >>> import numa_numpy as nn
    >>> a = nn.numa_ones(1000, node=0, strict=True)
    >>> nn.placement(a).enforcement.level
    <EnforcementLevel.STRICT: 'strict'>
    """

    STRICT = "strict"  # applied, and refusal would have raised
    BEST_EFFORT = "best-effort"  # applied in soft mode (or partly: see reason)
    NONE = "none"  # not applied: memory is unbound (see reason)


MIGRATED = "migrated from "  # the reason `placement` gives a block migrate() rebound
NOTHING_TO_PLACE = "nothing to place"  # a file range under the default policy
KERNEL_REFUSED = "the kernel refused "  # how a refusal's reason begins


@dataclass(frozen=True)
class Enforcement:
    """How far a policy is enforced, and why not further.

    ``str()`` says it in one of three words (`words`), defined in the guide's
    "Strict vs soft" page: ``"applied"``, ``"partly applied: <why>"`` or
    ``"refused: <why>"``; `placement` reports it for numa_numpy's memory, and
    so do regions, shared arrays and the handlers' reports.

    Parameters
    ----------
    level : EnforcementLevel
    reason : str, default ""
        Why the level is not STRICT, when there is a reason (the kernel's
        refusal, a node without memory, no huge pages reserved, ...).

    See Also
    --------
    EnforcementLevel, placement

    Examples
    --------
    >>> import numa_numpy as nn
    >>> e = nn.placement(nn.numa_ones(1000, node=0)).enforcement
    >>> e.level in (nn.EnforcementLevel.BEST_EFFORT, nn.EnforcementLevel.NONE)
    True
    >>> str(nn.Enforcement(nn.EnforcementLevel.NONE, "the kernel refused it: mbind: EPERM"))
    'refused by the kernel: mbind: EPERM'
    >>> str(nn.Enforcement(nn.EnforcementLevel.BEST_EFFORT, "node 3 has no memory"))
    'partly applied: node 3 has no memory'
    >>> soft, strict = nn.EnforcementLevel.BEST_EFFORT, nn.EnforcementLevel.STRICT
    >>> print(nn.Enforcement(soft), nn.Enforcement(strict), sep=", ")
    applied, applied (strict)
    """

    level: EnforcementLevel
    reason: str = ""

    @property
    def words(self) -> str:
        """What ``str()`` says: ``"applied"`` (``"applied (strict)"`` when a
        refusal would have raised), ``"partly applied: <why>"`` or
        ``"refused: <why>"``."""
        if self.reason.startswith(MIGRATED):  # the kernel holds migrate()'s policy now
            return f"applied ({self.reason})"
        if self.reason == NOTHING_TO_PLACE:
            return NOTHING_TO_PLACE
        if self.level is EnforcementLevel.NONE:
            if self.reason.startswith(KERNEL_REFUSED):  # "the kernel refused it: mbind: EPERM"
                return "refused by the kernel: " + self.reason.split(": ", 1)[-1]
            return "refused" + (f": {self.reason}" if self.reason else "")
        if self.reason:
            return f"partly applied: {self.reason}"
        return "applied (strict)" if self.level is EnforcementLevel.STRICT else "applied"

    def __str__(self) -> str:
        return self.words


def node_shortfall(policy: Policy, topo: Topology) -> str:
    """Why some named nodes cannot take pages here ('' when all can)."""
    if policy.relative_nodes or policy.static_nodes:
        return ""
    named = policy.resolved_nodes(topo)
    no_memory = [n for n in named if n not in topo.memory_nodes]
    not_allowed = [n for n in named if n in topo.memory_nodes and n not in topo.allowed_nodes]
    reasons = []
    if no_memory:
        reasons.append(f"node {format_list(no_memory)} has no memory")
    if not_allowed:
        reasons.append(
            f"node {format_list(not_allowed)} is outside this process's cpuset "
            f"(Mems_allowed: {format_list(topo.allowed_nodes)})"
        )
    return "; ".join(reasons)


def huge_page_shortfall(options: AllocationOptions, topo: Topology) -> str:
    """Why explicit huge pages cannot be had ('' when some are free)."""
    kib = {HugePages.EXPLICIT_2MB: 2048, HugePages.EXPLICIT_1GB: 1 << 20}.get(options.huge_pages)
    if kib is None:
        return ""
    nodes = [n for n in options.policy.resolved_nodes(topo) if n in topo.node_ids]
    nodes = nodes or list(topo.usable_nodes)
    free = 0
    files = KernelFiles()
    for node in nodes:
        free += free_huge_pages(files, node, kib) or 0
    if free:
        return ""
    return (
        f"no {options.huge_pages.value} huge pages free on node {format_list(nodes)} "
        f"(reserve some in /sys/devices/system/node/nodeN/hugepages/hugepages-{kib}kB/"
        "nr_hugepages)"
    )
