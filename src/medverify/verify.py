"""One verification job: build the problem, run a backend in an isolated child with a
hard timeout, replay any counterexample through onnxruntime on the original
classifier, and produce the record."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import onnx_io, perturbations, strategies
from .errors import VnnlibError
from .results import Question, Record
from .runner import run_isolated
from .verifiers import Problem, Result, backend_class, get
from .verifiers.base import CEX_MARGIN

GRACE_S = 1.0


@dataclass
class Replay:
    ok: bool
    predicted_label: int | None
    image: np.ndarray
    message: str = ""
    flag: str = "replay-failed"  # results.FLAGS entry when not ok


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
        return Replay(
            False,
            None,
            image,
            f"counterexample parameters outside the {fam.name} set",
            flag="outside-set",
        )
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


def _confirmer(onnx_path):
    """``strategies.Confirm`` for the guided loop: the checks of ``finalize`` (float64
    margin, set membership, onnxruntime replay), with a session opened in the process
    that uses it (the strategy runs in the isolated child)."""
    sessions = {}

    def confirm(problem: Problem, result: Result):
        if "ort" not in sessions:
            sessions["ort"] = onnx_io.OrtClassifier(onnx_path)
        status, flags, message, _, _ = check_counterexample(problem, result, sessions["ort"])
        return status == "counterexample", (flags[0] if flags else None), message

    return confirm


def _run_backend(
    verifier: str,
    options: dict,
    problem: Problem,
    timeout_s: float,
    strategy: str = "joint",
    onnx_path=None,
):
    """Backend wrapped in its strategy; runs in the isolated child, so the one hard
    timeout covers bounds, sorting and every label of a guided run."""
    backend = get(verifier, **options)
    confirm = _confirmer(onnx_path) if onnx_path is not None else None
    runner = strategies.make(strategy, backend, confirm=confirm)
    start = time.perf_counter()
    result = runner.verify(problem, timeout_s)
    result.stats.setdefault("verifier_time_s", time.perf_counter() - start)
    return result, backend.tool_version()


def run_verifier(
    problem: Problem,
    verifier: str,
    timeout_s: float,
    ort: onnx_io.OrtClassifier,
    options: dict | None = None,
    isolate: bool = True,
    strategy: str = "joint",
    mem_limit_mb: int | None = None,
) -> dict:
    """Run one backend (under ``strategy``, see medverify.strategies) on one problem.
    Returns the verdict fields of a record. ``mem_limit_mb`` caps the child's address
    space (a job's declared mem_mb)."""
    options = options or {}
    strategies.check_name(strategy)
    backend_class(verifier)  # an unknown name is bad input, found before the fork
    start = time.perf_counter()
    args = (verifier, options, problem, timeout_s, strategy, getattr(ort, "path", None))
    if isolate:
        out = run_isolated(
            _run_backend,
            *args,
            timeout_s=timeout_s,
            grace_s=GRACE_S,
            mem_limit_mb=mem_limit_mb,
        )
        if out.kind == "timeout":
            return verdict("timeout", message=out.message, verifier_time_s=out.seconds)
        if out.kind != "ok":
            first, _, rest = out.message.strip().partition("\n")
            return verdict(
                "error",
                message=first,
                verifier_time_s=out.seconds,
                extra={"traceback": rest} if rest else {},
            )
        result, version = out.value
        result.stats["peak_rss_mb"] = round(out.peak_rss_mb or 0.0, 1)
        result.stats["peak_vm_mb"] = round(out.peak_vm_mb or 0.0, 1)
    else:
        result, version = _run_backend(*args)
    seconds = float(result.stats.get("verifier_time_s", time.perf_counter() - start))
    return finalize(problem, result, ort, version, seconds)


def check_counterexample(problem: Problem, result: Result, ort):
    """(status, flags, message, counterexample, predicted label) of a Result: a claimed
    counterexample that does not hold up becomes ``unknown`` with a named flag."""
    status, message, flags = result.status, result.message, []
    cex, pred = None, None
    if status == "counterexample":
        # the composed net is exact on the box only (pruned clip prefix): check the box first
        inside = result.params is not None and problem.family.in_box(result.params)
        margin = float(np.min(problem.margins(result.params))) if inside else None
        if result.params is None:
            status, flags = "unknown", ["replay-failed"]
            message = f"flagged: counterexample without parameters. {message}"
        elif not inside:
            status, flags = "unknown", ["outside-set"]
            message = (
                f"flagged: counterexample parameters outside the {problem.family.name} set. "
                f"{message}"
            ).strip()
        elif margin > 0:
            status, flags = "unknown", ["replay-failed"]
            message = (
                f"flagged: claimed counterexample has float64 margin {margin:.3g} > 0 "
                f"on the composed network. {message}"
            )
        elif margin > -CEX_MARGIN:
            status, flags = "unknown", ["borderline"]
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
                status, flags = "unknown", [rep.flag]
                message = f"flagged: {rep.message}. {message}".strip()
    return status, flags, message, cex, pred


def finalize(problem: Problem, result: Result, ort, version: str, seconds: float) -> dict:
    """Map a backend Result to verdict fields, replaying counterexamples
    (``check_counterexample``); a guided run's per-label list becomes ``labels_checked``."""
    status, flags, message, cex, pred = check_counterexample(problem, result, ort)
    stats = dict(result.stats)
    labels_checked = stats.pop("labels_checked", None)
    return verdict(
        status,
        counterexample=cex,
        predicted_label_at_counterexample=pred,
        margin_lower_bound=result.margin_lower_bound,
        message=message,
        flags=flags,
        verifier_time_s=seconds,
        tool_version=version,
        labels_checked=labels_checked,
        extra={k: v for k, v in stats.items() if k != "verifier_time_s"},
    )


def verdict(status, **kw) -> dict:
    """Verdict fields of a record (the question's fields come from the Question)."""
    return {"status": status, **kw}


def error_verdict(exc: BaseException) -> dict:
    """An ``error`` verdict for an exception raised before or around the backend; its
    class name goes to ``extra["error_type"]`` (``errors.is_input_error`` tells bad input
    from an internal error)."""
    return verdict(
        "error",
        message=f"{type(exc).__name__}: {exc}",
        extra={"error_type": type(exc).__name__},
    )


def load_classifier(onnx_path, sha256: str, input_size: int | None = None):
    """``onnx_io.load_affine`` with a cache beside the ONNX file, keyed by its sha256:
    the first verify job of a model parses the ONNX (importing ``onnx`` costs ~0.6 s),
    the others read a small npz. A missing, stale or unreadable cache is rebuilt; an
    unwritable directory only costs the parse."""
    from pathlib import Path

    from .fileio import atomic_path
    from .nets import AffineNet

    path = Path(onnx_path)
    cache = path.with_name(f".{path.name}.{sha256[:16]}.affine.npz")
    try:
        with np.load(cache) as z:
            n = len(z.files) // 2
            cached = AffineNet([(z[f"w{i}"], z[f"b{i}"]) for i in range(n)])
        if input_size is None or cached.input_dim == int(input_size):
            return cached
    except (OSError, ValueError, KeyError):
        pass
    # a miss, or a size mismatch: load_affine reads the file and names what is wrong
    classifier = onnx_io.load_affine(onnx_path, input_size=input_size)
    arrays = {}
    for i, (w, b) in enumerate(classifier.layers):
        arrays[f"w{i}"], arrays[f"b{i}"] = w, b
    try:
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError:
        pass
    return classifier


def verify_image(
    onnx_path,
    image: np.ndarray,
    question: Question,
    *,
    options: dict | None = None,
    targets=None,
    mem_limit_mb: int | None = None,
) -> Record:
    """The whole job for one question about one image: load the classifier, build the
    problem, run the backend isolated, replay, and return the record (never raises: a
    failure becomes an ``error`` record)."""
    start = time.perf_counter()
    question = question.replace(model_sha256=question.model_sha256 or onnx_io.sha256(onnx_path))
    try:
        classifier = load_classifier(
            onnx_path, question.model_sha256, input_size=np.asarray(image).size
        )
        problem = build_problem(
            classifier,
            image,
            question.true_label,
            question.family,
            question.magnitude_k,
            targets,
            name=f"{question.model}_{question.index}_{question.family}_{question.magnitude_k}",
        )
        ort = onnx_io.LazyOrt(onnx_path)  # opened only to replay a counterexample
        fields = run_verifier(
            problem,
            question.verifier,
            question.timeout_s,
            ort,
            options,
            strategy=question.strategy,
            mem_limit_mb=mem_limit_mb,
        )
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error record
        fields = error_verdict(exc)
    return Record.build(question, wall_time_s=round(time.perf_counter() - start, 4), **fields)


def check_vnnlib_against(classifier, prop, vnnlib_path, onnx_path) -> None:
    """The property's inputs and outputs must be the network's (VnnlibError otherwise)."""
    if prop.num_inputs != classifier.input_dim:
        raise VnnlibError(
            f"{vnnlib_path}: declares {prop.num_inputs} inputs X_i but {onnx_path} takes "
            f"{classifier.input_dim}"
        )
    n = classifier.output_dim
    used = sorted({int(j) for c, _ in prop.disjuncts for j in np.flatnonzero(np.any(c, axis=0))})
    missing = [j for j in used if j >= n]
    if missing:
        raise VnnlibError(
            f"{vnnlib_path}: output constraint over Y_{missing[0]} but {onnx_path} has "
            f"{n} outputs (Y_0..Y_{n - 1})"
        )
    if prop.num_outputs != n:
        raise VnnlibError(
            f"{vnnlib_path}: declares {prop.num_outputs} outputs Y_j but {onnx_path} has {n}"
        )


def verify_vnnlib(
    onnx_path,
    vnnlib_path,
    verifier: str,
    timeout_s: float,
    options: dict | None = None,
    strategy: str = "joint",
    mem_limit_mb: int | None = None,
) -> Record:
    """Verify a VNN-COMP style property ("some j beats y" over an input box) on a
    classifier; the record's family is ``box``."""
    from . import vnnlib

    start = time.perf_counter()
    question = Question(
        dataset="",
        model=str(onnx_path),
        index=-1,
        true_label=-1,
        family="box",
        magnitude_k=0.0,
        verifier=verifier,
        strategy=strategy,
        timeout_s=float(timeout_s),
    )
    try:
        question = question.replace(model_sha256=onnx_io.sha256(onnx_path))
        prop = vnnlib.read(vnnlib_path)
        classifier = onnx_io.load_affine(onnx_path)
        check_vnnlib_against(classifier, prop, vnnlib_path, onnx_path)
        lower, upper, label, targets = vnnlib.to_problem_spec(prop)
        question = question.replace(true_label=int(label))
        fam = perturbations.Box(lower, upper)
        problem = Problem(
            classifier, lower, upper, int(label), tuple(targets), fam, name=str(vnnlib_path)
        )
        fields = run_verifier(
            problem,
            verifier,
            timeout_s,
            onnx_io.OrtClassifier(onnx_path),
            options,
            strategy=strategy,
            mem_limit_mb=mem_limit_mb,
        )
    except Exception as exc:  # noqa: BLE001
        fields = error_verdict(exc)
    return Record.build(question, wall_time_s=round(time.perf_counter() - start, 4), **fields)
