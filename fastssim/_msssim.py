"""Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) with its exact analytic gradient."""

from __future__ import annotations

import functools
import math
import numbers
from collections import namedtuple

import numpy as np

from ._finite import finite_or_promote
from ._conventions import with_convention
from . import _core, _engine
from ._pyramid import CONVENTIONS, down_maps, pyramid_shapes
from ._ssim import _grad_code, plan
from ._validation import check_bool, check_int, check_pair
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


def _check_weights(weights):
    if type(weights) is tuple:  # the usual case: validated once
        try:
            return _checked_weights(weights)
        except TypeError:  # unhashable items
            pass
    return _validate_weights(weights)


@functools.lru_cache(maxsize=64)
def _checked_weights(weights):
    w = _validate_weights(weights)
    w.flags.writeable = False
    return w


def _validate_weights(weights):
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"weights: expected a sequence of non-negative numbers, got {weights!r}") from None
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights: expected a non-empty 1-D sequence (one weight per scale), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights: expected finite non-negative numbers, got {tuple(w.tolist())}")
    if not np.any(w > 0):
        raise ValueError("weights: at least one weight must be positive")
    if w.size > _MAX_SCALES:
        raise ValueError(f"weights: at most {_MAX_SCALES} scales, got {w.size}")
    return w


_MAX_SCALES = 16  # the engine's Pyramid; 2**15 px per side already fits 16 scales


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


@functools.lru_cache(maxsize=64)
def _fitting_scales(spatial, downsample, taps, scales):
    """How many of the first scales the window fits."""
    fit = 0
    for s in pyramid_shapes(spatial, downsample, scales):
        if min(s) < taps:
            break
        fit += 1
    return fit


# Scales of at most this many samples (all planes) share one parallel launch,
# their pyramid made in one pass beforehand; larger ones stream one by one,
# each writing the next scale as it goes.
_GROUP_SAMPLES = 1 << 18


def _group_start(shapes, P):
    """First scale of the shared launch (never the first two: they are large
    and write their successor while streaming)."""
    for j in range(2, len(shapes)):
        if P * math.prod(shapes[j]) <= _GROUP_SAMPLES:
            return j
    return len(shapes)


@functools.lru_cache(maxsize=64)
def _nvals(spatial, M, downsample, r):
    """Valid-pixel count of each scale (float64, read-only)."""
    nval = np.array([math.prod(n - 2 * r for n in s)
                     for s in pyramid_shapes(spatial, downsample, M)], dtype=np.float64)
    nval.flags.writeable = False
    return nval


@functools.lru_cache(maxsize=64)
def _pyramid_engine(spatial, P, dtchar, taps, M, downsample, grad):
    """The engine's :class:`Pyramid` of one MS-SSIM geometry, cached: each
    scale's bands over its valid region, form (cs, and l*cs at the last
    scale) and cotangent scale (1 / its valid-pixel count), the downsampling
    maps, and the first scale of the shared launch."""
    r = (len(taps) - 1) // 2
    shapes = pyramid_shapes(spatial, downsample, M)
    geoms = [_core._geometry(s, dtchar, taps, tuple((r, n - r) for n in s),
                             tuple((0, n - 2 * r) for n in s)) for s in shapes]
    nval = _nvals(spatial, M, downsample, r)
    forms = [_core.FORM["cs"]] * (M - 1) + [_core.FORM["ssim"]]
    return _engine.Pyramid(geoms, [down_maps(s, downsample) for s in shapes[:-1]], P,
                           dtchar == "d", _group_start(shapes, P), grad, forms,
                           [1.0 / v for v in nval])


_NEGATIVE_CODE = {"clamp": _engine.NEG_CLAMP, "simple": _engine.NEG_SIMPLE,
                  "none": _engine.NEG_NONE}


def _combine(m, w, negative, want_coef):
    """Value prod_j f(m_j)^w_j per plane and, if asked, d value / d m_j.

    f is the negative-value policy: max(m, 0) ('clamp', slope 0 at m <= 0),
    (m + 1) / 2 ('simple') or m ('none').  The derivative uses the product of
    the *other* factors (prefix and suffix products), never value / f(m_j), so
    it stays finite as an m_j -> 0.
    """
    return _engine.ms_combine(np.ascontiguousarray(m, dtype=np.float64),
                              np.ascontiguousarray(w, dtype=np.float64),
                              _NEGATIVE_CODE[negative], want_coef)


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
    convention : str or None
        A peer library's conventions by name (``fastssim.conventions``);
        explicit keyword arguments override it.  Two options exist for the
        presets (torchmetrics): ``channel_pooling='before'`` (each scale's mean
        taken over the channels before the power) and
        ``last_scale_pad='mirror'`` (the last scale's term from mirror-padded
        images); see ``fastssim._conventions``.

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
    g = _grad_code(gradient)
    w = _check_weights(weights)
    if not isinstance(downsample, str) or downsample not in CONVENTIONS:
        raise ValueError(f"downsample: expected one of {CONVENTIONS}, got {downsample!r}")
    if not isinstance(negative, str) or negative not in NEGATIVE:
        raise ValueError(f"negative: expected one of {NEGATIVE}, got {negative!r}")
    fit_scales = check_bool(fit_scales, "fit_scales")
    return_scales = check_bool(return_scales, "return_scales")
    p = plan(x, y, data_range=data_range, window=window, sigma=sigma, truncate=truncate,
             win_size=win_size, K1=K1, K2=K2, covariance=covariance, border="valid",
             channel_axis=channel_axis, spatial_dims=spatial_dims, workers=workers,
             check_window=False, names=_names)
    taps = len(p.taps)
    M = w.size
    fit = _fitting_scales(p.spatial, downsample, taps, M)
    if fit < M:
        got = "x".join(str(n) for n in p.spatial)
        if not fit_scales:
            need = min_size(M, taps, downsample, len(p.spatial))
            raise ValueError(
                f"MS-SSIM with {M} scales and a window of {taps} taps needs at least {need} px "
                f"per side (downsample={downsample!r}); got {got}: pass fewer scales "
                "(shorter weights), a smaller window (sigma / win_size) or fit_scales=True"
            )
        if fit == 0:
            raise ValueError(
                f"fit_scales: not even one scale fits: the {taps}-tap window needs at least "
                f"{taps} px per side, got {got}: pass a smaller window (sigma / win_size), "
                "or check channel_axis and spatial_dims"
            )
        total = w.sum()
        w = w[:fit]
        if not np.any(w > 0):
            raise ValueError(
                f"fit_scales: only the first {fit} of {M} scales fit {got}, and their weights "
                f"{tuple(w.tolist())} are all zero: pass weights with a positive weight among them"
            )
        w = w * (total / w.sum())
        M = fit

    P = p.P
    xs, ys = p.planes()
    pyr = _pyramid_engine(tuple(p.spatial), P, xs.dtype.char, p.taps, M, downsample, g)
    # every level's moments are of x - s, y - s with the finest level's
    # shifts s (the means of a pyramid's levels agree)
    xsel, ysel = p.plane_sel()
    if xsel is None:
        sx, sy = _engine.shifts(xs, ys, P, _core._as4(xs.shape[1:]), 1, _engine.IN_REAL,
                                xs.dtype == np.float64)
    else:  # batch broadcasting: each input's own planes (no copy), picked per plane
        sx, sy = (_engine.shifts(a, a, a.shape[0], _core._as4(a.shape[1:]), 1, _engine.IN_REAL,
                                 a.dtype == np.float64)[0][sel]
                  for a, sel in ((xs, xsel), (ys, ysel)))
    full_shape = (P,) + tuple(p.spatial)
    # the finest level's gradients are the results: fresh arrays
    gx = np.empty(full_shape, xs.dtype) if g & 1 else None
    gy = np.empty(full_shape, ys.dtype) if g & 2 else None
    # the coarse levels and their gradients live in pooled memory
    with _core.Workspace(pyr.nbytes) as ws:
        buf = ws.empty((pyr.nbytes,), np.uint8)
        sums = pyr.run(xs, ys, buf, p.C1, p.C2, p.cov, gx, gy, sx, sy, p.workers, xsel, ysel)
        ms = sums / _nvals(tuple(p.spatial), M, downsample, p.r)
        value_p, coef = _combine(ms, w, negative, bool(g))
        values = p.per_item(value_p)
        if not g and not return_scales:
            return values
        out = [None, None]
        if g:
            coef = np.ascontiguousarray(coef / p.nchan, dtype=np.float64)
            for side, arr in ((0, gx), (1, gy)):
                if arr is not None:
                    pyr.backward(buf, coef, arr, side, p.workers)
                    out[side] = p.sum_to(p.to_user(arr, interleaved=False), side)
    scales = ms.reshape(p.batch_shape + ((p.nchan,) if p.channel_axis is not None else ()) + (M,))
    return MSSSIMResult(values, out[0], out[1], scales)


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
