"""The CPU backend's way into the filter engine: the only Python module that imports `_engine`.

``run`` (one window) and ``run_multi`` (a product of windows) take validated,
C-contiguous inputs in one of two layouts:

* planes ``(P, *spatial)``, or
* interleaved channels ``(B, *spatial, C)`` with ``nci=C`` (P = B*C planes),
  read in place: no transposed copy of an RGB image is ever made;

of the compute dtype (float32 or float64) or of a narrower type the engine
converts on the fly (uint8, uint16, int8, int16; float32 into float64), so no
float copy of an integer image is made either.  They build the banded
operators for the window and the map region, allocate what the caller did
not provide (maps and gradients in the input's layout, compute dtype) and hand
everything to the Cython glue.  Per-line sums come back and are reduced here
in a fixed order (float64), so results never depend on the thread count.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from . import _engine
from ._bands import band_pair

FORM = {"ssim": _engine.FORM_SSIM, "cs": _engine.FORM_CS, "l": _engine.FORM_L,
        "mean": _engine.FORM_MEAN}
_TRIVIAL = (1.0,)


def _as4(shape):
    """(n0, n1, n2) view of a 2-D or 3-D spatial shape."""
    if len(shape) == 2:
        return (shape[0], 1, shape[1])
    return tuple(shape)


class Workspace:
    """Pooled memory for one call's internal temporaries, never for its results.

    Fresh pages are slow to touch (the kernel zeroes them), so the pyramid
    images and coarse-scale gradients of repeated calls reuse one buffer.
    Use as a context manager; arrays from :meth:`empty` are invalid after it.
    """

    def __init__(self, nbytes):
        self._buf = _engine.acquire(int(nbytes) + 64)
        self._addr = self._buf.__array_interface__["data"][0]
        self._off = 0

    def empty(self, shape, dtype):
        dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
        n = math.prod(shape) * dt.itemsize
        off = ((self._addr + self._off + 63) & ~63) - self._addr
        if off + n > self._buf.nbytes:
            raise MemoryError("fastssim: internal workspace too small")
        self._off = off + n
        return np.ndarray(shape, dt, buffer=self._buf, offset=off)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _engine.release(self._buf)
        self._buf = None


def release(buf):
    """Give a pooled buffer from the engine (MS-SSIM's level-1 gradients) back."""
    _engine.release(buf)


# Input element types the engine reads and converts itself, per compute type.
_NATIVE = {
    np.dtype(np.float32): {np.dtype(np.float32): _engine.IN_REAL, np.dtype(np.uint8): _engine.IN_U8,
                           np.dtype(np.uint16): _engine.IN_U16, np.dtype(np.int8): _engine.IN_I8,
                           np.dtype(np.int16): _engine.IN_I16},
    np.dtype(np.float64): {np.dtype(np.float64): _engine.IN_REAL, np.dtype(np.float32): _engine.IN_F32,
                           np.dtype(np.uint8): _engine.IN_U8, np.dtype(np.uint16): _engine.IN_U16,
                           np.dtype(np.int8): _engine.IN_I8, np.dtype(np.int16): _engine.IN_I16},
}


def native_type(src, compute):
    """True if the engine reads dtype ``src`` itself when computing in ``compute``."""
    return np.dtype(src) in _NATIVE[np.dtype(compute)]


@functools.lru_cache(maxsize=1024)
def _geometry(spatial, dtchar, taps, map_region, sum_region):
    """The shape-only part of a call (cached: repeated calls, pyramid levels):
    (dims, forward bands, adjoint bands, output extents, oshape, sum region),
    2-D shapes as (n0, 1, n2)."""
    bands = [band_pair(n, taps, a, b, dtchar) for n, (a, b) in zip(spatial, map_region)]
    if len(spatial) == 2:
        bands = [bands[0], band_pair(1, _TRIVIAL, 0, 1, dtchar), bands[1]]
        sum_region = (sum_region[0], (0, 1), sum_region[1])
    out_spatial = tuple(b - a for a, b in map_region)
    return (_as4(spatial), tuple(b[0] for b in bands), tuple(b[1] for b in bands),
            out_spatial, _as4(out_spatial), tuple(tuple(s) for s in sum_region))


class _Layout:
    """Geometry of one engine call (see the module docstring)."""

    __slots__ = ("dt", "nci", "B", "P", "spatial", "dims", "in_type")

    def __init__(self, x, nci, dtype, items=None):
        """``items``: the run's item count when it broadcasts (else x's)."""
        self.dt = np.dtype(dtype) if dtype is not None else x.dtype
        self.nci = nci
        B = x.shape[0] if items is None else items
        if nci == 1:
            self.B, self.P, self.spatial = B, B, x.shape[1:]
        else:
            self.B, self.spatial = B, x.shape[1:-1]
            self.P = self.B * nci
        self.dims = _as4(self.spatial)
        self.in_type = _NATIVE[self.dt][x.dtype]

    def shape(self, spatial):
        """Array shape of a map or gradient with these spatial extents."""
        if self.nci == 1:
            return (self.P,) + tuple(spatial)
        return (self.B,) + tuple(spatial) + (self.nci,)

    def geometry(self, taps, map_region, sum_region):
        return _geometry(self.spatial, self.dt.char, tuple(taps), map_region, sum_region)


def _outputs(lay, out_spatial, want_map, grad, map_out, gx_out, gy_out, wmap):
    """The map and gradient arrays of a call: the caller's, or fresh ones."""
    if want_map and map_out is None:
        map_out = np.empty(lay.shape(out_spatial), dtype=lay.dt)
    if grad & _engine.GRAD_X and gx_out is None:
        gx_out = np.empty(lay.shape(lay.spatial), dtype=lay.dt)
    if grad & _engine.GRAD_Y and gy_out is None:
        gy_out = np.empty(lay.shape(lay.spatial), dtype=lay.dt)
    if wmap is not None:
        if wmap.shape != lay.shape(out_spatial) or wmap.dtype != lay.dt:
            raise ValueError(f"cotangent: expected shape {lay.shape(out_spatial)} and dtype "
                             f"{lay.dt}, got {wmap.shape} and {wmap.dtype}")
    return (map_out if want_map else None, gx_out if grad & _engine.GRAD_X else None,
            gy_out if grad & _engine.GRAD_Y else None)


def engine_call(x, y, P, geom, *, in_type, use_double, windows, C1, C2, map_out=None,
                rowsum=None, grad=0, wmap=None, wscal=0.0, gx=None, gy=None, nci=1):
    """The :class:`_engine.EngineCall` of one run, filled by name: ``geom``
    from :func:`_geometry` (the output extents and the sum region of every
    window), ``windows`` a list of :class:`_engine.Window`; ``rowsum`` (P, o0)
    zeros by default."""
    dims, _, _, _, oshape, sreg = geom
    if rowsum is None:
        rowsum = np.zeros((P, oshape[0]), dtype=np.float64)
    return _engine.EngineCall(
        x=x, y=y, P=P, dims=dims, nci=nci, in_type=in_type, use_double=use_double,
        windows=windows, out_shape=oshape, region=sreg, C1=float(C1), C2=float(C2),
        map_out=map_out, rowsum=rowsum, grad=int(grad), wmap=wmap, wscal=float(wscal),
        gx=gx, gy=gy)


def _window(geom, form, cov):
    """The engine's :class:`_engine.Window` of a geometry's bands."""
    return _engine.Window(fwd=geom[1], adj=geom[2], form=FORM[form], cov=float(cov))


def _spec(x, y, *, taps, map_region, sum_region, form="ssim", C1, C2, cov=1.0,
          want_map=False, grad=0, wmap=None, wscal=0.0, map_out=None, gx_out=None,
          gy_out=None, nci=1, dtype=None, items=None):
    """The layout and the engine call of one single-window run (see :func:`run`)."""
    lay = _Layout(x, nci, dtype, items)
    geom = lay.geometry(taps, map_region, sum_region)
    m, gx, gy = _outputs(lay, geom[3], want_map, grad, map_out, gx_out, gy_out, wmap)
    return lay, engine_call(x, y, lay.P, geom, in_type=lay.in_type,
                            use_double=lay.dt == np.float64, windows=[_window(geom, form, cov)],
                            C1=C1, C2=C2, map_out=m, grad=grad, wmap=wmap, wscal=wscal, gx=gx,
                            gy=gy, nci=nci)


def result(call):
    """(sums (P,), map, gx, gy) of a finished :class:`_engine.EngineCall`: the
    line sums reduced over the sum region's lines, in a fixed order."""
    a0, b0 = call.region[0]
    return call.rowsum[:, a0:b0].sum(axis=1), call.map_out, call.gx, call.gy


def broadcast_shifts(x, y, lay, xsel, ysel):
    """The per-plane shifts of a broadcast run: those of each input's own
    planes (fs_plane_shifts), picked per plane of the run."""
    nci, n = lay.nci, math.prod(lay.dims) * lay.nci
    use_double = lay.dt == np.float64
    out = []
    for a, sel in ((x, xsel), (y, ysel)):
        planes = (a.size // n) * nci
        own, _ = _engine.shifts(a, a, planes, lay.dims, nci, lay.in_type, use_double)
        out.append(own[(sel[:, None] * nci + np.arange(nci)).ravel()])
    return out


def _execute(call, x, y, lay, workers, xsel, ysel, shifts=None):
    """Run ``call`` (batch broadcasting: xsel, ysel not None) and read back its outputs."""
    if shifts is not None:  # the caller's per-plane shifts (fastssim.dask: the whole image's)
        call.shift_x, call.shift_y = shifts
    elif xsel is not None:
        call.shift_x, call.shift_y = broadcast_shifts(x, y, lay, xsel, ysel)
        call.xsel, call.ysel = xsel, ysel
    call.run(int(workers))
    return result(call)


def run(x, y, *, workers=1, xsel=None, ysel=None, shifts=None, **kw):
    """Run the engine with one window.

    x, y: inputs (see the module docstring); ``dtype`` the compute type
    (default: x's).  taps: full symmetric window.  map_region: per spatial
    axis, (start, stop) of the same-size reflect map that forms the output
    map.  sum_region: per spatial axis, (a, b) in output coordinates, over
    which values are summed (and on which the scalar cotangent ``wscal``
    lives when ``wmap`` is None).  grad: 0, 1 (x), 2 (y) or 3.
    xsel, ysel: batch broadcasting (intp, one entry per item of the run):
    item i reads item xsel[i] of x and ysel[i] of y, no copy made; the
    outputs have the run's items.  shifts: None (the engine takes each
    plane's own, fs_plane_shifts), or (shift_x, shift_y), float64 (P,): the
    constants the moments are taken about (a block of a larger image passes
    the whole image's, so that its results are the whole image's).
    Returns (sums (P,), map, gx, gy).
    """
    lay, call = _spec(x, y, items=None if xsel is None else xsel.size, **kw)
    return _execute(call, x, y, lay, workers, xsel, ysel, shifts)


def run_multi(x, y, *, scales, map_region, sum_region, C1, C2, want_map=False, grad=0,
              wmap=None, wscal=0.0, workers=1, map_out=None, nci=1, dtype=None,
              xsel=None, ysel=None, shifts=None):
    """The product of several windows' forms in one streaming pass.

    scales: list of (taps, form, cov); the map and the sums are of the product
    P = prod_j form_j, the gradient that of sum_p w(p) P(p).  Other arguments
    as :func:`run`.  Returns (sums (P,), map, gx, gy).
    """
    lay = _Layout(x, nci, dtype, None if xsel is None else xsel.size)
    windows = []
    for taps, form, cov in scales:
        geom = lay.geometry(taps, map_region, sum_region)
        windows.append(_window(geom, form, cov))
    m, gx, gy = _outputs(lay, geom[3], want_map, grad, map_out, None, None, wmap)
    call = engine_call(x, y, lay.P, geom, in_type=lay.in_type, use_double=lay.dt == np.float64,
                       windows=windows, C1=C1, C2=C2, map_out=m, grad=grad, wmap=wmap,
                       wscal=wscal, gx=gx, gy=gy, nci=nci)
    return _execute(call, x, y, lay, workers, xsel, ysel, shifts)


# ---------------------------------------------------------------------------
# MS-SSIM's pyramid and the per-plane helpers of the CPU backend (issue 9):
# everything that reaches the Cython engine goes through this module.

from ._pyramid import down_maps, pyramid_shapes  # noqa: E402

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
def pyramid(spatial, P, dtchar, taps, M, downsample, grad, nci=1):
    """The engine's :class:`Pyramid` of one MS-SSIM geometry, cached: each
    scale's bands over its valid region, form (cs, and l*cs at the last
    scale) and cotangent scale (1 / its valid-pixel count), the downsampling
    maps, and the first scale of the shared launch.  ``nci`` > 1: the finest
    level (the caller's input, read in place) has that many interleaved
    channels, (P / nci, *spatial, nci).

    ``pyr.run(xs, ys, buf, C1, C2, cov, gx, gy, sx, sy, workers, xsel, ysel,
    in_type, hold)`` returns each plane's per-scale sums (P, M) over the valid
    regions and keeps what the backward pass needs in ``buf`` (``pyr.nbytes``
    bytes) and, with a gradient, in a pooled buffer it appends to the list
    ``hold`` (give it back with :func:`release`);
    ``pyr.backward(buf, coef, g, side, workers, hold)`` writes into ``g``
    (x's layout) the gradient of sum_{p,j} coef[p, j] * sum_j(p) w.r.t. x
    (side 0) or y (1)."""
    r = (len(taps) - 1) // 2
    shapes = pyramid_shapes(spatial, downsample, M)
    geoms = [_geometry(s, dtchar, taps, tuple((r, n - r) for n in s),
                       tuple((0, n - 2 * r) for n in s)) for s in shapes]
    nval = [float(math.prod(n - 2 * r for n in s)) for s in shapes]
    forms = [FORM["cs"]] * (M - 1) + [FORM["ssim"]]
    return _engine.Pyramid(geoms, [down_maps(s, downsample) for s in shapes[:-1]], P,
                           dtchar == "d", _group_start(shapes, P), grad, forms,
                           [1.0 / v for v in nval], nci)


def input_type(src, compute):
    """The engine's element-type code (IN_*) of dtype ``src`` read in place
    when computing in ``compute`` (see :func:`native_type`)."""
    return _NATIVE[np.dtype(compute)][np.dtype(src)]


def plane_shifts(xs, ys, P, xsel=None, ysel=None, *, nci=1, compute=None, workers=1):
    """The per-plane shifts (fs_plane_shifts) of inputs read in place: planes
    (P, *spatial) or interleaved channels (P / nci, *spatial, nci), of the
    compute type (default: x's) or one the engine converts.  With
    ``xsel``/``ysel`` (batch broadcasting: one entry per item of the run)
    each input's own planes' shifts, picked per plane of the run (no copy of
    the planes made)."""
    compute = np.dtype(compute if compute is not None else xs.dtype)
    spatial = xs.shape[1:-1] if nci > 1 else xs.shape[1:]
    dims, dbl = _as4(spatial), compute == np.float64
    if xsel is None:
        return _engine.shifts(xs, ys, P, dims, nci, input_type(xs.dtype, compute), dbl,
                              int(workers))
    out = []
    for a, sel in ((xs, xsel), (ys, ysel)):
        own = _engine.shifts(a, a, a.shape[0] * nci, dims, nci, input_type(a.dtype, compute),
                             dbl, int(workers))[0]
        out.append(own[(sel[:, None] * nci + np.arange(nci)).ravel()] if nci > 1 else own[sel])
    return tuple(out)


_NEGATIVE_CODE = {"clamp": _engine.NEG_CLAMP, "simple": _engine.NEG_SIMPLE,
                  "none": _engine.NEG_NONE}


def ms_combine(m, w, negative, want_coef):
    """Value prod_j f(m_j)^w_j per plane and, if asked, d value / d m_j.

    f is the negative-value policy: max(m, 0) ('clamp', slope 0 at m <= 0),
    (m + 1) / 2 ('simple') or m ('none').  The derivative uses the product of
    the *other* factors (prefix and suffix products), never value / f(m_j), so
    it stays finite as an m_j -> 0.
    """
    return _engine.ms_combine(np.ascontiguousarray(m, dtype=np.float64),
                              np.ascontiguousarray(w, dtype=np.float64),
                              _NEGATIVE_CODE[negative], want_coef)


def engine_info():
    """The build and runtime facts of the engine: (openmp_enabled,
    omp_max_threads, simd_path)."""
    return _engine.openmp_enabled(), _engine.omp_max_threads(), _engine.simd_path()


def omp_max_threads():
    """The OpenMP runtime's default thread count (OMP_NUM_THREADS honoured)."""
    return _engine.omp_max_threads()
