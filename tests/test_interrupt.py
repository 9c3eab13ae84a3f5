"""Interruption: kill the workflow mid-run (SIGINT, then SIGKILL of the whole process
group), start it again. Finished records are reused, no half-written record is ever
read, and the final tables equal those of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medverify import results

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(
    os.environ.get("MEDVERIFY_DATA_DIR", REPO / ".." / "shared" / "data" / "medmnist")
).resolve()
#: table columns that differ between any two runs: times (and messages and solver
#: statistics, which quote times and peak memory)
VARYING = ("extra", "message")


def _start(workdir, config, *extra):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    cmd += ["--configfile", str(config), "--cores", "2", *extra]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
    )


def _records(workdir: Path) -> list[Path]:
    return sorted((workdir / "results").glob("*/*/verify/*/*/*/*/*.json"))


def _run_until(proc, workdir, n_records, timeout=900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_records(workdir)) >= n_records:
            return True
        time.sleep(0.1)
    return False


def _tables(workdir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in ("records", "outcomes", "agreement"):
        df = pd.read_csv(workdir / "results" / "tables" / f"{name}.csv")
        keep = [c for c in df.columns if "time" not in c and c not in VARYING]
        key = [c for c in keep if c in ("dataset", "model", "family", "magnitude_k", "verifier")]
        key += [c for c in ("index", "slot") if c in keep]
        out[name] = df[keep].sort_values(key).reset_index(drop=True)
    return out


def _every_record_reads(workdir: Path) -> None:
    for path in _records(workdir):
        results.read(path)  # a half-written record would fail to parse here
    stray = list((workdir / "results").rglob(".*.tmp"))
    # a killed writer may leave its hidden temp file; it is never a record path
    assert all(p.name.startswith(".") for p in stray)


@pytest.mark.slow
def test_interrupted_runs_end_with_the_same_tables(tmp_path):
    cfg = yaml.safe_load((REPO / "tests" / "config" / "ci.yaml").read_text())
    cfg.update(
        data_dir=str(DATA_DIR), instances=4, verifiers=["exact", "milp"], strategies=["joint"]
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    total = 4 * 3  # brightness x {exact, milp} + linf x milp, 4 instances

    # uninterrupted reference run
    ref = tmp_path / "ref"
    proc = _start(ref, config)
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, out[-3000:]
    reference = _tables(ref)

    # the same trained model and instances, no verification yet: copy the reference's
    # data/train/select outputs (mtimes kept) and drop its records and tables
    work = tmp_path / "work"
    shutil.copytree(ref, work, symlinks=True)
    for path in _records(work):
        path.unlink()
    shutil.rmtree(work / "results" / "tables")
    shutil.rmtree(work / "results" / "figures", ignore_errors=True)

    # 1. Ctrl-C (SIGINT to the process group) after the first records
    proc = _start(work, config)
    assert _run_until(proc, work, 2), "no records appeared"
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    _every_record_reads(work)
    after_int = len(_records(work))
    assert 2 <= after_int < total, after_int

    # 2. SIGKILL of the whole group (snakemake and its jobs) after more records
    proc = _start(work, config)
    assert _run_until(proc, work, after_int + 2), "no new records after restart"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    _every_record_reads(work)
    before = {p: p.stat().st_mtime_ns for p in _records(work)}
    assert len(before) < total, "the run finished before the kill: nothing was interrupted"

    # 3. run to the end: finished records are reused, the tables equal the reference.
    # A SIGKILLed Snakemake cannot remove its lock: `--unlock` first, as after any crash.
    proc = _start(work, config, "--unlock")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    proc = _start(work, config)
    out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, out[-3000:]
    assert len(_records(work)) == total
    reused = [p for p, t in before.items() if p.stat().st_mtime_ns == t]
    assert len(reused) >= len(before) - 2, (len(reused), len(before))  # <= 2 were running
    tables = _tables(work)
    for name, df in reference.items():
        pd.testing.assert_frame_equal(tables[name], df, check_dtype=False, obj=name)
