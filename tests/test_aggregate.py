"""Merge, statistics, contradiction check and figures on handcrafted records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medverify import aggregate, plots, results
from medverify.results import Record


def rec(verifier, status, index=3, k=4.0, family="brightness", model="mlp", **kw):
    kw.setdefault("model_sha256", "abc")
    kw.setdefault("slot", index)
    if status == "counterexample":
        kw.setdefault("counterexample", {"image": [0.5] * 784, "beta": 0.01})
    return Record(
        dataset="pneumoniamnist",
        model=model,
        index=index,
        true_label=1,
        family=family,
        magnitude_k=k,
        verifier=verifier,
        status=status,
        **kw,
    )


def write_all(tmp_path, records):
    paths = []
    for i, r in enumerate(records):
        p = tmp_path / "rec" / f"{i}_{r.verifier}.json"
        results.write(r, p)
        paths.append(str(p))
    return paths


def merge(tmp_path, paths, verifiers):
    pairs = aggregate.verifier_pairs(verifiers)
    out = tmp_path / "tables"
    return aggregate.merge(
        paths,
        verifiers,
        str(out / "records.csv"),
        str(out / "outcomes.csv"),
        str(out / "agreement.csv"),
        [str(out / f"{a}__{b}.csv") for a, b in pairs],
    )


def test_contradiction_fails_the_merge_naming_instance_and_files(tmp_path):
    paths = write_all(
        tmp_path,
        [
            rec("exact", "robust"),
            rec("milp", "counterexample", predicted_label_at_counterexample=0),
        ],
    )
    with pytest.raises(aggregate.ContradictionError) as err:
        merge(tmp_path, paths, ["exact", "milp"])
    msg = str(err.value)
    assert "\n" not in msg
    assert "test image 3" in msg and "brightness k=4" in msg
    assert "exact/joint says robust" in msg and "milp/joint holds a counterexample" in msg
    assert paths[0] in msg and paths[1] in msg
    assert not (tmp_path / "tables" / "records.csv").exists()


@pytest.mark.parametrize(
    "other",
    [
        {"k": 16.0},  # another magnitude: robust at 4, counterexample at 16 is consistent
        {"index": 4},  # another image
        {"family": "linf"},  # an L-inf counterexample says nothing about brightness
        {"model_sha256": "retrained"},  # another model
    ],
)
def test_no_contradiction_across_questions(tmp_path, other):
    paths = write_all(tmp_path, [rec("exact", "robust"), rec("milp", "counterexample", **other)])
    df = merge(tmp_path, paths, ["exact", "milp"])
    assert len(df) == 2


def test_tables_counts_rates_and_times(tmp_path):
    records = [
        rec("exact", "robust", index=i, verifier_time_s=float(i), wall_time_s=float(i) + 1)
        for i in range(4)
    ]
    records += [
        rec("milp", "robust", index=0),
        rec("milp", "timeout", index=1),
        rec("milp", "counterexample", index=2, k=4.0, family="linf"),
        rec("milp", "error", index=-1, slot=3),
    ]
    paths = write_all(tmp_path, records)
    merge(tmp_path, paths, ["exact", "milp"])
    tables = tmp_path / "tables"
    tidy = pd.read_csv(tables / "records.csv")
    assert len(tidy) == len(records)
    assert "counterexample" not in tidy.columns  # images are not in the CSV
    assert tidy["has_counterexample"].sum() == 1
    assert set(tidy["path"]) == set(paths)

    out = pd.read_csv(tables / "outcomes.csv").set_index(["family", "verifier"])
    ex = out.loc[("brightness", "exact")]
    assert (ex["n"], ex["robust"], ex["timeout"]) == (4, 4, 0)
    assert ex["decided_rate"] == 1.0
    assert ex["verifier_time_median_s"] == pytest.approx(1.5)
    assert ex["verifier_time_p95_s"] == pytest.approx(np.percentile([0, 1, 2, 3], 95))
    assert ex["wall_time_median_s"] == pytest.approx(2.5)
    mb = out.loc[("brightness", "milp")]
    assert (mb["n"], mb["robust"], mb["timeout"], mb["error"]) == (3, 1, 1, 1)
    assert mb["decided_rate"] == pytest.approx(1 / 3)

    agr = pd.read_csv(tables / "agreement.csv")
    row = agr[agr["family"] == "brightness"].iloc[0]
    # images 0, 1 and 3 (the error record pairs through its slot) are paired
    assert (row["n"], row["same_status"], row["both_decided"]) == (3, 1, 1)
    assert (row["agree"], row["disagree"]) == (1, 0)

    conf = pd.read_csv(tables / "exact__milp.csv", index_col=0)
    assert list(conf.index) == list(results.STATUSES)
    assert conf.loc["robust", "robust"] == 1
    assert conf.loc["robust", "timeout"] == 1
    assert conf.loc["robust", "error"] == 1
    assert conf.values.sum() == 3


def test_unreadable_record_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"dataset": "x"}')
    with pytest.raises(aggregate.MedverifyError, match="cannot read record .*bad.json"):
        aggregate.load_records([bad])


def test_linf_example_is_a_clipped_corner():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, size=(1, 28, 28)).astype(np.float32)
    image[0, 0, :4] = [0.0, 1.0, 0.005, 0.998]
    low, out = plots.perturbed_ends(image, "linf", 4)
    eps = 4 / 255
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1
    diff = np.abs(out - image)
    inner = (image > eps) & (image < 1 - eps)
    assert np.allclose(diff[inner], eps, atol=1e-6)  # every free pixel sits at a corner
    assert np.all(diff <= eps + 1e-6)
    assert np.allclose((low - image)[inner], -(out - image)[inner], atol=1e-6)  # the other end
    dark, bright = plots.perturbed_ends(image, "brightness", 16)
    assert np.allclose(bright, np.clip(image + 16 / 255, 0, 1), atol=1e-6)
    assert np.allclose(dark, np.clip(image - 16 / 255, 0, 1), atol=1e-6)


def test_figures_render(tmp_path):
    records = [rec("exact", "robust", index=i) for i in range(3)]
    records += [rec("milp", s, index=i) for i, s in enumerate(["robust", "unknown", "timeout"])]
    records += [rec("milp", "robust", index=0, k=16.0), rec("exact", "robust", index=0, k=16.0)]
    df = aggregate.records_frame(records)
    fig = plots.outcome_bars(df)
    # one panel; bars ordered by family, magnitude increasing, then verifier
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert [lab.split("\n")[0] for lab in labels] == [
        "brightness 4",
        "brightness 4",
        "brightness 16",
        "brightness 16",
    ]
    assert plots.save(fig, tmp_path / "o.png").stat().st_size > 0
    heat = plots.confusion_heatmaps({("exact", "milp"): aggregate.confusion(df, "exact", "milp")})
    assert plots.save(heat, tmp_path / "c.png").stat().st_size > 0
    rgb = np.random.default_rng(0).uniform(size=(3, 28, 28))
    ex = plots.example_images(rgb, {"linf": [16, 4], "brightness": [4]}, title="rgb")
    assert [a.get_title() for a in ex.axes] == [
        "original",
        "linf -4",
        "linf +4",
        "linf -16",
        "linf +16",
        "original",
        "brightness -4",
        "brightness +4",
        "",
        "",
    ]
    plots.save(ex, tmp_path / "e.png")
    cex = plots.counterexample(rgb, np.clip(rgb + 0.01, 0, 1), records[0].to_dict())
    assert plots.save(cex, tmp_path / "x.png").stat().st_size > 0
