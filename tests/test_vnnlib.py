"""VNNLIB writer and reader: lossless round trips, common VNN-COMP forms, errors with
line numbers, and the link to our problems."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medverify import vnnlib
from medverify.nets import AffineNet
from medverify.verifiers import Problem, get
from medverify.verify import build_problem
from medverify.vnnlib import VnnlibError


def write_text(tmp_path, text, name="p.vnnlib"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_round_trip_is_lossless(tmp_path):
    rng = np.random.default_rng(0)
    lower = rng.uniform(-1, 1, 30)
    lower[:4] = [0.0, -0.0, 1e-300, 1 / 3]
    upper = lower + rng.uniform(0, 1e-3, 30)
    upper[5] = 1e20
    path = tmp_path / "box.vnnlib"
    vnnlib.write(path, lower, upper, 2, 5)
    prop = vnnlib.read(path)
    assert prop.num_inputs == 30 and prop.num_outputs == 5
    assert np.array_equal(prop.lower, lower) and np.array_equal(prop.upper, upper)
    # one disjunct per other label: Y_2 - Y_j <= 0
    assert len(prop.disjuncts) == 4
    for (c, d), j in zip(prop.disjuncts, [0, 1, 3, 4], strict=True):
        expected = np.zeros((1, 5))
        expected[0, 2], expected[0, j] = 1.0, -1.0
        assert np.array_equal(c, expected) and np.array_equal(d, [0.0])
    lo, hi, label, targets = vnnlib.to_problem_spec(prop)
    assert np.array_equal(lo, lower) and np.array_equal(hi, upper)
    assert (label, targets) == (2, (0, 1, 3, 4))
    assert not re.search(r"\d[eE]", path.read_text())  # positional decimals only


def test_single_target_form(tmp_path):
    path = tmp_path / "one.vnnlib"
    vnnlib.write(path, [0.25], [0.75], 1, 3, targets=[0])
    text = path.read_text()
    assert "(assert (>= Y_0 Y_1))" in text and "(or" not in text
    prop = vnnlib.read(path)
    assert vnnlib.to_problem_spec(prop)[2:] == (1, (0,))
    assert prop.violated_by([1.0, 1.0, 5.0]) and not prop.violated_by([0.9, 1.0, 5.0])


def test_reads_common_vnncomp_forms(tmp_path):
    text = """; ACAS-Xu like
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (<= X_0 0.5))
(assert (>= X_0 -0.5))
(assert (<= X_1 (- 0.05)))
(assert (>= X_1 -1e-1))   ; tighter than the next one
(assert (>= X_1 -0.2))
(assert (<= X_0 0.4))
(assert (<= 3.5 Y_0))
(assert (or
    (and (<= Y_1 Y_0) (>= Y_2 1))
    (and (>= Y_2 Y_0))
))
"""
    prop = vnnlib.read(write_text(tmp_path, text))
    assert np.array_equal(prop.lower, [-0.5, -0.1])
    assert np.array_equal(prop.upper, [0.4, -0.05])
    assert len(prop.disjuncts) == 2
    c0, d0 = prop.disjuncts[0]
    # 3.5 - Y_0 <= 0 ; Y_1 - Y_0 <= 0 ; 1 - Y_2 <= 0
    assert np.array_equal(c0, [[-1, 0, 0], [-1, 1, 0], [0, 0, -1]])
    assert np.array_equal(d0, [-3.5, 0, -1])
    assert prop.violated_by([4.0, 3.0, 2.0])  # first disjunct
    assert prop.violated_by([4.0, 9.0, 4.0])  # second disjunct
    assert not prop.violated_by([4.0, 9.0, 3.0])
    assert not prop.violated_by([3.0, 0.0, 9.0])  # 3.5 <= Y_0 fails
    with pytest.raises(VnnlibError, match="not a single 'Y_j >= Y_label'"):
        vnnlib.to_problem_spec(prop)


def test_input_bounds_repeated_in_every_disjunct_are_factored_out(tmp_path):
    text = """(declare-const X_0 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (or
    (and (>= X_0 0.1) (<= X_0 0.2) (>= Y_1 Y_0))
    (and (>= X_0 0.1) (<= X_0 0.2) (>= Y_2 Y_0))
))
"""
    prop = vnnlib.read(write_text(tmp_path, text))
    lo, hi, label, targets = vnnlib.to_problem_spec(prop)
    assert (lo[0], hi[0], label, targets) == (0.1, 0.2, 0, (1, 2))


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1)\n",
            3,
            "never closed",
        ),
        ("(declare-const X_0 Real))\n", 1, "unexpected"),
        ("(declare-const X_0 Real)\n(declare-const Z_0 Real)\n", 2, "not X_<i> or Y_<j>"),
        ("(declare-const X_0 Int)\n", 1, "type 'Int'"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n\n(assert (<= X_1 1))\n", 4, "X_1"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (== X_0 1))\n", 3, "'=='"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 Y_0))\n", 3, "mixes"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 abc))\n", 3, "abc"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1 2))\n", 3, "two"),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 inf))\n", 3, "inf"),
        (
            "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1))\n",
            1,
            "no lower",
        ),
        ("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(check-sat)\n", 3, "check-sat"),
        (
            "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 0))\n"
            "(assert (>= X_0 1))\n",
            1,
            "empty range",
        ),
        (
            "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
            "(assert (or (and (<= X_0 1) (>= Y_1 Y_0))\n (and (<= X_0 2) (>= Y_1 Y_0))))\n",
            4,
            "differ between disjuncts",
        ),
    ],
)
def test_malformed_files_name_the_line(tmp_path, text, line, message):
    path = write_text(tmp_path, text, "bad.vnnlib")
    with pytest.raises(VnnlibError) as info:
        vnnlib.read(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert message in msg
    assert "\n" not in msg


def test_writer_rejects_bad_arguments(tmp_path):
    path = tmp_path / "w.vnnlib"
    with pytest.raises(VnnlibError, match="label 3"):
        vnnlib.write(path, [0.0], [1.0], 3, 2)
    with pytest.raises(VnnlibError, match="empty box"):
        vnnlib.write(path, [0.5], [0.4], 0, 2)
    with pytest.raises(VnnlibError, match="finite"):
        vnnlib.write(path, [0.0], [np.inf], 0, 2)
    with pytest.raises(VnnlibError, match="exclude label 0"):
        vnnlib.write(path, [0.0], [1.0], 0, 2, targets=[0])
    assert not path.exists()


def test_brightness_property_has_one_input_and_verifies_like_the_problem(tmp_path):
    # four pixels of 0.5, x their mean: f0 = 1 - 8 relu(0.4 - x), f1 = 0. Brightness
    # changes the label at beta = -0.225.
    classifier = AffineNet(
        [
            (np.full((1, 4), -0.25), np.array([0.4])),
            (np.array([[-8.0], [0.0]]), np.array([1.0, 0.0])),
        ]
    )
    image = np.full(4, 0.5)
    for k, expected in ((40, "robust"), (70, "counterexample")):
        problem = build_problem(classifier, image, 0, "brightness", k)
        path = tmp_path / f"b{k}.vnnlib"
        vnnlib.write_problem(path, problem)
        prop = vnnlib.read(path)
        assert prop.num_inputs == 1 and prop.num_outputs == 2
        lo, hi, label, targets = vnnlib.to_problem_spec(prop)
        assert np.array_equal(lo, [-k / 255]) and np.array_equal(hi, [k / 255])
        # verify the property read from the file on the composed network
        again = Problem(problem.net, lo, hi, label, targets, problem.family)
        result = get("exact").verify(again, 10)
        assert result.status == expected
        if expected == "counterexample":
            assert prop.violated_by(problem.net.forward(result.params))
