"""fastssim.losses: values and maps, gradients w.r.t. the prediction, the l1 kink, errors.

Reference values: direct NumPy formulas for l1 / l2; for the SSIM-based
losses the independent float64 SciPy reimplementation in
``pixelwise_reference`` (see test_pixelwise.py) of the SSIM map, the
per-pixel MS-SSIM map P and the Mix map alpha (1 - P) + (1 - alpha) G_M * |p - t|;
``ms_ssim`` (no per-pixel form) against 1 - fastssim.ms_ssim, which
tests/test_msssim*.py pin to frozen reference values.

Tolerances as in test_pixelwise.py: float64 maps rtol 1e-12 + atol 1e-14
(absolute rounding error of a few ulp of 1, entries cross zero), means
rtol 1e-12; float32 maps atol 1e-5 and means 1e-7 (measured <= 5.2e-6 and
6e-9; why, in test_pixelwise.py).  Gradients: central
differences (h = 1e-6) at every pixel, ``FD_REL`` = 1e-6 of max|grad|
(measured ~3e-9), except at l1's kink (see test_l1_kink).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_grad_matches_fd, central_fd, fd_grad, pair
from pixelwise_reference import crop, planes_apply, ref_mix_map, ref_pixelwise, ref_ssim_map

import fastssim
from fastssim import losses
from fastssim._pixelwise import ZHAO_SIGMAS

RTOL64, ATOL64 = 1e-12, 1e-14
ATOL32, ATOL32_MEAN = 1e-5, 1e-7
SMALL = (0.5, 1.0, 1.5)
ALPHAS = [0.0, 0.3, 0.84, 1.0]

# the keyword arguments each loss needs for a float pair in [0, 1]
NEEDS = {
    "l1": dict(),
    "l2": dict(),
    "ssim": dict(data_range=1.0),
    "ms_ssim": dict(data_range=1.0),
    "pixelwise_ms_ssim": dict(data_range=1.0),
    "mix": dict(data_range=1.0),
}
SSIM_BASED = ["ssim", "ms_ssim", "pixelwise_ms_ssim", "mix"]


def _loss(name):
    return getattr(losses, name)


def _away_pair(shape, seed):
    """A pair with |p - t| >= 0.05 everywhere: far from l1's kink for FD with h = 1e-6."""
    rng = np.random.default_rng(seed)
    t = rng.random(shape)
    d = rng.choice([-1.0, 1.0], size=shape) * (0.05 + 0.2 * rng.random(shape))
    return t + d, t


def _kinked_pair(shape, seed):
    """|p - t| >= 0.05 except on a mask (borders included) where p == t exactly."""
    p, t = _away_pair(shape, seed)
    mask = np.zeros(shape, dtype=bool)
    mask[::4, ::3] = True
    mask[-1, :] = True
    p[mask] = t[mask]
    return p, t, mask


# ---------------------------------------------------------------- l1 / l2


@pytest.mark.parametrize("shape,kw,axes", [
    ((12, 13), dict(), (0, 1)),
    ((3, 12, 13), dict(), (1, 2)),
    ((2, 12, 13, 3), dict(channel_axis=-1), (1, 2, 3)),
    ((2, 3, 12, 13), dict(channel_axis=1), (1, 2, 3)),
    ((2, 5, 6, 7), dict(spatial_dims=3), (1, 2, 3)),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_l1_l2_against_numpy(shape, kw, axes, dtype):
    p, t = pair(shape, dtype=dtype, seed=1)
    d = p.astype(np.float64) - t.astype(np.float64)
    n = np.prod([shape[a] for a in axes])
    r1 = losses.l1(p, t, gradient=True, full=True, **kw)
    r2 = losses.l2(p, t, gradient=True, full=True, **kw)
    rtol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(r1.value, np.abs(d).mean(axis=axes), rtol=rtol)
    np.testing.assert_allclose(r2.value, (d * d).mean(axis=axes), rtol=rtol)
    for r in (r1, r2):
        assert r.grad.dtype == r.map.dtype == dtype and r.grad.shape == r.map.shape == shape
        assert np.asarray(r.value).dtype == np.float64
        assert np.shape(r.value) == (() if len(shape) == len(axes) else (shape[0],))
    np.testing.assert_allclose(r1.map, np.abs(d), rtol=rtol)
    np.testing.assert_allclose(r1.grad, np.sign(d) / n, rtol=rtol)
    np.testing.assert_allclose(r2.map, d * d, rtol=rtol)
    np.testing.assert_allclose(r2.grad, 2 * d / n, rtol=rtol)


def test_l1_l2_integer_input_does_not_wrap():
    p = np.array([[0, 255], [10, 20]], dtype=np.uint8)
    t = np.array([[255, 0], [20, 10]], dtype=np.uint8)
    assert losses.l1(p, t) == pytest.approx((255 + 255 + 10 + 10) / 4)
    assert losses.l2(p, t) == pytest.approx((2 * 255**2 + 200) / 4)


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_l1_l2_gradient_vs_fd(name):
    p, t = _away_pair((2, 6, 7), seed=2)  # away from l1's kink (see test_l1_kink)
    r = _loss(name)(p, t, gradient=True)
    fd = central_fd(lambda a: np.sum(_loss(name)(a, t)), p)
    assert_grad_matches_fd(r.grad, fd)


# ---------------------------------------------------------- SSIM-based maps


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ssim_loss_map_and_value(border, dtype):
    p, t = pair((2, 30, 31), dtype=dtype, seed=3)
    r = losses.ssim(p, t, data_range=1.0, full=True, border=border)
    ref = 1.0 - ref_ssim_map(p, t, 1.5, data_range=1.0)  # default: Gaussian sigma 1.5
    valid = crop(ref, 1.5)
    if border == "valid":
        ref = valid
    rtol, atol = (RTOL64, ATOL64) if dtype == np.float64 else (0, ATOL32)
    np.testing.assert_allclose(r.map, ref, rtol=rtol, atol=atol)
    assert r.map.dtype == dtype
    # the loss is 1 - SSIM's mean over the pixels where the window fits (even for 'reflect')
    np.testing.assert_allclose(r.value, valid.mean(axis=(-2, -1)), rtol=rtol,
                               atol=ATOL64 if dtype == np.float64 else ATOL32_MEAN)


@pytest.mark.parametrize("kw", [dict(), dict(border="valid"), dict(covariance="sample"),
                                dict(sigmas=SMALL, truncate=2.0, K1=0.02)])
def test_pixelwise_loss_map_and_value(kw):
    p, t = pair((2, 60, 61), seed=4)
    kw = dict(kw)
    sig = kw.pop("sigmas", ZHAO_SIGMAS)
    border = kw.pop("border", "reflect")
    r = losses.pixelwise_ms_ssim(p, t, data_range=1.0, sigmas=sig, border=border, full=True, **kw)
    ref = 1.0 - ref_pixelwise(p, t, sig, data_range=1.0, **kw)
    if border == "valid":
        ref = crop(ref, sig[-1], kw.get("truncate", 3.5))
    np.testing.assert_allclose(r.map, ref, rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(r.value, ref.mean(axis=(-2, -1)), rtol=RTOL64)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("kw", [dict(), dict(border="valid"), dict(covariance="sample", sigmas=SMALL),
                                dict(sigmas=(0.5, 2.0), truncate=2.0, K2=0.05)])
def test_mix_map_and_value(kw, alpha):
    p, t = pair((2, 60, 61), seed=5)
    kw = dict(kw)
    sig = kw.pop("sigmas", ZHAO_SIGMAS)
    border = kw.pop("border", "reflect")
    r = losses.mix(p, t, alpha=alpha, data_range=1.0, sigmas=sig, border=border, full=True, **kw)
    ref = ref_mix_map(p, t, sig, alpha=alpha, data_range=1.0, **kw)
    if border == "valid":
        ref = crop(ref, sig[-1], kw.get("truncate", 3.5))
    np.testing.assert_allclose(r.map, ref, rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(r.value, ref.mean(axis=(-2, -1)), rtol=RTOL64)


def test_mix_default_alpha_is_the_papers():
    p, t = pair((60, 61), seed=6)
    np.testing.assert_allclose(losses.mix(p, t, data_range=1.0),
                               losses.mix(p, t, alpha=0.84, data_range=1.0), rtol=0, atol=0)


@pytest.mark.parametrize("cax", [-1, 0])
def test_mix_channel_axis(cax):
    shape = (60, 61, 3) if cax == -1 else (3, 60, 61)
    p, t = pair(shape, seed=7)
    r = losses.mix(p, t, data_range=1.0, full=True, channel_axis=cax)
    ref = planes_apply(lambda a, b: ref_mix_map(a, b, ZHAO_SIGMAS, alpha=0.84, data_range=1.0),
                       p, t, cax)
    np.testing.assert_allclose(r.map, ref, rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(r.value, ref.mean(), rtol=RTOL64)


def test_mix_volume():
    p, t = pair((11, 12, 13), seed=8)
    sig = (0.5, 1.0)
    r = losses.mix(p, t, data_range=1.0, sigmas=sig, spatial_dims=3, full=True)
    ref = ref_mix_map(p, t, sig, alpha=0.84, data_range=1.0, nd=3)
    np.testing.assert_allclose(r.map, ref, rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(r.value, ref.mean(), rtol=RTOL64)


@pytest.mark.parametrize("name", ["pixelwise_ms_ssim", "mix"])
def test_float32_maps(name):
    p, t = pair((2, 60, 61), dtype=np.float32, seed=9)
    r = _loss(name)(p, t, data_range=1.0, full=True, gradient=True)
    assert r.map.dtype == r.grad.dtype == np.float32
    if name == "mix":
        ref = ref_mix_map(p, t, ZHAO_SIGMAS, alpha=0.84, data_range=1.0)
    else:
        ref = 1.0 - ref_pixelwise(p, t, ZHAO_SIGMAS, data_range=1.0)
    np.testing.assert_allclose(r.map, ref, rtol=0, atol=ATOL32)
    np.testing.assert_allclose(r.value, ref.mean(axis=(-2, -1)), rtol=0, atol=ATOL32_MEAN)


# ----------------------------------------------- agreement with the metrics


@pytest.mark.parametrize("kw", [dict(), dict(border="valid", sigma=1.0), dict(window="uniform")])
def test_ssim_loss_is_one_minus_ssim(kw):
    p, t = pair((2, 30, 31), seed=10)
    r = losses.ssim(p, t, data_range=1.0, gradient=True, full=True, **kw)
    s = fastssim.ssim(p, t, data_range=1.0, gradient="x", full=True, **kw)
    np.testing.assert_array_equal(r.value, 1.0 - s.value)
    np.testing.assert_array_equal(r.grad, -s.grad_x)
    np.testing.assert_array_equal(r.map, 1.0 - s.map)
    # the value-only call takes another engine path: the same number to rounding
    np.testing.assert_allclose(losses.ssim(p, t, data_range=1.0, **kw), 1.0 - s.value, rtol=1e-14)


@pytest.mark.parametrize("kw", [dict(), dict(weights=(0.4, 0.6), sigma=1.0, negative="simple")])
def test_ms_ssim_loss_is_one_minus_ms_ssim(kw):
    p, t = pair((2, 176, 180), seed=11)
    r = losses.ms_ssim(p, t, data_range=1.0, gradient=True, full=True, **kw)
    m = fastssim.ms_ssim(p, t, data_range=1.0, gradient="x", **kw)
    np.testing.assert_array_equal(r.value, 1.0 - m.value)
    np.testing.assert_array_equal(r.grad, -m.grad_x)
    assert r.map is None  # the pyramid MS-SSIM has no per-pixel form
    m0 = fastssim.ms_ssim(p, t, data_range=1.0, **kw)  # value-only path
    np.testing.assert_array_equal(losses.ms_ssim(p, t, data_range=1.0, **kw), 1.0 - m0)
    r = losses.ms_ssim(p, t, data_range=1.0, full=True, **kw)
    assert r.grad is None and r.map is None
    np.testing.assert_array_equal(r.value, 1.0 - m0)
    np.testing.assert_allclose(m0, m.value, rtol=1e-14)


def test_pixelwise_loss_is_one_minus_pixelwise():
    p, t = pair((2, 60, 61), seed=12)
    r = losses.pixelwise_ms_ssim(p, t, data_range=1.0, gradient=True, full=True)
    m = fastssim.pixelwise_ms_ssim(p, t, data_range=1.0, gradient="x", full=True)
    np.testing.assert_array_equal(r.value, 1.0 - m.value)
    np.testing.assert_array_equal(r.grad, -m.grad_x)
    np.testing.assert_array_equal(r.map, 1.0 - m.map)


def test_mix_endpoints():
    """alpha = 1 is the per-pixel MS-SSIM loss; alpha = 0 the Gaussian-filtered l1."""
    p, t = pair((2, 60, 61), seed=13)
    m1 = losses.mix(p, t, alpha=1.0, data_range=1.0, gradient=True, full=True)
    pw = losses.pixelwise_ms_ssim(p, t, data_range=1.0, gradient=True, full=True)
    np.testing.assert_allclose(m1.value, pw.value, rtol=1e-14)
    np.testing.assert_allclose(m1.grad, pw.grad, rtol=0, atol=1e-15 * np.abs(pw.grad).max())
    np.testing.assert_allclose(m1.map, pw.map, rtol=0, atol=1e-15)
    m0 = losses.mix(p, t, alpha=0.0, data_range=1.0, full=True)
    from pixelwise_reference import ref_l1_filtered
    np.testing.assert_allclose(m0.map, ref_l1_filtered(p, t, 8.0), rtol=RTOL64, atol=ATOL64)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_ssim_loss_gradient_vs_fd(border):
    p, t = pair((12, 13), seed=20)
    kw = dict(data_range=1.0, sigma=1.0, border=border)
    r = losses.ssim(p, t, gradient=True, **kw)
    assert_grad_matches_fd(r.grad, fd_grad(losses.ssim, p, t, "x", **kw))


def test_ms_ssim_loss_gradient_vs_fd():
    p, t = pair((18, 19), seed=21, corr=0.7)
    kw = dict(data_range=1.0, sigma=1.0, weights=(0.4, 0.6))
    r = losses.ms_ssim(p, t, gradient=True, **kw)
    assert_grad_matches_fd(r.grad, fd_grad(losses.ms_ssim, p, t, "x", **kw))


@pytest.mark.parametrize("kw", [dict(), dict(border="valid"), dict(covariance="sample")])
def test_pixelwise_loss_gradient_vs_fd(kw):
    p, t = pair((14, 15), seed=22)
    kw = dict(data_range=1.0, sigmas=SMALL, **kw)
    r = losses.pixelwise_ms_ssim(p, t, gradient=True, **kw)
    assert_grad_matches_fd(r.grad, fd_grad(losses.pixelwise_ms_ssim, p, t, "x", **kw))


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_mix_gradient_vs_fd(alpha, border):
    p, t = _away_pair((14, 15), seed=23)
    kw = dict(data_range=1.0, sigmas=SMALL, alpha=alpha, border=border)
    r = losses.mix(p, t, gradient=True, **kw)
    assert r.grad.shape == p.shape and r.map is None
    assert_grad_matches_fd(r.grad, fd_grad(losses.mix, p, t, "x", **kw))


def test_mix_gradient_default_sigmas_truncate1():
    p, t = _away_pair((20, 20), seed=24)
    kw = dict(data_range=1.0, truncate=1.0)
    r = losses.mix(p, t, gradient=True, **kw)
    assert_grad_matches_fd(r.grad, fd_grad(losses.mix, p, t, "x", **kw))


@pytest.mark.parametrize("spatial", [(30, 33), (9, 10, 11)])
def test_windowed_mean_gradient_is_the_adjoint_alone(spatial):
    # Mix's l1 term is a windowed mean G * |p - t| (the engine's "mean" form):
    # the gradient of sum_p w(p) (G*a)(p) is G^T w, whatever a holds.  An Inf
    # in a used to become a NaN (Inf * 0 from second moments the mean does
    # not have).  References: the same call on the finite input (G^T w does
    # not depend on a), and G^T w from scipy's reflect filter of one-hot lines.
    from fastssim import _core
    from fastssim._bands import gaussian_taps
    rng = np.random.default_rng(3)
    a = rng.random(spatial)
    taps = gaussian_taps(1.5)
    region = tuple((0, n) for n in spatial)
    sreg = tuple((3, n - 5) for n in spatial)  # w = 1 on a crop: G^T w is not trivial
    kw = dict(taps=taps, map_region=region, sum_region=sreg, form="mean", C1=0.0, C2=0.0,
              want_map=False, grad=1, wscal=1.0, workers=2)
    ref = _core.run(a[None], a[None], **kw)[2]
    b = a.copy()
    b[(0,) * len(spatial)] = np.inf
    got = _core.run(b[None], b[None], **kw)[2]
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, ref)
    # and G^T w is, per axis, the sums over the crop's outputs of scipy's
    # reflect filter of each one-hot line (an outer product of the axes' sums)
    from scipy.ndimage import correlate1d
    colsums = [correlate1d(np.eye(n), np.asarray(taps), axis=1, mode="reflect")[:, 3:n - 5].sum(1)
               for n in spatial]
    expect = colsums[0]
    for c in colsums[1:]:
        expect = np.multiply.outer(expect, c)
    np.testing.assert_allclose(ref[0], expect, rtol=1e-13)


@pytest.mark.parametrize("name", ["l1", "l2", "ssim", "pixelwise_ms_ssim", "mix"])
def test_batch_gradient_is_per_item(name):
    """Item b's slice of ``grad`` is the gradient of item b's loss (and of nothing else)."""
    p, t = _away_pair((2, 12, 13, 2), seed=25)
    kw = dict(NEEDS[name], channel_axis=-1)
    if name in ("pixelwise_ms_ssim", "mix"):
        kw["sigmas"] = (0.5, 1.0)
    if name == "ssim":
        kw["sigma"] = 1.0
    f = _loss(name)
    r = f(p, t, gradient=True, **kw)
    assert r.value.shape == (2,)
    fd = central_fd(lambda a: f(a, t, **kw), p)  # p.shape + (2,)
    for b in range(2):
        assert_grad_matches_fd(r.grad[b], fd[b, ..., b])
        assert np.abs(fd[1 - b, ..., b]).max() == 0


# ---------------------------------------------------------------- the kink


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_l1_kink(alpha, border):
    """sign(0) = 0: at p == t, l1's gradient and Mix's l1 part are exactly 0.

    The finite-difference check runs only away from the kink: |d| is
    piecewise linear, and a central difference at a pixel with |p - t| < h
    straddles the kink, measuring a chord slope that is no derivative (at
    p == t exactly it is 0 by symmetry, which agrees with sign(0) = 0 only
    by convention, not as a check of the code).  Elsewhere |p - t| >= 0.05
    >> h, so both probes stay on one side of the kink.
    """
    p, t, mask = _kinked_pair((14, 15), seed=26)
    assert np.all(p[mask] == t[mask]) and np.abs(p - t)[~mask].min() >= 0.05
    if alpha == 0.0 and border == "reflect":
        r = losses.l1(p, t, gradient=True, full=True)
        assert np.all(r.grad[mask] == 0.0) and np.all(r.map[mask] == 0.0)
        np.testing.assert_array_equal(r.grad[~mask], np.sign(p - t)[~mask] / p.size)
        fd = central_fd(lambda a: losses.l1(a, t), p)
        assert_grad_matches_fd(r.grad[~mask], fd[~mask])
    kw = dict(data_range=1.0, sigmas=SMALL, border=border)
    r = losses.mix(p, t, alpha=alpha, gradient=True, **kw)
    pw = losses.pixelwise_ms_ssim(p, t, gradient=True, **kw)
    # at the kink only the (1 - P) part remains: grad = alpha * d(1 - mean P)/dp
    if alpha == 0.0:
        assert np.all(r.grad[mask] == 0.0)
    np.testing.assert_allclose(r.grad[mask], alpha * pw.grad[mask], rtol=0,
                               atol=1e-14 * np.abs(pw.grad).max())
    fd = fd_grad(losses.mix, p, t, "x", alpha=alpha, **kw)
    assert_grad_matches_fd(r.grad[~mask], fd[~mask])


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("name", list(NEEDS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_identical_pair_is_zero(name, dtype):
    shape = (2, 176, 180) if name == "ms_ssim" else (2, 60, 61)
    x, _ = pair(shape, dtype=dtype, seed=30)
    r = _loss(name)(x, x.copy(), gradient=True, full=True, **NEEDS[name])
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(r.value, 0.0, rtol=0, atol=tol)
    assert np.abs(r.grad).max() <= tol
    if r.map is not None:
        assert np.abs(r.map).max() <= tol


@pytest.mark.parametrize("alpha", ALPHAS)
def test_identical_pair_mix(alpha):
    x, _ = pair((60, 61), seed=31)
    r = losses.mix(x, x, alpha=alpha, data_range=1.0, gradient=True, full=True, border="valid")
    assert abs(r.value) <= 1e-12 and np.abs(r.grad).max() <= 1e-12 and np.abs(r.map).max() <= 1e-12


@pytest.mark.parametrize("name,kw", [
    ("l1", dict()), ("l2", dict()),
    ("pixelwise_ms_ssim", dict(border="reflect")), ("pixelwise_ms_ssim", dict(border="valid")),
    ("mix", dict(border="reflect")), ("mix", dict(border="valid")),
])
def test_maps_average_to_the_loss(name, kw):
    p, t = pair((2, 60, 63), seed=32)
    r = _loss(name)(p, t, full=True, **NEEDS[name], **kw)
    np.testing.assert_allclose(r.value, r.map.mean(axis=(-2, -1)), rtol=1e-13)


@pytest.mark.parametrize("border", ["reflect", "valid"])
def test_ssim_map_averages_to_the_loss_over_the_valid_crop(border):
    """losses.ssim keeps fastssim.ssim's value: the mean over the pixels where the window fits."""
    p, t = pair((2, 40, 43), seed=33)
    r = losses.ssim(p, t, data_range=1.0, full=True, border=border)
    m = r.map if border == "valid" else crop(r.map, 1.5)
    np.testing.assert_allclose(r.value, m.mean(axis=(-2, -1)), rtol=1e-13)


@pytest.mark.parametrize("name", list(NEEDS))
def test_loss_result(name):
    shape = (176, 180) if name == "ms_ssim" else (60, 61)
    p, t = pair(shape, seed=34)
    f = _loss(name)
    v = f(p, t, **NEEDS[name])
    assert isinstance(v, (float, np.floating)) and not isinstance(v, tuple)
    r = f(p, t, gradient=True, full=True, **NEEDS[name])
    assert isinstance(r, losses.LossResult) and r._fields == ("value", "grad", "map")
    assert r.value == v and r.grad.shape == p.shape
    assert (r.map is None) == (name == "ms_ssim")
    r = f(p, t, gradient=True, **NEEDS[name])
    assert r.map is None and r.grad.shape == p.shape and r.value == v
    r = f(p, t, full=True, **NEEDS[name])
    assert r.grad is None and r.value == v
    r = f(p, t, gradient=np.True_, full=np.False_, **NEEDS[name])  # NumPy bools are bools
    assert r.grad is not None and r.map is None


# ------------------------------------------------------------------ errors

P, T = pair((60, 61), seed=40)


@pytest.mark.parametrize("name", list(NEEDS))
@pytest.mark.parametrize("flag", ["gradient", "full"])
@pytest.mark.parametrize("bad", ["x", 1, None, "both"])
def test_flags_must_be_bool(name, flag, bad):
    with pytest.raises(TypeError, match=rf"{flag}: expected a bool, got {bad!r}"):
        _loss(name)(P, T, **{flag: bad}, **NEEDS[name])





@pytest.mark.parametrize("bad,exc,msg", [
    (-0.1, ValueError, r"alpha: expected a number in \[0, 1\], got -0\.1"),
    (1.5, ValueError, r"alpha: expected a number in \[0, 1\], got 1\.5"),
    (float("nan"), ValueError, r"alpha: expected a number in \[0, 1\], got nan"),
    (np.inf, ValueError, r"alpha: expected a number in \[0, 1\], got inf"),
    ("0.5", TypeError, r"alpha: expected a number in \[0, 1\], got '0\.5'"),
    (None, TypeError, r"alpha: expected a number in \[0, 1\], got None"),
    (True, TypeError, r"alpha: expected a number in \[0, 1\], got True"),
    ([0.5], TypeError, r"alpha: expected a number in \[0, 1\], got \[0\.5\]"),
])
def test_alpha_errors(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        losses.mix(P, T, alpha=bad, data_range=1.0)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(sigmas=(0.0, 1.0)), ValueError, r"sigmas: expected positive finite widths"),
    (dict(sigmas=(1.0, float("nan"))), ValueError, r"sigmas: expected positive finite widths"),
    (dict(sigmas=(2.0, 1.0)), ValueError, r"sigmas: expected strictly increasing widths"),
    (dict(sigmas=(1.0, 1.0)), ValueError, r"sigmas: expected strictly increasing widths"),
    (dict(sigmas=()), ValueError, r"sigmas: expected at least one Gaussian width"),
    (dict(sigmas="wide"), TypeError, r"sigmas: expected a sequence of positive numbers"),
    (dict(sigmas=(1.0, 9.0)), ValueError,
     r"sigmas: the widest window \(sigma=9, 65 taps at truncate=3\.5\) exceeds the image: "
     r"spatial shape \(60, 61\); every side needs at least 65 px"),
    (dict(border="same"), ValueError, r"border: expected 'reflect' or 'valid', got 'same'"),
    (dict(covariance="x"), ValueError, r"covariance: expected 'population' or 'sample'"),
    (dict(sigmas=(0.5, 2.0), truncate=0.9, covariance="sample"), ValueError,
     r"covariance='sample' needs windows of more than one sample: sigma=0\.5 has 1 tap"),
])
@pytest.mark.parametrize("name", ["pixelwise_ms_ssim", "mix"])
def test_window_errors(name, kw, exc, msg):
    with pytest.raises(exc, match=msg):
        _loss(name)(P, T, data_range=1.0, **kw)


# ------------------------------------------------------- inputs and threads
# Inputs never modified, workers bitwise and the shared argument errors (shapes,
# dtypes, data_range) of every loss: the entry-point table (entry_points.py),
# iterated by test_inputs.py, test_threads.py and test_errors.py.


def test_ms_ssim_loss_rejects_return_scales():
    """The loss has no per-scale output; the message points to fastssim.ms_ssim."""
    x, y = pair((170, 170), seed=950)
    with pytest.raises(TypeError, match="return_scales is not a loss option"):
        losses.ms_ssim(x, y, data_range=1.0, return_scales=True)


def test_zhao_sigmas_exported():
    assert fastssim.ZHAO_SIGMAS == (0.5, 1.0, 2.0, 4.0, 8.0)
