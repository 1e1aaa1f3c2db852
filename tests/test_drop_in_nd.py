"""The drop-in accepts what scikit-image accepts (issue 11): 1-D signals and
N-D arrays (4-D, 5-D), and extra keyword arguments.

References: ``skimage.metrics.structural_similarity`` itself for the value,
the map and the errors (1e-12 in float64); central finite differences in
float64 for the gradient, which is the exact gradient of the returned mean
(scikit-image's ``grad`` is not: see the README).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from helpers import assert_grad_matches_fd, pair

import fastssim

skm = pytest.importorskip("skimage.metrics")
sk_ssim = skm.structural_similarity
ours = fastssim.structural_similarity

CASES = [
    ("1d", (60,), {}),
    ("1d-gauss", (50,), dict(gaussian_weights=True)),
    ("1d-channels-first", (3, 40), dict(channel_axis=0)),
    ("4d", (9, 8, 10, 11), {}),
    ("4d-gauss", (12, 11, 10, 9), dict(gaussian_weights=True, sigma=0.6)),
    ("4d-channels", (9, 8, 10, 11, 2), dict(channel_axis=-1)),
    ("5d", (7, 8, 9, 7, 8), dict(win_size=3)),
    ("5d-gauss-wide", (6, 7, 6, 7, 6), dict(gaussian_weights=True, sigma=2.0, win_size=5)),
]


@pytest.mark.parametrize("cov", [True, False])
@pytest.mark.parametrize("shape,kw", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_values_and_maps_match_skimage(shape, kw, cov):
    x, y = pair(shape, seed=401)
    m, S = ours(x, y, data_range=1.0, full=True, use_sample_covariance=cov, **kw)
    m_sk, S_sk = sk_ssim(x, y, data_range=1.0, full=True, use_sample_covariance=cov, **kw)
    np.testing.assert_allclose(m, m_sk, rtol=0, atol=1e-12)
    assert S.shape == S_sk.shape and S.dtype == S_sk.dtype
    np.testing.assert_allclose(S, S_sk, rtol=0, atol=1e-12)
    assert type(m) is type(m_sk)


@pytest.mark.parametrize("shape,kw", [((11,), {}), ((5, 5, 6, 6), dict(win_size=3)),
                                      ((2, 5, 5, 6, 6), dict(win_size=3, channel_axis=0)),
                                      ((5, 4, 5, 4, 5), dict(gaussian_weights=True, sigma=0.3))],
                         ids=["1d", "4d", "4d-channels", "5d-gauss"])
def test_gradient_is_exact(shape, kw):
    x, y = pair(shape, seed=402)
    m, g = ours(x, y, data_range=1.0, gradient=True, **kw)
    assert g.shape == y.shape
    if y.size <= 64:
        idx = list(np.ndindex(y.shape))
    else:  # the first and last sample of every axis (borders, reflection) and random ones
        rng = np.random.default_rng(0)
        idx = [tuple(0 for _ in shape), tuple(n - 1 for n in shape)]
        idx += [tuple(int(rng.integers(n)) for n in shape) for _ in range(40)]
        idx += [tuple((0, n - 1)[int(rng.integers(2))] for n in shape) for _ in range(20)]
    h = 1e-6
    fd = []
    for i in idx:
        yp, ym = y.copy(), y.copy()
        yp[i] += h
        ym[i] -= h
        fd.append((ours(x, yp, data_range=1.0, **kw) - ours(x, ym, data_range=1.0, **kw)) / (2 * h))
    assert_grad_matches_fd(np.array([g[i] for i in idx]), np.array(fd))


def test_returns_like_skimage():
    x, y = pair((8, 9, 10, 11), seed=403)
    r = ours(x, y, data_range=1.0, gradient=True, full=True)
    r_sk = sk_ssim(x, y, data_range=1.0, gradient=True, full=True)
    assert len(r) == len(r_sk) == 3
    assert r[1].shape == r_sk[1].shape and r[2].shape == r_sk[2].shape


def test_float32_keeps_float32_maps():
    x, y = pair((9, 8, 10, 11), dtype=np.float32, seed=404)
    m, S = ours(x, y, data_range=1.0, full=True)
    m_sk, S_sk = sk_ssim(x, y, data_range=1.0, full=True)
    assert S.dtype == S_sk.dtype == np.float32
    # computed in float64 here, in float32 by scikit-image: its rounding
    np.testing.assert_allclose(m, m_sk, rtol=1e-5)
    np.testing.assert_allclose(S, S_sk, rtol=0, atol=1e-4)


def test_integer_nd_default_range_matches_skimage():
    x, y = pair((8, 9, 10, 11), dtype=np.uint8, seed=405)
    np.testing.assert_allclose(ours(x, y), sk_ssim(x, y), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape,kw,msg", [
    ((5,), {}, "win_size exceeds image extent"),
    ((8, 8, 8, 6), {}, "win_size exceeds image extent"),
    ((9, 9, 9, 9), dict(win_size=4), "Window size must be odd."),
])
def test_nd_errors_match_skimage(shape, kw, msg):
    x, y = pair(shape, seed=406)
    with pytest.raises(ValueError, match=re.escape(msg)) as e_sk:
        sk_ssim(x, y, data_range=1.0, **kw)
    with pytest.raises(ValueError, match=re.escape(msg)) as e:
        ours(x, y, data_range=1.0, **kw)
    assert str(e.value).startswith(str(e_sk.value))


def test_zero_d_is_refused_by_name():
    with pytest.raises(ValueError, match=r"im1: expected an image with at least one axis"):
        ours(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), data_range=1.0, channel_axis=0)


def test_extra_keyword_arguments_are_ignored_like_skimage():
    """scikit-image 0.26 pops the keywords it knows from **kwargs and ignores the
    rest, without a warning (the removed multichannel=True is still common)."""
    x, y = pair((20, 21, 3), seed=407)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m_sk = sk_ssim(x, y, data_range=1.0, channel_axis=-1, multichannel=True, foo=3)
        m = ours(x, y, data_range=1.0, channel_axis=-1, multichannel=True, foo=3)
    np.testing.assert_allclose(m, m_sk, rtol=1e-6)
    assert m == ours(x, y, data_range=1.0, channel_axis=-1)
