"""Python values as the C layer's structs: a policy as an `nn_binding` (mode,
nodemask, maxnode, home node) and a prefault option as an `nn_prefault_plan`
(mode, threads, the CPUs to pin them to). Every caller of nn_map,
nn_apply_binding, nn_arena_new or nn_populate builds them here.
"""

from __future__ import annotations

from typing import Any

from .._kernel.lib import ffi
from .._kernel.topology import Topology
from .options import AllocationOptions, Prefault
from .policy import Policy

__all__ = ["binding_struct", "prefault_cpus", "prefault_plan"]


def binding_struct(policy: Policy, topo: Topology) -> tuple[Any, Any]:
    """An nn_binding for `policy` (and the mask array it points to, to keep alive)."""
    mode, words, maxnode, home = policy.kernel_args(topo)
    mask = ffi.new("unsigned long[]", words) if words else ffi.NULL
    binding = ffi.new(
        "nn_binding *",
        {"mode": mode, "home_node": home, "maxnode": maxnode, "nwords": len(words), "mask": mask},
    )
    return binding, mask


def prefault_cpus(policy: Policy, topo: Topology) -> list[int]:
    """CPUs that first-touch pages for Prefault.PARALLEL: those of the policy's
    nodes when they have any, else every CPU this process may use."""
    allowed = set(topo.allowed_cpus)
    cpus = [
        c
        for n in policy.resolved_nodes(topo)
        if n in topo.node_ids
        for c in topo.node(n).cpus
        if c in allowed
    ]
    return cpus or sorted(allowed)


def prefault_plan(options: AllocationOptions, topo: Topology) -> tuple[Any, Any]:
    """An nn_prefault_plan for `options` (and the CPU array it points to, to
    keep alive: cffi frees an array made inline in the initializer at once)."""
    cpus = prefault_cpus(options.policy, topo) if options.prefault is Prefault.PARALLEL else []
    cpu_array = ffi.new("int[]", cpus) if cpus else ffi.NULL
    plan = ffi.new(
        "nn_prefault_plan *",
        {
            "mode": options.prefault.c_value,
            "nthreads": len(cpus),
            "cpus": cpu_array,
            "ncpus": len(cpus),
        },
    )
    return plan, cpu_array
