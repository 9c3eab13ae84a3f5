"""Snakemake's per-job cost under its two schedulers, side by side on the same matrix.

    python benchmarks/scheduler.py --data-dir ../shared/data/medmnist [--instances 40]
        [--reps 2] [--out /tmp/medverify-scheduler]

Trains one 1-epoch PneumoniaMNIST MLP and selects its instances once (``base``), then, for
each repetition, copies that working directory and runs the same crown verify matrix
(linf and brightness at k = 1, 2, 4; timeout 1 s, no branch and bound: the verification is
milliseconds, so what is measured is the cost around each job) with ``--scheduler ilp``
(Snakemake's default) and ``--scheduler greedy``, alternately, so both see the same load.
Prints per run the wall time and the CPU seconds of Snakemake and every job it ran, per
verify job, and the greedy/ilp ratios of the medians. On a quiet 2-core machine
(``--instances 40 --reps 2``): greedy/ilp 0.97 in wall and CPU time, 0.30-0.32 CPU s per
verify job in all; the profiles keep the default (ilp).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEDULERS = ("ilp", "greedy")


def matrix_config(data_dir: Path, instances: int) -> dict:
    return {
        "data_dir": str(data_dir),
        "allow_download": False,
        "datasets": ["pneumoniamnist"],
        "models": ["mlp"],
        "families": {"linf": [1, 2, 4], "brightness": [1, 2, 4]},
        "verifiers": ["crown"],
        "verifier_options": {"crown": {"attack_budget_s": 0.2, "bab": False}},
        "instances": instances,
        "timeout_s": 1,
        "epochs": 1,
        "search": {"enabled": False},
    }


def snakemake(workdir: Path, config: Path, *extra: str) -> tuple[float, float]:
    """(wall s, CPU s of Snakemake and all its children) of one run; raises on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
    cmd += ["--workflow-profile", str(REPO / "profiles" / "default"), "--cores", "2"]
    cmd += ["--configfile", str(REPO / "config.yaml"), str(config), "-d", str(workdir)]
    proc = subprocess.run([*cmd, *extra], capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed in {workdir}:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO / ".." / "shared" / "data" / "medmnist")
    ap.add_argument("--instances", type=int, default=40)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "medverify-sched")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    config = args.out / "matrix.yaml"
    cfg = matrix_config(args.data_dir.resolve(), args.instances)
    config.write_text(yaml.safe_dump(cfg))
    jobs = args.instances * sum(len(ks) for ks in cfg["families"].values())
    base = args.out / "base"
    if not (base / "results" / "pneumoniamnist" / "mlp" / "instances.json").exists():
        print("training the 1-epoch MLP and selecting instances (once) ...", flush=True)
        snakemake(base, config, "results/pneumoniamnist/mlp/instances.json")
    runs = {name: [] for name in SCHEDULERS}
    for rep in range(1, args.reps + 1):
        for name in SCHEDULERS:
            work = args.out / f"{name}{rep}"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(base, work, symlinks=True)
            load = os.getloadavg()[0]
            wall, cpu = snakemake(work, config, "--scheduler", name)
            runs[name].append((wall, cpu))
            print(
                f"{name:6s} rep {rep}: {jobs} verify jobs, wall {wall:6.1f} s, CPU {cpu:6.1f} s "
                f"({cpu / jobs:.3f} CPU s/job), load at start {load:.1f}",
                flush=True,
            )
    med = {
        n: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for n, r in runs.items()
    }
    print(
        f"greedy/ilp median wall {med['greedy'][0] / med['ilp'][0]:.2f}, "
        f"median CPU {med['greedy'][1] / med['ilp'][1]:.2f}"
    )
    return 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("scheduler.py", main))
