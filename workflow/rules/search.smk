# Robustness distributions: one critical-magnitude search per (dataset, model, family,
# verifier, method, split, slot), merged into results/tables/critical_eps.csv, then
# statistics tables and figures. Off unless config search.enabled.
from medverify.results import SEARCH_METHODS


wildcard_constraints:
    method="|".join(SEARCH_METHODS),
    split="test|train",


rule search_select:
    """Every correctly classified image of the train split (the same slot rule as
    `select`, whose list the test split's searches read: test slot i is verify slot i);
    the search jobs take the first search.train_instances."""
    wildcard_constraints:
        split="train",
    input:
        data=rules.data.output.summary,
        onnx=rules.train.output.onnx,
    output:
        instances="results/{dataset}/{model}/search/instances_{split}.json",
    params:
        data_dir=config["data_dir"],
        channels=lookup(dpath="dataset_settings/{dataset}/channels", within=config),
    log:
        "logs/{dataset}/{model}/search/select_{split}.log",
    conda:
        BASE_ENV
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../scripts/select.py"


rule search:
    """Critical magnitude of slot {slot} of the split's instances: bracket on the grid,
    every probe an ordinary verification cached under {slot}.probes/ (a rerun resumes)."""
    input:
        onnx=rules.train.output.onnx,
        instances=search_instances,
    output:
        record="results/{dataset}/{model}/search/{family}/{verifier}/{method}/{split}/{slot}.json",
    params:
        data_dir=config["data_dir"],
        channels=lookup(dpath="dataset_settings/{dataset}/channels", within=config),
        timeout_s=search_timeout,
        resolution=SEARCH["resolution"],
        max_eps=search_max_eps,
        options=verifier_options,
        mem_limit_mb=verify_mem_mb,  # each probe's cap (a new cap reruns the job)
        cache=lambda w: (
            f"results/{w.dataset}/{w.model}/search/{w.family}/{w.verifier}/{w.method}/"
            f"{w.split}/{w.slot}.probes"
        ),
    log:
        "logs/{dataset}/{model}/search/{family}/{verifier}/{method}/{split}/{slot}.log",
    benchmark:
        "results/benchmarks/{dataset}/{model}/search/{family}/{verifier}/{method}/{split}/{slot}.tsv"
    conda:
        verifier_env
    threads: verifier_threads
    resources:
        runtime=lambda w: SEARCH["job_runtime_min"],
        mem_mb=verify_mem_mb,
    script:
        "../scripts/search.py"


rule search_merge:
    """Every search record -> one row per search."""
    input:
        records=search_paths(),
    output:
        table=report(
            "results/tables/critical_eps.csv",
            caption="../report/critical_eps.rst",
            category="Robustness distributions",
        ),
    log:
        "logs/search_merge.log",
    conda:
        BASE_ENV
    resources:
        runtime=10,
        mem_mb=2000,
    script:
        "../scripts/search_merge.py"


rule search_stats:
    """Log-normal fits with KS tests, train vs test, cross-model Spearman, counterexample
    labels; ECDF, violin and scatter figures; critical brightness beside critical L-inf
    per input (quartiles, order check, figure); each plain model against its PGD twin
    (KS table, ECDF figure)."""
    input:
        table=rules.search_merge.output.table,
    output:
        fit=report(
            "results/tables/critical_lognormal.csv",
            caption="../report/critical_lognormal.rst",
            category="Robustness distributions",
        ),
        train_test=report(
            "results/tables/critical_train_test.csv",
            caption="../report/critical_train_test.rst",
            category="Robustness distributions",
        ),
        spearman=report(
            "results/tables/critical_spearman.csv",
            caption="../report/critical_spearman.rst",
            category="Robustness distributions",
        ),
        labels=report(
            "results/tables/critical_labels.csv",
            caption="../report/critical_labels.rst",
            category="Robustness distributions",
        ),
        ecdf=report(
            "results/figures/critical_ecdf.png",
            caption="../report/critical_ecdf.rst",
            category="Robustness distributions",
        ),
        violin=report(
            "results/figures/critical_violin.png",
            caption="../report/critical_violin.rst",
            category="Robustness distributions",
        ),
        scatter=report(
            "results/figures/critical_scatter.png",
            caption="../report/critical_scatter.rst",
            category="Robustness distributions",
        ),
        beta_eps=report(
            "results/tables/critical_beta_eps.csv",
            caption="../report/critical_beta_eps_table.rst",
            category="Robustness distributions",
        ),
        beta_pairs=report(
            "results/tables/critical_beta_eps_pairs.csv",
            caption="../report/critical_beta_eps_pairs.rst",
            category="Robustness distributions",
        ),
        beta_figure=report(
            "results/figures/critical_beta_eps.png",
            caption="../report/critical_beta_eps.rst",
            category="Robustness distributions",
        ),
        twins=report(
            "results/tables/critical_twins.csv",
            caption="../report/critical_twins_table.rst",
            category="Robustness distributions",
        ),
        twins_figure=report(
            "results/figures/critical_twins.png",
            caption="../report/critical_twins.rst",
            category="Robustness distributions",
        ),
    log:
        "logs/search_stats.log",
    conda:
        BASE_ENV
    resources:
        runtime=30,
        mem_mb=4000,
    script:
        "../scripts/search_stats.py"
