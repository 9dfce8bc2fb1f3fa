import numpy as np
import pytest

import numa_numpy as nn


def test_migrate_our_large_array_rebinds_the_whole_block():
    a = nn.numa_ones(1 << 18, policy="interleave:0")
    where = nn.migrate(a, 0)
    assert where.policy == nn.Bind(0) and where.pages == {0: where.total_pages}
    assert where.requested == nn.Bind(0)
    assert "migrated from interleave:0" in where.enforcement.reason
    assert (a == 1).all()
    handler = nn.policy("interleave:0").handler
    cached = handler.stats()["cached_bytes"]
    del a  # a migrated block never returns to its old policy's cache
    assert handler.stats()["cached_bytes"] == cached


def test_migrate_numpy_arrays_moves_inner_pages():
    a = np.ones(1 << 18)
    where = nn.migrate(a, "bind:0")
    assert where.pages == {0: where.total_pages}
    assert where.requested is None


@pytest.mark.parametrize("make, words", [
    (lambda: nn.numa_ones(1 << 18, node=0)[10:], "view"),
    (lambda: nn.numa_ones(3, node=0), "small block"),
])
def test_migrate_refuses_what_it_cannot_move_safely(make, words):
    with pytest.raises(nn.MigrationError, match=words):
        nn.migrate(make(), 0)


def test_migrate_argument_errors():
    with pytest.raises(TypeError):
        nn.migrate([1, 2], 0)
    with pytest.raises(nn.InvalidNodeError):
        nn.migrate(np.ones(1 << 16), 77)
    with pytest.raises(nn.MigrationError, match="Default"):
        nn.migrate(np.ones(1 << 16), nn.Default())
    assert nn.migrate(nn.numa_empty(0, node=0), 0).total_pages == 0


@pytest.mark.parametrize("make, words", [
    (lambda: nn.shared_zeros(1 << 16, node=0), "shared array"),
    (lambda: nn.shared_zeros(1 << 16, node=0)[8:], "shared array"),
    (lambda: np.frombuffer(bytearray(1 << 16), np.uint8), "bytearray"),
])
def test_migrate_over_a_buffer_does_not_send_the_user_to_base(make, words):
    with pytest.raises(nn.MigrationError, match=words) as info:
        nn.migrate(make(), 0)
    assert ".base" not in str(info.value)
