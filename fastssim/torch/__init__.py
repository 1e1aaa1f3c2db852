"""PyTorch adapter: fastssim's values and exact gradients as differentiable torch ops.

``import fastssim.torch`` (which imports PyTorch; ``import fastssim`` never
does) gives

* functional: :func:`ssim`, :func:`ms_ssim`, :func:`pixelwise_ms_ssim` and the
  losses :func:`l1_loss`, :func:`l2_loss`, :func:`ssim_loss`,
  :func:`ms_ssim_loss`, :func:`pixelwise_ms_ssim_loss`, :func:`mix_loss`, on
  ``(N, C, H, W)`` images or ``(N, C, D, H, W)`` volumes;
* modules holding the options: :class:`SSIM`, :class:`MSSSIM`,
  :class:`PixelwiseMSSSIM`, :class:`SSIMLoss`, :class:`MSSSIMLoss`,
  :class:`PixelwiseMSSSIMLoss`, :class:`MixLoss`, :class:`L1Loss`,
  :class:`L2Loss`;
* :mod:`fastssim.torch.compat`, a pytorch_msssim-compatible layer.

How it works
------------
Each call is one ``torch.autograd.Function`` (eagerly) or one custom operator,
``fastssim::similarity`` (``torch.library.custom_op`` with a fake
implementation and ``register_autograd``, used while ``torch.compile`` traces,
so that a compiled step has no graph break; its dispatch costs more per call
than the rest of the adapter, hence the plain Function in eager mode).  Both
run the same forward: the NumPy function (:func:`fastssim.ssim`, ...) called
once for the value and, when an input requires a gradient and grad mode is
on, the exact gradient of that value with respect to that input.  The channel
mean, the ``reduction`` and the ``1 -`` of the losses are part of that call
(``channel_axis=1``; for ``'mean'`` the engine sees the N*C planes as the
channels of one item), so the engine's gradient is already the gradient of the
returned value.  The gradient is saved; the backward multiplies it by the
incoming gradient -- not at all when that is exactly 1 (``loss.backward()`` on
the returned loss), in place when the graph is freed after that backward (no
``retain_graph``), so that the saved gradient itself becomes the input's
``.grad`` (no copy, no pass over it); a scaled copy otherwise.

``full=True`` / ``return_scales=True`` add the map / the per-scale means, which
are not differentiable (the engine differentiates the value only; a backward
through them raises ``RuntimeError``) and always run eagerly (a graph break
under ``torch.compile``).

Memory and devices: a contiguous CPU float32/float64 tensor is handed to the
engine as a NumPy view (no copy), and the gradient comes back as a tensor
sharing the NumPy array's memory.  float16 / bfloat16 inputs are computed in
float32 (their gradient returns in the input's dtype, through autograd's
cast).

CUDA tensors (with CuPy installed) go to fastssim's GPU backend through
DLPack, without copies and without a host round trip: the engine's kernels run
on PyTorch's current stream of the tensors' device, and the value and the
gradients come back as CUDA tensors sharing CuPy's memory.  Without CuPy a
CUDA tensor raises ``TypeError`` (nothing is moved between devices
silently).  The GPU backend's results have not yet been checked on a GPU by
this project's tests (they are compile-checked and run in a CPU emulator of
the kernels; tests/test_torch.py's CUDA tests run where a GPU exists).

Second derivatives are not available: ``create_graph=True`` works for the
first derivative, but differentiating that gradient again raises
``RuntimeError``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import warnings

import numpy as np
import torch

import fastssim as _fs
from fastssim import losses as _losses

__all__ = [
    "ssim", "ms_ssim", "pixelwise_ms_ssim",
    "l1_loss", "l2_loss", "ssim_loss", "ms_ssim_loss", "pixelwise_ms_ssim_loss", "mix_loss",
    "SSIM", "MSSSIM", "PixelwiseMSSSIM",
    "L1Loss", "L2Loss", "SSIMLoss", "MSSSIMLoss", "PixelwiseMSSSIMLoss", "MixLoss",
    "similarity_per_plane",
]

_REDUCTIONS = ("mean", "sum", "none")
_HALF = (torch.float16, torch.bfloat16)
_DOUBLE_BACKWARD = (
    b"fastssim.torch: second derivatives are not supported (the backward scales a gradient "
    b"computed by fastssim's engine; it has no derivative of its own)"
)


# ----------------------------------------------------------------------------------------
# The engine call, per kind.  Each returns (values, grad_x or None, grad_y or None,
# aux or None) for NumPy arrays of shape (N, C, *spatial) (or (1, N*C, *spatial)):
# aux is the map (``full``) or the per-scale means (``return_scales``) when asked.


def _wrt(need):
    return {0: None, 1: "x", 2: "y", 3: "both"}[need]


def _run_ssim(x, y, need, o):
    r = _fs.ssim(x, y, gradient=_wrt(need), **o)
    return (r, None, None, None) if not isinstance(r, tuple) else (r.value, r.grad_x,
                                                                  r.grad_y, r.map)


def _run_ms_ssim(x, y, need, o):
    r = _fs.ms_ssim(x, y, gradient=_wrt(need), **o)
    return (r, None, None, None) if not isinstance(r, tuple) else (r.value, r.grad_x,
                                                                  r.grad_y, r.scales)


def _run_pixelwise(x, y, need, o):
    r = _fs.pixelwise_ms_ssim(x, y, gradient=_wrt(need), **o)
    return (r, None, None, None) if not isinstance(r, tuple) else (r.value, r.grad_x,
                                                                  r.grad_y, r.map)


def _run_mix(x, y, need, o):
    """The Mix loss (x the prediction, y the target).  fastssim.losses.mix gives
    d/dx; d/dy = -alpha dP/dy - (1 - alpha) d(l1 term)/dx, and the l1 term's
    d/dx is mix's d/dx + alpha dP/dx, so the target's gradient costs one more
    engine call (P's gradient with respect to both)."""
    r = _losses.mix(x, y, gradient=bool(need), **o)
    if not isinstance(r, tuple):
        return r, None, None, None
    if not need & 2:
        return r.value, r.grad, None, r.map
    alpha = o.get("alpha", 0.84)
    po = {k: v for k, v in o.items() if k not in ("alpha", "full")}
    pw = _fs.pixelwise_ms_ssim(x, y, gradient="both", **po)
    a = r.grad.dtype.type(alpha)
    gy = -a * pw.grad_y - (r.grad + a * pw.grad_x)
    return r.value, (r.grad if need & 1 else None), gy, r.map


_KINDS = {"ssim": _run_ssim, "ms_ssim": _run_ms_ssim, "pixelwise_ms_ssim": _run_pixelwise,
          "mix": _run_mix}

# What the value of one call is, and so how the engine is called:
#   'plane': (N, C), each (n, c) plane's value (no channel_axis);
#   'item':  (N,), each item's mean over its channels (channel_axis=1: the engine's
#            gradient of item n's value already holds the 1/C);
#   'sum':   (), the sum of the items' values (same call: item n's gradient is the
#            gradient of the sum with respect to item n);
#   'mean':  (), the mean over items of the channel means = the mean over the N*C
#            planes: the engine sees (1, N*C, ...) with channel_axis=1, so its gradient
#            is that of the mean itself (the 1/(N C) included, no scaling pass).
_MODES = ("plane", "item", "sum", "mean")


def _to_numpy(t):
    """A NumPy view of a CPU tensor: no copy when it is contiguous."""
    return t.detach().contiguous().numpy()


def _cupy_stream(cupy, device):
    """PyTorch's current stream of ``device`` as a CuPy stream (CuPy 14's
    Stream.from_external, through the CUDA stream protocol; ExternalStream before)."""
    ts = torch.cuda.current_stream(device)
    if hasattr(cupy.cuda.Stream, "from_external") and hasattr(ts, "__cuda_stream__"):
        return cupy.cuda.Stream.from_external(ts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cupy.cuda.ExternalStream(ts.cuda_stream, device.index)


@contextlib.contextmanager
def _on_cuda(device):
    """CuPy on ``device`` and on PyTorch's current stream there: the inputs' DLPack
    import, the kernels and the outputs' export are ordered with PyTorch's work on
    that stream, with no synchronisation of the host."""
    import cupy

    with cupy.cuda.Device(device.index), _cupy_stream(cupy, device):
        yield cupy


def _compute(x, y, kind, o, need, mode, negate, aux):
    """Forward: tensors in, (value tensor, grad_x, grad_y, aux) out (each None when
    not asked), through one engine call (two for Mix's target gradient).  CUDA
    tensors run on the GPU backend (see :func:`_on_cuda`)."""
    if x.device.type == "cuda":
        with _on_cuda(x.device) as cupy:
            return _compute_in(x, y, kind, o, need, mode, negate, aux, cupy,
                               lambda t: cupy.from_dlpack(t.detach().contiguous()),
                               torch.from_dlpack)
    return _compute_in(x, y, kind, o, need, mode, negate, aux, np, _to_numpy,
                       torch.from_numpy)


def _compute_in(x, y, kind, o, need, mode, negate, aux, xp, to_array, to_tensor):
    """_compute with the array module ``xp`` (NumPy or CuPy) and its conversions."""
    shape = x.shape
    xn, yn = to_array(x), to_array(y)
    if mode == "mean":
        flat = (1, shape[0] * shape[1]) + tuple(shape[2:])
        xn, yn = xn.reshape(flat), yn.reshape(flat)
    o = dict(o, spatial_dims=len(shape) - 2, channel_axis=None if mode == "plane" else 1)
    if aux == "map":
        o["full"] = True
    elif aux == "scales":
        o["return_scales"] = True
    v, gx, gy, a = _KINDS[kind](xn, yn, need, o)
    v = xp.asarray(v, dtype=xp.float64)
    if mode == "sum":
        v = v.sum()
    elif mode == "mean":
        v = v.reshape(())
    if negate:  # the loss 1 - value, in float64
        v = 1.0 - v
    np_dtype = np.float64 if x.dtype == torch.float64 else np.float32
    value = to_tensor(xp.asarray(v, dtype=np_dtype))
    if not aux:  # (ms_ssim fills its scales whenever it returns a gradient)
        a = None
    else:  # (N, C, *map) or (N, C, scales), in the value's dtype
        a = to_tensor(xp.asarray(a, dtype=np_dtype).reshape(tuple(shape[:2]) + a.shape[2:]))
    return (value,
            to_tensor(gx.reshape(shape)) if gx is not None else None,
            to_tensor(gy.reshape(shape)) if gy is not None else None,
            a)


def _value_shape(shape, mode):
    return {"plane": tuple(shape[:2]), "item": tuple(shape[:1])}.get(mode, ())


_keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)


def _graph_released():
    """True in an eager backward that frees the graph after it (no retain_graph,
    no create_graph): the saved gradients are then used once and can be scaled in place."""
    if _keep_graph is None or torch.is_grad_enabled():
        return False
    try:
        return not _keep_graph()
    except RuntimeError:  # not inside an autograd graph task
        return False


def _scaled(g, f, in_place):
    """The saved gradient g times the incoming per-value factor f (broadcast over each
    value's planes).  A factor of exactly 1 (``loss.backward()`` on the value itself)
    costs nothing when the graph is freed after this backward: g itself is returned,
    and becomes the input's ``.grad``.  Otherwise in place when the graph is freed, a
    scaled copy when it is kept (retain_graph, gradcheck: g must survive).  f is a
    NumPy array in eager mode (tiny: cheaper to test and scale by than a tensor), a
    tensor when torch.compile traces (FakeTensors: no data to test, never in place)."""
    if isinstance(f, np.ndarray):
        if (f == 1).all():
            return g if in_place else g.clone()
        if f.size == 1:
            s = f.item()  # exact: f holds the value's float32/float64 numbers
            return g.mul_(s) if in_place else g * s
        f = torch.from_numpy(f.reshape(f.shape + (1,) * (g.dim() - f.ndim))).to(g.dtype)
        return g.mul_(f) if in_place else g * f
    # a tensor: traced by torch.compile, or on a GPU (no host synchronisation to test f)
    f = f.to(g.dtype).reshape(f.shape + (1,) * (g.dim() - f.dim()))
    return g.mul_(f) if in_place else g * f


def _gradients(ctx, gv):
    """The gradients with respect to x and y of the op's value, given its incoming gv."""
    gx, gy = ctx.saved_tensors
    if gv is None:  # the values were not used (possible without materialised gradients)
        return None, None
    g = gx if gx is not None else gy
    if (type(gv) is torch.Tensor and type(g) is torch.Tensor  # eager: not FakeTensors
            and gv.device.type == "cpu"):
        f = gv.detach().numpy()
        f = np.negative(f, out=np.empty_like(f)) if ctx.negate else f  # stays an array
    else:
        f = -gv if ctx.negate else gv
    double = torch.is_grad_enabled() and not torch.compiler.is_compiling()
    # Scaling the saved gradient in place saves a pass over fresh memory (and an input's
    # worth of peak memory); only when this backward is the graph's last use of it: with
    # retain_graph (gradcheck, several backward passes) a scaled copy is returned instead.
    in_place = ctx.own_grads and _graph_released()
    if torch.is_grad_enabled():  # create_graph=True, or traced by torch.compile
        with torch.no_grad():
            outs = [_scaled(gx, f, in_place) if ctx.need & 1 else None,
                    _scaled(gy, f, in_place) if ctx.need & 2 else None]
    else:  # grad mode is already off (a plain backward): no context manager to enter
        outs = [_scaled(gx, f, in_place) if ctx.need & 1 else None,
                _scaled(gy, f, in_place) if ctx.need & 2 else None]
    if double:  # create_graph=True: a result that raises if it is differentiated again
        live = [o for o in outs if o is not None]
        err = torch._C._functions.DelayedError(_DOUBLE_BACKWARD, len(live))
        fake = []
        for o in live:
            o = o.detach()
            o.requires_grad_(True)
            fake.append(o)
        res = err(*fake)
        res = list(res) if isinstance(res, tuple) else [res]
        outs = [res.pop(0) if o is not None else None for o in outs]
    return outs[0], outs[1]


def _save(ctx, gx, gy, need, negate, own_grads):
    # own_grads: the saved gradients are private to the graph (the eager Function's), so
    # the backward may scale them in place; the custom op returns them as outputs, which
    # must not change behind the caller's back
    ctx.need, ctx.negate, ctx.own_grads = need, negate, own_grads
    ctx.save_for_backward(gx, gy)
    # no zero-filled gradients for unused outputs (each one the size of an input)
    ctx.set_materialize_grads(False)


_AUX_NOT_DIFFERENTIABLE = (
    "fastssim.torch: the map and the per-scale means (full=True, return_scales=True) are not "
    "differentiable: fastssim's engine gives the exact gradient of the value only (a gradient "
    "of the map would need a per-pixel weighting the engine does not take); put the value "
    "(reduction='none' for one per item) in the loss, and use the map / scales detached")


class _Similarity(torch.autograd.Function):
    """The eager path: a plain autograd.Function over :func:`_compute` (PyTorch's custom-op
    dispatch below costs more per call than the rest of the adapter; it is used when
    torch.compile traces, where it is needed)."""

    @staticmethod
    def forward(ctx, x, y, kind, o, need, mode, negate, aux):
        v, gx, gy, a = _compute(x, y, kind, o, need, mode, negate, aux)
        _save(ctx, gx, gy, need, negate, True)
        return v if a is None else (v, a)

    @staticmethod
    def backward(ctx, gv, ga=None):
        if ga is not None:
            raise RuntimeError(_AUX_NOT_DIFFERENTIABLE)
        gx, gy = _gradients(ctx, gv)
        return gx, gy, None, None, None, None, None, None


@torch.library.custom_op("fastssim::similarity", mutates_args=())
def _similarity(x: torch.Tensor, y: torch.Tensor, kind: str, options: str, need: int,
                mode: str, negate: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The value (``mode``: see _MODES; ``1 - value`` with ``negate``; float64 for float64
    input, else float32) and, as ``need`` asks (bit 1: x, bit 2: y), its gradient with
    respect to x / y (else empty).  The torch.compile path; eager calls use _Similarity."""
    v, gx, gy, _ = _compute(x, y, kind, _parse_options(options), need, mode, negate, "")
    empty = x.new_empty((0,))
    return (v,
            gx if gx is not None else empty,
            gy if gy is not None else empty.clone())


@_similarity.register_fake
def _(x, y, kind, options, need, mode, negate):
    v = x.new_empty(_value_shape(x.shape, mode),
                    dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    gx = torch.empty_like(x, memory_format=torch.contiguous_format) if need & 1 else x.new_empty((0,))
    gy = torch.empty_like(y, memory_format=torch.contiguous_format) if need & 2 else y.new_empty((0,))
    return v, gx, gy


def _setup_context(ctx, inputs, output):
    _, _, _, _, need, _, negate = inputs
    _, gx, gy = output
    ctx.mark_non_differentiable(gx, gy)
    _save(ctx, gx, gy, need, negate, False)


def _op_backward(ctx, gv, _gx, _gy):
    gx, gy = _gradients(ctx, gv)
    return gx, gy, None, None, None, None, None


_similarity.register_autograd(_op_backward, setup_context=_setup_context)


@torch.compiler.disable
def _eager_with_aux(x, y, kind, o, need, mode, negate, aux):
    """full / return_scales: always eager (a graph break under torch.compile: the custom
    op has no aux output, whose shape its fake implementation would have to predict)."""
    return _Similarity.apply(x, y, kind, o, need, mode, negate, aux)


# ----------------------------------------------------------------------------------------
# Validation and the shared front end


_FLOATS = frozenset((torch.float16, torch.bfloat16, torch.float32, torch.float64))


def _check_pair(x, y, names=("x", "y")):
    if (type(x) is torch.Tensor and type(y) is torch.Tensor and x.device.type == "cpu"
            and y.device.type == "cpu" and x.dtype == y.dtype and x.dtype in _FLOATS
            and x.shape == y.shape and x.dim() in (4, 5)):
        return  # the usual case, checked in a few attribute reads; the errors below
    for t, name in zip((x, y), names):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    a, b = names
    if x.device != y.device:
        raise TypeError(f"{a}, {b}: expected tensors on one device, got {x.device} and {y.device}")
    for t, name in zip((x, y), names):
        if t.device.type == "cuda":
            if importlib.util.find_spec("cupy") is None:
                raise TypeError(
                    f"{name}: CUDA tensors need CuPy, fastssim's GPU backend (pip install "
                    "cupy-cuda12x), which is not installed; or compute on the CPU "
                    "(tensor.cpu())")
        elif t.device.type != "cpu":
            raise TypeError(f"{name}: expected a CPU tensor, got a tensor on {t.device}")
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if x.dtype != y.dtype:
        raise TypeError(f"{a}, {b}: expected one dtype, got {x.dtype} and {y.dtype}")
    if x.shape != y.shape:
        raise ValueError(f"{a}, {b}: expected the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if x.dim() not in (4, 5):
        raise ValueError(f"{a}: expected an (N, C, H, W) or (N, C, D, H, W) tensor, got "
                         f"shape {tuple(x.shape)}")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(per_item, reduction):
    if reduction == "mean":
        return per_item.mean()
    if reduction == "sum":
        return per_item.sum()
    return per_item


_PLAIN = frozenset((float, int, bool, str, type(None)))


def _options(**kw):
    """The keyword arguments of the NumPy call, checked: numbers, strings, None and
    sequences of numbers (made tuples of floats)."""
    out = {}
    for k, v in kw.items():
        if type(v) in _PLAIN and (type(v) is not str or ";" not in v):  # the usual case, fast
            out[k] = v
            continue
        if isinstance(v, (tuple, list)):
            if not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
                raise TypeError(f"{k}: expected a sequence of numbers, got {v!r}")
            v = tuple(float(e) for e in v)
        elif isinstance(v, np.generic):
            v = v.item()
        elif v is not None and not isinstance(v, (bool, int, float, str)):
            raise TypeError(f"{k}: expected a number, a string or None, got {type(v).__name__}")
        if isinstance(v, str) and ";" in v:  # no option's value has one; keeps the split exact
            raise ValueError(f"{k}: unexpected value {v!r}")
        out[k] = v
    return out


def _options_string(o):
    """Checked options as one string for the operator's schema: ``name=repr(value)``
    joined by ';' (floats round-trip exactly through repr).  Plain string operations,
    so torch.compile traces it to a constant."""
    return ";".join(k + "=" + repr(v) for k, v in o.items())


_NUMBERS = {"__builtins__": {}, "inf": math.inf, "nan": math.nan}


@functools.lru_cache(maxsize=256)
def _parse_options(options):
    """The inverse of :func:`_options_string` (the string only ever comes from it);
    cached: a compiled training loop passes the same options every step.  Callers
    must not modify the dict."""
    out = {}
    for part in options.split(";") if options else ():
        k, _, r = part.partition("=")
        out[k] = eval(r, _NUMBERS)  # noqa: S307 -- reprs of numbers, strings, None, tuples
    return out


def _call(kind, x, y, names, mode, negate=False, aux="", **options):
    """The differentiable value of one fastssim call (see _MODES), and the map / scales
    (``aux``) as a second output when asked."""
    _check_pair(x, y, names)
    if x.dtype in _HALF:  # computed in float32; autograd's cast returns the gradient in x's dtype
        x, y = x.float(), y.float()
    grad_on = torch.is_grad_enabled()
    need = (1 if grad_on and x.requires_grad else 0) | (2 if grad_on and y.requires_grad else 0)
    o = _options(**options)
    if aux:
        return _eager_with_aux(x, y, kind, o, need, mode, negate, aux)
    if torch.compiler.is_compiling():
        return torch.ops.fastssim.similarity(x, y, kind, _options_string(o), need, mode,
                                             negate)[0]
    return _Similarity.apply(x, y, kind, o, need, mode, negate, "")


def similarity_per_plane(kind, x, y, names=("x", "y"), **options):
    """Per-plane values, shape ``(N, C)``, of a fastssim similarity, differentiable.

    The building block of :mod:`fastssim.torch.compat`'s ``nonnegative_ssim``.

    Parameters
    ----------
    kind : {'ssim', 'ms_ssim', 'pixelwise_ms_ssim', 'mix'}
        The NumPy function: :func:`fastssim.ssim`, :func:`fastssim.ms_ssim`,
        :func:`fastssim.pixelwise_ms_ssim` or :func:`fastssim.losses.mix`
        (x the prediction).
    x, y : Tensor, shape (N, C, H, W) or (N, C, D, H, W)
        CPU (or CUDA, with CuPy), floating point, one dtype and shape.
    names : pair of str
        The argument names used in error messages.
    **options
        Keyword arguments of the NumPy function (``data_range`` included;
        ``spatial_dims`` is set from the rank).

    Returns
    -------
    Tensor, shape (N, C)
        float64 for float64 input, else float32; the value of each plane.
        Its gradient with respect to x and y is exact (that of the NumPy
        function), computed in the forward when needed.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind: expected one of {tuple(_KINDS)}, got {kind!r}")
    return _call(kind, x, y, names, "plane", **options)


def _per_item(kind, x, y, reduction, names=("x", "y"), negate=False, aux="", **options):
    """The per-item values (channel means) of a kind, reduced; the reduction is part of
    the engine call (see _MODES), so the backward has nothing to scale for ``mean`` and
    ``sum`` when the result is the loss that ``backward()`` starts from."""
    _check_reduction(reduction)
    mode = {"none": "item"}.get(reduction, reduction)
    return _call(kind, x, y, names, mode, negate, aux, **options)


# ----------------------------------------------------------------------------------------
# Functional API


def ssim(x, y, *, data_range, window="gaussian", sigma=1.5, truncate=3.5, win_size=None,
         K1=0.01, K2=0.03, covariance="population", workers=None, reduction="mean",
         full=False, border="reflect"):
    """SSIM of image pairs, differentiable with respect to x and y (:func:`fastssim.ssim`).

    Parameters
    ----------
    x, y : Tensor, shape (N, C, H, W) or (N, C, D, H, W)
        CPU (or CUDA, with CuPy) floating-point tensors of one dtype and shape.
    data_range : float
        Span of the values (e.g. 1.0 or 255.0).
    reduction : {'mean', 'sum', 'none'}
        Of the per-item values (each the mean over the item's channels of
        the SSIM of each channel, i.e. ``fastssim.ssim(..., channel_axis=1)``):
        their mean, their sum, or the ``(N,)`` tensor.
    full : bool
        Also return the SSIM map, ``(N, C, *map)``: the value's dtype, shape
        as ``border`` says.  The map is not differentiable (backward through
        it raises ``RuntimeError``): the engine gives the gradient of the
        value only.

    Returns
    -------
    Tensor, or (Tensor, Tensor) with ``full=True``
        float32 (float64 for float64 input); 0-d, or ``(N,)`` with
        ``reduction='none'``.  Its gradient is the exact gradient of this
        value (the engine's, computed in the forward).

    Other Parameters
    ----------------
    window, sigma, truncate, win_size, K1, K2, covariance, workers
        As for :func:`fastssim.ssim`.
    border : {'reflect', 'valid'}
        The map's border (with ``full=True``; the value does not depend on it).

    Examples
    --------
    >>> import torch, fastssim.torch as ft
    >>> x = torch.rand(2, 3, 32, 32, requires_grad=True)
    >>> ft.ssim(x, x.detach(), data_range=1.0).backward()
    >>> x.grad.shape
    torch.Size([2, 3, 32, 32])
    """
    return _per_item("ssim", x, y, reduction, aux="map" if full else "",
                     data_range=data_range, window=window, sigma=sigma, truncate=truncate,
                     win_size=win_size, K1=K1, K2=K2, covariance=covariance, workers=workers,
                     **({"border": border} if full else {}))


def ms_ssim(x, y, *, data_range, weights=_fs.WANG_WEIGHTS, window="gaussian", sigma=1.5,
            truncate=3.5, win_size=None, K1=0.01, K2=0.03, covariance="population",
            downsample="symmetric", negative="clamp", fit_scales=False, workers=None,
            reduction="mean", return_scales=False):
    """MS-SSIM of image pairs, differentiable (:func:`fastssim.ms_ssim`).

    Each item's value is the mean over its channels of the MS-SSIM of each
    channel.  ``reduction`` and the shapes are as for :func:`ssim`; the other
    options are those of :func:`fastssim.ms_ssim` (the defaults, Wang's, need
    161 px per side: see :func:`fastssim.min_size` and ``fit_scales``).
    ``return_scales=True`` also returns the per-scale means m_j of each plane,
    ``(N, C, scales)`` (as the NumPy function's ``scales``, before the
    negative-value policy), not differentiable (backward through them raises
    ``RuntimeError``).
    """
    return _per_item("ms_ssim", x, y, reduction, aux="scales" if return_scales else "",
                     data_range=data_range, weights=weights, window=window, sigma=sigma,
                     truncate=truncate, win_size=win_size, K1=K1, K2=K2, covariance=covariance,
                     downsample=downsample, negative=negative, fit_scales=fit_scales,
                     workers=workers)


def pixelwise_ms_ssim(x, y, *, data_range, sigmas=_fs.ZHAO_SIGMAS, truncate=3.5, K1=0.01,
                      K2=0.03, covariance="population", border="reflect", workers=None,
                      reduction="mean", full=False):
    """Per-pixel MS-SSIM of Zhao et al. (the mean of its map), differentiable
    (:func:`fastssim.pixelwise_ms_ssim`).  Shapes and ``reduction`` as :func:`ssim`;
    ``full=True`` also returns the map ``(N, C, *map)``, not differentiable."""
    return _per_item("pixelwise_ms_ssim", x, y, reduction, aux="map" if full else "",
                     data_range=data_range, sigmas=sigmas, truncate=truncate, K1=K1, K2=K2,
                     covariance=covariance, border=border, workers=workers)


def _loss_pair(prediction, target):
    _check_pair(prediction, target, ("prediction", "target"))


def l1_loss(prediction, target, *, reduction="mean"):
    """Mean absolute error of each item (:func:`fastssim.losses.l1`), then ``reduction``.

    Plain torch operations (autograd's gradient is sign(p - t) / n, 0 at 0, as
    the NumPy loss).  With ``reduction='sum'`` the per-item *means* are summed
    (``torch.nn.functional.l1_loss`` would sum every element).
    """
    _loss_pair(prediction, target)
    _check_reduction(reduction)
    return _reduce((prediction - target).abs().flatten(1).mean(1), reduction)


def l2_loss(prediction, target, *, reduction="mean"):
    """Mean squared error of each item (:func:`fastssim.losses.l2`), then ``reduction``."""
    _loss_pair(prediction, target)
    _check_reduction(reduction)
    d = prediction - target
    return _reduce((d * d).flatten(1).mean(1), reduction)


_NAMES = ("prediction", "target")


def ssim_loss(prediction, target, *, data_range, reduction="mean", **options):
    """1 - SSIM per item (:func:`fastssim.losses.ssim`); options as :func:`ssim`."""
    return _per_item("ssim", prediction, target, reduction, _NAMES, True,
                     data_range=data_range, **_defaults_ssim(options))


def ms_ssim_loss(prediction, target, *, data_range, reduction="mean", **options):
    """1 - MS-SSIM per item (:func:`fastssim.losses.ms_ssim`); options as :func:`ms_ssim`."""
    return _per_item("ms_ssim", prediction, target, reduction, _NAMES, True,
                     data_range=data_range, **_defaults_ms(options))


def pixelwise_ms_ssim_loss(prediction, target, *, data_range, reduction="mean", **options):
    """mean_p (1 - P(p)) per item (:func:`fastssim.losses.pixelwise_ms_ssim`); options as
    :func:`pixelwise_ms_ssim`."""
    return _per_item("pixelwise_ms_ssim", prediction, target, reduction, _NAMES, True,
                     data_range=data_range, **_defaults_pw(options))


def mix_loss(prediction, target, *, data_range, alpha=0.84, sigmas=_fs.ZHAO_SIGMAS,
             truncate=3.5, K1=0.01, K2=0.03, covariance="population", border="reflect",
             workers=None, reduction="mean", full=False):
    """The Mix loss of Zhao et al. (eq. 12, :func:`fastssim.losses.mix`), per item, then
    ``reduction``: mean_p alpha (1 - P(p)) + (1 - alpha) (G_sigma_M * |p - t|)(p).

    Differentiable with respect to the prediction (one engine call for value and
    gradient) and the target (one more call).  ``full=True`` also returns the
    per-pixel loss map ``(N, C, *map)``, not differentiable.
    """
    return _per_item("mix", prediction, target, reduction, _NAMES, aux="map" if full else "",
                     data_range=data_range, alpha=alpha, sigmas=sigmas, truncate=truncate,
                     K1=K1, K2=K2, covariance=covariance, border=border, workers=workers)


_SSIM_OPTS = ("window", "sigma", "truncate", "win_size", "K1", "K2", "covariance", "workers")
_MS_OPTS = _SSIM_OPTS + ("weights", "downsample", "negative", "fit_scales")
_PW_OPTS = ("sigmas", "truncate", "K1", "K2", "covariance", "border", "workers")


def _pick(options, allowed, fn):
    for k in options:
        if k not in allowed:
            raise TypeError(f"{fn}: unexpected keyword argument {k!r} (expected one of "
                            f"{', '.join(allowed)} or reduction)")
    return dict(options)


def _defaults_ssim(o):
    return _pick(o, _SSIM_OPTS, "ssim_loss")


def _defaults_ms(o):
    return _pick(o, _MS_OPTS, "ms_ssim_loss")


def _defaults_pw(o):
    return _pick(o, _PW_OPTS, "pixelwise_ms_ssim_loss")


# ----------------------------------------------------------------------------------------
# Modules


class _Metric(torch.nn.Module):
    """A function of (x, y) with its options held; ``forward(x, y)``."""

    _fn = None

    def __init__(self, **options):
        super().__init__()
        _check_reduction(options.get("reduction", "mean"))
        self.options = options

    def forward(self, x, y):
        return type(self)._fn(x, y, **self.options)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


def _module(name, fn, doc):
    cls = type(name, (_Metric,), {"_fn": staticmethod(fn), "__doc__": doc,
                                  "__module__": __name__})
    return cls


SSIM = _module("SSIM", ssim, "Module form of :func:`ssim`: ``SSIM(data_range=1.0, ...)(x, y)``.")
MSSSIM = _module("MSSSIM", ms_ssim, "Module form of :func:`ms_ssim`.")
PixelwiseMSSSIM = _module("PixelwiseMSSSIM", pixelwise_ms_ssim,
                          "Module form of :func:`pixelwise_ms_ssim`.")
L1Loss = _module("L1Loss", l1_loss, "Module form of :func:`l1_loss`.")
L2Loss = _module("L2Loss", l2_loss, "Module form of :func:`l2_loss`.")
SSIMLoss = _module("SSIMLoss", ssim_loss,
                   "Module form of :func:`ssim_loss`: ``SSIMLoss(data_range=1.0)(pred, target)``.")
MSSSIMLoss = _module("MSSSIMLoss", ms_ssim_loss, "Module form of :func:`ms_ssim_loss`.")
PixelwiseMSSSIMLoss = _module("PixelwiseMSSSIMLoss", pixelwise_ms_ssim_loss,
                              "Module form of :func:`pixelwise_ms_ssim_loss`.")
MixLoss = _module("MixLoss", mix_loss, "Module form of :func:`mix_loss` (alpha = 0.84).")

