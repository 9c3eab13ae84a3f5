"""The orchestrator's replay: a claimed counterexample must be in the set and change the
label under onnxruntime, or it is downgraded to ``unknown`` and flagged."""

import numpy as np
import pytest

from medverify import onnx_io
from medverify.nets import AffineNet
from medverify.results import Question, Record, read, write
from medverify.verifiers import Result
from medverify.verify import build_problem, finalize


@pytest.fixture()
def setup(tmp_path):
    # f0 = sum(x), f1 = 1.9: label 0 at x = 0.5 everywhere; brightness beta < -0.025 flips it
    net = AffineNet(
        [(np.eye(4), np.zeros(4)), (np.array([[1.0] * 4, [0.0] * 4]), np.array([0, 1.9]))]
    )
    onnx_io.export_affine(net, tmp_path / "n.onnx")
    image = np.full((1, 2, 2), 0.5)
    return net, image, onnx_io.OrtClassifier(tmp_path / "n.onnx")


def test_replayed_brightness_counterexample_is_kept(setup):
    net, image, ort = setup
    problem = build_problem(net, image, 0, "brightness", 16)
    got = finalize(problem, Result("counterexample", params=np.array([-0.05])), ort, "t", 0.1)
    assert got["status"] == "counterexample"
    assert got["counterexample"]["beta"] == pytest.approx(-0.05)
    np.testing.assert_allclose(got["counterexample"]["image"], [0.45] * 4)
    assert got["predicted_label_at_counterexample"] == 1


def test_non_violating_counterexample_is_downgraded(setup):
    net, image, ort = setup
    problem = build_problem(net, image, 0, "brightness", 16)
    got = finalize(problem, Result("counterexample", params=np.array([0.01])), ort, "t", 0.1)
    assert got["status"] == "unknown" and got["flags"] == ["replay-failed"]
    assert got["counterexample"] is None


def test_counterexample_outside_the_set_is_downgraded(setup):
    net, image, ort = setup
    problem = build_problem(net, image, 0, "brightness", 4)  # beta in [-4/255, 4/255]
    got = finalize(problem, Result("counterexample", params=np.array([-0.05])), ort, "t", 0.1)
    assert got["status"] == "unknown" and "outside the brightness set" in got["message"]
    assert got["flags"] == ["outside-set"]


def test_borderline_counterexample_is_flagged(setup):
    net, image, ort = setup
    problem = build_problem(net, image, 0, "brightness", 16)
    # margin sum(x) - 1.9 = 4 (0.5 + beta) - 1.9 = -4e-6 at beta = -0.025 - 1e-6
    got = finalize(problem, Result("counterexample", params=np.array([-0.025 - 1e-6])), ort, "t", 0)
    assert got["status"] == "unknown" and got["flags"] == ["borderline"]


def test_record_build_takes_instance_fields_from_the_question(tmp_path):
    q = Question("d", "mlp", 3, 1, "linf", 4.0, "milp", strategy="guided", timeout_s=9.0, slot=2)
    rec = Record.build(q, "robust", margin_lower_bound=0.5)
    assert rec.question == q and rec.strategy == "guided" and rec.flags == []
    with pytest.raises(TypeError, match="belong to the question"):
        Record.build(q, "robust", index=4)
    with pytest.raises(ValueError, match="unknown flag 'odd'"):
        Record.build(q, "unknown", flags=["odd"])
    write(rec, tmp_path / "r.json")
    assert read(tmp_path / "r.json") == rec


def test_linf_counterexample_replays_as_image(setup):
    net, image, ort = setup
    problem = build_problem(net, image, 0, "linf", 16)
    params = np.full(4, 0.5 - 16 / 255)
    got = finalize(problem, Result("counterexample", params=params), ort, "t", 0.1)
    assert got["status"] == "counterexample"
    # the same image is no brightness counterexample at k = 4 (beta would be -16/255)
    small = build_problem(net, image, 0, "brightness", 4)
    assert not small.family.contains(params)


def test_record_roundtrip(tmp_path):
    rec = Record(
        dataset="d",
        model="mlp",
        index=3,
        true_label=1,
        family="linf",
        magnitude_k=4,
        verifier="milp",
        status="robust",
        margin_lower_bound=0.5,
    )
    write(rec, tmp_path / "r.json")
    assert read(tmp_path / "r.json") == rec
    with pytest.raises(ValueError, match="unknown status 'maybe'"):
        Record(
            dataset="d",
            model="m",
            index=0,
            true_label=0,
            family="linf",
            magnitude_k=1,
            verifier="v",
            status="maybe",
        )


_ONE_JOB = """
import sys
import numpy as np
from medverify.results import Question
from medverify.verify import verify_image

image = np.full((1, 2, 2), 0.5)  # f0 = 2.0 > f1 = 1.9: label 0, margin 0.1
k = float(sys.argv[2])  # linf radius k/255 moves f0 by at most 4k/255
q = Question("toy", "toy", 0, 0, "linf", k, "crown", timeout_s=20)
rec = verify_image(sys.argv[1], image, q)
print(rec.status, "onnxruntime" in sys.modules)
"""


def test_onnxruntime_is_opened_only_to_replay_a_counterexample(toy_onnx):
    """A robust job never imports onnxruntime (its import is a seventh of a job's cost);
    a counterexample is still replayed through it."""
    import subprocess
    import sys

    def job(k):
        out = subprocess.run(
            [sys.executable, "-c", _ONE_JOB, str(toy_onnx), str(k)],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.split()

    assert job(4) == ["robust", "False"]  # 4 * 4/255 = 0.063 < 0.1
    assert job(8) == ["counterexample", "True"]  # 4 * 8/255 = 0.125 > 0.1
