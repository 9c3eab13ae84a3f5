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
