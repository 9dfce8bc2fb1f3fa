"""One NumPy memory handler per (policy, options): an arena of policy-bound
memory in C and the "mem_handler" capsule NumPy keeps with every array it makes.

Handlers are made once and cached, so scopes are cheap to enter and freed memory
is reused. Whether the kernel accepts a policy is decided here, once, by a probe:
strict raises, soft warns once and allocates unbound (and says so).
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from typing import Any

from .._kernel import arena as _arena
from .._kernel.lib import errno_of, lib, rephrase
from .._kernel.topology import Topology
from .._policies.cstructs import binding_struct, prefault_plan
from .._policies.enforcement import (
    Enforcement,
    EnforcementLevel,
    huge_page_shortfall,
    node_shortfall,
    refuse_or_warn,
)
from .._policies.options import AllocationOptions
from .._policies.policy import Policy, validate
from ..errors import InvalidPolicyError, NumaAllocationError, NumaError, PolicyNotEnforcedError
from . import bridge as _bridge
from .bridge import HANDLER_NAME
from .budget import cache_rule


def default_cache_limit(policy: Policy, topo: Topology) -> int:
    """A handler's own cap on the freed blocks it keeps, within the process-wide
    budget: the budget rule (numa_numpy._alloc.budget) over its nodes' memory,
    so that a cache never fills a small node that others need."""
    named = [n for n in policy.resolved_nodes(topo) if n in topo.node_ids]
    nodes = named or list(topo.usable_nodes) or list(topo.node_ids)
    return cache_rule(sum(topo.node(n).memory_total for n in nodes)).budget


def _shortfall(options: AllocationOptions, topo: Topology) -> Enforcement:
    """What can be known before asking the kernel: nodes without memory or
    outside the cpuset, no explicit huge pages free (strict raises, soft warns)."""
    policy = options.policy
    shortfall = "; ".join(
        filter(None, [node_shortfall(policy, topo), huge_page_shortfall(options, topo)])
    )
    if shortfall:
        refuse_or_warn(options, shortfall)
        return Enforcement(EnforcementLevel.BEST_EFFORT, shortfall)
    return Enforcement(EnforcementLevel.STRICT if options.strict else EnforcementLevel.BEST_EFFORT)


def _new_arena(options: AllocationOptions, topo: Topology, parts: tuple[Policy, ...] | None) -> Any:
    policy = options.policy
    # a partitioned arena's small blocks (sharing pages) follow its first part
    binding, _mask = binding_struct(parts[0] if parts else policy, topo)
    plan, _cpus = prefault_plan(options, topo)
    arena = _arena.arena_new(binding, options.huge_pages.c_value, plan, options.strict)
    if arena is None:
        raise NumaAllocationError(
            f"cannot create an arena for {policy}", size=0, policy=policy, errno=12
        )
    if parts:
        structs = [binding_struct(p, topo) for p in parts]  # (binding, mask): kept alive
        try:
            _arena.arena_set_parts(arena, [s[0][0] for s in structs])
        except NumaError as exc:
            _arena.arena_destroy(arena)
            raise rephrase(
                exc,
                f"cannot create an arena for {policy}",
                NumaAllocationError,
                size=0,
                policy=policy,
            ) from None
    return arena


def _check_parts(options: AllocationOptions, parts: tuple[Policy, ...]) -> None:
    """What a split allocation cannot be: empty, wider than the C layer's
    table, or in explicit huge pages (a block's header shares its first huge
    page, so its cuts would not be the caller's)."""
    policy = options.policy
    if not parts or len(parts) > lib.NN_MAX_PARTS:
        raise InvalidPolicyError(
            f"{policy}: between 1 and {lib.NN_MAX_PARTS} nodes, not {len(parts)}", policy=policy
        )
    if options.huge_pages.c_value in (lib.NN_HUGE_EXPLICIT_2MB, lib.NN_HUGE_EXPLICIT_1GB):
        raise InvalidPolicyError(
            f"{policy} cannot use explicit huge pages ({options.huge_pages.name.lower()}): "
            "NumPy's blocks are split in base or transparent huge pages only; use "
            "huge_pages='transparent' (or a NumaRegion, which splits hugetlb memory)",
            policy=policy,
        )


def _probe(arena: Any, options: AllocationOptions, enforcement: Enforcement) -> Enforcement:
    """Ask the kernel once, with one page, whether it takes the policy. Refused:
    strict raises (and the arena goes), soft allocates unbound from now on."""
    policy = options.policy
    try:
        _arena.arena_probe(arena)
    except NumaError as exc:
        refusal = exc
    else:
        return enforcement
    if errno_of(refusal) == errno.ENOMEM:  # no page to probe with: out of memory, not a refusal
        _arena.arena_destroy(arena)
        raise rephrase(
            refusal,
            f"cannot map a page to probe {policy}",
            NumaAllocationError,
            size=0,
            policy=policy,
        ) from None
    reason = f"the kernel refused it: {refusal}"
    try:
        refuse_or_warn(options, reason, errno_of(refusal))
    except PolicyNotEnforcedError:
        _arena.arena_destroy(arena)
        raise
    _arena.arena_disable_binding(arena, errno_of(refusal))
    return Enforcement(EnforcementLevel.NONE, reason)


class Handler:
    """A NumPy memory handler bound to one policy (one arena, one capsule)."""

    def __init__(self, options: AllocationOptions) -> None:
        self.options = options
        topo = validate(options.policy)
        # the nodes as the arena was made with them (a Partitioned block's parts)
        self.nodes: tuple[int, ...] = tuple(options.policy.resolved_nodes(topo))
        # what no kernel could honour is said first, before the pool and node checks
        # (which warn in soft mode and name a fix that would not help)
        parts = options.policy.parts(topo)
        if parts is not None:
            _check_parts(options, parts)
        enforcement = _shortfall(options, topo)
        arena = _new_arena(options, topo, parts)
        enforcement = _probe(arena, options, enforcement)
        _arena.arena_set_cache_limit(arena, default_cache_limit(options.policy, topo))
        capsule = _arena.handler_new(arena, HANDLER_NAME)
        if capsule is None:
            _arena.arena_destroy(arena)
            raise NumaAllocationError(
                "cannot create a NumPy handler", size=0, policy=options.policy, errno=12
            )
        self.arena = arena
        self.capsule = capsule
        self._capsule_object: Any = None
        self.enforcement = enforcement
        self.retired = False
        self.id = int(self._stats_struct().id)
        self.arena_address = _arena.address_of(arena)
        _BY_ARENA[self.arena_address] = self

    @property
    def policy(self) -> Policy:
        return self.options.policy

    @property
    def capsule_object(self) -> Any:
        """The capsule as a Python object, to set NumPy's ContextVar directly."""
        published = self._capsule_object
        if published is None:
            with _LOCK:  # retire() runs under it too: the capsule cannot die mid-way
                if self.capsule is not None and self._capsule_object is None:
                    capsule = _bridge.capsule_object(self.capsule)
                    # registered before it is published: a thread that sees the
                    # object must also find its handler (current_policy() would say None)
                    _BY_CAPSULE[id(capsule)] = self
                    self._capsule_object = capsule
                published = self._capsule_object
            if published is None:  # retired while a scope was resolving it
                return handler_for(self.options).capsule_object
        return published

    def _stats_struct(self) -> Any:
        if not self.retired:
            return _arena.arena_stats(self.arena)
        return _arena.arena_stats(arena_id=self.id)

    def stats(self) -> dict[str, Any]:
        """The arena's counters; {} for a retired handler whose arena is gone."""
        out = self._stats_struct()
        return {} if out is None else {name: int(getattr(out, name)) for name in dir(out)}

    def last_errno(self) -> int:
        stats = self.stats()
        return int(stats["last_error"]) if stats else 0

    def trim(self) -> int:
        if self.retired:
            return _arena.arena_trim(arena_id=self.id)
        return _arena.arena_trim(self.arena)

    def set_cache_limit(self, nbytes: int) -> None:
        """This handler's own cap, within the process-wide budget."""
        if not self.retired:
            _arena.arena_set_cache_limit(self.arena, nbytes)

    def cached_mappings(self) -> list[tuple[int, int]]:
        """(address, length) of the freed blocks this handler caches now (none
        for a retired handler, whose arena may go away at any moment)."""
        if self.retired:
            return []
        return _arena.arena_cached_mappings(self.arena)

    def retire(self) -> None:
        """Forgotten by the pool (forget_handlers): give up this object's own
        reference to the capsule, so the arena lives exactly as long as its
        users (scopes, threads' contexts, arrays) hold the capsule. Until then it
        stays listed (all_handlers) and is reached through its id only: its
        arena may be destroyed by another thread at any moment."""
        self.retired = True
        capsule, self.capsule = self.capsule, None
        self._capsule_object = None
        if capsule is not None:
            _arena.handler_release(capsule)

    def __repr__(self) -> str:
        retired = " retired" if self.retired else ""
        return f"<numa_numpy handler {self.policy} {self.enforcement}{retired}>"

    def __del__(self) -> None:
        # Arrays hold their own references to the capsule: the arena is destroyed
        # only after the last of them is freed.
        capsule = getattr(self, "capsule", None)
        if capsule is not None and _arena is not None:
            _arena.handler_release(capsule)


# The caches, and the one counter that keeps them consistent:
# - here, _CACHE: one handler per options (what a scope resolves to);
# - in _scope: the scope objects per policy/options (on_node(0) in a loop builds
#   nothing), and in each PolicyScope its handler and capsule;
# - _creation has none of its own: constructors use _scope's.
# forget_handlers() empties _CACHE and bumps `generation`; a scope whose
# remembered generation differs resolves its handler again at its next entry,
# and _memory.forget_handlers() clears _scope's caches too.
_CACHE: dict[AllocationOptions, Handler] = {}
# Every handler whose arena may still be alive, pooled or retired, by arena id:
# a retired handler stays reachable (memory_stats, free_all_blocks, placement,
# current_policy) while anything still uses its capsule, and is dropped once
# the C side no longer lists its arena.
_LIVE: dict[int, Handler] = {}
_BY_CAPSULE: weakref.WeakValueDictionary[int, Handler] = weakref.WeakValueDictionary()
_BY_ARENA: weakref.WeakValueDictionary[int, Handler] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()
generation = 0


def handler_for(options: AllocationOptions) -> Handler:
    """The cached handler for these options, made (and probed) on first use."""
    handler = _CACHE.get(options)
    if handler is None:
        with _LOCK:
            handler = _CACHE.get(options)
            if handler is None:
                _prune()
                handler = _CACHE[options] = Handler(options)
                _LIVE[handler.id] = handler
    return handler


def active_handler() -> Handler | None:
    """The numa_numpy handler NumPy uses here and now, if it is one of ours."""
    var = _bridge.numpy_handler_var
    if var is None:
        return None
    capsule = var.get()
    handler = _BY_CAPSULE.get(id(capsule))
    if handler is not None and handler.retired:
        # its capsule may be gone and the id reused: ask the capsule itself
        if _arena.handler_arena(capsule) != handler.arena_address:
            return None
    return handler


def handler_of_arena(arena_address: int) -> Handler | None:
    return _BY_ARENA.get(arena_address)


def _prune() -> None:
    """Drop retired handlers whose arena is gone (called with _LOCK held)."""
    if not any(h.retired for h in _LIVE.values()):
        return
    live = _arena.arena_ids()
    for key in [k for k, h in _LIVE.items() if h.retired and k not in live]:
        del _LIVE[key]


def all_handlers() -> list[Handler]:
    """Every handler still alive: the pool's, and retired ones still in use."""
    with _LOCK:
        _prune()
        return list(_LIVE.values())


def release_handlers() -> None:
    """Forget every pooled handler. Scopes made before re-resolve to fresh ones;
    a retired handler's memory returns to the system once its last user (array,
    thread context, scope) is gone."""
    global generation
    with _LOCK:
        for handler in _CACHE.values():
            handler.retire()
        _CACHE.clear()
        generation += 1
        _prune()


def _reset_after_fork() -> None:
    # Locks held by another thread at fork time stay held in the child.
    global _LOCK
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
