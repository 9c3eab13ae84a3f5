"""The VNN-COMP round trip, measured (docs/vnncomp.md, notes):

    python benchmarks/vnncomp_roundtrip.py compare BENCH RESULTS_CSV --records results --verifier crown
        verdicts of `medverify vnncomp run` (RESULTS_CSV) against the workflow's records
        results/{dataset}/{model}/verify/{family}/{k}/{verifier}/joint/{slot}.json
    python benchmarks/vnncomp_roundtrip.py marabou-direct BENCH --records results [--timeout S]
        Marabou reading each exported composed (structured-family) ONNX and its VNNLIB
        itself (read_onnx + loadProperty: no medverify in between), against the workflow's
        marabou records

Prints one line per instance and a summary; exits 1 when a verdict differs, 2 on bad
input or when nothing could be compared (no workflow record matches).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medverify import results, vnncomp
from medverify.errors import MedverifyError


def workflow_record(records: Path, e: dict, verifier: str):
    k = e["magnitude_k"]
    k = int(k) if float(k).is_integer() else k
    path = records / e["dataset"] / e["model"] / "verify" / e["family"] / str(k) / verifier
    path = path / "joint" / f"{e['slot']}.json"  # the joint strategy's record
    return results.read(path) if path.exists() else None


def _manifest(folder) -> dict:
    manifest = vnncomp.read_manifest(folder)
    if manifest is None:
        raise MedverifyError(f"{folder}: no {vnncomp.MANIFEST} (not a medverify export)")
    return manifest


def compare(args) -> int:
    manifest = _manifest(args.benchmark)
    by_pair = {(e["onnx"], e["vnnlib"]): e for e in manifest["instances"]}
    same = differ = missing = 0
    for row in vnncomp.read_results(args.results):
        e = by_pair.get((row["onnx"], row["vnnlib"]))
        if e is None:
            raise MedverifyError(
                f"{args.results}: instance {row['onnx']} {row['vnnlib']} is not in "
                f"{args.benchmark}'s {vnncomp.MANIFEST}"
            )
        rec = workflow_record(Path(args.records), e, args.verifier)
        ours = vnncomp.STATUS_OF_RESULT[row["result"]]
        theirs = rec.status if rec else None
        tag = "same" if ours == theirs else ("MISSING" if rec is None else "DIFFER")
        same += tag == "same"
        differ += tag == "DIFFER"
        missing += tag == "MISSING"
        print(
            f"{tag:7s} {e['family']:10s} k={e['magnitude_k']:<5g} slot {e['slot']}: run {ours}, workflow {theirs}"
        )
    print(f"{same} same, {differ} differ, {missing} without a workflow record")
    if same + differ == 0:  # nothing compared: no answer (e.g. a wrong --records)
        print(f"compare: no workflow record under {args.records} matches", file=sys.stderr)
        return 2
    return 1 if differ else 0


def _marabou(onnx_path: str, vnnlib_path: str, timeout_s: float) -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from maraboupy import Marabou

    net = Marabou.read_onnx(onnx_path)
    options = Marabou.createOptions(timeoutInSeconds=int(timeout_s), verbosity=0, numWorkers=1)
    code, _, _ = net.solve(options=options, verbose=False, propertyFilename=vnnlib_path)
    return code


def marabou_direct(args) -> int:
    from medverify import perturbations
    from medverify.runner import run_isolated
    from medverify.verifiers.marabou import EXIT_CODES

    folder = Path(args.benchmark)
    manifest = _manifest(folder)
    same = differ = 0
    for e in manifest["instances"]:
        if not perturbations.FAMILIES[e["family"]].structured:
            continue
        onnx_file, spec = vnncomp.plain(folder, e["onnx"]), vnncomp.plain(folder, e["vnnlib"])
        try:
            out = run_isolated(
                _marabou, str(onnx_file.path), str(spec.path), args.timeout, timeout_s=args.timeout
            )
        finally:
            onnx_file.close()
            spec.close()
        status = EXIT_CODES.get(out.value, "error") if out.kind == "ok" else out.kind
        rec = workflow_record(Path(args.records), e, "marabou")
        theirs = rec.status if rec else None
        tag = "same" if status == theirs else "DIFFER"
        same += tag == "same"
        differ += tag == "DIFFER"
        print(
            f"{tag:7s} {e['family']:10s} k={e['magnitude_k']:<5g} slot {e['slot']}: marabou on "
            f"{e['onnx']} {status} ({out.seconds:.1f}s), workflow marabou {theirs}"
        )
    print(f"{same} same, {differ} differ")
    return 1 if differ else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("benchmark")
    c.add_argument("results")
    c.add_argument("--records", default="results")
    c.add_argument("--verifier", default="crown")
    m = sub.add_parser("marabou-direct")
    m.add_argument("benchmark")
    m.add_argument("--records", default="results")
    m.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    try:
        return compare(args) if args.cmd == "compare" else marabou_direct(args)
    except MedverifyError as exc:  # bad input: one line
        print(f"vnncomp_roundtrip: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("vnncomp_roundtrip.py", main))
