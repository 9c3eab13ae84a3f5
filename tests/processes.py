"""Test helper: waiting for a process to be gone."""

from __future__ import annotations

import os
import time


def gone(pid: int, within_s: float = 5.0) -> bool:
    """True once no process ``pid`` exists (polled for up to ``within_s`` seconds)."""
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False
