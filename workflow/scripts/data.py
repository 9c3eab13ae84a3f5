"""Rule data: check (or download) the dataset file -> pipeline.check_data."""

import logging

logging.basicConfig(
    filename=snakemake.log[0],
    filemode="w",
    level=logging.INFO,
    format="%(asctime)s %(name)s %(levelname)s %(message)s",
)

from medverify import pipeline  # noqa: E402

try:
    pipeline.check_data(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.output.summary,
        channels=snakemake.params.channels,
        allow_download=snakemake.config["allow_download"],  # not a param: no rerun on change
        md5=snakemake.params.md5,
    )
except Exception:
    logging.exception("rule data failed")
    raise
