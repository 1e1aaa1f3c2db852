"""Independent float64 NumPy/SciPy reference for the per-pixel MS-SSIM and the loss maps.

Written from the conventions in the docstrings of ``fastssim.pixelwise_ms_ssim``
and ``fastssim.losses``, not from the implementation: every moment is a
separable ``scipy.ndimage.correlate1d`` with ``mode='reflect'`` along each
spatial axis (scipy's ``d c b a | a b c d`` border, the one ``fastssim.ssim``
uses), with the taps of ``scipy.ndimage.gaussian_filter`` (radius
``int(truncate * sigma + 0.5)``); variances and the covariance are
population moments E[ab] - E[a]E[b], times NP/(NP - 1) with NP = taps**ndim
of *that* window for ``covariance='sample'``.  'valid' crops the same-size
map by the widest window's radius.  Everything is float64, whatever the
inputs' dtype (the float32 comparisons feed it the float32 values).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

__all__ = ["gauss_taps", "gfilter", "ref_factors", "ref_pixelwise", "ref_ssim_map",
           "ref_l1_filtered", "ref_mix_map", "crop", "planes_apply"]


def gauss_taps(sigma, truncate=3.5):
    """scipy.ndimage.gaussian_filter's kernel: exp(-x^2 / 2 sigma^2), normalised."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x * x)
    return phi / phi.sum()


def gfilter(a, taps, nd):
    """Separable same-size correlation over the last ``nd`` axes, scipy 'reflect' border."""
    a = np.asarray(a, dtype=np.float64)
    for ax in range(a.ndim - nd, a.ndim):
        a = correlate1d(a, taps, axis=ax, mode="reflect")
    return a


def ref_factors(x, y, sigma, *, data_range, truncate=3.5, K1=0.01, K2=0.03,
                covariance="population", nd=2):
    """(l, cs) maps of one Gaussian window, same size as the input (last ``nd`` axes spatial)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = gauss_taps(sigma, truncate)
    C1 = (K1 * data_range) ** 2
    C2 = (K2 * data_range) ** 2
    if covariance == "sample":
        NP = len(w) ** nd
        c = NP / (NP - 1.0)
    elif covariance == "population":
        c = 1.0
    else:  # a number: that factor for every window (for negative controls)
        c = float(covariance)
    mx, my = gfilter(x, w, nd), gfilter(y, w, nd)
    vx = c * (gfilter(x * x, w, nd) - mx * mx)
    vy = c * (gfilter(y * y, w, nd) - my * my)
    vxy = c * (gfilter(x * y, w, nd) - mx * my)
    lum = (2.0 * mx * my + C1) / (mx * mx + my * my + C1)
    cs = (2.0 * vxy + C2) / (vx + vy + C2)
    return lum, cs


def ref_pixelwise(x, y, sigmas, *, data_range, truncate=3.5, K1=0.01, K2=0.03,
                  covariance="population", nd=2):
    """P = l_M * prod_j cs_j, same size as the input."""
    P = 1.0
    for s in sigmas:
        lum, cs = ref_factors(x, y, s, data_range=data_range, truncate=truncate, K1=K1, K2=K2,
                              covariance=covariance, nd=nd)
        P = P * cs
    return P * lum  # lum of the last (widest) window


def ref_ssim_map(x, y, sigma=1.5, **kw):
    lum, cs = ref_factors(x, y, sigma, **kw)
    return lum * cs


def ref_l1_filtered(p, t, sigma, *, truncate=3.5, nd=2):
    """G_sigma * |p - t| with the reflect border."""
    d = np.abs(np.asarray(p, np.float64) - np.asarray(t, np.float64))
    return gfilter(d, gauss_taps(sigma, truncate), nd)


def ref_mix_map(p, t, sigmas, *, alpha, data_range, truncate=3.5, nd=2, **kw):
    P = ref_pixelwise(p, t, sigmas, data_range=data_range, truncate=truncate, nd=nd, **kw)
    return alpha * (1.0 - P) + (1.0 - alpha) * ref_l1_filtered(p, t, sigmas[-1],
                                                               truncate=truncate, nd=nd)


def crop(m, sigma, truncate=3.5, nd=2):
    """The 'valid' part of a same-size map: the widest window's radius off every side."""
    r = int(truncate * sigma + 0.5)
    sl = (Ellipsis,) + (slice(r, -r if r else None),) * nd
    return m[sl]


def planes_apply(f, x, y, channel_axis):
    """Apply ``f(x, y)`` (last two axes spatial) after moving ``channel_axis`` out of the way."""
    xm = np.moveaxis(x, channel_axis, 0)
    ym = np.moveaxis(y, channel_axis, 0)
    return np.moveaxis(f(xm, ym), 0, channel_axis)
