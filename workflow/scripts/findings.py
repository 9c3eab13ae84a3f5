"""Rule findings: records, metrics and tables -> results/report/findings.md."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "findings"):
    from medverify import findings

    findings.write(
        list(snakemake.input.records),
        list(snakemake.input.metrics),
        dict(snakemake.params.config),
        snakemake.output.findings,
        data_dir=snakemake.params.data_dir,
        channels=dict(snakemake.params.channels),
        critical_eps=snakemake.params.critical_eps,
        guided=snakemake.params.guided,
    )
