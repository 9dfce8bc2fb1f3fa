#!/usr/bin/env python3
"""NUMA lab: run pytest (or any command) inside a 4-node NUMA guest.

The guest is booted with virtme-ng (``vng``) under QEMU software emulation (TCG). It
sees the host's root file system read-only (so the same checkout and virtualenv), a
private writable /tmp, and one writable exchange folder (a host temp dir) through which
the JUnit report and the exit status come back.

Topology (see tests/lab/README.md):

    node 0: cpu 0, 512M        distances  0   1   2   3
    node 1: cpu 1, 512M               0: 10  20  30  30
    node 2: memory only, 512M         1: 20  10  30  30
    node 3: memory only, 512M         2: 30  30  10  20
                                      3: 30  30  20  10

Usage:
    python tests/lab/run.py [options] -- <pytest args>
    python tests/lab/run.py [options] --exec 'numactl --hardware'

Exit status:
    0     pytest passed (at least one test ran)
    1-4   pytest's own exit status (1 = tests failed, 2 = interrupted, ...)
    5     no tests ran (pytest's "no tests collected", or an empty report)
    6     --fail-on-skip given and some test was skipped (xfail does not count)
    7     pytest exited 0 but its JUnit report is missing or unreadable
    124   --timeout reached (the guest was killed)
    125   lab failure: the guest did not boot, or died before writing a status
In --exec mode: the command's exit status, or 124 / 125 as above.

Stdlib only; Python 3.10+.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Node i: (default size, cpu list or None for a memory-only node)
NODE_CPUS = ["0", "1", None, None]
DEFAULT_NODE_MEM = "512M"
# Symmetric distance table; the diagonal (10) is implied.
DISTANCES = {
    (0, 1): 20,
    (0, 2): 30, (0, 3): 30,
    (1, 2): 30, (1, 3): 30,
    (2, 3): 20,
}

# --hmat: the firmware's access characteristics (ACPI HMAT) QEMU hands the guest,
# per initiator (a node with CPUs) and target node: (latency ns, bandwidth).
# Local 10 ns / 20 GB/s, the other CPU node 20 ns / 10 GB/s, memory-only 40 ns / 5 GB/s:
# the guest kernel then shows 20480/10240/5120 MB/s and puts nodes 2-3 in a slower
# memory tier (memory_tier72) than nodes 0-1 (memory_tier4).
HMAT_LOCAL, HMAT_REMOTE, HMAT_MEMORY_ONLY = (10, "20G"), (20, "10G"), (40, "5G")


def hmat_qemu_opts() -> str:
    """QEMU options (passed through vng's --qemu-opts) that give the guest an HMAT."""
    opts = ["-machine hmat=on"]
    for initiator, cpus in enumerate(NODE_CPUS):
        if cpus is None:
            continue
        for target, target_cpus in enumerate(NODE_CPUS):
            latency, bandwidth = (HMAT_LOCAL if target == initiator else
                                  HMAT_REMOTE if target_cpus is not None else HMAT_MEMORY_ONLY)
            lb = f"-numa hmat-lb,initiator={initiator},target={target},hierarchy=memory"
            opts.append(f"{lb},data-type=access-latency,latency={latency}")
            opts.append(f"{lb},data-type=access-bandwidth,bandwidth={bandwidth}")
    return " ".join(opts)


# Kernel modules that udev would load for QEMU's q35 devices and the emulated CPU but the
# lab never uses. Under TCG each module load is slow (decompression, 9p reads): keeping
# them out cuts the boot by 10-30 s.
MODULE_BLACKLIST = (
    "kvm,kvm_amd,kvm_intel,irqbypass,ahci,libahci,libata,sr_mod,cdrom,sg,psmouse,ccp,"
    "aesni_intel,iTCO_wdt,iTCO_vendor_support,lpc_ich,i2c_i801,i2c_smbus,pcspkr,serio_raw,"
    "evdev,intel_pmc_bxt,sha1_ssse3,sha256_ssse3,sha512_ssse3,ghash_clmulni_intel,"
    "crc32c_intel,button,intel_rapl_msr,intel_rapl_common,powernow_k8,acpi_cpufreq,"
    "floppy,joydev,mousedev"
)

EXIT_NO_TESTS = 5
EXIT_SKIPPED = 6
EXIT_NO_REPORT = 7
EXIT_TIMEOUT = 124
EXIT_LAB = 125

# Host variables handed on to the guest when set.
FORWARD_ENV = ("PYTEST_ADDOPTS", "CI")


def log(msg: str) -> None:
    print(f"numa-lab: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- discovery
def _version_key(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", os.path.basename(path))]


def find_kernel(explicit: str | None) -> str:
    k = explicit or os.environ.get("NUMA_LAB_KERNEL")
    if k:
        if not os.path.isfile(k):
            raise SystemExit(f"numa-lab: kernel not found: {k}")
        return os.path.abspath(k)
    found = sorted(glob.glob("/boot/vmlinuz-6.12*"), key=_version_key)
    if not found:
        raise SystemExit(
            "numa-lab: no /boot/vmlinuz-6.12* (run tests/lab/setup.sh, "
            "or set NUMA_LAB_KERNEL=/path/to/vmlinuz)")
    return found[-1]


def _has_virtme(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import virtme_ng, virtme"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def find_vng(guest_python: str) -> list[str]:
    """Command prefix that runs virtme-ng's `vng`."""
    env = os.environ.get("NUMA_LAB_VNG")
    if env:
        return shlex.split(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    lab_venv = os.environ.get("NUMA_LAB_VNG_VENV") or os.path.join(cache, "numa-lab", "vng-venv")
    candidates = [shutil.which("vng"),
                  os.path.join(os.path.dirname(sys.executable), "vng"),
                  os.path.join(os.path.dirname(guest_python), "vng"),
                  os.path.join(lab_venv, "bin", "vng")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return [c]
    for py in (sys.executable, guest_python, os.path.join(lab_venv, "bin", "python")):
        if os.path.isfile(py) and _has_virtme(py):
            return [py, "-c", "import sys; from virtme_ng.run import main; "
                              "sys.argv[0] = 'vng'; sys.exit(main())"]
    raise SystemExit("numa-lab: virtme-ng (vng) not found; run tests/lab/setup.sh "
                     "or set NUMA_LAB_VNG")


# Programs vng starts by name through a shell; each must be found on the PATH it
# is given (virtme-run sits beside vng; QEMU and busybox come from the system).
VNG_PROGRAMS = ("virtme-run", "qemu-system-x86_64", "busybox")
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def vng_path(vng: list[str], guest_python: str, inherited: str) -> str:
    """The PATH vng runs under: the folder vng was found in (its companion
    virtme-run is installed beside it, and is started through the shell), the
    guest interpreter's folder, then the inherited PATH and the system folders.
    Nothing depends on what an earlier manual install left on the caller's PATH."""
    dirs = [os.path.dirname(os.path.abspath(vng[0])), os.path.dirname(guest_python)]
    dirs += [d for d in inherited.split(os.pathsep) if d]
    dirs += SYSTEM_PATH
    seen: list[str] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return os.pathsep.join(seen)


def missing_programs(path: str) -> list[str]:
    return [p for p in VNG_PROGRAMS if shutil.which(p, path=path) is None]


def default_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    if venv.exists():
        # Keep the venv's own path (not the symlink target) so the venv is active.
        return str(venv.absolute())
    return os.path.realpath(sys.executable)


# ---------------------------------------------------------------------- topology
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([MG])i?B?\s*$", re.I)


def parse_size_mib(s: str) -> int:
    m = _SIZE_RE.match(s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r} (use e.g. 512M or 1G)")
    n = int(m.group(1))
    return n * 1024 if m.group(2).upper() == "G" else n


def node_sizes(spec: str) -> list[int]:
    parts = [p for p in spec.split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * len(NODE_CPUS)
    if len(parts) != len(NODE_CPUS):
        raise SystemExit(f"numa-lab: --node-mem needs 1 or {len(NODE_CPUS)} sizes, got {spec!r}")
    return [parse_size_mib(p) for p in parts]


def vng_topology_args(sizes: list[int]) -> list[str]:
    args = ["--cpus", str(sum(1 for c in NODE_CPUS if c is not None)),
            "-m", f"{sum(sizes)}M"]
    for size, cpus in zip(sizes, NODE_CPUS):
        args += ["--numa", f"{size}M" + (f",cpus={cpus}" if cpus is not None else "")]
    # QEMU wants either no distances or all of them once memory-only nodes exist.
    for (a, b), d in sorted(DISTANCES.items()):
        args += ["--numa-distance", f"{a},{b}={d}"]
    return args


def topology_text(sizes: list[int]) -> str:
    nodes = ", ".join(f"node{i}={s}M/" + (f"cpu{c}" if c is not None else "mem-only")
                      for i, (s, c) in enumerate(zip(sizes, NODE_CPUS)))
    return nodes


# ------------------------------------------------------------------ guest script
def guest_script(rw: str, cwd: str, python: str, body: str, env: dict[str, str]) -> str:
    q = shlex.quote
    exports = "\n".join(f"export {k}={q(v)}" for k, v in env.items())
    return f"""#!/bin/sh
# Generated by tests/lab/run.py; runs inside the NUMA guest.
RW={q(rw)}
: > "$RW/booted"
finish() {{
    echo "$1" > "$RW/status.tmp" && mv "$RW/status.tmp" "$RW/status"
    sync
    exit "$1"
}}
cd {q(cwd)} || finish 126
export PYTHONDONTWRITEBYTECODE=1
export NUMA_LAB=1
export NUMA_LAB_OUT="$RW"   # writable in the guest; the host reads it back (--keep)
export PATH={q(os.path.dirname(python))}:"$PATH"
{exports}
{body}
finish $?
"""


# ------------------------------------------------------------------ JUnit report
def read_report(path: str) -> dict | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    c = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        for k in c:
            try:
                c[k] += int(s.get(k, 0))
            except ValueError:
                pass
    xfail, skipped_cases = 0, []
    for tc in root.iter("testcase"):
        sk = tc.find("skipped")
        if sk is None:
            continue
        if (sk.get("type") or "") == "pytest.xfail":
            xfail += 1
        else:
            name = f"{tc.get('classname', '')}::{tc.get('name', '')}".lstrip(":")
            skipped_cases.append((name, sk.get("message", "")))
    c["xfail"] = xfail
    c["skipped_cases"] = skipped_cases
    c["passed"] = max(0, c["tests"] - c["failures"] - c["errors"] - c["skipped"])
    return c


# ----------------------------------------------------------------------- running
def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _pump(src, sinks) -> None:
    fd = src.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        for s in sinks:
            try:
                s.write(chunk)
                s.flush()
            except (OSError, ValueError):
                pass


def boot_once(cmd: list[str], env: dict[str, str], rw: str, timeout: float,
              boot_timeout: float, console) -> tuple[str, int | None, float | None]:
    """Run vng once. Returns (outcome, vng_rc, boot_seconds);
    outcome is 'done', 'timeout' or 'noboot'."""
    booted = os.path.join(rw, "booted")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)
    pump = threading.Thread(target=_pump,
                            args=(proc.stdout, [sys.stdout.buffer, console]), daemon=True)
    pump.start()
    boot_s = None
    outcome = "done"
    try:
        while True:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic() - t0
            if boot_s is None and os.path.exists(booted):
                boot_s = now
            if now > timeout:
                log(f"timeout after {timeout:.0f} s; killing the guest")
                outcome = "timeout"
                _kill_group(proc)
                break
            if boot_s is None and now > boot_timeout:
                log(f"guest did not start the command within {boot_timeout:.0f} s; killing it")
                outcome = "noboot"
                _kill_group(proc)
                break
    except KeyboardInterrupt:
        _kill_group(proc)
        raise
    pump.join(timeout=5)
    if boot_s is None and os.path.exists(booted):
        boot_s = time.monotonic() - t0
    if outcome == "done" and boot_s is None:
        outcome = "noboot"
    return outcome, proc.returncode, boot_s


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1:]
    else:
        pytest_args = []

    ap = argparse.ArgumentParser(
        prog="tests/lab/run.py",
        description="Run pytest (or --exec CMD) inside a 4-node NUMA guest (QEMU/TCG via vng).",
        epilog="Exit: 0 ok; 1-4 pytest's status; 5 no tests ran; 6 skipped tests with "
               "--fail-on-skip; 7 no report; 124 timeout; 125 guest did not boot/died.")
    ap.add_argument("--python", help="interpreter used in the guest (absolute path); default "
                    "<repo>/.venv/bin/python if it exists, else this interpreter")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="wall-clock limit for the whole guest run, seconds (default 900)")
    ap.add_argument("--boot-timeout", type=float, default=300.0,
                    help="give up if the guest has not started the command after this many "
                         "seconds (default 300)")
    ap.add_argument("--boot-retries", type=int, default=1,
                    help="boot again this many times when the guest never started the "
                         "command (default 1)")
    ap.add_argument("--junit", metavar="OUT.xml", help="copy pytest's JUnit XML report here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the exchange folder (report, status, console.log) and print it")
    ap.add_argument("--fail-on-skip", action="store_true",
                    help="fail (exit 6) if any test was skipped (xfail does not count)")
    ap.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                    help="run this shell command in the guest instead of pytest")
    ap.add_argument("--cwd", default=str(REPO),
                    help="working directory in the guest (default: the repository root)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VAL",
                    help="set an environment variable in the guest (repeatable)")
    ap.add_argument("--node-mem", default=DEFAULT_NODE_MEM, metavar="SIZE[,SIZE,SIZE,SIZE]",
                    help="memory of each node, one size for all or four (default 512M)")
    ap.add_argument("--kernel", help="guest kernel (default $NUMA_LAB_KERNEL, else the newest "
                    "/boot/vmlinuz-6.12*)")
    ap.add_argument("--append", action="append", default=[], metavar="ARGS",
                    help="extra guest kernel command line (repeatable)")
    ap.add_argument("--numa-balancing", action="store_true",
                    help="leave automatic NUMA balancing on (default: off, so that pages "
                         "stay where they were placed)")
    ap.add_argument("--hmat", action="store_true",
                    help="give the guest firmware access characteristics (ACPI HMAT: local "
                         "10 ns/20 GB/s, other CPU node 20/10G, memory-only 40/5G) and so "
                         "two memory tiers; the guest sees NUMA_LAB_HMAT=1")
    ap.add_argument("--no-blacklist", action="store_true",
                    help="let udev load every module (slower boot)")
    ap.add_argument("--verbose", action="store_true", help="show the guest kernel's console")
    ap.add_argument("--dry-run", action="store_true", help="print the vng command and exit")
    args = ap.parse_args(argv)

    if args.exec_cmd is not None and pytest_args:
        ap.error("--exec and pytest arguments (after --) are exclusive")

    python = args.python or default_python()
    if not os.path.isabs(python):
        ap.error("--python must be an absolute path")
    if not os.path.exists(python):
        ap.error(f"--python not found: {python}")
    kernel = find_kernel(args.kernel)
    sizes = node_sizes(args.node_mem)
    cwd = os.path.abspath(args.cwd)

    env: dict[str, str] = {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}
    if sys.stdout.isatty():
        env.setdefault("PY_COLORS", "1")
        env.setdefault("COLUMNS", str(shutil.get_terminal_size().columns))
    for kv in args.env:
        k, sep, v = kv.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            ap.error(f"--env wants KEY=VAL, got {kv!r}")
        env[k] = v
    if args.hmat:
        env["NUMA_LAB_HMAT"] = "1"  # tests expect the HMAT figures and tiers

    # The exchange folder's path ends up on the guest kernel's command line (vng's
    # --rwdir): keep it free of spaces and commas.
    tmp_parent = tempfile.gettempdir()
    if re.search(r"[\s,=`'\"]", tmp_parent):
        tmp_parent = "/tmp"
    rw = tempfile.mkdtemp(prefix="numa-lab-", dir=tmp_parent)
    q = shlex.quote
    if args.exec_cmd is not None:
        body = f"sh -c {q(args.exec_cmd)}"
    else:
        body = " ".join([q(python), "-m", "pytest", *map(q, pytest_args),
                         q(f"--junitxml={rw}/report.xml"), "-p", "no:cacheprovider"])
    script = os.path.join(rw, "guest.sh")
    with open(script, "w") as f:
        f.write(guest_script(rw, cwd, python, body, env))

    vng = find_vng(python)
    cmd = [*vng, "--disable-kvm", "--run", kernel, "--name", "numa-lab",
           *vng_topology_args(sizes), "--rwdir", rw, "--cwd", cwd,
           *([] if args.no_blacklist else ["--append", f"modprobe.blacklist={MODULE_BLACKLIST}"]),
           *([] if args.numa_balancing else ["--append", "numa_balancing=disable"]),
           *(x for a in args.append for x in ("--append", a)),
           # one argument with "=": the value starts with "-", which argparse would
           # take for an option
           *([f"--qemu-opts={hmat_qemu_opts()}"] if args.hmat else []),
           *(["--verbose"] if args.verbose else []),
           "--exec", f"sh {script}"]

    vng_env = dict(os.environ, PATH=vng_path(vng, python, os.environ.get("PATH", "")))
    missing = missing_programs(vng_env["PATH"])

    if args.dry_run:
        try:
            print("PATH=" + shlex.quote(vng_env["PATH"]) + " " + shlex.join(cmd))
            for name in missing:
                print(f"# not found on that PATH: {name}")
            print(open(script).read(), end="", flush=True)
        except BrokenPipeError:
            pass
        shutil.rmtree(rw, ignore_errors=True)
        return 0

    if missing:
        log(f"FAIL: not found on vng's PATH ({vng_env['PATH']}): {', '.join(missing)}; "
            "run tests/lab/setup.sh")
        shutil.rmtree(rw, ignore_errors=True)
        return EXIT_LAB
    log(f"kernel {os.path.basename(kernel)}; {topology_text(sizes)}; python {python}")
    log(("exec: " + args.exec_cmd) if args.exec_cmd is not None
        else "pytest " + " ".join(map(q, pytest_args)))

    t0 = time.monotonic()
    status_file = os.path.join(rw, "status")
    rc = EXIT_LAB
    outcome, vng_rc, boot_s = "noboot", None, None
    summary = ""
    try:
        with open(os.path.join(rw, "console.log"), "wb") as console:
            for attempt in range(args.boot_retries + 1):
                remaining = args.timeout - (time.monotonic() - t0)
                outcome, vng_rc, boot_s = boot_once(cmd, vng_env, rw, remaining,
                                                    min(args.boot_timeout, remaining), console)
                if outcome != "noboot":
                    break
                log(f"guest did not boot (vng exit {vng_rc}); attempt {attempt + 1} of "
                    f"{args.boot_retries + 1}")
                if time.monotonic() - t0 >= args.timeout:
                    outcome = "timeout"
                    break
        elapsed = time.monotonic() - t0
        boot_txt = f"{boot_s:.1f} s" if boot_s is not None else "-"
        log(f"guest finished: vng exit {vng_rc}, command started after {boot_txt}, "
            f"wall {elapsed:.1f} s")

        status = None
        try:
            with open(status_file) as f:
                status = int(f.read().strip())
        except (OSError, ValueError):
            pass

        if outcome == "timeout":
            rc = EXIT_TIMEOUT
        elif status is None:
            log("FAIL: no status came back from the guest "
                + ("(it never booted)" if outcome == "noboot" else
                   "(it died or powered off early; rerun with --verbose for the kernel log)"))
            rc = EXIT_LAB
        elif args.exec_cmd is not None:
            rc = status
        else:
            rc = status
            report_path = os.path.join(rw, "report.xml")
            rep = read_report(report_path)
            if args.junit and os.path.exists(report_path):
                os.makedirs(os.path.dirname(os.path.abspath(args.junit)), exist_ok=True)
                shutil.copyfile(report_path, args.junit)
            if rep is None:
                log(f"no readable JUnit report (pytest exit {status})")
                if status == 0:
                    rc = EXIT_NO_REPORT
            else:
                failed = rep["failures"] + rep["errors"]
                log(f"tests={rep['tests']} failures={rep['failures']} errors={rep['errors']} "
                    f"skipped={rep['skipped']} (xfail={rep['xfail']}) pytest_exit={status} "
                    f"wall={elapsed:.1f}s")
                if rep["skipped_cases"]:
                    for name, msg in rep["skipped_cases"]:
                        log(f"skipped: {name}: {msg}")
                if rc == 0 and rep["tests"] == 0:
                    log("FAIL: no tests ran")
                    rc = EXIT_NO_TESTS
                elif rc == 0 and args.fail_on_skip and rep["skipped_cases"]:
                    log(f"FAIL: {len(rep['skipped_cases'])} test(s) skipped and --fail-on-skip given")
                    rc = EXIT_SKIPPED
                # Plain closing line (passed/failed/skipped counts), printed last.
                summary = (f"numa-lab: {rep['passed']} passed, {failed} failed, "
                           f"{rep['skipped']} skipped")
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    finally:
        if args.keep:
            log(f"kept exchange folder: {rw}")
        else:
            shutil.rmtree(rw, ignore_errors=True)
    log(f"exit {rc}")
    if summary:
        print(summary, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
