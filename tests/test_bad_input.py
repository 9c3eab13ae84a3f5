"""The bad-input catalogue: each bad input gives a one-line error naming the value and the
file, a non-zero exit code, and (for `verify`) an error record all the same."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medverify import config as mconfig
from medverify.cli import main
from medverify.errors import EXIT_BAD_INPUT, ConfigError
from medverify.results import read

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
CI_CONFIG = yaml.safe_load((REPO / "tests" / "config" / "ci.yaml").read_text())

HEADER = "".join(f"(declare-const X_{i} Real)\n" for i in range(4)) + (
    "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
)
BOX = "".join(f"(assert (>= X_{i} 0.45))\n(assert (<= X_{i} 0.55))\n" for i in range(4))

VNNLIB_CASES = {
    # name: (text, words the message must contain)
    "unbalanced": (HEADER + BOX + "(assert (>= Y_1 Y_0)\n", "'(' is never closed"),
    "unknown-variable": (HEADER + BOX + "(assert (>= Z_1 Y_0))\n", "'Z_1'"),
    "wrong-input-count": (
        HEADER + "(declare-const X_4 Real)\n" + BOX + "(assert (>= X_4 0.4))\n"
        "(assert (<= X_4 0.6))\n(assert (>= Y_1 Y_0))\n",
        "declares 5 inputs",
    ),
    "missing-output": (
        HEADER + "(declare-const Y_2 Real)\n" + BOX + "(assert (>= Y_2 Y_0))\n",
        "Y_2",
    ),
}


@pytest.fixture()
def onnx(toy_onnx):
    return toy_onnx


def _verify(onnx, prop, out, verifier="crown"):
    argv = ["verify", "--onnx", str(onnx), "--vnnlib", str(prop), "--verifier", verifier]
    return main([*argv, "--timeout", "5", "--out", str(out)])


@pytest.mark.parametrize("case", sorted(VNNLIB_CASES))
def test_malformed_vnnlib(onnx, tmp_path, capsys, case):
    text, words = VNNLIB_CASES[case]
    prop = tmp_path / f"{case}.vnnlib"
    prop.write_text(text)
    out = tmp_path / "r.json"
    rc = _verify(onnx, prop, out)
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT, err
    assert err.count("\n") == 1 and words in err and prop.name in err
    rec = read(out)  # the record is still written
    assert rec.status == "error" and words in rec.message


def test_corrupt_onnx_writes_record_and_fails(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx file")
    prop = tmp_path / "p.vnnlib"
    prop.write_text(HEADER + BOX + "(assert (>= Y_1 Y_0))\n")
    out = tmp_path / "r.json"
    rc = _verify(bad, prop, out)
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1
    assert read(out).status == "error"


def test_bad_options_json(onnx, tmp_path, capsys):
    rc = main(
        ["verify", "--onnx", str(onnx), "--vnnlib", "x", "--verifier", "crown"]
        + ["--options", "{nope", "--out", str(tmp_path / "r.json")]
    )
    err = capsys.readouterr().err
    assert rc == EXIT_BAD_INPUT and "'{nope'" in err and err.count("\n") == 1


def _with(**changes):
    cfg = copy.deepcopy(CI_CONFIG)
    for key, value in changes.items():
        if value is None:
            cfg.pop(key)
        else:
            cfg[key] = value
    return cfg


CONFIG_CASES = {
    "unknown-key": (_with(verifier_timeout=3), "'verifier_timeout' was unexpected"),
    "negative-magnitude": (_with(families={"linf": [-4]}), "families.linf[0]: -4"),
    "non-numeric-magnitude": (_with(families={"linf": ["four"]}), "families.linf[0]: 'four'"),
    "empty-families": (_with(families={}), "families: {} should be non-empty"),
    "empty-verifiers": (_with(verifiers=[]), "verifiers: [] should be non-empty"),
    "empty-magnitudes": (_with(families={"linf": []}), "families.linf: [] should be non-empty"),
    "unknown-verifier": (_with(verifiers=["crwon"]), "unknown verifier 'crwon'"),
    "unknown-family": (_with(families={"fog": [4]}), "unknown family 'fog'"),
    "unknown-option": (
        _with(verifier_options={"milp": {"solvr": "highs"}}),
        "verifier_options.milp: unknown option 'solvr'",
    ),
    "bad-option-value": (
        _with(verifier_options={"milp": {"solver": "gurobi"}}),
        "'gurobi'",
    ),
    "options-of-unknown-verifier": (
        _with(verifier_options={"crwon": {}}),
        "verifier_options: unknown verifier 'crwon'",
    ),
    "unknown-strategy": (_with(strategies=["greedy"]), "strategies: unknown strategy 'greedy'"),
    "unknown-search-family": (
        _with(search={"families": ["fog"]}),
        "search.families: unknown family 'fog'",
    ),
    "unknown-search-verifier": (
        _with(search={"verifiers": ["crwon"]}),
        "search.verifiers: unknown verifier 'crwon'",
    ),
    "unknown-search-method": (
        _with(search={"methods": ["guess"]}),
        "search.methods: unknown method 'guess'",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config(case):
    cfg, words = CONFIG_CASES[case]
    with pytest.raises(ConfigError) as err:
        mconfig.check(cfg, SCHEMA, source="tests/x.yaml")
    msg = str(err.value)
    assert "\n" not in msg and words in msg and msg.startswith("config tests/x.yaml:")


def test_good_config_passes():
    mconfig.check(CI_CONFIG, SCHEMA, source="ci.yaml")


def test_option_names_come_from_the_constructor():
    from medverify.verifiers import option_names
    from medverify.verifiers.milp import Verifier

    assert option_names("milp")[0] == "solver"
    assert "solver" in Verifier.__init__.__code__.co_varnames


def test_snakemake_rejects_bad_config_in_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(_with(verifiers=["crwon"], data_dir=str(tmp_path))))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
        + ["-d", str(tmp_path / "w"), "-n", "--configfile", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    lines = [line for line in output.splitlines() if "unknown verifier 'crwon'" in line]
    assert len(lines) == 1 and "bad.yaml" in lines[0], output[-2000:]


def test_exit_code_of_error_records():
    from medverify.cli import exit_code
    from medverify.errors import EXIT_INTERNAL, EXIT_OK, EXIT_VERIFIER_FAILED
    from medverify.results import Question, Record

    q = Question("d", "m", 0, 0, "linf", 4, "crown")
    assert exit_code(Record.build(q, "timeout")) == EXIT_OK
    assert exit_code(Record.build(q, "error")) == EXIT_VERIFIER_FAILED  # in the child
    bad = Record.build(q, "error", extra={"error_type": "VnnlibError"})
    assert exit_code(bad) == EXIT_BAD_INPUT
    bug = Record.build(q, "error", extra={"error_type": "KeyError"})
    assert exit_code(bug) == EXIT_INTERNAL


def test_benchmark_options_name_the_bad_item():
    from medverify.errors import ConfigError
    from medverify.verifiers import options_by_backend

    assert options_by_backend(['crown={"threads": 2}', "milp={}"]) == {
        "crown": {"threads": 2},
        "milp": {},
    }
    for bad in ("crown={threads: 2}", "crwn={}", "crown=[1]"):
        with pytest.raises(ConfigError, match=re.escape(f"bad --options {bad!r}")):
            options_by_backend([bad])


@pytest.mark.parametrize(
    "argv,word",
    [
        (["verify_matrix.py", "--models-dir", "{tmp}", "--data-dir", "{tmp}/none"], "none"),
        (["vnncomp_roundtrip.py", "compare", "{tmp}", "{tmp}/results.csv"], "manifest"),
    ],
)
def test_benchmark_scripts_answer_bad_input_in_one_line(argv, word, tmp_path):
    """A benchmark given a missing data directory or a folder that is no export: one line
    naming it on stderr and exit 2, no traceback (``errors.script_main``)."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in proc.stderr


def _filled(**changes):
    """config.yaml with ``changes``, the schema's defaults filled in (as the Snakefile has
    it when it runs check_matrix)."""
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(changes)
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return cfg


MATRIX_CASES = {
    "dataset-without-settings": (
        {"datasets": ["chestmnist"]},
        "dataset 'chestmnist' has no entry in dataset_settings",
    ),
    "external-name-clash": (
        {"external_models": {"mlp": {"onnx": "x.onnx", "dataset": "pneumoniamnist"}}},
        "external model name 'mlp' clashes",
    ),
    "external-name-of-a-twin": (
        {"external_models": {"net_pgd": {"onnx": "x.onnx", "dataset": "pneumoniamnist"}}},
        "external model name 'net_pgd' clashes",
    ),
    "verifier-for-no-family": (
        {"verifiers": ["exact"], "families": {"linf": [4]}},
        "verifier 'exact' applies to none of families ['linf']",
    ),
    "search-timeout-of-no-model": (
        {"search": {"model_timeout_s": {"resnet": 5}}},
        "search.model_timeout_s names model 'resnet', which this run does not have",
    ),
}


@pytest.mark.parametrize("case", sorted(MATRIX_CASES))
def test_bad_matrix_is_named_in_one_line(case):
    changes, words = MATRIX_CASES[case]
    mconfig.check_matrix(_filled(), source="x.yaml")  # the unchanged config passes
    with pytest.raises(ConfigError) as err:
        mconfig.check_matrix(_filled(**changes), source="x.yaml")
    msg = str(err.value)
    assert "\n" not in msg and words in msg and msg.startswith("config x.yaml:"), msg


def test_data_dir_has_one_spelling(tmp_path, monkeypatch):
    """The same data folder given absolutely, relatively, with a trailing slash, a '..'
    detour, or from a working directory reached through a link, is one param value."""
    data = tmp_path / "shared" / "medmnist"
    run = tmp_path / "run"
    data.mkdir(parents=True)
    run.mkdir()
    (tmp_path / "link").symlink_to(run)
    (tmp_path / "datalink").symlink_to(data)
    spelled = set()
    for cwd, given in (
        (run, str(data)),
        (run, "../shared/medmnist/"),
        (run, "../run/../shared/medmnist"),
        (tmp_path / "link", "../shared/medmnist"),
        (tmp_path / "link", str(data) + "/"),
        (run, str(tmp_path / "datalink")),
    ):
        monkeypatch.chdir(cwd)
        cfg = {"data_dir": given}
        mconfig.normalize_data_dir(cfg)
        spelled.add(cfg["data_dir"])
        assert Path(cfg["data_dir"]).resolve() == data.resolve()
    assert spelled == {"../shared/medmnist"}


def test_slots_taken_per_split():
    """The slots of each list the run's jobs take: verify's `instances` and the search
    stage's counts (when it is on) on the test split, the search's on the train split."""
    cfg = _filled(instances=5, search={"test_instances": 7, "train_instances": 3})
    assert mconfig.search_splits(cfg) == {"test": 7, "train": 3}
    assert (mconfig.slots_taken(cfg, "test"), mconfig.slots_taken(cfg, "train")) == (7, 3)
    cfg = _filled(instances=5, search={"enabled": False, "test_instances": 7})
    assert (mconfig.slots_taken(cfg, "test"), mconfig.slots_taken(cfg, "train")) == (5, 0)
    assert mconfig.search_splits(_filled(search={"train_instances": 0})) == {"test": 20}
