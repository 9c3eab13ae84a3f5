rule data:
    """Check the dataset file (md5), downloading it through medmnist when allowed."""
    output:
        summary="results/{dataset}/data.json",
    params:
        data_dir=config["data_dir"],
        channels=lookup(dpath="dataset_settings/{dataset}/channels", within=config),
        md5=lookup(dpath="dataset_settings/{dataset}/md5", within=config),
    log:
        "logs/{dataset}/data.log",
    conda:
        BASE_ENV
    resources:
        runtime=30,
        mem_mb=2000,
    script:
        "../scripts/data.py"
