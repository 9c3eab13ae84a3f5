"""Rule train: train, export ONNX, write metrics -> pipeline.train_and_export."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "train"):
    from medverify import pipeline

    pipeline.train_and_export(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.wildcards.model,
        snakemake.output.model,
        snakemake.output.onnx,
        snakemake.output.metrics,
        channels=snakemake.params.channels,
        md5=snakemake.params.md5,
        epochs=snakemake.params.epochs,
        seed=snakemake.params.seed,
        brightness=snakemake.params.brightness,
        contrast=snakemake.params.contrast,
        noise_sigma=snakemake.params.noise_sigma,
        threads=snakemake.threads,
        **snakemake.params.pgd,
    )
