"""Every backend against closed-form answers, and all backends against each other.

The networks are tiny and fixed (closed form) or random (soundness sweep); the solvers are
real. A ``robust`` from any backend where another holds a replayed counterexample fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from medverify import onnx_io
from medverify.nets import AffineNet
from medverify.verify import build_problem, run_verifier

ALL = ("exact", "milp", "marabou", "crown")
THRESHOLD_K = 10.0


def applicable(family: str):
    return ALL if family in ("brightness", "contrast") else tuple(b for b in ALL if b != "exact")


def closed_form_case(family: str):
    """(net, image, label) whose property holds exactly for k < THRESHOLD_K."""
    eps = THRESHOLD_K / 255
    if family in ("linf", "brightness"):
        # f0 = sum of the four pixels, f1 = constant; image all 0.5 (no clipping near k=10):
        # the worst case (every pixel -eps, or beta = -eps) gives f0 = 2 - 4 eps.
        image = np.full((1, 2, 2), 0.5)
        hidden = (np.eye(4), np.zeros(4))
        out = (np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]), np.array([0.0, 2 - 4 * eps]))
    else:
        # contrast about the mean m = 0.5: f0 = x3' - x0' = 0.6 alpha, f1 = 0.6 (1 - 4 eps);
        # alpha reaches 1 - 4 k/255 (CONTRAST_SCALE = 4).
        image = np.array([0.2, 0.4, 0.6, 0.8]).reshape(1, 2, 2)
        hidden = (np.eye(4), np.zeros(4))
        out = (np.array([[-1.0, 0, 0, 1.0], [0, 0, 0, 0]]), np.array([0.0, 0.6 * (1 - 4 * eps)]))
    return AffineNet([hidden, out]), image, 0


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("nets")


def _ort(net: AffineNet, directory, name: str):
    path = directory / f"{name}.onnx"
    onnx_io.export_affine(net, path)
    return onnx_io.OrtClassifier(path)


@pytest.mark.parametrize("family", ["linf", "brightness", "contrast"])
def test_every_backend_matches_closed_form(family, onnx_dir):
    net, image, label = closed_form_case(family)
    ort = _ort(net, onnx_dir, f"closed_{family}")
    for verifier in applicable(family):
        for k, expected in ((THRESHOLD_K - 2, "robust"), (THRESHOLD_K + 2, "counterexample")):
            problem = build_problem(net, image, label, family, k)
            got = run_verifier(problem, verifier, 30.0, ort)
            assert got["status"] == expected, (family, verifier, k, got["message"])
            if expected == "counterexample":
                assert got["predicted_label_at_counterexample"] == 1


def random_case(rng: np.random.Generator):
    n_in, classes = 9, 3
    widths = [n_in, int(rng.integers(4, 10)), int(rng.integers(4, 10)), classes]
    layers = [
        (
            rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]),
            rng.normal(size=widths[i + 1]) * 0.3,
        )
        for i in range(3)
    ]
    net = AffineNet(layers)
    image = rng.uniform(0, 1, size=(1, 3, 3))
    label = int(np.argmax(net.forward(image.reshape(-1))))
    family = str(rng.choice(["linf", "brightness", "contrast"]))
    k = float(rng.choice([2, 8, 16, 32, 64]))
    return net, image, label, family, k


def test_cross_backend_soundness_200_random_instances(onnx_dir):
    rng = np.random.default_rng(2026)
    tally = {"robust": 0, "counterexample": 0, "other": 0}
    for case in range(200):
        net, image, label, family, k = random_case(rng)
        ort = _ort(net, onnx_dir, f"rand{case}")
        problem = build_problem(net, image, label, family, k)
        verdicts = {}
        for verifier in applicable(family):
            got = run_verifier(problem, verifier, 20.0, ort)
            assert not got.get("flags"), (case, verifier, got["message"])
            assert got["status"] != "error", (case, verifier, got["message"])
            verdicts[verifier] = got["status"]
        statuses = set(verdicts.values())
        assert not {"robust", "counterexample"} <= statuses, (case, family, k, verdicts)
        decided = statuses & {"robust", "counterexample"}
        tally[decided.pop() if decided else "other"] += 1
    # the sweep must exercise both answers
    assert tally["robust"] >= 20 and tally["counterexample"] >= 20, tally
