rule verify:
    """One verification job: slot {slot} of the model's instances, one family, one
    magnitude, one verifier under one strategy (joint | guided, see
    medverify.strategies). Always writes a record (failures become `error` records)."""
    input:
        onnx=rules.train.output.onnx,
        instances=rules.select.output.instances,
    output:
        record="results/{dataset}/{model}/verify/{family}/{k}/{verifier}/{strategy}/{slot}.json",
    params:
        data_dir=config["data_dir"],
        channels=lookup(dpath="dataset_settings/{dataset}/channels", within=config),
        timeout_s=config["timeout_s"],
        options=verifier_options,
        # the job caps its solver at its mem_mb: a new cap reruns it (resources do not)
        mem_limit_mb=verify_mem_mb,
    log:
        "logs/{dataset}/{model}/verify/{family}/{k}/{verifier}/{strategy}/{slot}.log",
    benchmark:
        "results/benchmarks/{dataset}/{model}/verify/{family}/{k}/{verifier}/{strategy}/{slot}.tsv"
    conda:
        verifier_env
    threads: verifier_threads
    resources:
        runtime=verify_runtime,
        mem_mb=verify_mem_mb,
    script:
        "../scripts/verify.py"
