"""The package functions the workflow's scripts call (one per rule). Arguments are plain
values; nothing here reads config.yaml or the snakemake object. Heavy imports (torch) stay inside
the functions that need them, so a verify job starts fast."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager

import numpy as np

from . import data, onnx_io, results
from .errors import DataError

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


@contextmanager
def rule_log(path: str, rule: str):
    """For a rule's script: log to its log file; an exception is logged with its
    traceback and re-raised, so the job fails with the reason in its log."""
    logging.basicConfig(filename=path, filemode="w", level=logging.INFO, format=LOG_FORMAT)
    try:
        yield
    except Exception:
        log.exception("rule %s failed", rule)
        raise


def check_data(
    dataset: str,
    data_dir: str,
    out_path: str,
    *,
    channels: int = 1,
    allow_download: bool = False,
    md5: str | None = "auto",
) -> dict:
    """Verify (or download) a dataset file and write a small summary JSON. A file holding
    only the test split is fine (an external classifier needs nothing else)."""
    data.ensure_file(dataset, data_dir, download=allow_download, md5=md5)
    present = data.splits_in(dataset, data_dir)
    splits = data.load(dataset, data_dir, channels=channels, md5=None, splits=present)
    summary = {
        "dataset": dataset,
        "path": str(data.dataset_path(dataset, data_dir)),
        "md5": data.md5sum(data.dataset_path(dataset, data_dir)),
        "channels": channels,
        "num_classes": data.num_classes(splits),
        "sizes": {name: int(len(s.labels)) for name, s in splits.items()},
    }
    results.write_json(summary, out_path)
    return summary


def train_and_export(
    dataset: str,
    data_dir: str,
    architecture: str,
    out_model: str,
    out_onnx: str,
    out_metrics: str,
    *,
    channels: int = 1,
    md5: str | None = "auto",
    epochs: int = 50,
    seed: int = 0,
    brightness: float = 0.08,
    contrast: float = 0.08,
    noise_sigma: float = 0.01,
    threads: int = 1,
    parity_images: int = 100,
    parity_tol: float = 1e-5,
) -> dict:
    """Train one model, save model.pt, export model.onnx with an onnxruntime parity check on
    at least ``parity_images`` test images, and write metrics.json."""
    from . import models  # torch: imported only by the rules that train
    from .train import TrainConfig, train

    splits = data.load(dataset, data_dir, channels=channels, md5=md5)
    cfg = TrainConfig(
        architecture=architecture,
        epochs=epochs,
        seed=seed,
        brightness=brightness,
        contrast=contrast,
        noise_sigma=noise_sigma,
        threads=threads,
    )
    model, metrics = train(splits, data.num_classes(splits), cfg)
    metrics["dataset"] = dataset
    models.save(
        model,
        out_model,
        {
            "architecture": architecture,
            "in_channels": metrics["in_channels"],
            "num_classes": metrics["num_classes"],
            "dataset": dataset,
        },
    )
    test_images = splits["test"].images[:parity_images]
    diff = onnx_io.export_checked(model, test_images, out_onnx, tol=parity_tol)
    metrics["onnx_parity_max_abs_diff"] = diff
    metrics["onnx_parity_images"] = int(len(test_images))
    log.info("exported %s (parity %.2e on %d images)", out_onnx, diff, len(test_images))
    results.write_json(metrics, out_metrics)
    return metrics


def select_instances(
    dataset: str,
    data_dir: str,
    onnx_path: str,
    n: int,
    out_path: str,
    *,
    channels: int = 1,
    md5: str | None = "auto",
) -> list[dict]:
    """The first ``n`` correctly classified test images in test-set order (onnxruntime)."""
    test = data.load(dataset, data_dir, channels=channels, md5=md5, splits=("test",))["test"]
    ort = onnx_io.OrtClassifier(onnx_path)
    chosen = []
    for idx in range(len(test.labels)):
        logits = ort.logits(test.images[idx : idx + 1])[0]
        if int(np.argmax(logits)) == int(test.labels[idx]):
            chosen.append(
                {
                    "slot": len(chosen),
                    "index": idx,
                    "label": int(test.labels[idx]),
                    "logits": [float(v) for v in logits],
                }
            )
            if len(chosen) == n:
                break
    if len(chosen) < n:
        log.warning("only %d correctly classified test images (asked for %d)", len(chosen), n)
    results.write_json(
        {
            "dataset": dataset,
            "onnx": str(onnx_path),
            "model_sha256": onnx_io.sha256(onnx_path),
            "instances": chosen,
        },
        out_path,
    )
    return chosen


def load_instance(instances_path: str, slot: int) -> dict:
    with open(instances_path) as fh:
        inst = json.load(fh)["instances"]
    if not 0 <= slot < len(inst):
        raise DataError(f"slot {slot} out of range: {instances_path} holds {len(inst)} instances")
    return inst[slot]


def verify_slot(
    question: results.Question,
    data_dir: str,
    onnx_path: str,
    instances_path: str,
    out_path: str,
    *,
    channels: int = 1,
    md5: str | None = None,
    options: dict | None = None,
) -> results.Record:
    """Verify the ``question.slot``-th selected instance and write its record (always: a
    failure becomes an ``error`` record). ``question.index`` and ``true_label`` are filled
    in from the instances file. md5 defaults to None here: the data rule checked it."""
    from .verify import error_verdict, verify_image

    try:
        inst = load_instance(instances_path, question.slot)
        question = question.replace(index=int(inst["index"]), true_label=int(inst["label"]))
        test = data.load(question.dataset, data_dir, channels=channels, md5=md5, splits=("test",))[
            "test"
        ]
        record = verify_image(onnx_path, test.images[inst["index"]], question, options=options)
    except Exception as exc:  # noqa: BLE001 - the DAG moves on with an error record
        record = results.Record.build(question, **error_verdict(exc))
    results.write(record, out_path)
    return record
