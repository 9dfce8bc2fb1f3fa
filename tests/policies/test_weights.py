"""Weighted-interleave weights: their home is InterleaveWeights.from_bandwidth;
the old WeightedInterleave.from_bandwidth warns for one release and gives the same."""

import warnings

import pytest

import numa_numpy as nn


def test_from_bandwidth_lives_with_the_weights():
    proposal = nn.InterleaveWeights.from_bandwidth({0: 20480, 2: 5120})
    assert proposal.weights == {0: 4, 2: 1}
    assert proposal.policy == nn.WeightedInterleave((0, 2))


def test_the_old_path_warns_at_the_callers_line_and_gives_the_same():
    with pytest.warns(DeprecationWarning, match=r"InterleaveWeights\.from_bandwidth") as record:
        old = nn.WeightedInterleave.from_bandwidth({0: 3.0, 1: 1.0}, nodes=[0, 1])
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = nn.InterleaveWeights.from_bandwidth({0: 3.0, 1: 1.0}, nodes=[0, 1])
    assert old == new and old.source == new.source == "measured"
