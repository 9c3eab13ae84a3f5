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
}
#: an accuracy within this many percentage points of the paper's counts as reproduced
ACCURACY_TOLERANCE_PP = 2.0
#: a stand-in dataset compared against the paper's dataset (reported, never "supported")
STAND_INS = {"retinamnist": "dermamnist"}
#: an L-infinity counterexample is "close to a uniform shift" when one shift beta
#: (|beta| <= eps) reproduces every pixel to within this fraction of eps (clip-aware)
UNIFORM_SHIFT_TOLERANCE = 0.1
UNDECIDED = ("unknown", "timeout", "error")

SUPPORTED, NOT_SUPPORTED, NOT_COMPARABLE = "supported", "not supported", "not comparable"


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


# --- optional tables -----------------------------------------------------------------------


def optional_section(title: str, path: str | None, producer: str) -> str:
    """A section for a table that exists only when its stage ran."""
    if not path or not Path(path).exists():
        return f"## {title}\n\nnot run (no {producer} table in this run).\n"
    table = pd.read_csv(path)
    text = f"## {title}\n\nFrom `{path}` ({len(table)} rows).\n\n"
    groups = [c for c in ("dataset", "model", "family", "strategy", "verifier") if c in table]
    numeric = [
        c
        for c in table.select_dtypes("number").columns
        if c not in ("index", "slot", "magnitude_k", "true_label")
    ]
    if groups and numeric:
        summary = table.groupby(groups)[numeric].median().reset_index()
        text += "Medians per group:\n\n" + _table(summary)
    else:
        text += _table(table.head(20))
    return text


# --- the document --------------------------------------------------------------------------


def configuration(config: Mapping) -> str:
    lines = ["## Configuration of this run", ""]
    keys = ("datasets", "models", "families", "verifiers", "instances", "timeout_s")
    for key in keys + ("epochs", "seed"):
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
    critical_eps: str | None = None,
    guided: str | None = None,
) -> str:
    """The findings document (markdown) from the record frame, model metrics, the
    config and the optional search/guided tables."""
    parts = [
        "# Findings",
        "",
        "Generated by the workflow from this run's records and tables "
        "(`medverify.findings`); every number below is computed, none is typed in. "
        "Each claim of the paper is set beside our number and marked "
        f"**{SUPPORTED}**, **{NOT_SUPPORTED}** or **{NOT_COMPARABLE}**, with the reason.",
        "",
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
    parts += [
        optional_section(
            "Robustness distributions (critical magnitude)", critical_eps, "critical_eps.csv"
        ),
        optional_section("Target-label guidance", guided, "guided.csv"),
    ]
    return "\n".join(parts)


def write(
    record_paths: Sequence[str],
    metrics_paths: Sequence[str],
    config: Mapping,
    out_path: str,
    data_dir: str | None = None,
    channels: Mapping[str, int] | None = None,
    critical_eps: str | None = None,
    guided: str | None = None,
) -> str:
    """The findings rule: read records and metrics, load the test images of datasets
    with L-infinity counterexamples, write ``out_path``."""
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
    text = document(df, metrics, config, images, critical_eps, guided)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(text)
    log.info("wrote %s", out_path)
    return text
