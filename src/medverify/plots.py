"""Seaborn/matplotlib figures. Functions take DataFrames or arrays and return figures;
they never read files. ``save`` writes and closes one. The Agg backend is forced."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .results import STATUSES  # noqa: E402

STATUS_COLORS = dict(
    zip(STATUSES, ["#2b8a3e", "#c92a2a", "#868e96", "#f08c00", "#5f3dc4"], strict=True)
)


def save(fig, path: str | os.PathLike, dpi: int = 120, tight: bool = True) -> Path:
    """Write and close ``fig``; ``tight=False`` keeps the figure's own layout (one render
    instead of two: for figures drawn by the hundred with a fixed layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return path


def note(text: str):
    """A small figure holding one line of text (e.g. when there is nothing to draw)."""
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def _order(values) -> list:
    return list(dict.fromkeys(values))


def outcome_bars(df: pd.DataFrame):
    """Stacked status fractions per cell: one panel per (dataset, model); within a panel
    bars are grouped by family, magnitudes increasing, one bar per verifier."""
    if df.empty:
        return note("no records")
    sns.set_theme(style="whitegrid", context="paper")
    datasets = _order(df["dataset"])
    models = _order(df["model"])
    fig, axes = plt.subplots(
        len(datasets),
        len(models),
        figsize=(
            max(4.0, 0.45 * _n_bars(df) / max(len(models), 1) + 2) * len(models),
            3.2 * len(datasets),
        ),
        squeeze=False,
        sharey=True,
    )
    for i, ds in enumerate(datasets):
        for j, model in enumerate(models):
            ax = axes[i][j]
            sub = df[(df["dataset"] == ds) & (df["model"] == model)]
            _stacked(ax, sub)
            ax.set_title(f"{ds} / {model}")
            ax.set_ylabel("fraction of instances" if j == 0 else "")
    handles = [plt.Rectangle((0, 0), 1, 1, color=STATUS_COLORS[s]) for s in STATUSES]
    fig.legend(handles, STATUSES, loc="upper center", ncol=len(STATUSES), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def _n_bars(df: pd.DataFrame) -> int:
    return int(df.groupby(["dataset", "model", "family", "magnitude_k", "verifier"]).ngroups)


def _stacked(ax, sub: pd.DataFrame) -> None:
    if sub.empty:
        ax.text(0.5, 0.5, "no records", ha="center", va="center", transform=ax.transAxes)
        return
    families = _order(sub["family"])
    verifiers = _order(sub["verifier"])
    labels, xs, x = [], [], 0.0
    bottoms = []
    for fam in families:
        for k in sorted(sub[sub["family"] == fam]["magnitude_k"].unique()):
            for v in verifiers:
                cell = sub[
                    (sub["family"] == fam) & (sub["magnitude_k"] == k) & (sub["verifier"] == v)
                ]
                if cell.empty:
                    continue
                frac = cell["status"].astype(str).value_counts(normalize=True)
                bottom = 0.0
                for s in STATUSES:
                    h = float(frac.get(s, 0.0))
                    if h:
                        ax.bar(x, h, bottom=bottom, color=STATUS_COLORS[s], width=0.8)
                    bottom += h
                bottoms.append(bottom)
                labels.append(f"{fam} {k:g}\n{v} (n={len(cell)})")
                xs.append(x)
                x += 1
            x += 0.3
        x += 0.6
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)


def confusion_heatmaps(tables: Mapping[tuple[str, str], pd.DataFrame]):
    """One heatmap per verifier pair: rows the first tool's status, columns the second's."""
    if not tables:
        return note("fewer than two verifiers: no pairwise comparison")
    sns.set_theme(style="white", context="paper")
    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, ((a, b), table) in zip(axes[0], tables.items(), strict=True):
        sns.heatmap(table, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        ax.set_title(f"{a} vs {b}")
    fig.tight_layout()
    return fig


def _show(ax, image: np.ndarray, title: str = "", cmap="gray", vmin=0.0, vmax=1.0):
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 3:
        ax.imshow(np.clip(np.transpose(img, (1, 2, 0)), 0, 1))
    else:
        ax.imshow(img.reshape(img.shape[-2], img.shape[-1]), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _label(value) -> str:
    """A class label as an integer (tidy tables hold labels as floats beside NaN)."""
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "?"


def perturbed_ends(image: np.ndarray, family: str, k: float) -> tuple[np.ndarray, np.ndarray]:
    """The two ends of a family's set at magnitude k (its ``ends()``: -k and +k), shaped
    like ``image``: linf the corners x -+ eps sign(seeded noise), a structured family the
    lower and upper corner of its parameter box."""
    from . import perturbations

    fam = perturbations.make(family, image, k)
    low, high = fam.ends()
    return tuple(fam.apply(p).reshape(np.shape(image)) for p in (low, high))


def example_images(
    image: np.ndarray, families: Mapping[str, Sequence[float]], seed: int = 0, title: str = ""
):
    """The original image and both ends (-k, +k) of each family at each magnitude: one
    row per family, the original first."""
    rows = []
    for fam, ks in families.items():
        panels = []
        for k in sorted(ks):
            low, high = perturbed_ends(image, fam, k)
            panels += [(f"{fam} -{k:g}", low), (f"{fam} +{k:g}", high)]
        rows.append(panels)
    cols = 1 + max((len(r) for r in rows), default=0)
    fig, axes = plt.subplots(
        max(len(rows), 1), cols, figsize=(1.8 * cols, 2.0 * max(len(rows), 1)), squeeze=False
    )
    for r, panels in enumerate(rows or [[]]):
        _show(axes[r][0], np.asarray(image), "original")
        for c in range(1, cols):
            if c - 1 < len(panels):
                _show(axes[r][c], panels[c - 1][1], panels[c - 1][0])
            else:
                axes[r][c].axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def counterexample(original: np.ndarray, perturbed: np.ndarray, record: Mapping):
    """Image, perturbed image, and their difference (averaged over channels), on a fixed
    layout (no ``tight_layout``: the figures rule draws one per counterexample, up to
    hundreds; save with ``tight=False``)."""
    diff = np.asarray(perturbed, dtype=np.float64) - np.asarray(original, dtype=np.float64)
    diff2d = diff.reshape(-1, diff.shape[-2], diff.shape[-1]).mean(axis=0)
    lim = max(float(np.abs(diff2d).max()), 1e-6)
    fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.6))
    _show(axes[0], original, f"test image {record.get('index')} (label {record.get('true_label')})")
    _show(
        axes[1],
        perturbed,
        f"counterexample (pred {_label(record.get('predicted_label_at_counterexample'))})",
    )
    im = axes[2].imshow(diff2d, cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[2].set_title(f"difference (max {lim * 255:.2f}/255)", fontsize=8)
    axes[2].axis("off")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    fig.suptitle(
        f"{record.get('dataset')} / {record.get('model')}: {record.get('family')} "
        f"k={float(record.get('magnitude_k', 0)):g}, {record.get('verifier')}",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.02, right=0.88, bottom=0.03, top=0.8, wspace=0.12)
    return fig


# --- robustness distributions (search records; frames from medverify.stats) ----------
def _dist_label(df: pd.DataFrame) -> pd.Series:
    return df["dataset"] + "/" + df["model"] + " (" + df["split"] + ")"


def critical_ecdf(df: pd.DataFrame):
    """ECDF of the critical eps (x255) per model and split, one panel per family and
    method/verifier; censored searches are left out (their count is in the legend)."""
    d = df.dropna(subset=["critical"])
    if d.empty:
        return note("no search bracketed at the grid resolution")
    sns.set_theme(style="whitegrid", context="paper")
    d = d.assign(
        model_split=_dist_label(d),
        panel=d["family"] + ", " + d["method"] + "/" + d["verifier"],
        critical_255=d["critical"] * 255,
    )
    panels = _order(d["panel"])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        sub = d[d["panel"] == panel]
        sns.ecdfplot(data=sub, x="critical_255", hue="model_split", ax=ax)
        ax.set_xscale("log")
        ax.set_xlabel("critical eps (x 1/255, log scale)")
        ax.set_title(panel, fontsize=9)
    fig.tight_layout()
    return fig


def critical_violin(df: pd.DataFrame):
    """Violin plots with the quartiles of critical eps (x255) per model, split by split."""
    d = df.dropna(subset=["critical"])
    if d.empty:
        return note("no search bracketed at the grid resolution")
    sns.set_theme(style="whitegrid", context="paper")
    d = d.assign(
        model=d["dataset"] + "/" + d["model"],
        panel=d["family"] + ", " + d["method"] + "/" + d["verifier"],
        critical_255=d["critical"] * 255,
    )
    panels = _order(d["panel"])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        sub = d[d["panel"] == panel]
        sns.violinplot(
            data=sub, x="model", y="critical_255", hue="split", inner="quart", cut=0, ax=ax
        )
        ax.set_ylabel("critical eps (x 1/255)")
        ax.set_title(panel, fontsize=9)
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def critical_twins(df: pd.DataFrame):
    """ECDF of the largest magnitude proven robust (``eps_robust`` x255: every search has
    one, censored or not) of each plain model beside its PGD-trained twin, one panel per
    dataset, model, family and split (stats.twin_shift has the KS rows)."""
    from .pipeline import twin_pairs
    from .stats import lower_ends

    base = {}  # model -> its plain model, for both members of every twin pair
    for plain, twin in twin_pairs(df["model"]):
        base[plain] = base[twin] = plain
    d = df[df["model"].isin(base)]
    if d.empty:
        return note("no model has a PGD-trained twin")
    sns.set_theme(style="whitegrid", context="paper")
    d = d.assign(
        panel=d["dataset"]
        + "/"
        + d["model"].map(base)
        + ", "
        + d["family"]
        + " ("
        + d["split"]
        + ")",
        lower_255=lower_ends(d["eps_robust"]) * 255,
    )
    panels = _order(d["panel"])
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels, strict=False):
        sub = d[d["panel"] == panel]
        sns.ecdfplot(data=sub, x="lower_255", hue="model", ax=ax)
        ax.set_xlabel("largest eps proven robust (x 1/255)")
        ax.set_title(panel, fontsize=8)
    fig.tight_layout()
    return fig


def critical_scatter(pairs: pd.DataFrame):
    """Critical eps of the same image under two models (stats.paired_models), log axes."""
    if pairs.empty:
        return note("no image searched under two models")
    sns.set_theme(style="whitegrid", context="paper")
    p = pairs.assign(
        pair=pairs["dataset"] + ": " + pairs["model_a"] + " vs " + pairs["model_b"],
        panel=pairs["family"] + " (" + pairs["split"] + ")",
    )
    groups = _order(zip(p["pair"], p["panel"], strict=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 3.4), squeeze=False)
    for ax, (pair, panel) in zip(axes[0], groups, strict=True):
        sub = p[(p["pair"] == pair) & (p["panel"] == panel)]
        ax.scatter(sub["critical_a"] * 255, sub["critical_b"] * 255, s=10, alpha=0.7)
        lim = [
            min(sub["critical_a"].min(), sub["critical_b"].min()) * 255 * 0.9,
            max(sub["critical_a"].max(), sub["critical_b"].max()) * 255 * 1.1,
        ]
        ax.plot(lim, lim, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        a, b = pair.split(": ", 1)[1].split(" vs ")
        ax.set_xlabel(f"{a}: critical eps (x 1/255)")
        ax.set_ylabel(f"{b}: critical eps (x 1/255)")
        ax.set_title(f"{pair}\n{panel}", fontsize=8)
    fig.tight_layout()
    return fig


def guided_reduction(table: pd.DataFrame):
    """Target-label guidance: reduction (T - T*) / T of the total verification time vs ε,
    one panel per backend, one line per (dataset, model[, family]). ``table``:
    ``aggregate.guided_table`` (columns dataset, model, family, magnitude_k, verifier,
    reduction)."""
    if table.empty:
        return note("no guided benchmark rows")
    verifiers = _order(table["verifier"])
    fig, axes = plt.subplots(
        1, len(verifiers), figsize=(4 * len(verifiers), 3.4), sharey=True, squeeze=False
    )
    df = table.assign(net=table["dataset"] + "/" + table["model"])
    if table["family"].nunique() > 1:
        df["net"] = df["net"] + " " + table["family"]
    for ax, verifier in zip(axes[0], verifiers, strict=True):
        sub = df[df["verifier"] == verifier].sort_values("magnitude_k")
        sns.lineplot(data=sub, x="magnitude_k", y="reduction", hue="net", marker="o", ax=ax)
        ax.axhline(0.0, color="#868e96", lw=0.8)
        ax.set_title(verifier)
        ax.set_xlabel("ε (k/255)")
        ax.set_ylabel("time reduction (T − T*) / T")
        if ax is not axes[0][-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    return fig


def critical_beta_eps(inputs: pd.DataFrame, pairs: pd.DataFrame):
    """Critical brightness beta beside critical L-inf eps, one column per dataset/model,
    in [0, 1] pixel units (log axis). Top: ECDFs over finished searches (beyond-range
    ones count in n, so a curve stops below 1; censored ones are left out), line style =
    split. Bottom: per input, eps_crit (x) against beta_crit (y) where both are point
    values or beta is beyond its range (drawn at its top, triangle); points below the
    diagonal would contradict beta_crit >= eps_crit (violations in red).
    ``inputs``: stats.per_input rows of both families; ``pairs``: stats.beta_eps_pairs."""
    from .stats import COUPLED, UNCOUPLED

    if inputs.empty or set(inputs["family"]) != {COUPLED, UNCOUPLED}:
        return note("critical beta vs eps: brightness and linf were not both searched")
    sns.set_theme(style="whitegrid", context="paper")
    nets = _order(zip(inputs["dataset"], inputs["model"], strict=True))
    fig, axes = plt.subplots(2, len(nets), figsize=(4.2 * len(nets), 7.0), squeeze=False)
    colors = {COUPLED: "#e8590c", UNCOUPLED: "#1864ab"}
    styles = {"test": "-", "train": "--"}
    for c, (ds, model) in enumerate(nets):
        ax = axes[0][c]
        sub = inputs[(inputs["dataset"] == ds) & (inputs["model"] == model)]
        for (family, split), g in sub.groupby(["family", "split"], sort=True):
            done = g[g["kind"] != "censored"]
            x = np.sort(done.loc[done["kind"] != "beyond", "critical"].astype(float))
            if not len(done):
                continue
            y = np.arange(1, len(x) + 1) / len(done)
            label = (
                f"{'β' if family == COUPLED else 'ε'} {family} ({split}, n={len(done)}, "
                f"censored {len(g) - len(done)})"
            )
            if not len(x):  # every search beyond its range: nothing below the top
                continue
            ax.step(
                np.r_[x[0], x],
                np.r_[0.0, y],
                where="post",
                color=colors[family],
                ls=styles.get(split, ":"),
                label=label,
            )
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("critical magnitude ([0, 1] pixel units, log)")
        ax.set_ylabel("fraction of inputs")
        ax.set_title(f"{ds}/{model}", fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
        ax = axes[1][c]
        p = pairs[(pairs["dataset"] == ds) & (pairs["model"] == model)]
        p = p[p["kind_eps"].isin(["exact", "bracketed"]) & (p["kind_beta"] != "censored")]
        beyond = p["kind_beta"] == "beyond"
        xs = p["critical_eps"].astype(float)
        ys = np.where(beyond, p["max_eps_beta"].astype(float), p["critical_beta"].astype(float))
        bad = (p["order"] == "violated").to_numpy()
        for mask, marker, color, label in (
            (~beyond.to_numpy() & ~bad, "o", "#495057", "point values"),
            (beyond.to_numpy() & ~bad, "^", "#495057", "β beyond its range (at its top)"),
            (bad, "x", "#c92a2a", "violated β < ε"),
        ):
            if mask.any():
                ax.scatter(xs[mask], ys[mask], marker=marker, s=14, color=color, label=label)
        if len(p):
            lim = [float(np.nanmin([xs.min(), np.min(ys)])) * 0.8, 1.0]
            ax.plot(lim, lim, color="grey", lw=0.8, ls="--")
            ax.legend(fontsize=6, loc="lower right")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("critical ε, L∞ ([0, 1] pixel units)")
        ax.set_ylabel("critical β, brightness")
        ax.set_title(f"per input (n={len(p)}); diagonal β = ε", fontsize=8)
    fig.tight_layout()
    return fig
