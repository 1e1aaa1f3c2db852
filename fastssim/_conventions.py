"""Convention presets: every peer library's SSIM and MS-SSIM by name (issue 17).

SSIM numbers from different libraries disagree because each fixes the window,
the covariance estimator, the border, the MS-SSIM downsampling of odd
extents, the negative-value policy, the channel pooling, a default data range
and sometimes an automatic downsampling of large images.  ``convention=NAME``
on :func:`fastssim.ssim`, :func:`fastssim.ms_ssim`, :func:`fastssim.losses.ssim`
and :func:`fastssim.losses.ms_ssim` sets all of them at once; keyword
arguments given explicitly still win over the preset.  ``conventions[NAME]``
shows the full option set of a preset.

Most conventions are options the engine already has.  Four are not, and are
added here by composing the public functions with exact linear operators
(their adjoints carry the gradient back, so gradients stay exact):

``auto_downsample`` (ssim)
    'matlab': Wang's ``ssim.m`` (2009): with f = max(1, round(min(H, W) / 256))
    (MATLAB's round, halves away from zero), both images are filtered with an
    f x f box, ``imfilter(.., 'symmetric', 'same')``, and every f-th sample is
    kept, ``img(1:f:end, 1:f:end)``.  'piq': ``piq.ssim``'s
    ``avg_pool2d(kernel_size=f)`` (f from Python's round, halves to even: a
    640 px side gives f = 3 in MATLAB, 2 in piq), the remainder dropped.
``pad`` (ssim)
    'mirror': both images are mirror-padded (torch's 'reflect': the edge
    sample is not repeated) by the window radius first, so the value is the
    mean of a same-size map over *every* pixel (kornia's ``padding='same'``,
    torchmetrics 1.9, the version tested).  The map returned with ``full=True`` is that
    same-size map.
``channel_pooling`` (ms_ssim)
    'after' (default): MS-SSIM per channel, then the mean over channels.
    'before' (torchmetrics): each scale's mean is taken over the channels too,
    before the negative policy and the power.
``last_scale_pad`` (ms_ssim)
    'mirror' (torchmetrics): the last scale's l*cs term is the mirror-padded
    same-size SSIM of that scale (the 'pad' above), not the mean over the
    pixels where the window fits.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

__all__ = ["Convention", "conventions", "with_convention"]

# msssim.m's weights (the same numbers as fastssim.WANG_WEIGHTS; not imported
# from _msssim, which imports this module through _ssim)
_WANG = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# torchmetrics builds its betas with torch.tensor(betas): float32 numbers
_WANG_F32 = tuple(float(np.float32(w)) for w in _WANG)

_GAUSS = {"window": "gaussian", "sigma": 1.5, "truncate": 3.5, "K1": 0.01, "K2": 0.03,
          "covariance": "population"}

_EXTRAS = {
    "ssim": {"auto_downsample": None, "pad": None},
    "ms_ssim": {"channel_pooling": "after", "last_scale_pad": None},
}
_CHOICES = {
    "auto_downsample": (None, "matlab", "piq"),
    "pad": (None, "mirror"),
    "channel_pooling": ("after", "before"),
    "last_scale_pad": (None, "mirror"),
}


def _frozen(d):
    return MappingProxyType(dict(d)) if d is not None else None


@dataclass(frozen=True)
class Convention:
    """One peer's conventions: the options it sets on ssim and on ms_ssim.

    ``ssim`` / ``ms_ssim`` are read-only mappings of keyword arguments (None:
    the peer has no such function); ``reference`` names the code reproduced,
    ``notes`` what the preset does not reproduce.
    """

    name: str
    reference: str
    ssim: object
    ms_ssim: object
    notes: str = ""
    aliases: tuple = field(default=())

    def options(self, kind: str):
        """The keyword arguments for ``kind`` ('ssim' or 'ms_ssim'), a new dict."""
        opts = self.ssim if kind == "ssim" else self.ms_ssim
        if opts is None:
            other = "ssim" if kind == "ms_ssim" else "ms_ssim"
            raise ValueError(
                f"convention {self.name!r}: {self.reference} has no "
                f"{'MS-SSIM' if kind == 'ms_ssim' else 'SSIM'}"
                + (f" ({self.notes})" if self.notes else "")
                + f"; it applies to {other} only"
            )
        return dict(opts)

    def __repr__(self):
        def fmt(d):
            return "None" if d is None else "{" + ", ".join(f"{k}={v!r}" for k, v in d.items()) + "}"
        return (f"Convention({self.name!r}, reference={self.reference!r},\n"
                f"  ssim={fmt(self.ssim)},\n  ms_ssim={fmt(self.ms_ssim)})")


def _c(name, reference, ssim, ms_ssim, notes=""):
    return Convention(name, reference, _frozen(ssim), _frozen(ms_ssim), notes)


_LIST = [
    _c("matlab", "Wang's MATLAB ssim.m (2009, automatic downsampling) and msssim.m (2003)",
       {**_GAUSS, "data_range": 255.0, "auto_downsample": "matlab"},
       {**_GAUSS, "data_range": 255.0, "weights": _WANG, "downsample": "symmetric",
        "negative": "none"},
       "L = 255 as in the MATLAB code; a negative per-scale mean gives NaN where MATLAB "
       "gives a complex number"),
    _c("matlab-ssim_index", "Wang's MATLAB ssim_index.m (2003, no automatic downsampling)",
       {**_GAUSS, "data_range": 255.0},
       {**_GAUSS, "data_range": 255.0, "weights": _WANG, "downsample": "symmetric",
        "negative": "none"}),
    _c("skimage", "scikit-image structural_similarity (defaults: 7x7 box, sample covariance)",
       {"window": "uniform", "win_size": 7, "K1": 0.01, "K2": 0.03, "covariance": "sample"},
       None, "scikit-image has no MS-SSIM"),
    _c("skimage-gaussian",
       "scikit-image structural_similarity(gaussian_weights=True) (sigma 1.5, truncate 3.5, "
       "sample covariance)",
       {**_GAUSS, "covariance": "sample"}, None, "scikit-image has no MS-SSIM"),
    _c("cucim", "cuCIM cucim.skimage.metrics.structural_similarity (scikit-image's defaults)",
       {"window": "uniform", "win_size": 7, "K1": 0.01, "K2": 0.03, "covariance": "sample"},
       None, "cuCIM has no MS-SSIM"),
    _c("cucim-gaussian", "cuCIM structural_similarity(gaussian_weights=True)",
       {**_GAUSS, "covariance": "sample"}, None, "cuCIM has no MS-SSIM"),
    _c("tensorflow", "TensorFlow tf.image.ssim / tf.image.ssim_multiscale",
       dict(_GAUSS),
       {**_GAUSS, "weights": _WANG, "downsample": "symmetric", "negative": "clamp"},
       "max_val has no default in TensorFlow: pass data_range"),
    _c("pytorch_msssim", "pytorch_msssim ssim / ms_ssim (data_range=255 default)",
       {**_GAUSS, "data_range": 255.0},
       {**_GAUSS, "data_range": 255.0, "weights": _WANG, "downsample": "zero",
        "negative": "clamp"}),
    _c("torchmetrics",
       "torchmetrics structural_similarity_index_measure / "
       "multiscale_structural_similarity_index_measure (1.9, the version tested)",
       {**_GAUSS, "pad": "mirror"},
       {**_GAUSS, "weights": _WANG_F32, "downsample": "drop", "negative": "clamp",
        "channel_pooling": "before", "last_scale_pad": "mirror"},
       "torchmetrics' default data_range=None is max(range(preds), range(target)) of the "
       "data (recomputed at every MS-SSIM scale): pass data_range; normalize='simple' is "
       "negative='simple'"),
    _c("piq", "piq.ssim (downsample=True) / piq.multi_scale_ssim (data_range=1.0 default)",
       {**_GAUSS, "data_range": 1.0, "auto_downsample": "piq"},
       {**_GAUSS, "data_range": 1.0, "weights": _WANG, "downsample": "replicate",
        "negative": "clamp"}),
    _c("kornia", "kornia.metrics.ssim(window_size=11, padding='same') averaged "
       "(max_val=1.0 default)",
       {**_GAUSS, "data_range": 1.0, "pad": "mirror"}, None,
       "kornia's MS_SSIMLoss is Zhao et al.'s per-pixel loss: fastssim.losses.mix; kornia "
       "adds eps=1e-12 to the denominator, which no option here reproduces"),
]

#: Every preset by name (read-only): ``fastssim.conventions['piq'].ssim``.
conventions = MappingProxyType({c.name: c for c in _LIST})


def get(name):
    """The :class:`Convention` called ``name`` (a clear error otherwise)."""
    if isinstance(name, Convention):
        return name
    if not isinstance(name, str) or name not in conventions:
        raise ValueError(f"convention: expected None or one of {tuple(conventions)}, got {name!r}")
    return conventions[name]


# --------------------------------------------------------------------------- linear operators


@dataclass(frozen=True)
class _Axis:
    """A linear map along one axis: out[o] = sum_k w[o, k] in[idx[o, k]]."""

    n_in: int
    idx: np.ndarray  # (n_out, K) int
    w: np.ndarray    # (n_out, K) float64

    @property
    def n_out(self):
        return self.idx.shape[0]

    def apply(self, a, axis):
        a = np.moveaxis(a, axis, -1)
        out = np.einsum("...ok,ok->...o", a[..., self.idx], self.w)
        return np.moveaxis(out, -1, axis)

    def adjoint(self, g, axis):
        g = np.moveaxis(g, axis, -1)
        out = np.zeros(g.shape[:-1] + (self.n_in,), dtype=np.float64)
        for k in range(self.idx.shape[1]):
            np.add.at(out, (Ellipsis, self.idx[:, k]), g * self.w[:, k])
        return np.moveaxis(out, -1, axis)


@functools.lru_cache(maxsize=128)
def _mirror(n, r):
    """Mirror padding by r (numpy 'reflect', torch 'reflect'); needs n > r."""
    i = np.arange(-r, n + r)
    i = np.abs(i)
    i = np.where(i >= n, 2 * (n - 1) - i, i)
    return _Axis(n, i[:, None].astype(np.intp), np.ones((n + 2 * r, 1)))


@functools.lru_cache(maxsize=128)
def _matlab_box(n, f):
    """imfilter(ones(f)/f^2, 'symmetric', 'same') then every f-th sample, per axis."""
    o = np.arange(0, n, f)
    c0 = (f + 1) // 2 - 1  # MATLAB's kernel centre floor((f + 1) / 2), 0-based
    i = o[:, None] + np.arange(f)[None, :] - c0
    i = np.where(i < 0, -i - 1, i)            # 'symmetric': the edge sample repeated
    i = np.where(i >= n, 2 * n - 1 - i, i)
    return _Axis(n, i.astype(np.intp), np.full(i.shape, 1.0 / f))


@functools.lru_cache(maxsize=128)
def _pool(n, f):
    """avg_pool of kernel and stride f without padding (the remainder dropped)."""
    o = np.arange(n // f)
    i = f * o[:, None] + np.arange(f)[None, :]
    return _Axis(n, i.astype(np.intp), np.full(i.shape, 1.0 / f))


@functools.lru_cache(maxsize=128)
def _down(n, convention, P):
    """One axis of the MS-SSIM 2x downsampling (fastssim._pyramid's operator)."""
    from ._pyramid import down_axis

    d = down_axis(n, convention, P)
    return _Axis(n, np.stack([d.i0, d.i1], 1).astype(np.intp), np.stack([d.w0, d.w1], 1))


def _matlab_round(v):
    return math.floor(v + 0.5)  # MATLAB's round() for v >= 0: halves away from zero


def _factor(kind, spatial):
    v = min(spatial) / 256
    return max(1, _matlab_round(v) if kind == "matlab" else round(v))


class _Chain:
    """A sequence of per-axis operators applied to the spatial axes of an array."""

    def __init__(self):
        self.steps = []  # lists of _Axis, one per spatial axis

    def add(self, ops):
        self.steps.append(list(ops))

    def forward(self, a, axes, ftype):
        a = np.asarray(a, dtype=np.float64) if a.dtype != np.float64 else a
        for ops in self.steps:
            for ax, op in zip(axes, ops):
                a = op.apply(a, ax)
        return a.astype(ftype, copy=False)

    def backward(self, g, axes):
        if g is None:
            return None
        dt = g.dtype
        g = np.asarray(g, dtype=np.float64)
        for ops in reversed(self.steps):
            for ax, op in zip(axes, ops):
                g = op.adjoint(g, ax)
        return g.astype(dt, copy=False)


# --------------------------------------------------------------------------- the decorator


def _defaults(fn):
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.default is not inspect.Parameter.empty}


def _check_extra(name, value):
    choices = _CHOICES[name]
    if not (value is None or isinstance(value, str)) or value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def _signature(fn, extras, kind):
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    new = [inspect.Parameter("convention", inspect.Parameter.KEYWORD_ONLY, default=None)]
    new += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in extras.items()]
    pos = len(params)
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        pos -= 1
    return sig.replace(parameters=params[:pos] + new + params[pos:])


def with_convention(kind):
    """Decorator of a public function ``f(x, y, **options)``: adds ``convention=``.

    ``kind``: 'ssim' or 'ms_ssim' (the function computes it and takes the
    extra options of this module), or 'loss_ssim' / 'loss_ms_ssim' (a loss
    that forwards its keyword arguments to the decorated ssim / ms_ssim: the
    preset's options are merged here and passed on).  Explicit keyword
    arguments win over the preset's.
    """
    base = kind.replace("loss_", "")
    extras = _EXTRAS[base] if not kind.startswith("loss_") else {}

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, convention=None, **kwargs):
            # the images pass through as given (positional or by their names,
            # x/y or prediction/target), so the wrapped function's own
            # argument errors and dispatch see exactly the caller's call
            if convention is not None:
                kwargs = {**get(convention).options(base), **kwargs}
            if not extras:
                return fn(*args, **kwargs)
            ex = {k: _check_extra(k, kwargs.pop(k, d)) for k, d in extras.items()}
            if all(ex[k] == d for k, d in extras.items()):
                return fn(*args, **kwargs)
            if len(args) != 2:
                raise TypeError(f"{fn.__name__}: pass the two images positionally with "
                                f"{', '.join(k for k in extras if ex[k] != extras[k])}; "
                                "options are keyword-only")
            x, y = args
            if base == "ssim":
                return _ssim_composed(fn, x, y, kwargs, **ex)
            return _ms_ssim_composed(fn, x, y, kwargs, **ex)

        wrapper.__signature__ = _signature(fn, extras, kind)
        return wrapper
    return deco


# --------------------------------------------------------------------------- composed paths


def _layout(x, y, kw, fn):
    """Validated arrays, the channel axis, the spatial axes of each input,
    the compute type and the data range to pass on (integer input: its
    dtype's, before the resampling makes it float)."""
    from ._validation import check_layout, dtype_range, float_type

    d = _defaults(fn)
    cax_in = kw.get("channel_axis", d.get("channel_axis"))
    sd = kw.get("spatial_dims", d.get("spatial_dims", 2))
    x, y, cax = check_layout(x, y, cax_in, sd, broadcast=True)
    sd = int(sd)
    nd = max(x.ndim, y.ndim)

    def axes(a):
        own = None if cax is None else cax - (nd - a.ndim)
        return [i for i in range(a.ndim) if i != own][-sd:]

    dr = kw.get("data_range", d.get("data_range"))
    if dr is None and x.dtype.kind != "f" and y.dtype.kind != "f":
        lo, hi = dtype_range[x.dtype.type]
        kw["data_range"] = float(hi) - float(lo)
    ftype = float_type(np.result_type(x.dtype, y.dtype)) if x.dtype != y.dtype else float_type(x.dtype)
    return x, y, cax, axes(x), axes(y), ftype


def _radius(kw, fn):
    from ._bands import gaussian_size

    d = _defaults(fn)
    window = kw.get("window", d.get("window", "gaussian"))
    if window == "uniform":
        ws = kw.get("win_size", d.get("win_size"))
        return ((7 if ws is None else int(ws)) - 1) // 2
    sigma = float(kw.get("sigma", d.get("sigma", 1.5)))
    truncate = float(kw.get("truncate", d.get("truncate", 3.5)))
    return (gaussian_size(sigma, truncate) - 1) // 2


def _no_buffers(kw, what):
    for k in ("map_out", "grad_out"):
        if kw.get(k) is not None:
            raise ValueError(f"{k}: output buffers cannot be used with {what} (the engine runs on "
                             "resampled copies of the images); leave it out")


def _ssim_composed(fn, x, y, kw, auto_downsample, pad):
    """ssim of resampled images (auto_downsample, then pad); gradients carried
    back through the adjoints."""
    what = " and ".join(f"{k}={v!r}" for k, v in (("auto_downsample", auto_downsample),
                                                  ("pad", pad)) if v is not None)
    _no_buffers(kw, what)
    x, y, cax, ax_x, ax_y, ftype = _layout(x, y, kw, fn)
    spatial = [x.shape[a] for a in ax_x]
    chain = _Chain()
    if auto_downsample is not None:
        f = _factor(auto_downsample, spatial)
        if f > 1:
            op = _matlab_box if auto_downsample == "matlab" else _pool
            chain.add(op(n, f) for n in spatial)
            spatial = [chain.steps[-1][i].n_out for i in range(len(spatial))]
    if pad is not None:
        r = _radius(kw, fn)
        if min(spatial) <= r:
            raise ValueError(f"pad='mirror': a side of {min(spatial)} px cannot be mirror-padded "
                             f"by the window radius {r} (it needs more than {r} px)")
        chain.add(_mirror(n, r) for n in spatial)
        kw["border"] = "valid"
    xd = chain.forward(x, ax_x, ftype)
    yd = chain.forward(y, ax_y, ftype)
    res = fn(xd, yd, **kw)
    if not isinstance(res, tuple):
        return res
    return res._replace(grad_x=chain.backward(res.grad_x, ax_x),
                        grad_y=chain.backward(res.grad_y, ax_y))


def _combine(m, w, negative):
    """prod_j f(m_j)^w_j over the last axis and its derivative d/dm_j (products
    of the other factors, so a factor at 0 keeps the others' derivative)."""
    m = np.asarray(m, dtype=np.float64)
    if negative == "clamp":
        f, df = np.maximum(m, 0.0), (m > 0).astype(np.float64)
    elif negative == "simple":
        f, df = (m + 1.0) / 2.0, np.full_like(m, 0.5)
    else:
        f, df = m, np.ones_like(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = f ** w
        dp = np.where(w > 0, w * df * f ** (w - 1.0), 0.0)
    M = m.shape[-1]
    value = np.prod(p, axis=-1)
    coef = np.empty_like(m)
    for j in range(M):
        others = np.prod(np.delete(p, j, axis=-1), axis=-1)
        coef[..., j] = dp[..., j] * others
    return value, coef


def _expand(coef, a, cax, nd, axes):
    """Per-item coefficients (the batch shape) broadcast against input ``a``."""
    own = None if cax is None else cax - (nd - a.ndim)
    shape = [1 if (i == own or i in axes) else a.shape[i] for i in range(a.ndim)]
    return coef.reshape(shape)


def _ms_ssim_composed(fn, x, y, kw, channel_pooling, last_scale_pad):
    """MS-SSIM with the channels pooled before the power and / or a
    mirror-padded last scale (torchmetrics), from ms_ssim's per-scale means
    and ssim on the last scale of the pyramid; the gradient is the sum over
    the scales of d value / d m_j times the gradient of m_j (ms_ssim with
    one-hot weights), and of the last scale through the pyramid's adjoint."""
    from ._ssim import ssim as _ssim  # the undecorated chain below this module

    what = f"channel_pooling={channel_pooling!r}, last_scale_pad={last_scale_pad!r}"
    d = _defaults(fn)
    if kw.get("fit_scales", False):
        raise ValueError(f"fit_scales: not supported with {what}; pass weights for the scales "
                         "that fit")
    x, y, cax, ax_x, ax_y, ftype = _layout(x, y, kw, fn)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape with {what} (got {x.shape} and "
                         f"{y.shape}); broadcast them first")
    from ._plan import grad_code as _grad_code

    g = _grad_code(kw.get("gradient"))
    return_scales = bool(kw.get("return_scales", False))
    negative = kw.get("negative", d["negative"])
    nd = x.ndim
    nchan = 1 if cax is None else x.shape[cax]
    if cax is not None and channel_pooling == "after" and nchan > 1:
        # per channel: the pooled form of one channel is the plain one
        parts = [_ms_ssim_composed(fn, np.take(x, c, cax), np.take(y, c, cax),
                                   {**kw, "channel_axis": None, "gradient": kw.get("gradient"),
                                    "return_scales": True}, "before", last_scale_pad)
                 for c in range(nchan)]
        value = np.mean([p.value for p in parts], axis=0)
        value = value[()] if np.ndim(value) == 0 else value
        if not g and not return_scales:
            return value
        grads = [None, None]
        for side, name in ((0, "grad_x"), (1, "grad_y")):
            if g & (side + 1):
                grads[side] = np.stack([getattr(p, name) for p in parts], axis=cax) / nchan
        scales = np.stack([p.scales for p in parts], axis=-2)
        return type(parts[0])(value, grads[0], grads[1], scales)

    base = {k: v for k, v in kw.items() if k not in ("gradient", "return_scales")}
    r0 = fn(x, y, **{**base, "negative": "none", "gradient": None, "return_scales": True})
    m = np.asarray(r0.scales, dtype=np.float64)
    if cax is not None:
        m = m.mean(axis=-2)  # (*batch, M): the channels pooled
    w = np.asarray(base.get("weights", d["weights"]), dtype=np.float64)
    M = m.shape[-1]
    sp = [x.shape[a] for a in ax_x]
    last = None
    if last_scale_pad is not None:
        from ._pyramid import pyramid_shapes

        down = base.get("downsample", d["downsample"])
        chain = _Chain()
        for s in pyramid_shapes(tuple(sp), down, M)[:-1]:
            P = max(n % 2 for n in s) if down == "replicate" else 0
            chain.add(_down(n, down, P) for n in s)
        r = _radius(base, fn)
        shape_M = pyramid_shapes(tuple(sp), down, M)[-1]
        if min(shape_M) <= r:
            raise ValueError(f"last_scale_pad='mirror': the last scale ({shape_M}) cannot be "
                             f"mirror-padded by the window radius {r}")
        chain.add(_mirror(n, r) for n in shape_M)
        skw = {k: base[k] for k in ("data_range", "window", "sigma", "truncate", "win_size",
                                   "K1", "K2", "covariance", "channel_axis", "spatial_dims",
                                   "workers") if k in base}
        xs, ys = chain.forward(x, ax_x, ftype), chain.forward(y, ax_y, ftype)
        last = _ssim(xs, ys, border="valid", gradient={0: None, 1: "x", 2: "y", 3: "both"}[g],
                     **skw)
        m[..., M - 1] = last if not g else last.value
    value, coef = _combine(m, w, negative)
    value = value[()] if value.ndim == 0 else value
    if not g and not return_scales:
        return value
    grads = [None, None]
    if g:
        for side, (a, axes) in enumerate(((x, ax_x), (y, ax_y))):
            if not g & (side + 1):
                continue
            total = np.zeros(a.shape, dtype=np.float64)
            for j in range(M):
                cj = coef[..., j]
                if not np.any(cj):
                    continue
                if j == M - 1 and last is not None:
                    gj = chain.backward(last.grad_x if side == 0 else last.grad_y, axes)
                else:
                    onehot = tuple(1.0 if k == j else 0.0 for k in range(M))
                    rj = fn(x, y, **{**base, "weights": onehot, "negative": "none",
                                     "gradient": "x" if side == 0 else "y"})
                    gj = rj.grad_x if side == 0 else rj.grad_y
                total += _expand(cj, a, cax, nd, axes) * gj
            grads[side] = total.astype(ftype, copy=False)
    return type(r0)(value, grads[0], grads[1], m)
