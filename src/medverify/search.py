"""Critical magnitude of one input: the largest magnitude at which it is proven robust,
bracketed by the smallest at which a replayed counterexample exists.

Magnitudes are ``eps`` in [0, 1] pixel units on a grid ``i * resolution``,
``i = 0..n`` (``n = floor(max_eps / resolution)``); a probe at ``eps`` is the family
at ``magnitude_k = 255 * eps``. The families' sets are nested in ``eps``, so robustness
at ``eps`` holds at every smaller grid point and a counterexample at ``eps`` is one at
every larger one. Any family of ``perturbations.FAMILIES`` works unchanged.

Methods (``results.SEARCH_METHODS``):

- ``bisection`` (any backend). The bracket is seeded cheaply first: the largest grid
  point where CROWN bounds (``medverify.bounds.crown``) prove every margin positive is
  the lower end; the smallest where the numpy corner search (``attack.corner_search``)
  finds a counterexample, replayed through onnxruntime, is the upper end. Only the grid
  points strictly between them cost a backend call. Every backend call is an ordinary
  verification (``verify.run_verifier``: isolated child, hard timeout, replay) cached
  on disk as it finishes (``cache_dir``), so a restarted search resumes. A probe that
  ends ``timeout`` or ``unknown`` is a ceiling: the bisection goes on between the robust
  end and it (lower magnitudes are easier to decide), so the robust end keeps rising
  and a counterexample found below the ceiling still closes the bracket. A probe that
  ends ``error`` stops the search. Either way the record says ``censored`` when an
  undecided probe lies inside the final bracket; the bracket is what was proven.
- ``exact`` (one-parameter families): one ``exact`` verification over the whole range
  reports the label-change parameters on each side of the nominal one; converted to
  eps they give the critical magnitude without bisection.
- ``milp-min`` (linf): MIPVerify-style minimum distortion
  (``verifiers.milp.minimum_distortion``) inside the ball the corner-search seed
  reaches, run in an isolated child under the probe timeout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import attack, bounds, data, onnx_io, results
from .attack import corner_search
from .errors import ConfigError
from .results import SEARCH_METHODS, Question, Record, SearchRecord
from .runner import run_isolated
from .verifiers import Result
from .verify import GRACE_S, build_problem, error_verdict, finalize, run_verifier, verdict

log = logging.getLogger(__name__)

#: the JAIR grid: 0.5 / 255 in [0, 1] pixel units
DEFAULT_RESOLUTION = 0.5 / 255
#: top of the searched range of a family not in FAMILY_MAX_EPS
DEFAULT_MAX_EPS = 0.4
#: top of the searched range per family (the workflow schema's search.max_eps default;
#: tests/test_search.py ties the two)
FAMILY_MAX_EPS = {"linf": 0.4, "brightness": 1.0, "contrast": 0.25}
#: per-probe timeout (seconds)
DEFAULT_TIMEOUT_S = 5.0


def default_max_eps(family: str) -> float:
    """The top of a family's searched range when none is given."""
    return FAMILY_MAX_EPS.get(family, DEFAULT_MAX_EPS)


#: names of the seed probes (not backends): the records of the bracket's cheap ends
SEED_BOUND = "bounds.crown"
#: bound methods of the lower-end seed, tried in order (each continues above the last);
#: add "alpha-crown" where medverify.bounds has it for tighter, slower seeds
BOUND_METHODS = ("crown",)
SEED_ATTACK = "attack.corner_search"
#: grid points of the attack seed on families with one or two parameters
GRID_POINTS = 129
#: probe verdicts below which a bisection keeps going (a ceiling of the bracket); any
#: other undecided verdict (an error) ends the search
UNDECIDED_GOES_ON = ("timeout", "unknown")


@dataclass(frozen=True)
class Grid:
    """The magnitudes a search may probe: ``i * resolution`` for ``i = 0..n``."""

    max_eps: float = DEFAULT_MAX_EPS
    resolution: float = DEFAULT_RESOLUTION

    def __post_init__(self):
        for name in ("max_eps", "resolution"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                what = "search range [0, max_eps]" if name == "max_eps" else "resolution"
                raise ConfigError(f"{what}: {name} must be a finite number > 0, got {value!r}")
        if self.resolution > self.max_eps:
            raise ConfigError(
                f"resolution {self.resolution!r} exceeds the search range [0, {self.max_eps!r}]"
            )

    @property
    def n(self) -> int:
        return int(math.floor(self.max_eps / self.resolution + 1e-9))

    def eps(self, i: int) -> float:
        return float(i) * self.resolution


def method_applies(method: str, verifier: str, family: str) -> bool:
    """Which (method, verifier, family) combinations make sense (the workflow's cells)."""
    from .verifiers import applies

    answerable = applies(verifier, family)  # raises on an unknown family
    if method == "bisection":
        return answerable
    if method == "exact":
        return verifier == "exact" and answerable
    if method == "milp-min":
        return verifier == "milp" and family == "linf"
    raise ConfigError(f"unknown search method {method!r}: one of {', '.join(SEARCH_METHODS)}")


class _Searcher:
    def __init__(
        self,
        classifier,
        ort,
        image,
        question: Question,
        grid,
        options,
        cache_dir,
        seeds=True,
        bound_methods=BOUND_METHODS,
        mem_limit_mb=None,
    ):
        self.classifier = classifier
        self.ort = ort
        self.image = np.asarray(image, dtype=np.float64).reshape(-1)
        self.question = question
        self.grid = grid
        self.options = options or {}
        self.cache = Path(cache_dir) if cache_dir else None
        self.probes: list[Record] = []
        self.seeds = bool(seeds)  # False: every probe a backend call (tests, comparisons)
        self.bound_methods = tuple(bound_methods)
        self.mem_limit_mb = mem_limit_mb  # each probe's address-space cap (a job's mem_mb)

    def problem(self, i: int):
        q = self.question
        return build_problem(
            self.classifier, self.image, q.true_label, q.family, 255 * self.grid.eps(i)
        )

    def probe_question(self, i: int, verifier: str | None = None) -> Question:
        return self.question.replace(
            magnitude_k=255 * self.grid.eps(i), verifier=verifier or self.question.verifier
        )

    # --- cheap seeds ------------------------------------------------------------------
    def crown_proves(self, i: int, method: str = "crown") -> float | None:
        """The lower bound (``bounds.compute`` by ``method``) of the worst margin at grid
        point i when it is positive."""
        if not self.seeds:
            return None
        p = self.problem(i)
        lo = float(np.min(bounds.compute(p.margin_net(), p.lower, p.upper, method)[-1][0]))
        return lo if lo > 0 else None

    def attack(self, i: int):
        """Replayed verdict fields of a corner-search counterexample at grid point i."""
        if not self.seeds:
            return None
        p = self.problem(i)
        params = corner_search(p)
        if params is None and len(p.lower) <= attack.GRID_DIMS:
            # few parameters: a coarse grid over the box costs one batched forward pass
            params, _ = attack._best_negative(p, attack.grid_points(p.lower, p.upper, GRID_POINTS))
        if params is None:
            return None
        fields = finalize(p, Result("counterexample", params=params), self.ort, SEED_ATTACK, 0.0)
        return fields if fields["status"] == "counterexample" else None

    # --- complete probes (cached) -------------------------------------------------------
    def cache_path(self, i: int) -> Path | None:
        """The probe's cache file; backend options are part of its name (a probe run
        under other options is another question: it is not reused)."""
        if not self.cache:
            return None
        tag = ""
        if self.options:
            text = json.dumps(self.options, sort_keys=True, default=str)
            tag = "." + hashlib.sha256(text.encode()).hexdigest()[:12]
        return self.cache / f"probe_{i:05d}{tag}.json"

    def complete(self, i: int) -> Record:
        path = self.cache_path(i)
        q = self.probe_question(i)
        if path is not None and path.exists():
            try:
                rec = results.read(path)
                if rec.question == q:
                    log.info("probe eps=%g from cache %s", self.grid.eps(i), path)
                    return rec
            except (OSError, ValueError, TypeError, json.JSONDecodeError):
                pass  # unreadable: probe again
        _warm(q.verifier)
        start = time.perf_counter()
        try:
            fields = run_verifier(
                self.problem(i),
                q.verifier,
                q.timeout_s,
                self.ort,
                self.options,
                mem_limit_mb=self.mem_limit_mb,
            )
        except Exception as exc:  # noqa: BLE001 - a failed probe is an error record
            fields = error_verdict(exc)
        rec = Record.build(q, wall_time_s=round(time.perf_counter() - start, 4), **fields)
        if path is not None:
            results.write(rec, path)
        log.info("probe eps=%g: %s", self.grid.eps(i), rec.status)
        return rec


def _warm(verifier: str) -> None:
    """Import a backend's heavy modules once in this process, so every forked probe
    inherits them instead of importing them again (crown: torch, for its branch and
    bound). Imports only: no torch operation runs here before a fork."""
    from .verifiers import backend_class

    backend_class(verifier)
    if verifier == "crown":
        try:
            import torch  # noqa: F401
        except ImportError:  # pragma: no cover - the probe itself reports it
            pass


def _label(rec: Record | None) -> int | None:
    return None if rec is None else rec.predicted_label_at_counterexample


def bisection(s: _Searcher) -> dict:
    """The bracket on the grid; returns SearchRecord fields."""
    grid = s.grid
    n = grid.n
    p0 = s.problem(0)
    if float(np.min(p0.margins(p0.lower))) <= 0:
        # the unperturbed image itself, replayed like every counterexample
        fields = finalize(p0, Result("counterexample", params=p0.lower), s.ort, SEED_ATTACK, 0.0)
        note = fields.get("message")
        fields["message"] = "the unperturbed image is misclassified" + (
            f" ({note})" if note else ""
        )
        rec = Record.build(s.probe_question(0, SEED_ATTACK), **fields)
        if rec.status == "counterexample":
            return dict(eps_robust=None, eps_counterexample=0.0, probes=[rec], censored=False)
        return dict(
            eps_robust=None,
            eps_counterexample=None,
            probes=[rec],
            censored=True,
            message="the unperturbed image is on the decision boundary (not replayed)",
        )
    lo, hi = 0, None  # lo: proven robust; hi: replayed counterexample
    lo_rec = hi_rec = None
    # attack upper end first (cheapest): the smallest grid point where the corner search
    # finds a replayed counterexample, by bisection from the top of the range
    top = s.attack(n)
    if top is not None:
        a_lo, a_hi, a_fields = 0, n, top
        while a_hi - a_lo > 1:
            mid = (a_lo + a_hi) // 2
            found = s.attack(mid)
            if found is not None:
                a_hi, a_fields = mid, found
            else:
                a_lo = mid
        hi = a_hi
        hi_rec = Record.build(s.probe_question(hi, SEED_ATTACK), **a_fields)
    # CROWN lower end below it: the largest proven grid point (bisection assuming
    # monotone bounds; any proof is valid by nesting even where they are not)
    b_lo, b_hi = 0, (n + 1 if hi is None else hi)
    best_bound, best_method = None, None
    for method in s.bound_methods:  # each tighter method continues above the last
        while b_hi - b_lo > 1:
            mid = n if b_hi == n + 1 else (b_lo + b_hi) // 2  # whole range: top first
            bound = s.crown_proves(mid, method)
            if bound is not None:
                b_lo, best_bound, best_method = mid, bound, method
            else:
                b_hi = mid
        b_hi = n + 1 if hi is None else hi
    if b_lo > 0:
        lo = b_lo
        lo_rec = Record.build(
            s.probe_question(lo, f"bounds.{best_method}"),
            **verdict(
                "robust",
                margin_lower_bound=best_bound,
                message=f"{best_method} bounds prove every margin positive",
            ),
        )
    # complete-verifier bisection on the open part of the bracket. A probe that times out
    # (or ends unknown) becomes a ceiling: the bisection goes on below it, where probes
    # are easier, so the robust end still rises and a counterexample found below it
    # closes the bracket after all. An error stops the search (a broken backend is not
    # a hard magnitude).
    ceiling = ceiling_rec = None  # lowest undecided grid point above lo
    while True:
        top = min(x for x in (hi, ceiling, n + 1) if x is not None)
        if top - lo <= 1:
            break
        mid = n if top == n + 1 else (lo + top) // 2  # whole range open: top first
        rec = s.complete(mid)
        s.probes.append(rec)
        if rec.status == "robust":
            lo, lo_rec = mid, rec
        elif rec.status == "counterexample":
            hi, hi_rec = mid, rec
        else:
            ceiling, ceiling_rec = mid, rec
            if rec.status not in UNDECIDED_GOES_ON:
                break
    # censored: an undecided probe lies inside the final bracket
    censored = ceiling is not None and ceiling > lo and (hi is None or ceiling < hi)
    probes = [r for r in (lo_rec, hi_rec) if r is not None and r not in s.probes] + s.probes
    out = dict(
        eps_robust=grid.eps(lo),
        eps_counterexample=None if hi is None else grid.eps(hi),
        counterexample_label=_label(hi_rec),
        probes=probes,
        censored=censored,
    )
    if censored:
        out["message"] = (
            f"censored: probe at eps={grid.eps(ceiling):.6g} ended {ceiling_rec.status}: "
            f"{ceiling_rec.message or ''}".strip()
        )
    return out


def exact_route(s: _Searcher) -> dict:
    """One exact verification over the whole range; the label-change parameters on each
    side of the nominal one, converted to eps (the box grows linearly in eps)."""
    from .verifiers.exact import nominal_parameter

    grid, q = s.grid, s.question
    p = s.problem(grid.n)
    if p.net.input_dim != 1:
        raise ConfigError(
            f"exact search needs a one-parameter family: {q.family!r} has {p.net.input_dim}"
        )
    rec = s.complete(grid.n)
    s.probes.append(rec)
    top = grid.eps(grid.n)
    if rec.status not in results.DECIDED:
        return dict(eps_robust=0.0, eps_counterexample=None, probes=[rec], censored=True)
    nominal = nominal_parameter(p)
    lo_p, hi_p = float(p.lower[0]), float(p.upper[0])
    below, above = rec.extra.get("label_change_below"), rec.extra.get("label_change_above")
    sides = {}
    if below is not None and nominal > lo_p:
        sides["below"] = top * (nominal - below) / (nominal - lo_p)
    if above is not None and hi_p > nominal:
        sides["above"] = top * (above - nominal) / (hi_p - nominal)
    extra = {"parameter_below": below, "parameter_above": above, "nominal": nominal}
    extra.update({f"eps_{k}": v for k, v in sides.items()})
    if not sides:
        return dict(
            eps_robust=top, eps_counterexample=None, probes=[rec], censored=False, extra=extra
        )
    side = min(sides, key=sides.get)
    crit = sides[side]
    # the upper end is a replayed point: the first of a few points just past the change
    # point whose float64 margin and onnxruntime replay both show the label change
    param = below if side == "below" else above
    span = (nominal - lo_p) if side == "below" else (hi_p - nominal)
    cex = _replayed_past(s, p, param, -1.0 if side == "below" else 1.0, span, nominal, top)
    if cex is None:
        # no replayed point near it: the full-range probe's replayed counterexample (when
        # it has one) still bounds the critical eps from above
        decided = rec.status == "counterexample"
        return dict(
            eps_robust=crit,
            eps_counterexample=top if decided else None,
            counterexample_label=_label(rec) if decided else None,
            probes=[rec],
            censored=True,
            message=f"no replayed counterexample just past the exact change point eps={crit:.6g}",
            extra=extra,
        )
    eps_c, cex_rec = cex
    return dict(
        eps_robust=crit,
        eps_counterexample=eps_c,
        counterexample_label=_label(cex_rec),
        probes=[rec, cex_rec],
        censored=False,
        extra=extra,
    )


#: how many times ``_replayed_past`` quadruples its step before giving up
PAST_TRIES = 12


def _replayed_past(s: _Searcher, p, param: float, sign: float, span: float, nominal, top):
    """(eps, record) of the first point ``x = param + sign * step`` inside the box that
    replays as a counterexample (``finalize``: float64 margin <= -CEX_MARGIN and
    onnxruntime), its eps = top * |x - nominal| / span; None when none does. The first
    step is where the margin's slope just past ``param`` (a finite difference) reaches
    -2 CEX_MARGIN; each next one is four times longer (``PAST_TRIES`` in all)."""
    q = s.question
    h = 1e-6 * max(1.0, abs(param))
    slope = -float(np.min(p.margins(np.array([param + sign * h])))) / h
    step = 2 * attack.CEX_MARGIN / slope if slope > 0 else h
    for _ in range(PAST_TRIES):
        x = param + sign * step
        if not float(p.lower[0]) <= x <= float(p.upper[0]):
            break
        fields = finalize(p, Result("counterexample", params=np.array([x])), s.ort, q.verifier, 0.0)
        if fields["status"] == "counterexample":
            eps = top * abs(x - nominal) / span
            return eps, Record.build(q.replace(magnitude_k=255 * eps), **fields)
        step *= 4
    return None


def _milp_min(classifier, image, label, targets, max_eps, timeout_s, options):
    from .verifiers.milp import minimum_distortion

    return minimum_distortion(classifier, image, label, targets, max_eps, timeout_s, **options)


def milp_min_route(s: _Searcher) -> dict:
    """MIPVerify minimum eps inside the ball where the corner search already succeeds
    (or the whole range); the minimising point is replayed as a verification probe."""
    grid, q = s.grid, s.question
    if q.family != "linf":
        raise ConfigError(f"milp-min search handles linf only, not {q.family!r}")
    top = grid.n
    seed = s.attack(top)
    if seed is not None:  # shrink the ball to the smallest grid point the attack reaches
        a_lo, a_hi = 0, top
        while a_hi - a_lo > 1:
            mid = (a_lo + a_hi) // 2
            if s.attack(mid) is not None:
                a_hi = mid
            else:
                a_lo = mid
        top = a_hi
    max_eps = grid.eps(top)
    targets = s.problem(0).targets
    start = time.perf_counter()
    out = run_isolated(
        _milp_min,
        s.classifier,
        s.image,
        q.true_label,
        targets,
        max_eps,
        q.timeout_s,
        s.options,
        timeout_s=q.timeout_s,
        grace_s=GRACE_S,
        mem_limit_mb=s.mem_limit_mb,
    )
    seconds = time.perf_counter() - start
    if out.kind != "ok":
        return dict(
            eps_robust=0.0,
            eps_counterexample=max_eps if seed is not None else None,
            censored=True,
            message=f"milp-min: {out.kind}: {out.message.splitlines()[0] if out.message else ''}",
            extra={"milp_seconds": seconds, "ball": max_eps},
        )
    res = out.value
    extra = {
        "min_eps": res["eps"],
        "lower": res["lower"],
        "proven": res["proven"],
        "ball": max_eps,
        "milp_seconds": seconds,
        "milp": res["stats"],
    }
    unproven = (
        f"milp-min: minimum not proven within {q.timeout_s:g}s "
        f"(proven lower bound {res['lower']:.6g})"
    )
    if res["eps"] is None:  # no label change in the ball
        proven = res["lower"] >= max_eps
        return dict(
            eps_robust=res["lower"],
            eps_counterexample=None,
            censored=not proven,
            message="" if proven else unproven,
            extra=extra,
        )
    # replay the minimiser, pushed just off the boundary, as an ordinary probe
    eps_star = float(res["eps"])
    e_cex = min(eps_star * (1 + 1e-4) + 1e-6, grid.max_eps)
    p = build_problem(s.classifier, s.image, q.true_label, "linf", 255 * e_cex)
    from .attack import sign_descent

    point = sign_descent(p, np.clip(res["params"], p.lower, p.upper), rounds=40)
    fields = finalize(
        p, Result("counterexample", params=point), s.ort, "milp minimum_distortion", seconds
    )
    rec = Record.build(q.replace(magnitude_k=255 * e_cex), wall_time_s=round(seconds, 4), **fields)
    ok = rec.status == "counterexample"
    return dict(
        eps_robust=res["lower"],
        eps_counterexample=e_cex if ok else None,
        counterexample_label=_label(rec),
        probes=[rec],
        censored=not (res["proven"] and ok),
        message="" if res["proven"] else unproven,
        extra=extra,
    )


ROUTES = {"bisection": bisection, "exact": exact_route, "milp-min": milp_min_route}


def search_image(
    onnx_path,
    image: np.ndarray,
    question: Question,
    *,
    grid: Grid | None = None,
    method: str = "bisection",
    options: dict | None = None,
    cache_dir=None,
    split: str = "test",
    seeds: bool = True,
    bound_methods: tuple[str, ...] = BOUND_METHODS,
    mem_limit_mb: int | None = None,
) -> SearchRecord:
    """The critical magnitude of one image (never raises on a verifier failure: that is a
    censored record with the message). ``question.timeout_s`` is the per-probe timeout;
    its ``magnitude_k`` is set to the top of the range. ``seeds=False`` skips the cheap
    CROWN / corner-search ends, so every probe is a backend call; ``bound_methods`` names
    the ``medverify.bounds`` methods of the lower-end seed, in order; ``mem_limit_mb``
    caps every probe's address space (a workflow job's mem_mb)."""
    grid = grid or Grid()
    if method not in ROUTES:
        raise ConfigError(f"unknown search method {method!r}: one of {', '.join(ROUTES)}")
    start = time.perf_counter()
    question = question.replace(
        magnitude_k=255 * grid.max_eps,
        model_sha256=question.model_sha256 or onnx_io.sha256(onnx_path),
    )
    classifier = onnx_io.load_affine(onnx_path)
    ort = onnx_io.OrtClassifier(onnx_path)
    s = _Searcher(
        classifier,
        ort,
        image,
        question,
        grid,
        options,
        cache_dir,
        seeds,
        bound_methods,
        mem_limit_mb,
    )
    fields = {"message": ""}
    fields.update(ROUTES[method](s))
    fields["probes"] = [r.to_dict() for r in fields.get("probes", s.probes)]
    if fields.get("censored") and not fields["message"]:
        last = fields["probes"][-1] if fields["probes"] else {}
        fields["message"] = (
            f"censored: probe at eps={last.get('magnitude_k', 0) / 255:.6g} ended "
            f"{last.get('status')}: {last.get('message', '')}".strip()
        )
    return SearchRecord.build(
        question,
        method,
        split=split,
        resolution=grid.resolution,
        max_eps=grid.max_eps,
        seconds=round(time.perf_counter() - start, 4),
        **fields,
    )


def bracket_line(rec: SearchRecord) -> str:
    """One line: the bracket, its width and how it was found."""
    lo = "none" if rec.eps_robust is None else f"{rec.eps_robust:.6g}"
    hi = f"> {rec.max_eps:g}" if rec.eps_counterexample is None else f"{rec.eps_counterexample:.6g}"
    label = "" if rec.counterexample_label is None else f", label {rec.counterexample_label}"
    cens = ", censored" if rec.censored else ""
    return (
        f"critical eps in [{lo}, {hi}] ({rec.family}, {rec.method}/{rec.verifier}, "
        f"{len(rec.probes)} probes, {rec.seconds:.2f}s{label}{cens})"
    )


def search_slot(
    question: Question,
    data_dir: str,
    onnx_path: str,
    instances_path: str,
    out_path: str,
    *,
    split: str = "test",
    grid: Grid | None = None,
    method: str = "bisection",
    channels: int = 1,
    md5: str | None = None,
    options: dict | None = None,
    cache_dir=None,
    mem_limit_mb: int | None = None,
) -> SearchRecord:
    """The workflow job: the ``question.slot``-th selected instance of ``split`` (from
    ``instances_path``), searched and written to ``out_path``."""
    from .pipeline import load_instance

    inst = load_instance(instances_path, question.slot)
    question = question.replace(index=int(inst["index"]), true_label=int(inst["label"]))
    images = data.load(question.dataset, data_dir, channels=channels, md5=md5, splits=(split,))[
        split
    ].images
    rec = search_image(
        onnx_path,
        images[inst["index"]],
        question,
        grid=grid,
        method=method,
        options=options,
        cache_dir=cache_dir,
        split=split,
        mem_limit_mb=mem_limit_mb,
    )
    results.write(rec, out_path)
    return rec
