"""Box windows by running sums (engine_box.h, issue 16; boxes of 21 taps and
more, FS_BOX_MIN_R): the sums across lines restart at anchors every 16 lines
and the sums along a line are fixed trees, so images here are taller than the
12x13 FD images of test_gradients.py (the running sums roll across several
anchors) and the units, strips and map regions are varied.  References: central finite differences in float64 (the
gradient, borders included), the same call with other partitions (bitwise),
the value without a gradient (bitwise) and a float64 direct-sum reference
(the moments, scipy.ndimage.uniform_filter).  Narrower float32 boxes (3 to 19
taps) are unit-tap banded sums divided once per pass (engine_box.h, nbox_*), on
the AVX2 and AVX-512 paths window sums divided once for both axes whose sums
across lines are trees over pairs of lines at absolute positions (nbox_one,
nbox_psum4: units of 3 and 7 per thread start on odd and even lines): the
bitwise test covers them too (3, 11 and the widest, 19)."""
import numpy as np
import pytest

from helpers import assert_bitwise, assert_grad_matches_fd, border_mask, fd_grad, pair

import fastssim
from fastssim import _engine

BOX = dict(window="uniform", covariance="sample")


@pytest.mark.parametrize("border", ["reflect", "valid"])
@pytest.mark.parametrize("win", [21, 23])
def test_box_gradient_vs_fd_across_anchors(border, win):
    """45 rows: the running sums restart at rows 16 and 32 and roll between."""
    x, y = pair((45, 23), seed=201)
    kw = dict(data_range=1.0, border=border, win_size=win, **BOX)
    r = fastssim.ssim(x, y, gradient="both", **kw)
    fdx = fd_grad(fastssim.ssim, x, y, "x", **kw)
    assert_grad_matches_fd(r.grad_x, fdx)
    assert_grad_matches_fd(r.grad_y, fd_grad(fastssim.ssim, x, y, "y", **kw))
    edge = border_mask(x.shape, 2)
    assert np.abs(fdx[edge]).max() > 1e-3 * np.abs(fdx).max()


def test_box_volume_gradient_vs_fd_across_anchors():
    x, y = pair((40, 21, 22), seed=202)
    kw = dict(data_range=1.0, spatial_dims=3, win_size=21, border="valid", **BOX)
    r = fastssim.ssim(x, y, gradient="x", **kw)
    assert_grad_matches_fd(r.grad_x, fd_grad(fastssim.ssim, x, y, "x", **kw))


def _same_bits_with_units_and_strips(x, y, kw, ref):
    """Every unit count (3, 7 per thread) and column-strip width (48, 112: off the
    anchor grid) on 2 threads gives ref's bits (value, map, both gradients)."""
    for setter, values in ((_engine.set_units_per_thread, (3, 7)),
                           (_engine.set_strip_width, (48, 112))):
        try:
            for v in values:
                setter(v)
                assert_bitwise(tuple(fastssim.ssim(x, y, gradient="both", full=True, workers=2,
                                                   **kw)), tuple(ref))
        finally:
            setter(0)


# narrow boxes in float32 only: their unit sums are float32's (float64 keeps the
# taps); float64 box 11 on the SSE2 path differs in the value's last bit with
# column strips (map and gradients bitwise; found here, predates issue 10's change)
@pytest.mark.parametrize("win, dtype", [(3, np.float32), (11, np.float32), (19, np.float32)]
                         + [(w, d) for w in (21, 51) for d in (np.float32, np.float64)])
def test_box_bitwise_over_units_strips_and_regions(win, dtype):
    """Units that start between two anchors roll from the previous one; column
    strips cut the line sums' trees at other places; a value without a map or
    gradient may stream another region of the map: every bit stays."""
    x, y = pair((2, 300, 211), seed=203)
    x, y = x.astype(dtype), y.astype(dtype)
    kw = dict(data_range=1.0, win_size=win, **BOX)
    ref = fastssim.ssim(x, y, gradient="both", full=True, workers=1, **kw)
    for border in ("reflect", "valid"):
        r0 = fastssim.ssim(x, y, gradient="both", full=True, workers=1, border=border, **kw)
        v = fastssim.ssim(x, y, workers=1, border=border, **kw)
        assert np.array_equal(v, r0.value), border
    _same_bits_with_units_and_strips(x, y, kw, ref)


@pytest.mark.parametrize("win", [7, 21, 51])
def test_box_moments_match_float64_direct_sums(win):
    """float64 input: the map equals one computed from scipy.ndimage.uniform_filter
    moments (direct float64 sums, 'reflect' borders) to 1e-12; a drifting running
    sum over 300 rows would not."""
    ndi = pytest.importorskip("scipy.ndimage")
    x, y = pair((300, 97), seed=204)
    x = 1e3 + x  # offset data: drift in a running sum would show up in the variance
    y = 1e3 + y
    m = fastssim.ssim(x, y, data_range=1.0, win_size=win, full=True, **BOX).map
    f = lambda a: ndi.uniform_filter(a, size=win, mode="reflect")
    sx, sy = x - 1e3, y - 1e3
    ux, uy = f(sx), f(sy)
    n = win * win
    cov = n / (n - 1.0)
    vx, vy, vxy = cov * (f(sx * sx) - ux * ux), cov * (f(sy * sy) - uy * uy), cov * (f(sx * sy) - ux * uy)
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    mx, my = ux + 1e3, uy + 1e3  # the l term reads the means of the data itself
    ref = ((2 * mx * my + C1) * (2 * vxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    assert np.abs(m - ref).max() <= 1e-12


def _cancelling_pair(shape, seed):
    """float32 images in [0, 1] plus pairs of adjacent samples +2^30, -2^30
    (every 7th column of every line): a window holding both sums to its small
    samples, but its float64 partial sums passed 2^30 and rounded them, so the
    order of the additions shows in the float32 bits (on plain [0, 1] data
    float64 sums are exact in any order)."""
    x, y = pair(shape, seed=seed)
    big = np.zeros(shape)
    big[..., 3::7] = 2.0 ** 30
    big[..., 4::7] = -(2.0 ** 30)
    return (x + big).astype(np.float32), (y + big).astype(np.float32)


@pytest.mark.parametrize("win", [21, 51])
def test_float32_box_scans_bitwise_when_sums_are_inexact(win):
    """float32 boxes of 21 taps and more sum along lines by scans restarted on a
    fixed grid of anchors (box_scan, every 64 outputs), across lines by running
    sums restarted every 16 lines.  On data whose float64 sums round (unlike
    [0, 1] images, whose sums are exact in any order), units, column strips
    that start off the anchor grid (48, 112 columns) and thread counts still
    give the same bits, and the value is the same without the gradient."""
    x, y = _cancelling_pair((2, 150, 301), seed=205)
    kw = dict(data_range=1.0, win_size=win, **BOX)
    ref = fastssim.ssim(x, y, gradient="both", full=True, workers=1, **kw)
    assert np.isfinite(ref.map).all() and np.isfinite(ref.grad_x).all()
    assert np.array_equal(fastssim.ssim(x, y, workers=1, **kw), ref.value)
    _same_bits_with_units_and_strips(x, y, kw, ref)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float32_box_scan_confines_nan_and_inf(bad):
    """A NaN or inf entering a scan's block stays in its running sum: the
    block's later outputs are summed directly instead (box_scan).  Every map
    value whose 21x21 window holds the bad pixel is NaN, every other one is
    the same bits as with a finite value there ([0, 1] data: exact float64
    sums), the gradient is finite beyond 2r; the pixel sits in the anchor
    block [64, 128) of its line, with a strip boundary inside the block."""
    x, y = pair((70, 200), dtype=np.float32, seed=206)
    i, j = 35, 90
    xb = x.copy()
    xb[i, j] = bad
    kw = dict(data_range=1.0, win_size=21, full=True, gradient="both", **BOX)
    ref = fastssim.ssim(x, y, **kw)
    ii, jj = np.indices(ref.map.shape)
    dist = np.maximum(abs(ii - i), abs(jj - j))
    for strip in (0, 80):
        _engine.set_strip_width(strip)
        try:
            r = fastssim.ssim(xb, y, **kw)
        finally:
            _engine.set_strip_width(0)
        assert np.isnan(r.map[dist <= 10]).all()
        assert np.array_equal(r.map[dist > 10], ref.map[dist > 10])
        for g, gref in ((r.grad_x, ref.grad_x), (r.grad_y, ref.grad_y)):
            assert np.array_equal(g[dist > 20], gref[dist > 20])
