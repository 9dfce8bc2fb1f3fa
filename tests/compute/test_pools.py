"""The BLAS/OpenMP pool caps a running team holds (numa_numpy._compute.pools):
process-wide, reference counted, the originals those before the first team."""

from __future__ import annotations

import gc

import pytest
from fixtures.teams import pool_sizes, wait_no_team_threads
from threadpoolctl import threadpool_info

import numa_numpy as nn


def test_a_team_collected_without_close_releases_the_pool_cap(baseline_pools):
    team = nn.node_team(threads_per_node=1, blas_threads=1)
    team.start()
    assert pool_sizes() == [1] * len(baseline_pools)
    del team
    gc.collect()
    wait_no_team_threads()
    assert pool_sizes() == baseline_pools


def test_overlapping_teams_share_one_reference_counted_cap(baseline_pools):
    ncpu = min(len(nn.topology().node(n).cpus) for n in nn.node_team().worker_nodes)
    if ncpu < 2:
        pytest.skip("needs a node with two CPUs (blas_threads=2)")
    a = nn.node_team(threads_per_node=1, blas_threads=1)
    b = nn.node_team(threads_per_node=1, blas_threads=2)
    ones, twos = [1] * len(baseline_pools), [2] * len(baseline_pools)
    a.start()
    assert pool_sizes() == ones
    b.start()
    assert pool_sizes() == ones  # the smaller cap of the two running teams
    a.close()
    assert pool_sizes() == twos  # b still runs: its cap, not the originals
    b.close()
    assert pool_sizes() == baseline_pools  # the originals, not a's cap
    b.start()
    a.start()
    b.close()
    assert pool_sizes() == ones
    a.close()
    assert pool_sizes() == baseline_pools


def test_pool_originals_are_those_before_the_first_team():
    if not threadpool_info():
        pytest.skip("NumPy loaded no BLAS that threadpoolctl can see")
    before = pool_sizes()
    with nn.node_team(threads_per_node=1, blas_threads=1):
        with nn.node_team(threads_per_node=1, blas_threads=1):
            assert set(pool_sizes()) == {1}
        assert set(pool_sizes()) == {1}
    assert pool_sizes() == before
