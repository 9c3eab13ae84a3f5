"""MILP backend (PuLP with HiGHS and CBC) on tiny networks with closed-form answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medverify import bounds
from medverify.nets import AffineNet
from medverify.perturbations import Linf
from medverify.verifiers import get
from medverify.verifiers.base import Problem
from medverify.verify import build_problem

pytest.importorskip("pulp")

IMAGE = np.array([[[0.4, 0.5], [0.5, 0.6]]])  # mean 0.5, no pixel clips for k <= 25
THRESHOLD_K = 10.0  # robust below, counterexample above (both families)
SOLVERS = ["highs", "cbc"]


def threshold_net() -> AffineNet:
    """2 logits over 4 pixels with m = mean(x): f0 = 0, f1 = 3 relu(m - .5) - relu(.5 - m)
    - 30/255. The margin f0 - f1 = 30/255 - 3 (m - .5) for m >= .5: under brightness or
    linf with k/255 it is smallest at m = .5 + k/255, so robust iff k < 10."""
    w1 = np.array([[0.25] * 4, [-0.25] * 4])
    b1 = np.array([-0.5, 0.5])
    w2 = np.array([[0.0, 0.0], [3.0, -1.0]])
    b2 = np.array([0.0, -30.0 / 255.0])
    return AffineNet([(w1, b1), (w2, b2)])


def true_min_margin(k: float) -> float:
    return 30.0 / 255.0 - 3.0 * k / 255.0


def assert_counterexample(problem: Problem, result) -> None:
    assert result.status == "counterexample", result.message
    assert result.params is not None
    assert problem.family.in_box(result.params)
    assert np.min(problem.margins(result.params)) < 0


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("family", ["brightness", "linf"])
@pytest.mark.parametrize("k", [4.0, 9.0, 11.0, 20.0])
def test_closed_form_threshold(solver, family, k):
    problem = build_problem(threshold_net(), IMAGE, 0, family, k)
    result = get("milp", solver=solver, prune=False, early_stop=False).verify(problem, 20.0)
    if k < THRESHOLD_K:
        assert result.status == "robust", result.message
        # a proven optimum: the margin lower bound is the exact minimum
        assert result.margin_lower_bound == pytest.approx(true_min_margin(k), abs=1e-5)
        assert result.margin_lower_bound <= true_min_margin(k) + 1e-9
    else:
        assert_counterexample(problem, result)
        # the MILP minimises: its counterexample is the worst point, m = .5 + k/255
        assert np.min(problem.margins(result.params)) == pytest.approx(true_min_margin(k), abs=1e-5)


@pytest.mark.parametrize("k", [4.0, 9.0])
def test_bound_pruning_is_sound(k):
    problem = build_problem(threshold_net(), IMAGE, 0, "brightness", k)
    result = get("milp").verify(problem, 20.0)
    assert result.status == "robust"
    assert result.margin_lower_bound <= true_min_margin(k) + 1e-9


def test_crown_bounds_contain_samples_and_beat_intervals():
    rng = np.random.default_rng(3)
    for _ in range(10):
        net = random_net(rng, 4, (8, 8), 3)
        lo = rng.uniform(0, 0.5, 4)
        hi = lo + rng.uniform(0, 0.5, 4)
        crown, ibp = bounds.crown(net, lo, hi), bounds.interval(net, lo, hi)
        x = rng.uniform(lo, hi, size=(500, 4))
        h = x
        for k, (w, b) in enumerate(net.layers):
            z = h @ w.T + b
            assert np.all(z >= crown[k][0]) and np.all(z <= crown[k][1])
            assert np.all(crown[k][0] >= ibp[k][0]) and np.all(crown[k][1] <= ibp[k][1])
            h = np.maximum(z, 0)


def random_net(rng, n_in, hidden, n_out) -> AffineNet:
    dims = [n_in, *hidden, n_out]
    return AffineNet(
        [
            (rng.normal(size=(dims[i + 1], dims[i])), rng.normal(size=dims[i + 1]))
            for i in range(len(dims) - 1)
        ]
    )


def hard_problem(k: float = 40.0) -> Problem:
    """16 inputs, three hidden layers of 48: ~120 unstable ReLUs, which no solver proves
    or refutes within a fraction of a second (HiGHS needs > 20 s)."""
    rng = np.random.default_rng(7)
    dims = [16, 48, 48, 48, 2]
    net = AffineNet(
        [
            (
                rng.normal(size=(dims[i + 1], dims[i])) / np.sqrt(dims[i]),
                0.1 * rng.normal(size=dims[i + 1]),
            )
            for i in range(len(dims) - 1)
        ]
    )
    x = rng.uniform(0.3, 0.7, size=16)
    label = int(np.argmax(net.forward(x)))
    fam = Linf(x, k)
    lo, hi = fam.box()
    return Problem(net, lo, hi, label, (1 - label,), fam)


@pytest.mark.parametrize("solver", SOLVERS)
def test_time_limit_is_not_a_proof(solver):
    import time

    problem = hard_problem()
    start = time.perf_counter()
    result = get("milp", solver=solver).verify(problem, 1.0)
    assert time.perf_counter() - start < 2.0
    assert result.status != "robust"
    if result.status == "counterexample":
        assert_counterexample(problem, result)
    else:
        assert result.status == "timeout", result.message


def test_multiclass_per_target_and_options():
    rng = np.random.default_rng(11)
    net = random_net(rng, 4, (8,), 4)
    image = rng.uniform(0.2, 0.8, size=(1, 2, 2))
    label = int(np.argmax(net.forward(image.reshape(-1))))
    problem = build_problem(net, image, label, "linf", 200.0)  # the whole [0, 1] box
    highs = get("milp", solver="highs", prune=False).verify(problem, 20.0)
    cbc = get("milp", solver="cbc", bounds="interval", prune=False).verify(problem, 20.0)
    assert highs.status == cbc.status
    assert highs.status in ("robust", "counterexample")
    with pytest.raises(ValueError, match="gurobi"):
        get("milp", solver="gurobi")
    assert "pulp" in get("milp").tool_version()
    assert "CBC" in get("milp", solver="cbc").tool_version()


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_minimum_inside_the_solver_tolerance_is_no_proof(solver):
    """One proof rule for every MILP (``bounds.MILP_PROVE_TOL``, 1e-6): a minimum margin of
    5e-7 is not ``robust`` for the milp backend, nor proven by crown's MILP handoff; 1e-4
    is, by both."""
    from medverify.verifiers.crown import _milp_min

    for margin, proven in ((5e-7, False), (1e-4, True)):
        k = 10.0 - margin * 255.0 / 3.0  # true_min_margin(k) == margin
        problem = build_problem(threshold_net(), IMAGE, 0, "linf", k)
        result = get("milp", solver=solver, prune=False, early_stop=False).verify(problem, 20.0)
        assert (result.status == "robust") is proven, (margin, result.status, result.message)
        net = problem.margin_net()
        hidden = bounds.crown(net, problem.lower, problem.upper)[:-1]
        status, _ = _milp_min(net, problem.lower, problem.upper, hidden, 20.0)
        assert (status == "proven") is proven, (margin, status)


def test_a_solve_prints_nothing_on_stdout():
    """HiGHS prints its banner on file descriptor 1 whenever a solver object is built;
    the backend keeps it off stdout, which carries a command's answer."""
    import subprocess
    import sys

    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from test_milp import hard_problem;"
        "from medverify.verifiers import get;"
        "b = get('milp', solver='highs'); b.tool_version();"
        "r = b.verify(hard_problem(), 1.0); print('answer', r.status)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("answer "), proc.stdout
