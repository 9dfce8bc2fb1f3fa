"""numa_numpy.diagnostics, the public face of the machine's checks: what it
exports, the same objects as numa_numpy's."""

from __future__ import annotations

import numa_numpy as nn
from numa_numpy import diagnostics
from numa_numpy._diagnostics.bandwidth import bandwidth_matrix
from numa_numpy._diagnostics.capabilities import Capabilities, capabilities, process_memory
from numa_numpy._diagnostics.doctor import Diagnosis, Finding, Severity, doctor


def test_all_names_what_the_module_exports():
    assert len(set(diagnostics.__all__)) == len(diagnostics.__all__)
    for name in diagnostics.__all__:
        assert hasattr(diagnostics, name), name
    namespace: dict[str, object] = {}
    exec("from numa_numpy.diagnostics import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(diagnostics.__all__)


def test_the_face_exports_the_implementations():
    assert diagnostics.doctor is doctor and diagnostics.Diagnosis is Diagnosis
    assert diagnostics.Finding is Finding and diagnostics.Severity is Severity
    assert diagnostics.capabilities is capabilities and diagnostics.Capabilities is Capabilities
    assert diagnostics.process_memory is process_memory
    assert diagnostics.bandwidth_matrix is bandwidth_matrix


def test_the_face_exports_the_same_objects_as_the_package():
    top = [name for name in diagnostics.__all__ if name != "bandwidth_matrix"]
    assert set(top) <= set(nn.__all__)
    for name in top:
        assert getattr(diagnostics, name) is getattr(nn, name), name
    assert set(diagnostics.__all__) == set(top) | {"bandwidth_matrix"}


def test_the_face_defines_nothing_of_its_own():
    own = [
        name
        for name, value in vars(diagnostics).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == diagnostics.__name__
    ]
    assert own == []
    assert diagnostics.__doc__ and ">>> " in diagnostics.__doc__


def test_the_face_works():
    report = diagnostics.doctor()
    assert isinstance(report, diagnostics.Diagnosis)
    assert all(isinstance(f, diagnostics.Finding) for f in report.findings)
    assert isinstance(diagnostics.capabilities(), diagnostics.Capabilities)
    result = diagnostics.bandwidth_matrix(1 << 16, repeats=1)
    assert result["memory"][-1] == "interleaved" and result["threads"] == 1
