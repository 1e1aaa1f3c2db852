"""The GPU backend's driver: CuPy arrays in, CuPy arrays out.

Validation reuses the CPU path's helpers on zero-stride NumPy stand-ins of
the inputs (shape and dtype only: nothing is copied to the host), then the
kernels of ``_source`` run on the inputs' device, on CuPy's current stream,
with no host synchronisation: the values come back as CuPy arrays (0-d for
one pair).  The band tables are the CPU engine's (``fastssim._bands``),
uploaded once per device and geometry.
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np

from .. import _bands
from .._plan import _common, wrt_code
from .._plan import grad_code as _grad_code
from .._validation import broadcast_batch, check_bool, float_type
from . import _source

__all__ = ["ssim", "ssim_vjp", "loss_ssim", "pixelwise_ms_ssim", "pixelwise_ms_ssim_vjp",
           "loss_pixelwise_ms_ssim", "loss_mix", "loss_l1", "loss_l2", "ms_ssim", "loss_ms_ssim",
           "multiscale_structural_similarity", "structural_similarity", "kernels"]


def _xp(a):
    """The array module of ``a``: CuPy for device arrays; NumPy only for the
    kernel emulation of tests/test_cupy_emulated.py (``KERNELS`` replaced)."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def _device(a):
    """Context manager selecting ``a``'s device (nothing for host arrays)."""
    dev = getattr(a, "device", None)
    return dev if hasattr(dev, "__enter__") else contextlib.nullcontext()


def _device_id(xp):
    return xp.cuda.Device().id if xp is not np else -1

_NULL = np.uint64(0)  # a NULL pointer argument (8 bytes of zeros)
_MODULES = {}         # (device id, compute, element, radius, rows) -> {name: RawKernel}
_TABLES = {}          # (device id, n, taps, start, stop, dtype) -> (fwd, adj) device bands


def kernels(compute, element, radius, rows):
    """The four kernels of one specialisation on the current device (compiled
    by NVRTC through cupy.RawModule on first use, then cached): name ->
    callable(grid, block, args, shared_mem=bytes)."""
    import cupy as cp

    dev = cp.cuda.Device().id
    key = (dev, compute, element, int(radius), int(rows))
    got = _MODULES.get(key)
    if got is None:
        mod = cp.RawModule(code=_source.SOURCE,
                           options=("--std=c++14",) + _source.options(compute, element, radius, rows))
        smem = _source.smem_bytes(compute, radius, rows)
        got = {}
        for name in _source.KERNELS:
            k = mod.get_function(name)
            if smem[name] > 48 * 1024:
                k.max_dynamic_shared_size_bytes = smem[name]
            got[name] = k
        _MODULES[key] = got
    return got


# The kernel provider: ``kernels`` (CuPy), replaced by the tests' emulation.
KERNELS = kernels


class _DevBand:
    __slots__ = ("off", "lo", "hi", "tlo", "thi", "taps")

    def __init__(self, band, dt, xp):
        self.off, self.lo, self.hi = int(band.off), int(band.lo), int(band.hi)
        g = np.asarray(band.g, dtype=np.float64)
        full = np.concatenate([g[::-1], g[1:]])
        self.taps = xp.asarray(full.astype(dt))
        self.tlo = xp.asarray(np.ascontiguousarray(band.tab_lo, dtype=dt).reshape(-1)) \
            if band.tab_lo.size else xp.zeros(1, dt)
        self.thi = xp.asarray(np.ascontiguousarray(band.tab_hi, dtype=dt).reshape(-1)) \
            if band.tab_hi.size else xp.zeros(1, dt)


def _bands_on_device(n, taps, start, stop, dt, xp):
    key = (_device_id(xp), n, taps, start, stop, dt.char)
    got = _TABLES.get(key)
    if got is None:
        fwd, adj = _bands.band_pair(n, taps, start, stop, dt.char)
        got = (_DevBand(fwd, dt, xp), _DevBand(adj, dt, xp))
        _TABLES[key] = got
    return got


def _stand_in(a):
    """A NumPy array of ``a``'s shape and dtype without memory (validation only)."""
    return np.broadcast_to(np.zeros((), dtype=a.dtype), a.shape)


def _same_device(x, y, names):
    if getattr(x.device, "id", None) != getattr(y.device, "id", None):
        raise ValueError(f"{names[0]} is on GPU {x.device.id} and {names[1]} on GPU "
                         f"{y.device.id}: put both on one device (cupy.asarray under "
                         "`with cupy.cuda.Device(i)`)")


def _params(x, y, *, data_range, window, sigma, truncate, win_size, K1, K2, covariance,
            border, channel_axis, spatial_dims, names=("x", "y"), check_window=True):
    """The CPU path's validation (fastssim._plan) run on stand-ins: the same
    errors, word for word, for the same arguments."""
    _, _, lay, taps, cov, C1, C2, _ = _common(
        _stand_in(x), _stand_in(y), data_range, window, sigma, truncate, win_size, K1, K2,
        covariance, border, channel_axis, spatial_dims, None, check_window, names)
    return dict(cax=lay.channel_axis, shape=lay.shape, batch_shape=lay.batch_shape,
                nchan=lay.nchan, spatial=lay.spatial, taps=taps, r=(len(taps) - 1) // 2,
                C1=C1, C2=C2, cov=cov, ftype=lay.dtype, border=border)


class _Layout:
    """The engine layout of one call: planes (P, H, W), or interleaved
    channels (B, H, W, C) read in place (nci = C)."""

    def __init__(self, x, y, q, planes=False):
        """``planes``: contiguous planes in the compute type whatever the
        input (the MS-SSIM pyramid's levels are planes)."""
        self.q = q
        self.xp = cp = _xp(x)
        self.user_shapes = (x.shape, y.shape)
        shape, cax, sp = q["shape"], q["cax"], q["spatial"]
        ft = q["ftype"]
        if x.shape != shape:
            x = cp.broadcast_to(x, shape)
        if y.shape != shape:
            y = cp.broadcast_to(y, shape)
        same = x.dtype == y.dtype and x.dtype.isnative
        el = x.dtype.name if same and x.dtype.name in _source.ELEMENT[ft.name] else ft.name
        if planes:
            el = ft.name
        self.element = el
        self.nci = 1
        if not planes and cax is not None and cax == len(shape) - 1 and q["nchan"] > 1:
            self.nci = q["nchan"]
            self.xe, self.ye = (cp.ascontiguousarray(a, dtype=el).reshape((-1,) + sp + (self.nci,))
                                for a in (x, y))
        else:
            if cax is not None:
                x, y = (cp.moveaxis(a, cax, -(len(sp) + 1)) for a in (x, y))
            self.xe, self.ye = (cp.ascontiguousarray(a, dtype=el).reshape((-1,) + sp)
                                for a in (x, y))
        self.P = math.prod(q["batch_shape"]) * q["nchan"]
        self.B = self.P // self.nci

    def shape(self, spatial):
        if self.nci == 1:
            return (self.P,) + tuple(spatial)
        return (self.B,) + tuple(spatial) + (self.nci,)

    def to_user(self, a):
        q, cp = self.q, self.xp
        if self.nci > 1 or q["cax"] is None:
            return a.reshape(q["batch_shape"] + a.shape[1:])
        a = a.reshape(q["batch_shape"] + (q["nchan"],) + a.shape[1:])
        return cp.moveaxis(a, len(q["batch_shape"]), q["cax"])

    def from_user(self, c, spatial, name, what="SSIM"):
        """A map-shaped cotangent (caller layout) in the engine layout."""
        cp = self.xp
        expect = self.to_user(cp.empty(self.shape(spatial), dtype=cp.bool_)).shape \
            if self.nci == 1 else tuple(self.q["batch_shape"]) + tuple(spatial) + (self.nci,)
        if tuple(c.shape) != tuple(expect):
            raise ValueError(f"{name}: expected the shape of the {what} map, {tuple(expect)} "
                             f"(border={self.q['border']!r}), got {tuple(c.shape)}")
        ft = self.q["ftype"]
        if self.nci > 1:
            return cp.ascontiguousarray(c, dtype=ft).reshape(self.shape(spatial))
        cax = self.q["cax"]
        if cax is not None:
            c = cp.moveaxis(c, cax, -(len(spatial) + 1))
        return cp.ascontiguousarray(c, dtype=ft).reshape((-1,) + tuple(spatial))

    def sum_to(self, g, side):
        """A broadcast-shape gradient summed to input ``side``'s own shape."""
        shape = self.user_shapes[side]
        if g.shape == shape:
            return g
        lead = g.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
        return g.sum(axis=axes, dtype=np.float64).reshape(shape).astype(g.dtype, copy=False)

    def values(self, sums, n_valid):
        q = self.q
        v = (sums / n_valid).reshape(q["batch_shape"] + (q["nchan"],)).mean(axis=-1)
        return v


_FORM = {"ssim": 0, "cs": 1, "l": 2, "mean": 3}


def plane_shifts(lay, k=None):
    """(2, P) float64 on the device: the per-plane shifts of x and y (the rule
    of the CPU engine's fs_plane_shifts), in one launch."""
    q, cp = lay.q, lay.xp
    sp, P = tuple(q["spatial"]), lay.P
    n0, n1, n2 = sp if len(sp) == 3 else (sp[0], 1, sp[1])
    if k is None:
        ft = np.dtype(q["ftype"])
        k = KERNELS(ft.name, lay.element, q["r"], _source.tile_rows(ft.name, q["r"]))
    sh = cp.empty((2, P), dtype=cp.float64)
    k["fs_shifts"]((P, 2), (_source.FS_TX, _source.FS_TY),
                   (lay.xe, lay.ye, np.int32(lay.nci), np.int64(n0 * n1 * n2 * lay.nci),
                    np.int32(n0), np.int32(n1), np.int32(n2), sh),
                   shared_mem=_source.FS_TX * _source.FS_TY * 8)
    return sh


class _Window:
    """One window's kernels, bands and tile on the current device."""

    def __init__(self, lay, taps, map_region):
        q, cp = lay.q, lay.xp
        ft = np.dtype(q["ftype"])
        sp = tuple(q["spatial"])
        taps = tuple(taps)
        r = (len(taps) - 1) // 2
        rows = _source.tile_rows(ft.name, r)
        if rows == 0:
            raise NotImplementedError(
                f"fastssim on CuPy arrays: a {2 * r + 1}-tap window is too wide for the GPU "
                f"kernels' shared-memory tile (at most {2 * _source.max_radius(ft.name) + 1} "
                f"taps in {ft.name}); use NumPy arrays for it")
        slices = lay.P * (max(sp[0], map_region[0][1] - map_region[0][0]) if len(sp) == 3 else 1)
        if slices > 65535:
            raise NotImplementedError("fastssim on CuPy arrays: more than 65535 planes (volumes: "
                                      "planes x slices) per call")
        self.r, self.rows = r, rows
        self.k = KERNELS(ft.name, lay.element, r, rows)
        pairs = [_bands_on_device(n, taps, a, b, ft, cp) for n, (a, b) in zip(sp, map_region)]
        self.fw = [f for f, _ in pairs]   # forward bands, one per spatial axis
        self.aw = [a for _, a in pairs]   # adjoint bands
        self.f0, self.f2 = self.fw[-2], self.fw[-1]  # the in-plane (2-D) pass
        self.a0, self.a2 = self.aw[-2], self.aw[-1]
        self.smem = _source.smem_bytes(ft.name, r, rows)


_BLOCK = (_source.FS_TX, _source.FS_TY)


def _grid(rows, n0, n2, P):
    return ((n2 + _source.FS_TX - 1) // _source.FS_TX, (n0 + rows - 1) // rows, P)


class _Run:
    """The geometry shared by the windows of one call (2-D, or volumes: an
    in-slice pass over axes 1, 2, then axis 0)."""

    def __init__(self, lay, map_region, shifts=None):
        q = lay.q
        self.lay, self.cp, self.map_region = lay, lay.xp, map_region
        self.ft = np.dtype(q["ftype"])
        self.real = np.float32 if self.ft == np.float32 else np.float64
        self.sp = tuple(q["spatial"])
        self.osp = tuple(b - a for a, b in map_region)
        self.vol = len(self.sp) == 3
        self.n0, self.n2 = self.sp[0], math.prod(self.sp[1:])   # 2-D view for pointwise kernels
        self.o0, self.o2 = self.osp[0], math.prod(self.osp[1:])
        self.plane_in = math.prod(self.sp) * lay.nci
        self.plane_out = math.prod(self.osp) * lay.nci
        self.shifts = shifts

    def window(self, taps):
        w = _Window(self.lay, taps, self.map_region)
        if self.shifts is None:
            self.shifts = plane_shifts(self.lay, w.k)
        return w

    def _fwd2(self, w, P, n, o, plane_in, plane_out, nci, f0, f2, form, cov, sreg, mp, wmap,
              wscal, wplane, pm, part, ns, hout):
        lay, i32, i64, real = self.lay, np.int32, np.int64, self.real
        q = lay.q
        grid = _grid(w.rows, o[0], o[1], P)
        w.k["fs_fwd"](grid, _BLOCK, (
            lay.xe, lay.ye, self.shifts[0], self.shifts[1], i32(n[0]), i32(n[1]),
            i32(o[0]), i32(o[1]), i32(nci), i64(plane_in), i64(plane_out),
            i32(f0.off), i32(f0.lo), i32(f0.hi), f0.tlo, f0.thi,
            i32(f2.off), i32(f2.lo), i32(f2.hi), f2.tlo, f2.thi,
            f0.taps, i32(_FORM[form]), real(q["C1"]), real(q["C2"]), real(cov),
            i32(sreg[0][0]), i32(sreg[0][1]), i32(sreg[-1][0]), i32(sreg[-1][1]),
            _NULL if mp is None else mp, _NULL if wmap is None else wmap, real(wscal),
            _NULL if wplane is None else wplane, _NULL if pm is None else pm,
            _NULL if part is None else part, i32(ns), _NULL if hout is None else hout),
            shared_mem=w.smem["fs_fwd"])

    def fwd(self, w, form, cov, sreg, mp=None, wmap=None, wscal=0.0, pm=None, wplane=None):
        """The value pass (fs_fwd; volumes fs_fwd then fs_fwd0): returns the
        per-block partial sums (float64)."""
        lay, cp, P = self.lay, self.cp, self.lay.P
        if not self.vol:
            grid = _grid(w.rows, self.o0, self.o2, P)
            part = cp.empty(grid[0] * grid[1] * P, dtype=cp.float64)
            self._fwd2(w, P, self.sp, self.osp, self.plane_in, self.plane_out, lay.nci,
                       w.f0, w.f2, form, cov, sreg, mp, wmap, wscal, wplane, pm, part, 1, None)
            return part
        (n0, n1, n2), (o0, o1, o2) = self.sp, self.osp
        H = cp.empty((4, P * n0, o1, o2), dtype=self.ft)
        self._fwd2(w, P * n0, (n1, n2), (o1, o2), n1 * n2 * lay.nci, o1 * o2 * lay.nci, lay.nci,
                   w.fw[1], w.fw[2], form, cov, sreg[1:], None, None, 0.0, None, None, None,
                   n0, H)
        L = o1 * o2
        nb = (L + _source.FS_TX * _source.FS_TY - 1) // (_source.FS_TX * _source.FS_TY)
        part = cp.empty(nb * o0 * P, dtype=cp.float64)
        f0, q, real, i32, i64 = w.fw[0], lay.q, self.real, np.int32, np.int64
        w.k["fs_fwd0"]((nb, o0, P), _BLOCK, (
            H, self.shifts[0], self.shifts[1], i32(n0), i32(o0), i64(L), i32(o2), i32(lay.nci),
            i64(self.plane_out), i32(f0.off), i32(f0.lo), i32(f0.hi), f0.tlo, f0.thi,
            f0.taps, i32(_FORM[form]), real(q["C1"]), real(q["C2"]), real(cov),
            i32(sreg[0][0]), i32(sreg[0][1]), i32(sreg[1][0]), i32(sreg[1][1]),
            i32(sreg[2][0]), i32(sreg[2][1]),
            _NULL if mp is None else mp, _NULL if wmap is None else wmap, real(wscal),
            _NULL if wplane is None else wplane, _NULL if pm is None else pm, part),
            shared_mem=w.smem["fs_fwd0"])
        return part

    def reduce(self, w, part):
        sums = self.cp.empty(self.lay.P, dtype=self.cp.float64)
        w.k["fs_reduce"]((self.lay.P,), _BLOCK, (part, np.int64(part.size // self.lay.P), sums),
                         shared_mem=w.smem["fs_reduce"])
        return sums

    def _adj2(self, w, P, n, o, nci, plane_in, a0, a2, form, pm, grad, gx, gy, acc, ns, tout):
        lay, i32, i64 = self.lay, np.int32, np.int64
        w.k["fs_adj"](_grid(w.rows, n[0], n[1], P), _BLOCK, (
            lay.xe, lay.ye, self.shifts[0], self.shifts[1], i32(n[0]), i32(n[1]),
            i32(o[0]), i32(o[1]), i32(nci), i64(plane_in),
            i32(a0.off), i32(a0.lo), i32(a0.hi), a0.tlo, a0.thi,
            i32(a2.off), i32(a2.lo), i32(a2.hi), a2.tlo, a2.thi,
            a0.taps, i32(_FORM[form]), pm, i32(grad),
            _NULL if gx is None else gx, _NULL if gy is None else gy, i32(int(acc)),
            i32(ns), _NULL if tout is None else tout),
            shared_mem=w.smem["fs_adj"])

    def adj(self, w, form, pm, grad, gx, gy, acc=False):
        """The gradient pass (fs_adj; volumes fs_adj then fs_adj0); ``acc``
        adds to gx / gy instead of writing them."""
        lay, P = self.lay, self.lay.P
        if not self.vol:
            self._adj2(w, P, self.sp, self.osp, lay.nci, self.plane_in, w.a0, w.a2, form, pm,
                       grad, gx, gy, acc, 1, None)
            return
        (n0, n1, n2), (o0, o1, o2) = self.sp, self.osp
        T = self.cp.empty((4, P * o0, n1, n2), dtype=self.ft)
        self._adj2(w, P * o0, (n1, n2), (o1, o2), 1, 0, w.aw[1], w.aw[2], form, pm, grad,
                   None, None, False, o0, T)
        L = n1 * n2
        nb = (L + _source.FS_TX * _source.FS_TY - 1) // (_source.FS_TX * _source.FS_TY)
        a0, i32, i64 = w.aw[0], np.int32, np.int64
        w.k["fs_adj0"]((nb, n0, P), _BLOCK, (
            lay.xe, lay.ye, self.shifts[0], self.shifts[1], T, i32(n0), i32(o0), i64(L),
            i32(lay.nci), i64(self.plane_in), i32(a0.off), i32(a0.lo), i32(a0.hi), a0.tlo,
            a0.thi, a0.taps, i32(_FORM[form]), i32(grad), _NULL if gx is None else gx,
            _NULL if gy is None else gy, i32(int(acc))), shared_mem=w.smem["fs_adj0"])

    def grads(self, grad):
        cp, lay, shape = self.cp, self.lay, self.lay.shape(self.sp)
        return (cp.empty(shape, dtype=self.ft) if grad & 1 else None,
                cp.empty(shape, dtype=self.ft) if grad & 2 else None)


def run(lay, *, map_region, form="ssim", want_map=False, grad=0, wmap=None, wscal=0.0,
        taps=None, cov=None, sum_region=None):
    """One fused window: (sums (P,) float64, map, gx, gy), all on the device;
    the value sums are over the region where the window fits."""
    q = lay.q
    R = _Run(lay, map_region)
    w = R.window(q["taps"] if taps is None else taps)
    sreg = sum_region or [(w.r - a, n - w.r - a) for (a, _), n in zip(map_region, q["spatial"])]
    cp, ft = R.cp, R.ft
    mp = cp.empty(lay.shape(R.osp), dtype=ft) if want_map else None
    pm = cp.empty((4, lay.P, R.o0, R.o2), dtype=ft) if grad else None
    part = R.fwd(w, form, q["cov"] if cov is None else cov, sreg, mp, wmap, wscal, pm)
    sums = R.reduce(w, part)
    gx = gy = None
    if grad:
        gx, gy = R.grads(grad)
        R.adj(w, form, pm, grad, gx, gy)
    return sums, mp, gx, gy


def run_multi(lay, *, scales, map_region, want_map=False, grad=0, wmap=None, wscal=0.0):
    """The per-pixel product P = prod_j form_j of several windows (scales:
    (taps, form, cov) each), its sums over the whole map, its map, and the
    gradient of sum_p w(p) P(p): each window's map, the product and every
    window's cotangent (fs_prod), then each window's gradient pass, added."""
    R = _Run(lay, map_region)
    cp, ft, P = R.cp, R.ft, lay.P
    M = len(scales)
    if M > 8:
        raise NotImplementedError("fastssim on CuPy arrays: at most 8 windows (sigmas)")
    wins = [R.window(t) for t, _, _ in scales]
    whole = [(0, o) for o in R.osp]
    mshape = lay.shape(R.osp)
    F = cp.empty((M,) + mshape, dtype=ft)
    for w, (_, form, cov), f in zip(wins, scales, F):
        R.fwd(w, form, cov, whole, mp=f)
    mp = cp.empty(mshape, dtype=ft) if want_map else None
    C = cp.empty((M,) + mshape, dtype=ft) if grad else None
    grid = _grid(wins[0].rows, R.o0, R.o2, P)
    part = cp.empty(grid[0] * grid[1] * P, dtype=cp.float64)
    wins[0].k["fs_prod"](grid, _BLOCK, (
        F, np.int64(F[0].size), np.int32(M), np.int32(R.o0), np.int32(R.o2), np.int32(lay.nci),
        np.int64(R.plane_out), _NULL if wmap is None else wmap, R.real(wscal),
        _NULL if mp is None else mp, _NULL if C is None else C, part),
        shared_mem=wins[0].smem["fs_prod"])
    sums = R.reduce(wins[0], part)
    gx = gy = None
    if grad:
        gx, gy = R.grads(grad)
        pm = cp.empty((4, P, R.o0, R.o2), dtype=ft)
        for j, (w, (_, form, cov)) in enumerate(zip(wins, scales)):
            R.fwd(w, form, cov, whole, wmap=C[j], pm=pm)
            R.adj(w, form, pm, grad, gx, gy, acc=j > 0)
    return sums, mp, gx, gy


def _map_region(q, full):
    if q["border"] == "reflect" and full:
        return tuple((0, n) for n in q["spatial"])
    return tuple((q["r"], n - q["r"]) for n in q["spatial"])


def _buffers(x, y, full, g, map_out, grad_out, kw):
    """``ssim``'s map_out / grad_out checked as on the CPU (the Plan built on
    stand-ins), and on the inputs' device: (map, grad_x, grad_y) or None."""
    from .. import _plan

    if map_out is None and grad_out is None:
        return None
    p, _, _ = _plan.ssim(_stand_in(x), _stand_in(y), full=full, grad=g, **_defaults(kw),
                         workers=None)
    outs = _plan.ssim_outs(p, x, y, map_out, grad_out, xp=_xp(x))
    for name, b in zip(("map_out", "grad_out", "grad_out"), outs):
        if b is not None:
            _same_device(x, b, ("x", name))
    return outs


def _into(buf, a):
    """``a`` written into the caller's buffer ``buf`` (returned), or ``a``."""
    if buf is None:
        return a
    buf[...] = a
    return buf


def ssim(x, y, *, full=False, gradient=None, map_out=None, grad_out=None, **kw):
    """fastssim.ssim on CuPy arrays (see its docstring): the value is a CuPy
    array of the batch shape (0-d for one pair), maps and gradients CuPy
    arrays in the input layout (written into ``map_out`` / ``grad_out`` when
    given: CuPy arrays on the inputs' device)."""
    from .._ssim import SSIMResult

    kw.pop("workers", None)  # threads of the CPU engine: nothing to do on a GPU
    _same_device(x, y, ("x", "y"))
    g = _grad_code(gradient)
    full = check_bool(full, "full")
    with _device(x):
        q = _params(x, y, **_defaults(kw))
        outs = _buffers(x, y, full, g, map_out, grad_out, kw) or (None, None, None)
        lay = _Layout(x, y, q)
        mreg = _map_region(q, full)
        n_valid = math.prod(n - 2 * q["r"] for n in q["spatial"])
        sums, m, gx, gy = run(lay, map_region=mreg, want_map=full, grad=g,
                              wscal=1.0 / (n_valid * q["nchan"]))
        value = lay.values(sums, n_valid)
        if not full and not g:
            return value
        return SSIMResult(
            value, _into(outs[0], lay.to_user(m)) if full else None,
            _into(outs[1], lay.sum_to(lay.to_user(gx), 0)) if gx is not None else None,
            _into(outs[2], lay.sum_to(lay.to_user(gy), 1)) if gy is not None else None)


def ssim_vjp(x, y, cotangent, *, wrt="x", **kw):
    """fastssim.ssim_vjp on CuPy arrays: the gradient(s) as CuPy arrays."""
    kw.pop("workers", None)
    _same_device(x, y, ("x", "y"))
    g = wrt_code(wrt)
    _check_cotangent(cotangent, x)
    with _device(x):
        q = _params(x, y, **_defaults(kw))
        lay = _Layout(x, y, q)
        mreg = _map_region(q, True)
        oshape = tuple(b - a for a, b in mreg)
        w = lay.from_user(cotangent, oshape, "cotangent")
        _, _, gx, gy = run(lay, map_region=mreg, grad=g, wmap=w)
        return _wrt_result(lay, g, gx, gy)


def _check_cotangent(cotangent, x):
    if _xp(cotangent) is not _xp(x):
        raise TypeError(f"cotangent: expected a CuPy array like x and y, got "
                        f"{type(cotangent).__module__}.{type(cotangent).__name__}; fastssim "
                        "never moves data between host and device silently")


def _wrt_result(lay, g, gx, gy):
    if g == 1:
        return lay.sum_to(lay.to_user(gx), 0)
    if g == 2:
        return lay.sum_to(lay.to_user(gy), 1)
    return lay.sum_to(lay.to_user(gx), 0), lay.sum_to(lay.to_user(gy), 1)


def loss_ssim(prediction, target, *, data_range=None, gradient=False, full=False, **kw):
    """fastssim.losses.ssim on CuPy arrays: 1 - SSIM, its gradient by the
    prediction and the map 1 - SSIM(p)."""
    from ..losses import LossResult

    gradient = check_bool(gradient, "gradient")
    full = check_bool(full, "full")
    r = ssim(prediction, target, data_range=data_range, full=full,
             gradient="x" if gradient else None, **kw)
    if not gradient and not full:
        return 1.0 - r
    return LossResult(1.0 - r.value, -r.grad_x if gradient else None,
                      (1.0 - r.map) if full else None)


def _scales(taps, covs):
    """(taps, form, cov) per window of the per-pixel MS-SSIM product: cs for
    all but the widest, l*cs (ssim) for the widest."""
    M = len(taps)
    return [(taps[j], "cs" if j < M - 1 else "ssim", covs[j]) for j in range(M)]


def _nvals(spatial, M, downsample, r):
    """Valid-pixel count of each pyramid level (float64)."""
    from .._plan import _levels

    return np.array(_levels(tuple(spatial), downsample, M, r)[1], dtype=np.float64)


def _pixelwise_setup(x, y, kw, names=("x", "y")):
    """fastssim._pixelwise._setup on the GPU's parameters: (layout, scales,
    map region)."""
    from .._bands import gaussian_taps
    from .._pixelwise import ZHAO_SIGMAS
    from .._plan import check_sigmas as _check_sigmas

    kw = dict(kw)
    sig = _check_sigmas(kw.pop("sigmas", ZHAO_SIGMAS))
    truncate = kw.pop("truncate", 3.5)
    for bad in ("window", "sigma", "win_size"):
        if bad in kw:
            raise TypeError(f"unexpected keyword argument {bad!r}")
    q = _params(x, y, **_defaults(dict(kw, window="gaussian", sigma=sig[-1], truncate=truncate)),
                names=names, check_window=False)
    taps = [gaussian_taps(v, float(truncate)) for v in sig]
    ntap = len(taps[-1])
    if min(q["spatial"]) < ntap:
        raise ValueError(
            f"sigmas: the widest window (sigma={sig[-1]:g}, {ntap} taps at truncate={truncate:g}) "
            f"exceeds the image: spatial shape {q['spatial']}; every side needs at least {ntap} px. "
            "Pass smaller sigmas or a smaller truncate")
    sd = len(q["spatial"])
    if kw.get("covariance", "population") == "sample":
        if len(taps[0]) < 2:
            raise ValueError(
                f"covariance='sample' needs windows of more than one sample: sigma={sig[0]:g} has "
                f"1 tap at truncate={truncate:g}. Pass a larger truncate or drop that sigma")
        covs = [(len(t) ** sd) / (len(t) ** sd - 1.0) for t in taps]
    else:
        covs = [1.0] * len(taps)
    lay = _Layout(x, y, q)
    return lay, _scales(taps, covs), _map_region(q, True)


def pixelwise_ms_ssim(x, y, *, full=False, gradient=None, **kw):
    """fastssim.pixelwise_ms_ssim on CuPy arrays: value (CuPy, batch shape),
    map and gradients as CuPy arrays."""
    from .._pixelwise import PixelwiseResult

    kw.pop("workers", None)
    _same_device(x, y, ("x", "y"))
    g = _grad_code(gradient)
    full = check_bool(full, "full")
    with _device(x):
        lay, scales, mreg = _pixelwise_setup(x, y, kw)
        n = math.prod(b - a for a, b in mreg)
        sums, m, gx, gy = run_multi(lay, scales=scales, map_region=mreg, want_map=full, grad=g,
                                    wscal=1.0 / (n * lay.q["nchan"]))
        value = lay.values(sums, n)
        if not full and not g:
            return value
        return PixelwiseResult(value, lay.to_user(m) if full else None,
                               lay.sum_to(lay.to_user(gx), 0) if gx is not None else None,
                               lay.sum_to(lay.to_user(gy), 1) if gy is not None else None)


def pixelwise_ms_ssim_vjp(x, y, cotangent, *, wrt="x", **kw):
    """fastssim.pixelwise_ms_ssim_vjp on CuPy arrays."""
    kw.pop("workers", None)
    _same_device(x, y, ("x", "y"))
    g = wrt_code(wrt)
    _check_cotangent(cotangent, x)
    with _device(x):
        lay, scales, mreg = _pixelwise_setup(x, y, kw)
        oshape = tuple(b - a for a, b in mreg)
        w = lay.from_user(cotangent, oshape, "cotangent", "per-pixel MS-SSIM")
        _, _, gx, gy = run_multi(lay, scales=scales, map_region=mreg, grad=g, wmap=w)
        return _wrt_result(lay, g, gx, gy)


def loss_pixelwise_ms_ssim(prediction, target, *, data_range=None, gradient=False, full=False,
                           **kw):
    """fastssim.losses.pixelwise_ms_ssim on CuPy arrays: mean_p (1 - P(p))."""
    from ..losses import LossResult

    gradient = check_bool(gradient, "gradient")
    full = check_bool(full, "full")
    r = pixelwise_ms_ssim(prediction, target, data_range=data_range, full=full,
                          gradient="x" if gradient else None, **kw)
    if not gradient and not full:
        return 1.0 - r
    return LossResult(1.0 - r.value, -r.grad_x if gradient else None,
                      (1.0 - r.map) if full else None)


def loss_mix(prediction, target, *, alpha=0.84, gradient=False, full=False, **kw):
    """fastssim.losses.mix on CuPy arrays (eq. 12 of Zhao et al.; the CPU
    path's arithmetic, term for term)."""
    import numbers

    from ..losses import LossResult

    gradient = check_bool(gradient, "gradient")
    full = check_bool(full, "full")
    if isinstance(alpha, bool) or not isinstance(alpha, (numbers.Real, np.generic)):
        raise TypeError(f"alpha: expected a number in [0, 1], got {alpha!r}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}")
    kw.pop("workers", None)
    names = ("prediction", "target")
    _same_device(prediction, target, names)
    with _device(prediction):
        lay, scales, mreg = _pixelwise_setup(prediction, target, kw, names)
        cp, q = lay.xp, lay.q
        ft = np.dtype(q["ftype"])
        n = math.prod(b - a for a, b in mreg)
        wscal = 1.0 / (n * q["nchan"])
        g = 1 if gradient else 0
        sums, P, gp, _ = run_multi(lay, scales=scales, map_region=mreg, want_map=full, grad=g,
                                   wscal=wscal)
        d = lay.xe.astype(ft, copy=False) - lay.ye.astype(ft, copy=False)
        ad = cp.abs(d)
        l1 = _Layout.__new__(_Layout)
        l1.__dict__.update(lay.__dict__)
        l1.xe = l1.ye = ad
        l1.element = ft.name
        l1sums, fl1, gl1, _ = run(l1, map_region=mreg, form="mean", want_map=full, grad=g,
                                  wscal=wscal, taps=scales[-1][0], cov=1.0,
                                  sum_region=tuple((0, b - a) for a, b in mreg))
        per_plane = alpha * (1.0 - sums / n) + (1.0 - alpha) * (l1sums / n)
        value = per_plane.reshape(q["batch_shape"] + (q["nchan"],)).mean(axis=-1)
        dt = ft.type
        grad = lmap = None
        if gradient:
            grad = lay.sum_to(lay.to_user(dt(-alpha) * gp + dt(1.0 - alpha) * cp.sign(d) * gl1), 0)
        if full:
            lmap = lay.to_user(dt(alpha) * (dt(1) - P) + dt(1.0 - alpha) * fl1)
        if not gradient and not full:
            return value
        return LossResult(value, grad, lmap)


def _pointwise_loss(prediction, target, gradient, full, channel_axis, spatial_dims, kind):
    """fastssim.losses.l1 / l2 on CuPy arrays: the CPU path's validation on
    stand-ins, then its arithmetic with CuPy."""
    from ..losses import LossResult, _check_layout

    gradient = check_bool(gradient, "gradient")
    full = check_bool(full, "full")
    names = ("prediction", "target")
    _same_device(prediction, target, names)
    ps, ts, cax = _check_layout(_stand_in(prediction), _stand_in(target), channel_axis,
                                spatial_dims)
    sd = int(spatial_dims)
    shape = ps.shape if ps.shape == ts.shape else broadcast_batch(ps.shape, ts.shape, cax, sd,
                                                                  names)
    axes = [a for a in range(len(shape)) if a != cax][-sd:]
    if cax is not None:
        axes.append(cax)
    axes = tuple(sorted(axes))
    ft = float_type(np.result_type(ps.dtype, ts.dtype)) if ps.dtype != ts.dtype \
        else float_type(ps.dtype)
    with _device(prediction):
        cp = _xp(prediction)
        p, t = prediction.astype(ft, copy=False), target.astype(ft, copy=False)
        d = p - t
        lmap = cp.abs(d) if kind == "l1" else d * d
        n = math.prod(shape[a] for a in axes)
        grad = None
        if gradient:
            g = cp.sign(d) / p.dtype.type(n) if kind == "l1" else d * p.dtype.type(2.0 / n)
            if g.shape != p.shape:
                lead = g.ndim - p.ndim
                red = tuple(range(lead)) + tuple(lead + i for i, m in enumerate(p.shape)
                                                 if m == 1 and g.shape[lead + i] != 1)
                g = g.sum(axis=red, dtype=np.float64).reshape(p.shape).astype(g.dtype, copy=False)
            grad = g
        value = cp.mean(lmap, axis=axes, dtype=np.float64)
        if not gradient and not full:
            return value
        return LossResult(value, grad if gradient else None, lmap if full else None)


def loss_l1(prediction, target, *, gradient=False, full=False, channel_axis=None,
            spatial_dims=2):
    """fastssim.losses.l1 on CuPy arrays."""
    return _pointwise_loss(prediction, target, gradient, full, channel_axis, spatial_dims, "l1")


def loss_l2(prediction, target, *, gradient=False, full=False, channel_axis=None,
            spatial_dims=2):
    """fastssim.losses.l2 on CuPy arrays."""
    return _pointwise_loss(prediction, target, gradient, full, channel_axis, spatial_dims, "l2")


_NEGATIVE = {"clamp": 0, "simple": 1, "none": 2}


def _dev_tables(xp, arrays, dtypes):
    key = (_device_id(xp),) + tuple(id(a) for a in arrays)
    got = _TABLES.get(key)
    if got is None:  # the host tables are lru-cached (stable ids), kept alive here
        got = (arrays, tuple(xp.asarray(np.ascontiguousarray(a, dtype=d))
                             for a, d in zip(arrays, dtypes)))
        _TABLES[key] = got
    return got[1]


@functools.lru_cache(maxsize=64)
def _identity_maps(n):
    """Host tables of the identity along an axis of n samples, in the layout
    of fastssim._pyramid's down tables (i0, i1, w0, w1) and of their adjoint
    (m, u); cached, so that their ids key the device copies (_dev_tables)."""
    ar = np.arange(n, dtype=np.int32)
    return (ar, ar, np.ones(n), np.zeros(n)), (ar, np.ones(n))


def _down(win, a, sp, osp, maps, P, ft, cp):
    """One pyramid level's 2x downsampling of the planes ``a`` (P, *sp) to
    (P, *osp) with fs_down: 2-D in one pass; volumes in two, axes 1 and 2 of
    every slice, then axis 0 (the operator is the tensor product of the
    per-axis ones)."""
    tab = lambda d: _dev_tables(cp, (d.i0, d.i1, d.w0, d.w1),  # noqa: E731
                                (np.int32, np.int32, np.float64, np.float64))
    if len(sp) == 2:
        d0, _, d2 = maps
        out = cp.empty((P,) + tuple(osp), dtype=ft)
        win.k["fs_down"](_grid(win.rows, osp[0], osp[1], P), _BLOCK, (
            a, out, np.int32(sp[0]), np.int32(sp[1]), np.int32(osp[0]), np.int32(osp[1]),
            *tab(d0), *tab(d2)))
        return out
    d0, d1, d2 = maps
    (n0, n1, n2), (o0, o1, o2) = sp, osp
    t = cp.empty((P, n0, o1, o2), dtype=ft)
    win.k["fs_down"](_grid(win.rows, o1, o2, P * n0), _BLOCK, (
        a, t, np.int32(n1), np.int32(n2), np.int32(o1), np.int32(o2), *tab(d1), *tab(d2)))
    ident = _dev_tables(cp, _identity_maps(o1 * o2)[0],
                        (np.int32, np.int32, np.float64, np.float64))
    out = cp.empty((P, o0, o1, o2), dtype=ft)
    win.k["fs_down"](_grid(win.rows, o0, o1 * o2, P), _BLOCK, (
        t, out, np.int32(n0), np.int32(o1 * o2), np.int32(o0), np.int32(o1 * o2),
        *tab(d0), *ident))
    return out


def _up(win, coarse, fine, sp, osp, maps, P, ft, cp):
    """The adjoint of :func:`_down` added into ``fine`` (P, *sp) (fs_up);
    volumes: axis 0 into a zeroed slab, then axes 1 and 2 into ``fine``."""
    tab = lambda d: _dev_tables(cp, (d.m, d.u), (np.int32, np.float64))  # noqa: E731
    if len(sp) == 2:
        d0, _, d2 = maps
        win.k["fs_up"](_grid(win.rows, sp[0], sp[1], P), _BLOCK, (
            coarse, fine, np.int32(sp[0]), np.int32(sp[1]), np.int32(osp[0]), np.int32(osp[1]),
            *tab(d0), *tab(d2)))
        return
    d0, d1, d2 = maps
    (n0, n1, n2), (o0, o1, o2) = sp, osp
    t = cp.zeros((P, n0, o1, o2), dtype=ft)
    ident = _dev_tables(cp, _identity_maps(o1 * o2)[1], (np.int32, np.float64))
    win.k["fs_up"](_grid(win.rows, n0, o1 * o2, P), _BLOCK, (
        coarse, t, np.int32(n0), np.int32(o1 * o2), np.int32(o0), np.int32(o1 * o2),
        *tab(d0), *ident))
    win.k["fs_up"](_grid(win.rows, n1, n2, P * n0), _BLOCK, (
        t, fine, np.int32(n1), np.int32(n2), np.int32(o1), np.int32(o2), *tab(d1), *tab(d2)))


def ms_ssim(x, y, *, weights=None, downsample="symmetric", negative="clamp", fit_scales=False,
            gradient=None, return_scales=False, _names=("x", "y"), **kw):
    """fastssim.ms_ssim on CuPy arrays (images and volumes): the value (CuPy, batch shape), and
    with ``gradient`` / ``return_scales`` an MSSSIMResult of CuPy arrays."""
    from .._msssim import WANG_WEIGHTS, MSSSIMResult, min_size
    from .._plan import check_weights as _check_weights
    from .._plan import fitting_scales as _fitting_scales
    from .._pyramid import CONVENTIONS, down_maps, pyramid_shapes

    kw.pop("workers", None)
    if "border" in kw:
        raise TypeError("ms_ssim() got an unexpected keyword argument 'border'")
    kw["border"] = "valid"
    _same_device(x, y, _names)
    g = _grad_code(gradient)
    w = _check_weights(WANG_WEIGHTS if weights is None else weights)
    if not isinstance(downsample, str) or downsample not in CONVENTIONS:
        raise ValueError(f"downsample: expected one of {CONVENTIONS}, got {downsample!r}")
    if not isinstance(negative, str) or negative not in _NEGATIVE:
        raise ValueError(f"negative: expected one of {tuple(_NEGATIVE)}, got {negative!r}")
    fit_scales = check_bool(fit_scales, "fit_scales")
    return_scales = check_bool(return_scales, "return_scales")
    with _device(x):
        q = _params(x, y, **_defaults(kw), names=_names, check_window=False)
        taps, r = len(q["taps"]), q["r"]
        M = w.size
        fit = _fitting_scales(q["spatial"], downsample, taps, M)
        if fit < M:  # fastssim._msssim.ms_ssim's rule and messages
            got = "x".join(str(n) for n in q["spatial"])
            if not fit_scales:
                need = min_size(M, taps, downsample, len(q["spatial"]))
                raise ValueError(
                    f"MS-SSIM with {M} scales and a window of {taps} taps needs at least {need} "
                    f"px per side (downsample={downsample!r}); got {got}: pass fewer scales "
                    "(shorter weights), a smaller window (sigma / win_size) or fit_scales=True")
            if fit == 0:
                raise ValueError(
                    f"fit_scales: not even one scale fits: the {taps}-tap window needs at least "
                    f"{taps} px per side, got {got}: pass a smaller window (sigma / win_size), "
                    "or check channel_axis and spatial_dims")
            total = w.sum()
            w = w[:fit]
            if not np.any(w > 0):
                raise ValueError(
                    f"fit_scales: only the first {fit} of {M} scales fit {got}, and their "
                    f"weights {tuple(w.tolist())} are all zero: pass weights with a positive "
                    "weight among them")
            w = w * (total / w.sum())
            M = fit
        lay = _Layout(x, y, q, planes=True)
        cp, P = lay.xp, lay.P
        ft = np.dtype(q["ftype"])
        shapes = pyramid_shapes(tuple(q["spatial"]), downsample, M)
        nval = _nvals(tuple(q["spatial"]), M, downsample, r)
        levels = [(lay.xe, lay.ye)]
        runs = []
        shifts = None
        for j, sp in enumerate(shapes):
            lv = _level(lay, *levels[j], sp)
            R = _Run(lv, tuple((r, n - r) for n in sp), shifts)
            win = R.window(q["taps"])
            shifts = R.shifts  # every level's moments are of x - s with the finest level's s
            runs.append((lv, R, win))
            if j + 1 < M:
                maps = down_maps(sp, downsample)
                nxt = [_down(win, a, sp, shapes[j + 1], maps, P, ft, cp) for a in levels[j]]
                levels.append(tuple(nxt))
        ms = cp.empty((P, M), dtype=cp.float64)
        whole = lambda sp: [(0, n - 2 * r) for n in sp]  # noqa: E731
        for j, (lv, R, win) in enumerate(runs):
            part = R.fwd(win, "cs" if j < M - 1 else "ssim", q["cov"], whole(shapes[j]))
            ms[:, j] = R.reduce(win, part) / nval[j]
        value_p = cp.empty(P, dtype=cp.float64)
        coef = cp.empty((P, M), dtype=cp.float64) if g else None
        wkey = (_device_id(cp), "weights", tuple(w.tolist()))
        wd = _TABLES.get(wkey)
        if wd is None:  # uploaded once per device and weights: no copy per call
            wd = _TABLES[wkey] = cp.asarray(np.ascontiguousarray(w, dtype=np.float64))
        runs[0][2].k["fs_combine"](((P + 127) // 128,), (128,), (
            ms, wd, np.int32(P), np.int32(M), np.int32(_NEGATIVE[negative]), value_p,
            _NULL if coef is None else coef))
        values = value_p.reshape(q["batch_shape"] + (q["nchan"],)).mean(axis=-1)
        if not g and not return_scales:
            return values
        out = [None, None]
        if g:
            # Horner through the pyramid: G_j = (coef_j / nval_j) grad cs_j + D^T G_{j+1}
            G = None
            for j in range(M - 1, -1, -1):
                lv, R, win = runs[j]
                wpl = cp.ascontiguousarray(coef[:, j] / (nval[j] * q["nchan"]))
                pm = cp.empty((4, P) + tuple(n - 2 * r for n in shapes[j]), dtype=ft)
                R.fwd(win, "cs" if j < M - 1 else "ssim", q["cov"], whole(shapes[j]), pm=pm,
                      wplane=wpl)
                gx, gy = R.grads(g)
                R.adj(win, "cs" if j < M - 1 else "ssim", pm, g, gx, gy)
                if G is not None:
                    maps = down_maps(shapes[j], downsample)
                    for fine, coarse in zip((gx, gy), G):
                        if fine is not None:
                            _up(win, coarse, fine, shapes[j], shapes[j + 1], maps, P, ft, cp)
                G = (gx, gy)
            for side in (0, 1):
                if G[side] is not None:
                    out[side] = lay.sum_to(lay.to_user(G[side]), side)
        scales = ms.reshape(q["batch_shape"] + ((q["nchan"],) if q["cax"] is not None else ())
                            + (M,))
        return MSSSIMResult(values, out[0], out[1], scales)


def loss_ms_ssim(prediction, target, *, data_range=None, gradient=False, full=False, **kw):
    """fastssim.losses.ms_ssim on CuPy arrays (no per-pixel map: map is None)."""
    from ..losses import LossResult

    gradient = check_bool(gradient, "gradient")
    full = check_bool(full, "full")
    if "return_scales" in kw:
        raise TypeError("ms_ssim loss: return_scales is not a loss option; call "
                        "fastssim.ms_ssim(..., return_scales=True) for the per-scale means")
    r = ms_ssim(prediction, target, data_range=data_range, gradient="x" if gradient else None,
                _names=("prediction", "target"), **kw)
    if not gradient and not full:
        return 1.0 - r
    if not gradient:
        return LossResult(1.0 - r, None, None)
    return LossResult(1.0 - r.value, -r.grad_x, None)


def multiscale_structural_similarity(im1, im2, *, data_range=None, channel_axis=None,
                                     gradient=False, weights=None, sigma=1.5, K1=0.01, K2=0.03,
                                     downsample="symmetric", negative="clamp", fit_scales=False,
                                     workers=None):
    """fastssim.multiscale_structural_similarity on CuPy arrays: mssim as a
    0-d CuPy array (no host synchronisation), with ``gradient`` the pair
    (mssim, d mssim / d im2)."""
    from .._validation import check_pair

    gradient = check_bool(gradient, "gradient")
    check_pair(_stand_in(im1), _stand_in(im2), ("im1", "im2"))
    nd = im1.ndim - (channel_axis is not None)
    if nd not in (2, 3):
        raise ValueError(
            f"multiscale_structural_similarity supports 2-D and 3-D images, got {nd} spatial "
            f"dimensions (shape {im1.shape}, channel_axis={channel_axis})")
    res = ms_ssim(im1, im2, data_range=data_range, weights=weights, sigma=sigma, K1=K1, K2=K2,
                  downsample=downsample, negative=negative, fit_scales=fit_scales,
                  gradient="y" if gradient else None, channel_axis=channel_axis,
                  spatial_dims=nd, _names=("im1", "im2"))
    if gradient:
        return res.value, res.grad_y
    return res


def structural_similarity(im1, im2, *, win_size=None, gradient=False, data_range=None,
                          channel_axis=None, gaussian_weights=False, full=False, K1=0.01,
                          K2=0.03, sigma=1.5, use_sample_covariance=True, workers=None,
                          **kwargs):
    """fastssim.structural_similarity on CuPy arrays (2-D and 3-D images): the
    same checks, warnings and return order as on the CPU (scikit-image's);
    mssim a 0-d CuPy array (no host synchronisation), the gradient with
    respect to im2 and the map CuPy arrays in the input layout."""
    from .._structural_similarity import skimage_plan

    _same_device(im1, im2, ("im1", "im2"))
    # stacklevel 4: caller > gpu_dispatch > here > skimage_plan
    p, ndim, _, _ = skimage_plan(
        _stand_in(im1), _stand_in(im2), win_size=win_size, gradient=gradient,
        data_range=data_range, channel_axis=channel_axis, gaussian_weights=gaussian_weights,
        full=full, K1=K1, K2=K2, sigma=sigma, use_sample_covariance=use_sample_covariance,
        workers=None, stacklevel=4)
    if ndim not in (2, 3):
        raise NotImplementedError(
            f"fastssim.structural_similarity on CuPy arrays: {ndim}-D images (shape "
            f"{im1.shape}, channel_axis={channel_axis}); the GPU streams 2-D and 3-D images: "
            "use NumPy arrays for other ranks")
    lay, (scale,) = p.layout, p.scales
    taps = scale.taps
    q = dict(cax=lay.channel_axis, shape=lay.shape, batch_shape=lay.batch_shape,
             nchan=lay.nchan, spatial=lay.spatial, taps=taps, r=(len(taps) - 1) // 2, C1=p.C1,
             C2=p.C2, cov=scale.cov, ftype=lay.dtype, border="reflect")
    ftype = float_type(lay.xdtype)
    with _device(im1):
        gl = _Layout(im1, im2, q)
        sums, m, _, gy = run(gl, map_region=p.map_region, want_map=p.want_map, grad=p.grad,
                             wscal=p.wscal, sum_region=p.sum_region)
        per_chan = sums / p.n_sum
        mssim = per_chan[0] if lay.channel_axis is None else per_chan.astype(ftype).mean()
        out = [mssim]
        if p.grad:
            out.append(gl.to_user(gy).astype(ftype, copy=False))
        if p.want_map:
            out.append(gl.to_user(m).astype(ftype, copy=False))
    return tuple(out) if len(out) > 1 else mssim


def _level(lay, xe, ye, spatial):
    """A layout of one pyramid level (planes of these spatial extents)."""
    lv = _Layout.__new__(_Layout)
    lv.__dict__.update(lay.__dict__)
    lv.q = dict(lay.q, spatial=tuple(spatial))
    lv.xe, lv.ye = xe, ye
    return lv


_DEFAULTS = dict(data_range=None, window="gaussian", sigma=1.5, truncate=3.5, win_size=None,
                 K1=0.01, K2=0.03, covariance="population", border="reflect",
                 channel_axis=None, spatial_dims=2)


def _defaults(kw):
    unknown = set(kw) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    return {**_DEFAULTS, **kw}
