"""The package functions the workflow's scripts call (one per rule). Arguments are plain
values; nothing here reads config.yaml or the snakemake object. Heavy imports (torch) stay inside
the functions that need them, so a verify job starts fast."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager

import numpy as np

from . import data, onnx_io, results
from .errors import ConfigError, DataError, ModelError
from .fileio import atomic_path, fds_to

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


#: the verifier option that is also a verify/search job's cores (crown: branch-and-bound
#: worker processes; milp: HiGHS threads)
THREADS_OPTION = "threads"


def job_threads(options) -> int:
    """The cores a verify/search job asks Snakemake for: its verifier's threads option,
    1 when the options have none."""
    return int(dict(options).get(THREADS_OPTION, 1))


def job_options(options, threads: int) -> dict:
    """A verify/search job's verifier options, the threads option (when set) replaced by
    the cores Snakemake granted the job: the rule asks for ``job_threads``, and
    ``--cores`` may scale a request down."""
    out = dict(options)
    if THREADS_OPTION in out:
        out[THREADS_OPTION] = int(threads)
    return out


@contextmanager
def rule_log(path: str, rule: str):
    """For a rule's script: log to its log file; an exception is logged with its
    traceback and re-raised, so the job fails with the reason in its log. Inside, the
    process's own stdout and stderr (file descriptors 1 and 2: what C libraries and
    solvers print, and every child process) and Python warnings go to the log too, not
    to the console of the Snakemake run; both write in append mode, so they interleave
    without overwriting each other."""
    open(path, "w").close()
    logging.basicConfig(filename=path, filemode="a", level=logging.INFO, format=LOG_FORMAT)
    logging.captureWarnings(True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        with fds_to(fd, (1, 2)):
            try:
                yield
            except Exception:
                log.exception("rule %s failed", rule)
                raise
    finally:
        os.close(fd)
        logging.captureWarnings(False)


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


#: suffix of a model's adversarially trained twin: ``mlp_pgd`` is ``mlp`` trained with PGD
ADVERSARIAL_SUFFIX = "_pgd"


def split_model_name(name: str) -> tuple[str, bool]:
    """(architecture, adversarially trained?) of a trained model's name."""
    if name.endswith(ADVERSARIAL_SUFFIX):
        return name[: -len(ADVERSARIAL_SUFFIX)], True
    return name, False


def twin_pairs(models) -> list[tuple[str, str]]:
    """(plain model, its PGD twin) for every plain model of ``models`` whose twin is
    there too, sorted by the plain name."""
    names = set(models)
    return [
        (m, m + ADVERSARIAL_SUFFIX)
        for m in sorted(names)
        if not split_model_name(m)[1] and m + ADVERSARIAL_SUFFIX in names
    ]


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
    parity_images: int = 100,
    parity_tol: float = 1e-5,
    **train_options,
) -> dict:
    """Train one model, save model.pt, export model.onnx with an onnxruntime parity check on
    at least ``parity_images`` test images, and write metrics.json. ``train_options`` are
    TrainConfig fields (epochs, seed, augmentation, threads, pgd_*); left out, they take
    TrainConfig's defaults. An ``architecture`` ending in ADVERSARIAL_SUFFIX needs
    ``pgd_eps_k`` > 0."""
    from . import models  # torch: imported only by the rules that train
    from .train import TrainConfig, train

    arch, twin = split_model_name(architecture)
    cfg = TrainConfig(architecture=arch, **train_options)
    if twin != cfg.adversarial:
        raise ConfigError(
            f"model {architecture!r}: the {ADVERSARIAL_SUFFIX} twin needs pgd_eps_k > 0 and a "
            f"plain model none (pgd_eps_k={cfg.pgd_eps_k})"
        )
    splits = data.load(dataset, data_dir, channels=channels, md5=md5)
    model, metrics = train(splits, data.num_classes(splits), cfg)
    metrics["dataset"] = dataset
    metrics["model"] = architecture
    models.save(
        model,
        out_model,
        {
            "architecture": arch,
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


def import_external(
    dataset: str,
    data_dir: str,
    src_onnx: str,
    out_onnx: str,
    out_summary: str,
    *,
    channels: int = 1,
    min_agreement: float = 0.99,
) -> dict:
    """Check an external ONNX classifier against its dataset and copy it into place: it
    must load into canonical form with the dataset's image size, and the canonical form's
    argmax must agree with onnxruntime's on the test split (at least ``min_agreement``;
    float32 near-ties may differ). Writes a summary JSON (accuracy, agreement, layers)."""
    import shutil

    test = data.load(dataset, data_dir, channels=channels, md5=None, splits=("test",))["test"]
    size = int(np.prod(test.images.shape[1:]))
    net = onnx_io.load_affine(src_onnx, input_size=size)
    ort_pred = onnx_io.OrtClassifier(src_onnx).logits(test.images).argmax(1)
    net_pred = net.forward(test.images.reshape(len(test.images), -1)).argmax(1)
    agreement = float((ort_pred == net_pred).mean())
    if agreement < min_agreement:
        raise ModelError(
            f"{src_onnx}: canonical form and onnxruntime agree on only {agreement:.1%} of "
            f"{dataset} test images (need {min_agreement:.0%}): the loader misread the graph"
        )
    if net.output_dim <= int(test.labels.max()):
        raise ModelError(
            f"{src_onnx}: {net.output_dim} outputs, but {dataset} has labels up to "
            f"{int(test.labels.max())}"
        )
    with atomic_path(out_onnx) as tmp:
        shutil.copyfile(src_onnx, tmp)
    summary = {
        "dataset": dataset,
        "source": str(src_onnx),
        "model_sha256": onnx_io.sha256(out_onnx),
        "input_shape": list(onnx_io.input_shape(src_onnx)),
        "layers": [list(w.shape) for w, _ in net.layers],
        "relu_count": net.relu_count,
        "test_accuracy": float((ort_pred == test.labels).mean()),
        "canonical_argmax_agreement": agreement,
    }
    log.info("external model %s: %s", src_onnx, summary)
    results.write_json(summary, out_summary)
    return summary


def select_instances(
    dataset: str,
    data_dir: str,
    onnx_path: str,
    n: int | None,
    out_path: str,
    *,
    channels: int = 1,
    md5: str | None = "auto",
    split: str = "test",
) -> list[dict]:
    """The first ``n`` correctly classified images of ``split`` (default the test split)
    in split order (onnxruntime); every one of them when ``n`` is None. The workflow
    lists them all, so slot s is the same image whatever the configured number of
    instances, and asking for more instances reruns no job of the ones before."""
    test = data.load(dataset, data_dir, channels=channels, md5=md5, splits=(split,))[split]
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
    if n is None:
        log.info("%d of %d %s images correctly classified", len(chosen), len(test.labels), split)
    elif len(chosen) < n:
        log.warning("only %d correctly classified %s images (asked for %d)", len(chosen), split, n)
    results.write_json(
        {
            "dataset": dataset,
            "split": split,
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
        raise DataError(
            f"slot {slot} out of range: {instances_path} holds {len(inst)} correctly "
            "classified images"
        )
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
    mem_limit_mb: int | None = None,
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
        record = verify_image(
            onnx_path,
            test.images[inst["index"]],
            question,
            options=options,
            mem_limit_mb=mem_limit_mb,
        )
    except Exception as exc:  # noqa: BLE001 - the DAG moves on with an error record
        record = results.Record.build(question, **error_verdict(exc))
    results.write(record, out_path)
    return record
