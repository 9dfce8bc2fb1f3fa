import pytest
from fixtures.teams import pool_sizes
from threadpoolctl import threadpool_info, threadpool_limits


@pytest.fixture
def baseline_pools():
    """A known pool size (3) that no team below asks for, restored afterwards."""
    if not threadpool_info():
        pytest.skip("NumPy loaded no BLAS that threadpoolctl can see")
    with threadpool_limits(limits=3):
        if set(pool_sizes()) != {3}:
            pytest.skip(f"the pools refuse 3 threads: {pool_sizes()}")
        yield [3] * len(pool_sizes())
