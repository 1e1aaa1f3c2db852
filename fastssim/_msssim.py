"""Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) with its exact analytic gradient."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._finite import finite_or_promote
from . import _backends, _plan
from ._backends.cpu import ms_combine as _combine  # noqa: F401  (re-export: tests/test_msssim.py)
from ._pyramid import CONVENTIONS, pyramid_shapes
from ._validation import check_bool, check_int, check_pair
from ._conventions import with_convention
from ._dispatch import gpu_dispatch

__all__ = ["ms_ssim", "multiscale_structural_similarity", "MSSSIMResult", "WANG_WEIGHTS", "min_size"]

WANG_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
NEGATIVE = ("clamp", "simple", "none")

MSSSIMResult = namedtuple("MSSSIMResult", ["value", "grad_x", "grad_y", "scales"])
MSSSIMResult.__doc__ = """Result of :func:`fastssim.ms_ssim` with ``gradient`` or ``return_scales``.

value : float or ndarray of the batch shape (float64)
grad_x, grad_y : ndarray or None, gradient of ``value`` w.r.t. x / y
scales : ndarray (*batch[, C], M), the per-scale means m_j before the
    negative-value policy (mean cs for j < M, mean l*cs for j = M)
"""


def min_size(scales: int, taps: int, downsample: str = "symmetric", spatial_dims: int = 2) -> int:
    """Smallest side (all sides equal) for which every scale's window fits."""
    # (scales up to 64: the answer then has ~70 bits; 10**4 scales ran for minutes)
    # Python ints: an np.int64 taps doubled below would wrap around and never fit
    checked = []
    for name, v, top in (("scales", scales, 64), ("taps", taps, None),
                         ("spatial_dims", spatial_dims, 3)):
        limit = f" of at most {top}" if top is not None else ""
        checked.append(check_int(v, name, expect=f"a positive int{limit}", lo=1, hi=top))
    scales, taps, spatial_dims = checked
    if not isinstance(downsample, str) or downsample not in CONVENTIONS:
        raise ValueError(f"downsample: expected one of {CONVENTIONS}, got {downsample!r}")

    def fits(n):
        return min(pyramid_shapes((n,) * spatial_dims, downsample, scales)[-1]) >= taps

    # the last scale's extent never shrinks as n grows: double, then bisect
    lo, hi = taps - 1, taps
    while not fits(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


@with_convention("ms_ssim")
@gpu_dispatch("ms_ssim")
@finite_or_promote(exempt=lambda kw: kw.get("negative") == "none")
def ms_ssim(x, y, *, data_range=None, weights=WANG_WEIGHTS, window="gaussian", sigma=1.5,
            truncate=3.5, win_size=None, K1=0.01, K2=0.03, covariance="population",
            downsample="symmetric", negative="clamp", fit_scales=False, gradient=None,
            channel_axis=None, spatial_dims=2, workers=None, return_scales=False,
            _names=("x", "y")):
    """Multi-scale structural similarity of each image pair in a batch, with its exact gradient.

    MS-SSIM = prod_j f(m_j)^w_j, with m_j the mean of cs_j (scales j < M) or of
    l_M * cs_M (the last scale M) over the pixels where the window fits at
    scale j, scale j+1 being the 2x mean downsampling of scale j, and f the
    negative-value policy.  The defaults are Wang's reference ``msssim.m``:
    5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), an
    11-tap Gaussian of sigma 1.5, K1 = 0.01, K2 = 0.03, population
    covariance, no padding, and an odd extent repeating its last sample when
    downsampled (TensorFlow's ``ssim_multiscale`` is the same).

    Parameters
    ----------
    x, y : ndarray, shape (*batch, H, W) (or (*batch, D, H, W) with ``spatial_dims=3``)
        As for :func:`fastssim.ssim`: the batch axes broadcast (no copy of the
        broadcast input), and a gradient comes back in its input's own shape.
    data_range : float
        Required for floating-point input.
    weights : sequence of float
        One non-negative exponent per scale; their number is the number of scales.
    downsample : {'symmetric', 'zero', 'drop', 'replicate'}
        Treatment of odd extents: 'symmetric' (Wang, TensorFlow: repeat the
        last sample), 'zero' (pytorch_msssim: a zero before the first sample,
        counted in the mean), 'drop' (torchmetrics: drop the last sample),
        'replicate' (piq: if any side is odd, replicate the first sample of
        every side).
    negative : {'clamp', 'simple', 'none'}
        What happens to a negative per-scale mean before the fractional power:
        'clamp' at zero (TensorFlow, pytorch_msssim; its gradient is zero
        there), 'simple' maps m -> (m + 1) / 2 (torchmetrics' ``normalize=
        'simple'``), 'none' uses m as is (a negative m with a fractional weight
        gives NaN, as MATLAB would give a complex number).
    fit_scales : bool
        If the image is too small for all the scales, use as many as fit,
        with the weights truncated and rescaled to the original sum, instead
        of raising ``ValueError`` (still raised if not even one scale fits, or
        if the weights of the scales that fit are all zero).
    gradient : {None, 'x', 'y', 'both'}
        Also return the exact gradient of the returned value (through the
        pyramid, the downsampling adjoint included) with respect to x, y or both.
    return_scales : bool
        Also return the per-scale means m_j.

    Returns
    -------
    value : float or ndarray
        One float64 per batch item; an :class:`MSSSIMResult` ``(value, grad_x,
        grad_y, scales)`` when ``gradient`` or ``return_scales`` is set.

    Other Parameters
    ----------------
    window, sigma, truncate, win_size, K1, K2, covariance, channel_axis,
    spatial_dims, workers
        As for :func:`fastssim.ssim`.

    Notes
    -----
    The smallest side that fits M scales of a T-tap window is
    ``(T - 1) * 2**(M - 1) + 1`` for 'symmetric', 'zero' and 'replicate'
    (161 px for the defaults) and ``T * 2**(M - 1)`` for 'drop' (176 px);
    :func:`fastssim.min_size` computes it for any convention.

    References
    ----------
    .. [1] Wang, Z., Simoncelli, E. P., Bovik, A. C. (2003). Multi-scale
       structural similarity for image quality assessment. Asilomar Conference
       on Signals, Systems and Computers.

    Examples
    --------
    >>> import numpy as np, fastssim
    >>> x = np.random.default_rng(0).random((200, 200))
    >>> float(fastssim.ms_ssim(x, x, data_range=1.0))
    1.0
    """
    g = _plan.grad_code(gradient)
    w = _plan.check_weights(weights)
    if not isinstance(downsample, str) or downsample not in CONVENTIONS:
        raise ValueError(f"downsample: expected one of {CONVENTIONS}, got {downsample!r}")
    if not isinstance(negative, str) or negative not in NEGATIVE:
        raise ValueError(f"negative: expected one of {NEGATIVE}, got {negative!r}")
    fit_scales = check_bool(fit_scales, "fit_scales")
    return_scales = check_bool(return_scales, "return_scales")
    p, x, y = _plan.ms_ssim(x, y, weights=w, downsample=downsample, negative=negative,
                            fit_scales=fit_scales, grad=g, data_range=data_range, window=window,
                            sigma=sigma, truncate=truncate, win_size=win_size, K1=K1, K2=K2,
                            covariance=covariance, channel_axis=channel_axis,
                            spatial_dims=spatial_dims, workers=workers, names=_names)
    res = _backends.execute(p, x, y)
    values = _plan.per_item(p, res.sums)
    if not g and not return_scales:
        return values
    lay = p.layout
    scales = res.scales.reshape(lay.batch_shape + ((lay.nchan,) if lay.channel_axis is not None
                                                   else ()) + (len(p.scales),))
    return MSSSIMResult(values, res.grad_x, res.grad_y, scales)


@gpu_dispatch("multiscale_structural_similarity")
@finite_or_promote()
def multiscale_structural_similarity(im1, im2, *, data_range=None, channel_axis=None,
                                     gradient=False, weights=WANG_WEIGHTS, sigma=1.5,
                                     K1=0.01, K2=0.03, downsample="symmetric",
                                     negative="clamp", fit_scales=False, workers=None):
    """MS-SSIM in the style of ``skimage.metrics.structural_similarity``.

    A thin layer over :func:`fastssim.ms_ssim` for users of the drop-in: one
    image pair (2-D or 3-D, channels on ``channel_axis``), ``data_range`` from
    the dtype of ``im1`` for integer images (required for floating point), and
    ``gradient=True`` returning ``(mssim, grad)`` with the exact gradient with
    respect to ``im2``.  Defaults are Wang's reference (see :func:`ms_ssim`).

    Returns
    -------
    mssim : float
        MS-SSIM (mean over channels).
    grad : ndarray
        With ``gradient=True``: d mssim / d im2, in the float type of the computation.

    Examples
    --------
    >>> import numpy as np
    >>> from fastssim import multiscale_structural_similarity
    >>> img = (np.arange(256 * 256) % 251).astype(np.uint8).reshape(256, 256)
    >>> float(multiscale_structural_similarity(img, img))
    1.0
    """
    gradient = check_bool(gradient, "gradient")
    im1, im2 = check_pair(im1, im2, ("im1", "im2"))
    cax = channel_axis
    nd = im1.ndim - (cax is not None)
    if nd not in (2, 3):
        raise ValueError(
            f"multiscale_structural_similarity supports 2-D and 3-D images, got {nd} spatial "
            f"dimensions (shape {im1.shape}, channel_axis={channel_axis})"
        )
    res = ms_ssim(im1, im2, data_range=data_range, weights=weights, sigma=sigma, K1=K1, K2=K2,
                  downsample=downsample, negative=negative, fit_scales=fit_scales,
                  gradient="y" if gradient else None, channel_axis=channel_axis,
                  spatial_dims=nd, workers=workers, _names=("im1", "im2"))
    if gradient:
        return np.float64(res.value), res.grad_y
    return np.float64(res)
