"""A test-only backend that misbehaves for real in the verification child: it segfaults,
hangs, or allocates until the address-space cap stops it. Registered as
``medverify.verifiers.faulty`` by :func:`register` (a pytest fixture), never by the package.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from medverify.verifiers.base import Result

NAME = "faulty"


class Verifier:
    name = NAME

    def __init__(self, fault: str = "none"):
        self.fault = fault

    def tool_version(self) -> str:
        return "faulty 0"

    def verify(self, problem, timeout_s: float) -> Result:
        if self.fault == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.fault == "hang":
            while True:  # ignores its timeout: only the runner's kill stops it
                time.sleep(0.1)
        if self.fault == "oom":
            hoard = []
            while True:  # 64 MB at a time until the cap (or the machine) says no
                hoard.append(bytes(64 << 20))  # calloc: address space, no pages
        if self.fault == "exit":
            os._exit(7)
        return Result("unknown", message="faulty backend without a fault")


def register(monkeypatch) -> str:
    """Make ``faulty`` a backend name for this test only."""
    import medverify.verifiers as verifiers

    monkeypatch.setitem(sys.modules, f"{verifiers.__name__}.{NAME}", sys.modules[__name__])
    monkeypatch.setattr(verifiers, "BACKENDS", (*verifiers.BACKENDS, NAME))
    return NAME
