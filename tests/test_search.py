"""Critical-magnitude search: closed-form nets whose critical eps is known, the exact and
MILP routes against bisection (tiny random nets and real PneumoniaMNIST models), probe
caching and resume, censoring, the record, the command line and the workflow stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medverify import cli, onnx_io, results, search
from medverify.errors import ConfigError
from medverify.nets import AffineNet
from medverify.results import Question, SearchRecord

THRESHOLD = 10 / 255  # critical eps of the closed-form nets
#: a grid that does not hit THRESHOLD (10 / 0.3 is not an integer)
GRID = search.Grid(max_eps=0.1, resolution=0.3 / 255)
REPO = Path(__file__).resolve().parents[1]


def closed_form(family: str):
    """(net, image, label) robust exactly for eps < 10/255 (see test_soundness)."""
    eps = THRESHOLD
    if family in ("linf", "brightness"):
        image = np.full((1, 2, 2), 0.5)
        out = (np.array([[1.0, 1, 1, 1], [0, 0, 0, 0]]), np.array([0.0, 2 - 4 * eps]))
    else:
        image = np.array([0.2, 0.4, 0.6, 0.8]).reshape(1, 2, 2)
        out = (np.array([[-1.0, 0, 0, 1.0], [0, 0, 0, 0]]), np.array([0.0, 0.6 * (1 - 4 * eps)]))
    return AffineNet([(np.eye(4), np.zeros(4)), out]), image, 0


def _onnx(net, tmp_path, name="net"):
    path = tmp_path / f"{name}.onnx"
    onnx_io.export_affine(net, path)
    return path


def _question(label, family, verifier, timeout=20.0, index=0):
    return Question(
        dataset="tiny",
        model="net",
        index=index,
        true_label=int(label),
        family=family,
        magnitude_k=0.0,
        verifier=verifier,
        timeout_s=timeout,
    )


def _contains(rec: SearchRecord, value: float, tol: float = 1e-9) -> bool:
    hi = np.inf if rec.eps_counterexample is None else rec.eps_counterexample
    return rec.eps_robust - tol <= value <= hi + tol


@pytest.mark.parametrize(
    "family,verifier",
    [
        ("linf", "crown"),
        ("linf", "milp"),
        ("brightness", "crown"),
        ("brightness", "exact"),
        ("contrast", "milp"),
        ("contrast", "exact"),
    ],
)
@pytest.mark.parametrize("seeds", [True, False])
def test_bisection_brackets_the_closed_form_threshold(family, verifier, seeds, tmp_path):
    net, image, label = closed_form(family)
    rec = search.search_image(
        _onnx(net, tmp_path),
        image,
        _question(label, family, verifier),
        grid=GRID,
        seeds=seeds,
    )
    assert not rec.censored, rec.message
    assert rec.eps_robust < THRESHOLD < rec.eps_counterexample
    assert rec.width == pytest.approx(GRID.resolution)
    assert rec.counterexample_label == 1
    # the record's ends are backed by probes: a robust one and a replayed counterexample
    by_eps = {round(p["magnitude_k"] / 255, 12): p for p in rec.probes}
    assert by_eps[round(rec.eps_robust, 12)]["status"] == "robust"
    assert by_eps[round(rec.eps_counterexample, 12)]["status"] == "counterexample"
    if seeds:  # seeds decide the closed form: no backend call at all
        assert {p["verifier"] for p in rec.probes} <= {search.SEED_BOUND, search.SEED_ATTACK}
    else:
        assert {p["verifier"] for p in rec.probes} == {verifier}


def test_a_misclassified_image_ends_at_zero_with_its_replayed_record(tmp_path):
    """An image the net misclassifies: the search ends at eps 0, and its one probe is the
    unperturbed image replayed through onnxruntime like every counterexample."""
    net, image, label = closed_form("linf")
    rec = search.search_image(
        _onnx(net, tmp_path), image, _question(1 - label, "linf", "crown"), grid=GRID
    )
    assert rec.eps_robust is None and rec.eps_counterexample == 0.0 and not rec.censored
    (probe,) = rec.probes
    assert probe["status"] == "counterexample"
    np.testing.assert_allclose(probe["counterexample"]["image"], image.reshape(-1))
    assert probe["predicted_label_at_counterexample"] == label


@pytest.mark.parametrize("family", ["brightness", "contrast"])
def test_exact_route_gives_the_threshold(family, tmp_path):
    net, image, label = closed_form(family)
    rec = search.search_image(
        _onnx(net, tmp_path), image, _question(label, family, "exact"), grid=GRID, method="exact"
    )
    assert rec.method == "exact" and not rec.censored
    # the ONNX file holds float32 weights: the threshold is exact up to float32 rounding
    assert rec.eps_robust == pytest.approx(THRESHOLD, abs=1e-7)
    # the upper end is the first point past it whose margin reaches -CEX_MARGIN (1e-5)
    assert THRESHOLD < rec.eps_counterexample <= THRESHOLD + 2e-5
    assert rec.counterexample_label == 1
    # the upper end is a replayed point past the change point, kept as a probe
    past = rec.probes[-1]
    assert past["status"] == "counterexample" and past["counterexample"] is not None
    assert past["magnitude_k"] == pytest.approx(255 * rec.eps_counterexample)


def test_milp_min_route_gives_the_threshold(tmp_path):
    net, image, label = closed_form("linf")
    rec = search.search_image(
        _onnx(net, tmp_path),
        image,
        _question(label, "linf", "milp"),
        grid=GRID,
        method="milp-min",
    )
    assert rec.extra["proven"], rec.message
    assert rec.extra["min_eps"] == pytest.approx(THRESHOLD, abs=1e-6)
    assert rec.eps_robust == pytest.approx(THRESHOLD, abs=2e-6)  # dual bound, gap 1e-6
    assert rec.eps_counterexample >= THRESHOLD
    assert rec.probes[0]["status"] == "counterexample"  # the minimiser, replayed


def _random_net(rng, n_in=9, classes=3):
    widths = [n_in, 8, 8, classes]
    layers = [
        (
            rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]),
            rng.normal(size=widths[i + 1]) * 0.3,
        )
        for i in range(3)
    ]
    net = AffineNet(layers)
    image = rng.uniform(0, 1, size=(1, 3, 3))
    return net, image, int(np.argmax(net.forward(image.reshape(-1))))


def test_exact_and_milp_routes_fall_inside_bisection_on_random_nets(tmp_path):
    """Twelve random nets: the exact critical beta and the MILP minimum eps lie inside
    the bisection bracket of a complete backend (seeds off, so probes decide)."""
    rng = np.random.default_rng(7)
    grid = search.Grid(max_eps=0.5, resolution=1 / 255)
    checked = {"exact": 0, "milp": 0}
    for case in range(12):
        net, image, label = _random_net(rng)
        onnx = _onnx(net, tmp_path, f"r{case}")
        q = _question(label, "brightness", "milp", index=case)
        bis = search.search_image(onnx, image, q, grid=grid, seeds=False)
        ex = search.search_image(
            onnx, image, q.replace(verifier="exact"), grid=grid, method="exact"
        )
        assert not bis.censored and not ex.censored
        assert _contains(bis, ex.eps_robust), (case, bis.eps_robust, bis.eps_counterexample)
        if ex.eps_counterexample is not None:
            checked["exact"] += 1
        q = q.replace(family="linf", verifier="milp")
        bis = search.search_image(onnx, image, q, grid=grid, seeds=False)
        mm = search.search_image(onnx, image, q, grid=grid, method="milp-min")
        assert not bis.censored
        if mm.extra.get("proven"):
            assert _contains(bis, mm.extra["min_eps"]), (case, bis, mm.extra)
            checked["milp"] += 1
    assert checked["exact"] >= 3 and checked["milp"] >= 6, checked


def test_probes_are_cached_and_a_rerun_resumes(tmp_path):
    net, image, label = closed_form("linf")
    onnx = _onnx(net, tmp_path)
    cache = tmp_path / "cache"
    q = _question(label, "linf", "milp")
    first = search.search_image(onnx, image, q, grid=GRID, seeds=False, cache_dir=cache)
    files = sorted(cache.glob("probe_*.json"))
    assert len(files) == len(first.probes) >= 5
    stamps = {f: f.stat().st_mtime_ns for f in files}
    # an interrupted search: drop the last probe, rerun; only that probe runs again
    files[-1].unlink()
    second = search.search_image(onnx, image, q, grid=GRID, seeds=False, cache_dir=cache)
    assert (second.eps_robust, second.eps_counterexample) == (
        first.eps_robust,
        first.eps_counterexample,
    )
    for f in files[:-1]:
        assert f.stat().st_mtime_ns == stamps[f]
    assert files[-1].exists()
    # a probe cached for another question (other timeout) is not reused
    third = search.search_image(
        onnx, image, q.replace(timeout_s=19.0), grid=GRID, seeds=False, cache_dir=cache
    )
    assert all(p["timeout_s"] == 19.0 for p in third.probes)


def test_an_undecided_probe_leaves_the_bracket_open(tmp_path):
    """The exact backend cannot answer linf: the probe is an error record, the search
    stops there, says censored, and keeps only what was proven."""
    net, image, label = closed_form("linf")
    rec = search.search_image(
        _onnx(net, tmp_path), image, _question(label, "linf", "exact"), grid=GRID, seeds=False
    )
    assert rec.censored
    assert rec.eps_robust == 0.0 and rec.eps_counterexample is None
    assert rec.probes[-1]["status"] == "error"
    assert "censored" in rec.message


def test_bisection_goes_on_below_an_undecided_probe(tmp_path):
    """crown with bounds only (no attack, no branch and bound) answers ``unknown`` above
    what alpha-CROWN proves. The search does not stop at the first ``unknown``: it bisects
    below it, so the robust end rises to the largest proven grid point, right under the
    ceiling, and stays below the MILP's replayed counterexample."""
    rng = np.random.default_rng(5)
    net = AffineNet(
        [
            (rng.normal(size=(8, 4)), 0.1 * rng.normal(size=8)),
            (rng.normal(size=(8, 8)), 0.1 * rng.normal(size=8)),
            (rng.normal(size=(2, 8)), np.zeros(2)),
        ]
    )
    image = np.full((1, 2, 2), 0.5)
    label = int(np.argmax(net.forward(image.reshape(-1))))
    onnx = _onnx(net, tmp_path)
    rec = search.search_image(
        onnx,
        image,
        _question(label, "linf", "crown"),
        grid=GRID,
        seeds=False,
        options={"bab": False, "attack": False},
    )
    ref = search.search_image(onnx, image, _question(label, "linf", "milp"), grid=GRID, seeds=False)
    assert ref.eps_counterexample is not None and not ref.censored
    statuses = [p["status"] for p in rec.probes]
    assert statuses[0] == "unknown" and "robust" in statuses[1:], statuses
    assert rec.censored and rec.eps_counterexample is None
    assert 0.5 * ref.eps_robust < rec.eps_robust < ref.eps_counterexample
    # the ceiling is the grid point right above the robust end, named in the message
    ceiling = rec.eps_robust + GRID.resolution
    assert f"eps={ceiling:.6g} ended unknown" in rec.message
    by_eps = {round(p["magnitude_k"] / 255 / GRID.resolution): p["status"] for p in rec.probes}
    assert by_eps[round(ceiling / GRID.resolution)] == "unknown"
    assert by_eps[round(rec.eps_robust / GRID.resolution)] == "robust"
    # no more probes than a bisection of the whole grid
    assert len(rec.probes) <= int(np.ceil(np.log2(GRID.n + 1))) + 1


def test_search_record_round_trip(tmp_path):
    q = _question(0, "linf", "crown").replace(slot=3)
    rec = SearchRecord.build(
        q, "bisection", eps_robust=0.01, eps_counterexample=0.012, censored=False, split="train"
    )
    path = tmp_path / "r.json"
    results.write(rec, path)
    back = results.read_search(path)
    assert back == rec and back.question == q
    with pytest.raises(TypeError):
        SearchRecord.build(q, "bisection", eps_robust=0, eps_counterexample=0, censored=0, index=1)
    with pytest.raises(ValueError):
        SearchRecord.build(q, "guess", eps_robust=0, eps_counterexample=0, censored=False)


@pytest.mark.parametrize(
    "max_eps,resolution",
    [(0.0, 0.01), (-0.1, 0.01), (0.4, 0.0), (0.4, -1.0), (0.4, float("nan")), (0.01, 0.1)],
)
def test_bad_grid_is_a_one_line_error(max_eps, resolution):
    with pytest.raises(ConfigError) as err:
        search.Grid(max_eps=max_eps, resolution=resolution)
    assert "\n" not in str(err.value)


def test_method_applies():
    assert search.method_applies("bisection", "crown", "linf")
    assert not search.method_applies("bisection", "exact", "linf")
    assert search.method_applies("exact", "exact", "brightness")
    assert not search.method_applies("exact", "crown", "brightness")
    assert search.method_applies("milp-min", "milp", "linf")
    assert not search.method_applies("milp-min", "milp", "brightness")


def _cli(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_search_prints_the_bracket(trained_mlp, medmnist_dir, tmp_path, capsys):
    _, onnx, _ = trained_mlp
    out = tmp_path / "s.json"
    base = ["search", "--onnx", str(onnx), "--dataset", "pneumoniamnist"]
    base += ["--data-dir", str(medmnist_dir), "--image-index", "0"]
    code, stdout, _ = _cli(
        [
            *base,
            "--family",
            "brightness",
            "--verifier",
            "exact",
            "--max-eps",
            "1",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0
    assert len(stdout.strip().splitlines()) == 1 and stdout.startswith("critical eps in [")
    rec = results.read_search(out)
    assert rec.method == "exact" and rec.split == "test"
    for bad, word in (
        (["--max-eps", "0"], "max_eps"),
        (["--max-eps", "-0.2"], "max_eps"),
        (["--resolution", "0"], "resolution"),
        (["--family", "nope"], "'nope'"),
        (["--options", "[1]"], "--options"),
        (["--options", '{"thredz": 1}'], "'thredz'"),
    ):
        code, _, err = _cli(
            [*base, "--verifier", "crown", *bad, "--out", str(tmp_path / "x.json")], capsys
        )
        assert code == 2 and len(err.strip().splitlines()) == 1 and word in err
    assert not (tmp_path / "x.json").exists()


def test_cli_unknown_dataset_name_reads_without_md5(tmp_path, capsys):
    from medverify import data

    data.write_standin(tmp_path / "mydata.npz", n=(20, 5, 10), classes=2, rgb=False)
    net = AffineNet([(np.zeros((2, 784)), np.array([1.0, 0.0]))])  # always label 0
    onnx = _onnx(net, tmp_path)
    labels = np.load(tmp_path / "mydata.npz")["train_labels"][:, 0]
    idx = int(np.flatnonzero(labels == 0)[0])
    code, stdout, err = _cli(
        [
            "search", "--onnx", str(onnx), "--dataset", "mydata", "--data-dir", str(tmp_path),
            "--split", "train", "--image-index", str(idx), "--family", "linf",
            "--verifier", "crown", "--max-eps", "0.05", "--resolution", "0.01",
            "--out", str(tmp_path / "r.json"),
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "not a MedMNIST name" in err and "without an md5 check" in err
    rec = results.read_search(tmp_path / "r.json")
    assert rec.split == "train" and rec.eps_counterexample is None  # constant net
    assert rec.eps_robust == pytest.approx(0.05)


def test_workflow_dry_run_lists_one_search_job_per_cell(tmp_path):
    cfg = REPO / "tests" / "config" / "search.yaml"
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(cfg), "-d", str(tmp_path)]
        + ["--snakefile", str(REPO / "Snakefile"), "--quiet", "rules"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    counts = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # 1 dataset x 2 models x (linf/crown/bisection, brightness/crown/bisection,
    # brightness/exact/bisection, brightness/exact/exact) x (2 test + 1 train slots)
    assert counts["search"] == 1 * 2 * 4 * 3, out.stdout
    # the train split's lists; the test split's searches read select's (verify's) lists
    assert counts["search_select"] == 2 and counts["select"] == 2
    assert counts["search_stats"] == 1


@pytest.mark.slow
def test_search_stage_end_to_end(tmp_path, medmnist_dir):
    """Real data, training (one model, 2 epochs), search jobs, merge, statistics tables
    and figures."""
    import pandas as pd

    cfg = REPO / "tests" / "config" / "search.yaml"
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(cfg)]
        + ["--config", f"data_dir={medmnist_dir}", "models=[mlp]", "-d", str(tmp_path)]
        + ["--snakefile", str(REPO / "Snakefile"), "search_stats"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1800,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    table = pd.read_csv(tmp_path / "results/tables/critical_eps.csv")
    assert len(table) == 12  # one model x 4 cells x 3 slots
    assert set(table["split"]) == {"test", "train"}
    exact = table[table["method"] == "exact"].set_index(["model", "split", "index"])
    bis = table[(table["method"] == "bisection") & (table["family"] == "brightness")]
    for _, row in bis[~bis["censored"]].iterrows():
        e = exact.loc[(row["model"], row["split"], row["index"])]
        if pd.isna(e["eps_counterexample"]):
            assert pd.isna(row["eps_counterexample"])
        else:
            assert row["eps_robust"] - 1e-9 <= e["eps_robust"] <= row["eps_counterexample"] + 1e-9
    for name in ("critical_lognormal", "critical_train_test", "critical_spearman"):
        assert (tmp_path / f"results/tables/{name}.csv").exists()
    assert (tmp_path / "results/figures/critical_ecdf.png").stat().st_size > 0


@pytest.mark.slow
def test_exact_and_milp_inside_bisection_on_real_pneumoniamnist(trained_mlp, pneumonia, tmp_path):
    """Real PneumoniaMNIST MLP, first five correctly classified test images: the exact
    critical beta lies in the crown bisection bracket, and the MILP minimum eps (where it
    finishes) in the linf one."""
    _, onnx, _ = trained_mlp
    ort = onnx_io.OrtClassifier(onnx)
    test = pneumonia["test"]
    chosen = [
        i
        for i in range(40)
        if int(np.argmax(ort.logits(test.images[i : i + 1])[0])) == int(test.labels[i])
    ][:5]
    finished = 0
    for i in chosen:
        q = _question(test.labels[i], "brightness", "crown", timeout=60, index=i)
        grid = search.Grid(max_eps=1.0)
        bis = search.search_image(onnx, test.images[i], q, grid=grid)
        ex = search.search_image(
            onnx, test.images[i], q.replace(verifier="exact"), grid=grid, method="exact"
        )
        assert not ex.censored
        if not bis.censored:
            assert _contains(bis, ex.eps_robust), (i, bis.eps_robust, bis.eps_counterexample)
        q = q.replace(family="linf", verifier="crown", timeout_s=30)
        bis = search.search_image(onnx, test.images[i], q, grid=search.Grid())
        mm = search.search_image(
            onnx, test.images[i], q.replace(verifier="milp"), grid=search.Grid(), method="milp-min"
        )
        if mm.extra.get("proven"):
            finished += 1
            assert _contains(bis, mm.extra["min_eps"]), (i, bis, mm.extra)
    assert json.dumps(finished)  # how many finished is reported by the benchmark, not asserted


def test_the_schema_search_defaults_are_the_package_s():
    """The workflow schema's search defaults (range per family, resolution, probe timeout)
    are the ones ``medverify search`` uses: one value each, stated in both places."""
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["search"]["properties"]
    assert props["max_eps"]["default"] == search.FAMILY_MAX_EPS
    assert props["default_max_eps"]["default"] == search.DEFAULT_MAX_EPS
    assert props["resolution"]["default"] == pytest.approx(search.DEFAULT_RESOLUTION, rel=1e-12)
    assert props["timeout_s"]["default"] == search.DEFAULT_TIMEOUT_S
    assert props["enabled"]["default"] is True


def test_probes_are_cached_per_backend_options(tmp_path):
    """A cached probe is reused only under the same backend options: a search under other
    options probes again (new cache files), the same options again reuse every probe."""
    net, image, label = closed_form("linf")
    onnx, cache = _onnx(net, tmp_path), tmp_path / "cache"
    q = _question(label, "linf", "crown")

    def run(options):
        return search.search_image(
            onnx, image, q, grid=GRID, seeds=False, options=options, cache_dir=cache
        )

    first = run({"fsb_k": 4})
    files = set(cache.iterdir())
    assert len(files) == len(first.probes) > 0
    run({"fsb_k": 4})
    assert set(cache.iterdir()) == files  # same options: every probe from the cache
    second = run({"fsb_k": 8})
    assert len(set(cache.iterdir()) - files) == len(second.probes)
    assert (second.eps_robust, second.eps_counterexample) == (
        first.eps_robust,
        first.eps_counterexample,
    )
