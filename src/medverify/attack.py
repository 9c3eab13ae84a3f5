"""Falsification by projected gradient descent on a family's parameters.

Shared by the backends (not a backend itself): it looks for parameters p in the box
[lower, upper] that drive ``min_j (f_label(p) - f_j(p))`` below zero. The family's own
sample points (box corners first) and, for one or two parameters, a dense grid are tried
before PGD with restarts. Every candidate is confirmed in float64 on the canonical net
(``problem.margins``); only a margin <= -CEX_MARGIN counts.

This module imports no backend (the backends import it): no import cycle.
"""

from __future__ import annotations

import time

import numpy as np

#: A counterexample must reach a float64 margin <= -CEX_MARGIN on the canonical net:
#: closer to the boundary, a float32 replay through onnxruntime cannot be trusted to agree.
CEX_MARGIN = 1e-5

GRID_DIMS = 2  # dense grid for families with at most this many parameters


def _margins_np(problem, points: np.ndarray, net=None) -> np.ndarray:
    """min_j margin for each row of ``points`` (float64, canonical net)."""
    net = net if net is not None else problem.margin_net()
    return net.forward(np.atleast_2d(points)).min(axis=1)


def _best_negative(problem, points: np.ndarray, net=None) -> tuple[np.ndarray | None, float]:
    if len(points) == 0:
        return None, np.inf
    vals = _margins_np(problem, points, net)
    i = int(np.argmin(vals))
    return (points[i].copy() if vals[i] <= -CEX_MARGIN else None), float(vals[i])


def gradient(net, x: np.ndarray, row: int) -> np.ndarray:
    """Gradient of output ``row`` of a piecewise-linear net at x (its linear piece)."""
    pre = net.pre_activations(x)
    g = net.layers[-1][0][row]
    for k in range(len(pre) - 1, -1, -1):
        g = (g * (pre[k] > 0)) @ net.layers[k][0]
    return g


def sign_descent(problem, start: np.ndarray, rounds: int = 20, net=None) -> np.ndarray:
    """Walk from ``start`` along the sign of the worst margin's gradient, staying in the
    box; keep a step only if it lowers the minimum margin (numpy only, no torch)."""
    net = net if net is not None else problem.margin_net()
    lo, hi = problem.lower, problem.upper
    best = np.clip(np.asarray(start, dtype=np.float64), lo, hi)
    best_m = float(np.min(net.forward(best)))
    step = 1e-2
    for _ in range(rounds):
        row = int(np.argmin(net.forward(best)))
        cand = np.clip(best - step * (hi - lo) * np.sign(gradient(net, best, row)), lo, hi)
        m = float(np.min(net.forward(cand)))
        if m < best_m:
            best, best_m = cand, m
            step = min(step * 2, 0.25)
        else:
            step /= 4
            if step < 1e-6:
                break
    return best


def corner_search(problem, net=None, rounds: int = 20) -> np.ndarray | None:
    """A cheap numpy falsifier: for each margin, the box corner its gradient at the centre
    points to (FGSM), refined by ``sign_descent``. Parameters with margin <= -CEX_MARGIN,
    or None."""
    net = net if net is not None else problem.margin_net()
    lo, hi = problem.lower, problem.upper
    centre = (lo + hi) / 2
    for row in np.argsort(net.forward(centre)):
        g = gradient(net, centre, int(row))
        p = sign_descent(problem, np.where(g > 0, lo, hi), rounds=rounds, net=net)
        if float(np.min(net.forward(p))) <= -CEX_MARGIN:
            return p
    return None


def grid_points(lower: np.ndarray, upper: np.ndarray, total: int = 4097) -> np.ndarray:
    """An even grid over a box of one or two dimensions (``total`` points or fewer)."""
    n = len(lower)
    per = max(2, int(round(total ** (1.0 / n))))
    axes = [np.linspace(lo, hi, per) for lo, hi in zip(lower, upper, strict=True)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def pgd(
    model,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    restarts: int = 8,
    steps: int = 50,
    seed: int = 0,
    deadline: float | None = None,
    starts: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Minimise ``min_j model(p)_j`` over the box by signed-gradient PGD, all restarts in one
    batch. ``model``: a float64 torch module mapping (batch, n) -> (batch, m) margins.
    ``starts``: optional initial points (rows) used before random ones.
    Returns the best point and its value under ``model`` (not yet confirmed in numpy)."""
    import torch

    lo = torch.as_tensor(lower, dtype=torch.float64)
    hi = torch.as_tensor(upper, dtype=torch.float64)
    gen = torch.Generator().manual_seed(int(seed))
    width = hi - lo
    init = []
    if starts is not None and len(starts):
        init.append(torch.as_tensor(np.atleast_2d(starts)[:restarts], dtype=torch.float64))
    n_rand = restarts - sum(len(t) for t in init)
    if n_rand > 0:
        u = torch.rand((n_rand, len(lo)), generator=gen, dtype=torch.float64)
        # half of the random starts at random vertices (PGD on a ReLU net tends to end there)
        n_vert = n_rand // 2
        if n_vert:
            u[:n_vert] = (u[:n_vert] > 0.5).to(torch.float64)
        init.append(lo + u * width)
    p = torch.cat(init).clamp(lo, hi)
    best_p = p[0].detach().clone()
    best_v = np.inf
    for step in range(max(int(steps), 1)):
        if deadline is not None and time.perf_counter() > deadline:
            break
        p.requires_grad_(True)
        vals = model(p).min(dim=1).values
        v_min, i_min = vals.detach().min(dim=0)
        if float(v_min) < best_v:
            best_v = float(v_min)
            best_p = p[int(i_min)].detach().clone()
        (grad,) = torch.autograd.grad(vals.sum(), p)
        # step size decays from a quarter of the box width to ~1% of it (cosine)
        frac = 0.5 * (1 + np.cos(np.pi * step / max(steps, 1)))
        size = width * (0.01 + 0.24 * frac)
        with torch.no_grad():
            p = (p - size * grad.sign()).clamp(lo, hi)
            # tiny random jitter for points stuck on a zero gradient (dead ReLUs)
            stuck = grad.abs().sum(dim=1) == 0
            if bool(stuck.any()):
                noise = torch.rand((int(stuck.sum()), len(lo)), generator=gen, dtype=torch.float64)
                p[stuck] = lo + noise * width
    with torch.no_grad():
        vals = model(p).min(dim=1).values
        v_min, i_min = vals.min(dim=0)
        if float(v_min) < best_v:
            best_v = float(v_min)
            best_p = p[int(i_min)].detach().clone()
    return best_p.numpy(), best_v


def budget_error(restarts: int, steps: int) -> str | None:
    """What is wrong with a PGD budget for ``pgd_per_label`` (its option name as on the
    benchmarks' command lines, and the value), or None."""
    for name, value in (("restarts", restarts), ("steps", steps)):
        if value < 1:
            return f"--{name} must be >= 1, got {value}"
    return None


def pgd_per_label(problem, restarts: int = 32, steps: int = 200):
    """Targeted PGD, one margin row (wrong label) at a time, each with its own restarts
    (seed = the row): yields ``(row, point)``, the point clipped to the box and not yet
    confirmed. Heavier than ``find_counterexample``'s joint attack; the benchmarks use it
    to ask whether an undecided instance hides a counterexample."""
    import torch

    net = problem.margin_net()
    model = net.to_torch(torch.float64)
    for row in range(len(net.layers[-1][1])):
        point, _ = pgd(
            lambda x, row=row: model(x)[:, row : row + 1],
            problem.lower,
            problem.upper,
            restarts=restarts,
            steps=steps,
            seed=row,
        )
        yield row, np.clip(point, problem.lower, problem.upper)


def find_counterexample(
    problem,
    *,
    restarts: int = 8,
    steps: int = 50,
    seed: int = 0,
    time_budget_s: float = 5.0,
    samples: int = 16,
    model=None,
    rounds: int = 4,
    grid: bool = True,
) -> np.ndarray | None:
    """Search the problem's box for parameters with margin <= -CEX_MARGIN.

    Order: the family's sample points (corners first), a dense grid for one- or
    two-parameter families (``grid``), then PGD with ``restarts`` restarts (repeated with
    fresh seeds while time is left, up to ``rounds`` rounds). Deterministic given ``seed``. Returns the
    parameters (float64) with the most negative margin found, or None."""
    import torch

    deadline = time.perf_counter() + max(float(time_budget_s), 0.0)
    net = problem.margin_net()
    lo, hi = problem.lower, problem.upper
    rng = np.random.default_rng(seed)
    starts = np.clip(problem.family.sample(samples, rng), lo, hi)
    found, _ = _best_negative(problem, starts, net)
    if found is not None:
        return found
    if grid and len(lo) <= GRID_DIMS:
        found, _ = _best_negative(problem, grid_points(lo, hi), net)
        if found is not None:
            return found
    if np.all(hi == lo):
        return None
    model = model if model is not None else net.to_torch(torch.float64)
    for rnd in range(rounds):
        if time.perf_counter() > deadline:
            break
        p, _ = pgd(
            model,
            lo,
            hi,
            restarts=restarts,
            steps=steps,
            seed=seed + 7919 * rnd,
            deadline=deadline,
            starts=starts if rnd == 0 else None,
        )
        found, _ = _best_negative(problem, np.clip(p, lo, hi)[None], net)
        if found is not None:
            return found
    return None
