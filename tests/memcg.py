"""A memory cgroup of the test's own, for running a workload under a memory
limit the way a container runtime would (Docker, Kubernetes, batch schedulers).

`MemoryCgroup.create(limit)` makes a child cgroup under this process's own one
(cgroup v1's memory controller, or cgroup v2 with the memory controller enabled
for children), sets the limit and removes the cgroup again on close. The
workload runs in a child Python process that moves itself into the cgroup
before it imports anything big, so every page it touches is charged there.
Where no memory controller can be written to, `create` raises `Unavailable`
with the reason (tests skip with it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


class Unavailable(RuntimeError):
    """No memory cgroup can be created here (the reason says why)."""


def _mounts() -> dict[str, Path]:
    """Mount points of the cgroup hierarchies: 'v1:memory' and/or 'v2'."""
    found: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not tail:
            continue
        if tail[0] == "cgroup2":
            found.setdefault("v2", Path(fields[4]))
        elif tail[0] == "cgroup" and "memory" in tail[-1].split(","):
            found.setdefault("v1:memory", Path(fields[4]))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy ('v1:memory', 'v2')."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            paths["v2"] = path
        elif "memory" in controllers.split(","):
            paths["v1:memory"] = path
    return paths


def under_address_sanitizer() -> bool:
    """Whether children run with ASan preloaded (tests/sanitizers/asan.sh): its
    quarantine keeps freed malloc blocks (NumPy's allocator's too) and its shadow
    adds an eighth, so a tight limit kills the control as well."""
    return "libasan" in os.environ.get("LD_PRELOAD", "")


@dataclass
class MemoryCgroup:
    path: Path
    version: int
    limit: int

    @classmethod
    def create(cls, limit: int) -> MemoryCgroup:
        mounts, own = _mounts(), _own_paths()
        reasons = []
        if "v1:memory" in mounts and "v1:memory" in own:
            parent = mounts["v1:memory"] / own["v1:memory"].lstrip("/")
            try:
                return cls._make(parent, 1, limit)
            except OSError as exc:
                reasons.append(f"cgroup v1 memory at {parent}: {exc}")
        else:
            reasons.append("no cgroup v1 memory controller mounted")
        if "v2" in mounts and "v2" in own:
            parent = mounts["v2"] / own["v2"].lstrip("/")
            controllers = parent / "cgroup.subtree_control"
            try:
                enabled = controllers.read_text().split()
            except OSError as exc:
                enabled = []
                reasons.append(f"cgroup v2 at {parent}: {exc}")
            if "memory" in enabled:
                try:
                    return cls._make(parent, 2, limit)
                except OSError as exc:
                    reasons.append(f"cgroup v2 at {parent}: {exc}")
            else:
                reasons.append(
                    f"cgroup v2 at {parent}: the memory controller is not enabled for children"
                )
        else:
            reasons.append("no cgroup v2 hierarchy for this process")
        raise Unavailable("; ".join(reasons))

    @classmethod
    def _make(cls, parent: Path, version: int, limit: int) -> MemoryCgroup:
        path = parent / f"numa_numpy_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        path.mkdir()
        group = cls(path, version, limit)
        try:
            if version == 1:
                (path / "memory.limit_in_bytes").write_text(str(limit))
                swap = path / "memory.memsw.limit_in_bytes"
                if swap.exists():  # no swapping around the limit: the OOM killer decides
                    swap.write_text(str(limit))
            else:
                (path / "memory.max").write_text(str(limit))
                swap = path / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
        except OSError:
            group.close()
            raise
        return group

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_kills(self) -> int:
        """OOM kills in this cgroup so far."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in (self.path / name).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def run(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `script` in a child Python that first moves itself into this cgroup."""
        prologue = f"import os\nopen({str(self.procs)!r}, 'w').write(str(os.getpid()))\n"
        return subprocess.run(
            [sys.executable, "-c", prologue + script],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=Path(__file__).resolve().parent,
        )

    def close(self) -> None:
        for _ in range(50):  # a killed child may take a moment to leave
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)
        self.path.rmdir()

    def __enter__(self) -> MemoryCgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
