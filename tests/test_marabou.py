"""Marabou backend on tiny networks with closed-form answers, and cross-checks of
Marabou against the MILP backend and against sampling on random tiny ReLU networks."""

from __future__ import annotations

import numpy as np
import pytest

from medverify.nets import AffineNet
from medverify.verifiers import get
from medverify.verifiers.base import Problem
from medverify.verify import build_problem

pytest.importorskip("maraboupy")

IMAGE = np.array([[[0.4, 0.5], [0.5, 0.6]]])  # mean 0.5, no pixel clips for k <= 25
THRESHOLD_K = 10.0


def threshold_net() -> AffineNet:
    """f0 = 0, f1 = 3 relu(m - .5) - relu(.5 - m) - 30/255 with m the pixel mean: robust
    iff k < 10 under brightness and under linf (see tests/test_milp.py)."""
    w1 = np.array([[0.25] * 4, [-0.25] * 4])
    b1 = np.array([-0.5, 0.5])
    w2 = np.array([[0.0, 0.0], [3.0, -1.0]])
    b2 = np.array([0.0, -30.0 / 255.0])
    return AffineNet([(w1, b1), (w2, b2)])


def assert_counterexample(problem: Problem, result) -> None:
    assert result.status == "counterexample", result.message
    assert result.params is not None
    assert problem.family.in_box(result.params)
    # strictly inside the violating region, not on the boundary (float32 replay)
    assert np.min(problem.margins(result.params)) < -1e-3


@pytest.mark.parametrize("family", ["brightness", "linf"])
@pytest.mark.parametrize("k", [4.0, 9.0, 11.0, 20.0])
def test_closed_form_threshold(family, k):
    problem = build_problem(threshold_net(), IMAGE, 0, family, k)
    result = get("marabou").verify(problem, 20.0)
    if k < THRESHOLD_K:
        assert result.status == "robust", result.message
    else:
        assert_counterexample(problem, result)


def test_counterexample_replays_through_onnxruntime(tmp_path):
    from medverify import onnx_io
    from medverify.verify import run_verifier

    net = threshold_net()
    path = tmp_path / "net.onnx"
    onnx_io.export_affine(net, path)
    ort = onnx_io.OrtClassifier(path)
    problem = build_problem(net, IMAGE, 0, "brightness", 15.0)
    for backend in ("marabou", "milp"):
        fields = run_verifier(problem, backend, 20.0, ort, isolate=False)
        assert fields["status"] == "counterexample", fields["message"]
        assert fields["predicted_label_at_counterexample"] == 1
        beta = fields["counterexample"]["beta"]
        assert 10.0 / 255 < beta <= 15.0 / 255 + 1e-9
    assert get("marabou").tool_version() == "maraboupy 2.0.0"


def test_no_time_left_is_timeout_not_robust():
    problem = build_problem(threshold_net(), IMAGE, 0, "linf", 4.0)
    result = get("marabou").verify(problem, 0.6)  # < 1 s left after the reserve
    assert result.status == "timeout"


def test_marabou_output_does_not_reach_stdout(capfd):
    problem = build_problem(threshold_net(), IMAGE, 0, "linf", 4.0)
    get("marabou").verify(problem, 10.0)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    n_out = int(rng.integers(2, 4))
    dims = [4, int(rng.integers(3, 9)), int(rng.integers(3, 9)), n_out]
    net = AffineNet(
        [
            (rng.normal(size=(dims[i + 1], dims[i])), rng.normal(size=dims[i + 1]))
            for i in range(len(dims) - 1)
        ]
    )
    image = rng.uniform(0.05, 0.95, size=(1, 2, 2))
    label = int(np.argmax(net.forward(image.reshape(-1))))
    family = ("linf", "brightness", "contrast")[seed % 3]
    k = float(rng.choice([10.0, 60.0, 150.0, 255.0]))
    return build_problem(net, image, label, family, k)


def sampled_min_margin(problem: Problem, rng) -> float:
    lo, hi = problem.lower, problem.upper
    if len(lo) == 1:
        pts = np.linspace(lo, hi, 4001)
    else:
        corners = np.array(np.meshgrid(*zip(lo, hi, strict=True))).reshape(len(lo), -1).T
        pts = np.vstack([corners, rng.uniform(lo, hi, size=(20000, len(lo)))])
    return float(np.min(problem.margin_net().forward(pts)))


@pytest.mark.parametrize("seed", range(30))
def test_random_nets_agree_with_milp_and_sampling(seed):
    problem = random_case(seed)
    sampled = sampled_min_margin(problem, np.random.default_rng(seed))
    marabou = get("marabou").verify(problem, 20.0)
    milp = get("milp", prune=False, early_stop=False).verify(problem, 20.0)
    assert marabou.status in ("robust", "counterexample"), marabou.message
    assert milp.status in ("robust", "counterexample"), milp.message
    assert marabou.status == milp.status
    if sampled < 0:
        assert marabou.status == "counterexample"
    if marabou.status == "robust":
        assert milp.margin_lower_bound <= sampled + 1e-6
        assert milp.margin_lower_bound > 0
    else:
        for res in (marabou, milp):
            assert problem.family.in_box(res.params)
            assert np.min(problem.margins(res.params)) < 0
        # the MILP minimises: nothing sampled beats its counterexample
        assert np.min(problem.margins(milp.params)) <= sampled + 1e-6
