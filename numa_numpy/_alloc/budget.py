"""How much freed memory numa_numpy keeps for reuse: the one rule.

A cache of freed blocks keeps at most an eighth of the memory it lives within,
and never more than 1 GiB: the process's budget is the rule over its memory
limit (`numa_numpy._alloc.cache`), a handler's own cap the rule over its nodes'
memory (`numa_numpy._alloc.handler`), so that one cache never fills a small
node others need. Of a budget, at most a quarter and at most 32 MiB stays "hot"
(its pages kept as they are); the rest is MADV_FREE'd, for the kernel to take
under pressure. A block unused for the decay time (10 s) is unmapped.

The C layer holds none of these numbers: it keeps nothing until the cache
module configures it, when the package is imported.
"""

from __future__ import annotations

from typing import NamedTuple

MiB, GiB = 1 << 20, 1 << 30
BUDGET_MAX = 1 * GiB  # never more, however large the machine
BUDGET_SHARE = 8  # at most 1/8 of the memory limit: well inside it
HOT_MAX = 32 * MiB  # not MADV_FREE'd: what glibc's own heap may keep resident
HOT_SHARE = 4  # and at most a quarter of the budget
DEFAULT_DECAY_S = 10.0  # jemalloc's dirty_decay_ms default


class CacheRule(NamedTuple):
    """What a cache within some memory keeps: bytes, hot bytes, decay time."""

    budget: int
    hot_limit: int
    decay_s: float


def hot_limit(budget: int) -> int:
    """Bytes of a `budget` kept hot (not MADV_FREE'd), for any budget, the
    default or one set by hand."""
    return min(HOT_MAX, budget // HOT_SHARE)


def cache_rule(memory: int) -> CacheRule:
    """The rule for a cache within `memory` bytes (0: not known, the cap).

    Examples
    --------
    >>> from numa_numpy._alloc.budget import cache_rule
    >>> cache_rule(400 << 20)  # 400 MiB: an eighth, of which a quarter hot
    CacheRule(budget=52428800, hot_limit=13107200, decay_s=10.0)
    >>> cache_rule(64 << 30).budget == 1 << 30
    True
    """
    budget = min(BUDGET_MAX, memory // BUDGET_SHARE) if memory else BUDGET_MAX
    return CacheRule(budget, hot_limit(budget), DEFAULT_DECAY_S)
