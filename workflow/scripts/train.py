"""Rule train: train, export ONNX, write metrics -> pipeline.train_and_export."""

import logging

logging.basicConfig(
    filename=snakemake.log[0],
    filemode="w",
    level=logging.INFO,
    format="%(asctime)s %(name)s %(levelname)s %(message)s",
)

from medverify import pipeline  # noqa: E402

try:
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
    )
except Exception:
    logging.exception("rule train failed")
    raise
