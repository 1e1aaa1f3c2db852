"""Window taps and the banded 1-D operators the engine applies.

A window operator along one axis of length ``n`` maps the input to the
outputs ``[start, stop)`` of the same-size, scipy-'reflect'-bordered
correlation (``d c b a | a b c d | d c b a``; MATLAB's 'symmetric').  The
'valid' border is the special case ``start = r, stop = n - r``, where no
reflection happens.  Output ``i`` reads inputs ``i + off - r + k``,
``k = 0..2r``: a band of width 2r+1 even when the reflection folds samples
back (for any r, also r >= n), so the forward operator and its adjoint are
both stored as ``(n_out, 2r+1)`` weight rows.  Rows that are exactly the
symmetric taps and read only existing samples form the interior ``[lo, hi)``
that the engine runs with the paired-tap fast path; the rest (the borders)
keep their rows in a table.

The adjoint (transpose) of a band is again a band with ``off -> -off``:
that is how gradients (eqs. 5-7 of the derivation) are computed without a
second filter implementation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["gaussian_taps", "uniform_taps", "exact_mass", "Band", "band_pair"]


@functools.lru_cache(maxsize=64)
def gaussian_taps(sigma: float, truncate: float = 3.5) -> tuple:
    """Normalised Gaussian taps of radius ``int(truncate * sigma + 0.5)``.

    Identical to ``scipy.ndimage.gaussian_filter``'s kernel (and so to
    scikit-image's ``gaussian_weights=True`` window).
    """
    radius = (gaussian_size(sigma, truncate) - 1) // 2
    if radius == 0:  # one tap (sigma < 1/7 at truncate 3.5): 1/sigma^2 may not exist
        return (1.0,)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    phi /= phi.sum()
    return tuple(phi.tolist())


@functools.lru_cache(maxsize=64)
def uniform_taps(win_size: int) -> tuple:
    """Box window of ``win_size`` equal taps (``scipy.ndimage.uniform_filter``)."""
    return (1.0 / win_size,) * win_size


@functools.lru_cache(maxsize=256)
def exact_mass(taps: tuple, dtype_char: str) -> tuple:
    """The taps as the compute type holds them, with a total mass of exactly 1.

    Rounding each tap of a normalised window to float32 leaves the window's
    mass off by a few 1e-8 (seven taps of ``float32(1/7)`` sum to 1 + 4.5e-8).
    A window of mass 1 + e scales the local means and second moments by
    1 + e, so the variance gains about ``-e mu^2``: a bias, not noise, which
    made every float32 box SSIM about 1e-6 low.  Here the rounded taps are
    nudged, one unit in the last place at a time (symmetric pairs together,
    the taps whose rounding went furthest in the wrong direction first),
    until their exact sum is 1: every tap stays within two units in the last
    place of the centre (largest) tap of the exact window.  Returned as float64 values that are
    exactly representable in the compute type.  Windows whose mass is not 1
    to rounding, or that are not symmetric, are only rounded.
    """
    dt = np.dtype(dtype_char)
    t = np.asarray(taps, dtype=np.float64)
    rounded = t.astype(dt).astype(np.float64)
    r = (t.size - 1) // 2
    if (t.size % 2 == 0 or abs(t.sum() - 1.0) > 1e-9 or not np.array_equal(t, t[::-1])
            or np.any(t <= 0)):
        return tuple(rounded.tolist())
    half = [Fraction(v) for v in rounded[r:].tolist()]  # centre first
    mult = [1] + [2] * r                                  # a pair counts twice
    target = [Fraction(v) for v in t[r:].tolist()]
    moved = [0] * (r + 1)
    for _ in range(64 * (r + 1)):
        excess = sum(m * h for m, h in zip(mult, half)) - 1
        if excess == 0:
            out = [float(h) for h in half]
            full = out[:0:-1] + out
            if all(float(dt.type(v)) == v for v in full):
                return tuple(full)
            break
        sign = 1 if excess > 0 else -1
        best = None
        for k, h in enumerate(half):
            step = Fraction(float(np.spacing(dt.type(float(h)))))
            if step * mult[k] > abs(excess):
                continue
            # prefer taps moved least, then the one whose rounding moved it
            # furthest in the direction of the excess (relative to its size)
            score = (-moved[k], sign * (h - target[k]) / target[k])
            if best is None or score > best[0]:
                best = (score, k, step)
        if best is None:
            break
        _, k, step = best
        half[k] -= sign * step
        moved[k] += 1
    return tuple(rounded.tolist())


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """scipy 'reflect' index map, valid at any distance from the array."""
    period = 2 * n
    m = np.mod(idx, period)
    return np.where(m < n, m, period - 1 - m)


@dataclass(frozen=True)
class Band:
    """One banded 1-D operator (see module docstring); arrays in the compute dtype."""

    n_in: int
    n_out: int
    r: int
    off: int
    lo: int
    hi: int
    g: np.ndarray       # r + 1 half taps, centre first
    tab_lo: np.ndarray  # (lo, 2r+1)
    tab_hi: np.ndarray  # (n_out - hi, 2r+1)
    # The border rows transposed, for outputs in vector lanes: (2r+1, W)
    # weights of the outputs [0, W) (lo) and [n_out - W, n_out) (hi), W the
    # border count rounded up to BORDER_LANES (lanes past the border hold
    # their own rows, interior ones the taps); empty if there is no border or
    # the two blocks would overlap the other border.
    tabt_lo: np.ndarray
    tabt_hi: np.ndarray
    # The same-size reflect map (outputs [0, n) of n > 2r inputs): symmetric
    # (it is its own adjoint), and a border output is the interior formula on
    # the line extended by its mirror image, which the engine uses when it
    # can write that image next to the line.
    reflect: bool = False

    def dense(self) -> np.ndarray:
        """The operator as a dense (n_out, n_in) matrix (for tests and debugging)."""
        w = 2 * self.r + 1
        full = np.concatenate([self.g[::-1], self.g[1:]]).astype(np.float64)
        m = np.zeros((self.n_out, self.n_in))
        for i in range(self.n_out):
            if i < self.lo:
                row = self.tab_lo[i]
            elif i >= self.hi:
                row = self.tab_hi[i - self.hi]
            else:
                row = full
            for k in range(w):
                q = i + self.off - self.r + k
                if 0 <= q < self.n_in:
                    m[i, q] += row[k]
        return m


def longest_run(mask) -> tuple:
    """(start, stop) of the longest run of True in ``mask`` (the first of
    equal runs; (0, 0) if none), in O(n) array operations."""
    edges = np.diff(np.concatenate(([0], np.asarray(mask, dtype=np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.size == 0:
        return (0, 0)
    k = int(np.argmax(stops - starts))
    return (int(starts[k]), int(stops[k]))


def gaussian_size(sigma: float, truncate: float) -> int:
    """Tap count ``2 * int(truncate * sigma + 0.5) + 1`` of a Gaussian window
    (a Python int: exact for any finite radius)."""
    return 2 * int(truncate * sigma + 0.5) + 1


def _interior(rows: np.ndarray, full: np.ndarray, readable: np.ndarray) -> tuple:
    """Longest run of rows equal to the symmetric taps that read only real samples."""
    return longest_run(np.all(rows == full[None, :], axis=1) & readable)


# Lanes of the transposed border blocks: a multiple of every vector width.
BORDER_LANES = 16


def _border_blocks(rows: np.ndarray, lo: int, hi: int, dtype) -> tuple:
    """The transposed weights of the two border blocks (see ``Band``)."""
    n_out, w = rows.shape
    empty = np.zeros((w, 0), dtype=dtype)
    wlo = -(-lo // BORDER_LANES) * BORDER_LANES
    whi = -(-(n_out - hi) // BORDER_LANES) * BORDER_LANES
    if lo == 0 or wlo > hi:
        t_lo = empty
    else:
        t_lo = np.ascontiguousarray(rows[:wlo].T, dtype=dtype)
    if hi == n_out or n_out - whi < lo:
        t_hi = empty
    else:
        t_hi = np.ascontiguousarray(rows[n_out - whi:].T, dtype=dtype)
    return t_lo, t_hi


def _make_band(rows: np.ndarray, n_in: int, off: int, full: np.ndarray, dtype,
               reflect: bool = False) -> Band:
    n_out, w = rows.shape
    r = (w - 1) // 2
    i = np.arange(n_out)[:, None]
    k = np.arange(w)[None, :]
    q = i + off - r + k
    readable = np.all((q >= 0) & (q < n_in), axis=1)
    lo, hi = _interior(rows, full, readable)
    t_lo, t_hi = _border_blocks(rows, lo, hi, dtype)
    band = Band(
        n_in=n_in, n_out=n_out, r=r, off=off, lo=lo, hi=hi,
        g=np.ascontiguousarray(full[r:], dtype=dtype),
        tab_lo=np.ascontiguousarray(rows[:lo], dtype=dtype),
        tab_hi=np.ascontiguousarray(rows[hi:], dtype=dtype),
        tabt_lo=t_lo, tabt_hi=t_hi,
        reflect=reflect and off == 0 and n_out == n_in and (lo, hi) == (r, n_in - r),
    )
    for a in (band.g, band.tab_lo, band.tab_hi, band.tabt_lo, band.tabt_hi):
        a.flags.writeable = False  # shared through band_pair's cache
    return band


@functools.lru_cache(maxsize=256)
def band_pair(n: int, taps: tuple, start: int, stop: int, dtype_char: str) -> tuple:
    """Forward band (n -> outputs [start, stop) of the reflect map) and its adjoint.

    ``taps`` is the full, symmetric window (odd length).  Cached: the tables
    depend only on the geometry.
    """
    dtype = np.dtype(dtype_char)
    full = np.asarray(exact_mass(tuple(taps), dtype_char), dtype=np.float64)
    w = full.size
    if w % 2 == 0:  # the engine's bands need an odd, non-empty window
        raise ValueError(f"a window needs an odd number of taps, got {w}")
    r = (w - 1) // 2
    n_out = stop - start
    centres = start + np.arange(n_out)
    fwd = np.zeros((n_out, w))
    rows = np.arange(n_out)
    for k in range(w):
        q = _reflect(centres - r + k, n)
        np.add.at(fwd, (rows, q - centres + r), full[k])
    # Adjoint: output q (input space) reads map row p = q - start - r + k',
    # with weight fwd[p, 2r - k'].
    qs = np.arange(n)[:, None]
    ks = np.arange(w)[None, :]
    p = qs - start - r + ks
    ok = (p >= 0) & (p < n_out)
    adj = np.where(ok, fwd[np.clip(p, 0, max(n_out - 1, 0)), 2 * r - ks], 0.0)
    same = start == 0 and stop == n and n > 2 * r
    return (
        _make_band(fwd, n, start, full, dtype, reflect=same),
        _make_band(adj, n_out, -start, full[::-1], dtype, reflect=same),
    )
