"""Rule select: the first n correctly classified test images -> pipeline.select_instances."""

import logging

logging.basicConfig(
    filename=snakemake.log[0],
    filemode="w",
    level=logging.INFO,
    format="%(asctime)s %(name)s %(levelname)s %(message)s",
)

from medverify import pipeline  # noqa: E402

try:
    pipeline.select_instances(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.input.onnx,
        snakemake.params.n,
        snakemake.output.instances,
        channels=snakemake.params.channels,
        md5=None,  # checked by rule data
    )
except Exception:
    logging.exception("rule select failed")
    raise
