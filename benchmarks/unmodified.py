"""Unmodified NumPy scripts: python vs `numa-numpy run --parallel` vs the peers.

    python benchmarks/unmodified.py [--quick] [--sizes 8KiB,16MiB,64MiB,256MiB]
        [--repeat N] [--rounds N] [--json FILE] [--markdown FILE]

Every figure is a whole process running one script of `benchmarks/unmodified/`
(the script makes its operands, warms up, times `--repeat` samples with
`time.perf_counter` and prints the median per call as JSON). Columns:

- NumPy: `python plain.py`, the reference (speed-up = NumPy's time / the tool's);
- ours: `numa-numpy run --parallel plain.py`, the same script unmodified (or,
  without the `run` command, `NUMA_NUMPY_PARALLEL=1 python plain.py`; "n/a" when
  neither engages numa_numpy);
- numexpr: `ne.evaluate` of the same expression, one thread per CPU;
- Numba: `@njit(parallel=True)` loops over `prange` (compiled in the warm-up);
- team: partitioned operands inside `with numa_numpy.node_team():`;
- NumPy 1.26 and PNumPy: `plain.py` in a separate Python 3.10 environment with
  numpy 1.26 and pnumpy 2.0.23 (PNumPy has no build for NumPy 2), PNumPy through
  `pnumpy_run.py`; PNumPy's speed-up is against NumPy 1.26 from that environment.

Each expression has a result row: every tool's result against NumPy's
(elementwise: the same bytes; sums: rtol 1e-9, below the n·eps bound of a
reordered sum of non-negative terms). A tool with a wrong result is marked WRONG
and never counts as meeting a target. The runner always exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "unmodified"
EXPRESSIONS = {"axpy": "a + 3*b", "hypot": "np.sqrt(a*a + b*b)", "sum": "a.sum()", "mul": "a*b"}
TOOLS = ["numpy", "ours", "numexpr", "numba", "team", "numpy126", "pnumpy"]
TITLES = {
    "numpy": "NumPy",
    "ours": "ours (`run --parallel`)",
    "numexpr": "numexpr",
    "numba": "Numba prange",
    "team": "node team",
    "numpy126": "NumPy 1.26",
    "pnumpy": "PNumPy (vs 1.26)",
}
BASE = {"pnumpy": "numpy126"}  # the reference of each tool; NumPy otherwise
PNUMPY_REQS = ["numpy==1.26.*", "pnumpy==2.0.23"]
PEER_REQS = ["numpy", "numexpr", "numba"]
DEFAULT_SIZES = "8KiB,16MiB,64MiB,256MiB"
QUICK_SIZES = "8KiB,16MiB"
TIMEOUT_S = 900


@dataclass
class Tool:
    """How to start one tool's process, or why it cannot be."""

    name: str
    argv: list[str] | None  # None: not available
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


def parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20}
    units |= {"g": 1 << 30, "gib": 1 << 30}
    t = text.strip().lower()
    digits = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    if not digits or t[len(digits) :] not in units:
        raise argparse.ArgumentTypeError(f"size {text!r}: a number with K/KiB/M/MiB/G/GiB")
    return int(digits) * units[t[len(digits) :]]


def size_text(nbytes: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def run_json(argv: list[str], env: dict[str, str], timeout: float) -> tuple[Any, str]:
    """The last JSON line a process printed, or None and the reason."""
    try:
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line), ""
            except json.JSONDecodeError:
                break
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return None, f"exit {proc.returncode}: " + " | ".join(" ".join(t.split()) for t in tail)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMA_NUMPY_PARALLEL")}
    env.update(extra)
    return env


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(
    venv: Path, base_python: str | None, reqs: list[str], setup: bool, quiet: bool
) -> str:
    """'' when `venv` has `reqs` importable (created first when missing and
    `setup`), else why not."""
    py = venv_python(venv)
    mods = [r.split("=")[0].split(">")[0] for r in reqs]
    probe = [str(py), "-c", "import " + ", ".join(mods)]
    if py.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return ""
    if not setup:
        return f"no environment with {', '.join(mods)} at {venv} (run without --no-setup)"
    if base_python is None or not Path(base_python).exists():
        return f"no interpreter to create {venv} with (give it with the option)"
    say(quiet, f"creating {venv} with {base_python}: pip install {' '.join(reqs)}")
    steps = [[base_python, "-m", "venv", str(venv)], [str(py), "-m", "pip", "install", "-q", *reqs]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
            return f"`{' '.join(step)}` failed: {tail}"
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return f"{venv}: {', '.join(mods)} still not importable after pip install"
    return ""


def python310() -> str | None:
    pyenv = shutil.which("pyenv")
    if pyenv:
        proc = subprocess.run(
            [pyenv, "prefix", "3.10"], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return str(Path(proc.stdout.strip().splitlines()[0]) / "bin" / "python")
    return shutil.which("python3.10")


def ours_tool(python: str, script: str, command: str | None) -> tuple[Tool, Any]:
    """`command` (the script's path appended) when given; else `numa-numpy run
    --parallel`, else the environment switch, else n/a; and what the probe
    script saw in a process started that way."""
    probe = str(HERE / "probe.py")
    if command:
        argv = shlex.split(command)
        seen, why = run_json([*argv, probe], clean_env(), 120)
        if seen is None:
            return Tool("ours", None, note=f"`{command}` does not run a script: {why}"), why
        return Tool("ours", [*argv, script], note=f"`{command}`"), seen
    console = Path(python).parent / "numa-numpy"
    cli = [str(console)] if console.exists() else [python, "-m", "numa_numpy"]
    seen, why = run_json([*cli, "run", "--parallel", probe], clean_env(), 120)
    if seen is not None:  # the command exists and ran the script
        how = f"`{' '.join(Path(c).name for c in cli)} run --parallel`"
        return Tool("ours", [*cli, "run", "--parallel", script], note=how), seen
    env = clean_env(NUMA_NUMPY_PARALLEL="1")
    seen, why_env = run_json([python, probe], env, 120)
    if seen and seen.get("loaded") and seen.get("parallel_info") is not None:
        note = "`NUMA_NUMPY_PARALLEL=1 python` (no `run` command)"
        return Tool("ours", [python, script], {"NUMA_NUMPY_PARALLEL": "1"}, note), seen
    reason = (
        "no `numa-numpy run` command yet, and NUMA_NUMPY_PARALLEL=1 does not engage "
        "numa_numpy's parallel loops in a plain process"
    )
    return Tool("ours", None, note=reason), {"run": why, "env": seen or why_env}


def build_tools(args: argparse.Namespace) -> tuple[dict[str, Tool], dict[str, Any]]:
    facts: dict[str, Any] = {}
    main_py = sys.executable
    plain = str(HERE / "plain.py")
    tools = {"numpy": Tool("numpy", [main_py, plain])}
    if "ours" in args.tools:
        tools["ours"], facts["ours_probe"] = ours_tool(main_py, plain, args.ours)
    peer_py = main_py
    if args.peer_venv:
        why = ensure_venv(Path(args.peer_venv), main_py, PEER_REQS, args.setup, args.quiet)
        peer_py = str(venv_python(Path(args.peer_venv)))
    else:
        why = ""
    for name, module in (("numexpr", "numexpr"), ("numba", "numba")):
        ok = not why and (
            subprocess.run([peer_py, "-c", f"import {module}"], capture_output=True).returncode == 0
        )
        note = why or ("" if ok else f"`import {module}` fails in {peer_py}")
        argv = [peer_py, str(HERE / f"with_{name}.py")] if ok else None
        tools[name] = Tool(name, argv, note=note)
    tools["team"] = Tool("team", [main_py, str(HERE / "with_team.py")])
    pvenv = Path(args.pnumpy_venv).expanduser()
    why = ensure_venv(pvenv, args.pnumpy_python or python310(), PNUMPY_REQS, args.setup, args.quiet)
    ppy = str(venv_python(pvenv))
    tools["numpy126"] = Tool("numpy126", None if why else [ppy, plain], note=why)
    runner = [ppy, str(HERE / "pnumpy_run.py"), plain]
    tools["pnumpy"] = Tool("pnumpy", None if why else runner, note=why)
    facts["pnumpy_venv"] = str(pvenv)
    facts["peer_python"] = peer_py
    return {k: v for k, v in tools.items() if k in args.tools}, facts


def measure_all(
    tools: dict[str, Tool], exprs: list[str], sizes: list[int], args: argparse.Namespace
) -> dict[tuple[str, int, str], dict[str, Any]]:
    """One process per tool, expression, size and round; tools in a rotating
    order so none always runs first. The cell: the median of the rounds'
    medians, the last round's result, or the error."""
    cells: dict[tuple[str, int, str], dict[str, Any]] = {}
    live = [t for t in tools.values() if t.argv is not None]
    turn = 0
    for expr in exprs:
        for nbytes in sizes:
            for _ in range(args.rounds):
                order = live[turn % len(live) :] + live[: turn % len(live)] if live else []
                turn += 1
                for tool in order:
                    assert tool.argv is not None
                    env = clean_env(
                        BENCH_EXPR=expr, BENCH_BYTES=str(nbytes), BENCH_REPEAT=str(args.repeat)
                    )
                    env.update(tool.env)
                    out, why = run_json(tool.argv, env, TIMEOUT_S)
                    cell = cells.setdefault((expr, nbytes, tool.name), {"medians": []})
                    if out is None:
                        cell["error"] = why
                        say(args.quiet, f"  {expr} {size_text(nbytes)} {tool.name}: {why}")
                        continue
                    cell["medians"].append(out["median_s"])
                    cell["last"] = out
                    say(
                        args.quiet,
                        f"  {expr} {size_text(nbytes)} {tool.name}: {fmt(out['median_s'])}",
                    )
    for cell in cells.values():
        if cell["medians"]:
            cell["median_s"] = statistics.median(cell["medians"])
    return cells


def same_result(cell: dict[str, Any], ref: dict[str, Any]) -> bool | None:
    """Equal to the reference (bytes; sums within rtol 1e-9: a reordered sum
    may differ, up to n·eps); None: unknown."""
    a, b = cell.get("last"), ref.get("last")
    if a is None or b is None:
        return None
    if b.get("value") is not None:
        if a.get("value") is None:
            return False
        return bool(abs(a["value"] - b["value"]) <= 1e-9 * abs(b["value"]))
    return a.get("digest") is not None and a["digest"] == b["digest"]


def evaluate(
    cells: dict[tuple[str, int, str], dict[str, Any]], exprs: list[str], sizes: list[int]
) -> None:
    """Add `speedup` (reference time / tool time) and `same` (the result equals
    the reference's) to each cell."""
    for (expr, nbytes, tool), cell in cells.items():
        ref = cells.get((expr, nbytes, BASE.get(tool, "numpy")))
        if ref is None or tool == "numpy":
            continue
        if "median_s" in cell and "median_s" in ref:
            cell["speedup"] = ref["median_s"] / cell["median_s"]
        cell["same"] = same_result(cell, ref)
        value, expected = cell.get("last", {}).get("value"), ref.get("last", {}).get("value")
        if value is not None and expected:
            cell["rel_err"] = abs(value - expected) / abs(expected)


def cell_text(cell: dict[str, Any] | None, tool: Tool | None) -> str:
    if tool is None:
        return "-"
    if tool.argv is None:
        return "n/a"
    if cell is None:
        return "-"
    if "median_s" not in cell:
        return "failed"
    text = fmt(cell["median_s"])
    if cell.get("same") is False and tool.name != "numpy126":
        return f"WRONG ({text})"  # no speed-up: a wrong result is no win
    if "speedup" in cell:
        text += f" ({cell['speedup']:.2f}x)"
    return text


def check_text(
    cells: dict[tuple[str, int, str], dict[str, Any]], expr: str, sizes: list[int], tool: Tool
) -> str:
    if tool.argv is None:
        return "n/a"
    if tool.name == "numpy":
        return "reference"
    verdicts = {
        n: cells[(expr, n, tool.name)].get("same") for n in sizes if (expr, n, tool.name) in cells
    }
    if not verdicts:
        return "-"
    wrong = []
    for n, v in verdicts.items():
        if v is False:
            err = cells[(expr, n, tool.name)].get("rel_err")
            wrong.append(size_text(n) + ("" if err is None else f" (rel. error {err:.1e})"))
    if wrong:
        if tool.name == "numpy126":
            return "differs from NumPy 2 at " + ", ".join(wrong) + " (informational)"
        return "**WRONG** at " + ", ".join(wrong)
    if None in verdicts.values():
        return "unknown"
    return "equal"


def targets(
    cells: dict[tuple[str, int, str], dict[str, Any]],
    exprs: list[str],
    sizes: list[int],
    tools: dict[str, Tool],
) -> list[dict[str, Any]]:
    """The issue's targets for ours, one row per target, expression and size
    of the run: status MET, MISSED (a wrong result or a failed run is MISSED
    whatever its time), or why it was not measured."""
    available = "ours" in tools and tools["ours"].argv is not None
    rows: list[dict[str, Any]] = []

    def unusable(cell: dict[str, Any] | None, label: str) -> str:
        if cell is None or ("error" not in cell and "speedup" not in cell):
            return f"not measured ({label})"
        if "median_s" not in cell:
            return f"MISSED ({label} failed)" if label == "ours" else f"n/a ({label} failed)"
        if cell.get("same") is False:
            return "MISSED (wrong result)" if label == "ours" else f"n/a ({label} wrong)"
        return ""

    def add(expr: str, target: str, peer: str | None, nbytes: int, need: float) -> None:
        if nbytes not in sizes:
            return
        ours = cells.get((expr, nbytes, "ours"))
        other = cells.get((expr, nbytes, peer)) if peer else None
        why = "n/a (ours not available)" if not available else unusable(ours, "ours")
        label = TITLES[peer].split(" (")[0] if peer else ""
        if not why and peer:
            why = unusable(other, label)
            if other is not None and other.get("same") is False and "speedup" in other:
                why = ""  # compared anyway: said in the status
        figure = None
        if not why:
            assert ours is not None
            if peer == "numexpr":  # the same NumPy: numexpr's time over ours
                assert other is not None
                figure = other["median_s"] / ours["median_s"]
            elif peer == "pnumpy":  # each over its own NumPy: our speed-up over PNumPy's
                assert other is not None
                figure = ours["speedup"] / other["speedup"]
            elif need < 0:  # a ceiling on our time over NumPy's
                figure = 1 / ours["speedup"]
            else:
                figure = ours["speedup"]
            met = figure <= -need if need < 0 else figure >= need
            why = "MET" if met else "MISSED"
            if other is not None and other.get("same") is False:
                why += f" ({label}'s result differs from NumPy's)"
        rows.append({"expr": expr, "target": target, "figure": figure, "status": why})

    for expr in exprs:
        add(expr, "256 MiB: >= 1.8x NumPy", None, 256 << 20, 1.8)
        add(expr, "16 MiB: >= 1.5x NumPy", None, 16 << 20, 1.5)
        for nbytes in (64 << 20, 256 << 20):
            add(expr, f"{size_text(nbytes)}: >= 1.0x numexpr", "numexpr", nbytes, 1.0)
            add(expr, f"{size_text(nbytes)}: >= PNumPy", "pnumpy", nbytes, 1.0)
        add(expr, "8 KiB: <= 1.02x NumPy's time", None, 8 << 10, -1.02)
    return rows


def machine(
    cells: dict[tuple[str, int, str], dict[str, Any]],
    tools: dict[str, Tool],
    facts: dict[str, Any],
    args: argparse.Namespace,
) -> str:
    def version(key: str, tool: str) -> str:
        for (_e, _n, t), cell in cells.items():
            if t == tool and "last" in cell and key in cell["last"]:
                return str(cell["last"][key])
        return "-"

    import numpy as np

    probe = facts.get("ours_probe")
    return (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"kernel {platform.release()}, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"numexpr {version('numexpr', 'numexpr')}, Numba {version('numba', 'numba')} "
        f"({version('threading_layer', 'numba')} threading layer), "
        f"PNumPy environment: NumPy {version('numpy', 'numpy126')}; "
        f"ours: {tools['ours'].note if 'ours' in tools else 'not run'} "
        f"{'' if probe is None else '(probe: ' + json.dumps(probe, default=repr) + ')'}; "
        f"{args.repeat} samples per process, {args.rounds} process(es) per cell, median; "
        f"load average before the run {facts['load_before']:.2f}, "
        f"after {os.getloadavg()[0]:.2f} (other jobs share these CPUs)."
    )


def report(
    cells: dict[tuple[str, int, str], dict[str, Any]],
    tools: dict[str, Tool],
    exprs: list[str],
    sizes: list[int],
    facts: dict[str, Any],
    args: argparse.Namespace,
) -> tuple[str, list[dict[str, Any]]]:
    shown = [t for t in TOOLS if t in tools]
    lines = [
        machine(cells, tools, facts, args),
        "",
        "Median time per call; in brackets the speed-up over NumPy in the same run "
        "(NumPy's time / the tool's; PNumPy: over NumPy 1.26 in its own environment).",
        "",
        "| expression | size | " + " | ".join(TITLES[t] for t in shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    for expr in exprs:
        for nbytes in sizes:
            row = [cell_text(cells.get((expr, nbytes, t)), tools[t]) for t in shown]
            lines.append(
                f"| `{EXPRESSIONS[expr]}` | {size_text(nbytes)} | " + " | ".join(row) + " |"
            )
        checks = [check_text(cells, expr, sizes, tools[t]) for t in shown]
        lines.append(f"| `{EXPRESSIONS[expr]}` | result | " + " | ".join(checks) + " |")
    notes = [f"- {TITLES[t]}: {tools[t].note}" for t in shown if tools[t].argv is None]
    notes += [
        f"- {TITLES[t]} {EXPRESSIONS[e]} {size_text(n)}: {c['error']}"
        for (e, n, t), c in cells.items()
        if "error" in c
    ]
    if notes:
        lines += ["", "Not measured:", "", *notes]
    rows = targets(cells, exprs, sizes, tools)
    lines += [
        "",
        f"Targets for ours (set for 2 cores; this machine has {os.cpu_count()} CPUs):",
        "",
        "| expression | target | figure | status |",
        "|---|---|---|---|",
    ]
    for r in rows:
        fig = "-" if r["figure"] is None else f"{r['figure']:.2f}x"
        lines.append(f"| `{EXPRESSIONS[r['expr']]}` | {r['target']} | {fig} | {r['status']} |")
    lines += [
        "",
        "Figures: speed-up over NumPy; against numexpr, numexpr's time over ours; against "
        "PNumPy, our speed-up over PNumPy's; at 8 KiB, our time over NumPy's. Targets at "
        "sizes this run did not measure are left out.",
    ]
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, 5 samples")
    p.add_argument("--sizes", default=None, help=f"per operand, comma-separated ({DEFAULT_SIZES})")
    p.add_argument("--repeat", type=int, default=None, help="samples per process (15; quick 5)")
    p.add_argument(
        "--rounds", type=int, default=None, help="processes per cell, median of them (3; quick 1)"
    )
    p.add_argument(
        "--exprs", default=",".join(EXPRESSIONS), help="subset of " + ",".join(EXPRESSIONS)
    )
    p.add_argument("--tools", default=",".join(TOOLS), help="subset of " + ",".join(TOOLS))
    p.add_argument(
        "--peer-venv",
        default=os.environ.get("NUMA_NUMPY_BENCH_PEER_VENV"),
        help="environment for numexpr and Numba (default: this interpreter's)",
    )
    p.add_argument(
        "--pnumpy-venv",
        default=os.environ.get(
            "NUMA_NUMPY_BENCH_PNUMPY_VENV", "~/.cache/numa_numpy/bench/pnumpy-py310"
        ),
        help="environment with numpy 1.26 and pnumpy 2.0.23",
    )
    p.add_argument(
        "--pnumpy-python",
        default=os.environ.get("NUMA_NUMPY_BENCH_PNUMPY_PYTHON"),
        help="Python 3.10 to create it with (default: `pyenv prefix 3.10`, python3.10)",
    )
    p.add_argument(
        "--no-setup", dest="setup", action="store_false", help="do not create missing venvs"
    )
    p.add_argument(
        "--ours",
        default=None,
        help="the command that runs a script as ours, the script's path appended "
        "(default: numa-numpy run --parallel, else NUMA_NUMPY_PARALLEL=1 python)",
    )
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--markdown", default=None, help="also write the tables here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    sizes = [
        parse_size(s)
        for s in (args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)).split(",")
    ]
    args.repeat = args.repeat or (5 if args.quick else 15)
    args.rounds = args.rounds or (1 if args.quick else 3)
    exprs = [e for e in args.exprs.split(",") if e]
    args.tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(exprs) - set(EXPRESSIONS)) + sorted(set(args.tools) - set(TOOLS))
    if unknown:
        p.error(f"unknown expression or tool: {', '.join(unknown)}")
    if "numpy" not in args.tools:
        args.tools.insert(0, "numpy")
    if "pnumpy" in args.tools and "numpy126" not in args.tools:
        args.tools.append("numpy126")
    started = time.time()
    load_before = os.getloadavg()[0]
    tools, facts = build_tools(args)
    facts["load_before"] = load_before
    for t in tools.values():
        if t.argv is None:
            say(args.quiet, f"{t.name}: {t.note}")
    cells = measure_all(tools, exprs, sizes, args)
    evaluate(cells, exprs, sizes)
    text, rows = report(cells, tools, exprs, sizes, facts, args)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        data = {
            "machine": machine(cells, tools, facts, args),
            "facts": facts,
            "config": {"sizes": sizes, "repeat": args.repeat, "rounds": args.rounds},
            "tools": {k: {"argv": v.argv, "env": v.env, "note": v.note} for k, v in tools.items()},
            "cells": [{"expr": e, "bytes": n, "tool": t, **c} for (e, n, t), c in cells.items()],
            "targets": rows,
            "seconds": time.time() - started,
        }
        Path(args.json).write_text(json.dumps(data, indent=1, default=repr) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
