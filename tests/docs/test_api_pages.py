"""The API reference (docs/api/*.rst): one page per public name, each name once.

The topic pages list names in ``autosummary`` tables (each with ``:toctree:``,
so every name gets a page of its own under docs/api/generated/, built each
time) or, for a constant, a ``.. data::`` directive. Every name of
``numa_numpy.__all__`` is listed exactly once, every listed name exists, and
the names of the public modules beside it (``numa_numpy.testing``,
``numa_numpy.diagnostics.bandwidth_matrix``) are listed too. The helpers of
docs/conf.py that make signatures and links read as NumPy's are checked here;
a built site (``.ci/docs.sh``) is checked for links to our own names that did
not resolve.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

import numa_numpy as nn

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"
SITE = ROOT / "docs" / "_build" / "html"


def listed_names(text: str) -> list[tuple[str, bool]]:
    """(full name, has a page of its own) for every name an rst page lists in
    an autosummary table or a ``.. data::`` directive, under the module its
    ``currentmodule`` directives say."""
    module = "numa_numpy"
    found: list[tuple[str, bool]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"\.\. (?:currentmodule|automodule):: (\S+)", line):
            module = m.group(1)
        elif m := re.match(r"\.\. (?:data|py:data):: (\S+)", line):
            found.append((f"{module}.{m.group(1)}", True))
        elif line.startswith(".. autosummary::"):
            toctree = False
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                entry = lines[i].strip()
                if entry.startswith(":toctree:"):
                    toctree = True
                elif entry and not entry.startswith(":"):
                    found.append((f"{module}.{entry.lstrip('~')}", toctree))
                i += 1
            continue
        i += 1
    return found


def reference() -> list[tuple[str, bool]]:
    return [item for page in sorted(API.glob("*.rst")) for item in listed_names(page.read_text())]


def test_every_public_name_is_listed_exactly_once():
    counts = Counter(name for name, _ in reference())
    missing = [n for n in nn.__all__ if counts[f"numa_numpy.{n}"] == 0]
    twice = [n for n in nn.__all__ if counts[f"numa_numpy.{n}"] > 1]
    assert not missing, f"docs/api/*.rst does not list {missing}"
    assert not twice, f"docs/api/*.rst lists more than once: {twice}"


def test_every_listed_name_exists_and_has_its_own_page():
    for name, own_page in reference():
        module_name, _, attr = name.rpartition(".")
        if module_name == "numa_numpy.dask" and importlib.util.find_spec("distributed") is None:
            continue  # the site documents it from mocks; the module needs distributed
        module = importlib.import_module(module_name)
        assert hasattr(module, attr), f"docs/api lists {name}, which does not exist"
        assert own_page, f"{name} is in an autosummary table without :toctree:"


def test_the_public_modules_beside_numa_numpy_are_listed():
    names = {name for name, _ in reference()}
    assert "numa_numpy.diagnostics.bandwidth_matrix" in names
    for name in nn.testing.__all__:
        assert f"numa_numpy.testing.{name}" in names


def test_the_reader_counts_what_a_page_lists():
    page = """
.. currentmodule:: numa_numpy

.. autosummary::
   :toctree: generated/

   numa_zeros
   numa_zeros

.. autosummary::

   placement

.. currentmodule:: numa_numpy.testing

.. autosummary::
   :toctree: generated/

   assert_placed

.. currentmodule:: numa_numpy

.. data:: HANDLER_NAME
"""
    assert listed_names(page) == [
        ("numa_numpy.numa_zeros", True),
        ("numa_numpy.numa_zeros", True),
        ("numa_numpy.placement", False),
        ("numa_numpy.testing.assert_placed", True),
        ("numa_numpy.HANDLER_NAME", True),
    ]


def _conf():
    spec = importlib.util.spec_from_file_location("docs_conf", ROOT / "docs" / "conf.py")
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_signatures_read_as_numpys():
    plain = _conf().plain_signature
    raw = "(shape, dtype=<class 'float'>, *, huge_pages=<HugePages.AUTO: 'auto'>, x=<class 'numpy.uint8'>)"
    assert plain(raw) == "(shape, dtype=float, *, huge_pages='auto', x=numpy.uint8)"
    assert plain(None) is None


def test_own_names_are_told_from_others():
    own = _conf().own_name
    assert own("nn.placement") == "numa_numpy.placement"
    assert own("~numa_numpy.Placement.pages") == "numa_numpy.Placement.pages"
    assert own("Placement.pages") == "numa_numpy.Placement.pages"
    assert own("node") is None  # a parameter
    assert own("numpy.memmap") is None


def test_the_site_has_no_unresolved_link_to_our_names():
    pages = sorted(SITE.rglob("*.html")) if SITE.is_dir() else []
    if not pages:
        pytest.skip("no built site: bash .ci/docs.sh builds docs/_build/html")
    own = _conf().own_name
    xref = re.compile(r'(<a [^>]*>)?<code class="xref py[^"]*">(.*?)</code>', re.S)
    broken = []
    for page in pages:
        for link, inner in xref.findall(page.read_text()):
            text = re.sub(r"<[^>]+>", "", inner).strip().rstrip("()")
            if not link and own(text) is not None:
                broken.append(f"{page.relative_to(SITE)}: {text}")
    assert not broken, broken
