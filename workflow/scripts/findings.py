"""Rule findings: records, metrics and tables -> results/report/findings.md."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "findings"):
    from medverify import findings

    def first(key):
        value = getattr(snakemake.input, key)
        return value if isinstance(value, str) else ([*value] or [None])[0]

    findings.write(
        list(snakemake.input.records),
        list(snakemake.input.metrics),
        dict(snakemake.params.config),
        snakemake.output.findings,
        data_dir=snakemake.params.data_dir,
        channels=dict(snakemake.params.channels),
        # each table is an empty list when its stage is not part of this run
        tables={key: first(key) for key in findings.TABLES},
        html_path=snakemake.output.html,
    )
