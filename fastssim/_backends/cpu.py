"""The CPU backend: runs a Plan on the Cython/C engine (through ``fastssim._core``).

Its execution state is :class:`_Operands`: the engine's inputs (the
caller's arrays themselves whenever the engine can read them in place --
C-contiguous, a dtype it converts on the fly, channels last or absent --
otherwise contiguous planes in the compute type), whether the channels are
interleaved (``nci`` > 1: the caller's last axis), and for batch
broadcasting which of each input's own items every engine item reads
(``xsel``/``ysel``, no copy of the broadcast input).  The engine's outputs
(planes ``(P, *s)`` or interleaved ``(B, *s, C)``) are turned back into the
caller's layout here.  See ``fastssim._backends`` for the contract.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _core
from .._validation import as_planes
from . import Result

__all__ = ["execute"]

_new = tuple.__new__


class _Operands:
    """The engine's view of one call's inputs (see the module docstring)."""

    __slots__ = ("lay", "user", "xe", "ye", "nci", "xsel", "ysel")

    def __init__(self, lay, x, y):
        """Choose the engine's inputs: in place if possible, else converted planes."""
        self.lay = lay
        self.user = (x, y)
        ftype = lay.dtype
        native = (x.dtype == y.dtype and x.dtype.isnative
                  and _core.native_type(x.dtype, ftype)
                  and x.flags.c_contiguous and y.flags.c_contiguous)
        cax = lay.channel_axis
        if native and cax is not None and cax == len(lay.shape) - 1 and lay.nchan > 1:
            self.nci = lay.nchan
            self.xe, self.ye = (a.reshape((-1,) + lay.spatial + (lay.nchan,)) for a in (x, y))
        else:
            self.nci = 1
            if native:
                self.xe = self._planes_view(x)
                self.ye = self.xe if y is x else self._planes_view(y)
            else:
                self.xe = self.from_user(x, ftype)
                self.ye = self.xe if y is x else self.from_user(y, ftype)
        if x.shape != y.shape:
            self.xsel, self.ysel = self._sel(x), self._sel(y)
        else:
            self.xsel = self.ysel = None

    def _cax(self, a):
        """The channel axis in ``a``'s own axes (it counts on the broadcast shape)."""
        if self.lay.channel_axis is None:
            return None
        return self.lay.channel_axis - (len(self.lay.shape) - a.ndim)

    def _sel(self, a):
        """Which of ``a``'s own engine items each item of the broadcast run
        reads (a batch item; a (batch item, channel) plane if the channels are
        planes): the indices of ``a``'s items, broadcast."""
        lay = self.lay
        nb = len(lay.batch_shape)
        cax = self._cax(a)
        own = a.shape if cax is None else np.moveaxis(np.empty(a.shape, np.bool_), cax, -1).shape
        own = own[: a.ndim - len(lay.spatial) - (cax is not None)]
        own = (1,) * (nb - len(own)) + tuple(own)
        tail = (lay.nchan,) if (lay.channel_axis is not None and self.nci == 1) else ()
        idx = np.arange(math.prod(own + tail), dtype=np.intp).reshape(own + tail)
        return np.ascontiguousarray(np.broadcast_to(idx, tuple(lay.batch_shape) + tail).ravel())

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
        if self.lay.channel_axis is not None:
            a = np.moveaxis(a, self._cax(a), -(len(self.lay.spatial) + 1))
        a = np.ascontiguousarray(a)  # no copy when the planes are already contiguous
        return a.reshape((-1,) + self.lay.spatial)

    def to_user(self, a, interleaved=None):
        """Engine layout -> caller layout (*batch, *s) or with the channel axis restored.

        ``a`` is planes (P, *s), or (B, *s, C) if ``interleaved`` (default: as
        the engine's inputs)."""
        lay = self.lay
        if interleaved is None:
            interleaved = self.nci > 1
        if interleaved or lay.channel_axis is None:
            return a.reshape(lay.batch_shape + a.shape[1:])
        a = a.reshape(lay.batch_shape + (lay.nchan,) + a.shape[1:])
        return np.moveaxis(a, len(lay.batch_shape), lay.channel_axis)

    def from_user(self, arr, ftype):
        """Caller layout -> contiguous planes (P, *s) of dtype ftype (a copy if needed)."""
        if self.lay.channel_axis is not None:
            arr = np.moveaxis(arr, self._cax(arr), -(len(self.lay.spatial) + 1))
        arr = as_planes(arr, ftype)
        return arr.reshape((-1,) + arr.shape[-len(self.lay.spatial):])

    def cotangent(self, c, oshape):
        """A cotangent map (caller layout, validated) in the engine's layout."""
        if self.nci > 1:
            shape = (math.prod(self.lay.batch_shape),) + tuple(oshape) + (self.nci,)
            return np.ascontiguousarray(c, dtype=self.lay.dtype).reshape(shape)
        return self.from_user(c, self.lay.dtype)

    def direct(self, out, shape, side=None):
        """A caller's buffer the engine can write into directly, or None (also
        for the gradient of an input that broadcasts: it is a sum of the run's)."""
        if out is None or self.lay.channel_axis is not None or self.nci > 1:
            return None
        if side is not None and self.user[side].shape != self.lay.shape:
            return None
        return out.reshape((-1,) + shape)

    def deliver(self, planes, out, side=None, reduce=True):
        """Engine layout -> the caller's (a gradient: summed to its input's
        shape when ``reduce``), into ``out`` when given."""
        res = self.to_user(planes)
        if side is not None and reduce:
            res = self.sum_to(res, side)
        if out is None:
            return res
        if not np.shares_memory(out, res):
            np.copyto(out, res)
        return out


def execute(plan, x, y, cotangent=None, out=None, shifts=None):
    """Run ``plan`` (see ``fastssim._backends`` for the contract).

    ``shifts`` (CPU only, 'window' and 'product' plans): None, or the
    per-plane shifts (shift_x, shift_y) to use instead of the planes' own
    (``fastssim.dask`` passes a block the whole image's, see ``_core.run``)."""
    kind = plan.kind
    if kind == "pyramid":
        return _pyramid(plan, x, y)
    lay = plan.layout
    ops = _Operands(lay, x, y)
    # only the arguments a call needs: each keyword passed costs time on small images
    extra = {}
    if plan.cotangent:
        extra["wmap"] = ops.cotangent(cotangent, plan.map_spatial)
    if ops.xsel is not None:
        extra["xsel"], extra["ysel"] = ops.xsel, ops.ysel
    if shifts is not None:
        extra["shifts"] = shifts
    map_out = gx_out = gy_out = None
    if out is not None:  # the caller's buffers: written directly where the layout allows
        map_out, gx_out, gy_out = out
        extra["map_out"] = ops.direct(map_out, plan.map_spatial)
    if kind == "window":
        s = plan.scales[0]
        if out is not None:
            extra["gx_out"] = ops.direct(gx_out, lay.spatial, 0)
            extra["gy_out"] = ops.direct(gy_out, lay.spatial, 1)
        sums, m, gx, gy = _core.run(
            ops.xe, ops.ye, nci=ops.nci, dtype=lay.dtype, taps=s.taps, map_region=plan.map_region,
            sum_region=plan.sum_region, form=s.form, C1=plan.C1, C2=plan.C2, cov=s.cov,
            want_map=plan.want_map, grad=plan.grad, wscal=plan.wscal, workers=plan.workers,
            **extra)
    elif kind == "product":
        sums, m, gx, gy = _core.run_multi(
            ops.xe, ops.ye, scales=[(s.taps, s.form, s.cov) for s in plan.scales],
            nci=ops.nci, dtype=lay.dtype, map_region=plan.map_region,
            sum_region=plan.sum_region, C1=plan.C1, C2=plan.C2, want_map=plan.want_map,
            grad=plan.grad, wscal=plan.wscal, workers=plan.workers, **extra)
    else:
        raise ValueError(f"plan.kind: expected 'window', 'product' or 'pyramid', got {kind!r}")
    red = plan.reduce_grad
    return _new(Result, (  # tuple.__new__: no Python frame for the NamedTuple (per-call cost)
        sums,
        ops.deliver(m, map_out) if m is not None else None,
        ops.deliver(gx, gx_out, 0, red) if gx is not None else None,
        ops.deliver(gy, gy_out, 1, red) if gy is not None else None,
        None,
    ))


@functools.lru_cache(maxsize=64)
def _readonly(values):
    """A read-only float64 array of a tuple of numbers (cached)."""
    a = np.array(values, dtype=np.float64)
    a.flags.writeable = False
    return a


def _pyramid(plan, x, y):
    """MS-SSIM: the engine's pyramid streams every level's sums (and keeps
    what the backward pass needs), the per-plane values and d value / d m_j
    come from the combination, then the backward pass runs per input.  The
    finest level is read in place wherever the engine can (channels last, an
    integer type): no planar copy of the caller's images is made."""
    lay = plan.layout
    pd = plan.pyramid
    g = plan.grad
    ops = _Operands(lay, x, y)
    P = lay.P
    M = len(pd.shapes)
    xs, ys, nci = ops.xe, ops.ye, ops.nci
    dt = np.dtype(lay.dtype)
    pyr = _core.pyramid(lay.spatial, P, dt.char, plan.scales[0].taps, M, pd.downsample, g, nci)
    # every level's moments are of x - s, y - s with the finest level's
    # shifts s (the means of a pyramid's levels agree)
    sx, sy = _core.plane_shifts(xs, ys, P, ops.xsel, ops.ysel, nci=nci, compute=dt,
                                workers=plan.workers)
    full_shape = ((P,) + lay.spatial) if nci == 1 else ((P // nci,) + lay.spatial + (nci,))
    # the finest level's gradients are the results (x's layout): fresh arrays
    gx = np.empty(full_shape, dt) if g & 1 else None
    gy = np.empty(full_shape, dt) if g & 2 else None
    # the coarse levels and their gradients live in pooled memory; with a
    # gradient laid out by lifetime (_engine._layout): 3/4 of an input, not 1
    hold = []  # the level-1 gradients' buffer, pooled too (Pyramid.run takes it;
    # it is scale 0's scratch first, then the gradients and the later scratch)
    out = [None, None]
    with _core.Workspace(pyr.nbytes) as ws:
        buf = ws.empty((pyr.nbytes,), np.uint8)
        try:
            sums = pyr.run(xs, ys, buf, plan.C1, plan.C2, plan.scales[0].cov, gx, gy, sx, sy,
                           plan.workers, ops.xsel, ops.ysel, _core.input_type(xs.dtype, dt),
                           hold)
            ms = sums / _readonly(pd.nvals)
            value_p, coef = _core.ms_combine(ms, _readonly(pd.weights), pd.negative, bool(g))
            if g:
                coef = np.ascontiguousarray(coef / lay.nchan, dtype=np.float64)
                for side, arr in ((0, gx), (1, gy)):
                    if arr is not None:
                        pyr.backward(buf, coef, arr, side, plan.workers, hold)
                        out[side] = ops.sum_to(ops.to_user(arr), side)
        finally:
            for b in hold:
                _core.release(b)
    return Result(value_p, None, out[0], out[1], ms)


def ms_combine(m, w, negative, want_coef):
    """MS-SSIM's combination of per-level means (see ``fastssim._core.ms_combine``)."""
    return _core.ms_combine(m, w, negative, want_coef)


def plane_shifts(xs, ys):
    """The per-plane shifts the engine takes of contiguous planes ``(P, *spatial)``
    of the compute type (see ``fastssim._core.plane_shifts``); ``fastssim.dask``
    passes a whole image's to :func:`execute` for each of its blocks."""
    return _core.plane_shifts(xs, ys, xs.shape[0])
