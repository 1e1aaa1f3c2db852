"""Per-pixel MS-SSIM of Zhao, Gallo, Frosio and Kautz, with its exact gradient.

P(p) = l_M(p) * prod_{j=1..M} cs_j(p)  (eq. 11 of the derivation, alpha = beta_j = 1),
every factor computed at full resolution with a Gaussian window of its own
width sigma_j (no pyramid); l_M uses the widest window.  Since
l_M cs_M = SSIM_M, P = SSIM_M * prod_{j<M} cs_j: one SSIM map and M-1 cs
maps of the same filter engine.

All scales run in one streaming pass of the engine (a 'product' Plan):
for each output line it computes every scale's moments, the factors and
their product, and, for the gradient of sum_p w(p) P(p), each scale's
partials weighted by the cotangent w * prod_{k != j} (factor k) — the product
of the *other* factors, never P / cs_j, so it stays finite where a cs_j
vanishes (the last line of the derivation divides by cs_j) — then every
scale's adjoint window, summed.
"""

from __future__ import annotations

from collections import namedtuple

from ._finite import finite_or_promote
from . import _backends, _plan
from ._validation import check_bool
from ._dispatch import gpu_dispatch

__all__ = ["pixelwise_ms_ssim", "pixelwise_ms_ssim_vjp", "PixelwiseResult", "ZHAO_SIGMAS"]

ZHAO_SIGMAS = (0.5, 1.0, 2.0, 4.0, 8.0)

PixelwiseResult = namedtuple("PixelwiseResult", ["value", "map", "grad_x", "grad_y"])
PixelwiseResult.__doc__ = """Result of :func:`fastssim.pixelwise_ms_ssim` with ``full`` or ``gradient``.

value : float or ndarray of the batch shape (float64), the mean of the map
map : ndarray or None, the per-pixel MS-SSIM map P(p)
grad_x, grad_y : ndarray or None, gradient of ``value`` w.r.t. x / y
"""


@gpu_dispatch("pixelwise_ms_ssim")
@finite_or_promote()
def pixelwise_ms_ssim(x, y, *, data_range=None, sigmas=ZHAO_SIGMAS, truncate=3.5, K1=0.01,
                      K2=0.03, covariance="population", border="reflect", full=False,
                      gradient=None, channel_axis=None, spatial_dims=2, workers=None):
    """Per-pixel MS-SSIM map of Zhao et al., its mean and the exact gradient of the mean.

    P(p) = l_M(p) prod_j cs_j(p) (eq. 11 of Zhao et al. with alpha = beta_j = 1):
    cs_j from a Gaussian window of width ``sigmas[j]``, l from the widest one,
    every scale at full resolution (no pyramid; this is not :func:`ms_ssim`).

    Parameters
    ----------
    x, y : ndarray, shape (*batch, H, W) (or (*batch, D, H, W) with ``spatial_dims=3``)
        As for :func:`fastssim.ssim`: the batch axes broadcast (no copy of the
        broadcast input), and a gradient comes back in its input's own shape.
    data_range : float
        Required for floating-point input.
    sigmas : sequence of float
        Strictly increasing Gaussian widths, default (0.5, 1, 2, 4, 8) as in the paper.
    truncate : float
        Each window is cut at ``int(truncate * sigma + 0.5)`` px.  The default
        3.5 keeps at least 99.9 % of every 2-D window's mass (0.99953 per axis).
        The authors' code cuts sigma = 8 at 2 sigma (95 % per axis, 91 % in 2-D):
        pass ``truncate=2`` to match it.
    border : {'reflect', 'valid'}
        'reflect' (default): a same-size map with scipy-'reflect' borders, as
        :func:`fastssim.ssim`'s map; 'valid': only the pixels where the widest
        window fits.
    full : bool
        Also return the map.
    gradient : {None, 'x', 'y', 'both'}
        Also return the exact gradient of the returned value.

    Returns
    -------
    value : float or ndarray
        The mean of the map (over the whole map: every pixel with 'reflect'),
        one float64 per batch item (mean over channels with ``channel_axis``);
        a :class:`PixelwiseResult` ``(value, map, grad_x, grad_y)`` when
        ``full`` or ``gradient`` is set.

    Other Parameters
    ----------------
    K1, K2, covariance, channel_axis, spatial_dims, workers
        As for :func:`fastssim.ssim` (with 'sample' covariance, each scale uses
        its own window's NP/(NP-1)).

    Notes
    -----
    Unlike :func:`fastssim.ssim`, whose value is the mean over the pixels
    where the window fits, the value here is the mean of the map returned: a
    per-pixel loss is usually applied to small training patches, where the
    region in which a sigma = 8 window fits would be tiny or empty.

    References
    ----------
    .. [1] Zhao, H., Gallo, O., Frosio, I., Kautz, J. (2017). Loss functions
       for image restoration with neural networks. IEEE Transactions on
       Computational Imaging, 3(1), 47-57.

    Examples
    --------
    >>> import numpy as np, fastssim
    >>> x = np.random.default_rng(0).random((64, 64))
    >>> float(fastssim.pixelwise_ms_ssim(x, x, data_range=1.0))
    1.0
    """
    g = _plan.grad_code(gradient)
    full = check_bool(full, "full")
    p, x, y = _plan.pixelwise(x, y, full=full, grad=g, sigmas=sigmas, truncate=truncate,
                              data_range=data_range, K1=K1, K2=K2, covariance=covariance,
                              border=border, channel_axis=channel_axis,
                              spatial_dims=spatial_dims, workers=workers)
    res = _backends.execute(p, x, y)
    value = _plan.values(p, res.sums)
    if not full and not g:
        return value
    return PixelwiseResult(value, res.map, res.grad_x, res.grad_y)


@gpu_dispatch("pixelwise_ms_ssim_vjp")
@finite_or_promote(value_first=False)
def pixelwise_ms_ssim_vjp(x, y, cotangent, *, wrt="x", data_range=None, sigmas=ZHAO_SIGMAS,
                          truncate=3.5, K1=0.01, K2=0.03, covariance="population",
                          border="reflect", channel_axis=None, spatial_dims=2, workers=None):
    """Vector-Jacobian product of the per-pixel MS-SSIM map: d/dx of sum_p w(p) P(p).

    ``cotangent`` (w) has the shape of the map ``pixelwise_ms_ssim(..., full=True)``
    returns.  Returns the gradient w.r.t. x (``wrt='x'``), y, or the pair
    (``'both'``).  Other arguments as :func:`pixelwise_ms_ssim`.
    """
    g = _plan.wrt_code(wrt)
    p, x, y = _plan.pixelwise(x, y, full=True, grad=g, vjp=True, sigmas=sigmas,
                              truncate=truncate, data_range=data_range, K1=K1, K2=K2,
                              covariance=covariance, border=border, channel_axis=channel_axis,
                              spatial_dims=spatial_dims, workers=workers)
    w = _plan.check_cotangent(p, cotangent, "per-pixel MS-SSIM", border)
    res = _backends.execute(p, x, y, cotangent=w)
    return res.grad_x if g == 1 else res.grad_y if g == 2 else (res.grad_x, res.grad_y)
