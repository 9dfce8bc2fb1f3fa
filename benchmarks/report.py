"""The benchmark report: facts about the machine and the Markdown table."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any

import numpy as np
from harness import (
    MIN_REP_SECONDS,
    NODE,
    Row,
    fmt_value,
)

import numa_numpy as nn

# --------------------------------------------------------------------------- report


def machine_facts() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return "?"

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=os.path.dirname(os.path.abspath(__file__)),
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    topo = nn.topology()
    nodes = [
        {"id": n.id, "cpus": list(n.cpus), "memory_mib": n.memory_total >> 20} for n in topo.nodes
    ]
    return {
        "cpu_model": model,
        "cpus_online": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "libc": " ".join(platform.libc_ver()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numa_numpy": nn.__version__,
        "git_head": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "numa_nodes": nodes,
        "thp_enabled": read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "thp_defrag": read("/sys/kernel/mm/transparent_hugepage/defrag"),
    }


def markdown(facts: dict[str, Any], rows: list[Row], config: dict[str, Any]) -> str:
    nodes = "; ".join(
        f"node {n['id']}: cpus {','.join(map(str, n['cpus'])) or '-'}, {n['memory_mib']} MiB"
        for n in facts["numa_nodes"]
    )
    lines = [
        "# numa_numpy vs NumPy's default allocator",
        "",
        f"- CPU: {facts['cpu_model']}; {facts['cpus_online']} CPUs online, "
        f"{facts['cpus_allowed']} allowed",
        f"- kernel {facts['kernel']}, {facts['libc']}, Python {facts['python']}, "
        f"NumPy {facts['numpy']}, numa_numpy {facts['numa_numpy']} "
        f"(git {facts['git_head'] or '?'}"
        f"{', uncommitted changes' if facts['git_dirty'] else ''})",
        f"- NUMA: {len(facts['numa_nodes'])} node(s): {nodes}",
        f"- THP enabled: `{facts['thp_enabled']}`, defrag: `{facts['thp_defrag']}`",
        f"- run: {'quick' if config['quick'] else 'full'}, {config['reps']} repetitions "
        f"(ABBA-interleaved, >= {MIN_REP_SECONDS * 1e3:.0f} ms each; fewer for >= 64 MiB, "
        f"the ufunc workloads and RSS), numa side inside `on_node({NODE})` entered outside "
        f"the timed loop; medians; ratio = numa / baseline; "
        f"{config['seconds']:.0f} s in all",
        f"- clock: {'thread CPU time' if config['clock'] == 'cpu' else 'wall time'} "
        f"(prefault rows: wall time); load average at the end "
        f"{', '.join(f'{x:.2f}' for x in config['load_average'])} on "
        f"{facts['cpus_online']} CPUs",
        "",
        "| case | size | baseline | baseline value | numa_numpy | ratio | "
        "paired ratio p25-p75 | target | result | placed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        iqr = "-" if r.ratio_iqr is None else f"{r.ratio_iqr[0]:.2f}-{r.ratio_iqr[1]:.2f}"
        lines.append(
            f"| {r.case} | {r.size} | {r.baseline_name} | {fmt_value(r.baseline, r.unit)} | "
            f"{fmt_value(r.numa, r.unit)} | {r.ratio:.3f}x | {iqr} | "
            f"{r.target if r.target else '-'} | {r.result} | {r.placed} |"
        )
    notes = [f"- {r.case} ({r.size}): {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", "Notes:", *notes]
    missed = [r for r in rows if r.result == "MISS"]
    lines += [
        "",
        f"Targets: {sum(r.result == 'PASS' for r in rows)} PASS, {len(missed)} MISS"
        + (
            ": " + "; ".join(f"{r.case} {r.size} ({r.ratio:.2f}x vs {r.target})" for r in missed)
            if missed
            else ""
        ),
    ]
    return "\n".join(lines) + "\n"
