"""Helpers for tests that fork: wait for a child with a deadline for a hang."""

from __future__ import annotations

import os
import time


def wait_for_child(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None (after killing it) if it has not exited
    within `timeout` seconds: a deadline for a hang, not a timing claim."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.005)  # polling a child for exit; not synchronisation
