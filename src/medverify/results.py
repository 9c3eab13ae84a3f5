"""The verification record: one per job, JSON, written atomically. The only module that
knows the on-disk format, and the only place that builds a record (``Record.build``).

A job answers one :class:`Question` (which instance, which perturbation, which verifier
and strategy, under which timeout); the record is that question's fields plus the
verdict fields (status, counterexample, bounds, flags, times)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace

from .fileio import atomic_write

SCHEMA_VERSION = 2
STATUSES = ("robust", "counterexample", "unknown", "timeout", "error")
DECIDED = ("robust", "counterexample")
#: a result word as verification tools write it (VNN-COMP results and result files,
#: VNN-LIB solver answers) -> our verdict; a backend that reads a tool with a wider
#: vocabulary (``verifiers.abcrown``) extends this map, never restates it
STATUS_OF_WORD = {
    "unsat": "robust",
    "holds": "robust",
    "sat": "counterexample",
    "violated": "counterexample",
    "unknown": "unknown",
    "timeout": "timeout",
    "timed-out": "timeout",
    "error": "error",
    "": "error",
}
#: Named states of a downgraded counterexample (the record's ``flags``):
#: borderline   - float64 margin in (-CEX_MARGIN, 0]: too close to the boundary to replay
#: replay-failed - onnxruntime on the original classifier keeps the true label ahead, or the
#:                 backend claimed a counterexample without parameters / with margin > 0
#: outside-set  - the point lies outside the perturbation set (tolerance 1e-6)
FLAGS = ("borderline", "replay-failed", "outside-set")


@dataclass(frozen=True)
class Question:
    """What one verification job answers. Records take their instance fields from it."""

    dataset: str
    model: str
    index: int  # test-set position of the image (-1: none, e.g. a VNNLIB property)
    true_label: int
    family: str
    magnitude_k: float
    verifier: str
    strategy: str = "joint"
    timeout_s: float = 0.0
    model_sha256: str = ""
    slot: int | None = None

    def replace(self, **changes) -> Question:
        return replace(self, **changes)

    @classmethod
    def of_job(cls, wildcards, timeout_s: float) -> Question:
        """The question of a workflow job (rules verify and search) from its wildcards:
        dataset, model, family, verifier and slot, plus k and strategy where the rule has
        them (a search has no k: 0). Index and true label are -1 until the job reads its
        instances file."""
        return cls(
            dataset=wildcards["dataset"],
            model=wildcards["model"],
            index=-1,
            true_label=-1,
            family=wildcards["family"],
            magnitude_k=float(wildcards.get("k", 0)),
            verifier=wildcards["verifier"],
            strategy=wildcards.get("strategy", "joint"),
            timeout_s=float(timeout_s),
            slot=int(wildcards["slot"]),
        )


#: Record fields that come from the Question (the rest are verdict fields).
QUESTION_FIELDS = tuple(f.name for f in fields(Question))


@dataclass
class Record:
    dataset: str
    model: str
    index: int  # test-set position of the image
    true_label: int
    family: str
    magnitude_k: float
    verifier: str
    status: str
    model_sha256: str = ""
    strategy: str = "joint"  # "joint" | "guided"
    counterexample: dict | None = None  # {"image": [...], plus family params e.g. "beta"}
    predicted_label_at_counterexample: int | None = None
    margin_lower_bound: float | None = None
    # guided strategy: [{"label", "status", "seconds", "bound"}] in the order checked
    # (status "pruned" for labels whose upper bound is below 0)
    labels_checked: list[dict] | None = None
    flags: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0  # whole job, including set-up and replay
    verifier_time_s: float = 0.0  # inside the backend
    timeout_s: float = 0.0
    tool_version: str = ""
    message: str = ""
    slot: int | None = None  # position among the model's selected instances
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}: one of {', '.join(STATUSES)}")
        bad = [f for f in self.flags if f not in FLAGS]
        if bad:
            raise ValueError(f"unknown flag {bad[0]!r}: one of {', '.join(FLAGS)}")

    @classmethod
    def build(cls, question: Question, status: str, **verdict) -> Record:
        """The one record builder: the question's fields plus the verdict fields."""
        clash = set(verdict) & set(QUESTION_FIELDS)
        if clash:
            raise TypeError(f"verdict fields {sorted(clash)} belong to the question")
        return cls(status=status, **asdict(question), **verdict)

    @property
    def question(self) -> Question:
        return Question(**{name: getattr(self, name) for name in QUESTION_FIELDS})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"record has unknown keys {sorted(unknown)}")
        return cls(**d)


def write_json(obj, path: str | os.PathLike) -> None:
    """Write JSON atomically (temp file in the same directory, then rename)."""
    atomic_write(path, json.dumps(obj, indent=1, allow_nan=True) + "\n")


def write(record: Record | SearchRecord, path: str | os.PathLike) -> None:
    write_json(record.to_dict(), path)


def read(path: str | os.PathLike) -> Record:
    with open(path) as fh:
        return Record.from_dict(json.load(fh))


#: How a search found its bracket: bisection over a backend, the exact walk of a
#: one-parameter family, or the MILP minimum L-infinity distortion.
SEARCH_METHODS = ("bisection", "exact", "milp-min")


@dataclass
class SearchRecord:
    """The critical magnitude of one input: the largest magnitude proven robust
    (``eps_robust``) and the smallest with a replayed counterexample
    (``eps_counterexample``), both in [0, 1] pixel units (k/255). Instance fields come from
    a :class:`Question` (its ``magnitude_k`` is the top of the range, its ``timeout_s``
    the per-probe timeout); ``probes`` are ordinary verification records (as dicts).

    ``eps_counterexample`` None: no counterexample up to ``max_eps`` (right-censored at the
    range). ``censored``: a probe inside the bracket ended undecided (timeout / unknown /
    error), so the bracket is wider than the grid allows; the bracket is still what was
    proven."""

    dataset: str
    model: str
    index: int  # position of the image in its split
    true_label: int
    family: str
    magnitude_k: float  # top of the searched range, k/255 = max_eps
    verifier: str
    method: str
    eps_robust: float | None
    eps_counterexample: float | None
    censored: bool
    split: str = "test"
    strategy: str = "joint"
    timeout_s: float = 0.0  # per probe
    model_sha256: str = ""
    slot: int | None = None
    resolution: float = 0.0
    max_eps: float = 0.0
    counterexample_label: int | None = None  # label reached at eps_counterexample
    probes: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.method not in SEARCH_METHODS:
            raise ValueError(
                f"unknown search method {self.method!r}: one of {', '.join(SEARCH_METHODS)}"
            )

    @classmethod
    def build(cls, question: Question, method: str, **fields_) -> SearchRecord:
        """The one search-record builder: the question's fields plus the bracket."""
        clash = set(fields_) & set(QUESTION_FIELDS)
        if clash:
            raise TypeError(f"search fields {sorted(clash)} belong to the question")
        return cls(method=method, **asdict(question), **fields_)

    @property
    def question(self) -> Question:
        return Question(**{name: getattr(self, name) for name in QUESTION_FIELDS})

    @property
    def width(self) -> float | None:
        if self.eps_robust is None or self.eps_counterexample is None:
            return None
        return self.eps_counterexample - self.eps_robust

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SearchRecord:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"search record has unknown keys {sorted(unknown)}")
        return cls(**d)


def read_search(path: str | os.PathLike) -> SearchRecord:
    with open(path) as fh:
        return SearchRecord.from_dict(json.load(fh))
