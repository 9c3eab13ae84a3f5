"""Perturbation families. Magnitudes are in 8-bit units: k means k/255.

- ``linf``: every pixel moves on its own, |x' - x| <= k/255, clipped to [0, 1].
  Parameters: the image itself (one per pixel).
- ``brightness``: x' = clip(x + beta, 0, 1) with one beta in [-k/255, k/255].
- ``contrast``: x' = clip(m + alpha (x - m), 0, 1), m the mean of the original image,
  alpha in [1 - s k/255, 1 + s k/255] with s = CONTRAST_SCALE = 4, so k = 4 is a
  +-6% and k = 16 a +-25% contrast change (a window-width change a reader would
  consider routine).

Each family knows its parameter box, its prefix (parameters -> pre-clip image, an
affine map; the clip is relu(z) - relu(z - 1)), how to apply parameters, membership of a
candidate image, and sampling for attacks. A structured family is verified as a box over
its one parameter, never through the enclosing L-infinity ball.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError

CONTRAST_SCALE = 4.0
TOLERANCE = 1e-6


class Family:
    name: str = ""
    #: number of parameters, or None when it equals the number of pixels
    structured: bool = True

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
        return {}


class Linf(Family):
    name = "linf"
    structured = False

    def box(self):
        return np.clip(self.image - self.eps, 0, 1), np.clip(self.image + self.eps, 0, 1)

    def affine(self):
        return None

    def infer_params(self, candidate):
        return candidate


class Brightness(Family):
    name = "brightness"

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

    def describe(self, params):
        return {"beta": float(np.asarray(params).reshape(-1)[0])}


class Contrast(Family):
    name = "contrast"

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

    def describe(self, params):
        return {"alpha": float(np.asarray(params).reshape(-1)[0])}


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


FAMILIES = {cls.name: cls for cls in (Linf, Brightness, Contrast)}


def make(name: str, image: np.ndarray, magnitude_k: float) -> Family:
    try:
        cls = FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown perturbation family {name!r}: choose one of {', '.join(FAMILIES)}"
        ) from None
    return cls(image, magnitude_k)


def compose(family: Family, classifier):
    """The classifier (an AffineNet over the flattened image) as a function of the
    family's parameters."""
    aff = family.affine()
    if aff is None:
        return classifier
    return classifier.prepend(*aff, clip=True)
