# Helpers that turn the validated config into the job matrix. Nothing here runs a job.
from medverify.config import matrix as medverify_matrix
from medverify.config import search_splits as medverify_search_splits
from medverify.data import input_size
from medverify.perturbations import FAMILIES as PERTURBATION_FAMILIES
from medverify.pipeline import job_threads, split_model_name
from medverify.resources import verify_job
from medverify.strategies import STRATEGIES
from medverify.verifiers import BACKENDS, applies, conda_env
from medverify.verifiers import verifier_pairs as _verifier_pairs

# conda env of the rules outside verify/search (a backend names its own: Verifier.conda_env).
BASE_ENV = "../../envs/base.yaml"


# The models and datasets of the run (medverify.config.Matrix: trained models on every
# dataset, PGD twins, external models on their own dataset); the checks across config keys
# ran in the Snakefile (medverify.config.check_matrix).
_MATRIX = medverify_matrix(config)
TRAINED = _MATRIX.trained
EXTERNAL = _MATRIX.external
MODELS = _MATRIX.models
DATASETS = _MATRIX.datasets


def model_pairs():
    return _MATRIX.pairs()


def pgd_options(wildcards):
    """TrainConfig PGD fields of a trained model: empty for a plain model."""
    if not split_model_name(wildcards.model)[1]:
        return {}
    adv = config["adversarial"]
    return {"pgd_eps_k": adv["eps_k"], "pgd_steps": adv["steps"], "pgd_step_k": adv["step_k"]}


def external_onnx(wildcards):
    return EXTERNAL[wildcards.model]["onnx"]

VERIFIERS = list(config["verifiers"])
SLOTS = list(range(config["instances"]))
STRATEGY_LIST = list(config["strategies"])


def cells():
    """(family, k, verifier) triples to run, excluded combinations left out."""
    return [
        (family, int(k), verifier)
        for family, ks in config["families"].items()
        for k in ks
        for verifier in VERIFIERS
        if applies(verifier, family)
    ]


def record_paths():
    return [
        f"results/{ds}/{model}/verify/{family}/{k}/{verifier}/{strategy}/{slot}.json"
        for ds, model in model_pairs()
        for family, k, verifier in cells()
        for strategy in STRATEGY_LIST
        for slot in SLOTS
    ]


def dataset_setting(key):
    """Input function: a dataset's setting (epochs falls back to the top-level value)."""

    def get(wildcards):
        value = config["dataset_settings"][wildcards.dataset][key]
        if key == "epochs" and value is None:
            return config["epochs"]
        return value

    return get


def verifier_options(wildcards):
    return config["verifier_options"].get(wildcards.verifier, {})


def verifier_threads(wildcards):
    """Cores of a verify/search job (pipeline.job_threads of its verifier's options)."""
    return job_threads(verifier_options(wildcards))


def verifier_env(wildcards):
    return f"../../envs/{conda_env(wildcards.verifier)}.yaml"


def verify_resources(wildcards):
    """mem_mb and runtime of one verify job (medverify.resources.verify_job)."""
    channels = config["dataset_settings"][wildcards.dataset]["channels"]
    return verify_job(
        wildcards.verifier, wildcards.family, input_size(channels), config["timeout_s"]
    )


def verify_runtime(wildcards):
    """Minutes: the verification timeout plus set-up and replay."""
    return verify_resources(wildcards).runtime_min


def verify_mem_mb(wildcards):
    """MB: config verify_mem_mb when set, else derived from verifier, family and input
    size. The job caps its solver's address space at the same number."""
    if config.get("verify_mem_mb") is not None:
        return int(config["verify_mem_mb"])
    return verify_resources(wildcards).mem_mb


def verifier_pairs():
    return _verifier_pairs(VERIFIERS)


def dataset_channels():
    return {ds: config["dataset_settings"][ds]["channels"] for ds in DATASETS}


wildcard_constraints:
    dataset=r"[a-z][a-z0-9_]*",
    model="|".join(MODELS),
    family="|".join(PERTURBATION_FAMILIES),
    k=r"\d+",
    verifier="|".join(BACKENDS),
    strategy="|".join(STRATEGIES),
    slot=r"\d+",


# --- search stage (workflow/rules/search.smk) ---------------------------------------
from medverify.search import method_applies

SEARCH = config["search"]
SEARCH_SPLITS = medverify_search_splits(config)


def search_cells():
    """(family, verifier, method) triples that apply (exact: one-parameter families)."""
    return [
        (family, verifier, method)
        for family in SEARCH["families"]
        for verifier in SEARCH["verifiers"]
        for method in SEARCH["methods"]
        if method_applies(method, verifier, family)
    ]


def search_paths():
    if not SEARCH["enabled"]:
        return []
    # external models may come with a test-only npz: they are searched on test only
    return [
        f"results/{ds}/{model}/search/{family}/{verifier}/{method}/{split}/{slot}.json"
        for ds, model in model_pairs()
        for family, verifier, method in search_cells()
        for split, n in SEARCH_SPLITS.items()
        if split == "test" or model not in EXTERNAL
        for slot in range(n)
    ]


def search_max_eps(wildcards):
    return SEARCH["max_eps"].get(wildcards.family, SEARCH["default_max_eps"])


def search_timeout(wildcards):
    """Per-probe timeout of a model's searches: its search.model_timeout_s entry, else
    search.timeout_s."""
    return SEARCH["model_timeout_s"].get(wildcards.model, SEARCH["timeout_s"])


def search_instances(wildcards):
    """The list a search job takes its slot from: `select`'s for the test split (the
    verify stage's own), `search_select`'s for the train split."""
    pair = {"dataset": wildcards.dataset, "model": wildcards.model}
    if wildcards.split == "test":
        return rules.select.output.instances.format(**pair)
    return rules.search_select.output.instances.format(split=wildcards.split, **pair)
