"""How much MILP (or LP) refinement of intermediate bounds buys over alpha-CROWN, and what
it costs, on one frontier instance (docs/bounds.md, "LP tightening ... MILP refinement").

    python benchmarks/milp_refine.py --out results/frontier --key mnist_mlp256x4/1/9.9046 \
        [--limit 5] [--neurons 6] [--lp]

The hidden bounds are ``bounds.Batched.optimized_hidden`` (alpha-CROWN for the
intermediate layers, as the crown backend's root). For the first ``--neurons`` unstable
neurons of hidden layers 1 and 2, one MILP per neuron and side (scipy HiGHS, binaries
for the unstable neurons of the layers before it, big-M from the same bounds; ``--lp``
relaxes the binaries) gives a bound: HiGHS's dual bound, valid even when the time limit
stops it. Prints per layer: unstable neurons, how many got a bound within the limit,
their mean narrowing against alpha-CROWN, how many became stable, and the seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier  # noqa: E402


def encode(margin, hidden, lower, upper, k, relax):
    """Constraints of layers 0..k-1 (variables: x, then per layer its post-activations
    and the binaries of its unstable neurons). Returns (n_vars, indices of layer k's
    inputs, constraint, bounds, integrality)."""
    import scipy.sparse as sp
    from scipy.optimize import Bounds, LinearConstraint

    var_lo, var_hi = list(lower), list(upper)
    integ = [0] * len(lower)
    rows, rlo, rhi = [], [], []
    prev = np.arange(len(lower))
    for i in range(k):
        w, b = margin.layers[i]
        lo, hi = hidden[i]
        h = np.arange(len(var_lo), len(var_lo) + len(b))
        var_lo += list(np.maximum(lo, 0.0))
        var_hi += list(np.maximum(hi, 0.0))
        integ += [0] * len(b)
        for j in range(len(b)):
            z = {int(p): -float(c) for p, c in zip(prev, w[j], strict=True)}  # -z + b
            if hi[j] <= 0:
                continue  # h = 0: its upper bound is 0 already
            if lo[j] >= 0:  # h = z
                rows.append({**z, int(h[j]): 1.0})
                rlo.append(b[j])
                rhi.append(b[j])
                continue
            d = len(var_lo)
            var_lo.append(0.0)
            var_hi.append(1.0)
            integ.append(0 if relax else 1)
            rows.append({**z, int(h[j]): 1.0})  # h >= z
            rlo.append(b[j])
            rhi.append(np.inf)
            rows.append({**z, int(h[j]): 1.0, d: -float(lo[j])})  # h <= z - lo (1 - d)
            rlo.append(-np.inf)
            rhi.append(b[j] - lo[j])
            rows.append({int(h[j]): 1.0, d: -float(hi[j])})  # h <= hi d
            rlo.append(-np.inf)
            rhi.append(0.0)
        prev = h
    a = sp.lil_matrix((len(rows), len(var_lo)))
    for r, row in enumerate(rows):
        for c, v in row.items():
            a[r, c] = v
    con = LinearConstraint(a.tocsr(), rlo, rhi)
    return len(var_lo), prev, con, Bounds(var_lo, var_hi), np.array(integ)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="frontier.py build directory")
    ap.add_argument("--key", required=True, help="NET/INDEX/K of instances.json")
    ap.add_argument("--limit", type=float, default=5.0, help="seconds per MILP")
    ap.add_argument("--neurons", type=int, default=6, help="unstable neurons per layer")
    ap.add_argument("--lp", action="store_true", help="relax the binaries (LP)")
    args = ap.parse_args(argv)
    import torch
    from scipy.optimize import milp

    from medverify import bounds

    out = Path(args.out)
    inst = frontier.instance(out, args.key, "milp_refine")
    if inst is None:
        return 2
    problem, _ = frontier._problem(out, inst, {})
    margin = problem.margin_net()
    torch.set_num_threads(1)
    eng = bounds.Batched(margin, problem.lower, problem.upper)
    t0 = time.perf_counter()
    hidden = eng.optimized_hidden(eng.lo[None], eng.hi[None], iters=20)
    hidden = [(lo[0].numpy(), hi[0].numpy()) for lo, hi in hidden]
    unstable = [int(((lo < 0) & (hi > 0)).sum()) for lo, hi in hidden]
    print(
        f"alpha-CROWN hidden bounds {time.perf_counter() - t0:.1f}s, unstable per layer {unstable}"
    )
    for k in (1, 2):
        if k >= len(hidden):
            break
        lo, hi = hidden[k]
        idx = np.flatnonzero((lo < 0) & (hi > 0))[: args.neurons]
        n_vars, inputs, con, box, integ = encode(
            margin, hidden, problem.lower, problem.upper, k, args.lp
        )
        w, b = margin.layers[k]
        t0 = time.perf_counter()
        gains, stable, got = [], 0, 0
        for j in idx:
            c = np.zeros(n_vars)
            c[inputs] = w[j]
            ends = []
            for sign in (1.0, -1.0):
                res = milp(
                    sign * c,
                    constraints=con,
                    bounds=box,
                    integrality=integ,
                    options={"time_limit": args.limit, "disp": False},
                )
                dual = res.fun if args.lp else res.get("mip_dual_bound")
                ends.append(None if dual is None else sign * dual + b[j])
            if None in ends:
                continue
            got += 1
            gains.append(((ends[0] - lo[j]) + (hi[j] - ends[1])) / 2)
            stable += ends[0] >= 0 or ends[1] <= 0
        width = float(np.mean(hi[idx] - lo[idx])) if len(idx) else float("nan")
        print(
            f"layer {k}: {unstable[k]} unstable; {len(idx)} tried, {got} bounded within "
            f"{args.limit:g}s, mean narrowing per side {np.mean(gains) if gains else float('nan'):.3f} "
            f"(mean width {width:.3f}), {stable} made stable, {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("milp_refine.py", main))
