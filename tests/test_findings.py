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
    guided_table(("milp", 3.0, 1.5)).to_csv(guided, index=False)
    out = tmp_path / "report" / "findings.md"
    html = tmp_path / "report" / "findings.html"
    config = {
        "datasets": ["pneumoniamnist"],
        "families": {"linf": [4]},
        "timeout_s": 5,
        "search": {"enabled": True},
        "strategies": ["joint", "guided"],
    }
    text = findings.write(
        paths,
        [str(metrics)],
        config,
        str(out),
        tables={"lognormal": str(tmp_path / "missing.csv"), "guided": str(guided)},
        html_path=str(html),
    )
    assert out.read_text() == text
    assert "| pneumoniamnist | mlp | 83.33 | 83.33 (pneumoniamnist) | supported |" in text
    assert "- timeout_s: `5`" in text
    assert "not run (no critical_lognormal.csv table in this run)" in text
    assert "## Target-label guidance" in text and "| milp | 1 | 3 | 1.5 | 2 |" in text
    assert "<h2>Target-label guidance</h2>" in html.read_text()
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


# --- robustness distributions, β vs ε, guidance: claims from synthetic tables ----------------

RES = 0.5 / 255


def search_rec(index, lo, hi, family="linf", method="bisection", verifier="crown", **kw):
    """One search record with the bracket [lo, hi] (hi None: beyond the range)."""
    q = results.Question(
        dataset="pneumoniamnist",
        model=kw.pop("model", "mlp"),
        index=index,
        true_label=0,
        family=family,
        magnitude_k=kw.pop("max_eps", 0.4) * 255,
        verifier=verifier,
        timeout_s=5,
        slot=index,
    )
    return results.SearchRecord.build(
        q,
        method,
        eps_robust=lo,
        eps_counterexample=hi,
        censored=kw.pop("censored", False),
        split=kw.pop("split", "test"),
        resolution=RES,
        max_eps=q.magnitude_k / 255,
        counterexample_label=None if hi is None else 1,
    )


def bracket(v):
    lo = float(np.floor(v / RES) * RES)
    return lo, lo + RES


def lognormal_sample(n, mu, sigma, seed):
    return np.exp(np.random.default_rng(seed).normal(mu, sigma, n))


def test_lognormal_claims_follow_the_stats_decisions():
    """A log-normal sample is supported, a bimodal one not supported; too few point values,
    a mostly beyond-range sample and a non-L∞ family are not comparable."""
    from medverify import stats

    good = lognormal_sample(60, np.log(0.03), 0.3, 1)
    bimodal = np.r_[
        lognormal_sample(40, np.log(0.01), 0.05, 2), lognormal_sample(40, np.log(0.1), 0.05, 3)
    ]
    recs = [search_rec(i, *bracket(v)) for i, v in enumerate(good)]
    recs += [search_rec(i, *bracket(v), model="cnn3") for i, v in enumerate(bimodal)]
    recs += [search_rec(i, *bracket(v), split="train") for i, v in enumerate(good[:6])]
    # 12 point values, 20 beyond the range: truncated
    recs += [
        search_rec(i, *bracket(v), model="cnn3", split="train") for i, v in enumerate(good[:12])
    ]
    recs += [search_rec(100 + i, 0.4, None, model="cnn3", split="train") for i in range(20)]
    recs += [search_rec(i, *bracket(v), family="brightness") for i, v in enumerate(good)]
    fit = stats.lognormal_fit(stats.search_frame(recs))
    claims = findings.lognormal_claims(fit).set_index(["model", "family", "split"])
    assert claims.loc[("mlp", "linf", "test"), "verdict"] == findings.SUPPORTED
    assert claims.loc[("cnn3", "linf", "test"), "verdict"] == findings.NOT_SUPPORTED
    assert "rejected at α = 0.05" in claims.loc[("cnn3", "linf", "test"), "reason"]
    few = claims.loc[("mlp", "linf", "train")]
    assert (
        few["verdict"] == findings.NOT_COMPARABLE
        and "too few uncensored inputs: 6" in few["reason"]
    )
    trunc = claims.loc[("cnn3", "linf", "train")]
    assert trunc["verdict"] == findings.NOT_COMPARABLE and "truncated sample" in trunc["reason"]
    assert "20 beyond the range" in trunc["reason"]
    bright = claims.loc[("mlp", "brightness", "test")]
    assert bright["verdict"] == findings.NOT_COMPARABLE
    assert "about L∞, not brightness; ours: log-normal not rejected" in bright["reason"]


def test_train_test_claims_follow_the_two_sample_test():
    from medverify import stats

    a = lognormal_sample(60, np.log(0.03), 0.3, 5)
    recs = [search_rec(i, *bracket(v)) for i, v in enumerate(a)]
    recs += [search_rec(i, *bracket(v * 1.01), split="train") for i, v in enumerate(a)]
    recs += [search_rec(i, *bracket(v), model="cnn3") for i, v in enumerate(a)]
    recs += [search_rec(i, *bracket(3 * v), model="cnn3", split="train") for i, v in enumerate(a)]
    recs += [search_rec(i, *bracket(v), model="mlp2") for i, v in enumerate(a)]
    recs += [search_rec(i, *bracket(v), model="mlp2", split="train") for i, v in enumerate(a[:4])]
    df = stats.search_frame(recs)
    claims = findings.train_test_claims(stats.train_vs_test(df), stats.lognormal_fit(df))
    claims = claims.set_index("model")
    assert claims.loc["mlp", "verdict"] == findings.SUPPORTED
    assert claims.loc["cnn3", "verdict"] == findings.NOT_SUPPORTED
    assert "train and test differ" in claims.loc["cnn3", "reason"]
    assert claims.loc["mlp2", "verdict"] == findings.NOT_COMPARABLE
    assert claims.loc["mlp2", "reason"].startswith("train split: too few uncensored inputs: 4")


def beta_eps_frame(violate=False):
    """Five inputs under brightness and L∞: 0 proven (β far above ε), 1 consistent (one grid
    cell), 2 β censored (its proven end still above ε), 3 β beyond its range, 4 violated when asked (β's counterexample
    below ε's proven-robust end). Brightness input 0 also has a wider bisection bracket:
    the exact route stands for it."""
    from medverify import stats

    b = [0.1, 0.0301, None, None, 0.012 if violate else 0.06]
    recs = [
        search_rec(0, 0.1, 0.1, "brightness", "exact", "exact", max_eps=1.0),
        search_rec(0, 0.09, 0.11, "brightness", "bisection", "crown", max_eps=1.0),
        search_rec(1, b[1], b[1], "brightness", "exact", "exact", max_eps=1.0),
        search_rec(2, 0.02, 0.3, "brightness", "bisection", "crown", censored=True, max_eps=1.0),
        search_rec(3, 1.0, None, "brightness", "exact", "exact", max_eps=1.0),
        search_rec(4, *bracket(b[4]), "brightness", "bisection", "crown", max_eps=1.0),
    ]
    recs += [search_rec(i, *bracket(v)) for i, v in enumerate([0.02, 0.0302, 0.01, 0.05, 0.05])]
    return stats.search_frame(recs)


def test_beta_eps_pairs_order_and_claim():
    from medverify import stats

    pairs = stats.beta_eps_pairs(beta_eps_frame()).set_index("index")
    assert pairs.loc[0, "source_beta"] == "exact/exact" and pairs.loc[0, "critical_beta"] == 0.1
    assert list(pairs["order"]) == ["proven", "consistent", "proven", "proven", "proven"]
    assert list(pairs["finished"]) == [True, True, False, True, True]
    verdict, evidence, violated = findings.beta_eps_claim(pairs.reset_index())
    assert (verdict, violated) == (findings.SUPPORTED, 0)
    assert (
        "5 inputs searched under both, 4 with both searches finished: holds on 4 of 4" in evidence
    )
    assert "(3 proven by the brackets, 1 within overlapping brackets)" in evidence

    bad = stats.beta_eps_pairs(beta_eps_frame(violate=True))
    assert list(bad["order"])[4] == "violated"
    verdict, evidence, violated = findings.beta_eps_claim(bad)
    assert (verdict, violated) == (findings.NOT_SUPPORTED, 1)
    assert "violated on 1" in evidence


def test_beta_eps_summary_quartiles_and_censoring():
    from medverify import stats

    summary = stats.beta_eps_summary(beta_eps_frame()).set_index("family")
    b, e = summary.loc["brightness"], summary.loc["linf"]
    assert (b["n"], b["n_finished"], b["n_censored"], b["n_beyond"]) == (5, 4, 1, 1)
    # finished β values 0.0301, 0.06x, 0.1, inf: quartiles are sample values
    b4 = stats.per_input(beta_eps_frame(), "brightness").set_index("index").loc[4, "critical"]
    assert b["median"] == pytest.approx(b4)
    assert b["q3"] == pytest.approx(0.1) and b["max_eps"] == 1.0
    # three of four beyond the range: the median lies past it
    beyond = [
        search_rec(i, 1.0, None, "brightness", "exact", "exact", max_eps=1.0) for i in range(3)
    ]
    beyond.append(search_rec(3, 0.2, 0.2, "brightness", "exact", "exact", max_eps=1.0))
    many = stats.beta_eps_summary(stats.search_frame(beyond)).iloc[0]
    assert (many["q1"], many["median"], many["q3"]) == (0.2, np.inf, np.inf)
    assert e["n_censored"] == 0 and e["median"] == pytest.approx(bracket(0.0302)[0] + RES / 2)
    shown = findings._quantiles(stats.beta_eps_summary(stats.search_frame(beyond)))
    assert list(shown.iloc[0][["q1", "median", "q3"]]) == ["0.2", "> 1", "> 1"]


def search_tables(tmp_path, frame):
    from medverify import stats

    csv = tmp_path / "critical_eps.csv"
    frame.to_csv(csv, index=False)
    names = ("fit", "tt", "sp", "lab", "ecdf.png", "violin.png", "scatter.png", "be", "bp")
    outs = {n: str(tmp_path / (n if "." in n else n + ".csv")) for n in names}
    outs["fig"] = str(tmp_path / "beta_eps.png")
    stats.report(str(csv), *(outs[n] for n in names[:7]), outs["be"], outs["bp"], outs["fig"])
    return {
        "lognormal": outs["fit"],
        "train_test": outs["tt"],
        "beta_eps": outs["be"],
        "beta_pairs": outs["bp"],
    }, outs["fig"]


def test_search_section_and_loud_violation(tmp_path):
    config = {"search": {"enabled": True, "families": ["linf", "brightness"]}}
    tables, fig = search_tables(tmp_path, beta_eps_frame())
    text, warnings = findings.search_section(config, **tables)
    assert warnings == [] and "**supported** — 5 inputs searched under both" in text
    assert (
        "| pneumoniamnist | mlp | test | brightness | bisection/crown,exact/exact | 5 | 4 | 1 | 1 |"
        in text
    )
    assert __import__("pathlib").Path(fig).stat().st_size > 0

    tables, _ = search_tables(tmp_path, beta_eps_frame(violate=True))
    text, warnings = findings.search_section(config, **tables)
    assert len(warnings) == 1 and "SOUNDNESS ALARM: β_crit < ε_crit proven on 1 input" in text
    doc = findings.document(matrix(), [], {"search": config["search"]}, tables=tables)
    # the alarm leads the document, before the configuration
    assert doc.index("SOUNDNESS ALARM") < doc.index("## Configuration of this run")

    # a search without brightness: the side-by-side section says why it did not run
    tables, _ = search_tables(tmp_path, beta_eps_frame().query("family == 'linf'"))
    text, _ = findings.search_section({"search": {"enabled": True, "families": ["linf"]}}, **tables)
    assert 'not run: the search families ["linf"] do not include both brightness and linf' in text


def test_twin_section_reads_the_lower_ends(tmp_path):
    """The twin subsection judges the shift by the lower-end KS test (every search has a
    lower end) and shows the point-value test beside it; no twins: it says why."""
    import pandas as pd

    from medverify import stats

    rng = np.random.default_rng(3)
    rows = []
    for model, scale in (("mlp", 0.02), ("mlp_pgd", 0.06), ("cnn3", 0.03), ("cnn3_pgd", 0.03)):
        for i in range(20):
            lo = float(rng.uniform(0.5, 1.5) * scale)
            censored = model == "mlp_pgd" and i % 4 != 0  # the twin's probes time out
            rows.append(
                dict(dataset="pneumoniamnist", family="linf", verifier="crown")
                | dict(method="bisection", split="test", model=model, eps_robust=lo)
                | dict(critical=np.nan if censored else lo + 0.001)
            )
    path = tmp_path / "critical_twins.csv"
    stats.twin_shift(pd.DataFrame(rows)).to_csv(path, index=False)
    config = {"search": {"enabled": True, "families": ["linf"]}}
    tables, _ = search_tables(tmp_path, beta_eps_frame())
    text, _ = findings.search_section(config, **tables, twins=str(path))
    section = text[text.index("### PGD adversarial training") :]
    mlp = next(line for line in section.splitlines() if "mlp → mlp_pgd" in line)
    cnn = next(line for line in section.splitlines() if "cnn3 → cnn3_pgd" in line)
    assert "twin certified more robust (α = 0.05)" in mlp and "| 20 / 5 |" in mlp
    assert "no significant shift at α = 0.05" in cnn
    text, _ = findings.search_section(config, **tables)
    assert "not run (no <model>_pgd twin searched in this run" in text


def test_not_run_reasons():
    text, _ = findings.search_section({"search": {"enabled": False}})
    assert "not run (search.enabled is false in this run's config)" in text
    text, _ = findings.guided_section({"strategies": ["joint"]})
    assert (
        'not run (config strategies is ["joint"]: the comparison needs both joint and guided)'
        in text
    )


def guided_table(*cells, mismatch=0):
    """Rows of aggregate.guided_table: (verifier, T joint, T guided) per cell."""
    from medverify.results import STATUSES

    rows = []
    for k, (verifier, t, tg) in enumerate(cells):
        row = dict(dataset="mnist10k", model="mlp24x2", family="linf", magnitude_k=k + 1)
        row.update(verifier=verifier, n=2, T_joint_s=t, T_guided_s=tg, sort_s=0.01)
        row.update(reduction=(t - tg) / t, speedup=t / tg, mismatch=mismatch)
        row.update(
            {
                f"{s}_{st}": (2 if st == "robust" else 0)
                for s in ("joint", "guided")
                for st in STATUSES
            }
        )
        rows.append(row)
    import pandas as pd

    return pd.DataFrame(rows)


def test_guided_claims_per_verifier():
    table = guided_table(("milp", 10.0, 1.0), ("milp", 2.0, 1.0), ("crown", 1.0, 2.0))
    mipverify = {"verifier_options": {"milp": {"prune": False}}}
    claims = findings.guided_claims(table, mipverify).set_index("verifier")
    assert claims.loc["milp", "verdict"] == findings.SUPPORTED
    assert claims.loc["milp", "ratio_T/T*"] == 6.0  # 12 s joint / 2 s guided
    assert "largest cell 10× (mnist10k/mlp24x2 linf k=1)" in claims.loc["milp", "reason"]
    assert "up to 36×" in claims.loc["milp", "reason"]
    assert claims.loc["crown", "verdict"] == findings.NOT_COMPARABLE
    assert "ours 0.5× overall" in claims.loc["crown", "reason"]
    # the default milp prunes CROWN-proven targets: not the paper's baseline
    default = findings.guided_claims(table, {"verifier_options": {"milp": {}}})
    assert default.set_index("verifier").loc["milp", "verdict"] == findings.NOT_COMPARABLE
    assert "prune = true" in default.set_index("verifier").loc["milp", "reason"]
    slower = findings.guided_claims(guided_table(("milp", 1.0, 3.0)), mipverify)
    assert slower.iloc[0]["verdict"] == findings.NOT_SUPPORTED


def test_guided_section_mismatch_is_loud(tmp_path):
    path = tmp_path / "guided.csv"
    guided_table(("milp", 1.0, 1.0), mismatch=1).to_csv(path, index=False)
    text, warnings = findings.guided_section({"strategies": ["joint", "guided"]}, str(path))
    assert len(warnings) == 1 and "joint and guided disagree on 1 decided instance" in text


def test_to_html_renders_the_markdown_subset():
    md = "# T\n\npara `x<1>` **b**\n\n- one\n- two & three\n\n| a | b |\n|---|---|\n| 1 | <2> |\n\n_(no rows)_\n"
    html = findings.to_html(md)
    assert (
        "<h1>T</h1>" in html and "<code>x&lt;1&gt;</code>" in html and "<strong>b</strong>" in html
    )
    assert "<ul><li>one</li><li>two &amp; three</li></ul>" in html
    assert (
        "<thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>&lt;2&gt;</td></tr>"
        in html
    )
    assert "<em>(no rows)</em>" in html and "---" not in html


def test_findings_rule_takes_the_search_and_guided_tables_as_inputs(tmp_path):
    """With search and guidance on, the findings job waits for (and reruns after) their
    tables; with both off it still runs, without them."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def findings_inputs(strategies, search):
        extra = tmp_path / f"extra_{search}.yaml"
        extra.write_text(f"strategies: {strategies}\nsearch: {{enabled: {search}}}\n")
        out = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--configfile", "tests/config/search.yaml"]
            + [str(extra), "-d", str(tmp_path), "--snakefile", "Snakefile", "findings"],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=300,
        )
        assert out.returncode == 0, (out.stdout + out.stderr)[-2000:]
        block = out.stdout[out.stdout.index("rule findings:") :]
        return block[: block.index("output:")]

    on = findings_inputs("[joint, guided]", "true")
    tables = ["critical_lognormal", "critical_train_test", "critical_beta_eps"]
    for table in [*tables, "critical_beta_eps_pairs", "critical_twins", "guided"]:
        assert f"results/tables/{table}.csv" in on
    off = findings_inputs("[joint]", "false")
    assert "critical_" not in off and "guided.csv" not in off and "records.csv" in off
