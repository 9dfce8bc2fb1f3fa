"""A small mutation pass over numa_numpy's decision points.

    python tests/mutation/run.py TREE [--only ID ...] [--json OUT] [--mutants FILE]

TREE is a checkout (a git worktree) with its own .venv (``python3 -m venv .venv
&& .venv/bin/pip install -q -e ".[test,dev]"``). For every mutant listed in
mutants.toml (next to this file unless --mutants says otherwise) the harness

1. looks for each original snippet in TREE/<file>: it must occur exactly once,
   else the mutant is "stale" (the code moved on; neither killed nor survived);
2. runs the mutant's test selection on the unmutated tree once (cached per
   selection); a selection that does not pass is "baseline-fails" and skipped;
3. writes the mutation, rebuilds the cffi extension when a C file changed,
   runs ``.venv/bin/python -m pytest -x -q -p no:randomly <tests>`` with a
   timeout: any failure, crash or timeout is "killed", a pass is "survived";
   a mutation that does not compile is "invalid";
4. restores the file byte for byte (and its mtime) and the original extension
   module, in a ``finally`` (Ctrl-C and SIGTERM included).

The kill rate is killed / (killed + survived). At the end the tree must be as
it was: ``git -C TREE diff --quiet`` and the extension module's hash.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
C_SUFFIXES = {".c", ".h", ".cdef"}


@dataclass
class Edit:
    original: str
    replacement: str


@dataclass
class Mutant:
    id: str
    file: str
    why: str
    tests: list[str]
    edits: list[Edit]
    # the same bug written against a later (or earlier) form of the code: tried
    # in order when `edits` do not apply, so before/after runs count one mutant
    alternatives: list[list[Edit]] = field(default_factory=list)

    @property
    def is_c(self) -> bool:
        return Path(self.file).suffix in C_SUFFIXES


@dataclass
class Result:
    id: str
    file: str
    status: str  # killed, survived, stale, baseline-fails, invalid
    seconds: float
    tests: list[str]
    why: str
    detail: str = ""
    build_seconds: float = 0.0
    variant: str = ""  # '' (the main form) or 'alternative N'


@dataclass
class Baseline:
    ok: bool
    seconds: float
    summary: str
    extra: dict = field(default_factory=dict)


def load_mutants(path: Path) -> list[Mutant]:
    data = tomllib.loads(path.read_text())
    out: list[Mutant] = []
    seen: set[str] = set()
    for m in data["mutant"]:
        if m["id"] in seen:
            raise SystemExit(f"duplicate mutant id {m['id']!r} in {path.name}")
        seen.add(m["id"])
        edits = [Edit(e["original"], e["replacement"]) for e in m.get("edits", [])]
        if "original" in m:
            edits.insert(0, Edit(m["original"], m["replacement"]))
        if not edits:
            raise SystemExit(f"mutant {m['id']!r} has no edit")
        for e in edits:
            if e.original == e.replacement:
                raise SystemExit(f"mutant {m['id']!r}: replacement equals the original")
        alternatives = [[Edit(a["original"], a["replacement"])] for a in m.get("alternatives", [])]
        for e in (e for alt in alternatives for e in alt):
            if e.original == e.replacement:
                raise SystemExit(f"mutant {m['id']!r}: replacement equals the original")
        out.append(Mutant(m["id"], m["file"], m["why"], list(m["tests"]), edits, alternatives))
    return out


def mutate(text: str, mutant: Mutant) -> tuple[str | None, str]:
    """The mutated text and which form applied ('' or 'alternative N'), or
    (None, why it is stale)."""
    out, why = apply_edits(text, mutant.edits)
    for n, alt in enumerate(mutant.alternatives, 1):
        if out is not None:
            break
        out, _ = apply_edits(text, alt)
        if out is not None:
            return out, f"alternative {n}"
    return out, why


def apply_edits(text: str, edits: list[Edit]) -> tuple[str | None, str]:
    """Every edit is located in the original text (so two edits may swap two
    snippets); each snippet must occur exactly once."""
    spans = []
    for e in edits:
        count = text.count(e.original)
        if count != 1:
            first = e.original.strip().splitlines()[0] if e.original.strip() else e.original
            return None, f"snippet found {count} times: {first[:60]!r}"
        start = text.index(e.original)
        spans.append((start, start + len(e.original), e.replacement))
    spans.sort()
    for (_s0, e0, _r0), (s1, _e1, _r1) in zip(spans, spans[1:], strict=False):
        if s1 < e0:
            return None, "edits overlap"
    for start, end, repl in reversed(spans):
        text = text[:start] + repl + text[end:]
    return text, ""


class Tree:
    def __init__(self, root: Path, timeout: float | None):
        self.root = root
        self.python = root / ".venv" / "bin" / "python"
        if not self.python.exists():
            raise SystemExit(f"{root}: no .venv/bin/python (make the tree's venv first)")
        self.timeout = timeout
        self.module = self._extension()
        self.module_bytes = self.module.read_bytes()
        self.module_hash = hashlib.sha256(self.module_bytes).hexdigest()

    def _extension(self) -> Path:
        found = sorted((self.root / "numa_numpy").glob("_numa.*.so"))
        if len(found) != 1:
            raise SystemExit(f"expected one numa_numpy/_numa.*.so in the tree, found {found}")
        return found[0]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # no .pyc of a mutant outlives it
        env.pop("PYTHONPATH", None)
        return env

    def pytest(self, tests: list[str], timeout: float) -> tuple[int | str, float, str]:
        """(rc or 'timeout', seconds, pytest's summary: the last line, and the
        first failing test when one failed)."""
        cmd = [
            str(self.python),
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            *tests,
        ]
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, _ = proc.communicate()
            rc = "timeout"
        except BaseException:
            kill_group(proc)
            proc.wait()
            raise
        lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
        summary = lines[-1] if lines else ""
        failed = [ln.split(" - ")[0] for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
        if failed:
            summary += f" [{failed[0]}]"
        return rc, time.monotonic() - start, summary

    def build_extension(self) -> tuple[bool, float, str]:
        """Rebuild numa_numpy._numa from the tree's C sources into a scratch
        folder (cffi's own compile: about 3 s) and put it in place atomically."""
        start = time.monotonic()
        script = self.root / "_build_cffi.py"
        with tempfile.TemporaryDirectory(prefix="nn-mut-build-") as scratch:
            if script.exists():
                # run outside the tree: cffi would parse the tree's pyproject.toml
                # with the venv's setuptools otherwise
                proc = subprocess.run(
                    [str(self.python), str(script)],
                    cwd=scratch,
                    env=self.env(),
                    capture_output=True,
                    timeout=600,
                )
                built = list(Path(scratch, "numa_numpy").glob("_numa.*.so"))
                if proc.returncode or len(built) != 1:
                    tail = (proc.stdout + proc.stderr).decode(errors="replace")
                    return False, time.monotonic() - start, tail[-2000:]
                tmp = self.module.with_suffix(".mutation-tmp")
                shutil.copyfile(built[0], tmp)
                os.chmod(tmp, 0o755)
                os.replace(tmp, self.module)
            else:  # another build layout: let pip rebuild the editable install (about
                # 20 s; --no-build-isolation would need setuptools >= 77 in the venv)
                proc = subprocess.run(
                    [str(self.python), "-m", "pip", "install", "-q", "--no-deps", "-e", "."],
                    cwd=self.root,
                    env=self.env(),
                    capture_output=True,
                    timeout=600,
                )
                if proc.returncode:
                    tail = (proc.stdout + proc.stderr).decode(errors="replace")
                    return False, time.monotonic() - start, tail[-2000:]
        return True, time.monotonic() - start, ""

    def restore_extension(self) -> None:
        tmp = self.module.with_suffix(".mutation-tmp")
        tmp.write_bytes(self.module_bytes)
        os.chmod(tmp, 0o755)
        os.replace(tmp, self.module)

    def forget_bytecode(self, rel: str) -> None:
        path = self.root / rel
        if path.suffix != ".py":
            return
        for pyc in (path.parent / "__pycache__").glob(path.stem + ".*.pyc"):
            pyc.unlink(missing_ok=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_mutant(
    tree: Tree, m: Mutant, baselines: dict[tuple[str, ...], Baseline], timeout: float | None
) -> Result:
    start = time.monotonic()
    res = Result(m.id, m.file, "", 0.0, m.tests, m.why)
    path = tree.root / m.file
    if not path.exists():
        res.status, res.detail = "stale", "file not found"
        return res
    original = path.read_bytes()
    text = original.decode()
    mutated, why = mutate(text, m)
    if mutated is None:
        res.status, res.detail = "stale", why
        return res
    res.variant = why
    key = tuple(m.tests)
    if key not in baselines:
        rc, secs, last = tree.pytest(m.tests, timeout or 900)
        baselines[key] = Baseline(rc == 0, secs, last)
        print(
            f"  baseline {' '.join(m.tests)}: {'ok' if rc == 0 else f'rc={rc}'} "
            f"({secs:.1f} s) {last}",
            flush=True,
        )
    base = baselines[key]
    if not base.ok:
        res.status, res.detail = "baseline-fails", base.summary
        res.seconds = time.monotonic() - start
        return res
    limit = timeout if timeout is not None else max(60.0, 3 * base.seconds + 30)
    stat = os.stat(path)
    try:
        path.write_bytes(mutated.encode())
        tree.forget_bytecode(m.file)
        if m.is_c:
            ok, secs, log = tree.build_extension()
            res.build_seconds = round(secs, 1)
            if not ok:
                res.status, res.detail = "invalid", "does not compile: " + log.strip()[-300:]
                return res
        rc, _secs, last = tree.pytest(m.tests, limit)
        if rc == 0:
            res.status, res.detail = "survived", last
        else:
            res.status = "killed"
            res.detail = f"timeout after {limit:.0f} s" if rc == "timeout" else f"rc={rc}: {last}"
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        tree.forget_bytecode(m.file)
        if m.is_c:
            tree.restore_extension()
        res.seconds = round(time.monotonic() - start, 1)
    return res


def _sigterm(_signum, _frame):
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tree", type=Path, help="checkout with its own .venv")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the results here")
    p.add_argument("--mutants", type=Path, default=HERE / "mutants.toml")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per mutated run (default: 3 x baseline + 30, at least 60)",
    )
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = p.parse_args(argv)
    mutants = load_mutants(args.mutants)
    if args.list:
        for m in mutants:
            print(f"{m.id:40} {m.file:36} {' '.join(m.tests)}")
        return 0
    if args.only:
        unknown = set(args.only) - {m.id for m in mutants}
        if unknown:
            raise SystemExit(f"unknown mutant id(s): {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.id in args.only]
    root = args.tree.resolve()
    if subprocess.run(["git", "-C", str(root), "diff", "--quiet"]).returncode:
        raise SystemExit(f"{root}: the tree has uncommitted changes; mutate a clean checkout")
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = Tree(root, args.timeout)
    signal.signal(signal.SIGTERM, _sigterm)
    baselines: dict[tuple[str, ...], Baseline] = {}
    results: list[Result] = []
    t0 = time.monotonic()
    w = max([len(m.id) for m in mutants] + [2])
    print(f"{len(mutants)} mutants on {commit[:12]}", flush=True)
    try:
        for m in mutants:
            r = run_mutant(tree, m, baselines, args.timeout)
            results.append(r)
            print(f"{r.id:{w}} {r.status:14} {r.seconds:6.1f} s  {r.detail[:90]}", flush=True)
    finally:
        clean = subprocess.run(["git", "-C", str(root), "diff", "--quiet"]).returncode == 0
        same_module = hashlib.sha256(tree.module.read_bytes()).hexdigest() == tree.module_hash
    total = time.monotonic() - t0
    counts = {
        s: sum(r.status == s for r in results)
        for s in ("killed", "survived", "stale", "baseline-fails", "invalid")
    }
    scored = counts["killed"] + counts["survived"]
    rate = counts["killed"] / scored if scored else None
    print()
    print(f"{'id':{w}} {'file':36} {'status':14} {'seconds':>7}")
    for r in results:
        print(f"{r.id:{w}} {r.file:36} {r.status:14} {r.seconds:7.1f}")
    print()
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    if rate is not None:
        print(f"kill rate: {counts['killed']}/{scored} = {rate:.0%}   ({total / 60:.1f} min)")
    for r in results:
        if r.status == "survived":
            print(f"  survived {r.id}: {r.why}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "commit": commit,
                    "python": sys.version.split()[0],
                    "mutants_file": args.mutants.name,
                    "counts": counts,
                    "kill_rate": None if rate is None else round(rate, 4),
                    "seconds": round(total, 1),
                    "tree_clean_after": clean and same_module,
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
            + "\n"
        )
    if not clean or not same_module:
        print(
            "ERROR: the tree is not as it was (git diff or the extension module)", file=sys.stderr
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
