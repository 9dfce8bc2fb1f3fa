"""%numa_policy: the policy (and parallel mode) of the rest of an IPython
session, in a real InteractiveShell, as tests/frontends/test_ipython.py does."""

import contextvars
import sys
import types

import pytest

pytest.importorskip("IPython", reason="the IPython magics need IPython (pip install ipython)")

import numa_numpy as nn  # noqa: E402
from numa_numpy._frontends.ipython import load_ipython_extension, unload_ipython_extension  # noqa: E402

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name


@pytest.fixture
def shell():
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    load_ipython_extension(ip)
    ip.run_cell("import numpy as np\nimport numa_numpy as nn\nimport threading\n")
    yield ip
    ip.run_cell("%numa_policy off")
    unload_ipython_extension(ip)


def cell(shell, source):
    result = shell.run_cell(source, store_history=False)
    error = result.error_before_exec or result.error_in_exec
    assert error is None, f"cell raised {error!r}"
    return result.result


def where(shell, name):
    array = shell.user_ns[name]
    return get_handler_name(array), nn.placement(array).requested


def test_later_cells_and_their_threads_allocate_under_the_policy_until_off(shell):
    assert cell(shell, "%numa_policy interleave") == nn.Interleave()
    cell(shell, "a = np.ones(1 << 20)")
    cell(shell, "b = np.sqrt(a) + 1.0")
    cell(
        shell,
        "box = {}\n"
        "t = threading.Thread(target=lambda: box.setdefault('t', np.ones(1 << 20)))\n"
        "t.start(); t.join(); c = box['t']",
    )
    for name in ("a", "b", "c"):
        assert where(shell, name) == ("numa_numpy", nn.Interleave()), name
    assert cell(shell, "%numa_policy off") is None
    cell(shell, "d = np.ones(1 << 20)")
    assert get_handler_name(shell.user_ns["d"]) == "default_allocator"
    assert get_handler_name() == "default_allocator"


def test_a_cell_in_a_fresh_context_still_gets_the_policy(shell):
    """A kernel may run each cell in a new copy of the context: the magic's
    pre_run_cell hook enters the policy there."""
    cell(shell, "%numa_policy bind:0")
    contextvars.Context().run(shell.run_cell, "e = np.ones(1 << 20)", store_history=False)
    assert where(shell, "e") == ("numa_numpy", nn.Bind(0))


def test_a_numa_cell_keeps_its_own_policy_inside_the_session(shell):
    cell(shell, "%numa_policy interleave")
    cell(shell, "%%numa bind:0\nf = np.ones(1 << 20)")
    cell(shell, "g = np.ones(1 << 20)")
    assert where(shell, "f")[1] == nn.Bind(0)
    assert where(shell, "g")[1] == nn.Interleave()


def test_a_bad_policy_raises_our_error_and_changes_nothing(shell):
    cell(shell, "%numa_policy bind:0")
    result = shell.run_cell("%numa_policy bogus", store_history=False)
    assert isinstance(result.error_in_exec, nn.InvalidPolicyError)
    assert "bogus" in str(result.error_in_exec)
    cell(shell, "h = np.ones(1 << 20)")
    assert where(shell, "h")[1] == nn.Bind(0)
    result = shell.run_cell("%numa_policy", store_history=False)
    assert result.error_in_exec is not None  # a usage error: no policy given


def test_parallel_is_set_and_cleared_with_the_policy(shell, monkeypatch):
    calls = []
    fake = types.ModuleType("numa_numpy._compute.loops")
    fake.set_parallel = calls.append
    monkeypatch.setitem(sys.modules, "numa_numpy._compute.loops", fake)
    cell(shell, "%numa_policy interleave --parallel")
    cell(shell, "%numa_policy bind:0")
    cell(shell, "%numa_policy off")
    assert calls == [True, False, False]


def test_unload_removes_the_magic_and_its_hook(shell):
    cell(shell, "%numa_policy bind:0")
    cell(shell, "%numa_policy off")
    hooks = len(shell.events.callbacks["pre_run_cell"])
    unload_ipython_extension(shell)
    assert len(shell.events.callbacks["pre_run_cell"]) == hooks - 1
    assert "numa_policy" not in shell.magics_manager.magics["line"]
    load_ipython_extension(shell)  # for the fixture's teardown
