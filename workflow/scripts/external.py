"""Rule external_model: check an external ONNX classifier, copy it into place ->
pipeline.import_external."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "external_model"):
    from medverify import pipeline

    pipeline.import_external(
        snakemake.wildcards.dataset,
        snakemake.params.data_dir,
        snakemake.input.onnx,
        snakemake.output.onnx,
        snakemake.output.summary,
        channels=snakemake.params.channels,
    )
