"""What every backend receives and returns."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..attack import CEX_MARGIN  # noqa: F401 - re-exported: backends import it from here
from ..fileio import fds_to
from ..nets import AffineNet
from ..perturbations import Family


@dataclass
class Problem:
    """Decide: for every parameter p in [lower, upper], ``f_label(p) - f_j(p) > 0`` for
    every j in ``targets``?  ``net`` maps the family's parameters to logits (the family
    prefix composed with the classifier); ``family.apply(p)`` is the image."""

    net: AffineNet
    lower: np.ndarray
    upper: np.ndarray
    label: int
    targets: tuple[int, ...]
    family: Family
    name: str = ""  # for logs and temp files

    def __post_init__(self):
        self.lower = np.asarray(self.lower, np.float64)
        self.upper = np.asarray(self.upper, np.float64)
        if self.lower.shape != (self.net.input_dim,) or self.upper.shape != self.lower.shape:
            raise ValueError(
                f"box shape {self.lower.shape} does not match network input {self.net.input_dim}"
            )
        self.targets = tuple(int(j) for j in self.targets)
        if self.label in self.targets or not self.targets:
            raise ValueError(f"targets {self.targets} must be non-empty and exclude {self.label}")

    def margin_net(self) -> AffineNet:
        """``p -> [f_label(p) - f_j(p) for j in targets]``."""
        return self.net.margin_net(self.label, self.targets)

    def margins(self, params: np.ndarray) -> np.ndarray:
        return self.margin_net().forward(params)

    def write_onnx(self, directory: str | None = None) -> str:
        """The composed network (parameters -> logits) as an ONNX file for tools that
        read one; caller may delete it."""
        from ..onnx_io import export_affine

        fd, path = tempfile.mkstemp(suffix=".onnx", prefix="medverify_", dir=directory)
        os.close(fd)
        export_affine(self.net, path)
        return path


@dataclass
class Result:
    status: str  # robust | counterexample | unknown | timeout | error
    params: np.ndarray | None = None  # family parameters of a counterexample
    margin_lower_bound: float | None = None  # proven lower bound on min_j margin, if any
    message: str = ""
    stats: dict = field(default_factory=dict)


@contextmanager
def solver_stdout_silenced():
    """While inside, what C code writes to file descriptor 1 is dropped: HiGHS prints its
    banner on stdout whenever a solver object is built, whatever its output flag, and a
    command's stdout carries its answer only (``medverify verify`` prints one line)."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        with fds_to(null, (1,)):
            yield
    finally:
        os.close(null)
