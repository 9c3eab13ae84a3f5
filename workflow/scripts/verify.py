"""Rule verify: one instance slot, family, magnitude, verifier -> pipeline.verify_slot
(always writes a record; a failure becomes an error record)."""

import logging

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "verify"):
    from medverify import pipeline

    record = pipeline.verify_slot(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.input.onnx,
        snakemake.input.instances,
        int(snakemake.wildcards.slot),
        snakemake.wildcards.family,
        int(snakemake.wildcards.k),
        snakemake.wildcards.verifier,
        snakemake.params.timeout_s,
        snakemake.output.record,
        model=snakemake.wildcards.model,
        channels=snakemake.params.channels,
        options=dict(snakemake.params.options),
    )
    logging.info("%s: %s", record.status, record.message)
