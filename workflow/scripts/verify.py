"""Rule verify: one instance slot, family, magnitude, verifier, strategy -> pipeline.verify_slot
(always writes a record; a failure becomes an error record)."""

import logging

from medverify.pipeline import job_options, rule_log

with rule_log(snakemake.log[0], "verify"):
    from medverify import pipeline
    from medverify.results import Question

    question = Question.of_job(dict(snakemake.wildcards.items()), snakemake.params.timeout_s)
    record = pipeline.verify_slot(
        question,
        snakemake.params.data_dir,
        snakemake.input.onnx,
        snakemake.input.instances,
        snakemake.output.record,
        channels=snakemake.params.channels,
        options=job_options(snakemake.params.options, snakemake.threads),
        mem_limit_mb=snakemake.resources.mem_mb,
    )
    logging.info("%s: %s", record.status, record.message)
