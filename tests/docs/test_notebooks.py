"""Every notebook under notebooks/ runs top to bottom without an error.

The kernel is this interpreter (sys.executable -m ipykernel_launcher), whatever
kernelspecs are installed, so the notebooks run against the numa_numpy under test.
"""

import os
import sys
from pathlib import Path

import pytest

for _module, _why in [
    ("nbclient", "executes the notebooks"),
    ("nbformat", "reads them"),
    ("ipykernel", "is their kernel"),
    ("matplotlib", "draws their charts"),
]:
    pytest.importorskip(
        _module,
        reason=f"notebook tests need {_module}, which {_why} (pip install -e '.[notebooks]')",
    )

import nbformat  # noqa: E402
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from traitlets import default  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PATHS = sorted(p for p in NOTEBOOKS.glob("**/*.ipynb") if ".ipynb_checkpoints" not in p.parts)
# a notebook is committed with its outputs, PNGs included, but kept small
MAX_STORED_BYTES = 1 << 20


class ThisInterpreterSpecs(KernelSpecManager):
    """Every kernel name resolves to an IPython kernel on sys.executable."""

    def get_kernel_spec(self, kernel_name):
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python ({sys.executable})",
            language="python",
            resource_dir=str(NOTEBOOKS),
            metadata={},
        )


class ThisInterpreterKernelManager(KernelManager):
    """A KernelManager whose kernels run on sys.executable."""

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self):
        return ThisInterpreterSpecs(parent=self)


def _ids(paths):
    return [str(p.relative_to(NOTEBOOKS)) for p in paths]


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    # Writable places for the kernel's connection file and IPython profile, and no
    # user profile (startup scripts) leaking in; the same on read-only homes.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the notebooks use the inline backend
    if not os.access(os.path.expanduser("~"), os.W_OK):
        monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))


def test_there_are_notebooks():
    assert PATHS, f"no notebooks under {NOTEBOOKS}"


@pytest.mark.parametrize("path", PATHS, ids=_ids(PATHS))
def test_notebook_runs_without_errors(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        # generous limits: the NUMA lab's emulated guest starts a kernel in ~1-2 minutes
        nb,
        timeout=600,
        startup_timeout=600,
        kernel_name="python3",
        allow_errors=False,
        record_timing=False,
        kernel_manager_class=ThisInterpreterKernelManager,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors


@pytest.mark.parametrize("path", PATHS, ids=_ids(PATHS))
def test_stored_notebook_has_outputs_and_is_small(path):
    size = path.stat().st_size
    assert size < MAX_STORED_BYTES, f"{path.name} is {size} bytes: clear some outputs"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    outputs = [out for cell in code for out in cell.get("outputs", [])]
    assert all(cell.get("execution_count") for cell in code), "not executed top to bottom"
    assert outputs, f"{path.name} is stored without outputs: execute it before committing"
    assert not [out for out in outputs if out.get("output_type") == "error"]


def test_the_tours_opening_list_has_one_item_per_section():
    # A reader scans the opening list to find a section: each "## N." heading has
    # item N, and no section is left unnumbered.
    import re

    nb = nbformat.read(NOTEBOOKS / "tour.ipynb", as_version=4)
    markdown = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    items = re.findall(r"^(\d+)\. ", markdown[0], re.M)
    headings = [
        line for text in markdown[1:] for line in text.splitlines() if line.startswith("## ")
    ]
    numbered = [re.match(r"## (\d+)\. ", h) for h in headings]
    unnumbered = [h for h, m in zip(headings, numbered) if m is None and h != "## Where next"]
    assert not unnumbered, f"sections without a number: {unnumbered}"
    assert [m.group(1) for m in numbered if m] == items
