"""One verification job: build the problem, run a backend in an isolated child with a
hard timeout, replay any counterexample through onnxruntime on the original
classifier, and produce the record."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import onnx_io, perturbations
from .results import Record
from .runner import run_isolated
from .verifiers import Problem, Result, get
from .verifiers.base import CEX_MARGIN

GRACE_S = 1.0


@dataclass
class Replay:
    ok: bool
    predicted_label: int | None
    image: np.ndarray
    message: str = ""


def build_problem(
    classifier,
    image: np.ndarray,
    label: int,
    family: str,
    magnitude_k: float,
    targets=None,
    name: str = "",
) -> Problem:
    """``classifier``: an AffineNet (see onnx_io.load_affine) over the flattened image."""
    fam = perturbations.make(family, image, magnitude_k)
    net = perturbations.compose(fam, classifier)
    lo, hi = fam.box()
    if targets is None:
        targets = [j for j in range(classifier.output_dim) if j != label]
    return Problem(net, lo, hi, int(label), tuple(targets), fam, name=name)


def replay(problem: Problem, params, ort: onnx_io.OrtClassifier) -> Replay:
    """Check a claimed counterexample: in the family's set, and the original classifier
    (onnxruntime, float32) gives some target label a logit >= the true label's."""
    fam = problem.family
    params = np.asarray(params, dtype=np.float64).reshape(-1)
    image = fam.apply(params)
    if not fam.contains(image, params):
        return Replay(False, None, image, f"counterexample parameters outside the {fam.name} set")
    logits = ort.logits(image.astype(np.float32))[0]
    pred = int(np.argmax(logits))
    worst = max(problem.targets, key=lambda j: logits[j])
    if logits[worst] >= logits[problem.label]:
        return Replay(True, pred if pred != problem.label else int(worst), image)
    gap = float(logits[problem.label] - logits[worst])
    return Replay(
        False,
        pred,
        image,
        f"counterexample did not replay: label {problem.label} still "
        f"leads by {gap:.3g} under onnxruntime",
    )


def _run_backend(verifier: str, options: dict, problem: Problem, timeout_s: float):
    backend = get(verifier, **options)
    start = time.perf_counter()
    result = backend.verify(problem, timeout_s)
    result.stats.setdefault("verifier_time_s", time.perf_counter() - start)
    return result, backend.tool_version()


def run_verifier(
    problem: Problem,
    verifier: str,
    timeout_s: float,
    ort: onnx_io.OrtClassifier,
    options: dict | None = None,
    isolate: bool = True,
) -> dict:
    """Run one backend on one problem. Returns the verdict fields of a record."""
    options = options or {}
    start = time.perf_counter()
    if isolate:
        out = run_isolated(
            _run_backend,
            verifier,
            options,
            problem,
            timeout_s,
            timeout_s=timeout_s,
            grace_s=GRACE_S,
        )
        if out.kind == "timeout":
            return _fields("timeout", message=out.message, verifier_time_s=out.seconds)
        if out.kind != "ok":
            first, _, rest = out.message.strip().partition("\n")
            return _fields(
                "error",
                message=first,
                verifier_time_s=out.seconds,
                extra={"traceback": rest} if rest else {},
            )
        result, version = out.value
    else:
        result, version = _run_backend(verifier, options, problem, timeout_s)
    seconds = float(result.stats.get("verifier_time_s", time.perf_counter() - start))
    return finalize(problem, result, ort, version, seconds)


def finalize(problem: Problem, result: Result, ort, version: str, seconds: float) -> dict:
    """Map a backend Result to record fields, replaying counterexamples."""
    status, message = result.status, result.message
    cex, pred = None, None
    if status == "counterexample":
        margin = None if result.params is None else float(np.min(problem.margins(result.params)))
        if result.params is None:
            status, message = "unknown", f"flagged: counterexample without parameters. {message}"
        elif margin > 0:
            status = "unknown"
            message = (
                f"flagged: claimed counterexample has float64 margin {margin:.3g} > 0 "
                f"on the composed network. {message}"
            )
        elif margin > -CEX_MARGIN:
            status = "unknown"
            message = (
                f"borderline: the point found has float64 margin {margin:.3g} > "
                f"-{CEX_MARGIN:g}, too close to the boundary to replay. {message}"
            )
        else:
            rep = replay(problem, result.params, ort)
            if rep.ok:
                cex = {"image": [float(v) for v in rep.image]}
                cex.update(problem.family.describe(result.params))
                pred = rep.predicted_label
            else:
                status, message = "unknown", f"flagged: {rep.message}. {message}".strip()
    return _fields(
        status,
        counterexample=cex,
        predicted_label_at_counterexample=pred,
        margin_lower_bound=result.margin_lower_bound,
        message=message,
        verifier_time_s=seconds,
        tool_version=version,
        extra={k: v for k, v in result.stats.items() if k != "verifier_time_s"},
    )


def _fields(status, **kw) -> dict:
    d = {
        "status": status,
        "counterexample": None,
        "predicted_label_at_counterexample": None,
        "margin_lower_bound": None,
        "message": "",
        "verifier_time_s": 0.0,
        "tool_version": "",
        "extra": {},
    }
    d.update(kw)
    return d


def verify_image(
    onnx_path,
    image: np.ndarray,
    label: int,
    family: str,
    magnitude_k: float,
    verifier: str,
    timeout_s: float,
    *,
    dataset: str = "",
    model: str = "",
    index: int = -1,
    slot: int | None = None,
    options: dict | None = None,
    targets=None,
    strategy: str = "joint",
) -> Record:
    """The whole job for one (model, image, family, magnitude, verifier)."""
    start = time.perf_counter()
    try:
        classifier = onnx_io.load_affine(onnx_path)
        problem = build_problem(
            classifier,
            image,
            label,
            family,
            magnitude_k,
            targets,
            name=f"{model}_{index}_{family}_{magnitude_k}",
        )
        ort = onnx_io.OrtClassifier(onnx_path)
        fields = run_verifier(problem, verifier, timeout_s, ort, options)
        if targets is not None:
            fields["labels_checked"] = list(problem.targets)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error record
        fields = _fields("error", message=f"{type(exc).__name__}: {exc}")
    return Record(
        dataset=dataset,
        model=model,
        index=int(index),
        true_label=int(label),
        family=family,
        magnitude_k=float(magnitude_k),
        verifier=verifier,
        strategy=strategy,
        model_sha256=onnx_io.sha256(onnx_path),
        timeout_s=float(timeout_s),
        slot=slot,
        wall_time_s=round(time.perf_counter() - start, 4),
        **fields,
    )


def verify_vnnlib(
    onnx_path, vnnlib_path, verifier: str, timeout_s: float, options: dict | None = None
) -> Record:
    """Verify a VNN-COMP style property ("some j beats y" over an input box) on a
    classifier; the record's family is ``box``."""
    from . import vnnlib

    start = time.perf_counter()
    label, fields = -1, None
    try:
        lower, upper, label, targets = vnnlib.to_problem_spec(vnnlib.read(vnnlib_path))
        classifier = onnx_io.load_affine(onnx_path)
        fam = perturbations.Box(lower, upper)
        problem = Problem(
            classifier, lower, upper, int(label), tuple(targets), fam, name=str(vnnlib_path)
        )
        fields = run_verifier(
            problem, verifier, timeout_s, onnx_io.OrtClassifier(onnx_path), options
        )
    except Exception as exc:  # noqa: BLE001
        fields = _fields("error", message=f"{type(exc).__name__}: {exc}")
    return Record(
        dataset="",
        model=str(onnx_path),
        index=-1,
        true_label=int(label),
        family="box",
        magnitude_k=0.0,
        verifier=verifier,
        model_sha256=onnx_io.sha256(onnx_path),
        timeout_s=float(timeout_s),
        wall_time_s=round(time.perf_counter() - start, 4),
        **fields,
    )
