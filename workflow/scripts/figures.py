"""Rule figures: outcome bars, confusion heatmaps, counterexamples -> aggregate.figures."""

import logging

logging.basicConfig(
    filename=snakemake.log[0],
    filemode="w",
    level=logging.INFO,
    format="%(asctime)s %(name)s %(levelname)s %(message)s",
)

from medverify import aggregate  # noqa: E402

try:
    aggregate.figures(
        list(snakemake.input.records),
        list(snakemake.params.verifiers),
        snakemake.params.data_dir,
        dict(snakemake.params.channels),
        snakemake.output.outcomes,
        snakemake.output.confusion,
        snakemake.output.counterexamples,
    )
except Exception:
    logging.exception("rule figures failed")
    raise
