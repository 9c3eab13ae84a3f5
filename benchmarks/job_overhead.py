"""Fixed per-job overhead of the verify rule: Snakemake's benchmark time of each job
minus the time spent inside the verifier (the record's verifier_time_s).

    python benchmarks/job_overhead.py [results]

Run after a workflow run; prints the median and p95 overhead per verifier and overall,
and the total verifier time against the total job time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from medverify.results import read


def main(argv=None) -> int:
    root = Path((argv or sys.argv[1:] or ["results"])[0])
    rows = []
    for tsv in sorted((root / "benchmarks").glob("*/*/verify/*/*/*/*/*.tsv")):
        rel = tsv.relative_to(root / "benchmarks").with_suffix(".json")
        dataset, model, _, family, k, verifier, strategy, slot = rel.parts
        record_path = root / dataset / model / "verify" / family / k / verifier / strategy / slot
        if not record_path.exists():
            continue
        rec = read(record_path)
        job_s = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "family": family,
                "k": k,
                "verifier": verifier,
                "strategy": strategy,
                "status": rec.status,
                "job_s": job_s,
                "verifier_s": rec.verifier_time_s,
                "overhead_s": job_s - rec.verifier_time_s,
            }
        )
    if not rows:
        print(f"no verify benchmarks with records under {root}", file=sys.stderr)
        return 1
    df = pd.DataFrame(rows)
    print(f"{len(df)} verify jobs")
    summary = df.groupby("verifier")["overhead_s"].describe(percentiles=[0.5, 0.95])
    print(summary[["count", "50%", "95%", "max"]].round(3).to_string())
    print(
        f"overall median overhead {df.overhead_s.median():.3f} s, p95 "
        f"{df.overhead_s.quantile(0.95):.3f} s"
    )
    print(f"sum of job times {df.job_s.sum():.0f} s, of verifier times {df.verifier_s.sum():.0f} s")
    return 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("job_overhead.py", main))
