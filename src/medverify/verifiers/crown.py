"""alpha,beta-CROWN-style backend: our bound engine (``medverify.bounds``) plus our own
branch and bound.

Pipeline (each stage stops as soon as it decides):

0. Fast path in numpy, before torch is even imported: a sign-gradient attack from the
   corner each margin's gradient points to (``attack.corner_search``), then CROWN bounds
   in float64 (``bounds.crown``) -> counterexample or robust. Option ``fast_path=False``
   skips the attack (the CROWN bound is still computed here, in numpy).
1. PGD attack on the family parameters (``medverify.attack``) -> counterexample.
2. alpha-CROWN (``bounds.Batched.optimize``: lower slopes of unstable ReLUs optimised).
3. Branch and bound until proof, counterexample or timeout, on ``bounds.Batched``:

   - few parameters (brightness, contrast, bias fields up to ``input_split_max_dim``):
     *input splitting*. The box is bisected along its widest side; a batch of sub-boxes is
     bounded by one batched CROWN call, and the midpoint and the linear bound's minimiser
     of every sub-box are checked as counterexamples.
   - many parameters (linf): *ReLU splitting* with beta-CROWN split constraints, on the
     margins the root bounds leave open, one tree per open margin (``per_margin``). The
     domains of a batch get CROWN intermediate bounds (or, on wide nets, their parent's,
     tightened in the deeper layers by ``bounds.Batched.tighten`` when ``refine``) with
     their split neurons clamped
     (z >= 0 or z <= 0) and intersected with their parent's bounds, and output bounds
     optimised over alpha and the split multipliers beta >= 0 (Adam). Every iterate is a
     valid bound (weak duality), so the best one is kept. Branching: the unstable neuron
     with the largest BaBSR-like score ``|A| * (-l u / (u - l))`` (A its coefficient in
     the worst margin's bound). A domain whose ReLUs are all fixed is decided exactly by
     an LP (scipy HiGHS). PGD restarts from the worst domains' bound minimisers run
     inside the loop (counterexamples hide in sub-domains).

   Soundness: ``robust`` only when every leaf domain has a lower bound above
   ``PROVE_TOL``, is infeasible (some l > u), or its LP optimum is above ``PROVE_TOL``.
   A counterexample is any point of the box with float64 margin <= -CEX_MARGIN on
   ``problem.net``.
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import queue
import time

import numpy as np

from .. import bounds
from ..attack import corner_search, find_counterexample, pgd
from ..errors import ConfigError
from .base import CEX_MARGIN, Problem, Result

PROVE_TOL = bounds.PROVE_TOL  # a lower bound must exceed this to count as a proof
SAFETY_S = 0.3  # stop this long before the deadline
INHERIT_ABOVE = 20_000  # see Verifier.inherit_bounds
REFINE_MIN_LAYERS = 2  # see Verifier.refine
MILP_PROVE_TOL = bounds.MILP_PROVE_TOL  # a MILP proof's margin must exceed this
#: see Verifier.milp_after (the CNN3s: 3e4-6e4 nonzero hidden weights; MLPs 784-128-128:
#: 1.2e5, 784-256-256: 2.7e5)
MILP_MAX_WEIGHTS = 100_000


def _lp_leaf(net, lo, hi, bounds_np, splits_np):
    """Exact minimum of min_j margin over one domain whose ReLUs are all fixed
    (a linear program per margin). Returns (status, point): status 'proven' |
    'infeasible' | 'candidate' | 'failed'."""
    from scipy.optimize import linprog

    n0 = len(lo)
    M = np.eye(n0)
    c = np.zeros(n0)
    a_ub, b_ub = [], []
    for i, (w, b) in enumerate(net.layers[:-1]):
        zm, zc = w @ M, w @ c + b
        l_i, u_i = bounds_np[i]
        act = (l_i >= 0) | (splits_np[i] > 0)
        # constraints: active -> z >= 0, inactive -> z <= 0
        a_ub.append(np.where(act[:, None], -zm, zm))
        b_ub.append(np.where(act, zc, -zc))
        M, c = zm * act[:, None], zc * act
    w, b = net.layers[-1]
    obj_m, obj_c = w @ M, w @ c + b
    a_ub = np.vstack(a_ub) if a_ub else None
    b_ub = np.concatenate(b_ub) if b_ub else None
    best_val, best_x = np.inf, None
    for j in range(obj_m.shape[0]):
        res = linprog(
            obj_m[j], A_ub=a_ub, b_ub=b_ub, bounds=list(zip(lo, hi, strict=True)), method="highs"
        )
        if res.status == 2:
            return "infeasible", None
        if res.status != 0:
            return "failed", None
        val = float(res.fun + obj_c[j])
        if val < best_val:
            best_val, best_x = val, np.clip(res.x, lo, hi)
    if best_val > PROVE_TOL:
        return "proven", best_val
    return "candidate", best_x


def _milp_min(net, lo, hi, bounds_np, time_limit):
    """Does each margin of ``net`` stay above MILP_PROVE_TOL on the box? A mixed-integer
    program per margin (scipy's HiGHS), exact for the network: ``bounds.BigM`` over the
    hidden bounds ``bounds_np`` (valid on the whole box), the margin cut off at
    MILP_PROVE_TOL. Returns (status, value): 'proven' with a lower bound of every margin
    (the program infeasible: MILP_PROVE_TOL; or HiGHS's dual bound when it exceeds that
    at the time limit), 'candidate' with a feasible point (margin <= MILP_PROVE_TOL by
    the solver; the caller checks it in float64), 'timeout' or 'failed'."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    t_end = time.perf_counter() + time_limit
    enc = bounds.BigM(net, lo, hi, bounds_np)
    box = Bounds(enc.var_lower, enc.var_upper)
    proven = np.inf
    for r in range(enc.out.shape[0]):
        left = t_end - time.perf_counter()
        if left <= 0.05:
            return "timeout", None
        cost = enc.out[r]
        # the cutoff row "margin <= MILP_PROVE_TOL": a node whose bound exceeds it is
        # pruned, so a proof ends as an infeasible program as soon as the bound allows
        # (minimising without it, HiGHS goes on to the optimum); any feasible point is
        # a counterexample candidate
        cons = [
            LinearConstraint(enc.A, enc.row_lower, enc.row_upper),
            LinearConstraint(cost, -np.inf, MILP_PROVE_TOL - enc.out_bias[r]),
        ]
        res = milp(
            cost.toarray().ravel(),
            constraints=cons,
            bounds=box,
            integrality=enc.integral,
            options={"time_limit": left, "disp": False},
        )
        bound = getattr(res, "mip_dual_bound", None)
        bound = (
            -np.inf if bound is None or not np.isfinite(bound) else float(bound) + enc.out_bias[r]
        )
        if res.x is not None and res.fun is not None:
            return "candidate", np.clip(res.x[: enc.n_inputs], lo, hi)
        if res.status == 2:  # no point of the box has margin <= MILP_PROVE_TOL
            proven = min(proven, MILP_PROVE_TOL)
            continue
        if res.status == 1 and bound > MILP_PROVE_TOL:  # stopped, but the bound proves it
            proven = min(proven, bound)
            continue
        return ("timeout" if res.status == 1 else "failed"), None
    return "proven", proven


class Verifier:
    name = "crown"
    #: conda env of its jobs (envs/<conda_env>.yaml): torch and numpy are all it needs
    conda_env = "base"

    def __init__(
        self,
        attack: bool = True,
        attack_restarts: int = 8,
        attack_steps: int = 50,
        attack_budget_s: float = 5.0,
        alpha: bool = True,
        batch_size: int = 128,
        seed: int = 0,
        input_split_max_dim: int = 6,
        opt_iters: int = 20,
        bab: bool = True,
        fast_path: bool = True,
        threads: int = 1,
        inherit_bounds: bool | None = None,
        warm_start: bool = True,
        fsb_k: int = 16,
        bab_iters: int = 10,
        prune_margins: bool = True,
        refine: bool | None = None,
        per_margin: bool = True,
        pgd_first: bool = False,
        pgd_before_bab: bool = False,
        milp_after: float | None = 0.5,
        milp_max_weights: int = MILP_MAX_WEIGHTS,
        output_alpha_first: bool = True,
        search_float32: bool = True,
        lr_beta: float = bounds.LR_BETA,
        lr_beta_new: float = bounds.LR_BETA_NEW,
        drop_inactive: bool = True,
    ):
        self.attack = bool(attack)
        self.attack_restarts = int(attack_restarts)
        self.attack_steps = int(attack_steps)
        self.attack_budget_s = float(attack_budget_s)
        self.alpha = bool(alpha)
        self.batch_size = max(2, int(batch_size))
        self.seed = int(seed)
        self.input_split_max_dim = int(input_split_max_dim)
        self.opt_iters = int(opt_iters)
        self.bab = bool(bab)
        self.fast_path = bool(fast_path)  # numpy attack before torch
        # cores this job may use: the ReLU-split branch and bound runs in that many
        # worker processes sharing one tree; every process runs torch and BLAS on one
        # thread (torch's own threads made this branch and bound slower, docs/bounds.md)
        self.threads = max(1, int(threads))
        # ReLU split: children take the parent's hidden bounds (splits clamped) instead of
        # recomputing them by CROWN, whose cost grows with width x input size per domain;
        # None: recompute on small nets (input size x ReLUs <= INHERIT_ABOVE), inherit above
        self.inherit_bounds = inherit_bounds
        # ReLU split: a child starts its alpha/beta optimisation from its parent's best
        # slopes and split multipliers (else from the root's slopes and beta = 0)
        self.warm_start = bool(warm_start)
        # ReLU split branching: the fsb_k neurons with the best BaBSR-like scores are
        # candidates; each one's two children are bounded (parent's slopes and split
        # multipliers, no optimisation) in one batched pass and the candidate whose worse
        # child bound is highest wins (filtered smart branching); fsb_k <= 1: BaBSR only
        self.fsb_k = max(1, int(fsb_k))
        # alpha/beta steps per ReLU-split batch (the root gets opt_iters): children start
        # from their parent's parameters, so fewer steps suffice
        self.bab_iters = int(bab_iters)
        # ReLU split: margins the root bounds prove are left out of the branch and bound
        self.prune_margins = bool(prune_margins)
        # ReLU split with inherited bounds: recompute the later layers' unstable neurons'
        # bounds in every domain (one CROWN pass with the root's optimised slopes, layer
        # 1's from the root's pass: Batched.set_root); None: on nets with at least
        # REFINE_MIN_LAYERS hidden layers (measured on the frontier nets, docs/bounds.md)
        self.refine = refine
        # the PGD attack before alpha-CROWN instead of after it: alpha-CROWN proves most
        # instances the fast path leaves open, and a proof makes the attack's time a
        # waste; with the attack first, a counterexample only PGD finds comes sooner
        self.pgd_first = bool(pgd_first)
        # the attack after alpha-CROWN as a step of its own; off (default), on the
        # ReLU-split path it runs in the first round of the first branch-and-bound tree,
        # on its margin (the worst), from the root domain's bound minimiser and random
        # restarts, once, where the separate step ran two rounds of random restarts on
        # every margin (docs/bounds.md: the CNN3 frontier medians, side by side)
        self.pgd_before_bab = bool(pgd_before_bab)
        # alpha-CROWN first on the output alone, over CROWN's hidden bounds (a few rows:
        # cheap), and only when that fails with the hidden layers' bounds optimised too
        # (a pass per unstable neuron of layers >= 1: most of alpha-CROWN's time on a CNN)
        self.output_alpha_first = bool(output_alpha_first)
        # ReLU split: after this share of the time left after alpha-CROWN, a tree the
        # branch and bound has not closed goes to an exact MILP of its margin (scipy's
        # HiGHS, big-M over the root's hidden bounds) for the rest; None: no MILP. Only
        # on nets with at most milp_max_weights nonzero hidden-layer weights (the size of
        # the program): on the frontier CNN3s the MILP closes what the branch and bound
        # leaves open, on the dense MNIST MLPs it does not and the time is the tree's
        self.milp_after = None if milp_after is None else float(milp_after)
        self.milp_max_weights = int(milp_max_weights)
        if self.milp_after is not None and not 0.0 <= self.milp_after <= 1.0:
            raise ConfigError(f"crown option milp_after must be in [0, 1], got {milp_after!r}")
        # ReLU split: one tree per open margin instead of one tree for all of them
        self.per_margin = bool(per_margin)
        # alpha/beta search in float32 (about half the cost of a pass); every bound it
        # returns is recomputed in float64 with the parameters found (bounds.Batched)
        self.search_float32 = bool(search_float32)
        # ReLU split: Adam step sizes of the split multipliers (beta) in every batch, of
        # one warm-started from its parent's value and of one starting at 0 (a new split)
        self.lr_beta, self.lr_beta_new = float(lr_beta), float(lr_beta_new)
        # ReLU split: each tree's net without the hidden neurons the root bounds show off
        # on the whole box (the same function there; every pass's products shrink)
        self.drop_inactive = bool(drop_inactive)
        for key in ("lr_beta", "lr_beta_new"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"crown option {key} must be > 0, got {getattr(self, key)!r}")

    def tool_version(self) -> str:
        try:
            from importlib.metadata import version

            v = version("torch")
        except Exception:  # noqa: BLE001
            v = "?"
        return f"medverify bounds + BaB (torch {v})"

    # ------------------------------------------------------------------------------
    def verify(self, problem: Problem, timeout_s: float) -> Result:
        with bounds.blas_threads(1):  # one thread per process: see ``threads``
            return self._verify(problem, timeout_s)

    def _verify(self, problem: Problem, timeout_s: float) -> Result:
        start = time.perf_counter()
        deadline = start + max(float(timeout_s) - SAFETY_S, 0.05 * float(timeout_s))
        stats: dict = {"domains": 0}
        margin = problem.margin_net()

        # 0. the fast path, numpy only (no torch import): a sign-gradient attack from the
        # corner each margin's gradient points to, then CROWN bounds in float64. Most
        # instances end here in milliseconds.
        if self.fast_path and self.attack:
            t0 = time.perf_counter()
            cex = corner_search(problem, net=margin)
            stats["fast_attack_time_s"] = round(time.perf_counter() - t0, 4)
            if cex is not None:
                return self._cex(problem, cex, "found by sign-gradient attack", stats, "attack")
        t0 = time.perf_counter()
        lb = bounds.crown(margin, problem.lower, problem.upper)[-1][0]
        stats["crown_lower_bound"] = float(lb.min())
        stats["crown_time_s"] = round(time.perf_counter() - t0, 4)
        if lb.min() > PROVE_TOL:
            return self._robust(float(lb.min()), "CROWN", stats)

        import torch

        torch.set_num_threads(1)
        bounds.retain_freed_memory()

        # 1. with pgd_first, the attack (sample points, grid for low-dimensional families,
        # PGD) here; else after alpha-CROWN, when it did not prove the instance (2b)
        if self.pgd_first:
            result = self._pgd(problem, deadline, stats)
            if result is not None:
                return result

        # 2. alpha-CROWN on the whole box: the output alone first (output_alpha_first),
        # then intermediate layers included; these bounds are the root of the branch and
        # bound (every domain intersects with them)
        eng = self._engine(margin, problem.lower, problem.upper)
        root = None
        self._root_alphas = None
        if self.alpha and margin.relu_count:
            t0 = time.perf_counter()
            lo_t, hi_t = eng.lo[None], eng.hi[None]
            hidden = None  # stage 1's hidden bounds (CROWN's), stage 2's starting point
            for full in (False, True) if self.output_alpha_first else (True,):
                if full:
                    root = eng.optimized_hidden(
                        lo_t, hi_t, iters=self.opt_iters, deadline=deadline, base=hidden
                    )
                lb_a, _, _, hidden, _ = eng.margins_lower(
                    lo_t, hi_t, parent=root, iters=3 * self.opt_iters, deadline=deadline
                )
                lb = np.maximum(lb, lb_a[0].numpy())
                if full:
                    self._root_alphas = eng.last_alphas
                else:
                    stats["alpha_output_lower_bound"] = float(lb.min())
                stats["alpha_crown_lower_bound"] = float(lb.min())
                stats["alpha_crown_time_s"] = round(time.perf_counter() - t0, 4)
                if lb.min() > PROVE_TOL:
                    return self._robust(float(lb.min()), "alpha-CROWN", stats)
        relu_split = self.bab and problem.net.input_dim > self.input_split_max_dim
        if not self.pgd_first and (self.pgd_before_bab or not relu_split):  # 2b. the attack
            result = self._pgd(problem, deadline, stats)
            if result is not None:
                return result
        if not self.bab:
            return Result(
                "unknown", margin_lower_bound=None, message="bounds inconclusive", stats=stats
            )
        if time.perf_counter() > deadline:
            return Result("timeout", message="time ran out after alpha-CROWN", stats=stats)

        # 3. branch and bound
        t0 = time.perf_counter()
        if problem.net.input_dim <= self.input_split_max_dim:
            result = self._input_split(problem, margin, eng, deadline, stats)
        else:
            result = self._relu_split_margins(problem, margin, eng, root, lb, deadline, stats)
        stats["bab_time_s"] = round(time.perf_counter() - t0, 4)
        return result

    def _pgd(self, problem, deadline, stats):
        """The attack's Result (a counterexample, or a timeout when it used up the time),
        or None to go on."""
        t0 = time.perf_counter()
        cex = None
        if self.attack:
            cex = find_counterexample(
                problem,
                restarts=self.attack_restarts,
                steps=self.attack_steps,
                seed=self.seed,
                time_budget_s=min(self.attack_budget_s, max(0.0, 0.1 * (deadline - t0))),
                rounds=2,
            )
        stats["attack_time_s"] = round(time.perf_counter() - t0, 4)
        if cex is not None:
            return self._cex(problem, cex, "found by PGD attack", stats, "attack")
        if time.perf_counter() > deadline:
            return Result("timeout", message="time ran out during the attack", stats=stats)
        return None

    def _relu_split_margins(self, problem, margin, eng, root, lb, deadline, stats):
        """ReLU-split branch and bound on the margins the root bounds leave open
        (``prune_margins``; a margin proven at the root holds on every domain), all in one
        tree or, with ``per_margin``, one tree per open margin, worst root bound first
        (each tree then bounds one row per domain and branches for that margin alone).
        A counterexample of any subset of the margins is one of the problem; the proof
        is the root's for the pruned margins plus every tree's."""
        rows = np.arange(len(lb))
        if self.prune_margins:
            rows = rows[lb <= PROVE_TOL]
            rows = rows[np.argsort(lb[rows], kind="stable")]
        groups = [[int(j)] for j in rows] if self.per_margin else [list(rows)]
        # the MILP handoff's size test is of the full net (milp_max_weights was set on it)
        weights = sum(int(np.count_nonzero(w)) for w, _ in margin.layers[:-1])
        if self.drop_inactive:
            if root is None:
                root = eng.crown(eng.lo[None], eng.hi[None])[:-1]
            full = margin.relu_count
            margin, eng, root = self._without_inactive(margin, eng, root)
            stats["dropped_neurons"] = full - margin.relu_count
        root_alphas = self._root_alphas
        domains = 0
        trees = []
        bound = float(lb[np.setdiff1d(np.arange(len(lb)), rows)].min(initial=np.inf))
        result = None
        # without an attack before the branch and bound, the first tree's first round
        # runs it, on the worst margin
        attack_first = not (self.pgd_first or self.pgd_before_bab)
        bab_end = deadline  # with milp_after, the trees' branch and bound ends here
        use_milp = self.milp_after is not None and weights <= self.milp_max_weights
        if use_milp:
            now = time.perf_counter()
            bab_end = now + self.milp_after * max(deadline - now, 0.0)
        for group in groups:
            if len(group) == len(lb):
                sub, sub_eng = margin, eng
            else:
                sub, sub_eng = self._sub_margins(margin, eng, group, root_alphas)
            result = self._relu_split(problem, sub, sub_eng, root, bab_end, stats, attack_first)
            attack_first = False
            if result.status == "timeout" and use_milp:
                result = self._milp_tree(problem, sub, sub_eng, root, deadline, stats)
            domains += stats["domains"]
            trees.append(f"{group}: {result.status} after {stats['domains']} domains")
            if result.status != "robust":
                break
            bound = min(bound, result.margin_lower_bound)
        stats["domains"] = domains
        stats["bab_margins"] = len(rows)
        if self.per_margin:
            stats["bab_trees"] = trees
        if result.status == "robust":
            result.margin_lower_bound = bound
        return result

    def _milp_tree(self, problem, margin, eng, root, deadline, stats):
        """An exact MILP of ``margin``'s rows over the whole box (``_milp_min``), big-M
        over the root's hidden bounds, until ``deadline``: the Result of a tree the
        branch and bound left open."""
        t0 = time.perf_counter()
        if root is None:
            root = eng.crown(eng.lo[None], eng.hi[None])[:-1]
        bounds_np = [(lo[0].numpy(), up[0].numpy()) for lo, up in root]
        status, val = _milp_min(
            margin, problem.lower, problem.upper, bounds_np, deadline - time.perf_counter()
        )
        stats["milp_time_s"] = round(stats.get("milp_time_s", 0.0) + time.perf_counter() - t0, 4)
        if status == "proven":
            return self._robust(val, "MILP", stats)
        if status == "candidate" and margin.forward(val).min() <= -CEX_MARGIN:
            return self._cex(problem, val, "MILP", stats, "milp")
        if status == "timeout":
            return Result("timeout", message="MILP: time ran out", stats=stats)
        return Result("unknown", message=f"MILP: {status}", stats=stats)

    def _without_inactive(self, margin, eng, root):
        """The margin net without the hidden neurons the root bounds show off on the whole
        box (``bounds.drop_inactive``: the same function on the box, smaller products in
        every pass), its bound engine and root bounds, and the root's slopes (of the
        output rows, ``_root_alphas``, and of the hidden layers' rows) restricted to
        match. Unchanged when no neuron is off."""
        import torch

        small, keep = bounds.drop_inactive(margin, root)
        if keep is None:
            return margin, eng, root
        idx = [torch.as_tensor(k) for k in keep]
        root = [(lo[:, k], up[:, k]) for (lo, up), k in zip(root, idx, strict=True)]
        if self._root_alphas is not None:
            self._root_alphas = [a[..., k] for a, k in zip(self._root_alphas, idx, strict=True)]
        small_eng = self._engine(small, eng.lo.numpy(), eng.hi.numpy())
        small_eng.hidden_alphas = [
            None
            if h is None
            else (
                [a[..., k] for a, k in zip(h[0], idx[: len(h[0])], strict=True)],
                h[1][idx[j]],
                h[2],
            )
            for j, h in enumerate(eng.hidden_alphas)
        ]
        return small, small_eng, root

    def _sub_margins(self, margin, eng, rows, root_alphas):
        """The margin net restricted to ``rows``, its bound engine, and the root's slopes
        for those rows (set as the branch and bound's starting slopes)."""
        from ..nets import AffineNet

        w, b = margin.layers[-1]
        sub = AffineNet([*margin.layers[:-1], (w[rows], b[rows])])
        if root_alphas is not None:
            self._root_alphas = [a[:, rows] for a in root_alphas]
        sub_eng = self._engine(sub, eng.lo.numpy(), eng.hi.numpy())
        sub_eng.hidden_alphas = eng.hidden_alphas  # the hidden layers are the same
        return sub, sub_eng

    def _engine(self, net, lower, upper):
        import torch

        eng = bounds.Batched(net, lower, upper)
        eng.search_dtype = torch.float32 if self.search_float32 else torch.float64
        return eng

    # ------------------------------------------------------------------------------
    def _robust(self, bound, method, stats):
        stats["proved_by"] = method
        return Result(
            "robust", margin_lower_bound=bound, message=f"proved by {method}", stats=stats
        )

    def _cex(self, problem, params, message, stats, method):
        params = np.clip(np.asarray(params, dtype=np.float64), problem.lower, problem.upper)
        m = problem.margins(params)
        stats["found_by"] = method
        stats["counterexample_margin"] = float(m.min())
        return Result("counterexample", params=params, message=message, stats=stats)

    @staticmethod
    def _worst_point(margin, pts):
        """(row, value) of the point with the smallest float64 margin."""
        vals = margin.forward(pts).min(axis=1)
        i = int(np.argmin(vals))
        return i, float(vals[i])

    def _input_split(self, problem, margin, eng, deadline, stats):
        import torch

        lo0, hi0 = problem.lower.copy(), problem.upper.copy()
        scale = np.where(hi0 > lo0, hi0 - lo0, 1.0)
        queue = [(lo0, hi0)]
        proven_min = np.inf
        undecided = 0
        visited = 0
        while queue:
            if time.perf_counter() > deadline:
                stats.update(domains=visited, open_domains=len(queue))
                return Result(
                    "timeout", message=f"input split: {len(queue)} boxes open", stats=stats
                )
            batch, queue = queue[: self.batch_size], queue[self.batch_size :]
            lo = np.stack([b[0] for b in batch])
            hi = np.stack([b[1] for b in batch])
            visited += len(batch)
            lo_t, hi_t = torch.as_tensor(lo), torch.as_tensor(hi)
            lb, Ax, _, _, _ = eng.margins_lower(lo_t, hi_t)
            lb_min, worst = lb.min(dim=1)
            a = Ax[torch.arange(len(worst)), worst]
            corners = torch.where(a > 0, lo_t, hi_t).numpy()
            pts = np.vstack([(lo + hi) / 2, corners])
            i, val = self._worst_point(margin, pts)
            if val <= -CEX_MARGIN:
                stats.update(domains=visited)
                return self._cex(problem, pts[i], "input split", stats, "bab")
            lb_min = lb_min.numpy()
            for i in np.flatnonzero(lb_min <= PROVE_TOL):
                width = (hi[i] - lo[i]) / scale
                d = int(np.argmax(width))
                if width[d] < 1e-12:
                    undecided += 1
                    continue
                mid = (lo[i][d] + hi[i][d]) / 2
                left_hi, right_lo = hi[i].copy(), lo[i].copy()
                left_hi[d], right_lo[d] = mid, mid
                queue.append((lo[i], left_hi))
                queue.append((right_lo, hi[i]))
            ok = lb_min > PROVE_TOL
            if ok.any():
                proven_min = min(proven_min, float(lb_min[ok].min()))
        stats.update(domains=visited, undecided_domains=undecided)
        if undecided:
            return Result("unknown", message=f"{undecided} boxes too small to split", stats=stats)
        stats["proved_by"] = "input split + CROWN"
        return Result(
            "robust", margin_lower_bound=proven_min, message="proved by input split", stats=stats
        )

    def _relu_split(self, problem, margin, eng, root, deadline, stats, attack_first=False):
        """ReLU-split branch and bound of one tree from the root box: in this process,
        or with ``threads`` > 1 in that many worker processes that share the tree
        (``_shared_bab``). ``attack_first``: the job's attack in the first round."""
        import torch

        sizes = [w.shape[0] for w, _ in margin.layers[:-1]]
        if root is None:
            root = eng.crown(eng.lo[None], eng.hi[None])[:-1]
        eng.set_root(root)  # every domain's bounds are within the root's (tighten)
        root_splits = [torch.zeros((1, n), dtype=torch.int8) for n in sizes]
        start = [(root_splits, root, None, None, -1)]  # split layer -1: none yet
        if self.threads <= 1:
            return self._bab(
                problem, margin, eng, deadline, stats, pending=start, attack_first=attack_first
            )
        # serial until the tree has a few open domains per worker, then shared
        out = self._bab(
            problem,
            margin,
            eng,
            deadline,
            stats,
            pending=start,
            split_at=2 * self.threads,
            attack_first=attack_first,
        )
        if isinstance(out, Result):
            return out
        return self._shared_bab(problem, margin, eng, deadline, stats, out)

    def _bab(
        self,
        problem,
        margin,
        eng,
        deadline,
        stats,
        pending=(),
        heap=(),
        split_at=None,
        share=None,
        attack_first=False,
    ):
        """The branch and bound loop: bound the ``pending`` domains (split, parent bounds,
        parent slopes, parent multipliers) in one batch, keep the open ones on a heap
        (worst lower bound first), expand the worst ones, repeat. ``heap``: open domains
        to start from (entries of another loop's heap). ``split_at``: return
        ``(heap, proven_min, undecided)`` once that many domains are open (the caller
        shares them out). ``share``: the worker pool's exchange (``_Share``): stop when
        another worker found a counterexample, give half the heap to an idle worker.
        ``attack_first``: the job's PGD attack in the first round (``pgd_before_bab`` off).
        Sets ``stats['domains']`` to the domains bounded here."""
        import torch

        sizes = [w.shape[0] for w, _ in margin.layers[:-1]]
        counter = itertools.count()
        heap = [(e[0], next(counter), *e[2:]) for e in heap]  # ids unique in this loop
        heapq.heapify(heap)
        if share is not None:
            # a worker keeps its heap alive past this loop: freeing a heap of 1e5 domains
            # takes longer than the parent waits for the worker's report after the
            # deadline (the report was lost and the tree's counts with it); the worker
            # process exits right after reporting, and its memory goes with it
            share.live = heap
        pending = list(pending)
        model = None  # torch margin net for PGD inside the loop (built on first use)
        inherit = self.inherit_bounds
        if inherit is None:
            inherit = margin.input_dim * margin.relu_count > INHERIT_ABOVE
        refine = self.refine
        if refine is None:
            refine = len(sizes) >= REFINE_MIN_LAYERS
        proven_min = np.inf
        undecided = 0
        visited = closed = expanded = 0  # a proof needs visited == closed + expanded
        rounds = 0
        per_domain = 0.0  # seconds per domain of the last round
        while pending or heap:
            t_round = time.perf_counter()
            if share is not None and share.stopped():
                break
            if not pending:
                # expand the worst domains, as many as fit before the deadline at this pace
                n_par = max(1, self.batch_size // 2)
                if per_domain:
                    n_par = max(1, min(n_par, int(0.8 * (deadline - t_round) / (2 * per_domain))))
                parents = [heapq.heappop(heap) for _ in range(min(n_par, len(heap)))]
                expanded += len(parents)
                for par, (layer, idx) in zip(parents, self._choose(eng, parents), strict=True):
                    _, _, dom_splits, dom_bounds, _, dom_a, dom_b = par
                    for sign in (1, -1):
                        s_new = [s.clone() for s in dom_splits]
                        s_new[layer][0, idx] = sign
                        pending.append((s_new, dom_bounds, dom_a, dom_b, layer))
            # a round stops at the deadline only between its steps, so the next one starts
            # only if it fits at the last round's pace (a job under load overran its hard
            # kill otherwise); near the deadline the rounds shrink instead (above)
            if time.perf_counter() + per_domain * len(pending) > deadline:
                break
            rounds += 1
            B = len(pending)
            splits = [torch.cat([p[0][i] for p in pending]) for i in range(len(sizes))]
            parent = None
            if all(p[1] is not None for p in pending):
                parent = [
                    (
                        torch.cat([p[1][i][0] for p in pending]),
                        torch.cat([p[1][i][1] for p in pending]),
                    )
                    for i in range(len(sizes))
                ]
            visited += B
            if share is not None:
                share.bounded(B)
            alpha_init, beta_init = self._warm(pending, sizes)
            lo_b, hi_b = eng.lo.expand(B, -1), eng.hi.expand(B, -1)
            lb, Ax, kept, hidden, infeasible = eng.margins_lower(
                lo_b,
                hi_b,
                splits,
                parent,
                iters=self.bab_iters if self.alpha else 0,
                deadline=deadline,
                inherit=inherit,
                alpha_init=alpha_init,
                beta_init=beta_init,
                refine=refine,
                # a child's layers up to its split's are its parent's (already refined)
                refine_after=torch.tensor([p[4] for p in pending]) if refine else None,
                lr_beta=self.lr_beta,
                lr_beta_new=self.lr_beta_new,
            )
            new_alphas, new_betas = eng.last_alphas, eng.last_betas
            lb_min, worst = lb.min(dim=1)
            # candidate points: minimisers of the worst margin's linear bound
            a = Ax[torch.arange(B), worst]
            pts = torch.where(a > 0, lo_b, hi_b).numpy()
            i, val = self._worst_point(margin, pts)
            if val <= -CEX_MARGIN:
                stats.update(domains=visited)
                return self._cex(problem, pts[i], "ReLU split", stats, "bab")
            first = attack_first and rounds == 1
            if self.attack and (rounds % 8 == 0 or first) and time.perf_counter() < deadline:
                # PGD from the open domains' bound minimisers (in the first round, when
                # no attack ran before the branch and bound, with the full steps and
                # random restarts besides: the job's attack)
                if model is None:
                    model = margin.to_torch(torch.float64)
                open_rows = np.flatnonzero(lb_min.numpy() <= PROVE_TOL)[: self.attack_restarts]
                if len(open_rows):
                    t_att = time.perf_counter()
                    p, _ = pgd(
                        model,
                        problem.lower,
                        problem.upper,
                        restarts=self.attack_restarts if first else len(open_rows),
                        steps=self.attack_steps if first else max(1, self.attack_steps // 5),
                        seed=self.seed + rounds + 7919 * (share.worker if share else 0),
                        deadline=deadline,
                        starts=pts[open_rows],
                    )
                    p = np.clip(p, problem.lower, problem.upper)
                    if first:  # the job's attack: its time is reported like 2b's
                        stats["attack_time_s"] = round(
                            stats.get("attack_time_s", 0.0) + time.perf_counter() - t_att, 4
                        )
                    if float(margin.forward(p).min()) <= -CEX_MARGIN:
                        stats.update(domains=visited)
                        return self._cex(problem, p, "PGD inside BaB", stats, "bab-attack")
            pending = []
            rows = torch.arange(B)
            cands = self._scores(hidden, splits, [k[rows, worst] for k in kept], self.fsb_k)
            for d in range(B):
                if bool(infeasible[d]):
                    closed += 1
                    continue
                if float(lb_min[d]) > PROVE_TOL:
                    proven_min = min(proven_min, float(lb_min[d]))
                    closed += 1
                    continue
                dom_splits = [s[d : d + 1] for s in splits]
                dom_bounds = [(lo[d : d + 1], up[d : d + 1]) for lo, up in hidden]
                score = cands[d]
                if not score:
                    status, val = self._leaf(margin, problem, dom_bounds, dom_splits)
                    if status == "candidate":
                        stats.update(domains=visited)
                        return self._cex(problem, val, "ReLU split leaf LP", stats, "bab-lp")
                    if status == "proven":
                        proven_min = min(proven_min, val)
                    elif status != "infeasible":
                        undecided += 1
                        continue
                    closed += 1
                    continue
                dom_a = dom_b = None
                if self.warm_start and new_alphas is not None:
                    dom_a = [a[d : d + 1] for a in new_alphas]
                    if new_betas is not None:
                        dom_b = [None if b is None else b[d : d + 1] for b in new_betas]
                heapq.heappush(
                    heap,
                    (float(lb_min[d]), next(counter), dom_splits, dom_bounds, score, dom_a, dom_b),
                )
            now = time.perf_counter()
            per_domain = max(now - t_round, 1e-9) / B
            if now > deadline:
                break  # the open domains stay on the heap: a timeout
            if split_at is not None and len(heap) >= split_at:
                stats.update(domains=visited, closed_domains=closed, expanded_domains=expanded)
                return heap, proven_min, undecided
            if share is not None and len(heap) >= 2 and share.hungry():
                heap.sort()  # a sorted list is a heap; every other domain goes
                share.give(heap[1::2])
                heap = heap[0::2]
                share.live = heap
        stats.update(
            domains=visited,
            open_domains=len(heap) + len(pending),
            closed_domains=closed,
            expanded_domains=expanded,
        )
        if heap:
            stats["worst_open_bound"] = round(heap[0][0], 6)
        if heap or pending:
            return Result(
                "timeout",
                message=f"ReLU split: {len(heap) + len(pending)} domains open",
                stats=stats,
            )
        # a worker's batch is part of a tree: _shared_bab checks the whole tree's ledger
        ledger = None if share is not None else (visited, closed, expanded)
        return _closed_tree(stats, undecided, proven_min, "", ledger)

    def _shared_bab(self, problem, margin, eng, deadline, stats, start):
        """The branch and bound in ``threads`` worker processes (forked: they share the
        engine and the root's slopes) that share one tree. ``start``: the serial loop's
        ``(heap, proven_min, undecided)``; its open domains are dealt out round robin, and
        a worker left without domains gets half of a busy worker's heap (``_Share``).
        ``robust`` only when every handed-out domain was closed: the count of domains
        handed out and not yet finished must come back to zero."""
        heap, proven_min, undecided = start
        visited = stats["domains"]
        closed, expanded = stats["closed_domains"], stats["expanded_domains"]
        heap = sorted(heap)
        share = _Share(self.threads)
        for w in range(self.threads):
            share.give(heap[w :: self.threads])
        procs = [
            share.start(w, self._bab_worker, problem, margin, eng, deadline)
            for w in range(self.threads)
        ]
        # workers size their rounds to the deadline; one that overran it is killed
        # before the job's own hard kill
        reports = share.collect(procs, deadline + 0.5 * SAFETY_S)
        cex = None
        worst_open = []
        timed_out = len(reports) < len(procs)
        for rep in reports:
            visited += rep["domains"]
            closed += rep["closed"]
            expanded += rep["expanded"]
            proven_min = min(proven_min, rep["proven_min"])
            undecided += rep["undecided"]
            timed_out |= rep["timeout"]
            if rep.get("worst_open") is not None:
                worst_open.append(rep["worst_open"])
            if rep.get("cex") is not None and cex is None:
                cex = rep
        # per worker, summed over the trees of a job (one per open margin); a worker
        # without a report (it missed the deadline) counts what it bounded
        by_worker = {rep["worker"]: rep for rep in reports}
        busy, done = [], []
        for w in range(self.threads):
            rep = by_worker.get(w)
            busy.append(rep["busy_s"] if rep else 0.0)
            done.append(rep["domains"] if rep else share.bounded_by(w))
            if rep is None:
                visited += done[-1]
        for key, vals in (("worker_busy_s", busy), ("worker_domains", done)):
            prev = stats.get(key) or [0] * self.threads
            stats[key] = [round(a + b, 2) for a, b in zip(prev, vals, strict=True)]
        stats.update(
            domains=visited,
            workers=self.threads,
            worker_pids=stats.get("worker_pids", []) + [proc.pid for proc in procs],
            shared_domains=stats.get("shared_domains", 0) + share.given,
            # batches beyond the first one per worker: halves of heaps given to idle workers
            shared_steals=stats.get("shared_steals", 0) + share.count - self.threads,
        )
        if cex is not None:
            return self._cex(problem, cex["cex"], cex["message"], stats, cex["found_by"])
        left = share.outstanding()
        if timed_out or left:
            if worst_open:
                stats["worst_open_bound"] = round(min(worst_open), 6)
            return Result(
                "timeout",
                message=f"ReLU split in {self.threads} workers: {left} shared batches open",
                stats=stats,
            )
        ledger = (visited, closed, expanded)
        return _closed_tree(stats, undecided, proven_min, f" in {self.threads} workers", ledger)

    def _bab_worker(self, share, problem, margin, eng, deadline):
        """One worker of ``_shared_bab``: take batches of open domains and run the loop
        on each until none is left anywhere, a counterexample is found or time is up.
        Returns its report (a dict)."""
        rep = dict(domains=0, closed=0, expanded=0, undecided=0, proven_min=np.inf)
        rep.update(busy_s=0.0, timeout=False, worst_open=None, cex=None, worker=share.worker)
        while True:
            entries = share.take(deadline)
            if entries is None:  # nothing left, stopped, or out of time
                rep["timeout"] = time.perf_counter() > deadline and share.outstanding() > 0
                return rep
            t0 = time.perf_counter()
            st: dict = {}
            res = self._bab(problem, margin, eng, deadline, st, heap=entries, share=share)
            share.done()
            rep["busy_s"] += time.perf_counter() - t0
            rep["domains"] += st.get("domains", 0)
            rep["undecided"] += st.get("undecided_domains", 0)
            rep["closed"] += st.get("closed_domains", 0)
            rep["expanded"] += st.get("expanded_domains", 0)
            if res.status == "robust":
                rep["proven_min"] = min(rep["proven_min"], res.margin_lower_bound)
            elif res.status == "counterexample":
                share.stop()
                rep.update(cex=res.params, message=res.message, found_by=st["found_by"])
                return rep
            elif res.status == "timeout":
                rep["timeout"] = not share.stopped()
                rep["worst_open"] = st.get("worst_open_bound")
                return rep

    def _warm(self, pending, sizes):
        """Per-layer alpha and beta starting points (B, m, n_i) for a batch of domains:
        each domain's parent's best parameters, or the root's slopes and beta = 0."""
        import torch

        root = self._root_alphas
        if not self.warm_start or all(p[2] is None for p in pending):
            return root, None
        if root is None:
            return None, None
        alphas = [
            torch.cat([root[i] if p[2] is None else p[2][i] for p in pending])
            for i in range(len(sizes))
        ]
        betas = []
        for i in range(len(sizes)):
            rows = [None if p[3] is None else p[3][i] for p in pending]
            if all(r is None for r in rows):
                betas.append(None)
                continue
            zero = torch.zeros_like(root[i])
            betas.append(torch.cat([zero if r is None else r for r in rows]))
        return alphas, betas

    def _choose(self, eng, parents):
        """The (layer, index) to split for each heap entry: its best-scored candidate,
        or with ``fsb_k > 1`` the candidate whose children's worse bound is highest.
        Children of first-layer candidates are bounded from their parent's own pass
        (``Batched.first_layer_children``); the others by one batched pass."""
        import torch

        out = [par[4][0] for par in parents]
        rows = [(p, c) for p, par in enumerate(parents) if len(par[4]) > 1 for c in par[4]]
        if self.fsb_k <= 1 or not rows:
            return out
        n_layers = len(parents[0][2])
        root = self._root_alphas

        def stack(get, idx):
            return torch.cat([get(par) for par in parents]).index_select(0, idx)

        def params(idx):
            """Hidden bounds, slopes and multipliers of the parents ``idx`` (rows)."""
            hidden = [
                (
                    stack(lambda par, i=i: par[3][i][0], idx),
                    stack(lambda par, i=i: par[3][i][1], idx),
                )
                for i in range(n_layers)
            ]
            if root is None:
                return hidden, None, None
            alphas = [
                stack(lambda par, i=i: root[i] if par[5] is None else par[5][i], idx)
                for i in range(n_layers)
            ]
            betas = [
                stack(
                    lambda par, i=i: (
                        torch.zeros_like(root[i])
                        if par[6] is None or par[6][i] is None
                        else par[6][i]
                    ),
                    idx,
                )
                for i in range(n_layers)
            ]
            return hidden, alphas, betas

        worse = [0.0] * len(rows)  # per candidate: min(children) + 1e-3 max(children)
        dt = eng.search_dtype  # a score only: the search's precision
        first = [r for r, (_, (lay, _)) in enumerate(rows) if lay == 0]
        deeper = [r for r, (_, (lay, _)) in enumerate(rows) if lay != 0]
        pairs = []
        if first:
            owners = sorted({rows[r][0] for r in first})
            pos = {p: k for k, p in enumerate(owners)}
            idx = torch.tensor(owners)
            hidden, alphas, betas = params(idx)
            splits = [stack(lambda par, i=i: par[2][i], idx) for i in range(n_layers)]
            n = len(owners)
            lo_b, hi_b = eng.lo.expand(n, -1), eng.hi.expand(n, -1)
            own = eng.fixed_pass(lo_b, hi_b, hidden, splits, alphas, betas, dtype=dt)
            lb = eng.first_layer_children(
                own,
                alphas,
                betas,
                torch.tensor([pos[rows[r][0]] for r in first]),
                torch.tensor([rows[r][1][1] for r in first]),
            )
            pairs.append((first, lb))
        if deeper:
            # child j (two per candidate) of parent idx[j]: the parents' tensors are
            # concatenated once and their rows repeated by one index per layer
            idx = torch.tensor([rows[r][0] for r in deeper for _ in (1, -1)])
            splits = [stack(lambda par, i=i: par[2][i], idx) for i in range(n_layers)]
            for k, r in enumerate(deeper):
                layer, j = rows[r][1]
                splits[layer][2 * k, j] = 1
                splits[layer][2 * k + 1, j] = -1
            hidden, alphas, betas = params(idx)
            hidden = eng.clamp_splits(hidden, splits)
            n = len(idx)
            lb = eng.margins_fixed(
                eng.lo.expand(n, -1), eng.hi.expand(n, -1), hidden, splits, alphas, betas, dtype=dt
            )
            pairs.append((deeper, lb))
        for which, lb in pairs:
            pair = lb.min(dim=1).values.view(-1, 2)
            score = (pair.min(dim=1).values + 1e-3 * pair.max(dim=1).values).tolist()
            for r, v in zip(which, score, strict=True):
                worse[r] = v
        best: dict = {}
        for r, (p, c) in enumerate(rows):
            if p not in best or worse[r] > best[p][0]:
                best[p] = (worse[r], c)
        return [best[p][1] if p in best else out[p] for p in range(len(parents))]

    @staticmethod
    def _scores(hidden, splits, coeffs, k=1):
        """Per domain of a batch, up to k (layer, index) of unstable, unsplit neurons to
        branch on, best BaBSR-like score ``|A| * (-l u / (u - l))`` first (``coeffs[i]``
        (B, n_i): A, the neurons' coefficients in the worst margin's bound); an empty
        list when every ReLU of the domain is fixed."""
        import torch

        parts, layer_of, offset, start = [], [], [], 0
        for i, ((lo, up), s, a) in enumerate(zip(hidden, splits, coeffs, strict=True)):
            unstable = (lo < 0) & (up > 0) & (s == 0)
            gap = (-lo * up / (up - lo).clamp(min=1e-30)) * unstable
            score = a.abs() * gap + 1e-6 * gap  # break ties on the relaxation gap
            parts.append(torch.where(unstable, score, torch.full_like(score, -1.0)))
            layer_of += [i] * lo.shape[1]
            offset += [start] * lo.shape[1]
            start += lo.shape[1]
        every = torch.cat(parts, dim=1)
        top = every.topk(min(k, every.shape[1]), dim=1)
        return [
            [(layer_of[j], j - offset[j]) for v, j in zip(vals, idx, strict=True) if v >= 0]
            for vals, idx in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]

    @staticmethod
    def _leaf(margin, problem, bounds_, splits):
        bounds_np = [(lo[0].numpy(), up[0].numpy()) for lo, up in bounds_]
        splits_np = [s[0].numpy() for s in splits]
        status, val = _lp_leaf(margin, problem.lower, problem.upper, bounds_np, splits_np)
        if status == "candidate":
            if margin.forward(val).min() <= -CEX_MARGIN:
                return "candidate", val
            return "failed", None
        return status, val


def _closed_tree(stats, undecided, proven_min, where, ledger=None) -> Result:
    """The verdict of a ReLU-split tree with no domain left open: ``unknown`` when some
    leaf stayed undecided, else ``robust``. A proof holds only if every domain bounded was
    closed (proved, infeasible, or an exact leaf) or split into two children that were
    bounded in turn: ``ledger`` (bounded, closed, split; None for a worker's share of a
    tree, whose ledger is checked whole) must balance. A domain lost on
    its way (between worker processes, say) breaks the count: a bug, raised as such (the
    job's record becomes ``error``), never a ``robust``."""
    stats["undecided_domains"] = undecided
    if undecided:
        return Result("unknown", message=f"{undecided} leaf domains undecided", stats=stats)
    visited, closed, expanded = ledger or (0, 0, 0)
    if visited != closed + expanded:
        raise RuntimeError(
            f"branch and bound ledger: {visited} domains bounded but {closed} closed "
            f"and {expanded} split: no proof"
        )
    stats["proved_by"] = "beta-CROWN BaB"
    return Result(
        "robust", margin_lower_bound=proven_min, message=f"proved by ReLU split{where}", stats=stats
    )


class _Share:
    """The exchange between ``Verifier._shared_bab``'s worker processes (forked): a
    queue of batches of open domains, the number of batches handed out and not yet
    finished, of idle workers and of batches waiting in the queue, and a stop flag
    (a counterexample was found)."""

    def __init__(self, n: int):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.ctx = ctx
        self.batches = ctx.Queue()
        self.reports = ctx.Queue()
        self.lock = ctx.Lock()
        self._open = ctx.Value("i", 0, lock=False)  # handed out, not finished
        self._idle = ctx.Value("i", 0, lock=False)
        self._queued = ctx.Value("i", 0, lock=False)
        self._stop = ctx.Value("b", 0, lock=False)
        self._given = ctx.Value("i", 0, lock=False)  # domains handed out in all
        self._count = ctx.Value("i", 0, lock=False)  # batches handed out in all
        # domains bounded per worker, kept current by the worker itself: a worker whose
        # report misses the deadline (a loaded machine) still has its count
        self._bounded = ctx.Array("q", n, lock=False)
        self.worker = 0
        self.live = None  # a worker's current heap (Verifier._bab)
        self._waiting = False
        self._parent = os.getpid()

    # in every process
    def give(self, entries) -> None:
        if not entries:
            return
        data = _pack(entries)
        with self.lock:
            self._open.value += 1
            self._queued.value += 1
            self._given.value += len(entries)
            self._count.value += 1
        self.batches.put(data)

    def take(self, deadline: float):
        """The next batch of domains, or None when no batch is left anywhere, the
        search was stopped, or the deadline passed."""
        while not self.stopped() and time.perf_counter() < deadline:
            try:
                data = self.batches.get(timeout=0.02)
            except queue.Empty:
                with self.lock:
                    if not self._waiting:
                        self._idle.value += 1
                        self._waiting = True
                    if self._open.value == 0:
                        return None
                continue
            with self.lock:
                self._queued.value -= 1
                if self._waiting:
                    self._idle.value -= 1
                    self._waiting = False
            return _unpack(data)
        return None

    def done(self) -> None:
        with self.lock:
            self._open.value -= 1

    def bounded(self, n: int) -> None:
        self._bounded[self.worker] += n  # only this worker writes its slot

    def bounded_by(self, worker: int) -> int:
        return int(self._bounded[worker])

    def outstanding(self) -> int:
        return self._open.value

    def hungry(self) -> bool:
        return self._idle.value > self._queued.value

    def stop(self) -> None:
        self._stop.value = 1

    def stopped(self) -> bool:
        return bool(self._stop.value)

    @property
    def given(self) -> int:
        return self._given.value

    @property
    def count(self) -> int:
        return self._count.value

    # in the parent
    def start(self, worker: int, fn, *args):
        proc = self.ctx.Process(target=self._run, args=(worker, fn, args), daemon=True)
        proc.start()
        return proc

    def collect(self, procs, until: float) -> list:
        """The workers' reports (as many as arrived before ``until``); a worker that
        raised stops the others and its error is raised here."""
        reports, error = [], None
        try:
            while len(reports) < len(procs):
                left = until - time.perf_counter()
                if left <= 0:
                    break
                try:
                    rep = self.reports.get(timeout=left)
                except queue.Empty:
                    break
                if "error" in rep:
                    error = rep["error"]
                    self.stop()
                    break
                if rep.get("cex") is not None:
                    self.stop()
                reports.append(rep)
        finally:
            self.stop()
            for proc in procs:
                proc.join(timeout=0.5)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            for q in (self.batches, self.reports):
                q.cancel_join_thread()  # batches left in a stopped search are dropped
                q.close()
        if error is not None:
            raise RuntimeError(f"branch and bound worker failed: {error}")
        return reports

    def _run(self, worker, fn, args):
        import torch

        from ..runner import die_with_parent

        die_with_parent(self._parent)
        torch.set_num_threads(1)
        self.worker = worker
        self.batches.cancel_join_thread()  # exit even with batches nobody will take
        try:
            rep = fn(self, *args)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, raised there
            rep = {"error": f"{type(exc).__name__}: {exc}"}
        self.reports.put(rep)


class _Tensor:
    """A torch tensor in transit between processes, as a numpy array."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


def _pack(obj) -> bytes:
    """Heap entries as bytes: tensors as numpy arrays (no torch shared-memory handles)."""

    def conv(x):
        if isinstance(x, list | tuple):
            return type(x)(conv(v) for v in x)
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            return _Tensor(x.detach().numpy())
        return x

    return pickle.dumps(conv(obj), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(data: bytes):
    import torch

    def conv(x):
        if isinstance(x, list | tuple):
            return type(x)(conv(v) for v in x)
        if isinstance(x, _Tensor):
            return torch.from_numpy(x.array)
        return x

    return conv(pickle.loads(data))
