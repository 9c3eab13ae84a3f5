"""MIPVerify-style mixed-integer encoding of a ReLU network, solved through PuLP.

Inputs range over the parameter box; every hidden ReLU gets pre-activation bounds
(CROWN, intersected with interval arithmetic; see ``medverify.bounds``). Stably active
ReLUs are the identity, stably inactive ones are 0, and only unstable ones get a binary
with the big-M (triangle-exact) encoding

    h >= z,   h <= z - l (1 - a),   h <= u a,   0 <= h,   a in {0, 1}.

One MILP minimises the smallest margin ``f_label - f_j`` over the problem's targets
(selection binaries pick the target; with one target it is that margin); targets whose
CROWN lower bound is already positive are left out of it. Label-by-label runs, most
dangerous first, are the ``guided`` strategy (``medverify.strategies``). A proven
minimum above ``bounds.MILP_PROVE_TOL`` (1e-6, the crown backend's MILP handoff's rule
too) is ``robust``; a solution with a negative margin (re-checked in float64) is a ``counterexample``. A
solver that stopped early is never taken as a proof: only a proven optimum (HiGHS: its
dual bound; CBC: ``sol_status`` Optimal) counts.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from .. import bounds as bounds_mod
from ..attack import corner_search
from .base import Problem, Result, solver_stdout_silenced

SOLVERS = ("highs", "cbc")
#: seconds kept back from the caller's timeout for building the model and cleanup
RESERVE_S = 0.5
#: absolute optimality gap asked of the solver (margins are logits differences)
GAP_ABS = 1e-6
#: early stop: a solution with margin <= -STOP_MARGIN ends the search (HiGHS only)
STOP_MARGIN = 1e-3


class Verifier:
    name = "milp"
    #: conda env of its jobs (envs/<conda_env>.yaml): PuLP + HiGHS
    conda_env = "milp"

    def __init__(
        self,
        solver: str = "highs",
        bounds: str = "crown",
        threads: int = 1,
        prune: bool = True,
        early_stop: bool = True,
        falsify: bool = True,
    ):
        if solver not in SOLVERS:
            raise ValueError(f"unknown MILP solver {solver!r}: choose one of {', '.join(SOLVERS)}")
        if bounds not in bounds_mod.METHODS:
            raise ValueError(
                f"unknown bound method {bounds!r}: choose one of {', '.join(bounds_mod.METHODS)}"
            )
        self.solver = solver
        self.bounds = bounds
        self.threads = int(threads)
        self.prune = bool(prune)  # skip the MILP of targets the bounds already prove
        # HiGHS: stop at the first solution with margin <= -STOP_MARGIN (a counterexample
        # needs no optimum); off, the MILP always finds the worst point
        self.early_stop = bool(early_stop)
        self.falsify = bool(falsify)  # numpy corner search first (with early_stop only)

    # ------------------------------------------------------------------------------
    def tool_version(self) -> str:
        import pulp

        if self.solver == "highs":
            try:
                import highspy

                with solver_stdout_silenced():
                    h = highspy.Highs()
                solver = f"HiGHS {h.version()}"
            except Exception:  # noqa: BLE001 - version string only
                from importlib.metadata import version

                solver = f"highspy {version('highspy')}"
        else:
            solver = "CBC (PuLP bundled)"
            try:
                import subprocess

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    path = pulp.PULP_CBC_CMD().path
                out = subprocess.run(
                    [path, "-quit"], capture_output=True, text=True, timeout=10
                ).stdout
                for line in out.splitlines():
                    if line.startswith("Version:"):
                        solver = f"CBC {line.split(':', 1)[1].strip()}"
                        break
            except Exception:  # noqa: BLE001 - version string only
                pass
        return f"pulp {pulp.__version__}; {solver}"

    # ------------------------------------------------------------------------------
    def verify(self, problem: Problem, timeout_s: float) -> Result:
        start = time.perf_counter()
        deadline = start + max(timeout_s - RESERVE_S, 0.05)
        mnet = problem.margin_net()
        layer_bounds = bounds_mod.compute(mnet, problem.lower, problem.upper, self.bounds)
        out_lo = layer_bounds[-1][0]
        stats = {
            "solver": self.solver,
            "bounds": self.bounds,
            "relus": mnet.relu_count,
            "unstable_relus": int(
                sum(int(np.sum((lo < 0) & (hi > 0))) for lo, hi in layer_bounds[:-1])
            ),
        }
        pending = [int(r) for r in np.argsort(out_lo) if out_lo[r] <= 0 or not self.prune]
        stats["targets_pruned_by_bounds"] = len(problem.targets) - len(pending)
        proven = {r: float(out_lo[r]) for r in range(len(problem.targets)) if r not in pending}
        if not pending:
            return Result(
                "robust",
                margin_lower_bound=float(np.min(out_lo)),
                message=f"{self.bounds} bounds prove every margin positive",
                stats=stats,
            )
        if self.falsify and self.early_stop:
            # a numpy corner/sign-gradient search first: the MILP's first incumbent on a
            # large L-infinity ball can take tens of seconds
            t0 = time.perf_counter()
            cex = corner_search(problem, net=mnet)
            stats["falsify_s"] = round(time.perf_counter() - t0, 4)
            if cex is not None:
                margins = problem.margins(cex)
                j = problem.targets[int(np.argmin(margins))]
                return Result(
                    "counterexample",
                    params=cex,
                    message=f"label {j} reaches margin {np.min(margins):.6g} (corner search)",
                    stats=stats,
                )
        model = _Encoding(mnet, layer_bounds, problem.lower, problem.upper)
        # one MILP over every open target: minimise the smallest open margin (one target:
        # that margin itself); label-by-label runs are medverify.strategies.Guided
        row = _min_of(model, pending, layer_bounds[-1])
        stats["build_s"] = round(time.perf_counter() - start, 3)
        stats["milp_targets"] = len(pending)
        left = deadline - time.perf_counter()
        if left <= 0.01:
            return Result("timeout", message=f"{self.solver}: no time left", stats=stats)
        out = model.minimize(row, self.solver, left, self.threads, self.early_stop)
        names = [problem.targets[r] for r in pending]
        if out.params is not None:
            params = np.clip(out.params, problem.lower, problem.upper)
            margins = problem.margins(params)
            r = int(np.argmin(margins))
            if margins[r] < 0:
                stats["time_limited"] = not out.proven
                return Result(
                    "counterexample",
                    params=params,
                    message=f"label {problem.targets[r]} reaches margin {margins[r]:.6g}",
                    stats=stats,
                )
            if out.proven and out.bound <= bounds_mod.MILP_PROVE_TOL:
                return Result(
                    "unknown",
                    message=f"labels {names}: solver optimum {out.objective:.3g} but float64 "
                    f"margin {margins[r]:.3g} at its solution",
                    stats=stats,
                )
        if out.proven and out.bound > bounds_mod.MILP_PROVE_TOL:
            return Result(
                "robust",
                margin_lower_bound=float(min(out.bound, *proven.values(), math.inf)),
                message=f"{self.solver} proved every margin positive",
                stats=stats,
            )
        if out.time_limited:
            return Result(
                "timeout",
                message=f"{self.solver} hit the time limit without a proof ({out.message})",
                stats=stats,
            )
        return Result(
            "unknown", message=f"labels {names}: {out.message or 'no proof'}", stats=stats
        )


def _min_of(model, rows: list[int], out_bounds) -> int:
    """The model row whose minimum is the smallest of ``rows``' margins: the row itself
    for one target, else a new variable t with a selection binary s_r per target,
    ``t >= m_r - M_r (1 - s_r)``, ``sum s_r = 1`` (minimising t picks the smallest m_r),
    M_r = hi_r - min lo from the margins' bounds."""
    import pulp

    if len(rows) == 1:
        return rows[0]
    lo, hi = out_bounds
    floor = float(min(lo[r] for r in rows))
    t = model._var("t_min", floor, float(min(hi[r] for r in rows)))
    select = [model._var(f"s{r}", 0, 1, pulp.LpBinary) for r in rows]
    model.binaries += len(rows)
    model.prob += pulp.lpSum(select) == 1
    for r, s in zip(rows, select, strict=True):
        big_m = float(hi[r]) - floor
        model.prob += t >= model.margins[r] - big_m * (1 - s)
    model.margins.append(t)
    return len(model.margins) - 1


class _Outcome:
    def __init__(
        self,
        proven=False,
        bound=-math.inf,
        objective=math.nan,
        params=None,
        time_limited=False,
        message="",
    ):
        self.proven = proven  # bound is a proven lower bound on the minimum
        self.bound = bound
        self.objective = objective
        self.params = params
        self.time_limited = time_limited
        self.message = message


class _Encoding:
    """The network's constraints (``bounds.BigM``, the one big-M encoding) as a PuLP
    problem, one variable per margin; the objective is set per target."""

    def __init__(self, mnet, layer_bounds, lower, upper):
        import pulp

        enc = bounds_mod.BigM(mnet, lower, upper, layer_bounds[:-1])
        self.prob = pulp.LpProblem("margin", pulp.LpMinimize)
        self.binaries = enc.binaries
        names = ("v", "a")
        var = [
            self._var(
                f"x{j}" if j < enc.n_inputs else f"{names[enc.integral[j]]}{j}",
                float(lo),
                float(hi),
                pulp.LpBinary if enc.integral[j] else "Continuous",
            )
            for j, (lo, hi) in enumerate(zip(enc.var_lower, enc.var_upper, strict=True))
        ]
        self.x = var[: enc.n_inputs]
        for r in range(enc.A.shape[0]):
            expr = _row(enc.A, r, var)
            lo, hi = float(enc.row_lower[r]), float(enc.row_upper[r])
            if lo == hi:
                self.prob += expr == lo
                continue
            if lo > -math.inf:
                self.prob += expr >= lo
            if hi < math.inf:
                self.prob += expr <= hi
        # one variable per margin, so the objective has no constant term (PuLP does not
        # pass an objective constant to HiGHS, whose dual bound would then be shifted)
        self.margins = []
        for r in range(enc.out.shape[0]):
            m = self._var(f"m{r}")
            self.prob += m == _row(enc.out, r, var) + float(enc.out_bias[r])
            self.margins.append(m)

    def _var(self, name, lo=None, hi=None, cat="Continuous"):
        add = getattr(self.prob, "add_variable", None)  # PuLP >= 3.3
        if add is not None:
            return add(name, lo, hi, cat=cat)
        import pulp

        return pulp.LpVariable(name, lowBound=lo, upBound=hi, cat=cat)

    def minimize(
        self, row: int, solver: str, time_limit: float, threads: int, early_stop: bool = False
    ) -> _Outcome:
        import pulp

        self.prob.setObjective(pulp.LpAffineExpression([(self.margins[row], 1.0)]))
        limit = max(float(time_limit), 0.01)
        if solver == "highs":
            extra = {"objective_target": -STOP_MARGIN} if early_stop else {}
            cmd = pulp.HiGHS(msg=False, timeLimit=limit, threads=threads, gapAbs=GAP_ABS, **extra)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # PuLP 4 renames it
                cmd = pulp.PULP_CBC_CMD(
                    msg=False, timeLimit=max(0.1, limit), threads=threads, gapAbs=GAP_ABS
                )
        ran = self.run(cmd)
        if isinstance(ran, _Outcome):
            return ran
        params, objective, sol, elapsed = ran
        if solver == "highs":
            return self._highs_outcome(params, objective, limit, elapsed)
        # CBC: only sol_status Optimal is a proof (a time-limited run reads "Stopped")
        if sol == pulp.LpSolutionOptimal and math.isfinite(objective):
            return _Outcome(True, objective - GAP_ABS, objective, params)
        return _Outcome(
            params=params,
            objective=objective,
            time_limited=elapsed >= 0.9 * limit or sol == pulp.LpSolutionIntegerFeasible,
            message=f"CBC status {pulp.LpStatus[self.prob.status]} / {pulp.LpSolution[sol]}",
        )

    def run(self, cmd):
        """Solve with the PuLP command ``cmd``: (params, objective, sol_status, seconds),
        params and objective only for an optimal or feasible solution; an _Outcome with
        the message when the solver itself fails."""
        import pulp

        t0 = time.perf_counter()
        try:
            with solver_stdout_silenced():
                self.prob.solve(cmd)
        except pulp.PulpSolverError as exc:
            return _Outcome(message=f"solver error: {exc}")
        elapsed = time.perf_counter() - t0
        sol = self.prob.sol_status
        params, objective = None, math.nan
        if sol in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            vals = [v.varValue for v in self.x]
            if all(v is not None for v in vals):
                params = np.array(vals, dtype=np.float64)
            value = pulp.value(self.prob.objective)
            objective = math.nan if value is None else float(value)
        return params, objective, sol, elapsed

    def _highs_outcome(self, params, objective, limit, elapsed) -> _Outcome:
        import highspy

        h = self.prob.solverModel
        status = h.getModelStatus()
        info = h.getInfo()
        st = highspy.HighsModelStatus
        if status == st.kOptimal:
            if self.binaries:
                bound = float(info.mip_dual_bound)
                if not math.isfinite(bound):
                    bound = objective - GAP_ABS
            else:
                bound = objective - GAP_ABS  # an LP: optimal objective is the minimum
            return _Outcome(True, bound, objective, params)
        if status in (st.kTimeLimit, st.kInterrupt, st.kIterationLimit):
            bound = float(info.mip_dual_bound) if self.binaries else -math.inf
            proven = math.isfinite(bound) and bound > bounds_mod.MILP_PROVE_TOL
            return _Outcome(
                proven,
                bound if proven else -math.inf,
                objective,
                params,
                time_limited=True,
                message=f"HiGHS {h.modelStatusToString(status)}",
            )
        return _Outcome(
            params=params,
            objective=objective,
            time_limited=elapsed >= 0.9 * limit,
            message=f"HiGHS {h.modelStatusToString(status)}",
        )


def _row(matrix, r: int, var):
    """Row ``r`` of the CSR ``matrix`` as a PuLP expression over the variables ``var``."""
    import pulp

    lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
    cols, vals = matrix.indices[lo:hi].tolist(), matrix.data[lo:hi].tolist()
    return pulp.LpAffineExpression([(var[j], v) for j, v in zip(cols, vals, strict=True) if v != 0])


# --- minimum distortion (MIPVerify-style) --------------------------------------------
def minimum_distortion(
    classifier,
    image: np.ndarray,
    label: int,
    targets,
    max_eps: float,
    timeout_s: float,
    *,
    solver: str = "highs",
    bounds: str = "crown",
    threads: int = 1,
) -> dict:
    """Minimise the L-infinity distortion eps subject to a label change:
    ``min eps  s.t.  |x - image| <= eps,  x in [0, 1],  f_label(x) <= f_j(x)`` for some
    target j, over eps in [0, max_eps]. One MILP per target (most dangerous first, by its
    CROWN lower bound over the max_eps ball); each later MILP is capped by the best eps
    found so far. Big-M bounds come from ``medverify.bounds`` over the max_eps ball.

    Returns ``eps`` (the smallest distortion found, None if none), ``params`` (the point),
    ``target`` (its label), ``lower`` (a proven lower bound on the minimum over all
    targets: no label change for any eps below it), ``proven`` (the minimum is optimal for
    every target) and ``stats``. A target whose CROWN lower bound over the ball is positive
    needs no MILP."""
    import pulp

    start = time.perf_counter()
    deadline = start + max(float(timeout_s) - RESERVE_S, 0.05)
    x0 = np.asarray(image, dtype=np.float64).reshape(-1)
    max_eps = float(max_eps)
    lower = np.clip(x0 - max_eps, 0.0, 1.0)
    upper = np.clip(x0 + max_eps, 0.0, 1.0)
    targets = [int(j) for j in targets]
    mnet = classifier.margin_net(int(label), targets)
    layer_bounds = bounds_mod.compute(mnet, lower, upper, bounds)
    out_lo = layer_bounds[-1][0]
    model = _Encoding(mnet, layer_bounds, lower, upper)
    eps = model._var("eps", 0.0, max_eps)
    for i, (xi, ci) in enumerate(zip(model.x, x0, strict=True)):
        if upper[i] > lower[i]:
            model.prob += xi - eps <= float(ci)
            model.prob += xi + eps >= float(ci)
    model.prob.setObjective(pulp.LpAffineExpression([(eps, 1.0)]))
    best_eps, best_x, best_j = None, None, None
    lower_bounds = {}
    stats = {"targets_pruned_by_bounds": 0, "binaries": model.binaries, "solved": []}
    cap = None
    for r in np.argsort(out_lo):
        r = int(r)
        j = targets[r]
        if out_lo[r] > 0:
            lower_bounds[j] = max_eps  # no label change to j anywhere in the ball
            stats["targets_pruned_by_bounds"] += 1
            continue
        left = deadline - time.perf_counter()
        if left <= 0.01:
            lower_bounds[j] = 0.0
            continue
        name = f"change_{r}"
        model.prob += (model.margins[r] <= 0.0), name
        if cap is not None:
            model.prob += (eps <= cap), "cap"
        out = _solve_min(model, solver, left, threads)
        del model.prob.constraints[name]
        if "cap" in model.prob.constraints:
            del model.prob.constraints["cap"]
        finished = out.proven and not out.time_limited
        infeasible = out.params is None and not out.time_limited and "nfeasible" in out.message
        stats["solved"].append(
            {"label": j, "proven": finished or infeasible, "objective": out.objective}
        )
        if out.params is not None and math.isfinite(out.objective):
            value = float(np.max(np.abs(out.params - x0)))
            if best_eps is None or value < best_eps:
                best_eps, best_x, best_j, cap = value, out.params, j, value
        # a proven bound on the minimum for j (a capped run proves at most the cap)
        if infeasible:
            lower_bounds[j] = max_eps if cap is None else cap
        elif out.proven and math.isfinite(out.bound):
            lower_bounds[j] = max(0.0, float(out.bound))
        else:
            lower_bounds[j] = 0.0
    proven_all = all(s["proven"] for s in stats["solved"]) and len(lower_bounds) == len(targets)
    lower_all = min(lower_bounds.values()) if lower_bounds else 0.0
    if best_eps is not None:
        lower_all = min(lower_all, best_eps)
    stats["seconds"] = round(time.perf_counter() - start, 4)
    return {
        "eps": best_eps,
        "params": best_x,
        "target": best_j,
        "lower": float(lower_all),
        "proven": bool(proven_all and best_eps is not None),
        "stats": stats,
    }


def _solve_min(model: _Encoding, solver: str, time_limit: float, threads: int) -> _Outcome:
    """Solve the model's current objective; a proven optimum carries its dual bound."""
    import pulp

    limit = max(float(time_limit), 0.01)
    if solver == "highs":
        cmd = pulp.HiGHS(msg=False, timeLimit=limit, threads=threads, gapAbs=1e-7, gapRel=1e-6)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            cmd = pulp.PULP_CBC_CMD(msg=False, timeLimit=max(0.1, limit), threads=threads)
    ran = model.run(cmd)
    if isinstance(ran, _Outcome):
        return ran
    params, objective, sol, elapsed = ran
    if solver == "highs":
        return model._highs_outcome(params, objective, limit, elapsed)
    if sol == pulp.LpSolutionOptimal and math.isfinite(objective):
        return _Outcome(True, objective, objective, params)
    return _Outcome(params=params, objective=objective, time_limited=elapsed >= 0.9 * limit)
