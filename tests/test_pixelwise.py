"""Per-pixel MS-SSIM (Zhao et al.): values, gradients, errors, determinism, invariants.

Reference values: ``pixelwise_reference`` — an independent float64 NumPy/SciPy
reimplementation of P(p) = l_M(p) prod_j cs_j(p) (scipy ``correlate1d``,
'reflect', scipy's Gaussian taps, population or per-window sample covariance).

Tolerances.  float64 map: rtol 1e-12 plus atol 1e-14.  P is a product of
ratios of differences of O(1) moments, so its *absolute* rounding error is a
few ulp of 1 (measured <= 4e-15) however small P is; P crosses zero (entries
of 1e-6 are common on the noisy test pairs), where a pure relative tolerance
would have to be unbounded.  float64 mean: rtol 1e-12 (measured ~1e-15).
float32: the engine evaluates the moments and the formula in float32 (means
accumulated in float64), the reference in float64 on the same float32
values.  The error is largest in the narrowest window (sigma 0.5, 5 taps),
where sigma_x^2 + sigma_y^2 can be far below C2 = 9e-4 and the float32
rounding of E[x'^2] - mu'^2 (~eps32 * 0.1) is divided by little more than
C2; measured over 20 seeds: <= 1.1e-6 with Zhao's widths, <= 5.2e-6 with
(0.5, 1), <= 3.5e-7 for a single sigma = 1.5.  So atol 1e-5 for float32 maps
(~80 ulp of 1); the mean averages those errors out (measured <= 6e-9): atol
1e-7.  The float32 gradient follows the float64 one to <= 1.1e-6 of max|grad|
(measured): tolerance 2e-5 of max|grad|.  In float64, a wrong tap, border,
covariance factor or scale moves entries by orders of magnitude more than
these tolerances (the sample-covariance test carries its own negative
control: one shared factor is off by > 1e-5).

Gradients: central differences (h = 1e-6, ``helpers.central_fd``) of the
very value returned, at every pixel of small images; tolerance ``FD_REL`` =
1e-6 of max|grad| (measured ~1e-9).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import FD_REL, assert_grad_matches_fd, border_mask, central_fd, fd_grad, pair
from pixelwise_reference import crop, planes_apply, ref_pixelwise, ref_ssim_map

import fastssim
from fastssim._pixelwise import ZHAO_SIGMAS

RTOL64, ATOL64 = 1e-12, 1e-14
ATOL32_MAP, ATOL32_MEAN = 1e-5, 1e-7

SMALL = (0.5, 1.0, 1.5)  # 5, 9 and 11 taps: FD on 14x15 images stays cheap


def _check_map(m, ref, rtol=RTOL64, atol=ATOL64):
    assert m.shape == ref.shape
    np.testing.assert_allclose(m, ref, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("shape,kw", [
    ((57, 60), dict()),                                  # the smallest image sigma=8 fits
    ((64, 71), dict(K1=0.05, K2=0.1)),
    ((40, 41), dict(truncate=2.0)),                      # the authors' truncation (33 taps)
    ((14, 15), dict(sigmas=SMALL)),
    ((30, 31), dict(sigmas=(0.7, 2.1), truncate=3.0)),
    ((23, 24), dict(sigmas=1.5)),                        # a single width: P = SSIM map
    # 6 and 8 windows (the fused product kernel's largest cases; lines >= 16 wide)
    ((20, 21), dict(sigmas=(0.5, 0.7, 0.9, 1.1, 1.3, 1.5), truncate=2.0)),
    ((20, 21), dict(sigmas=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2), truncate=2.0)),
])
def test_map_and_mean_2d(shape, kw):
    x, y = pair(shape, seed=sum(shape))
    kw = dict(kw)
    sig = kw.pop("sigmas", ZHAO_SIGMAS)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=sig, full=True, **kw)
    ref = ref_pixelwise(x, y, np.atleast_1d(sig), data_range=1.0, **kw)
    assert r.map.dtype == np.float64 and type(r.value) is np.float64
    _check_map(r.map, ref)
    np.testing.assert_allclose(r.value, ref.mean(), rtol=RTOL64, atol=0)
    # not trivial: the noisy pair gives small and negative entries
    assert ref.min() < 0 < ref.max() < 0.9
    # value-only call: same number
    v = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=sig, **kw)
    np.testing.assert_allclose(v, r.value, rtol=1e-14, atol=0)


@pytest.mark.parametrize("sigmas,truncate,shape", [
    (ZHAO_SIGMAS, 3.5, (60, 66)), (SMALL, 3.5, (14, 15)), (ZHAO_SIGMAS, 1.0, (20, 20))])
def test_valid_border(sigmas, truncate, shape):
    x, y = pair(shape, seed=5)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=sigmas, truncate=truncate,
                                   border="valid", full=True)
    ref = crop(ref_pixelwise(x, y, sigmas, data_range=1.0, truncate=truncate), sigmas[-1],
               truncate)
    rad = int(truncate * sigmas[-1] + 0.5)
    assert r.map.shape == (shape[0] - 2 * rad, shape[1] - 2 * rad)
    _check_map(r.map, ref)
    np.testing.assert_allclose(r.value, ref.mean(), rtol=RTOL64, atol=0)


def test_batch():
    x, y = pair((2, 3, 20, 21), seed=8)
    sig = (0.5, 1.0, 2.0)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=sig, full=True)
    ref = ref_pixelwise(x, y, sig, data_range=1.0)
    assert r.value.shape == (2, 3) and r.value.dtype == np.float64
    _check_map(r.map, ref)
    np.testing.assert_allclose(r.value, ref.mean(axis=(-2, -1)), rtol=RTOL64, atol=0)
    # each item alone gives the same value
    for idx in np.ndindex(2, 3):
        v = fastssim.pixelwise_ms_ssim(x[idx], y[idx], data_range=1.0, sigmas=sig)
        np.testing.assert_allclose(v, r.value[idx], rtol=1e-14, atol=0)


@pytest.mark.parametrize("shape,cax", [((2, 20, 21, 3), -1), ((2, 3, 20, 21), 1), ((3, 20, 21), 0)])
def test_channel_axis(shape, cax):
    x, y = pair(shape, seed=9)
    sig = (0.5, 1.0, 2.0)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=sig, full=True, channel_axis=cax)
    ref = planes_apply(lambda a, b: ref_pixelwise(a, b, sig, data_range=1.0), x, y, cax)
    _check_map(r.map, ref)
    per_item = np.moveaxis(ref, cax, -1).mean(axis=(-3, -2, -1))  # channels and pixels
    assert np.shape(r.value) == per_item.shape
    np.testing.assert_allclose(r.value, per_item[()], rtol=RTOL64, atol=0)


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_volumes(border):
    x, y = pair((2, 11, 12, 13), seed=10)
    sig = (0.5, 1.0)  # 5 and 9 taps
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=sig, full=True, spatial_dims=3,
                                   border=border)
    ref = ref_pixelwise(x, y, sig, data_range=1.0, nd=3)
    if border == "valid":
        ref = crop(ref, sig[-1], nd=3)
    _check_map(r.map, ref)
    np.testing.assert_allclose(r.value, ref.mean(axis=(-3, -2, -1)), rtol=RTOL64, atol=0)


@pytest.mark.parametrize("kw", [dict(), dict(border="valid"), dict(sigmas=SMALL, channel_axis=-1)])
def test_float32(kw):
    shape = (64, 66, 2) if "channel_axis" in kw else (2, 64, 66)
    x, y = pair(shape, dtype=np.float32, seed=11)
    kw = dict(kw)
    sig = kw.pop("sigmas", ZHAO_SIGMAS)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=sig, full=True, gradient="both",
                                   **kw)
    assert r.map.dtype == r.grad_x.dtype == r.grad_y.dtype == np.float32
    assert r.value.dtype == np.float64 or type(r.value) is np.float64
    if "channel_axis" in kw:
        ref = planes_apply(lambda a, b: ref_pixelwise(a, b, sig, data_range=1.0), x, y, -1)
        mean = ref.mean()
    else:
        ref = ref_pixelwise(x, y, sig, data_range=1.0)
        if kw.get("border") == "valid":
            ref = crop(ref, sig[-1])
        mean = ref.mean(axis=(-2, -1))
    _check_map(r.map, ref, rtol=0, atol=ATOL32_MAP)
    np.testing.assert_allclose(r.value, mean, rtol=0, atol=ATOL32_MEAN)
    # the float32 gradient follows the float64 one (same inputs) to float32 accuracy
    r64 = fastssim.pixelwise_ms_ssim(x.astype(np.float64), y.astype(np.float64), data_range=1.0,
                                     sigmas=sig, gradient="both", **kw)
    for g32, g64 in ((r.grad_x, r64.grad_x), (r.grad_y, r64.grad_y)):
        np.testing.assert_allclose(g32, g64, rtol=0, atol=2e-5 * np.abs(g64).max())


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_sample_covariance_per_scale(border):
    """'sample': each scale's own NP/(NP - 1), NP = taps**ndim (25, 81, 121 here)."""
    x, y = pair((14, 15), seed=12)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=SMALL, covariance="sample",
                                   border=border, full=True)
    ref = ref_pixelwise(x, y, SMALL, data_range=1.0, covariance="sample")
    if border == "valid":
        ref = crop(ref, SMALL[-1])
    _check_map(r.map, ref)
    np.testing.assert_allclose(r.value, ref.mean(), rtol=RTOL64, atol=0)
    # discriminating: one factor shared by all scales (the widest window's, 121/120)
    # is off by far more than the tolerance
    shared = ref_pixelwise(x, y, SMALL, data_range=1.0, covariance=121 / 120)
    if border == "valid":
        shared = crop(shared, SMALL[-1])
    assert np.abs(r.map - shared).max() > 1e-5


def test_integer_input_uses_dtype_range():
    x, y = pair((60, 61), dtype=np.uint8, seed=13)
    r = fastssim.pixelwise_ms_ssim(x, y, full=True)
    ref = ref_pixelwise(x, y, ZHAO_SIGMAS, data_range=255.0)
    assert r.map.dtype == np.float64
    _check_map(r.map, ref)


def test_single_sigma_is_the_ssim_map():
    """With one width, P = l * cs of that window: fastssim.ssim's same-size map."""
    x, y = pair((24, 25), seed=14)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=(1.5,), full=True)
    s = fastssim.ssim(x, y, data_range=1.0, sigma=1.5, full=True)
    _check_map(r.map, s.map)
    _check_map(r.map, ref_ssim_map(x, y, 1.5, data_range=1.0))


# --------------------------------------------------------------- gradients


def _pw(**kw):
    return lambda a, b: fastssim.pixelwise_ms_ssim(a, b, data_range=1.0, **kw)


@pytest.mark.parametrize("cov", ["population", "sample"])
@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("gradient", ["x", "y", "both"])
def test_gradient_vs_fd(gradient, border, cov):
    x, y = pair((14, 15), seed=101)
    kw = dict(sigmas=SMALL, border=border, covariance=cov)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, gradient=gradient, **kw)
    assert r.map is None
    edge = border_mask(x.shape, 2)
    for wrt, g in (("x", r.grad_x), ("y", r.grad_y)):
        if gradient not in (wrt, "both"):
            assert g is None
            continue
        fd = fd_grad(fastssim.pixelwise_ms_ssim, x, y, wrt, data_range=1.0, **kw)
        assert_grad_matches_fd(g, fd)
        # the border pixels carry a real gradient (reflection folds / the crop's edge windows)
        scale = np.abs(fd).max()
        assert np.abs(fd[edge]).max() > 1e-3 * scale
        np.testing.assert_allclose(g[edge], fd[edge], rtol=0, atol=FD_REL * scale)


@pytest.mark.parametrize("sigmas", [(0.5, 0.7, 0.9, 1.1, 1.3, 1.5),
                                    (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2)])
def test_gradient_vs_fd_many_windows(sigmas):
    # 6 and 8 windows: every factor's cotangent is the product of 5 or 7
    # others (the fused kernel keeps them in registers); lines 18 wide
    x, y = pair((16, 18), seed=107)
    kw = dict(sigmas=sigmas, truncate=2.0)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, gradient="both", **kw)
    assert_grad_matches_fd(r.grad_x, fd_grad(fastssim.pixelwise_ms_ssim, x, y, "x", data_range=1.0, **kw))
    assert_grad_matches_fd(r.grad_y, fd_grad(fastssim.pixelwise_ms_ssim, x, y, "y", data_range=1.0, **kw))


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_gradient_default_sigmas_truncate1(border):
    """All five of Zhao's widths (sigma = 8 -> 17 taps at truncate 1) on a 20x20 image."""
    x, y = pair((20, 20), seed=102)
    kw = dict(truncate=1.0, border=border)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, gradient="both", **kw)
    assert_grad_matches_fd(r.grad_x, fd_grad(fastssim.pixelwise_ms_ssim, x, y, "x", data_range=1.0, **kw))
    assert_grad_matches_fd(r.grad_y, fd_grad(fastssim.pixelwise_ms_ssim, x, y, "y", data_range=1.0, **kw))


def test_gradient_batch_channels():
    """A batch with channels: item b's slice is the gradient of item b's value."""
    x, y = pair((2, 12, 13, 2), seed=103)
    kw = dict(sigmas=(0.5, 1.0), channel_axis=-1)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, gradient="x", **kw)
    fd = fd_grad(fastssim.pixelwise_ms_ssim, x, y, "x", data_range=1.0, **kw)  # shape x.shape + (2,)
    for b in range(2):
        assert_grad_matches_fd(r.grad_x[b], fd[b, ..., b])
        # and nothing leaks into the other item
        assert np.abs(fd[1 - b, ..., b]).max() == 0


def test_gradient_volume():
    x, y = pair((9, 10, 11), seed=104)
    kw = dict(sigmas=(0.5, 1.0), spatial_dims=3)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, gradient="y", **kw)
    assert_grad_matches_fd(r.grad_y, fd_grad(fastssim.pixelwise_ms_ssim, x, y, "y", data_range=1.0, **kw))


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("wrt", ["x", "y", "both"])
def test_vjp_vs_fd(wrt, border, rng):
    x, y = pair((14, 15), seed=105)
    kw = dict(sigmas=SMALL, border=border)
    P = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, **kw).map
    w = rng.standard_normal(P.shape)

    def f(a, b):
        return np.sum(w * fastssim.pixelwise_ms_ssim(a, b, data_range=1.0, full=True, **kw).map)

    g = fastssim.pixelwise_ms_ssim_vjp(x, y, w, wrt=wrt, data_range=1.0, **kw)
    gx, gy = g if wrt == "both" else ((g, None) if wrt == "x" else (None, g))
    if gx is not None:
        assert_grad_matches_fd(gx, central_fd(lambda a: f(a, y), x))
    if gy is not None:
        assert_grad_matches_fd(gy, central_fd(lambda a: f(x, a), y))


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_vjp_of_uniform_weights_is_the_gradient(border):
    x, y = pair((3, 60, 61), seed=106)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, border=border, full=True, gradient="both")
    w = np.full(r.map.shape, 1.0 / np.prod(r.map.shape[1:]))
    gx, gy = fastssim.pixelwise_ms_ssim_vjp(x, y, w, wrt="both", data_range=1.0, border=border)
    for a, b in ((gx, r.grad_x), (gy, r.grad_y)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())


# ------------------------------------------------------------ cs_j near 0


def test_gradient_where_one_cs_is_exactly_zero():
    """cs_0 = 0 exactly at some pixels: the gradient must not divide by cs_j.

    With K2 = 0, cs_j = 2 sigma_xy / (sigma_x^2 + sigma_y^2).  y is the
    constant 0.5 on an 8x8 patch and x is textured, so the 5-tap window
    (sigma 0.5) of the 4x4 pixels deep inside the patch sees sigma_y = sigma_xy
    = 0 while sigma_x > 0: cs_0 = 0 there (exactly: 0.5 is also the engine's
    per-plane shift, so y - shift is exactly 0 on the patch) while the wider
    windows' cs are not.  P / cs_0 would be 0 / 0 = NaN; the product of the
    other factors is finite, and d cs_0 / d y = 2 (x - mu_x) w / sigma_x^2 is
    not zero, so those pixels really contribute to the gradient w.r.t. y.
    """
    rng = np.random.default_rng(7)
    x = rng.random((20, 21))
    y = 0.5 + 0.25 * (rng.random((20, 21)) - 0.5)
    y[6:14, 7:15] = 0.5
    kw = dict(sigmas=SMALL, K2=0.0)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, gradient="both", **kw)
    assert np.all(r.map[8:12, 9:13] == 0.0), "precondition: P (and cs_0) exactly 0 in the patch"
    assert np.count_nonzero(r.map == 0.0) == 16
    assert np.isfinite(r.grad_x).all() and np.isfinite(r.grad_y).all()
    f = _pw(**kw)
    fdy = central_fd(lambda a: f(x, a), y)
    assert_grad_matches_fd(r.grad_x, central_fd(lambda a: f(a, y), x))
    assert_grad_matches_fd(r.grad_y, fdy)
    assert np.abs(fdy[8:12, 9:13]).min() > 0
    # and the VJP restricted to the zero pixels: only the cs_0 term survives there
    w = np.zeros(r.map.shape)
    w[8:12, 9:13] = 1.0
    gy = fastssim.pixelwise_ms_ssim_vjp(x, y, w, wrt="y", data_range=1.0, **kw)
    assert np.isfinite(gy).all() and np.abs(gy).max() > 0
    fd = central_fd(lambda a: np.sum(w * fastssim.pixelwise_ms_ssim(
        x, a, data_range=1.0, full=True, **kw).map), y)
    assert_grad_matches_fd(gy, fd)


def test_gradient_anticorrelated_cs_crosses_zero():
    """y ~ 1 - x on half the image: cs_j < 0 there, ~0 along the seam; P changes sign."""
    rng = np.random.default_rng(8)
    x = rng.random((16, 17))
    y = 0.3 * x + 0.7 * rng.random((16, 17))
    y[:, 8:] = 1.0 - x[:, 8:] + 0.05 * rng.random((16, 9))
    kw = dict(sigmas=SMALL)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, gradient="both", **kw)
    assert r.map.min() < -0.05 and np.abs(r.map).min() < 1e-3
    f = _pw(**kw)
    assert_grad_matches_fd(r.grad_x, central_fd(lambda a: f(a, y), x))
    assert_grad_matches_fd(r.grad_y, central_fd(lambda a: f(x, a), y))


# ------------------------------------------------------------------ errors

X, Y = pair((60, 61), seed=301)

ERRORS = [
    (dict(sigmas=(0.0, 1.0)), ValueError, r"sigmas: expected positive finite widths, got \(0\.0, 1\.0\)"),
    (dict(sigmas=(-1.0, 2.0)), ValueError, r"sigmas: expected positive finite widths"),
    (dict(sigmas=(0.5, float("nan"))), ValueError,
     r"sigmas: expected positive finite widths, got \(0\.5, nan\)"),
    (dict(sigmas=(0.5, np.inf)), ValueError, r"sigmas: expected positive finite widths"),
    (dict(sigmas=(2.0, 1.0)), ValueError, r"sigmas: expected strictly increasing widths"),
    (dict(sigmas=(1.0, 1.0)), ValueError,
     r"sigmas: expected strictly increasing widths .*got \(1\.0, 1\.0\)"),
    (dict(sigmas=()), ValueError, r"sigmas: expected at least one Gaussian width, got an empty sequence"),
    (dict(sigmas=None), TypeError, r"sigmas: expected a sequence of positive numbers, got None"),
    (dict(sigmas="abc"), TypeError, r"sigmas: expected a sequence of positive numbers, got 'abc'"),
    (dict(sigmas=[[1.0, 2.0]]), TypeError, r"sigmas: expected a sequence of positive numbers"),
    (dict(x=X[:56], y=Y[:56]), ValueError,
     r"sigmas: the widest window \(sigma=8, 57 taps at truncate=3\.5\) exceeds the image: "
     r"spatial shape \(56, 61\); every side needs at least 57 px"),
    (dict(x=X[:16, :16], y=Y[:16, :16], truncate=1.0), ValueError,
     r"sigmas: the widest window \(sigma=8, 17 taps at truncate=1\) exceeds the image.*at least 17 px"),
    (dict(x=X[:16], y=Y[:16], sigmas=(1, 2.5), border="valid"), ValueError,
     r"sigma=2\.5, 19 taps .*every side needs at least 19 px\. Pass smaller sigmas or a smaller truncate"),
    (dict(truncate=0.0), ValueError, r"truncate: expected a positive finite number"),
    (dict(border="same"), ValueError, r"border: expected 'reflect' or 'valid', got 'same'"),
    (dict(covariance="unbiased"), ValueError, r"covariance: expected 'population' or 'sample'"),
    (dict(sigmas=(0.5, 2.0), truncate=0.9, covariance="sample"), ValueError,
     r"covariance='sample' needs windows of more than one sample: sigma=0\.5 has 1 tap "
     r"at truncate=0\.9\. Pass a larger truncate or drop that sigma"),
    (dict(gradient="z"), ValueError, r"gradient: expected None, 'x', 'y' or 'both', got 'z'"),
    (dict(gradient=True), ValueError, r"gradient: expected None, 'x', 'y' or 'both', got True"),
    (dict(spatial_dims=4), ValueError, r"spatial_dims: expected 2 \(images\) or 3"),
]  # shapes, complex input, data_range None / 0, workers=0: test_errors.py's entry-point table


@pytest.mark.parametrize("kw,exc,msg", ERRORS)
def test_errors(kw, exc, msg):
    kw = dict(kw)
    x, y = kw.pop("x", X), kw.pop("y", Y)
    kw.setdefault("data_range", 1.0)
    with pytest.raises(exc, match=msg):
        fastssim.pixelwise_ms_ssim(x, y, **kw)
    if "gradient" not in kw:
        w = np.ones((60, 61))
        with pytest.raises(exc, match=msg):
            fastssim.pixelwise_ms_ssim_vjp(x, y, w, **kw)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(cotangent=np.ones((60, 60))), ValueError,
     r"cotangent: expected the shape of the per-pixel MS-SSIM map, \(60, 61\) "
     r"\(border='reflect'\), got \(60, 60\)"),
    (dict(cotangent=np.ones((60, 61)), border="valid"), ValueError,
     r"cotangent: expected the shape of the per-pixel MS-SSIM map, \(4, 5\) \(border='valid'\)"),
    (dict(cotangent=np.ones((60, 61), complex)), TypeError,
     r"cotangent: expected a real numeric array.*got dtype complex128"),
    (dict(cotangent=np.ones((60, 61)), wrt=None), ValueError,
     r"wrt: expected 'x', 'y' or 'both', got None"),
    (dict(cotangent=np.ones((60, 61)), wrt="z"), ValueError, r"wrt: expected .*got 'z'"),
])
def test_vjp_errors(kw, exc, msg):
    kw = dict(kw)
    c = kw.pop("cotangent")
    with pytest.raises(exc, match=msg):
        fastssim.pixelwise_ms_ssim_vjp(X, Y, c, data_range=1.0, **kw)


# ------------------------------------------------------ inputs and threads


# inputs never modified, workers bitwise (value and vjp), and the shared argument
# errors (shapes, complex input, data_range, workers): the entry-point table
# (entry_points.py), iterated by test_inputs.py, test_threads.py and test_errors.py


# -------------------------------------------------------------- invariants


@pytest.mark.parametrize("kw", [dict(), dict(border="valid"), dict(covariance="sample"),
                                dict(sigmas=SMALL, truncate=2.0)])
def test_identical_pair(kw):
    x, _ = pair((2, 60, 61), seed=304)
    r = fastssim.pixelwise_ms_ssim(x, x.copy(), data_range=1.0, full=True, gradient="both", **kw)
    np.testing.assert_allclose(r.map, 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.value, 1.0, rtol=0, atol=1e-12)
    assert np.abs(r.grad_x).max() <= 1e-12 and np.abs(r.grad_y).max() <= 1e-12


def test_symmetry_and_range():
    """P(x, y) = P(y, x) (every factor is symmetric), so grad_y(x, y) = grad_x(y, x); |P| <= 1."""
    x, y = pair((2, 60, 61), seed=305)
    a = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, gradient="both")
    b = fastssim.pixelwise_ms_ssim(y, x, data_range=1.0, full=True, gradient="both")
    np.testing.assert_allclose(a.map, b.map, rtol=0, atol=1e-15)
    scale = np.abs(a.grad_x).max()
    np.testing.assert_allclose(a.grad_y, b.grad_x, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(a.grad_x, b.grad_y, rtol=0, atol=1e-12 * scale)
    assert np.abs(a.map).max() <= 1.0


def test_value_is_the_mean_of_the_map():
    x, y = pair((2, 60, 63), seed=306)
    for border in ("reflect", "valid"):
        r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True, border=border)
        np.testing.assert_allclose(r.value, r.map.mean(axis=(-2, -1)), rtol=1e-13, atol=0)


def test_result_type():
    x, y = pair((60, 61), seed=307)
    assert isinstance(fastssim.pixelwise_ms_ssim(x, y, data_range=1.0), np.float64)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, gradient="x")
    assert isinstance(r, fastssim.PixelwiseResult)
    assert r._fields == ("value", "map", "grad_x", "grad_y")
    assert r.map is None and r.grad_y is None and r.grad_x.shape == x.shape
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True)
    assert r.grad_x is None and r.grad_y is None and r.map.shape == x.shape


# ------------------------------------------------------------------ shared h-lines
# On lines wider than the widest window's reach plus two vectors, the windows'
# filtered lines are made together (one load and add of each shifted pair for
# every window that reaches it); narrower images take the per-window path.
# Both must give the reference map and exact gradients.

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wide_lines_share_the_line_filter(dtype):
    x, y = pair((58, 150), dtype=dtype, seed=120)  # interior 150 - 2 * 28 = 94 columns
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, full=True)
    ref = ref_pixelwise(x.astype(np.float64), y.astype(np.float64), ZHAO_SIGMAS, data_range=1.0)
    if dtype == np.float64:
        _check_map(r.map, ref)
    else:
        np.testing.assert_allclose(r.map, ref, rtol=0, atol=ATOL32_MAP)  # measured 5.5e-7


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_wide_lines_gradient_vs_fd(border):
    x, y = pair((12, 64), seed=121)  # SMALL windows: a shared interior of >= 48 columns
    kw = dict(sigmas=SMALL, border=border)
    r = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, gradient="both", **kw)
    f = _pw(**kw)
    assert_grad_matches_fd(r.grad_x, central_fd(lambda a: f(a, y), x))
    assert_grad_matches_fd(r.grad_y, central_fd(lambda a: f(x, a), y))
