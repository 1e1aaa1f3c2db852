"""The loss family of Zhao, Gallo, Frosio and Kautz, with gradient maps.

Every loss takes ``(prediction, target, ...)`` and returns the loss of each
batch item (a float for a single pair).  With ``gradient=True`` and/or
``full=True`` it returns a :class:`LossResult` ``(value, grad, map)``:

* ``grad`` is d loss / d prediction, the array a custom optimiser steps with
  (for a batch, item b's slice is the gradient of item b's loss, i.e. the
  gradient of the sum of the per-item losses);
* ``map`` is the per-pixel loss whose mean is the loss (``ms_ssim`` has no
  per-pixel form: its map is None).

The batch axes of prediction and target broadcast (one target against a
stack of predictions, say); the loss, the map and the value have the
broadcast shape, ``grad`` the prediction's own shape (summed over the axes
along which it broadcasts, as autograd does).

Losses (means over the pixels of each item, channels included):

==================  ===============================================================
``l1``              mean |p - t|
``l2``              mean (p - t)^2
``ssim``            1 - SSIM(p, t)                       (:func:`fastssim.ssim`)
``ms_ssim``         1 - MS-SSIM(p, t)                    (:func:`fastssim.ms_ssim`)
``pixelwise_ms_ssim``  mean_p 1 - P(p)                   (:func:`fastssim.pixelwise_ms_ssim`)
``mix``             mean_p alpha (1 - P(p)) + (1 - alpha) (G_sigma_M * |p - t|)(p)
==================  ===============================================================

``mix`` is eq. (12) of Zhao et al.: per pixel, alpha times the per-pixel
MS-SSIM loss plus (1 - alpha) times the l1 error filtered by the widest
Gaussian G_sigma_M, then averaged; alpha = 0.84 as in the paper.  The l1
kink: the gradient of |d| is taken as sign(d), 0 at d = 0 (a subgradient).
"""

from __future__ import annotations

import math
import numbers
from collections import namedtuple

import numpy as np

from . import _backends, _plan
from ._msssim import ms_ssim as _ms_ssim
from ._pixelwise import ZHAO_SIGMAS
from ._ssim import ssim as _ssim
from ._validation import broadcast_batch, check_bool, check_layout, float_type
from ._conventions import with_convention
from ._dispatch import gpu_dispatch

__all__ = ["LossResult", "l1", "l2", "ssim", "ms_ssim", "pixelwise_ms_ssim", "mix"]

LossResult = namedtuple("LossResult", ["value", "grad", "map"])
LossResult.__doc__ = """A loss, its gradient w.r.t. the prediction, and its per-pixel map.

value : float or ndarray of the batch shape (float64)
grad : ndarray or None, d value / d prediction
map : ndarray or None, the per-pixel loss (None for ``ms_ssim``)
"""


_NAMES = ("prediction", "target")


def _check_layout(prediction, target, channel_axis=None, spatial_dims=2):
    """The pair's errors, naming prediction/target (not the x/y of a function
    delegated to); their batch axes may broadcast."""
    return check_layout(prediction, target, channel_axis, spatial_dims, _NAMES, broadcast=True)


def _layout(prediction, target, channel_axis, spatial_dims):
    """(prediction, target) in the compute type, the per-item axes of the
    broadcast shape, and that shape."""
    p, t, cax = _check_layout(prediction, target, channel_axis, spatial_dims)
    spatial_dims = int(spatial_dims)
    shape = p.shape if p.shape == t.shape else broadcast_batch(p.shape, t.shape, cax,
                                                               spatial_dims, _NAMES)
    axes = [a for a in range(len(shape)) if a != cax][-spatial_dims:]
    if cax is not None:
        axes.append(cax)
    ft = float_type(np.result_type(p.dtype, t.dtype)) if p.dtype != t.dtype else float_type(p.dtype)
    return p.astype(ft, copy=False), t.astype(ft, copy=False), tuple(sorted(axes)), shape


def _sum_to(g, shape):
    """A gradient of the broadcast shape summed over the batch axes along
    which an input of ``shape`` broadcasts (as autograd does)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, dtype=np.float64).reshape(shape).astype(g.dtype, copy=False)


def _result(value, grad, lmap, gradient, full):
    if not gradient and not full:
        return value
    return LossResult(value, grad if gradient else None, lmap if full else None)


def _item_mean(m, axes):
    v = np.mean(m, axis=axes, dtype=np.float64)
    return v[()] if np.ndim(v) == 0 else v


def _check_flag(v, name):
    check_bool(v, name)


@gpu_dispatch("losses.l1")
def l1(prediction, target, *, gradient=False, full=False, channel_axis=None, spatial_dims=2):
    """Mean absolute error per item; gradient sign(p - t) / N (0 where p == t).

    Examples
    --------
    >>> import numpy as np
    >>> from fastssim import losses
    >>> float(losses.l1(np.zeros((4, 4)), np.ones((4, 4))))
    1.0
    """
    _check_flag(gradient, "gradient")
    _check_flag(full, "full")
    p, t, axes, shape = _layout(prediction, target, channel_axis, spatial_dims)
    d = p - t
    lmap = np.abs(d)
    n = math.prod(shape[a] for a in axes)
    grad = _sum_to(np.sign(d) / p.dtype.type(n), p.shape) if gradient else None
    return _result(_item_mean(lmap, axes), grad, lmap, gradient, full)


@gpu_dispatch("losses.l2")
def l2(prediction, target, *, gradient=False, full=False, channel_axis=None, spatial_dims=2):
    """Mean squared error per item; gradient 2 (p - t) / N.

    Examples
    --------
    >>> import numpy as np
    >>> from fastssim import losses
    >>> float(losses.l2(np.zeros((4, 4)), np.full((4, 4), 2.0)))
    4.0
    """
    _check_flag(gradient, "gradient")
    _check_flag(full, "full")
    p, t, axes, shape = _layout(prediction, target, channel_axis, spatial_dims)
    d = p - t
    lmap = d * d
    n = math.prod(shape[a] for a in axes)
    grad = _sum_to(d * p.dtype.type(2.0 / n), p.shape) if gradient else None
    return _result(_item_mean(lmap, axes), grad, lmap, gradient, full)


@with_convention("loss_ssim")
@gpu_dispatch("losses.ssim")
def ssim(prediction, target, *, data_range=None, gradient=False, full=False, **kwargs):
    """1 - SSIM(prediction, target) (:func:`fastssim.ssim`; its keyword arguments apply).

    The loss map is 1 - the SSIM map; note that the loss is 1 - the mean of
    SSIM over the pixels where the window fits, as :func:`fastssim.ssim`.
    """
    return _one_minus(_ssim, prediction, target, data_range, gradient, full, kwargs)


def _one_minus(similarity, prediction, target, data_range, gradient, full, kwargs):
    """1 - a similarity that has a per-pixel map: the loss, minus the
    similarity's gradient w.r.t. the prediction, 1 - its map."""
    _check_flag(gradient, "gradient")
    _check_flag(full, "full")
    _check_layout(prediction, target, kwargs.get("channel_axis"), kwargs.get("spatial_dims", 2))
    r = similarity(prediction, target, data_range=data_range, full=full,
                   gradient="x" if gradient else None, **kwargs)
    if not gradient and not full:
        return 1.0 - r
    return LossResult(1.0 - r.value, -r.grad_x if gradient else None,
                      1.0 - r.map if full else None)


@with_convention("loss_ms_ssim")
@gpu_dispatch("losses.ms_ssim")
def ms_ssim(prediction, target, *, data_range=None, gradient=False, full=False, **kwargs):
    """1 - MS-SSIM(prediction, target) (:func:`fastssim.ms_ssim`; its keyword arguments apply).

    The pyramid MS-SSIM has no per-pixel form: ``full=True`` gives ``map=None``
    (use :func:`pixelwise_ms_ssim` for a per-pixel loss).
    """
    _check_flag(gradient, "gradient")
    _check_flag(full, "full")
    if "return_scales" in kwargs:
        raise TypeError("ms_ssim loss: return_scales is not a loss option; call "
                        "fastssim.ms_ssim(..., return_scales=True) for the per-scale means")
    _check_layout(prediction, target, kwargs.get("channel_axis"), kwargs.get("spatial_dims", 2))
    r = _ms_ssim(prediction, target, data_range=data_range,
                 gradient="x" if gradient else None, **kwargs)
    if not gradient and not full:
        return 1.0 - r
    if not gradient:
        return LossResult(1.0 - r, None, None)
    return LossResult(1.0 - r.value, -r.grad_x, None)


@gpu_dispatch("losses.pixelwise_ms_ssim")
def pixelwise_ms_ssim(prediction, target, *, data_range=None, gradient=False, full=False,
                      **kwargs):
    """mean_p (1 - P(p)), P the per-pixel MS-SSIM (:func:`fastssim.pixelwise_ms_ssim`)."""
    from ._pixelwise import pixelwise_ms_ssim as _pw

    return _one_minus(_pw, prediction, target, data_range, gradient, full, kwargs)


@gpu_dispatch("losses.mix")
def mix(prediction, target, *, alpha=0.84, data_range=None, sigmas=ZHAO_SIGMAS,
        truncate=3.5, K1=0.01, K2=0.03, covariance="population", border="reflect",
        gradient=False, full=False, channel_axis=None, spatial_dims=2, workers=None):
    """The Mix loss of Zhao et al. (eq. 12): alpha (1 - P) + (1 - alpha) G_sigma_M * l1.

    Per pixel: ``alpha * (1 - P(p)) + (1 - alpha) * (G * |prediction - target|)(p)``,
    P the per-pixel MS-SSIM and G the Gaussian of the widest ``sigmas`` (with
    the same truncation and border as P); the loss is the mean of that map.
    alpha = 0.84 as in the paper (the authors' released code uses 0.025).

    The gradient w.r.t. the prediction is
    ``-alpha dP/dp + (1 - alpha) sign(p - t) G^T(1/N)``, with G^T the adjoint
    of the filter (borders included) and sign(0) = 0.

    Examples
    --------
    >>> import numpy as np
    >>> from fastssim import losses
    >>> x = np.random.default_rng(0).random((64, 64))
    >>> float(losses.mix(x, x, data_range=1.0))
    0.0
    """
    _check_flag(gradient, "gradient")
    _check_flag(full, "full")
    if isinstance(alpha, bool) or not isinstance(alpha, (numbers.Real, np.generic)):
        raise TypeError(f"alpha: expected a number in [0, 1], got {alpha!r}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}")
    _check_layout(prediction, target, channel_axis, spatial_dims)
    # the per-pixel MS-SSIM and the filtered l1 error combine per pixel: both
    # runs keep their gradients in the broadcast shape (summed at the end)
    p, x, y = _plan.pixelwise(prediction, target, full=full, grad=1 if gradient else 0,
                              reduce_grad=False, sigmas=sigmas, truncate=truncate,
                              data_range=data_range, K1=K1, K2=K2, covariance=covariance,
                              border=border, channel_axis=channel_axis,
                              spatial_dims=spatial_dims, workers=workers, names=_NAMES)
    ms = _backends.execute(p, x, y)
    dt = p.layout.dtype.type
    # the difference of broadcast arrays in the compute type: d is the only full-size array made
    d = np.subtract(x.astype(dt, copy=False), y.astype(dt, copy=False))
    ad = np.abs(d)
    l1 = _backends.execute(_plan.windowed_mean(p, p.scales[-1].taps), ad, ad)
    n = p.n_sum
    per_plane = alpha * (1.0 - ms.sums / n) + (1.0 - alpha) * (l1.sums / n)
    value = _plan.per_item(p, per_plane)
    grad = lmap = None
    if gradient:
        g = dt(-alpha) * ms.grad_x + dt(1.0 - alpha) * np.sign(d) * l1.grad_x
        grad = _sum_to(g, x.shape)
    if full:
        lmap = dt(alpha) * (dt(1) - ms.map) + dt(1.0 - alpha) * l1.map
    return _result(value, grad, lmap, gradient, full)
