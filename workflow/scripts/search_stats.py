"""Rule search_stats: critical_eps.csv -> statistics tables and figures -> stats.report."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "search_stats"):
    from medverify import stats

    out = snakemake.output
    stats.report(
        snakemake.input.table,
        out.fit,
        out.train_test,
        out.spearman,
        out.labels,
        out.ecdf,
        out.violin,
        out.scatter,
        out_beta_eps=out.beta_eps,
        out_beta_pairs=out.beta_pairs,
        out_beta_figure=out.beta_figure,
        out_twins=out.twins,
        out_twins_figure=out.twins_figure,
    )
