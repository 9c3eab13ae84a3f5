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
    # the pruned prefix is exact on the box (and only there: a clip the box cannot
    # reach is left out)
    params = fam.sample(20, rng)
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
    assert set(FAMILIES) == {
        "linf",
        "brightness",
        "contrast",
        "brightness_contrast",
        "window",
        "bias_field",
    }
    assert isinstance(make("linf", np.zeros(4), 1), perturbations.Linf)


STRUCTURED = sorted(n for n in FAMILIES if FAMILIES[n].structured)


@pytest.mark.parametrize("name", STRUCTURED)
def test_nominal_parameters_give_the_image(name, image):
    fam = make(name, image, 16)
    assert fam.in_box(fam.nominal())
    assert np.allclose(fam.apply(fam.nominal()), image.reshape(-1), atol=1e-12)
    assert len(fam.nominal()) == FAMILIES[name].parameters == fam.n_params
    assert set(fam.describe(fam.nominal())) >= set(FAMILIES[name].parameter_names)


def test_new_family_boxes_and_formulas(image):
    flat = image.reshape(-1)
    eps = 16 / 255
    m = flat.mean()
    bc = make("brightness_contrast", image, 16)
    lo, hi = bc.box()
    d = CONTRAST_SCALE * eps
    assert np.allclose(lo, [1 - d, -eps]) and np.allclose(hi, [1 + d, eps])
    assert np.allclose(bc.apply(np.array([1.2, 0.03])), np.clip(1.2 * (flat - m) + m + 0.03, 0, 1))
    win = make("window", image, 16)
    lo, hi = win.box()
    assert np.allclose(lo, [1 / (1 + d), -eps]) and np.allclose(hi, [1 + d, eps])
    # level c and width w: x' = clip((x - c) / w + 1/2), gain 1/w, offset (c - 1/2) / w
    c, w = 0.55, 0.8
    params = np.array([1 / w, (c - 0.5) / w])
    assert np.allclose(win.apply(params), np.clip((flat - c) / w + 0.5, 0, 1))
    assert win.describe(params)["level"] == pytest.approx(c)
    assert win.describe(params)["width"] == pytest.approx(w)
    bias = make("bias_field", image, 16)
    lo, hi = bias.box()
    assert np.allclose(lo, -eps) and np.allclose(hi, eps) and len(lo) == 6
    coef = np.array([0.01, 0.02, -0.03, 0.04, 0.05, -0.06])
    v, u = np.meshgrid(np.linspace(-1, 1, 6), np.linspace(-1, 1, 6), indexing="ij")
    field = coef @ np.stack([np.ones_like(u), u, v, u * u, u * v, v * v]).reshape(6, -1)
    assert np.allclose(bias.apply(coef), np.clip(flat * (1 + field), 0, 1))


def test_bias_field_is_the_same_on_every_channel():
    rng = np.random.default_rng(8)
    rgb = rng.uniform(0.2, 0.8, size=(3, 4, 5))
    fam = make("bias_field", rgb, 32)
    coef = rng.uniform(*fam.box())
    gain = fam.apply(coef).reshape(rgb.shape) / rgb
    assert np.allclose(gain[0], gain[1]) and np.allclose(gain[0], gain[2])
    # the top-left corner is u = v = -1: gain 1 + c1 - cu - cv + cuu + cuv + cvv
    assert gain[0, 0, 0] == pytest.approx(1 + coef @ [1, -1, -1, 1, 1, 1])
    low, high = fam.ends()
    assert fam.apply(low).reshape(rgb.shape)[0, 0, 0] == pytest.approx(
        rgb[0, 0, 0] * (1 - 6 * fam.eps)
    )
    assert fam.apply(high).reshape(rgb.shape)[0, 0, 0] == pytest.approx(
        rgb[0, 0, 0] * (1 + 6 * fam.eps)
    )


def test_new_families_reject_other_perturbations(image):
    flat = image.reshape(-1)
    bc = make("brightness_contrast", image, 8)
    win = make("window", image, 8)
    bias = make("bias_field", image, 8)
    # a brightness shift is a brightness_contrast (alpha = 1) and a window (gain 1) member
    shifted = np.clip(flat + 5 / 255, 0, 1)
    assert bc.contains(shifted) and win.contains(shifted)
    assert not bc.contains(np.clip(flat + 9 / 255, 0, 1))
    # independent pixel noise is in none of them
    noisy = np.clip(flat + np.random.default_rng(9).uniform(-4, 4, flat.size) / 255, 0, 1)
    assert not bc.contains(noisy) and not win.contains(noisy) and not bias.contains(noisy)
    # a gain beyond the box
    assert not win.contains(win.apply(np.array([1.5, 0.0])))
    assert not bias.contains(flat * 1.1)
    assert bias.contains(np.clip(flat * (1 + 7 / 255), 0, 1))


@pytest.mark.parametrize("name", STRUCTURED)
@pytest.mark.parametrize("k", [1, 8, 64, 255])
def test_pruned_prefix_is_exact_on_the_box_and_smaller(name, k):
    rng = np.random.default_rng(k)
    # an 8-bit image with black and white areas: many pixels share a value
    img = rng.integers(0, 256, size=(2, 7, 6)).astype(np.float64) / 255.0
    img[:, :2] = 0.0
    img[:, -1] = 1.0
    classifier = small_classifier(rng, img.size)
    fam = make(name, img, k)
    net = compose(fam, classifier)
    full = classifier.prepend(*fam.affine(), clip=True)  # the 2 x pixels clip prefix
    lo, hi = fam.box()
    params = np.vstack([fam.sample(200, rng), lo, hi, fam.nominal()])
    assert np.allclose(net.forward(params), full.forward(params), atol=1e-10)
    assert np.allclose(net.forward(params), classifier.forward(fam.apply(params)), atol=1e-10)
    assert net.relu_count < full.relu_count
    pre = perturbations.prefix(fam)
    assert net.layers[0][0].shape[0] == pre.relu_count


def test_pruned_brightness_prefix_counts():
    # pixels 0 (x4), 0.5 (x3), 1 (x2), 0.99: at k = 4 only the 0-, 1- and 0.99-pixels can
    # clip; equal pixels share one unit
    img = np.array([0.0] * 4 + [0.5] * 3 + [1.0] * 2 + [0.99])
    pre = perturbations.prefix(make("brightness", img, 4))
    assert len(pre.lower_rows) == 1  # relu(beta + 0)
    assert len(pre.upper_rows) == 2  # relu(beta + 1 - 1), relu(beta + 0.99 - 1)
    assert pre.relu_count == 4  # plus one pass-through for beta
    # k = 0: nothing can clip; a bias field leaves black pixels constant
    assert perturbations.prefix(make("brightness", img, 0)).relu_count == 1
    black = perturbations.prefix(make("bias_field", np.zeros((1, 3, 3)), 64))
    assert black.relu_count == 6 and np.all(black.linear == 0) and np.all(black.offset == 0)
