"""What to compute: validated arguments -> a frozen, backend-independent Plan.

Every public function (``ssim``, ``ssim_vjp``, ``structural_similarity``,
``ms_ssim``, ``pixelwise_ms_ssim(_vjp)``, the losses, and through them the
CLI and the Dask adapter) validates its own options, then asks one builder of
this module for a :class:`Plan` and hands it, with the two input arrays, to a
backend (``fastssim._backends``).  A Plan says *what* is computed and
nothing about *where* or *how*: it holds shapes, dtypes, window taps,
regions, constants and flags -- never an input array, never an engine
handle -- so it is immutable, hashable, comparable (the same arguments give
equal Plans whichever function built them) and the same Plan can be run by
the CPU engine or a GPU backend.

The pieces, all ``NamedTuple`` (immutable, hashable, cheap to build: the
per-call overhead of a 64x64 image is what a user of small images pays):

:class:`Layout`
    the caller's arrays: input shapes and dtypes, the broadcast shape, the
    batch shape, the channel count and axis (non-negative, on the broadcast
    shape), the spatial extents, and the compute dtype (float32 or float64).
    Planes are the (batch item, channel) pairs, in C order of the batch
    shape then channel: ``P = prod(batch_shape) * nchan``.
:class:`Scale`
    one window: its full symmetric ``taps`` (float64 values, a tuple), the
    ``form`` of the factor it gives (``'ssim'`` = l*cs, ``'cs'``, ``'l'``,
    ``'mean'``: the windowed mean of x alone) and its covariance factor
    ``cov`` (1, or NP/(NP-1) for sample covariance).
:class:`Pyramid`
    MS-SSIM's pyramid: downsampling convention, the spatial shape of every
    level, the valid-pixel count of every level (the divisor of its mean),
    the weights (exponents) and the negative-value policy.
:class:`Plan`
    ``kind``: ``'window'`` (one window's map, ``scales[0]``),
    ``'product'`` (the per-pixel product of the factors of ``scales``, all
    at full resolution, one streaming pass) or ``'pyramid'`` (MS-SSIM:
    level j of ``pyramid`` with window ``scales[j]``); the constants C1, C2;
    the map region (per spatial axis, ``(start, stop)`` of the same-size
    'reflect' map that forms the output map) and the sum region (per axis,
    ``(a, b)`` in map coordinates, over which each plane's map is summed);
    ``want_map``; ``grad`` (0 none, 1 x, 2 y, 3 both); ``wscal``, the
    scalar cotangent on the sum region (the gradient is of
    ``wscal * sum``) or ``cotangent=True``, a per-pixel cotangent map
    given with the call (the gradient is of ``sum_p w(p) map(p)``);
    ``reduce_grad`` (gradients summed to each input's own shape over the
    batch axes along which it broadcasts, as autograd does, or left in the
    broadcast shape); ``workers`` (the resolved thread count).  A pyramid's
    gradient is that of the value (MS-SSIM averaged over the channels); its
    ``wscal`` is unused (0) and its regions are those of the finest level.

Functions: :func:`ssim` (``ssim``/``ssim_vjp``/Dask), :func:`pixelwise`
(``pixelwise_ms_ssim(_vjp)``, the Mix loss, Dask), :func:`ms_ssim`,
:func:`skimage` (``structural_similarity``), :func:`windowed_mean` (Mix's
filtered l1 term) and the result helpers :func:`values` / :func:`per_item`.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple, Optional

import numpy as np

from ._bands import gaussian_size, gaussian_taps, uniform_taps
from ._finite import compute_type
from ._pyramid import pyramid_shapes
from ._validation import (
    _check_array,
    broadcast_batch,
    check_constants,
    check_data_range,
    check_layout,
    check_out,
    check_positive,
    dtype_range,
    float_type,
    resolve_workers,
)

__all__ = ["Layout", "Scale", "Pyramid", "Plan", "ssim", "pixelwise", "ms_ssim", "skimage",
           "windowed_mean", "grad_code", "wrt_code", "values", "per_item", "check_weights",
           "check_sigmas", "check_outs", "ssim_outs", "check_cotangent", "fit_weights",
           "window_size"]

_GRAD = {None: 0, "x": 1, "y": 2, "both": 3}


class Layout(NamedTuple):
    """The caller's arrays (see the module docstring)."""

    shape: tuple                 # broadcast shape of x and y
    xshape: tuple
    yshape: tuple
    xdtype: np.dtype
    ydtype: np.dtype
    batch_shape: tuple
    nchan: int                   # channels averaged into one value (1 without channel_axis)
    channel_axis: Optional[int]  # on ``shape``, non-negative
    spatial: tuple
    dtype: np.dtype              # the compute type: float32 or float64

    @property
    def P(self):
        """Number of planes: batch items times channels."""
        return math.prod(self.batch_shape) * self.nchan

    @property
    def broadcasts(self):
        """True when x and y differ in their batch axes."""
        return self.xshape != self.yshape

    def user_shape(self, spatial):
        """The caller-layout shape of a map with these spatial extents:
        the batch shape, the channel axis where the caller has it, then
        ``spatial``."""
        s = list(self.batch_shape) + list(spatial)
        if self.channel_axis is not None:
            s.insert(self.channel_axis, self.nchan)
        return tuple(s)


class Scale(NamedTuple):
    """One window and the factor it gives (see the module docstring)."""

    taps: tuple
    form: str
    cov: float


class Pyramid(NamedTuple):
    """MS-SSIM's pyramid (see the module docstring)."""

    downsample: str
    shapes: tuple      # spatial shape of every level, finest first
    nvals: tuple       # valid-pixel count of every level (ints)
    weights: tuple     # one exponent per level (floats)
    negative: str      # 'clamp', 'simple' or 'none'


class Plan(NamedTuple):
    """What one call computes (see the module docstring)."""

    layout: Layout
    kind: str                    # 'window', 'product' or 'pyramid'
    scales: tuple                # of Scale
    C1: float
    C2: float
    map_region: tuple
    sum_region: tuple
    want_map: bool
    grad: int
    wscal: float
    cotangent: bool
    reduce_grad: bool
    workers: int
    pyramid: Optional[Pyramid] = None

    @property
    def r(self):
        """Radius of the widest window (the last scale's)."""
        return (len(self.scales[-1].taps) - 1) // 2

    @property
    def n_sum(self):
        """Pixels in the sum region of a plane (the divisor of a mean)."""
        n = 1
        for a, b in self.sum_region:
            n *= b - a
        return n

    @property
    def map_spatial(self):
        """Spatial extents of the map (and of a cotangent map)."""
        return tuple([b - a for a, b in self.map_region])

    @property
    def map_shape(self):
        """The map's shape in the caller's layout."""
        return self.layout.user_shape(self.map_spatial)


# ---------------------------------------------------------------------------
# argument parsing shared by the builders


def grad_code(gradient, name="gradient"):
    """None -> 0, 'x' -> 1, 'y' -> 2, 'both' -> 3."""
    try:
        return _GRAD[gradient]
    except (KeyError, TypeError):
        raise ValueError(f"{name}: expected None, 'x', 'y' or 'both', got {gradient!r}") from None


def wrt_code(wrt):
    """'x' -> 1, 'y' -> 2, 'both' -> 3; anything else is an error."""
    g = _GRAD.get(wrt, 0) if isinstance(wrt, str) else 0
    if g == 0:
        raise ValueError(f"wrt: expected 'x', 'y' or 'both', got {wrt!r}")
    return g


def _win_size(win_size):
    """The box window's side: 7 by default, else an odd positive int."""
    if win_size is None:
        return 7
    if isinstance(win_size, bool) or not isinstance(win_size, numbers.Integral):
        raise TypeError(f"win_size: expected an odd positive int, got {win_size!r}")
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size: expected an odd positive int, got {win_size}")
    return int(win_size)


def window_size(window, sigma, truncate, win_size):
    """The tap count of the window, validating its arguments (before
    :func:`_window` builds it: a huge window fails here, unbuilt)."""
    if not isinstance(window, str):  # an array would compare elementwise
        raise ValueError(f"window: expected 'gaussian' or 'uniform', got {window!r}")
    if window == "gaussian":
        sigma = check_positive(sigma, "sigma")
        truncate = check_positive(truncate, "truncate")
        if win_size is not None:
            raise ValueError(
                "win_size applies to window='uniform'; the Gaussian window has "
                "2*int(truncate*sigma + 0.5) + 1 taps: set sigma/truncate instead"
            )
        if not math.isfinite(truncate * sigma):  # 1e308 * 3.5: no window that wide
            raise ValueError(f"sigma: truncate * sigma = {truncate} * {sigma} has no finite "
                             "window radius; pass a smaller sigma or truncate")
        return gaussian_size(sigma, truncate)
    if window == "uniform":  # validated, not built (a huge box would be cached)
        return _win_size(win_size)
    raise ValueError(f"window: expected 'gaussian' or 'uniform', got {window!r}")


def _window(window, sigma, truncate, win_size):
    """The taps of a window :func:`window_size` has validated and sized."""
    if window == "gaussian":
        return gaussian_taps(float(sigma), float(truncate))
    return uniform_taps(_win_size(win_size))


# NamedTuples of a call are made with tuple.__new__: the generated __new__ is a
# Python frame, and per-call overhead is what a user of small images pays
_new = tuple.__new__


def _common(x, y, data_range, window, sigma, truncate, win_size, K1, K2, covariance,
            border, channel_axis, spatial_dims, workers, check_window=True, names=("x", "y")):
    """Validate and normalise the arguments shared by ssim, ssim_vjp, ms_ssim and
    the per-pixel MS-SSIM; returns (x, y as arrays, layout, taps, cov, C1, C2, workers).

    x and y may differ in their batch axes, which broadcast (NumPy's rules)."""
    x, y, cax = check_layout(x, y, channel_axis, spatial_dims, names, broadcast=True)
    spatial_dims = int(spatial_dims)
    shape = x.shape if x.shape == y.shape else broadcast_batch(x.shape, y.shape, cax,
                                                                spatial_dims, names)
    if data_range is None:
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            raise ValueError(
                "data_range is required for floating-point input: pass the span of "
                "values the images can take (e.g. 1.0 for [0, 1], 255.0 for [0, 255])"
            )
        lo, hi = dtype_range[x.dtype.type]
        data_range = float(hi) - float(lo)
    R = check_data_range(data_range)
    K1 = check_positive(K1, "K1", allow_zero=True)
    K2 = check_positive(K2, "K2", allow_zero=True)
    if not isinstance(border, str) or border not in ("reflect", "valid"):
        raise ValueError(f"border: expected 'reflect' or 'valid', got {border!r}")
    if cax is not None:
        moved = np.moveaxis(np.empty(shape, dtype=np.bool_), cax, -(spatial_dims + 1)).shape
        batch_shape = moved[: -(spatial_dims + 1)]
        nchan = moved[-(spatial_dims + 1)]
        spatial = moved[-spatial_dims:]
    else:
        batch_shape = shape[:-spatial_dims]
        nchan = 1
        spatial = shape[-spatial_dims:]
    # the tap count before the taps: a huge sigma must fail here, not after
    # building a window of billions of taps (check_window=False: the caller
    # checks the fit with its own message; only absurd windows stop here)
    ntap = window_size(window, sigma, truncate, win_size)
    if ntap > (min(spatial) if check_window else 2 * max(spatial) + 1):
        raise ValueError(
            f"the {ntap}-tap window exceeds the image extent: spatial shape {tuple(spatial)} "
            f"(input shape {shape}); every spatial side needs at least {ntap} px. "
            "Pass a smaller window (sigma / win_size), or check channel_axis and spatial_dims"
        )
    taps = _window(window, sigma, truncate, win_size)
    if not isinstance(covariance, str):
        raise ValueError(f"covariance: expected 'population' or 'sample', got {covariance!r}")
    if covariance == "population":
        cov = 1.0
    elif covariance == "sample":
        NP = ntap**spatial_dims
        if NP < 2:
            raise ValueError("covariance='sample' needs a window of more than one sample")
        cov = NP / (NP - 1.0)
    else:
        raise ValueError(f"covariance: expected 'population' or 'sample', got {covariance!r}")
    nthreads = resolve_workers(workers)
    ftype = float_type(np.result_type(x.dtype, y.dtype)) if x.dtype != y.dtype else float_type(x.dtype)
    C1, C2 = check_constants(K1, K2, R)
    lay = _new(Layout, (tuple(shape), x.shape, y.shape, x.dtype, y.dtype, tuple(batch_shape),
                        nchan, cax, tuple(spatial), compute_type(ftype, C1, C2)))
    return x, y, lay, taps, cov, C1, C2, nthreads


def _map_region(spatial, r, border, want_full):
    """The same-size map ('reflect' and a map asked for) or where the window fits."""
    if border == "reflect" and want_full:
        return tuple([(0, n) for n in spatial])
    return tuple([(r, n - r) for n in spatial])


# ---------------------------------------------------------------------------
# builders, one per family of public functions


def ssim(x, y, *, full, grad, vjp=False, data_range, window, sigma, truncate, win_size, K1,
         K2, covariance, border, channel_axis, spatial_dims, workers, names=("x", "y")):
    """(Plan, x, y) of :func:`fastssim.ssim` (``vjp=False``: the value is the mean
    over the pixels where the window fits, the gradient that of the value) or
    of :func:`fastssim.ssim_vjp` (``vjp=True``: the map of ``border``, the
    gradient of ``sum_p w(p) SSIM(p)`` for a cotangent map given with the call)."""
    x, y, lay, taps, cov, C1, C2, nthreads = _common(
        x, y, data_range, window, sigma, truncate, win_size, K1, K2, covariance, border,
        channel_axis, spatial_dims, workers, True, names)
    r = (len(taps) - 1) // 2
    mreg = _map_region(lay.spatial, r, border, full or vjp)
    sreg = tuple([(r - a, n - r - a) for (a, _), n in zip(mreg, lay.spatial)])
    n_valid = 1
    for n in lay.spatial:
        n_valid *= n - 2 * r
    return _new(Plan, (lay, "window", (_new(Scale, (taps, "ssim", cov)),), C1, C2, mreg, sreg,
                       bool(full) and not vjp, grad,
                       0.0 if vjp else 1.0 / (n_valid * lay.nchan), bool(vjp), True, nthreads,
                       None)), x, y


def check_sigmas(sigmas):
    """The per-pixel MS-SSIM's Gaussian widths: a strictly increasing tuple of floats."""
    if isinstance(sigmas, (str, bytes)):
        raise TypeError(f"sigmas: expected a sequence of positive numbers, got {sigmas!r}")
    if isinstance(sigmas, (numbers.Real, np.generic)) and not isinstance(sigmas, bool):
        sigmas = (sigmas,)
    try:
        s = tuple(float(v) for v in sigmas)
    except (TypeError, ValueError):
        raise TypeError(f"sigmas: expected a sequence of positive numbers, got {sigmas!r}") from None
    if not s:
        raise ValueError("sigmas: expected at least one Gaussian width, got an empty sequence")
    if not all(np.isfinite(v) and v > 0 for v in s):
        raise ValueError(f"sigmas: expected positive finite widths, got {s}")
    if any(b <= a for a, b in zip(s, s[1:])):
        raise ValueError(f"sigmas: expected strictly increasing widths (the last is used for l), got {s}")
    return s


def pixelwise(x, y, *, full, grad, vjp=False, reduce_grad=True, sigmas, truncate, data_range,
              K1, K2, covariance, border, channel_axis, spatial_dims, workers,
              names=("x", "y")):
    """(Plan, x, y) of the per-pixel MS-SSIM of Zhao et al.: the product of
    the cs factors of ``sigmas`` and the l*cs factor of the widest, at full
    resolution; the value is the mean of the map (all of it), the gradient
    that of the value, or (``vjp``) of ``sum_p w(p) P(p)``."""
    s = check_sigmas(sigmas)
    x, y, lay, _, _, C1, C2, nthreads = _common(
        x, y, data_range, "gaussian", s[-1], truncate, None, K1, K2, covariance, border,
        channel_axis, spatial_dims, workers, False, names)
    taps = [gaussian_taps(v, float(truncate)) for v in s]
    ntap = len(taps[-1])
    if min(lay.spatial) < ntap:
        raise ValueError(
            f"sigmas: the widest window (sigma={s[-1]:g}, {ntap} taps at truncate={truncate:g}) "
            f"exceeds the image: spatial shape {lay.spatial}; every side needs at least {ntap} px. "
            "Pass smaller sigmas or a smaller truncate"
        )
    if covariance == "sample":
        if len(taps[0]) < 2:
            raise ValueError(
                f"covariance='sample' needs windows of more than one sample: sigma={s[0]:g} has "
                f"1 tap at truncate={truncate:g}. Pass a larger truncate or drop that sigma"
            )
        # sample covariance per scale: NP of each window
        nd = len(lay.spatial)
        covs = [(len(t) ** nd) / (len(t) ** nd - 1.0) for t in taps]
    else:
        covs = [1.0] * len(taps)
    M = len(taps)
    scales = tuple(Scale(taps[j], "cs" if j < M - 1 else "ssim", covs[j]) for j in range(M))
    # the map: same size ('reflect') or where the widest window fits ('valid')
    mreg = _map_region(lay.spatial, (ntap - 1) // 2, border, True)
    oshape = tuple(b - a for a, b in mreg)
    n = math.prod(oshape)
    return _new(Plan, (lay, "product", scales, C1, C2, mreg, tuple([(0, k) for k in oshape]),
                       bool(full) and not vjp, grad, 0.0 if vjp else 1.0 / (n * lay.nchan),
                       bool(vjp), bool(reduce_grad), nthreads, None)), x, y


def windowed_mean(plan, taps):
    """The Plan of the windowed mean ``G * a`` of one array ``a`` of ``plan``'s
    broadcast shape in its compute dtype (read as both inputs), over
    ``plan``'s regions, with its gradient ``G^T w`` where ``plan`` asks for
    the gradient w.r.t. x (the Mix loss's filtered l1 term)."""
    (shape, _, _, _, _, batch_shape, nchan, cax, spatial, dtype) = plan.layout
    lay = _new(Layout, (shape, shape, shape, dtype, dtype, batch_shape, nchan, cax, spatial, dtype))
    return _new(Plan, (lay, "window", (_new(Scale, (tuple(taps), "mean", 1.0)),), 0.0, 0.0,
                       plan.map_region, plan.sum_region, plan.want_map, plan.grad & 1,
                       plan.wscal, plan.cotangent, plan.reduce_grad, plan.workers, None))


# Scales the engine's pyramid holds at most; 2**15 px per side already fits 16 scales.
MAX_SCALES = 16


def check_weights(weights):
    """MS-SSIM's weights as a read-only float64 array (validated once per tuple)."""
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
    if w.size > MAX_SCALES:
        raise ValueError(f"weights: at most {MAX_SCALES} scales, got {w.size}")
    return w


@functools.lru_cache(maxsize=64)
def fitting_scales(spatial, downsample, taps, scales):
    """How many of the first scales the window fits."""
    fit = 0
    for s in pyramid_shapes(spatial, downsample, scales):
        if min(s) < taps:
            break
        fit += 1
    return fit


@functools.lru_cache(maxsize=64)
def _levels(spatial, downsample, M, r):
    """(shape, valid-pixel count) of every level of a pyramid."""
    shapes = tuple(tuple(s) for s in pyramid_shapes(spatial, downsample, M))
    return shapes, tuple(math.prod(n - 2 * r for n in s) for s in shapes)


def fit_weights(w, spatial, downsample, taps, fit_scales):
    """(weights, M) of the scales used: all of ``w``, or with ``fit_scales`` as
    many as the ``taps``-tap window fits (their weights rescaled to the
    original sum); otherwise a too small image is an error that says what fits."""
    M = w.size
    fit = fitting_scales(spatial, downsample, taps, M)
    if fit < M:
        got = "x".join(str(n) for n in spatial)
        if not fit_scales:
            from ._msssim import min_size

            need = min_size(M, taps, downsample, len(spatial))
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
    return w, M


def ms_ssim(x, y, *, weights, downsample, negative, fit_scales, grad, data_range, window,
            sigma, truncate, win_size, K1, K2, covariance, channel_axis, spatial_dims, workers,
            names=("x", "y")):
    """(Plan, x, y) of the pyramid MS-SSIM: ``weights`` validated (a float64
    array), ``downsample`` and ``negative`` checked, ``fit_scales`` a bool.
    Level j < M gives the mean of cs_j, level M that of l*cs over the pixels
    where the window fits; each level's sum region is that valid region."""
    x, y, lay, wtaps, cov, C1, C2, nthreads = _common(
        x, y, data_range, window, sigma, truncate, win_size, K1, K2, covariance, "valid",
        channel_axis, spatial_dims, workers, False, names)
    taps = len(wtaps)
    w, M = fit_weights(weights, lay.spatial, downsample, taps, fit_scales)
    r = (taps - 1) // 2
    shapes, nvals = _levels(lay.spatial, downsample, M, r)
    scales = (_new(Scale, (wtaps, "cs", cov)),) * (M - 1) + (_new(Scale, (wtaps, "ssim", cov)),)
    mreg = tuple([(r, n - r) for n in lay.spatial])
    pyr = _new(Pyramid, (downsample, shapes, nvals, tuple(w.tolist()), negative))
    return _new(Plan, (lay, "pyramid", scales, C1, C2, mreg, tuple([(0, b - a) for a, b in mreg]),
                       False, grad, 0.0, False, True, nthreads, pyr)), x, y


def skimage(im1, im2, *, cax, nchan, spatial, win_size, gaussian_weights, sigma, truncate,
            use_sample_covariance, data_range, K1, K2, ftype, full, gradient, workers):
    """The Plan of ``structural_similarity`` (scikit-image's semantics, its
    options validated by the caller, ``data_range`` set): one image pair, any
    rank; the window Gaussian (``sigma``) or a ``win_size`` box; the map
    same-size ('reflect') when ``full``, else the crop; the value the mean over
    the crop, ``(win_size - 1) // 2`` px from every border, the covariance
    factor NP/(NP-1) with NP = win_size**ndim; the gradient w.r.t. im2.  The
    compute type follows im1's float type ``ftype`` (scikit-image's rule)."""
    data_range = check_data_range(data_range)
    C1, C2 = check_constants(K1, K2, data_range)
    nthreads = resolve_workers(workers)
    NP = win_size**len(spatial)
    cov = NP / (NP - 1) if use_sample_covariance else 1.0
    pad = (win_size - 1) // 2
    taps = gaussian_taps(float(sigma), truncate) if gaussian_weights else uniform_taps(win_size)
    crop = tuple([(pad, n - pad) for n in spatial])
    mreg = tuple([(0, n) for n in spatial]) if full else crop
    sreg = tuple([(a - m0, b - m0) for (a, b), (m0, _) in zip(crop, mreg)])
    n_crop = 1
    for a, b in crop:
        n_crop *= b - a
    lay = _new(Layout, (im1.shape, im1.shape, im2.shape, im1.dtype, im2.dtype, (), nchan, cax,
                        tuple(spatial), compute_type(ftype, C1, C2)))
    return _new(Plan, (lay, "window", (_new(Scale, (taps, "ssim", cov)),), C1, C2, mreg, sreg,
                       bool(full), 2 if gradient else 0, 1.0 / (n_crop * nchan), False, True,
                       nthreads, None))


# ---------------------------------------------------------------------------
# results


def check_cotangent(plan, c, what, border):
    """A caller's cotangent map as an array of the map's shape (caller layout)."""
    c = _check_array(c, "cotangent")
    expect = plan.map_shape
    if c.shape != expect:
        raise ValueError(
            f"cotangent: expected the shape of the {what} map, {expect} "
            f"(border={border!r}), got {c.shape}"
        )
    return c


def per_item(plan, per_plane):
    """One value per batch item, the mean over its channels (0-d: a NumPy scalar)."""
    lay = plan.layout
    v = per_plane.reshape(lay.batch_shape + (lay.nchan,)).mean(axis=-1)
    return v[()] if v.ndim == 0 else v


def values(plan, sums):
    """The value of each batch item from the per-plane sums: the mean over
    the sum region, averaged over the channels."""
    return per_item(plan, sums / plan.n_sum)


def check_outs(x, y, outs, xp=np):
    """Caller buffers ``((name, array or None, shape, dtype), ...)`` in order:
    none overlaps an input or another (the engine reads the inputs while it
    writes, in blocks, on several threads), each of its shape and dtype,
    C-contiguous and writeable.  ``xp``: the inputs' array module (NumPy, or
    CuPy for the GPU backend)."""
    given = [(n, a) for n, a, _, _ in outs if isinstance(a, xp.ndarray)]
    for i, (name, a) in enumerate(given):
        for other in (x, y):
            if xp.may_share_memory(a, other):
                raise ValueError(f"{name}: the buffer overlaps an input image; pass a separate array")
        for _, b in given[i + 1:]:
            if xp.may_share_memory(a, b):
                raise ValueError(f"{name}: the buffers overlap each other; pass separate arrays")
    for name, a, shape, dtype in outs:
        if a is not None:
            check_out(a, shape, dtype, name, xp)


def ssim_outs(plan, x, y, map_out, grad_out, xp=np):
    """The ``map_out`` / ``grad_out`` buffers of :func:`fastssim.ssim`, checked
    (:func:`check_outs`), as the backend's ``out`` triple (map, grad_x,
    grad_y); None when the caller gave none."""
    g = plan.grad
    if map_out is not None and not plan.want_map:
        raise ValueError("map_out: a map buffer needs full=True")
    if grad_out is not None and not g:
        raise ValueError("grad_out: a gradient buffer needs gradient='x', 'y' or 'both'")
    if map_out is None and grad_out is None:
        return None
    gouts = (None, None)
    if g == 3:
        if grad_out is not None and (not isinstance(grad_out, (tuple, list)) or len(grad_out) != 2):
            raise TypeError("grad_out: expected a pair of arrays (grad_x, grad_y) for gradient='both'")
        gouts = tuple(grad_out) if grad_out is not None else (None, None)
    elif g == 1:
        gouts = (grad_out, None)
    elif g == 2:
        gouts = (None, grad_out)
    lay = plan.layout
    check_outs(x, y, (("map_out", map_out, plan.map_shape, lay.dtype),
                      ("grad_out", gouts[0], lay.xshape, lay.dtype),
                      ("grad_out", gouts[1], lay.yshape, lay.dtype)), xp)
    return (map_out,) + gouts
