"""Batches of small images (issue 16): the engine runs them as batches of
whole items, each taking its planes' shifts and streaming them in one unit
(fastssim/_engine.pyx, _launch_groups).  Reference: every item run alone (one
plane, one unit of lines: the other launch path) and the one-thread run of the
same batch; not a single bit may differ (value, map, both gradients)."""
import numpy as np
import pytest

import fastssim
from helpers import assert_bitwise, pair

CASES = [
    dict(),                                                              # Gaussian, 11 taps
    dict(window="uniform", win_size=7, covariance="sample"),             # box 7
    dict(sigma=0.8),                                                     # Gaussian, 7 taps
]


@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("shape,channel_axis", [((37, 24, 30), None), ((13, 20, 26, 3), -1),
                                                ((11, 3, 22, 19), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_small_batch_items_equal_single_images(kw, shape, channel_axis, dtype):
    """37 items (not a multiple of the 8 planes a batch sums at once), channels
    interleaved (last axis: planes of one item share a batch) or planar; NaN-free
    integer and float inputs."""
    if dtype == np.uint8:
        rng = np.random.default_rng(61)
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        y = np.clip(x.astype(np.int16) + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
        dr = 255
    else:
        x, y = pair(shape, dtype=dtype, seed=61)
        x = x + np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1)).astype(dtype)
        y = y + np.arange(shape[0]).reshape((-1,) + (1,) * (len(shape) - 1)).astype(dtype)
        dr = 1.0
    args = dict(data_range=dr, full=True, gradient="both", channel_axis=channel_axis, **kw)
    r2 = fastssim.ssim(x, y, workers=2, **args)
    r1 = fastssim.ssim(x, y, workers=1, **args)
    assert_bitwise(tuple(r2), tuple(r1))
    one = dict(args, channel_axis=channel_axis - 1 if channel_axis == 1 else channel_axis)
    for i in range(shape[0]):
        s = fastssim.ssim(x[i], y[i], workers=1, **one)
        np.testing.assert_array_equal(r2.map[i], s.map)
        np.testing.assert_array_equal(r2.grad_x[i], s.grad_x)
        np.testing.assert_array_equal(r2.grad_y[i], s.grad_y)
        if channel_axis is None:
            assert r2.value[i] == s.value
