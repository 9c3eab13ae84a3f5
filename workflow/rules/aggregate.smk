rule merge:
    """All records -> tidy tables, agreement and confusion matrices. Fails with a
    one-line message when one verifier proves `robust` where another holds a
    counterexample for the same question."""
    input:
        records=record_paths(),
    output:
        records=report(
            "results/tables/records.csv",
            caption="../report/records.rst",
            category="Tables",
        ),
        outcomes=report(
            "results/tables/outcomes.csv",
            caption="../report/outcomes_table.rst",
            category="Tables",
        ),
        agreement=report(
            "results/tables/agreement.csv",
            caption="../report/agreement_table.rst",
            category="Agreement",
        ),
        confusion=[
            report(
                f"results/tables/confusion/{a}__{b}.csv",
                caption="../report/confusion_table.rst",
                category="Agreement",
                labels={"pair": f"{a} vs {b}"},
            )
            for a, b in verifier_pairs()
        ],
    params:
        verifiers=VERIFIERS,
    log:
        "logs/merge.log",
    conda:
        BASE_ENV
    resources:
        runtime=30,
        mem_mb=4000,
    script:
        "../scripts/merge.py"


rule findings:
    """Each claim of the paper beside this run's number (medverify.findings), from the
    records and model metrics; the search and guided tables join when they exist."""
    input:
        records=record_paths(),
        metrics=[
            f"results/{ds}/{m}/metrics.json" for ds, m in model_pairs() if m not in EXTERNAL
        ],
        tables=rules.merge.output.records,  # the merge's contradiction check runs first
        # the search statistics and guided tables, when this run makes them (so findings
        # reruns when they change; their sections say "not run" otherwise). Functions:
        # rules search_stats and guided are defined after this one.
        lognormal=lambda w: [rules.search_stats.output.fit] if SEARCH["enabled"] else [],
        train_test=lambda w: [rules.search_stats.output.train_test] if SEARCH["enabled"] else [],
        beta_eps=lambda w: [rules.search_stats.output.beta_eps] if SEARCH["enabled"] else [],
        beta_pairs=lambda w: [rules.search_stats.output.beta_pairs] if SEARCH["enabled"] else [],
        twins=lambda w: [rules.search_stats.output.twins] if SEARCH["enabled"] else [],
        guided=lambda w: [rules.guided.output.table] if len(STRATEGY_LIST) > 1 else [],
    output:
        findings="results/report/findings.md",
        html=report(
            "results/report/findings.html",
            caption="../report/findings.rst",
            category="1. Findings",
        ),
    params:
        config={
            key: config[key]
            for key in ("datasets", "models", "families", "verifiers", "instances")
            + ("timeout_s", "verifier_options", "strategies", "search", "epochs", "seed")
        },
        data_dir=config["data_dir"],
        channels=dataset_channels(),
    log:
        "logs/findings.log",
    conda:
        BASE_ENV
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../scripts/findings.py"


rule guided:
    """Joint vs guided strategy on the same questions: time table and reduction figure
    (runs when config `strategies` holds both)."""
    input:
        records=record_paths(),
        tables=rules.merge.output.records,  # the merge's contradiction check runs first
    output:
        table=report(
            "results/tables/guided.csv",
            caption="../report/guided_table.rst",
            category="Guided",
        ),
        figure=report(
            "results/figures/guided.png",
            caption="../report/guided.rst",
            category="Guided",
        ),
    log:
        "logs/guided.log",
    conda:
        BASE_ENV
    resources:
        runtime=10,
        mem_mb=4000,
    script:
        "../scripts/guided.py"
