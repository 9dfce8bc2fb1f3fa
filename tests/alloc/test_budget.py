"""How much freed memory is kept (numa_numpy._alloc.budget): one rule gives the
process's budget, its hot share and each handler's cap."""

from __future__ import annotations

from fixtures.cache import process_stats

import numa_numpy as nn
from numa_numpy._alloc import budget as _budget
from numa_numpy._alloc import handler as _handler


def test_one_rule_sets_the_process_budget_and_each_handlers_cap(cache_settings, monkeypatch):
    """The numbers live in numa_numpy._alloc.budget alone: another rule there
    changes the process's budget, its hot share and a new handler's cap."""
    monkeypatch.setattr(_budget, "BUDGET_MAX", 1 << 62)
    monkeypatch.setattr(_budget, "BUDGET_SHARE", 16)
    monkeypatch.setattr(_budget, "HOT_MAX", 1 << 62)
    monkeypatch.setattr(_budget, "HOT_SHARE", 2)
    nn.forget_handlers()
    try:
        nn.set_cache_limit()
        stats = process_stats()
        assert stats["budget"] == stats["memory_limit"] // 16 > 0
        assert stats["hot_limit"] == stats["budget"] // 2
        handler = nn.on_node(0).handler
        assert handler.stats()["cache_limit"] == nn.topology().node(0).memory_total // 16
        assert _handler.default_cache_limit(nn.Bind(0), nn.topology()) == (
            nn.topology().node(0).memory_total // 16
        )
    finally:
        monkeypatch.undo()
        nn.forget_handlers()  # no handler keeps the cap of the rule above


def test_a_handler_caps_its_arena_by_the_budget_rule_before_its_first_block():
    import numa_numpy as nn
    from numa_numpy._alloc.budget import cache_rule

    nn.forget_handlers()
    s = nn.on_node(0).handler.stats()  # a new handler: nothing allocated yet
    assert s["live_blocks"] == 0 and s["large_bytes"] == 0 and s["chunk_bytes"] == 0
    assert s["cache_limit"] == cache_rule(nn.topology().node(0).memory_total).budget
