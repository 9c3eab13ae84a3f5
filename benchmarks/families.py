"""Structured families on trained models: what the clip pruning saves, and how each
backend decides each family.

    # peak memory and time per (verifier, family), full 2 x pixels clip prefix vs pruned
    python benchmarks/families.py prefix --models-dir results --data-dir DIR \
        --dataset pneumoniamnist --models mlp --instances 2 --k 16 --timeout 60
    # decided rate, median time and agreement per (model, family, k, backend)
    python benchmarks/families.py matrix --models-dir results --data-dir DIR \
        --instances 20 --k 4 16 --timeout 60 --verifiers crown milp marabou

Reads <models-dir>/<dataset>/<model>/{model.onnx,instances.json} from a workflow run.
Every job of ``prefix`` runs in a fresh Python process (``one``), so its peak resident
memory (ru_maxrss) is its own; ``matrix`` runs the jobs one after another through
``verify.run_verifier`` (isolated child, hard timeout, onnxruntime replay).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from medverify import perturbations
from medverify.verifiers import applies

#: the structured clinical families (every family but linf)
FAMILIES = [name for name, fam in perturbations.FAMILIES.items() if fam.structured]


def _problem(spec: dict):
    from medverify import data, onnx_io, perturbations
    from medverify.verifiers import Problem

    base = Path(spec["models_dir"]) / spec["dataset"] / spec["model"]
    test = data.load(
        spec["dataset"], spec["data_dir"], channels=spec["channels"], md5=None, splits=("test",)
    )["test"]
    inst = json.loads((base / "instances.json").read_text())["instances"][spec["slot"]]
    classifier = onnx_io.load_affine(base / "model.onnx")
    fam = perturbations.make(spec["family"], test.images[inst["index"]], spec["k"])
    net = perturbations.compose(fam, classifier, prune=spec["prune"])
    lo, hi = fam.box()
    label = int(inst["label"])
    targets = [j for j in range(classifier.output_dim) if j != label]
    ort = onnx_io.OrtClassifier(base / "model.onnx")
    return Problem(net, lo, hi, label, targets, fam), ort


def one(spec: dict) -> dict:
    """One job in this process (the caller spawned us): verdict, seconds, peak RSS."""
    from medverify.verify import run_verifier

    problem, ort = _problem(spec)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    out = run_verifier(problem, spec["verifier"], spec["timeout"], ort, isolate=False)
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return {
        **spec,
        "status": out["status"],
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": peak / 1024,
        "rss_before_verify_mb": before,
        "relus": problem.net.relu_count,
        "first_layer": problem.net.layers[0][0].shape[0],
    }


def _hwm_mb(pid: int) -> float:
    """Peak resident memory of a running process (VmHWM), MB; nan when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _spawn(spec: dict, kill_after_s: float) -> dict:
    """Run ``one`` in a fresh process; a process still running after ``kill_after_s`` is
    killed and reported with the peak memory it had reached (polled from /proc)."""
    cmd = [sys.executable, __file__, "one", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    start, peak = time.perf_counter(), 0.0
    while proc.poll() is None and time.perf_counter() - start < kill_after_s:
        peak = np.nanmax([peak, _hwm_mb(proc.pid)])
        time.sleep(0.5)
    if proc.poll() is None:
        peak = np.nanmax([peak, _hwm_mb(proc.pid)])
        proc.kill()
        proc.wait()
        return {
            **spec,
            "status": "killed",
            "seconds": time.perf_counter() - start,
            "peak_rss_mb": peak,
        }
    try:
        return json.loads(proc.stdout.read().strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {
            **spec,
            "status": "crashed",
            "seconds": time.perf_counter() - start,
            "peak_rss_mb": peak,
        }


def prefix(args) -> None:
    rows = []
    for model in args.models:
        for slot in range(args.instances):
            for family in args.families:
                for verifier in args.verifiers:
                    if not applies(verifier, family):
                        continue
                    for prune in {"both": (False, True), "yes": (True,), "no": (False,)}[
                        args.prune
                    ]:
                        spec = dict(
                            models_dir=args.models_dir,
                            data_dir=args.data_dir,
                            dataset=args.dataset,
                            channels=args.channels,
                            model=model,
                            slot=slot,
                            family=family,
                            k=args.k,
                            verifier=verifier,
                            prune=prune,
                            timeout=args.timeout,
                        )
                        rows.append(_spawn(spec, args.timeout + 60))
                        print(json.dumps(rows[-1]), flush=True)
    _summary_prefix(rows)


def _summary_prefix(rows) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    g = df.groupby(["model", "family", "verifier", "prune"])
    out = g.agg(
        n=("status", "size"),
        decided=("status", lambda s: int(s.isin(["robust", "counterexample"]).sum())),
        relus=("relus", "median"),
        median_s=("seconds", "median"),
        max_s=("seconds", "max"),
        peak_rss_mb=("peak_rss_mb", "max"),
    )
    print(out.to_string())


def matrix(args) -> None:
    import pandas as pd

    from medverify.verify import run_verifier

    rows = []
    for model in args.models:
        for family in args.families:
            for k in args.k:
                for slot in range(args.instances):
                    spec = dict(
                        models_dir=args.models_dir,
                        data_dir=args.data_dir,
                        dataset=args.dataset,
                        channels=args.channels,
                        model=model,
                        slot=slot,
                        family=family,
                        k=k,
                        prune=True,
                    )
                    problem, ort = _problem(spec)
                    for verifier in args.verifiers:
                        if not applies(verifier, family):
                            continue
                        t0 = time.perf_counter()
                        out = run_verifier(problem, verifier, args.timeout, ort)
                        row = {
                            **spec,
                            "verifier": verifier,
                            "status": out["status"],
                            "verifier_time_s": out.get("verifier_time_s"),
                            "job_s": time.perf_counter() - t0,
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, index=False)
    df["decided"] = df["status"].isin(["robust", "counterexample"])
    summary = df.groupby(["model", "family", "k", "verifier"]).agg(
        n=("status", "size"),
        robust=("status", lambda s: int((s == "robust").sum())),
        cex=("status", lambda s: int((s == "counterexample").sum())),
        decided_rate=("decided", "mean"),
        median_s=("verifier_time_s", "median"),
    )
    print(summary.to_string())
    # agreement: per question, the decided verdicts of all backends
    key = ["model", "family", "k", "slot"]
    wide = df.pivot_table(index=key, columns="verifier", values="status", aggfunc="first")
    decided = wide.apply(lambda r: {v for v in r if v in ("robust", "counterexample")}, axis=1)
    both = wide.apply(lambda r: sum(v in ("robust", "counterexample") for v in r) >= 2, axis=1)
    print(
        f"questions: {len(wide)}; decided by >= 2 backends: {int(both.sum())}; "
        f"contradictions (robust and counterexample on one question): "
        f"{int(decided.apply(len).eq(2).sum())}"
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "one":
        print(json.dumps(one(json.loads(argv[1]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["prefix", "matrix"])
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--dataset", default="pneumoniamnist")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn3"])
    ap.add_argument("--families", nargs="+", default=FAMILIES)
    ap.add_argument("--verifiers", nargs="+", default=["marabou", "crown", "milp", "exact"])
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--k", type=float, nargs="+", default=[16.0])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", default="")
    ap.add_argument("--prune", choices=["both", "yes", "no"], default="both")
    args = ap.parse_args(argv)
    if args.mode == "prefix":
        args.k = args.k[0]
        prefix(args)
    else:
        matrix(args)
    return 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("families.py", main))
