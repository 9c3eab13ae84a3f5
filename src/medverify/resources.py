"""What one verification job needs: memory (MB) and runtime (minutes), derived in one
place from the verifier, the family and the input size. The verify rule declares these as
``resources`` (so cluster executors request them) and the job caps its solver child's
address space at the same ``mem_mb`` (``runner.run_isolated``), so a job that would
exceed its request fails alone, as an ``error`` record, instead of being killed by the
cluster or taking the machine down.

The numbers are peak address space (VmPeak) of the forked verification child, which
includes what it inherits from the job process (numpy, onnxruntime, the network): the
cap is on address space, which runs ahead of resident memory. Measured with
``benchmarks/job_memory.py`` (peak_vm_mb; 784-input PneumoniaMNIST MLP, k = 8): every
backend ~1.25 GB except Marabou on brightness (2.2 GB, ~1.2 MB more per input); Marabou
brightness on RetinaMNIST (2352 inputs) peaked at 6.6-7.1 GB resident in an earlier run
(issue 12), i.e. up to ~3 MB per input. See docs/cluster.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .perturbations import FAMILIES

#: MB every job gets: interpreter, numpy, onnxruntime, the network, torch for crown's
#: fallback, solver threads (measured VmPeak ~1.25 GB; headroom for larger networks)
BASE_MB = 2000
#: extra MB per input pixel, by verifier and whether the family is structured (a
#: one-parameter family composes a 2-ReLU clip per pixel in front of the classifier)
PER_INPUT_MB = {
    ("marabou", True): 3.0,
    ("marabou", False): 1.0,
}
DEFAULT_PER_INPUT_MB = 0.25
#: minutes around the verification itself: job start, imports, replay, record
SETUP_MIN = 2


@dataclass(frozen=True)
class JobResources:
    mem_mb: int
    runtime_min: int


def verify_job(verifier: str, family: str, input_dim: int, timeout_s: float) -> JobResources:
    """Resources of one verification job (see the module docstring)."""
    structured = bool(FAMILIES[family].structured) if family in FAMILIES else False
    per_input = PER_INPUT_MB.get((verifier, structured), DEFAULT_PER_INPUT_MB)
    mem = BASE_MB + per_input * int(input_dim)
    return JobResources(
        mem_mb=int(math.ceil(mem / 100.0) * 100),
        runtime_min=int(math.ceil(float(timeout_s) / 60.0)) + SETUP_MIN,
    )
