"""VNN-COMP benchmark folders in and out.

A benchmark folder holds ``onnx/``, ``vnnlib/`` and ``instances.csv`` (``onnx,vnnlib,
timeout`` per line, no header, paths relative to the folder; a file may be stored gzipped
as ``<name>.gz``). Three things happen here:

- :func:`export_benchmark`: our matrix (selected instances x families x magnitudes) as
  such a folder. A structured family is exported as the *composed* network (the family's
  prefix, clip written as relu(z) - relu(z - 1), in front of the classifier) over the
  family's parameters, so any tool verifies brightness as a box over beta. The folder
  also holds ``manifest.json`` (what each instance is, with the image, so results can be
  imported back as records), a README and ``generate_properties.py``.
- :func:`run_benchmark`: any folder through one of our backends, each instance isolated
  under its own timeout, writing the competition's ``results.csv`` and a counterexample
  file for every ``sat``.
- :func:`import_results`: another tool's ``results.csv`` as records (verifier = the
  tool's name); its counterexample files are replayed through onnxruntime like ours.

:func:`check_benchmark` runs the competition's format checks on a folder.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import onnx_io, results, vnnlib
from .errors import MedverifyError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
INSTANCES = "instances.csv"
RESULTS_HEADER = ("category", "onnx", "vnnlib", "prep_time", "result", "run_time")
#: our verdict -> the competition's result word
RESULT_OF_STATUS = {
    "robust": "unsat",
    "counterexample": "sat",
    "unknown": "unknown",
    "timeout": "timeout",
    "error": "error",
}
#: a competition result word (as tools write them) -> our verdict
STATUS_OF_RESULT = results.STATUS_OF_WORD


class BenchmarkError(MedverifyError):
    """A benchmark folder or results file that does not follow the competition's format."""


@dataclass(frozen=True)
class Instance:
    onnx: str  # relative to the benchmark folder, as written in instances.csv
    vnnlib: str
    timeout: float


# --- files ---------------------------------------------------------------------------


def resolve(folder: str | os.PathLike, rel: str) -> Path:
    """The file ``rel`` names inside ``folder``: itself, or its ``.gz`` beside it."""
    path = Path(folder) / rel
    if path.exists():
        return path
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return gz
    raise BenchmarkError(f"{path}: file named in {Path(folder) / INSTANCES} does not exist")


def read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


@dataclass
class Plain:
    """A benchmark file as a plain file on disk (a temporary copy when it was gzipped)."""

    path: Path
    temporary: bool = False

    def close(self):
        if self.temporary:
            self.path.unlink(missing_ok=True)


def plain(folder, rel: str, tmpdir: str | None = None) -> Plain:
    path = resolve(folder, rel)
    if path.suffix != ".gz":
        return Plain(path)
    name = Path(rel).name
    fd, tmp = tempfile.mkstemp(prefix="medverify_", suffix=f"_{name}", dir=tmpdir)
    with os.fdopen(fd, "wb") as fh:
        fh.write(read_bytes(path))
    return Plain(Path(tmp), True)


def read_instances(folder: str | os.PathLike) -> list[Instance]:
    path = Path(folder) / INSTANCES
    if not path.exists():
        raise BenchmarkError(f"{path}: no instances.csv in the benchmark folder")
    out = []
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise BenchmarkError(
                    f"{path}:{line}: expected onnx,vnnlib,timeout, got {len(row)} fields"
                )
            try:
                timeout = float(row[2])
            except ValueError:
                raise BenchmarkError(f"{path}:{line}: timeout {row[2]!r} is not a number") from None
            if not timeout > 0:
                raise BenchmarkError(f"{path}:{line}: timeout {row[2]!r} must be > 0")
            out.append(Instance(row[0].strip(), row[1].strip(), timeout))
    if not out:
        raise BenchmarkError(f"{path}: no instances")
    return out


def read_manifest(folder) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"{path}: unreadable manifest: {exc}") from None


# --- export --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """One trained model of the workflow: its classifier and selected instances."""

    dataset: str
    model: str
    onnx: str  # results/{dataset}/{model}/model.onnx
    instances: str  # results/{dataset}/{model}/instances.json
    channels: int = 1


def _fmt_k(k: float) -> str:
    return f"{float(k):g}".replace(".", "p")


@dataclass(frozen=True)
class Item:
    """One exported instance: an image of a model's selection under one family and k."""

    dataset: str
    model: str
    classifier: str  # path of the classifier's ONNX
    index: int
    slot: int
    label: int
    image: np.ndarray
    family: str
    magnitude_k: float


def export_benchmark(
    out_dir: str | os.PathLike,
    sources: Sequence[ModelSource],
    families: dict[str, Sequence[float]],
    data_dir: str,
    timeout_s: float,
    *,
    slots: int,
    sample: int | None = None,
    seed: int = 0,
    compress: bool = False,
    command: str = "",
) -> list[dict]:
    """The workflow's instances (slots 0..``slots``-1 of each model's ``instances.json``,
    which lists every correctly classified test image) x families x
    magnitudes as a benchmark folder; see :func:`write_benchmark`. ``sample``: keep that
    many instances, drawn with ``seed`` (all when None)."""
    from . import data

    if slots < 1:
        raise BenchmarkError(f"slots {slots}: expected at least 1")
    todo = []
    for src in sources:
        with open(src.instances) as fh:
            listed = json.load(fh)["instances"]
        if len(listed) < slots:
            raise BenchmarkError(
                f"{src.instances}: {len(listed)} correctly classified images, fewer than "
                f"the {slots} slots asked for"
            )
        chosen = listed[:slots]
        for inst in chosen:
            for fam, ks in families.items():
                for k in ks:
                    todo.append((src, inst, fam, float(k)))
    if sample is not None and sample < len(todo):
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(len(todo), size=sample, replace=False).tolist())
        todo = [todo[i] for i in keep]
    tests, items = {}, []
    for src, inst, fam, k in todo:
        if src.dataset not in tests:
            tests[src.dataset] = data.load(
                src.dataset, data_dir, channels=src.channels, md5=None, splits=("test",)
            )["test"]
        test = tests[src.dataset]
        index, label = int(inst["index"]), int(inst["label"])
        if int(test.labels[index]) != label:
            raise BenchmarkError(
                f"{src.instances}: image {index} has label {label} but {src.dataset} says "
                f"{int(test.labels[index])}"
            )
        items.append(
            Item(
                src.dataset,
                src.model,
                src.onnx,
                index,
                int(inst["slot"]),
                label,
                test.images[index],
                fam,
                k,
            )
        )
    return write_benchmark(
        out_dir,
        items,
        timeout_s,
        seed=seed,
        sample=sample,
        compress=compress,
        command=command,
        families=families,
    )


def write_benchmark(
    out_dir: str | os.PathLike,
    items: Sequence[Item],
    timeout_s: float,
    *,
    seed: int = 0,
    sample: int | None = None,
    compress: bool = False,
    command: str = "",
    families: dict | None = None,
) -> list[dict]:
    """Write the benchmark folder for ``items``; returns the manifest's entries. The
    folder is a function of its inputs: writing it again gives the same files."""
    from . import perturbations
    from .verify import build_problem

    out = Path(out_dir)
    for sub in ("onnx", "vnnlib"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True, exist_ok=True)
    entries, images, classifiers = [], {}, {}
    for it in items:
        fam, k = it.family, float(it.magnitude_k)
        key = (it.dataset, it.model)
        if key not in classifiers:
            rel = f"onnx/{it.dataset}_{it.model}.onnx"
            shutil.copyfile(it.classifier, out / rel)
            classifiers[key] = (
                rel,
                onnx_io.load_affine(it.classifier),
                onnx_io.sha256(it.classifier),
            )
        classifier_rel, classifier, sha = classifiers[key]
        stem = f"{it.dataset}_{it.model}_i{it.index}"
        problem = build_problem(classifier, it.image, it.label, fam, k)
        if perturbations.FAMILIES[fam].structured:
            onnx_rel = f"onnx/{stem}_{fam}.onnx"
            if not (out / onnx_rel).exists():
                onnx_io.export_affine(problem.net, out / onnx_rel)
        else:
            onnx_rel = classifier_rel
        vnnlib_rel = f"vnnlib/{stem}_{fam}_k{_fmt_k(k)}.vnnlib"
        what = (
            f"{it.dataset} {it.model} test image {it.index} (slot {it.slot}, label "
            f"{it.label}), {fam} k={k:g} (k/255)"
        )
        vnnlib.write_problem(out / vnnlib_rel, problem, comment=f"medverify: {what}")
        images.setdefault(f"{it.dataset}/{it.index}", [float(v) for v in np.reshape(it.image, -1)])
        entries.append(
            {
                "onnx": onnx_rel,
                "vnnlib": vnnlib_rel,
                "timeout": float(timeout_s),
                "dataset": it.dataset,
                "model": it.model,
                "model_sha256": sha,
                "classifier": classifier_rel,
                "index": int(it.index),
                "slot": int(it.slot),
                "true_label": int(it.label),
                "family": fam,
                "magnitude_k": k,
                "image_shape": list(np.shape(it.image)),
            }
        )
    if compress:
        for rel in (
            {e["onnx"] for e in entries}
            | {e["vnnlib"] for e in entries}
            | {rel for rel, _, _ in classifiers.values()}
        ):
            _gzip(out / rel)
    with open(out / INSTANCES, "w", newline="") as fh:
        for e in entries:
            fh.write(f"{e['onnx']},{e['vnnlib']},{e['timeout']:g}\n")
    results.write_json(
        {
            "format": "medverify-vnncomp-1",
            "seed": seed,
            "sample": sample,
            "command": command,
            "instances": entries,
            "images": images,
        },
        out / MANIFEST,
    )
    if families is None:
        families = {}
        for e in entries:
            families.setdefault(
                e["family"],
                sorted({x["magnitude_k"] for x in entries if x["family"] == e["family"]}),
            )
    _write_readme(out, entries, families, timeout_s, seed, command)
    return entries


def _gzip(path: Path) -> None:
    if not path.exists():
        return
    with (
        open(path, "rb") as src,
        gzip.GzipFile(path.with_name(path.name + ".gz"), "wb", mtime=0) as dst,
    ):
        shutil.copyfileobj(src, dst)
    path.unlink()


def _write_readme(out: Path, entries, families, timeout_s, seed, command):
    lines = [
        "# medverify benchmark: clinically aligned perturbations of MedMNIST classifiers",
        "",
        "Written by `medverify vnncomp export`. Each line of `instances.csv` is one",
        "robustness property of one correctly classified test image. The VNNLIB states the",
        "violation (some other label scores >= the true label): `unsat` means robust.",
        "",
        "Families (magnitudes k in 8-bit units, k/255):",
        "- `linf`: every pixel moves on its own by at most k/255, clipped to [0, 1]. The",
        "  network is the classifier; the box is over the pixels.",
        "- `brightness`: x' = clip(x + beta, 0, 1), one beta in [-k/255, k/255]. The network",
        "  is the classifier composed with the brightness prefix (clip written as",
        "  relu(z) - relu(z - 1)); its single input is beta.",
        "- `contrast`: x' = clip(m + alpha (x - m), 0, 1), m the image mean; the network's",
        "  single input is alpha.",
        "",
        f"Matrix: {json.dumps({f: [float(k) for k in ks] for f, ks in families.items()})}, "
        f"timeout {float(timeout_s):g} s, seed {seed}.",
        "",
        "Reproduce (`python generate_properties.py <seed>` runs the same command with the",
        "given seed):",
        "",
        f"    {command}" if command else "    (exported from Python: no command line)",
        "",
        "`manifest.json` records, per instance, the dataset, model (with the sha256 of its",
        "classifier), test-set index, slot, true label, family and k, and each image.",
        "",
        "| onnx | vnnlib | dataset | model | image | label | family | k |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| {e['onnx']} | {e['vnnlib']} | {e['dataset']} | {e['model']} | {e['index']} "
            f"| {e['true_label']} | {e['family']} | {e['magnitude_k']:g} |"
        )
    (out / "README.md").write_text("\n".join(lines) + "\n")
    script = (
        '"""Regenerate this benchmark with another seed: python generate_properties.py SEED"""\n'
        "\n"
        "import shlex\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        f"COMMAND = {json.dumps(command)}\n"
        "\n"
        'if __name__ == "__main__":\n'
        '    seed = sys.argv[1] if len(sys.argv) > 1 else "0"\n'
        "    args = shlex.split(COMMAND)\n"
        '    if "--seed" in args:\n'
        '        args[args.index("--seed") + 1] = seed\n'
        "    else:\n"
        '        args += ["--seed", seed]\n'
        "    sys.exit(subprocess.call(args))\n"
    )
    (out / "generate_properties.py").write_text(script)


# --- the competition's checks ------------------------------------------------------------


def check_benchmark(folder: str | os.PathLike) -> list[str]:
    """Problems found (empty: the folder passes). Every ONNX must load in onnxruntime and
    run with batch 1; every VNNLIB must declare exactly X_0..X_{n-1} for the ONNX's n
    input values and Y_0..Y_{m-1} for its m outputs, and bound every input."""
    import onnxruntime as ort

    problems = []
    try:
        instances = read_instances(folder)
    except BenchmarkError as exc:
        return [str(exc)]
    sessions: dict[str, tuple[int, int] | None] = {}
    for inst in instances:
        if inst.onnx not in sessions:
            sessions[inst.onnx] = None
            try:
                blob = read_bytes(resolve(folder, inst.onnx))
                sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
                inputs, outputs = sess.get_inputs(), sess.get_outputs()
                if len(inputs) != 1 or len(outputs) != 1:
                    raise BenchmarkError(
                        f"{len(inputs)} inputs and {len(outputs)} outputs (expected 1 and 1)"
                    )
                shape = [1 if not isinstance(d, int) else d for d in inputs[0].shape]
                if shape and shape[0] != 1:
                    raise BenchmarkError(f"input shape {inputs[0].shape} is not batch 1")
                y = sess.run(None, {inputs[0].name: np.zeros(shape, np.float32)})[0]
                sessions[inst.onnx] = (int(np.prod(shape)), int(np.size(y)))
            except Exception as exc:  # noqa: BLE001 - each problem is reported
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                problems.append(f"{inst.onnx}: does not run in onnxruntime with batch 1: {first}")
        dims = sessions[inst.onnx]
        try:
            text = read_bytes(resolve(folder, inst.vnnlib)).decode()
            prop = vnnlib.parse(text, inst.vnnlib)
        except (MedverifyError, UnicodeDecodeError) as exc:
            problems.append(str(exc))
            continue
        if dims is None:
            continue
        if (prop.num_inputs, prop.num_outputs) != dims:
            problems.append(
                f"{inst.vnnlib}: declares {prop.num_inputs} inputs and {prop.num_outputs} "
                f"outputs, {inst.onnx} has {dims[0]} and {dims[1]}"
            )
    return problems


def raise_on_problems(folder) -> None:
    """Raise BenchmarkError naming the first problem :func:`check_benchmark` finds."""
    problems = check_benchmark(folder)
    if problems:
        raise BenchmarkError(f"{folder}: {len(problems)} problem(s), first: {problems[0]}")


# --- run -----------------------------------------------------------------------------


def _cex_name(inst: Instance) -> str:
    def stem(rel):
        name = Path(rel).name
        for suffix in (".gz", ".onnx", ".vnnlib"):
            name = name.removesuffix(suffix)
        return name

    return f"{stem(inst.onnx)}_{stem(inst.vnnlib)}.counterexample"


def format_counterexample(x: np.ndarray, y: np.ndarray) -> str:
    """The competition's counterexample file: ``sat`` then ``((X_0 v) ... (Y_0 v) ...)``."""
    pairs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.reshape(x, -1))]
    pairs += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.reshape(y, -1))]
    return "sat\n(" + "\n ".join(pairs) + ")\n"


_PAIR = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


def parse_counterexample(text: str, where: str = "<counterexample>"):
    """(result word, X values, Y values) of a counterexample file. The result line is
    optional (some tools write only the assignment)."""
    body = text.strip()
    word = ""
    if body and not body.startswith("("):
        word, _, body = body.partition("\n")
        word = word.strip().lower()
    xs, ys = {}, {}
    for kind, idx, value in _PAIR.findall(body):
        try:
            v = float(value)
        except ValueError:
            raise BenchmarkError(
                f"{where}: value {value!r} of {kind}_{idx} is not a number"
            ) from None
        (xs if kind == "X" else ys)[int(idx)] = v
    if not xs:
        raise BenchmarkError(f"{where}: no (X_i value) pairs")
    if sorted(xs) != list(range(len(xs))):
        raise BenchmarkError(f"{where}: X indices are not 0..{len(xs) - 1}")
    x = np.array([xs[i] for i in range(len(xs))])
    y = np.array([ys[j] for j in sorted(ys)]) if ys else None
    return word, x, y


def run_benchmark(
    folder: str | os.PathLike,
    verifier: str,
    out_csv: str | os.PathLike,
    *,
    options: dict | None = None,
    strategy: str = "joint",
    category: str | None = None,
    timeout_scale: float = 1.0,
    max_timeout: float | None = None,
    records_dir: str | os.PathLike | None = None,
    progress=sys.stderr,
) -> list[results.Record]:
    """Verify every instance of ``folder`` with one backend under ``strategy`` (isolated,
    own timeout) and write results.csv; every ``sat`` gets
    ``counterexamples/<onnx>_<vnnlib>.counterexample`` beside it. ``records_dir``: also
    write each record as JSON there."""
    from .verify import verify_vnnlib

    folder = Path(folder)
    instances = read_instances(folder)
    category = category or folder.resolve().name
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    cex_dir = out_csv.parent / "counterexamples"
    records = []
    rows = []
    for i, inst in enumerate(instances, start=1):
        timeout = inst.timeout * timeout_scale
        if max_timeout is not None:
            timeout = min(timeout, max_timeout)
        start = time.perf_counter()
        onnx_file = plain(folder, inst.onnx)
        spec_file = plain(folder, inst.vnnlib)
        prep = time.perf_counter() - start
        try:
            record = verify_vnnlib(
                onnx_file.path, spec_file.path, verifier, timeout, options, strategy=strategy
            )
            cex_path = cex_dir / _cex_name(inst)
            cex_path.unlink(missing_ok=True)
            if record.status == "counterexample":
                x = np.asarray(record.counterexample["image"], dtype=np.float64)
                ort = onnx_io.OrtClassifier(onnx_file.path)
                cex_dir.mkdir(parents=True, exist_ok=True)
                cex_path.write_text(format_counterexample(x, ort.logits(x.astype(np.float32))[0]))
        finally:
            onnx_file.close()
            spec_file.close()
        record = record_with_model(record, inst.onnx)
        records.append(record)
        result = RESULT_OF_STATUS[record.status]
        rows.append(
            (category, inst.onnx, inst.vnnlib, f"{prep:.6f}", result, f"{record.wall_time_s:.6f}")
        )
        if records_dir is not None:
            results.write(record, Path(records_dir) / f"{i - 1:05d}.json")
        if progress is not None:
            print(
                f"[{i}/{len(instances)}] {inst.vnnlib}: {result} ({record.status}, "
                f"{record.wall_time_s:.2f}s)",
                file=progress,
                flush=True,
            )
        _write_results(out_csv, rows)
    return records


def record_with_model(record: results.Record, onnx_rel: str) -> results.Record:
    """The record's model named by its path in the benchmark (not a temporary copy)."""
    record.model = onnx_rel
    return record


def _write_results(path: Path, rows) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerows(rows)
    os.replace(tmp, path)


def read_results(path: str | os.PathLike) -> list[dict]:
    """A competition results.csv (with or without a header line)."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"{path}: results file does not exist")
    rows = []
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if line == 1 and [c.strip() for c in row] == list(RESULTS_HEADER):
                continue
            if len(row) < 5:
                raise BenchmarkError(
                    f"{path}:{line}: expected {','.join(RESULTS_HEADER)}, got {len(row)} fields"
                )
            result = row[4].strip().lower()
            if result not in STATUS_OF_RESULT:
                raise BenchmarkError(
                    f"{path}:{line}: result {row[4]!r} is not one of "
                    f"{', '.join(sorted(k for k in STATUS_OF_RESULT if k))}"
                )

            def num(v):
                try:
                    return float(v)
                except (TypeError, ValueError):
                    return 0.0

            rows.append(
                {
                    "category": row[0].strip(),
                    "onnx": row[1].strip(),
                    "vnnlib": row[2].strip(),
                    "prep_time": num(row[3]),
                    "result": result,
                    "run_time": num(row[5]) if len(row) > 5 else 0.0,
                    "line": line,
                }
            )
    return rows


# --- import --------------------------------------------------------------------------


def _norm(rel: str) -> str:
    rel = rel.strip().removeprefix("./")
    return rel.removesuffix(".gz")


def import_results(
    results_csv: str | os.PathLike,
    benchmark: str | os.PathLike,
    tool: str,
    out_dir: str | os.PathLike,
    *,
    counterexamples: str | os.PathLike | None = None,
    tool_version: str = "",
) -> list[results.Record]:
    """Another tool's results as records in ``out_dir`` (one JSON per row).

    Rows are matched to the benchmark's instances by their onnx and vnnlib paths. With a
    medverify manifest the record carries the instance's dataset, model, image, family
    and k (so it joins the merge and agreement tables of the workflow's records);
    otherwise it is a ``box`` question on the ONNX. A ``sat`` is replayed: its
    counterexample file (``counterexamples/`` beside the results file unless given) must
    give a point in the set that onnxruntime scores as a violation; a missing or
    non-replaying one makes the record ``unknown`` with flag ``replay-failed``."""
    benchmark = Path(benchmark)
    _classifier.cache_clear()  # files may have changed since an earlier call
    rows = read_results(results_csv)
    manifest = read_manifest(benchmark)
    by_pair = {}
    if manifest:
        for e in manifest["instances"]:
            by_pair[(_norm(e["onnx"]), _norm(e["vnnlib"]))] = e
    cex_dir = (
        Path(counterexamples) if counterexamples else Path(results_csv).parent / "counterexamples"
    )
    out_dir = Path(out_dir)
    records = []
    for n, row in enumerate(rows):
        status = STATUS_OF_RESULT[row["result"]]
        inst = Instance(row["onnx"], row["vnnlib"], 0.0)
        entry = by_pair.get((_norm(row["onnx"]), _norm(row["vnnlib"])))
        question, problem, ort = _question(benchmark, entry, inst, tool, manifest)
        fields = {"verifier_time_s": row["run_time"], "tool_version": tool_version}
        if status == "counterexample":
            fields = replay_claim(problem, ort, cex_dir / _cex_name(inst), row, tool_version)
        else:
            fields["message"] = f"imported from {results_csv}:{row['line']}"
        record = results.Record.build(
            question,
            fields.pop("status", status),
            wall_time_s=row["run_time"] + row["prep_time"],
            **fields,
        )
        results.write(record, out_dir / f"{n:05d}.json")
        records.append(record)
    return records


@functools.lru_cache(maxsize=8)
def _classifier(benchmark: Path, rel: str):
    """(canonical net, onnxruntime session) of a benchmark's classifier, loaded once."""
    file = plain(benchmark, rel)
    try:
        return onnx_io.load_affine(file.path), onnx_io.OrtClassifier(file.path)
    finally:
        file.close()


def _question(benchmark: Path, entry, inst: Instance, tool: str, manifest):
    """The Question a results row answers, with the problem and onnxruntime session that
    replay a counterexample for it."""
    from . import perturbations
    from .verifiers import Problem
    from .verify import build_problem

    if entry is not None:
        image = np.asarray(manifest["images"][f"{entry['dataset']}/{entry['index']}"]).reshape(
            entry["image_shape"]
        )
        net, ort = _classifier(benchmark, entry["classifier"])
        problem = build_problem(
            net, image, entry["true_label"], entry["family"], entry["magnitude_k"]
        )
        question = results.Question(
            dataset=entry["dataset"],
            model=entry["model"],
            index=entry["index"],
            true_label=entry["true_label"],
            family=entry["family"],
            magnitude_k=float(entry["magnitude_k"]),
            verifier=tool,
            timeout_s=float(entry["timeout"]),
            model_sha256=entry["model_sha256"],
            slot=entry["slot"],
        )
        return question, problem, ort
    onnx_file = plain(benchmark, inst.onnx)
    spec_file = plain(benchmark, inst.vnnlib)
    try:
        lower, upper, label, targets = vnnlib.to_problem_spec(vnnlib.read(spec_file.path))
        classifier = onnx_io.load_affine(onnx_file.path)
        fam = perturbations.Box(lower, upper)
        problem = Problem(classifier, lower, upper, label, targets, fam, name=inst.vnnlib)
        ort = onnx_io.OrtClassifier(onnx_file.path)
        sha = onnx_io.sha256(onnx_file.path)
    finally:
        onnx_file.close()
        spec_file.close()
    question = results.Question(
        dataset=benchmark.resolve().name,
        model=inst.onnx,
        index=-1,
        true_label=int(label),
        family="box",
        magnitude_k=0.0,
        verifier=tool,
        model_sha256=sha,
    )
    return question, problem, ort


def replay_claim(problem, ort, cex_path: Path, row: dict, tool_version: str) -> dict:
    """Verdict fields of another tool's ``sat`` on ``problem``: the counterexample file
    ``cex_path`` (VNN-COMP format, an optional result line first) replayed through
    ``ort`` (``verify.finalize``); a missing, unreadable or non-replaying one is
    ``unknown`` with its flag. ``row["run_time"]`` is the tool's seconds."""
    from .verifiers import Result
    from .verify import finalize

    if not cex_path.exists():
        return {
            "status": "unknown",
            "flags": ["replay-failed"],
            "message": f"flagged: sat without a counterexample file ({cex_path})",
            "verifier_time_s": row["run_time"],
            "tool_version": tool_version,
        }
    try:
        _, x, _ = parse_counterexample(cex_path.read_text(), str(cex_path))
        if x.shape != problem.lower.shape:
            raise BenchmarkError(
                f"{cex_path}: {x.size} input values, the instance has {problem.lower.size}"
            )
    except BenchmarkError as exc:
        return {
            "status": "unknown",
            "flags": ["replay-failed"],
            "message": f"flagged: {exc}",
            "verifier_time_s": row["run_time"],
            "tool_version": tool_version,
        }
    claim = Result("counterexample", params=x, message=f"imported from {cex_path.name}")
    return finalize(problem, claim, ort, tool_version, row["run_time"])
