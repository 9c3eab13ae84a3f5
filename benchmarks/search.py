"""Critical-eps searches on real models, for the closing note of the search issue.

    # L-infinity bisection with crown: time, bracket width, censored count
    python benchmarks/search.py bisection --onnx M.onnx --dataset mnist10k \
        --data-dir ../shared/data/mnist --instances 100 --timeout 2 --out DIR \
        [--options crown='{"threads": 2}']
    # exact critical beta vs bisection, MILP minimum eps vs the bisection bracket
    python benchmarks/search.py routes --onnx M.onnx --dataset pneumoniamnist \
        --data-dir ../shared/data/medmnist --instances 100 --timeout 2 --out DIR
    # the open part of censored linf brackets (a bisection run's records under DIR):
    # targeted PGD on every wrong label at each grid point inside, from the bottom
    python benchmarks/search.py gap --onnx M.onnx --dataset mnist10k \
        --data-dir ../shared/data/mnist --instances 100 --out DIR [--restarts 32 --steps 200]
    # statistics tables (log-normal fits, twins: model vs <model>_pgd) of every search
    # record under DIR, e.g. bisection runs of several models with --out DIR/<model>
    python benchmarks/search.py tables --out DIR --tables TABLES

Inputs are the first N correctly classified test images (onnxruntime), as in the
workflow. Every search record is written to DIR/<route>/<family>/<index>.json (probes
cached under DIR/cache), so an interrupted run resumes. Prints one summary line per part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from medverify import data, onnx_io, results, search
from medverify.errors import ConfigError
from medverify.results import Question
from medverify.verifiers import options_by_backend


def selected(onnx, images, labels, n):
    ort = onnx_io.OrtClassifier(onnx)
    out = []
    for i in range(len(labels)):
        if int(np.argmax(ort.logits(images[i : i + 1])[0])) == int(labels[i]):
            out.append(i)
            if len(out) == n:
                break
    return out


def run(args, family, verifier, method, index, images, labels):
    out = Path(args.out) / method / family / verifier / f"{index}.json"
    if out.exists():
        return results.read_search(out)
    q = Question(
        dataset=args.dataset,
        model=Path(args.onnx).parent.name,
        index=index,
        true_label=int(labels[index]),
        family=family,
        magnitude_k=0,
        verifier=verifier,
        timeout_s=args.timeout,
    )
    grid = search.Grid(max_eps=search.default_max_eps(family))
    rec = search.search_image(
        args.onnx,
        images[index],
        q,
        grid=grid,
        method=method,
        options=args.options.get(verifier),
        cache_dir=Path(args.out) / "cache" / method / family / verifier / str(index),
    )
    results.write(rec, out)
    return rec


def inside(rec, value, tol=1e-9):
    """Is ``value`` in the proven bracket [eps_robust, eps_counterexample] (open above
    when no counterexample was found)?"""
    hi = np.inf if rec.eps_counterexample is None else rec.eps_counterexample
    return rec.eps_robust - tol <= value <= hi + tol


def converged(rec) -> bool:
    """Did the bisection reach the grid resolution if undecided probes count as its top?
    (The lowest probe above the robust end that is not robust, a counterexample or an
    undecided one, lies one grid step above it.) Not a bracket: an undecided probe proves
    nothing; this is the convention of studies that take a timeout as not robust."""
    if rec.eps_robust is None:
        return False
    above = [
        p["magnitude_k"] / 255
        for p in rec.probes
        if p["status"] != "robust" and p["magnitude_k"] / 255 > rec.eps_robust + 1e-12
    ]
    return bool(above) and min(above) - rec.eps_robust <= rec.resolution * (1 + 1e-6)


def summary(name, recs):
    secs = np.array([r.seconds for r in recs])
    widths = [r.width for r in recs if r.width is not None]
    at_res = sum(1 for r in recs if r.width is not None and r.width <= r.resolution + 1e-12)
    beyond = sum(1 for r in recs if r.eps_counterexample is None)
    bis = [r for r in recs if r.method == "bisection"]
    print(
        f"{name}: n={len(recs)} median {np.median(secs):.2f}s p90 {np.percentile(secs, 90):.2f}s "
        f"at resolution {at_res}/{len(recs)}, censored {sum(r.censored for r in recs)}, "
        f"no counterexample in range {beyond}, median width "
        f"{np.median(widths) * 255 if widths else float('nan'):.2f}/255"
        + (
            f", converged with undecided probes as the top {sum(map(converged, bis))}/{len(bis)}"
            if bis
            else ""
        ),
        flush=True,
    )


def dist(args) -> int:
    """Test and train split searches of one model (first N correctly classified of each),
    then the statistics tables of medverify.stats over every record under --out."""
    splits = data.load(args.dataset, args.data_dir, md5=None, splits=("test", "train"))
    verifier = "exact" if args.method == "exact" else args.verifier
    for split, sp in splits.items():
        recs = []
        for i in selected(args.onnx, sp.images, sp.labels, args.instances):
            out = Path(args.out) / Path(args.onnx).parent.name / split / f"{i}.json"
            if out.exists():
                recs.append(results.read_search(out))
                continue
            q = Question(
                dataset=args.dataset,
                model=Path(args.onnx).parent.name,
                index=i,
                true_label=int(sp.labels[i]),
                family=args.family,
                magnitude_k=0,
                verifier=verifier,
                timeout_s=args.timeout,
            )
            grid = search.Grid(max_eps=search.default_max_eps(args.family))
            rec = search.search_image(
                args.onnx, sp.images[i], q, grid=grid, method=args.method, split=split
            )
            results.write(rec, out)
            recs.append(rec)
        summary(f"{args.dataset}/{Path(args.onnx).parent.name} {split} {args.family}", recs)
    if args.tables:
        return tables(args)
    return 0


def gap(args, idx, images, labels) -> int:
    """For each censored linf bisection record (``bisection``'s, under --out) of the
    inputs ``idx``: the lowest grid point strictly inside its bracket where targeted PGD
    (every wrong label, --restarts x --steps) finds a counterexample that onnxruntime
    replays. Says whether the open part of a bracket is an attack's gap or a proof's."""
    import time

    import torch

    from medverify.attack import budget_error, pgd_per_label
    from medverify.verifiers import Result
    from medverify.verify import build_problem, finalize

    bad = budget_error(args.restarts, args.steps)
    if bad:
        print(f"search benchmark: gap {bad}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    classifier = onnx_io.load_affine(args.onnx)
    ort = onnx_io.OrtClassifier(args.onnx)
    found = n = read = 0
    records = Path(args.out) / "bisection" / "linf" / args.verifier
    for i in idx:
        path = records / f"{i}.json"
        if not path.exists():
            continue
        read += 1
        rec = results.read_search(path)
        if not rec.censored or rec.eps_counterexample is None:
            continue
        n += 1
        t0 = time.perf_counter()
        lo_i = round(rec.eps_robust / rec.resolution)
        hi_i = round(rec.eps_counterexample / rec.resolution)
        hit = None
        for g in range(lo_i + 1, hi_i):
            eps_k = 255 * g * rec.resolution
            problem = build_problem(classifier, images[i], int(labels[i]), "linf", eps_k)
            for _, point in pgd_per_label(problem, args.restarts, args.steps):
                fields = finalize(problem, Result("counterexample", params=point), ort, "pgd", 0.0)
                if fields["status"] == "counterexample":
                    hit = g
                    break
            if hit is not None:
                break
        found += hit is not None
        print(
            f"input {i}: robust at {lo_i}, counterexample at {hi_i} (grid steps); "
            f"PGD inside: {'none' if hit is None else f'at {hit}'} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    if not read:
        print(f"search benchmark: gap found no bisection record under {records}", file=sys.stderr)
        return 2
    print(f"PGD found a counterexample inside {found} of {n} censored brackets", flush=True)
    return 0


def tables(args) -> int:
    """The statistics tables of medverify.stats over every search record under --out
    (probe caches left out), in --tables; prints the twin table (model vs <model>_pgd)."""
    from medverify import stats

    if not args.tables:
        print("search benchmark: tables needs --tables DIR", file=sys.stderr)
        return 2
    paths = sorted(p for p in Path(args.out).rglob("*.json") if "cache" not in p.parts)
    if not paths:
        print(f"search benchmark: no search record under {args.out}", file=sys.stderr)
        return 2
    df = stats.load(paths)
    out = Path(args.tables)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "critical_eps.csv", index=False)
    twins = stats.twin_shift(df)
    for name, frame in (
        ("critical_lognormal", stats.lognormal_fit(df)),
        ("critical_train_test", stats.train_vs_test(df)),
        ("critical_spearman", stats.spearman(df)),
        ("critical_labels", stats.counterexample_labels(df)),
        ("critical_twins", twins),
    ):
        frame.to_csv(out / f"{name}.csv", index=False)
    print(twins.to_string(index=False))
    print(f"{len(df)} searches -> {out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("part", choices=("bisection", "routes", "dist", "tables", "gap"))
    ap.add_argument("--onnx", help="every part but tables")
    ap.add_argument("--dataset", help="every part but tables")
    ap.add_argument("--data-dir", help="every part but tables")
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=2.0, help="per probe (milp-min: whole)")
    ap.add_argument("--milp-timeout", type=float, default=30.0)
    ap.add_argument("--verifier", default="crown", help="linf bisection verifier")
    ap.add_argument("--brightness-verifiers", nargs="+", default=["exact", "crown"])
    ap.add_argument("--crown-instances", type=int, default=30)
    ap.add_argument("--milp-instances", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=32, help="gap: PGD restarts per label")
    ap.add_argument("--steps", type=int, default=200, help="gap: PGD steps")
    ap.add_argument("--out", required=True)
    ap.add_argument("--family", default="brightness", help="dist: family")
    ap.add_argument("--method", default="exact", help="dist: search method")
    ap.add_argument("--tables", help="dist: directory for the statistics tables")
    ap.add_argument(
        "--options",
        nargs="*",
        default=[],
        help="verifier='{json options}', e.g. crown='{\"threads\": 2}'",
    )
    args = ap.parse_args(argv)
    try:
        args.options = options_by_backend(args.options)
    except ConfigError as exc:
        print(f"search benchmark: {exc}", file=sys.stderr)
        return 2
    if args.part == "dist":
        return dist(args)
    if args.part == "tables":
        return tables(args)
    missing = [
        f"--{k.replace('_', '-')}" for k in ("onnx", "dataset", "data_dir") if not getattr(args, k)
    ]
    if missing:
        ap.error(f"{args.part} needs {', '.join(missing)}")
    test = data.load(args.dataset, args.data_dir, md5=None, splits=("test",))["test"]
    idx = selected(args.onnx, test.images, test.labels, args.instances)
    if args.part == "gap":
        return gap(args, idx, test.images, test.labels)
    if args.part == "bisection":
        recs = [
            run(args, "linf", args.verifier, "bisection", i, test.images, test.labels) for i in idx
        ]
        summary(f"{args.dataset} linf bisection/{args.verifier}", recs)
        return 0
    # exact critical beta vs bisection on brightness, per bisection verifier
    for verifier in args.brightness_verifiers:
        agree, n, rows, bis_b, ex_b = 0, 0, [], [], []
        for i in idx[: args.instances if verifier != "crown" else args.crown_instances]:
            b = run(args, "brightness", verifier, "bisection", i, test.images, test.labels)
            e = run(args, "brightness", "exact", "exact", i, test.images, test.labels)
            bis_b.append(b)
            ex_b.append(e)
            n += 1
            if inside(b, e.eps_robust if e.eps_counterexample is not None else np.inf):
                agree += 1
            else:
                rows.append((i, b.eps_robust, b.eps_counterexample, e.eps_robust))
        summary(f"{args.dataset} brightness bisection/{verifier}", bis_b)
        summary(f"{args.dataset} brightness exact", ex_b)
        print(
            f"exact critical beta inside the bisection/{verifier} bracket: {agree}/{n} "
            f"(censored brackets count when they contain it); misses {rows}",
            flush=True,
        )
    # MILP minimum eps vs the linf bisection bracket
    inside_n, finished, total, miss = 0, 0, 0, []
    bis_l, mil = [], []
    timeout = args.timeout
    for i in idx[: args.milp_instances]:
        b = run(args, "linf", args.verifier, "bisection", i, test.images, test.labels)
        args.timeout = args.milp_timeout
        m = run(args, "linf", "milp", "milp-min", i, test.images, test.labels)
        args.timeout = timeout
        bis_l.append(b)
        mil.append(m)
        total += 1
        v = m.extra.get("min_eps")
        if v is None or not m.extra.get("proven"):
            continue
        finished += 1
        if inside(b, v):
            inside_n += 1
        else:
            miss.append((i, b.eps_robust, b.eps_counterexample, v))
    summary(f"{args.dataset} linf bisection/{args.verifier}", bis_l)
    summary(f"{args.dataset} linf milp-min", mil)
    print(
        f"milp minimum eps finished (proven optimal) on {finished}/{total}; inside the "
        f"bisection bracket on {inside_n}/{finished}; misses {miss}"
    )
    return 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("search.py", main))
