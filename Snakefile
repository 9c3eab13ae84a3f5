# medverify workflow: MedMNIST -> train -> ONNX -> instances -> one verification job per
# (instance, family, magnitude, verifier) -> tables, figures, report.
# Run: snakemake --workflow-profile profiles/default --cores 2   (see config.yaml)
from snakemake.utils import min_version, validate

from medverify import config as medverify_config

min_version("9.0")


configfile: "config.yaml"


# One-line errors naming the bad value (names from the package), then defaults.
medverify_config.retype_overrides(config, workflow.config_settings.config)
CONFIG_SOURCE = medverify_config.source(workflow.configfiles, workflow.config_settings.config)
try:
    medverify_config.check_file(
        config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml", CONFIG_SOURCE
    )
    validate(config, "workflow/schemas/config.schema.yaml")  # fills in the defaults
    medverify_config.check_matrix(config, CONFIG_SOURCE)  # needs the defaults
except medverify_config.ConfigError as exc:
    raise WorkflowError(str(exc)) from None
medverify_config.normalize_data_dir(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/vnncomp.smk"


rule all:
    input:
        rules.merge.output,
        rules.figures.output,
        rules.findings.output,
        expand(rules.examples.output.figure, dataset=DATASETS),
        rules.search_stats.output if SEARCH["enabled"] else [],
        rules.guided.output if len(STRATEGY_LIST) > 1 else [],
