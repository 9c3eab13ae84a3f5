"""How the target labels of a Problem reach a backend: the one place labels are iterated.

Both strategies wrap any backend through the protocol ``verify(problem, timeout_s) ->
Result`` and present the same protocol themselves, so the isolated runner runs a
strategy exactly as it would run a backend (one child process, one hard timeout).

``joint``
    The backend on all targets at once (Marabou: one query with the disjunction of the
    violations; MILP: one MILP minimising the smallest margin; CROWN: all margins bounded
    together).

``guided`` (target-label guidance, Wan et al.)
    1. bound ``f_j - f_y`` over the perturbation set for every target j with CROWN
       (``medverify.bounds.crown`` on ``problem.margin_net()``); with ``refine=True``,
       labels CROWN leaves open by less than ``REFINE_BAND`` are re-bounded with α-CROWN
       when ``bounds`` offers it (it costs a torch import and an optimisation per job, so
       it pays only before an expensive backend: off by default); a label whose upper
       bound is below 0 can never win: pruned;
    2. order the remaining labels by that bound, most dangerous first;
    3. run the backend once per label on the single-target Problem, stopping at the
       first counterexample that ``confirm`` accepts (the replay of ``verify.finalize``:
       a counterexample of label j that does not replay leaves j open and the loop goes
       on). ``robust`` only when every label is pruned or proven; otherwise ``timeout`` /
       ``unknown`` / ``error`` (the worst open status) when one stayed open and none fell.

Time sharing (one ``timeout_s`` for the whole job, bounds and sorting included): each
label gets an equal share of the time still left, ``left / labels still to run``, so time
a label does not use flows to the labels after it. Labels that ran out of their share
are tried again, most dangerous first, with the time left over after the first pass
(again in equal shares). Sound; complete iff the backend is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from . import bounds as bounds_mod
from .errors import ConfigError
from .verifiers.base import Problem, Result

STRATEGIES = ("joint", "guided")
#: open statuses, worst first: the verdict of a job in which no label fell
OPEN_ORDER = ("error", "timeout", "unknown")
#: seconds kept back from the job's timeout (building the result, pickling it home)
RESERVE_S = 0.2
#: a label's share below this many seconds is not worth starting
MIN_SHARE_S = 0.05
#: bound method tried on labels CROWN leaves open (with ``refine``, if ``bounds`` has it)
REFINE_METHOD = "alpha-crown"
#: only labels whose CROWN upper bound on f_j - f_y is below this are worth refining
REFINE_BAND = 1.0

#: confirm(problem, result) -> (ok, flag, message): does a claimed counterexample hold up?
Confirm = Callable[[Problem, Result], tuple[bool, str | None, str]]


def check_name(name: str) -> str:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    return name


def make(name: str, backend, confirm: Confirm | None = None, refine: bool = False):
    """The strategy ``name`` wrapped around ``backend`` (anything with ``verify``)."""
    check_name(name)
    if name == "joint":
        return Joint(backend)
    return Guided(backend, confirm=confirm, refine=refine)


class Joint:
    name = "joint"

    def __init__(self, backend):
        self.backend = backend

    def verify(self, problem: Problem, timeout_s: float) -> Result:
        return self.backend.verify(problem, timeout_s)


def label_bounds(problem: Problem, refine: bool = False) -> tuple[np.ndarray, str]:
    """Upper bound of ``f_j - f_y`` over the box, per target (in ``problem.targets``
    order), and the bound method(s) used."""
    mnet = problem.margin_net()  # rows: f_y - f_j
    upper = -bounds_mod.crown(mnet, problem.lower, problem.upper)[-1][0]
    method = "crown"
    near = np.flatnonzero((upper >= 0) & (upper < REFINE_BAND))
    if refine and near.size and REFINE_METHOD in bounds_mod.METHODS:
        sub = problem.net.margin_net(problem.label, [problem.targets[r] for r in near])
        tighter = -bounds_mod.compute(sub, problem.lower, problem.upper, REFINE_METHOD)[-1][0]
        upper[near] = np.minimum(upper[near], tighter)
        method = f"crown+{REFINE_METHOD}"
    return upper, method


class Guided:
    name = "guided"

    def __init__(self, backend, confirm: Confirm | None = None, refine: bool = False):
        self.backend = backend
        self.confirm = confirm
        self.refine = bool(refine)

    def verify(self, problem: Problem, timeout_s: float) -> Result:
        start = time.perf_counter()
        deadline = start + float(timeout_s) - RESERVE_S
        upper, method = label_bounds(problem, self.refine)
        order = sorted(range(len(problem.targets)), key=lambda r: -upper[r])
        sort_s = time.perf_counter() - start
        entries = {
            problem.targets[r]: {
                "label": problem.targets[r],
                "status": "pruned" if upper[r] < 0 else "skipped",
                "seconds": 0.0,
                "bound": float(upper[r]),
            }
            for r in order
        }
        stats = {"sort_s": round(sort_s, 4), "label_bounds": method, "queries": 0}
        todo = [problem.targets[r] for r in order if upper[r] >= 0]
        stats["labels_pruned"] = len(problem.targets) - len(todo)
        lower_bounds = {problem.targets[r]: -float(upper[r]) for r in order if upper[r] < 0}
        notes: list[str] = []

        def finish(status, **kw):
            stats["labels_checked"] = list(entries.values())
            return Result(status, stats=stats, **kw)

        for attempt in (1, 2):
            retry = []
            for n, j in enumerate(todo):
                share = (deadline - time.perf_counter()) / (len(todo) - n)
                if share < MIN_SHARE_S:
                    entries[j]["status"] = "timeout"
                    retry.extend(todo[n:])
                    break
                res, seconds = self._run(problem, j, share)
                stats["queries"] += 1
                entry = entries[j]
                entry["seconds"] = round(entry["seconds"] + seconds, 4)
                entry["status"] = res.status
                if attempt == 2:
                    entry["attempts"] = 2
                if res.status == "counterexample":
                    ok, flag, why = self._confirmed(problem, j, res)
                    if ok:
                        return finish(
                            "counterexample",
                            params=res.params,
                            message=f"guided: label {j} falls. {res.message}".strip(),
                        )
                    entry["status"] = "unknown"
                    entry["flag"] = flag
                    notes.append(f"label {j}: {why}")
                    continue
                if res.status == "robust":
                    lb = res.margin_lower_bound
                    lower_bounds[j] = -np.inf if lb is None else float(lb)
                    continue
                if res.status == "timeout":
                    retry.append(j)
                if res.message:
                    notes.append(f"label {j}: {res.message.splitlines()[0][:300]}")
            if not retry or deadline - time.perf_counter() < MIN_SHARE_S * len(retry):
                break
            todo = retry
        if len(lower_bounds) == len(problem.targets):
            lb = min(lower_bounds.values())
            return finish(
                "robust",
                margin_lower_bound=lb if np.isfinite(lb) else None,
                message=(
                    f"guided: {stats['labels_pruned']} labels pruned by {method}, "
                    f"{len(problem.targets) - stats['labels_pruned']} proven"
                ),
            )
        open_status = [e["status"] for e in entries.values() if e["status"] in OPEN_ORDER]
        worst = next((s for s in OPEN_ORDER if s in open_status), "timeout")
        return finish(worst, message=("guided: " + "; ".join(notes))[:2000])

    def _run(self, problem: Problem, j: int, share: float) -> tuple[Result, float]:
        single = replace(problem, targets=(j,), name=f"{problem.name}_t{j}")
        t0 = time.perf_counter()
        try:
            res = self.backend.verify(single, share)
        except Exception as exc:  # noqa: BLE001 - one label's failure leaves it open
            res = Result("error", message=f"{type(exc).__name__}: {exc}")
        return res, time.perf_counter() - t0

    def _confirmed(self, problem: Problem, j: int, res: Result):
        if self.confirm is None:
            return True, None, ""
        single = replace(problem, targets=(j,))
        return self.confirm(single, res)
