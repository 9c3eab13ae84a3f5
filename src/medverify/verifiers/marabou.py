"""Marabou (maraboupy 2.0.0): complete SMT-style search over the ReLU network.

The composed network (parameters -> logits, Gemm/Relu only) is written to a temporary
ONNX file and read back with ``Marabou.read_onnx`` (``createInputQuery`` on an ONNX file
segfaults in 2.0.0). Inputs are bounded by the parameter box and the violation
``f_j - f_label >= delta`` is encoded as one query: a single equation for one target, the
disjunction over the targets for several (label-by-label runs, most dangerous first, are
the ``guided`` strategy in ``medverify.strategies``). ``delta`` starts at 0; a ``sat``
answer whose point does not violate in float64 is re-queried with a small positive
``delta`` before giving up with ``unknown``.

Marabou's own output (it prints from C++) is captured at the file-descriptor level and
discarded, except the last lines, which go into error messages.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings

import numpy as np

from ..attack import sign_descent
from ..fileio import fds_to
from .base import CEX_MARGIN, Problem, Result

#: Marabou exit code -> our vocabulary (the one place this mapping happens)
EXIT_CODES = {
    "sat": "counterexample",
    "unsat": "robust",
    "TIMEOUT": "timeout",
    "QUIT_REQUESTED": "timeout",
    "UNKNOWN": "unknown",
    "ERROR": "error",
}
#: seconds kept back from the caller's timeout (parsing, cleanup)
RESERVE_S = 0.5
#: margins asked of a re-query when a sat point does not violate in float64
NUDGES = (1e-4, 1e-3)


def _import_marabou():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Tensorflow parser is unavailable"
        from maraboupy import Marabou, MarabouCore, MarabouUtils
    return Marabou, MarabouCore, MarabouUtils


@contextlib.contextmanager
def _captured_output(sink: list):
    """Send fds 1 and 2 to a temp file for the duration; append its tail to ``sink``."""
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            with fds_to(tmp.fileno(), (1, 2)):
                yield
        finally:
            tmp.seek(0, os.SEEK_END)
            size = tmp.tell()
            tmp.seek(max(0, size - 2000))
            sink.append(tmp.read().decode("utf-8", "replace"))


class Verifier:
    name = "marabou"
    #: conda env of its jobs (envs/<conda_env>.yaml): maraboupy
    conda_env = "marabou"

    def __init__(self, tightening: str = "deeppoly", verbosity: int = 0):
        self.tightening = tightening
        self.verbosity = int(verbosity)

    def tool_version(self) -> str:
        from importlib.metadata import version

        return f"maraboupy {version('maraboupy')}"

    # ------------------------------------------------------------------------------
    def verify(self, problem: Problem, timeout_s: float) -> Result:
        """One query over all of ``problem.targets`` (a disjunction when there are
        several); label-by-label runs are ``medverify.strategies.Guided``."""
        start = time.perf_counter()
        deadline = start + timeout_s - RESERVE_S
        Marabou, _, MarabouUtils = _import_marabou()
        path = problem.write_onnx()
        try:
            net = Marabou.read_onnx(path)
        finally:
            os.unlink(path)
        in_vars = [int(v) for v in np.asarray(net.inputVars[0]).reshape(-1)]
        out_vars = [int(v) for v in np.asarray(net.outputVars[0]).reshape(-1)]
        for var, lo, hi in zip(in_vars, problem.lower, problem.upper, strict=True):
            net.setLowerBound(var, float(lo))
            net.setUpperBound(var, float(hi))
        self._net, self._in, self._out, self._utils = net, in_vars, out_vars, MarabouUtils
        stats = {"queries": 0, "targets": len(problem.targets)}
        budget = int(deadline - time.perf_counter())
        group = list(problem.targets)
        if budget < 1:
            return Result("timeout", message=f"labels {group}: no time left", stats=stats)
        status, params, note = self._decide(problem, group, budget, deadline, stats)
        if status == "counterexample":
            return Result("counterexample", params=params, message=note, stats=stats)
        if status == "robust":
            return Result("robust", message="Marabou: unsat for every target", stats=stats)
        return Result(status, message=note[:2000], stats=stats)

    # ------------------------------------------------------------------------------
    def _decide(self, problem, group, budget, deadline, stats):
        """One query (with float64 re-check and nudged re-queries) for labels ``group``."""
        for delta in (0.0, *NUDGES):
            if delta > 0:
                budget = int(deadline - time.perf_counter())
                if budget < 1:
                    return "timeout", None, f"labels {group}: no time left to re-query"
            code, vals, tail = self._solve(problem.label, group, delta, budget)
            stats["queries"] += 1
            status = EXIT_CODES.get(code, "error")
            if status != "counterexample":
                note = "" if status == "robust" else f"labels {group}: Marabou {code}"
                if status == "error":
                    last = [ln for ln in tail.strip().splitlines() if ln.strip()][-1:]
                    note += f" ({last[0][:200]})" if last else ""
                if delta > 0 and status == "robust":
                    # unsat at delta > 0 after a spurious sat at 0: the margin is in [0, delta)
                    return "unknown", None, f"labels {group}: sat only within {delta:g} of 0"
                return status, None, note
            params = np.array([vals[v] for v in self._in], dtype=np.float64)
            params = np.clip(params, problem.lower, problem.upper)
            margins = problem.margins(params)
            if np.min(margins) < 0:
                params = sign_descent(problem, params)  # off the boundary
                margins = problem.margins(params)
            if np.min(margins) <= -CEX_MARGIN:
                j = problem.targets[int(np.argmin(margins))]
                return "counterexample", params, f"label {j} reaches margin {np.min(margins):.6g}"
        return "unknown", None, f"labels {group}: sat points do not violate in float64"

    def _solve(self, label, group, delta, budget):
        Marabou, MarabouCore, _ = _import_marabou()
        net, out, utils = self._net, self._out, self._utils
        net.additionalEquList.clear()
        net.disjunctionList.clear()
        equations = []
        for j in group:
            # f_label - f_j <= -delta
            eq = utils.Equation(MarabouCore.Equation.LE)
            eq.addAddend(1.0, out[label])
            eq.addAddend(-1.0, out[j])
            eq.setScalar(-float(delta))
            equations.append(eq)
        if len(equations) == 1:
            net.addEquation(equations[0], isProperty=True)
        else:
            net.addDisjunctionConstraint([[eq] for eq in equations])
        options = Marabou.createOptions(
            timeoutInSeconds=int(budget),
            verbosity=self.verbosity,
            tighteningStrategy=self.tightening,
            numWorkers=1,
        )
        sink: list[str] = []
        try:
            with _captured_output(sink):
                code, vals, _ = net.solve(options=options, verbose=False)
        finally:
            net.disjunctionList.clear()
            net.additionalEquList.clear()
        return code, vals, "".join(sink)
