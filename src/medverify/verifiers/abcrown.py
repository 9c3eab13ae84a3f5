"""α,β-CROWN (a user-installed checkout of alpha-beta-CROWN): bound propagation with
branch and bound, run as its own program.

The composed network (parameters -> logits) and the violation property are written as
ONNX and VNN-COMP VNNLIB into a temporary directory with a YAML config that points at
them and asks for the result file and the counterexample; ``abcrown.py --config`` then
runs as a child of the verify process (so the isolated runner's process-group kill
reaches it) under the caller's timeout. Its answer is read from the result file (or the
``Result:`` line of its output when there is none) and mapped to our vocabulary here,
once; the counterexample's ``X_i`` values are the family parameters, replayed centrally.

Not installed (no ``path`` option and no ``MEDVERIFY_ABCROWN``, or no ``abcrown.py``
there): the job is *skipped*, never failed: the verdict is ``unknown`` with the one-line
reason as message and ``extra["skipped"]`` set, so the record is written, the job
succeeds, the DAG moves on, and tables can tell a skip from a solver giving up.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import results
from ..errors import MedverifyError
from .base import Problem, Result

ENV_VAR = "MEDVERIFY_ABCROWN"
#: α,β-CROWN's answers (result file and ``Result:`` line) -> our vocabulary: the words
#: every tool writes (``results.STATUS_OF_WORD``) and α,β-CROWN's own
ANSWERS = {
    **results.STATUS_OF_WORD,
    "safe": "robust",
    "safe-incomplete": "robust",
    "safe-bab": "robust",
    "safe-mip": "robust",
    "verified": "robust",
    "unsafe": "counterexample",
    "unsafe-pgd": "counterexample",
    "unsafe-bab": "counterexample",
    "unsafe-mip": "counterexample",
    "unsafe-attack": "counterexample",
}
#: seconds kept for writing files and reading the answer
RESERVE_S = 1.0
_RESULT_LINE = re.compile(r"^Result:\s*([A-Za-z_-]+)", re.MULTILINE)


def locate(path: str | None = None) -> tuple[Path | None, str]:
    """(abcrown.py, "") or (None, one-line reason it cannot be used)."""
    given = path or os.environ.get(ENV_VAR)
    if not given:
        return None, (
            f"skipped: alpha-beta-CROWN is not installed (give verifier option path= or "
            f"set {ENV_VAR} to its abcrown.py or complete_verifier directory)"
        )
    p = Path(given).expanduser()
    candidates = (
        [p] if p.suffix == ".py" else [p / "abcrown.py", p / "complete_verifier" / "abcrown.py"]
    )
    for c in candidates:
        if c.is_file():
            return c, ""
    return None, f"skipped: no abcrown.py at {given}"


def write_config(
    directory: Path, problem: Problem, timeout_s: float, device: str = "cpu", extra=None
) -> Path:
    """Write the network, the property and α,β-CROWN's YAML config; returns the config."""
    import yaml

    from .. import vnnlib

    onnx_path = Path(problem.write_onnx(str(directory)))
    spec = directory / "property.vnnlib"
    vnnlib.write_problem(spec, problem, comment=problem.name or "medverify")
    cfg = {
        "general": {
            "device": device,
            "save_adv_example": True,
            "cex_path": str(directory / "counterexample.txt"),
            "results_file": str(directory / "results.txt"),
        },
        "model": {"onnx_path": str(onnx_path), "input_shape": [1, int(problem.net.input_dim)]},
        "specification": {"vnnlib_path": str(spec)},
        "bab": {"timeout": max(1.0, float(timeout_s))},
    }
    for section, values in (extra or {}).items():
        cfg.setdefault(section, {}).update(values)
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=True))
    return path


def parse_answer(results_text: str | None, stdout: str) -> tuple[str, str]:
    """(our status, α,β-CROWN's word) from its result file, else its last ``Result:``
    line; ("error", "") when neither says anything we know."""
    word = ""
    if results_text and results_text.strip():
        word = results_text.strip().splitlines()[0].strip().lower()
    else:
        found = _RESULT_LINE.findall(stdout or "")
        word = found[-1].lower() if found else ""
    return ANSWERS.get(word, "error"), word


def parse_counterexample(text: str, n_inputs: int) -> np.ndarray:
    """The ``X_i`` values of its counterexample (VNN-COMP format ``((X_0 v) ... (Y_0 v))``,
    with or without a leading ``sat`` line)."""
    from ..vnncomp import parse_counterexample as parse

    _, x, _ = parse(text, "alpha-beta-CROWN counterexample")
    if x.size != n_inputs:
        raise ValueError(f"counterexample has {x.size} inputs, the problem has {n_inputs}")
    return x


class Verifier:
    name = "abcrown"
    #: conda env of its jobs (envs/<conda_env>.yaml): runs the user's own alpha-beta-CROWN checkout; the job needs only the base env
    conda_env = "base"

    def __init__(
        self,
        path: str | None = None,
        python: str | None = None,
        device: str = "cpu",
        config: dict | None = None,
    ):
        self.path = path
        self.python = python or sys.executable
        self.device = device
        self.config = dict(config or {})

    def tool_version(self) -> str:
        script, _ = locate(self.path)
        return (
            f"alpha-beta-CROWN ({script.parent})" if script else "alpha-beta-CROWN (not installed)"
        )

    def verify(self, problem: Problem, timeout_s: float) -> Result:
        script, reason = locate(self.path)
        if script is None:
            return Result("unknown", message=reason, stats={"skipped": reason})
        start = time.perf_counter()
        budget = max(1.0, float(timeout_s) - RESERVE_S)
        tmp = Path(tempfile.mkdtemp(prefix="medverify_abcrown_"))
        try:
            cfg = write_config(tmp, problem, budget, self.device, self.config)
            proc = subprocess.Popen(
                [self.python, str(script), "--config", str(cfg)],
                cwd=str(script.parent),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                out, _ = proc.communicate(timeout=budget + RESERVE_S)
            except subprocess.TimeoutExpired:
                _kill(proc)
                return Result("timeout", message=f"alpha-beta-CROWN killed after {budget:.0f}s")
            results_file = tmp / "results.txt"
            text = results_file.read_text() if results_file.exists() else None
            status, word = parse_answer(text, out)
            stats = {"abcrown_answer": word, "verifier_time_s": time.perf_counter() - start}
            if status == "error":
                tail = " | ".join((out or "").strip().splitlines()[-3:])
                return Result(
                    "error",
                    message=f"alpha-beta-CROWN exited {proc.returncode} without a known answer: {tail}",
                    stats=stats,
                )
            if status != "counterexample":
                return Result(status, message=f"alpha-beta-CROWN: {word}", stats=stats)
            cex = tmp / "counterexample.txt"
            source = cex.read_text() if cex.exists() else (text or "")
            try:
                x = parse_counterexample(source, problem.net.input_dim)
            except (ValueError, MedverifyError) as exc:
                return Result(
                    "counterexample", message=f"alpha-beta-CROWN: {word}; {exc}", stats=stats
                )
            return Result(
                "counterexample", params=x, message=f"alpha-beta-CROWN: {word}", stats=stats
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _kill(proc: subprocess.Popen) -> None:
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
