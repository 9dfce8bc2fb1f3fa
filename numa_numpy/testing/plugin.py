"""pytest plugin of numa_numpy (loaded through the ``pytest11`` entry point).

- ``numa_topology``: a session fixture, the machine's `numa_numpy.Topology`.
- ``@pytest.mark.numa(min_nodes=2)``: skip the test, with the reason, unless this
  process may use at least `min_nodes` NUMA nodes with memory.
"""

from __future__ import annotations

from typing import Any

import pytest

from .._kernel.topology import Topology, format_list, topology

__all__ = ["numa_topology"]


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers",
        "numa(min_nodes=2): skip unless this process may use at least min_nodes NUMA "
        "nodes with memory (numa_numpy)",
    )


def _min_nodes(marker: Any) -> int:
    if marker.args and "min_nodes" in marker.kwargs:
        raise TypeError("numa marker: give min_nodes once")
    value = marker.kwargs.get("min_nodes", marker.args[0] if marker.args else 2)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"numa marker: min_nodes must be an int >= 1, not {value!r}")
    unknown = set(marker.kwargs) - {"min_nodes"}
    if unknown or len(marker.args) > 1:
        raise TypeError(f"numa marker takes only min_nodes; got {marker.args} {marker.kwargs}")
    return value


def skip_reason(min_nodes: int, topo: Topology) -> str | None:
    """Why a test needing `min_nodes` usable nodes cannot run here (None: it can)."""
    usable = topo.usable_nodes
    if len(usable) >= min_nodes:
        return None
    return (
        f"needs {min_nodes} NUMA nodes with memory that this process may use; this machine "
        f"has {len(usable)} ({format_list(usable) or 'none'}"
        + (f" of {format_list(topo.memory_nodes)}, cpuset" if usable != topo.memory_nodes else "")
        + ")"
    )


def pytest_runtest_setup(item: Any) -> None:
    for marker in item.iter_markers(name="numa"):
        reason = skip_reason(_min_nodes(marker), topology())
        if reason:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def numa_topology() -> Topology:
    """The NUMA topology of the machine the tests run on (read once per session)."""
    return topology()
