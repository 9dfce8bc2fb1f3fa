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
    code = ("import sys; from numa_numpy._kernel.lib import lib; "
            "lib.nn_inject_fault(lib.NN_FAULT_MBIND, 1, 1000); "
            "from numa_numpy.__main__ import main; sys.exit(main(['check']))")
    out = run(code=code)
    assert out.returncode == 1
    assert "FAIL node 0" in out.stdout and "EPERM" in out.stdout
    assert "self-check FAILED" in out.stdout


def test_info_reports_kernel_capabilities():
    data = json.loads(run("info", "--json").stdout)
    caps = data["capabilities"]
    assert caps["policies"]["bind"] is True and caps["mbind_permitted"] is True
    assert caps["transparent_huge_pages"] in ("always", "madvise", "never", "unavailable")
    assert set(caps["huge_pages"]) == {str(n) for n in nn.topology().node_ids}
    text = run("info").stdout
    assert "mbind: permitted" in text and "policies: " in text


def test_maps_of_a_process_matches_its_numa_maps():
    import os
    from pathlib import Path
    usage = nn.process_memory(os.getpid())
    total = sum(b for per_node in usage.values() for b in per_node.values())
    pages = 0
    for line in Path(f"/proc/{os.getpid()}/numa_maps").read_text().splitlines():
        kib = 4
        for token in line.split():
            if token.startswith("kernelpagesize_kB="):
                kib = int(token.split("=")[1])
        pages += sum(int(t.split("=")[1]) * kib * 1024 for t in line.split()
                     if t[0] == "N" and t[1:].split("=")[0].isdigit())
    # the process allocates between the two reads: within 4 MiB
    assert abs(total - pages) < 4 << 20
    out = run("maps", str(os.getpid()))
    assert out.returncode == 0 and out.stdout.startswith("Per-node process memory usage")
    assert "Heap" in out.stdout and "Node 0" in out.stdout


def test_exit_codes_scripts_can_rely_on():
    assert run("maps", "999999999").returncode == 3
    assert run("nonsense").returncode == 2
    assert run("info", "123").returncode == 2
    out = run("maps", "abc")  # not a pid: a usage error, not a missing process
    assert out.returncode == 2 and "process id" in out.stderr
    assert run("info", "--dry-run").returncode == 2


def test_options_may_come_before_the_pid():
    import os
    before, after = run("maps", "--json", str(os.getpid())), run("maps", str(os.getpid()), "--json")
    assert before.returncode == after.returncode == 0, before.stderr
    assert json.loads(before.stdout).keys() == json.loads(after.stdout).keys()


def test_bench_prints_a_bandwidth_matrix_with_placement_checked():
    out = run("bench", "--size-mib", "8", "--repeats", "1", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    usable = list(nn.topology().usable_nodes)
    assert data["memory"] == usable + ["interleaved"]
    assert len(data["copy_gbps"]) == len(data["cpu_nodes"])
    for cell in data["cells"]:
        assert cell["copy_gbps"] > 0 and cell["triad_gbps"] > 0
        if cell["memory"] != "interleaved":  # every array where the cell says
            assert cell["pages_by_node"] == {str(cell["memory"]): 2048}
    text = run("bench", "--size-mib", "8", "--repeats", "1").stdout
    assert "copy  b = a:" in text and "| cpu node |" in text


def test_bench_team_reports_threads_per_row_and_the_whole_machine():
    out = run("bench", "--team", "--size-mib", "4", "--repeats", "1", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    topo = nn.topology()
    allowed = set(topo.allowed_cpus)
    assert data["team"] is True
    assert data["memory"] == list(topo.usable_nodes) + ["interleaved"]
    assert data["threads"] == [len(allowed & set(topo.node(n).cpus)) for n in data["cpu_nodes"]]
    assert [row["memory"] for row in data["machine"]] == ["local", "interleaved"]
    for cell in data["cells"] + data["machine"]:
        assert cell["copy_gbps"] > 0 and cell["triad_gbps"] > 0
        assert cell["threads"] == len(cell["workers"])
        if cell["memory"] not in ("local", "interleaved"):
            assert list(cell["pages_by_node"]) == [str(cell["memory"])]
    text = run("bench", "--team", "--size-mib", "4", "--repeats", "1").stdout
    assert "| cpu node | threads |" in text and "whole machine" in text
    single = json.loads(run("bench", "--size-mib", "4", "--repeats", "1", "--json").stdout)
    assert single["team"] is False and single["threads"] == 1 and "machine" not in single


def test_team_is_only_for_bench():
    out = run("info", "--team")
    assert out.returncode == 2
    assert "numa-numpy info: error: unrecognized arguments: --team (an option of bench)" in out.stderr


def test_version_is_the_distributions():
    from importlib.metadata import version

    out = run("--version")
    assert out.returncode == 0 and out.stdout == f"numa-numpy {version('numa-numpy')}\n"
    assert version("numa-numpy") == nn.__version__


def test_help_names_the_console_script_and_lists_every_command():
    out = run("--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: numa-numpy ")
    for name in ("info", "check", "doctor", "maps", "bench", "cleanup", "run"):
        assert f"\n    {name} " in out.stdout, name
    from pathlib import Path

    exe = Path(sys.executable).parent / "numa-numpy"
    if exe.exists():  # the console script says the same
        script = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
        assert script.stdout == out.stdout


OPTIONS = {  # each command's --help lists its own options, and only them
    "info": {"--json"},
    "check": {"--json"},
    "doctor": {"--json", "--root"},
    "maps": {"--json"},
    "bench": {"--json", "--size-mib", "--repeats", "--team"},
    "cleanup": {"--json", "--dry-run"},
}


def test_each_command_has_its_own_help_with_only_its_options():
    import re

    every = set().union(*OPTIONS.values())
    for name, own in OPTIONS.items():
        out = run(name, "--help")
        assert out.returncode == 0 and out.stdout.startswith(f"usage: numa-numpy {name} ")
        listed = set(re.findall(r"^  (--[a-z-]+)", out.stdout, re.M)) - {"--help"}
        assert listed == own, name
        assert not (every - own) & set(re.findall(r"--[a-z-]+", out.stdout)), name
    assert "pid" in run("maps", "--help").stdout
    assert "--policy POLICY" in run("run", "--help").stdout  # run's own parser, as before


def test_json_may_come_before_or_after_the_command():
    before, after = run("--json", "cleanup", "--dry-run"), run("cleanup", "--dry-run", "--json")
    assert before.returncode == after.returncode == 0, before.stderr
    assert json.loads(before.stdout)["dry_run"] is True and json.loads(after.stdout)["dry_run"]


def test_one_node_is_said_in_plain_words_only_on_one_node(tmp_path):
    from fixtures import machine

    from numa_numpy.__main__ import one_node_note
    from numa_numpy._kernel.topology import read_topology

    four = read_topology(machine.lab().write(tmp_path / "four"))
    assert one_node_note(four) is None
    one = read_topology(machine.Machine(cpus={0: (0, 1)}).write(tmp_path / "one"))
    note = one_node_note(one)
    assert note.startswith("This machine has one NUMA node: every page is on node 0")
    for works in ("huge pages", "prefault", "shared arrays", "parallel loops"):
        assert works in note.split("Not here")[0]
    assert "Not here: placement gains" in note
    fenced = read_topology(machine.lab(mems_allowed=(1,)).write(tmp_path / "fenced"))
    assert one_node_note(fenced).startswith(
        "This process may use one NUMA node with memory (node 1 of 0-3"
    )
    here = run()
    says = one_node_note(nn.topology())
    assert (says in here.stdout) if says else ("one NUMA node" not in here.stdout)
    data = json.loads(run("info", "--json").stdout)
    assert data.get("one_node") == says


def test_the_command_lines_examples_run():
    import doctest

    import numa_numpy.__main__ as cli

    result = doctest.testmod(cli, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


def test_bench_figures_show_their_spread_and_one_node_says_the_columns_are_one_memory():
    out = run("bench", "--size-mib", "4", "--repeats", "3", "--json")
    data = json.loads(out.stdout)
    for cell in data["cells"]:
        for name in ("copy", "triad"):
            runs = cell[f"{name}_runs_gbps"]
            assert len(runs) == 3 and cell[f"{name}_gbps"] == max(runs)
            assert min(runs) <= cell[f"{name}_median_gbps"] <= max(runs)
    text = run("bench", "--size-mib", "4", "--repeats", "3").stdout
    assert "median of 3 runs (min-max), GB/s" in text
    import re

    figures = re.findall(r"\| (\d+\.\d\d) \((\d+\.\d\d)-(\d+\.\d\d)\)", text)
    assert len(figures) == 2 * len(data["cells"])
    assert all(float(lo) <= float(mid) <= float(hi) for mid, lo, hi in figures)
    one_node = len(data["memory"]) == 2
    said = f"mem {data['memory'][0]} and interleaved are the same memory" in text
    assert said == one_node


def test_bench_one_node_note_only_on_one_node():
    from numa_numpy._diagnostics.bandwidth import format_matrix

    def cell(cpu, mem):
        return {"cpu_node": cpu, "memory": mem, "copy_gbps": 2.0, "triad_gbps": 1.0,
                "copy_runs_gbps": [1.0, 2.0, 1.5], "triad_runs_gbps": [1.0]}

    two = {"size_bytes": 1 << 20, "repeats": 3, "cpu_nodes": [0, 1],
           "memory": [0, 1, "interleaved"],
           "cells": [cell(c, m) for c in (0, 1) for m in (0, 1, "interleaved")]}
    text = format_matrix(two)
    assert "same memory" not in text and "| 0 | 1.50 (1.00-2.00) | " in text
    one = {**two, "cpu_nodes": [0], "memory": [0, "interleaved"],
           "cells": [cell(0, 0), cell(0, "interleaved")]}
    assert "One NUMA node: mem 0 and interleaved are the same memory" in format_matrix(one)


def test_bench_progress_goes_to_stderr_and_only_on_a_terminal():
    import fcntl
    import os
    import pty
    import select
    import struct
    import termios

    args = ["bench", "--size-mib", "1", "--repeats", "1"]
    piped = run(*args)
    assert piped.returncode == 0 and piped.stderr == ""  # no bar into a log
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # not 0 columns
    try:  # stderr a terminal, stdout a pipe; the slave stays open while we read
        done = subprocess.run([sys.executable, "-m", "numa_numpy", *args], stdout=subprocess.PIPE,
                              stderr=slave, text=True, timeout=120)
        drawn = b""
        while select.select([master], [], [], 0.5)[0]:
            drawn += os.read(master, 65536)
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 0 and done.stdout.startswith("STREAM-style bandwidth")
    assert b"bandwidth:" in drawn and b"cell" in drawn  # tqdm's bar, on the terminal
    assert "cell" not in done.stdout
