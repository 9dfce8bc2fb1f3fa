"""``numa-numpy run``: a program under a policy, with no change to its code.

``numa-numpy run [--policy POLICY] [--parallel] [--report[=FILE]] [--]
(SCRIPT.py | -m MODULE | -c CODE | COMMAND) [ARGS...]``

The options become environment variables (``NUMA_NUMPY_POLICY``,
``NUMA_NUMPY_PARALLEL=1``, ``NUMA_NUMPY_REPORT=1|FILE``; see
`numa_numpy._frontends.startup`) and this process is replaced (``execv``) by
the program: ``python SCRIPT.py ARGS`` / ``python -m MODULE ARGS`` with this
interpreter, so that ``sys.argv``, ``__main__``, the exit status and signals are
exactly Python's; any other COMMAND (``jupyter lab``, ``pytest``,
``dask worker``) is found on PATH and every Python it starts is placed by the
startup hook. An option not given leaves its variable as the environment has it.

A POLICY that does not parse, or names nodes or a mode this machine lacks, is a
one-line error naming it and what is accepted, exit status 2, before anything
starts. A COMMAND that is not found exits 127 (126: not executable), as a shell.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import NoReturn

from ..errors import NumaError
from .startup import ACCEPTED, ENV_PARALLEL, ENV_POLICY, ENV_REPORT, ENV_REPORT_PID, parse_policy

__all__ = ["USAGE", "Invocation", "parse_run", "environment_for", "main"]

USAGE = (
    "usage: numa-numpy run [--policy POLICY] [--parallel] [--report[=FILE]] [--] "
    "(SCRIPT.py | -m MODULE | -c CODE | COMMAND) [ARGS...]"
)
HELP = f"""{USAGE}

Run a program with every NumPy allocation under POLICY, as `numactl
--interleave=all python job.py` places the whole process.

  --policy POLICY   {ACCEPTED}
  --parallel        large ufunc calls split over pinned workers (NUMA_NUMPY_PARALLEL=1)
  --report[=FILE]   at exit, per node: NumPy's bytes there and the peak, and what
                    the doctor says about the run, on stderr; JSON into FILE
  --                ends the options

SCRIPT.py, -m MODULE and -c CODE run under this Python; any other COMMAND is
found on PATH, and every Python it starts is placed (the startup hook reads the
NUMA_NUMPY_* variables this command sets).
"""
EXIT_USAGE, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND = 2, 126, 127


class UsageError(Exception):
    """A bad command line: the message, for one line on stderr."""


@dataclass
class Invocation:
    """What ``numa-numpy run`` was asked: the options and the program."""

    policy: str | None = None
    parallel: bool = False
    report: str | None = None  # "1" (stderr) or a file
    program: list[str] = field(default_factory=list)  # the argv to exec
    python: bool = False  # run by this interpreter (script, -m, -c)
    help: bool = False


def _program(words: list[str], inv: Invocation) -> None:
    """The program part of the line (from the first word that is not ours)."""
    first = words[0]
    if first in ("-m", "-c"):
        if len(words) < 2:
            raise UsageError(f"{first} needs an argument")
        inv.program, inv.python = [sys.executable, *words], True
    elif first.endswith((".py", ".pyw")) or os.path.isdir(first):
        inv.program, inv.python = [sys.executable, *words], True
    elif first.startswith("-") and first != "-":
        raise UsageError(f"unknown option {first}")
    else:
        inv.program = list(words)


def parse_run(argv: list[str]) -> Invocation:
    """The words after ``run``, read up to the program (never past it: its own
    options are its own).

    Parameters
    ----------
    argv : list of str
        The command line after ``numa-numpy run``.

    Returns
    -------
    Invocation

    Raises
    ------
    UsageError
        No program, an unknown option, an option without its value.

    Examples
    --------
    >>> from numa_numpy._frontends.run import parse_run
    >>> inv = parse_run(["--policy", "interleave", "--report=out.json", "job.py", "-v"])
    >>> inv.policy, inv.report, inv.program[1:], inv.python
    ('interleave', 'out.json', ['job.py', '-v'], True)
    >>> parse_run(["--", "pytest", "-x"]).program
    ['pytest', '-x']
    """
    inv = Invocation()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if word in ("-h", "--help"):
            inv.help = True
            return inv
        if word == "--policy" or word.startswith("--policy="):
            if word == "--policy":
                if i + 1 >= len(argv):
                    raise UsageError("--policy needs a POLICY")
                i += 1
                inv.policy = argv[i]
            else:
                inv.policy = word.partition("=")[2]
        elif word == "--parallel":
            inv.parallel = True
        elif word == "--report" or word.startswith("--report="):
            inv.report = word.partition("=")[2] or "1"
        else:
            break
        i += 1
    if i >= len(argv):
        raise UsageError("no program to run")
    _program(argv[i:], inv)
    return inv


def environment_for(inv: Invocation, environ: MutableMapping[str, str]) -> None:
    """Set the variables of `inv` in `environ`; the policy is checked first.

    Parameters
    ----------
    inv : Invocation
        What `parse_run` read.
    environ : mutable mapping
        The environment to change (``os.environ`` for the real thing).

    Raises
    ------
    NumaError
        The policy does not parse, or this machine cannot have it.

    Examples
    --------
    >>> from numa_numpy._frontends.run import environment_for, parse_run
    >>> env = {}
    >>> environment_for(parse_run(["--policy", "bind:0", "--parallel", "job.py"]), env)
    >>> env
    {'NUMA_NUMPY_POLICY': 'bind:0', 'NUMA_NUMPY_PARALLEL': '1'}
    """
    if inv.policy is not None:
        environ[ENV_POLICY] = str(parse_policy(inv.policy))
    if inv.parallel:
        environ[ENV_PARALLEL] = "1"
    if inv.report is not None:
        environ[ENV_REPORT] = inv.report if inv.report == "1" else os.path.abspath(inv.report)
        environ.pop(ENV_REPORT_PID, None)  # the program's first Python reports


def _fail(message: str, status: int) -> NoReturn:
    print(f"numa-numpy run: {message}", file=sys.stderr)
    raise SystemExit(status)


def _exec(inv: Invocation) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        if inv.python:
            os.execv(inv.program[0], inv.program)
        os.execvp(inv.program[0], inv.program)
    except FileNotFoundError:
        _fail(f"command not found: {inv.program[0]}", EXIT_NOT_FOUND)
    except PermissionError as exc:
        _fail(f"cannot execute {inv.program[0]}: {exc.strerror}", EXIT_NOT_EXECUTABLE)
    except OSError as exc:
        _fail(f"cannot execute {inv.program[0]}: {exc}", EXIT_NOT_EXECUTABLE)
    raise AssertionError("exec returned")  # pragma: no cover


def main(argv: list[str]) -> int:
    """``numa-numpy run ARGV``: replaces this process by the program (returns
    only for --help; exits 2 for a usage error or a bad policy).

    Parameters
    ----------
    argv : list of str
        The words after ``run``.

    Returns
    -------
    int
        0 after --help; otherwise it does not return.

    Examples
    --------
    >>> from numa_numpy._frontends.run import main
    >>> main(["--policy", "nodes:7", "job.py"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    try:
        inv = parse_run(argv)
    except UsageError as exc:
        _fail(f"{exc}\n{USAGE}", EXIT_USAGE)
    if inv.help:
        print(HELP)
        return 0
    try:
        environment_for(inv, os.environ)
    except (NumaError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split())  # one line
        _fail(f"bad --policy {inv.policy!r}: {reason}; accepted: {ACCEPTED}", EXIT_USAGE)
    _exec(inv)
