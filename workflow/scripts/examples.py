"""Rule examples: one dataset image under every family and magnitude -> aggregate.examples."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "examples"):
    from medverify import aggregate

    aggregate.examples(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.params.channels,
        dict(snakemake.params.families),
        snakemake.output.figure,
        seed=snakemake.params.seed,
    )
