"""PGD falsification on family parameters (medverify.attack) on closed-form networks."""

from __future__ import annotations

import time

import numpy as np

from medverify.attack import find_counterexample, grid_points, pgd_per_label
from medverify.nets import AffineNet
from medverify.verify import build_problem

IMAGE = np.full((1, 2, 2), 0.5)


def ramp_net(c: float = 0.4) -> AffineNet:
    """margin = c - relu(sum(x) - 2): around the all-0.5 image a violation exists iff
    4 k / 255 > c (k > 25.5), for brightness and linf alike."""
    return AffineNet([(np.ones((1, 4)), np.array([-2.0])), (np.array([[-1.0], [0.0]]), [c, 0.0])])


def interior_net() -> AffineNet:
    """Violations only strictly inside the box, none at its corners or at the image:
    margin = 0.01 - |x0 - 0.5| + 2 relu(x0 - 0.52) + 2 relu(0.48 - x0), negative exactly
    for 0.01 < |x0 - 0.5| < 0.03."""
    w1 = np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    b1 = np.array([-0.5, 0.5, -0.52, 0.48])
    w2 = np.array([[-1.0, -1.0, 2.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    b2 = np.array([0.01, 0.0])
    return AffineNet([(w1, b1), (w2, b2)])


def test_finds_counterexample_above_threshold():
    for family in ("linf", "brightness"):
        p = build_problem(ramp_net(), IMAGE, 0, family, 30.0)
        x = find_counterexample(p, seed=1)
        assert x is not None
        assert p.family.in_box(x)
        assert p.margins(x).min() < 0


def test_none_below_threshold():
    for family in ("linf", "brightness", "contrast"):
        p = build_problem(ramp_net(), IMAGE, 0, family, 20.0)
        assert find_counterexample(p, seed=1) is None


def test_pgd_finds_interior_violation():
    """The corners and the nominal image are safe; the search must find the dent."""
    net = interior_net()
    p = build_problem(net, IMAGE, 0, "linf", 40.0)  # x0 in [0.343, 0.657]
    assert p.margins(IMAGE.reshape(-1)).min() > 0
    assert p.margins(np.vstack([p.lower, p.upper])).min() > 0
    x = find_counterexample(p, seed=0, restarts=16, steps=100)
    assert x is not None and p.margins(x).min() < 0 and p.family.in_box(x)
    assert 0.01 < abs(x[0] - 0.5) < 0.03


def test_pgd_per_label_attacks_each_row_in_the_box():
    """One (row, point) per wrong label (``interior_net`` has two labels: one row),
    inside the box, and the row's point lies in the dent (negative margin)."""
    p = build_problem(interior_net(), IMAGE, 0, "linf", 40.0)
    got = list(pgd_per_label(p, restarts=16, steps=100))
    assert [row for row, _ in got] == [0]
    for _, x in got:
        assert p.family.in_box(x)
    assert p.margin_net().forward(got[0][1])[0] < 0
    assert 0.01 < abs(got[0][1][0] - 0.5) < 0.03


def test_deterministic_given_seed():
    p = build_problem(interior_net(), IMAGE, 0, "linf", 40.0)
    a = find_counterexample(p, seed=5, restarts=16, steps=100)
    b = find_counterexample(p, seed=5, restarts=16, steps=100)
    assert a is not None and np.array_equal(a, b)


def test_respects_time_budget():
    rng = np.random.default_rng(0)
    net = AffineNet(
        [
            (rng.normal(size=(256, 784)) * 0.05, np.zeros(256)),
            (rng.normal(size=(256, 256)) * 0.05, np.zeros(256)),
            (rng.normal(size=(2, 256)), np.array([100.0, 0.0])),  # never violated
        ]
    )
    img = rng.uniform(0, 1, (1, 28, 28))
    p = build_problem(net, img, 0, "linf", 8.0)
    t0 = time.perf_counter()
    assert find_counterexample(p, restarts=64, steps=10_000, time_budget_s=0.5) is None
    assert time.perf_counter() - t0 < 3.0


def test_grid_points_cover_the_box():
    g = grid_points(np.array([-1.0]), np.array([1.0]), total=5)
    np.testing.assert_allclose(g[:, 0], [-1, -0.5, 0, 0.5, 1])
    g2 = grid_points(np.array([0.0, 0.0]), np.array([1.0, 2.0]), total=9)
    assert g2.shape == (9, 2) and g2.min(0).tolist() == [0, 0] and g2.max(0).tolist() == [1, 2]
