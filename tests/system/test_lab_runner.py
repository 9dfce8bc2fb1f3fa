"""The NUMA lab's runner (tests/lab/run.py) on any machine: the command it would
start, and the PATH it starts it under. vng starts `virtme-run` through the
shell, so the runner must hand it a PATH on which vng's companions are found,
whatever the caller's PATH holds. A fake vng here does what the real one does
with the PATH (runs `virtme-run` by name through /bin/sh), and its virtme-run
runs the guest script on the host instead of booting a kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "tests" / "lab" / "run.py"
MINIMAL_PATH = "/usr/bin:/bin"

FAKE_VNG = """#!/bin/sh
# like virtme-ng: the real work is done by `virtme-run`, found on PATH
exec /bin/sh -c 'virtme-run "$@"' virtme-run "$@"
"""
# Runs the `--exec CMD` argument on the host: the guest script writes the
# status file the runner reads back.
FAKE_VIRTME_RUN = """#!/bin/sh
while [ $# -gt 0 ]; do
    if [ "$1" = --exec ]; then exec /bin/sh -c "$2"; fi
    shift
done
exit 99
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def fake_lab(tmp_path: Path) -> dict[str, str]:
    """A bin folder with vng and its companions, a kernel file, and an
    environment whose PATH has none of them."""
    bindir = tmp_path / "vng-bin"
    bindir.mkdir()
    _executable(bindir / "vng", FAKE_VNG)
    _executable(bindir / "virtme-run", FAKE_VIRTME_RUN)
    for name in ("qemu-system-x86_64", "busybox"):
        _executable(bindir / name, "#!/bin/sh\nexit 0\n")
    guest_bin = tmp_path / "guest-bin"  # stands for the guest's interpreter folder
    guest_bin.mkdir()
    _executable(guest_bin / "python", "#!/bin/sh\nexit 0\n")
    kernel = tmp_path / "vmlinuz-6.12-test"
    kernel.write_bytes(b"not a kernel")
    env = {
        "PATH": MINIMAL_PATH,
        "HOME": str(tmp_path),
        "NUMA_LAB_VNG": str(bindir / "vng"),
        "NUMA_LAB_KERNEL": str(kernel),
    }
    return {
        "bindir": str(bindir),
        "kernel": str(kernel),
        "python": str(guest_bin / "python"),
        **{"env_" + k: v for k, v in env.items()}}


def _env(fake_lab: dict[str, str]) -> dict[str, str]:
    return {k[4:]: v for k, v in fake_lab.items() if k.startswith("env_")}


def _run(fake_lab: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), "--python", fake_lab["python"], *args],
        env=_env(fake_lab),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dry_run_shows_the_command_and_a_path_that_finds_vngs_companions(
    fake_lab: dict[str, str],
) -> None:
    out = _run(fake_lab, "--dry-run", "--", "-q", "tests/system/test_multinode.py")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("PATH=")
    path = first.split()[0].removeprefix("PATH=").strip("'")
    # vng's own folder first: virtme-run is found there, not by luck
    assert path.split(":")[0] == fake_lab["bindir"]
    assert os.path.dirname(fake_lab["python"]) in path.split(":")
    assert "not found on that PATH" not in out.stdout
    command = first[first.index(" ") + 1 :]
    assert command.startswith(fake_lab["bindir"] + "/vng --disable-kvm --run " + fake_lab["kernel"])
    # four nodes: two with a CPU, two memory-only, and every distance
    assert command.count("--numa ") == 4
    assert "--numa 512M,cpus=0" in command and "--numa 512M,cpus=1" in command
    assert command.count("--numa-distance") == 6
    assert "numa_balancing=disable" in command
    # the guest script runs pytest with the arguments given
    assert "-m pytest -q tests/system/test_multinode.py --junitxml=" in out.stdout


def test_the_runner_starts_vng_under_a_minimal_path(fake_lab: dict[str, str]) -> None:
    """The failure of a fresh machine: vng found, virtme-run not on the caller's
    PATH. The runner's PATH makes it found; the guest command's status comes back."""
    assert subprocess.run(["sh", "-c", "command -v virtme-run"], env=_env(fake_lab)).returncode
    out = _run(fake_lab, "--boot-retries", "0", "--timeout", "60", "--exec", "exit 3")
    assert "virtme-run: not found" not in out.stdout + out.stderr
    assert out.returncode == 3, out.stdout + out.stderr
    assert "command started after" in out.stderr


def test_a_missing_companion_is_named_before_any_boot(fake_lab: dict[str, str]) -> None:
    os.unlink(os.path.join(fake_lab["bindir"], "virtme-run"))
    system = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    if shutil.which("virtme-run", path=system):
        pytest.skip("a virtme-run is installed in this machine's system folders")
    dry = _run(fake_lab, "--dry-run", "--exec", "true")
    assert "# not found on that PATH: virtme-run" in dry.stdout
    out = _run(fake_lab, "--exec", "true")
    assert out.returncode == 125
    assert "not found on vng's PATH" in out.stderr and "virtme-run" in out.stderr
