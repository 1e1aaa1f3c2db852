"""Deterministic parallelism (house rule 5): results do not depend on the thread count.

Reference: the ``workers=1`` result, compared *bitwise* (np.array_equal) —
reductions go through per-line partials summed in a fixed order, so any
difference at all means a thread-count-dependent reduction or a race.
Images are large enough (300x517, batches) that row blocks really split
between threads.  Also: concurrent calls from a Python thread pool (the
nogil paths) give the serial results.

The workers test iterates the table of public entry points (entry_points.py):
each entry lists the shapes and options its thread test runs with.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from entry_points import entry_params
from helpers import assert_bitwise, pair

import fastssim


@pytest.mark.parametrize("ep,case,dtype", entry_params("threads", "thread_dtypes"))
def test_workers_bitwise(ep, case, dtype):
    """Every entry point (entry_points.py), each of its output requests (``modes``):
    the result with workers=2 (and, for ssim, 3, -1 and None) is the workers=1 result,
    bit for bit; a vector-Jacobian product gets a seeded random cotangent."""
    _, shape, kw = case
    x, y = pair(shape, dtype=dtype, seed=501)
    kw = ep.kwargs(dtype, kw)
    extra = {}
    if ep.cotangent is not None:
        extra = dict(cotangent=ep.make_cotangent(x, y, dtype, **kw))
    for mode in ep.modes or (None,):
        ref = ep(x, y, mode=mode, workers=1, **kw, **extra)
        for w in ep.worker_counts:
            assert_bitwise(ep(x, y, mode=mode, workers=w, **kw, **extra), ref)


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
        assert_bitwise(r, serial[i % len(pairs)])


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
        assert_bitwise(tuple(r), tuple(serial[i % len(pairs)]))


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
    assert_bitwise(tuple(got), tuple(ref))
