"""SSIM values and maps against scikit-image 0.26 (``skimage.metrics.structural_similarity``).

Reference: scikit-image computes the five local moments with scipy.ndimage
filters in float64 (scipy accumulates in double even for float32 data) and
evaluates the SSIM formula in the image's float type.

float64 tolerances: the mean to rtol 1e-12.  Map entries to rtol 1e-12 plus
atol 1e-14: SSIM(p) is a ratio of differences of O(1) moments, so its absolute
rounding error is a few ulp of 1 (measured <= 5e-15) whatever its size; entries
near 0 (uncorrelated windows) would otherwise need an unbounded relative
tolerance.  A wrong tap, border or constant changes entries by >= 1e-6.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers import pair

import fastssim

skm = pytest.importorskip("skimage.metrics")
sk_ssim = skm.structural_similarity

RTOL64 = 1e-12
ATOL64 = 1e-14

SHAPES_2D = [(7, 7), (31, 40), (64, 65), (40, 31)]
SHAPES_3D = [(12, 13, 14), (11, 16, 12)]

# (gaussian_weights, win_size, sigma): box 3/5/7 (7 = scikit-image's default),
# the 11-tap Gaussian, a 7-tap Gaussian (sigma 0.8) that fits a 7x7 image, and
# a Gaussian with an explicit win_size, which scikit-image uses only for the
# crop and the sample-covariance factor (the filter keeps its 2*int(3.5s+.5)+1 taps).
WINDOWS = [
    (False, 3, 1.5),
    (False, 5, 1.5),
    (False, None, 1.5),
    (True, None, 1.5),
    (True, None, 0.8),
    (True, 7, 1.5),
    (True, 13, 1.5),
]

KS = [(0.01, 0.03), (0.05, 0.1), (0.0, 0.03)]


def _fits(shape, gw, ws, sigma):
    taps = 2 * int(3.5 * sigma + 0.5) + 1 if gw else (ws or 7)
    crop = ws if ws is not None else taps
    return min(shape) >= max(taps, crop)


def _both(im1, im2, **kw):
    """(skimage result, fastssim result) for the same call."""
    return sk_ssim(im1, im2, **kw), fastssim.structural_similarity(im1, im2, **kw)


def _grid(shapes):
    for shape in shapes:
        for gw, ws, sigma in WINDOWS:
            if _fits(shape, gw, ws, sigma):
                yield shape, gw, ws, sigma


@pytest.mark.parametrize("K1,K2", KS)
@pytest.mark.parametrize("sample", [True, False])
@pytest.mark.parametrize("shape,gw,ws,sigma", list(_grid(SHAPES_2D + SHAPES_3D)))
def test_float64_mean_and_map_match_skimage(shape, gw, ws, sigma, sample, K1, K2):
    x, y = pair(shape, seed=sum(shape))
    kw = dict(data_range=1.0, gaussian_weights=gw, win_size=ws, sigma=sigma,
              use_sample_covariance=sample, K1=K1, K2=K2, full=True)
    (m_sk, S_sk), (m, S) = _both(x, y, **kw)
    assert type(m) is type(m_sk) is np.float64
    assert S.dtype == S_sk.dtype == np.float64 and S.shape == S_sk.shape
    np.testing.assert_allclose(m, m_sk, rtol=RTOL64, atol=0)
    np.testing.assert_allclose(S, S_sk, rtol=RTOL64, atol=ATOL64)
    # the test is not trivial: the map spans well below 1
    assert S.min() < 0.5


@pytest.mark.parametrize("shape,gw,ws,sigma", [((64, 65), False, None, 1.5), ((31, 40), True, None, 1.5),
                                               ((12, 13, 14), False, 3, 1.5)])
def test_float64_mean_only_matches_skimage(shape, gw, ws, sigma):
    """full=False takes another engine path (map restricted to the crop)."""
    x, y = pair(shape, seed=3)
    kw = dict(data_range=1.0, gaussian_weights=gw, win_size=ws, sigma=sigma)
    m_sk, m = _both(x, y, **kw)
    assert type(m) is np.float64
    np.testing.assert_allclose(m, m_sk, rtol=RTOL64, atol=0)


# ---------------------------------------------------------------- dtypes

# dtypes scikit-image computes in float64; ints other than uint8 warn about
# the data_range guessed from the dtype (and so must fastssim).
INT_DTYPES = [np.uint8, np.uint16, np.int16, np.int8, np.int32, np.bool_]


def _warns_for(dtype):
    d = np.dtype(dtype)
    return d.kind in "iu" and d != np.uint8


@pytest.mark.parametrize("gw", [False, True])
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_and_bool_dtypes_match_skimage(dtype, gw):
    x, y = pair((33, 34), dtype=dtype, seed=7)
    kw = dict(gaussian_weights=gw, full=True)
    if _warns_for(dtype):
        with pytest.warns(UserWarning, match="Setting data_range based on im1.dtype"):
            m_sk, S_sk = sk_ssim(x, y, **kw)
        with pytest.warns(UserWarning, match="Setting data_range based on im1.dtype"):
            m, S = fastssim.structural_similarity(x, y, **kw)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (m_sk, S_sk), (m, S) = _both(x, y, **kw)
    assert type(m) is type(m_sk) is np.float64
    assert S.dtype == S_sk.dtype == np.float64
    np.testing.assert_allclose(m, m_sk, rtol=RTOL64, atol=0)
    np.testing.assert_allclose(S, S_sk, rtol=RTOL64, atol=ATOL64)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float64])
def test_explicit_data_range_integer(dtype):
    x, y = pair((30, 31), dtype=dtype, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit data_range never warns
        (m_sk, S_sk), (m, S) = _both(x, y, data_range=100.0, full=True)
    np.testing.assert_allclose(m, m_sk, rtol=RTOL64, atol=0)
    np.testing.assert_allclose(S, S_sk, rtol=RTOL64, atol=ATOL64)


# float32 / float16 are computed in float32 (scikit-image's policy).  The
# mean must be within 1e-5 of scikit-image's float32 mean (issue 2, item 4);
# the map is judged against the float64 result of the same (float32-rounded)
# data, relative to how far scikit-image's own float32 map is from it.
FLOAT32_MEAN_ATOL = 1e-5

# The specification (issue 2, item 4): fastssim's float32 map at least as
# close to the float64 map as scikit-image's float32 map; we allow 1.5x.
# Issue 2: the float32 map must be at least as close to the float64 result as
# scikit-image's own float32 map (ratio <= 1).  Measured: 0.13-0.34 (the
# engine takes the moments of x - shift, shift ~ the plane mean, so the
# variances do not cancel in float32; scikit-image's do).
FLOAT32_MAP_FACTOR = 1.0

F32_CASES = [
    ((31, 40), False, None),
    ((64, 65), False, 3),
    ((64, 65), True, None),
    ((128, 128), False, 3),
    ((12, 13, 14), False, 7),
    ((12, 13, 14), True, None),
]


def _f32_errors(shape, gw, ws, dtype, seed=1):
    x, y = pair(shape, dtype=dtype, seed=seed)
    kw = dict(data_range=1.0, gaussian_weights=gw, win_size=ws, full=True)
    m64, S64 = sk_ssim(x.astype(np.float64), y.astype(np.float64), **kw)
    (m32, S32), (m, S) = _both(x, y, **kw)
    return m64, m32, S64, S32, m, S


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape,gw,ws", F32_CASES)
def test_float32_mean_and_map(shape, gw, ws, dtype):
    """Issue 2, item 4: the float32 map is at least as close to float64 as
    scikit-image's own float32 map, in every case."""
    m64, m32, S64, S32, m, S = _f32_errors(shape, gw, ws, dtype)
    assert type(m) is type(m32) is np.float64
    assert S.dtype == S32.dtype == np.float32
    assert abs(m - m32) <= FLOAT32_MEAN_ATOL
    assert abs(m - m64) <= FLOAT32_MEAN_ATOL
    err_sk = np.abs(S32.astype(np.float64) - S64).max()
    err = np.abs(S.astype(np.float64) - S64).max()
    assert err <= FLOAT32_MAP_FACTOR * err_sk, (err, err_sk)


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">u2", ">i2"])
def test_big_endian_dtype_policy(dtype):
    """Byte order does not change the compute type: '>f4' is float32, as in scikit-image."""
    x, y = pair((30, 31), dtype=np.dtype(dtype).newbyteorder("="), seed=15)
    x, y = x.astype(dtype), y.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # int data_range guessed
        (m_sk, S_sk), (m, S) = _both(x, y, data_range=1.0, full=True)
    assert S.dtype == S_sk.dtype and S.dtype.isnative
    assert type(m) is type(m_sk)
    if S.dtype == np.float64:
        np.testing.assert_allclose(S, S_sk, rtol=RTOL64, atol=ATOL64)
    else:
        assert abs(m - m_sk) <= FLOAT32_MEAN_ATOL


def test_mismatched_float_types_follow_im1():
    """scikit-image casts both images to im1's float type."""
    x, y = pair((30, 31), seed=9)
    x32 = x.astype(np.float32)
    (m_sk, S_sk), (m, S) = _both(x32, y, data_range=1.0, full=True)
    assert S.dtype == S_sk.dtype == np.float32
    assert abs(m - m_sk) <= FLOAT32_MEAN_ATOL
    (m_sk, S_sk), (m, S) = _both(y, x32, data_range=1.0, full=True)
    assert S.dtype == S_sk.dtype == np.float64
    np.testing.assert_allclose(m, m_sk, rtol=RTOL64)
    np.testing.assert_allclose(S, S_sk, rtol=RTOL64, atol=ATOL64)


# ---------------------------------------------------------------- channels

COLOR = [
    ((20, 21, 3), -1),
    ((20, 21, 3), 2),
    ((3, 20, 21), 0),
    ((20, 3, 21), 1),
    ((12, 13, 14, 2), -1),   # a 3-D volume with 2 channels
    ((2, 12, 13, 14), 0),
]


@pytest.mark.parametrize("gw", [False, True])
@pytest.mark.parametrize("shape,axis", COLOR)
def test_channel_axis_float64(shape, axis, gw):
    x, y = pair(shape, seed=11)
    (m_sk, S_sk), (m, S) = _both(x, y, data_range=1.0, channel_axis=axis,
                                 gaussian_weights=gw, full=True)
    assert np.asarray(m).dtype == np.asarray(m_sk).dtype == np.float64
    assert S.shape == S_sk.shape == shape and S.dtype == np.float64
    np.testing.assert_allclose(m, m_sk, rtol=RTOL64)
    np.testing.assert_allclose(S, S_sk, rtol=RTOL64, atol=ATOL64)


@pytest.mark.parametrize("shape,axis", COLOR[:4])
def test_channel_axis_float32_mean_dtype(shape, axis):
    """Multichannel: scikit-image averages per-channel means in the float type."""
    x, y = pair(shape, dtype=np.float32, seed=12)
    (m_sk, S_sk), (m, S) = _both(x, y, data_range=1.0, channel_axis=axis, full=True)
    assert type(m) is type(m_sk) is np.float32
    assert S.dtype == S_sk.dtype == np.float32
    assert abs(float(m) - float(m_sk)) <= FLOAT32_MEAN_ATOL


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_channel_axis_integer(dtype):
    x, y = pair((25, 26, 3), dtype=dtype, seed=13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # uint16 warns in both
        (m_sk, S_sk), (m, S) = _both(x, y, channel_axis=-1, full=True)
    np.testing.assert_allclose(m, m_sk, rtol=RTOL64)
    np.testing.assert_allclose(S, S_sk, rtol=RTOL64, atol=ATOL64)


def test_gradient_and_full_return_order():
    """(mssim, grad, S) as scikit-image; grad in the float type of the image."""
    x, y = pair((20, 21), dtype=np.float32, seed=14)
    r_sk = sk_ssim(x, y, data_range=1.0, gradient=True, full=True)
    r = fastssim.structural_similarity(x, y, data_range=1.0, gradient=True, full=True)
    assert len(r) == len(r_sk) == 3
    assert r[1].dtype == r_sk[1].dtype == np.float32 and r[1].shape == x.shape
    assert r[2].dtype == r_sk[2].dtype == np.float32
    r2 = fastssim.structural_similarity(x, y, data_range=1.0, gradient=True)
    assert len(r2) == 2 and r2[1].shape == x.shape


def test_one_tap_window():
    """A 1-tap box: the moments are the pixels themselves, the (population)
    variances vanish, so SSIM(p) = (2 x y + C1) / (x^2 + y^2 + C1) (hand-
    derived).  The engine's variances cancel only to ~eps x^2, which C2 = 9e-4
    turns into ~3e-13 on cs: rtol 1e-12.  The engine's narrowest path (K < 3)."""
    from helpers import assert_grad_matches_fd, central_fd
    x, y = pair((13, 17), seed=91)
    C1 = (0.01 * 1.0) ** 2
    ref = (2 * x * y + C1) / (x * x + y * y + C1)
    r = fastssim.ssim(x, y, data_range=1.0, window="uniform", win_size=1, full=True, gradient="x")
    np.testing.assert_allclose(r.map, ref, rtol=1e-12)
    np.testing.assert_allclose(r.value, ref.mean(), rtol=1e-12)
    f = lambda a: fastssim.ssim(a, y, data_range=1.0, window="uniform", win_size=1)
    assert_grad_matches_fd(r.grad_x, central_fd(f, x))
