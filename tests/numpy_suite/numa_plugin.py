"""pytest plugin: run a test suite (NumPy's own) with a numa_numpy scope active.

Load it with ``-p numa_plugin`` (its directory on PYTHONPATH, as run.sh does).

* At ``pytest_configure`` -- before collection, so before any of NumPy's test
  modules is imported -- it enters one numa_numpy scope for the whole session.
  The policy comes from ``NUMA_NUMPY_SUITE_POLICY`` (default ``"bind:0"``;
  ``"interleave"``, ``"interleave:0-1"``, ``"preferred:0"``, ... are accepted:
  anything ``numa_numpy.policy()`` parses). ``NUMA_NUMPY_SUITE_STRICT=1`` makes
  the scope strict (a policy the kernel refuses raises instead of warning).
* Around every test it checks, in the thread that runs the test, that the scope
  is still active there (NumPy's handler is "numa_numpy", numa_numpy's
  ``current_policy()`` is ours, a fresh array is allocated by our handler). A test
  that leaves another handler installed is reported by name and our scope is
  entered again, so the rest of the run is still covered.
* At session end it checks the handler is still "numa_numpy", leaves the scope
  and checks that NumPy is back on the handler it had before ("default_allocator")
  with no numa_numpy scope left. Any failed check makes the session fail.
* The terminal summary reports what went through our allocator
  (``numa_numpy.memory_stats()``): the counters are snapshots (live blocks and
  bytes, chunk/large/cached bytes), so the plugin samples them after every test
  and reports the high-water marks as well as the values at the end.
* ``NUMA_NUMPY_SUITE_REPORT=path`` writes all of that as JSON (run.sh reads it).
* ``NUMA_NUMPY_SUITE_LOOPS=1`` also turns numa_numpy's node-parallel ufunc loops
  on for the whole session with the threshold at its minimum (1 element: every
  eligible call of two elements or more is split), and reports at the end how
  many calls were split (``numa_numpy.parallel_info()``); none split fails the
  session.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest

PLUGIN_NAME = "numa_numpy_suite"
OUR_HANDLER = "numa_numpy"


def _get_handler_name():
    try:
        from numpy._core.multiarray import get_handler_name
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import get_handler_name
    return get_handler_name


class NumaSuitePlugin:
    def __init__(self, spec: str, strict: bool, report_path: str | None) -> None:
        self.spec = spec
        self.strict = strict
        self.report_path = report_path
        self.scope: Any = None
        self.policy: Any = None
        self.entered = 0  # how many times our scope is on the stack
        self.handler_before: str | None = None
        self.thread_id: int | None = None
        self.problems: list[str] = []  # session-level failures
        self.lost: list[str] = []  # tests after which our handler was gone
        self.foreign_thread: list[str] = []  # tests not run in the scope's thread
        self.checked_tests = 0
        self.peak: dict[str, int] = {}
        self.final_stats: dict[str, Any] = {}
        self.handler_after_exit: str | None = None
        self.started = time.monotonic()
        self.loops = os.environ.get("NUMA_NUMPY_SUITE_LOOPS", "") not in ("", "0")
        self.loops_info: dict[str, Any] = {}

    # -- entering and leaving ---------------------------------------------------
    def enter(self) -> None:
        import numa_numpy as nn

        get_handler_name = _get_handler_name()
        self.handler_before = get_handler_name()
        self.scope = nn.policy(self.spec, strict=self.strict)
        self.policy = self.scope.policy
        self.scope.__enter__()
        self.entered = 1
        self.thread_id = threading.get_ident()
        if self.loops:
            nn.set_parallel(True, threshold=1)
        name = get_handler_name()
        if name != OUR_HANDLER:
            raise pytest.UsageError(
                f"numa_numpy suite plugin: entered {self.scope!r} but NumPy's handler "
                f"is {name!r}, not {OUR_HANDLER!r}"
            )

    def leave(self) -> None:
        import numa_numpy as nn

        get_handler_name = _get_handler_name()
        if threading.get_ident() != self.thread_id:
            self.problems.append("session finished in another thread than the one that "
                                 "entered the scope")
        name = get_handler_name()
        if name != OUR_HANDLER:
            self.problems.append(
                f"at session end NumPy's handler is {name!r}, not {OUR_HANDLER!r}")
        if nn.current_policy() != self.policy:
            self.problems.append(
                f"at session end numa_numpy.current_policy() is {nn.current_policy()!r}, "
                f"not {self.policy!r}")
        while self.entered:
            try:
                self.scope.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                self.problems.append(f"leaving the scope raised {exc!r}")
                break
            self.entered -= 1
        self.handler_after_exit = get_handler_name()
        if self.handler_after_exit != self.handler_before:
            self.problems.append(
                f"after leaving the scope NumPy's handler is {self.handler_after_exit!r}, "
                f"not the one before it ({self.handler_before!r})")
        if nn.current_policy() is not None:
            self.problems.append(
                f"after leaving the scope numa_numpy.current_policy() is "
                f"{nn.current_policy()!r}, not None")

    # -- per test -----------------------------------------------------------------
    def _check_here(self) -> str | None:
        """None when our scope is active in this thread, else what is wrong."""
        import numpy as np

        import numa_numpy as nn

        get_handler_name = _get_handler_name()
        name = get_handler_name()
        if name != OUR_HANDLER:
            return f"NumPy's handler is {name!r}"
        if nn.current_policy() != self.policy:
            return f"numa_numpy.current_policy() is {nn.current_policy()!r}"
        probe = np.empty(3)
        owner = get_handler_name(probe)
        if owner != OUR_HANDLER:
            return f"a new array was allocated by {owner!r}"
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if threading.get_ident() != self.thread_id:
            self.foreign_thread.append(item.nodeid)
        problem = self._check_here()
        if problem is not None:
            # Not this test's fault: the previous one (or a fixture) changed it.
            self._reenter(f"before {item.nodeid}: {problem}")

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: Any) -> None:
        self.checked_tests += 1
        self._sample()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        # The test body runs right here, in the thread that runs this hook.
        if threading.get_ident() != self.thread_id:
            self.foreign_thread.append(item.nodeid)
        outcome = yield
        problem = self._check_here()
        if problem is not None:
            self._reenter(f"after {item.nodeid}: {problem}")
        del outcome

    def _reenter(self, what: str) -> None:
        self.lost.append(what)
        self.scope.__enter__()
        self.entered += 1

    def _sample(self) -> None:
        import numa_numpy as nn

        for stats in nn.memory_stats().values():
            for key in ("live_blocks", "used_bytes", "chunk_bytes", "large_bytes",
                        "cached_bytes"):
                self.peak[key] = max(self.peak.get(key, 0), int(stats[key]))

    # -- end of session -------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        import numa_numpy as nn

        self._sample()
        self.final_stats = nn.memory_stats()
        if self.loops:
            self.loops_info = nn.parallel_info()
            nn.set_parallel(False)
            if not self.loops_info["split"] + self.loops_info["reduce_split"]:
                self.problems.append("parallel loops were on but no call was split")
        if self.entered:
            self.leave()
        if self.lost:
            self.problems.append(
                f"our handler was replaced during {len(self.lost)} test(s); first: "
                f"{self.lost[0]}")
        if self.foreign_thread:
            self.problems.append(
                f"{len(self.foreign_thread)} test(s) ran outside the scope's thread; "
                f"first: {self.foreign_thread[0]}")
        if self.problems and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.report_path:
            with open(self.report_path, "w") as f:
                json.dump(self.report(), f, indent=2, default=str)

    def report(self) -> dict[str, Any]:
        return {
            "policy_spec": self.spec,
            "policy": str(self.policy),
            "strict": self.strict,
            "handler_before": self.handler_before,
            "handler_after_exit": self.handler_after_exit,
            "tests_checked": self.checked_tests,
            "handler_lost": self.lost,
            "foreign_thread": self.foreign_thread,
            "problems": self.problems,
            "peak": self.peak,
            "memory_stats": self.final_stats,
            "loops": self.loops_info,
            "ok": not self.problems,
        }

    def pytest_report_header(self, config: pytest.Config) -> str:
        return (f"numa_numpy suite plugin: scope {self.scope!r} active since configure "
                f"(NumPy handler before: {self.handler_before!r})")

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int,
                                config: pytest.Config) -> None:
        tr = terminalreporter
        tr.section("numa_numpy allocator", sep="=", bold=True,
                   red=bool(self.problems), green=not self.problems)
        tr.line(f"scope: {self.scope!r}; tests checked in the scope's thread: "
                f"{self.checked_tests}")
        for key, stats in self.final_stats.items():
            tr.line(f"handler {key}")
            tr.line(f"  enforcement: {stats.get('enforcement')}; fallbacks: "
                    f"{stats.get('fallbacks')}; last_error: {stats.get('last_error')}")
            tr.line(f"  at end : {stats['live_blocks']} live arrays, "
                    f"{stats['used_bytes']} bytes in use, {stats['chunk_bytes']} bytes of "
                    f"small-block chunks, {stats['large_bytes']} bytes of large mappings, "
                    f"{stats['cached_bytes']} bytes cached")
        if self.peak:
            p = self.peak
            tr.line(f"  peak (sampled after each test): {p['live_blocks']} live arrays, "
                    f"{p['used_bytes']} bytes in use, {p['chunk_bytes']} chunk bytes, "
                    f"{p['large_bytes']} large-mapping bytes, {p['cached_bytes']} cached")
        if self.loops_info:
            i = self.loops_info
            tr.line(f"parallel loops (threshold {i['threshold']}, workers {i['workers']}, "
                    f"{i['loops_installed']} loops): {i['split']} calls split, "
                    f"{i['reduce_split']} reductions split, {i['serial']} run whole, "
                    f"{i['busy']} busy, {i['nested']} nested")
        tr.line(f"handler after leaving the scope: {self.handler_after_exit!r} "
                f"(before: {self.handler_before!r})")
        if self.problems:
            for problem in self.problems:
                tr.line(f"FAILED CHECK: {problem}", red=True, bold=True)
            for what in self.lost[:20]:
                tr.line(f"  handler lost {what}", red=True)
        else:
            tr.line("scope checks: OK (active for every test, still ours at the end, "
                    "exited cleanly)", green=True)


def pytest_configure(config: pytest.Config) -> None:
    # Registered under a name, so that loading the module twice enters one scope.
    if config.pluginmanager.has_plugin(PLUGIN_NAME):
        return
    plugin = NumaSuitePlugin(
        os.environ.get("NUMA_NUMPY_SUITE_POLICY", "bind:0").strip() or "bind:0",
        os.environ.get("NUMA_NUMPY_SUITE_STRICT", "") not in ("", "0"),
        os.environ.get("NUMA_NUMPY_SUITE_REPORT") or None,
    )
    plugin.enter()
    config.pluginmanager.register(plugin, PLUGIN_NAME)
