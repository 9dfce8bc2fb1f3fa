"""The architecture, measured on the source tree (docs/layout.md states it):
layers as folders that import only downwards, one door to the kernel, no cycles,
no private names across folders, small files and functions."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "numa_numpy"

# Lowest first. A module may import its own layer and the layers before it; the
# public faces at the top may import anything; errors imports nothing of ours.
LAYERS = ["_kernel", "_policies", "_alloc", "_ranges", "_compute", "_diagnostics", "_frontends"]
TOP = 99  # the public modules directly in numa_numpy/ and numa_numpy/testing/


def layer_of(module: str) -> int:
    parts = module.split(".")
    if module == "numa_numpy.errors":
        return -1
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return TOP


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def sources() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (its `from` part)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".")
    is_package = (PACKAGE / Path(*package[1:]) / "__init__.py").exists()
    base = package if is_package else package[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports() -> list[tuple[str, str, str, int]]:
    """(importer, imported module, imported name, line) for every import of ours,
    at module level or inside a function."""
    found = []
    names = set(sources())
    for module, tree in sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = resolve(module, node)
                if not base.startswith("numa_numpy"):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in names:  # `from . import module`
                        found.append((module, sub, "", node.lineno))
                    else:
                        found.append((module, base, alias.name, node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("numa_numpy."):
                        found.append((module, alias.name, "", node.lineno))
    return [f for f in found if f[1] != "numa_numpy._numa"]


def test_only_public_faces_sit_directly_in_the_package():
    direct = sorted(p.name for p in PACKAGE.glob("*.py"))
    private = [n for n in direct if n.startswith("_") and n not in ("__init__.py", "__main__.py")]
    assert not private, f"private modules belong in a layer folder: {private}"
    assert len(direct) <= 12, direct
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert set(folders) == set(LAYERS) | {"testing"}, folders


def test_a_layer_imports_only_the_layers_below_it():
    upward = [
        f"{importer}:{line} imports {target}"
        for importer, target, _name, line in imports()
        if layer_of(target) > layer_of(importer) and layer_of(importer) != TOP
    ]
    assert not upward, "\n".join(upward)


def test_errors_import_nothing_of_ours():
    assert not [i for i in imports() if i[0] == "numa_numpy.errors"]


def test_no_private_name_crosses_a_folder():
    def folder(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 else "<top>"

    crossing = [
        f"{importer}:{line} imports {target}.{name}"
        for importer, target, name, line in imports()
        if name.startswith("_")
        and not name.startswith("__")
        and (folder(importer) != folder(target) or folder(importer) == "<top>")
    ]
    assert not crossing, "\n".join(crossing)


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {}
    for importer, target, _name, _line in imports():
        if target != importer and not importer.startswith(target + "."):
            graph.setdefault(importer, set()).add(target)
    # a package's __init__ importing its own modules is not an arrow back
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif not state.get(nxt):
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def string_constants(tree: ast.Module) -> list[str]:
    """The module's string literals that are not docstrings (f-strings: their
    constant parts)."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docs.add(id(body[0].value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(first.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docs:
                found.append(node.value)
    return found


def kernel_paths(tree: ast.Module) -> list[str]:
    starts = ("/sys/", "/proc/", "sys/", "proc/", "/sys", "/proc")
    return [s for s in string_constants(tree) if s.startswith(starts) and " " not in s.strip()]


def test_kernel_files_are_named_in_the_kernel_layer_only():
    naming = sorted(m for m, tree in sources().items() if kernel_paths(tree))
    outside = [m for m in naming if layer_of(m) != 0]
    assert not outside, f"/sys or /proc read outside numa_numpy._kernel: {outside}"
    assert len(naming) <= 4, naming


def calls_lib(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Attribute)
        and node.attr.startswith("nn_")
        and isinstance(node.value, ast.Name)
        and node.value.id == "lib"
        for node in ast.walk(tree)
    )


def test_the_compiled_library_is_called_from_the_kernel_layer_only():
    calling = sorted(m for m, tree in sources().items() if calls_lib(tree))
    outside = [m for m in calling if layer_of(m) != 0]
    assert not outside, f"lib.nn_* called outside numa_numpy._kernel: {outside}"
    assert len(calling) <= 5, calling


def turns_errno_into_words(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("describe_errno", "strerror"):
                return True
        if isinstance(node, ast.Attribute) and node.attr == "errorcode":
            return True
    return False


def test_errno_becomes_words_in_two_files_at_most():
    wording = sorted(m for m, tree in sources().items() if turns_errno_into_words(tree))
    assert len(wording) <= 2, wording


def test_no_c_file_is_longer_than_700_lines():
    long = {
        p.name: n
        for p in (PACKAGE / "_csrc").glob("*.c")
        if (n := len(p.read_text().splitlines())) > 700
    }
    assert not long, long


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not body:
        return 0
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


def test_no_function_body_is_longer_than_60_lines():
    long = [
        f"{m}.{node.name}: {n} lines"
        for m, tree in sources().items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (n := body_lines(node)) > 60
    ]
    assert not long, "\n".join(long)


TESTS = ROOT / "tests"


def test_the_tests_mirror_the_layers():
    """tests/<layer>/test_<module>[_topic].py tests numa_numpy/_<layer>/<module>.py,
    and every module of a layer has one; tests/test_<name>.py a public module;
    tests/system and tests/docs the whole."""
    for layer in LAYERS:
        assert (TESTS / layer.lstrip("_")).is_dir(), f"no tests/{layer.lstrip('_')}/"
    unmatched = []
    for path in sorted(TESTS.glob("*/test_*.py")):
        folder = path.parent.name
        if folder in ("system", "docs"):
            continue
        modules = {p.stem for p in (PACKAGE / f"_{folder}").glob("*.py")}
        stem = path.stem.removeprefix("test_")
        if not any(stem == m or stem.startswith(m + "_") for m in modules):
            unmatched.append(str(path.relative_to(ROOT)))
    public = {p.stem for p in PACKAGE.glob("*.py")} | {"testing", "cli"}
    for path in sorted(TESTS.glob("test_*.py")):
        stem = path.stem.removeprefix("test_")
        if not any(stem == m or stem.startswith(m + "_") for m in public):
            unmatched.append(str(path.relative_to(ROOT)))
    assert not unmatched, f"tests that name no module of their layer: {unmatched}"
    untested = [
        f"numa_numpy/{layer}/{module.name}"
        for layer in LAYERS
        for module in sorted((PACKAGE / layer).glob("*.py"))
        if module.name != "__init__.py"
        and not list((TESTS / layer.lstrip("_")).glob(f"test_{module.stem}.py"))
        and not list((TESTS / layer.lstrip("_")).glob(f"test_{module.stem}_*.py"))
    ]
    assert not untested, f"modules with no tests/<layer>/test_<module>*.py: {untested}"


def graph_summary() -> dict[str, int]:
    """Modules, arrows (distinct module -> module imports, function-level ones
    included), floors (the longest chain of imports, in modules, a cycle
    counting as one) and the arrows between folders (a top module is a folder)."""
    graph: dict[str, set[str]] = {m: set() for m in sources()}
    for importer, target, _name, _line in imports():
        if target in graph and target != importer and not importer.startswith(target + "."):
            graph[importer].add(target)
    # a cycle is one floor: each module's group is the set it reaches and is reached by
    reach = {m: _reachable(graph, m) for m in graph}
    group = {m: frozenset(n for n in reach[m] | {m} if m in reach[n] or n == m) for m in graph}
    floors: dict[frozenset[str], int] = {}

    def floor(g: frozenset[str]) -> int:
        if g not in floors:
            below = {group[n] for m in g for n in graph[m]} - {g}
            floors[g] = 1 + max((floor(b) for b in below), default=0)
        return floors[g]

    def folder(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 else module

    between = {(folder(a), folder(b)) for a in graph for b in graph[a] if folder(a) != folder(b)}
    return {
        "modules": len(graph),
        "arrows": sum(len(v) for v in graph.values()),
        "floors": max(floor(group[m]) for m in graph),
        "arrows between folders": len(between),
    }


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


if __name__ == "__main__":  # python tests/docs/test_architecture.py [TREE]
    import sys

    if len(sys.argv) > 1:
        ROOT = Path(sys.argv[1]).resolve()
        PACKAGE = ROOT / "numa_numpy"
    print(graph_summary())
