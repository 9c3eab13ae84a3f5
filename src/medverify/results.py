"""The verification record: one per job, JSON, written atomically. The only module that
knows the on-disk format."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

SCHEMA_VERSION = 1
STATUSES = ("robust", "counterexample", "unknown", "timeout", "error")
DECIDED = ("robust", "counterexample")


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
    labels_checked: list[int] | None = None
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1, allow_nan=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(record: Record, path: str | os.PathLike) -> None:
    write_json(record.to_dict(), path)


def read(path: str | os.PathLike) -> Record:
    with open(path) as fh:
        return Record.from_dict(json.load(fh))
