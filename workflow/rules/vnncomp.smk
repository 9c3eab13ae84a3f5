rule vnncomp_export:
    """The configured matrix (every model's selected instances x families x magnitudes)
    as a VNN-COMP benchmark folder: onnx/ (structured families as the composed network
    over their parameters), vnnlib/, instances.csv, manifest.json, README.md,
    generate_properties.py; fails unless it passes the competition's format checks.
    Not part of `all`: ask for it by name (`snakemake vnncomp_export`)."""
    input:
        onnx=expand(rules.train.output.onnx, dataset=DATASETS, model=MODELS),
        instances=expand(rules.select.output.instances, dataset=DATASETS, model=MODELS),
    output:
        benchmark=directory("results/vnncomp/benchmark"),
    params:
        models=[(ds, m) for ds in DATASETS for m in MODELS],
        channels=dataset_channels(),
        data_dir=config["data_dir"],
        families=config["families"],
        timeout_s=config["timeout_s"],
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
