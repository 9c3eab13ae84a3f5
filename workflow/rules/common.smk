# Helpers that turn the validated config into the job matrix. Nothing here runs a job.
import math

from medverify.perturbations import FAMILIES as PERTURBATION_FAMILIES

# conda env per verifier family (--use-conda): marabou -> maraboupy; crown -> auto_LiRPA
# (installed --no-deps by envs/lirpa.post-deploy.sh); milp (PuLP + HiGHS) and exact
# (numpy only) share envs/milp.yaml. Every env installs medverify from this checkout.
VERIFIER_ENVS = {
    "marabou": "../../envs/marabou.yaml",
    "crown": "../../envs/lirpa.yaml",
    "milp": "../../envs/milp.yaml",
    "exact": "../../envs/milp.yaml",
}
BASE_ENV = "../../envs/base.yaml"


def _fail(message):
    raise WorkflowError(message)


DATASETS = list(config["datasets"])
for _ds in DATASETS:
    if _ds not in config["dataset_settings"]:
        _fail(
            f"config: dataset {_ds!r} has no entry in dataset_settings "
            f"(configured: {', '.join(sorted(config['dataset_settings']))})"
        )
MODELS = list(config["models"])
VERIFIERS = list(config["verifiers"])
SLOTS = list(range(config["instances"]))


def applies(verifier, family):
    """exact handles one-parameter (structured) families only."""
    return verifier != "exact" or PERTURBATION_FAMILIES[family].structured


for _v in VERIFIERS:
    if not any(applies(_v, f) for f in config["families"]):
        _fail(f"config: verifier {_v!r} applies to none of families {list(config['families'])}")


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
        f"results/{ds}/{model}/verify/{family}/{k}/{verifier}/{slot}.json"
        for ds in DATASETS
        for model in MODELS
        for family, k, verifier in cells()
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


def verifier_env(wildcards):
    return VERIFIER_ENVS[wildcards.verifier]


def verify_runtime(wildcards):
    """Minutes: the verification timeout plus two minutes of set-up and replay."""
    return math.ceil(float(config["timeout_s"]) / 60.0) + 2


def verifier_pairs():
    return [(a, b) for i, a in enumerate(VERIFIERS) for b in VERIFIERS[i + 1 :]]


def dataset_channels():
    return {ds: config["dataset_settings"][ds]["channels"] for ds in DATASETS}


wildcard_constraints:
    dataset=r"[a-z][a-z0-9_]*",
    model="|".join(MODELS),
    family="|".join(PERTURBATION_FAMILIES),
    k=r"\d+",
    verifier="marabou|crown|milp|exact",
    slot=r"\d+",
