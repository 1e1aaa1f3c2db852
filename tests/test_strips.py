"""Column strips: wide 2-D lines are cut into strips of columns (so that the
rings of filtered lines stay in the L2 cache).  The strip width is a function
of the geometry only; here it is forced small so that every path crosses
several strip seams.

Reference: the same call with a single strip (the default on these small
images).  Strips change only which unit computes a column, not the
arithmetic of a column, so results agree to a few ulp (1e-13 absolute on
values of order 1); gradients with strips are also checked against central
finite differences at every pixel.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_grad_matches_fd, central_fd, pair

import fastssim
from fastssim import _engine


@pytest.fixture
def strips():
    def force(width):
        _engine.set_strip_width(width)

    yield force
    _engine.set_strip_width(0)


def _arrays(r):
    if isinstance(r, tuple):
        return [np.asarray(v, dtype=np.float64) for v in r if v is not None]
    return [np.asarray(r, dtype=np.float64)]


CALLS = {
    "ssim-reflect": lambda x, y: fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both"),
    "ssim-valid": lambda x, y: fastssim.ssim(x, y, data_range=1.0, full=True, gradient="both",
                                             border="valid"),
    "ssim-value": lambda x, y: fastssim.ssim(x, y, data_range=1.0),
    "pixelwise": lambda x, y: fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=(0.5, 1, 2, 4),
                                                         full=True, gradient="both"),
    "pixelwise-valid": lambda x, y: fastssim.pixelwise_ms_ssim(
        x, y, data_range=1.0, sigmas=(0.5, 1, 2, 4), full=True, gradient="both", border="valid"),
    "ms-ssim": lambda x, y: fastssim.ms_ssim(x, y, data_range=1.0, weights=(0.5, 0.5),
                                             gradient="both"),
    # four scales: the coarse ones share a launch after a separate pyramid pass
    "ms-ssim-4": lambda x, y: fastssim.ms_ssim(x, y, data_range=1.0, weights=(0.25,) * 4,
                                               sigma=0.5, gradient="both"),
    "rgb": lambda x, y: fastssim.ssim(np.ascontiguousarray(np.moveaxis(x, 0, -1)),
                                      np.ascontiguousarray(np.moveaxis(y, 0, -1)),
                                      data_range=1.0, channel_axis=-1, full=True, gradient="both"),
}


@pytest.mark.parametrize("width", [1, 8, 16, 64, 100])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_strips_match_single_strip(strips, name, width):
    x, y = pair((2, 60, 203), seed=1201)
    f = CALLS[name]
    ref = _arrays(f(x, y))
    strips(width)
    got = _arrays(f(x, y))
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)


def test_strip_gradients_vs_fd(strips):
    strips(8)
    x, y = pair((14, 40), seed=1202)
    kw = dict(data_range=1.0, sigmas=(0.5, 1.0, 1.5))
    r = fastssim.pixelwise_ms_ssim(x, y, gradient="both", **kw)
    assert_grad_matches_fd(r.grad_x, central_fd(lambda a: fastssim.pixelwise_ms_ssim(a, y, **kw), x))
    assert_grad_matches_fd(r.grad_y, central_fd(lambda a: fastssim.pixelwise_ms_ssim(x, a, **kw), y))
    r = fastssim.ssim(x, y, data_range=1.0, sigma=1.0, gradient="x", border="valid")
    assert_grad_matches_fd(r.grad_x, central_fd(
        lambda a: fastssim.ssim(a, y, data_range=1.0, sigma=1.0), x))


def test_strips_thread_count_independent(strips):
    strips(32)
    x, y = pair((3, 70, 150), seed=1203)
    a = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=(0.5, 1, 2), full=True,
                                   gradient="both", workers=1)
    b = fastssim.pixelwise_ms_ssim(x, y, data_range=1.0, sigmas=(0.5, 1, 2), full=True,
                                   gradient="both", workers=2)
    for u, v in zip(_arrays(a), _arrays(b)):
        assert np.array_equal(u, v)
