"""Soundness under load (`make test-slow`): thousands of random small instances across
every family and every backend. Every counterexample is replayed (verify.finalize), no
backend contradicts another, and ``exact`` matches ``milp`` on every one-parameter
instance both decide. ``MEDVERIFY_STRESS_N`` sets the number of instances (default 2000);
the counts are printed and, with ``MEDVERIFY_STRESS_OUT``, written as JSON."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

import numpy as np
import pytest

from medverify import onnx_io
from medverify.nets import AffineNet
from medverify.perturbations import FAMILIES
from medverify.verifiers import BACKENDS
from medverify.verify import build_problem, run_verifier

N = int(os.environ.get("MEDVERIFY_STRESS_N", "2000"))
TIMEOUT_S = 10.0
MAGNITUDES = (1, 4, 16, 32, 64, 128, 255)


def applicable(family: str) -> tuple[str, ...]:
    return tuple(b for b in BACKENDS if b != "exact" or FAMILIES[family].parameters == 1)


def random_instance(rng: np.random.Generator):
    side = int(rng.integers(2, 4))
    n_in, classes = side * side, int(rng.integers(2, 5))
    depth = int(rng.integers(1, 3))
    widths = [n_in, *(int(rng.integers(3, 9)) for _ in range(depth)), classes]
    layers = [
        (
            rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]),
            rng.normal(size=widths[i + 1]) * 0.3,
        )
        for i in range(len(widths) - 1)
    ]
    net = AffineNet(layers)
    image = rng.uniform(0, 1, size=(1, side, side))
    label = int(np.argmax(net.forward(image.reshape(-1))))
    family = str(rng.choice(sorted(FAMILIES)))
    k = float(rng.choice(MAGNITUDES))
    return net, image, label, family, k


@pytest.mark.slow
def test_soundness_under_load(tmp_path):
    rng = np.random.default_rng(12)
    counts = Counter()
    problems = []
    for case in range(N):
        if case % 100 == 0:
            print(f"stress: instance {case} of {N}: {dict(counts)}", file=sys.stderr, flush=True)
        net, image, label, family, k = random_instance(rng)
        path = tmp_path / "net.onnx"
        onnx_io.export_affine(net, path)
        ort = onnx_io.OrtClassifier(path)
        problem = build_problem(net, image, label, family, k)
        verdicts = {}
        for verifier in applicable(family):
            got = run_verifier(problem, verifier, TIMEOUT_S, ort)
            verdicts[verifier] = got["status"]
            counts[f"{verifier}:{got['status']}"] += 1
            counts["verifier_runs"] += 1
            for flag in got.get("flags") or []:
                counts[f"flag:{flag}"] += 1
                if flag != "borderline":  # a claimed counterexample that did not replay
                    problems.append((case, verifier, family, k, got["message"]))
            if got["status"] == "counterexample":
                counts["counterexamples_replayed"] += 1
        statuses = set(verdicts.values())
        counts["instances"] += 1
        counts[f"family:{family}"] += 1
        if {"robust", "counterexample"} <= statuses:
            problems.append((case, "contradiction", family, k, verdicts))
        if "exact" in verdicts:
            pair = (verdicts["exact"], verdicts["milp"])
            if set(pair) <= {"robust", "counterexample"}:
                counts["exact_vs_milp_both_decided"] += 1
                if pair[0] != pair[1]:
                    problems.append((case, "exact!=milp", family, k, verdicts))
            else:
                counts["exact_vs_milp_undecided"] += 1
    summary = {"instances": N, "timeout_s": TIMEOUT_S, "counts": dict(sorted(counts.items()))}
    summary["problems"] = [list(map(str, p)) for p in problems[:20]]
    print(json.dumps(summary, indent=1))
    if os.environ.get("MEDVERIFY_STRESS_OUT"):
        with open(os.environ["MEDVERIFY_STRESS_OUT"], "w") as fh:
            json.dump(summary, fh, indent=1)
    assert not problems, problems[:5]
    assert counts["counterexamples_replayed"] > 0 and counts["exact_vs_milp_both_decided"] > 0
