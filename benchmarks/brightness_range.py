"""How far a true brightness shift must go before the label changes: for each selected
instance, the exact critical beta on each side over beta in [-1, 1] (the `exact` backend's
walk over every linear piece), against the L-infinity counterexamples from k = 6.

    python benchmarks/brightness_range.py --models-dir results --data-dir DIR \
        [--dataset pneumoniamnist] [--instances 20]

Reads <models-dir>/<dataset>/<model>/{model.onnx,instances.json} from a workflow run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from medverify import data, onnx_io
from medverify.verifiers.exact import label_change_points
from medverify.verify import build_problem


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--dataset", default="pneumoniamnist")
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn3"])
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--instances", type=int, default=20)
    args = ap.parse_args(argv)
    test = data.load(
        args.dataset, args.data_dir, channels=args.channels, md5=None, splits=("test",)
    )["test"]
    for model in args.models:
        base = Path(args.models_dir) / args.dataset / model
        net = onnx_io.load_affine(base / "model.onnx")
        insts = json.loads((base / "instances.json").read_text())["instances"][: args.instances]
        critical, seconds = [], []
        for inst in insts:
            # k = 255 makes the brightness box beta in [-1, 1]
            problem = build_problem(
                net, test.images[inst["index"]], inst["label"], "brightness", 255
            )
            t0 = time.perf_counter()
            below, above = label_change_points(
                problem.net, problem.label, problem.targets, -1.0, 1.0, 0.0
            )
            seconds.append(time.perf_counter() - t0)
            sides = [abs(v) for v in (below, above) if v is not None]
            critical.append(min(sides) if sides else np.inf)
        crit = np.array(critical)
        never = int(np.isinf(crit).sum())
        finite = crit[np.isfinite(crit)]
        print(
            f"{args.dataset}/{model}: {len(crit)} instances; label never changes for any "
            f"beta in [-1, 1] on {never}; critical |beta| of the others (x255): "
            f"{np.round(np.sort(finite) * 255, 1).tolist()}; walk median "
            f"{np.median(seconds) * 1000:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("brightness_range.py", main))
