"""`--report[=FILE]`: at exit, per node, NumPy's bytes there (the kernel's
figures), the peak (the C allocator's high-water mark), and what the doctor
says about the run; one report per run, whatever children it starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from childprobe import clean_env, placed, run_python, run_wrapped, script

import numa_numpy as nn
from numa_numpy._frontends.report import collect_report, format_report

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20

JOB = """
from kernel_view import numa_maps
nn.set_cache_decay(None)  # nothing leaves the cache between here and the report
big = np.empty(8 << 20)   # 64 MiB, written, then freed
big[...] = 1.0
del big
keep = np.empty(2 << 20)  # 16 MiB, alive at exit
here = where(keep)
kernel = {}
for entry in numa_maps():  # the kernel's own figures: policy-bound memory per node
    if entry.policy != "default":
        for node, pages in entry.pages.items():
            kernel[str(node)] = kernel.get(str(node), 0) + pages * entry.page_kib * 1024
print(json.dumps({"kernel": kernel, "where": here, "pid": os.getpid()}))
"""


def _run_job(tmp_path, *extra):
    job = script(tmp_path, JOB)
    out_file = tmp_path / "report.json"
    out = run_wrapped(["--policy", "interleave", f"--report={out_file}", *extra, str(job)])
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout.strip().splitlines()[-1])
    return child, json.loads(out_file.read_text()), out.stderr


def test_the_json_report_matches_the_kernel_and_the_allocator(tmp_path):
    child, report, _ = _run_job(tmp_path)
    assert placed(child["where"], "interleave")
    assert report["pid"] == child["pid"] and report["policy"] == "interleave"
    nodes = report["nodes"]
    # resident: exactly what the kernel holds in policy-bound mappings at the end
    assert {n: row["resident_bytes"] for n, row in nodes.items() if row["resident_bytes"]} == {
        n: b for n, b in child["kernel"].items() if b
    }
    # in use: the live 16 MiB (the freed 64 MiB sits in the cache, not counted)
    in_use = sum(row["in_use_bytes"] for row in nodes.values())
    assert 16 * MiB <= in_use < 16 * MiB + 4 * MiB
    (handler,) = [h for h in report["handlers"] if h["policy"] == "interleave"]
    # the peak: the 64 MiB block, freed before the 16 MiB one was made
    assert 64 * MiB <= handler["peak_bytes"] < 64 * MiB + 4 * MiB
    assert 16 * MiB <= handler["used_bytes"] < 16 * MiB + 4 * MiB
    spread = nn.Interleave().resolved_nodes(nn.topology())
    peaks = {int(n): row["peak_bytes"] for n, row in nodes.items() if row["peak_bytes"]}
    assert set(peaks) == set(spread)
    assert sum(peaks.values()) == handler["peak_bytes"]
    assert all(f["severity"] in ("warning", "error") for f in report["findings"])
    assert not [f for f in report["findings"] if "did not run" in f["summary"]]  # the doctor ran


def test_the_text_report_on_stderr_says_the_same(tmp_path):
    _, report, stderr = _run_job(tmp_path)
    lines = stderr.splitlines()
    heads = [line for line in lines if line.startswith("numa-numpy report")]
    assert heads == [f"numa-numpy report, pid {report['pid']}: policy interleave, parallel off"]
    for node, row in report["nodes"].items():
        cells = f"{row['in_use_bytes'] / MiB:.1f} MiB", f"{row['resident_bytes'] / MiB:.1f} MiB"
        assert any(line.split()[:1] == [node] and all(c in line for c in cells) for line in lines)
    peak = next(h for h in report["handlers"] if h["policy"] == "interleave")["peak_bytes"]
    assert any(
        line.startswith("handler interleave") and f"peak {peak / MiB:.1f} MiB" in line
        for line in lines
    )
    assert any(line.startswith("doctor") for line in lines)


def test_a_refused_policy_is_reported_as_a_soft_fallback(tmp_path):
    seccomp = REPO / "tests" / "fixtures" / "seccomp.py"
    sys.path.insert(0, str(seccomp.parent))
    try:
        import seccomp as filters
    finally:
        sys.path.pop(0)
    if not filters.supported():
        pytest.skip("no seccomp filter for this architecture")
    job = script(tmp_path, "a = np.ones(1 << 20)\nprint(json.dumps(where(a)))\n")
    out_file = tmp_path / "r.json"
    out = run_python(
        [str(seccomp), "EPERM", "--", sys.executable, "-m", "numa_numpy", "run",
         "--policy", "bind:0", f"--report={out_file}", str(job)]
    )
    assert out.returncode == 0, out.stderr
    where = json.loads(out.stdout.strip().splitlines()[-1])
    assert where["handler"] == "numa_numpy" and where["kernel"] == "default"  # unbound
    report = json.loads(out_file.read_text())
    said = [s for s in report["run"] if "policy refused, soft mode fell back" in s]
    assert said and said[0].startswith("bind:0")
    assert "policy refused, soft mode fell back" in out.stderr
    assert any(f["check"] == "policy-syscalls" for f in report["findings"]), report["findings"]


def test_one_report_per_run_whatever_children_it_starts(tmp_path):
    job = script(
        tmp_path,
        "import multiprocessing as mp, subprocess\n"
        "def child():\n"
        "    np.ones(1 << 20)\n"
        "if __name__ == '__main__':\n"
        "    p = mp.get_context('spawn').Process(target=child); p.start(); p.join()\n"
        "    subprocess.run([sys.executable, '-c', 'import numpy'], check=True)\n"
        "    print(os.getpid())\n"
        "    sys.exit(3)\n",
    )
    out = run_wrapped(["--policy", "interleave", "--report", str(job)])
    assert out.returncode == 3  # the program's status, report or not
    heads = [line for line in out.stderr.splitlines() if line.startswith("numa-numpy report")]
    assert heads == [
        f"numa-numpy report, pid {out.stdout.split()[-1]}: policy interleave, parallel off"
    ]


def test_the_variable_alone_writes_the_report(tmp_path):
    out_file = tmp_path / "r.json"
    env = clean_env(NUMA_NUMPY_POLICY="bind:0", NUMA_NUMPY_REPORT=str(out_file))
    out = run_python(["-c", "import numpy as np; a = np.ones(1 << 20)"], env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out_file.read_text())
    assert report["policy"] == "bind:0"
    assert report["nodes"]["0"]["in_use_bytes"] >= 8 * MiB


def test_collect_report_in_this_process_counts_a_live_array():
    before = collect_report()
    a = nn.numa_ones(4 << 20, node=0)  # 32 MiB, written
    after = collect_report()
    grown = after["nodes"][0]["in_use_bytes"] - before["nodes"].get(0, {}).get("in_use_bytes", 0)
    assert grown >= a.nbytes
    (handler,) = [h for h in after["handlers"] if h["policy"] == "bind:0" and h["used_bytes"]][:1]
    assert handler["peak_bytes"] >= handler["used_bytes"] >= a.nbytes
    text = format_report(after)
    assert "policy none" in text.splitlines()[0]
    del a
    np.ones(1)  # nothing of ours left active


LOOPS_JOB = """
a = np.ones(1 << 21)
b = a + a            # one large call: split by the parallel loops
s = float(b.sum())   # one large reduction
info = nn.parallel_info()
print(json.dumps({"split": info["split"], "reduce_split": info["reduce_split"], "s": s}))
"""


def test_the_report_says_what_the_parallel_loops_did(tmp_path):
    job = script(tmp_path, LOOPS_JOB)
    out_file = tmp_path / "report.json"
    out = run_wrapped(["--policy", "interleave", "--parallel", f"--report={out_file}", str(job)])
    assert out.returncode == 0, out.stderr
    child = json.loads(out.stdout.strip().splitlines()[-1])
    loops = json.loads(out_file.read_text())["loops"]
    assert child["s"] == 2.0 * (1 << 21)
    # the report is taken at exit, after the program's own reading
    assert loops["split"] >= child["split"] >= 1
    assert loops["reduce_split"] >= child["reduce_split"]
    if np.lib.NumpyVersion(np.__version__) >= "2.4.0":
        # older NumPy hands a reduction to the loop in 8192-element buffers,
        # below the default threshold (see the guide)
        assert child["reduce_split"] >= 1
    assert "parallel loops:" in out.stderr and "calls split" in out.stderr
    # without --parallel there is nothing to say about them
    plain = run_wrapped(["--policy", "interleave", f"--report={out_file}", str(job)])
    assert plain.returncode == 0, plain.stderr
    assert json.loads(out_file.read_text())["loops"] is None
    assert "parallel loops:" not in plain.stderr


def test_a_handler_applied_only_in_part_is_said_in_the_guides_words():
    from numa_numpy._frontends.report import _about_handler

    entry = {"policy": "bind:0", "fallbacks": 0, "huge_fallbacks": 0}
    partly = nn.Enforcement(nn.EnforcementLevel.BEST_EFFORT, "no 1gb huge pages free on node 0")
    said = _about_handler({**entry, "enforcement": str(partly)}, partly.level)
    assert said == ["bind:0: partly applied: no 1gb huge pages free on node 0"]
    applied = nn.Enforcement(nn.EnforcementLevel.BEST_EFFORT)
    assert _about_handler({**entry, "enforcement": str(applied)}, applied.level) == []
