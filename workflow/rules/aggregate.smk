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
