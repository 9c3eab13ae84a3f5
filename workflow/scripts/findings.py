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
        # each is an empty list when its stage is not part of this run
        critical_eps=([*snakemake.input.critical_eps] or [None])[0],
        guided=([*snakemake.input.guided] or [None])[0],
    )
