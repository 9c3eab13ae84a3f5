"""Perturbation families. Magnitudes are in 8-bit units: k means k/255 (written eps).

- ``linf``: every pixel moves on its own, |x' - x| <= eps, clipped to [0, 1].
  Parameters: the image itself (one per pixel).
- ``brightness``: x' = clip(x + beta, 0, 1) with one beta in [-eps, eps].
- ``contrast``: x' = clip(m + alpha (x - m), 0, 1), m the mean of the original image,
  alpha in [1 - s eps, 1 + s eps] with s = CONTRAST_SCALE = 4, so k = 4 is a
  +-6% and k = 16 a +-25% contrast change (a window-width change a reader would
  consider routine).
- ``brightness_contrast``: x' = clip(alpha (x - m) + m + beta, 0, 1), exposure and gain
  changing together: alpha as in ``contrast``, beta as in ``brightness``.
- ``window``: the display window of radiology, x' = clip((x - c) / w + 1/2, 0, 1) with
  level c and width w around the identity window (c = 1/2, w = 1). Parameters are the
  gain g = 1/w in [1 / (1 + s eps), 1 + s eps] (the width grows or shrinks by a factor
  of up to 1 + s eps, s = CONTRAST_SCALE) and the level offset in display units
  d = (c - 1/2) / w in [-eps, eps], so x' = clip(g (x - 1/2) + 1/2 - d, 0, 1) is affine
  in (g, d). Unlike ``brightness_contrast`` the gain pivots on mid-grey 1/2, not on the
  image mean, and it never reaches zero or inverts the image.
- ``bias_field``: x' = clip(x (1 + sum_i c_i phi_i), 0, 1), a smooth multiplicative
  intensity inhomogeneity (MRI bias field, uneven illumination in dermoscopy). phi are
  the six 2-D polynomials of degree <= 2 in pixel coordinates u, v in [-1, 1] (column,
  row): 1, u, v, u^2, u v, v^2, the same field on every channel; every |c_i| <= eps, so
  the relative gain of one pixel moves by at most 6 eps (at the corners) and by at most
  eps at the centre (only c_0 acts there).

Each family knows its parameter box, its prefix (parameters -> pre-clip image, an
affine map z = W p + b; the clip is relu(z) - relu(z - 1)), how to apply parameters,
membership of a candidate image, and sampling for attacks. A structured family is
verified as a box over its few parameters, never through the enclosing L-infinity ball.
``compose`` builds the prefix in front of the classifier, leaving out every clip ReLU the
parameter box cannot reach (see ``prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bounds import interval_layers
from .errors import ConfigError

CONTRAST_SCALE = 4.0
TOLERANCE = 1e-6


class Family:
    name: str = ""
    #: False when the parameters are the pixels themselves (linf)
    structured: bool = True
    #: number of parameters (None: one per pixel); ``exact`` handles the 1-parameter ones
    parameters: int | None = 1
    #: parameter names, in order (for counterexample records)
    parameter_names: tuple[str, ...] = ()

    def __init__(self, image: np.ndarray, magnitude_k: float):
        try:
            k = float(magnitude_k)
        except (TypeError, ValueError):
            k = float("nan")
        if not np.isfinite(k) or k < 0:
            raise ConfigError(f"magnitude must be a finite k >= 0 (k/255), got {magnitude_k!r}")
        self.image = np.asarray(image, dtype=np.float64).reshape(-1)
        self.shape = tuple(np.shape(image))
        self.k = k
        self.eps = self.k / 255.0

    # --- to be provided by each family -------------------------------------------
    def box(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def affine(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(W, b) with pre-clip image z = W p + b; None when parameters are the image."""
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return len(self.box()[0])

    def apply(self, params: np.ndarray) -> np.ndarray:
        """Parameters (n,) or (batch, n) -> flattened image(s) in [0, 1], float64."""
        p = np.asarray(params, dtype=np.float64)
        aff = self.affine()
        if aff is None:
            return np.clip(p, 0.0, 1.0)
        w, b = aff
        z = p @ w.T + b
        return np.clip(z, 0.0, 1.0)

    def apply_torch(self, params):
        """Torch version of ``apply`` for batched attacks: (batch, n) -> (batch, pixels)."""
        import torch

        aff = self.affine()
        if aff is None:
            return params.clamp(0.0, 1.0)
        w, b = (torch.as_tensor(a, dtype=params.dtype) for a in aff)
        return (params @ w.T + b).clamp(0.0, 1.0)

    def in_box(self, params: np.ndarray, tol: float = TOLERANCE) -> bool:
        lo, hi = self.box()
        p = np.asarray(params, dtype=np.float64).reshape(-1)
        return p.shape == lo.shape and bool(np.all(p >= lo - tol) and np.all(p <= hi + tol))

    def contains(
        self, candidate: np.ndarray, params: np.ndarray | None = None, tol: float = TOLERANCE
    ) -> bool:
        """Is ``candidate`` (an image) in the set? ``params`` are the family parameters
        that should produce it; when None they are inferred from the image."""
        c = np.asarray(candidate, dtype=np.float64).reshape(-1)
        if c.shape != self.image.shape or not np.all(np.isfinite(c)):
            return False
        if params is None:
            params = self.infer_params(c)
        if params is None or not self.in_box(params, tol):
            return False
        return bool(np.max(np.abs(self.apply(np.asarray(params).reshape(-1)) - c)) <= tol)

    def infer_params(self, candidate: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n parameter vectors: the box corners first, then uniform draws."""
        lo, hi = self.box()
        corners = [lo, hi] if n >= 2 else [lo]
        draws = rng.uniform(lo, hi, size=(max(n - len(corners), 0), len(lo)))
        return np.vstack([np.array(corners), draws])[:n]

    def describe(self, params: np.ndarray) -> dict:
        """Family parameters to store with a counterexample (empty for linf)."""
        p = np.asarray(params, dtype=np.float64).reshape(-1)
        return {name: float(v) for name, v in zip(self.parameter_names, p, strict=True)}

    def nominal(self) -> np.ndarray:
        """The parameters that give the unperturbed image."""
        raise NotImplementedError

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        """The two ends of the set shown as examples (-k, +k): the lower and upper corner
        of the parameter box."""
        return self.box()

    def _fit(self, candidate: np.ndarray) -> np.ndarray | None:
        """Parameters in the box whose image is nearest to ``candidate`` in max-norm
        (a linear program: pixels at 0 or 1 only need z <= 0 or z >= 1), or None when the
        LP fails. Exact membership for any structured family, also when there are more
        parameters than unclipped pixels."""
        from scipy.optimize import linprog

        w, b = self.affine()
        lo, hi = self.box()
        n = len(lo)
        low, high = candidate <= TOLERANCE, candidate >= 1 - TOLERANCE
        # variables (p, t); minimise t; rows: z - c <= t (not at 1), c - z <= t (not at 0)
        up, down = ~high, ~low
        a = np.vstack(
            [
                np.hstack([w[up], -np.ones((up.sum(), 1))]),
                np.hstack([-w[down], -np.ones((down.sum(), 1))]),
            ]
        )
        rhs = np.concatenate([candidate[up] - b[up], b[down] - candidate[down]])
        res = linprog(
            np.r_[np.zeros(n), 1.0],
            A_ub=a,
            b_ub=rhs,
            bounds=list(zip(lo, hi, strict=True)) + [(0, None)],
            method="highs",
        )
        return res.x[:n] if res.status == 0 else None


class Linf(Family):
    name = "linf"
    structured = False
    parameters = None

    def ends(self):
        """Seeded sign noise: x -+ eps sign(noise), clipped (corners of the ball)."""
        sign = np.sign(np.random.default_rng(0).standard_normal(self.image.shape))
        return self.image - self.eps * sign, self.image + self.eps * sign

    def describe(self, params):
        return {}

    def box(self):
        return np.clip(self.image - self.eps, 0, 1), np.clip(self.image + self.eps, 0, 1)

    def affine(self):
        return None

    def infer_params(self, candidate):
        return candidate


class Brightness(Family):
    name = "brightness"
    parameter_names = ("beta",)

    def nominal(self):
        return np.array([0.0])

    def box(self):
        return np.array([-self.eps]), np.array([self.eps])

    def affine(self):
        return np.ones((self.image.size, 1)), self.image.copy()

    def infer_params(self, candidate):
        inside = (candidate > TOLERANCE) & (candidate < 1 - TOLERANCE)
        if not inside.any():
            # every pixel clipped: beta must push the 0-pixels to <= 0 and the 1-pixels to
            # >= 1; take the feasible beta (within the box) nearest to 0
            lo, hi = self.box()
            at_one = candidate >= 1 - TOLERANCE
            at_zero = candidate <= TOLERANCE
            least = max(lo[0], float(np.max(1.0 - self.image[at_one], initial=-np.inf)))
            most = min(hi[0], float(np.min(-self.image[at_zero], initial=np.inf)))
            if least > most:
                return np.array([least if abs(least) < abs(most) else most])
            return np.array([min(max(0.0, least), most)])
        return np.array([float(np.median(candidate[inside] - self.image[inside]))])


class Contrast(Family):
    name = "contrast"
    parameter_names = ("alpha",)

    def nominal(self):
        return np.array([1.0])

    def __init__(self, image, magnitude_k):
        super().__init__(image, magnitude_k)
        self.mean = float(self.image.mean())

    def box(self):
        d = CONTRAST_SCALE * self.eps
        return np.array([1.0 - d]), np.array([1.0 + d])

    def affine(self):
        return (self.image - self.mean)[:, None], np.full(self.image.size, self.mean)

    def infer_params(self, candidate):
        dev = self.image - self.mean
        inside = (candidate > TOLERANCE) & (candidate < 1 - TOLERANCE) & (np.abs(dev) > 1e-9)
        if not inside.any():
            return np.array([1.0])
        alpha = np.dot(candidate[inside] - self.mean, dev[inside]) / np.dot(
            dev[inside], dev[inside]
        )
        return np.array([float(alpha)])


class BrightnessContrast(Family):
    name = "brightness_contrast"
    parameters = 2
    parameter_names = ("alpha", "beta")

    def __init__(self, image, magnitude_k):
        super().__init__(image, magnitude_k)
        self.mean = float(self.image.mean())

    def box(self):
        d = CONTRAST_SCALE * self.eps
        return np.array([1.0 - d, -self.eps]), np.array([1.0 + d, self.eps])

    def affine(self):
        w = np.stack([self.image - self.mean, np.ones(self.image.size)], axis=1)
        return w, np.full(self.image.size, self.mean)

    def nominal(self):
        return np.array([1.0, 0.0])

    def infer_params(self, candidate):
        return self._fit(candidate)


class Window(Family):
    name = "window"
    parameters = 2
    parameter_names = ("gain", "level_offset")

    def box(self):
        top = 1.0 + CONTRAST_SCALE * self.eps
        return np.array([1.0 / top, -self.eps]), np.array([top, self.eps])

    def affine(self):
        w = np.stack([self.image - 0.5, -np.ones(self.image.size)], axis=1)
        return w, np.full(self.image.size, 0.5)

    def nominal(self):
        return np.array([1.0, 0.0])

    def infer_params(self, candidate):
        return self._fit(candidate)

    def describe(self, params):
        g, d = (float(v) for v in np.asarray(params, dtype=np.float64).reshape(-1))
        out = super().describe(params)
        out.update(width=1.0 / g, level=0.5 + d / g)
        return out


def bias_basis(shape) -> np.ndarray:
    """(pixels, 6): the polynomials 1, u, v, u^2, u v, v^2 at every pixel of an image of
    ``shape`` ((H, W) or (C, H, W), channel-first, flattened in C order), u the column and
    v the row coordinate scaled to [-1, 1]; every channel gets the same field."""
    shape = tuple(shape)
    h, w = (shape[-2], shape[-1]) if len(shape) >= 2 else (1, int(np.prod(shape)))
    channels = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    v, u = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)
    phi = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)
    return np.tile(phi, (channels, 1))


class BiasField(Family):
    name = "bias_field"
    parameters = 6
    parameter_names = ("c_1", "c_u", "c_v", "c_uu", "c_uv", "c_vv")

    def __init__(self, image, magnitude_k):
        super().__init__(image, magnitude_k)
        self.basis = bias_basis(self.shape)

    def box(self):
        return np.full(6, -self.eps), np.full(6, self.eps)

    def affine(self):
        return self.image[:, None] * self.basis, self.image.copy()

    def nominal(self):
        return np.zeros(6)

    def infer_params(self, candidate):
        return self._fit(candidate)

    def ends(self):
        """A field that darkens towards one corner and one that brightens towards it:
        the signs follow each polynomial's value at the top-left corner (u = v = -1), so
        the -k end multiplies that corner by 1 - 6 eps and the +k end by 1 + 6 eps."""
        corner = np.sign(self.basis[0])
        return -self.eps * corner, self.eps * corner


class Box(Linf):
    """An explicit per-pixel box (e.g. from a VNNLIB file); parameters are the image."""

    name = "box"

    def __init__(self, lower: np.ndarray, upper: np.ndarray):
        lower = np.asarray(lower, dtype=np.float64).reshape(-1)
        upper = np.asarray(upper, dtype=np.float64).reshape(-1)
        if lower.shape != upper.shape or np.any(lower > upper):
            raise ConfigError("box needs lower <= upper of equal shape")
        super().__init__((lower + upper) / 2, 0.0)
        self.lower, self.upper = lower, upper

    def box(self):
        return self.lower.copy(), self.upper.copy()

    def apply(self, params):
        return np.asarray(params, dtype=np.float64)

    def apply_torch(self, params):
        return params


FAMILIES = {
    cls.name: cls for cls in (Linf, Brightness, Contrast, BrightnessContrast, Window, BiasField)
}


def make(name: str, image: np.ndarray, magnitude_k: float) -> Family:
    try:
        cls = FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown perturbation family {name!r}: choose one of {', '.join(FAMILIES)}"
        ) from None
    return cls(image, magnitude_k)


@dataclass
class Prefix:
    """The clip prefix of a structured family over its parameter box, without the clip
    ReLUs the box cannot reach. Over the box the pre-clip value of pixel i,
    z_i = W_i p + b_i, lies in [zl_i, zu_i] (interval arithmetic, exact for an affine
    map), and clip(z) = relu(z) - relu(z - 1) simplifies:

    - zu <= 0 or zl >= 1: the pixel is the constant 0 or 1 (no ReLU);
    - zl >= 0: relu(z) = z is affine (no ReLU); zu <= 1: relu(z - 1) = 0 (no ReLU).

    The first hidden layer holds one pass-through unit per parameter, relu(p - lo) =
    p - lo (exact on the box), from which the next layer rebuilds every affine term; then
    one relu(z) unit per distinct row (W_i, b_i) with zl < 0 < zu, and one relu(z - 1)
    unit per distinct row with zl < 1 < zu: pixels of equal value under brightness share
    a unit. A brightness prefix thus has at most 1 + 2 x (distinct pixel values) ReLUs
    instead of 2 x pixels, and at small k only the pixels within k/255 of 0 or 1 keep one.
    """

    linear: np.ndarray  # (pixels, P): x = linear p + offset + relu(z) terms - relu(z - 1) terms
    offset: np.ndarray  # (pixels,)
    lower_rows: np.ndarray  # (r0, P + 1): [W | b] of the relu(z) units
    lower_pixels: np.ndarray  # pixels that take a relu(z) unit ...
    lower_unit: np.ndarray  # ... and which one
    upper_rows: np.ndarray  # (r1, P + 1): [W | b - 1] of the relu(z - 1) units
    upper_pixels: np.ndarray
    upper_unit: np.ndarray
    lo: np.ndarray  # (P,) lower corner of the box (pass-through units are relu(p - lo))

    @property
    def relu_count(self) -> int:
        return len(self.lo) + len(self.lower_rows) + len(self.upper_rows)


def _distinct(rows: np.ndarray):
    """Distinct rows and, for each input row, the index of its distinct row."""
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    return uniq, np.asarray(inverse).reshape(-1)


def prefix(family: Family) -> Prefix:
    """The pruned clip prefix of a structured family (see Prefix)."""
    w, b = family.affine()
    lo, hi = family.box()
    # the clip units' pre-activation bounds over the box (interval arithmetic is exact for
    # one affine layer up to round-off). Not widened by bounds.pad: a pixel exactly at 0
    # or 1 over the whole box (a point box, a pixel at the contrast mean) stays a constant
    # instead of becoming a ReLU; a unit misjudged by round-off is off by ~1e-16, far
    # below PROVE_TOL and CEX_MARGIN
    zl, zu = interval_layers([(w, b)], lo, hi)[0]
    live = ~((zu <= 0) | (zl >= 1))
    cross0 = live & (zl < 0)
    cross1 = live & (zu > 1)
    affine_px = live & ~cross0  # relu(z) = z there
    linear = np.where(affine_px[:, None], w, 0.0)
    offset = np.where(affine_px, b, 0.0) + (zl >= 1)
    lower_pixels, upper_pixels = np.flatnonzero(cross0), np.flatnonzero(cross1)
    lower_rows, lower_unit = _distinct(np.hstack([w, b[:, None]])[lower_pixels])
    upper_rows, upper_unit = _distinct(np.hstack([w, (b - 1.0)[:, None]])[upper_pixels])
    return Prefix(
        linear,
        offset,
        lower_rows,
        lower_pixels,
        lower_unit,
        upper_rows,
        upper_pixels,
        upper_unit,
        lo,
    )


def _gather(w1: np.ndarray, pixels: np.ndarray, unit: np.ndarray, units: int) -> np.ndarray:
    """(out, units): the sum of w1's columns over the pixels of each unit."""
    cols = np.zeros((units, w1.shape[0]))
    np.add.at(cols, unit, w1[:, pixels].T)
    return cols.T


def compose(family: Family, classifier, prune: bool = True):
    """The classifier (an AffineNet over the flattened image) as a function of the
    family's parameters, with the pruned clip prefix (see Prefix) in front: exact on the
    family's box only. ``prune=False``: the full 2 x pixels clip prefix, exact for every
    parameter (for measuring what pruning saves)."""
    from .nets import AffineNet

    if family.affine() is None:
        return classifier
    if not prune:
        return classifier.prepend(*family.affine(), clip=True)
    pre = prefix(family)
    first_w = np.vstack([np.eye(len(pre.lo)), pre.lower_rows[:, :-1], pre.upper_rows[:, :-1]])
    first_b = np.concatenate([-pre.lo, pre.lower_rows[:, -1], pre.upper_rows[:, -1]])
    w1, b1 = classifier.layers[0]
    through = w1 @ pre.linear  # u = relu(p - lo) = p - lo, so w1 linear p = through (u + lo)
    second_w = np.hstack(
        [
            through,
            _gather(w1, pre.lower_pixels, pre.lower_unit, len(pre.lower_rows)),
            -_gather(w1, pre.upper_pixels, pre.upper_unit, len(pre.upper_rows)),
        ]
    )
    second_b = b1 + w1 @ pre.offset + through @ pre.lo
    return AffineNet([(first_w, first_b), (second_w, second_b)] + classifier.layers[1:])
