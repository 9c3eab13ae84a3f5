"""Test helper: waiting for a process to be gone."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _dead(pid: int) -> bool:
    """No process ``pid``, or only its zombie: it has exited and holds nothing but a
    process-table slot until its parent reaps it (an orphan's new parent, PID 1 in a
    container, may reap late)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def gone(pid: int, within_s: float = 5.0) -> bool:
    """True once process ``pid`` has exited (polled for up to ``within_s`` seconds)."""
    deadline = time.time() + within_s
    while time.time() < deadline:
        if _dead(pid):
            return True
        time.sleep(0.05)
    return False
