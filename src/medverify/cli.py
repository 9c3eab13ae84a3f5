"""The ``medverify`` command: single-instance verification (from a dataset image or a
VNNLIB file), training/export, and aggregation."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from .errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_VERIFIER_FAILED,
    MedverifyError,
    is_input_error,
)
from .perturbations import FAMILIES
from .strategies import STRATEGIES
from .verifiers import BACKENDS


def exit_code(record) -> int:
    """A verification command's exit code from its record (see docs/exit-codes.md): an
    error inside the solver child is the verifier's failure (3); one before or around it
    carries its exception class in ``extra.error_type``: ours (bad input, 2) or not
    (internal error, 1)."""
    if record.status != "error":
        return EXIT_OK
    error_type = record.extra.get("error_type")
    if not error_type:
        return EXIT_VERIFIER_FAILED
    return EXIT_BAD_INPUT if is_input_error(error_type) else EXIT_INTERNAL


def _add_verify(sub):
    p = sub.add_parser("verify", help="verify one image (or one VNNLIB property) with one backend")
    p.add_argument("--onnx", required=True, help="classifier ONNX file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image-index", type=int, help="test-set position of the image")
    src.add_argument("--vnnlib", help="VNNLIB property over the classifier's inputs")
    p.add_argument("--dataset", help="dataset name (with --image-index)")
    p.add_argument("--data-dir", default="data/medmnist", help="directory holding <dataset>.npz")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3))
    # Names come from the package. Not argparse choices: a bad name still writes its
    # error record (exit code 2), like any other bad input of a verification job.
    p.add_argument("--family", default="linf", help=" | ".join(FAMILIES))
    p.add_argument("--magnitude", type=float, default=4, help="k, meaning k/255")
    p.add_argument("--verifier", required=True, help=" | ".join(BACKENDS))
    p.add_argument(
        "--strategy",
        default=STRATEGIES[0],
        choices=STRATEGIES,
        help="joint: all target labels at once; guided: bound-pruned, most dangerous first",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds (the whole job)")
    p.add_argument("--mem-mb", type=int, default=None, help="address-space cap of the solver")
    p.add_argument("--options", default="{}", help="backend options as JSON")
    p.add_argument("--out", required=True, help="record JSON to write")


def _verify(args) -> int:
    from . import data, results
    from .results import Question
    from .verifiers import parse_options
    from .verify import verify_image

    options = parse_options(args.options)
    if args.vnnlib:
        from .verify import verify_vnnlib

        record = verify_vnnlib(
            args.onnx,
            args.vnnlib,
            args.verifier,
            args.timeout,
            options=options,
            strategy=args.strategy,
            mem_limit_mb=args.mem_mb,
        )
    else:
        if not args.dataset:
            raise MedverifyError("--dataset is required with --image-index")
        test = data.load(args.dataset, args.data_dir, channels=args.channels, splits=("test",))[
            "test"
        ]
        if not 0 <= args.image_index < len(test.labels):
            raise MedverifyError(
                f"--image-index {args.image_index} out of range: {args.dataset} test has "
                f"{len(test.labels)} images"
            )
        image = test.images[args.image_index]
        # a bad model (not ONNX, unsupported operator, wrong input size) becomes an error
        # record naming the file, and exit 2 (verify_image loads it with the image's size)
        question = Question(
            dataset=args.dataset,
            model=args.onnx,
            index=args.image_index,
            true_label=int(test.labels[args.image_index]),
            family=args.family,
            magnitude_k=args.magnitude,
            verifier=args.verifier,
            strategy=args.strategy,
            timeout_s=args.timeout,
        )
        record = verify_image(args.onnx, image, question, options=options, mem_limit_mb=args.mem_mb)
    results.write(record, args.out)
    print(
        f"{record.status}  ({record.verifier}/{record.strategy}, "
        f"{record.family} k={record.magnitude_k:g}, "
        f"{record.wall_time_s:.2f}s) -> {args.out}"
    )
    code = exit_code(record)
    if code != EXIT_OK:
        first = record.message.splitlines()[0] if record.message else "no message"
        kind = "internal error" if code == EXIT_INTERNAL else "error"
        print(f"medverify: {kind}: {first} (record {args.out})", file=sys.stderr)
    elif record.message:
        print(record.message.splitlines()[0])
    return code


def _add_train(sub):
    p = sub.add_parser("train", help="train one model, export ONNX, write metrics")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", default="data/medmnist")
    p.add_argument("--model", required=True, help="mlp | cnn3 | mlp<width>x<depth> (e.g. mlp256x2)")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3))
    p.add_argument("--epochs", type=int, help="training epochs (default: TrainConfig's)")
    p.add_argument("--seed", type=int, help="random seed (default: TrainConfig's)")
    p.add_argument("--pgd-eps", type=float, help="PGD adversarial training radius k (k/255)")
    p.add_argument("--pgd-steps", type=int, help="PGD steps per batch")
    p.add_argument("--out-dir", required=True)


def _train(args) -> int:
    from pathlib import Path

    from .pipeline import train_and_export

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = train_and_export(
        args.dataset,
        args.data_dir,
        args.model,
        out / "model.pt",
        out / "model.onnx",
        out / "metrics.json",
        channels=args.channels,
        **{
            key: value
            for key, value in (
                ("epochs", args.epochs),
                ("seed", args.seed),
                ("pgd_eps_k", args.pgd_eps),
                ("pgd_steps", args.pgd_steps),
            )
            if value is not None
        },
    )
    print(f"test accuracy {metrics['test_accuracy']:.4f} -> {out}")
    return 0


def _add_vnncomp(sub):
    p = sub.add_parser("vnncomp", help="VNN-COMP benchmark folders: export, check, run, import")
    vsub = p.add_subparsers(dest="vnncomp_command", required=True)
    e = vsub.add_parser("export", help="selected instances x families as a benchmark folder")
    e.add_argument("--results-dir", default="results", help="the workflow's results directory")
    e.add_argument("--dataset", action="append", required=True, help="repeat for several")
    e.add_argument("--model", action="append", required=True, help="repeat for several")
    e.add_argument("--family", action="append", required=True, help="NAME=K1,K2 (k/255)")
    e.add_argument("--data-dir", default="data/medmnist", help="directory holding <dataset>.npz")
    e.add_argument("--channels", type=int, default=1, choices=(1, 3))
    e.add_argument("--timeout", type=float, default=120.0, help="seconds per instance")
    e.add_argument(
        "--slots",
        type=int,
        required=True,
        help="images 0..N-1 of each model's instances.json, which lists every correctly "
        "classified test image (the workflow's config key `instances`)",
    )
    e.add_argument("--sample", type=int, help="keep this many instances (seeded draw)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--gzip", action="store_true", help="store onnx and vnnlib files gzipped")
    e.add_argument("--out", required=True, help="benchmark folder to write")
    c = vsub.add_parser("check", help="the competition's format checks on a benchmark folder")
    c.add_argument("benchmark")
    r = vsub.add_parser("run", help="every instance of a benchmark folder through one backend")
    r.add_argument("benchmark")
    r.add_argument("--verifier", required=True)
    r.add_argument("--strategy", default=STRATEGIES[0], choices=STRATEGIES)
    r.add_argument("--options", default="{}", help="backend options as JSON")
    r.add_argument("--category", help="first column of results.csv (default: folder name)")
    r.add_argument("--max-timeout", type=float, help="cap each instance's timeout (seconds)")
    r.add_argument("--records", help="also write one record JSON per instance here")
    r.add_argument("--out", required=True, help="results.csv to write")
    i = vsub.add_parser("import", help="another tool's results.csv as records")
    i.add_argument("results")
    i.add_argument("--benchmark", required=True, help="the benchmark folder it ran on")
    i.add_argument("--verifier", required=True, help="the tool's name (records' verifier)")
    i.add_argument("--tool-version", default="")
    i.add_argument("--counterexamples", help="directory of its counterexample files")
    i.add_argument("--out", required=True, help="directory for the records")


def _vnncomp(args) -> int:
    import shlex
    from pathlib import Path

    from . import vnncomp

    cmd = args.vnncomp_command
    if cmd == "export":
        families = {}
        for spec in args.family:
            name, sep, ks = spec.partition("=")
            try:
                families[name] = [float(k) for k in ks.split(",")] if sep else []
            except ValueError:
                raise MedverifyError(f"--family {spec!r}: magnitudes must be numbers") from None
            if not families[name]:
                raise MedverifyError(f"--family {spec!r}: expected NAME=K1,K2")
        sources = []
        for ds in args.dataset:
            for model in args.model:
                base = Path(args.results_dir) / ds / model
                for name in ("model.onnx", "instances.json"):
                    if not (base / name).exists():
                        raise MedverifyError(
                            f"{base / name} does not exist: run the workflow first"
                        )
                sources.append(
                    vnncomp.ModelSource(
                        ds,
                        model,
                        str(base / "model.onnx"),
                        str(base / "instances.json"),
                        args.channels,
                    )
                )
        argv = sys.argv[1:] if sys.argv and "vnncomp" in sys.argv else []
        entries = vnncomp.export_benchmark(
            args.out,
            sources,
            families,
            args.data_dir,
            args.timeout,
            slots=args.slots,
            sample=args.sample,
            seed=args.seed,
            compress=args.gzip,
            command=shlex.join(["medverify", *argv]) if argv else "",
        )
        vnncomp.raise_on_problems(args.out)
        print(f"{len(entries)} instances -> {args.out}")
        return 0
    if cmd == "check":
        problems = vnncomp.check_benchmark(args.benchmark)
        for p in problems:
            print(p)
        if problems:
            raise MedverifyError(
                f"{args.benchmark}: {len(problems)} problem(s), first: {problems[0]}"
            )
        print(f"{args.benchmark}: ok ({len(vnncomp.read_instances(args.benchmark))} instances)")
        return 0
    if cmd == "run":
        from .verifiers import check_options, parse_options

        options = parse_options(args.options)
        # a bad verifier or option is one line and exit 2 before any instance runs
        check_options(args.verifier, options, f"--verifier {args.verifier} --options")
        records = vnncomp.run_benchmark(
            args.benchmark,
            args.verifier,
            args.out,
            options=options,
            strategy=args.strategy,
            category=args.category,
            max_timeout=args.max_timeout,
            records_dir=args.records,
        )
        errors = sum(r.status == "error" for r in records)
        print(f"{len(records)} instances, {errors} errors -> {args.out}")
        # the answer is every instance's verdict: an error record is none (its code)
        return max((exit_code(r) for r in records), default=0)
    records = vnncomp.import_results(
        args.results,
        args.benchmark,
        args.verifier,
        args.out,
        counterexamples=args.counterexamples,
        tool_version=args.tool_version,
    )
    flagged = sum(bool(r.flags) for r in records)
    print(f"{len(records)} records ({flagged} flagged) -> {args.out}")
    return 0


def _add_search(sub):
    from .search import DEFAULT_RESOLUTION, DEFAULT_TIMEOUT_S

    p = sub.add_parser("search", help="critical magnitude of one image (bracket on a grid)")
    p.add_argument("--onnx", required=True, help="classifier ONNX file")
    p.add_argument("--dataset", required=True, help="dataset name (DIR/NAME.npz)")
    p.add_argument("--data-dir", default="data/medmnist", help="directory holding <dataset>.npz")
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--channels", type=int, default=1, choices=(1, 3))
    p.add_argument("--image-index", type=int, required=True, help="position in the split")
    p.add_argument("--family", default="linf", help="a perturbation family name")
    p.add_argument("--verifier", required=True, help="marabou | crown | milp | exact")
    p.add_argument(
        "--method",
        default=None,
        help="bisection | exact | milp-min (default: exact for --verifier exact, else bisection)",
    )
    p.add_argument("--timeout-per-probe", type=float, default=DEFAULT_TIMEOUT_S, help="seconds")
    p.add_argument(
        "--resolution", type=float, default=DEFAULT_RESOLUTION, help="grid step, [0,1] pixel units"
    )
    p.add_argument(
        "--max-eps",
        type=float,
        default=None,
        help="top of the range (default per family: linf 0.4, brightness 1, contrast 0.25)",
    )
    p.add_argument("--options", default="{}", help="backend options as JSON")
    p.add_argument("--cache-dir", help="probe cache (default: <out>.probes)")
    p.add_argument("--out", required=True, help="search record JSON to write")


def _search(args) -> int:
    from . import data, results, search
    from .results import Question
    from .verifiers import check_options, parse_options

    max_eps = search.default_max_eps(args.family) if args.max_eps is None else args.max_eps
    grid = search.Grid(max_eps=max_eps, resolution=args.resolution)
    options = parse_options(args.options)
    check_options(args.verifier, options, f"--verifier {args.verifier} --options")
    method = args.method or ("exact" if args.verifier == "exact" else "bisection")
    if not search.method_applies(method, args.verifier, args.family):
        raise MedverifyError(
            f"--method {method} does not apply to --verifier {args.verifier} on {args.family}"
        )
    split = data.load(args.dataset, args.data_dir, channels=args.channels, splits=(args.split,))[
        args.split
    ]
    if not 0 <= args.image_index < len(split.labels):
        raise MedverifyError(
            f"--image-index {args.image_index} out of range: {args.dataset} {args.split} has "
            f"{len(split.labels)} images"
        )
    from .onnx_io import load_affine

    # a bad model (unsupported operator, wrong input size) is one line and exit 2
    load_affine(args.onnx, input_size=split.images[0].size, what=f"{args.dataset} images")
    question = Question(
        dataset=args.dataset,
        model=args.onnx,
        index=args.image_index,
        true_label=int(split.labels[args.image_index]),
        family=args.family,
        magnitude_k=0.0,
        verifier=args.verifier,
        timeout_s=args.timeout_per_probe,
    )
    record = search.search_image(
        args.onnx,
        split.images[args.image_index],
        question,
        grid=grid,
        method=method,
        options=options,
        cache_dir=args.cache_dir or f"{args.out}.probes",
        split=args.split,
    )
    results.write(record, args.out)
    print(f"{search.bracket_line(record)} -> {args.out}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="medverify", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_verify(sub)
    _add_train(sub)
    _add_vnncomp(sub)
    _add_search(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,  # bind to this call's stderr (the command may run in-process)
    )
    commands = {"verify": _verify, "train": _train, "vnncomp": _vnncomp, "search": _search}
    return run_command(commands[args.command], args)


def run_command(fn, args) -> int:
    """Run one subcommand: its own exit code, or one line on stderr and EXIT_BAD_INPUT for
    a MedverifyError (or a ValueError, e.g. a bad backend option value), EXIT_INTERNAL for
    anything else (the traceback with -v)."""
    try:
        return fn(args)
    except (MedverifyError, ValueError) as exc:
        print(f"medverify: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback, unless -v
        if getattr(args, "verbose", False):
            traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"medverify: internal error: {type(exc).__name__}: {first}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
