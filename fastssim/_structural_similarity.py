"""scikit-image-compatible ``structural_similarity``: a thin layer over the engine."""

from __future__ import annotations

import math
from warnings import warn

import numpy as np

from ._finite import finite_or_promote
from . import _backends, _plan
from ._bands import gaussian_size
from ._dispatch import gpu_dispatch
from ._validation import (
    _check_array,
    _is_real,
    check_bool,
    check_channel_axis,
    check_real,
    dtype_range,
    float_type,
)

__all__ = ["structural_similarity"]

# Gaussian windows of up to this many taps are accepted on any image (see below).
_MIN_TAPS_LIMIT = 257


@gpu_dispatch("structural_similarity")
@finite_or_promote()
def structural_similarity(im1, im2, *, win_size=None, gradient=False, data_range=None,
                          channel_axis=None, gaussian_weights=False, full=False,
                          K1=0.01, K2=0.03, sigma=1.5, use_sample_covariance=True,
                          workers=None, **kwargs):
    """Mean structural similarity index, a drop-in for scikit-image 0.26's.

    Same signature, defaults, return order, dtype rules, errors and warnings
    as ``skimage.metrics.structural_similarity`` (plus ``workers``), with the
    same values (mean and map) to rounding — for 2-D and 3-D images one
    streaming pass of a multi-threaded engine instead of five full-size
    filtered images; other ranks (1-D signals, 4-D, 5-D...) take a NumPy path
    with scikit-image's formulas (same values to 1e-12 in float64).

    Parameters
    ----------
    im1, im2 : ndarray
        Images of the same shape, of any rank (plus a channel axis if
        ``channel_axis`` is set).  Any real dtype.
    win_size : int or None
        Side of the window (odd).  Default 7, or ``2*int(3.5*sigma + 0.5) + 1``
        with ``gaussian_weights``.  The mean is taken over the pixels at least
        ``(win_size - 1) // 2`` from every border.
    gradient : bool
        Also return the gradient with respect to ``im2``.
    data_range : float
        Span of the values; required for floating-point images, otherwise taken
        from the dtype of ``im1`` (with a warning for integer types other than uint8).
    channel_axis : int or None
        Axis of channels; the result is the mean over channels.
    gaussian_weights : bool
        Gaussian window (``sigma``, truncated at 3.5 sigma) instead of a box.
    full : bool
        Also return the full SSIM map (same size, 'reflect' borders).

    Returns
    -------
    mssim : float
        Mean SSIM over the cropped region (and over channels).
    grad : ndarray
        With ``gradient=True``: the gradient of ``mssim`` with respect to ``im2``.
    S : ndarray
        With ``full=True``: the SSIM map.

    Other Parameters
    ----------------
    K1, K2 : float
        Stabilising constants.
    sigma : float
        Gaussian width when ``gaussian_weights`` is set.
    use_sample_covariance : bool
        Scale (co)variances by NP/(NP-1), NP = win_size**ndim (default True).
    workers : int or None
        Threads (None: all cores; at most 4 per CPU, see :func:`fastssim.ssim`).
        The result does not depend on it.
    **kwargs
        Ignored, as scikit-image 0.26 ignores unknown keyword arguments (the
        removed ``multichannel=True``, say): no error, no warning.

    Notes
    -----
    The gradient is the exact gradient of the ``mssim`` returned: of the mean
    over the cropped region, with the sample-covariance factor, averaged over
    channels, borders included.  scikit-image's own ``grad`` differs in three
    ways: it differentiates the mean of the *uncropped* map, it ignores the
    covariance factor (as if ``use_sample_covariance=False``), and it scales
    by ``2/im.size`` per channel, so a multichannel gradient is ``nchannels``
    times too large.  (Its plain filtering *is* the exact adjoint: scipy's
    'reflect' correlation with symmetric taps is a symmetric operator.)  To
    reproduce its numbers exactly, borders included, use
    ``fastssim.ssim_vjp(im1, im2, w, wrt='y', covariance='population',
    window=..., border='reflect')`` with a uniform cotangent ``w = 1/im.size``
    (per channel).

    NaN and Inf propagate to every map value whose window touches them.

    Arguments are checked by name where scikit-image would fail obscurely or
    return NaN: the flags must be bools (``gaussian_weights=np.array([1, 0])``
    is a ``TypeError``), ``K1``, ``K2``, ``sigma`` real numbers, ``data_range``
    a positive finite number (0, -1, NaN and inf are refused), ``win_size=1``
    needs ``use_sample_covariance=False`` (NP - 1 = 0), and a Gaussian window
    of more than ``max(257, 2 * largest side + 1)`` taps is refused from its
    size before it is built.  scikit-image's own messages come first, followed
    by the values seen.

    References
    ----------
    .. [1] Wang, Z., Bovik, A. C., Sheikh, H. R., & Simoncelli, E. P. (2004).
       Image quality assessment: From error visibility to structural similarity.
       IEEE Transactions on Image Processing, 13, 600-612.
    .. [2] scikit-image, ``skimage/metrics/_structural_similarity.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastssim import structural_similarity
    >>> img = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)
    >>> float(structural_similarity(img, img))
    1.0
    """
    # stacklevel 5: caller > gpu_dispatch > finite_or_promote > here > skimage_plan
    p, ndim, im1, im2 = skimage_plan(
        im1, im2, win_size=win_size, gradient=gradient, data_range=data_range,
        channel_axis=channel_axis, gaussian_weights=gaussian_weights, full=full, K1=K1, K2=K2,
        sigma=sigma, use_sample_covariance=use_sample_covariance, workers=workers, stacklevel=5)
    cax, ftype = p.layout.channel_axis, float_type(p.layout.xdtype)
    gradient, full = bool(p.grad), p.want_map
    if ndim in (2, 3):  # the engine streams 2-D and 3-D planes
        res = _backends.execute(p, im1, im2)
        S, grad = res.map, res.grad_y
        per_chan = res.sums / p.n_sum
    else:  # other ranks: scikit-image's formulas in NumPy
        per_chan, S, grad = _general(im1, im2, p, gradient)
    if cax is None:
        mssim = np.float64(per_chan[0])
    else:
        mssim = per_chan.astype(ftype).mean()
    out = [mssim]
    if gradient:
        out.append(grad.astype(ftype, copy=False))
    if full:
        out.append(S.astype(ftype, copy=False))
    return tuple(out) if len(out) > 1 else mssim


def skimage_plan(im1, im2, *, win_size, gradient, data_range, channel_axis, gaussian_weights,
                 full, K1, K2, sigma, use_sample_covariance, workers, stacklevel):
    """scikit-image's argument checks, messages and warnings (``stacklevel``
    frames up: the caller of the public function) and the Plan of
    :func:`structural_similarity`; returns (Plan, number of spatial axes, im1,
    im2 as arrays).
    The arrays may be stand-ins of the caller's (shape and dtype only): the
    GPU backend validates through here too."""
    gradient = check_bool(gradient, "gradient")
    full = check_bool(full, "full")
    gaussian_weights = check_bool(gaussian_weights, "gaussian_weights")
    use_sample_covariance = check_bool(use_sample_covariance, "use_sample_covariance")
    # extra keyword arguments (the removed multichannel=..., say) are ignored,
    # silently, as scikit-image 0.26 does (it pops the ones it knows from **kwargs)
    im1 = _check_array(im1, "im1")
    im2 = _check_array(im2, "im2")
    if im1.shape != im2.shape:
        raise ValueError("Input images must have the same dimensions. im1 and im2 must have "
                         f"the same shape, got {im1.shape} and {im2.shape}")
    ftype = float_type(im1.dtype)
    cax = check_channel_axis(channel_axis, im1.ndim)
    spatial_shape = im1.shape if cax is None else im1.shape[:cax] + im1.shape[cax + 1:]
    ndim = len(spatial_shape)
    nchan = 1 if cax is None else im1.shape[cax]
    if ndim == 0:
        raise ValueError(f"im1: expected an image with at least one axis besides the channel "
                         f"axis, got shape {im1.shape} with channel_axis={channel_axis}")

    # scikit-image's messages first (its tests match them), then the value seen
    K1 = check_real(K1, "K1")
    K2 = check_real(K2, "K2")
    if K1 < 0:
        raise ValueError(f"K1 must be positive; got K1={K1!r}")
    if K2 < 0:
        raise ValueError(f"K2 must be positive; got K2={K2!r}")
    if not _is_real(sigma):
        raise TypeError(f"sigma: expected a finite number, got {sigma!r} ({type(sigma).__name__})")
    sigma = float(sigma)
    if sigma < 0:
        raise ValueError(f"sigma must be positive; got sigma={sigma!r}")
    if gaussian_weights and not sigma > 0:
        raise ValueError("sigma: expected a positive number for gaussian_weights=True, got "
                         f"{sigma!r}")
    truncate = 3.5
    if gaussian_weights and not math.isfinite(truncate * sigma):
        raise ValueError(f"sigma: expected a finite window radius 3.5 * sigma, got sigma={sigma!r}")
    if win_size is None:
        if gaussian_weights:
            win_size = gaussian_size(sigma, truncate)
        else:
            win_size = 7
    if isinstance(win_size, (bool, np.bool_)) or not isinstance(win_size, (int, np.integer)) \
            or win_size < 1:
        raise ValueError(f"win_size: expected a positive odd int, got {win_size!r}")
    win_size = int(win_size)  # a Python int: no overflow in the size arithmetic below
    if any(n < win_size for n in spatial_shape):
        raise ValueError(
            "win_size exceeds image extent. "
            "Either ensure that your images are "
            "at least 7x7; or pass win_size explicitly "
            "in the function call, with an odd value "
            "less than or equal to the smaller side of your "
            "images. If your images are multichannel "
            "(with color channels), set channel_axis to "
            "the axis number corresponding to the channels. "
            f"(win_size={win_size}, image shape {im1.shape}, channel_axis={channel_axis})"
        )
    if not (win_size % 2 == 1):
        raise ValueError(f"Window size must be odd. Got win_size={win_size}")
    ntap = gaussian_size(sigma, truncate) if gaussian_weights else win_size
    # from the sizes, before any tap is built: a window that reflects more than
    # once at both ends is refused (its band tables grow as side x taps; sigma=1e6
    # built a 7-million-tap window for minutes), up to a small absolute size
    max_taps = max(2 * max(spatial_shape) + 1, _MIN_TAPS_LIMIT)
    if ntap > max_taps:
        raise ValueError(
            f"sigma: the Gaussian window of sigma={sigma!r} has {ntap} taps (radius "
            f"int(3.5 * sigma + 0.5)); an image of shape {im1.shape} takes at most "
            f"{max_taps}: pass a smaller sigma")
    NP = win_size**ndim
    if use_sample_covariance and NP < 2:
        raise ValueError(
            f"win_size: use_sample_covariance=True divides by NP - 1 = 0 (NP = win_size**ndim "
            f"= {NP} samples); pass a larger win_size or use_sample_covariance=False")
    if data_range is None:
        if np.issubdtype(im1.dtype, np.floating) or np.issubdtype(im2.dtype, np.floating):
            raise ValueError(
                "Since image dtype is floating point, you must specify "
                "the data_range parameter. Please read the documentation "
                "carefully (including the note). It is recommended that "
                "you always specify the data_range anyway. "
                f"(im1 dtype {im1.dtype}, im2 dtype {im2.dtype})"
            )
        if im1.dtype != im2.dtype:
            warn("Inputs have mismatched dtypes. Setting data_range based on im1.dtype.",
                 stacklevel=stacklevel)
        dmin, dmax = dtype_range[im1.dtype.type]
        data_range = dmax - dmin
        if np.issubdtype(im1.dtype, np.integer) and (im1.dtype != np.uint8):
            warn("Setting data_range based on im1.dtype. "
                 + f"data_range = {data_range:.0f}. "
                 + "Please specify data_range explicitly to avoid mistakes.", stacklevel=stacklevel)
    p = _plan.skimage(im1, im2, cax=cax, nchan=nchan, spatial=spatial_shape, win_size=win_size,
                      gaussian_weights=gaussian_weights, sigma=sigma, truncate=truncate,
                      use_sample_covariance=use_sample_covariance, data_range=data_range,
                      K1=K1, K2=K2, ftype=ftype, full=full, gradient=gradient, workers=workers)
    return p, ndim, im1, im2


def _filter(a, taps):
    """scikit-image's filtering (``scipy.ndimage`` 'reflect', which is NumPy's
    'symmetric' padding) along every axis of ``a``: the correlation with the
    separable window ``taps`` (symmetric, odd)."""
    r = (len(taps) - 1) // 2
    for ax in range(a.ndim):
        n = a.shape[ax]
        pad = [(0, 0)] * a.ndim
        pad[ax] = (r, r)
        ap = np.pad(a, pad, mode="symmetric")
        out = np.zeros_like(a)
        for k, t in enumerate(taps):
            out += t * np.take(ap, np.arange(k, k + n), axis=ax)
        a = out
    return a


def _general(im1, im2, plan, gradient):
    """SSIM of images of any rank (1-D signals, 4-D, 5-D...): scikit-image's
    formulas with NumPy filters (in float64), the map over the whole image;
    returns (the mean over the crop per channel (float64, (nchan,)), the map,
    the exact gradient of the returned mean with respect to im2 or None), the
    map and the gradient in the caller's layout, float64.

    The gradient of L = sum_p w(p) S(p), w = 1/N on the crop, is
    G^T(w S_muy) + 2 y G^T(w S_Eyy) + x G^T(w S_Exy) (docs: DESIGN, with x
    and y swapped), and G^T = G: 'reflect' filtering with a symmetric window
    is a symmetric operator."""
    cax = plan.layout.channel_axis
    s = plan.scales[0]
    taps, cov, C1, C2 = s.taps, s.cov, plan.C1, plan.C2
    x = np.asarray(im1, dtype=np.float64)
    y = np.asarray(im2, dtype=np.float64)
    if cax is not None:
        x, y = np.moveaxis(x, cax, 0), np.moveaxis(y, cax, 0)
    else:
        x, y = x[None], y[None]
    nchan = x.shape[0]
    # the crop, in image coordinates: the sum region is in map coordinates
    crop = tuple(slice(m0 + a, m0 + b) for (m0, _), (a, b) in zip(plan.map_region, plan.sum_region))
    means, grads, maps = [], [], []
    for c in range(nchan):
        xc, yc = x[c], y[c]
        ux, uy = _filter(xc, taps), _filter(yc, taps)
        uxx, uyy, uxy = _filter(xc * xc, taps), _filter(yc * yc, taps), _filter(xc * yc, taps)
        vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
        A1, A2 = 2 * ux * uy + C1, 2 * vxy + C2
        B1, B2 = ux * ux + uy * uy + C1, vx + vy + C2
        D = B1 * B2
        S = (A1 * A2) / D
        means.append(S[crop].mean(dtype=np.float64))
        maps.append(S)
        if gradient:
            w = np.zeros_like(S)
            w[crop] = 1.0 / (S[crop].size * nchan)
            S_eyy = -cov * S / B2
            S_exy = 2 * cov * A1 / D
            S_uy = 2 * ux * A2 / D - 2 * uy * S / B1 + 2 * cov * uy * S / B2 - 2 * cov * ux * A1 / D
            grads.append(_filter(w * S_uy, taps) + 2 * yc * _filter(w * S_eyy, taps)
                         + xc * _filter(w * S_exy, taps))

    def back(parts):
        a = np.stack(parts)
        return np.moveaxis(a, 0, cax) if cax is not None else a[0]

    return np.asarray(means), back(maps), back(grads) if gradient else None
