import pytest

import numa_numpy as nn


@pytest.fixture
def cache_settings():
    """Tests change process-wide settings: put the defaults back, pass or fail."""
    yield
    nn.set_cache_limit()
    nn.set_cache_decay()
    nn.free_all_blocks()
