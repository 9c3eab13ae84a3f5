"""Rule search: the critical magnitude of one instance slot -> search.search_slot
(probes cached in params.cache, so a rerun resumes)."""

import logging

from medverify.pipeline import job_options, rule_log

with rule_log(snakemake.log[0], "search"):
    from medverify import search
    from medverify.results import Question

    w = snakemake.wildcards
    question = Question.of_job(dict(w.items()), snakemake.params.timeout_s)
    record = search.search_slot(
        question,
        snakemake.params.data_dir,
        snakemake.input.onnx,
        snakemake.input.instances,
        snakemake.output.record,
        split=w.split,
        grid=search.Grid(float(snakemake.params.max_eps), float(snakemake.params.resolution)),
        method=w.method,
        channels=snakemake.params.channels,
        options=job_options(snakemake.params.options, snakemake.threads),
        cache_dir=snakemake.params.cache,
        mem_limit_mb=snakemake.resources.mem_mb,
    )
    logging.info("%s", search.bracket_line(record))
