"""Rule vnncomp_export: the workflow's models and instances -> vnncomp.export_benchmark
(then the competition's format checks)."""

from medverify.pipeline import rule_log

with rule_log(snakemake.log[0], "vnncomp_export"):
    from medverify import vnncomp

    p = snakemake.params
    sources = [
        vnncomp.ModelSource(ds, model, onnx, instances, p.channels[ds])
        for (ds, model), onnx, instances in zip(
            p.models, snakemake.input.onnx, snakemake.input.instances, strict=True
        )
    ]
    vnncomp.export_benchmark(
        snakemake.output.benchmark,
        sources,
        dict(p.families),
        p.data_dir,
        p.timeout_s,
        slots=p.slots,
        seed=p.seed,
        command="snakemake vnncomp_export (see config.yaml)",
    )
    vnncomp.raise_on_problems(snakemake.output.benchmark)
