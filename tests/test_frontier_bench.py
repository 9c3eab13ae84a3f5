"""benchmarks/frontier.py: the frontier of an input does not depend on the clock, and the
subcommands turn a missing listing or a bad count into a one-line error."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from medverify import attack
from medverify.nets import AffineNet

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread, as in the build (its small PGD batches only lose to threads
    that wait for a busy core)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def frontier():
    spec = importlib.util.spec_from_file_location("frontier", REPO / "benchmarks" / "frontier.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _net_and_image(seed=3):
    rng = np.random.default_rng(seed)
    net = AffineNet(
        [
            (rng.normal(0, 0.08, (24, 784)), rng.normal(0, 0.1, 24)),
            (rng.normal(0, 0.3, (10, 24)), rng.normal(0, 0.1, 10)),
        ]
    )
    image = rng.uniform(0, 1, (28, 28))
    label = int(net.forward(image.reshape(1, -1)).argmax())
    return net, image, label


def test_frontier_ends_bracket_and_ignore_the_clock(frontier, monkeypatch, one_thread):
    """The ends are (k CROWN proves, k the attack breaks); the attack's work is fixed: a
    clock that runs 1000 s per reading (a very loaded machine) runs the same PGD rounds
    and gives the same ends."""
    from medverify import bounds
    from medverify.verify import build_problem

    net, image, label = _net_and_image()
    ends = frontier.frontier(net, image, label, steps=4)
    assert ends is not None
    k_lo, k_hi = ends
    assert 0 < k_lo < k_hi <= frontier.K_MAX
    p_lo = build_problem(net, image, label, "linf", k_lo)
    assert bounds.crown(p_lo.margin_net(), p_lo.lower, p_lo.upper)[-1][0].min() > 0
    assert frontier._attack_finds(net, image, label, k_hi)

    calls = []
    real_pgd = attack.pgd

    def counted(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        return real_pgd(*args, **kwargs)

    monkeypatch.setattr(attack, "pgd", counted)
    assert not frontier._attack_finds(net, image, label, k_lo)  # every round runs
    normal = list(calls)
    assert len(normal) == 2
    ticks = itertools.count(0.0, 1000.0)
    monkeypatch.setattr(attack.time, "perf_counter", lambda: next(ticks))
    calls.clear()
    assert not frontier._attack_finds(net, image, label, k_lo)
    assert calls == normal
    assert frontier.frontier(net, image, label, steps=4) == ends


def test_subcommands_name_the_missing_listing_and_bad_counts(frontier, tmp_path, capsys):
    for argv in (
        ["run", "--out", str(tmp_path), "--backends", "crown"],
        ["one", "--out", str(tmp_path), "--key", "x/0/1"],
        ["attack", "--out", str(tmp_path), "--tags", "t"],
    ):
        assert frontier.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "instances.json" in err[0], (argv, err)
    (tmp_path / "instances.json").write_text(json.dumps([]))
    assert frontier.main(["run", "--out", str(tmp_path), "--inputs", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--inputs" in err[0] and "-1" in err[0]
    for flag in ("--restarts", "--steps"):
        assert frontier.main(["attack", "--out", str(tmp_path), "--tags", "t", flag, "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0], (flag, err)


def test_tool_runs_a_command_and_replays_its_counterexamples(frontier, tmp_path, monkeypatch):
    """``tool`` runs another verifier's command line per instance and reads its VNN-COMP
    answer: a ``sat`` counts only when its point replays through onnxruntime, a command
    that overruns is killed and is a ``timeout``, the tool's own seconds are kept, a
    rerun skips what is done, and an unknown placeholder is a one-line error."""
    import sys

    from medverify import onnx_io, vnncomp
    from medverify.verify import build_problem

    # output 1 (sum of the four pixels) beats output 0 (the constant 1) once the pixels
    # of 0.2 may rise by 16/255: k=16 has counterexamples, k=8 none
    net = AffineNet(
        [(np.eye(4), np.zeros(4)), (np.array([[0.0] * 4, [1.0] * 4]), np.array([1.0, 0.0]))]
    )
    image = np.full(4, 0.2)
    (tmp_path / "onnx").mkdir()
    onnx_io.export_affine(net, tmp_path / "onnx" / "toy.onnx")
    listing = []
    for idx, k in ((0, 16.0), (1, 8.0), (2, 16.0), (3, 8.0)):
        listing.append(
            {"net": "toy", "index": idx, "label": 0, "k": k, "onnx": "onnx/toy.onnx",
             "vnnlib": f"vnnlib/toy_{idx}.vnnlib"}
        )  # fmt: skip
    (tmp_path / "instances.json").write_text(json.dumps(listing))
    ort = onnx_io.OrtClassifier(tmp_path / "onnx" / "toy.onnx")
    monkeypatch.setattr(
        frontier, "_problem", lambda out, inst, cache: (build_problem(net, image, 0, "linf", inst["k"]), ort)
    )  # fmt: skip
    high = np.full(4, 0.2 + 16 / 255)
    # the "tool": per instance index, what it answers (its vnnlib name carries the index)
    answers = {
        0: vnncomp.format_counterexample(high, np.zeros(2)),  # a true counterexample
        1: vnncomp.format_counterexample(image, np.zeros(2)),  # no violation there
        2: "unsat,1.5\n",
        3: "sleep",
    }
    script = tmp_path / "tool.py"
    script.write_text(
        "import sys, time, json\n"
        f"answers = json.loads({json.dumps(json.dumps(answers))})\n"
        "spec, result = sys.argv[1], sys.argv[2]\n"
        "answer = answers[spec.rsplit('_', 1)[1].split('.')[0]]\n"
        "if answer == 'sleep':\n"
        "    time.sleep(60)\n"
        "open(result, 'w').write(answer)\n"
    )
    command = f"{sys.executable} {script} {{vnnlib}} {{result}}"
    argv = ["tool", "--out", str(tmp_path), "--name", "other", "--tag", "t", "--timeout", "1",
            "--grace", "0.5", "--command", command]  # fmt: skip
    assert frontier.main(argv) == 0
    rows = {
        r["key"]: r
        for r in map(json.loads, (tmp_path / "runs" / "t.jsonl").read_text().splitlines())
    }
    assert {k: r["status"] for k, r in rows.items()} == {
        "toy/0/16": "counterexample",
        "toy/1/8": "unknown",
        "toy/2/16": "robust",
        "toy/3/8": "timeout",
    }
    assert rows["toy/2/16"]["seconds"] == 1.5
    assert rows["toy/3/8"]["message"].startswith("killed after")
    assert all(r["backend"] == "other" for r in rows.values())
    # a rerun skips the pairs the run holds
    assert frontier.main(argv) == 0
    assert len((tmp_path / "runs" / "t.jsonl").read_text().splitlines()) == 4
    bad = argv[:-1] + [f"{sys.executable} {script} {{spec}} {{result}}"]
    assert frontier.main(bad) == 2


def test_tool_names_a_bad_placeholder_in_one_line(frontier, tmp_path, capsys):
    (tmp_path / "instances.json").write_text(json.dumps([]))
    argv = ["tool", "--out", str(tmp_path), "--name", "x", "--command", "verify {spec}"]
    assert frontier.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "{spec}" in err[0], err
    # a command that does not exist: one line naming it, nothing recorded
    listing = [
        {"net": "toy", "index": 0, "label": 0, "k": 1.0, "onnx": "a.onnx", "vnnlib": "a.vnnlib"}
    ]
    (tmp_path / "instances.json").write_text(json.dumps(listing))
    missing = str(tmp_path / "no-such-tool")
    argv = [
        "tool",
        "--out",
        str(tmp_path),
        "--name",
        "x",
        "--tag",
        "t",
        "--command",
        f"{missing} {{result}}",
    ]
    assert frontier.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-tool" in err[0], err
    assert not (tmp_path / "runs" / "t.jsonl").read_text()


def test_report_counts_a_verdict_past_the_timeout_as_undecided(frontier, tmp_path, capsys):
    """A verdict whose seconds exceed the timeout (another tool overrunning its own limit)
    is ``late`` and not decided: the budget is the same for every backend."""
    (tmp_path / "runs").mkdir()
    rows = [
        {"key": f"n/{i}/1", "net": "n", "k": 1.0, "backend": "other", "status": "robust",
         "seconds": s, "wall_s": s, "timeout_s": 60.0, "message": "", "domains": None}
        for i, s in enumerate((10.0, 59.9, 66.9))
    ]  # fmt: skip
    (tmp_path / "runs" / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert frontier.main(["report", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    head, row = lines[0].split(), lines[1].split()
    got = dict(zip(head, row, strict=True))
    assert (got["n"], got["decided"], got["late"], got["median_s"]) == ("3", "2", "1", "59.9")
