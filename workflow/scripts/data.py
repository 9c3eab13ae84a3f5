"""Rule data: check (or download) the dataset file -> pipeline.check_data."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "data"):
    from medverify import pipeline

    pipeline.check_data(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.output.summary,
        channels=snakemake.params.channels,
        allow_download=snakemake.config["allow_download"],  # not a param: no rerun on change
        md5=snakemake.params.md5,
    )
