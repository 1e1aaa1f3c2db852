"""Shared helpers for the fastssim test suite.

Test images are seeded random pairs: ``y`` is correlated with ``x`` but not
equal to it, so the SSIM map takes values across (-1, 1) — near 1, near 0 and
negative — rather than sitting at the trivial value 1.
"""

from __future__ import annotations

import numpy as np
import pytest


def pair(shape, dtype=np.float64, seed=0, corr=0.4):
    """A correlated image pair of ``shape`` in ``dtype``.

    Floats lie in [0, 1] (use ``data_range=1``); integers span their dtype's
    whole range (scikit-image's default ``data_range``); bools are thresholds.
    """
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    y = corr * x + (1.0 - corr) * rng.random(shape)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return x.astype(dtype), y.astype(dtype)
    if dtype.kind == "b":
        return x > 0.5, y > 0.5
    info = np.iinfo(dtype)
    span = float(info.max) - float(info.min)

    def to_int(a):
        return np.round(a * span + float(info.min)).astype(dtype)

    return to_int(x), to_int(y)


def central_fd(f, a, h=1e-6):
    """Central finite differences of ``f`` with respect to every element of ``a``.

    ``f`` returns a scalar or an array (e.g. one value per batch item); the
    result has shape ``a.shape + shape_of_f``.  ``a`` is float64; it is copied,
    so the caller's array is untouched.
    """
    a = np.array(a, dtype=np.float64, copy=True)
    out = None
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + h
        fp = np.array(f(a), dtype=np.float64)
        a[idx] = old - h
        fm = np.array(f(a), dtype=np.float64)
        a[idx] = old
        d = (fp - fm) / (2.0 * h)
        if out is None:
            out = np.empty(a.shape + d.shape)
        out[idx] = d
    return out


def batch_fd(f, a, h=1e-6, chunk=1024):
    """Central differences of ``f`` w.r.t. every element of ``a``, in batches.

    ``f`` maps a stack ``(K, *a.shape)`` to values ``(K, *vshape)``; returns
    ``a.shape + vshape``.  Each stacked image differs from ``a`` in one element.
    """
    n = a.size
    parts = []
    for s in range(0, n, chunk):
        k = min(chunk, n - s)
        step = np.zeros((k, n))
        step[np.arange(k), s + np.arange(k)] = h
        step = step.reshape((k,) + a.shape)
        vp = np.asarray(f(a + step))
        vm = np.asarray(f(a - step))
        parts.append((vp - vm) / (2.0 * h))
    d = np.concatenate(parts)
    return d.reshape(a.shape + d.shape[1:])


# Central differences with h = 1e-6 on O(1) SSIM values carry a truncation
# error ~h^2 and a rounding error ~eps/h ~ 1e-10; the measured gap to the
# analytic gradients is ~1e-9 of max|grad|.  A dropped covariance factor
# changes the gradient by ~1e-4 of max|grad| (81-sample window; 2e-3 for 9
# samples), a missed border fold or a wrong crop by O(1).
FD_REL = 1e-6


def assert_grad_matches_fd(analytic, numeric, rel=FD_REL):
    """Elementwise |analytic - numeric| <= rel * max|numeric|, at every pixel."""
    assert analytic.shape == numeric.shape
    scale = np.abs(numeric).max()
    assert scale > 0, "degenerate test: the numerical gradient is identically zero"
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=rel * scale)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def border_mask(shape, width):
    """True on the pixels within ``width`` of any border (where reflection or the
    crop's edge windows matter), so gradient tests can assert there explicitly."""
    m = np.zeros(shape, dtype=bool)
    for ax, n in enumerate(shape):
        idx = [slice(None)] * len(shape)
        idx[ax] = np.r_[0:width, n - width:n]
        m[tuple(idx)] = True
    return m
