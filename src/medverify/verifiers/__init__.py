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
import inspect
import itertools
import json

from ..errors import ConfigError
from .base import Problem, Result

BACKENDS = ("marabou", "crown", "milp", "exact", "abcrown")

__all__ = [
    "BACKENDS",
    "Problem",
    "Result",
    "applies",
    "backend_class",
    "check_options",
    "conda_env",
    "get",
    "option_names",
    "options_by_backend",
    "parse_options",
    "verifier_pairs",
]


def backend_class(name: str):
    """The backend's Verifier class by name (imports its module, not its solver)."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown verifier {name!r}: choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}").Verifier


def applies(verifier: str, family: str) -> bool:
    """Can ``verifier`` answer questions of ``family``? ``exact`` handles one-parameter
    families only; every other backend any family. The one rule of the workflow's
    matrix, the search stage and the benchmarks."""
    from ..perturbations import FAMILIES

    if family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}: choose one of {', '.join(FAMILIES)}")
    return verifier != "exact" or FAMILIES[family].parameters == 1


def verifier_pairs(verifiers) -> list[tuple[str, str]]:
    """Every unordered pair of distinct verifiers, in the order given (the agreement
    tables and confusion figures, one per pair, in this order)."""
    return list(itertools.combinations(list(dict.fromkeys(verifiers)), 2))


def get(name: str, **options):
    """A backend instance by name (lazy import)."""
    return backend_class(name)(**options)


def conda_env(name: str) -> str:
    """The conda env of a backend's jobs (``envs/<name>.yaml``, rule ``verify --use-conda``)."""
    return backend_class(name).conda_env


def option_names(verifier: str) -> tuple[str, ...]:
    """Keyword options a backend's constructor accepts (from its signature)."""
    params = inspect.signature(backend_class(verifier).__init__).parameters
    return tuple(
        name
        for name, p in params.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def check_options(verifier: str, options: dict, where: str) -> None:
    """A ConfigError naming ``where`` and the bad key or value unless ``verifier`` is a
    backend that accepts ``options`` (names from its constructor, values by building it)."""
    accepted = option_names(verifier)  # raises on an unknown verifier
    for key in options or {}:
        if key not in accepted:
            raise ConfigError(
                f"{where}: unknown option {key!r}: {verifier} accepts {', '.join(accepted)}"
            )
    try:
        get(verifier, **(options or {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_options(text: str, what: str = "--options") -> dict:
    """Backend options given as a JSON object on a command line; a ConfigError naming
    ``what`` and the text when it is not JSON or not an object."""
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} {text!r} is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ConfigError(f"{what} {text!r} is not a JSON object")
    return options


def options_by_backend(items) -> dict:
    """``backend={json object}`` strings (benchmark command lines) as
    ``{backend: options}``. A bad one raises ConfigError naming it."""
    out = {}
    for item in items or ():
        name, _, text = item.partition("=")
        if name not in BACKENDS:
            raise ConfigError(
                f"bad --options {item!r}: expected backend={{json object}}, backend one of "
                f"{', '.join(BACKENDS)}"
            )
        try:
            out[name] = parse_options(text, "the JSON")
        except ConfigError as exc:
            raise ConfigError(f"bad --options {item!r}: {exc}") from None
    return out
