"""MS-SSIM reads the caller's layout in place (issue 16), and the per-plane shifts.

The pyramid's finest level is the caller's array as the engine reads it
elsewhere: channels last (interleaved) and integer types are no longer copied
into float planes first.  Reference for every test here: the same images
through the planar path (channels on a leading axis, or already converted to
the compute type), which is the path the frozen corpus and the
finite-difference tests pin.  The in-place path must give the same bits,
value, per-scale means and gradients alike (a layout change must not change
the arithmetic), so every comparison is exact.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastssim
from fastssim import _engine
from helpers import assert_bitwise, pair


def _planar(a):
    """Channels last -> channels first, contiguous (the planar path's input)."""
    return np.ascontiguousarray(np.moveaxis(a, -1, -3))


def _last(g):
    return None if g is None else np.moveaxis(g, -3, -1)


def _ms(x, y, **kw):
    return fastssim.ms_ssim(x, y, data_range=kw.pop("data_range", 1.0), return_scales=True, **kw)


def _assert_same(a, b, channels_moved):
    fix = _last if channels_moved else (lambda g: g)
    assert_bitwise(a.value, b.value, "value differs from the planar path")
    assert_bitwise(a.scales, b.scales, "per-scale means differ from the planar path")
    for ga, gb in ((a.grad_x, b.grad_x), (a.grad_y, b.grad_y)):
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert ga.shape == fix(gb).shape
            assert_bitwise(ga, fix(gb), "gradient differs from the planar path")


# (shape, dtype): a batch of RGB images; a two-channel image wide enough for
# the value pass to run in column strips (no fused downsampling: the separate
# downsampling reads the interleaved input), in float32 and float64
CASES = [((2, 181, 190, 3), np.float32), ((181, 203, 3), np.float64),
         ((170, 4800, 2), np.float32), ((170, 2400, 2), np.float64)]


@pytest.mark.parametrize("shape,dtype", CASES)
@pytest.mark.parametrize("gradient", [None, "x", "both"])
def test_channels_last_in_place_is_the_planar_result(shape, dtype, gradient):
    x, y = pair(shape, dtype, seed=3)
    a = _ms(x, y, channel_axis=-1, gradient=gradient)
    b = _ms(_planar(x), _planar(y), channel_axis=-3, gradient=gradient)
    _assert_same(a, b, channels_moved=True)
    if gradient:  # the gradient comes back contiguous in the caller's layout
        assert a.grad_x.flags.c_contiguous and a.grad_x.shape == x.shape


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
@pytest.mark.parametrize("channels", [None, 3])
def test_integer_input_in_place_is_the_float_result(dtype, channels):
    shape = (176, 181) + ((channels,) if channels else ())
    x, y = pair(shape, dtype, seed=5)
    cax = -1 if channels else None
    a = fastssim.ms_ssim(x, y, channel_axis=cax, gradient="both", return_scales=True)
    dr = float(np.iinfo(dtype).max) - float(np.iinfo(dtype).min)
    # the compute type of an integer image is float64 (scikit-image's policy)
    b = fastssim.ms_ssim(x.astype(np.float64), y.astype(np.float64), data_range=dr,
                         channel_axis=cax, gradient="both", return_scales=True)
    _assert_same(a, b, channels_moved=False)


def test_channels_last_broadcast_is_the_copied_result():
    x, _ = pair((1, 180, 185, 3), np.float32, seed=7)
    _, y = pair((3, 180, 185, 3), np.float32, seed=8)
    a = _ms(x, y, channel_axis=-1, gradient="both")
    xb = np.ascontiguousarray(np.broadcast_to(x, y.shape))
    b = _ms(xb, y, channel_axis=-1, gradient="both")
    assert_bitwise(a.value, b.value)
    assert_bitwise(a.scales, b.scales)
    assert_bitwise(a.grad_y, b.grad_y)
    # x broadcasts: its gradient is the sum over the batch items it feeds
    assert a.grad_x.shape == x.shape
    np.testing.assert_allclose(a.grad_x, b.grad_x.sum(axis=0, keepdims=True), rtol=0, atol=1e-9)


@pytest.mark.parametrize("workers", [1, 3])
def test_channels_last_thread_count_independent(workers):
    x, y = pair((2, 177, 180, 3), np.float32, seed=9)
    ref = _ms(x, y, channel_axis=-1, gradient="both", workers=2)
    assert_bitwise(_ms(x, y, channel_axis=-1, gradient="both", workers=workers), ref)


def test_channels_last_makes_no_planar_copy():
    """A planar copy of x and y is 2x one input; the in-place pyramid
    allocates its coarse levels (2/3 of an input) and small scratch only."""
    x, y = pair((400, 420, 3), np.float32, seed=11)
    fastssim.ms_ssim(x, y, data_range=1.0, channel_axis=-1)  # pooled scratch and caches
    tracemalloc.start()
    try:
        fastssim.ms_ssim(x, y, data_range=1.0, channel_axis=-1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes, f"peak {peak} B of traced allocations, one input is {x.nbytes} B"


def _shifts_reference(a, nci):
    """fs_plane_shifts (engine.h) in plain Python: per plane, the mean of the
    finite samples of a grid (every max(1, n // 32)-th index per axis), summed
    in order in float64, rounded to a multiple of 2^floor(log2(sd))."""
    spatial = a.shape[1:-1] if nci > 1 else a.shape[1:]
    grid = tuple(slice(None, None, max(1, n // 32)) for n in spatial)
    planes = np.moveaxis(a, -1, 1) if nci > 1 else a[:, None]
    out = []
    for item in planes:
        for plane in item:
            v = [float(t) for t in plane[grid].ravel() if np.isfinite(t)]
            s = 0.0
            for t in v:
                s += t
            mean = s / len(v) if v else 0.0
            ss = 0.0
            for t in v:
                ss += (t - mean) * (t - mean)
            sd = float(np.sqrt(ss / len(v))) if v else 0.0
            shift = mean
            if sd > 0 and np.isfinite(sd):
                q = 2.0 ** (np.frexp(sd)[1] - 1)
                shift = float(np.round(mean / q) * q)  # round half to even, as nearbyint
            out.append(shift)
    return np.array(out)


@pytest.mark.parametrize("nci", [1, 3])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_plane_shifts_of_many_small_planes(nci, n_threads):
    """Many planes (several parallel chunks, a count that is no multiple of the
    summing lanes), some samples not finite: the engine's shifts equal the
    rule's plain sequential reference exactly."""
    rng = np.random.default_rng(12)
    items = 150 if nci == 1 else 70
    shape = (items, 20, 70) + ((nci,) if nci > 1 else ())
    a = (rng.random(shape) * 3 + rng.integers(0, 200, (items,) + (1,) * (len(shape) - 1))).astype(
        np.float32)
    a[3, 0, 0] = np.nan
    a[7, 5, 1:4] = np.inf
    got, _ = _engine.shifts(a, a, items * nci, (20, 1, 70), nci, _engine.IN_REAL, False,
                            n_threads)
    np.testing.assert_array_equal(got, _shifts_reference(a, nci))
