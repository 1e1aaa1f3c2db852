"""The banded operators behind every filter: the transposed border blocks the
engine runs in vector lanes.

Reference: ``Band.dense()``, the operator as a matrix built from the row
tables.  Each lane of a transposed block must hold exactly the weights of
its output's row (exact equality: the blocks are copies, no arithmetic).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastssim._bands import BORDER_LANES, band_pair, gaussian_taps, uniform_taps


def _lane_rows(band, block, first):
    """Dense rows (n_out-sized) of the outputs first .. first + W - 1 from a block."""
    w, W = block.shape
    rows = np.zeros((W, band.n_in))
    for j in range(W):
        i = first + j
        for k in range(w):
            q = i + band.off - band.r + k
            if 0 <= q < band.n_in:
                rows[j, q] += block[k, j]
            else:
                assert block[k, j] == 0  # an unreadable tap weighs nothing
    return rows


# (forward, adjoint) block widths (lo, hi) of the cases below
WIDTHS = {
    (40, 0): [(16, 16), (16, 16)],    # 5 border outputs a side
    (40, 5): [(0, 0), (16, 16)],      # valid: no forward border; the adjoint's 10 + 10
    (90, 0): [(32, 32), (32, 32)],    # 28 a side
    (33, 3): [(0, 0), (16, 16)],
    (20, 0): [(0, 0), (0, 0)],        # 7 a side: 16 lanes would reach the other border
}


@pytest.mark.parametrize("n,taps,start,stop", [
    (40, gaussian_taps(1.5), 0, 40),        # reflect map: folded borders
    (40, gaussian_taps(1.5), 5, 35),        # valid region (its adjoint has truncated borders)
    (90, gaussian_taps(8.0), 0, 90),        # 57 taps, 28 border outputs a side
    (33, uniform_taps(7), 3, 30),
    (20, gaussian_taps(2.0), 0, 20),        # blocks would overlap the other border: none
])
def test_border_blocks_are_the_border_rows(n, taps, start, stop):
    for band in band_pair(n, tuple(taps), start, stop, "d"):
        dense = band.dense()
        for block, first in ((band.tabt_lo, 0), (band.tabt_hi, band.n_out - band.tabt_hi.shape[1])):
            W = block.shape[1]
            if W == 0:
                continue
            assert W % BORDER_LANES == 0
            assert block.shape[0] == 2 * band.r + 1
            np.testing.assert_array_equal(_lane_rows(band, block, first), dense[first:first + W])
    # the block widths, by hand: border outputs rounded up to 16 lanes, none
    # where there is no border or the block would reach the other border
    fwd, adj = band_pair(n, tuple(taps), start, stop, "d")
    assert [(b.tabt_lo.shape[1], b.tabt_hi.shape[1]) for b in (fwd, adj)] == WIDTHS[(n, start)]


def _mirror_dense(n, taps):
    """The interior formula on the line extended by its mirror image, as a matrix."""
    g = np.asarray(taps, dtype=np.float64)
    r = (g.size - 1) // 2
    m = np.zeros((n, n))
    for i in range(n):
        for k in range(g.size):
            q = i - r + k
            q = -1 - q if q < 0 else (2 * n - 1 - q if q >= n else q)
            m[i, q] += g[k]
    return m


@pytest.mark.parametrize("n,taps,start,stop,reflect", [
    (40, gaussian_taps(1.5), 0, 40, True),   # the same-size reflect map
    (90, gaussian_taps(8.0), 0, 90, True),   # 57 taps
    (57, gaussian_taps(8.0), 0, 57, True),   # n = 2r + 1: the smallest such line
    (56, gaussian_taps(8.0), 0, 56, False),  # n <= 2r: the reflection folds twice
    (40, gaussian_taps(1.5), 5, 35, False),  # a valid region
    (40, gaussian_taps(1.5), 0, 39, False),  # a cropped map
    (33, uniform_taps(7), 0, 33, True),
])
def test_reflect_bands_are_the_mirrored_interior(n, taps, start, stop, reflect):
    # The engine runs a band flagged ``reflect`` at a line end as the interior
    # formula on the line's mirror image (engine_impl.h, mirror), for the
    # forward band and its adjoint alike: that must be the same operator as
    # the tables, and symmetric.  Reference: a direct mirror-extension matrix.
    fwd, adj = band_pair(n, tuple(taps), start, stop, "d")
    assert fwd.reflect is reflect and adj.reflect is reflect
    if reflect:
        ref = _mirror_dense(n, taps)
        np.testing.assert_allclose(fwd.dense(), ref, rtol=0, atol=1e-15)
        np.testing.assert_allclose(adj.dense(), ref, rtol=0, atol=1e-15)
        assert (fwd.lo, fwd.hi) == ((len(taps) - 1) // 2, n - (len(taps) - 1) // 2)


def test_cached_operators_are_read_only():
    # band_pair and down_axis are lru-cached: every later call with the same
    # geometry gets the same arrays, so a caller's write must fail loudly
    # instead of corrupting every later result.
    from fastssim._pyramid import down_axis
    fwd, adj = band_pair(40, tuple(gaussian_taps(1.5)), 0, 40, "d")
    d = down_axis(41, "symmetric")
    for a in (fwd.g, fwd.tab_lo, adj.tabt_hi, d.i0, d.w1, d.u, d.last):
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0
