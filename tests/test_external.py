"""External classifiers and datasets, PGD twins, and the defaults stated once: an ONNX
exported elsewhere (torch.onnx, channels-last input with a normalisation layer) is read,
verified and run through the workflow exactly like our own models."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medverify import cli, onnx_io, pipeline, results
from medverify.errors import ConfigError
from medverify.results import Question
from medverify.train import TrainConfig, pgd
from medverify.verify import verify_image

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = 0.5719, 0.1684  # a published model's normalisation constants


class ChannelsLastNormalised(torch.nn.Module):
    """The same function as ``mlp`` but published the way others do it: input
    (N, 28, 28, 1), a normalisation layer, permute, view, then the layers (the first one
    rescaled so that the whole network computes exactly what ``mlp`` computes)."""

    def __init__(self, mlp: torch.nn.Sequential):
        super().__init__()
        first, *rest = [m for m in mlp if not isinstance(m, torch.nn.Flatten)]
        self.first = torch.nn.Linear(first.in_features, first.out_features)
        with torch.no_grad():
            self.first.weight.copy_(first.weight * STD)
            self.first.bias.copy_(first.bias + first.weight.sum(1) * MEAN)
        self.rest = torch.nn.Sequential(*rest)

    def forward(self, x):
        x = (x - MEAN) / STD
        x = x.permute(0, 3, 1, 2)
        return self.rest(self.first(x.reshape(x.shape[0], -1)))


def export_external(mlp, path: Path) -> Path:
    net = ChannelsLastNormalised(mlp).eval()
    torch.onnx.export(
        net,
        torch.rand(1, 28, 28, 1),
        str(path),
        dynamo=False,
        input_names=["pixels"],
        output_names=["scores"],
        dynamic_axes={"pixels": {0: "batch"}},
    )
    return path


@pytest.fixture(scope="module")
def external(trained_mlp, tmp_path_factory):
    model, ours, _ = trained_mlp
    path = export_external(model, tmp_path_factory.mktemp("ext") / "published.onnx")
    return model, ours, path


def test_torch_exported_channels_last_model_loads_exactly(external, pneumonia):
    model, ours, path = external
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Sub", "Div", "Transpose", "Reshape"} <= ops  # really not our layout
    images = pneumonia["test"].images[:100]
    net = onnx_io.load_affine(path, input_size=784)
    with torch.no_grad():
        ref = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(net.forward(images.reshape(100, -1)), ref, atol=1e-5)
    np.testing.assert_allclose(onnx_io.OrtClassifier(path).logits(images), ref, atol=1e-5)


def test_external_model_verdicts_equal_our_export(external, pneumonia):
    _, ours, path = external
    test = pneumonia["test"]
    for idx in range(3):
        for family, k, verifier in (("brightness", 4, "exact"), ("brightness", 40, "exact")):
            q = Question(
                dataset="pneumoniamnist",
                model="m",
                index=idx,
                true_label=int(test.labels[idx]),
                family=family,
                magnitude_k=k,
                verifier=verifier,
                timeout_s=30,
            )
            a = verify_image(ours, test.images[idx], q)
            b = verify_image(path, test.images[idx], q)
            assert a.status == b.status and a.status in results.DECIDED, (a.message, b.message)


def test_import_external_checks_and_copies(external, medmnist_dir, tmp_path):
    _, _, path = external
    summary = pipeline.import_external(
        "pneumoniamnist", str(medmnist_dir), path, tmp_path / "m.onnx", tmp_path / "ext.json"
    )
    assert summary["canonical_argmax_agreement"] == 1.0
    assert summary["input_shape"] == [28, 28, 1] and summary["test_accuracy"] > 0.6
    assert onnx_io.sha256(tmp_path / "m.onnx") == onnx_io.sha256(path)


def _test_only_copy(medmnist_dir, root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with np.load(medmnist_dir / "pneumoniamnist.npz") as npz:
        np.savez_compressed(
            root / f"{name}.npz", test_images=npz["test_images"], test_labels=npz["test_labels"]
        )
    return root / f"{name}.npz"


def test_cli_unknown_dataset_reads_npz_without_md5_and_says_so(external, medmnist_dir, tmp_path):
    _, _, path = external
    npz = _test_only_copy(medmnist_dir, tmp_path / "data", "chest_external")
    proc = subprocess.run(
        [sys.executable, "-m", "medverify.cli", "verify", "--onnx", str(path),
         "--dataset", "chest_external", "--data-dir", str(tmp_path / "data"),
         "--image-index", "0", "--family", "brightness", "--magnitude", "4",
         "--verifier", "exact", "--out", str(tmp_path / "rec.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert results.read(tmp_path / "rec.json").status in results.DECIDED
    said = [line for line in proc.stderr.splitlines() if "without an md5 check" in line]
    assert len(said) == 1 and str(npz) in said[0] and "chest_external" in said[0]


def test_cli_wrong_input_size_is_one_line_exit_2(external, medmnist_dir, tmp_path):
    _, _, path = external
    proc = subprocess.run(
        [sys.executable, "-m", "medverify.cli", "verify", "--onnx", str(path),
         "--dataset", "retinamnist", "--data-dir", str(medmnist_dir), "--channels", "3",
         "--image-index", "0", "--verifier", "exact", "--family", "brightness",
         "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "784" in lines[0] and "2352" in lines[0]
    from medverify.results import read

    assert read(tmp_path / "r.json").status == "error"  # the record is still written


def test_cli_unsupported_operator_is_one_line_exit_2(medmnist_dir, tmp_path):
    from onnx import TensorProto, helper, numpy_helper, save

    nodes = [
        helper.make_node("MaxPool", ["image"], ["m"], kernel_shape=[2, 2], name="pool1"),
        helper.make_node("Flatten", ["m"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(np.ones((2, 729), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    save(model, str(tmp_path / "maxpool.onnx"))
    proc = subprocess.run(
        [sys.executable, "-m", "medverify.cli", "verify", "--onnx", str(tmp_path / "maxpool.onnx"),
         "--dataset", "pneumoniamnist", "--data-dir", str(medmnist_dir), "--image-index", "0",
         "--verifier", "exact", "--family", "brightness", "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'pool1' (MaxPool)" in lines[0] and "maxpool.onnx" in lines[0]


def test_cli_not_onnx_is_one_line_exit_2(medmnist_dir, tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a model\n")
    proc = subprocess.run(
        [sys.executable, "-m", "medverify.cli", "verify", "--onnx", str(bad),
         "--dataset", "pneumoniamnist", "--data-dir", str(medmnist_dir), "--image-index", "0",
         "--verifier", "exact", "--family", "brightness", "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "not an ONNX model" in lines[0]


# --- PGD adversarial training ---------------------------------------------------------


def test_pgd_examples_stay_in_the_ball_and_raise_the_loss(trained_mlp, pneumonia):
    model, _, _ = trained_mlp
    x = torch.from_numpy(pneumonia["test"].images[:64])
    y = torch.from_numpy(pneumonia["test"].labels[:64])
    cfg = TrainConfig(pgd_eps_k=8, pgd_steps=5)
    adv = pgd(model, x, y, cfg, torch.Generator().manual_seed(0))
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    loss = torch.nn.CrossEntropyLoss()
    with torch.no_grad():
        assert loss(model(adv), y) > loss(model(x), y)


def test_twin_name_and_pgd_settings_must_agree(medmnist_dir, tmp_path):
    with pytest.raises(ConfigError, match="'mlp_pgd'.*pgd_eps_k"):
        pipeline.train_and_export(
            "pneumoniamnist",
            str(medmnist_dir),
            "mlp_pgd",
            tmp_path / "a",
            tmp_path / "b",
            tmp_path / "c",
        )
    with pytest.raises(ConfigError, match="'mlp'"):
        pipeline.train_and_export(
            "pneumoniamnist", str(medmnist_dir), "mlp", tmp_path / "a", tmp_path / "b", tmp_path / "c",
            pgd_eps_k=8,
        )  # fmt: skip
    assert pipeline.split_model_name("cnn3_pgd") == ("cnn3", True)
    assert pipeline.split_model_name("mlp256x2") == ("mlp256x2", False)


def test_pgd_twin_trains_and_records_its_settings(medmnist_dir, tmp_path):
    metrics = pipeline.train_and_export(
        "pneumoniamnist", str(medmnist_dir), "mlp_pgd", tmp_path / "m.pt", tmp_path / "m.onnx",
        tmp_path / "metrics.json", epochs=1, pgd_eps_k=4, pgd_steps=2,
    )  # fmt: skip
    assert metrics["adversarial"] == {"eps_k": 4, "steps": 2, "step_k": 5.0}
    assert metrics["model"] == "mlp_pgd" and metrics["architecture"] == "mlp"
    assert metrics["test_accuracy"] > 0.6


# --- defaults stated once -----------------------------------------------------------------


def _schema():
    return yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_training_defaults_are_trainconfigs():
    schema, cfg = _schema(), TrainConfig()
    props = schema["properties"]
    assert props["epochs"]["default"] == cfg.epochs
    aug = schema["$defs"]["dataset"]["properties"]
    for key in ("brightness", "contrast", "noise_sigma"):
        assert aug[key]["default"] == getattr(cfg, key), key
    from medverify.models import ARCHITECTURE_PATTERN

    pattern = f"^({ARCHITECTURE_PATTERN})$"
    assert props["models"]["items"]["pattern"] == pattern
    assert props["adversarial"]["properties"]["models"]["items"]["pattern"] == pattern
    adv = props["adversarial"]["properties"]
    assert (adv["eps_k"]["default"], adv["steps"]["default"], adv["step_k"]["default"]) == (
        8,
        cfg.pgd_steps,
        cfg.pgd_step_k,
    )
    import argparse

    parser = argparse.ArgumentParser()
    cli._add_train(parser.add_subparsers())
    args = parser.parse_args(["train", "--dataset", "d", "--model", "mlp", "--out-dir", "o"])
    assert args.epochs is None and args.seed is None  # the train command has no second default


def _default(subschema):
    """A key's schema default; an object whose own default is {} takes its keys' defaults
    (stated once, on each key)."""
    default = subschema["default"]
    if default == {} and "properties" in subschema:
        props = subschema["properties"].items()
        return {k: _default(v) for k, v in props if "default" in v}
    return default


def test_config_yaml_agrees_with_schema_defaults():
    schema = _schema()["properties"]
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in config.items():
        if key in ("datasets", "verifiers", "families", "allow_download"):
            continue  # the experiment's choices, not defaults
        if key == "verifier_options":  # listing a backend with no options changes nothing
            value = {name: opts for name, opts in value.items() if opts}
        assert _default(schema[key]) == value, key


def test_dry_run_twin_and_external_join_the_matrix(external, medmnist_dir, tmp_path):
    _, _, path = external
    _test_only_copy(medmnist_dir, tmp_path / "data", "chest_external")
    (tmp_path / "data" / "pneumoniamnist.npz").symlink_to(medmnist_dir / "pneumoniamnist.npz")
    cfg = yaml.safe_load((REPO / "tests" / "config" / "external.yaml").read_text())
    cfg["data_dir"] = str(tmp_path / "data")
    cfg["external_models"]["published"]["onnx"] = str(path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(config), "-n", "--cores", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stderr + proc.stdout)[-3000:]
    out = proc.stdout
    table = out.split("Job stats:", 1)[1]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}
    assert counts["train"] == 2 and counts["external_model"] == 1 and counts["select"] == 3
    assert "results/pneumoniamnist/mlp_pgd/model.onnx" in out
    assert "results/chest_external/published/instances.json" in out
    assert "results/pneumoniamnist/published" not in out
    assert "chest_external/mlp/" not in out
    per_model = 2 * cfg["instances"]  # brightness k=4 with exact and milp
    assert counts["verify"] == 3 * per_model
    # the VNN-COMP export takes the same (dataset, model) pairs, not datasets x models
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(config), "-n", "--cores", "1", "vnncomp_export"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stderr + proc.stdout)[-3000:]
    assert "results/chest_external/published/instances.json" in proc.stdout
    assert "results/pneumoniamnist/published" not in proc.stdout
    assert "chest_external/mlp/" not in proc.stdout


@pytest.mark.slow
def test_end_to_end_external_model_and_pgd_twin(external, medmnist_dir, tmp_path):
    """The whole DAG with a plain MLP, its PGD twin and a published-layout external model
    on a test-only copy of the data under another name."""
    _, _, path = external
    _test_only_copy(medmnist_dir, tmp_path / "data", "chest_external")
    (tmp_path / "data" / "pneumoniamnist.npz").symlink_to(medmnist_dir / "pneumoniamnist.npz")
    cfg = yaml.safe_load((REPO / "tests" / "config" / "external.yaml").read_text())
    cfg["data_dir"] = str(tmp_path / "data")
    cfg["external_models"]["published"]["onnx"] = str(path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(config), "--cores", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = tmp_path / "results"
    twin = json.loads((res / "pneumoniamnist" / "mlp_pgd" / "metrics.json").read_text())
    assert twin["adversarial"]["eps_k"] == 4
    ext = json.loads((res / "chest_external" / "published" / "external.json").read_text())
    assert ext["canonical_argmax_agreement"] == 1.0
    records = [results.read(p) for p in sorted(res.rglob("verify/*/*/*/*/*.json"))]
    by_model = {}
    for rec in records:
        by_model.setdefault((rec.dataset, rec.model), []).append(rec)
    assert set(by_model) == {
        ("pneumoniamnist", "mlp"),
        ("pneumoniamnist", "mlp_pgd"),
        ("chest_external", "published"),
    }
    for (_, _), recs in by_model.items():
        assert len(recs) == 4
        assert all(r.status in results.DECIDED for r in recs if r.verifier == "exact")
    log = (tmp_path / "logs" / "chest_external" / "data.log").read_text()
    assert log.count("without an md5 check") == 0  # md5: null in config: nothing to say
