"""Gradients against central finite differences (float64), at every pixel.

Reference: central differences (h = 1e-6) of the very value the call
returns, at *every* pixel of small images — border pixels included, which is
where a missed reflection fold, crop or covariance factor shows up.  Tolerance
``FD_REL`` (helpers): 1e-6 of max|grad|; measured errors are ~1e-9.

Also: scikit-image's own ``grad`` reproduced with :func:`fastssim.ssim_vjp`,
and fastssim's drop-in gradient checked against differences of
scikit-image's own ``mssim``.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import FD_REL, assert_grad_matches_fd, border_mask, central_fd, fd_grad, pair

import fastssim

# Small windows keep the images (and so the number of FD evaluations) small:
# a 9-tap Gaussian (sigma 1.0) or a 3-tap box on 12x13 images.
WINDOWS = {
    "gauss1": dict(window="gaussian", sigma=1.0),
    "box3": dict(window="uniform", win_size=3),
}


@pytest.mark.parametrize("wname", list(WINDOWS))
@pytest.mark.parametrize("cov", ["population", "sample"])
@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("gradient", ["x", "y", "both"])
def test_ssim_gradient_vs_fd(gradient, border, cov, wname):
    x, y = pair((12, 13), seed=101)
    kw = dict(data_range=1.0, covariance=cov, border=border, **WINDOWS[wname])
    r = fastssim.ssim(x, y, gradient=gradient, **kw)
    if gradient in ("x", "both"):
        fd = fd_grad(fastssim.ssim, x, y, "x", **kw)
        assert_grad_matches_fd(r.grad_x, fd)
        # border pixels explicitly: they are read by the crop's edge windows
        edge = border_mask(x.shape, 2)
        scale = np.abs(fd).max()
        assert np.abs(fd[edge]).max() > 1e-3 * scale
        np.testing.assert_allclose(r.grad_x[edge], fd[edge], rtol=0, atol=FD_REL * scale)
    else:
        assert r.grad_x is None
    if gradient in ("y", "both"):
        fd = fd_grad(fastssim.ssim, x, y, "y", **kw)
        assert_grad_matches_fd(r.grad_y, fd)
    else:
        assert r.grad_y is None


@pytest.mark.parametrize("axis", [-1, 0])
def test_ssim_gradient_channel_axis_vs_fd(axis):
    shape = (10, 11, 2) if axis == -1 else (2, 10, 11)
    x, y = pair(shape, seed=102)
    kw = dict(data_range=1.0, channel_axis=axis, covariance="sample", **WINDOWS["box3"])
    r = fastssim.ssim(x, y, gradient="both", **kw)
    assert_grad_matches_fd(r.grad_x, central_fd(lambda a: fastssim.ssim(a, y, **kw), x))
    assert_grad_matches_fd(r.grad_y, central_fd(lambda a: fastssim.ssim(x, a, **kw), y))


@pytest.mark.parametrize("kw", [dict(window="uniform", win_size=3),
                                dict(window="gaussian", sigma=0.6, border="valid")])
def test_ssim_gradient_volume_vs_fd(kw):
    x, y = pair((6, 7, 8), seed=103)
    kw = dict(data_range=1.0, spatial_dims=3, **kw)
    r = fastssim.ssim(x, y, gradient="both", **kw)
    assert_grad_matches_fd(r.grad_x, fd_grad(fastssim.ssim, x, y, "x", **kw))
    assert_grad_matches_fd(r.grad_y, fd_grad(fastssim.ssim, x, y, "y", **kw))


def test_ssim_gradient_batch_vs_fd():
    """Each item's value depends on its own pixels only: the Jacobian is block-diagonal."""
    x, y = pair((2, 9, 10), seed=104)
    kw = dict(data_range=1.0, **WINDOWS["box3"])
    r = fastssim.ssim(x, y, gradient="both", **kw)
    for g, fd in ((r.grad_x, fd_grad(fastssim.ssim, x, y, "x", **kw)),
                  (r.grad_y, fd_grad(fastssim.ssim, x, y, "y", **kw))):
        assert fd.shape == (2, 9, 10, 2)
        for b in range(2):
            assert_grad_matches_fd(g[b], fd[b, ..., b])
            assert np.all(fd[1 - b, ..., b] == 0.0)


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("wname", list(WINDOWS))
def test_vjp_random_cotangent_vs_fd(border, wname):
    x, y = pair((12, 13), seed=105)
    kw = dict(data_range=1.0, border=border, covariance="sample", **WINDOWS[wname])
    mshape = fastssim.ssim(x, y, full=True, **kw).map.shape
    w = np.random.default_rng(7).standard_normal(mshape)
    gx, gy = fastssim.ssim_vjp(x, y, w, wrt="both", **kw)

    def f(a, b):
        return np.sum(w * fastssim.ssim(a, b, full=True, **kw).map)

    assert_grad_matches_fd(gx, central_fd(lambda a: f(a, y), x))
    assert_grad_matches_fd(gy, central_fd(lambda a: f(x, a), y))
    np.testing.assert_array_equal(fastssim.ssim_vjp(x, y, w, wrt="x", **kw), gx)
    np.testing.assert_array_equal(fastssim.ssim_vjp(x, y, w, wrt="y", **kw), gy)


def test_vjp_channel_axis_vs_fd():
    x, y = pair((9, 10, 2), seed=106)
    kw = dict(data_range=1.0, channel_axis=-1, **WINDOWS["box3"])
    w = np.random.default_rng(8).standard_normal(x.shape)
    g = fastssim.ssim_vjp(x, y, w, wrt="y", **kw)
    fd = central_fd(lambda a: np.sum(w * fastssim.ssim(x, a, full=True, **kw).map), y)
    assert_grad_matches_fd(g, fd)


# ------------------------------------------------ drop-in, gradient=True

DROPIN = [
    dict(gaussian_weights=True, sigma=1.0),
    dict(gaussian_weights=True, sigma=1.0, use_sample_covariance=False),
    dict(win_size=3),
    dict(win_size=5, use_sample_covariance=False),
    dict(gaussian_weights=True, sigma=1.0, win_size=5),  # crop by win_size, 9-tap filter
]


@pytest.mark.parametrize("kw", DROPIN)
def test_dropin_gradient_is_gradient_of_mssim(kw):
    """gradient=True: the exact gradient of the returned mssim with respect to im2."""
    x, y = pair((12, 13), seed=107)
    m, g = fastssim.structural_similarity(x, y, data_range=1.0, gradient=True, **kw)
    fd = central_fd(lambda a: fastssim.structural_similarity(x, a, data_range=1.0, **kw), y)
    assert_grad_matches_fd(g, fd)


@pytest.mark.parametrize("axis", [-1, 0])
def test_dropin_gradient_channel_axis(axis):
    shape = (10, 11, 3) if axis == -1 else (3, 10, 11)
    x, y = pair(shape, seed=108)
    kw = dict(data_range=1.0, channel_axis=axis, win_size=3)
    m, g = fastssim.structural_similarity(x, y, gradient=True, **kw)
    fd = central_fd(lambda a: fastssim.structural_similarity(x, a, **kw), y)
    assert_grad_matches_fd(g, fd)


def test_dropin_gradient_volume():
    x, y = pair((6, 7, 8), seed=109)
    kw = dict(data_range=1.0, win_size=3)
    m, g = fastssim.structural_similarity(x, y, gradient=True, **kw)
    assert_grad_matches_fd(g, central_fd(lambda a: fastssim.structural_similarity(x, a, **kw), y))


# ------------------------------------------------ scikit-image's own grad

def test_dropin_gradient_is_gradient_of_skimage_mssim():
    """Differences of *scikit-image's* mssim (fastssim's values equal it) give fastssim's grad.

    Default options (7-box, sample covariance): scikit-image's own grad is not
    this gradient (it drops the covariance factor and the crop).
    """
    skm = pytest.importorskip("skimage.metrics")
    x, y = pair((12, 13), seed=110)
    _, g = fastssim.structural_similarity(x, y, data_range=1.0, win_size=5, gradient=True)
    fd = central_fd(lambda a: skm.structural_similarity(x, a, data_range=1.0, win_size=5), y)
    assert_grad_matches_fd(g, fd)
    _, g_sk = skm.structural_similarity(x, y, data_range=1.0, win_size=5, gradient=True)
    assert np.abs(g_sk - fd).max() > 1e-2 * np.abs(fd).max()


@pytest.mark.parametrize("shape,kw,sk_kw", [
    ((40, 41), dict(window="gaussian", sigma=1.5), dict(gaussian_weights=True)),
    ((12, 13), dict(window="gaussian", sigma=1.5), dict(gaussian_weights=True)),
    ((31, 30), dict(window="uniform", win_size=7), dict(win_size=7)),
    ((30, 31), dict(window="uniform", win_size=3), dict(win_size=3)),
    ((12, 13, 14), dict(window="uniform", win_size=5, spatial_dims=3), dict(win_size=5)),
])
def test_skimage_grad_reproduced_by_vjp(shape, kw, sk_kw):
    """scikit-image's ``grad`` = ssim_vjp with w = 1/im.size, population covariance, reflect.

    scikit-image (Avanaki 2009, eqs. 7-8) differentiates the mean of the
    *uncropped* map, with ``cov_norm`` = 1, and applies its plain filter where
    the adjoint of the filter belongs.  The brief expected the border pixels
    (within 2r of an edge) to differ because of that last point; they do not:
    scipy's 'reflect' correlation with a symmetric window is a *symmetric*
    matrix (Toeplitz part T[i,q] = t[q-i] plus the folded parts t[i+q+1] and
    t[2n-1-i-q] — symmetric in (i, q) at any window radius), so the plain
    filter *is* its adjoint and the two agree at every pixel, borders
    included.  What makes scikit-image's grad differ from the gradient of the
    value it returns is only (a) the crop (uncropped mean) and (b) the missing
    covariance factor with use_sample_covariance=True; both are checked below.
    """
    skm = pytest.importorskip("skimage.metrics")
    x, y = pair(shape, seed=111)
    _, g_sk = skm.structural_similarity(x, y, data_range=1.0, gradient=True,
                                        use_sample_covariance=False, **sk_kw)
    w = np.full(shape, 1.0 / x.size)
    g = fastssim.ssim_vjp(x, y, w, wrt="y", covariance="population", border="reflect",
                          data_range=1.0, **kw)
    scale = np.abs(g_sk).max()
    r = int(3.5 * kw["sigma"] + 0.5) if kw["window"] == "gaussian" else kw["win_size"] // 2
    inner = (slice(2 * r, -2 * r),) * len(shape)
    if all(n > 4 * r for n in shape):
        np.testing.assert_allclose(g[inner], g_sk[inner], rtol=1e-10, atol=1e-10 * scale)
    # ... and everywhere, borders included (see the docstring)
    np.testing.assert_allclose(g, g_sk, rtol=1e-10, atol=1e-10 * scale)
    # whereas the drop-in's gradient (of the cropped mean) differs at the borders
    _, g_drop = fastssim.structural_similarity(x, y, data_range=1.0, gradient=True,
                                               use_sample_covariance=False, **sk_kw)
    assert np.abs(g_drop - g_sk).max() > 1e-3 * scale


def test_skimage_grad_with_sample_covariance_is_not_a_gradient():
    """With use_sample_covariance=True scikit-image's grad ignores cov_norm: it is neither
    the population-covariance VJP of the sample-covariance map nor the FD of its value."""
    skm = pytest.importorskip("skimage.metrics")
    x, y = pair((20, 21), seed=112)
    _, g_sk = skm.structural_similarity(x, y, data_range=1.0, gradient=True, win_size=3)
    w = np.full(x.shape, 1.0 / x.size)
    g = fastssim.ssim_vjp(x, y, w, wrt="y", covariance="sample", data_range=1.0,
                          window="uniform", win_size=3)
    assert np.abs(g - g_sk).max() > 1e-2 * np.abs(g_sk).max()


def test_skimage_grad_multichannel_is_per_channel():
    """scikit-image's multichannel grad: each channel's own uncropped-mean gradient, i.e.
    nchannels times the gradient of the channel mean; reproduced by w = 1/(H*W)."""
    skm = pytest.importorskip("skimage.metrics")
    x, y = pair((20, 21, 3), seed=113)
    _, g_sk = skm.structural_similarity(x, y, data_range=1.0, gradient=True,
                                        gaussian_weights=True, use_sample_covariance=False,
                                        channel_axis=-1)
    w = np.full(x.shape, 1.0 / (20 * 21))
    g = fastssim.ssim_vjp(x, y, w, wrt="y", data_range=1.0, channel_axis=-1)
    np.testing.assert_allclose(g, g_sk, rtol=1e-10, atol=1e-10 * np.abs(g_sk).max())


# --------------------------------------------------------------------------
# The value does not depend on whether a gradient is asked for
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["ssim", "ssim-valid", "ms_ssim", "pixelwise"])
def test_value_is_the_same_with_and_without_gradient(name, dtype):
    """Reference: the same call without ``gradient``; the gradient pass
    evaluates the formula with the same operations (bitwise equality, on
    every SIMD path CI runs)."""
    x, y = pair((2, 45, 47), seed=77, dtype=dtype)
    call = {
        "ssim": lambda **k: fastssim.ssim(x, y, data_range=1.0, **k),
        "ssim-valid": lambda **k: fastssim.ssim(x, y, data_range=1.0, border="valid", **k),
        "ms_ssim": lambda **k: fastssim.ms_ssim(x, y, data_range=1.0, weights=(0.3, 0.3, 0.4),
                                                sigma=0.7, **k),
        "pixelwise": lambda **k: fastssim.pixelwise_ms_ssim(x, y, data_range=1.0,
                                                            sigmas=(0.5, 1, 2), **k),
    }[name]
    plain = call()
    for g in ("x", "y", "both"):
        np.testing.assert_array_equal(call(gradient=g).value, plain)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,shape", [("pixelwise", (2, 24, 700)), ("ssim", (20, 2400))])
def test_value_is_the_same_with_and_without_gradient_in_strips(name, shape, dtype):
    """Wide lines: the value pass runs in column strips (2 for these shapes)
    and the gradient pass over whole lines, which sums each line in the
    value pass's strips, so the float64 sums add in the same order.
    Reference: the same call without ``gradient`` (bitwise)."""
    x, y = pair(shape, seed=78, dtype=dtype)
    call = {
        "pixelwise": lambda **k: fastssim.pixelwise_ms_ssim(x, y, data_range=1.0,
                                                            sigmas=(0.5, 1, 2), **k),
        "ssim": lambda **k: fastssim.ssim(x, y, data_range=1.0, **k),
    }[name]
    plain = call()
    for g in ("x", "both"):
        np.testing.assert_array_equal(call(gradient=g).value, plain)
