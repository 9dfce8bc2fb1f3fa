#!/usr/bin/env python3
"""Execute a notebook top to bottom and write it, with its outputs, elsewhere.

Used to store the tour's outputs as the 4-node lab shows them:

    python tests/lab/run.py --exec '.venv/bin/python tests/lab/execute_notebook.py \\
        notebooks/tour.ipynb "$NUMA_LAB_OUT/tour.ipynb"' --keep

(then copy the kept tour.ipynb over notebooks/tour.ipynb). The kernel runs on this
interpreter, whatever kernelspecs are installed, with writable runtime folders in
/tmp (the guest's root file system is read-only).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from traitlets import default


class ThisInterpreterSpecs(KernelSpecManager):
    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3 (ipykernel)",
            language="python",
            metadata={},
        )


class ThisInterpreterKernelManager(KernelManager):
    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        return ThisInterpreterSpecs(parent=self)


def main(source: str, target: str) -> int:
    scratch = tempfile.mkdtemp(prefix="nb-")
    for var in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        os.environ[var] = os.path.join(scratch, var.lower())
    os.environ.pop("MPLBACKEND", None)
    # matplotlib builds its font cache on first import: do it now, so that its
    # notice is not stored as the notebook's first output
    subprocess.run([sys.executable, "-c", "import matplotlib.pyplot"], check=True)
    nb = nbformat.read(source, as_version=4)
    NotebookClient(
        nb,
        timeout=1200,
        startup_timeout=600,
        kernel_name="python3",
        allow_errors=False,
        record_timing=False,
        kernel_manager_class=ThisInterpreterKernelManager,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(source))}},
    ).execute()
    nbformat.write(nb, target)
    print(f"executed {source} -> {target}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: execute_notebook.py IN.ipynb OUT.ipynb")
    sys.exit(main(sys.argv[1], sys.argv[2]))
