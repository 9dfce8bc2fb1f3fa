"""The documentation a scientific Python user expects (issue 17).

- every public name of ``numa_numpy.__all__`` (functions, classes, their public
  methods) has a numpydoc docstring: a Parameters section where it takes
  parameters, and an Examples section; properties have a summary;
- the NUMA keywords are described once (``numa_numpy._policies.docstrings.DOC_PARTS``) and
  filled into the docstrings that take them, not copied by hand;
- every ``>>>`` example in the package runs. Examples marked
  ``# doctest: +MULTINODE`` need two NUMA nodes with memory: they are skipped
  on one node and run in the NUMA lab (the ``multinode`` test below);
- the public objects have a ``repr()`` that says what they are.
"""

from __future__ import annotations

import doctest
import enum
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest

import numa_numpy as nn
from numa_numpy._policies.docstrings import DOC_PARTS

PACKAGE = Path(nn.__file__).resolve().parent
MULTINODE = doctest.register_optionflag("MULTINODE")

def _own_members(cls: type) -> list[tuple[str, object]]:
    """The public methods and properties `cls` defines itself (not those of
    Enum, Exception, tuple or object)."""
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            found.append((name, value.__func__))
        elif isinstance(value, property) or inspect.isfunction(value):
            found.append((name, value))
    return found


#: the public modules besides numa_numpy itself whose names are checked too
FACES = [nn.memory, nn.diagnostics]


def _public_names() -> list[tuple[str, object]]:
    """(name, object) of ``numa_numpy.__all__``, then the faces' names that
    are not among them (``numa_numpy.diagnostics.bandwidth_matrix``)."""
    named = [(name, getattr(nn, name)) for name in nn.__all__]
    seen = {id(obj) for _, obj in named}
    for face in FACES:
        for name in face.__all__:
            obj = getattr(face, name)
            if id(obj) not in seen:
                named.append((f"{face.__name__}.{name}", obj))
                seen.add(id(obj))
    return named


def public_items() -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    for name, obj in _public_names():
        if inspect.isclass(obj):
            items.append((name, obj))
            if not issubclass(obj, BaseException):
                items += [(f"{name}.{m}", v) for m, v in _own_members(obj)]
        elif callable(obj):
            items.append((name, obj))
    return items


def _takes_parameters(obj: object) -> bool:
    if inspect.isclass(obj):
        if issubclass(obj, enum.Enum):
            return False
        if "__init__" not in vars(obj) and "__new__" not in vars(obj):
            # dataclasses define __init__; classes that inherit theirs take nothing new
            return False
        target: object = obj
    else:
        target = obj
    try:
        signature = inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    names = [p for p in signature.parameters if p not in ("self", "cls")]
    return bool(names)


def problems(name: str, obj: object) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return ["no docstring"]
    if isinstance(obj, property):
        return []  # a summary; properties are shown in their class's examples
    found = []
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return []  # exceptions: a summary saying when they are raised
    if _takes_parameters(obj) and "Parameters\n----------" not in doc:
        found.append("no Parameters section")
    if "Examples\n--------" not in doc or ">>> " not in doc:
        found.append("no Examples section")
    return found


ITEMS = public_items()


@pytest.mark.parametrize("name,obj", ITEMS, ids=[n for n, _ in ITEMS])
def test_public_name_is_documented(name, obj):
    assert not problems(name, obj), f"{name}: {', '.join(problems(name, obj))}"


def test_the_docstring_check_finds_what_is_missing():
    def bare(x, *, node=None):
        """A summary only."""

    def examples_only(x):
        """A summary.

        Examples
        --------
        >>> examples_only(1)
        """

    assert problems("bare", bare) == ["no Parameters section", "no Examples section"]
    assert problems("examples_only", examples_only) == ["no Parameters section"]
    assert problems("nothing", lambda: None) == ["no docstring"]
    assert len(ITEMS) > 100 and {"numa_zeros", "NodeTeam.run"} <= {n for n, _ in ITEMS}


def test_every_name_of_the_public_modules_is_checked():
    checked = {id(obj) for _, obj in ITEMS}
    for face in FACES:
        for name in face.__all__:
            assert id(getattr(face, name)) in checked, f"{face.__name__}.{name} is not checked"
    assert "numa_numpy.diagnostics.bandwidth_matrix" in {n for n, _ in ITEMS}
    assert "MemoryPool.set_cache_limit" in {n for n, _ in ITEMS}


CONSTRUCTORS = [
    nn.numa_empty,
    nn.numa_zeros,
    nn.numa_ones,
    nn.numa_full,
    nn.numa_empty_like,
    nn.numa_zeros_like,
    nn.numa_ones_like,
    nn.numa_full_like,
    nn.numa_array,
    nn.interleaved_empty,
    nn.interleaved_zeros,
    nn.interleaved_ones,
    nn.interleaved_full,
    nn.policy,
    nn.on_node,
    nn.interleaved,
    nn.PolicyScope,
]


@pytest.mark.parametrize("func", CONSTRUCTORS, ids=lambda f: f.__name__)
def test_numa_keywords_come_from_the_shared_template(func):
    doc = inspect.getdoc(func) or ""
    first_line = DOC_PARTS["allocation_keywords"].splitlines()[0]
    assert first_line in doc, f"{func.__name__} does not describe strict= from DOC_PARTS"
    assert "{" + "allocation_keywords}" not in doc  # placeholders are filled


def test_numa_keywords_are_written_once_in_the_source():
    # each part's distinctive lines appear in docstrings.py only, not copied by hand
    probes = [part.splitlines()[1].strip() for part in DOC_PARTS.values()]
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for probe in probes:
            if path.name != "docstrings.py":
                assert probe not in text, f"{path.name} copies {probe!r}; use the template"


class _NodeAwareRunner(doctest.DocTestRunner):
    """Skips examples flagged MULTINODE unless two nodes have memory."""

    def __init__(self, multinode: bool, **kwargs):
        super().__init__(**kwargs)
        self.multinode = multinode

    def run(self, test, *args, **kwargs):
        if not self.multinode:
            test.examples = [e for e in test.examples if not e.options.get(MULTINODE)]
        return super().run(test, *args, **kwargs)


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(nn.__path__, "numa_numpy.")]
    return [n for n in names if not n.endswith("__main__")]


def _run_examples(module_name: str, multinode: bool) -> doctest.TestResults:
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    runner = _NodeAwareRunner(
        multinode, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    tests = finder.find(module, module_name, globs={})
    # names that say they live elsewhere (the exceptions set __module__ to
    # "numa_numpy"), which the module search passes over
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if getattr(obj, "__module__", module_name) != module_name:
            tests += finder.find(obj, f"{module_name}.{name}", module=False, globs={})
    for test in tests:
        runner.run(test)
    return runner.summarize(verbose=False)


# The examples show NumPy 2's reprs (np.float64(0.0)); NumPy 1 prints 0.0
needs_numpy2 = pytest.mark.skipif(
    np.lib.NumpyVersion(np.__version__) < "2.0.0", reason="examples use NumPy 2's reprs"
)


@needs_numpy2
@pytest.mark.parametrize("module_name", _modules())
def test_examples_run(module_name):
    if module_name == "numa_numpy.dask":
        pytest.importorskip("distributed")
    result = _run_examples(module_name, multinode=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


@needs_numpy2
@pytest.mark.multinode
@pytest.mark.parametrize("module_name", _modules())
def test_multinode_examples_run(module_name):
    if len(nn.topology().usable_nodes) < 2:
        pytest.skip("needs two NUMA nodes with memory")
    if module_name == "numa_numpy.dask":
        pytest.importorskip("distributed")
    result = _run_examples(module_name, multinode=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


def _reprs():
    """One of each public object a user meets in a notebook."""
    yield nn.Bind(0)
    yield nn.Interleave("0")
    yield nn.on_node(0)
    yield nn.policy("interleave", strict=True)
    yield nn.pinned(node=0)
    yield nn.thread_policy("bind:0")
    yield nn.placement(nn.numa_zeros(8, node=0))
    yield nn.topology()
    yield nn.topology().nodes[0]
    yield nn.capabilities()
    yield nn.doctor()
    yield nn.doctor().findings[0]
    yield nn.Enforcement(nn.EnforcementLevel.NONE, "mbind: EPERM")
    yield nn.get_memory_pool()
    yield nn.NumaRegion(4096, node=0)
    yield nn.node_team()
    yield nn.replicate(np.arange(4.0))


def test_reprs_say_what_the_object_is():
    for obj in _reprs():
        text = repr(obj)
        assert not re.search(r" object at 0x[0-9a-f]+>$", text), text
        # the type's name, or numa_numpy's own form (<numa_numpy scope bind:0 ...>)
        assert type(obj).__name__ in text or text.startswith("<numa_numpy "), text
