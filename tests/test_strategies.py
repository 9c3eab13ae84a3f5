"""Strategies (joint / guided) around real backends on tiny fixed-weight nets with known
answers; the guided record fields; contradiction across strategies; the names reach
the schema and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from medverify import aggregate, onnx_io, results, strategies
from medverify import config as mconfig
from medverify.cli import main
from medverify.errors import ConfigError
from medverify.nets import AffineNet
from medverify.results import Question, Record
from medverify.verifiers import get
from medverify.verify import build_problem, run_verifier, verify_image

pytest.importorskip("pulp")

REPO = Path(__file__).resolve().parents[1]
IMAGE = np.array([[[0.4, 0.5], [0.5, 0.6]]])  # mean 0.5, no pixel clips for k <= 25


def four_label_net() -> AffineNet:
    """With m the pixel mean and r(m) = 3 relu(m - .5) - relu(.5 - m): f0 = 0,
    f1 = r(m) - 30/255 (wins iff k >= 10 under brightness/linf), f2 = -1 (never wins:
    pruned by any bound), f3 = r(m) - 60/255 (wins iff k >= 20). Label 1 is always more
    dangerous than label 3."""
    w1 = np.array([[0.25] * 4, [-0.25] * 4])
    b1 = np.array([-0.5, 0.5])
    w2 = np.array([[0.0, 0.0], [3.0, -1.0], [0.0, 0.0], [3.0, -1.0]])
    b2 = np.array([0.0, -30.0 / 255.0, -1.0, -60.0 / 255.0])
    return AffineNet([(w1, b1), (w2, b2)])


def guided(backend: str, confirm=None, **options):
    return strategies.make("guided", get(backend, **options), confirm=confirm)


COMPLETE = ["milp", "marabou"]


def backends():
    out = ["milp", "crown"]
    try:
        import maraboupy  # noqa: F401

        out.append("marabou")
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("family", ["brightness", "linf"])
@pytest.mark.parametrize("k", [4.0, 9.0, 11.0, 15.0, 25.0])
def test_guided_closed_form(backend, family, k):
    problem = build_problem(four_label_net(), IMAGE, 0, family, k)
    res = guided(backend).verify(problem, 30.0)
    checked = res.stats["labels_checked"]
    by_label = {e["label"]: e for e in checked}
    assert [e["label"] for e in checked] == [1, 3, 2]  # by upper bound, most dangerous first
    assert by_label[2]["status"] == "pruned" and by_label[2]["bound"] < 0
    assert all(set(e) >= {"label", "status", "seconds", "bound"} for e in checked)
    assert res.stats["sort_s"] >= 0
    if k < 10:
        assert res.status == "robust", res.message
        assert all(e["status"] in ("robust", "pruned") for e in checked)
    else:
        assert res.status == "counterexample", res.message
        assert np.min(problem.margins(res.params)) < 0
        # stops at the first label that falls: label 1, label 3 never runs
        assert by_label[1]["status"] == "counterexample"
        assert by_label[3]["status"] in ("skipped", "pruned")
        if k >= 20:  # label 3 can win too: not pruned, but never reached
            assert by_label[3]["status"] == "skipped"


def test_non_replaying_counterexample_does_not_stop_the_loop():
    """A counterexample the replay rejects leaves its label open: the loop goes on to the
    next label, and the job cannot be robust."""
    problem = build_problem(four_label_net(), IMAGE, 0, "brightness", 25.0)

    def reject_label_1(single, result):
        ok = single.targets != (1,)
        return ok, (None if ok else "replay-failed"), "rejected for the test"

    res = guided("milp", confirm=reject_label_1).verify(problem, 30.0)
    by_label = {e["label"]: e for e in res.stats["labels_checked"]}
    assert by_label[1]["status"] == "unknown" and by_label[1]["flag"] == "replay-failed"
    assert res.status == "counterexample"
    assert by_label[3]["status"] == "counterexample"
    assert np.argmin(problem.margins(res.params)) in (0, 2)  # labels 1 or 3 win

    # at k = 15 only label 1 falls: rejecting it leaves the job open, never robust
    problem = build_problem(four_label_net(), IMAGE, 0, "brightness", 15.0)
    res = guided("milp", confirm=reject_label_1).verify(problem, 30.0)
    assert res.status == "unknown", res.message


def test_no_time_left_is_timeout_not_robust():
    problem = build_problem(four_label_net(), IMAGE, 0, "linf", 15.0)
    res = guided("milp").verify(problem, strategies.RESERVE_S + 0.01)
    assert res.status == "timeout"
    by_label = {e["label"]: e for e in res.stats["labels_checked"]}
    assert by_label[1]["status"] == "timeout" and by_label[2]["status"] == "pruned"


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    n_out = int(rng.integers(3, 6))
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
    k = float(rng.choice([10.0, 60.0, 150.0]))
    return build_problem(net, image, label, family, k)


@pytest.mark.parametrize("backend", [b for b in backends() if b in COMPLETE])
@pytest.mark.parametrize("seed", range(12))
def test_joint_and_guided_agree_on_complete_backends(backend, seed):
    problem = random_case(seed)
    joint = strategies.make("joint", get(backend)).verify(problem, 20.0)
    guide = guided(backend).verify(problem, 20.0)
    assert joint.status in results.DECIDED, joint.message
    assert guide.status in results.DECIDED, guide.message
    assert joint.status == guide.status
    for res in (joint, guide):
        if res.status == "counterexample":
            assert problem.family.in_box(res.params)
            assert np.min(problem.margins(res.params)) < 0


def test_joint_milp_minimises_the_smallest_margin():
    """The joint MILP (selection binaries over all targets, no pruning, no early stop)
    finds the worst point over every label: margin of label 1 at m = .5 + k/255."""
    problem = build_problem(four_label_net(), IMAGE, 0, "brightness", 15.0)
    res = get("milp", prune=False, early_stop=False).verify(problem, 20.0)
    assert res.status == "counterexample"
    assert np.min(problem.margins(res.params)) == pytest.approx(30 / 255 - 45 / 255, abs=1e-5)
    robust = get("milp", prune=False, early_stop=False).verify(
        build_problem(four_label_net(), IMAGE, 0, "brightness", 4.0), 20.0
    )
    assert robust.status == "robust"
    assert robust.margin_lower_bound == pytest.approx(30 / 255 - 12 / 255, abs=1e-5)


@pytest.mark.parametrize("k, expected", [(4.0, "robust"), (15.0, "counterexample")])
def test_guided_record_through_the_isolated_runner(tmp_path, k, expected):
    net = four_label_net()
    path = tmp_path / "net.onnx"
    onnx_io.export_affine(net, path)
    q = Question("d", "tiny", 0, 0, "brightness", k, "milp", strategy="guided", timeout_s=20.0)
    rec = verify_image(str(path), IMAGE, q)
    assert rec.status == expected, rec.message
    assert rec.strategy == "guided"
    assert [e["label"] for e in rec.labels_checked] == [1, 3, 2]
    assert "sort_s" in rec.extra
    if expected == "counterexample":
        assert rec.predicted_label_at_counterexample == 1
    # the joint record carries no label list
    ort = onnx_io.OrtClassifier(path)
    fields = run_verifier(build_problem(net, IMAGE, 0, "brightness", k), "milp", 20.0, ort)
    assert fields["status"] == expected and fields["labels_checked"] is None


def test_guided_robust_against_joint_counterexample_is_a_contradiction():
    def rec(strategy, status):
        kw = {"counterexample": {"image": [0.5] * 4}} if status == "counterexample" else {}
        q = Question("ds", "mlp", 3, 1, "linf", 4.0, "milp", strategy=strategy, slot=3)
        return Record.build(q, status, **kw)

    df = aggregate.records_frame([rec("guided", "robust"), rec("joint", "counterexample")])
    with pytest.raises(aggregate.ContradictionError, match="milp/guided says robust"):
        aggregate.check_contradictions(df)
    aggregate.check_contradictions(
        aggregate.records_frame([rec("guided", "robust"), rec("joint", "robust")])
    )


def test_strategy_names_come_from_the_package():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    # the schema lists no names: medverify.config checks them against the package
    assert "enum" not in schema["properties"]["strategies"]["items"]
    assert schema["properties"]["strategies"]["default"] == ["joint"]
    for name in strategies.STRATEGIES:
        mconfig.check_names({"families": {"linf": [1]}, "verifiers": ["milp"],
                             "strategies": [name]}, "x.yaml")  # fmt: skip
    with pytest.raises(ConfigError, match="strategies: unknown strategy 'greedy'"):
        mconfig.check_names({"families": {"linf": [1]}, "verifiers": ["milp"],
                             "strategies": ["greedy"]}, "x.yaml")  # fmt: skip
    with pytest.raises(Exception, match="unknown strategy 'greedy'"):
        strategies.make("greedy", get("milp"))


def test_cli_verify_vnnlib_guided(tmp_path, capsys):
    from medverify import vnnlib

    onnx_io.export_affine(four_label_net(), tmp_path / "n.onnx")
    for k, expected in ((4.0, "robust"), (15.0, "counterexample")):
        problem = build_problem(four_label_net(), IMAGE, 0, "linf", k)
        prop = tmp_path / f"p{k}.vnnlib"
        vnnlib.write(prop, problem.family.box()[0], problem.family.box()[1], 0, 4)
        out = tmp_path / f"r{k}.json"
        argv = ["verify", "--onnx", str(tmp_path / "n.onnx"), "--vnnlib", str(prop)]
        argv += ["--verifier", "milp", "--strategy", "guided", "--timeout", "20"]
        assert main([*argv, "--out", str(out)]) == 0
        rec = results.read(out)
        assert rec.status == expected and rec.strategy == "guided"
        assert rec.labels_checked[0]["label"] == 1
    assert "milp/guided" in capsys.readouterr().out


@pytest.mark.skipif(
    strategies.REFINE_METHOD not in __import__("medverify.bounds").bounds.METHODS,
    reason="medverify.bounds has no α-CROWN here",
)
def test_refined_label_bounds_are_never_looser_and_keep_the_verdict():
    for k in (9.0, 15.0):
        problem = build_problem(four_label_net(), IMAGE, 0, "linf", k)
        plain, _ = strategies.label_bounds(problem)
        refined, method = strategies.label_bounds(problem, refine=True)
        assert np.all(refined <= plain + 1e-9)
        res = strategies.make("guided", get("milp"), refine=True).verify(problem, 20.0)
        assert res.status == ("robust" if k < 10 else "counterexample")
