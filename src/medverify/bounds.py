"""The one bound engine: pre-activation bounds of an AffineNet over input boxes.

Methods, chosen by name in ``compute(net, lower, upper, method)`` (as auto_LiRPA's
``compute_bounds(method=...)``):

- ``interval``: interval arithmetic.
- ``crown``: the symbolic backward linear relaxation (CROWN / DeepPoly): each layer's
  pre-activation is bounded by back-substituting linear bounds through the earlier layers,
  intersected with the interval bounds, so it is never looser.
- ``alpha-crown``: CROWN with the lower slopes of unstable ReLUs optimised (projected
  gradient, Adam) for the output layer; needs torch.

The relaxation of a ReLU (``relu_relaxation``), the interval step (``interval_layers``) and
the backward pass (``backward``) are written once, over an array namespace that is numpy
or torch: ``interval`` and ``crown`` run in numpy so a verify job that ends on the fast
path never imports torch; ``Batched`` runs the same functions in torch on batches of boxes
and of ReLU-split domains (split constraints as clamped bounds plus beta multipliers,
lower slopes alpha), with autograd for the alpha/beta optimisation. The crown backend's
branch and bound, milp's big-M constants and its mixed-integer encoding (``BigM``, also
the crown backend's MILP handoff), the guided label ordering and search seeding all call
this module; there is no other relaxation in the package.

Bounds are sound in exact arithmetic; every layer's bounds are widened by ``SAFETY``
(relative) to cover float64 round-off. Callers that need a proof compare against a small
positive tolerance.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from .nets import AffineNet

#: relative slack added to every bound to cover float64 round-off
SAFETY = 1e-9
#: a lower bound must exceed this to count as a proof (shared with the crown backend)
PROVE_TOL = 1e-9
#: alpha/beta optimisation stops after this many steps without improvement
PATIENCE = 20
#: Adam step sizes of the split multipliers (beta-CROWN): of a multiplier warm-started
#: from its parent's value, and of one that starts at 0 (a new split). A batch of the
#: branch and bound gets a few steps, each moving a parameter by about one step size, so
#: a new split's beta needs big steps to reach its value and an inherited one small steps
#: not to lose it (docs/bounds.md)
LR_BETA = 0.05
LR_BETA_NEW = 0.5
#: l > u + this marks an empty (infeasible) split domain
INFEASIBLE_TOL = 1e-9


_BLAS: list = []  # a cached threadpoolctl controller (finding the libraries costs ~1 ms)


def blas_threads(n: int):
    """Context limiting numpy's BLAS to ``n`` threads. Measured on a loaded 2-core machine:
    threaded BLAS turned a 1.3 s numpy attack on a 2352-input CNN into 18 s."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS.append(ThreadpoolController())
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            _BLAS.append(None)
    if _BLAS[0] is None:  # pragma: no cover
        return contextlib.nullcontext()
    return _BLAS[0].limit(limits=max(1, int(n)), user_api="blas")


def retain_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of unmapping it: every
    batched pass allocates temporaries of tens to hundreds of MB, and with the default
    thresholds each allocation maps fresh pages (page faults on first touch) and each free
    returns them. On mnist_mlp256x4 that was about a fifth of the branch and bound's time
    (docs/bounds.md). Peak memory is unchanged (the same tensors are alive at the peak).
    Returns whether the settings took; a no-op where there is no ``mallopt``."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


# --------------------------------------------------------------------------------------
# the formulas, once, for numpy arrays and torch tensors alike
def _xp(a):
    if isinstance(a, np.ndarray):
        return np
    import torch

    return torch


def _pos(a):
    return a * (a > 0)


def pad(lo, hi):
    """Widen bounds by the round-off slack ``SAFETY`` (relative, plus absolute)."""
    xp = _xp(lo)
    slack = SAFETY * (1.0 + xp.maximum(abs(lo), abs(hi)))
    return lo - slack, hi + slack


def relu_relaxation(lo, hi):
    """Linear relaxation of ``relu(z)`` for z in [lo, hi] (any leading batch shape).

    Returns ``(sl, su, tu, unstable)``: ``sl * z <= relu(z) <= su * z + tu``. Stable
    neurons are exact (slopes 1/0, intercept 0); an unstable neuron gets the triangle upper
    bound and the adaptive lower slope (1 if hi > -lo else 0), which alpha-CROWN replaces by
    any value in [0, 1]."""
    xp = _xp(lo)
    one, zero = xp.ones_like(lo), xp.zeros_like(lo)
    active = lo >= 0
    unstable = (lo < 0) & (hi > 0)
    act = xp.where(active, one, zero)
    denom = xp.where(unstable, hi - lo, one)
    su = xp.where(unstable, hi / denom, act)
    tu = xp.where(unstable, -lo * hi / denom, zero)
    sl = xp.where(unstable, xp.where(hi > -lo, one, zero), act)
    return sl, su, tu, unstable


def interval_layers(layers, lower, upper):
    """Interval bounds on every layer's pre-activation; ``lower``/``upper`` (..., n0)."""
    lo, hi = lower, upper
    out = []
    for i, (w, b) in enumerate(layers):
        wp = _pos(w)
        wn = w - wp
        zl = lo @ wp.T + hi @ wn.T + b
        zu = hi @ wp.T + lo @ wn.T + b
        out.append((zl, zu))
        if i < len(layers) - 1:
            lo, hi = _pos(zl), _pos(zu)
    return out


def backward(
    layers, relax, k, A, const, lower, upper, alphas=None, betas=None, splits=None, w0_32=None
):
    """Lower bound of ``A @ h_k + const`` over the box, where ``h_k = relu(z_{k-1})`` is the
    input of layer k (``h_0 = x``), ``A`` (..., m, n_k), ``const`` (..., m).

    ``relax[i]`` is ``relu_relaxation`` of layer i's bounds; ``alphas[i]`` (..., m, n_i)
    optional lower slopes of unstable neurons; ``betas[i]`` (..., m, n_i) >= 0 multipliers
    of split constraints ``splits[i]`` (+1: z >= 0, -1: z <= 0, 0: free), each adding
    ``-beta * split * z`` (non-positive on the domain, so the bound stays valid).

    ``w0_32`` (torch, k >= 1): the first layer's weights in float32; the last step (through
    the first layer to the box) then runs as ``x_lower32`` and the coefficients on x are
    not returned (None).

    Returns ``(lb (..., m), coefficients on x (..., m, n0), [coefficients on h_{i+1}])``.
    """
    xp = _xp(A)
    kept = [None] * k
    for i in range(k - 1, -1, -1):
        sl, su, tu, unstable = relax[i]
        kept[i] = A
        sl_i = sl[..., None, :]
        if alphas is not None and alphas[i] is not None:
            sl_i = xp.where(unstable[..., None, :], alphas[i], sl_i)
        A, an = through_relu(A, sl_i, su[..., None, :])
        const = const + (an @ tu[..., :, None])[..., 0]  # the intercepts, by one matmul
        if betas is not None and betas[i] is not None:
            A = A - betas[i] * splits[i][..., None, :]
        w, b = layers[i]
        if i == 0 and w0_32 is not None:
            return x_lower32(A, w, b, w0_32, lower, upper, const), None, kept
        const = const + A @ b
        A = A @ w
    lb = box_min(A, lower[..., None, :], upper[..., None, :], const)
    return lb, A, kept


#: float32's unit round-off
U32 = 2.0**-24
#: absolute slack of ``x_lower32`` for underflow (subnormals flushed to zero included)
TINY32 = 1e-30


def x_lower32(A, w, b, w32, lower, upper, const):
    """``const`` plus the minimum over the box [lower, upper] (..., n0) of ``A @ (w x + b)``
    (A (..., m, n1) torch float64, the coefficients on the first layer's pre-activations;
    w (n1, n0)): ``backward``'s last step with its biggest product, the radius term
    ``|A w| @ rad``, in float32 (``w32`` = w in float32), about half the cost of float64.

    The float32 result ``s`` is made an upper bound of the exact radius term by the
    standard round-off bounds (Higham, ch. 3): ``rad32 >= rad``; rounding A and w to
    float32 and the product's n1-term sums err by at most ``c |A| |w|`` entrywise with
    ``c = gamma_n1 (1 + u)^2 + 2u + u^2 <= 2 (n1 + 4) u``; the n0-term sum of the
    non-negative ``|P| rad32`` by at most ``gamma_n0`` of itself. So
    ``|A w| @ rad <= s (1 + 2 (n0 + 4) u) + 2 (n1 + 4) u |A| @ (|w| @ rad) + TINY32``,
    the last two in float64 and cheap (no n0-wide product). The centre term ``A @ (w @
    mid)`` is float64. A non-finite float32 result gives -inf (no bound)."""
    torch = _xp(A)
    mid, rad = (lower + upper) / 2, (upper - lower) / 2
    n1, n0 = w.shape
    P = A.to(torch.float32) @ w32
    s = _matvec(P.abs_(), up32(rad)).to(A.dtype)
    slack = _matvec(A.abs(), rad @ w.abs().T)
    radius = s * (1 + 2 * (n0 + 4) * U32) + 2 * (n1 + 4) * U32 * slack + TINY32
    lb = const + A @ b + _matvec(A, mid @ w.T) - radius
    return torch.where(torch.isfinite(radius), lb, -torch.inf)


def up32(v):
    """Non-negative float64 tensor ``v`` in float32, rounded up (so >= v)."""
    torch = _xp(v)
    v32 = v.to(torch.float32)
    up = torch.nextafter(v32, torch.full_like(v32, torch.inf))
    return torch.where(v32.to(v.dtype) < v, up, v32)


def _matvec(A, v):
    """``A @ v`` for A (..., m, n) and v (n,) or one v per leading index (..., n)."""
    if v.ndim == 1:
        return A @ v
    return (A @ v[..., :, None])[..., 0]


def through_relu(A, sl, su):
    """Coefficients ``A`` on ReLU outputs taken to their inputs through the relaxation: a
    negative coefficient takes the upper line (slope ``su``), a positive one the lower
    (slope ``sl``). Returns (the new coefficients, A's negative part, which multiplies the
    upper line's intercept). Computed as ``(A - An) * sl + An * su`` with ``An = min(A,
    0)``: the same numbers as choosing the slope per coefficient (one of the two terms
    is an exact zero), in half the passes over memory."""
    if isinstance(A, np.ndarray):
        an = np.minimum(A, 0.0)
        return (A - an) * sl + an * su, an
    an = A.clamp(max=0)
    return ((A - an) * sl).addcmul_(an, su), an


def box_min(A, lower, upper, const=0.0):
    """``const`` plus the minimum of ``A @ x`` over the box [lower, upper]: rows of A (any
    leading shape), the box (n0,) for all of them or (..., 1, n0), one per leading index.
    Computed as ``A @ mid - |A| @ rad`` (two matrix products: a few passes over A, where
    the coefficient-wise minimum took a dozen); its round-off, like every bound's, is
    covered by ``SAFETY`` and ``PROVE_TOL``."""
    xp = _xp(A)
    mid = (lower + upper) / 2
    rad = (upper - lower) / 2
    if mid.ndim == 1:
        return const + A @ mid - xp.abs(A) @ rad
    mid, rad = xp.swapaxes(mid, -1, -2), xp.swapaxes(rad, -1, -2)
    return const + (A @ mid)[..., 0] - (xp.abs(A) @ rad)[..., 0]


def torch_cat_rows(pos, u):
    """Row indices ``[pos; pos + u]`` (lower-bound rows, then upper-bound rows)."""
    return _xp(pos).cat([pos, pos + u])


def _both_signs(a, lead):
    """``[a; -a]`` along the first axis, broadcast to the leading batch shape ``lead``."""
    if isinstance(a, np.ndarray):
        both = np.concatenate([a, -a])
        return np.broadcast_to(both, (*lead, *both.shape))
    both = _xp(a).cat([a, -a])
    return both.expand(*lead, *both.shape)


def _crown_layers(layers, lower, upper, clamp=None):
    """CROWN bounds of every layer (output included) over boxes (..., n0); ``clamp(i, lo,
    hi)`` may tighten layer i's bounds (split constraints, parent bounds) before they are
    relaxed. Returns the list of (lo, hi) and the relaxations of the hidden layers."""
    xp = _xp(lower)
    ibp = interval_layers(layers, lower, upper)
    out, relax = [], []
    for k, (w, b) in enumerate(layers):
        ilo, ihi = ibp[k]
        if k == 0:
            lo, hi = ilo, ihi
        else:
            lead = tuple(lower.shape[:-1])
            A = _both_signs(w, lead)
            c = _both_signs(b, lead)
            lb, _, _ = backward(layers, relax, k, A, c, lower, upper)
            n = w.shape[0]
            lo = xp.maximum(lb[..., :n], ilo)
            hi = xp.minimum(-lb[..., n:], ihi)
        lo, hi = pad(lo, hi)
        if clamp is not None and k < len(layers) - 1:
            lo, hi = clamp(k, lo, hi)
        out.append((lo, hi))
        if k < len(layers) - 1:
            relax.append(relu_relaxation(lo, xp.maximum(hi, lo)))
    return out, relax


# --------------------------------------------------------------------------------------
# numpy entry points (no torch import)
def _box(lower, upper):
    lower = np.asarray(lower, np.float64)
    upper = np.asarray(upper, np.float64)
    if np.any(lower > upper):
        raise ValueError("box lower bound exceeds upper bound")
    return lower, upper


def interval(net: AffineNet, lower, upper) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval bounds (lo, hi) on every layer's pre-activation, output layer included."""
    lower, upper = _box(lower, upper)
    return [pad(lo, hi) for lo, hi in interval_layers(net.layers, lower, upper)]


def crown(net: AffineNet, lower, upper) -> list[tuple[np.ndarray, np.ndarray]]:
    """CROWN bounds (lo, hi) on every layer's pre-activation, output layer included."""
    lower, upper = _box(lower, upper)
    return _crown_layers(net.layers, lower, upper)[0]


def alpha_crown(net: AffineNet, lower, upper, iters: int = 30):
    """CROWN bounds with the output layer's bounds optimised over the lower slopes."""
    lower, upper = _box(lower, upper)
    out = crown(net, lower, upper)
    if len(net.layers) == 1:
        return out
    eng = Batched(net, lower, upper)
    import torch

    w, b = eng.layers[-1]
    hidden = eng.crown(eng.lo[None], eng.hi[None])[:-1]
    A = torch.cat([w, -w])[None]
    c = torch.cat([b, -b])[None]
    lb = eng.optimize(hidden, A, c, iters=iters)[0][0].numpy()
    m = w.shape[0]
    lo, hi = pad(lb[:m], -lb[m:])
    out[-1] = (np.maximum(out[-1][0], lo), np.minimum(out[-1][1], hi))
    return out


METHODS = {"interval": interval, "crown": crown, "alpha-crown": alpha_crown}


def compute(net: AffineNet, lower, upper, method: str = "crown"):
    """Bounds on every layer's pre-activation by the named method (see ``METHODS``)."""
    try:
        fn = METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown bound method {method!r}: choose one of {', '.join(METHODS)}"
        ) from None
    return fn(net, lower, upper)


#: a mixed-integer proof needs every margin's bound above this: well clear of the MILP
#: solvers' feasibility tolerances (HiGHS: 1e-7), where PROVE_TOL is for float64 bound
#: arithmetic. The one rule of the milp backend and of the crown backend's MILP handoff
MILP_PROVE_TOL = 1e-6


class BigM:
    """The network's exact mixed-integer encoding (MIPVerify's big-M), as matrices: the
    one encoding behind the ``milp`` backend (through PuLP) and the crown backend's MILP
    handoff (scipy's HiGHS).

    ``hidden`` holds bounds (lo, hi) of every hidden layer's pre-activations, valid on
    the whole box ``[lower, upper]``. A neuron with hi <= 0 is 0 on the box and gets no
    variable; one with lo >= 0 is the identity, ``h = z``; an unstable one gets a
    variable h in [0, hi] and a binary a with

        h >= z,   h <= z - lo (1 - a),   h <= hi a,

    which is exact for a in {0, 1} (triangle-tight for a in [0, 1]).

    Variables: the inputs first (``n_inputs`` of them, bounds the box), then each kept
    neuron's h, each followed by its binary when unstable. ``var_lower``/``var_upper``
    are their bounds and ``integral`` marks the binaries. The constraints are
    ``row_lower <= A @ v <= row_upper`` (A sparse CSR). The output layer's rows are
    ``out @ v + out_bias`` (``out`` CSR, one row per output)."""

    def __init__(self, net: AffineNet, lower, upper, hidden):
        from scipy.sparse import coo_matrix, csr_matrix

        lower = np.asarray(lower, dtype=np.float64).reshape(-1)
        upper = np.asarray(upper, dtype=np.float64).reshape(-1)
        n0 = len(lower)
        var_lo, var_hi, integral = list(lower), list(upper), [0] * n0
        rows, cols, vals, r_lo, r_hi = [], [], [], [], []

        def new_var(low, high, integer=0):
            var_lo.append(low)
            var_hi.append(high)
            integral.append(integer)
            return len(var_lo) - 1

        def add_row(terms, low, high):
            r = len(r_lo)
            for j, v in terms:
                rows.append(r)
                cols.append(j)
                vals.append(v)
            r_lo.append(low)
            r_hi.append(high)

        prev = list(range(n0))  # the variable of each unit of the layer before (None: 0)
        for (w, b), (l_k, u_k) in zip(net.layers[:-1], hidden, strict=True):
            l_k = np.asarray(l_k, dtype=np.float64).reshape(-1)
            u_k = np.asarray(u_k, dtype=np.float64).reshape(-1)
            cur = []
            for i in range(w.shape[0]):
                l_i, u_i, b_i = float(l_k[i]), float(u_k[i]), float(b[i])
                if u_i <= 0:
                    cur.append(None)
                    continue
                minus_z = [
                    (prev[j], -float(w[i, j])) for j in np.flatnonzero(w[i]) if prev[j] is not None
                ]
                h = new_var(max(l_i, 0.0), u_i)
                if l_i >= 0:  # h - w x = b
                    add_row([(h, 1.0), *minus_z], b_i, b_i)
                else:
                    a = new_var(0.0, 1.0, 1)
                    add_row([(h, 1.0), *minus_z], b_i, np.inf)  # h >= z
                    add_row([(h, 1.0), (a, -l_i), *minus_z], -np.inf, b_i - l_i)
                    add_row([(h, 1.0), (a, -u_i)], -np.inf, 0.0)  # h <= u a
                cur.append(h)
            prev = cur
        n = len(var_lo)
        self.n_inputs = n0
        self.var_lower = np.asarray(var_lo, dtype=np.float64)
        self.var_upper = np.asarray(var_hi, dtype=np.float64)
        self.integral = np.asarray(integral, dtype=np.int8)
        self.A = coo_matrix((vals, (rows, cols)), shape=(len(r_lo), n)).tocsr()
        self.row_lower = np.asarray(r_lo, dtype=np.float64)
        self.row_upper = np.asarray(r_hi, dtype=np.float64)
        w, b = net.layers[-1]
        out = np.zeros((w.shape[0], n))
        for j, v in enumerate(prev):
            if v is not None:
                out[:, v] = w[:, j]
        self.out = csr_matrix(out)
        self.out_bias = np.asarray(b, dtype=np.float64).copy()

    @property
    def binaries(self) -> int:
        return int(self.integral.sum())


# --------------------------------------------------------------------------------------
# torch: batches of boxes and of ReLU-split domains
def drop_inactive(net: AffineNet, hidden):
    """The net without its hidden neurons that are off on the whole box, and which it
    kept: ``hidden`` holds valid bounds (lo, hi) of every hidden layer's pre-activations
    over the box (arrays or tensors of shape (n_i,) or (1, n_i)); a neuron with hi <= 0
    outputs 0 at every point of the box, so the net without it (its row of its layer and
    its column of the next) computes the same function there. Returns ``(net, keep)``,
    ``keep[i]`` the indices (numpy) of layer i's neurons kept; ``(net, None)`` when no
    neuron is off, or when every neuron of some layer is (nothing is dropped then)."""
    keep = []
    for _, hi in hidden:
        hi = np.asarray(hi.numpy() if hasattr(hi, "numpy") else hi).reshape(-1)
        keep.append(np.flatnonzero(hi > 0))
    sizes = [w.shape[0] for w, _ in net.layers[:-1]]
    if all(len(k) == n for k, n in zip(keep, sizes, strict=True)) or any(len(k) == 0 for k in keep):
        return net, None
    layers, cols = [], slice(None)
    for i, (w, b) in enumerate(net.layers):
        rows = keep[i] if i < len(keep) else slice(None)
        layers.append((w[rows][:, cols], b[rows]))
        cols = rows
    return AffineNet(layers), keep


class Batched:
    """The same formulas in torch (float64) on batches.

    A *domain* is a box (B, n0) plus, per hidden layer i, ``splits[i]`` (B, n_i) with +1
    (z >= 0 imposed), -1 (z <= 0 imposed) or 0, and optionally the parent's bounds to
    intersect with. ``crown`` bounds every layer of a batch of domains; ``optimize`` lower
    bounds ``A @ h + c`` of the last layer over alpha (and beta when splits are given)."""

    def __init__(self, net: AffineNet, lower, upper):
        import torch

        self.torch = torch
        self.layers = [
            (torch.as_tensor(w, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64))
            for w, b in net.layers
        ]
        self.lo = torch.as_tensor(np.asarray(lower, np.float64))
        self.hi = torch.as_tensor(np.asarray(upper, np.float64))
        self.n_relu = len(self.layers) - 1
        #: precision of the alpha/beta search in ``optimize`` (each bound it returns is
        #: recomputed in float64 with the parameters found, so this choice costs no
        #: soundness; float32 halves the cost of the search's passes)
        self.search_dtype = torch.float32
        #: ``tighten``'s widest product (through the first layer, n0 wide) in float32, with
        #: its round-off bounded (``x_lower32``): sound, looser by a relative ~1e-4
        self.radius32 = True
        self._cast: dict = {}
        self.last_alphas = self.last_betas = None
        #: per hidden layer, the optimised slopes of ``optimized_hidden``'s rows (see tighten)
        self.hidden_alphas = [None] * self.n_relu
        #: the root domain's hidden bounds (``set_root``) and what ``tighten`` keeps of them
        #: to recompute layer 1's bounds from the root's pass (``_layer1_lower``)
        self._root_hidden = None
        self._layer1: dict | None = None

    def set_root(self, root):
        """The root domain's hidden bounds (a batch of one), of which every domain's are a
        subset: ``tighten`` then recomputes layer 1's bounds of a domain from the root's
        backward pass, changed only where the domain's layer-0 relaxation differs from the
        root's (its split first-layer neurons), instead of a pass of its own."""
        if root is not self._root_hidden:
            self._root_hidden, self._layer1 = root, None

    def crown(self, lo, hi, splits=None, parent=None):
        """CROWN bounds of every layer for boxes (B, n0), split neurons clamped and
        intersected with ``parent`` bounds when given. Returns the list of (lo, hi)."""
        torch = self.torch

        def clamp(i, l_i, u_i):
            if parent is not None:
                l_i = torch.maximum(l_i, parent[i][0])
                u_i = torch.minimum(u_i, parent[i][1])
            if splits is not None:
                l_i = torch.where(splits[i] > 0, l_i.clamp(min=0), l_i)
                u_i = torch.where(splits[i] < 0, u_i.clamp(max=0), u_i)
            return l_i, u_i

        with torch.no_grad():
            out, _ = _crown_layers(self.layers, lo, hi, clamp)
        return out

    @staticmethod
    def infeasible(hidden):
        """(B,) bool: some neuron's bounds crossed (an empty domain)."""
        bad = None
        for lo, up in hidden:
            b = (lo > up + INFEASIBLE_TOL).any(dim=-1)
            bad = b if bad is None else bad | b
        return bad

    def optimize(
        self,
        hidden,
        A,
        c,
        iters=20,
        lo=None,
        hi=None,
        splits=None,
        lr_alpha=0.1,
        lr_beta=LR_BETA,
        deadline=None,
        stop_at=PROVE_TOL,
        alpha_init=None,
        beta_init=None,
        lr_beta_new=LR_BETA_NEW,
    ):
        """alpha(-beta)-CROWN lower bounds of ``A @ h_k + c`` (A (B, m, n_k), c (B, m)) given
        the bounds of hidden layers 0..k-1. Rows whose bound is above ``stop_at`` stop
        being pushed; the loop also stops when no open row improved for ``PATIENCE``
        steps. Every iterate is a valid bound (any alpha in [0, 1], any
        beta >= 0), so the best per row is kept. Returns (lb (B, m), x coefficients of the
        best bound (B, m, n0), h coefficients of the last pass). ``alpha_init`` (per hidden
        layer, broadcastable to (B, m, n_i)) warm-starts the slopes, e.g. with the root's
        optimised ones; ``beta_init`` (per hidden layer, (B, m, n_i) or None) the split
        multipliers, e.g. with the parent domain's; a multiplier starting at 0 takes Adam
        steps of ``lr_beta_new``, one starting from another value steps of ``lr_beta``.
        After each call ``self.last_alphas``
        and ``self.last_betas`` hold, per row, the parameters of the best bound found
        (any alpha in [0, 1] and beta >= 0 is valid, so they are a sound warm start)."""
        torch = self.torch
        lo = self.lo if lo is None else lo
        hi = self.hi if hi is None else hi
        k = len(hidden)  # A acts on h_k, the input of layer k
        relax = [relu_relaxation(l_i, torch.maximum(u_i, l_i)) for l_i, u_i in hidden]
        with torch.no_grad():
            lb, Ax, kept = backward(self.layers, relax, k, A, c, lo, hi)
        best, best_A = lb.clone(), Ax.clone()
        self.last_alphas = self.last_betas = None
        if iters <= 0 or k == 0 or bool((lb > stop_at).all()):
            return best, best_A, kept
        m = A.shape[-2]
        # the search runs in ``search_dtype``; its iterates only choose parameters
        dt = self.search_dtype
        cast = self._cast_layers(dt)
        relax_s = [tuple(t.to(dt) if t.is_floating_point() else t for t in r) for r in relax]
        A_s, c_s, lo_s, hi_s = (t.to(dt) for t in (A, c, lo, hi))
        alphas = [
            (r[0][..., None, :] if alpha_init is None else alpha_init[i])
            .expand(*r[0].shape[:-1], m, r[0].shape[-1])
            .to(dt)
            .clone()
            .requires_grad_()
            for i, r in enumerate(relax)
        ]
        has_split = [bool((s != 0).any()) for s in splits] if splits is not None else []
        betas = None
        params, lrs = list(alphas), [lr_alpha] * len(alphas)
        if any(has_split):
            betas = [
                (
                    (
                        torch.zeros_like(alphas[i])
                        if beta_init is None or beta_init[i] is None
                        else beta_init[i].to(dt).expand_as(alphas[i]).clone()
                    ).requires_grad_()
                    if has
                    else None
                )
                for i, has in enumerate(has_split)
            ]
            params += [b for b in betas if b is not None]
            # per multiplier: big steps from 0 (new splits), small ones from a parent's value
            lrs += [
                torch.where(b.detach() == 0, lr_beta_new, lr_beta) for b in betas if b is not None
            ]
            splits = [s.to(torch.float64) for s in splits]
        splits_s = None if betas is None else [s.to(dt) for s in splits]
        # Adam by hand: torch.optim's first use costs seconds of imports per job
        keep = [q.detach().clone() for q in params]  # per row, the best bound's parameters
        m1 = [torch.zeros_like(q) for q in params]
        m2 = [torch.zeros_like(q) for q in params]
        last, stall = -float("inf"), 0
        best_s = best.to(dt)
        for step in range(1, iters + 1):
            if deadline is not None and time.perf_counter() > deadline:
                break
            lb, _, _ = backward(cast, relax_s, k, A_s, c_s, lo_s, hi_s, alphas, betas, splits_s)
            with torch.no_grad():
                better = lb > best_s
                best_s = torch.where(better, lb, best_s)
                for q, kq in zip(params, keep, strict=True):
                    kq.copy_(torch.where(better.unsqueeze(-1), q, kq))
            open_ = best_s <= stop_at
            if not bool(open_.any()):
                break
            score = float(best_s.clamp(max=1.0).sum())
            if score > last + 1e-7 * (1 + abs(last)):
                last, stall = score, 0
            else:
                stall += 1
                if stall >= PATIENCE:
                    break
            # push up the bounds that are not yet proven
            loss = -(lb.clamp(max=1.0) * open_).sum()
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for q, g, a1, a2, lr in zip(params, grads, m1, m2, lrs, strict=True):
                    a1.mul_(0.9).add_(g, alpha=0.1)
                    a2.mul_(0.999).addcmul_(g, g, value=0.001)
                    den = (a2 / (1 - 0.999**step)).sqrt_().add_(1e-8)
                    if isinstance(lr, float):
                        q.addcdiv_(a1, den, value=-lr / (1 - 0.9**step))
                    else:  # a step size per entry
                        q.sub_(lr * a1 / den / (1 - 0.9**step))
                for a in alphas:
                    a.clamp_(0.0, 1.0)
                for b in betas or ():
                    if b is not None:
                        b.clamp_(min=0.0)
        # the bound returned is the float64 pass with the best parameters found (any
        # alpha in [0, 1] and beta >= 0 gives a valid bound), or the plain pass's if higher
        keep = [q.to(torch.float64) for q in keep]
        self.last_alphas = keep[: len(alphas)]
        if betas is not None:
            it = iter(keep[len(alphas) :])
            self.last_betas = [next(it) if b is not None else None for b in betas]
        with torch.no_grad():
            lb, Ax, kept = backward(
                self.layers, relax, k, A, c, lo, hi, self.last_alphas, self.last_betas, splits
            )
        better = lb > best
        best = torch.where(better, lb, best)
        best_A = torch.where(better.unsqueeze(-1), Ax, best_A)
        return best, best_A, kept

    def _w0_32(self):
        """The first layer's weights in float32 for ``x_lower32``, or None when torch's
        float32 products may run in a lower precision (``set_float32_matmul_precision``
        other than "highest"), which its round-off bound does not cover, or when
        ``radius32`` is off."""
        if not self.radius32 or self.torch.get_float32_matmul_precision() != "highest":
            return None
        return self._cast_layers(self.torch.float32)[0][0]

    def _cast_layers(self, dtype):
        """The layers in ``dtype`` (cached)."""
        if dtype == self.torch.float64:
            return self.layers
        if dtype not in self._cast:
            self._cast[dtype] = [(w.to(dtype), b.to(dtype)) for w, b in self.layers]
        return self._cast[dtype]

    def optimized_hidden(self, lo, hi, iters=20, deadline=None, base=None):
        """Bounds of every hidden layer for boxes (B, n0): CROWN (or ``base``, CROWN's
        hidden bounds of these boxes when already computed), then for layers >= 1 the
        unstable neurons' lower and upper bounds optimised over their own alphas
        (alpha-CROWN for intermediate layers), each layer using the tightened ones before
        it. Returns the list of (lo, hi)."""
        torch = self.torch
        if base is None:
            base = self.crown(lo, hi)[:-1]
        self.hidden_alphas = [None] * len(base)
        hidden = []
        B = lo.shape[0]
        for k, (l_k, u_k) in enumerate(base):
            unstable = ((l_k < 0) & (u_k > 0)).any(dim=0)
            if k > 0 and bool(unstable.any()):
                if deadline is not None and time.perf_counter() > deadline:
                    hidden += base[k:]
                    break
                idx = unstable.nonzero().flatten()
                w, b = self.layers[k]
                A = torch.cat([w[idx], -w[idx]]).expand(B, -1, -1)
                c = torch.cat([b[idx], -b[idx]]).expand(B, -1)
                lb, _, _ = self.optimize(
                    hidden, A, c, iters=iters, lo=lo, hi=hi, deadline=deadline, stop_at=0.0
                )
                n = len(idx)
                if self.last_alphas is not None:
                    lookup = torch.full((w.shape[0],), -1, dtype=torch.long)
                    lookup[idx] = torch.arange(n)
                    self.hidden_alphas[k] = (self.last_alphas, lookup, n)
                new_lo, new_hi = pad(lb[:, :n], -lb[:, n:])
                l_k, u_k = l_k.clone(), u_k.clone()
                l_k[:, idx] = torch.maximum(l_k[:, idx], new_lo)
                u_k[:, idx] = torch.minimum(u_k[:, idx], new_hi)
            hidden.append((l_k, u_k))
        return hidden

    def tighten(self, lo, hi, hidden, alphas=None, deadline=None, after=None):
        """Recompute, for a batch of domains with hidden bounds ``hidden`` (split neurons
        already clamped), the bounds of the neurons of layers >= 1 that are unstable in
        some domain, by one CROWN backward pass each (lower and upper), and intersect
        them with the given ones; each layer uses the tightened layers before it. This
        carries a split's effect into the later layers' bounds (which ``clamp_splits``
        alone does not). ``alphas[k]`` optional lower slopes (per hidden layer i < k,
        broadcastable to (B, 2 u_k, n_i)) of layer k's rows, e.g. ``root_alphas`` from
        ``optimized_hidden``. Past ``deadline`` the remaining layers keep the given bounds
        (still valid). ``after`` (B,) optional: domain d's layers up to ``after[d]`` keep
        their given bounds (a child's layers up to its new split are its parent's, which
        were tightened already: recomputing them gives the same bounds). Returns the new
        list of (lo, hi)."""
        torch = self.torch
        B = lo.shape[0]
        out = [hidden[0]]
        relax = [relu_relaxation(hidden[0][0], torch.maximum(hidden[0][1], hidden[0][0]))]
        for k in range(1, len(hidden)):
            l_k, u_k = hidden[k]
            rows = None if after is None else (after < k).nonzero().flatten()
            sub_l, sub_u = (l_k, u_k) if rows is None else (l_k[rows], u_k[rows])
            idx = ((sub_l < 0) & (sub_u > 0)).any(dim=0).nonzero().flatten()
            if deadline is not None and time.perf_counter() > deadline:
                idx = idx[:0]
            lb = None
            if len(idx):
                sub_lo, sub_hi = (lo, hi) if rows is None else (lo[rows], hi[rows])
                if k == 1:  # from the root's pass (None when it does not apply)
                    h0 = hidden[0] if rows is None else tuple(t[rows] for t in hidden[0])
                    al_1 = None if alphas is None else alphas[1]
                    with torch.no_grad():
                        lb = self._layer1_lower(idx, h0, sub_lo, sub_hi, al_1)
            if lb is None and len(idx):
                w, b = self.layers[k]
                n_rows = B if rows is None else len(rows)
                A = torch.cat([w[idx], -w[idx]]).expand(n_rows, -1, -1)
                c = torch.cat([b[idx], -b[idx]]).expand(n_rows, -1)
                al = None
                if alphas is not None and alphas[k] is not None:
                    al = self._rows(alphas[k], idx)
                sub_relax = relax if rows is None else [tuple(t[rows] for t in r) for r in relax]
                with torch.no_grad():
                    lb, _, _ = backward(
                        self.layers, sub_relax, k, A, c, sub_lo, sub_hi, al, w0_32=self._w0_32()
                    )
            if len(idx):
                n = len(idx)
                new_lo, new_hi = pad(lb[:, :n], -lb[:, n:])
                sub_l = torch.maximum(sub_l[:, idx], new_lo)
                sub_u = torch.minimum(sub_u[:, idx], new_hi)
                l_k, u_k = l_k.clone(), u_k.clone()
                if rows is None:
                    l_k[:, idx], u_k[:, idx] = sub_l, sub_u
                else:
                    grid = (rows[:, None], idx[None, :])
                    l_k[grid], u_k[grid] = sub_l, sub_u
            out.append((l_k, u_k))
            relax.append(relu_relaxation(l_k, torch.maximum(u_k, l_k)))
        return out

    #: domains per chunk of ``_layer1_lower`` (its coefficients are chunk x rows x n0)
    LAYER1_CHUNK = 8

    def _layer1_terms(self, A, alpha, l0, u0, b0):
        """Per row r of coefficients ``A`` (..., R, D) on first-layer neurons with bounds
        ``l0``/``u0`` (..., D) and lower slopes ``alpha`` (..., R, D) of the unstable ones
        (None: CROWN's adaptive slope) and biases ``b0`` (..., D): each neuron's
        coefficient on its pre-activation and its constant term (upper intercept plus
        bias), as ``backward`` takes ``A`` through the first ReLU and the first layer."""
        torch = self.torch
        sl, su, tu, unstable = relu_relaxation(l0, torch.maximum(u0, l0))
        sl = sl[..., None, :]
        if alpha is not None:
            sl = torch.where(unstable[..., None, :], alpha, sl)
        coef, an = through_relu(A, sl, su[..., None, :])
        return coef, an * tu[..., None, :] + coef * b0[..., None, :]

    def _layer1_lower(self, idx, h0, lo, hi, alphas_1):
        """``tighten``'s lower bounds (B, 2 len(idx)) of layer 1's neurons ``idx`` (lower
        rows, then upper rows), from the root's backward pass (``set_root``): a domain's
        pass differs from the root's only in the first-layer neurons whose bounds in
        ``h0`` differ from the root's (the split ones), so its coefficients on x are the
        root's plus those neurons' changed coefficients times their rows of the first
        layer's weights: O(rows x changed x n0) per domain instead of a pass through
        (rows x n1 x n0). The same bound as ``backward``'s up to round-off (covered by
        ``pad``). None when there is no root or a neuron is not unstable at the root."""
        torch = self.torch
        if self._root_hidden is None or len(self._root_hidden) < 2:
            return None
        cache = self._layer1
        if cache is None or cache["alphas"] is not alphas_1:
            cache = self._layer1 = self._layer1_root(alphas_1)
        pos = cache["lookup"][idx]
        if bool((pos < 0).any()):
            return None
        rows = torch_cat_rows(pos, cache["u"])
        A, X, const = cache["A"][rows], cache["X"][rows], cache["const"][rows]
        alpha = None if cache["alpha"] is None else cache["alpha"][rows]
        coef0, term0 = cache["coef"][rows], cache["term"][rows]
        l_root, u_root = cache["l0"], cache["u0"]
        w0, b0 = self.layers[0]
        w32 = self._w0_32()
        if w32 is not None:
            if "X32" not in cache:
                cache["X32"], cache["Xabs"] = cache["X"].to(torch.float32), cache["X"].abs()
            X32, Xabs = cache["X32"][rows], cache["Xabs"][rows]
        out = []
        for s in range(0, lo.shape[0], self.LAYER1_CHUNK):
            l0, u0 = (t[s : s + self.LAYER1_CHUNK] for t in h0)
            changed = (l0 != l_root) | (u0 != u_root)  # (b, n1)
            width = int(changed.sum(dim=1).max()) if changed.numel() else 0
            x_lo, x_hi = lo[s : s + self.LAYER1_CHUNK], hi[s : s + self.LAYER1_CHUNK]
            if width == 0:
                lb = box_min(X, x_lo[:, None, :], x_hi[:, None, :], const)
                out.append(lb)
                continue
            # the changed neurons of each domain, padded with unchanged ones (masked)
            cols = changed.to(torch.int8).argsort(dim=1, descending=True, stable=True)
            cols = cols[:, :width]  # (b, D)
            valid = changed.gather(1, cols)[:, None, :]  # (b, 1, D)
            new_coef, new_term = self._layer1_terms(
                A[:, cols].permute(1, 0, 2),
                None if alpha is None else alpha[:, cols].permute(1, 0, 2),
                l0.gather(1, cols),
                u0.gather(1, cols),
                b0[cols],
            )
            d_coef = (new_coef - coef0[:, cols].permute(1, 0, 2)) * valid
            d_term = (new_term - term0[:, cols].permute(1, 0, 2)) * valid
            # box_min of the coefficients X + d_coef @ w_j: the centre's term through the
            # few changed rows, the radius's over the whole (b, R, n0) coefficients, built
            # and made absolute in place (the pass's cost is in these passes over memory)
            w_j = w0[cols]  # (b, D, n0)
            mid, rad = ((x_hi + x_lo) / 2)[:, :, None], ((x_hi - x_lo) / 2)[:, :, None]
            centre = (X @ mid)[..., 0] + (d_coef @ (w_j @ mid))[..., 0]
            if w32 is None:
                spread = torch.baddbmm(X.expand(len(l0), -1, -1), d_coef, w_j).abs_()
                radius = (spread @ rad)[..., 0]
            else:
                radius = self._layer1_radius32(X32, Xabs, d_coef, w_j, w32[cols], rad)
            out.append(const + d_term.sum(-1) + centre - radius)
        return torch.cat(out)

    def _layer1_radius32(self, X32, Xabs, d_coef, w_j, w32_j, rad):
        """``_layer1_lower``'s radius term ``|X + d_coef @ w_j| @ rad`` (X the root's
        coefficients on x, (R, n0), given in float32 and as |X| in float64; d_coef
        (b, R, D); w_j (b, D, n0), w32_j in float32; rad (b, n0, 1)),
        its product and the sum over x in float32, made an upper bound of the exact
        value as in ``x_lower32``: rounding X, d_coef and w_j to float32 and the (D + 1)-term
        sums err entrywise by at most ``2 (D + 5) u (|X| + |d_coef| @ |w_j|)``, and the
        n0-term sum of ``|P| rad32`` by at most ``2 (n0 + 4) u`` of itself; the two
        corrections are cheap (no D x n0 product per row)."""
        torch = self.torch
        b, _, D = d_coef.shape
        n0 = w_j.shape[-1]
        P = torch.baddbmm(X32.expand(b, -1, -1), d_coef.to(torch.float32), w32_j)
        s = (P.abs_() @ up32(rad)).to(torch.float64)[..., 0]
        slack = (Xabs @ rad)[..., 0] + (d_coef.abs() @ (w_j.abs() @ rad))[..., 0]
        radius = s * (1 + 2 * (n0 + 4) * U32) + 2 * (D + 5) * U32 * slack + TINY32
        return torch.where(torch.isfinite(radius), radius, torch.inf)

    def _layer1_root(self, alphas_1):
        """What ``_layer1_lower`` keeps of the root's pass for the neurons of layer 1 that
        are unstable at the root: their rows' coefficients on the first ReLU's outputs
        (``A``), the slopes (``alpha``), each first-layer neuron's coefficient and
        constant term per row, the coefficients on x (``X``) and the constants."""
        torch = self.torch
        (l0, u0), (l1, u1) = self._root_hidden[0], self._root_hidden[1]
        unst = ((l1 < 0) & (u1 > 0)).any(dim=0).nonzero().flatten()
        w0, (w1, b1) = self.layers[0][0], self.layers[1]
        u = len(unst)
        lookup = torch.full((w1.shape[0],), -1, dtype=torch.long)
        lookup[unst] = torch.arange(u)
        A = torch.cat([w1[unst], -w1[unst]])  # (R, n1)
        alpha = None
        if alphas_1 is not None:
            alpha = self._rows(alphas_1, unst)[0][0]
        cache = {"alphas": alphas_1, "lookup": lookup, "u": u, "A": A, "alpha": alpha}
        cache.update(l0=l0[0], u0=u0[0])
        with torch.no_grad():
            coef, term = self._layer1_terms(A, alpha, l0[0], u0[0], self.layers[0][1])
        cache.update(coef=coef, term=term, X=coef @ w0)
        cache["const"] = torch.cat([b1[unst], -b1[unst]]) + term.sum(-1)
        return cache

    @staticmethod
    def _rows(alphas_k, idx):
        """Layer k's kept slopes ``(alphas, lookup, u)`` (``alphas[i]`` (1, 2 u, n_i): the
        lower-bound rows of u neurons, then their upper-bound rows; ``lookup`` neuron ->
        row) restricted to the neurons ``idx``, lower rows then upper rows."""
        alphas, lookup, u = alphas_k
        pos = lookup[idx]
        rows = torch_cat_rows(pos, u)
        return [a[:, rows] for a in alphas]

    def clamp_splits(self, parent, splits):
        """The parent's hidden bounds with split neurons clamped (z >= 0: l = max(l, 0);
        z <= 0: u = min(u, 0)), without recomputing them: beta carries the split's effect
        on the output bound."""
        torch = self.torch
        out = []
        for (l_i, u_i), s in zip(parent, splits, strict=True):
            out.append(
                (
                    torch.where(s > 0, l_i.clamp(min=0), l_i),
                    torch.where(s < 0, u_i.clamp(max=0), u_i),
                )
            )
        return out

    def margins_fixed(self, lo, hi, hidden, splits, alphas=None, betas=None, dtype=None):
        """Lower bounds (B, m) of the output layer for domains with the given hidden
        bounds, slopes and split multipliers, not optimised: one batched backward pass
        (e.g. to score branching candidates by their children's bounds). ``dtype``: the
        precision of the pass (float64 when None; a lower one only for heuristics)."""
        return self.fixed_pass(lo, hi, hidden, splits, alphas, betas, dtype)[0]

    def fixed_pass(self, lo, hi, hidden, splits, alphas=None, betas=None, dtype=None):
        """``margins_fixed``'s pass, with what ``first_layer_children`` needs: returns
        (lb (B, m), x coefficients (B, m, n0), coefficients on each hidden layer's
        post-activations (``backward``'s kept), the first hidden layer's relaxation)."""
        torch = self.torch
        dt = torch.float64 if dtype is None else dtype

        def to(ts):
            return None if ts is None else [None if t is None else t.to(dt) for t in ts]

        layers = self._cast_layers(dt)
        w, b = layers[-1]
        B = lo.shape[0]
        relax = [relu_relaxation(l_i.to(dt), torch.maximum(u_i, l_i).to(dt)) for l_i, u_i in hidden]
        sp = to(splits) if betas is not None else None
        with torch.no_grad():
            lb, Ax, kept = backward(
                layers,
                relax,
                len(hidden),
                w.expand(B, *w.shape),
                b.expand(B, *b.shape),
                lo.to(dt),
                hi.to(dt),
                to(alphas),
                to(betas),
                sp,
            )
        return lb, Ax, kept, relax[0] if relax else None

    def first_layer_children(self, parent_pass, alphas, betas, rows, neurons):
        """``margins_fixed`` of the two children of splitting first-hidden-layer neuron
        ``neurons[c]`` of domain ``rows[c]`` (z >= 0, then z <= 0), computed from the
        domains' own ``fixed_pass`` over this engine's box (``parent_pass``, with the same
        slopes ``alphas`` and multipliers ``betas``). A child differs from its domain only
        in that neuron's relaxation, whose coefficient reaches x through one row of the
        first layer's weights: each child costs O(m n0) instead of a pass through every
        layer. Returns (2 C, m): candidate c's children in rows 2c and 2c + 1, the order
        of ``margins_fixed`` on the stacked children."""
        lb, Ax, kept, (sl, su, tu, _) = parent_pass
        dt = lb.dtype
        w0, b0 = self._cast_layers(dt)[0]
        lo, hi = self.lo.to(dt), self.hi.to(dt)
        a = kept[0][rows, :, neurons]  # (C, m): coefficients on the neuron's output
        slope = sl[rows, neurons][:, None]
        if alphas is not None and alphas[0] is not None:
            slope = alphas[0][rows, :, neurons].to(dt)  # unstable: its alpha, per row
        beta = 0.0
        if betas is not None and betas[0] is not None:
            beta = betas[0][rows, :, neurons].to(dt)
        w_j, b_j = w0[neurons][:, None, :], b0[neurons][:, None]
        Ax = Ax[rows]
        # the domain's relaxation of the neuron (unsplit: no beta)
        coef, an = through_relu(a, slope, su[rows, neurons][:, None])
        base = lb[rows] - an * tu[rows, neurons][:, None] - coef * b_j - box_min(Ax, lo, hi)
        children = []
        for child in (a - beta, beta + 0.0 * a):  # z >= 0: identity; z <= 0: zero (+ beta)
            x_term = box_min(Ax + (child - coef)[..., None] * w_j, lo, hi)
            children.append(base + child * b_j + x_term)
        return self.torch.stack(children, dim=1).reshape(-1, lb.shape[1])

    def margins_lower(
        self,
        lo,
        hi,
        splits=None,
        parent=None,
        iters=0,
        deadline=None,
        inherit=False,
        alpha_init=None,
        beta_init=None,
        refine=False,
        refine_after=None,
        lr_beta=LR_BETA,
        lr_beta_new=LR_BETA_NEW,
    ):
        """Lower bounds (B, m) of the output layer for a batch of domains, with the hidden
        bounds used and the x coefficients: (lb, Ax, kept, hidden, infeasible). The hidden
        bounds are recomputed by CROWN (intersected with ``parent``), or with ``inherit``
        taken from ``parent`` with the splits clamped (much cheaper on wide layers), and with
        ``refine`` then tightened by ``tighten`` (with ``hidden_alphas``; ``refine_after``
        is its ``after``). ``lr_beta``, ``lr_beta_new``: ``optimize``'s step sizes of the
        split multipliers."""
        torch = self.torch
        if not self.n_relu:
            hidden = []
        elif inherit and parent is not None:
            hidden = self.clamp_splits(parent, splits)
            if refine:
                hidden = self.tighten(
                    lo, hi, hidden, self.hidden_alphas, deadline, after=refine_after
                )
        else:
            hidden = self.crown(lo, hi, splits, parent)[:-1]
        w, b = self.layers[-1]
        B = lo.shape[0]
        A = w.expand(B, *w.shape)
        c = b.expand(B, *b.shape)
        lb, Ax, kept = self.optimize(
            hidden,
            A,
            c,
            iters=iters,
            lo=lo,
            hi=hi,
            splits=splits,
            deadline=deadline,
            alpha_init=alpha_init,
            beta_init=beta_init,
            lr_beta=lr_beta,
            lr_beta_new=lr_beta_new,
        )
        bad = self.infeasible(hidden) if hidden else torch.zeros(B, dtype=torch.bool)
        return lb, Ax, kept, hidden, bad
