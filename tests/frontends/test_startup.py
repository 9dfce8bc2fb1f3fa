"""The startup hook: NUMA_NUMPY_POLICY (and _PARALLEL) placing a program with
no wrapper, its threads and every kind of child process; nothing imported when
the variables are unset; the installed .pth in a fresh environment."""

from __future__ import annotations

import importlib.metadata

import json
import shutil
import subprocess
import sys
import sysconfig
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from childprobe import PROBE, clean_env, last_json, placed, run_python, script

import numa_numpy as nn
from numa_numpy._frontends import startup

REPO = Path(__file__).resolve().parents[2]
PTH = "numa_numpy_startup.pth"
WHERE = "print(json.dumps(where(np.empty(1 << 20))))\n"


def test_the_variable_places_a_program_without_the_wrapper():
    got = last_json(run_python(["-c", PROBE + WHERE], clean_env(NUMA_NUMPY_POLICY="bind:0")))
    assert placed(got, "bind:0")


def test_nothing_is_imported_when_the_variables_are_unset():
    code = (
        "import json, sys; print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('numpy', 'numa_numpy'))))"
    )
    assert last_json(run_python(["-c", code])) == []
    # the same child with the variable set: the hook does import (the check can fail)
    loaded = last_json(run_python(["-c", code], clean_env(NUMA_NUMPY_POLICY="interleave")))
    assert "numa_numpy._frontends.startup" in loaded and "numpy" in loaded


def test_a_bad_policy_in_the_variable_says_so_once_and_runs_unplaced():
    out = run_python(["-c", PROBE + WHERE], clean_env(NUMA_NUMPY_POLICY="nodes:7"))
    got = last_json(out)
    assert got["handler"] == "default_allocator" and got["kernel"] == "default"
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "NUMA_NUMPY_POLICY='nodes:7'" in lines[0] and "runs unplaced" in lines[0]


def test_threads_started_by_the_program_are_placed(tmp_path):
    job = script(
        tmp_path,
        "import threading\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "out = {}\n"
        "class Worker(threading.Thread):\n"
        "    def run(self):\n"
        "        out['subclass'] = where(np.empty(1 << 20))\n"
        "t = threading.Thread(target=lambda: out.__setitem__('thread', where(np.empty(1 << 20))))\n"
        "t.start(); t.join()\n"
        "w = Worker(); w.start(); w.join()\n"
        "with ThreadPoolExecutor(2) as pool:\n"
        "    out['pool'] = pool.submit(lambda: where(np.empty(1 << 20))).result()\n"
        "def own():\n"
        "    with nn.on_node(0):\n"  # a thread's own scope still wins inside it
        "        out['own'] = where(np.empty(1 << 20))\n"
        "t = threading.Thread(target=own); t.start(); t.join()\n"
        "out['main'] = where(np.empty(1 << 20))\n"
        "print(json.dumps(out))\n",
    )
    got = last_json(run_python([str(job)], clean_env(NUMA_NUMPY_POLICY="interleave")))
    for kind in ("main", "thread", "subclass", "pool"):
        assert placed(got[kind], "interleave"), (kind, got[kind])
    assert placed(got["own"], "bind:0")


CHILDREN = """
import concurrent.futures as cf
import multiprocessing as mp
import subprocess


def child(_=None):
    return where(np.empty(1 << 20))


if __name__ == "__main__":
    out = {}
    for method in ("spawn", "forkserver", "fork"):
        with mp.get_context(method).Pool(1) as pool:
            out[method] = pool.apply(child)
    with cf.ProcessPoolExecutor(1) as ex:
        out["ProcessPoolExecutor"] = ex.submit(child).result()
    code = open(__file__).read().split("import concurrent.futures")[0]
    code += "print(json.dumps(where(np.empty(1 << 20))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    out["subprocess"] = json.loads(done.stdout)
    out["parent"] = os.getpid()
    print(json.dumps(out))
"""


@pytest.mark.parametrize("policy", ["interleave", "bind:0"])
def test_every_kind_of_child_process_is_placed(tmp_path, policy):
    job = script(tmp_path, CHILDREN)
    got = last_json(run_python([str(job)], clean_env(NUMA_NUMPY_POLICY=policy)))
    parent = got.pop("parent")
    assert set(got) == {"spawn", "forkserver", "fork", "ProcessPoolExecutor", "subprocess"}
    for kind, where in got.items():
        assert where["pid"] != parent, kind  # really another process
        assert placed(where, policy), (kind, where)


def test_children_of_an_unplaced_program_are_not_placed(tmp_path):
    job = script(tmp_path, CHILDREN)
    got = last_json(run_python([str(job)]))
    got.pop("parent")
    assert {w["handler"] for w in got.values()} == {"default_allocator"}


# --- in this process: the session state the hook and %numa_policy share -----


@pytest.fixture
def session():
    yield startup
    startup.set_session_policy(None)


def test_the_session_policy_covers_this_context_and_new_threads_until_off(session):
    session.set_session_policy("bind:0")
    assert session.session_policy() == nn.Bind(0)
    assert nn.placement(np.ones(1 << 16)).requested == nn.Bind(0)
    seen = []
    t = threading.Thread(target=lambda: seen.append(nn.current_policy()))
    t.start()
    t.join()
    assert seen == [nn.Bind(0)]
    session.set_session_policy("interleave")  # replaces, does not stack
    assert nn.current_policy() == nn.Interleave()
    session.set_session_policy(None)
    assert nn.current_policy() is None and session.session_policy() is None
    t = threading.Thread(target=lambda: seen.append(nn.current_policy()))
    t.start()
    t.join()
    assert seen[-1] is None


def test_a_refused_session_policy_changes_nothing(session):
    session.set_session_policy("bind:0")
    with pytest.raises(nn.InvalidPolicyError):
        session.set_session_policy("bogus")
    assert nn.current_policy() == nn.Bind(0)


def test_parallel_mode_calls_the_loops_module(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("numa_numpy._compute.loops")
    fake.set_parallel = calls.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "numa_numpy._compute.loops", fake)
    assert startup.set_parallel_mode(True) is True
    assert startup.set_parallel_mode(False) is True
    assert calls == [True, False]
    monkeypatch.setitem(sys.modules, "numa_numpy._compute.loops", None)  # not importable
    assert startup.set_parallel_mode(True) is False
    err = capsys.readouterr().err
    assert "parallel mode is not available in this build" in err


def test_the_parallel_variable_reaches_the_loops_or_says_why_not():
    code = (
        "import sys; from numa_numpy._frontends import startup; "
        "print(startup._Session.parallel)"
    )
    out = run_python(["-c", code], clean_env(NUMA_NUMPY_PARALLEL="1"))
    try:
        import numa_numpy._compute.loops  # noqa: F401
    except ImportError:
        assert out.stdout.strip() == "False"
        assert "parallel mode is not available in this build" in out.stderr
    else:
        assert out.stdout.strip() == "True", out.stderr


# --- installed ---------------------------------------------------------------


def test_the_pth_of_this_install_is_the_source_one():
    """However this environment installed the package (editable or not), the
    hook is in its site-packages, identical to the source's."""
    installed = Path(sysconfig.get_paths()["purelib"]) / PTH
    assert installed.read_text() == (REPO / PTH).read_text()


def _source_files() -> list[str]:
    """The tree's source files: git's list, or in a copied tree (the sanitizer
    stage's, no .git) every file but build outputs."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, text=True,
        )
    except FileNotFoundError:  # no git
        listed = None
    if listed is not None and listed.returncode == 0:
        return listed.stdout.split()
    built = (".so", ".o", ".pyc")
    package = [p for p in (REPO / "numa_numpy").rglob("*") if "__pycache__" not in p.parts]
    return [
        str(p.relative_to(REPO)) for p in [*REPO.iterdir(), *package]
        if p.is_file() and p.suffix not in built and p.name != "_numa.c"
    ]


def _source_copy(dest: Path) -> Path:
    for name in _source_files():
        if name.startswith(("numa_numpy/", "_build_cffi", "setup.py", "pyproject", "MANIFEST",
                            "README", "LICENSE", PTH)) and (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_pip_install_puts_the_hook_into_a_fresh_site_packages(tmp_path):
    """`pip install .` into a new environment (this one's packages reachable,
    no index, no build isolation): the .pth lands in its site-packages and a
    program there is placed by the variable alone."""
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        pytest.skip("without build isolation the build needs NumPy >= 2's headers; "
                    f"this environment has NumPy {np.__version__}")
    src = _source_copy(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())
    # this environment's site-packages as a plain path: numpy, cffi, pip, setuptools
    # (its own .pth files, the editable finder among them, are not run from there)
    (site / "dev.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    fresh = {k: v for k, v in clean_env().items() if k != "PYTHONPATH"}  # not the tree's copy
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
         "--no-index", str(src)],
        check=True, capture_output=True, timeout=300, env=fresh,
    )
    assert (site / PTH).read_text() == (REPO / PTH).read_text()
    code = PROBE + "print(json.dumps({**where(np.empty(1 << 20)), 'file': nn.__file__}))"
    done = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**fresh, "NUMA_NUMPY_POLICY": "interleave"})
    got = last_json(done)
    assert got["file"].startswith(str(site)), got["file"]  # the installed copy, not the tree
    assert placed(got, "interleave")


def test_the_sdist_carries_the_hook(tmp_path):
    try:  # the distribution, not a `build/` folder importable from the cwd
        importlib.metadata.distribution("build")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs the `build` package (the dev extra)")
    src = _source_copy(tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir",
         str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    import tarfile

    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        assert any(name.endswith("/" + PTH) for name in tar.getnames())
