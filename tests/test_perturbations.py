"""Perturbation families: boxes, apply (with clip), composition with a classifier,
membership, sampling and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medverify import perturbations
from medverify.errors import ConfigError
from medverify.nets import AffineNet
from medverify.perturbations import CONTRAST_SCALE, FAMILIES, compose, make


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(1, 6, 6)).astype(np.float64) / 255.0
    img[0, 0, :3] = [0.0, 1.0, 2 / 255]  # pixels that clip early
    return img


def small_classifier(rng, n, classes=3) -> AffineNet:
    return AffineNet(
        [
            (rng.normal(size=(10, n)), rng.normal(size=10)),
            (rng.normal(size=(8, 10)), rng.normal(size=8)),
            (rng.normal(size=(classes, 8)), rng.normal(size=classes)),
        ]
    )


def test_boxes(image):
    flat = image.reshape(-1)
    lo, hi = make("linf", image, 8).box()
    assert np.allclose(lo, np.clip(flat - 8 / 255, 0, 1))
    assert np.allclose(hi, np.clip(flat + 8 / 255, 0, 1))
    assert lo[0] == 0.0 and hi[1] == 1.0  # clipped at the ends of [0, 1]
    assert make("linf", image, 8).n_params == flat.size
    lo, hi = make("brightness", image, 8).box()
    assert np.array_equal(lo, [-8 / 255]) and np.array_equal(hi, [8 / 255])
    lo, hi = make("contrast", image, 8).box()
    d = CONTRAST_SCALE * 8 / 255
    assert np.allclose(lo, [1 - d]) and np.allclose(hi, [1 + d])
    assert make("brightness", image, 8).n_params == make("contrast", image, 8).n_params == 1


def test_apply_clips(image):
    flat = image.reshape(-1)
    b = make("brightness", image, 255)
    assert np.array_equal(b.apply(np.array([0.0])), flat)
    assert np.array_equal(b.apply(np.array([0.1])), np.clip(flat + 0.1, 0, 1))
    assert np.array_equal(b.apply(np.array([1.0])), np.ones_like(flat))
    assert np.array_equal(b.apply(np.array([-1.0])), np.zeros_like(flat))
    c = make("contrast", image, 16)
    m = flat.mean()
    assert np.allclose(c.apply(np.array([1.0])), flat)
    assert np.allclose(c.apply(np.array([1.25])), np.clip(m + 1.25 * (flat - m), 0, 1))
    assert np.allclose(c.apply(np.array([0.0])), np.full_like(flat, m))
    linf = make("linf", image, 4)
    assert np.array_equal(linf.apply(flat + 2.0), np.ones_like(flat))
    # batches
    batch = b.apply(np.array([[0.0], [0.1]]))
    assert batch.shape == (2, flat.size) and np.array_equal(batch[1], b.apply(np.array([0.1])))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_apply_torch_matches_apply(name, image):
    fam = make(name, image, 16)
    params = fam.sample(5, np.random.default_rng(1))
    got = fam.apply_torch(torch.as_tensor(params, dtype=torch.float64)).numpy()
    assert np.allclose(got, fam.apply(params), atol=1e-12)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_compose_equals_classifier_of_applied_image(name, image):
    rng = np.random.default_rng(2)
    classifier = small_classifier(rng, image.size)
    fam = make(name, image, 64)  # large enough that the clip is active for some pixels
    net = compose(fam, classifier)
    assert net.input_dim == fam.n_params
    params = fam.sample(20, rng)
    if fam.structured:
        # beyond the box too: the prefix clips exactly like apply (linf's box is the net's
        # own input range [0, 1], where apply is the identity)
        lo, hi = fam.box()
        params = np.vstack([params, lo - 0.5, hi + 0.5])
    expected = classifier.forward(fam.apply(params))
    assert np.allclose(net.forward(params), expected, atol=1e-10)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_contains_accepts_applied_points(name, image):
    fam = make(name, image, 16)
    rng = np.random.default_rng(3)
    for p in fam.sample(30, rng):
        candidate = fam.apply(p)
        assert fam.contains(candidate), p
        assert fam.contains(candidate, p)
        assert fam.contains(candidate.reshape(image.shape))


def test_contains_rejects_points_outside(image):
    flat = image.reshape(-1)
    rng = np.random.default_rng(4)
    linf = make("linf", image, 8)
    bright = make("brightness", image, 8)
    contrast = make("contrast", image, 8)
    # an L-infinity point with independent pixel moves is not one brightness shift
    moved = np.clip(flat + rng.uniform(-8 / 255, 8 / 255, flat.size), 0, 1)
    assert linf.contains(moved)
    assert not bright.contains(moved)
    assert not contrast.contains(moved)
    # a brightness shift beyond the magnitude
    assert not bright.contains(np.clip(flat + 9 / 255, 0, 1))
    assert bright.contains(np.clip(flat + 7 / 255, 0, 1))
    # right image, wrong claimed parameters
    assert not bright.contains(np.clip(flat + 7 / 255, 0, 1), np.array([-7 / 255]))
    # outside the eps ball, a wrong shape, NaN
    far = flat.copy()
    far[10] = min(far[10] + 9 / 255, 1.0) if far[10] < 0.5 else far[10] - 9 / 255
    assert not linf.contains(far)
    assert not linf.contains(flat[:-1])
    nan = flat.copy()
    nan[3] = np.nan
    assert not linf.contains(nan)
    # contrast beyond its range, and a brightness shift is not a contrast change
    d = CONTRAST_SCALE * 8 / 255
    assert contrast.contains(contrast.apply(np.array([1 + 0.9 * d])))
    assert not contrast.contains(contrast.apply(np.array([1 + 1.5 * d])))
    assert not contrast.contains(np.clip(flat + 5 / 255, 0, 1))


def test_brightness_membership_when_every_pixel_clips():
    # a black-and-white image is its own brightness shift for every small beta
    img = np.array([0.0, 1.0, 0.0, 1.0])
    fam = make("brightness", img, 8)
    assert fam.contains(img)
    assert fam.contains(fam.apply(np.array([8 / 255])))
    assert not fam.contains(np.array([0.0, 1.0, 1.0, 1.0]))
    # dark pixels all pushed to 0: needs beta <= -0.03, inside the box for k = 8 only
    img = np.array([0.02, 0.03])
    assert make("brightness", img, 8).contains(np.zeros(2))
    assert not make("brightness", img, 4).contains(np.zeros(2))
    # 0 and 1 at once would need beta <= -0.02 and beta >= 0.01
    assert not make("brightness", np.array([0.02, 0.99]), 255).contains(np.array([0.0, 1.0]))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_sample_stays_in_box(name, image):
    fam = make(name, image, 16)
    lo, hi = fam.box()
    params = fam.sample(50, np.random.default_rng(5))
    assert params.shape == (50, len(lo))
    assert np.all(params >= lo) and np.all(params <= hi)
    assert np.array_equal(params[0], lo) and np.array_equal(params[1], hi)
    assert all(fam.in_box(p) for p in params)
    assert fam.sample(1, np.random.default_rng(5)).shape == (1, len(lo))


def test_describe():
    img = np.full(4, 0.5)
    assert make("brightness", img, 4).describe(np.array([0.01])) == {"beta": 0.01}
    assert make("contrast", img, 4).describe(np.array([1.1])) == {"alpha": 1.1}
    assert make("linf", img, 4).describe(img) == {}


@pytest.mark.parametrize("k", [-1, float("nan"), float("inf"), "four", None])
def test_bad_magnitude(k):
    with pytest.raises(ConfigError, match="magnitude must be a finite k >= 0"):
        make("brightness", np.zeros(4), k)


def test_unknown_family():
    with pytest.raises(ConfigError, match="unknown perturbation family 'rotation'"):
        make("rotation", np.zeros(4), 4)


def test_zero_magnitude_is_the_image_only(image):
    flat = image.reshape(-1)
    for name in FAMILIES:
        fam = make(name, image, 0)
        lo, hi = fam.box()
        assert np.array_equal(lo, hi)
        assert fam.contains(flat)
    assert not make("brightness", image, 0).contains(np.clip(flat + 1e-3, 0, 1))


def test_module_exports_families():
    assert set(FAMILIES) == {"linf", "brightness", "contrast"}
    assert isinstance(make("linf", np.zeros(4), 1), perturbations.Linf)
