"""The registry of the doctor's checks (numa_numpy._diagnostics.registry): every
registered check reads a healthy tree and survives each file damaged, each has a
dedicated test, they run in their order, and what a check needs decides where it
runs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from fixtures import machine
from fixtures.doctor import (
    COVERED,
    diagnose,
    only,
)

import numa_numpy as nn
from numa_numpy._diagnostics import registry

Severity = nn.Severity



def _lab_tree(root: Path) -> Path:
    """The lab machine's files, with a pool, balancing, a container's cgroup and
    two nodes on one socket: every check has something to read."""
    m = machine.lab(
        huge_pages={0: (8, 6)},
        numa_balancing=1,
        cgroup="0::/docker/abc\n",
        cgroup_files={"docker/abc/cpuset.mems.effective": "0-3\n"},
        packages={0: 0, 1: 0},
        demotion_enabled="true",
    )
    return m.write(root)


def _run_check(check: registry.Check, root: Path) -> tuple[list[nn.Finding], dict[str, str]]:
    """The check's findings on the files under `root`, and what could not be read;
    its findings carry its name and turn to JSON."""
    host = registry.Host.of(root)
    try:
        findings = check.run(host)
    except nn.NumaError:  # one of ours, naming what was wrong, is allowed
        return [], host.files.problems
    assert isinstance(findings, list) and all(isinstance(f, nn.Finding) for f in findings)
    assert {f.check for f in findings} <= {check.name}
    assert all(json.loads(json.dumps(f.as_dict())) == f.as_dict() for f in findings)
    return findings, host.files.problems


DAMAGE = {  # more kinds of damage, mixed, in tests/kernel/test_sysfs_fuzz.py
    "words": lambda path: path.write_text("n/a [x] 5-2 -1\n"),
    "not-utf8": lambda path: path.write_bytes(b"\xff\xfe\n"),
    "folder": lambda path: (path.unlink(), (path / "x").mkdir(parents=True)),
}


@pytest.mark.parametrize("check", registry.checks(), ids=lambda c: c.name)
def test_every_registered_check_reads_a_healthy_tree(tmp_path, check):
    findings, problems = _run_check(check, _lab_tree(tmp_path))
    assert problems == {}  # it read every file it needed as the kernel writes it
    assert bool(findings) == (check.name != "files")  # "files" names only problems


@pytest.mark.parametrize("check", registry.checks(), ids=lambda c: c.name)
def test_every_registered_check_survives_each_file_damaged(tmp_path, check):
    """Each file of the tree damaged in turn, each way: the check gives findings
    (or one of our errors), never another exception."""
    root = _lab_tree(tmp_path / "tree")
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    seen = 0
    for rel in files:
        data = (root / rel).read_bytes()
        for how, damage in DAMAGE.items():
            damage(root / rel)
            try:
                _, problems = _run_check(check, root)
            except Exception as exc:
                raise AssertionError(f"{check.name} on /{rel} made {how}: {exc!r}") from exc
            seen += bool(problems)
            if (root / rel).is_dir():
                __import__("shutil").rmtree(root / rel)
            (root / rel).write_bytes(data)
    assert seen  # the damage was noticed
    findings, _ = _run_check(check, root / "absent")  # and no tree at all
    assert check.name != "files" or findings


def test_every_registered_check_has_a_test():
    for path in sorted(Path(__file__).parent.glob("test_checks_*.py")):
        importlib.import_module(path.stem)  # their @covers marks, when not collected here
    names = {c.name for c in registry.checks()}
    assert not names - COVERED, f"no test marked @covers(...) for {sorted(names - COVERED)}"
    assert not COVERED - names, f"@covers names no registered check: {sorted(COVERED - names)}"


def test_the_registry_orders_checks_and_refuses_a_name_or_place_taken():
    found = registry.checks()
    assert [c.order for c in found] == sorted(c.order for c in found)
    assert len({c.name for c in found}) == len({c.order for c in found}) == len(found)
    assert found[-1].name == "files"  # last: it names what the others could not read
    with pytest.raises(ValueError, match="taken"):
        registry.check(found[0].name, order=12345)(lambda host: [])
    with pytest.raises(ValueError, match="taken"):
        registry.check("another", order=found[0].order)(lambda host: [])
    assert registry.checks() == found


def test_a_new_check_is_one_registered_function(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.check("example", order=55)
    def example(host: registry.Host) -> list[nn.Finding]:
        return [nn.Finding("example", Severity.INFO, f"{len(host.topo.nodes)} nodes")]

    report = diagnose(tmp_path, machine.lab())
    assert only(report, "example").summary == "4 nodes"
    infos = [f.check for f in report if f.severity is Severity.INFO]
    assert infos.index("example") < infos.index("huge-pages")  # its order: 55 < 60


@pytest.mark.parametrize(
    "probe, live, expected",
    [(False, False, set()), (True, False, {"policy-syscalls"}), (True, True, None)],
)
def test_what_a_check_needs_decides_where_it_runs(tmp_path, probe, live, expected):
    root = "/" if live else machine.lab().write(tmp_path)
    ran = {f.check for f in nn.doctor(root=root, probe=probe)}
    needing = {c.name for c in registry.checks() if c.needs != registry.Needs.FILES}
    assert needing == {"policy-syscalls", "threads"}
    if expected is None:
        assert needing <= ran
    else:
        assert ran & needing == expected
    for c in registry.checks():
        assert c.applies(probe=True, live=True)
        assert c.applies(probe=False, live=False) == (c.needs == registry.Needs.FILES)
