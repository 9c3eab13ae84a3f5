# medverify workflow: MedMNIST -> train -> ONNX -> instances -> one verification job per
# (instance, family, magnitude, verifier) -> tables, figures, report.
# Run: snakemake --workflow-profile profiles/default --cores 2   (see config.yaml)
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


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
