"""The findings document on handcrafted records: each claim's verdict follows from the
counts, every number is computed from the records, optional sections say "not run"."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medverify import aggregate, findings, results
from medverify.results import Record

IMAGE = np.linspace(0.1, 0.9, 16)


def rec(verifier, status, index, family="linf", k=4.0, dataset="pneumoniamnist", **kw):
    if status == "counterexample":
        kw.setdefault("counterexample", {"image": list(np.clip(IMAGE + k / 255, 0, 1))})
    return Record(
        dataset=dataset,
        model="mlp",
        index=index,
        true_label=0,
        family=family,
        magnitude_k=k,
        verifier=verifier,
        status=status,
        model_sha256="abc",
        slot=index,
        **kw,
    )


def frame(records):
    return aggregate.records_frame(records)


def matrix():
    """linf: 3 counterexamples, 1 robust; brightness: 1 counterexample, 2 robust, 1
    undecided (marabou timeout, crown robust on one; both unknown on another)."""
    recs = []
    for v in ("marabou", "crown"):
        recs += [rec(v, "counterexample", i) for i in range(3)] + [rec(v, "robust", 3)]
        recs += [rec(v, "counterexample", 0, "brightness"), rec(v, "robust", 1, "brightness")]
    recs += [rec("marabou", "timeout", 2, "brightness"), rec("crown", "robust", 2, "brightness")]
    recs += [rec("marabou", "unknown", 3, "brightness"), rec("crown", "unknown", 3, "brightness")]
    return frame(recs)


def test_brightness_against_linf_counts_and_verdicts():
    df = matrix()
    comp = findings.family_comparison(df)
    assert len(comp) == 1
    row = comp.iloc[0]
    assert (row["linf_cex"], row["brightness_cex"]) == (3, 1)
    assert (row["linf_undecided"], row["brightness_undecided"]) == (0, 1)
    verdict, text = findings.judge_more(comp, "brightness", "cex", "counterexamples")
    assert verdict == findings.NOT_SUPPORTED and "brightness: 1 counterexamples" in text
    verdict, _ = findings.judge_more(comp, "brightness", "undecided", "undecided")
    assert verdict == findings.SUPPORTED
    # without brightness at an equal k there is nothing to compare
    only_linf = df[df["family"] == "linf"]
    assert findings.judge_more(findings.family_comparison(only_linf), "brightness", "cex", "x")[
        0
    ] == (findings.NOT_COMPARABLE)


def test_agreement_claims():
    claims = dict((c, (v, e)) for c, v, e in findings.agreement_claims(matrix()))
    verdict, evidence = claims["The tools agree on every decided instance"]
    assert verdict == findings.SUPPORTED and "6 (question, verifier pair)" in evidence
    verdict, evidence = claims["α,β-CROWN resolves most of Marabou's unknowns"]
    # marabou undecided on 2 questions, crown decided 1: not most
    assert verdict == findings.NOT_SUPPORTED and "decided 1 of them" in evidence
    # a disagreement (robust vs unknown is no disagreement; robust vs cex is)
    df = frame([rec("marabou", "robust", 0), rec("crown", "counterexample", 0)])
    claims = dict((c, v) for c, v, _ in findings.agreement_claims(df))
    assert claims["The tools agree on every decided instance"] == findings.NOT_SUPPORTED


def test_outcome_totals_and_comparability():
    table, overall, verdict = findings.outcome_totals(matrix())
    assert set(table["verifier"]) == {"marabou", "crown"}
    crown = table[table["verifier"] == "crown"].iloc[0]
    assert (crown["jobs"], crown["robust"], crown["counterexample"], crown["unknown"]) == (
        8,
        3,
        4,
        1,
    )
    assert "of 16 jobs" in overall and "416 robust / 145 counterexample / 79 unknown" in overall
    assert verdict.startswith(findings.NOT_COMPARABLE) and "16 jobs" in verdict
    assert "datasets ['pneumoniamnist']" in verdict


def test_accuracy_verdicts():
    rows = findings.accuracy_rows(
        [
            {"dataset": "pneumoniamnist", "model": "mlp", "test_accuracy": 0.8400},
            {"dataset": "pneumoniamnist", "model": "cnn3", "test_accuracy": 0.9000},
            {"dataset": "retinamnist", "model": "mlp", "test_accuracy": 0.52},
            {"dataset": "breastmnist", "model": "mlp", "test_accuracy": 0.8},
        ]
    )
    assert list(rows["verdict"]) == [
        findings.SUPPORTED,
        findings.NOT_SUPPORTED,
        findings.NOT_COMPARABLE,
        findings.NOT_COMPARABLE,
    ]
    assert "retinamnist stands in for dermamnist" in rows.iloc[2]["reason"]
    assert rows.iloc[0]["ours_%"] == 84.0


def test_uniform_shift_residual():
    x = np.array([0.0, 0.3, 0.6, 0.99])
    eps = 8 / 255
    assert findings.uniform_shift_residual(x, np.clip(x + eps, 0, 1), eps) == pytest.approx(
        0, abs=1e-12
    )
    corner = np.clip(x + eps * np.array([1, -1, 1, -1]), 0, 1)
    assert findings.uniform_shift_residual(x, corner, eps) > 0.9
    df = matrix()  # the linf counterexamples are uniform shifts of IMAGE by +k/255
    df = df.assign(index=0)
    share = findings.uniform_shift_share(df, {"pneumoniamnist": np.array([IMAGE])})
    assert share.iloc[0]["linf_counterexamples"] == 6
    assert share.iloc[0]["close_to_uniform_shift"] == 6


def test_write_document(tmp_path):
    paths = []
    records = []
    for v in ("marabou", "crown"):
        records += [rec(v, "counterexample", 0), rec(v, "robust", 0, "brightness")]
        records += [rec(v, "robust", 0, "window")]
    for i, r in enumerate(records):
        p = tmp_path / f"{i}.json"
        results.write(r, p)
        paths.append(str(p))
    metrics = tmp_path / "pneumoniamnist" / "mlp" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"test_accuracy": 0.8333}))
    guided = tmp_path / "guided.csv"
    guided.write_text("dataset,model,strategy,seconds\npneumoniamnist,mlp,guided,1.5\n")
    out = tmp_path / "report" / "findings.md"
    config = {"datasets": ["pneumoniamnist"], "families": {"linf": [4]}, "timeout_s": 5}
    text = findings.write(
        paths,
        [str(metrics)],
        config,
        str(out),
        critical_eps=str(tmp_path / "missing.csv"),
        guided=str(guided),
    )
    assert out.read_text() == text
    assert "| pneumoniamnist | mlp | 83.33 | 83.33 (pneumoniamnist) | supported |" in text
    assert "- timeout_s: `5`" in text
    assert "not run (no critical_eps.csv table" in text
    assert "## Target-label guidance" in text and "1.5" in text
    assert "## Other families" in text and "window" in text
    assert '"Brightness gives more counterexamples than L∞": **not supported**' in text


def test_make_report_uses_the_overrides_of_make_run(tmp_path):
    """`make report` after an offline `make run` must see the same matrix (RetinaMNIST
    swapped in for DermaMNIST) or it asks for figures that were never made."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "pneumoniamnist.npz").write_bytes(b"")

    def config_of(target):
        out = subprocess.run(
            # --no-print-directory: under `make test` the nested make would add
            # "Entering/Leaving directory" lines to what we compare
            [
                "make",
                "-n",
                "--no-print-directory",
                "-o",
                ".venv/.installed",
                target,
                f"DATA_DIR={tmp_path}",
                "OFFLINE=1",
            ],  # fmt: skip
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = " ".join(out.split())
        return line[line.index("--config") :].replace("--report report.html", "").strip()

    run, report = config_of("run"), config_of("report")
    assert "datasets=[pneumoniamnist,retinamnist]" in run
    assert run == report
