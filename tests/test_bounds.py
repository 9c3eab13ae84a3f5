"""The bound engine (medverify.bounds): validity against sampling, numpy and torch paths
agreeing, alpha/beta never loosening, and auto_LiRPA as an independent check of CROWN."""

from __future__ import annotations

import numpy as np
import pytest

from medverify import bounds
from medverify.nets import AffineNet


def random_net(rng, widths):
    return AffineNet(
        [
            (
                rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]),
                rng.normal(size=widths[i + 1]) * 0.3,
            )
            for i in range(len(widths) - 1)
        ]
    )


def sampled_range(net, lo, hi, rng, n=20000):
    pts = np.vstack(
        [
            rng.uniform(lo, hi, size=(n, len(lo))),
            np.where(rng.integers(0, 2, (n // 4, len(lo))), lo, hi),
        ]
    )
    pre, h = [], pts
    for w, b in net.layers:
        z = h @ w.T + b
        pre.append(z)
        h = np.maximum(z, 0)
    return [(z.min(axis=0), z.max(axis=0)) for z in pre]


@pytest.mark.parametrize("method", list(bounds.METHODS))
def test_every_method_contains_sampled_values(method):
    rng = np.random.default_rng(7)
    for _ in range(5):
        net = random_net(rng, [6, 12, 10, 4])
        lo = rng.uniform(0, 0.6, 6)
        hi = lo + rng.uniform(0.05, 0.4, 6)
        got = bounds.compute(net, lo, hi, method)
        assert len(got) == len(net.layers)
        for (blo, bhi), (slo, shi) in zip(got, sampled_range(net, lo, hi, rng), strict=True):
            assert np.all(blo <= slo) and np.all(bhi >= shi)


def test_crown_never_looser_than_interval_and_alpha_never_looser_than_crown():
    rng = np.random.default_rng(1)
    for _ in range(5):
        net = random_net(rng, [5, 16, 16, 3])
        lo = rng.uniform(0, 0.5, 5)
        hi = lo + 0.3
        ibp, cr, al = (bounds.compute(net, lo, hi, m) for m in ("interval", "crown", "alpha-crown"))
        for (il, ih), (cl, ch) in zip(ibp, cr, strict=True):
            assert np.all(cl >= il - 1e-12) and np.all(ch <= ih + 1e-12)
        assert np.all(al[-1][0] >= cr[-1][0] - 1e-12) and np.all(al[-1][1] <= cr[-1][1] + 1e-12)


def test_unknown_method_and_bad_box():
    net = random_net(np.random.default_rng(0), [2, 3, 2])
    with pytest.raises(ValueError, match="unknown bound method 'deeppoly'"):
        bounds.compute(net, np.zeros(2), np.ones(2), "deeppoly")
    with pytest.raises(ValueError, match="exceeds"):
        bounds.crown(net, np.ones(2), np.zeros(2))


def test_batched_torch_matches_numpy_on_many_boxes():
    import torch

    rng = np.random.default_rng(2)
    net = random_net(rng, [4, 9, 7, 3])
    lo = rng.uniform(0, 0.5, (6, 4))
    hi = lo + rng.uniform(0, 0.3, (6, 4))
    eng = bounds.Batched(net, lo[0], hi[0])
    got = eng.crown(torch.as_tensor(lo), torch.as_tensor(hi))
    for b in range(6):
        ref = bounds.crown(net, lo[b], hi[b])
        for (tl, th), (rl, rh) in zip(got, ref, strict=True):
            np.testing.assert_allclose(tl[b].numpy(), rl, atol=1e-12)
            np.testing.assert_allclose(th[b].numpy(), rh, atol=1e-12)


def test_split_domains_bound_their_own_points():
    """beta-CROWN bounds of a domain with split constraints are below every sampled point
    that satisfies the splits, and the two children of a split are never looser than
    their parent."""
    import torch

    rng = np.random.default_rng(5)
    for _ in range(4):
        net = random_net(rng, [4, 8, 8, 3])
        lo, hi = np.zeros(4), np.ones(4)
        eng = bounds.Batched(net, lo, hi)
        hidden = eng.crown(eng.lo[None], eng.hi[None])[:-1]
        unstable = [
            (i, j)
            for i, (l_i, u_i) in enumerate(hidden)
            for j in range(l_i.shape[1])
            if l_i[0, j] < 0 < u_i[0, j]
        ]
        layer, idx = unstable[0]
        splits = [torch.zeros((2, 8), dtype=torch.int8) for _ in range(2)]
        splits[layer][0, idx], splits[layer][1, idx] = 1, -1
        parent = [(lw.expand(2, -1), up.expand(2, -1)) for lw, up in hidden]
        lo_b, hi_b = eng.lo.expand(2, -1), eng.hi.expand(2, -1)
        lb, _, _, _, bad = eng.margins_lower(lo_b, hi_b, splits, parent, iters=30)
        root = eng.margins_lower(eng.lo[None], eng.hi[None])[0][0]
        pts = rng.uniform(0, 1, (40000, 4))
        h = pts
        pre = []
        for w, b in net.layers[:-1]:
            zz = h @ w.T + b
            pre.append(zz)
            h = np.maximum(zz, 0)
        out = net.forward(pts)
        for child, mask in ((0, pre[layer][:, idx] >= 0), (1, pre[layer][:, idx] <= 0)):
            if bad[child]:
                assert not mask.any()
                continue
            assert np.all(out[mask].min(axis=0) >= lb[child].numpy() - 1e-9)
            assert np.all(lb[child].numpy() >= root.numpy() - 1e-9)


def test_float32_search_returns_float64_bounds_that_hold():
    """The alpha/beta search runs in float32 (``search_dtype``), but every bound
    ``optimize`` returns is a float64 pass with the parameters found: it is float64, it
    lies below every sampled output, it equals one fixed float64 pass with the kept
    parameters where the search improved on plain CROWN, and it lands near the bound of
    the same search run in float64."""
    import torch

    rng = np.random.default_rng(21)
    for _ in range(4):
        net = random_net(rng, [12, 24, 24, 4])
        x = rng.uniform(0.2, 0.8, 12)
        lo, hi = x - 0.15, x + 0.15
        got = {}
        for dtype in (torch.float32, torch.float64):
            eng = bounds.Batched(net, lo, hi)
            eng.search_dtype = dtype
            hidden = eng.crown(eng.lo[None], eng.hi[None])[:-1]
            w, b = eng.layers[-1]
            plain = eng.margins_fixed(eng.lo[None], eng.hi[None], hidden, None)
            lb, _, _ = eng.optimize(hidden, w[None], b[None], iters=40, stop_at=9e9)
            assert lb.dtype == torch.float64
            again = eng.margins_fixed(eng.lo[None], eng.hi[None], hidden, None, eng.last_alphas)
            improved = lb > plain
            assert improved.any()
            # equal up to float64 round-off (the two passes' batch shapes differ, and so
            # may the order of the matrix products' sums); a float32 bound is ~1e-7 off
            assert torch.allclose(lb[improved], again[improved], rtol=0, atol=1e-12)
            got[dtype] = lb[0].numpy()
        out_min = sampled_range(net, lo, hi, rng)[-1][0]
        assert np.all(got[torch.float32] <= out_min + 1e-9)
        assert np.allclose(got[torch.float32], got[torch.float64], rtol=0.02, atol=0.02)


def test_crown_agrees_with_auto_lirpa_on_random_networks():
    """auto_LiRPA 0.3 (an independent implementation) as the reference for CROWN."""
    import torch

    from medverify._lirpa_compat import import_auto_lirpa

    al = import_auto_lirpa()
    rng = np.random.default_rng(3)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for _ in range(4):
            net = random_net(rng, [6, 8, 7, 3])
            lo = rng.uniform(0, 0.5, 6)
            hi = lo + 0.3
            ours = bounds.crown(net, lo, hi)[-1]
            module = al.BoundedModule(
                net.to_torch(torch.float64), torch.zeros((1, 6)), device="cpu"
            )
            lo_t, hi_t = torch.as_tensor(lo)[None], torch.as_tensor(hi)[None]
            ptb = al.PerturbationLpNorm(norm=np.inf, x_L=lo_t, x_U=hi_t)
            x = al.BoundedTensor((lo_t + hi_t) / 2, ptb)
            tl, th = module.compute_bounds(x=(x,), method="CROWN")
            tl, th = tl.detach(), th.detach()
            # ours intersects with interval bounds, so it may only be tighter
            assert np.all(ours[0] >= tl[0].numpy() - 1e-7)
            assert np.all(ours[1] <= th[0].numpy() + 1e-7)
            # and comparable: ours is tighter only where interval bounds help (a few %)
            width = ours[1] - ours[0]
            assert np.all(ours[0] - tl[0].numpy() <= 0.05 * width)
            assert np.all(th[0].numpy() - ours[1] <= 0.05 * width)
            smin = net.forward(rng.uniform(lo, hi, (5000, 6))).min(axis=0)
            assert np.all(smin >= ours[0])
    finally:
        torch.set_default_dtype(old)


def test_kept_parameters_reproduce_the_best_bound_and_warm_start_is_sound():
    """After an alpha-beta optimisation, ``last_alphas``/``last_betas`` are valid (alpha in
    [0, 1], beta >= 0) and one fixed pass with them (``margins_fixed``) gives back the best
    bound per row; a grandchild warm-started from them still bounds its own points."""
    import torch

    rng = np.random.default_rng(11)
    for _ in range(4):
        net = random_net(rng, [4, 10, 10, 3])
        lo, hi = np.zeros(4), np.ones(4)
        eng = bounds.Batched(net, lo, hi)
        hidden = eng.crown(eng.lo[None], eng.hi[None])[:-1]
        unstable = [
            (i, j)
            for i, (l_i, u_i) in enumerate(hidden)
            for j in range(l_i.shape[1])
            if l_i[0, j] < 0 < u_i[0, j]
        ]
        (layer, idx), (layer2, idx2) = unstable[0], unstable[-1]
        splits = [torch.zeros((2, 10), dtype=torch.int8) for _ in range(2)]
        splits[layer][0, idx], splits[layer][1, idx] = 1, -1
        parent = [(lw.expand(2, -1), up.expand(2, -1)) for lw, up in hidden]
        lo_b, hi_b = eng.lo.expand(2, -1), eng.hi.expand(2, -1)
        used = eng.crown(lo_b, hi_b, splits, parent)[:-1]
        w, b = eng.layers[-1]
        lb, _, _ = eng.optimize(
            used, w.expand(2, *w.shape), b.expand(2, 3), iters=30, splits=splits, stop_at=9e9
        )
        alphas, betas = eng.last_alphas, eng.last_betas
        assert all(float(a.min()) >= 0 and float(a.max()) <= 1 for a in alphas)
        assert all(b is None or float(b.min()) >= 0 for b in betas)
        again = eng.margins_fixed(lo_b, hi_b, used, splits, alphas, betas)
        assert torch.allclose(again, lb, atol=1e-9)
        # grandchildren of child 0, warm-started from its parameters
        sub = [s[:1].repeat(2, 1) for s in splits]
        sub[layer2][0, idx2], sub[layer2][1, idx2] = 1, -1
        lb2, _, _, _, bad = eng.margins_lower(
            lo_b,
            hi_b,
            sub,
            [(lw[:1].expand(2, -1), up[:1].expand(2, -1)) for lw, up in used],
            iters=10,
            alpha_init=[a[:1] for a in alphas],
            beta_init=[None if b is None else b[:1] for b in betas],
        )
        pts = rng.uniform(0, 1, (40000, 4))
        h, pre = pts, []
        for w, b in net.layers[:-1]:
            pre.append(h @ w.T + b)
            h = np.maximum(pre[-1], 0)
        out = net.forward(pts)
        side = pre[layer][:, idx] >= 0
        for child, mask in (
            (0, side & (pre[layer2][:, idx2] >= 0)),
            (1, side & (pre[layer2][:, idx2] <= 0)),
        ):
            if bad[child] or not mask.any():
                continue
            assert np.all(out[mask].min(axis=0) >= lb2[child].numpy() - 1e-9)


def test_tightened_hidden_bounds_contain_their_domains_points():
    """``tighten`` (the later layers' unstable neurons recomputed after splits, with the
    root's optimised intermediate slopes) gives bounds that contain every sampled point
    of its domain, never looser than the clamped parent bounds and strictly tighter
    somewhere; output bounds built on them (``margins_lower(refine=True)``) stay valid."""
    import torch

    rng = np.random.default_rng(21)
    tighter = 0
    for _ in range(5):
        widths = [5, 12, 12, 12, 3]
        net = random_net(rng, widths)
        lo, hi = np.zeros(5), np.ones(5)
        eng = bounds.Batched(net, lo, hi)
        root = eng.optimized_hidden(eng.lo[None], eng.hi[None], iters=20)
        assert eng.hidden_alphas[0] is None and eng.hidden_alphas[1] is not None
        first = [j for j in range(12) if root[0][0][0, j] < 0 < root[0][1][0, j]]
        second = [j for j in range(12) if root[1][0][0, j] < 0 < root[1][1][0, j]]
        if not first or not second:
            continue
        a, b = first[0], second[0]
        # four domains: the signs of neuron a of layer 0 and neuron b of layer 1
        signs = [(1, 1), (1, -1), (-1, 1), (-1, -1)]
        splits = [torch.zeros((4, 12), dtype=torch.int8) for _ in range(3)]
        for d, (sa, sb) in enumerate(signs):
            splits[0][d, a], splits[1][d, b] = sa, sb
        parent = [(lw.expand(4, -1), up.expand(4, -1)) for lw, up in root]
        lo_b, hi_b = eng.lo.expand(4, -1), eng.hi.expand(4, -1)
        clamped = eng.clamp_splits(parent, splits)
        refined = eng.tighten(lo_b, hi_b, clamped, eng.hidden_alphas)
        lb, _, _, used, bad = eng.margins_lower(
            lo_b, hi_b, splits, parent, iters=10, inherit=True, refine=True
        )
        pts = rng.uniform(0, 1, (40000, 5))
        pts = np.vstack([pts, np.where(rng.integers(0, 2, (10000, 5)), 0.0, 1.0)])
        h, pre = pts, []
        for w, bias in net.layers[:-1]:
            pre.append(h @ w.T + bias)
            h = np.maximum(pre[-1], 0)
        out = net.forward(pts)
        for d, (sa, sb) in enumerate(signs):
            mask = (sa * pre[0][:, a] >= 0) & (sb * pre[1][:, b] >= 0)
            if bad[d] or not mask.any():
                continue
            for i, ((l_r, u_r), (l_c, u_c)) in enumerate(zip(refined, clamped, strict=True)):
                z = pre[i][mask]
                assert np.all(z >= l_r[d].numpy() - 1e-9), (i, d)
                assert np.all(z <= u_r[d].numpy() + 1e-9), (i, d)
                assert np.all(l_r[d].numpy() >= l_c[d].numpy())
                assert np.all(u_r[d].numpy() <= u_c[d].numpy())
                tighter += int((l_r[d] > l_c[d] + 1e-9).sum() + (u_r[d] < u_c[d] - 1e-9).sum())
            assert np.all(out[mask].min(axis=0) >= lb[d].numpy() - 1e-9)
            for (l_u, u_u), (l_r, u_r) in zip(used, refined, strict=True):
                assert torch.equal(l_u[d], l_r[d]) and torch.equal(u_u[d], u_r[d])
    assert tighter > 0


def test_first_layer_children_equal_a_full_pass_over_the_children():
    """Branching scores: the two children of splitting a first-layer neuron, bounded from
    the parent's own pass (``first_layer_children``), equal ``margins_fixed`` over the
    stacked children (split clamped, same slopes and multipliers), with alphas and
    betas of a domain that has splits in every layer."""
    import torch

    rng = np.random.default_rng(5)
    checked = 0
    for trial in range(6):
        net = random_net(rng, [6, 12, 12, 12, 4])
        lo, hi = np.zeros(6), np.ones(6)
        eng = bounds.Batched(net, lo, hi)
        B = 3
        hidden = [
            (lw.expand(B, -1), up.expand(B, -1))
            for lw, up in eng.crown(eng.lo[None], eng.hi[None])[:-1]
        ]
        splits = [torch.zeros((B, 12), dtype=torch.int8) for _ in range(3)]
        for i, (l_i, u_i) in enumerate(hidden):
            open_ = np.flatnonzero(((l_i[0] < 0) & (u_i[0] > 0)).numpy())
            for d in range(B):  # one split per layer and domain, on unstable neurons
                if len(open_) > 2:
                    splits[i][d, open_[(d + trial) % len(open_)]] = 1 if d % 2 else -1
        hidden = eng.clamp_splits(hidden, splits)
        m = net.layers[-1][0].shape[0]
        alphas = [torch.as_tensor(rng.uniform(0, 1, (B, m, 12))) for _ in range(3)]
        # multipliers on every neuron: an unsplit one's adds nothing to the domain's pass
        # but enters its children's (a kept beta of a neuron split later)
        betas = [torch.as_tensor(rng.uniform(0, 0.5, (B, m, 12))) for _ in splits]
        lo_b, hi_b = eng.lo.expand(B, -1), eng.hi.expand(B, -1)
        own = eng.fixed_pass(lo_b, hi_b, hidden, splits, alphas, betas)
        assert torch.allclose(own[0], eng.margins_fixed(lo_b, hi_b, hidden, splits, alphas, betas))
        rows, neurons = [], []
        for d in range(B):
            l0, u0 = hidden[0]
            for j in range(12):
                if l0[d, j] < 0 < u0[d, j] and splits[0][d, j] == 0:
                    rows.append(d)
                    neurons.append(j)
        if not rows:
            continue
        fast = eng.first_layer_children(
            own, alphas, betas, torch.tensor(rows), torch.tensor(neurons)
        )
        idx = torch.tensor([d for d in rows for _ in (1, -1)])
        child_splits = [s.index_select(0, idx).clone() for s in splits]
        for c, j in enumerate(neurons):
            child_splits[0][2 * c, j], child_splits[0][2 * c + 1, j] = 1, -1
        child_hidden = eng.clamp_splits(
            [(lw.index_select(0, idx), up.index_select(0, idx)) for lw, up in hidden], child_splits
        )
        n = len(idx)
        full = eng.margins_fixed(
            eng.lo.expand(n, -1),
            eng.hi.expand(n, -1),
            child_hidden,
            child_splits,
            [a.index_select(0, idx) for a in alphas],
            [b.index_select(0, idx) for b in betas],
        )
        assert fast.shape == full.shape
        assert torch.allclose(fast, full, atol=1e-9, rtol=1e-9), (fast - full).abs().max()
        checked += len(rows)
    assert checked >= 10


def test_tighten_after_a_split_layer_equals_tightening_every_layer():
    """A child's layers up to its new split's are its parent's, already tightened:
    ``tighten(..., after=layer of the split)`` skips them and must give the bounds of
    tightening every layer, for children split in every layer, in one batch."""
    import torch

    rng = np.random.default_rng(8)
    compared = 0
    for _ in range(5):
        net = random_net(rng, [6, 10, 10, 10, 3])
        eng = bounds.Batched(net, np.zeros(6), np.ones(6))
        root = eng.optimized_hidden(eng.lo[None], eng.hi[None], iters=5)
        alphas = eng.hidden_alphas

        def unstable(h, layer):
            lw, up = h[layer]
            return np.flatnonzero(((lw[0] < 0) & (up[0] > 0)).numpy())

        first = unstable(root, 0)
        if not len(first):
            continue
        splits = [torch.zeros((1, 10), dtype=torch.int8) for _ in range(3)]
        splits[0][0, first[0]] = 1
        parent = eng.tighten(eng.lo[None], eng.hi[None], eng.clamp_splits(root, splits), alphas)
        kids, after = [], []
        for layer in range(3):
            for j in unstable(parent, layer)[:2]:
                if splits[layer][0, j] != 0:
                    continue
                for sign in (1, -1):
                    s = [t.clone() for t in splits]
                    s[layer][0, j] = sign
                    kids.append(s)
                    after.append(layer)
        if len(set(after)) < 2:
            continue
        B = len(kids)
        child_splits = [torch.cat([k[i] for k in kids]) for i in range(3)]
        hidden = eng.clamp_splits(
            [(lw.expand(B, -1), up.expand(B, -1)) for lw, up in parent], child_splits
        )
        lo_b, hi_b = eng.lo.expand(B, -1), eng.hi.expand(B, -1)
        full = eng.tighten(lo_b, hi_b, hidden, alphas)
        fast = eng.tighten(lo_b, hi_b, hidden, alphas, after=torch.tensor(after))
        for (fl, fu), (sl, su) in zip(full, fast, strict=True):
            # equal up to round-off (batches of other shapes sum in another order)
            assert torch.allclose(fl, sl, rtol=0, atol=1e-12)
            assert torch.allclose(fu, su, rtol=0, atol=1e-12)
        # and tightening did something for the children split early (not a vacuous check)
        assert any(
            not torch.equal(t[0], h[0]) or not torch.equal(t[1], h[1])
            for t, h in zip(full, hidden, strict=True)
        )
        compared += B
    assert compared >= 20


def test_layer1_from_the_root_pass_equals_its_own_pass():
    """With the root's bounds given (``set_root``), ``tighten`` recomputes layer 1's
    bounds from the root's backward pass plus the split first-layer neurons' changes;
    they must equal a backward pass of each domain's own (the path without a root), with
    and without the root's optimised slopes, for domains with up to five splits and for
    a batch where some domains keep layer 1 (``after``). With ``radius32`` (the n0-wide
    products in float32, round-off bounded) the bounds are never tighter than the float64
    pass's and within 1e-4 of them."""
    import torch

    rng = np.random.default_rng(5)
    compared = 0
    for trial in range(12):
        widths = [7, 20, 20, 4] if trial % 2 else [7, 20, 20, 20, 3]
        net = random_net(rng, widths)
        lo, hi = np.zeros(7), np.ones(7)
        eng, plain = bounds.Batched(net, lo, hi), bounds.Batched(net, lo, hi)
        eng.radius32 = trial >= 6
        plain.radius32 = False
        root = eng.optimized_hidden(eng.lo[None], eng.hi[None], iters=10)
        plain.hidden_alphas = eng.hidden_alphas
        first = [j for j in range(20) if root[0][0][0, j] < 0 < root[0][1][0, j]]
        if not first:
            continue
        B = 40
        splits = [torch.zeros((B, 20), dtype=torch.int8) for _ in widths[1:-1]]
        for d in range(B):
            chosen = rng.choice(first, size=min(len(first), d % 6), replace=False)
            splits[0][d, chosen] = torch.tensor(
                rng.choice([-1, 1], size=len(chosen)), dtype=torch.int8
            )
        parent = [(lw.expand(B, -1), up.expand(B, -1)) for lw, up in root]
        clamped = eng.clamp_splits(parent, splits)
        lo_b, hi_b = eng.lo.expand(B, -1), eng.hi.expand(B, -1)
        after = torch.tensor([1 if d % 7 == 3 else -1 for d in range(B)])
        eng.set_root(root)
        for alphas in (eng.hidden_alphas, None):
            for aft in (None, after):
                got = eng.tighten(lo_b, hi_b, clamped, alphas, after=aft)
                want = plain.tighten(lo_b, hi_b, clamped, alphas, after=aft)
                assert eng._layer1 is not None and plain._layer1 is None
                for k, ((gl, gu), (wl, wu)) in enumerate(zip(got, want, strict=True)):
                    if not eng.radius32:
                        np.testing.assert_allclose(gl.numpy(), wl.numpy(), rtol=1e-9, atol=1e-9)
                        np.testing.assert_allclose(gu.numpy(), wu.numpy(), rtol=1e-9, atol=1e-9)
                        continue
                    np.testing.assert_allclose(gl.numpy(), wl.numpy(), rtol=1e-4, atol=1e-4)
                    np.testing.assert_allclose(gu.numpy(), wu.numpy(), rtol=1e-4, atol=1e-4)
                    if k == 1:  # the float32 products' round-off is added, never dropped
                        tol = 1e-12 * (1 + wl.abs())
                        assert bool((gl <= wl + tol).all() and (gu >= wu - tol).all())
                compared += 1
        # the splits tightened layer 1 somewhere (the test compares bounds that moved)
        assert bool((got[1][0] > clamped[1][0]).any() or (got[1][1] < clamped[1][1]).any())
    assert compared >= 16


def test_drop_inactive_keeps_the_function_on_the_box():
    """``drop_inactive`` removes exactly the hidden neurons whose upper bound is <= 0, and
    the smaller net computes the same outputs as the full one at points of the box; no
    neuron off, or every neuron of a layer off, leaves the net as it is."""
    rng = np.random.default_rng(11)
    dropped = 0
    for _ in range(20):
        widths = [6, 30, 30, 30, 4]
        net = random_net(rng, widths)
        x = rng.uniform(0, 1, 6)
        lo, hi = np.clip(x - 0.05, 0, 1), np.clip(x + 0.05, 0, 1)
        hidden = bounds.crown(net, lo, hi)[:-1]
        small, keep = bounds.drop_inactive(net, hidden)
        if keep is None:
            continue
        for (_, up), k, n in zip(hidden, keep, widths[1:-1], strict=True):
            np.testing.assert_array_equal(k, np.flatnonzero(up > 0))
            dropped += n - len(k)
        pts = rng.uniform(lo, hi, (2000, 6))
        np.testing.assert_allclose(small.forward(pts), net.forward(pts), rtol=1e-12, atol=1e-12)
    assert dropped > 0
    net = random_net(rng, [3, 4, 2])
    on = [(np.full(4, -1.0), np.ones(4))]
    assert bounds.drop_inactive(net, on) == (net, None)
    assert bounds.drop_inactive(net, [(-np.ones(4), -np.ones(4))]) == (net, None)


def test_through_relu_equals_the_slope_chosen_per_coefficient():
    """``through_relu`` gives exactly (bit for bit) the coefficients of choosing, per
    coefficient, the upper slope for a negative one and the lower slope otherwise, with
    zeros among the coefficients, per-row and broadcast slopes, in torch and numpy."""
    import torch

    rng = np.random.default_rng(8)
    for shape_sl in ((4, 7, 9), (4, 1, 9)):
        A = rng.normal(size=(4, 7, 9)) * 10.0 ** rng.integers(-5, 5, size=(4, 7, 9))
        A[rng.uniform(size=A.shape) < 0.2] = 0.0
        sl, su = rng.uniform(size=shape_sl), rng.uniform(size=(4, 1, 9))
        want = A * np.where(A < 0, su, sl), np.where(A < 0, A, 0.0)
        for got in (
            bounds.through_relu(A, sl, su),
            [t.numpy() for t in bounds.through_relu(*map(torch.as_tensor, (A, sl, su)))],
        ):
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)


def test_x_lower32_bounds_the_float64_step_from_below():
    """``x_lower32`` (the last backward step's radius product in float32, its round-off
    bounded) is never above the float64 step's bound, also where the product cancels
    (two first-layer rows of opposite sign, equal coefficients) and over scales from
    1e-6 to 1e6, and it stays within 1e-3 of it relative to the radius term."""
    import torch

    gen = torch.Generator().manual_seed(3)
    worst = 0.0
    for t in range(120):
        n1 = int(torch.randint(2, 300, (), generator=gen))
        n0 = int(torch.randint(1, 900, (), generator=gen))
        scale = 10.0 ** float(torch.randint(-6, 7, (), generator=gen))
        w = torch.randn(n1, n0, dtype=torch.float64, generator=gen) * scale
        A = torch.randn(3, 5, n1, dtype=torch.float64, generator=gen) / scale
        if t % 2:
            w[1] = -w[0] * (1 + 1e-7)
            A[..., 1] = A[..., 0]
        b = torch.randn(n1, dtype=torch.float64, generator=gen)
        lo = torch.rand(3, n0, dtype=torch.float64, generator=gen)
        hi = lo + 0.1 * torch.rand(3, n0, dtype=torch.float64, generator=gen)
        hi[:, : n0 // 3] = lo[:, : n0 // 3]  # some zero radii
        c = torch.randn(3, 5, dtype=torch.float64, generator=gen)
        want = bounds.box_min(A @ w, lo[..., None, :], hi[..., None, :], c + A @ b)
        got = bounds.x_lower32(A, w, b, w.float(), lo, hi, c)
        assert bool((got <= want + 1e-12 * (1 + want.abs())).all()), (t, n1, n0, scale)
        radius = ((A @ w).abs() @ ((hi - lo) / 2)[..., None])[..., 0]
        worst = max(worst, float(((want - got) / (1 + radius)).max()))
    assert worst < 1e-3
    # the radius rounded up to float32, also where float32's spacing exceeds 1
    v = torch.tensor([0.0, 1e-45, 0.1, 1 / 3, 3e7 + 0.5, 1e30], dtype=torch.float64)
    assert bool((bounds.up32(v).double() >= v).all())


def test_big_m_encoding_is_exact_for_the_network():
    """``bounds.BigM``: every point of the box, with h = relu(z) and a = [z > 0], satisfies
    the rows and gives the net's outputs; a hidden value off relu(z) violates a row; and
    each output's mixed-integer minimum is attained by its own x through the net (the
    encoding admits no h other than relu(z)) and is no higher than a dense grid's."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    rng = np.random.default_rng(7)
    net = random_net(rng, [2, 12, 10, 3])
    lo, hi = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
    hidden = bounds.crown(net, lo, hi)[:-1]
    enc = bounds.BigM(net, lo, hi, hidden)
    assert enc.binaries > 0  # the bounds leave unstable neurons to encode
    for x in rng.uniform(lo, hi, size=(50, 2)):
        v, h = list(x), x
        for (w, b), (l_k, u_k) in zip(net.layers[:-1], hidden, strict=True):
            z = w @ h + b
            for i in range(len(z)):
                if u_k[i] > 0:
                    v.append(max(z[i], 0.0))
                    if l_k[i] < 0:
                        v.append(float(z[i] > 0))
            h = np.maximum(z, 0)
        v = np.array(v)
        av = enc.A @ v
        assert np.all(av >= enc.row_lower - 1e-9) and np.all(av <= enc.row_upper + 1e-9)
        assert np.all(v >= enc.var_lower - 1e-9) and np.all(v <= enc.var_upper + 1e-9)
        np.testing.assert_allclose(enc.out @ v + enc.out_bias, net.forward(x), atol=1e-9)
        bad = v.copy()
        bad[enc.n_inputs] += 0.05  # the first hidden neuron's value off relu(z)
        ab = enc.A @ bad
        assert np.any(ab < enc.row_lower - 1e-9) or np.any(ab > enc.row_upper + 1e-9)
    g = np.stack(np.meshgrid(np.linspace(lo[0], hi[0], 201), np.linspace(lo[1], hi[1], 201)), -1)
    grid_min = np.array([net.forward(x) for x in g.reshape(-1, 2)]).min(axis=0)
    for r in range(3):
        res = milp(
            enc.out[r].toarray().ravel(),
            constraints=[LinearConstraint(enc.A, enc.row_lower, enc.row_upper)],
            bounds=Bounds(enc.var_lower, enc.var_upper),
            integrality=enc.integral,
        )
        assert res.status == 0
        value = res.fun + enc.out_bias[r]
        assert value <= grid_min[r] + 1e-7
        np.testing.assert_allclose(net.forward(res.x[:2])[r], value, atol=1e-6)
