import numpy as np
import pytest

import numa_numpy as nn


def test_every_allocation_in_a_scope_uses_the_policy(handler_name):
    base = np.arange(1000.0)
    with nn.on_node(0) as scope:
        assert handler_name() == "numa_numpy"
        assert nn.current_policy() == nn.Bind(0) == scope.policy
        made = {
            "empty": np.empty(10),
            "ufunc output": np.sqrt(base),
            "expression": base * 2 + 1,  # the temporary of base * 2 too
            "copy": base.copy(),
            "concatenate": np.concatenate([base, base]),
            "reduction": base.reshape(10, 100).sum(axis=0),
            "fancy index": base[[1, 5, 7]],
            "astype": base.astype(np.float32),
            "large": np.ones(1 << 20),
        }
    assert handler_name() == "default_allocator"
    assert nn.current_policy() is None
    for what, a in made.items():
        assert handler_name(a) == "numa_numpy", what
        assert nn.placement(a).requested == nn.Bind(0), what
        assert nn.placement(a).policy == nn.Bind(0), what
    assert handler_name(base) == "default_allocator"
    assert handler_name(np.empty(3)) == "default_allocator"


def test_nesting_restores_the_outer_policy_exactly():
    with nn.policy("interleave:0"):
        with nn.on_node(0):
            with nn.policy(nn.Local()):
                assert nn.placement(np.ones(4)).requested == nn.Local()
            assert nn.current_policy() == nn.Bind(0)
            assert nn.placement(np.ones(4)).requested == nn.Bind(0)
        assert nn.current_policy() == nn.Interleave(0)
        assert nn.placement(np.ones(4)).requested == nn.Interleave(0)
    assert nn.current_policy() is None


def test_same_scope_object_reentered_and_nested():
    scope = nn.on_node(0)
    with scope:
        with scope:
            assert nn.current_policy() == nn.Bind(0)
        assert nn.current_policy() == nn.Bind(0)
    assert nn.current_policy() is None


def test_scope_exits_on_exception():
    with pytest.raises(RuntimeError):
        with nn.on_node(0):
            raise RuntimeError("boom")
    assert nn.current_policy() is None


def test_decorator(handler_name):
    @nn.interleaved()
    def compute(n):
        return np.arange(n) * 2, handler_name()

    out, name = compute(5)
    assert name == "numa_numpy" and handler_name(out) == "numa_numpy"
    assert nn.placement(out).requested == nn.Interleave()
    assert compute.__name__ == "compute"


def test_arrays_outlive_their_scope_and_handler_is_cached():
    scope = nn.on_node(0)
    with scope:
        a = np.full(1 << 18, 3.0)
    assert (a == 3.0).all()
    assert nn.on_node(0).handler is scope.handler  # one handler per policy and options


def test_options_select_distinct_handlers():
    assert nn.on_node(0).handler is not nn.on_node(0, prefault="touch").handler
    assert nn.on_node(0).handler is not nn.on_node(0, strict=True).handler


def test_bad_node_raises_at_entry_and_leaves_numpy_alone(handler_name):
    with pytest.raises(nn.InvalidNodeError, match="node 77 does not exist"):
        with nn.on_node(77):
            pass  # pragma: no cover
    assert handler_name() == "default_allocator"


def test_prefault_option_faults_pages_at_allocation():
    with nn.on_node(0, prefault="touch"):
        a = np.empty(1 << 20)  # 8 MiB, never written
    where = nn.placement(a)
    assert where.not_present == 0 and where.pages == {0: where.total_pages}
    nn.trim()  # else the cache may hand back a block faulted by an earlier test
    # no prefault: none of the data's pages is present (the header has its own page)
    b = nn.numa_empty(1 << 20, node=0, huge_pages="none")
    assert nn.placement(b).present_pages == 0
    assert nn.placement(b).not_present == nn.placement(b).total_pages == 2048


def test_transparent_huge_pages_align_large_blocks():
    nn.trim()
    a = nn.numa_empty(4 << 20, np.uint8, node=0, huge_pages="transparent")
    assert a.ctypes.data % (2 << 20) == 0  # data on a huge-page boundary
    b = nn.numa_empty(4 << 20, np.uint8, node=0, huge_pages="none")
    assert b.ctypes.data % 4096 == 0
    b[0] = 1
    assert nn.placement(b).present_pages == 1  # none means 4 KiB pages
