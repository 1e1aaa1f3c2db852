"""Batch-native SSIM, its map, its exact gradient and its vector-Jacobian product.

Both functions validate their own flags, ask :mod:`fastssim._plan` for the
Plan of the call and run it with one call into a backend
(:mod:`fastssim._backends`).
"""

from __future__ import annotations

from collections import namedtuple

from ._finite import finite_or_promote
from . import _backends, _plan
from ._validation import check_bool
from ._conventions import with_convention
from ._dispatch import gpu_dispatch

__all__ = ["ssim", "ssim_vjp", "SSIMResult"]

SSIMResult = namedtuple("SSIMResult", ["value", "map", "grad_x", "grad_y"])
SSIMResult.__doc__ = """Result of :func:`fastssim.ssim` with ``full`` or ``gradient``.

value : float or ndarray of the batch shape (float64)
map : ndarray or None, the SSIM map (input layout, compute dtype)
grad_x, grad_y : ndarray or None, gradient of ``value`` w.r.t. x / y
"""


@with_convention("ssim")
@gpu_dispatch("ssim")
@finite_or_promote()
def ssim(x, y, *, data_range=None, window="gaussian", sigma=1.5, truncate=3.5,
         win_size=None, K1=0.01, K2=0.03, covariance="population", border="reflect",
         full=False, gradient=None, channel_axis=None, spatial_dims=2, workers=None,
         map_out=None, grad_out=None):
    """Structural similarity of each image pair in a batch, with its map and exact gradient.

    SSIM(p) = l(p) cs(p) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) /
    ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)) with windowed means,
    variances and covariance (eqs. 1-4 of Zhao et al.), C1 = (K1 L)^2,
    C2 = (K2 L)^2, L = ``data_range``.  The value of an image is the mean of
    SSIM(p) over the pixels where the whole window fits inside the image
    (Wang et al.'s reference; the mean does not depend on ``border``).

    Parameters
    ----------
    x, y : ndarray, shape (*batch, H, W) or (*batch, D, H, W) with ``spatial_dims=3``
        The two images (batches).  Any real dtype; float16/float32 are computed
        in float32 (means accumulated in float64), everything else in float64.
        With ``channel_axis``, that axis holds channels, wherever it is (it
        counts on the broadcast shape).  The batch axes broadcast as NumPy's
        do (``ssim(ref, stack)`` scores one reference against many), without
        a copy of the broadcast input; the spatial and channel axes must be
        equal.  A gradient comes back in its input's own shape, summed over
        the axes along which that input broadcasts.
    data_range : float
        Span of the values (e.g. 1.0 or 255.0).  Required for floating-point
        input; for integer input it defaults to the dtype's range.
    window : {'gaussian', 'uniform'}
        Gaussian of ``sigma`` truncated at ``truncate * sigma`` (11 taps by
        default, as Wang et al.), or a box of ``win_size`` taps.
    full : bool
        Also return the SSIM map.
    gradient : {None, 'x', 'y', 'both'}
        Also return the exact gradient of the returned value (per batch item)
        with respect to x, y or both: the crop, the covariance factor and the
        channel averaging are all part of what is differentiated.
    channel_axis : int or None
        Axis of channels; each item's value is the mean over its channels.
    workers : int or None
        Threads (None: all cores, honouring OMP_NUM_THREADS; -1 all; -2 all but one).
        The result is bitwise identical for every thread count.  At most 4
        threads per CPU are used (more cannot be faster), and fewer where an
        address-space limit (``RLIMIT_AS``) leaves no room for their stacks: the
        OpenMP runtime ends the process when it cannot create a thread.  Above
        1024 it is an error.

    Returns
    -------
    value : float or ndarray
        float64, one value per batch item (a plain scalar for a single pair),
        when neither ``full`` nor ``gradient`` is requested; otherwise an
        :class:`SSIMResult` ``(value, map, grad_x, grad_y)``.

    Other Parameters
    ----------------
    sigma, truncate : float
        Gaussian window width and truncation (radius ``int(truncate*sigma + 0.5)``).
    win_size : odd int
        Taps of the uniform window (default 7).
    K1, K2 : float
        Stabilising constants (0.01, 0.03).
    covariance : {'population', 'sample'}
        'sample' scales the (co)variances by NP/(NP-1), NP = taps**spatial_dims,
        as scikit-image does by default.
    border : {'reflect', 'valid'}
        Map border: 'reflect' gives a same-size map (scipy 'reflect' = MATLAB
        'symmetric' padding), 'valid' only the pixels where the window fits.
    spatial_dims : {2, 3}
        Number of trailing (non-channel) axes that are spatial.
    map_out, grad_out : ndarray, optional
        Buffers for the map and the gradient (for 'both', a pair), in the
        caller's layout and the compute dtype; avoids fresh allocations.

    Notes
    -----
    NaN and Inf propagate: every map value whose window touches one is NaN,
    and so are the mean and the gradient there.  Inputs are never modified.

    Examples
    --------
    >>> import numpy as np, fastssim
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((64, 64))
    >>> float(fastssim.ssim(x, x, data_range=1.0))
    1.0
    >>> res = fastssim.ssim(x, 0.9 * x, data_range=1.0, gradient="y")
    >>> res.grad_y.shape
    (64, 64)
    """
    g = _plan.grad_code(gradient)
    full = check_bool(full, "full")
    p, x, y = _plan.ssim(x, y, full=full, grad=g, data_range=data_range, window=window,
                         sigma=sigma, truncate=truncate, win_size=win_size, K1=K1, K2=K2,
                         covariance=covariance, border=border, channel_axis=channel_axis,
                         spatial_dims=spatial_dims, workers=workers)
    outs = _plan.ssim_outs(p, x, y, map_out, grad_out)
    res = _backends.execute(p, x, y, out=outs)
    value = _plan.values(p, res.sums)
    if not full and not g:
        return value
    return SSIMResult(value, res.map, res.grad_x, res.grad_y)


@gpu_dispatch("ssim_vjp")
@finite_or_promote(value_first=False)
def ssim_vjp(x, y, cotangent, *, wrt="x", data_range=None, window="gaussian", sigma=1.5,
             truncate=3.5, win_size=None, K1=0.01, K2=0.03, covariance="population",
             border="reflect", channel_axis=None, spatial_dims=2, workers=None):
    """Vector-Jacobian product of the SSIM map: the gradient of sum_p w(p) SSIM(p).

    ``cotangent`` (w) has the shape of the map that ``ssim(..., full=True,
    border=border)`` returns; the result is d/dx (``wrt='x'``), d/dy
    (``wrt='y'``) or the pair (``wrt='both'``) of sum_p w(p) SSIM(p), computed
    as G^T(w F_mu) + 2 x G^T(w F_ss) + y G^T(w F_xy) with the adjoint G^T of
    the window operator (borders included).  This is what custom losses and
    autograd adapters need.  The other arguments are those of :func:`ssim`.

    Examples
    --------
    >>> import numpy as np, fastssim
    >>> x = np.random.default_rng(0).random((32, 32)); y = x[::-1].copy()
    >>> w = np.ones((32, 32)) / 32**2
    >>> fastssim.ssim_vjp(x, y, w, data_range=1.0).shape
    (32, 32)
    """
    g = _plan.wrt_code(wrt)
    p, x, y = _plan.ssim(x, y, full=True, grad=g, vjp=True, data_range=data_range,
                         window=window, sigma=sigma, truncate=truncate, win_size=win_size,
                         K1=K1, K2=K2, covariance=covariance, border=border,
                         channel_axis=channel_axis, spatial_dims=spatial_dims, workers=workers)
    w = _plan.check_cotangent(p, cotangent, "SSIM", border)
    res = _backends.execute(p, x, y, cotangent=w)
    return res.grad_x if g == 1 else res.grad_y if g == 2 else (res.grad_x, res.grad_y)
