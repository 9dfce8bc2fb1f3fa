"""numa_numpy.testing: placement assertions and the pytest plugin."""

from __future__ import annotations

import re

import numpy as np
import pytest

import numa_numpy as nn
from numa_numpy import testing
from numa_numpy._kernel import topology as _topology
from numa_numpy._kernel.pages import allocation_unit, mapping_pages
from numa_numpy._ranges.placement import Placement
from numa_numpy.testing import assert_interleaved, assert_placed
from numa_numpy.testing.plugin import skip_reason

MIB = 1 << 20
PAGE = 4096


@pytest.fixture
def node(numa_topology):  # the plugin's fixture
    return numa_topology.usable_nodes[0]


def test_the_plugin_is_registered_through_its_entry_point(request, numa_topology):
    plugin = request.config.pluginmanager.get_plugin("numa_numpy")
    assert plugin is not None and plugin.__name__ == "numa_numpy.testing.plugin"
    assert numa_topology.node_ids == nn.topology().node_ids


@pytest.mark.parametrize("form", ["int", "list", "str", "policy"])
def test_assert_placed_passes_where_the_pages_are(node, form):
    a = nn.numa_ones(MIB // 8, node=node)
    where = {"int": node, "list": [node], "str": f"bind:{node}", "policy": nn.Bind(node)}[form]
    assert_placed(a, where)


def test_assert_placed_failure_shows_the_page_table(node):
    a = nn.numa_ones(MIB // 8, node=node, huge_pages="none")
    pages = nn.placement(a).pages[node]
    other = node + 1
    with pytest.raises(AssertionError) as failed:
        assert_placed(a, other)
    text = str(failed.value)
    assert f"{pages} of {pages} present pages (100.0%) are outside node(s) {other}" in text
    row = next(line for line in text.splitlines() if line.split()[:1] == [str(node)])
    assert row.split()[1] == str(pages) and row.endswith("<- not expected")
    assert re.search(rf"^\s+{other}\s+0\s", text, re.M)  # the expected node, empty
    assert f"page size {PAGE} B" in text


def test_assert_placed_tolerance(node):
    a = nn.numa_ones(MIB // 8, node=node)
    assert_placed(a, node + 1, tolerance=1.0)  # everything may be elsewhere
    with pytest.raises(AssertionError, match="tolerance 50.0%"):
        assert_placed(a, node + 1, tolerance=0.5)


def test_assert_placed_needs_present_pages(node):
    # a fresh mapping, never touched (an array from the handler may reuse a
    # cached block whose pages are present)
    region = nn.NumaRegion(MIB, node=node, huge_pages="none")
    a = np.frombuffer(region, dtype=np.float64)
    with pytest.raises(AssertionError, match="no page of the array is present"):
        assert_placed(a, node)


@pytest.mark.parametrize(
    "where, tolerance, error",
    [
        (True, 0.0, TypeError),
        (object(), 0.0, TypeError),
        ([], 0.0, ValueError),
        ("nonsense:1", 0.0, nn.InvalidPolicyError),
        (0, 1.5, ValueError),
        ("local", -0.1, ValueError),
    ],
)
def test_assert_placed_rejects_bad_arguments(where, tolerance, error):
    with pytest.raises(error):
        assert_placed(np.ones(10), where, tolerance=tolerance)


def test_assert_interleaved_on_the_usable_nodes(numa_topology):
    a = nn.interleaved_ones(4 * MIB // 8, huge_pages="none")
    assert_interleaved(a)
    assert_interleaved(a, numa_topology.usable_nodes)
    assert_placed(a, nn.Interleave(numa_topology.usable_nodes))


def test_assert_interleaved_names_an_empty_node(node):
    a = nn.numa_ones(MIB // 8, node=node, huge_pages="none")
    with pytest.raises(AssertionError) as failed:
        assert_interleaved(a, [node, node + 1])
    text = str(failed.value)
    assert "allocation unit base page" in text
    assert f"node(s) {node + 1} hold no page" in text


def fake_placement(counts: dict[int, int], policy=None) -> Placement:
    status = np.concatenate([np.full(c, n, dtype=np.intc) for n, c in counts.items()])
    return Placement(0x10000000, status.size * PAGE, PAGE, status, policy)


@pytest.mark.parametrize(
    "counts, unit, ok",
    [
        ({0: 128, 1: 640, 2: 129, 3: 128}, 2 * MIB, True),  # the lab with THP: 2 MiB units
        ({0: 128, 1: 640, 2: 129, 3: 128}, PAGE, False),  # the same with 4 KiB pages
        ({0: 256, 1: 257}, PAGE, True),
        ({0: 256, 1: 258}, PAGE, False),
        ({0: 1}, PAGE, True),  # smaller than one page per node: a node may be empty
    ],
)
def test_balance_is_judged_in_allocation_units(monkeypatch, counts, unit, ok):
    monkeypatch.setattr(testing, "placement", lambda a: fake_placement(counts))
    monkeypatch.setattr(testing, "allocation_unit", lambda address, nbytes: unit)
    nodes = [0, 1, 2, 3] if len(counts) == 4 else [0, 1]
    if ok:
        assert_interleaved(object(), nodes)
        return
    with pytest.raises(AssertionError) as failed:
        assert_interleaved(object(), nodes)
    assert "page counts differ by" in str(failed.value)
    assert "allocation unit base page" in str(failed.value)


def test_thp_backed_range_is_judged_in_2mib_units(node):
    a = nn.numa_ones(8 * MIB // 8, node=node, huge_pages="transparent")
    address, nbytes = nn.placement(a).address, a.nbytes
    if allocation_unit(address, nbytes) == PAGE:
        pytest.skip("no transparent huge page backs the array here (THP off or none free)")
    assert allocation_unit(address, nbytes) == 2 * MIB
    with pytest.raises(AssertionError, match=r"allocation unit 2.0 MiB = 512 pages of 4096 B"):
        assert_interleaved(a, [node, node + 1])


def test_numa_maps_counts_a_large_array_mapping(node):
    a = nn.numa_ones(8 * MIB // 8, node=node, huge_pages="none")
    (mapping,) = mapping_pages(a.ctypes.data, a.nbytes)
    assert mapping.start <= a.ctypes.data < a.ctypes.data + a.nbytes <= mapping.end
    assert mapping.policy == f"bind:{node}"
    assert mapping.pages[node] * mapping.page_size >= a.nbytes
    assert mapping.bytes_per_node == {node: mapping.pages[node] * PAGE}


# ------------------------------------------------------------------ plugin
def test_marker_skips_with_the_reason(pytester, numa_topology):
    usable = len(numa_topology.usable_nodes)
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.numa(min_nodes={usable + 1})
        def test_needs_more(numa_topology):
            pass

        @pytest.mark.numa(min_nodes={usable})
        def test_fits(numa_topology):
            assert len(numa_topology.usable_nodes) == {usable}

        @pytest.mark.numa({usable})
        def test_positional():
            pass
        """
    )
    result = pytester.runpytest("-rs", "--strict-markers", "-p", "no:randomly")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [f"*needs {usable + 1} NUMA nodes with memory that this process may use*has {usable}*"]
    )


@pytest.mark.parametrize("args", ["min_nodes=0", "min_nodes='2'", "2, min_nodes=2", "nodes=2"])
def test_marker_rejects_bad_arguments(pytester, args):
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.numa({args})
        def test_x():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TypeError: numa marker*"])


def test_skip_reason_mentions_the_cpuset(tmp_path):
    from fixtures import machine

    topo = _topology.read_topology(machine.lab(mems_allowed=(1,)).write(tmp_path))
    assert skip_reason(2, topo) == (
        "needs 2 NUMA nodes with memory that this process may use; this machine has 1 "
        "(1 of 0-3, cpuset)"
    )
    assert skip_reason(1, topo) is None


# -------------------------------------------------------------- in the lab
@pytest.mark.multinode
@pytest.mark.numa(min_nodes=2)
def test_lab_assert_placed_on_every_node(numa_topology):
    for node in numa_topology.usable_nodes:
        a = nn.numa_ones(4 * MIB // 8, node=node)
        assert_placed(a, node)
        other = next(n for n in numa_topology.usable_nodes if n != node)
        with pytest.raises(AssertionError, match=r"<- not expected"):
            assert_placed(a, other)


@pytest.mark.multinode
@pytest.mark.numa(min_nodes=2)
@pytest.mark.parametrize("huge_pages", ["none", "transparent"])
def test_lab_assert_interleaved(numa_topology, huge_pages):
    nodes = numa_topology.usable_nodes
    a = nn.interleaved_ones(len(nodes) * 4 * MIB // 8, nodes=nodes, huge_pages=huge_pages)
    assert_interleaved(a)
    assert_placed(a, nn.Interleave(nodes))
    with pytest.raises(AssertionError, match="outside nodes"):
        assert_interleaved(a, nodes[:-1])


def test_docstring_examples_run():
    import doctest

    from numa_numpy._diagnostics import doctor as _doctor
    from numa_numpy._kernel import topology as _topology

    for module in (_doctor, testing, _topology):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(nn.InterleaveWeights.from_bandwidth, globs={}):
        runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=4)
