"""Rule guided: records -> joint-vs-guided table and figure -> aggregate.guided."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "guided"):
    from medverify import aggregate

    aggregate.guided(list(snakemake.input.records), snakemake.output.table, snakemake.output.figure)
