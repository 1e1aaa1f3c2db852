"""scikit-image-compatible ``structural_similarity``: a thin layer over the engine."""

from __future__ import annotations

import math
from warnings import warn

import numpy as np

from ._finite import compute_type, finite_or_promote
from . import _core
from ._bands import gaussian_size, gaussian_taps, uniform_taps
from ._ssim import Plan
from ._validation import (
    check_channel_axis,
    check_pair,
    dtype_range,
    float_type,
    resolve_workers,
)

__all__ = ["structural_similarity"]


@finite_or_promote()
def structural_similarity(im1, im2, *, win_size=None, gradient=False, data_range=None,
                          channel_axis=None, gaussian_weights=False, full=False,
                          K1=0.01, K2=0.03, sigma=1.5, use_sample_covariance=True,
                          workers=None):
    """Mean structural similarity index, a drop-in for scikit-image 0.26's.

    Same signature, defaults, return order, dtype rules, errors and warnings
    as ``skimage.metrics.structural_similarity`` for 2-D and 3-D images (plus
    ``workers``), with the same values (mean and map) to rounding — but one
    streaming pass of a multi-threaded engine instead of five full-size
    filtered images.

    Parameters
    ----------
    im1, im2 : ndarray
        Images of the same shape, 2-D or 3-D (plus a channel axis if
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
        Threads (None: all cores).  The result does not depend on it.

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
    Only 2-D and 3-D images are supported (scikit-image also takes 1-D and
    N-D); other ranks raise ``ValueError``.

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
    if not isinstance(im1, np.ndarray) or not isinstance(im2, np.ndarray):
        im1, im2 = check_pair(im1, im2, ("im1", "im2"))
    if im1.shape != im2.shape:
        raise ValueError("Input images must have the same dimensions.")
    im1, im2 = check_pair(im1, im2, ("im1", "im2"))
    ftype = float_type(im1.dtype)
    cax = check_channel_axis(channel_axis, im1.ndim)
    spatial_shape = im1.shape if cax is None else im1.shape[:cax] + im1.shape[cax + 1:]
    ndim = len(spatial_shape)
    nchan = 1 if cax is None else im1.shape[cax]

    if K1 < 0:
        raise ValueError("K1 must be positive")
    if K2 < 0:
        raise ValueError("K2 must be positive")
    if sigma < 0:
        raise ValueError("sigma must be positive")
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
    if isinstance(win_size, bool) or not isinstance(win_size, (int, np.integer)) or win_size < 1:
        raise ValueError(f"win_size: expected a positive odd int, got {win_size!r}")
    if any(n < win_size for n in spatial_shape):  # Python ints: any win_size
        raise ValueError(
            "win_size exceeds image extent. "
            "Either ensure that your images are "
            "at least 7x7; or pass win_size explicitly "
            "in the function call, with an odd value "
            "less than or equal to the smaller side of your "
            "images. If your images are multichannel "
            "(with color channels), set channel_axis to "
            "the axis number corresponding to the channels."
        )
    if not (win_size % 2 == 1):
        raise ValueError("Window size must be odd.")
    if ndim not in (2, 3):
        raise ValueError(
            f"fastssim.structural_similarity supports 2-D and 3-D images, got {ndim} "
            f"spatial dimensions (shape {im1.shape}, channel_axis={channel_axis}); "
            "use scikit-image for other ranks"
        )
    if data_range is None:
        if np.issubdtype(im1.dtype, np.floating) or np.issubdtype(im2.dtype, np.floating):
            raise ValueError(
                "Since image dtype is floating point, you must specify "
                "the data_range parameter. Please read the documentation "
                "carefully (including the note). It is recommended that "
                "you always specify the data_range anyway."
            )
        if im1.dtype != im2.dtype:
            warn("Inputs have mismatched dtypes. Setting data_range based on im1.dtype.",
                 stacklevel=3)
        dmin, dmax = dtype_range[im1.dtype.type]
        data_range = dmax - dmin
        if np.issubdtype(im1.dtype, np.integer) and (im1.dtype != np.uint8):
            warn("Setting data_range based on im1.dtype. "
                 + f"data_range = {data_range:.0f}. "
                 + "Please specify data_range explicitly to avoid mistakes.", stacklevel=3)
    data_range = float(data_range)

    if gaussian_weights:
        taps = gaussian_taps(float(sigma), truncate)
    else:
        taps = uniform_taps(int(win_size))
    NP = win_size**ndim
    cov = NP / (NP - 1) if use_sample_covariance else 1.0
    pad = (win_size - 1) // 2
    p = Plan(
        xe=None, ye=None, batch_shape=(), nchan=nchan, channel_axis=cax,
        spatial=tuple(spatial_shape), taps=taps, r=(len(taps) - 1) // 2,
        C1=(K1 * data_range) ** 2, C2=(K2 * data_range) ** 2, cov=cov, border="reflect",
        workers=resolve_workers(workers),
    )
    p.load(im1, im2, compute_type(ftype, p.C1, p.C2))
    crop = tuple((pad, n - pad) for n in spatial_shape)
    mreg = tuple((0, n) for n in spatial_shape) if full else crop
    sreg = tuple((a - m0, b - m0) for (a, b), (m0, _) in zip(crop, mreg))
    n_crop = math.prod(b - a for a, b in crop)
    sums, S, _, grad = _core.run(
        p.xe, p.ye, nci=p.nci, dtype=p.ftype, taps=taps, map_region=mreg, sum_region=sreg, form="ssim",
        C1=p.C1, C2=p.C2, cov=cov, want_map=full, grad=2 if gradient else 0,
        wscal=1.0 / (n_crop * nchan), workers=p.workers,
    )
    per_chan = sums / n_crop
    if cax is None:
        mssim = np.float64(per_chan[0])
    else:
        mssim = per_chan.astype(ftype).mean()
    out = [mssim]
    if gradient:
        out.append(p.to_user(grad).astype(ftype, copy=False))
    if full:
        out.append(p.to_user(S).astype(ftype, copy=False))
    return tuple(out) if len(out) > 1 else mssim
