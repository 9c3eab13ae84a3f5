"""Rule figures: outcome bars, confusion heatmaps, counterexamples -> aggregate.figures."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "figures"):
    from medverify import aggregate

    aggregate.figures(
        list(snakemake.input.records),
        list(snakemake.params.verifiers),
        snakemake.params.data_dir,
        dict(snakemake.params.channels),
        snakemake.output.outcomes,
        snakemake.output.confusion,
        snakemake.output.counterexamples,
    )
