"""The exact one-parameter backend on tiny networks whose answers are known in closed form,
and against dense grids on random networks."""

from __future__ import annotations

import numpy as np
import pytest

from medverify import onnx_io, perturbations
from medverify.nets import AffineNet
from medverify.verifiers import get
from medverify.verifiers.exact import analyze, label_change_points, walk
from medverify.verify import build_problem, replay


def bump_classifier() -> AffineNet:
    """One pixel x. f0 = 1 - 4 relu(x - 0.7) - 8 relu(0.4 - x), f1 = 0.

    Under brightness from x0 = 0.5 (x = clip(0.5 + b, 0, 1)) the margin f0 - f1 is 1 for
    b in [-0.1, 0.2], reaches 0 at b = -0.225 and b = 0.45, and is -2.2 for b <= -0.5."""
    w1 = np.array([[1.0], [-1.0]])
    b1 = np.array([-0.7, 0.4])
    w2 = np.array([[-4.0, -8.0], [0.0, 0.0]])
    b2 = np.array([1.0, 0.0])
    return AffineNet([(w1, b1), (w2, b2)])


def deep_classifier() -> AffineNet:
    """Like bump_classifier with a second hidden layer: g = relu(1 - 4 h1 - 8 h2),
    f0 = g - 0.5, f1 = 0. Margin zero at b = -0.1625 and b = 0.325; -0.5 where g = 0."""
    w1 = np.array([[1.0], [-1.0]])
    b1 = np.array([-0.7, 0.4])
    w2 = np.array([[-4.0, -8.0]])
    b2 = np.array([1.0])
    w3 = np.array([[1.0], [0.0]])
    b3 = np.array([-0.5, 0.0])
    return AffineNet([(w1, b1), (w2, b2), (w3, b3)])


def closed_form_margin(beta: float) -> float:
    x = min(max(0.5 + beta, 0.0), 1.0)
    return 1.0 - 4.0 * max(x - 0.7, 0.0) - 8.0 * max(0.4 - x, 0.0)


def test_robust_with_exact_minimum_margin():
    k = 50.0
    problem = build_problem(bump_classifier(), np.array([0.5]), 0, "brightness", k)
    res = get("exact").verify(problem, 10)
    assert res.status == "robust"
    expected = 1.0 - 8.0 * (k / 255 - 0.1)  # attained at beta = -k/255
    assert res.margin_lower_bound == pytest.approx(expected, abs=1e-12)
    assert res.stats["label_change_below"] is None
    assert res.stats["label_change_above"] is None
    assert res.stats["nominal"] == 0.0


def test_counterexample_replays_through_onnxruntime(tmp_path):
    classifier = bump_classifier()
    path = tmp_path / "bump.onnx"
    onnx_io.export_affine(classifier, path)
    k = 60.0  # eps = 0.235 > 0.225: the label changes at the dark end only
    problem = build_problem(classifier, np.array([0.5]), 0, "brightness", k)
    res = get("exact").verify(problem, 10)
    assert res.status == "counterexample"
    assert res.params.shape == (1,)
    assert res.params[0] == pytest.approx(-k / 255)
    assert res.margin_lower_bound == pytest.approx(closed_form_margin(-k / 255), abs=1e-12)
    assert res.margin_lower_bound < 0
    assert res.stats["label_change_below"] == pytest.approx(-0.225, abs=1e-12)
    assert res.stats["label_change_above"] is None
    rep = replay(problem, res.params, onnx_io.OrtClassifier(path))
    assert rep.ok, rep.message
    assert rep.predicted_label == 1


def test_label_change_points_over_the_whole_range():
    # the composed net is exact on the problem's box only (the clip prefix is pruned to
    # it): walks over [-1, 1] need k = 255
    problem = build_problem(bump_classifier(), np.array([0.5]), 0, "brightness", 255)
    below, above = label_change_points(problem.net, 0, [1], -1.0, 1.0, 0.0)
    assert below == pytest.approx(-0.225, abs=1e-12)
    assert above == pytest.approx(0.45, abs=1e-12)
    res = analyze(problem.net, 0, [1], -1.0, 1.0, 0.0)
    assert res.min_margin == pytest.approx(-2.2, abs=1e-12)
    assert res.argmin <= -0.5
    # a range that stops before the change on one side
    assert label_change_points(problem.net, 0, [1], -0.2, 1.0, 0.0) == (None, pytest.approx(0.45))


def test_second_hidden_layer_breakpoints():
    problem = build_problem(deep_classifier(), np.array([0.5]), 0, "brightness", 255)
    res = analyze(problem.net, 0, [1], -1.0, 1.0, 0.0)
    assert res.below == pytest.approx(-0.1625, abs=1e-12)
    assert res.above == pytest.approx(0.325, abs=1e-12)
    assert res.min_margin == pytest.approx(-0.5, abs=1e-12)


def test_zero_magnitude_is_the_nominal_margin():
    problem = build_problem(bump_classifier(), np.array([0.5]), 0, "brightness", 0)
    res = get("exact").verify(problem, 10)
    assert res.status == "robust"
    assert res.margin_lower_bound == pytest.approx(1.0)


def test_contrast_nominal_is_one_and_matches_grid():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, 6)
    classifier = random_net(rng, [6, 10, 10, 3])
    label = int(np.argmax(classifier.forward(image)))
    problem = build_problem(classifier, image, label, "contrast", 40)
    res = get("exact").verify(problem, 10)
    assert res.stats["nominal"] == 1.0
    check_against_grid(problem.net, label, problem.targets, problem.lower[0], problem.upper[0], 1.0)


def random_net(rng, sizes) -> AffineNet:
    return AffineNet(
        [
            (rng.normal(size=(o, i)) / np.sqrt(i), rng.normal(size=o) * 0.3)
            for i, o in zip(sizes[:-1], sizes[1:], strict=True)
        ]
    )


def check_against_grid(net, label, targets, lo, hi, nominal, n=20001):
    res = analyze(net, label, targets, lo, hi, nominal)
    grid = np.linspace(lo, hi, n)
    margins = net.margin_net(label, targets).forward(grid[:, None]).min(axis=1)
    assert margins.min() >= res.min_margin - 1e-9
    # the exact minimum is attained at the reported point, and the grid comes close to it
    at = net.margin_net(label, targets).forward(np.array([res.argmin])).min()
    assert at == pytest.approx(res.min_margin, abs=1e-9)
    assert lo <= res.argmin <= hi
    assert margins.min() - res.min_margin < 1e-2
    bad = margins <= 0
    for side, point in (("below", res.below), ("above", res.above)):
        sel = grid <= nominal if side == "below" else grid >= nominal
        hits = grid[sel & bad]
        if point is None:
            assert len(hits) == 0, f"{side}: grid finds a change at {hits[:3]}"
            continue
        value = net.margin_net(label, targets).forward(np.array([point])).min()
        assert value <= 1e-9
        assert value >= -1e-9 or point in (lo, hi, nominal)
        if side == "below":
            assert point <= nominal
            assert len(hits) == 0 or hits.max() <= point + 1e-12
        else:
            assert point >= nominal
            assert len(hits) == 0 or hits.min() >= point - 1e-12
    return res


@pytest.mark.parametrize("seed", range(6))
def test_random_networks_agree_with_dense_grid(seed):
    rng = np.random.default_rng(seed)
    net = random_net(rng, [1, 12, 12, 8, 4])
    label = int(np.argmax(net.forward(np.array([0.0]))))
    targets = [j for j in range(4) if j != label]
    res = check_against_grid(net, label, targets, -3.0, 3.0, 0.0)
    assert res.pieces >= 2


def test_brightness_on_image_sized_net_with_repeated_pixels():
    # many pixels share a value, so many clip ReLUs flip at the same beta
    rng = np.random.default_rng(7)
    image = rng.choice([0.0, 0.02, 0.5, 0.98, 1.0], size=64)
    classifier = random_net(rng, [64, 16, 16, 3])
    label = int(np.argmax(classifier.forward(image)))
    problem = build_problem(classifier, image, label, "brightness", 255)
    res = check_against_grid(problem.net, label, problem.targets, -1.0, 1.0, 0.0, n=40001)
    assert res.pieces >= 4


def test_counterexample_margin_is_strictly_negative_on_random_problems():
    rng = np.random.default_rng(11)
    found = 0
    for _ in range(20):
        image = rng.uniform(0, 1, 16)
        classifier = random_net(rng, [16, 12, 3])
        label = int(np.argmax(classifier.forward(image)))
        problem = build_problem(classifier, image, label, "brightness", 128)
        res = get("exact").verify(problem, 10)
        grid = np.linspace(problem.lower[0], problem.upper[0], 4001)
        grid_min = problem.margins(grid[:, None]).min()
        if res.status == "robust":
            assert grid_min > 0
            assert grid_min >= res.margin_lower_bound - 1e-9
        else:
            assert res.status == "counterexample"
            found += 1
            assert problem.family.in_box(res.params)
            assert problem.lower[0] <= res.params[0] <= problem.upper[0]
            assert problem.margins(res.params).min() == pytest.approx(res.margin_lower_bound)
            assert res.margin_lower_bound <= grid_min + 1e-9
    assert found > 0


def test_walk_pieces_cover_the_segment_in_order():
    problem = build_problem(bump_classifier(), np.array([0.5]), 0, "brightness", 255)
    pieces = walk(problem.margin_net(), -1.0, 1.0)
    assert pieces.lo[0] == -1.0 and pieces.hi[-1] == 1.0
    assert np.all(pieces.hi[:-1] == pieces.lo[1:])
    # breakpoints: clip at -0.5 and 0.5, bumps at -0.1 and 0.2
    assert np.allclose(pieces.hi[:-1], [-0.5, -0.1, 0.2, 0.5])


def test_refuses_families_with_many_parameters():
    problem = build_problem(bump_classifier(), np.array([0.5]), 0, "linf", 4)
    problem_2px = build_problem(
        AffineNet([(np.ones((2, 2)), np.zeros(2))]), np.array([0.5, 0.5]), 0, "linf", 4
    )
    with pytest.raises(ValueError, match="'linf' has 2 parameters"):
        get("exact").verify(problem_2px, 10)
    # a one-pixel linf box has one parameter and is fine
    assert get("exact").verify(problem, 10).status == "robust"


def test_timeout_and_piece_budget():
    rng = np.random.default_rng(0)
    net = random_net(rng, [1, 64, 64, 2])
    fam = perturbations.make("brightness", np.array([0.5]), 255)
    from medverify.verifiers import Problem

    problem = Problem(net, np.array([-50.0]), np.array([50.0]), 0, (1,), fam)
    assert get("exact").verify(problem, 0.0).status == "timeout"
    res = get("exact", max_pieces=2).verify(problem, 10)
    assert res.status == "unknown"
    assert "more than 2 linear pieces" in res.message


# --- every family against a closed-form threshold, every applicable backend --------------
THRESHOLD_K = 10.0
BACKENDS_BY_FAMILY = {
    name: (("exact",) if cls.parameters == 1 else ()) + ("crown", "milp", "marabou")
    for name, cls in perturbations.FAMILIES.items()
    if cls.structured
}


def closed_form_case(family: str, threshold_k: float = THRESHOLD_K):
    """(classifier, image, label) for 2 x 2 images whose property holds exactly for
    k < threshold_k: f1 is a constant set to the least value of f0 over the set at the
    threshold, f0 one pixel (through an identity ReLU layer), its minimum at a corner."""
    e = threshold_k / 255
    s = perturbations.CONTRAST_SCALE
    ramp = np.array([0.2, 0.4, 0.6, 0.8]).reshape(1, 2, 2)  # mean 0.5
    pick = 3  # f0 = x3' (0.8 in the ramp)
    if family == "brightness":
        image, least = ramp, 0.8 - e
    elif family == "contrast":
        image, least = ramp, 0.5 + 0.3 * (1 - s * e)
    elif family == "brightness_contrast":
        image, least = ramp, 0.5 + 0.3 * (1 - s * e) - e  # alpha low and beta low
    elif family == "window":
        image, least = ramp, 0.5 + 0.3 / (1 + s * e) - e  # widest window, level raised
    elif family == "bias_field":
        # top-left pixel (u = v = -1): gain 1 + c1 - cu - cv + cuu + cuv + cvv >= 1 - 6 e
        image, least, pick = np.full((1, 2, 2), 0.5), 0.5 * (1 - 6 * e), 0
    else:
        raise ValueError(family)
    hidden = (np.eye(4), np.zeros(4))
    row = np.zeros(4)
    row[pick] = 1.0
    out = (np.vstack([row, np.zeros(4)]), np.array([0.0, least]))
    return AffineNet([hidden, out]), image, 0


@pytest.mark.parametrize("family", sorted(BACKENDS_BY_FAMILY))
def test_every_backend_matches_closed_form_threshold(family, tmp_path):
    from medverify.verify import run_verifier

    classifier, image, label = closed_form_case(family)
    path = tmp_path / f"{family}.onnx"
    onnx_io.export_affine(classifier, path)
    ort = onnx_io.OrtClassifier(path)
    for verifier in BACKENDS_BY_FAMILY[family]:
        for k, expected in ((THRESHOLD_K - 1, "robust"), (THRESHOLD_K + 1, "counterexample")):
            problem = build_problem(classifier, image, label, family, k)
            got = run_verifier(problem, verifier, 60.0, ort, isolate=False)
            assert got["status"] == expected, (family, verifier, k, got["message"])
            if expected == "counterexample":
                assert got["predicted_label_at_counterexample"] == 1
                cex = np.asarray(got["counterexample"]["image"])
                assert problem.family.contains(cex, tol=1e-5)


@pytest.mark.parametrize("family", ["brightness", "contrast"])
def test_exact_margin_is_the_closed_form(family):
    # margin at k is least(k) - least(threshold): exact finds it to float precision
    classifier, image, label = closed_form_case(family)
    for k in (2.0, 9.0, 11.0):
        problem = build_problem(classifier, image, label, family, k)
        res = get("exact").verify(problem, 10)
        at_k = closed_form_case(family, k)[0].layers[-1][1][1]
        expected = at_k - classifier.layers[-1][1][1]
        assert res.margin_lower_bound == pytest.approx(expected, abs=1e-12)
        assert res.status == ("robust" if k < THRESHOLD_K else "counterexample")


@pytest.mark.parametrize("family", ["brightness_contrast", "window", "bias_field"])
def test_exact_refuses_multi_parameter_families(family):
    classifier, image, label = closed_form_case(family)
    problem = build_problem(classifier, image, label, family, 4)
    with pytest.raises(ValueError, match=f"{family!r} has"):
        get("exact").verify(problem, 10)
