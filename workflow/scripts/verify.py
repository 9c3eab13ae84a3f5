"""Rule verify: one instance slot, family, magnitude, verifier, strategy -> pipeline.verify_slot
(always writes a record; a failure becomes an error record)."""

import logging

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "verify"):
    from medverify import pipeline
    from medverify.results import Question

    w = snakemake.wildcards
    question = Question(
        dataset=w.dataset,
        model=w.model,
        index=-1,  # filled in from the instances file
        true_label=-1,
        family=w.family,
        magnitude_k=int(w.k),
        verifier=w.verifier,
        strategy=w.strategy,
        timeout_s=float(snakemake.params.timeout_s),
        slot=int(w.slot),
    )
    record = pipeline.verify_slot(
        question,
        snakemake.params.data_dir,
        snakemake.input.onnx,
        snakemake.input.instances,
        snakemake.output.record,
        channels=snakemake.params.channels,
        options=dict(snakemake.params.options),
        mem_limit_mb=snakemake.resources.mem_mb,
    )
    logging.info("%s: %s", record.status, record.message)
