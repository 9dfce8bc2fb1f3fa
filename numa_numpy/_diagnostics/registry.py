"""The doctor's checks, each registered where it is written by the `check`
decorator: its name, its place in the report and what it needs to run. The
doctor runs them in order; the tests go through every one."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._kernel.sysfs import KernelFiles
from .._kernel.topology import Topology, read_topology
from .findings import Finding

__all__ = ["Host", "Needs", "Check", "check", "checks"]


@dataclass
class Host:
    """What every check reads: files under `root` (through `files`, which notes
    each one it cannot read), and the topology they describe. `live` when the
    root is this machine's "/"."""

    root: Path
    topo: Topology
    live: bool
    files: KernelFiles

    @classmethod
    def of(cls, root: str | os.PathLike[str] = "/") -> Host:
        """The host whose files lie under `root` ("/": this machine); a root
        that is no folder is noted as the first file that cannot be read."""
        where = Path(os.fspath(root))
        live = where.resolve() == Path("/")
        where = Path("/") if live else where
        files = KernelFiles(where)
        if not os.path.isdir(where):
            files.note(where, "is not a folder" if os.path.exists(where) else "does not exist")
        return cls(where, read_topology(where, files), live, files)

    def read(self, where: str | Path) -> str | None:
        """The text of a file under the root, or None (noted unless missing)."""
        return self.files.text(where)

    def shown(self, path: Path) -> str:
        """A path as it is on the machine described (without a copy's root)."""
        return self.files.shown(path)


class Needs(enum.Flag):
    """What a check needs beyond the files: ``SYSCALLS``, to call the policy
    system calls (runs when the doctor probes); ``LIVE``, to look at this very
    process (runs only when the root is "/")."""

    FILES = 0
    SYSCALLS = enum.auto()
    LIVE = enum.auto()


@dataclass(frozen=True)
class Check:
    """A registered check: `run(host)` gives its findings (none when it has
    nothing to say)."""

    name: str
    order: int
    needs: Needs
    run: Callable[[Host], list[Finding]]

    def applies(self, *, probe: bool, live: bool) -> bool:
        """Whether it runs in a doctor that probes (or not), on "/" (or a copy)."""
        return (probe or Needs.SYSCALLS not in self.needs) and (
            live or Needs.LIVE not in self.needs
        )


_REGISTRY: dict[str, Check] = {}


def check(
    name: str, *, order: int, needs: Needs = Needs.FILES
) -> Callable[[Callable[[Host], list[Finding]]], Callable[[Host], list[Finding]]]:
    """Register the decorated function as the check `name`, run at `order`
    (lowest first; a finding's place within its severity follows it)."""

    def register(run: Callable[[Host], list[Finding]]) -> Callable[[Host], list[Finding]]:
        taken = {c.order: c.name for c in _REGISTRY.values()}
        if name in _REGISTRY or order in taken:
            raise ValueError(f"check {name!r} at order {order}: name or order taken ({taken})")
        _REGISTRY[name] = Check(name, order, needs, run)
        return run

    return register


def checks() -> tuple[Check, ...]:
    """Every registered check, in the order the doctor runs them."""
    return tuple(sorted(_REGISTRY.values(), key=lambda c: c.order))
