"""L-infinity instances at the decision frontier, run by several backends side by side.

    python benchmarks/frontier.py build --out results/frontier --inputs 50
    python benchmarks/frontier.py run --out results/frontier --backends crown milp marabou \
        --timeout 60 [--tag after] [--options crown='{"fsb_k": 8}']
    python benchmarks/frontier.py tool --out results/frontier --name NAME --tag T \
        --command 'CMD {onnx} {vnnlib} {timeout} {result}' [--cwd DIR] [--timeout 60]
    python benchmarks/frontier.py one --out results/frontier --key NET/INDEX/K \
        [--timeout 60] [--options '{"fsb_k": 8}']
    python benchmarks/frontier.py report --out results/frontier [--tags before after]
    python benchmarks/frontier.py attack --out results/frontier --tags after \
        [--restarts 32] [--steps 200]

``build``: for each network (``--nets``, default all five of ``NETWORKS``; trained with
``medverify train`` into ``--models-dir/<net>`` when missing), take the first
``--inputs`` correctly classified test images; per image find by bisection the largest
eps (8-bit units k) that plain CROWN proves (lower end) and the smallest at which an
attack (corner search, then PGD) finds a counterexample (upper end), and emit the
instances lower x 1.2, the midpoint and upper x 0.95 that fall strictly inside the gap.
Each instance is kept as VNNLIB next to the network's single-file ONNX, listed in a
VNN-COMP ``instances.csv`` (onnx, vnnlib, timeout) so any tool can rerun them, plus
``instances.json`` with the image index, label and both ends.

``run``: every backend on every instance as a real job (forked child, hard timeout,
onnxruntime replay), appending one JSON line per (instance, backend) to
``runs/<tag>.jsonl`` (resumable: pairs already there are skipped). ``--limit`` caps the
instances per network (e.g. for the slow backends), ``--keys`` selects instances by key
(``net/index/k``), ``--pick lower|middle|upper`` one instance per input (the one nearest
the CROWN end, the middle one, the one nearest the attack end) and ``--inputs N`` the
instances of each network's first N inputs.

``tool``: another verifier's own command line on the same instances (selected as by
``run``), one process each in its own session, killed at ``--timeout`` + ``--grace``
(then ``timeout``). The command writes its answer to ``{result}`` as VNN-COMP tools do:
``sat``, ``unsat``, ``timeout`` or ``unknown`` on the first line (optionally followed by
``,seconds``, its own time, kept as the row's seconds; otherwise the wall time counts),
then for ``sat`` the ``((X_0 v) ...)`` counterexample, which counts only when it
replays through onnxruntime (else ``unknown``). Rows go to ``runs/<tag>.jsonl`` with
backend ``--name``, the command's output to ``runs/<tag>.logs/``, so ``report`` sets
the tool beside our backends.

``one``: one instance (``--key``) with crown in this process, options as JSON
(``--options '{"fsb_k": 8}'``): status, domains, CPU and wall seconds (CPU of this
process only: with ``"threads": 2`` the workers' share is in ``worker_busy_s``) and the
seconds of each of crown's steps (``steps_s``), on one line.

``attack``: do the instances no run under ``--tags`` decided hide counterexamples? A
heavier attack than any backend's: targeted PGD (``attack.pgd``) on each wrong label's
margin alone, ``--restarts`` random starts of ``--steps`` steps each. Prints per
instance the smallest margin it reached (a counterexample needs <= -CEX_MARGIN, checked
in float64 on the canonical net) and a count of counterexamples found.

``report``: per network and backend (and tag): decided count and share, median and p95
time (undecided count as the timeout), median branch-and-bound domains (crown), the
longest job's wall time, how many jobs were hard-killed and how many answered only after
the timeout (``late``: a ``tool`` that overran its own limit; not counted as decided),
and the crown/marabou and crown/milp ratios of median time on the instances both ran.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

#: name -> (dataset, data dir, architecture, channels)
NETWORKS = {
    "pneumonia_mlp": ("pneumoniamnist", "../shared/data/medmnist", "mlp", 1),
    "pneumonia_cnn3": ("pneumoniamnist", "../shared/data/medmnist", "cnn3", 1),
    "mnist_mlp256x2": ("mnist10k", "../shared/data/mnist", "mlp256x2", 1),
    "mnist_mlp256x4": ("mnist10k", "../shared/data/mnist", "mlp256x4", 1),
    "retina_cnn3": ("retinamnist", "../shared/data/medmnist", "cnn3", 3),
}
K_MAX = 64.0  # the search for the attack end stops here (8-bit units)


def _md5(dataset):
    return None if dataset == "mnist10k" else "auto"


def ensure_model(name: str, models_dir: Path) -> Path:
    """The network's ONNX, training it (``medverify train`` defaults) when missing."""
    from medverify import onnx_io

    dataset, data_dir, arch, channels = NETWORKS[name]
    out = models_dir / name
    onnx = out / "model.onnx"
    if onnx.exists():
        return onnx
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "model.pt").exists():
        from medverify import pipeline

        pipeline.train_and_export(
            dataset,
            data_dir,
            arch,
            str(out / "model.pt"),
            str(onnx),
            str(out / "metrics.json"),
            channels=channels,
            md5=_md5(dataset),
            parity_tol=1e-4,
        )
        return onnx
    from medverify import models
    from medverify.data import SIDE

    model, meta = models.load(out / "model.pt")
    onnx_io.export_torch(model, (meta["in_channels"], SIDE, SIDE), onnx)
    return onnx


def _crown_proves(net, image, label, k) -> bool:
    from medverify import bounds
    from medverify.verify import build_problem

    p = build_problem(net, image, label, "linf", k)
    return float(bounds.crown(p.margin_net(), p.lower, p.upper)[-1][0].min()) > 0


def _attack_finds(net, image, label, k, seed=0) -> bool:
    """Corner search, then two rounds of PGD (8 restarts x 30 steps), with no time budget:
    a fixed amount of work, so the instances depend on the network and the inputs only,
    never on how loaded the machine was during the build."""
    from medverify.attack import corner_search, find_counterexample
    from medverify.verify import build_problem

    p = build_problem(net, image, label, "linf", k)
    if corner_search(p) is not None:
        return True
    found = find_counterexample(
        p, restarts=8, steps=30, seed=seed, time_budget_s=math.inf, rounds=2
    )
    return found is not None


def frontier(net, image, label, steps: int = 10) -> tuple[float, float] | None:
    """(largest k CROWN proves, smallest k the attack breaks), bisected; None if the
    attack finds nothing up to K_MAX."""
    hi = 1.0
    while not _attack_finds(net, image, label, hi):
        hi *= 2
        if hi > K_MAX:
            return None
    lo_a = hi / 2 if hi > 1 else 0.0
    for _ in range(steps):  # attack end in (lo_a, hi]
        mid = (lo_a + hi) / 2
        if _attack_finds(net, image, label, mid):
            hi = mid
        else:
            lo_a = mid
    lo, up = 0.0, hi
    for _ in range(steps + 4):  # CROWN end in [lo, up)
        mid = (lo + up) / 2
        if _crown_proves(net, image, label, mid):
            lo = mid
        else:
            up = mid
    return lo, hi


def build(args) -> int:
    import torch

    from medverify import data, onnx_io, vnnlib
    from medverify.verify import build_problem

    # the attacks' batches are small: torch's threads only wait for each other (on a
    # loaded 2-core machine, 12x slower)
    torch.set_num_threads(1)

    out = Path(args.out)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "vnnlib").mkdir(parents=True, exist_ok=True)
    listing = out / "instances.json"
    # rebuilding some networks keeps the others' instances
    instances = json.loads(listing.read_text()) if listing.exists() else []
    instances = [i for i in instances if i["net"] not in args.nets]
    for name in args.nets:
        dataset, data_dir, _, channels = NETWORKS[name]
        src = ensure_model(name, Path(args.models_dir))
        onnx = out / "onnx" / f"{name}.onnx"
        onnx.write_bytes(src.read_bytes())
        net = onnx_io.load_affine(onnx)
        test = data.load(dataset, data_dir, channels=channels, md5=_md5(dataset), splits=("test",))
        test = test["test"]
        preds = net.forward(test.images.reshape(len(test.images), -1)).argmax(axis=1)
        chosen = np.flatnonzero(preds == test.labels)[: args.inputs]
        t0 = time.perf_counter()
        for n_done, idx in enumerate(chosen, 1):
            image, label = test.images[idx], int(test.labels[idx])
            ends = frontier(net, image, label)
            print(
                f"{name}: input {n_done}/{len(chosen)} (test index {idx}): "
                + (
                    "no counterexample up to K_MAX"
                    if ends is None
                    else "k {:.4g} .. {:.4g}".format(*ends)
                ),
                file=sys.stderr,
                flush=True,
            )
            if ends is None:
                continue
            k_lo, k_hi = ends
            ks = sorted({round(k, 4) for k in (1.2 * k_lo, (k_lo + k_hi) / 2, 0.95 * k_hi)})
            for k in ks:
                if not k_lo < k < k_hi:
                    continue
                vnn = out / "vnnlib" / f"{name}_{idx}_{k:g}.vnnlib"
                p = build_problem(net, image, label, "linf", k)
                vnnlib.write_problem(
                    vnn, p, comment=f"{name} test index {idx} label {label} k {k:g}"
                )
                instances.append(
                    {
                        "net": name,
                        "index": int(idx),
                        "label": label,
                        "k": k,
                        "crown_k": k_lo,
                        "attack_k": k_hi,
                        "onnx": str(onnx.relative_to(out)),
                        "vnnlib": str(vnn.relative_to(out)),
                    }
                )
        print(f"{name}: {len(chosen)} inputs, {time.perf_counter() - t0:.0f} s", flush=True)
        listing.write_text(json.dumps(instances, indent=1))  # after each network
        with open(out / "instances.csv", "w") as fh:
            for inst in instances:
                fh.write(f"{inst['onnx']},{inst['vnnlib']},{args.timeout:g}\n")
    print(f"{len(instances)} instances -> {out}")
    return 0


def _key(inst):
    return f"{inst['net']}/{inst['index']}/{inst['k']:g}"


def _problem(out: Path, inst: dict, cache: dict):
    """The instance's Problem and the network's onnxruntime classifier (networks and
    test sets cached per network in ``cache``)."""
    from medverify import data, onnx_io
    from medverify.verify import build_problem

    name = inst["net"]
    if name not in cache:
        dataset, data_dir, _, channels = NETWORKS[name]
        test = data.load(dataset, data_dir, channels=channels, md5=_md5(dataset), splits=("test",))
        onnx = out / inst["onnx"]
        cache[name] = (onnx_io.load_affine(onnx), onnx_io.OrtClassifier(onnx), test["test"])
    net, ort, test = cache[name]
    return build_problem(net, test.images[inst["index"]], inst["label"], "linf", inst["k"]), ort


def instances_of(out: Path, prog: str) -> list | None:
    """The instances listed in ``out``/instances.json, or None after a one-line error on
    stderr naming the missing file (``prog`` starts it)."""
    listing = out / "instances.json"
    if not listing.exists():
        print(f"{prog}: no {listing} (run frontier.py build first)", file=sys.stderr)
        return None
    return json.loads(listing.read_text())


def instance(out: Path, key: str, prog: str) -> dict | None:
    """The instance ``key`` (NET/INDEX/K) of ``out``/instances.json, or None after a
    one-line error on stderr naming the key and the file (``prog`` starts it)."""
    listed = instances_of(out, prog)
    if listed is None:
        return None
    found = [i for i in listed if _key(i) == key]
    if not found:
        print(f"{prog}: no instance {key!r} in {out / 'instances.json'}", file=sys.stderr)
        return None
    return found[0]


def one(args) -> int:
    """One instance, crown in this process (no fork): status, domains, CPU and wall
    seconds, per-margin trees, as one JSON line (for side-by-side option comparisons)."""
    from medverify.errors import MedverifyError
    from medverify.verifiers import get, parse_options

    out = Path(args.out)
    inst = instance(out, args.key, "frontier one")
    if inst is None:
        return 2
    try:
        options = parse_options(args.options)
        backend = get("crown", **options)
    except (ValueError, TypeError, MedverifyError) as exc:
        print(f"frontier one: bad --options {args.options!r}: {exc}", file=sys.stderr)
        return 2
    problem, _ = _problem(out, inst, {})
    c0, w0 = time.process_time(), time.perf_counter()
    res = backend.verify(problem, args.timeout)
    st = res.stats or {}
    row = {
        "key": args.key,
        "options": options,
        "status": res.status,
        "domains": st.get("domains"),
        "cpu_s": round(time.process_time() - c0, 2),
        "wall_s": round(time.perf_counter() - w0, 2),
        "trees": st.get("bab_trees"),
        "worst_open_bound": st.get("worst_open_bound"),
        # with "threads" > 1: domains bounded and seconds busy per worker process
        "worker_domains": st.get("worker_domains"),
        "worker_busy_s": st.get("worker_busy_s"),
        # seconds of each step crown took (fast attack, CROWN, alpha-CROWN, PGD, BaB)
        "steps_s": {k[: -len("_time_s")]: v for k, v in st.items() if k.endswith("_time_s")},
    }
    print(json.dumps(row), flush=True)
    return 0


PICKS = ("all", "lower", "middle", "upper")


def picked(instances: list, pick: str = "all", inputs: int = 0) -> list:
    """The instances of each network's first ``inputs`` inputs (0: all), and of each
    input only the one ``pick`` names (``PICKS``): ``lower`` the smallest k (nearest the
    CROWN end), ``upper`` the largest (nearest the attack end), ``middle`` the median one
    (the lower of the two middle ones when an input has an even number)."""
    if pick not in PICKS:
        raise ValueError(f"pick {pick!r} is not one of {', '.join(PICKS)}")
    by_input: dict = {}
    for inst in instances:
        by_input.setdefault((inst["net"], inst["index"]), []).append(inst)
    seen: dict = {}  # inputs of each network so far
    keep = set()
    for (net, _), group in by_input.items():
        seen[net] = seen.get(net, 0) + 1
        if inputs and seen[net] > inputs:
            continue
        ks = sorted(group, key=lambda i: i["k"])
        chosen = {
            "all": ks,
            "lower": ks[:1],
            "upper": ks[-1:],
            "middle": [ks[(len(ks) - 1) // 2]],
        }[pick]
        keep.update(_key(i) for i in chosen)
    return [i for i in instances if _key(i) in keep]


def selected(instances: list, args) -> list:
    """The instances a ``run`` or ``tool`` command names: ``--pick`` and ``--inputs``
    (``picked``), then ``--nets``, ``--keys`` and at most ``--limit`` per network."""
    per_net: dict = {}
    chosen = []
    for inst in picked(instances, args.pick, args.inputs):
        name = inst["net"]
        if args.nets and name not in args.nets:
            continue
        if args.keys and _key(inst) not in args.keys:
            continue
        per_net[name] = per_net.get(name, 0) + 1
        if args.limit and per_net[name] > args.limit:
            continue
        chosen.append(inst)
    return chosen


def _chosen(args, prog: str) -> list | None:
    """The instances ``args`` select (``selected``), or None after a one-line error on
    stderr (no listing, a negative ``--inputs``, a key not in the listing)."""
    out = Path(args.out)
    instances = instances_of(out, prog)
    if instances is None:
        return None
    if args.inputs < 0:
        print(f"{prog}: --inputs must be >= 0, got {args.inputs}", file=sys.stderr)
        return None
    unknown = sorted(set(args.keys or ()) - {_key(i) for i in instances})
    if unknown:
        print(
            f"{prog}: no instance {unknown[0]!r} in {out / 'instances.json'}"
            + (f" (and {len(unknown) - 1} more unknown keys)" if len(unknown) > 1 else ""),
            file=sys.stderr,
        )
        return None
    return selected(instances, args)


def _done(path: Path) -> set:
    """(key, backend) pairs a runs/<tag>.jsonl already holds (a rerun skips them)."""
    if not path.exists():
        return set()
    return {(r["key"], r["backend"]) for r in map(json.loads, path.read_text().splitlines())}


def run(args) -> int:
    from medverify.errors import ConfigError
    from medverify.verifiers import options_by_backend
    from medverify.verify import run_verifier

    out = Path(args.out)
    chosen = _chosen(args, "frontier run")
    if chosen is None:
        return 2
    try:
        options = options_by_backend(args.options)
    except ConfigError as exc:
        print(f"frontier run: {exc}", file=sys.stderr)
        return 2
    (out / "runs").mkdir(exist_ok=True)
    path = out / "runs" / f"{args.tag}.jsonl"
    done = _done(path)
    # torch is imported here, before the jobs fork, so a job's seconds are its
    # verification and not the 1-1.2 s import every forked job would repeat (the
    # per-job start-up of the workflow's jobs is job_overhead.py's measure; another
    # tool's own seconds, under ``tool``, leave its imports out too)
    import torch  # noqa: F401

    cache: dict = {}
    with open(path, "a") as fh:
        for inst in chosen:
            name = inst["net"]
            problem, ort = _problem(out, inst, cache)
            for backend in args.backends:
                if (_key(inst), backend) in done:
                    continue
                t0 = time.perf_counter()
                got = run_verifier(problem, backend, args.timeout, ort, options.get(backend))
                row = {
                    "key": _key(inst),
                    "net": name,
                    "k": inst["k"],
                    "backend": backend,
                    "status": got["status"],
                    "seconds": got.get("verifier_time_s", time.perf_counter() - t0),
                    "wall_s": time.perf_counter() - t0,
                    "timeout_s": args.timeout,
                    "message": str(got.get("message", ""))[:200],
                    "domains": (got.get("extra") or {}).get("domains"),
                }
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                print(
                    f"{row['key']:28s} {backend:8s} {row['status']:15s} {row['seconds']:7.2f} s",
                    flush=True,
                )
    return 0


#: the placeholders a ``tool --command`` may use
TOOL_FIELDS = ("onnx", "vnnlib", "timeout", "result")


def _tool_argv(command: str, fields: dict) -> list[str]:
    """``command`` split like a shell line, each word's ``{onnx}``, ``{vnnlib}``,
    ``{timeout}`` and ``{result}`` filled in; a ValueError names any other placeholder."""
    import shlex
    import string

    words = shlex.split(command)
    for word in words:
        for _, name, _, _ in string.Formatter().parse(word):
            if name is not None and name not in TOOL_FIELDS:
                raise ValueError(
                    f"--command placeholder {{{name}}} is not one of "
                    + ", ".join(f"{{{f}}}" for f in TOOL_FIELDS)
                )
    return [w.format(**fields) for w in words]


def _tool_answer(text: str) -> tuple[str, float | None]:
    """(our status, the tool's own seconds or None) of a VNN-COMP result file: its first
    line is the result word (``vnncomp.STATUS_OF_RESULT``), optionally followed by
    ``,seconds``; anything else is ``error``."""
    from medverify import vnncomp

    first = text.strip().splitlines()[0] if text.strip() else ""
    word, _, rest = first.partition(",")
    try:
        seconds = float(rest) if rest.strip() else None
    except ValueError:
        seconds = None
    return vnncomp.STATUS_OF_RESULT.get(word.strip().lower(), "error"), seconds


def tool(args) -> int:
    """Another verifier's command line on the selected instances, one process each, its
    verdicts in ``runs/<tag>.jsonl`` as backend ``--name`` (so ``report`` sets it beside
    crown, milp and marabou); a ``sat`` counts only after the replay."""
    import os
    import signal
    import subprocess
    import tempfile

    from medverify import vnncomp

    out = Path(args.out)
    chosen = _chosen(args, "frontier tool")
    if chosen is None:
        return 2
    probe = {f: f for f in TOOL_FIELDS}
    try:
        _tool_argv(args.command, probe)
    except ValueError as exc:
        print(f"frontier tool: {exc}", file=sys.stderr)
        return 2
    if args.cwd and not Path(args.cwd).is_dir():
        print(f"frontier tool: --cwd {args.cwd!r} is not a directory", file=sys.stderr)
        return 2
    (out / "runs").mkdir(exist_ok=True)
    path = out / "runs" / f"{args.tag}.jsonl"
    logs = out / "runs" / f"{args.tag}.logs"
    logs.mkdir(exist_ok=True)
    done = _done(path)
    cache: dict = {}
    with open(path, "a") as fh:
        for inst in chosen:
            key = _key(inst)
            if (key, args.name) in done:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                result = Path(tmp) / "result.txt"
                argv = _tool_argv(
                    args.command,
                    {
                        "onnx": str((out / inst["onnx"]).resolve()),
                        "vnnlib": str((out / inst["vnnlib"]).resolve()),
                        "timeout": f"{args.timeout:g}",
                        "result": str(result),
                    },
                )
                log = logs / (key.replace("/", "_") + ".log")
                killed = False
                t0 = time.perf_counter()
                with open(log, "w") as lf:
                    try:
                        proc = subprocess.Popen(
                            argv, cwd=args.cwd, stdout=lf, stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )  # fmt: skip
                    except OSError as exc:
                        print(f"frontier tool: cannot run {argv[0]!r}: {exc}", file=sys.stderr)
                        return 2
                    try:
                        proc.wait(timeout=args.timeout + args.grace)
                    except subprocess.TimeoutExpired:
                        killed = True
                    finally:  # overrun, or this run interrupted: no orphan keeps a core
                        if proc.returncode is None:
                            os.killpg(proc.pid, signal.SIGKILL)
                            proc.wait()
                wall = time.perf_counter() - t0
                text = result.read_text(errors="replace") if result.exists() else ""
                status, own_s = _tool_answer(text)
                message = f"exit {proc.returncode}, log {log.name}"
                if killed:
                    status, message = "timeout", f"killed after {wall:.1f} s"
                elif status == "counterexample":  # counts only once it replays
                    problem, ort = _problem(out, inst, cache)
                    got = vnncomp.replay_claim(problem, ort, result, {"run_time": wall}, "")
                    status, message = got["status"], str(got.get("message", ""))
            row = {
                "key": key,
                "net": inst["net"],
                "k": inst["k"],
                "backend": args.name,
                "status": status,
                # the tool's own seconds when its result line gives them, else the wall
                "seconds": own_s if own_s is not None and not killed else wall,
                "wall_s": wall,
                "timeout_s": args.timeout,
                "message": message[:200],
                "domains": None,
            }
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(f"{key:28s} {args.name:10s} {status:15s} {row['seconds']:7.2f} s", flush=True)
    return 0


def attack(args) -> int:
    """Targeted PGD, label by label, on every instance no run under ``args.tags`` decided."""
    import torch

    from medverify.attack import CEX_MARGIN, budget_error, pgd_per_label

    out = Path(args.out)
    bad = budget_error(args.restarts, args.steps)
    if bad:
        print(f"frontier attack: {bad}", file=sys.stderr)
        return 2
    listed = instances_of(out, "frontier attack")
    if listed is None:
        return 2
    status: dict = {}
    for tag in args.tags:
        path = out / "runs" / f"{tag}.jsonl"
        if not path.exists():
            print(f"frontier attack: no run {path}", file=sys.stderr)
            return 2
        for r in map(json.loads, path.read_text().splitlines()):
            status.setdefault(r["key"], set()).add(r["status"])
    undecided = [
        i
        for i in listed
        if _key(i) in status and not status[_key(i)] & {"robust", "counterexample"}
    ]
    torch.set_num_threads(1)
    cache: dict = {}
    found = 0
    for inst in undecided:
        t0 = time.perf_counter()
        problem, _ = _problem(out, inst, cache)
        net = problem.margin_net()
        best = np.inf
        for _, p in pgd_per_label(problem, args.restarts, args.steps):
            best = min(best, float(net.forward(p).min()))
        found += best <= -CEX_MARGIN
        print(f"{_key(inst):28s} smallest margin {best:9.4f}  {time.perf_counter() - t0:5.1f} s")
    print(f"{found} counterexamples on {len(undecided)} undecided instances (tags {args.tags})")
    return 0


def report(args) -> int:
    import pandas as pd

    out = Path(args.out)
    frames = []
    for f in sorted((out / "runs").glob("*.jsonl")):
        if args.tags and f.stem not in args.tags:
            continue
        df = pd.read_json(f, lines=True)
        df["tag"] = f.stem
        frames.append(df)
    if not frames:
        print(f"no runs under {out / 'runs'}", file=sys.stderr)
        return 1
    df = pd.concat(frames, ignore_index=True)
    answered = df.status.isin(["robust", "counterexample"])
    # a verdict after the timeout (another tool's own seconds past it) is not decided
    # within the budget every backend had
    df["late"] = answered & (df.seconds > df.timeout_s)
    df["decided"] = answered & ~df.late
    df["t"] = np.where(df.decided, df.seconds, df.timeout_s)
    df["run"] = df.tag + ":" + df.backend
    rows = []
    for (net, run_), g in df.groupby(["net", "run"]):
        rows.append(
            {
                "net": net,
                "run": run_,
                "n": len(g),
                "decided": int(g.decided.sum()),
                "share": round(g.decided.mean(), 3),
                "robust": int((g.status == "robust").sum()),
                "cex": int((g.status == "counterexample").sum()),
                "median_s": round(g.t.median(), 3),
                "p95_s": round(g.t.quantile(0.95), 3),
                "domains_median": g.domains.median() if "domains" in g else None,
                "wall_max_s": round(g.wall_s.max(), 2),
                # hard-killed by the runner (timeout + 1 s) instead of answering itself
                "killed": int(g.message.str.startswith("killed after").sum()),
                "late": int(g.late.sum()),
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    # every run against every other crown run on the same instances
    crown_runs = sorted(r for r in df.run.unique() if r.endswith(":crown"))
    for cr in crown_runs:
        for other in sorted(df.run.unique()):
            if other == cr or other.endswith(":crown") and other < cr:
                continue
            a = df[df.run == cr].set_index("key")
            b = df[df.run == other].set_index("key")
            common = a.index.intersection(b.index)
            if not len(common):
                continue
            ratio = a.loc[common, "t"].median() / max(b.loc[common, "t"].median(), 1e-9)
            per_net = ", ".join(
                f"{net} {a.loc[keys, 't'].median() / max(b.loc[keys, 't'].median(), 1e-9):.3g}"
                for net, keys in pd.Series(common, index=common).groupby(a.loc[common, "net"])
            )
            lost = int((b.loc[common, "decided"] & ~a.loc[common, "decided"]).sum())
            conflict = int(
                (
                    a.loc[common, "decided"]
                    & b.loc[common, "decided"]
                    & (a.loc[common, "status"] != b.loc[common, "status"])
                ).sum()
            )
            print(
                f"{cr} / {other}: {len(common)} common instances, median time ratio "
                f"{ratio:.3g}; decided by {other} but not {cr}: {lost}; conflicting "
                f"verdicts: {conflict}\n    per network: {per_net}"
            )
    return 0


def _selection_args(p) -> None:
    """The arguments of ``run`` and ``tool`` that choose instances (``selected``), and
    each job's timeout and the run's tag."""
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--tag", default="run")
    p.add_argument("--nets", nargs="*", choices=list(NETWORKS))
    p.add_argument("--limit", type=int, default=0, help="instances per network (0: all)")
    p.add_argument("--keys", nargs="*", help="only these instances (net/index/k)")
    p.add_argument("--pick", default="all", choices=PICKS, help="which instances of each input")
    p.add_argument("--inputs", type=int, default=0, help="each network's first N inputs (0: all)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", default="results/frontier")
    b.add_argument("--models-dir", default="results/models")
    b.add_argument("--nets", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    b.add_argument("--inputs", type=int, default=50)
    b.add_argument("--timeout", type=float, default=60.0, help="written to instances.csv")
    r = sub.add_parser("run")
    r.add_argument("--out", default="results/frontier")
    r.add_argument("--backends", nargs="+", default=["crown", "milp", "marabou"])
    _selection_args(r)
    r.add_argument("--options", nargs="*", help="backend='{json options}'")
    t = sub.add_parser("tool")
    t.add_argument("--out", default="results/frontier")
    t.add_argument("--name", required=True, help="the tool's name in the runs and the report")
    t.add_argument(
        "--command",
        required=True,
        help="its command line, with {onnx} {vnnlib} {timeout} {result} (the file it "
        "writes its answer to, VNN-COMP style: sat/unsat/timeout/unknown first, then a "
        "sat's counterexample)",
    )
    t.add_argument("--cwd", help="run the command in this folder")
    t.add_argument("--grace", type=float, default=5.0, help="killed after timeout + grace")
    _selection_args(t)
    o = sub.add_parser("one")
    o.add_argument("--out", default="results/frontier")
    o.add_argument("--key", required=True, help="net/index/k")
    o.add_argument("--timeout", type=float, default=60.0)
    o.add_argument("--options", default="{}", help="crown options as JSON")
    p = sub.add_parser("report")
    p.add_argument("--out", default="results/frontier")
    p.add_argument("--tags", nargs="*")
    a = sub.add_parser("attack")
    a.add_argument("--out", default="results/frontier")
    a.add_argument("--tags", nargs="+", required=True)
    a.add_argument("--restarts", type=int, default=32)
    a.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)
    cmds = {
        "build": build,
        "run": run,
        "tool": tool,
        "one": one,
        "report": report,
        "attack": attack,
    }
    return cmds[args.cmd](args)


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("frontier.py", main))
