"""The doctor's word on THP `defrag` (checks_memory.check_thp_defrag): what a
page fault costs under each setting, from copied trees and switched on this
machine (restored)."""

from __future__ import annotations

import pytest
from fixtures import machine
from fixtures.doctor import THP, covers, diagnose, written

import numa_numpy as nn

Severity = nn.Severity


@covers("thp-defrag")
@pytest.mark.parametrize(
    "defrag, severity, words",
    [
        ("always", Severity.WARNING, "stalls in direct reclaim"),
        ("defer", Severity.OK, "never stalls"),
        ("defer+madvise", Severity.OK, "others defer"),
        ("madvise", Severity.OK, "others take base pages"),
        ("never", Severity.INFO, "fewer huge"),
    ],
)
def test_each_defrag_setting_is_explained(tmp_path, defrag, severity, words):
    m = machine.lab(thp_defrag=defrag)
    (finding,) = diagnose(tmp_path, m).of("thp-defrag")
    assert finding.severity is severity and finding.summary == f"THP defrag={defrag}"
    assert words in finding.impact
    assert ("defer+madvise" in finding.fix) == (severity is not Severity.OK)


def test_defrag_switched_on_this_machine():
    with written(f"{THP}/defrag", "never"):
        (finding,) = nn.doctor(probe=False).of("thp-defrag")
    assert finding.severity is Severity.INFO and "defrag=never" in finding.summary
