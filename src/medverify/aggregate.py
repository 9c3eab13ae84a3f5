"""Records -> one tidy DataFrame -> tables, cross-tool agreement and the contradiction
check; plus the package functions behind the workflow's merge, figure and example rules.

Everything starts from :func:`load_records`: one row per record file, with the record's
fields, its path, and an ``instance`` key that pairs records of the same image.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import results
from .errors import ContradictionError, MedverifyError
from .results import DECIDED, STATUSES
from .verifiers import verifier_pairs

log = logging.getLogger(__name__)

#: a cell of the experiment matrix
CELL = ["dataset", "model", "family", "magnitude_k", "verifier", "strategy"]
#: the same verification question asked of different verifiers (under the same strategy)
QUESTION = ["dataset", "model", "model_sha256", "family", "magnitude_k", "instance", "strategy"]
#: records that must not disagree: the same image and perturbation, whatever the verifier
#: and strategy (a guided `robust` against a joint counterexample is a contradiction)
CONTRADICTION_KEY = ["dataset", "model", "model_sha256", "family", "magnitude_k", "index"]


def instance_key(index: int, slot) -> str:
    """Pairs records of the same image: the slot (the workflow's instance wildcard, known
    even to a job that failed before reading the index), else the test-set index."""
    if slot is not None and not pd.isna(slot):
        return f"s{int(slot)}"
    return f"i{int(index)}"


def records_frame(records: Sequence[results.Record], paths: Sequence[str] | None = None):
    """One row per record (``counterexample`` and ``extra`` stay Python objects)."""
    rows = []
    paths = list(paths) if paths is not None else [""] * len(records)
    for rec, path in zip(records, paths, strict=True):
        row = rec.to_dict()
        row["path"] = str(path)
        row["instance"] = instance_key(rec.index, rec.slot)
        row["decided"] = rec.status in DECIDED
        rows.append(row)
    columns = [*results.Record.__dataclass_fields__, "path", "instance", "decided"]
    df = pd.DataFrame(rows, columns=columns)
    df["magnitude_k"] = df["magnitude_k"].astype(float)
    df["status"] = pd.Categorical(df["status"], categories=list(STATUSES))
    return df


def load_records(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Read every record file (through medverify.results) into one tidy DataFrame."""
    paths = [str(p) for p in paths]
    records = []
    for p in paths:
        try:
            records.append(results.read(p))
        except (OSError, ValueError, TypeError) as exc:
            raise MedverifyError(f"cannot read record {p}: {exc}") from None
    return records_frame(records, paths)


def check_contradictions(df: pd.DataFrame) -> None:
    """Raise ContradictionError when one record says ``robust`` and another holds a
    counterexample for the same (dataset, model, image, family, magnitude), across
    verifiers and strategies (``CONTRADICTION_KEY``)."""
    real = df[df["index"] >= 0]
    robust = real[real["status"] == "robust"]
    cex = real[real["status"] == "counterexample"]
    if robust.empty or cex.empty:
        return
    both = robust.merge(cex, on=CONTRADICTION_KEY, suffixes=("_r", "_c"))
    if both.empty:
        return
    row = both.sort_values(["dataset", "model", "family", "magnitude_k", "index"]).iloc[0]
    raise ContradictionError(
        f"contradiction on {row['dataset']}/{row['model']} test image {row['index']} "
        f"({row['family']} k={row['magnitude_k']:g}): {row['verifier_r']}/{row['strategy_r']} "
        f"says robust ({row['path_r']}) but {row['verifier_c']}/{row['strategy_c']} holds a "
        f"counterexample ({row['path_c']})" + (f"; {len(both) - 1} more" if len(both) > 1 else "")
    )


def _p95(x: pd.Series) -> float:
    return float(np.percentile(x, 95)) if len(x) else float("nan")


def outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, family, k, verifier): status counts, decided rate, median and
    p95 of verifier and wall time."""
    counts = (
        df.groupby(CELL, observed=True)["status"]
        .value_counts()
        .unstack(fill_value=0)
        .reindex(columns=list(STATUSES), fill_value=0)
    )
    counts.columns = list(counts.columns)
    g = df.groupby(CELL, observed=True)
    times = pd.DataFrame(
        {
            "n": g.size(),
            "verifier_time_median_s": g["verifier_time_s"].median(),
            "verifier_time_p95_s": g["verifier_time_s"].agg(_p95),
            "wall_time_median_s": g["wall_time_s"].median(),
            "wall_time_p95_s": g["wall_time_s"].agg(_p95),
        }
    )
    out = counts.join(times).reset_index()
    out["decided_rate"] = (out["robust"] + out["counterexample"]) / out["n"]
    cols = [*CELL, "n", *STATUSES, "decided_rate"]
    cols += [c for c in out.columns if c.endswith("_s")]
    return out[cols].sort_values(CELL).reset_index(drop=True)


def paired(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Records of verifiers a and b on the same question, side by side."""
    cols = [*QUESTION, "status"]
    left = df[df["verifier"] == a][cols]
    right = df[df["verifier"] == b][cols]
    return left.merge(right, on=QUESTION, suffixes=("_a", "_b"))


def agreement(df: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Per verifier pair and cell: paired questions, same status, both decided, agree
    (both decided, same verdict), disagree (both decided, different verdicts)."""
    rows = []
    for a, b in pairs:
        p = paired(df, a, b)
        if p.empty:
            continue
        p["same"] = p["status_a"].astype(str) == p["status_b"].astype(str)
        p["both_decided"] = p["status_a"].isin(DECIDED) & p["status_b"].isin(DECIDED)
        group = ["dataset", "model", "family", "magnitude_k", "strategy"]
        for key, grp in p.groupby(group):
            rows.append(
                dict(
                    zip(group, key, strict=True),
                    verifier_a=a,
                    verifier_b=b,
                    n=len(grp),
                    same_status=int(grp["same"].sum()),
                    both_decided=int(grp["both_decided"].sum()),
                    agree=int((grp["same"] & grp["both_decided"]).sum()),
                    disagree=int((~grp["same"] & grp["both_decided"]).sum()),
                )
            )
    cols = ["dataset", "model", "family", "magnitude_k", "strategy", "verifier_a", "verifier_b"]
    cols += ["n"]
    cols += ["same_status", "both_decided", "agree", "disagree"]
    return pd.DataFrame(rows, columns=cols)


def confusion(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Status counts of verifier a (rows) against verifier b (columns), all statuses."""
    p = paired(df, a, b)
    table = pd.crosstab(
        pd.Categorical(p["status_a"].astype(str), categories=list(STATUSES)),
        pd.Categorical(p["status_b"].astype(str), categories=list(STATUSES)),
        dropna=False,
    )
    table = table.reindex(index=list(STATUSES), columns=list(STATUSES), fill_value=0)
    table.index.name = a
    table.columns.name = b
    return table


def tidy_csv(df: pd.DataFrame) -> pd.DataFrame:
    """The record table as written to CSV: counterexample images dropped (their family
    parameters kept), extra as JSON."""
    out = df.drop(columns=["counterexample", "extra", "labels_checked"]).copy()
    out["has_counterexample"] = df["counterexample"].notna()
    out["counterexample_params"] = [
        json.dumps({k: v for k, v in c.items() if k != "image"}) if isinstance(c, dict) else ""
        for c in df["counterexample"]
    ]
    out["labels_checked"] = [
        json.dumps(v) if isinstance(v, list) else "" for v in df["labels_checked"]
    ]
    out["extra"] = [json.dumps(e, sort_keys=True, default=str) for e in df["extra"]]
    return out


def fault_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Per verifier: how many jobs ended as ``error`` (crash, out of memory, exception)
    and ``timeout``."""
    counts = {
        v: {s: int((grp["status"] == s).sum()) for s in ("error", "timeout")}
        for v, grp in df.groupby("verifier", observed=True)
    }
    return pd.DataFrame.from_dict(counts, orient="index", columns=["error", "timeout"])


def merge(
    record_paths: Sequence[str],
    verifiers: Sequence[str],
    out_records: str,
    out_outcomes: str,
    out_agreement: str,
    out_confusion: Sequence[str] = (),
) -> pd.DataFrame:
    """The merge rule: contradiction check first (fails the rule), then the tables.
    ``out_confusion`` holds one path per pair of ``verifier_pairs(verifiers)``, in order."""
    df = load_records(record_paths)
    log.info("read %d records", len(df))
    for verifier, row in fault_counts(df).iterrows():
        log.info("faults of %s: %d error, %d timeout", verifier, row["error"], row["timeout"])
    check_contradictions(df)
    pairs = verifier_pairs(verifiers)
    if len(out_confusion) != len(pairs):
        raise MedverifyError(
            f"{len(out_confusion)} confusion outputs for {len(pairs)} verifier pairs {pairs}"
        )
    for path in (out_records, out_outcomes, out_agreement, *out_confusion):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    tidy_csv(df).to_csv(out_records, index=False)
    outcomes(df).to_csv(out_outcomes, index=False)
    agreement(df, pairs).to_csv(out_agreement, index=False)
    for (a, b), path in zip(pairs, out_confusion, strict=True):
        confusion(df, a, b).to_csv(path, index_label=f"{a} \\ {b}")
    return df


def figures(
    record_paths: Sequence[str],
    verifiers: Sequence[str],
    data_dir: str,
    channels: dict[str, int],
    out_outcomes: str,
    out_confusion: str,
    out_counterexamples: str,
    max_counterexamples: int = 200,
) -> None:
    """Outcome bars, confusion heatmaps, and one figure per counterexample (written to
    the directory ``out_counterexamples``; a single note when there is none)."""
    from . import plots

    df = load_records(record_paths)
    plots.save(plots.outcome_bars(df), out_outcomes)
    pairs = verifier_pairs(verifiers)
    plots.save(plots.confusion_heatmaps({p: confusion(df, *p) for p in pairs}), out_confusion)
    out_dir = Path(out_counterexamples)
    out_dir.mkdir(parents=True, exist_ok=True)
    cex = df[df["status"] == "counterexample"].sort_values(
        ["dataset", "model", "family", "magnitude_k", "verifier", "index"]
    )
    if cex.empty:
        plots.save(plots.note("no counterexample was found"), out_dir / "none.png")
        return
    tests = {}
    for _, row in cex.head(max_counterexamples).iterrows():
        ds = row["dataset"]
        if ds not in tests:
            from . import data

            tests[ds] = data.load(ds, data_dir, channels=channels.get(ds, 1), md5=None)["test"]
        original = tests[ds].images[int(row["index"])]
        perturbed = np.asarray(row["counterexample"]["image"], dtype=np.float32).reshape(
            original.shape
        )
        fig = plots.counterexample(original, perturbed, row)
        name = (
            f"{ds}_{row['model']}_{row['family']}_k{row['magnitude_k']:g}_"
            f"{row['verifier']}_i{int(row['index'])}.png"
        )
        plots.save(fig, out_dir / name, tight=False)
    if len(cex) > max_counterexamples:
        log.warning("drew %d of %d counterexamples", max_counterexamples, len(cex))


def examples(
    dataset: str,
    data_dir: str,
    channels: int,
    families: dict[str, Sequence[float]],
    out_path: str,
    index: int = 0,
    seed: int = 0,
) -> None:
    """Example images of one dataset: the original and each family at each magnitude."""
    from . import data, plots

    image = data.load(dataset, data_dir, channels=channels, md5=None, splits=("test",))[
        "test"
    ].images[index]
    plots.save(plots.example_images(image, families, seed=seed, title=dataset), out_path)


#: a cell of the joint-vs-guided comparison (``guided_table``)
GUIDED_CELL = ["dataset", "model", "family", "magnitude_k", "verifier"]


def guided_table(df: pd.DataFrame) -> pd.DataFrame:
    """Joint vs guided, per (dataset, model, family, k, verifier), over the instances both
    strategies ran: n, T (joint) and T* (guided) as sums of verifier time in s, the
    guided sorting time (inside T*), reduction (T - T*) / T, speed-up T / T*, status
    counts of both, and ``mismatch``: instances where both decided and disagree (must be 0
    for sound backends). ``df``: records (``load_records``) or rows with the same
    columns; the sorting time comes from a ``sort_s`` column or the record's ``extra``."""
    if "sort_s" not in df.columns:
        df = df.assign(
            sort_s=[e.get("sort_s", 0.0) if isinstance(e, dict) else 0.0 for e in df["extra"]]
        )
    df = df.assign(status=df["status"].astype(str))
    wide = df.pivot_table(
        index=[*GUIDED_CELL, "instance"],
        columns="strategy",
        values=["status", "verifier_time_s", "sort_s"],
        aggfunc="first",
    )
    cols = [*GUIDED_CELL, "n", "T_joint_s", "T_guided_s", "sort_s", "reduction", "speedup"]
    cols += ["mismatch", *(f"{s}_{st}" for s in ("joint", "guided") for st in STATUSES)]
    if ("status", "joint") not in wide.columns or ("status", "guided") not in wide.columns:
        return pd.DataFrame(columns=cols)
    wide = wide.dropna(subset=[("status", "joint"), ("status", "guided")])
    rows = []
    for key, g in wide.groupby(level=GUIDED_CELL):
        sj, sg = g[("status", "joint")], g[("status", "guided")]
        decided = sj.isin(DECIDED) & sg.isin(DECIDED)
        t = float(g[("verifier_time_s", "joint")].astype(float).sum())
        tg = float(g[("verifier_time_s", "guided")].astype(float).sum())
        row = dict(zip(GUIDED_CELL, key, strict=True))
        row.update(
            n=len(g),
            T_joint_s=round(t, 3),
            T_guided_s=round(tg, 3),
            sort_s=round(float(g[("sort_s", "guided")].astype(float).sum()), 3),
            reduction=round((t - tg) / t, 4) if t > 0 else float("nan"),
            speedup=round(t / tg, 3) if tg > 0 else float("nan"),
            mismatch=int((decided & (sj != sg)).sum()),
        )
        for name, s in (("joint", sj), ("guided", sg)):
            for status in STATUSES:
                row[f"{name}_{status}"] = int((s == status).sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def guided(record_paths: Sequence[str], out_table: str, out_figure: str) -> pd.DataFrame:
    """The guided rule: joint-vs-guided table and the reduction-vs-ε figure."""
    from . import plots

    table = guided_table(load_records(record_paths))
    Path(out_table).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_table, index=False)
    plots.save(plots.guided_reduction(table), out_figure)
    return table
