"""The Examples sections of the shared-memory, region, placement and file API run."""

import doctest

import numpy as np
import pytest

from numa_numpy._ranges import files as _files
from numa_numpy._ranges import placement as _placement
from numa_numpy._ranges import region as _region
from numa_numpy._ranges import shared as _shared


# The examples show NumPy 2's reprs (np.float64(0.0)); NumPy 1 prints 0.0
@pytest.mark.skipif(
    np.lib.NumpyVersion(np.__version__) < "2.0.0", reason="examples use NumPy 2's scalar reprs"
)
@pytest.mark.parametrize("module", [_shared, _region, _placement, _files], ids=lambda m: m.__name__)
def test_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
