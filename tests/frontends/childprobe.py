"""Helpers for the tests of `numa-numpy run` and the startup hook: child
interpreters with a clean NUMA_NUMPY_* environment, and a probe they run that
asks NumPy which handler made an array and the kernel which policy holds its
pages (/proc/self/numa_maps, read by tests/kernel_view.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]

# Prepended to every child's code: `where(a)` writes the array (pages faulted
# in) and reports NumPy's handler, the package's placement query and the kernel.
PROBE = f"""
import json, os, sys
sys.path.insert(0, {str(TESTS)!r})
import numpy as np
import numa_numpy as nn
from kernel_view import numa_maps_entry
try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name


def kernel_policy(address):
    # maps and numa_maps are two reads: another thread's mmap between them can
    # move a VMA boundary (malloc's own mappings merge); read again then
    for _ in range(5):
        try:
            return numa_maps_entry(address).policy
        except LookupError:
            continue
    return "unknown"


def where(a):
    a[...] = 1.0
    return {{
        "handler": get_handler_name(a),
        "requested": str(nn.placement(a).requested),
        "kernel": kernel_policy(a.ctypes.data),
        "pid": os.getpid(),
    }}
"""


def clean_env(**variables: str) -> dict[str, str]:
    """os.environ without any NUMA_NUMPY_* variable, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMA_NUMPY_")}
    env.update(variables)
    return env


def run_python(
    args: list[str], env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def run_wrapped(
    args: list[str], env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """`numa-numpy run ARGS` (as `python -m numa_numpy run`)."""
    return run_python(["-m", "numa_numpy", "run", *args], env, **kwargs)


def last_json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def script(tmp_path: Path, body: str, name: str = "job.py") -> Path:
    path = tmp_path / name
    path.write_text(PROBE + body)
    return path


def placed(where: dict[str, Any], policy: str) -> bool:
    """Whether NumPy used our handler and the kernel holds `policy`'s mode for
    the pages (numa_maps writes e.g. interleave:0 or bind:0)."""
    mode = policy.split(":")[0]
    return (
        where["handler"] == "numa_numpy"
        and where["requested"].split(":")[0] == mode
        and where["kernel"].split(":")[0] == mode
    )
