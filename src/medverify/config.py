"""Check a workflow configuration before any job exists, with one-line errors.

The JSON schema (workflow/schemas/config.schema.yaml) states types, ranges and defaults;
the names it cannot know come from the package, the only list of them:
verifier names from :data:`medverify.verifiers.BACKENDS`, family names from
:data:`medverify.perturbations.FAMILIES`, and each backend's option names from its
``Verifier.__init__`` signature. A bad config fails here, not as hundreds of error records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ConfigError
from .perturbations import FAMILIES
from .verifiers import BACKENDS, check_options


def _where(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def check_schema(config: Mapping, schema: Mapping, source: str) -> None:
    """Validate against the JSON schema; the first (best) error as one line."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(dict(config)))
    if error is not None:
        key = _where(error.absolute_path) or "(top level)"
        raise ConfigError(f"config {source}: {key}: {error.message}")


def _known(source: str, key: str, what: str, names, known) -> None:
    for name in names:
        if name not in known:
            raise ConfigError(
                f"config {source}: {key}: unknown {what} {name!r}: choose from {', '.join(known)}"
            )


def check_names(config: Mapping, source: str) -> None:
    """Family, verifier, strategy, search-method and verifier-option names against the
    package (the schema lists none of them)."""
    from .results import SEARCH_METHODS
    from .strategies import STRATEGIES

    _known(source, "strategies", "strategy", config.get("strategies", []), STRATEGIES)
    search = config.get("search") or {}
    _known(source, "search.families", "family", search.get("families", []), FAMILIES)
    _known(source, "search.verifiers", "verifier", search.get("verifiers", []), BACKENDS)
    _known(source, "search.methods", "method", search.get("methods", []), SEARCH_METHODS)
    families = config.get("families", {})
    if not families:
        raise ConfigError(f"config {source}: families is empty: the matrix has no jobs")
    for family, ks in families.items():
        if family not in FAMILIES:
            raise ConfigError(
                f"config {source}: families: unknown family {family!r}: choose from "
                f"{', '.join(FAMILIES)}"
            )
        if not ks:
            raise ConfigError(f"config {source}: families.{family} has no magnitudes")
    verifiers = config.get("verifiers", [])
    if not verifiers:
        raise ConfigError(f"config {source}: verifiers is empty: the matrix has no jobs")
    for name in verifiers:
        if name not in BACKENDS:
            raise ConfigError(
                f"config {source}: verifiers: unknown verifier {name!r}: choose from "
                f"{', '.join(BACKENDS)}"
            )
    for name, options in (config.get("verifier_options") or {}).items():
        if name not in BACKENDS:
            raise ConfigError(
                f"config {source}: verifier_options: unknown verifier {name!r}: choose from "
                f"{', '.join(BACKENDS)}"
            )
        check_options(name, options, f"config {source}: verifier_options.{name}")


def check(config: Mapping, schema: Mapping | None = None, source: str = "config") -> None:
    """Everything :func:`check_schema` and :func:`check_names` check (schema optional)."""
    if schema is not None:
        check_schema(config, schema, source)
    check_names(config, source)


def source(configfiles, overrides) -> str:
    """Where a Snakemake config came from, for error messages."""
    names = [str(f) for f in configfiles] + (["--config"] if overrides else [])
    return " + ".join(dict.fromkeys(names)) or "config"


def _retyped(value):
    if isinstance(value, str):
        import yaml

        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if parsed is None or isinstance(parsed, bool | int | float) else value
    if isinstance(value, Mapping):
        return {key: _retyped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_retyped(item) for item in value]
    return value


def retype_overrides(config: dict, overrides: Mapping) -> None:
    """Give ``--config`` values inside lists and mappings their YAML types, in place.

    Snakemake types a top-level ``--config key=value`` (int, float, True/False) but reads
    a nested one with YAML's base loader, where every scalar is a string: ``search={enabled:
    false}`` arrives as ``{'enabled': 'false'}`` and ``families={linf: [1, 2]}`` as
    ``['1', '2']``. Scalars that YAML reads as a bool, number or null get that type back
    (``auto`` or a path stays a string)."""
    for key, value in overrides.items():
        if isinstance(value, Mapping | list) and key in config:
            config[key] = _retyped(config[key])


def check_file(config: Mapping, schema_path: str, source: str = "config") -> None:
    """:func:`check` with the schema read from a YAML file (the Snakefile's entry point)."""
    import yaml

    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    check(config, schema, source)


def normalize_data_dir(config: dict) -> None:
    """Spell ``config["data_dir"]`` one way: the folder's real path (symbolic links
    resolved) relative to the working directory's real path. It is a param of every rule
    that reads the data, so the same folder spelled two ways (absolute by ``make run``,
    relative by hand, through a link) reran the whole workflow."""
    import os

    real = os.path.realpath(config["data_dir"])
    config["data_dir"] = os.path.relpath(real, os.path.realpath(os.getcwd()))


@dataclass(frozen=True)
class Matrix:
    """Which models and datasets a (schema-validated, defaults filled) config names.
    Trained models: ``models`` on every dataset of ``datasets``, plus the PGD twin
    (``<model>_pgd``) of each model in ``adversarial.models``. External models (ONNX
    files from elsewhere) run on their own dataset only, with no train job."""

    train_datasets: list[str]
    trained: list[str]
    external: dict[str, dict]

    @property
    def models(self) -> list[str]:
        return self.trained + list(self.external)

    @property
    def datasets(self) -> list[str]:
        """The training datasets, then the external models' other datasets."""
        others = {spec["dataset"] for spec in self.external.values()}
        return self.train_datasets + sorted(others - set(self.train_datasets))

    def pairs(self) -> list[tuple[str, str]]:
        """(dataset, model) of every model that exists: trained x datasets, then external."""
        return [(ds, m) for ds in self.train_datasets for m in self.trained] + [
            (spec["dataset"], name) for name, spec in self.external.items()
        ]


def matrix(config: Mapping) -> Matrix:
    from .pipeline import ADVERSARIAL_SUFFIX

    adversarial = [f"{m}{ADVERSARIAL_SUFFIX}" for m in config["adversarial"]["models"]]
    return Matrix(
        list(config["datasets"]),
        list(config["models"]) + adversarial,
        dict(config["external_models"]),
    )


def search_splits(config: Mapping) -> dict[str, int]:
    """Split -> inputs per model of the search stage (``search.test_instances`` and
    ``search.train_instances``; a split with none is left out)."""
    search = config["search"]
    counts = (("test", search["test_instances"]), ("train", search["train_instances"]))
    return {split: n for split, n in counts if n > 0}


def slots_taken(config: Mapping, split: str) -> int:
    """How many slots of a model's list of correctly classified ``split`` images the run's
    jobs take: the verify jobs' ``instances`` (test split), and the search jobs' when
    the search stage is on."""
    searched = search_splits(config).get(split, 0) if config["search"]["enabled"] else 0
    return max(config["instances"] if split == "test" else 0, searched)


def check_matrix(config: Mapping, source: str = "config") -> None:
    """The checks across keys, on a config with the schema's defaults filled in: every
    dataset has its ``dataset_settings``, external model names clash with no trained
    one, every verifier applies to some family, ``search.model_timeout_s`` names models
    of the run."""
    from .pipeline import ADVERSARIAL_SUFFIX, split_model_name
    from .verifiers import applies

    m = matrix(config)
    settings = config["dataset_settings"]
    for ds in m.datasets:
        if ds not in settings:
            raise ConfigError(
                f"config {source}: dataset {ds!r} has no entry in dataset_settings "
                f"(configured: {', '.join(sorted(settings))})"
            )
    for name in m.external:
        if name in m.trained or split_model_name(name)[1]:
            raise ConfigError(
                f"config {source}: external model name {name!r} clashes with a trained model "
                f"name (or ends in {ADVERSARIAL_SUFFIX!r})"
            )
    families = list(config["families"])
    for v in config["verifiers"]:
        if not any(applies(v, f) for f in families):
            raise ConfigError(
                f"config {source}: verifier {v!r} applies to none of families {families}"
            )
    for name in config["search"]["model_timeout_s"]:
        if name not in m.models:
            raise ConfigError(
                f"config {source}: search.model_timeout_s names model {name!r}, which this "
                f"run does not have (models: {', '.join(m.models)})"
            )
