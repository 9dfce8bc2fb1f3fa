"""What a newcomer meets before anything runs: importing the source tree without
its built extension, and the README's own install and test commands (CI runs
those literally in a fresh clone; see .ci/readme_commands.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _copy_sources(dest: Path, *, with_build_script: bool) -> Path:
    """The package's Python files only: no compiled extension."""
    pkg = dest / "numa_numpy"
    shutil.copytree(
        REPO / "numa_numpy",
        pkg,
        ignore=shutil.ignore_patterns("*.so", "__pycache__", "_numa.c", "*.o"),
    )
    if with_build_script:
        shutil.copy(REPO / "_build_cffi.py", dest / "_build_cffi.py")
    return pkg


def _import_from(cwd: Path) -> subprocess.CompletedProcess[str]:
    # -c puts the working directory first on sys.path, as `python -m` does; an
    # editable install's finder (the developer's own setup) must not answer first
    code = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
        "if '__editable__' not in getattr(f, '__module__', '')]; import numa_numpy"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_source_tree_without_extension_says_what_to_do(tmp_path: Path) -> None:
    _copy_sources(tmp_path, with_build_script=True)
    out = _import_from(tmp_path)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: numa_numpy is being imported from its source tree")
    assert "ModuleNotFoundError" not in out.stderr
    assert str(tmp_path) in last
    assert "pip install -e ." in last and "numa-numpy" in last


def test_installed_package_without_extension_says_reinstall(tmp_path: Path) -> None:
    _copy_sources(tmp_path, with_build_script=False)
    out = _import_from(tmp_path)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: numa_numpy's C extension numa_numpy._numa is missing")
    assert "reinstall" in last


def test_console_script_is_declared_for_the_cli() -> None:
    """The README's first command runs `numa-numpy`, which does not put the
    working directory on sys.path: it must be the CLI's entry point."""
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["numa-numpy"] == "numa_numpy.__main__:main"
    readme = (REPO / "README.md").read_text()
    blocks = readme.split("```bash\n")
    assert "numa-numpy" in blocks[1].split("```")[0]


def test_a_build_against_numpy_1_headers_is_refused_with_the_way_out(tmp_path: Path) -> None:
    # `pip install --no-build-isolation` where NumPy 1.x is installed would build a
    # module that cannot import; the build says so before compiling anything
    fake = tmp_path / "numpy"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '1.26.4'\ndef get_include(): return ''\n")
    out = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path({str(REPO / '_build_cffi.py')!r})"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: numa_numpy builds against NumPy >= 2.0's headers")
    assert "NumPy 1.26.4" in last and "--no-build-isolation" in last
