"""Decided rate and time per backend on selected instances of trained models.

    python benchmarks/verify_matrix.py --models-dir results --dataset pneumoniamnist \
        --data-dir ../shared/data/medmnist --instances 20 --families linf:4,16 brightness:4,16 \
        --verifiers crown milp exact marabou --timeout 60 --out bench.csv

Each (model, instance, family, k, verifier) runs as a real job (forked child, hard
timeout, onnxruntime replay). Prints per-backend decided rates, the combined decided rate
of crown+milp, median times, and the crown/marabou median speed ratio on instances both
ran. Trains nothing: point --models-dir at `results/` of a workflow run (or at the output
of `medverify train`), i.e. <models-dir>/<dataset>/<model>/model.onnx.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medverify import data
from medverify.pipeline import select_instances
from medverify.results import Question
from medverify.verify import verify_image


def parse_families(items):
    out = []
    for item in items:
        name, ks = item.split(":")
        out += [(name, float(k)) for k in ks.split(",")]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--dataset", default="pneumoniamnist")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn3"])
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--families", nargs="+", default=["linf:4,16", "brightness:4,16"])
    ap.add_argument("--verifiers", nargs="+", default=["crown", "milp", "exact", "marabou"])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", default="verify_matrix.csv")
    args = ap.parse_args(argv)

    test = data.load(
        args.dataset, args.data_dir, channels=args.channels, md5=None, splits=("test",)
    )["test"]
    rows = []
    for model in args.models:
        onnx = Path(args.models_dir) / args.dataset / model / "model.onnx"
        inst = select_instances(
            args.dataset,
            args.data_dir,
            str(onnx),
            args.instances,
            str(Path(args.out).with_suffix(f".{model}.instances.json")),
            channels=args.channels,
            md5=None,
        )
        for family, k in parse_families(args.families):
            for verifier in args.verifiers:
                if verifier == "exact" and family == "linf":
                    continue
                for it in inst:
                    t0 = time.perf_counter()
                    question = Question(
                        dataset=args.dataset,
                        model=model,
                        index=it["index"],
                        true_label=it["label"],
                        family=family,
                        magnitude_k=k,
                        verifier=verifier,
                        timeout_s=args.timeout,
                        slot=it["slot"],
                    )
                    rec = verify_image(onnx, test.images[it["index"]], question)
                    rows.append(
                        {
                            "model": model,
                            "family": family,
                            "k": k,
                            "verifier": verifier,
                            "index": it["index"],
                            "status": rec.status,
                            "verifier_time_s": rec.verifier_time_s,
                            "wall_time_s": time.perf_counter() - t0,
                            "message": rec.message.splitlines()[0] if rec.message else "",
                        }
                    )
                    print(
                        f"{model} {family} k={k:g} {verifier} #{it['index']}: {rec.status} "
                        f"{rec.verifier_time_s:.3f}s",
                        flush=True,
                    )
    df = pd.DataFrame(rows)
    df.to_csv(args.out, index=False)
    df["decided"] = df.status.isin(["robust", "counterexample"])
    print("\n== decided rate and median verifier time per backend ==")
    summary = df.groupby(["model", "family", "k", "verifier"]).agg(
        n=("decided", "size"),
        decided=("decided", "mean"),
        robust=("status", lambda s: int((s == "robust").sum())),
        cex=("status", lambda s: int((s == "counterexample").sum())),
        median_s=("verifier_time_s", "median"),
    )
    print(summary.to_string())
    key = ["model", "family", "k", "index"]
    pivot = df.pivot_table(index=key, columns="verifier", values="decided", aggfunc="first")
    if {"crown", "milp"} <= set(pivot.columns):
        both = (pivot["crown"].astype(bool) | pivot["milp"].astype(bool)).mean()
        print(f"\ncrown+milp together decide {both:.1%} of {len(pivot)} instances")
    times = df.pivot_table(index=key, columns="verifier", values="verifier_time_s", aggfunc="first")
    if {"crown", "marabou"} <= set(times.columns):
        ratio = (times["marabou"] / times["crown"]).dropna()
        print(
            f"marabou/crown time ratio: median {np.median(ratio):.1f}x over {len(ratio)} "
            "instances (timeouts count at the timeout)"
        )
    decided = df[df.verifier.eq("exact") & df.family.eq("brightness")]
    if len(decided):
        print(
            f"exact on brightness: decided {decided.decided.mean():.1%}, median "
            f"{decided.verifier_time_s.median() * 1000:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("verify_matrix.py", main))
