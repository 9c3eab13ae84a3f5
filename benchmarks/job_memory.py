"""Peak memory of one verification child per (verifier, family): the record's
``extra.peak_rss_mb`` / ``extra.peak_vm_mb`` (VmHWM / VmPeak of the forked child, which
includes what it inherits from the job process).

    python benchmarks/job_memory.py MODEL.onnx INSTANCES.json DATASET DATA_DIR \\
        [--channels 1] [--k 4] [--timeout 20] [--slots 0 1]

Prints one tab-separated row per (verifier, family, slot). Feeds medverify.resources.
"""

from __future__ import annotations

import argparse
import sys

from medverify import data
from medverify.perturbations import FAMILIES
from medverify.pipeline import load_instance
from medverify.results import Question
from medverify.verifiers import BACKENDS
from medverify.verify import verify_image


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("onnx")
    p.add_argument("instances")
    p.add_argument("dataset")
    p.add_argument("data_dir")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--k", type=float, default=4)
    p.add_argument("--timeout", type=float, default=20)
    p.add_argument("--slots", type=int, nargs="+", default=[0])
    p.add_argument("--verifiers", nargs="+", default=list(BACKENDS))
    args = p.parse_args(argv)
    test = data.load(args.dataset, args.data_dir, channels=args.channels, splits=("test",))["test"]
    print("verifier\tfamily\tinputs\tslot\tstatus\tseconds\tpeak_rss_mb\tpeak_vm_mb")
    for verifier in args.verifiers:
        for family, cls in FAMILIES.items():
            if verifier == "exact" and not cls.structured:
                continue
            for slot in args.slots:
                inst = load_instance(args.instances, slot)
                q = Question(
                    args.dataset,
                    "m",
                    inst["index"],
                    inst["label"],
                    family,
                    args.k,
                    verifier,
                    timeout_s=args.timeout,
                )
                image = test.images[inst["index"]]
                rec = verify_image(args.onnx, image, q)
                print(
                    f"{verifier}\t{family}\t{image.size}\t{slot}\t{rec.status}\t"
                    f"{rec.wall_time_s:.2f}\t{rec.extra.get('peak_rss_mb')}\t"
                    f"{rec.extra.get('peak_vm_mb')}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("job_memory.py", main))
