"""Rules select and search_select: every correctly classified image of the test split (of
the split wildcard, for search_select), in split order -> pipeline.select_instances."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], snakemake.rule):
    from medverify import pipeline
    from medverify.config import slots_taken

    split = snakemake.wildcards.get("split", "test")
    chosen = pipeline.select_instances(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.input.onnx,
        None,  # all of them: slot s does not depend on how many are asked for
        snakemake.output.instances,
        channels=snakemake.params.channels,
        md5=None,  # checked by rule data
        split=split,
    )
    # the slots the run takes (read here, not a param: a new count reruns no job)
    wanted = slots_taken(snakemake.config, split)
    if len(chosen) < wanted:
        pipeline.log.warning(
            "only %d correctly classified %s images: the jobs of slots %d..%d are error records",
            len(chosen),
            split,
            len(chosen),
            wanted - 1,
        )
