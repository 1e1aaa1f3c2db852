"""The batch-native ``fastssim.ssim``: invariants and its agreement with scikit-image.

References: scikit-image for values; otherwise the invariants the docstring
promises (one value per batch item, channel mean, 'valid' map = crop of the
'reflect' map, mean independent of ``border``, SSIM(x, x) = 1, symmetry).
Identical computations on identical data are compared to 1e-14 relative
(summation order may legitimately differ between paths); anything a bug
would produce differs by >= 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import pair

import fastssim
from fastssim import SSIMResult

skm = pytest.importorskip("skimage.metrics")
sk_ssim = skm.structural_similarity

TIGHT = dict(rtol=1e-14, atol=1e-15)


def test_default_value_is_float64_scalar():
    x, y = pair((32, 33))
    v = fastssim.ssim(x, y, data_range=1.0)
    assert type(v) is np.float64
    v32 = fastssim.ssim(x.astype(np.float32), y.astype(np.float32), data_range=1.0)
    assert type(v32) is np.float64


@pytest.mark.parametrize("dtype,ftype", [(np.float16, np.float32), (np.float32, np.float32),
                                         (np.float64, np.float64), (np.uint8, np.float64),
                                         (np.int32, np.float64), (np.bool_, np.float64)])
def test_compute_dtype_policy(dtype, ftype):
    """scikit-image's policy: float16/float32 -> float32, everything else -> float64."""
    x, y = pair((20, 21), dtype=dtype, seed=2)
    r = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="x")
    assert r.map.dtype == ftype and r.grad_x.dtype == ftype
    ref = fastssim.ssim(x.astype(ftype), y.astype(ftype), data_range=1.0, full=True,
                        gradient="x")
    np.testing.assert_array_equal(r.map, ref.map)
    np.testing.assert_array_equal(r.grad_x, ref.grad_x)


def test_mixed_dtypes_promote():
    x, y = pair((20, 21), seed=3)
    r = fastssim.ssim(x.astype(np.float32), y, data_range=1.0, full=True)
    assert r.map.dtype == np.float64


def test_result_fields():
    x, y = pair((32, 33))
    r = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="x")
    assert isinstance(r, SSIMResult)
    assert r.map.shape == x.shape and r.grad_x.shape == x.shape and r.grad_y is None
    r = fastssim.ssim(x, y, data_range=1.0, gradient="y")
    assert r.map is None and r.grad_x is None and r.grad_y.shape == x.shape
    r = fastssim.ssim(x.astype(np.float32), y.astype(np.float32), data_range=1.0, full=True,
                      gradient="both")
    assert r.map.dtype == r.grad_x.dtype == r.grad_y.dtype == np.float32
    assert type(r.value) is np.float64


# --------------------------------------------------------- vs scikit-image

@pytest.mark.parametrize("shape", [(31, 40), (64, 65), (12, 13, 14)])
@pytest.mark.parametrize("win", [3, 7])
@pytest.mark.parametrize("cov", ["population", "sample"])
def test_uniform_window_matches_skimage(shape, win, cov):
    x, y = pair(shape, seed=21)
    nd = len(shape)
    r = fastssim.ssim(x, y, data_range=1.0, window="uniform", win_size=win, covariance=cov,
                      full=True, spatial_dims=nd)
    m_sk, S_sk = sk_ssim(x, y, data_range=1.0, win_size=win, full=True,
                         use_sample_covariance=(cov == "sample"))
    np.testing.assert_allclose(r.value, m_sk, rtol=1e-12)
    np.testing.assert_allclose(r.map, S_sk, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(31, 40), (64, 65), (12, 13, 14)])
@pytest.mark.parametrize("sigma", [1.5, 1.0])
def test_gaussian_default_matches_wang_settings_in_skimage(shape, sigma):
    """fastssim's defaults = scikit-image with Wang et al.'s settings."""
    x, y = pair(shape, seed=22)
    r = fastssim.ssim(x, y, data_range=1.0, sigma=sigma, full=True, spatial_dims=len(shape))
    m_sk, S_sk = sk_ssim(x, y, data_range=1.0, gaussian_weights=True, sigma=sigma, full=True,
                         use_sample_covariance=False)
    np.testing.assert_allclose(r.value, m_sk, rtol=1e-12)
    np.testing.assert_allclose(r.map, S_sk, rtol=1e-12, atol=1e-14)


def test_K_constants_and_integer_default_range():
    x, y = pair((30, 31), dtype=np.uint8, seed=23)
    v = fastssim.ssim(x, y, K1=0.02, K2=0.05)  # data_range from uint8: 255
    m_sk = sk_ssim(x, y, K1=0.02, K2=0.05, gaussian_weights=True, use_sample_covariance=False)
    np.testing.assert_allclose(v, m_sk, rtol=1e-12)


def test_truncate_changes_taps():
    """truncate sets the radius int(truncate*sigma + 0.5), as scipy's gaussian_filter."""
    from scipy.ndimage import gaussian_filter

    x, y = pair((30, 31), seed=24)
    r = fastssim.ssim(x, y, data_range=1.0, truncate=2.0, full=True)
    # reference: the SSIM formula on scipy-filtered moments (truncate 2.0, reflect)
    f = lambda a: gaussian_filter(a, 1.5, truncate=2.0, mode="reflect")  # noqa: E731
    ux, uy = f(x), f(y)
    vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
    C1, C2 = 0.01**2, 0.03**2
    S = (2 * ux * uy + C1) * (2 * vxy + C2) / ((ux**2 + uy**2 + C1) * (vx + vy + C2))
    np.testing.assert_allclose(r.map, S, rtol=1e-12, atol=1e-14)
    r_ = int(2.0 * 1.5 + 0.5)
    np.testing.assert_allclose(r.value, S[r_:-r_, r_:-r_].mean(), rtol=1e-12)


# --------------------------------------------------------- batch semantics

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_items_equal_single_images(dtype):
    x, y = pair((3, 2, 20, 21), dtype=dtype, seed=31)
    r = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both")
    assert r.value.shape == (3, 2) and r.value.dtype == np.float64
    for idx in np.ndindex(3, 2):
        s = fastssim.ssim(x[idx], y[idx], data_range=1.0, full=True, gradient="both")
        np.testing.assert_allclose(r.value[idx], s.value, **TIGHT)
        np.testing.assert_array_equal(r.map[idx], s.map)
        np.testing.assert_array_equal(r.grad_x[idx], s.grad_x)
        np.testing.assert_array_equal(r.grad_y[idx], s.grad_y)
    v = fastssim.ssim(x, y, data_range=1.0)
    np.testing.assert_allclose(v, r.value, rtol=1e-6 if dtype == np.float32 else 1e-14)


def test_batch_of_volumes():
    x, y = pair((2, 9, 10, 11), seed=32)
    v = fastssim.ssim(x, y, data_range=1.0, window="uniform", win_size=3, spatial_dims=3)
    assert v.shape == (2,)
    for b in range(2):
        np.testing.assert_allclose(
            v[b], fastssim.ssim(x[b], y[b], data_range=1.0, window="uniform", win_size=3,
                                spatial_dims=3), **TIGHT)
    # spatial_dims=2 reads the same array as a batch of 2x9 images of 10x11
    v2 = fastssim.ssim(x, y, data_range=1.0, window="uniform", win_size=3)
    assert v2.shape == (2, 9)
    np.testing.assert_allclose(
        v2[1, 4], fastssim.ssim(x[1, 4], y[1, 4], data_range=1.0, window="uniform", win_size=3),
        **TIGHT)


@pytest.mark.parametrize("shape,axis", [((2, 20, 21, 3), -1), ((3, 2, 20, 21), 0),
                                        ((2, 3, 20, 21), 1), ((20, 3, 21), 1)])
def test_channel_axis_is_mean_of_channels(shape, axis):
    x, y = pair(shape, seed=33)
    r = fastssim.ssim(x, y, data_range=1.0, channel_axis=axis, full=True)
    xm = np.moveaxis(x, axis, -3)
    ym = np.moveaxis(y, axis, -3)
    per = fastssim.ssim(xm, ym, data_range=1.0)  # channels as a batch axis
    np.testing.assert_allclose(r.value, per.mean(axis=-1), **TIGHT)
    np.testing.assert_allclose(np.moveaxis(r.map, axis, -3),
                               fastssim.ssim(xm, ym, data_range=1.0, full=True).map, **TIGHT)
    assert r.map.shape == shape


def test_channel_axis_matches_skimage_multichannel():
    x, y = pair((24, 25, 3), seed=34)
    v = fastssim.ssim(x, y, data_range=1.0, channel_axis=-1)
    m_sk = sk_ssim(x, y, data_range=1.0, channel_axis=-1, gaussian_weights=True,
                   use_sample_covariance=False)
    np.testing.assert_allclose(v, m_sk, rtol=1e-12)


# --------------------------------------------------------- borders

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [dict(), dict(window="uniform", win_size=7),
                                dict(window="uniform", win_size=3, spatial_dims=3)])
def test_valid_map_is_crop_of_reflect_map_and_mean_independent_of_border(kw, dtype):
    shape = (12, 13, 14) if kw.get("spatial_dims") == 3 else (2, 30, 31)
    x, y = pair(shape, dtype=dtype, seed=41)
    nd = kw.get("spatial_dims", 2)
    r = 5 if not kw else (kw["win_size"] - 1) // 2
    full = fastssim.ssim(x, y, data_range=1.0, full=True, **kw)
    valid = fastssim.ssim(x, y, data_range=1.0, full=True, border="valid", **kw)
    crop = full.map[(Ellipsis,) + (slice(r, -r),) * nd]
    assert valid.map.shape == crop.shape
    # float32: the two paths may round the moments differently (the engine may
    # start its running sums at different columns); measured gaps ~1e-6 are
    # the size of float32's own error against float64 (test_ssim_values).
    tol = dict(rtol=0, atol=4e-6) if dtype == np.float32 else TIGHT
    np.testing.assert_allclose(valid.map, crop, **tol)
    np.testing.assert_allclose(valid.value, full.value, **tol)
    np.testing.assert_allclose(fastssim.ssim(x, y, data_range=1.0, border="valid", **kw),
                               fastssim.ssim(x, y, data_range=1.0, **kw), **tol)
    # and the value is the mean of the valid map
    np.testing.assert_allclose(
        valid.value, valid.map.astype(np.float64).mean(axis=tuple(range(-nd, 0))),
        rtol=1e-6 if dtype == np.float32 else 1e-13)


# --------------------------------------------------------- invariants

@pytest.mark.parametrize("kw", [dict(), dict(window="uniform", covariance="sample"),
                                dict(K1=0.0, K2=0.0)])
def test_self_similarity_is_one(kw):
    x, _ = pair((2, 30, 31), seed=51)
    r = fastssim.ssim(x, x.copy(), data_range=1.0, full=True, gradient="both", **kw)
    np.testing.assert_allclose(r.value, 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.map, 1.0, rtol=0, atol=1e-12)
    # SSIM(x, .) is maximal at y = x: the gradient vanishes there
    assert np.abs(r.grad_y).max() < 1e-12 and np.abs(r.grad_x).max() < 1e-12


def test_self_similarity_float32():
    x, _ = pair((30, 31), dtype=np.float32, seed=52)
    assert abs(fastssim.ssim(x, x, data_range=1.0) - 1.0) < 1e-6


@pytest.mark.parametrize("kw", [dict(), dict(window="uniform", covariance="sample"),
                                dict(border="valid")])
def test_symmetry(kw):
    x, y = pair((2, 30, 31), seed=53)
    a = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both", **kw)
    b = fastssim.ssim(y, x, data_range=1.0, full=True, gradient="both", **kw)
    np.testing.assert_allclose(a.value, b.value, **TIGHT)
    np.testing.assert_allclose(a.map, b.map, **TIGHT)
    np.testing.assert_allclose(a.grad_x, b.grad_y, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(a.grad_y, b.grad_x, rtol=1e-13, atol=1e-16)


def test_gradient_options_agree():
    """'x', 'y' and 'both' return the same arrays; the value and map do not depend on them."""
    x, y = pair((30, 31), seed=54)
    both = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both")
    gx = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="x")
    gy = fastssim.ssim(x, y, data_range=1.0, full=True, gradient="y")
    plain = fastssim.ssim(x, y, data_range=1.0, full=True)
    np.testing.assert_allclose(both.grad_x, gx.grad_x, rtol=1e-13, atol=1e-17)
    np.testing.assert_allclose(both.grad_y, gy.grad_y, rtol=1e-13, atol=1e-17)
    for r in (both, gx, gy):
        np.testing.assert_allclose(r.value, plain.value, **TIGHT)
        np.testing.assert_allclose(r.map, plain.map, **TIGHT)


def test_float32_gradient_close_to_float64():
    x, y = pair((30, 31), seed=55)
    g64 = fastssim.ssim(x, y, data_range=1.0, gradient="y").grad_y
    g32 = fastssim.ssim(x.astype(np.float32), y.astype(np.float32), data_range=1.0,
                        gradient="y").grad_y
    assert g32.dtype == np.float32
    # float32 rounding of O(1) moments: ~1e-5 of the gradient's scale
    np.testing.assert_allclose(g32, g64, rtol=0, atol=1e-4 * np.abs(g64).max())


def test_vjp_with_uniform_cotangent_is_the_gradient():
    """ssim's gradient is the VJP with w = 1/n_valid on the valid region, 0 outside."""
    x, y = pair((2, 30, 31), seed=56)
    r = fastssim.ssim(x, y, data_range=1.0, gradient="both")
    w = np.zeros_like(x)
    w[:, 5:-5, 5:-5] = 1.0 / (20 * 21)
    gx, gy = fastssim.ssim_vjp(x, y, w, wrt="both", data_range=1.0)
    np.testing.assert_allclose(gx, r.grad_x, rtol=1e-12, atol=1e-17)
    np.testing.assert_allclose(gy, r.grad_y, rtol=1e-12, atol=1e-17)
    wv = np.full((2, 20, 21), 1.0 / (20 * 21))
    gyv = fastssim.ssim_vjp(x, y, wv, wrt="y", data_range=1.0, border="valid")
    np.testing.assert_allclose(gyv, r.grad_y, rtol=1e-12, atol=1e-17)


def test_vjp_is_linear_in_the_cotangent():
    x, y = pair((25, 26), seed=57)
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((2, 25, 26))
    g = lambda w: fastssim.ssim_vjp(x, y, w, wrt="x", data_range=1.0)  # noqa: E731
    np.testing.assert_allclose(g(2 * w1 - 3 * w2), 2 * g(w1) - 3 * g(w2), rtol=1e-11,
                               atol=1e-14 * np.abs(g(w1)).max())


def test_vjp_integer_cotangent_and_channel_axis():
    x, y = pair((20, 21, 3), seed=58)
    w = np.ones((20, 21, 3), dtype=np.int64)
    g = fastssim.ssim_vjp(x, y, w, wrt="y", data_range=1.0, channel_axis=-1)
    g_ref = fastssim.ssim_vjp(x, y, w.astype(np.float64), wrt="y", data_range=1.0,
                              channel_axis=-1)
    assert g.shape == x.shape
    np.testing.assert_array_equal(g, g_ref)
