"""The `medverify` command and the pipeline functions the workflow rules call."""

import json
import subprocess
import sys

import numpy as np

from medverify import onnx_io, vnnlib
from medverify.cli import main
from medverify.nets import AffineNet
from medverify.pipeline import select_instances, verify_slot
from medverify.results import Question, read


def test_select_instances_is_deterministic_and_correct(
    trained_mlp, medmnist_dir, pneumonia, tmp_path
):
    _, onnx, _ = trained_mlp
    a = select_instances(
        "pneumoniamnist", str(medmnist_dir), str(onnx), 5, str(tmp_path / "a.json")
    )
    b = select_instances(
        "pneumoniamnist", str(medmnist_dir), str(onnx), 5, str(tmp_path / "b.json")
    )
    assert a == b and len(a) == 5
    assert [i["slot"] for i in a] == list(range(5))
    indices = [i["index"] for i in a]
    assert indices == sorted(indices)  # test-set order
    logits = onnx_io.OrtClassifier(onnx).logits(pneumonia["test"].images[: indices[-1] + 1])
    correct = np.flatnonzero(logits.argmax(1) == pneumonia["test"].labels[: indices[-1] + 1])
    assert correct.tolist() == indices  # the first five correct ones, none skipped
    # n=None (the workflow): every correctly classified image, the first five the same
    every = select_instances(
        "pneumoniamnist", str(medmnist_dir), str(onnx), None, str(tmp_path / "c.json")
    )
    logits = onnx_io.OrtClassifier(onnx).logits(pneumonia["test"].images)
    correct = np.flatnonzero(logits.argmax(1) == pneumonia["test"].labels)
    assert [i["index"] for i in every] == correct.tolist() and every[:5] == a


def test_rule_log_takes_what_c_code_children_and_warnings_print(tmp_path):
    """A rule's log holds its logging, what is written to file descriptors 1 and 2 (C
    libraries, solvers, child processes) and Python warnings, none overwriting another;
    a failure is logged and re-raised, and the descriptors are restored."""
    log = tmp_path / "rule.log"
    script = f"""
import ctypes, logging, os, subprocess, sys, warnings
from medverify.pipeline import rule_log
try:
    with rule_log({str(log)!r}, "demo"):
        logging.getLogger("medverify").info("first line from logging")
        os.write(1, b"fd1 from C\\n")
        os.write(2, b"fd2 from C\\n")
        subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
        warnings.warn("a python warning")
        logging.getLogger("medverify").info("last line from logging")
        ctypes.CDLL(None).printf(b"buffered by C stdio\\n")
        raise RuntimeError("the job failed")
except RuntimeError:
    pass
os.write(2, b"back on the console\\n")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    for line in (
        "first line from logging",
        "fd1 from C",
        "fd2 from C",
        "buffered by C stdio",
        "from a child",
        "a python warning",
        "last line from logging",
        "rule demo failed",
        "RuntimeError: the job failed",
    ):
        assert line in text, text
    assert text.index("first line") < text.index("fd1 from C") < text.index("last line")
    assert proc.stderr == "back on the console\n" and proc.stdout == ""


def _question(slot, family, model=""):
    return Question("pneumoniamnist", model, -1, -1, family, 4, "exact", timeout_s=20, slot=slot)


def test_verify_slot_writes_record_and_error_record(trained_mlp, medmnist_dir, tmp_path):
    _, onnx, _ = trained_mlp
    inst = tmp_path / "inst.json"
    select_instances("pneumoniamnist", str(medmnist_dir), str(onnx), 2, str(inst))
    rec = verify_slot(
        _question(1, "brightness", model="mlp"),
        str(medmnist_dir),
        str(onnx),
        str(inst),
        str(tmp_path / "r.json"),
    )
    assert read(tmp_path / "r.json") == rec
    assert rec.status in ("robust", "counterexample") and rec.slot == 1
    assert rec.index == json.loads(inst.read_text())["instances"][1]["index"]
    # a slot that does not exist still leaves an error record naming it
    bad = verify_slot(
        _question(7, "brightness", model=""),
        str(medmnist_dir),
        str(onnx),
        str(inst),
        str(tmp_path / "bad.json"),
    )
    assert bad.status == "error" and "slot 7" in bad.message
    # exact refuses linf with a one-line error record
    refused = verify_slot(
        _question(0, "linf", model=""),
        str(medmnist_dir),
        str(onnx),
        str(inst),
        str(tmp_path / "linf.json"),
    )
    assert refused.status == "error" and "one-parameter" in refused.message
    assert "\n" not in refused.message


def test_cli_verify_image(trained_mlp, medmnist_dir, tmp_path, capsys):
    _, onnx, _ = trained_mlp
    out = tmp_path / "r.json"
    rc = main(
        [
            "verify",
            "--onnx",
            str(onnx),
            "--image-index",
            "0",
            "--dataset",
            "pneumoniamnist",
            "--data-dir",
            str(medmnist_dir),
            "--family",
            "linf",
            "--magnitude",
            "64",
            "--verifier",
            "crown",
            "--timeout",
            "30",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rec = read(out)
    assert rec.status == "counterexample"  # an L-inf ball of 64/255 breaks any such model
    assert len(rec.counterexample["image"]) == 784
    assert "counterexample" in capsys.readouterr().out


def test_cli_verify_vnnlib(tmp_path):
    # f0 = sum(x), f1 = 1.9: robust over [0.48, 0.52]^4 (min sum 1.92), not over [0.45, 0.55]^4
    net = AffineNet(
        [(np.eye(4), np.zeros(4)), (np.array([[1.0] * 4, [0.0] * 4]), np.array([0, 1.9]))]
    )
    onnx_io.export_affine(net, tmp_path / "n.onnx")
    for half, expected in ((0.02, "robust"), (0.05, "counterexample")):
        prop = tmp_path / f"p{half}.vnnlib"
        vnnlib.write(prop, np.full(4, 0.5 - half), np.full(4, 0.5 + half), 0, 2)
        out = tmp_path / f"r{half}.json"
        assert (
            main(
                [
                    "verify",
                    "--onnx",
                    str(tmp_path / "n.onnx"),
                    "--vnnlib",
                    str(prop),
                    "--verifier",
                    "milp",
                    "--timeout",
                    "20",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert read(out).status == expected


def test_cli_bad_value_is_one_line(tmp_path, capsys, medmnist_dir, trained_mlp):
    _, onnx, _ = trained_mlp
    rc = main(
        [
            "verify",
            "--onnx",
            str(onnx),
            "--image-index",
            "100000",
            "--dataset",
            "pneumoniamnist",
            "--data-dir",
            str(medmnist_dir),
            "--verifier",
            "crown",
            "--out",
            str(tmp_path / "x.json"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--image-index 100000 out of range" in err
    assert err.count("\n") == 1


def test_question_of_a_workflow_job_from_its_wildcards():
    verify = {"dataset": "pneumoniamnist", "model": "mlp", "family": "brightness", "k": "4"}
    verify |= {"verifier": "crown", "strategy": "guided", "slot": "7"}
    q = Question.of_job(verify, "30")
    assert (q.dataset, q.model, q.family, q.verifier) == (
        "pneumoniamnist",
        "mlp",
        "brightness",
        "crown",
    )
    assert (q.magnitude_k, q.strategy, q.slot, q.timeout_s) == (4.0, "guided", 7, 30.0)
    assert (q.index, q.true_label) == (-1, -1)  # filled in from the instances file
    search = {k: v for k, v in verify.items() if k not in ("k", "strategy")}
    search |= {"split": "train", "method": "bisection"}
    q = Question.of_job(search, 5)
    assert (q.magnitude_k, q.strategy, q.slot) == (0.0, "joint", 7)
