"""Statistics of robustness distributions on search records with known distributions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medverify import plots, stats
from medverify.plots import plt
from medverify.results import Question, SearchRecord

RES = 0.5 / 255


def _records(values, model="mlp", split="test", censored=(), beyond=(), labels=None, family="linf"):
    """Search records whose brackets sit at the grid around each value."""
    out = []
    for i, v in enumerate(values):
        q = Question(
            dataset="d",
            model=model,
            index=i,
            true_label=0,
            family=family,
            magnitude_k=0.4 * 255,
            verifier="crown",
            timeout_s=10,
            slot=i,
        )
        lo = np.floor(v / RES) * RES
        hi = lo + RES
        if i in beyond:
            hi = None
        if i in censored:
            lo = max(lo - 5 * RES, 0.0)
        out.append(
            SearchRecord.build(
                q,
                "bisection",
                eps_robust=float(lo),
                eps_counterexample=None if hi is None else float(hi),
                censored=i in censored,
                split=split,
                resolution=RES,
                max_eps=0.4,
                counterexample_label=None if hi is None else (labels[i] if labels else 1),
            )
        )
    return out


def _lognormal(n, mu, sigma, seed):
    return np.exp(np.random.default_rng(seed).normal(mu, sigma, n))


def test_frame_kinds_and_point_values():
    recs = _records([0.05, 0.06, 0.07, 0.08], censored={1}, beyond={2})
    df = stats.search_frame(recs)
    assert list(df["kind"]) == ["bracketed", "censored", "beyond", "bracketed"]
    assert df["critical"].notna().tolist() == [True, False, False, True]
    assert df.loc[0, "critical"] == pytest.approx(np.floor(0.05 / RES) * RES + RES / 2)


def test_lognormal_fit_recovers_parameters_and_accepts():
    x = _lognormal(200, np.log(0.05), 0.4, seed=1)
    df = stats.search_frame(_records(x, censored={3, 4}, beyond={5}))
    fit = stats.lognormal_fit(df)
    row = fit.iloc[0]
    assert row["n"] == 200 and row["n_censored"] == 2 and row["n_beyond"] == 1
    assert row["n_point"] == 197
    assert row["mu"] == pytest.approx(np.log(0.05), abs=0.08)
    assert row["sigma"] == pytest.approx(0.4, abs=0.06)
    # the grid-aware bootstrap accepts; the plain KS p-value (parameters from the same
    # sample) is the optimistic one
    assert not row["grid_reject"]
    assert row["ks_pvalue"] >= row["gof_pvalue"]
    assert row["mu_icml"] == pytest.approx(row["mu"], abs=0.05)


def test_grid_bootstrap_holds_its_level_where_goodness_of_fit_does_not():
    """On log-normal samples rounded to the 0.5/255 grid, the grid-aware bootstrap rejects
    about alpha of the time; scipy's continuous goodness_of_fit rejects far more often."""
    grid_rejects = 0
    for seed in range(20):
        x = stats._to_grid(_lognormal(150, np.log(0.03), 0.4, 100 + seed), RES)
        grid_rejects += stats.grid_bootstrap(x, RES, samples=199, seed=seed)[1] < 0.05
    assert grid_rejects <= 4
    x = stats._to_grid(_lognormal(150, np.log(0.03), 0.4, 99), RES)
    from scipy import stats as sps

    gof = sps.goodness_of_fit(
        sps.lognorm, x, known_params={"loc": 0}, statistic="ks", n_mc_samples=199, rng=1
    )
    assert gof.pvalue < 0.05  # the ties alone make it reject


def test_lognormal_fit_rejects_a_bimodal_sample():
    x = np.concatenate(
        [_lognormal(100, np.log(0.02), 0.05, 2), _lognormal(100, np.log(0.2), 0.05, 3)]
    )
    fit = stats.lognormal_fit(stats.search_frame(_records(x)))
    assert bool(fit.iloc[0]["gof_reject"]) and bool(fit.iloc[0]["ks_reject"])
    assert bool(fit.iloc[0]["grid_reject"])


def test_interval_censored_fit_uses_right_censored_rows():
    """Inputs robust beyond the range pull the censored MLE up; excluding them biases the
    point fit down."""
    x = _lognormal(300, np.log(0.1), 0.5, 4)
    top = 0.15
    beyond = {i for i, v in enumerate(x) if v > top}
    recs = _records(np.minimum(x, top), beyond=beyond)
    row = stats.lognormal_fit(stats.search_frame(recs)).iloc[0]
    assert row["n_beyond"] == len(beyond) > 50
    assert row["mu"] < np.log(0.1) - 0.15
    assert row["mu_icml"] == pytest.approx(np.log(0.1), abs=0.1)
    assert row["sigma_icml"] == pytest.approx(0.5, abs=0.1)


def test_train_vs_test_and_spearman():
    a = _lognormal(120, np.log(0.05), 0.3, 5)
    recs = _records(a, split="test") + _records(a * 1.02, split="train")
    recs += _records(a * 3, model="cnn3", split="test") + _records(a, model="cnn3", split="train")
    df = stats.search_frame(recs)
    tt = stats.train_vs_test(df).set_index("model")
    assert not tt.loc["mlp", "reject"]
    assert (
        tt.loc["cnn3", "reject"] and tt.loc["cnn3", "median_test"] > tt.loc["cnn3", "median_train"]
    )
    sp = stats.spearman(df)
    test_row = sp[sp["split"] == "test"].iloc[0]
    assert test_row["n"] == 120 and test_row["rho"] > 0.99  # same order, 3x scale
    pairs = stats.paired_models(df)
    assert len(pairs) == 240
    for fig in (plots.critical_ecdf(df), plots.critical_violin(df), plots.critical_scatter(pairs)):
        assert fig.axes
        plt.close(fig)


def test_twin_shift_pairs_each_model_with_its_pgd_twin():
    a = _lognormal(80, np.log(0.02), 0.3, 8)
    recs = _records(a) + _records(a * 2.5, model="mlp_pgd", censored={0, 1})
    recs += _records(a, model="cnn3") + _records(a * 1.01, model="cnn3_pgd")
    recs += _records(a, model="lone")  # no twin: no row
    df = stats.search_frame(recs)
    t = stats.twin_shift(df).set_index("model")
    assert sorted(t.index) == ["cnn3", "mlp"]
    assert t.loc["mlp", "twin"] == "mlp_pgd" and t.loc["mlp", "reject"]
    assert (t.loc["mlp", "n_plain"], t.loc["mlp", "n_twin"]) == (80, 78)  # censored left out
    assert 2.3 < t.loc["mlp", "median_ratio"] < 2.7
    assert not t.loc["cnn3", "reject"]
    # the lower ends count every search, the censored ones too (their lower end is 5
    # grid steps below): still a shift of about 2.5x
    assert (t.loc["mlp", "n_lower_plain"], t.loc["mlp", "n_lower_twin"]) == (80, 80)
    assert t.loc["mlp", "reject_lower"] and 2.2 < t.loc["mlp", "median_ratio_lower"] < 2.7
    assert not t.loc["cnn3", "reject_lower"]
    fig = plots.critical_twins(df)
    assert len([ax for ax in fig.axes if ax.get_title()]) == 2  # one panel per twin pair
    plt.close(fig)
    assert stats.twin_shift(stats.search_frame(_records(a))).empty


def test_counterexample_labels_table():
    recs = _records([0.05, 0.06, 0.07, 0.08], labels=[1, 2, 2, 1], beyond={3})
    table = stats.counterexample_labels(stats.search_frame(recs))
    counts = dict(zip(table["counterexample_label"], table["count"], strict=True))
    assert counts == {1: 1, 2: 2}


def test_report_writes_every_table_and_figure(tmp_path):
    recs = _records(_lognormal(30, np.log(0.05), 0.3, 6)) + _records(
        _lognormal(30, np.log(0.05), 0.3, 7), split="train"
    )
    paths = []
    from medverify import results

    for i, r in enumerate(recs):
        p = tmp_path / f"r{i}.json"
        results.write(r, p)
        paths.append(str(p))
    csv = tmp_path / "critical_eps.csv"
    stats.merge(paths, str(csv))
    assert len(pd.read_csv(csv)) == 60
    outs = [tmp_path / n for n in ("f.csv", "t.csv", "s.csv", "l.csv", "e.png", "v.png", "x.png")]
    stats.report(str(csv), *map(str, outs))
    assert all(p.exists() and p.stat().st_size > 0 for p in outs)
    assert len(pd.read_csv(outs[0])) == 2
