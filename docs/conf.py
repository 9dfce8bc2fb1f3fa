"""Sphinx configuration for the numa_numpy documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (what
``.ci/docs.sh`` runs). The tour notebook is rendered with its stored outputs,
never executed here.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

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
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The tour notebook is committed with its outputs (executed in the NUMA lab):
# render them, never run it here.
nb_execution_mode = "off"
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autosummary_generate = True
# numa_numpy.dask needs distributed; a docs venv without it documents it from mocks
autodoc_mock_imports = [] if importlib.util.find_spec("distributed") else ["dask", "distributed"]
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


html_theme = "pydata_sphinx_theme"
html_title = f"numa_numpy {release}"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}


def _copy_tour() -> None:
    """The tour notebook lives in notebooks/; Sphinx reads sources under docs/."""
    target = DOCS / "tour.ipynb"
    shutil.copyfile(ROOT / "notebooks" / "tour.ipynb", target)


_copy_tour()
