"""The findings document: each claim of the paper that motivates this project beside the
number this run measured, marked supported / not supported / not comparable with the
reason. Every number is computed here from the run's records, model metrics and tables;
the only constants are the paper's own figures (``PAPER``).

Entry point: :func:`write` (the workflow's ``findings`` rule). The pieces
(:func:`accuracy_rows`, :func:`outcome_totals`, :func:`family_comparison`,
:func:`uniform_shift_share`, ...) take DataFrames and return DataFrames or text, so tests
can build them from small hand-made frames.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .results import DECIDED
from .stats import ALPHA

log = logging.getLogger(__name__)

#: The paper's figures (the claims we check). Accuracies in percent.
PAPER = {
    "accuracy": {
        ("pneumoniamnist", "mlp"): 83.33,
        ("pneumoniamnist", "cnn3"): 83.49,
        ("dermamnist", "mlp"): 68.83,
        ("dermamnist", "cnn3"): 71.27,
    },
    "outcomes": {"robust": 416, "counterexample": 145, "unknown": 79, "total": 640},
    "datasets": ("pneumoniamnist", "dermamnist"),
    "families": ("linf", "brightness"),
    "verifiers": ("marabou", "crown"),
    # the robustness-distributions paper's claims (quoted, no numbers of ours)
    "robustness": {
        "source": 'Bosman et al., "Robustness Distributions in Neural Network '
        'Verification", JAIR 2025',
        "lognormal": "critical-ε distributions are well described by a log-normal distribution",
        "train_test": "the critical-ε distributions of training and test inputs do not "
        "differ significantly",
    },
    # the target-label guidance paper's claim
    "guided": {
        "source": 'Wan et al., "Accelerating Robustness Verification of Deep Neural '
        'Networks Guided by Target Labels"',
        "claim": "target-label guidance speeds up MIPVerify-style MILP verification by up to 36×",
        "speedup": 36.0,
        "verifier": "milp",
    },
}
#: an accuracy within this many percentage points of the paper's counts as reproduced
ACCURACY_TOLERANCE_PP = 2.0
#: a stand-in dataset compared against the paper's dataset (reported, never "supported")
STAND_INS = {"retinamnist": "dermamnist"}
#: an L-infinity counterexample is "close to a uniform shift" when one shift beta
#: (|beta| <= eps) reproduces every pixel to within this fraction of eps (clip-aware)
UNIFORM_SHIFT_TOLERANCE = 0.1
UNDECIDED = ("unknown", "timeout", "error")
#: a distribution claim needs at least this many uncensored (point-valued) inputs per
#: sample, and point values for at least half of the searches (else it is a truncated
#: sample, which no log-normal test of the paper's kind addresses)
MIN_UNCENSORED = 10

SUPPORTED, NOT_SUPPORTED, NOT_COMPARABLE = "supported", "not supported", "not comparable"
#: the search-statistics tables (rule search_stats) the findings read, by input name
SEARCH_TABLES = ("lognormal", "train_test", "beta_eps", "beta_pairs", "twins")
#: every optional table of the findings rule (``document``'s ``tables`` keys)
TABLES = (*SEARCH_TABLES, "guided")


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def _table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured markdown table (no tabulate dependency)."""
    if df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append("" if np.isnan(v) else f"{v:.4g}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- accuracies ----------------------------------------------------------------------------


def accuracy_rows(metrics: Sequence[Mapping]) -> pd.DataFrame:
    """One row per trained model: our test accuracy beside the paper's, with a verdict.
    ``metrics``: the models' metrics.json contents (with ``dataset`` and ``model``)."""
    rows = []
    for m in metrics:
        ds, model = str(m.get("dataset")), str(m.get("model", m.get("architecture", "?")))
        ours = 100 * float(m["test_accuracy"])
        paper_ds = STAND_INS.get(ds, ds)
        paper = PAPER["accuracy"].get((paper_ds, model))
        if paper is None:
            verdict, reason = NOT_COMPARABLE, f"the paper reports no {ds}/{model} accuracy"
        elif paper_ds != ds:
            verdict = NOT_COMPARABLE
            reason = f"{ds} stands in for {paper_ds} (not available here)"
        elif abs(ours - paper) <= ACCURACY_TOLERANCE_PP:
            verdict = SUPPORTED
            reason = f"within {ACCURACY_TOLERANCE_PP:g} pp of the paper"
        else:
            verdict = NOT_SUPPORTED
            reason = f"{ours - paper:+.2f} pp from the paper (tolerance {ACCURACY_TOLERANCE_PP:g})"
        rows.append(
            {
                "dataset": ds,
                "model": model,
                "ours_%": round(ours, 2),
                "paper_%": paper if paper is None else f"{paper:.2f} ({paper_ds})",
                "verdict": verdict,
                "reason": reason,
            }
        )
    return pd.DataFrame(
        rows, columns=["dataset", "model", "ours_%", "paper_%", "verdict", "reason"]
    )


# --- outcome totals ------------------------------------------------------------------------


def outcome_totals(df: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """(per-verifier totals with decided rate, the overall line, the comparability
    verdict with its reason) from the record frame."""
    status = df["status"].astype(str)
    rows = []
    for verifier, grp in df.assign(status=status).groupby("verifier"):
        counts = grp["status"].value_counts()
        n = len(grp)
        rows.append(
            {
                "verifier": verifier,
                "jobs": n,
                **{s: int(counts.get(s, 0)) for s in ("robust", "counterexample", *UNDECIDED)},
                "decided_rate": _pct(grp["status"].isin(DECIDED).mean() if n else np.nan),
            }
        )
    table = pd.DataFrame(rows)
    n = len(df)
    counts = status.value_counts()
    decided = int(status.isin(DECIDED).sum())
    paper = PAPER["outcomes"]
    overall = (
        f"ours: {int(counts.get('robust', 0))} robust / {int(counts.get('counterexample', 0))} "
        f"counterexample / {n - decided} undecided (unknown, timeout or error) of {n} jobs, "
        f"{_pct(decided / n if n else np.nan)} decided; the paper: {paper['robust']} robust / "
        f"{paper['counterexample']} counterexample / {paper['unknown']} unknown of "
        f"{paper['total']}, {_pct((paper['robust'] + paper['counterexample']) / paper['total'])} "
        "decided."
    )
    reasons = []
    datasets = sorted(df["dataset"].unique())
    if sorted(PAPER["datasets"]) != datasets:
        reasons.append(f"datasets {datasets} (the paper: {list(PAPER['datasets'])})")
    families = sorted(df["family"].unique())
    if sorted(PAPER["families"]) != families:
        reasons.append(f"families {families} (the paper: {list(PAPER['families'])})")
    verifiers = sorted(df["verifier"].unique())
    if sorted(PAPER["verifiers"]) != verifiers:
        reasons.append(f"verifiers {verifiers} (the paper: {list(PAPER['verifiers'])})")
    if n != paper["total"]:
        reasons.append(f"{n} jobs (the paper: {paper['total']})")
    if reasons:
        verdict = f"{NOT_COMPARABLE}: the matrix differs — " + "; ".join(reasons)
    else:
        verdict = "comparable: same matrix shape (counts are set beside each other, not judged)"
    return table, overall, verdict


# --- structured vs L-infinity ---------------------------------------------------------------


def question_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """One row per question (dataset, model, family, k, image) over all verifiers:
    counterexample if any verifier has one, robust if any proved it, else undecided."""
    status = df["status"].astype(str)
    g = df.assign(cex=status.eq("counterexample"), rob=status.eq("robust")).groupby(
        ["dataset", "model", "family", "magnitude_k", "instance"]
    )
    q = g[["cex", "rob"]].any().reset_index()
    q["outcome"] = np.where(q["cex"], "counterexample", np.where(q["rob"], "robust", "undecided"))
    return q


def family_comparison(df: pd.DataFrame, family: str = "brightness") -> pd.DataFrame:
    """Per dataset, model and k present for both ``linf`` and ``family``: questions with a
    counterexample and undecided questions (over all verifiers) under each."""
    q = question_outcomes(df)
    rows = []
    for (ds, model, k), grp in q.groupby(["dataset", "model", "magnitude_k"]):
        fams = set(grp["family"])
        if not {"linf", family} <= fams:
            continue
        row = {"dataset": ds, "model": model, "k": k}
        for fam in ("linf", family):
            sub = grp[grp["family"] == fam]
            row[f"{fam}_n"] = len(sub)
            row[f"{fam}_cex"] = int((sub["outcome"] == "counterexample").sum())
            row[f"{fam}_undecided"] = int((sub["outcome"] == "undecided").sum())
        rows.append(row)
    return pd.DataFrame(rows)


def judge_more(table: pd.DataFrame, family: str, column: str, what: str) -> tuple[str, str]:
    """'family gives more <what> than L-infinity': supported when its total is larger."""
    if table.empty:
        return NOT_COMPARABLE, f"linf and {family} were not both run at an equal k"
    ours, linf = int(table[f"{family}_{column}"].sum()), int(table[f"linf_{column}"].sum())
    cells = len(table)
    more = int((table[f"{family}_{column}"] > table[f"linf_{column}"]).sum())
    text = (
        f"{family}: {ours} {what}, linf: {linf} {what} over {cells} (dataset, model, k) cells "
        f"at equal k; {family} has more in {more} of them"
    )
    return (SUPPORTED if ours > linf else NOT_SUPPORTED), text


def uniform_shift_residual(original: np.ndarray, perturbed: np.ndarray, eps: float) -> float:
    """min over |beta| <= eps of max_i |clip(x_i + beta) - x'_i|, divided by eps (0: the
    perturbation is exactly one uniform shift; up to 2 for an arbitrary L-inf corner)."""
    x = np.asarray(original, np.float64).reshape(-1)
    y = np.asarray(perturbed, np.float64).reshape(-1)
    if eps <= 0:
        return float("nan")
    betas = np.linspace(-eps, eps, 401)
    err = [np.max(np.abs(np.clip(x + b, 0, 1) - y)) for b in betas]
    return float(np.min(err) / eps)


def uniform_shift_share(df: pd.DataFrame, images: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per dataset, model and k: L-inf counterexamples, how many are close to a uniform
    shift (residual <= UNIFORM_SHIFT_TOLERANCE), and the median residual. ``images``:
    dataset -> its test images (indexed by the record's ``index``)."""
    cex = df[(df["family"] == "linf") & (df["status"].astype(str) == "counterexample")]
    rows = []
    for (ds, model, k), grp in cex.groupby(["dataset", "model", "magnitude_k"]):
        res = []
        for _, r in grp.iterrows():
            c = r["counterexample"]
            if not isinstance(c, Mapping) or "image" not in c or ds not in images:
                continue
            res.append(uniform_shift_residual(images[ds][int(r["index"])], c["image"], k / 255))
        res = np.array(res)
        rows.append(
            {
                "dataset": ds,
                "model": model,
                "k": k,
                "linf_counterexamples": len(res),
                "close_to_uniform_shift": int((res <= UNIFORM_SHIFT_TOLERANCE).sum()),
                "share": _pct((res <= UNIFORM_SHIFT_TOLERANCE).mean() if len(res) else np.nan),
                "median_residual_eps": float(np.median(res)) if len(res) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


# --- agreement ------------------------------------------------------------------------------


def agreement_claims(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) for 'tools agree on every decided instance' and
    'alpha,beta-CROWN resolves most of Marabou's unknowns'."""
    status = df["status"].astype(str)
    key = ["dataset", "model", "family", "magnitude_k", "instance"]
    wide = df.assign(status=status).pivot_table(
        index=key, columns="verifier", values="status", aggfunc="first"
    )
    out = []
    verifiers = list(wide.columns)
    claim = "The tools agree on every decided instance"
    if len(verifiers) < 2:
        out.append((claim, NOT_COMPARABLE, f"only one verifier ran ({verifiers})"))
    else:
        both = disagree = 0
        for i, a in enumerate(verifiers):
            for b in verifiers[i + 1 :]:
                d = wide[wide[a].isin(DECIDED) & wide[b].isin(DECIDED)]
                both += len(d)
                disagree += int((d[a] != d[b]).sum())
        verdict = SUPPORTED if both and disagree == 0 else NOT_SUPPORTED
        if not both:
            verdict = NOT_COMPARABLE
        out.append(
            (
                claim,
                verdict,
                f"{both} (question, verifier pair) with both decided, {disagree} disagree",
            )
        )
    claim = "α,β-CROWN resolves most of Marabou's unknowns"
    if not {"marabou", "crown"} <= set(verifiers):
        out.append((claim, NOT_COMPARABLE, "marabou and crown were not both run"))
    else:
        mu = wide[wide["marabou"].isin(UNDECIDED)]
        solved = int(mu["crown"].isin(DECIDED).sum())
        if mu.empty:
            out.append((claim, NOT_COMPARABLE, "marabou left no question undecided"))
        else:
            out.append(
                (
                    claim,
                    SUPPORTED if solved > len(mu) / 2 else NOT_SUPPORTED,
                    f"marabou undecided on {len(mu)} questions; crown (our α,β-CROWN-style "
                    f"backend) decided {solved} of them ({_pct(solved / len(mu))})",
                )
            )
    return out


# --- robustness distributions (search tables of medverify.stats) ---------------------------


def _read(path: str | None) -> pd.DataFrame | None:
    return pd.read_csv(path) if path and Path(path).exists() else None


def _p(x) -> str:
    return "n/a" if x is None or not np.isfinite(float(x)) else f"{float(x):.3g}"


def _paper_claim(family: str, verdict: str, reason: str, result: str) -> tuple[str, str]:
    """The paper's distribution claims are about L-infinity: another family's row shows
    our result but is not comparable."""
    if verdict == NOT_COMPARABLE or family == "linf":
        return verdict, reason
    return NOT_COMPARABLE, f"the paper's claim is about L∞, not {family}; ours: {result}"


def _too_few(n_point: int, n: int, censored: int, beyond: int) -> str | None:
    """The reason a sample cannot test a distribution claim, or None."""
    if n_point < MIN_UNCENSORED:
        return (
            f"too few uncensored inputs: {n_point} point values of {n} searches "
            f"({censored} censored, {beyond} beyond the range; at least {MIN_UNCENSORED} "
            "needed)"
        )
    if n - n_point > n / 2:
        return (
            f"truncated sample: only {n_point} of {n} searches have a point value "
            f"({censored} censored, {beyond} beyond the range)"
        )
    return None


def lognormal_claims(fit: pd.DataFrame) -> pd.DataFrame:
    """Per row of the log-normal table (stats.lognormal_fit: one model, family,
    method/verifier and split): the claim "critical-ε distributions are log-normal" judged
    by the parametric-bootstrap KS decision (``grid_reject``: accounts for the estimated
    parameters and the grid), with the plain KS p-value beside it."""
    rows = []
    for r in fit.itertuples(index=False):
        n, n_point = int(r.n), int(r.n_point)
        reason = _too_few(n_point, n, int(r.n_censored), int(r.n_beyond))
        grid_p = float(r.grid_pvalue) if pd.notna(r.grid_pvalue) else float("nan")
        if reason:
            verdict, result = NOT_COMPARABLE, ""
        elif not np.isfinite(grid_p):
            verdict, reason, result = NOT_COMPARABLE, "no test (the point values are equal)", ""
        else:
            rejected = grid_p < ALPHA
            result = (
                f"log-normal {'rejected' if rejected else 'not rejected'} at α = {ALPHA:g} "
                f"(bootstrap p = {_p(grid_p)}, plain KS p = {_p(r.ks_pvalue)})"
            )
            verdict, reason = (NOT_SUPPORTED if rejected else SUPPORTED), result
        verdict, reason = _paper_claim(str(r.family), verdict, reason, result)
        rows.append(
            {
                "dataset": r.dataset,
                "model": r.model,
                "family": r.family,
                "source": f"{r.method}/{r.verifier}",
                "split": r.split,
                "n": n,
                "n_point": n_point,
                "n_censored": int(r.n_censored),
                "n_beyond": int(r.n_beyond),
                "mu": r.mu,
                "sigma": r.sigma,
                "ks_p_plain": r.ks_pvalue,
                "p_bootstrap": r.grid_pvalue,
                "verdict": verdict,
                "reason": reason,
            }
        )
    cols = ["dataset", "model", "family", "source", "split", "n", "n_point", "n_censored"]
    cols += ["n_beyond", "mu", "sigma", "ks_p_plain", "p_bootstrap", "verdict", "reason"]
    return pd.DataFrame(rows, columns=cols)


def train_test_claims(tt: pd.DataFrame, fit: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per row of the train-vs-test table (stats.train_vs_test): the claim "train and test
    distributions do not differ significantly", judged by the two-sample KS decision;
    with the log-normal table, a split whose searches are mostly censored makes the row
    not comparable (the KS sees a truncated sample)."""
    counts = {}
    if fit is not None:
        for r in fit.itertuples(index=False):
            key = (r.dataset, r.model, r.family, r.verifier, r.method, r.split)
            counts[key] = (int(r.n), int(r.n_point), int(r.n_censored), int(r.n_beyond))
    rows = []
    for r in tt.itertuples(index=False):
        reason = None
        for split in ("test", "train"):
            n_point = int(getattr(r, f"n_{split}"))
            n, _, cens, beyond = counts.get(
                (r.dataset, r.model, r.family, r.verifier, r.method, split),
                (n_point, n_point, 0, 0),
            )
            why = _too_few(n_point, n, cens, beyond)
            if why:
                reason = f"{split} split: {why}"
                break
        p = float(r.ks_pvalue) if pd.notna(r.ks_pvalue) else float("nan")
        if reason:
            verdict, result = NOT_COMPARABLE, ""
        else:
            differ = p < ALPHA
            result = (
                f"train and test {'differ' if differ else 'do not differ'} at α = {ALPHA:g} "
                f"(two-sample KS D = {_p(r.ks_statistic)}, p = {_p(p)}; medians "
                f"{_p(r.median_test)} test, {_p(r.median_train)} train)"
            )
            verdict, reason = (NOT_SUPPORTED if differ else SUPPORTED), result
        verdict, reason = _paper_claim(str(r.family), verdict, reason, result)
        rows.append(
            {
                "dataset": r.dataset,
                "model": r.model,
                "family": r.family,
                "source": f"{r.method}/{r.verifier}",
                "n_test": int(r.n_test),
                "n_train": int(r.n_train),
                "ks_statistic": r.ks_statistic,
                "ks_p": r.ks_pvalue,
                "verdict": verdict,
                "reason": reason,
            }
        )
    cols = ["dataset", "model", "family", "source", "n_test", "n_train", "ks_statistic"]
    return pd.DataFrame(rows, columns=[*cols, "ks_p", "verdict", "reason"])


def beta_eps_claim(pairs: pd.DataFrame) -> tuple[str, str, int]:
    """(verdict, evidence, violations) of "β_crit ≥ ε_crit on every input where both
    searches finished" from the per-input pairs (stats.beta_eps_pairs). A violation means
    a brightness counterexample below a magnitude where L∞ is proven robust."""
    from .stats import beta_eps_check

    if pairs.empty:
        return NOT_COMPARABLE, "no input was searched under both brightness and linf", 0
    check = beta_eps_check(pairs)
    paired, finished = int(check["paired"].sum()), int(check["finished"].sum())
    holds, proven = int(check["holds"].sum()), int(check["proven"].sum())
    violated = int(check["violated"].sum())
    evidence = (
        f"{paired} inputs searched under both, {finished} with both searches finished: "
        f"holds on {holds} of {finished} ({proven} proven by the brackets, "
        f"{holds - proven} within overlapping brackets), violated on {violated} "
        f"(checked on all {paired})"
    )
    if violated:
        return NOT_SUPPORTED, evidence, violated
    if not finished:
        return NOT_COMPARABLE, evidence + "; no pair finished", 0
    return SUPPORTED, evidence, 0


def twin_rows(twins: pd.DataFrame) -> pd.DataFrame:
    """Per row of the twin table (``stats.twin_shift``): the shift of certified
    robustness under PGD training, read from the KS test of the lower ends (the largest
    magnitude proven robust, which every search has), with the point-value test beside
    it and the reason it can disagree (a twin's searches end censored more often)."""
    rows = []
    for r in twins.itertuples(index=False):
        ratio, p = float(r.median_ratio_lower), float(r.ks_pvalue_lower)
        if not np.isfinite(p):
            reading = "no test (a sample is empty)"
        elif p >= ALPHA:
            reading = f"no significant shift at α = {ALPHA:g}"
        else:
            more = ratio > 1 if np.isfinite(ratio) else r.median_twin_lower > r.median_plain_lower
            reading = f"twin certified {'more' if more else 'less'} robust (α = {ALPHA:g})"
        rows.append(
            {
                "dataset": r.dataset,
                "family": r.family,
                "split": r.split,
                "models": f"{r.model} → {r.twin}",
                "source": f"{r.method}/{r.verifier}",
                "median lower end": f"{_p(r.median_plain_lower)} → {_p(r.median_twin_lower)}",
                "ratio": _p(ratio),
                "KS D (p), lower ends": f"{_p(r.ks_statistic_lower)} ({_p(p)})",
                "point values": f"{int(r.n_plain)} / {int(r.n_twin)}",
                "KS p, point values": _p(r.ks_pvalue),
                "reading": reading,
            }
        )
    return pd.DataFrame(rows)


def _quantiles(summary: pd.DataFrame) -> pd.DataFrame:
    """The quartile table with beyond-range quartiles written as '> max_eps'."""
    out = summary.copy()
    for col in ("q1", "median", "q3"):
        out[col] = [
            (f"> {m:g}" if np.isinf(v) else ("" if np.isnan(v) else f"{v:.4g}"))
            for v, m in zip(out[col].astype(float), out["max_eps"].astype(float), strict=True)
        ]
    return out.drop(columns=["max_eps"])


def search_section(
    config: Mapping,
    lognormal: str | None = None,
    train_test: str | None = None,
    beta_eps: str | None = None,
    beta_pairs: str | None = None,
    twins: str | None = None,
) -> tuple[str, list[str]]:
    """The robustness-distributions section and its warnings (violations of β ≥ ε)."""
    title = "## Robustness distributions (critical magnitude)"
    search = dict(config.get("search") or {})
    fit, tt = _read(lognormal), _read(train_test)
    if fit is None:
        why = (
            "search.enabled is false in this run's config"
            if not search.get("enabled")
            else "no critical_lognormal.csv table in this run"
        )
        return f"{title}\n\nnot run ({why}).\n", []
    src = PAPER["robustness"]
    run = ", ".join(
        f"{k} {json.dumps(search[k])}"
        for k in ("families", "verifiers", "methods", "test_instances", "train_instances")
        + ("max_eps", "resolution", "timeout_s")
        if k in search
    )
    parts = [
        title,
        "",
        f"Search run: {run} (per-probe timeout in s; magnitudes in [0, 1] pixel units).",
        "Censored searches (a probe timed out or stayed unknown) and searches with no "
        "counterexample up to the top of the range are excluded from the tests and "
        f"counted; a sample with fewer than {MIN_UNCENSORED} point values, or point values "
        "for less than half of its searches, is not comparable.",
        "",
        f'### "{src["lognormal"]}" ({src["source"]})',
        "",
        "Decision: the parametric-bootstrap KS test of `medverify.stats` (refits each "
        "simulated sample and rounds it to the search grid, so it accounts for both); the "
        "plain KS p-value (optimistic: parameters from the same sample) beside it. From "
        f"`{lognormal}`.",
        "",
        _table(lognormal_claims(fit)),
    ]
    if tt is not None:
        parts += [
            f'### "{src["train_test"]}" ({src["source"]})',
            "",
            f"Two-sample KS of the point values, train against test, per model. From `{train_test}`.",
            "",
            _table(train_test_claims(tt, fit)),
        ]
    warnings = []
    summary, pairs = _read(beta_eps), _read(beta_pairs)
    parts += ["### Critical brightness β beside critical L∞ ε", ""]
    if summary is None or pairs is None:
        parts += ["not run (no critical_beta_eps tables in this run).", ""]
    elif summary.empty or set(summary["family"]) != {"brightness", "linf"}:
        parts += [
            f"not run: the search families {json.dumps(search.get('families'))} do not "
            "include both brightness and linf.",
            "",
        ]
    else:
        verdict, evidence, violated = beta_eps_claim(pairs)
        parts += [
            "Quartiles per input in [0, 1] pixel units over finished searches (a search "
            "with no counterexample in its range counts as beyond it: '> max'); censored "
            f"searches excluded and counted. From `{beta_eps}` (figure "
            "`results/figures/critical_beta_eps.png`).",
            "",
            _table(_quantiles(summary)),
            '- "Coupled brightness can never be weaker than L∞ at the same magnitude: '
            "β_crit ≥ ε_crit per input (a shift of at most b lies inside the L∞ ball of "
            f'radius b)": **{verdict}** — {evidence}.',
        ]
        if violated:
            msg = (
                f"**SOUNDNESS ALARM: β_crit < ε_crit proven on {violated} input(s)** — a "
                "brightness counterexample below a magnitude where L∞ is proven robust "
                "cannot happen with sound verifiers: a bug in a backend, the replay or the "
                f"search. See the rows with order = violated in `{beta_pairs}`."
            )
            parts += ["", msg]
            warnings.append(msg)
        parts.append("")
    parts += ["### PGD adversarial training: each model against its twin", ""]
    tw = _read(twins)
    if tw is None or tw.empty:
        parts += ["not run (no <model>_pgd twin searched in this run: adversarial.models).", ""]
    else:
        parts += [
            "Two-sample KS per model and its PGD-trained twin on the lower ends (the "
            "largest magnitude proven robust, which every search has, censored or not), in "
            "[0, 1] pixel units. The point-value test beside it sees only the searches "
            "that ended at the grid resolution: a more robust twin is censored more often "
            "(its probes are harder), so that sample keeps its least robust inputs and "
            f"can even read the other way. From `{twins}` (figure "
            "`results/figures/critical_twins.png`).",
            "",
            _table(twin_rows(tw)),
        ]
    return "\n".join(parts), warnings


# --- target-label guidance (guided table of aggregate.guided_table) -------------------------


def _milp_prunes(config: Mapping) -> bool:
    """Whether this run's joint milp already skips CROWN-proven targets (its ``prune``
    option; the default from the backend's signature)."""
    import inspect

    from .verifiers import backend_class

    default = inspect.signature(backend_class("milp").__init__).parameters["prune"].default
    opts = dict((config.get("verifier_options") or {}).get("milp") or {})
    return bool(opts.get("prune", default))


def guided_claims(table: pd.DataFrame, config: Mapping) -> pd.DataFrame:
    """Per verifier: total joint time T and guided time T* over every cell both ran, the
    overall ratio T/T*, the largest cell ratio, open (unknown/timeout/error) counts and
    mismatches, beside the paper's "up to 36×" for a MIPVerify-style MILP."""
    claim = PAPER["guided"]
    rows = []
    for verifier, g in table.groupby("verifier", sort=True):
        t, tg = float(g["T_joint_s"].sum()), float(g["T_guided_s"].sum())
        ratio = t / tg if tg > 0 else float("nan")
        best = g.loc[g["speedup"].astype(float).idxmax()] if g["speedup"].notna().any() else None
        open_j = int(sum(g[f"joint_{s}"].sum() for s in UNDECIDED if f"joint_{s}" in g))
        open_g = int(sum(g[f"guided_{s}"].sum() for s in UNDECIDED if f"guided_{s}" in g))
        best_text = (
            "n/a"
            if best is None
            else f"{float(best['speedup']):.3g}× ({best['dataset']}/{best['model']} "
            f"{best['family']} k={float(best['magnitude_k']):g})"
        )
        ours = (
            f"ours {ratio:.3g}× overall (T = {t:.3g} s, T* = {tg:.3g} s over {int(g['n'].sum())}"
            f" instances), largest cell {best_text}"
            + (f"; T is a lower bound ({open_j} joint jobs open)" if open_j else "")
        )
        if verifier != claim["verifier"]:
            verdict = NOT_COMPARABLE
            reason = f"the paper's figure is for a MIPVerify-style MILP, not {verifier}; {ours}"
        elif _milp_prunes(config):
            verdict = NOT_COMPARABLE
            reason = (
                "our joint milp already skips the targets its CROWN bounds prove (milp "
                "option prune = true), the paper's MIPVerify baseline does not (set "
                f"verifier_options milp prune: false to compare); {ours}"
            )
        elif not np.isfinite(ratio):
            verdict, reason = NOT_COMPARABLE, f"no guided time measured; {ours}"
        else:
            verdict = SUPPORTED if ratio > 1 else NOT_SUPPORTED
            reason = (
                f"guided is {'faster' if ratio > 1 else 'not faster'} overall; {ours} "
                f"(the paper: up to {claim['speedup']:g}×; the size is set beside it, not "
                "judged: the nets and magnitudes differ)"
            )
        rows.append(
            {
                "verifier": verifier,
                "cells": len(g),
                "T_joint_s": round(t, 3),
                "T_guided_s": round(tg, 3),
                "ratio_T/T*": round(ratio, 3) if np.isfinite(ratio) else ratio,
                "joint_open": open_j,
                "guided_open": open_g,
                "mismatch": int(g["mismatch"].sum()),
                "verdict": verdict,
                "reason": reason,
            }
        )
    cols = ["verifier", "cells", "T_joint_s", "T_guided_s", "ratio_T/T*", "joint_open"]
    return pd.DataFrame(rows, columns=[*cols, "guided_open", "mismatch", "verdict", "reason"])


def guided_section(config: Mapping, guided: str | None = None) -> tuple[str, list[str]]:
    """The guidance section and its warnings (joint/guided mismatches)."""
    title = "## Target-label guidance"
    claim = PAPER["guided"]
    table = _read(guided)
    strategies = list(config.get("strategies") or [])
    if table is None:
        why = (
            f"config strategies is {json.dumps(strategies)}: the comparison needs both "
            "joint and guided"
            if not {"joint", "guided"} <= set(strategies)
            else "no guided.csv table in this run"
        )
        return f"{title}\n\nnot run ({why}).\n", []
    if table.empty:
        return f"{title}\n\nnot run (no instance ran under both strategies).\n", []
    claims = guided_claims(table, config)
    parts = [
        title,
        "",
        f'Claim ({claim["source"]}): "{claim["claim"]}". Ours from `{guided}`: T = joint '
        "verifier time, T* = guided (bounds, sorting and per-label runs), summed over the "
        "instances both strategies ran; ratio T/T* > 1 means guidance pays.",
        "",
        _table(claims.drop(columns=["verdict", "reason"])),
    ]
    for r in claims.itertuples(index=False):
        parts.append(f'- {r.verifier}: "{claim["claim"]}": **{r.verdict}** — {r.reason}.')
    warnings = []
    bad = int(claims["mismatch"].sum())
    if bad:
        msg = (
            f"**SOUNDNESS ALARM: joint and guided disagree on {bad} decided instance(s)** "
            f"(column mismatch of `{guided}`): one of them is wrong."
        )
        parts += ["", msg]
        warnings.append(msg)
    parts.append("")
    return "\n".join(parts), warnings


# --- HTML (the workflow report shows HTML, not markdown) -----------------------------------


def _inline(text: str) -> str:
    import html
    import re

    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"(?<![\w])_\((.+?)\)_(?![\w])", r"<em>(\1)</em>", out)


def to_html(markdown: str, title: str = "Findings") -> str:
    """The findings markdown as a standalone HTML page. Covers exactly the markdown this
    module writes: #/##/### headings, paragraphs, '- ' bullets, pipe tables (header,
    separator, rows), `code` and **bold**."""
    body, para, items, rows = [], [], [], []

    def flush():
        if para:
            body.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if items:
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if rows:
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            head, data = cells[0], [c for c in cells[1:] if not set("".join(c)) <= set("-")]
            th = "".join(f"<th>{_inline(c)}</th>" for c in head)
            trs = "".join(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in data
            )
            body.append(f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>")
            rows.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            if para or items:
                flush()
            rows.append(line)
            continue
        if rows:
            flush()
        if not line.strip():
            flush()
        elif line.startswith("#"):
            flush()
            level = min(len(line) - len(line.lstrip("#")), 6)
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            if para:
                flush()
            items.append(line[2:])
        elif items:
            items[-1] += " " + line.strip()
        else:
            para.append(line.strip())
    flush()
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:1em auto;line-height:1.4}"
        "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
        "th{background:#f1f3f5}code{background:#f1f3f5;padding:0 2px}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# --- the document --------------------------------------------------------------------------


def configuration(config: Mapping) -> str:
    lines = ["## Configuration of this run", ""]
    keys = ("datasets", "models", "families", "verifiers", "strategies", "instances")
    for key in keys + ("timeout_s", "epochs", "seed"):
        if key in config:
            lines.append(f"- {key}: `{json.dumps(config[key])}`")
    if "verifier_options" in config:
        opts = {k: v for k, v in dict(config["verifier_options"]).items() if v}
        lines.append(f"- verifier options (non-default): `{json.dumps(opts)}`")
    lines += [
        "- magnitudes k are in 8-bit units: k means k/255 on the [0, 1] pixel scale",
        "- encodings: `linf` is the per-pixel box [clip(x - k/255), clip(x + k/255)] "
        "(uncoupled); every other family is verified as a box over its few parameters "
        "through its clip prefix (coupled: one parameter vector moves the whole image; "
        "see docs/families.md)",
        "",
    ]
    return "\n".join(lines)


def document(
    df: pd.DataFrame,
    metrics: Sequence[Mapping],
    config: Mapping,
    images: Mapping[str, np.ndarray] | None = None,
    tables: Mapping[str, str | None] | None = None,
) -> str:
    """The findings document (markdown) from the record frame, model metrics, the
    config and the optional search/guided tables (``tables``: keys ``TABLES``, the
    ``SEARCH_TABLES`` from rule search_stats and ``guided`` from rule guided; a missing
    key or file makes its section say "not run")."""
    tables = dict(tables or {})
    search_text, search_warnings = search_section(
        config,
        **{k: tables.get(k) for k in SEARCH_TABLES},
    )
    guided_text, guided_warnings = guided_section(config, tables.get("guided"))
    parts = [
        "# Findings",
        "",
        "Generated by the workflow from this run's records and tables "
        "(`medverify.findings`); every number below is computed, none is typed in except "
        "the papers' own claims, quoted as such. "
        "Each claim of the paper is set beside our number and marked "
        f"**{SUPPORTED}**, **{NOT_SUPPORTED}** or **{NOT_COMPARABLE}**, with the reason.",
        "",
    ]
    for msg in search_warnings + guided_warnings:
        parts += [msg, ""]
    parts += [
        configuration(config),
        "## Test accuracy",
        "",
        _table(accuracy_rows(metrics)),
    ]
    table, overall, verdict = outcome_totals(df)
    parts += [
        "## Outcome totals",
        "",
        overall,
        "",
        f"Comparison: **{verdict}**.",
        "",
        "Per verifier (decided = robust or counterexample):",
        "",
        _table(table),
    ]
    comp = family_comparison(df, "brightness")
    parts += ["## Brightness against L∞ at equal k", ""]
    parts += [
        "A coupled brightness shift of at most k/255 lies inside the L∞ ball of radius "
        "k/255, so at equal k a complete verifier can never find more brightness than "
        "L∞ counterexamples. Counts are per question (image, family, k) over all "
        "verifiers: counterexample if any verifier has one, undecided if none decided.",
        "",
        _table(comp),
    ]
    for what, column in (("counterexamples", "cex"), ("unknowns", "undecided")):
        v, text = judge_more(comp, "brightness", column, "undecided" if column != "cex" else what)
        parts.append(f'- "Brightness gives more {what} than L∞": **{v}** — {text}.')
    parts.append("")
    share = uniform_shift_share(df, images or {})
    parts += [
        "### How many L∞ counterexamples are (close to) a uniform shift",
        "",
        "An L∞ counterexample x' is close to a uniform shift when one β with |β| ≤ k/255 "
        "gives max_i |clip(x_i + β) − x'_i| ≤ "
        f"{UNIFORM_SHIFT_TOLERANCE:g}·k/255 (residual in units of k/255; 0 is exactly a "
        "brightness shift, 2 the farthest corner).",
        "",
        _table(share) if not share.empty else "no L∞ counterexample in this run.\n",
        "## Agreement between tools",
        "",
    ]
    for claim, v, evidence in agreement_claims(df):
        parts.append(f'- "{claim}": **{v}** — {evidence}.')
    parts.append("")
    others = sorted(set(df["family"]) - {"linf", "brightness"})
    if others:
        parts += ["## Other families", ""]
        q = question_outcomes(df[df["family"].isin(others)])
        summary = (
            q.groupby(["dataset", "model", "family", "magnitude_k"])["outcome"]
            .value_counts()
            .unstack(fill_value=0)
            .reset_index()
        )
        parts += [_table(summary)]
    parts += [search_text, guided_text]
    return "\n".join(parts)


def write(
    record_paths: Sequence[str],
    metrics_paths: Sequence[str],
    config: Mapping,
    out_path: str,
    data_dir: str | None = None,
    channels: Mapping[str, int] | None = None,
    tables: Mapping[str, str | None] | None = None,
    html_path: str | None = None,
) -> str:
    """The findings rule: read records and metrics, load the test images of datasets
    with L-infinity counterexamples, write ``out_path`` (markdown) and, when given,
    ``html_path`` (the same document as HTML, shown in the workflow report)."""
    from . import aggregate, data

    df = aggregate.load_records(record_paths)
    metrics = []
    for path in metrics_paths:
        m = json.loads(Path(path).read_text())
        m.setdefault("model", Path(path).parent.name)
        m.setdefault("dataset", Path(path).parent.parent.name)
        metrics.append(m)
    images = {}
    need = df[(df["family"] == "linf") & (df["status"].astype(str) == "counterexample")]
    for ds in sorted(need["dataset"].unique()) if data_dir else []:
        test = data.load(
            ds, data_dir, channels=(channels or {}).get(ds, 1), md5=None, splits=("test",)
        )["test"]
        images[ds] = test.images
    text = document(df, metrics, config, images, tables)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(text)
    if html_path:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        Path(html_path).write_text(to_html(text))
    log.info("wrote %s", out_path)
    return text
