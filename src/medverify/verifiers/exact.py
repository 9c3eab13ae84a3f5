"""Exact, complete verification of one-parameter families (brightness, contrast; every
family whose ``parameters`` is 1).

The composed network ``t -> logits`` has a single input, so it is piecewise linear on
the segment [lower, upper]. We walk the segment piece by piece: at the current point we
fix the activation pattern (the one that holds just to the right of the point), so every
pre-activation of every layer is affine in t, ``z = a t + c``; the end of the piece is
the nearest point where some pre-activation of the current pattern reaches zero. On each
piece the margins ``f_label - f_j`` are affine in t, so their minimum over the piece is
at an endpoint (the minimum of affine functions is concave). This gives the exact
minimum margin over the box and the exact parameters where the label changes.

When a pattern changes in a few neurons only, the next layer's affine forms are updated
from those columns of its weight matrix (the clip prefix keeps only the clip ReLUs the
box can flip, see ``perturbations.Prefix``), so a walk costs milliseconds on the MLP and
CNN3 used here. All arithmetic is float64.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..bounds import blas_threads
from ..errors import WalkLimit
from ..nets import AffineNet
from .base import Problem, Result

VERSION = "medverify-exact 1.0"
#: relative tolerance deciding that a pre-activation is zero at a breakpoint
REL_TOL = 1e-11
#: refuse (status unknown) beyond this many linear pieces
MAX_PIECES = 200_000
#: fraction of a layer's width above which a flip update is done as a full product
SPARSE_FRACTION = 0.25


@dataclass
class Pieces:
    """Linear pieces of a walk over [start, end] (ascending): on piece k the margins are
    ``slope[k] * t + offset[k]`` for t in [lo[k], hi[k]]."""

    lo: np.ndarray  # (P,)
    hi: np.ndarray  # (P,)
    slope: np.ndarray  # (P, m)
    offset: np.ndarray  # (P, m)

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """Margins at the left and right end of every piece, (P, m) each."""
        return (
            self.slope * self.lo[:, None] + self.offset,
            self.slope * self.hi[:, None] + self.offset,
        )

    def minimum(self) -> tuple[float, float]:
        """(min over the segment of min_j margin_j, a point where it is attained)."""
        left, right = self.values()
        lmin, rmin = left.min(axis=1), right.min(axis=1)
        i, k = int(np.argmin(lmin)), int(np.argmin(rmin))
        if lmin[i] <= rmin[k]:
            return float(lmin[i]), float(self.lo[i])
        return float(rmin[k]), float(self.hi[k])

    def first_violation(self) -> float | None:
        """Smallest t in the segment with min_j margin_j(t) <= 0, or None."""
        left, right = self.values()
        bad = (left <= 0).any(axis=1) | (right <= 0).any(axis=1)
        if not bad.any():
            return None
        k = int(np.argmax(bad))
        if (left[k] <= 0).any():
            return float(self.lo[k])
        # all margins positive at the left end: the earliest root of a margin that ends <= 0
        rows = right[k] <= 0
        roots = -self.offset[k, rows] / self.slope[k, rows]  # slope < 0 on these rows
        return float(np.clip(roots.min(), self.lo[k], self.hi[k]))


def _mask(a: np.ndarray, c: np.ndarray, t: float) -> np.ndarray:
    """Activation pattern just to the right of t: active where z > 0, or z ~ 0 and rising."""
    z = a * t + c
    tol = REL_TOL * (np.abs(a) * abs(t) + np.abs(c))
    return (z > tol) | ((np.abs(z) <= tol) & (a > 0))


def walk(
    net: AffineNet,
    start: float,
    end: float,
    deadline: float | None = None,
    max_pieces: int = MAX_PIECES,
) -> Pieces:
    """All linear pieces of a one-input network over [start, end] (start <= end).

    Raises WalkLimit past ``deadline`` (a time.perf_counter() value) or ``max_pieces``."""
    if net.input_dim != 1:
        raise ValueError(f"walk needs a network with 1 input, got {net.input_dim}")
    start, end = float(start), float(end)
    if not (np.isfinite(start) and np.isfinite(end)) or start > end:
        raise ValueError(f"walk needs a finite segment start <= end, got [{start}, {end}]")
    layers = net.layers
    hidden = len(layers) - 1
    # forms[l] = (n_l, 2) array [a, c]: pre-activation of hidden layer l is a t + c;
    # forms[hidden] is the output layer.
    forms: list[np.ndarray] = [None] * (hidden + 1)  # type: ignore[list-item]
    masks: list[np.ndarray] = [None] * hidden  # type: ignore[list-item]
    w0, b0 = layers[0]
    forms[0] = np.stack([w0[:, 0], b0], axis=1)
    t = start
    for i in range(hidden):
        masks[i] = _mask(forms[i][:, 0], forms[i][:, 1], t)
        w, b = layers[i + 1]
        forms[i + 1] = w @ (forms[i] * masks[i][:, None])
        forms[i + 1][:, 1] += b

    lo, hi, slope, offset = [], [], [], []
    stuck = 0
    while True:
        if len(lo) >= max_pieces:
            raise WalkLimit(f"more than {max_pieces} linear pieces")
        if deadline is not None and len(lo) % 32 == 0 and time.perf_counter() > deadline:
            raise WalkLimit(f"deadline reached after {len(lo)} linear pieces")
        # the nearest zero crossing of any pre-activation under the current pattern
        nxt = end
        for i in range(hidden):
            a, c = forms[i][:, 0], forms[i][:, 1]
            moving = np.where(masks[i], a < 0, a > 0)
            if moving.any():
                nxt = min(nxt, float(np.min(-c[moving] / a[moving])))
        nxt = max(nxt, t)
        if nxt <= t:
            stuck += 1
            if stuck > 3:  # rounding keeps us in place: step one ulp
                nxt = min(float(np.nextafter(t, np.inf)), end)
        else:
            stuck = 0
        if nxt > t or not lo:
            lo.append(t)
            hi.append(nxt)
            slope.append(forms[hidden][:, 0].copy())
            offset.append(forms[hidden][:, 1].copy())
        if nxt >= end:
            break
        t = nxt
        # new pattern at t, layer by layer; a layer whose input forms changed is recomputed
        upstream_changed = False
        for i in range(hidden):
            new = _mask(forms[i][:, 0], forms[i][:, 1], t)
            flipped = np.flatnonzero(new != masks[i])
            masks[i] = new
            w, b = layers[i + 1]
            if upstream_changed or len(flipped) > SPARSE_FRACTION * len(new):
                forms[i + 1] = w @ (forms[i] * new[:, None])
                forms[i + 1][:, 1] += b
                upstream_changed = True
            elif len(flipped):
                sign = np.where(new[flipped], 1.0, -1.0)
                forms[i + 1] += w[:, flipped] @ (forms[i][flipped] * sign[:, None])
                upstream_changed = True
    return Pieces(np.array(lo), np.array(hi), np.array(slope), np.array(offset))


def _reflect(net: AffineNet) -> AffineNet:
    """``u -> net(-u)``."""
    w0, b0 = net.layers[0]
    return AffineNet([(-w0, b0)] + net.layers[1:])


@dataclass
class Analysis:
    min_margin: float  # exact min over [lo, hi] of min_j (f_label - f_j)
    argmin: float  # a parameter where it is attained
    below: float | None  # largest t <= nominal with min margin <= 0 (None: none in [lo, nominal])
    above: float | None  # smallest t >= nominal with min margin <= 0 (None: none in [nominal, hi])
    pieces: int


def analyze(
    net: AffineNet,
    label: int,
    targets,
    lo: float,
    hi: float,
    nominal: float,
    deadline: float | None = None,
    max_pieces: int = MAX_PIECES,
) -> Analysis:
    """Walk [nominal, hi] upwards and [lo, nominal] downwards on the margin network."""
    lo, hi = float(lo), float(hi)
    if not lo <= hi:
        raise ValueError(f"empty parameter interval [{lo}, {hi}]")
    nominal = min(max(float(nominal), lo), hi)
    margins = net.margin_net(label, targets)
    # the products here are small (n x 2): threaded BLAS only adds contention
    with blas_threads(1):
        up = walk(margins, nominal, hi, deadline, max_pieces)
        down = walk(_reflect(margins), -nominal, -lo, deadline, max_pieces - len(up.lo))
    up_min, up_at = up.minimum()
    down_min, down_at = down.minimum()
    first_down = down.first_violation()
    if up_min <= down_min:
        best, at = up_min, up_at
    else:
        best, at = down_min, -down_at
    return Analysis(
        min_margin=best,
        argmin=at,
        below=None if first_down is None else -first_down,
        above=up.first_violation(),
        pieces=len(up.lo) + len(down.lo),
    )


def label_change_points(
    net: AffineNet, label: int, targets, lo: float, hi: float, nominal: float
) -> tuple[float | None, float | None]:
    """The parameters nearest to ``nominal`` on each side, within [lo, hi], where some
    target's logit reaches the label's (min margin <= 0): (below, above), None where the
    label never changes on that side. E.g. the critical brightness of an image is
    ``min(-below, above)`` from a walk over [-1, 1] with nominal 0."""
    res = analyze(net, label, targets, lo, hi, nominal)
    return res.below, res.above


def nominal_parameter(problem: Problem) -> float:
    """The parameter that gives the unperturbed image (brightness 0, contrast 1; the
    family's ``nominal()``), else the middle of the box (a VNNLIB box)."""
    fam = problem.family
    if fam is not None and fam.structured:
        return float(np.asarray(fam.nominal()).reshape(-1)[0])
    return 0.5 * float(problem.lower[0] + problem.upper[0])


class Verifier:
    name = "exact"
    #: conda env of its jobs (envs/<conda_env>.yaml): numpy only; shares the milp env
    conda_env = "milp"

    def __init__(self, max_pieces: int = MAX_PIECES, margin_s: float = 0.05):
        self.max_pieces = int(max_pieces)
        self.margin_s = float(margin_s)

    def tool_version(self) -> str:
        return VERSION

    def verify(self, problem: Problem, timeout_s: float) -> Result:
        start = time.perf_counter()
        n = problem.net.input_dim
        if n != 1:
            family = problem.family.name if problem.family is not None else "unknown"
            raise ValueError(
                f"exact backend handles one-parameter families only: {family!r} has {n} parameters"
            )
        nominal = nominal_parameter(problem)
        deadline = start + max(float(timeout_s) - self.margin_s, 0.0)
        try:
            res = analyze(
                problem.net,
                problem.label,
                problem.targets,
                problem.lower[0],
                problem.upper[0],
                nominal,
                deadline=deadline,
                max_pieces=self.max_pieces,
            )
        except WalkLimit as exc:
            status = "timeout" if "deadline" in str(exc) else "unknown"
            return Result(status, message=f"exact walk stopped: {exc}")
        stats = {
            "pieces": res.pieces,
            "nominal": nominal,
            "label_change_below": res.below,
            "label_change_above": res.above,
            "argmin": res.argmin,
            "walk_time_s": time.perf_counter() - start,
        }
        if res.min_margin > 0:
            return Result(
                "robust",
                margin_lower_bound=res.min_margin,
                message=f"exact minimum margin {res.min_margin:.6g} over {res.pieces} pieces",
                stats=stats,
            )
        return Result(
            "counterexample",
            params=np.array([res.argmin]),
            margin_lower_bound=res.min_margin,
            message=f"exact minimum margin {res.min_margin:.6g} at parameter {res.argmin!r}",
            stats=stats,
        )
