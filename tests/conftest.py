import pytest

import numa_numpy as nn

# pytester: tests of the plugin numa_numpy installs (numa_numpy.testing.plugin)
pytest_plugins = ["pytester"]

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name


def pytest_collection_modifyitems(config, items):
    usable = nn.topology().usable_nodes
    if len(usable) >= 2:
        return
    skip = pytest.mark.skip(
        reason=f"needs >= 2 NUMA nodes with memory; this machine has {len(usable)} "
        "(python tests/lab/run.py runs it in a 4-node virtual machine)"
    )
    for item in items:
        if "multinode" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def numpy_handler_restored():
    """Every test must leave NumPy's default handler in place."""
    assert get_handler_name() == "default_allocator"
    yield
    assert get_handler_name() == "default_allocator", "a scope leaked out of the test"


@pytest.fixture(scope="session")
def usable_nodes():
    return nn.topology().usable_nodes


@pytest.fixture(scope="session")
def handler_name():
    return get_handler_name
