"""Rule examples: one dataset image under every family and magnitude -> aggregate.examples."""

import logging

logging.basicConfig(
    filename=snakemake.log[0],
    filemode="w",
    level=logging.INFO,
    format="%(asctime)s %(name)s %(levelname)s %(message)s",
)

from medverify import aggregate  # noqa: E402

try:
    aggregate.examples(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.params.channels,
        dict(snakemake.params.families),
        snakemake.output.figure,
        seed=snakemake.params.seed,
    )
except Exception:
    logging.exception("rule examples failed")
    raise
