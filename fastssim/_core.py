"""Dispatch to the filter engine: the one entry every public function uses.

``run`` takes validated planes ``(P, *spatial)`` (2-D or 3-D spatial, C-contiguous,
float32 or float64), builds the banded operators for the requested window and
map region, allocates what the caller did not provide and hands everything
to the Cython glue.  Per-line sums come back and are reduced here in a fixed
order (float64), so results never depend on the thread count.
"""

from __future__ import annotations

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


def check_out(arr, shape, dtype, name):
    """Validate a caller-provided output buffer."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array, got {type(arr).__name__}")
    if arr.shape != tuple(shape) or arr.dtype != dtype:
        raise ValueError(
            f"{name}: expected an array of shape {tuple(shape)} and dtype {dtype}, "
            f"got shape {arr.shape} and dtype {arr.dtype}"
        )
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        raise ValueError(f"{name}: expected a writeable C-contiguous array")
    return arr


def plane_shift(a):
    """Per-plane constant near the plane's mean, float64.

    The engine takes the moments of ``a - shift``: SSIM does not depend on the
    shift, but float32 variances (E[x^2] - mu^2) lose far less to cancellation.
    It is the mean of the finite values on a sparse grid (at most ~32 samples
    per axis), rounded to 4 significant bits, so that it is deterministic (the
    result stays independent of the thread count), exactly representable, and
    unmoved by a stray NaN/Inf or a small local change of the image.
    """
    sl = (slice(None),) + tuple(slice(None, None, max(1, n // 32)) for n in a.shape[1:])
    sub = a[sl].reshape(a.shape[0], -1).astype(np.float64)
    ok = np.isfinite(sub)
    cnt = ok.sum(axis=1)
    mean = np.where(ok, sub, 0.0).sum(axis=1) / np.maximum(cnt, 1)
    m, e = np.frexp(mean)
    return np.ldexp(np.round(m * 16.0) / 16.0, e)


def run(x, y, *, taps, map_region, sum_region, form="ssim", C1, C2, cov=1.0,
        want_map=False, grad=0, wmap=None, wscal=0.0, workers=1,
        map_out=None, gx_out=None, gy_out=None):
    """Run the engine.

    x, y: (P, *spatial) contiguous float arrays.  taps: full symmetric window.
    map_region: per spatial axis, (start, stop) of the same-size reflect map
    that forms the output map.  sum_region: per spatial axis, (a, b) in
    output coordinates, over which values are summed (and on which the
    scalar cotangent ``wscal`` lives when ``wmap`` is None).
    grad: 0, 1 (x), 2 (y) or 3.  Returns (sums (P,), map, gx, gy).
    """
    P = x.shape[0]
    spatial = x.shape[1:]
    ndim = len(spatial)
    dt = x.dtype
    bands = [band_pair(n, taps, a, b, dt.char) for n, (a, b) in zip(spatial, map_region)]
    if ndim == 2:
        triv = band_pair(1, _TRIVIAL, 0, 1, dt.char)
        bands = [bands[0], triv, bands[1]]
        sum_region = (sum_region[0], (0, 1), sum_region[1])
    fwd = tuple(b[0] for b in bands)
    adj = tuple(b[1] for b in bands)
    oshape = tuple(b.n_out for b in fwd)
    out_spatial = tuple(b - a for a, b in map_region)

    n4 = (P,) + _as4(spatial)
    o4 = (P,) + oshape
    xv = x.reshape(n4)
    yv = y.reshape(n4)

    if want_map:
        if map_out is None:
            map_out = np.empty((P,) + out_spatial, dtype=dt)
        mview = map_out.reshape(o4)
    else:
        mview = None
    wv = None if wmap is None else wmap.reshape(o4)
    if grad & _engine.GRAD_X and gx_out is None:
        gx_out = np.empty_like(x)
    if grad & _engine.GRAD_Y and gy_out is None:
        gy_out = np.empty_like(x)
    gxv = gx_out.reshape(n4) if grad & _engine.GRAD_X else None
    gyv = gy_out.reshape(n4) if grad & _engine.GRAD_Y else None

    rowsum = np.zeros((P, oshape[0]), dtype=np.float64)
    _engine.run(
        xv, yv, fwd, adj, oshape, FORM[form], float(C1), float(C2), float(cov),
        mview, rowsum, tuple(sum_region), int(grad), wv, float(wscal), gxv, gyv,
        int(workers), plane_shift(xv), plane_shift(yv),
    )
    a0, b0 = sum_region[0]
    sums = rowsum[:, a0:b0].sum(axis=1)
    return (
        sums,
        map_out if want_map else None,
        gx_out if grad & _engine.GRAD_X else None,
        gy_out if grad & _engine.GRAD_Y else None,
    )


def run_multi(x, y, *, scales, map_region, sum_region, C1, C2, want_map=False, grad=0,
              wmap=None, wscal=0.0, workers=1, map_out=None):
    """The product of several windows' forms in one streaming pass.

    scales: list of (taps, form, cov); the map and the sums are of the product
    P = prod_j form_j, the gradient that of sum_p w(p) P(p).  Other arguments
    as :func:`run`.  Returns (sums (P,), map, gx, gy).
    """
    P = x.shape[0]
    spatial = x.shape[1:]
    dt = x.dtype
    specs = []
    for taps, form, cov in scales:
        bands = [band_pair(n, taps, a, b, dt.char) for n, (a, b) in zip(spatial, map_region)]
        if len(spatial) == 2:
            bands = [bands[0], band_pair(1, _TRIVIAL, 0, 1, dt.char), bands[1]]
        specs.append((tuple(b[0] for b in bands), tuple(b[1] for b in bands), FORM[form], float(cov)))
    if len(spatial) == 2:
        sum_region = (sum_region[0], (0, 1), sum_region[1])
    oshape = tuple(b.n_out for b in specs[0][0])
    out_spatial = tuple(b - a for a, b in map_region)
    n4 = (P,) + _as4(spatial)
    o4 = (P,) + oshape
    if want_map and map_out is None:
        map_out = np.empty((P,) + out_spatial, dtype=dt)
    gx = np.empty_like(x) if grad & _engine.GRAD_X else None
    gy = np.empty_like(x) if grad & _engine.GRAD_Y else None
    rowsum = np.zeros((P, oshape[0]), dtype=np.float64)
    xv, yv = x.reshape(n4), y.reshape(n4)
    _engine.run_multi(
        xv, yv, specs, oshape, float(C1), float(C2),
        map_out.reshape(o4) if want_map else None, rowsum, tuple(sum_region), int(grad),
        None if wmap is None else wmap.reshape(o4), float(wscal),
        None if gx is None else gx.reshape(n4), None if gy is None else gy.reshape(n4),
        int(workers), plane_shift(xv), plane_shift(yv),
    )
    a0, b0 = sum_region[0]
    return rowsum[:, a0:b0].sum(axis=1), map_out if want_map else None, gx, gy
