"""Fault injection with real child processes: a backend that segfaults, hangs, exhausts
memory or exits becomes an error/timeout record; the command exits non-zero for a failed
verifier; the merge counts faults per verifier."""

import logging

import numpy as np
import pytest
from faulty_backend import register
from processes import gone

from medverify import aggregate, onnx_io
from medverify.cli import main
from medverify.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_VERIFIER_FAILED
from medverify.results import Question, Record, read, write
from medverify.runner import run_isolated
from medverify.verify import verify_image, verify_vnnlib

# the child's address-space cap: bytes(n) is calloc'ed (untouched pages), so hitting it
# costs address space, not memory
CAP_MB = 3000


@pytest.fixture()
def faulty(monkeypatch):
    return register(monkeypatch)


@pytest.fixture()
def onnx(toy_onnx):
    return toy_onnx


def _question(verifier, timeout_s=5.0):
    return Question("toy", "toy", 0, 0, "brightness", 4, verifier, timeout_s=timeout_s)


@pytest.mark.parametrize(
    ("fault", "status", "words"),
    [
        ("segfault", "error", "SIGSEGV"),
        ("hang", "timeout", "killed after"),
        ("oom", "error", f"out of memory (limit {CAP_MB} MB)"),
        ("exit", "error", "exited with code 7"),
        ("none", "unknown", "without a fault"),
    ],
)
def test_fault_becomes_record(faulty, onnx, fault, status, words):
    rec = verify_image(
        onnx,
        np.full((1, 2, 2), 0.5),
        _question(faulty, timeout_s=1.0),
        options={"fault": fault},
        mem_limit_mb=CAP_MB,
    )
    assert rec.status == status, rec.message
    assert words in rec.message
    assert "\n" not in rec.message


def _allocate(mb):
    return len(bytes(mb << 20))


def test_address_space_cap_applies_in_child_only():
    capped = run_isolated(_allocate, 4000, timeout_s=20, mem_limit_mb=CAP_MB)
    assert capped.kind == "exception" and "out of memory" in capped.message
    free = run_isolated(_allocate, 100, timeout_s=20, mem_limit_mb=CAP_MB)
    assert free.kind == "ok" and free.value == 100 << 20
    assert _allocate(10) == 10 << 20  # the parent is not capped


def test_cli_exit_codes(faulty, onnx, tmp_path, capsys):
    from medverify import vnnlib

    prop = tmp_path / "p.vnnlib"
    vnnlib.write(prop, np.full(4, 0.45), np.full(4, 0.55), 0, 2)

    def run(verifier, options="{}"):
        out = tmp_path / f"{verifier}.json"
        rc = main(
            [
                "verify",
                "--onnx",
                str(onnx),
                "--vnnlib",
                str(prop),
                "--verifier",
                verifier,
                "--timeout",
                "2",
                "--mem-mb",
                str(CAP_MB),
                "--options",
                options,
                "--out",
                str(out),
            ]
        )
        return rc, read(out), capsys.readouterr().err

    rc, rec, err = run(faulty, '{"fault": "segfault"}')
    assert rc == EXIT_VERIFIER_FAILED and rec.status == "error"
    assert err.count("\n") == 1 and "SIGSEGV" in err
    rc, rec, err = run(faulty, '{"fault": "hang"}')  # a timeout is an answer
    assert rc == EXIT_OK and rec.status == "timeout" and err == ""
    rc, rec, err = run("nosuch")
    assert rc == EXIT_BAD_INPUT and rec.status == "error"
    assert "'nosuch'" in err and err.count("\n") == 1


def test_verify_vnnlib_fault_record(faulty, onnx, tmp_path):
    from medverify import vnnlib

    prop = tmp_path / "p.vnnlib"
    vnnlib.write(prop, np.full(4, 0.45), np.full(4, 0.55), 0, 2)
    rec = verify_vnnlib(onnx, prop, faulty, 1.0, options={"fault": "hang"})
    assert rec.status == "timeout"


def test_merge_counts_faults_per_verifier(tmp_path, caplog):
    paths = []
    statuses = {"crown": ["robust", "error", "timeout"], "milp": ["error", "error", "robust"]}
    for verifier, sts in statuses.items():
        for slot, status in enumerate(sts):
            q = Question("toy", "m", slot, 0, "linf", 4, verifier, timeout_s=1.0, slot=slot)
            path = tmp_path / f"{verifier}{slot}.json"
            write(Record.build(q, status), path)
            paths.append(str(path))
    out = {k: str(tmp_path / f"{k}.csv") for k in ("records", "outcomes", "agreement", "conf")}
    with caplog.at_level(logging.INFO, logger="medverify.aggregate"):
        df = aggregate.merge(
            paths,
            ["crown", "milp"],
            out["records"],
            out["outcomes"],
            out["agreement"],
            [out["conf"]],
        )
    faults = aggregate.fault_counts(df)
    assert faults.loc["crown"].to_dict() == {"error": 1, "timeout": 1}
    assert faults.loc["milp"].to_dict() == {"error": 2, "timeout": 0}
    assert "faults of crown: 1 error, 1 timeout" in caplog.text
    assert "faults of milp: 2 error, 0 timeout" in caplog.text


CHILD_SCRIPT = """
import os, signal, sys, time
from medverify.runner import run_isolated

# a job started from a terminal: SIGINT raises KeyboardInterrupt (a shell that starts the
# test suite in the background hands its children SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)

def hang(path):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    while True:
        time.sleep(0.1)

run_isolated(hang, sys.argv[1], timeout_s=600)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_killed_job_leaves_no_solver_behind(tmp_path, sig):
    import os
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "pid"
    job = subprocess.Popen([sys.executable, "-c", CHILD_SCRIPT, str(marker)])
    try:
        deadline = time.time() + 60
        while not (marker.exists() and marker.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        solver = int(marker.read_text())
        job.send_signal(getattr(signal, sig))
        job.wait(timeout=30)
        assert gone(solver), f"solver {solver} survived {sig} of its job"
    finally:
        if job.poll() is None:
            job.kill()
        if marker.exists() and marker.read_text():
            try:
                os.kill(int(marker.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_classifier_cache_is_keyed_by_content(onnx, tmp_path):
    from medverify.verify import load_classifier

    sha = onnx_io.sha256(onnx)
    first = load_classifier(onnx, sha)
    cache = onnx.with_name(f".{onnx.name}.{sha[:16]}.affine.npz")
    assert cache.exists()
    again = load_classifier(onnx, sha)
    for (w1, b1), (w2, b2) in zip(first.layers, again.layers, strict=True):
        assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    cache.write_bytes(b"half a file")  # unreadable: rebuilt from the ONNX, never trusted
    rebuilt = load_classifier(onnx, sha)
    assert np.array_equal(rebuilt.layers[0][0], first.layers[0][0])


@pytest.mark.slow
def test_dag_finishes_when_solvers_run_out_of_memory(tmp_path):
    """A whole workflow run with verify_mem_mb at the schema minimum, 100 MB, below what
    the forked solver already maps: RLIMIT_AS blocks any new mapping, so milp (HiGHS)
    runs out of memory in every job and writes an error record, while exact, which
    allocates nothing new, still answers. The DAG finishes (exit 0) and the merge counts
    the faults per verifier."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((repo / "tests" / "config" / "ci.yaml").read_text())
    data_dir = os.environ.get("MEDVERIFY_DATA_DIR", str(repo.parent / "shared/data/medmnist"))
    cfg.update(
        data_dir=str(Path(data_dir).resolve()),
        instances=2,
        families={"brightness": [4]},
        verifiers=["exact", "milp"],
        verify_mem_mb=100,
        strategies=["joint"],
    )
    config = tmp_path / "oom.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile")]
        + ["-d", str(tmp_path / "w"), "--configfile", str(config), "--cores", "2"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    records = sorted((tmp_path / "w" / "results").glob("*/*/verify/*/*/*/*/*.json"))
    assert len(records) == 4
    for path in records:
        rec = read(path)
        if rec.verifier == "milp":
            assert rec.status == "error", (path, rec.status, rec.message)
            assert rec.message == "out of memory (limit 100 MB)"
    merge_log = (tmp_path / "w" / "logs" / "merge.log").read_text()
    assert "faults of milp: 2 error, 0 timeout" in merge_log
