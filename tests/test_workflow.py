"""The Snakemake workflow: lint, dry runs of the default matrix, config errors, one real
end-to-end run on PneumoniaMNIST, and the DermaMNIST code path on a generated file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medverify import data, results

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
CI_CONFIG = REPO / "tests" / "config" / "ci.yaml"
DERMA_CONFIG = REPO / "tests" / "config" / "derma.yaml"
DATA_DIR = Path(
    os.environ.get("MEDVERIFY_DATA_DIR", REPO / ".." / "shared" / "data" / "medmnist")
).resolve()
ONE_PARAMETER = {"brightness", "contrast"}


def snakemake(*args, workdir: Path | None = None, timeout: float = 600):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE)]
    if workdir is not None:
        cmd += ["-d", str(workdir)]
    if "--configfile" not in args:  # config.yaml is looked up in the working directory
        cmd += ["--configfile", str(REPO / "config.yaml")]
    return subprocess.run(
        [*cmd, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run."""
    table = output.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def expected_verify_jobs(cfg: dict) -> int:
    per_instance = sum(
        len(ks) * sum(1 for v in cfg["verifiers"] if v != "exact" or fam in ONE_PARAMETER)
        for fam, ks in cfg["families"].items()
    )
    strategies = len(cfg.get("strategies", ["joint"]))
    return len(cfg["datasets"]) * len(cfg["models"]) * per_instance * cfg["instances"] * strategies


def test_lint_is_clean():
    proc = snakemake("--lint", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition" in proc.stdout + proc.stderr


def test_dry_run_lists_one_verify_job_per_instance(tmp_path):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    proc = snakemake("-n", workdir=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout)
    n_models = len(cfg["datasets"]) * len(cfg["models"])
    assert counts["verify"] == expected_verify_jobs(cfg) == 640
    assert counts["train"] == counts["select"] == n_models
    assert counts["data"] == counts["examples"] == len(cfg["datasets"])
    assert counts["merge"] == counts["figures"] == 1


def test_dry_run_leaves_out_linf_for_exact(tmp_path):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["verifiers"] = ["exact", "milp"]
    proc = snakemake("-n", "--config", "verifiers=[exact,milp]", workdir=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert job_counts(proc.stdout)["verify"] == expected_verify_jobs(cfg) == 480
    assert "/linf/4/exact/" not in proc.stdout and "/brightness/4/exact/" in proc.stdout


def test_nested_config_overrides_keep_their_types(tmp_path):
    """Snakemake reads nested --config values as strings ('false', '4'); they are typed."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["families"]["linf"] = [4]  # Snakemake merges mappings: brightness stays
    overrides = ["search={enabled: false}", "families={linf: [4]}", "verifiers=[crown]"]
    proc = snakemake("-n", "--config", *overrides, workdir=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cfg["verifiers"] = ["crown"]
    counts = job_counts(proc.stdout)
    assert counts["verify"] == expected_verify_jobs(cfg) == 240
    assert "search" not in counts and "/linf/4/crown/" in proc.stdout
    assert "/linf/16/" not in proc.stdout and "/brightness/16/crown/" in proc.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ("models=[mlp,resnet]", "'resnet' does not match"),
        ("verifiers=[eran]", "unknown verifier 'eran': choose from"),
        ("datasets=[chestmnist]", "dataset 'chestmnist' has no entry in dataset_settings"),
        ("dataset_settings={pneumoniamnist: {channels: 2}}", "is not one of [1, 3]"),
        ("instances=0", "0 is less than the minimum of 1"),
        ("strategies=[greedy]", "unknown strategy 'greedy': choose from joint, guided"),
        ("epoch=3", "Additional properties are not allowed ('epoch' was unexpected)"),
        (
            "search={model_timeout_s: {mlp_adv: 20}}",
            "search.model_timeout_s names model 'mlp_adv', which this run does not have",
        ),
    ],
)
def test_bad_config_values_are_named(tmp_path, override, message):
    proc = snakemake("-n", "--config", override, workdir=tmp_path, timeout=120)
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).splitlines()
    assert any(message in line for line in lines), proc.stderr


def test_end_to_end_pneumoniamnist(tmp_path):
    """Real data, real training (2 epochs), real verifiers (exact, milp), tables, report."""
    if not (DATA_DIR / "pneumoniamnist.npz").exists():
        pytest.fail(f"PneumoniaMNIST not found in {DATA_DIR}: set MEDVERIFY_DATA_DIR")
    cfg = yaml.safe_load(CI_CONFIG.read_text())
    common = ["--configfile", CI_CONFIG, "--config", f"data_dir={DATA_DIR}"]
    start = time.perf_counter()
    proc = snakemake("--cores", "2", *common, workdir=tmp_path)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    print(f"end-to-end run: {wall:.1f} s")

    records = sorted((tmp_path / "results").rglob("verify/*/*/*/*/*.json"))
    assert len(records) == expected_verify_jobs(cfg) == 12
    for path in records:
        rec = results.read(path)
        family, k, verifier, strategy, slot = (
            path.relative_to(path.parents[4]).with_suffix("").parts
        )
        assert (rec.family, rec.magnitude_k, rec.verifier, rec.strategy, rec.slot) == (
            family,
            float(k),
            verifier,
            strategy,
            int(slot),
        )
        assert rec.status in results.STATUSES and rec.index >= 0, rec.message
        if verifier == "exact":  # complete on one-parameter families
            assert rec.status in results.DECIDED, rec.message
        assert (rec.labels_checked is not None) == (strategy == "guided")
    # instances.json lists every correctly classified test image; the jobs take slots 0, 1
    listed = json.loads((tmp_path / "results/pneumoniamnist/mlp/instances.json").read_text())
    listed = listed["instances"]
    assert len(listed) > 400  # of PneumoniaMNIST's 624 test images
    assert [i["slot"] for i in listed] == list(range(len(listed)))
    assert all(a["index"] < b["index"] for a, b in zip(listed, listed[1:], strict=False))

    tables = tmp_path / "results" / "tables"
    outcomes = pd.read_csv(tables / "outcomes.csv")
    assert len(outcomes) == 6 and outcomes["n"].sum() == 12
    assert (tables / "confusion" / "exact__milp.csv").exists()
    assert len(pd.read_csv(tables / "records.csv")) == 12
    guided = pd.read_csv(tables / "guided.csv")
    assert len(guided) == 3 and (guided["n"] == 2).all() and (guided["mismatch"] == 0).all()
    # the search stage: the exact critical beta of one test and one train image
    searches = sorted((tmp_path / "results").rglob("search/brightness/exact/exact/*/0.json"))
    assert [path.parent.name for path in searches] == ["test", "train"]
    for path in searches:
        rec = results.read_search(path)
        assert (rec.method, rec.split, rec.slot) == ("exact", path.parent.name, 0)
        assert rec.timeout_s == 7.0  # search.model_timeout_s of the model
        assert not rec.censored and rec.eps_robust is not None
        assert rec.eps_counterexample is None or rec.eps_robust <= rec.eps_counterexample
    assert len(pd.read_csv(tables / "critical_eps.csv")) == 2
    figures = tmp_path / "results" / "figures"
    for name in ("outcomes.png", "confusion.png", "examples_pneumoniamnist.png", "guided.png"):
        assert (figures / name).stat().st_size > 0
    assert any((figures / "counterexamples").glob("*.png"))

    report = tmp_path / "report.html"
    proc = snakemake(*common, "--report", report, workdir=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert report.stat().st_size > 10_000

    # Changing one verifier's options reruns that verifier's jobs only
    # (a verifier's threads option is the cores its jobs ask Snakemake for)
    proc = snakemake(
        "-n", *common, "verifier_options={milp: {solver: highs, threads: 2}}", workdir=tmp_path
    )
    counts = job_counts(proc.stdout)
    assert counts["verify"] == 8 and "train" not in counts, proc.stdout[-3000:]
    verify_jobs = [b for b in proc.stdout.split("\nrule ")[1:] if b.startswith("verify:")]
    assert len(verify_jobs) == 8 and all("threads: 2" in b for b in verify_jobs), proc.stdout
    # ... and the timeout reruns every verification job, not training
    proc = snakemake("-n", *common, "timeout_s=25", workdir=tmp_path)
    counts = job_counts(proc.stdout)
    assert counts["verify"] == 12 and "train" not in counts

    # ... one more instance adds that slot's jobs and reruns no other job before them
    proc = snakemake("-n", *common, "instances=3", workdir=tmp_path)
    counts = job_counts(proc.stdout)
    assert counts["verify"] == 6, proc.stdout[-3000:]
    assert not {"train", "select", "search", "search_select"} & set(counts), counts
    # ... and the data directory spelled another way (relative, trailing slash) is no change
    relative = os.path.relpath(DATA_DIR, tmp_path) + "/"
    proc = snakemake(
        "-n", "--configfile", CI_CONFIG, "--config", f"data_dir={relative}", workdir=tmp_path
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Nothing to be done" in said, said[-3000:]

    # A partial rerun by target file: only that job runs
    target = "results/pneumoniamnist/mlp/verify/linf/4/milp/guided/1.json"
    (tmp_path / target).unlink()
    proc = snakemake("--cores", "1", target, *common, workdir=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stderr + proc.stdout) == {"verify": 1, "total": 1}
    assert results.read(tmp_path / target).status in results.STATUSES


def test_dermamnist_code_path_on_a_standin(tmp_path):
    """Data and train rules for an RGB 7-class dataset (generated file, md5 null)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data.write_standin(data_dir / "dermamnist.npz")
    proc = snakemake(
        "results/dermamnist/mlp/metrics.json",
        "--cores",
        "2",
        "--configfile",
        DERMA_CONFIG,
        "--config",
        f"data_dir={data_dir}",
        workdir=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((tmp_path / "results/dermamnist/data.json").read_text())
    assert summary["channels"] == 3 and summary["num_classes"] == 7
    assert summary["sizes"] == {"train": 7007, "val": 1003, "test": 2005}
    metrics = json.loads((tmp_path / "results/dermamnist/mlp/metrics.json").read_text())
    assert (metrics["in_channels"], metrics["num_classes"], metrics["epochs"]) == (3, 7, 1)
    assert (tmp_path / "results/dermamnist/mlp/model.onnx").stat().st_size > 0


def test_job_options_take_the_cores_snakemake_granted():
    """A job asks for its verifier's ``threads``; ``--cores`` may grant fewer, and the
    verifier then gets what was granted. Options without ``threads`` stay as they are."""
    from medverify.pipeline import job_options

    assert job_options({"threads": 4, "fsb_k": 3}, 2) == {"threads": 2, "fsb_k": 3}
    assert job_options({"solver": "highs"}, 2) == {"solver": "highs"}
