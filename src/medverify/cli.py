"""The ``medverify`` command: single-instance verification (from a dataset image or a
VNNLIB file), training/export, and aggregation."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .errors import MedverifyError


def _add_verify(sub):
    p = sub.add_parser("verify", help="verify one image (or one VNNLIB property) with one backend")
    p.add_argument("--onnx", required=True, help="classifier ONNX file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image-index", type=int, help="test-set position of the image")
    src.add_argument("--vnnlib", help="VNNLIB property over the classifier's inputs")
    p.add_argument("--dataset", help="dataset name (with --image-index)")
    p.add_argument("--data-dir", default="data/medmnist", help="directory holding <dataset>.npz")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3))
    p.add_argument("--family", default="linf", help="linf | brightness | contrast")
    p.add_argument("--magnitude", type=float, default=4, help="k, meaning k/255")
    p.add_argument("--verifier", required=True, help="marabou | crown | milp | exact")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds")
    p.add_argument("--options", default="{}", help="backend options as JSON")
    p.add_argument("--out", required=True, help="record JSON to write")


def _verify(args) -> int:
    from . import data, results
    from .results import Question
    from .verify import verify_image

    options = json.loads(args.options)
    if args.vnnlib:
        from .verify import verify_vnnlib

        record = verify_vnnlib(args.onnx, args.vnnlib, args.verifier, args.timeout, options=options)
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
        from .onnx_io import load_affine

        # a bad model is one line and exit 2 here, not an error record
        load_affine(args.onnx, input_size=image.size, what=f"{args.dataset} images")
        question = Question(
            dataset=args.dataset,
            model=args.onnx,
            index=args.image_index,
            true_label=int(test.labels[args.image_index]),
            family=args.family,
            magnitude_k=args.magnitude,
            verifier=args.verifier,
            timeout_s=args.timeout,
        )
        record = verify_image(args.onnx, image, question, options=options)
    results.write(record, args.out)
    print(
        f"{record.status}  ({record.verifier}, {record.family} k={record.magnitude_k:g}, "
        f"{record.wall_time_s:.2f}s) -> {args.out}"
    )
    if record.message:
        print(record.message.splitlines()[0])
    return 0


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="medverify", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_verify(sub)
    _add_train(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return {"verify": _verify, "train": _train}[args.command](args)
    except (MedverifyError, ValueError, json.JSONDecodeError) as exc:
        print(f"medverify: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
