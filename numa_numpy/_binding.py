"""Binding an existing range to a policy: mbind, then populate, then (strict)
verify page by page. Used by regions, shared arrays and migration; the NumPy
handler does the same in C for its own blocks."""

from __future__ import annotations

from ._cstructs import binding_struct, prefault_plan
from ._enforcement import Enforcement, EnforcementLevel, node_shortfall, refuse, refuse_or_warn
from ._lib import error, failed_step, ffi, lib
from ._options import AllocationOptions, Prefault
from ._placement import pages_of
from ._policy import Policy, validate
from ._topology import Topology, format_list
from .errors import NumaAllocationError, describe_errno


def off_policy_pages(address: int, length: int, policy: Policy, topo: Topology) -> int:
    """Present pages of the range that are not on the nodes the policy allows."""
    allowed = policy.allowed_nodes(topo)
    if allowed is None:
        return 0
    _, status = pages_of(address, length)
    present = status[status >= 0]
    return int((~(present[:, None] == list(allowed)).any(axis=1)).sum()) if present.size else 0


def bind_range(
    address: int,
    length: int,
    page_size: int,
    options: AllocationOptions,
    *,
    move: bool = False,
    extra_reason: str = "",
) -> Enforcement:
    """Apply options.policy to [address, address+length), populate it when asked,
    verify it when strict. Raises as the options say; returns the enforcement."""
    policy = options.policy
    topo = validate(policy)
    reasons = [r for r in (node_shortfall(policy, topo), extra_reason) if r]
    if reasons:
        refuse_or_warn(options, "; ".join(reasons))
    level = EnforcementLevel.STRICT if options.strict else EnforcementLevel.BEST_EFFORT
    binding, _mask = binding_struct(policy, topo)
    flags = lib.NN_MPOL_MF_MOVE if move else 0
    rc = lib.nn_apply_binding(binding, ffi.cast("void *", address), length, flags)
    if rc < 0:
        reason = describe_errno(-rc, failed_step("mbind"))
        refuse_or_warn(options, f"the kernel refused it: {reason}", -rc)
        return Enforcement(EnforcementLevel.NONE, f"the kernel refused it: {reason}")
    if options.prefault is not Prefault.NONE:
        plan, _cpus = prefault_plan(options, topo)
        rc = lib.nn_check_room(binding, length)
        if rc == 0:
            rc = lib.nn_populate(ffi.cast("void *", address), length, page_size, plan)
        if rc < 0:  # the room check or the populate: the step says which
            raise error(
                -rc,
                f"cannot fault in {length} bytes under {policy}",
                NumaAllocationError,
                size=length,
                policy=policy,
            )
        off = off_policy_pages(address, length, policy, topo) if options.strict else 0
        if off:  # verified only when strict: a soft binding is not read back
            allowed = policy.allowed_nodes(topo) or frozenset()
            refuse(
                options,
                f"strict {policy}: {off} pages are off node {format_list(allowed)}",
                reason=f"{off} pages off-policy",
            )
    return Enforcement(level, "; ".join(reasons))
