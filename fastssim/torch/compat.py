"""A pytorch_msssim-compatible layer: change one import line, keep the numbers.

``from fastssim.torch.compat import ssim, ms_ssim, SSIM, MS_SSIM`` in place of
``from pytorch_msssim import ...``: the same argument names and defaults
(``data_range=255``, ``size_average=True``, ``win_size=11``, ``win_sigma=1.5``,
``win``, ``K=(0.01, 0.03)``, ``nonnegative_ssim``, ``weights``, and the
modules' ``channel`` / ``spatial_dims``) and the same conventions, mapped onto
fastssim's options:

* the window is pytorch_msssim's: a Gaussian of ``win_size`` taps
  (``exp(-k^2 / (2 win_sigma^2))`` normalised), i.e. fastssim's Gaussian with
  ``truncate = (win_size // 2) / win_sigma``; a ``win`` tensor must hold such
  a Gaussian (its sigma is read from the taps) or a box (equal taps);
* the value of a channel is the mean of the SSIM map over the 'valid'
  positions (population covariance), the same as fastssim's value;
* MS-SSIM downsamples with ``avg_pool(kernel_size=2, padding=size % 2)``, a
  zero before the first sample of an odd extent counted in the mean:
  ``downsample='zero'``; the per-scale means are clamped at 0 (``relu``):
  ``negative='clamp'``; the MS-SSIM of each channel, then the channel mean;
* ``size_average=True`` averages over batch and channels (a 0-d tensor),
  ``False`` over channels (an ``(N,)`` tensor); ``nonnegative_ssim`` applies
  ``relu`` to each channel's SSIM;
* dimensions of size 1 after the second are squeezed away first, as
  pytorch_msssim does, and the result must be 4-D or 5-D.

Differences, all in what is refused rather than in the numbers:

* pytorch_msssim silently skips the smoothing along a spatial axis shorter
  than the window (it warns); fastssim has one window for every axis, so
  that case raises ``ValueError`` here (it cannot happen to H and W in
  MS-SSIM, whose size check rules it out, but can to a 5-D input's depth);
* its user errors are ``AssertionError`` / ``ValueError``; here they are
  ``ValueError`` / ``TypeError`` (same conditions, e.g. the MS-SSIM size check
  ``min(H, W) > (win_size - 1) * 2**4``, kept as is whatever the number of
  weights);
* ``channel`` of the modules only shapes their ``win`` attribute (in
  pytorch_msssim a mismatched channel count fails in the convolution);
* the result is float32 for float16/bfloat16 input (computed in float32).

Gradients are fastssim's exact gradients of the same values; both libraries
differentiate the same function, so they agree to rounding (the tests check
the values and the gradients against pytorch_msssim itself).
"""

from __future__ import annotations

import math

import torch

from . import _call, _check_pair

__all__ = ["ssim", "ms_ssim", "SSIM", "MS_SSIM"]

_DEFAULT_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _fspecial_gauss_1d(size, sigma):
    """pytorch_msssim's window tensor (1, 1, size), float32 (for the modules' ``win``)."""
    coords = torch.arange(size, dtype=torch.float)
    coords -= size // 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g /= g.sum()
    return g.unsqueeze(0).unsqueeze(0)


def _window_options(win_size, win_sigma, win):
    """fastssim window options equal to pytorch_msssim's (win_size, win_sigma) or ``win``."""
    if win is not None:
        if not isinstance(win, torch.Tensor):
            raise TypeError(f"win: expected a tensor of 1-D window taps, got {type(win).__name__}")
        win_size = win.shape[-1]
    if isinstance(win_size, bool) or not isinstance(win_size, int):
        raise TypeError(f"win_size: expected an odd int, got {win_size!r}")
    if win_size % 2 != 1 or win_size < 1:
        raise ValueError(f"win_size: Window size should be odd (and positive), got {win_size}")
    r = win_size // 2
    if win is not None:
        rows = win.detach().to("cpu", torch.float64).reshape(-1, win_size)
        taps = rows[0]
        if not torch.equal(rows, taps.expand_as(rows)):
            raise ValueError("win: every channel's window must be the same (fastssim has one window)")
        if r == 0 or torch.allclose(taps, taps.mean().expand_as(taps), rtol=1e-6, atol=0):
            return {"window": "uniform", "win_size": win_size}
        ratio = float(taps[r + 1] / taps[r])
        if not 0.0 < ratio < 1.0:
            raise ValueError("win: expected Gaussian taps exp(-k^2 / (2 sigma^2)) (normalised) or a box")
        win_sigma = math.sqrt(-1.0 / (2.0 * math.log(ratio)))
        expect = _fspecial_gauss_1d(win_size, win_sigma).to(torch.float64).reshape(-1)
        if not torch.allclose(taps / taps.sum(), expect, rtol=1e-5, atol=1e-7):
            raise ValueError("win: expected Gaussian taps exp(-k^2 / (2 sigma^2)) (normalised) or "
                             "a box; fastssim cannot use other windows")
    if r == 0:
        return {"window": "uniform", "win_size": 1}
    if not (isinstance(win_sigma, (int, float)) and not isinstance(win_sigma, bool)
            and win_sigma > 0 and math.isfinite(win_sigma)):
        raise ValueError(f"win_sigma: expected a positive number, got {win_sigma!r}")
    truncate = r / win_sigma  # fastssim's radius int(truncate * sigma + 0.5) is then r
    return {"window": "gaussian", "sigma": float(win_sigma), "truncate": truncate}


def _squeeze(X, Y):
    if not X.shape == Y.shape:
        raise ValueError(f"X, Y: Input images should have the same dimensions, but got "
                         f"{X.shape} and {Y.shape}.")
    for d in range(len(X.shape) - 1, 1, -1):
        X = X.squeeze(dim=d)
        Y = Y.squeeze(dim=d)
    if len(X.shape) not in (4, 5):
        raise ValueError(f"X: Input images should be 4-d or 5-d tensors, but got {X.shape}")
    return X, Y


def _check_filtered(shape, win_size, what):
    for i, s in enumerate(shape):
        if s < win_size:
            raise ValueError(
                f"X: spatial dimension 2+{i} of {what} has {s} < win_size={win_size} samples; "
                "pytorch_msssim would skip the Gaussian smoothing along it (with a warning), "
                "which fastssim does not reproduce: pass a smaller win_size or a larger input")


def _K(K):
    try:
        K1, K2 = K
    except (TypeError, ValueError):
        raise TypeError(f"K: expected a pair (K1, K2), got {K!r}") from None
    return float(K1), float(K2)


def ssim(X, Y, data_range=255, size_average=True, win_size=11, win_sigma=1.5, win=None,
         K=(0.01, 0.03), nonnegative_ssim=False):
    """pytorch_msssim.ssim on fastssim's engine (same arguments, defaults and values).

    Parameters
    ----------
    X, Y : Tensor, shape (N, C, H, W) or (N, C, D, H, W)
    data_range : float
        Value range of the images (pytorch_msssim's default 255).
    size_average : bool
        True: the mean over batch and channels (0-d); False: per image (N,).
    win_size, win_sigma : int, float
        The Gaussian window's taps and width (11, 1.5).
    win : Tensor, optional
        A window tensor as pytorch_msssim builds it (Gaussian or box taps).
    K : (float, float)
        (K1, K2).
    nonnegative_ssim : bool
        ``relu`` on each channel's SSIM.

    Returns
    -------
    Tensor
        Differentiable with respect to X and Y (fastssim's exact gradient).
    """
    X, Y = _squeeze(X, Y)
    _check_pair(X, Y, ("X", "Y"))
    opts = _window_options(win_size, win_sigma, win)
    _check_filtered(X.shape[2:], win_size if win is None else win.shape[-1], "the input")
    K1, K2 = _K(K)
    if nonnegative_ssim:  # relu on each channel's value: per-plane values, then the means
        per_channel = torch.relu(_call("ssim", X, Y, ("X", "Y"), "plane",
                                       data_range=float(data_range), K1=K1, K2=K2, **opts))
        return per_channel.mean() if size_average else per_channel.mean(1)
    # the mean over batch and channels (or over channels) in the engine call itself
    return _call("ssim", X, Y, ("X", "Y"), "mean" if size_average else "item",
                 data_range=float(data_range), K1=K1, K2=K2, **opts)


def ms_ssim(X, Y, data_range=255, size_average=True, win_size=11, win_sigma=1.5, win=None,
            weights=None, K=(0.01, 0.03)):
    """pytorch_msssim.ms_ssim on fastssim's engine (same arguments, defaults and values).

    ``weights`` defaults to (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); the
    smaller of H and W must exceed ``(win_size - 1) * 16`` (pytorch_msssim's
    check, whatever the number of weights).  Other arguments as :func:`ssim`.
    """
    X, Y = _squeeze(X, Y)
    _check_pair(X, Y, ("X", "Y"))
    opts = _window_options(win_size, win_sigma, win)
    if win is not None:
        win_size = win.shape[-1]
    smaller_side = min(X.shape[-2:])
    if not smaller_side > (win_size - 1) * (2 ** 4):
        raise ValueError("X: Image size should be larger than %d due to the 4 downsamplings "
                         "in ms-ssim" % ((win_size - 1) * (2 ** 4)))
    if weights is None:
        weights = _DEFAULT_WEIGHTS
    weights = tuple(float(w) for w in torch.as_tensor(weights, dtype=torch.float64).reshape(-1))
    shape = tuple(X.shape[2:])
    for level in range(len(weights)):
        _check_filtered(shape, win_size, f"scale {level + 1}")
        shape = tuple((s + 1) // 2 for s in shape)
    K1, K2 = _K(K)
    return _call("ms_ssim", X, Y, ("X", "Y"), "mean" if size_average else "item",
                 data_range=float(data_range), K1=K1, K2=K2, weights=weights,
                 downsample="zero", negative="clamp", **opts)


class SSIM(torch.nn.Module):
    """pytorch_msssim.SSIM on fastssim's engine (same constructor, attributes and forward)."""

    def __init__(self, data_range=255, size_average=True, win_size=11, win_sigma=1.5, channel=3,
                 spatial_dims=2, K=(0.01, 0.03), nonnegative_ssim=False):
        super().__init__()
        _window_options(win_size, win_sigma, None)
        self.win_size = win_size
        self.win_sigma = win_sigma
        self.win = _fspecial_gauss_1d(win_size, win_sigma).repeat([channel, 1] + [1] * spatial_dims)
        self.size_average = size_average
        self.data_range = data_range
        self.K = K
        self.nonnegative_ssim = nonnegative_ssim

    def forward(self, X, Y):
        return ssim(X, Y, data_range=self.data_range, size_average=self.size_average,
                    win_size=self.win_size, win_sigma=self.win_sigma, K=self.K,
                    nonnegative_ssim=self.nonnegative_ssim)


class MS_SSIM(torch.nn.Module):
    """pytorch_msssim.MS_SSIM on fastssim's engine (same constructor, attributes and forward)."""

    def __init__(self, data_range=255, size_average=True, win_size=11, win_sigma=1.5, channel=3,
                 spatial_dims=2, weights=None, K=(0.01, 0.03)):
        super().__init__()
        _window_options(win_size, win_sigma, None)
        self.win_size = win_size
        self.win_sigma = win_sigma
        self.win = _fspecial_gauss_1d(win_size, win_sigma).repeat([channel, 1] + [1] * spatial_dims)
        self.size_average = size_average
        self.data_range = data_range
        self.weights = weights
        self.K = K

    def forward(self, X, Y):
        return ms_ssim(X, Y, data_range=self.data_range, size_average=self.size_average,
                       win_size=self.win_size, win_sigma=self.win_sigma, weights=self.weights,
                       K=self.K)

