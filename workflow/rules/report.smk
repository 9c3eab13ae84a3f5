report: "../report/workflow.rst"


rule figures:
    """Outcome bars, confusion heatmaps and one figure per counterexample."""
    input:
        records=record_paths(),
        data=expand(rules.data.output.summary, dataset=DATASETS),
        tables=rules.merge.output.records,  # the merge's contradiction check runs first
    output:
        outcomes=report(
            "results/figures/outcomes.png",
            caption="../report/outcomes.rst",
            category="Outcomes",
        ),
        confusion=report(
            "results/figures/confusion.png",
            caption="../report/confusion.rst",
            category="Agreement",
        ),
        counterexamples=report(
            directory("results/figures/counterexamples"),
            patterns=["{name}.png"],
            caption="../report/counterexamples.rst",
            category="Counterexamples",
        ),
    params:
        verifiers=VERIFIERS,
        data_dir=config["data_dir"],
        channels=dataset_channels(),
    log:
        "logs/figures.log",
    conda:
        BASE_ENV
    resources:
        runtime=30,
        mem_mb=4000,
    script:
        "../scripts/figures.py"


rule examples:
    """Example images of a dataset under every configured family and magnitude."""
    input:
        data=rules.data.output.summary,
    output:
        figure=report(
            "results/figures/examples_{dataset}.png",
            caption="../report/examples.rst",
            category="Examples",
            labels={"dataset": "{dataset}"},
        ),
    params:
        data_dir=config["data_dir"],
        channels=lookup(dpath="dataset_settings/{dataset}/channels", within=config),
        families=config["families"],
        seed=config["seed"],
    log:
        "logs/{dataset}/examples.log",
    conda:
        BASE_ENV
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../scripts/examples.py"
