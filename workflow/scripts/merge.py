"""Rule merge: records -> tables, contradiction check -> aggregate.merge."""

import logging

logging.basicConfig(
    filename=snakemake.log[0],
    filemode="w",
    level=logging.INFO,
    format="%(asctime)s %(name)s %(levelname)s %(message)s",
)

from medverify import aggregate  # noqa: E402

try:
    aggregate.merge(
        list(snakemake.input.records),
        list(snakemake.params.verifiers),
        snakemake.output.records,
        snakemake.output.outcomes,
        snakemake.output.agreement,
        list(snakemake.output.confusion),
    )
except Exception:
    logging.exception("rule merge failed")
    raise
