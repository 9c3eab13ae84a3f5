"""Target-label guided vs joint verification, side by side (the shape of Wan et al.'s tables).

    python benchmarks/guided.py --work-dir results/guided \
        --datasets mnist10k:../shared/data/mnist retinamnist:../shared/data/medmnist \
        --models mlp24x2 mlp100x2 mlp100x5 --instances 100 --eps 1 3 5 7 9 11 \
        --verifiers milp crown marabou --timeout 60

Trains each (dataset, model) once (``<work-dir>/<dataset>/<model>/model.onnx``; skipped
when present), picks the first ``--instances`` correctly classified test images, and for
every (net, ε, backend, image) runs the joint and the guided strategy as real jobs (forked
child, hard timeout, onnxruntime replay), interleaved: the order of the two alternates
from image to image. ``--instances-for marabou:5`` gives a backend fewer images; a backend with options is
written ``milp+prune=false`` (values are JSON). One row
per job is appended to ``<work-dir>/guided_jobs.csv`` as it finishes (a re-run skips jobs
already there), then ``medverify.aggregate.guided_table`` (the workflow's guided rule
uses the same function) writes the per (dataset, model, backend, ε) table to ``--out``:

    n, T (joint, s), T* (guided, s), sort (s, inside T*), reduction (T - T*) / T, speed-up
    T / T*, robust / counterexample / unknown / timeout / error counts of both, and
    ``mismatch``: instances where both decide and disagree (must be 0).

T and T* are sums of the in-child verifier time over the cell's images (bounds and
sorting included for guided); a job killed at the hard timeout counts its full time.
RetinaMNIST runs on luminance (channels 1), so every net is 784-...-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from medverify import data, plots
from medverify.aggregate import guided_table
from medverify.pipeline import select_instances, train_and_export
from medverify.results import Question
from medverify.strategies import STRATEGIES
from medverify.verify import verify_image

JOB_KEY = ["dataset", "model", "verifier", "magnitude_k", "instance", "strategy"]


def parse_verifier(spec: str) -> tuple[str, dict]:
    """``milp`` or ``milp+prune=false``: backend name and options (values as JSON)."""
    name, *opts = spec.split("+")
    return name, {k: json.loads(v) for k, v in (o.split("=", 1) for o in opts)}


def parse_pairs(items, cast=str) -> dict:
    return {k: cast(v) for k, v in (item.split(":", 1) for item in items)}


def ensure_model(dataset, data_dir, model, work, epochs, seed) -> Path:
    out = work / dataset / model
    onnx = out / "model.onnx"
    if not onnx.exists():
        out.mkdir(parents=True, exist_ok=True)
        metrics = train_and_export(
            dataset,
            data_dir,
            model,
            out / "model.pt",
            onnx,
            out / "metrics.json",
            md5=None,
            epochs=epochs,
            seed=seed,
        )
        print(f"trained {dataset}/{model}: test accuracy {metrics['test_accuracy']:.4f}")
    return onnx


def run_jobs(args) -> pd.DataFrame:
    work = Path(args.work_dir)
    jobs_csv = work / "guided_jobs.csv"
    if jobs_csv.exists():
        done = pd.read_csv(jobs_csv)
        if "eps_k" in done.columns:  # written by an earlier version of this script
            done = done.rename(columns={"eps_k": "magnitude_k", "slot": "instance"})
            done.insert(2, "family", "linf")
            done.to_csv(jobs_csv, index=False)
        columns = list(done.columns)
    else:
        done, columns = pd.DataFrame(columns=JOB_KEY), None
    seen = set(map(tuple, done[JOB_KEY].astype(str).values.tolist()))
    per_verifier = parse_pairs(args.instances_for, int)
    strategies = list(STRATEGIES)
    for dataset, data_dir in parse_pairs(args.datasets).items():
        test = data.load(dataset, data_dir, md5=None, splits=("test",))["test"]
        for model in args.models:
            onnx = ensure_model(dataset, data_dir, model, work, args.epochs, args.seed)
            inst = select_instances(
                dataset,
                data_dir,
                str(onnx),
                args.instances,
                str(onnx.parent / "instances.json"),
                md5=None,
            )
            for k in args.eps:
                for verifier in args.verifiers:
                    backend, options = parse_verifier(verifier)
                    n = min(per_verifier.get(verifier, args.instances), len(inst))
                    for slot in range(n):
                        item = inst[slot]
                        order = strategies if slot % 2 == 0 else strategies[::-1]
                        for strategy in order:
                            key = (dataset, model, verifier, str(float(k)), str(slot), strategy)
                            if key in seen:
                                continue
                            q = Question(
                                dataset=dataset,
                                model=model,
                                index=item["index"],
                                true_label=item["label"],
                                family="linf",
                                magnitude_k=float(k),
                                verifier=backend,
                                strategy=strategy,
                                timeout_s=args.timeout,
                                slot=slot,
                            )
                            rec = verify_image(
                                str(onnx), test.images[item["index"]], q, options=options
                            )
                            checked = rec.labels_checked or []
                            row = {
                                "dataset": dataset,
                                "model": model,
                                "family": "linf",
                                "verifier": verifier,
                                "magnitude_k": float(k),
                                "instance": slot,
                                "strategy": strategy,
                                "index": item["index"],
                                "status": rec.status,
                                "verifier_time_s": rec.verifier_time_s,
                                "wall_time_s": rec.wall_time_s,
                                "sort_s": rec.extra.get("sort_s", 0.0),
                                "labels_pruned": sum(e["status"] == "pruned" for e in checked),
                                "labels_run": sum(
                                    e["status"] not in ("pruned", "skipped") for e in checked
                                ),
                                "flags": ";".join(rec.flags),
                                "message": rec.message.splitlines()[0][:200] if rec.message else "",
                            }
                            columns = columns or list(row)
                            pd.DataFrame([row], columns=columns).to_csv(
                                jobs_csv, mode="a", header=not jobs_csv.exists(), index=False
                            )
                            print(
                                f"{dataset}/{model} {verifier} k={k:g} slot={slot} "
                                f"{strategy}: {rec.status} {rec.verifier_time_s:.2f}s",
                                flush=True,
                            )
    return pd.read_csv(jobs_csv)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work-dir", default="results/guided")
    ap.add_argument(
        "--datasets",
        nargs="+",
        default=["mnist10k:../shared/data/mnist", "retinamnist:../shared/data/medmnist"],
        help="name:data_dir pairs",
    )
    ap.add_argument("--models", nargs="+", default=["mlp24x2", "mlp100x2", "mlp100x5"])
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--instances-for", nargs="*", default=[], help="verifier:n, e.g. marabou:5")
    ap.add_argument("--eps", nargs="+", type=float, default=[1, 3, 5, 7, 9, 11])
    ap.add_argument("--verifiers", nargs="+", default=["milp", "crown", "marabou"])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/tables/guided.csv")
    ap.add_argument("--figure", default="results/figures/guided.png")
    ap.add_argument("--summary-only", action="store_true", help="tabulate the jobs file only")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    if args.summary_only:
        jobs = pd.read_csv(Path(args.work_dir) / "guided_jobs.csv")
    else:
        jobs = run_jobs(args)
    table = guided_table(jobs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    plots.save(plots.guided_reduction(table), args.figure)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        cols = ["dataset", "model", "verifier", "magnitude_k", "n", "T_joint_s", "T_guided_s"]
        cols += ["sort_s", "speedup", "mismatch"]
        print(table[cols].to_string(index=False))
    print(f"{len(jobs)} jobs; {time.perf_counter() - start:.0f}s; -> {args.out}, {args.figure}")
    return 1 if (table["mismatch"] > 0).any() else 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("guided.py", main))
