"""Pre-activation bounds of an AffineNet over an input box, in numpy (float64).

``interval`` is plain interval arithmetic; ``crown`` is the standard symbolic backward
linear relaxation (CROWN / DeepPoly style): every layer's pre-activation is bounded by
back-substituting linear bounds through the earlier layers, with the triangle upper
relaxation of an unstable ReLU and the adaptive (0 or 1) lower slope. Each layer's
bounds are intersected with the interval ones, so ``crown`` is never looser.

Bounds are sound in exact arithmetic; callers that need a proof should keep a small
margin (see ``SAFETY``) for float64 round-off.
"""

from __future__ import annotations

import numpy as np

from .nets import AffineNet

#: relative slack added to every bound to cover float64 round-off
SAFETY = 1e-9


def _relaxation(lo: np.ndarray, hi: np.ndarray):
    """Per neuron: lower slope (lower intercept is 0), upper slope, upper intercept."""
    active = lo >= 0
    unstable = (lo < 0) & (hi > 0)
    lower_slope = active.astype(np.float64)
    upper_slope = active.astype(np.float64)
    upper_icpt = np.zeros_like(lo)
    if unstable.any():
        lo_u, u = lo[unstable], hi[unstable]
        upper_slope[unstable] = u / (u - lo_u)
        upper_icpt[unstable] = -lo_u * u / (u - lo_u)
        lower_slope[unstable] = (u > -lo_u).astype(np.float64)
    return lower_slope, upper_slope, upper_icpt


def _back_substitute(net, relax, k, coeff, const, lower, upper, want_lower):
    """Bound ``coeff @ h_{k-1} + const`` (h the post-ReLU of layer k-1) over the box."""
    a = coeff
    c = const.copy()
    for m in range(k - 1, -1, -1):
        ls, us, ui = relax[m]
        ap, an = np.maximum(a, 0.0), np.minimum(a, 0.0)
        if want_lower:
            az = ap * ls + an * us
            c += an @ ui
        else:
            az = ap * us + an * ls
            c += ap @ ui
        w, b = net.layers[m]
        c += az @ b
        a = az @ w
    ap, an = np.maximum(a, 0.0), np.minimum(a, 0.0)
    if want_lower:
        return c + ap @ lower + an @ upper
    return c + ap @ upper + an @ lower


def _pad(lo, hi):
    slack = SAFETY * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
    return lo - slack, hi + slack


def interval(net: AffineNet, lower, upper) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval bounds (lo, hi) on every layer's pre-activation, output layer included."""
    return [_pad(lo, hi) for lo, hi in net.interval_bounds(lower, upper)]


def crown(net: AffineNet, lower, upper) -> list[tuple[np.ndarray, np.ndarray]]:
    """CROWN bounds (lo, hi) on every layer's pre-activation, output layer included."""
    lower = np.asarray(lower, np.float64)
    upper = np.asarray(upper, np.float64)
    if np.any(lower > upper):
        raise ValueError("box lower bound exceeds upper bound")
    ibp = net.interval_bounds(lower, upper)
    out, relax = [], []
    for k, (w, b) in enumerate(net.layers):
        ilo, ihi = ibp[k]
        if k == 0:
            lo, hi = ilo, ihi
        else:
            lo = _back_substitute(net, relax, k, w, b, lower, upper, True)
            hi = _back_substitute(net, relax, k, w, b, lower, upper, False)
            lo, hi = np.maximum(lo, ilo), np.minimum(hi, ihi)
        lo, hi = _pad(lo, hi)
        out.append((lo, hi))
        if k < len(net.layers) - 1:
            relax.append(_relaxation(lo, hi))
    return out


METHODS = {"interval": interval, "crown": crown}


def compute(net: AffineNet, lower, upper, method: str = "crown"):
    try:
        fn = METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown bound method {method!r}: choose one of {', '.join(METHODS)}"
        ) from None
    return fn(net, lower, upper)
