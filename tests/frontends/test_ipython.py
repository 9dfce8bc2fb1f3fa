"""The IPython extension: %%numa and %numa_placement in a real InteractiveShell."""

import pytest

pytest.importorskip("IPython", reason="the IPython magics need IPython (pip install ipython)")

import numpy as np  # noqa: E402

import numa_numpy as nn  # noqa: E402
from numa_numpy._frontends.ipython import load_ipython_extension, unload_ipython_extension  # noqa: E402
from numa_numpy._kernel.topology import format_list  # noqa: E402

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name


@pytest.fixture(scope="module")
def shell():
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    load_ipython_extension(ip)
    ip.run_cell("import numpy as np\nimport numa_numpy as nn\n")
    yield ip
    unload_ipython_extension(ip)


@pytest.fixture
def run(shell):
    """Run a cell; return (result value, the exception it raised or None)."""

    def run_cell(source):
        result = shell.run_cell(source, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        return result.result, error

    return run_cell


def ok(run, source):
    value, error = run(source)
    assert error is None, f"cell raised {error!r}"
    return value


def policies_here():
    usable = nn.topology().usable_nodes
    first, last = usable[0], usable[-1]
    found = [
        f"bind:{first}",
        f"bind:{last}",
        "interleave",
        f"preferred:{last}",
        "local",
        f"interleave:{format_list(usable)}",
    ]
    return list(dict.fromkeys(found))  # one node: the duplicates go


@pytest.mark.parametrize("policy", policies_here())
def test_cell_allocations_follow_the_policy(shell, run, policy):
    ok(
        run,
        f"%%numa {policy}\n"
        "a = np.ones(300_000)\n"  # a large block of its own
        "small = np.arange(10)\n"  # a small block from a chunk
        "b = np.sqrt(a * 2.0 + 1.0)\n"  # ufunc output (and temporaries)
        "inside = nn.current_policy()\n",
    )
    expected = nn.as_policy(policy)
    assert shell.user_ns["inside"] == expected
    for name in ("a", "small", "b"):
        array = shell.user_ns[name]
        assert get_handler_name(array) == "numa_numpy", name
        assert nn.placement(array).requested == expected, name
    assert nn.current_policy() is None
    assert get_handler_name() == "default_allocator"


def test_policy_from_a_variable(shell, run, usable_nodes):
    shell.user_ns["chosen_node"] = usable_nodes[-1]
    value = ok(run, "%%numa bind:{chosen_node}\nnn.current_policy()")
    assert value == nn.Bind(usable_nodes[-1])


def test_bind_places_pages_on_the_node(shell, run, usable_nodes):
    node = usable_nodes[-1]
    ok(run, f"%%numa bind:{node} --prefault touch\nc = np.empty(100_000)\n")
    where = nn.placement(shell.user_ns["c"])
    assert where.not_present == 0
    assert where.on(node)


def test_last_expression_is_the_value_and_is_made_inside(shell, run):
    value = ok(run, "%%numa local\nx = 3\nnp.arange(100_000) * x")
    assert isinstance(value, np.ndarray)
    assert value[-1] == 3 * 99_999
    assert get_handler_name(value) == "numa_numpy"
    assert nn.placement(value).requested == nn.Local()


def test_a_trailing_semicolon_hides_the_value(shell, run):
    assert ok(run, "%%numa local\nnp.arange(3);") is None


def test_statements_only_cell_gives_none(shell, run):
    assert ok(run, "%%numa local\ny = np.zeros(3)\n") is None
    assert get_handler_name(shell.user_ns["y"]) == "numa_numpy"


def test_scope_is_left_after_the_cell(shell, run):
    ok(run, "%%numa local\nz = np.ones(10)\n")
    after = ok(run, "np.ones(10)")
    assert get_handler_name(after) == "default_allocator"
    assert nn.current_policy() is None


def test_scope_is_left_when_the_cell_raises(shell, run):
    value, error = run("%%numa local\nbefore = np.ones(5)\n1 / 0\nnever = 1\n")
    assert isinstance(error, ZeroDivisionError)
    assert "never" not in shell.user_ns
    assert get_handler_name(shell.user_ns["before"]) == "numa_numpy"
    assert nn.current_policy() is None
    assert ok(run, "nn.current_policy()") is None
    assert get_handler_name(ok(run, "np.ones(10)")) == "default_allocator"


def test_scope_is_left_when_the_last_expression_raises(shell, run):
    _, error = run("%%numa local\nnp.ones(3)[7]")
    assert isinstance(error, IndexError)
    assert ok(run, "nn.current_policy()") is None


def test_nested_scopes_inside_the_cell(shell, run, usable_nodes):
    node = usable_nodes[0]
    ok(
        run,
        f"%%numa bind:{node}\n"
        "outer_before = nn.current_policy()\n"
        "with nn.interleaved():\n"
        "    inner = nn.current_policy()\n"
        "    mixed = np.ones(300_000)\n"
        "outer_after = nn.current_policy()\n"
        "bound = np.ones(300_000)\n",
    )
    ns = shell.user_ns
    assert ns["outer_before"] == ns["outer_after"] == nn.Bind(node)
    assert ns["inner"] == nn.Interleave()
    assert nn.placement(ns["mixed"]).requested == nn.Interleave()
    assert nn.placement(ns["bound"]).requested == nn.Bind(node)


def test_nested_cell_magics(shell, run, usable_nodes):
    node = usable_nodes[-1]
    value = ok(
        run, f"%%numa bind:{node}\n%%numa local\ninner_array = np.ones(10)\nnn.current_policy()"
    )
    assert value == nn.Local()
    assert nn.placement(shell.user_ns["inner_array"]).requested == nn.Local()
    assert nn.current_policy() is None


def test_cell_inside_an_outer_scope_restores_it(shell, run, usable_nodes):
    node = usable_nodes[0]
    ok(run, f"outer = nn.on_node({node})\nouter.__enter__()\n")
    try:
        ok(run, "%%numa local\ninner = nn.current_policy()\n")
        assert shell.user_ns["inner"] == nn.Local()
        assert ok(run, "nn.current_policy()") == nn.Bind(node)
    finally:
        ok(run, "outer.__exit__(None, None, None)")
    assert ok(run, "nn.current_policy()") is None


def test_options_reach_the_scope(shell, run, usable_nodes):
    node = usable_nodes[0]
    ok(
        run,
        f"%%numa bind:{node} --strict --prefault touch --huge-pages none\n"
        "opt = np.empty(200_000)\n",
    )
    key = f"bind:{node} strict=True huge_pages=none prefault=touch"
    assert key in nn.memory_stats()
    assert nn.placement(shell.user_ns["opt"]).not_present == 0


def test_ipython_syntax_in_the_cell(shell, run):
    value = ok(run, "%%numa local\nsyn = np.ones(1000)\nwhere = %numa_placement syn\nwhere")
    assert isinstance(value, nn.Placement)
    assert value.requested == nn.Local()


def test_traceback_points_at_the_cell_line(shell, run, capsys):
    run("%%numa local\nok_line = 1\nraise KeyError('here')\n")
    out = capsys.readouterr()
    text = out.out + out.err
    assert "KeyError" in text
    assert "----> 3 raise KeyError('here')" in text


def test_numa_placement_returns_a_placement(shell, run, usable_nodes):
    node = usable_nodes[0]
    ok(run, f"p_arr = nn.numa_ones(100_000, node={node})")
    value = ok(run, "%numa_placement p_arr")
    assert isinstance(value, nn.Placement)
    assert value.requested == nn.Bind(node)
    assert value.on(node)
    assert value.nbytes == 800_000
    assert "<table>" in value._repr_html_()


def test_numa_placement_evaluates_an_expression(shell, run):
    ok(run, "expr_arr = np.ones((100, 100))")
    value = ok(run, "%numa_placement expr_arr[::2, 10:]")
    assert isinstance(value, nn.Placement)
    assert value.requested is None  # NumPy's own allocator


def test_numa_placement_errors(shell, run):
    from IPython.core.error import UsageError

    _, error = run("%numa_placement")
    assert isinstance(error, UsageError)
    _, error = run("%numa_placement no_such_name_anywhere")
    assert isinstance(error, NameError)


@pytest.mark.parametrize("node", [63, 999])
def test_a_missing_node_raises_invalid_node_error(shell, run, node):
    value, error = run(f"%%numa bind:{node}\nran = True\n")
    assert isinstance(error, nn.InvalidNodeError)
    assert f"node {node} does not exist" in str(error)
    assert node in error.nodes
    assert "ran" not in shell.user_ns  # the cell did not run
    assert nn.current_policy() is None


@pytest.mark.parametrize(
    "line, error_type, words",
    [
        ("bogus:0", nn.InvalidPolicyError, "unknown policy 'bogus'"),
        ("bind", nn.InvalidPolicyError, "Bind needs nodes"),
        ("bind:x", nn.InvalidNodeError, "cannot parse node list 'x'"),
        ("local:0", nn.InvalidPolicyError, "local takes no nodes"),
        ("local --prefault sometimes", nn.InvalidPolicyError, "prefault='sometimes'"),
        ("local --huge-pages 3mb", nn.InvalidPolicyError, "huge_pages='3mb'"),
    ],
)
def test_bad_policies_raise_the_packages_errors(shell, run, line, error_type, words):
    _, error = run(f"%%numa {line}\nran = True\n")
    assert isinstance(error, error_type)
    assert words in str(error)
    assert "ran" not in shell.user_ns


def test_bad_arguments_are_usage_errors(shell, run):
    from IPython.core.error import UsageError

    for line in ("", "local --no-such-flag", "local extra"):
        _, error = run(f"%%numa {line}\nran = True\n")
        assert isinstance(error, UsageError), line
    assert "ran" not in shell.user_ns


def test_unload_and_load_again(shell, run):
    unload_ipython_extension(shell)
    try:
        assert "numa" not in shell.magics_manager.magics["cell"]
        assert "numa_placement" not in shell.magics_manager.magics["line"]
        _, error = run("%%numa local\nran = True\n")
        assert error is not None
    finally:
        load_ipython_extension(shell)
    assert ok(run, "%%numa local\nnn.current_policy()") == nn.Local()


def test_load_ext_by_module_name(shell, run):
    unload_ipython_extension(shell)
    try:
        shell.run_line_magic("load_ext", "numa_numpy._frontends.ipython")
        assert ok(run, "%%numa local\nnn.current_policy()") == nn.Local()
        shell.run_line_magic("reload_ext", "numa_numpy._frontends.ipython")
        assert ok(run, "%%numa local\nnn.current_policy()") == nn.Local()
    finally:
        shell.run_line_magic("unload_ext", "numa_numpy._frontends.ipython")
        load_ipython_extension(shell)
