"""Sphinx configuration for the numa_numpy documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (what
``.ci/docs.sh`` runs). The tour notebook is rendered with its stored outputs,
never executed here. The API reference has one page per public name, generated
by autosummary under ``docs/api/generated/`` on every build (not committed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numa_numpy

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

project = "numa_numpy"
author = "the numa_numpy authors"
copyright = "the numa_numpy authors"
release = numa_numpy.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# The tour notebook is committed with its outputs: render them, never run it here.
nb_execution_mode = "off"
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# `name` in a docstring is a link to that object, not italics
default_role = "py:obj"

# One page per public name (docs/api/*.rst list them by topic).
autosummary_generate = True
autosummary_imported_members = True
# numa_numpy.dask needs distributed; a docs venv without it documents it from mocks
autodoc_mock_imports = [] if importlib.util.find_spec("distributed") else ["dask", "distributed"]

# Signatures as NumPy's read: `dtype=float`, not `dtype: DTypeLike | None = <class
# 'float'>`; the types are in the Parameters section.
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


def _intersphinx() -> dict[str, tuple[str, Any]]:
    """NumPy's and Python's inventories, where this build can have them.

    The build machine may have no internet: an inventory saved under
    ``docs/_inventories/`` (``numpy.inv``, ``python.inv``) is used as it is;
    ``NUMA_NUMPY_DOCS_INTERSPHINX=1`` fetches the missing ones online.
    Without either, references to NumPy and Python names stay plain code
    (``nitpicky`` is off, so they are not warnings); our own names must
    resolve all the same (`_own_reference`).
    """
    sites = {"numpy": "https://numpy.org/doc/stable/", "python": "https://docs.python.org/3/"}
    online = os.environ.get("NUMA_NUMPY_DOCS_INTERSPHINX") == "1"
    mapping: dict[str, tuple[str, Any]] = {}
    for name, url in sites.items():
        saved = DOCS / "_inventories" / f"{name}.inv"
        if saved.is_file():
            mapping[name] = (url, str(saved))
        elif online:
            mapping[name] = (url, None)
    return mapping


intersphinx_mapping = _intersphinx()
nitpicky = False


def _project_urls() -> dict[str, str]:
    """``[project.urls]`` of pyproject.toml (read as text: tomllib is 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.urls\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if section is None:
        return {}
    return dict(re.findall(r'^(\w+)\s*=\s*"([^"]+)"', section.group(1), re.M))


URLS = _project_urls()

html_theme = "pydata_sphinx_theme"
html_title = f"numa_numpy {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_depth": 3,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc"],
    "navbar_align": "left",
    "github_url": URLS["Source"],
    "icon_links": [
        {
            "name": "Issues",
            "url": URLS["Issues"],
            "icon": "fa-solid fa-bug",
            "type": "fontawesome",
        }
    ],
}
# the landing page has no section tree to show on the left
html_sidebars = {"index": []}

def own_name(target: str) -> str | None:
    """The full name under ``numa_numpy`` that a reference `target` means
    (``nn.placement`` and ``Placement.pages`` included), or None where it is
    not one of ours (a parameter such as `node`, NumPy's names)."""
    target = target.lstrip("~.")
    for prefix in ("numa_numpy.", "nn."):
        if target.startswith(prefix):
            return "numa_numpy." + target[len(prefix) :]
    if target.split(".")[0] in numa_numpy.__all__:
        return "numa_numpy." + target
    return None


def _own_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """``missing-reference``: ``nn.x`` resolves as ``numa_numpy.x``; one of our
    own names that still does not resolve is a warning (so -W fails)."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    full = own_name(target)
    if full is None:
        return None
    domain = env.get_domain("py")
    # `Placement.enforcement`: an attribute described in its class's
    # Attributes section links to the class's page
    candidates = [full] if full != target else []
    owner = full.rpartition(".")[0]
    if owner != "numa_numpy":
        candidates.append(owner)
    for name in candidates:
        found = domain.resolve_xref(
            env, node["refdoc"], app.builder, "obj" if name == owner else node["reftype"],
            name, node, contnode,
        )
        if found is not None:
            return found
    from sphinx.util import logging

    logging.getLogger(__name__).warning(
        "unresolved reference to our own name %r", target, location=node
    )
    return None


_CLASS_DEFAULT = re.compile(r"<class '(?:builtins\.)?([\w.]+)'>")
_ENUM_DEFAULT = re.compile(r"<\w+\.\w+: ([^<>]*)>")


def plain_signature(signature: str | None) -> str | None:
    """A default that is a class reads as its name (``dtype=float``), an
    enum member as the value it stands for (``huge_pages='auto'``)."""
    if not signature:
        return signature
    return _ENUM_DEFAULT.sub(r"\1", _CLASS_DEFAULT.sub(r"\1", signature))


def _process_signature(app, what, name, obj, options, signature, return_annotation):  # type: ignore[no-untyped-def]
    return plain_signature(signature), return_annotation


def _copy_tour(app: Any) -> None:
    """The tour notebook lives in notebooks/; Sphinx reads sources under docs/."""
    shutil.copyfile(ROOT / "notebooks" / "tour.ipynb", DOCS / "tour.ipynb")


def setup(app: Any) -> None:
    app.connect("builder-inited", _copy_tour)
    app.connect("autodoc-process-signature", _process_signature)
    app.connect("missing-reference", _own_reference)
