"""The layout rule (numa_numpy._compute.layout): where each block of rows of a
partitioned array lives, its split on pages and huge pages, and when an array
still has the layout it was made with."""

import mmap
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import numa_numpy as nn
from numa_numpy._alloc.bridge import get_handler_name
from numa_numpy._compute.layout import THP_UNIT, _split

PAGE = mmap.PAGESIZE


def test_blocks_cover_rows_in_node_order():
    a = nn.partitioned_zeros((1000, 3))
    got = nn.blocks(a)
    assert [n for n, _ in got] == list(nn.topology().usable_nodes)
    assert got[0][1].start == 0 and got[-1][1].stop == 1000
    assert all(x[1].stop == y[1].start for x, y in zip(got, got[1:]))


def test_partitioned_policy_in_scopes():
    p = nn.Partitioned()
    assert p.nodes is None and nn.Partitioned([0]).nodes == (0,)
    usable = list(nn.topology().usable_nodes)
    with nn.policy(p):
        big = np.ones(1 << 20)  # 8 MiB: its own mapping, split between the nodes
        small = np.ones(100)  # shares a chunk: the first node's
    with nn.policy("partitioned:0"):  # the string form works wherever a policy does
        named = np.zeros((300, 40))
    for arr in (big, small, named):
        assert arr.flags.owndata and get_handler_name(arr) == "numa_numpy"
    assert [n for n, _ in nn.blocks(big)] == usable
    assert nn.blocks(big)[-1][1].stop == big.size
    assert [rows for _, rows in nn.blocks(small)][0] == slice(0, 100)
    assert nn.blocks(named) == [(0, slice(0, 300))]
    assert set(nn.placement(big).pages) <= set(usable)
    with pytest.raises(TypeError):
        nn.blocks(big[1:])  # starts inside the block: no layout
    with pytest.raises(nn.InvalidPolicyError, match="thread_policy"):
        with nn.thread_policy(p):
            pass
    with pytest.raises(nn.InvalidPolicyError, match="huge pages"):
        with nn.policy(p, huge_pages="2mb"):
            np.zeros(1 << 20)
    with pytest.raises(nn.InvalidPolicyError, match="huge pages"):
        nn.partitioned_zeros(10, huge_pages="2mb")
    a = nn.partitioned_zeros(10, policy=nn.Partitioned(0))
    assert nn.blocks(a) == [(0, slice(0, 10))]
    built = nn.numa_ones((3, 1 << 18), policy="partitioned")  # the numa_* constructors too
    assert built.flags.owndata and [n for n, _ in nn.blocks(built)] == usable


@given(
    nrows=st.integers(0, 1 << 16),
    rowbytes=st.sampled_from([1, 2, 8, 24, 4000, 4096, 8008, 1 << 20, 3 << 20]),
    k=st.integers(1, 8),
    thp=st.booleans(),
)
def test_split_rule(nrows, rowbytes, k, thp):
    units = (THP_UNIT, PAGE) if thp else (PAGE,)
    bounds = _split(nrows, rowbytes, k, thp)
    assert len(bounds) == k + 1 and bounds[0] == 0 and bounds[-1] == nrows
    assert list(bounds) == sorted(bounds)
    steps = [np.lcm(u, rowbytes) // rowbytes for u in units]
    used = next((st for st in steps if nrows and -(-nrows // st) >= k), None)
    if used is not None and k > 1:  # the largest unit that gives every block one
        assert all(b % used == 0 or b == nrows for b in bounds)
        sizes = [-(-(hi - lo) // used) for lo, hi in zip(bounds, bounds[1:])]
        assert max(sizes) - min(sizes) <= 1
    else:
        sizes = [hi - lo for lo, hi in zip(bounds, bounds[1:])]
        assert max(sizes) - min(sizes) <= 1


def test_large_arrays_start_on_thp_boundary_and_placement_shows_pages():
    a = nn.partitioned_zeros((16 << 20) // 8)
    a[:] = 1.0
    assert a.ctypes.data % THP_UNIT == 0
    where = nn.placement(a)
    assert where.not_present == 0 and sum(where.pages.values()) * where.page_size >= a.nbytes
    assert set(where.pages) <= set(nn.topology().usable_nodes)


def _set_strides(a, strides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # NumPy 2.4 deprecates it
        a.strides = strides


def test_a_layout_is_used_only_for_what_it_was_made_for():
    """Shape, dtype and strides changed in place: the split is read again for
    the array as it is now (or NumPy's path runs), never the old rows."""
    with nn.node_team(min_bytes=1) as team:
        a = nn.partitioned_ones((1 << 14, 2))
        a.shape = (1 << 15,)
        assert float((a + 1).sum()) == 2.0 * (1 << 15)
        np.testing.assert_array_equal(a + 1, np.full(1 << 15, 2.0))
        assert float(a.sum()) == 1 << 15 and a.max() == 1.0
        assert nn.blocks(a)[-1][1].stop == 1 << 15 and a.layout.shape == (1 << 15,)
        np.testing.assert_array_equal(team.map_blocks(np.negative, a), -np.ones(1 << 15))

        b = nn.partitioned_zeros(1 << 15)
        b.dtype = np.float32  # twice the items in the same bytes
        assert b.shape == (1 << 16,) and float((b + 1).sum()) == 1 << 16
        assert float(np.add(b, 1, out=b).sum()) == 1 << 16 and float(b.sum()) == 1 << 16
        assert nn.blocks(b)[-1][1].stop == 1 << 16

        c = nn.partitioned_ones((1 << 12, 4))
        c.shape = (1 << 11, 8)  # same rows' bytes, half the rows
        assert float(c.sum()) == 1 << 14 and c.sum(axis=0).tolist() == [2048.0] * 8

        d = nn.partitioned_full((1 << 14, 2), 1.0)
        d[:, 1] = 5.0
        _set_strides(d, (16, 0))  # each row's first item twice: not contiguous
        assert d.layout is None  # nothing the allocator split describes
        assert float((d + 1).sum()) == 2.0 * (1 << 15) and float(d.sum()) == 1 << 15
        _set_strides(d, (8, 8 << 14))  # the same bytes read in F order
        assert d.layout is not None and d.layout.axis == 1
        np.testing.assert_array_equal(d + 1, np.array(d) + 1)
        assert float(d.sum()) == 6.0 * (1 << 14)
        assert d.sum(axis=0).tolist() == np.array(d).sum(axis=0).tolist()

        e = nn.partitioned_ones(1 << 15)
        e.shape = (1 << 14, 2)
        e.shape = (1 << 15,)  # back: valid again
        assert e.layout is not None and float((e * 3).sum()) == 3.0 * (1 << 15)

        f = nn.partitioned_zeros((1 << 14, 2))
        other = np.arange(40000.0)
        f.__setstate__(other.__reduce__()[2])  # other memory, shape and all
        assert f.layout is None and float((f + 1).sum()) == float((other + 1).sum())
        assert f.sum() == other.sum()
