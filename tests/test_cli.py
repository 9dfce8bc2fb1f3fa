import json
import subprocess
import sys

import numa_numpy as nn


def run(*args, code=None):
    cmd = [sys.executable, "-m", "numa_numpy", *args] if code is None else \
        [sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_default_prints_topology_and_passes_self_check():
    out = run()
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("available: ")
    for node in nn.topology().usable_nodes:
        assert f"PASS node {node}: constructor" in out.stdout
        assert f"PASS node {node}: scope ufunc output" in out.stdout
    assert "self-check passed" in out.stdout


def test_json_output():
    out = run("--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["passed"] is True
    assert [n["id"] for n in data["topology"]["nodes"]] == list(nn.topology().node_ids)
    info = json.loads(run("info", "--json").stdout)
    assert "check" not in info and info["topology"]["nodes"]


def test_failing_check_exits_non_zero():
    code = ("import sys; from numa_numpy._lib import lib; "
            "lib.nn_inject_fault(lib.NN_FAULT_MBIND, 1, 1000); "
            "from numa_numpy.__main__ import main; sys.exit(main(['check']))")
    out = run(code=code)
    assert out.returncode == 1
    assert "FAIL node 0" in out.stdout and "EPERM" in out.stdout
    assert "self-check FAILED" in out.stdout
