"""Verification backends behind one protocol.

Each backend module ``medverify.verifiers.<name>`` defines ``Verifier`` with::

    name: str
    def __init__(self, **options): ...          # backend settings (never reads config)
    def verify(self, problem: Problem, timeout_s: float) -> Result: ...
    def tool_version(self) -> str: ...
    conda_env: str                              # its jobs' env, envs/<conda_env>.yaml

It maps its solver's answers to our vocabulary exactly once, imports its solver lazily
(inside ``verify``), and never imports another backend.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import Problem, Result

BACKENDS = ("marabou", "crown", "milp", "exact", "abcrown")

__all__ = [
    "BACKENDS",
    "Problem",
    "Result",
    "backend_class",
    "conda_env",
    "get",
    "options_by_backend",
]


def backend_class(name: str):
    """The backend's Verifier class by name (imports its module, not its solver)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown verifier {name!r}: choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}").Verifier


def get(name: str, **options):
    """A backend instance by name (lazy import)."""
    return backend_class(name)(**options)


def conda_env(name: str) -> str:
    """The conda env of a backend's jobs (``envs/<name>.yaml``, rule ``verify --use-conda``)."""
    return backend_class(name).conda_env


def options_by_backend(items) -> dict:
    """``backend={json object}`` strings (benchmark command lines) as
    ``{backend: options}``. A bad one raises ConfigError naming it."""
    import json

    out = {}
    for item in items or ():
        name, _, text = item.partition("=")
        try:
            options = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"bad --options {item!r}: {exc}") from None
        if name not in BACKENDS or not isinstance(options, dict):
            raise ConfigError(
                f"bad --options {item!r}: expected backend={{json object}}, backend one of "
                f"{', '.join(BACKENDS)}"
            )
        out[name] = options
    return out
