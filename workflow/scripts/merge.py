"""Rule merge: records -> tables, contradiction check -> aggregate.merge."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "merge"):
    from medverify import aggregate

    aggregate.merge(
        list(snakemake.input.records),
        list(snakemake.params.verifiers),
        snakemake.output.records,
        snakemake.output.outcomes,
        snakemake.output.agreement,
        list(snakemake.output.confusion),
    )
