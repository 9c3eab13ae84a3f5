"""VNN-COMP folders: export passes the competition's checks, run gives the same verdicts
as our own jobs, import turns another tool's results into records and replays their
counterexamples (a bad one is flagged). Tiny fixed-weight classifier with a closed-form
answer: f0 = 1, f1 = sum of the four pixels; the image is 0.2 everywhere, so under
brightness or L-inf of k/255 a counterexample exists iff 4 (0.2 + k/255) >= 1, i.e.
k >= 12.75: k = 8 robust, k = 16 counterexample."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medverify import onnx_io, results, vnncomp
from medverify.nets import AffineNet
from medverify.results import Question
from medverify.verify import verify_image

SRC = str(Path(vnncomp.__file__).resolve().parents[1])
IMAGE = np.full(4, 0.2)
EXPECTED = {8.0: "robust", 16.0: "counterexample"}


@pytest.fixture
def classifier(tmp_path):
    net = AffineNet(
        [(np.eye(4), np.zeros(4)), (np.array([[0.0] * 4, [1.0] * 4]), np.array([1.0, 0.0]))]
    )
    path = tmp_path / "model.onnx"
    onnx_io.export_affine(net, path)
    return path


def items(classifier):
    return [
        vnncomp.Item("toy", "mlp", str(classifier), 7, 0, 0, IMAGE, fam, k)
        for fam in ("linf", "brightness")
        for k in EXPECTED
    ]


def test_export_passes_the_checks(tmp_path, classifier):
    out = tmp_path / "bench"
    entries = vnncomp.write_benchmark(
        out, items(classifier), 20.0, command="medverify vnncomp export"
    )
    assert vnncomp.check_benchmark(out) == []
    rows = list(csv.reader(open(out / "instances.csv")))
    assert len(rows) == 4 and all(len(r) == 3 for r in rows) and rows[0][0].startswith("onnx/")
    # brightness: the composed network over beta, one input; linf: the classifier itself
    bright = [e for e in entries if e["family"] == "brightness"]
    assert all(onnx_io.load_affine(out / e["onnx"]).input_dim == 1 for e in bright)
    linf = [e for e in entries if e["family"] == "linf"]
    assert all(e["onnx"] == "onnx/toy_mlp.onnx" for e in linf)
    readme = (out / "README.md").read_text()
    assert "brightness" in readme and "| 7 |" in readme
    assert json.loads((out / "manifest.json").read_text())["images"]["toy/7"] == list(IMAGE)
    script = (out / "generate_properties.py").read_text()
    compile(script, "generate_properties.py", "exec")
    assert 'COMMAND = "medverify vnncomp export"' in script
    # the same inputs give the same files
    again = tmp_path / "again"
    vnncomp.write_benchmark(again, items(classifier), 20.0, command="medverify vnncomp export")
    for e in entries:
        assert (out / e["vnnlib"]).read_bytes() == (again / e["vnnlib"]).read_bytes()
        assert (out / e["onnx"]).read_bytes() == (again / e["onnx"]).read_bytes()


def test_gzipped_export_passes_the_checks(tmp_path, classifier):
    out = tmp_path / "bench"
    vnncomp.write_benchmark(out, items(classifier), 20.0, compress=True)
    assert not list(out.glob("vnnlib/*.vnnlib")) and list(out.glob("vnnlib/*.vnnlib.gz"))
    assert vnncomp.check_benchmark(out) == []


def test_check_finds_mismatched_names_and_broken_onnx(tmp_path, classifier):
    out = tmp_path / "bench"
    entries = vnncomp.write_benchmark(out, items(classifier), 20.0)
    spec = out / entries[0]["vnnlib"]
    spec.write_text(
        "(declare-const X_4 Real)\n(assert (<= X_4 1))\n(assert (>= X_4 0))\n" + spec.read_text()
    )
    (out / entries[2]["onnx"]).write_bytes(b"not an onnx file")
    problems = vnncomp.check_benchmark(out)
    assert any("declares 5 inputs" in p for p in problems)
    assert any(entries[2]["onnx"] in p and "onnxruntime" in p for p in problems)


@pytest.mark.parametrize("compress", [False, True])
def test_run_matches_our_jobs_and_import_replays(tmp_path, classifier, compress):
    out = tmp_path / "bench"
    entries = vnncomp.write_benchmark(out, items(classifier), 20.0, compress=compress)
    records = vnncomp.run_benchmark(out, "crown", tmp_path / "run" / "results.csv", progress=None)
    # the same questions as workflow jobs (verify_image on the image)
    for e, rec in zip(entries, records, strict=True):
        q = Question("toy", "mlp", 7, 0, e["family"], e["magnitude_k"], "crown", timeout_s=20.0)
        ours = verify_image(classifier, IMAGE, q)
        assert rec.status == ours.status == EXPECTED[e["magnitude_k"]], (e, rec.message)
    rows = list(csv.reader(open(tmp_path / "run" / "results.csv")))
    assert [r[4] for r in rows] == [
        {"robust": "unsat", "counterexample": "sat"}[EXPECTED[e["magnitude_k"]]] for e in entries
    ]
    assert all(len(r) == 6 and r[0] == "bench" for r in rows)
    cex_files = sorted((tmp_path / "run" / "counterexamples").iterdir())
    assert len(cex_files) == 2
    # the guided strategy gives the same verdicts, label by label
    guided = vnncomp.run_benchmark(
        out, "milp", tmp_path / "g" / "results.csv", strategy="guided", progress=None
    )
    assert [r.status for r in guided] == [r.status for r in records]
    assert {r.strategy for r in guided} == {"guided"}
    word, x, y = vnncomp.parse_counterexample(cex_files[0].read_text())
    assert word == "sat" and y is not None and len(y) == 2 and y[1] >= y[0]

    # import as another tool's results: same verdicts, questions joined to ours
    imported = vnncomp.import_results(
        tmp_path / "run" / "results.csv", out, "othertool", tmp_path / "rec"
    )
    for e, rec in zip(entries, imported, strict=True):
        assert (rec.verifier, rec.dataset, rec.model, rec.index, rec.slot) == (
            "othertool",
            "toy",
            "mlp",
            7,
            0,
        )
        assert (rec.family, rec.magnitude_k) == (e["family"], e["magnitude_k"])
        assert rec.status == EXPECTED[e["magnitude_k"]] and not rec.flags
        if e["family"] == "brightness" and rec.status == "counterexample":
            assert rec.counterexample["beta"] >= 12.75 / 255 - 1e-6
            assert len(rec.counterexample["image"]) == 4
    assert len(list((tmp_path / "rec").glob("*.json"))) == 4
    results.read(next((tmp_path / "rec").glob("*.json")))
    # they pair with the workflow's records of the same questions in the agreement table
    from medverify import aggregate

    workflow = [
        verify_image(
            classifier,
            IMAGE,
            Question(
                "toy", "mlp", 7, 0, e["family"], e["magnitude_k"], "crown", timeout_s=20.0, slot=0
            ),
        )
        for e in entries
    ]
    df = aggregate.records_frame(workflow + imported)
    aggregate.check_contradictions(df)
    table = aggregate.agreement(df, [("crown", "othertool")])
    assert list(table["n"]) == [1, 1, 1, 1] and list(table["agree"]) == [1, 1, 1, 1]


def test_import_flags_counterexamples_that_do_not_replay(tmp_path, classifier):
    out = tmp_path / "bench"
    entries = vnncomp.write_benchmark(out, items(classifier), 20.0)
    run = tmp_path / "theirs"
    (run / "counterexamples").mkdir(parents=True)
    lines = []
    for e in entries:
        lines.append(f"medverify,{e['onnx']},{e['vnnlib']},0.1,sat,1.5")
    (run / "results.csv").write_text("\n".join(lines) + "\n")

    def cex_file(e):
        return (
            run / "counterexamples" / vnncomp._cex_name(vnncomp.Instance(e["onnx"], e["vnnlib"], 0))
        )

    linf8, linf16, bright8, bright16 = entries
    # a true counterexample (k=16: beta = 16/255) replays; the same claim on k=8 lies
    # outside the set; a point inside the set that does not violate fails the replay;
    # the last has no file at all
    cex_file(bright16).write_text(vnncomp.format_counterexample(np.array([16 / 255]), np.zeros(2)))
    cex_file(bright8).write_text(vnncomp.format_counterexample(np.array([16 / 255]), np.zeros(2)))
    cex_file(linf8).write_text(vnncomp.format_counterexample(IMAGE, np.zeros(2)))
    recs = {
        (r.family, r.magnitude_k): r
        for r in vnncomp.import_results(run / "results.csv", out, "liar", tmp_path / "rec")
    }
    assert recs[("brightness", 16.0)].status == "counterexample"
    assert recs[("brightness", 8.0)].status == "unknown"
    assert recs[("brightness", 8.0)].flags == ["outside-set"]
    assert recs[("linf", 8.0)].status == "unknown" and recs[("linf", 8.0)].flags == [
        "replay-failed"
    ]
    assert recs[("linf", 16.0)].status == "unknown" and recs[("linf", 16.0)].flags == [
        "replay-failed"
    ]


def test_foreign_benchmark_without_manifest(tmp_path, classifier):
    """A folder not written by us: instances are box questions on the ONNX."""
    out = tmp_path / "bench"
    vnncomp.write_benchmark(out, items(classifier)[:2], 20.0)
    (out / "manifest.json").unlink()
    with gzip.open(out / "extra.txt.gz", "wb") as fh:
        fh.write(b"unused")
    records = vnncomp.run_benchmark(out, "crown", tmp_path / "results.csv", progress=None)
    assert [r.status for r in records] == ["robust", "counterexample"]
    imported = vnncomp.import_results(tmp_path / "results.csv", out, "x", tmp_path / "rec")
    assert [r.family for r in imported] == ["box", "box"]
    assert [r.status for r in imported] == ["robust", "counterexample"]


def test_parse_counterexample_forms():
    word, x, y = vnncomp.parse_counterexample("violated\n((X_0 0.5)\n (X_1 -1e-3)\n (Y_0 2))")
    assert word == "violated" and list(x) == [0.5, -1e-3] and list(y) == [2.0]
    word, x, _ = vnncomp.parse_counterexample("((X_1 1)\n(X_0 0))")
    assert word == "" and list(x) == [0.0, 1.0]
    with pytest.raises(vnncomp.BenchmarkError):
        vnncomp.parse_counterexample("sat\n((X_0 0.5) (X_2 1))")


def test_bad_results_file_is_one_line_error(tmp_path, classifier):
    out = tmp_path / "bench"
    vnncomp.write_benchmark(out, items(classifier)[:1], 20.0)
    bad = tmp_path / "results.csv"
    bad.write_text("medverify,onnx/a.onnx,vnnlib/a.vnnlib,0,maybe,1\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medverify.cli",
            "vnncomp",
            "import",
            str(bad),
            "--benchmark",
            str(out),
            "--verifier",
            "x",
            "--out",
            str(tmp_path / "rec"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
    )
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "maybe" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "medverify.cli", "vnncomp", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
    )
    assert proc.returncode != 0 and "instances.csv" in proc.stderr


@pytest.mark.parametrize(
    "bad,word",
    [
        (["--verifier", "crwn"], "'crwn'"),
        (["--verifier", "crown", "--options", '{"thredz": 2}'], "'thredz'"),
        (["--verifier", "crown", "--options", "[1]"], "--options"),
    ],
)
def test_run_with_a_bad_verifier_or_option_is_one_line_and_runs_nothing(
    bad, word, tmp_path, classifier
):
    """``vnncomp run`` checks the verifier and its options before any instance: one line
    naming the bad value, exit 2, no results written."""
    bench = tmp_path / "bench"
    vnncomp.write_benchmark(bench, items(classifier)[:1], 20.0)
    out = tmp_path / "run" / "results.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "medverify.cli", "vnncomp", "run", str(bench), *bad]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and word in proc.stderr
    assert not out.exists()


def test_export_takes_the_first_slots_of_the_listed_instances(tmp_path, classifier):
    """instances.json lists every correctly classified image; the export takes slots
    0..slots-1 (the workflow's `instances`), whatever else is listed."""
    images = np.full((3, 2, 2), 51, dtype=np.uint8)  # 0.2 after /255
    np.savez(tmp_path / "toy.npz", test_images=images, test_labels=np.zeros((3, 1), np.int64))
    listed = [{"slot": s, "index": s, "label": 0, "logits": [1.0, 0.8]} for s in range(3)]
    (tmp_path / "instances.json").write_text(json.dumps({"instances": listed}))
    source = vnncomp.ModelSource("toy", "mlp", str(classifier), str(tmp_path / "instances.json"))
    entries = vnncomp.export_benchmark(
        tmp_path / "bench", [source], {"linf": [8]}, str(tmp_path), 20.0, slots=2
    )
    assert sorted(e["slot"] for e in entries) == [0, 1]
    for slots, words in ((0, "slots 0"), (4, "3 correctly classified images, fewer than")):
        with pytest.raises(vnncomp.BenchmarkError, match=words):
            vnncomp.export_benchmark(
                tmp_path / "none", [source], {"linf": [8]}, str(tmp_path), 20.0, slots=slots
            )
