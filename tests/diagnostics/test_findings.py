"""A finding as the doctor shows it (numa_numpy._diagnostics.findings): what it
means and the fix."""

from __future__ import annotations

from fixtures import machine
from fixtures.doctor import (
    diagnose,
    only,
)


def test_a_finding_shows_what_it_means_and_the_fix(tmp_path):
    report = diagnose(tmp_path, machine.lab(thp_enabled="always"))
    thp = only(report, "thp")
    assert str(thp).splitlines() == [
        f"[warning] thp: {thp.summary}",
        f"    means: {thp.impact}",
        f"    fix: {thp.fix}",
    ]
