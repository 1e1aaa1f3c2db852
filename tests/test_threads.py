"""Deterministic parallelism (house rule 5): results do not depend on the thread count.

Reference: the ``workers=1`` result, compared *bitwise* (np.array_equal) —
reductions go through per-line partials summed in a fixed order, so any
difference at all means a thread-count-dependent reduction or a race.
Images are large enough (300x517, batches) that row blocks really split
between threads.  Also: concurrent calls from a Python thread pool (the
nogil paths) give the serial results.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import pair

import fastssim


def _assert_bitwise(a, b):
    assert type(a) is type(b)
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _assert_bitwise(u, v)
    elif a is None:
        assert b is None
    else:
        assert np.array_equal(a, b, equal_nan=True), "result depends on the thread count"
        assert np.asarray(a).dtype == np.asarray(b).dtype


CASES = [
    pytest.param((300, 517), dict(), id="large"),
    pytest.param((300, 517), dict(window="uniform", win_size=7, covariance="sample"),
                 id="large-box"),
    pytest.param((300, 517), dict(border="valid"), id="large-valid"),
    pytest.param((5, 40, 41), dict(), id="batch"),
    pytest.param((128, 130), dict(), id="medium"),
    pytest.param((64, 65, 3), dict(channel_axis=-1), id="channels"),
    pytest.param((20, 30, 31), dict(spatial_dims=3, window="uniform", win_size=5), id="volume"),
]

MODES = [dict(), dict(full=True), dict(gradient="y"), dict(full=True, gradient="both")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,kw", CASES)
def test_ssim_workers_bitwise(shape, kw, dtype):
    x, y = pair(shape, dtype=dtype, seed=501)
    for mode in MODES:
        args = dict(data_range=1.0, **kw, **mode)
        ref = fastssim.ssim(x, y, workers=1, **args)
        for w in (2, 3, -1, None):
            _assert_bitwise(fastssim.ssim(x, y, workers=w, **args), ref)


@pytest.mark.parametrize("shape", [(300, 517), (128, 130)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vjp_workers_bitwise(dtype, shape):
    x, y = pair(shape, dtype=dtype, seed=502)
    w = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    ref = fastssim.ssim_vjp(x, y, w, wrt="both", data_range=1.0, workers=1)
    _assert_bitwise(fastssim.ssim_vjp(x, y, w, wrt="both", data_range=1.0, workers=2), ref)


@pytest.mark.parametrize("shape", [pytest.param((300, 517)), (128, 130)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
def test_dropin_workers_bitwise(dtype, shape):
    x, y = pair(shape, dtype=dtype, seed=503)
    for kw in (dict(), dict(full=True), dict(gradient=True, full=True, gaussian_weights=True)):
        if dtype != np.uint8:
            kw["data_range"] = 1.0
        ref = fastssim.structural_similarity(x, y, workers=1, **kw)
        _assert_bitwise(fastssim.structural_similarity(x, y, workers=2, **kw), ref)


def test_concurrent_calls_from_threads():
    """Calls running at the same time from Python threads (GIL released) do not interfere."""
    pairs = [pair((120, 131), dtype=dt, seed=510 + i)
             for i, dt in enumerate([np.float64, np.float32] * 4)]
    serial = [fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both", workers=1)
              for x, y in pairs]
    with ThreadPoolExecutor(max_workers=4) as ex:
        futs = [ex.submit(fastssim.ssim, x, y, data_range=1.0, full=True, gradient="both",
                          workers=2) for x, y in pairs * 2]
        got = [f.result() for f in futs]
    for i, r in enumerate(got):
        _assert_bitwise(r, serial[i % len(pairs)])


def test_concurrent_ms_ssim_calls_share_the_cached_pyramid():
    """MS-SSIM calls of one geometry share a cached engine plan and pooled
    workspaces; running them from Python threads at once gives the serial
    results (value, both gradients, per-scale means)."""
    pairs = [pair((2, 176, 181), dtype=dt, seed=530 + i)
             for i, dt in enumerate([np.float64, np.float32] * 3)]
    kw = dict(data_range=1.0, gradient="both", return_scales=True)
    serial = [fastssim.ms_ssim(x, y, workers=1, **kw) for x, y in pairs]
    with ThreadPoolExecutor(max_workers=4) as ex:
        futs = [ex.submit(fastssim.ms_ssim, x, y, workers=2, **kw) for x, y in pairs * 2]
        got = [f.result() for f in futs]
    for i, r in enumerate(got):
        _assert_bitwise(tuple(r), tuple(serial[i % len(pairs)]))


@pytest.mark.parametrize("units", [2, 3, 5])
@pytest.mark.parametrize("name", ["ssim", "ms_ssim", "pixelwise"])
def test_blocking_does_not_change_results(name, units):
    """Reference: the default blocking (one row block per thread for a
    gradient).  Forcing 2, 3 or 5 blocks per thread on 2 threads moves the
    block seams (600 rows allow up to 6 blocks per plane of the 11-tap SSIM
    and MS-SSIM scale 0, 2 of the 29-tap per-pixel window); not a single bit
    may change."""
    from fastssim import _engine

    x, y = pair((2, 600, 300), seed=88)
    call = {
        "ssim": lambda: fastssim.ssim(x, y, data_range=1.0, gradient="both", full=True,
                                      workers=2),
        "ms_ssim": lambda: fastssim.ms_ssim(x, y, data_range=1.0, gradient="both",
                                            return_scales=True, workers=2),
        "pixelwise": lambda: fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=(0.5, 1, 2, 4),
                                                        gradient="both", full=True, workers=2),
    }[name]
    ref = call()
    try:
        _engine.set_units_per_thread(units)
        got = call()
    finally:
        _engine.set_units_per_thread(0)
    _assert_bitwise(tuple(got), tuple(ref))
