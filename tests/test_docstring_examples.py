"""The Examples sections of the shared-memory, region and placement API run."""

import doctest

import pytest

from numa_numpy import _placement, _region, _shared


@pytest.mark.parametrize("module", [_shared, _region, _placement], ids=lambda m: m.__name__)
def test_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
