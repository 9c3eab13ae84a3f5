"""Verification backends behind one protocol.

Each backend module ``medverify.verifiers.<name>`` defines ``Verifier`` with::

    name: str
    def __init__(self, **options): ...          # backend settings (never reads config)
    def verify(self, problem: Problem, timeout_s: float) -> Result: ...
    def tool_version(self) -> str: ...

It maps its solver's answers to our vocabulary exactly once, imports its solver lazily
(inside ``verify``), and never imports another backend.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import Problem, Result

BACKENDS = ("marabou", "crown", "milp", "exact")

__all__ = ["BACKENDS", "Problem", "Result", "get"]


def get(name: str, **options):
    """A backend instance by name (lazy import)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown verifier {name!r}: choose one of {', '.join(BACKENDS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.Verifier(**options)
