rule vnncomp_export:
    """The configured matrix (every model's selected instances x families x magnitudes)
    as a VNN-COMP benchmark folder: onnx/ (structured families as the composed network
    over their parameters), vnnlib/, instances.csv, manifest.json, README.md,
    generate_properties.py; fails unless it passes the competition's format checks.
    Not part of `all`: ask for it by name (`snakemake vnncomp_export`)."""
    input:
        onnx=[rules.train.output.onnx.format(dataset=ds, model=m) for ds, m in model_pairs()],
        instances=[
            rules.select.output.instances.format(dataset=ds, model=m) for ds, m in model_pairs()
        ],
    output:
        benchmark=directory("results/vnncomp/benchmark"),
    params:
        models=model_pairs(),
        channels=dataset_channels(),
        data_dir=config["data_dir"],
        families=config["families"],
        timeout_s=config["timeout_s"],
        slots=config["instances"],
        seed=config["seed"],
    log:
        "logs/vnncomp/export.log",
    conda:
        BASE_ENV
    resources:
        runtime=30,
        mem_mb=4000,
    script:
        "../scripts/vnncomp_export.py"
