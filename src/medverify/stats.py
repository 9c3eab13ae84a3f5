"""Statistics of robustness distributions (scipy): search records -> one row per search
-> log-normal fits with Kolmogorov-Smirnov tests, train vs test, cross-model correlation.

Each search gives a bracket ``[eps_robust, eps_counterexample]``. Its point value
``critical`` is the bracket's midpoint when the bracket is at the grid resolution (or
exact); otherwise the row is *censored* and enters the point statistics not at all:

- ``censored`` (a probe ended undecided, or the bracket is wider than the grid) and
  ``beyond`` (no counterexample up to the top of the range: right-censored) rows are
  excluded from the KS tests and counted in ``n_censored`` / ``n_beyond``;
- the log-normal fit is also given by interval-censored maximum likelihood over *every*
  bracket (``mu_icml``, ``sigma_icml``): an exact value contributes its density, a
  bracket ``F(hi) - F(lo)``, a beyond-range row ``1 - F(lo)``.

The plain KS p-value uses parameters estimated from the same sample, which makes it
optimistic; ``scipy.stats.goodness_of_fit`` (Monte Carlo under the fitted law, refitting
each sample, loc fixed at 0) gives a p-value that accounts for it. Both are reported.
Bisection values are grid midpoints, and ties on a grid inflate the KS statistic of a
truly log-normal sample (at 0.5/255 and eps ~ 0.05, goodness_of_fit rejects such samples
far more often than alpha); ``grid_pvalue`` is a parametric bootstrap that rounds each
simulated sample to the same grid before refitting, and is the decision to read for
bisection rows (``grid_reject``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from . import results

ALPHA = 0.05
#: the columns that identify a distribution (one model's searches of one kind)
GROUP = ["dataset", "model", "family", "verifier", "method"]
#: Monte Carlo samples of the goodness_of_fit test
MC_SAMPLES = 499


def search_frame(records: Sequence[results.SearchRecord], paths=None) -> pd.DataFrame:
    """One row per search record (probes dropped)."""
    paths = list(paths) if paths is not None else [""] * len(records)
    rows = []
    for rec, path in zip(records, paths, strict=True):
        lo, hi = rec.eps_robust, rec.eps_counterexample
        width = None if lo is None or hi is None else hi - lo
        if hi is None:
            kind = "beyond"
        elif rec.censored or lo is None or width > rec.resolution * (1 + 1e-6) + 1e-12:
            kind = "censored"
        else:
            # the exact route's upper end is its replayed point just past the change
            kind = "exact" if rec.method == "exact" or width <= 1e-12 else "bracketed"
        rows.append(
            {
                "dataset": rec.dataset,
                "model": rec.model,
                "family": rec.family,
                "verifier": rec.verifier,
                "method": rec.method,
                "split": rec.split,
                "slot": rec.slot,
                "index": rec.index,
                "true_label": rec.true_label,
                "eps_robust": lo,
                "eps_counterexample": hi,
                "width": width,
                "censored": bool(rec.censored),
                "kind": kind,
                "critical": (lo + hi) / 2 if kind in ("exact", "bracketed") else np.nan,
                "counterexample_label": rec.counterexample_label,
                "resolution": rec.resolution,
                "max_eps": rec.max_eps,
                "timeout_s": rec.timeout_s,
                "probes": len(rec.probes),
                "seconds": rec.seconds,
                "message": rec.message,
                "path": str(path),
            }
        )
    return pd.DataFrame(rows)


def load(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    paths = [str(p) for p in paths]
    return search_frame([results.read_search(p) for p in paths], paths)


def _icml(lo: np.ndarray, hi: np.ndarray, mu0: float, s0: float) -> tuple[float, float]:
    """Interval-censored log-normal MLE: (mu, sigma) of log eps."""
    exact = np.isfinite(hi) & (np.abs(hi - lo) <= 1e-12)
    ll = np.log(np.where(lo > 0, lo, np.nan))
    lh = np.log(np.where(np.isfinite(hi) & (hi > 0), hi, np.nan))

    def nll(theta):
        mu, log_s = theta
        s = np.exp(log_s)
        total = 0.0
        if exact.any():
            total += np.sum(stats.norm.logpdf(ll[exact], mu, s) - ll[exact])
        iv = ~exact
        upper = np.where(np.isfinite(lh[iv]), stats.norm.cdf(lh[iv], mu, s), 1.0)
        lower = np.where(np.isfinite(ll[iv]), stats.norm.cdf(ll[iv], mu, s), 0.0)
        total += np.sum(np.log(np.maximum(upper - lower, 1e-300)))
        return -total

    res = optimize.minimize(nll, [mu0, np.log(max(s0, 1e-3))], method="Nelder-Mead")
    return float(res.x[0]), float(np.exp(res.x[1]))


def _ks_lognormal(x: np.ndarray) -> np.ndarray:
    """KS statistic of each row of ``x`` (B, n) against the log-normal fitted to that row
    by maximum likelihood (mu, sigma of log x)."""
    logs = np.sort(np.log(x), axis=1)
    mu = logs.mean(axis=1, keepdims=True)
    sd = np.maximum(logs.std(axis=1, keepdims=True), 1e-12)
    cdf = stats.norm.cdf((logs - mu) / sd)
    n = x.shape[1]
    i = np.arange(1, n + 1)
    return np.maximum((i / n - cdf).max(axis=1), (cdf - (i - 1) / n).max(axis=1))


def _to_grid(x: np.ndarray, resolution: float) -> np.ndarray:
    """A critical value as a bisection reports it: the midpoint of its grid cell."""
    if not resolution > 0:
        return x
    return (np.floor(x / resolution) + 0.5) * resolution


def grid_bootstrap(x: np.ndarray, resolution: float, samples: int = MC_SAMPLES, seed: int = 0):
    """Parametric bootstrap KS test of log-normality that accounts for both the estimated
    parameters and the grid: every simulated sample is drawn from the fitted law, rounded
    to grid midpoints like the data, and refitted. Returns (statistic, p-value)."""
    x = np.asarray(x, dtype=float)
    observed = float(_ks_lognormal(x[None])[0])
    logs = np.log(x)
    rng = np.random.default_rng(seed)
    sim = np.exp(rng.normal(logs.mean(), logs.std(), size=(samples, len(x))))
    sim = np.maximum(_to_grid(sim, resolution), resolution / 2 if resolution > 0 else 1e-300)
    null = _ks_lognormal(sim)
    return observed, float((np.sum(null >= observed) + 1) / (samples + 1))


def lognormal_fit(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per distribution and split: counts, log-normal (mu, sigma) by MLE on the point
    values, plain KS and goodness_of_fit KS (statistic, p-value, reject at ALPHA), and the
    interval-censored MLE over every bracket."""
    rows = []
    for key, g in df.groupby([*GROUP, "split"], sort=True):
        x = g["critical"].dropna().to_numpy(dtype=float)
        x = x[x > 0]
        row = dict(zip([*GROUP, "split"], key, strict=True))
        row.update(
            n=len(g),
            n_point=len(x),
            n_censored=int((g["kind"] == "censored").sum()),
            n_beyond=int((g["kind"] == "beyond").sum()),
        )
        mu = sigma = ks = ks_p = gof = gof_p = grid_p = np.nan
        if len(x) >= 3 and np.ptp(np.log(x)) > 0:
            logs = np.log(x)
            mu, sigma = float(logs.mean()), float(logs.std())
            kt = stats.kstest(x, "lognorm", args=(sigma, 0, np.exp(mu)))
            ks, ks_p = float(kt.statistic), float(kt.pvalue)
            gt = stats.goodness_of_fit(
                stats.lognorm,
                x,
                known_params={"loc": 0},
                statistic="ks",
                n_mc_samples=MC_SAMPLES,
                rng=np.random.default_rng(seed),
            )
            gof, gof_p = float(gt.statistic), float(gt.pvalue)
            exact = (g["kind"] == "exact").all()
            res = 0.0 if exact else float(g["resolution"].max())
            _, grid_p = grid_bootstrap(x, res, seed=seed)
        row.update(
            mu=mu,
            sigma=sigma,
            ks_statistic=ks,
            ks_pvalue=ks_p,
            ks_reject=bool(ks_p < ALPHA) if np.isfinite(ks_p) else None,
            gof_statistic=gof,
            gof_pvalue=gof_p,
            gof_reject=bool(gof_p < ALPHA) if np.isfinite(gof_p) else None,
            grid_pvalue=grid_p,
            grid_reject=bool(grid_p < ALPHA) if np.isfinite(grid_p) else None,
        )
        lo = lower_ends(g["eps_robust"])
        hi = upper_ends(g["eps_counterexample"])
        usable = (lo > 0) | np.isfinite(hi)
        finite = usable & np.isfinite(hi) & (hi > 0)
        if usable.sum() >= 3 and finite.any():
            # start from the point fit, or from the bracket midpoints when it has none
            mids = np.log((np.maximum(lo[finite], 0) + hi[finite]) / 2)
            mu0 = mu if np.isfinite(mu) else float(mids.mean())
            s0 = sigma if np.isfinite(sigma) and sigma > 0 else max(float(mids.std()), 0.1)
            row["mu_icml"], row["sigma_icml"] = _icml(lo[usable], hi[usable], mu0, s0)
        else:
            row["mu_icml"] = row["sigma_icml"] = np.nan
        rows.append(row)
    cols = [*GROUP, "split", "n", "n_point", "n_censored", "n_beyond", "mu", "sigma"]
    cols += ["ks_statistic", "ks_pvalue", "ks_reject", "gof_statistic", "gof_pvalue"]
    cols += ["gof_reject", "grid_pvalue", "grid_reject", "mu_icml", "sigma_icml"]
    return pd.DataFrame(rows, columns=cols)


def lower_ends(eps_robust: pd.Series) -> np.ndarray:
    """The largest magnitude each search proved robust (0 when it proved none): defined
    for every search, censored or not."""
    return eps_robust.astype(float).fillna(0.0).to_numpy()


def upper_ends(eps_counterexample: pd.Series) -> np.ndarray:
    """The smallest magnitude each search found a counterexample at (inf when it found
    none in its range, or was censored before one)."""
    return eps_counterexample.astype(float).fillna(np.inf).to_numpy()


def _ks_columns(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str, suffix: str = ""):
    """Two-sample KS of samples ``a`` and ``b``: statistic, p-value, decision at ALPHA and
    both medians (``median_<name>``), each column name ending in ``suffix``; nothing
    when a sample is empty."""
    if not (len(a) and len(b)):
        return {}
    t = stats.ks_2samp(a, b)
    return {
        f"ks_statistic{suffix}": float(t.statistic),
        f"ks_pvalue{suffix}": float(t.pvalue),
        f"reject{suffix}": bool(t.pvalue < ALPHA),
        f"median_{name_a}{suffix}": float(np.median(a)),
        f"median_{name_b}{suffix}": float(np.median(b)),
    }


def train_vs_test(df: pd.DataFrame) -> pd.DataFrame:
    """Two-sample KS of the point values, train split against test split, per model."""
    rows = []
    for key, g in df.groupby(GROUP, sort=True):
        a = g[g["split"] == "test"]["critical"].dropna().to_numpy(dtype=float)
        b = g[g["split"] == "train"]["critical"].dropna().to_numpy(dtype=float)
        row = dict(zip(GROUP, key, strict=True), n_test=len(a), n_train=len(b))
        row.update(_ks_columns(a, b, "test", "train"))
        rows.append(row)
    cols = [*GROUP, "n_test", "n_train", "ks_statistic", "ks_pvalue", "reject"]
    return pd.DataFrame(rows, columns=[*cols, "median_test", "median_train"])


def twin_shift(df: pd.DataFrame) -> pd.DataFrame:
    """Each plain model against its PGD-trained twin (``<model>_pgd``) per dataset, family,
    verifier, method and split, by two two-sample KS tests:

    - on the point values (``n_*``, ``ks_*``, medians and their ratio twin / plain).
      Censored searches and those robust at the top of the range have none and are left
      out, so when the twin is censored more often (it is more robust, its probes are
      harder) this sample keeps its least robust inputs only;
    - on the lower ends ``eps_robust`` (``*_lower``): the largest magnitude proven robust,
      which every search has (0 when none was proven), censored or not. It compares the
      certified robustness of every input, a conservative view of the shift."""
    from .pipeline import twin_pairs

    def ks(a, b, suffix):
        out = _ks_columns(a, b, "plain", "twin", suffix)
        if out:
            med = out[f"median_plain{suffix}"]
            out[f"median_ratio{suffix}"] = out[f"median_twin{suffix}"] / med if med > 0 else np.nan
        return out

    keys = ["dataset", "family", "verifier", "method", "split"]
    rows = []
    for key, g in df.groupby(keys, sort=True):
        for plain, twin in twin_pairs(g["model"]):
            a, b = g[g["model"] == plain], g[g["model"] == twin]
            pa = a["critical"].dropna().to_numpy(dtype=float)
            pb = b["critical"].dropna().to_numpy(dtype=float)
            la, lb = lower_ends(a["eps_robust"]), lower_ends(b["eps_robust"])
            row = dict(zip(keys, key, strict=True), model=plain, twin=twin)
            row.update(n_plain=len(pa), n_twin=len(pb), n_lower_plain=len(la), n_lower_twin=len(lb))
            row.update(ks(pa, pb, ""))
            row.update(ks(la, lb, "_lower"))
            rows.append(row)
    stat = ["ks_statistic", "ks_pvalue", "reject", "median_plain", "median_twin", "median_ratio"]
    cols = [*keys, "model", "twin", "n_plain", "n_twin", *stat]
    cols += ["n_lower_plain", "n_lower_twin", *(f"{c}_lower" for c in stat)]
    return pd.DataFrame(rows, columns=cols)


def paired_models(df: pd.DataFrame) -> pd.DataFrame:
    """Point values of every model pair on the same image (dataset, family, verifier,
    method, split, index), one row per pair and image."""
    keys = ["dataset", "family", "verifier", "method", "split"]
    frames = []
    for key, g in df.dropna(subset=["critical"]).groupby(keys, sort=True):
        models = list(dict.fromkeys(g["model"]))
        for a, b in itertools.combinations(models, 2):
            left = g[g["model"] == a][["index", "critical"]]
            right = g[g["model"] == b][["index", "critical"]]
            m = left.merge(right, on="index", suffixes=("_a", "_b"))
            if m.empty:
                continue
            for name, value in zip(keys, key, strict=True):
                m[name] = value
            m["model_a"], m["model_b"] = a, b
            frames.append(m)
    cols = [*keys, "model_a", "model_b", "index", "critical_a", "critical_b"]
    return pd.concat(frames)[cols] if frames else pd.DataFrame(columns=cols)


def spearman(df: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of critical eps per image for every model pair."""
    p = paired_models(df)
    rows = []
    keys = ["dataset", "family", "verifier", "method", "split", "model_a", "model_b"]
    for key, g in p.groupby(keys, sort=True):
        row = dict(zip(keys, key, strict=True), n=len(g))
        if len(g) >= 3:
            r = stats.spearmanr(g["critical_a"], g["critical_b"])
            row.update(rho=float(r.statistic), pvalue=float(r.pvalue))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "n", "rho", "pvalue"])


def counterexample_labels(df: pd.DataFrame) -> pd.DataFrame:
    """How often each label is reached by the counterexample at the bracket's upper end,
    per model (true label -> reached label)."""
    d = df.dropna(subset=["counterexample_label"])
    keys = [*GROUP, "split", "true_label", "counterexample_label"]
    if d.empty:
        return pd.DataFrame(columns=[*keys, "count"])
    d = d.assign(counterexample_label=d["counterexample_label"].astype(int))
    return d.groupby(keys, sort=True).size().rename("count").reset_index()


def merge(paths: Sequence[str], out_csv: str) -> pd.DataFrame:
    """The search merge rule: every search record -> results/tables/critical_eps.csv."""
    df = load(paths)
    df.to_csv(out_csv, index=False)
    return df


def report(
    critical_csv: str,
    out_fit: str,
    out_train_test: str,
    out_spearman: str,
    out_labels: str,
    out_ecdf: str,
    out_violin: str,
    out_scatter: str,
    out_beta_eps: str | None = None,
    out_beta_pairs: str | None = None,
    out_beta_figure: str | None = None,
    out_twins: str | None = None,
    out_twins_figure: str | None = None,
) -> None:
    """The search statistics rule: tables and figures from critical_eps.csv (and the
    critical-beta vs critical-eps outputs, the plain vs PGD twin table and figure, when
    their paths are given)."""
    from . import plots

    df = pd.read_csv(critical_csv)
    lognormal_fit(df).to_csv(out_fit, index=False)
    train_vs_test(df).to_csv(out_train_test, index=False)
    spearman(df).to_csv(out_spearman, index=False)
    counterexample_labels(df).to_csv(out_labels, index=False)
    plots.save(plots.critical_ecdf(df), out_ecdf)
    plots.save(plots.critical_violin(df), out_violin)
    plots.save(plots.critical_scatter(paired_models(df)), out_scatter)
    if out_beta_eps:
        beta_eps(critical_csv, out_beta_eps, out_beta_pairs, out_beta_figure)
    if out_twins:
        twin_shift(df).to_csv(out_twins, index=False)
        plots.save(plots.critical_twins(df), out_twins_figure)


# --- coupled brightness against L-infinity, per input ------------------------------------
#: the coupled family and the uncoupled ball that contains it at equal magnitude:
#: clip(x + b) with |b| <= eps lies in [clip(x - eps), clip(x + eps)], so per input the
#: critical brightness can never be below the critical L-infinity eps
COUPLED, UNCOUPLED = "brightness", "linf"
#: which search stands for an input when several ran: finished before censored, then
#: this method order (exact where present, else bisection), then the narrowest bracket
KIND_ORDER = ("exact", "bracketed", "beyond", "censored")
METHOD_ORDER = ("exact", "bisection", "milp-min")
#: slack (pixel units) for float noise of the exact route (~1e-8) when comparing ends
ORDER_TOL = 1e-6
INPUT = ["dataset", "model", "split", "index"]


def per_input(df: pd.DataFrame, family: str) -> pd.DataFrame:
    """One row per input searched under ``family``: the search chosen by KIND_ORDER,
    METHOD_ORDER and bracket width, with ``source`` = method/verifier."""
    d = df[df["family"] == family]
    cols = [*INPUT, "family", "source", "kind", "eps_robust", "eps_counterexample"]
    cols += ["critical", "max_eps"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    mrank = {m: i for i, m in enumerate(METHOD_ORDER)}
    d = d.assign(
        _kind=d["kind"].map(rank).fillna(len(rank)),
        _method=d["method"].map(mrank).fillna(len(mrank)),
        _width=d["width"].astype(float).fillna(np.inf),
        source=d["method"].astype(str) + "/" + d["verifier"].astype(str),
    )
    d = d.sort_values(["_kind", "_method", "_width"], kind="stable")
    return d.drop_duplicates(INPUT, keep="first")[cols].reset_index(drop=True)


def beta_eps_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Per input searched under both brightness and L-infinity: both brackets and the
    order check of beta_crit >= eps_crit:

    - ``violated``: a brightness counterexample below a magnitude where L-infinity is
      proven robust (beta_hi < eps_lo): impossible for sound searches (checked on every
      pair, censored or not);
    - ``proven``: beta_lo >= eps_hi, so beta_crit >= eps_crit follows from the brackets;
    - ``consistent``: neither (the brackets overlap, e.g. both in one grid cell).

    ``finished``: neither search censored (beyond the range counts as finished)."""
    b, e = per_input(df, COUPLED), per_input(df, UNCOUPLED)
    keep = ["source", "kind", "eps_robust", "eps_counterexample", "critical", "max_eps"]
    m = b[[*INPUT, *keep]].merge(e[[*INPUT, *keep]], on=INPUT, suffixes=("_beta", "_eps"))
    cols = [*INPUT, *(f"{c}_{s}" for s in ("beta", "eps") for c in keep), "finished", "order"]
    if m.empty:
        return pd.DataFrame(columns=cols)
    b_lo, b_hi = lower_ends(m["eps_robust_beta"]), upper_ends(m["eps_counterexample_beta"])
    e_lo, e_hi = lower_ends(m["eps_robust_eps"]), upper_ends(m["eps_counterexample_eps"])
    violated = b_hi < e_lo - ORDER_TOL
    proven = ~violated & np.isfinite(e_hi) & (b_lo >= e_hi - ORDER_TOL)
    m["finished"] = (m["kind_beta"] != "censored") & (m["kind_eps"] != "censored")
    m["order"] = np.where(violated, "violated", np.where(proven, "proven", "consistent"))
    return m[cols].sort_values(INPUT, kind="stable").reset_index(drop=True)


def beta_eps_check(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and model: inputs with both searches, how many finished, and of those
    how many hold (proven or consistent); violations over every pair."""
    rows = []
    for (ds, model), g in pairs.groupby(["dataset", "model"], sort=True):
        f = g[g["finished"].astype(bool)]
        rows.append(
            {
                "dataset": ds,
                "model": model,
                "paired": len(g),
                "finished": len(f),
                "holds": int(f["order"].isin(["proven", "consistent"]).sum()),
                "proven": int((f["order"] == "proven").sum()),
                "violated": int((g["order"] == "violated").sum()),
            }
        )
    cols = ["dataset", "model", "paired", "finished", "holds", "proven", "violated"]
    return pd.DataFrame(rows, columns=cols)


def beta_eps_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model, split and family (brightness, L-infinity): the inputs' critical
    magnitude quartiles in [0, 1] pixel units over finished searches (a beyond-range
    search counts as +inf, so a quartile past the range is inf), and the censored count
    (excluded)."""
    rows = []
    for family in (COUPLED, UNCOUPLED):
        d = per_input(df, family)
        for (ds, model, split), g in d.groupby(["dataset", "model", "split"], sort=True):
            done = g[g["kind"] != "censored"]
            x = np.where(done["kind"] == "beyond", np.inf, done["critical"].astype(float))
            q = np.quantile(x, [0.25, 0.5, 0.75], method="inverted_cdf") if len(x) else [np.nan] * 3
            rows.append(
                {
                    "dataset": ds,
                    "model": model,
                    "split": split,
                    "family": family,
                    "source": ",".join(sorted(set(g["source"]))),
                    "n": len(g),
                    "n_finished": len(done),
                    "n_censored": int((g["kind"] == "censored").sum()),
                    "n_beyond": int((g["kind"] == "beyond").sum()),
                    "q1": float(q[0]),
                    "median": float(q[1]),
                    "q3": float(q[2]),
                    "max_eps": float(g["max_eps"].max()),
                }
            )
    cols = ["dataset", "model", "split", "family", "source", "n", "n_finished"]
    cols += ["n_censored", "n_beyond", "q1", "median", "q3", "max_eps"]
    return pd.DataFrame(rows, columns=cols)


def beta_eps(critical_csv: str, out_table: str, out_pairs: str, out_figure: str) -> None:
    """The critical-beta vs critical-eps outputs: quartile table, per-input pairs with the
    order check, and the side-by-side figure (a note figure when not both were searched)."""
    from . import plots

    df = pd.read_csv(critical_csv)
    pairs = beta_eps_pairs(df)
    beta_eps_summary(df).to_csv(out_table, index=False)
    pairs.to_csv(out_pairs, index=False)
    both = pd.concat([per_input(df, COUPLED), per_input(df, UNCOUPLED)], ignore_index=True)
    plots.save(plots.critical_beta_eps(both, pairs), out_figure)
