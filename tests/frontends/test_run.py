"""`numa-numpy run`: the program is exec'd under the policy's variables, and is
exactly what `python` would have run (argv, __main__, exit status, signals)."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest
from childprobe import PROBE, clean_env, last_json, placed, run_python, run_wrapped, script

from numa_numpy.__main__ import main as cli_main
from numa_numpy._frontends.run import UsageError, environment_for, parse_run

REPORT_ARGV = "print(json.dumps({'argv': sys.argv, 'name': __name__, 'where': where(np.empty(1 << 20))}))\n"


def test_a_script_sees_the_argv_and_main_python_gives_it_and_is_placed(tmp_path):
    job = script(tmp_path, REPORT_ARGV)
    plain = last_json(run_python([str(job), "a", "--policy", "-m"]))
    wrapped = last_json(run_wrapped(["--policy", "interleave", str(job), "a", "--policy", "-m"]))
    assert wrapped["argv"] == plain["argv"] == [str(job), "a", "--policy", "-m"]
    assert wrapped["name"] == plain["name"] == "__main__"
    assert placed(wrapped["where"], "interleave")
    assert plain["where"]["handler"] == "default_allocator"
    assert plain["where"]["kernel"] == "default"


def test_double_dash_ends_the_options(tmp_path):
    job = script(tmp_path, REPORT_ARGV, name="job")  # no .py: -- says it is the program
    out = run_wrapped(["--policy", "bind:0", "--", sys.executable, str(job), "--parallel"])
    got = last_json(out)
    assert got["argv"] == [str(job), "--parallel"]
    assert placed(got["where"], "bind:0")


def test_exit_status_is_the_programs(tmp_path):
    job = script(tmp_path, "sys.exit(7)\n")
    assert run_python([str(job)]).returncode == 7
    assert run_wrapped(["--policy", "interleave", str(job)]).returncode == 7


def test_a_script_killed_by_sigterm_ends_as_under_python(tmp_path):
    job = script(tmp_path, "os.kill(os.getpid(), signal.SIGTERM)\n", name="term.py")
    job.write_text("import signal\n" + job.read_text())
    plain = run_python([str(job)])
    wrapped = run_wrapped(["--policy", "interleave", str(job)])
    assert plain.returncode == wrapped.returncode == -signal.SIGTERM


def test_dash_m_runs_a_module_as_main_placed(tmp_path):
    (tmp_path / "jobmod.py").write_text(PROBE + REPORT_ARGV)
    env = clean_env(PYTHONPATH=str(tmp_path))
    plain = last_json(run_python(["-m", "jobmod", "x"], env, cwd=tmp_path))
    wrapped = last_json(run_wrapped(["--policy", "bind:0", "-m", "jobmod", "x"], env, cwd=tmp_path))
    assert wrapped["argv"] == plain["argv"] == [str(tmp_path / "jobmod.py"), "x"]
    assert wrapped["name"] == "__main__"
    assert placed(wrapped["where"], "bind:0")


def test_dash_c_runs_code(tmp_path):
    code = PROBE + "print(json.dumps(where(np.empty(1 << 20))))"
    assert placed(last_json(run_wrapped(["--policy", "interleave", "-c", code])), "interleave")


def test_a_command_on_path_runs_and_every_python_it_starts_is_placed(tmp_path):
    """A console script (as `pytest` or `jupyter` is), found on PATH: it is
    the process run becomes (same pid), and a Python it starts is placed too."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "numa-job-tool"
    tool.write_text(
        f"#!{sys.executable}\n"
        + PROBE
        + "import subprocess\n"
        "child = subprocess.run([sys.executable, '-c', sys.argv[1]], capture_output=True,"
        " text=True, check=True).stdout\n"
        "print(json.dumps({'argv': sys.argv[2:], 'self': where(np.empty(1 << 20)),"
        " 'child': json.loads(child)}))\n"
    )
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    child_code = PROBE + "print(json.dumps(where(np.empty(1 << 20))))"
    got = last_json(run_wrapped(["--policy", "interleave", "numa-job-tool", child_code, "y"], env))
    assert got["argv"] == ["y"]
    assert placed(got["self"], "interleave")
    assert placed(got["child"], "interleave")
    assert got["child"]["pid"] != got["self"]["pid"]


@pytest.mark.parametrize("bad", ["bogus", "bind:99999", "interleave:x", "local:0"])
def test_a_bad_policy_exits_2_with_one_line_before_anything_starts(tmp_path, bad):
    marker = tmp_path / "started"
    job = script(tmp_path, f"open({str(marker)!r}, 'w').close()\n")
    out = run_wrapped(["--policy", bad, str(job)])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert repr(bad) in lines[0] and "accepted:" in lines[0] and "interleave" in lines[0]
    assert not marker.exists()


def test_partitioned_and_every_parsed_form_is_accepted():
    for text in ("partitioned", "interleave", "bind:0", "preferred:0", "local", "default"):
        env: dict[str, str] = {}
        environment_for(parse_run(["--policy", text, "job.py"]), env)
        assert env["NUMA_NUMPY_POLICY"]


def test_usage_errors_exit_2():
    assert run_wrapped([]).returncode == 2
    assert run_wrapped(["--policy"]).returncode == 2
    out = run_wrapped(["--nope", "job.py"])
    assert out.returncode == 2 and "unknown option --nope" in out.stderr
    with pytest.raises(UsageError):
        parse_run(["-m"])


def test_a_command_not_found_exits_127():
    out = run_wrapped(["--policy", "interleave", "no-such-command-here-xyz"])
    assert out.returncode == 127
    assert "command not found: no-such-command-here-xyz" in out.stderr


def test_help_and_the_other_commands_still_work(capsys):
    out = run_wrapped(["--help"])
    assert out.returncode == 0 and "--policy POLICY" in out.stdout
    assert cli_main(["maps", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_report_and_parallel_set_their_variables(tmp_path):
    env = {"NUMA_NUMPY_REPORT_PID": "1"}
    environment_for(parse_run(["--parallel", "--report=out.json", "job.py"]), env)
    assert env == {"NUMA_NUMPY_PARALLEL": "1", "NUMA_NUMPY_REPORT": str(Path("out.json").resolve())}
    env = {}
    environment_for(parse_run(["--report", "job.py"]), env)
    assert env == {"NUMA_NUMPY_REPORT": "1"}


def test_the_console_script_is_the_cli(tmp_path):
    exe = Path(sys.executable).parent / "numa-numpy"
    if not exe.exists():
        pytest.skip("numa-numpy console script not installed next to this Python")
    import subprocess

    job = script(tmp_path, REPORT_ARGV)
    out = subprocess.run(
        [str(exe), "run", "--policy", "interleave", str(job), "z"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    got = last_json(out)
    assert got["argv"] == [str(job), "z"] and placed(got["where"], "interleave")
