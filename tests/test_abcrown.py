"""The abcrown backend: skipped (never failed) when α,β-CROWN is not installed; its
config and instance files; parsing of its answers and counterexamples on recorded
output written by hand from its documented formats; central replay of what it claims;
our timeout and kill around its process. α,β-CROWN itself is not installed here."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest
import yaml

from medverify import onnx_io, vnnlib
from medverify.nets import AffineNet
from medverify.results import Question
from medverify.verifiers import BACKENDS, Result, abcrown, get
from medverify.verify import build_problem, finalize, run_verifier, verify_image

IMAGE = np.full(4, 0.2)
NET = AffineNet(
    [(np.eye(4), np.zeros(4)), (np.array([[0.0] * 4, [1.0] * 4]), np.array([1.0, 0.0]))]
)

# what α,β-CROWN prints and writes (its README / vnncomp scripts): a "Result:" line on
# stdout, and with general.results_file the competition's result word first, then for
# sat the assignment in the VNN-COMP counterexample format
STDOUT_SAFE = textwrap.dedent(
    """\
    Configurations:
    general:
      device: cpu
    ...
    Result: safe-incomplete in 0.0412 seconds
    ############# Summary #############
    Final verified acc: 100.0% (total 1 examples)
    """
)
STDOUT_UNSAFE = (
    "verified_status unsafe-pgd\nverified_success True\nResult: unsafe-pgd in 0.0222 seconds\n"
)
RESULTS_SAT = "sat\n((X_0 0.0627451)\n (Y_0 1.0)\n (Y_1 1.0509804))\n"
CEX_FILE = "((X_0 0.0627451)\n (Y_0 1.0)\n (Y_1 1.0509804))\n"


def brightness(k):
    return build_problem(NET, IMAGE, 0, "brightness", k)


@pytest.fixture
def ort(tmp_path):
    path = tmp_path / "model.onnx"
    onnx_io.export_affine(NET, path)
    return onnx_io.OrtClassifier(path)


def test_registered():
    assert "abcrown" in BACKENDS
    assert get("abcrown").name == "abcrown"


def test_not_installed_is_skipped_not_failed(tmp_path, monkeypatch, ort):
    monkeypatch.delenv(abcrown.ENV_VAR, raising=False)
    result = get("abcrown").verify(brightness(8), 10)
    assert result.status == "unknown" and result.message.startswith("skipped:")
    assert "\n" not in result.message and result.stats["skipped"] == result.message
    # through the isolated runner: a record, status unknown, the reason kept in extra
    fields = run_verifier(brightness(8), "abcrown", 10, ort)
    assert fields["status"] == "unknown" and fields["extra"]["skipped"].startswith("skipped:")
    missing = get("abcrown", path=str(tmp_path / "nowhere")).verify(brightness(8), 10)
    assert missing.status == "unknown" and "no abcrown.py" in missing.message
    q = Question("toy", "mlp", 7, 0, "brightness", 8, "abcrown", timeout_s=10)
    record = verify_image(ort.path, IMAGE, q)
    assert record.status == "unknown" and record.extra["skipped"]


def test_config_and_instance_files(tmp_path):
    problem = brightness(16)
    cfg_path = abcrown.write_config(
        tmp_path, problem, 30, extra={"bab": {"branching": {"method": "sb"}}}
    )
    cfg = yaml.safe_load(cfg_path.read_text())
    assert cfg["general"]["device"] == "cpu" and cfg["general"]["save_adv_example"] is True
    assert cfg["bab"]["timeout"] == 30 and cfg["bab"]["branching"] == {"method": "sb"}
    assert cfg["model"]["input_shape"] == [1, 1]
    lower, upper, label, targets = vnnlib.to_problem_spec(
        vnnlib.read(cfg["specification"]["vnnlib_path"])
    )
    assert (label, targets) == (0, (1,))
    np.testing.assert_allclose([lower[0], upper[0]], [-16 / 255, 16 / 255])
    composed = onnx_io.OrtClassifier(cfg["model"]["onnx_path"])
    np.testing.assert_allclose(composed.logits(np.array([[0.0]]))[0], [1.0, 0.8], atol=1e-6)


@pytest.mark.parametrize(
    "results_text, stdout, status",
    [
        ("unsat\n", "", "robust"),
        (RESULTS_SAT, "", "counterexample"),
        ("timeout\n", "", "timeout"),
        ("unknown\n", "", "unknown"),
        (None, STDOUT_SAFE, "robust"),
        (None, STDOUT_UNSAFE, "counterexample"),
        (None, "Result: timeout\n", "timeout"),
        ("", "Traceback (most recent call last):\nRuntimeError: CUDA\n", "error"),
        ("maybe\n", "", "error"),
    ],
)
def test_parse_answer(results_text, stdout, status):
    assert abcrown.parse_answer(results_text, stdout)[0] == status


def test_counterexample_is_replayed_centrally(ort):
    x = abcrown.parse_counterexample(RESULTS_SAT, 1)
    assert x.shape == (1,) and x[0] == pytest.approx(16 / 255, abs=1e-6)
    # k = 16: beta = 16/255 is in the set and sum = 4 (0.2 + beta) >= 1 -> replays
    fields = finalize(brightness(16), Result("counterexample", params=x), ort, "abcrown", 0.1)
    assert fields["status"] == "counterexample" and fields["counterexample"]["beta"] == x[0]
    # the same point claimed for k = 8 lies outside the set: flagged, not a counterexample
    fields = finalize(brightness(8), Result("counterexample", params=x), ort, "abcrown", 0.1)
    assert fields["status"] == "unknown" and fields["flags"] == ["outside-set"]
    # a point in the set that does not violate: flagged
    small = abcrown.parse_counterexample(CEX_FILE.replace("0.0627451", "0.01"), 1)
    fields = finalize(brightness(16), Result("counterexample", params=small), ort, "abcrown", 0.1)
    assert fields["status"] == "unknown" and fields["flags"] == ["replay-failed"]
    with pytest.raises(Exception, match="2 inputs"):
        abcrown.parse_counterexample("((X_0 0.1)\n (X_1 0.2))", 1)


def stand_in(tmp_path, body):
    """A program at the place abcrown.py would be: tests our process handling only."""
    script = tmp_path / "complete_verifier" / "abcrown.py"
    script.parent.mkdir()
    script.write_text(body)
    return str(tmp_path / "complete_verifier")


def test_hang_is_killed_at_our_timeout(tmp_path):
    path = stand_in(tmp_path, "import time\ntime.sleep(600)\n")
    result = get("abcrown", path=path).verify(brightness(8), 2.0)
    assert result.status == "timeout"


def test_exit_without_answer_is_an_error(tmp_path):
    path = stand_in(
        tmp_path, "import sys\nprint('ImportError: no module named auto_LiRPA')\nsys.exit(1)\n"
    )
    result = get("abcrown", path=path).verify(brightness(8), 10)
    assert (
        result.status == "error" and "auto_LiRPA" in result.message and "exited 1" in result.message
    )


def test_environment_variable_locates_it(tmp_path, monkeypatch):
    path = stand_in(tmp_path, "")
    monkeypatch.setenv(abcrown.ENV_VAR, path)
    script, reason = abcrown.locate()
    assert script is not None and reason == "" and os.path.basename(script) == "abcrown.py"
