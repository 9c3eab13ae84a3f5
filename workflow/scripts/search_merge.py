"""Rule search_merge: search records -> results/tables/critical_eps.csv -> stats.merge."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "search_merge"):
    from medverify import stats

    stats.merge(list(snakemake.input.records), snakemake.output.table)
