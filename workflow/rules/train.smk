rule train:
    """Train one model (a <model>_pgd twin with PGD adversarial training), export
    single-file ONNX with an onnxruntime parity check."""
    wildcard_constraints:
        model="|".join(TRAINED) or "(?!)",
    input:
        data=rules.data.output.summary,
    output:
        model="results/{dataset}/{model}/model.pt",
        onnx="results/{dataset}/{model}/model.onnx",
        metrics="results/{dataset}/{model}/metrics.json",
    params:
        data_dir=config["data_dir"],
        channels=lookup(dpath="dataset_settings/{dataset}/channels", within=config),
        md5=lookup(dpath="dataset_settings/{dataset}/md5", within=config),
        epochs=dataset_setting("epochs"),
        brightness=lookup(dpath="dataset_settings/{dataset}/brightness", within=config),
        contrast=lookup(dpath="dataset_settings/{dataset}/contrast", within=config),
        noise_sigma=lookup(dpath="dataset_settings/{dataset}/noise_sigma", within=config),
        seed=config["seed"],
        pgd=pgd_options,
    log:
        "logs/{dataset}/{model}/train.log",
    benchmark:
        "results/benchmarks/{dataset}/{model}/train.tsv"
    conda:
        BASE_ENV
    # One thread: these nets are too small for torch's intra-op threads to pay (2 threads
    # spin-wait under load), and two models then train side by side on 2 cores.
    threads: 1
    # Before any verify or search job that is ready: every model trained early keeps all
    # cores busy to the end (without it, one model's 300 jobs ran while 3 waited to train).
    priority: 10
    resources:
        runtime=120,
        mem_mb=4000,
    script:
        "../scripts/train.py"


rule external_model:
    """An external ONNX classifier (config `external_models`): check that it loads into
    canonical form with its dataset's image size and agrees with onnxruntime, and copy
    it to where a trained model's ONNX would be. Selection, verification and everything
    after treat it like a trained model."""
    wildcard_constraints:
        model="|".join(EXTERNAL) or "(?!)",
    input:
        data=rules.data.output.summary,
        onnx=external_onnx,
    output:
        onnx="results/{dataset}/{model}/model.onnx",
        summary="results/{dataset}/{model}/external.json",
    params:
        data_dir=config["data_dir"],
        channels=lookup(dpath="dataset_settings/{dataset}/channels", within=config),
    log:
        "logs/{dataset}/{model}/external.log",
    conda:
        BASE_ENV
    resources:
        runtime=10,
        mem_mb=4000,
    script:
        "../scripts/external.py"


rule select:
    """Every correctly classified test image, in split order (slot s is the s-th); the
    verify jobs take slots 0..instances-1, so asking for more instances adds jobs and
    reruns none."""
    input:
        data=rules.data.output.summary,
        onnx=rules.train.output.onnx,
    output:
        instances="results/{dataset}/{model}/instances.json",
    params:
        data_dir=config["data_dir"],
        channels=lookup(dpath="dataset_settings/{dataset}/channels", within=config),
    log:
        "logs/{dataset}/{model}/select.log",
    conda:
        BASE_ENV
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../scripts/select.py"
