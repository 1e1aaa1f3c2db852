"""Batch-native SSIM, its map, its exact gradient and its vector-Jacobian product."""

from __future__ import annotations

import math
import numbers
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from ._finite import compute_type, finite_or_promote
from ._conventions import with_convention
from . import _core
from ._dispatch import gpu_dispatch
from ._bands import gaussian_size, gaussian_taps, uniform_taps
from ._validation import (
    _check_array,
    as_planes,
    broadcast_batch,
    check_bool,
    check_constants,
    check_data_range,
    check_layout,
    check_positive,
    dtype_range,
    float_type,
    resolve_workers,
)

__all__ = ["ssim", "ssim_vjp", "SSIMResult"]

SSIMResult = namedtuple("SSIMResult", ["value", "map", "grad_x", "grad_y"])
SSIMResult.__doc__ = """Result of :func:`fastssim.ssim` with ``full`` or ``gradient``.

value : float or ndarray of the batch shape (float64)
map : ndarray or None, the SSIM map (input layout, compute dtype)
grad_x, grad_y : ndarray or None, gradient of ``value`` w.r.t. x / y
"""

_GRAD = {None: 0, "x": 1, "y": 2, "both": 3}


@dataclass
class Plan:
    """Everything the engine needs, derived once from the user's arguments.

    ``xe``, ``ye`` are the engine's inputs (see ``fastssim._core``): the
    caller's arrays themselves whenever the engine can read them in place
    (C-contiguous, a dtype it converts on the fly, channels last or absent),
    otherwise contiguous planes in the compute dtype.  ``nci`` > 1 means the
    channels are interleaved (the caller's last axis).

    Batch broadcasting: ``batch_shape`` is the broadcast batch shape, and
    when x and y differ in it, ``xe`` and ``ye`` hold each input's own items
    and ``xsel``/``ysel`` say which of them every engine item reads (None
    when the shapes agree).  ``shape`` is the broadcast shape of the inputs.
    """

    xe: np.ndarray | None
    ye: np.ndarray | None
    batch_shape: tuple
    nchan: int              # channels averaged into one value (1 without channel_axis)
    channel_axis: int | None
    spatial: tuple
    taps: tuple
    r: int
    C1: float
    C2: float
    cov: float
    border: str
    workers: int
    ftype: np.dtype = np.dtype(np.float64)
    nci: int = 1
    user: tuple = ()
    shape: tuple = ()
    xsel: np.ndarray | None = None
    ysel: np.ndarray | None = None

    def load(self, x, y, ftype):
        """Choose the engine's inputs: in place if possible, else converted planes."""
        self.ftype = np.dtype(ftype)
        self.user = (x, y)
        if not self.shape:
            self.shape = x.shape
        native = (x.dtype == y.dtype and x.dtype.isnative
                  and _core.native_type(x.dtype, self.ftype)
                  and x.flags.c_contiguous and y.flags.c_contiguous)
        cax = self.channel_axis
        if native and cax is not None and cax == len(self.shape) - 1 and self.nchan > 1:
            self.nci = self.nchan
            self.xe, self.ye = (a.reshape((-1,) + tuple(self.spatial) + (self.nchan,))
                                for a in (x, y))
        else:
            self.nci = 1
            if native:
                self.xe = self._planes_view(x)
                self.ye = self._planes_view(y)
            else:
                self.xe = self.from_user(x, self.ftype)
                self.ye = self.from_user(y, self.ftype)
        if x.shape != y.shape:
            self.xsel, self.ysel = self._sel(x), self._sel(y)

    def _cax(self, a):
        """The channel axis in ``a``'s own axes (it counts on the broadcast shape)."""
        if self.channel_axis is None:
            return None
        return self.channel_axis - (len(self.shape) - a.ndim)

    def _sel(self, a):
        """Which of ``a``'s own engine items each item of the broadcast run
        reads (a batch item; a (batch item, channel) plane if the channels are
        planes): the indices of ``a``'s items, broadcast."""
        nb = len(self.batch_shape)
        cax = self._cax(a)
        own = a.shape if cax is None else np.moveaxis(np.empty(a.shape, np.bool_), cax, -1).shape
        own = own[: a.ndim - len(self.spatial) - (cax is not None)]
        own = (1,) * (nb - len(own)) + tuple(own)
        tail = (self.nchan,) if (self.channel_axis is not None and self.nci == 1) else ()
        idx = np.arange(math.prod(own + tail), dtype=np.intp).reshape(own + tail)
        return np.ascontiguousarray(np.broadcast_to(idx, tuple(self.batch_shape) + tail).ravel())

    def sum_to(self, g, side):
        """A full (broadcast-shape) gradient summed over the batch axes that
        input ``side`` (0: x, 1: y) broadcasts along, in its own shape."""
        shape = self.user[side].shape
        if g is None or g.shape == shape:
            return g
        lead = g.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
        return g.sum(axis=axes, dtype=np.float64).reshape(shape).astype(g.dtype, copy=False)

    def _planes_view(self, a):
        if self.channel_axis is not None:
            a = np.moveaxis(a, self._cax(a), -(len(self.spatial) + 1))
        a = np.ascontiguousarray(a)  # no copy when the planes are already contiguous
        return a.reshape((-1,) + tuple(self.spatial))

    @property
    def P(self):
        return math.prod(self.batch_shape) * self.nchan

    def planes(self):
        """(x, y) as contiguous planes in the compute dtype: (P, *spatial),
        or each input's own planes when it broadcasts (see ``xsel``)."""
        if self.nci == 1 and self.xe.dtype == self.ftype:
            return self.xe, self.ye
        return self.from_user(self.user[0], self.ftype), self.from_user(self.user[1], self.ftype)

    @property
    def valid_region(self):
        return tuple((self.r, n - self.r) for n in self.spatial)

    def map_region(self, want_full):
        if self.border == "reflect" and want_full:
            return tuple((0, n) for n in self.spatial)
        return self.valid_region

    def sum_region(self, map_region):
        return tuple((self.r - a, n - self.r - a) for (a, _), n in zip(map_region, self.spatial))

    @property
    def n_valid(self):
        return math.prod(n - 2 * self.r for n in self.spatial)

    def to_user(self, a, interleaved=None):
        """Engine layout -> caller layout (*batch, *s) or with the channel axis restored.

        ``a`` is planes (P, *s), or (B, *s, C) if ``interleaved`` (default: as
        the engine's inputs)."""
        if interleaved is None:
            interleaved = self.nci > 1
        if interleaved:
            return a.reshape(self.batch_shape + a.shape[1:])
        if self.channel_axis is None:
            return a.reshape(self.batch_shape + a.shape[1:])
        a = a.reshape(self.batch_shape + (self.nchan,) + a.shape[1:])
        return np.moveaxis(a, len(self.batch_shape), self.channel_axis)

    def from_user(self, arr, ftype):
        """Caller layout -> contiguous planes (P, *s) of dtype ftype (a copy if needed)."""
        if self.channel_axis is not None:
            arr = np.moveaxis(arr, self._cax(arr), -(len(self.spatial) + 1))
        arr = as_planes(arr, ftype)
        return arr.reshape((-1,) + arr.shape[-len(self.spatial):])

    def cotangent(self, c, oshape, what, border):
        """A caller's cotangent (map-shaped, caller layout) in the engine's layout."""
        c = _check_array(c, "cotangent")
        expect = self.to_user(np.empty((self.P,) + oshape, dtype=np.bool_), False).shape
        if c.shape != expect:
            raise ValueError(
                f"cotangent: expected the shape of the {what} map, {expect} "
                f"(border={border!r}), got {c.shape}"
            )
        if self.nci > 1:
            shape = (math.prod(self.batch_shape),) + tuple(oshape) + (self.nci,)
            return np.ascontiguousarray(c, dtype=self.ftype).reshape(shape)
        return self.from_user(c, self.ftype)

    def wrt_result(self, g, gx, gy):
        """The gradient(s) a VJP returns: one array, or the pair for 'both',
        each in its input's own shape."""
        if g == 1:
            return self.sum_to(self.to_user(gx), 0)
        if g == 2:
            return self.sum_to(self.to_user(gy), 1)
        return self.sum_to(self.to_user(gx), 0), self.sum_to(self.to_user(gy), 1)

    def plane_sel(self):
        """(xsel, ysel) for the planes :meth:`planes` returns (one entry per
        (item, channel) plane), or (None, None) without broadcasting."""
        if self.xsel is None or self.nci == 1:
            return self.xsel, self.ysel
        ch = np.arange(self.nci, dtype=np.intp)
        return tuple(np.ascontiguousarray((s[:, None] * self.nci + ch).ravel())
                     for s in (self.xsel, self.ysel))

    @property
    def sel(self):
        """The engine's broadcasting arguments (xsel, ysel)."""
        return {"xsel": self.xsel, "ysel": self.ysel}

    def values(self, sums):
        return self.per_item(sums / self.n_valid)

    def per_item(self, per_plane):
        """One value per batch item, the mean over its channels (0-d: a NumPy scalar)."""
        v = per_plane.reshape(self.batch_shape + (self.nchan,)).mean(axis=-1)
        return v[()] if v.ndim == 0 else v


def _win_size(win_size):
    """The box window's side: 7 by default, else an odd positive int."""
    if win_size is None:
        return 7
    if isinstance(win_size, bool) or not isinstance(win_size, numbers.Integral):
        raise TypeError(f"win_size: expected an odd positive int, got {win_size!r}")
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size: expected an odd positive int, got {win_size}")
    return int(win_size)


def _window_size(window, sigma, truncate, win_size):
    """The tap count of the window, validating its arguments (before
    _window builds it: a huge window fails here, unbuilt)."""
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
    """The taps of a window _window_size has validated and sized."""
    if window == "gaussian":
        return gaussian_taps(float(sigma), float(truncate))
    return uniform_taps(_win_size(win_size))


def plan(x, y, *, data_range, window, sigma, truncate, win_size, K1, K2,
         covariance, border, channel_axis, spatial_dims, workers, check_window=True,
         names=("x", "y")):
    """Validate and normalise the arguments shared by ssim, ssim_vjp and ms_ssim.

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
    ntap = _window_size(window, sigma, truncate, win_size)
    if ntap > (min(spatial) if check_window else 2 * max(spatial) + 1):
        raise ValueError(
            f"the {ntap}-tap window exceeds the image extent: spatial shape {tuple(spatial)} "
            f"(input shape {shape}); every spatial side needs at least {ntap} px. "
            "Pass a smaller window (sigma / win_size), or check channel_axis and spatial_dims"
        )
    taps = _window(window, sigma, truncate, win_size)
    r = (ntap - 1) // 2
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
    p = Plan(
        xe=None, ye=None, batch_shape=tuple(batch_shape), nchan=nchan, channel_axis=cax,
        spatial=tuple(spatial), taps=taps, r=r,
        C1=C1, C2=C2, cov=cov, border=border, workers=nthreads, shape=tuple(shape),
    )
    p.load(x, y, compute_type(ftype, p.C1, p.C2))
    return p


def wrt_code(wrt):
    """'x' -> 1, 'y' -> 2, 'both' -> 3; anything else is an error."""
    g = _GRAD.get(wrt, 0) if isinstance(wrt, str) else 0
    if g == 0:
        raise ValueError(f"wrt: expected 'x', 'y' or 'both', got {wrt!r}")
    return g


def _grad_code(gradient, name="gradient"):
    try:
        return _GRAD[gradient]
    except (KeyError, TypeError):
        raise ValueError(f"{name}: expected None, 'x', 'y' or 'both', got {gradient!r}") from None


def _deliver(p, planes, out, name, side=None):
    """Planes -> caller layout (a gradient: summed to its input's shape),
    into ``out`` when given."""
    res = p.to_user(planes)
    if side is not None:
        res = p.sum_to(res, side)
    if out is None:
        return res
    _core.check_out(out, res.shape, res.dtype, name)
    if not np.shares_memory(out, res):
        np.copyto(out, res)
    return out


def _check_no_overlap(p, outs):
    """Output buffers must not overlap the inputs or each other: the engine
    reads the inputs while it writes, in blocks, on several threads."""
    given = [(n, a) for n, a in outs if isinstance(a, np.ndarray)]
    for i, (name, a) in enumerate(given):
        for other in p.user:
            if np.may_share_memory(a, other):
                raise ValueError(f"{name}: the buffer overlaps an input image; pass a separate array")
        for _, b in given[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{name}: the buffers overlap each other; pass separate arrays")


def _direct_out(p, out, shape, name, side=None):
    """A caller's buffer the engine can write into directly, or None (also
    for the gradient of an input that broadcasts: it is a sum of the run's)."""
    if out is None or p.channel_axis is not None or p.nci > 1:
        return None
    if side is not None and p.user[side].shape != p.shape:
        return None
    return _core.check_out(out, p.batch_shape + shape, p.ftype, name).reshape((-1,) + shape)


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
    convention : str or None
        A peer library's conventions by name (``fastssim.conventions``:
        'matlab', 'skimage', 'tensorflow', 'pytorch_msssim', 'torchmetrics',
        'piq', 'kornia', ...); explicit keyword arguments override it.  Two
        options exist for the presets: ``auto_downsample`` ('matlab', 'piq':
        the automatic downsampling of large images, gradient through it) and
        ``pad='mirror'`` (the mean of a same-size map of mirror-padded images);
        see ``fastssim._conventions``.

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
    g = _grad_code(gradient)
    full = check_bool(full, "full")
    p = plan(x, y, data_range=data_range, window=window, sigma=sigma, truncate=truncate,
             win_size=win_size, K1=K1, K2=K2, covariance=covariance, border=border,
             channel_axis=channel_axis, spatial_dims=spatial_dims, workers=workers)
    mreg = p.map_region(full)
    oshape = tuple(b - a for a, b in mreg)
    if map_out is not None and not full:
        raise ValueError("map_out: a map buffer needs full=True")
    if grad_out is not None and not g:
        raise ValueError("grad_out: a gradient buffer needs gradient='x', 'y' or 'both'")
    gouts = (None, None)
    if g:
        if g == 3:
            if grad_out is not None and (not isinstance(grad_out, (tuple, list)) or len(grad_out) != 2):
                raise TypeError("grad_out: expected a pair of arrays (grad_x, grad_y) for gradient='both'")
            gouts = tuple(grad_out) if grad_out is not None else (None, None)
        elif g == 1:
            gouts = (grad_out, None)
        else:
            gouts = (None, grad_out)
    _check_no_overlap(p, (("map_out", map_out), ("grad_out", gouts[0]), ("grad_out", gouts[1])))
    sums, m, gx, gy = _core.run(
        p.xe, p.ye, nci=p.nci, dtype=p.ftype, taps=p.taps, map_region=mreg, sum_region=p.sum_region(mreg),
        form="ssim", C1=p.C1, C2=p.C2, cov=p.cov, want_map=full, grad=g,
        wscal=1.0 / (p.n_valid * p.nchan), workers=p.workers,
        map_out=_direct_out(p, map_out, oshape, "map_out"),
        gx_out=_direct_out(p, gouts[0], p.spatial, "grad_out", 0),
        gy_out=_direct_out(p, gouts[1], p.spatial, "grad_out", 1), **p.sel,
    )
    value = p.values(sums)
    if not full and not g:
        return value
    return SSIMResult(
        value,
        _deliver(p, m, map_out, "map_out") if full else None,
        _deliver(p, gx, gouts[0], "grad_out", 0) if gx is not None else None,
        _deliver(p, gy, gouts[1], "grad_out", 1) if gy is not None else None,
    )


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
    g = wrt_code(wrt)
    p = plan(x, y, data_range=data_range, window=window, sigma=sigma, truncate=truncate,
             win_size=win_size, K1=K1, K2=K2, covariance=covariance, border=border,
             channel_axis=channel_axis, spatial_dims=spatial_dims, workers=workers)
    mreg = p.map_region(True)
    oshape = tuple(b - a for a, b in mreg)
    w = p.cotangent(cotangent, oshape, "SSIM", border)
    _, _, gx, gy = _core.run(
        p.xe, p.ye, nci=p.nci, dtype=p.ftype, taps=p.taps, map_region=mreg, sum_region=p.sum_region(mreg),
        form="ssim", C1=p.C1, C2=p.C2, cov=p.cov, want_map=False, grad=g, wmap=w,
        workers=p.workers, **p.sel,
    )
    return p.wrt_result(g, gx, gy)
