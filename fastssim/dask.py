"""fastssim on Dask: SSIM, MS-SSIM and per-pixel MS-SSIM of chunked arrays and of datasets.

Imported only when used (``import fastssim.dask``); needs the ``dask`` extra
(``pip install "fastssim[dask]"``: ``dask[array]`` and ``distributed``).
Every function builds a lazy Dask graph and runs on whatever scheduler is
active when it is computed: threads, processes or a ``distributed.Client``.

How a chunked image is scored exactly
-------------------------------------
The value of :func:`fastssim.ssim` is the mean of the SSIM map over the
region where the whole window fits.  Here every chunk *owns* its pixels and
sums the map over the owned pixels in that region (one float64 per plane):
its interior, whose windows lie inside the chunk, straight from the chunk
(the engine reads it in place), and slabs of the window radius ``r`` along
its inner edges, each from a small box of data put together from copies of
the edges of the chunks it overlaps (nothing is invented at the image's own
edges).  So a chunk is needed only by tasks that depend on it alone (its
interior, its edge copies, and for MS-SSIM its downsampling) and is freed as
soon as they ran, whatever order the scheduler visits the chunks in.  One
task per batch chunk adds the per-chunk sums in chunk order (float64), so
the value does not depend on the scheduler and, across chunkings, differs
from the in-memory value only by the order of the float64 additions.

* The same-size map of a chunk is computed on the chunk's pixels from the
  chunk with a halo of ``r`` (copied strips of its neighbours, assembled in the
  task); the engine's 'reflect' border then applies only at the image's own
  edges, where the block's edge is the image's.  The 'valid' map is the
  same-size map cropped by ``r`` (the window fits there, so the two agree).
* The gradient of the mean with respect to a pixel depends on the map within
  ``r`` of it and so on the image within ``2 r``: a gradient task gets a halo of
  ``2 r`` and takes the vector-Jacobian product with the cotangent ``1 / N`` on
  the part of its block's map that lies in the image's valid region, then
  keeps its owned pixels.
* MS-SSIM: scale ``j + 1`` is made from scale ``j`` chunk by chunk after
  moving each chunk boundary by at most one sample so that no 2x2 (2x2x2) cell
  straddles two chunks; the odd-extent conventions ('symmetric', 'zero',
  'drop', 'replicate') are the in-memory operator's own per-axis tables
  (``fastssim._pyramid.down_axis``), so the pyramid is the in-memory pyramid,
  not an approximation.  For the value, one task per chunk runs every scale
  the chunk holds (its sums and edge copies, then its downsampling, scale after
  scale, on the same chunk grid while the boundaries stay aligned and the
  chunks at least a window wide), so only edge copies leave it; the scales
  beyond are handed on (a quarter of the data or less per scale done) and
  merged into chunks as large as the first scale's.  The gradient keeps every
  scale a chunked array and goes back through the adjoint of every
  downsampling, chunk by chunk, on the same aligned chunks.

Chunks must be at least one window wide along each spatial axis (the halo of
a block may not need more than its neighbour): narrower chunks are merged
with their neighbours first, and ``y`` is rechunked to ``x``'s chunks.

Engine threads: every task calls the engine with ``workers=1`` by default,
under every scheduler, because Dask already runs one task per core (the
threaded and processes schedulers; a ``distributed`` worker with ``nthreads``
threads runs that many tasks at once); the synchronous scheduler runs one
task at a time (``workers=-1`` uses every core there); ``workers=n``
overrides it, e.g. for a cluster of one-thread workers on many-core nodes.
On one machine, one worker process with one thread per core was measured
faster than one process per core (no transfers, one event loop) and than
fewer tasks with more engine threads each (see the README).

Numerics: the engine takes the moments about a per-plane shift near the
plane's mean (see the README's "Inputs and memory").  By default
(``shift='block'``) every engine call takes its block's own, so the source is
read once and float32 results differ from the in-memory call's by rounding
(nearer the float64 result than the in-memory call: a block's shift lies
nearer its pixels).  With ``shift='image'`` every block is given the whole
image's shifts, the in-memory call's (their strided sample grid is sliced out
of the chunks first: one light task per chunk, so the source is read twice),
so float32 maps equal the in-memory maps bit for bit and values differ only
by the order of the float64 additions; gradients agree to float32 rounding
(their adjoint runs over each block's own regions).

Tasks: a Dask task costs milliseconds of the scheduler's and the worker's
CPU, and a chunk moved between workers a copy through the network stack, so
the value pass runs one task per chunk (interior sums and edge copies; for
MS-SSIM every scale the chunk holds) and one per line of chunks (the slabs
along chunk edges, every scale), plus one per batch chunk; the chunk task is
made with ``map_blocks`` on the pair, so Dask fuses into it the tasks that
make the chunks of x and y when they are blockwise (``map_blocks``, a
blockwise reader): the pair is made, scored and freed in one task on one
worker.  Chunks of a few thousand pixels per side keep the per-task cost
small beside the engine's.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import threading

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "fastssim.dask needs Dask: pip install 'fastssim[dask]' (dask[array] and distributed)"
    ) from exc

from . import _backends, _plan
from ._backends.cpu import ms_combine as _combine
from ._bands import gaussian_size
from ._msssim import NEGATIVE, WANG_WEIGHTS, MSSSIMResult
from ._pixelwise import ZHAO_SIGMAS, PixelwiseResult
from ._plan import check_sigmas as _check_sigmas, grad_code as _grad_code
from ._pyramid import CONVENTIONS, down_axis, pyramid_shapes
from ._ssim import SSIMResult
from ._validation import check_channel_axis, check_positive, dtype_range, float_type

__all__ = ["ssim", "ms_ssim", "pixelwise_ms_ssim", "score_files", "DEFAULT_TASK_WORKERS"]

#: Engine threads per Dask task unless ``workers=`` says otherwise.
DEFAULT_TASK_WORKERS = 1


# ---------------------------------------------------------------------------
# layout: the pair as dask arrays (*batch, *spatial[, C]), channels last


class _Layout:
    """The normalised pair: batch axes, spatial axes, then channels (if any)."""

    def __init__(self, x, y, channel_axis, spatial_dims):
        x, y = _as_dask(x, "x"), _as_dask(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
        if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims: expected 2 (images) or 3 (volumes), got {spatial_dims!r}")
        for name, a in (("x", x), ("y", y)):
            if a.dtype.kind not in "biuf":
                raise TypeError(f"{name}: expected a real numeric array (bool, integer or float), "
                                f"got dtype {a.dtype}")
            if any(n == 0 for n in a.shape):
                raise ValueError(f"{name}: expected a non-empty array, got shape {a.shape}")
        self.user_cax = check_channel_axis(channel_axis, x.ndim)
        need = spatial_dims + (self.user_cax is not None)
        if x.ndim < need:
            raise ValueError(
                f"x has shape {x.shape}: expected at least {spatial_dims} spatial dimensions"
                + (" plus the channel axis" if self.user_cax is not None else "")
            )
        self.has_c = self.user_cax is not None
        if self.has_c:
            x, y = da.moveaxis(x, self.user_cax, -1), da.moveaxis(y, self.user_cax, -1)
            x, y = x.rechunk({x.ndim - 1: -1}), y.rechunk({y.ndim - 1: -1})
        self.sd = spatial_dims
        self.nb = x.ndim - spatial_dims - self.has_c
        self.C = x.shape[-1] if self.has_c else 1
        self.batch = x.shape[: self.nb]
        self.spatial = x.shape[self.nb: self.nb + self.sd]
        self.sax = tuple(range(self.nb, self.nb + self.sd))  # spatial axes
        # the arrays are kept apart: the layout itself travels into every task
        self.ftype = float_type(np.result_type(x.dtype, y.dtype)) if x.dtype != y.dtype \
            else float_type(x.dtype)
        self.cax = -1 if self.has_c else None  # for the in-memory functions on a block
        self.xdtype, self.ydtype = x.dtype, y.dtype
        self._pair = (x, y)

    def pair(self):
        """The normalised (x, y), handed out once (the layout travels into tasks without them)."""
        pair, self._pair = self._pair, None
        return pair

    def to_user(self, a):
        """A result in the normalised layout -> the caller's layout."""
        return da.moveaxis(a, -1, self.user_cax) if self.has_c else a

    def at(self, spatial):
        """A copy with another scale's spatial extents (a pyramid level)."""
        Lj = object.__new__(_Layout)
        Lj.__dict__.update(self.__dict__)
        Lj.spatial = tuple(spatial)
        return Lj


def _as_dask(a, name):
    if isinstance(a, da.Array):
        return a
    mod = type(a).__module__.split(".")[0]
    if mod in ("cupy", "torch", "jax", "jaxlib", "tensorflow"):
        raise TypeError(f"{name}: expected a dask or NumPy array, got {type(a).__module__}."
                        f"{type(a).__name__}; convert it explicitly")
    a = np.asarray(a)
    return da.from_array(a, chunks=a.shape or -1)


def _merge_small(chunks, m):
    """Chunks along one axis with every chunk at least ``m`` wide (neighbours merged)."""
    if all(c >= m for c in chunks):
        return tuple(chunks)
    out, acc = [], 0
    for c in chunks:
        acc += c
        if acc >= m:
            out.append(acc)
            acc = 0
    if acc:
        if out:
            out[-1] += acc
        else:
            out.append(acc)
    return tuple(out)


def _min_chunks(a, axes, m):
    """``a`` rechunked so that every chunk along ``axes`` is at least ``m`` wide."""
    new = {ax: _merge_small(a.chunks[ax], m) for ax in axes}
    if all(new[ax] == a.chunks[ax] for ax in axes):
        return a
    return a.rechunk(new)


def _aligned(L, x, y, m):
    """x and y on common chunks, every spatial chunk at least ``m`` wide."""
    x = _min_chunks(x, L.sax, m)
    return x, (y if y.chunks == x.chunks else y.rechunk(x.chunks))


def _starts(chunks):
    return np.concatenate(([0], np.cumsum(chunks)))


def _nest(grid, get, prefix=()):
    """Nested lists of ``get(index)`` over an index grid (for ``da.block``)."""
    if len(prefix) == len(grid):
        return get(prefix)
    return [_nest(grid, get, prefix + (i,)) for i in range(grid[len(prefix)])]


def _assemble(grid, get, axis0, prefix=(), concatenate=np.concatenate):
    """The blocks ``get(index)`` over an index grid concatenated along axes
    ``axis0, axis0 + 1, ...`` (one per grid dimension)."""
    if len(prefix) == len(grid):
        return get(prefix)
    parts = [_assemble(grid, get, axis0, prefix + (i,), concatenate)
             for i in range(grid[len(prefix)])]
    return parts[0] if len(parts) == 1 else concatenate(parts, axis=axis0 + len(prefix))


class _Boxes:
    """Boxes of data that block tasks need beyond their own chunk, put
    together inside the task that uses them.

    A box is a range of global coordinates per spatial axis (the batch and
    channel extents of its block).  It is filled from the chunks it overlaps:
    its block's own chunk, read directly when the task has it (``own``), and
    copies of the pieces of other chunks, made by one edge-copy task per chunk
    for every box that needs them.  So a chunk is needed only by tasks that
    depend on it alone (its own block's tasks and its edge copies) and is freed
    as soon as they ran, whatever order the scheduler visits the chunks in
    (dask's ``overlap`` keeps views, which pin whole neighbour chunks, and
    stores every halo'd block as a result).  Used for the halo'd blocks of
    maps and gradients and for the edge slabs of the value.
    """

    def __init__(self, L, chunks, x=None, y=None):
        self.L, self.chunks = L, chunks
        if x is not None:
            self.X = x.to_delayed(optimize_graph=False)
            self.Y = y.to_delayed(optimize_graph=False)
        self.starts = [_starts(chunks[ax]) for ax in L.sax]
        self.spatial = [int(st[-1]) for st in self.starts]
        self.specs = {}  # chunk -> [(key, source slices)]
        self._edges = None

    def plan(self, b, D, key, own):
        """(shape, places) of box ``D`` ([(lo, hi)] per spatial axis) of block
        ``b``: places [(chunk or None for b's own, key or source slices,
        destination slices)] in chunk order."""
        L, chunks, starts = self.L, self.chunks, self.starts
        ndim = len(chunks)
        shape = [chunks[ax][b[ax]] for ax in range(ndim)]
        ranges = []
        for k, ax in enumerate(L.sax):
            shape[ax] = D[k][1] - D[k][0]
            ranges.append([i for i in range(len(chunks[ax]))
                           if starts[k][i] < D[k][1] and starts[k][i + 1] > D[k][0]])
        places = []
        for combo in itertools.product(*ranges):
            idx, src, dst = list(b), [slice(None)] * ndim, [slice(None)] * ndim
            for k, ax in enumerate(L.sax):
                c0, c1 = int(starts[k][combo[k]]), int(starts[k][combo[k] + 1])
                s0, s1 = max(D[k][0], c0), min(D[k][1], c1)
                idx[ax] = combo[k]
                src[ax] = slice(s0 - c0, s1 - c0)
                dst[ax] = slice(s0 - D[k][0], s1 - D[k][0])
            idx = tuple(idx)
            if own and idx == tuple(b):
                places.append((None, tuple(src), tuple(dst)))
            else:
                self.specs.setdefault(idx, []).append((key, tuple(src)))
                places.append((idx, key, tuple(dst)))
        return tuple(shape), places

    def edges(self, chunks):
        """{chunk: delayed edge copies} for the chunks among ``chunks`` that boxes read."""
        if self._edges is None:
            self._edges = {c: dask.delayed(_edges, pure=True)(self.X[c], self.Y[c], sp)
                           for c, sp in self.specs.items()}
        return {c: self._edges[c] for c in chunks if c is not None}


def _edges(xb, yb, specs):
    """Copies of the slices of one chunk pair that other tasks need, by key
    (copies: a view would keep the whole chunk alive)."""
    return {key: (xb[sl].copy(), yb[sl].copy()) for key, sl in specs}


def _fill(shape, places, edges, own=None):
    """The (x, y) box of ``shape`` from its places (see :meth:`_Boxes.plan`)."""
    box = []
    for side in (0, 1):
        out = None
        for chunk, key, dst in places:
            piece = own[side][key] if chunk is None else edges[chunk][key][side]
            if out is None:
                out = np.empty(shape, dtype=piece.dtype)
            out[dst] = piece
        box.append(out)
    return box


def _halo_task(fn, shape, places, xb, yb, edges, block_id, shifts, kw):
    """fn on the block with its halo, filled from the chunk itself and its
    neighbours' edge copies."""
    xh, yh = _fill(shape, places, edges, (xb, yb))
    return fn(xh, yh, block_id=block_id, shifts=shifts, **kw)


def _halo_apply(lay, x, y, depth, fn, out_chunks, dtype, shifts, nout=1, **kw):
    """``fn(x block + halo, y block + halo, block_id=..., shifts=..., **kw)``
    for every block, assembled.

    The halo is ``depth`` samples of each neighbour along the spatial axes,
    nothing beyond the image's edges (see :class:`_Boxes`).  ``out_chunks``:
    the chunks of the output, whose blocks match the input's block for block
    (extra trailing axes of one block allowed).  Returns a list of ``nout``
    dask arrays.
    """
    boxes = _Boxes(lay, x.chunks, x, y)
    grid = boxes.X.shape
    plans = {}
    for b in np.ndindex(*grid):
        D = []
        for k, ax in enumerate(lay.sax):
            a = int(boxes.starts[k][b[ax]])
            D.append((max(a - depth, 0), min(a + x.chunks[ax][b[ax]] + depth, boxes.spatial[k])))
        plans[b] = boxes.plan(b, D, b, own=True)
    res = {}
    for b, (shape, places) in plans.items():
        r = dask.delayed(_halo_task, pure=True, nout=nout if nout > 1 else None)(
            fn, shape, places, boxes.X[b], boxes.Y[b], boxes.edges(c for c, _, _ in places), b,
            _shift_of(shifts, lay, b), kw)
        res[b] = r if nout > 1 else (r,)
    extra = len(out_chunks) - x.ndim
    ogrid = grid + (1,) * extra

    def block(k):
        def get(i):
            shape = tuple(out_chunks[ax][j] for ax, j in enumerate(i))
            return da.from_delayed(res[i[: len(grid)]][k], shape, dtype=dtype)
        return get

    return [da.block(_nest(ogrid, block(k))) for k in range(nout)]


class _Geom:
    """Where a block lies: per spatial axis, the owned start and length, the
    halo'd block's start, and the image's extent."""

    def __init__(self, L, chunks, depth):
        self.L = L
        self.starts = [_starts(chunks[ax]) for ax in L.sax]
        self.sizes = [chunks[ax] for ax in L.sax]
        self.depth = depth

    def block(self, block_id, arr):
        """[(a, length, h, n)] per spatial axis for the block at ``block_id``."""
        out = []
        for k, ax in enumerate(self.L.sax):
            i = block_id[ax]
            a, ln, n = int(self.starts[k][i]), int(self.sizes[k][i]), int(self.starts[k][-1])
            h = max(a - self.depth, 0)
            e = min(a + ln + self.depth, n)
            if arr.shape[ax] != e - h:  # the halo'd block is not the one planned
                raise RuntimeError(f"fastssim.dask: block {block_id} has extent {arr.shape[ax]} "
                                   f"on axis {ax}, expected {e - h}")
            out.append((a, ln, h, n))
        return out


# ---------------------------------------------------------------------------
# the per-plane shifts: the whole image's, as the in-memory engine takes them


SHIFTS = ("block", "image")


def _check_shift(shift):
    if not isinstance(shift, str) or shift not in SHIFTS:
        raise ValueError(f"shift: expected 'block' (each block's own per-plane shifts, the "
                         f"default) or 'image' (the whole image's, as in memory), got {shift!r}")
    return shift


def _shifts(L, x, y, shift):
    """(shifts, x, y) for ``shift='image'`` (see :func:`_image_shifts`); (None, x, y)
    for ``'block'``: every engine call takes its block's own."""
    return _image_shifts(L, x, y) if shift == "image" else (None, x, y)


def _image_shifts(L, x, y):
    """(shifts, x, y): ``shifts`` {batch block index: delayed (shift_x,
    shift_y)}, the per-plane shifts the in-memory engine takes of the whole
    planes, and x, y bound to them; or (None, x, y) when no spatial axis is
    chunked (every block then holds whole planes and takes the same).

    The engine's moments are of ``x - s`` with ``s`` the mean of a strided
    grid of samples (every ``max(n // 32, 1)``-th along each spatial axis,
    rounded; ``fs_plane_shifts``).  A block taking its own would round
    differently in float32; so the grid is sliced out of every chunk pair (one
    task per chunk: a strided slice, copied), put together per batch chunk
    (fewer than 64 samples per axis) by one task, and the engine's own function
    takes the shifts of it: its stride there is 1, so it reads the same samples
    in the same order as on the whole planes.  The returned x and y are the
    same arrays with their chunks made again after the shifts exist
    (``dask.graph_manipulation.bind``): without that, every chunk produced for
    the sample grid would be kept in memory until all of them had been
    sampled, i.e. the whole image.  So a source is read (or generated) twice.
    """
    if all(len(x.chunks[ax]) == 1 for ax in L.sax):
        return None, x, y
    from dask.base import tokenize
    from dask.graph_manipulation import bind

    y = y if y.chunks == x.chunks else y.rechunk(x.chunks)
    X, Y = x.to_delayed(optimize_graph=False), y.to_delayed(optimize_graph=False)
    starts = [_starts(x.chunks[ax]) for ax in L.sax]
    steps = [max(n // 32, 1) for n in L.spatial]
    grid = X.shape
    delayed = functools.partial(dask.delayed, pure=True)
    shifts = {}
    for bb in np.ndindex(*grid[: L.nb]):
        pieces = {}
        for bs in np.ndindex(*grid[L.nb:]):
            b = bb + bs
            sel = [slice(None)] * x.ndim
            for k, ax in enumerate(L.sax):
                a, st = int(starts[k][b[ax]]), steps[k]
                sel[ax] = slice(-a % st, None, st)  # the global grid's samples in this chunk
            pieces[bs] = delayed(_grid_samples)(X[b], Y[b], tuple(sel))
        shifts[bb] = delayed(_shift_task)(pieces, grid[L.nb:], L)
    x, y = bind((x, y), list(shifts.values()), seed=tokenize(x, y, "fastssim.dask shifts"))
    return shifts, x, y


def _grid_samples(xb, yb, sel):
    """The engine's shift samples in one chunk pair (copies, so the chunk is freed)."""
    return xb[sel].copy(), yb[sel].copy()


def _shift_task(pieces, grid, L):
    """The whole planes' shifts from the samples of every chunk of a batch chunk
    (``pieces`` {spatial chunk index: (x samples, y samples)})."""
    from ._backends.cpu import plane_shifts

    def planes(side):
        a = _assemble(grid, lambda i: pieces[i][side], L.nb)
        a = np.moveaxis(a, -1, L.nb) if L.has_c else a
        a = np.ascontiguousarray(a, dtype=L.ftype)
        return a.reshape((-1,) + a.shape[a.ndim - L.sd:])

    sx, sy = plane_shifts(planes(0), planes(1))
    return np.ascontiguousarray(sx), np.ascontiguousarray(sy)


def _shift_of(shifts, L, b):
    """The shifts of block ``b``'s planes (those of its batch chunk), or None."""
    return None if shifts is None else shifts[tuple(b[: L.nb])]


# ---------------------------------------------------------------------------
# metrics: how a block is planned and run on the engine


class _SSIMMetric:
    """SSIM (or its cs / l*cs form, one MS-SSIM scale) with one window."""

    def __init__(self, opts, form="ssim"):
        self.opts = opts  # _plan.ssim keyword arguments except the arrays
        self.form = form
        self.ntap = _plan.window_size(opts["window"], opts["sigma"], opts["truncate"],
                                      opts["win_size"])
        self.r = (self.ntap - 1) // 2

    def sum_range(self, n):
        return self.r, n - self.r  # the value: the mean where the window fits

    def plan(self, xb, yb, L, workers):
        """The Plan of a block pair (its regions set per task by :func:`_run`)."""
        p = _plan.ssim(xb, yb, full=False, grad=0, channel_axis=L.cax, spatial_dims=L.sd,
                       workers=workers, border="valid", **self.opts)[0]
        return p._replace(scales=(p.scales[0]._replace(form=self.form),), reduce_grad=False)


class _PixelwiseMetric:
    """Per-pixel MS-SSIM: the product of several windows, at full resolution."""

    def __init__(self, opts, border):
        self.opts = opts
        self.border = border
        s = _check_sigmas(opts["sigmas"])
        self.r = (gaussian_size(s[-1], check_positive(opts["truncate"], "truncate")) - 1) // 2
        self.ntap = 2 * self.r + 1

    def sum_range(self, n):
        # the value is the mean of the map: all of it ('reflect') or where the widest window fits
        return (0, n) if self.border == "reflect" else (self.r, n - self.r)

    def plan(self, xb, yb, L, workers):
        return _plan.pixelwise(xb, yb, full=False, grad=0, reduce_grad=False, border="reflect",
                               channel_axis=L.cax, spatial_dims=L.sd, workers=workers,
                               **self.opts)[0]


def _run(metric, xb, yb, L, workers, map_region, sum_region, shifts, want_map=False, grad=0,
         wscal=0.0):
    """The metric on one block pair over the given regions (a Result, caller layout),
    its moments about the whole image's per-plane ``shifts`` (None: the block's own)."""
    from ._backends import cpu

    p = metric.plan(xb, yb, L, workers)._replace(
        map_region=map_region, sum_region=sum_region, want_map=want_map, grad=grad, wscal=wscal)
    return cpu.execute(p, xb, yb, shifts=shifts)


# ---------------------------------------------------------------------------
# block tasks


def _map_task(xb, yb, *, block_id, shifts, geom, metric, L, workers):
    """The same-size map on the block's owned pixels: the engine maps the whole
    halo'd block (its rounding at the image's reflected edges is that of a map
    region reaching both ends of the data, as in memory), the halo is cropped."""
    own = tuple(slice(a - h, a - h + ln) for a, ln, h, n in geom.block(block_id, xb))
    full = tuple((0, xb.shape[ax]) for ax in L.sax)
    m = _run(metric, xb, yb, L, workers, full, tuple((0, b) for _, b in full), shifts,
             want_map=True).map
    return m[(Ellipsis,) + own + ((slice(None),) if L.has_c else ())]


def _grad_task(xb, yb, *, block_id, shifts, geom, metric, L, workers, g, wscal):
    """Gradient of (wscal * sum of the map over the summed region) on the block's
    owned pixels; 'both' stacks (gx, gy) on a new first axis."""
    mreg, own = [], []
    for a, ln, h, n in geom.block(block_id, xb):
        lo, hi = metric.sum_range(n)
        lo, hi = max(a - metric.r, lo), min(a + ln + metric.r, hi)
        own.append(slice(a - h, a - h + ln))
        if hi <= lo:
            mreg = None
            break
        mreg.append((lo - h, hi - h))
    sel = (Ellipsis,) + tuple(own) + ((slice(None),) if L.has_c else ())
    if mreg is None:  # no map pixel of the value depends on this block
        z = np.zeros(xb[sel].shape, dtype=L.ftype)
        return (z, z.copy()) if g == 3 else z
    res = _run(metric, xb, yb, L, workers, tuple(mreg), tuple((0, b - a) for a, b in mreg),
               shifts, grad=g, wscal=wscal)
    outs = [a[sel] for a in (res.grad_x, res.grad_y) if a is not None]
    return tuple(outs) if g == 3 else outs[0]


def _region_sums(xb, yb, mreg, metric, L, workers, out_shape, shifts):
    """Per-plane sums of the map over ``mreg`` of the block (the engine reads it in place).

    A region that reaches one end of the block's data but not the other along
    some axis (the per-pixel MS-SSIM's reflected border, summed) is mapped to
    the block's far end too and the map summed here: the engine rounds a
    reflected edge of a region that spans its data as it does in memory."""
    ext = tuple((0, n) if (a == 0) != (b == n) else (a, b)
                for (a, b), n in zip(mreg, (xb.shape[ax] for ax in L.sax)))
    if ext == mreg:
        sums = _run(metric, xb, yb, L, workers, mreg, tuple((0, b - a) for a, b in mreg),
                    shifts).sums
        return sums.reshape(out_shape)
    m = _run(metric, xb, yb, L, workers, ext, tuple((0, b - a) for a, b in ext), shifts,
             want_map=True).map
    sel = tuple(slice(a - e, b - e) for (a, b), (e, _) in zip(mreg, ext))
    m = m[(Ellipsis,) + sel + ((slice(None),) if L.has_c else ())]
    return m.sum(axis=L.sax, dtype=np.float64).reshape(out_shape)


def _frame_sums(items, chunks, metric, L, workers):
    """The owned sums of a line of chunks, in block order: per chunk its
    interior's sums (its :func:`_chunk_task` result in ``chunks``) plus each of
    its slabs', whose data boxes are filled from the edge copies of the chunks
    they overlap (their task results in ``chunks``)."""
    edges = {c: r[1] for c, r in chunks.items()}
    acc = None
    for b, slabs, out_shape, shifts in items:
        s = chunks[b][0]
        s = np.zeros(out_shape) if s is None else s
        for shape, mreg, places in slabs:
            xb, yb = _fill(shape, places, edges)
            s = s + _region_sums(xb, yb, mreg, metric, L, workers, out_shape, shifts)
        acc = s if acc is None else acc + s
    return acc


def _sum_plans(L, chunks, metric):
    """How the owned sums of every chunk are split (see :func:`_chain`):
    ({block: (interior mreg or None, [(shape, mreg, places)] of its slabs,
    out_shape)}, {chunk: [(key, source slices)] of its edge copies})."""
    r = metric.r
    boxes = _Boxes(L, chunks)
    starts, spatial = boxes.starts, boxes.spatial
    plans = {}
    for b in np.ndindex(*(len(c) for c in chunks)):
        out_shape = tuple(chunks[ax][b[ax]] for ax in range(L.nb)) + (1,) * L.sd + (L.C,)
        T, I, A = [], [], []
        for k, ax in enumerate(L.sax):
            a, ln, n = int(starts[k][b[ax]]), chunks[ax][b[ax]], spatial[k]
            lo, hi = metric.sum_range(n)
            tlo, thi = max(a, lo), min(a + ln, hi)
            elo, ehi = (r if a > 0 else 0), (r if a + ln < n else 0)
            T.append((tlo, thi))
            I.append((max(tlo, a + elo), min(thi, a + ln - ehi)))
            A.append(a)
        if any(t1 <= t0 for t0, t1 in T):
            continue
        inner, slabs = None, [T]
        if all(i1 > i0 for i0, i1 in I):
            inner = tuple((i0 - a, i1 - a) for (i0, i1), a in zip(I, A))
            slabs = []
            for k in range(L.sd):
                for s0, s1 in ((T[k][0], I[k][0]), (I[k][1], T[k][1])):
                    if s1 > s0:
                        slabs.append(I[:k] + [(s0, s1)] + T[k + 1:])
        splans = []
        for si, S in enumerate(slabs):
            D = [(max(s0 - r, 0), min(s1 + r, n)) for (s0, s1), n in zip(S, spatial)]
            shape, places = boxes.plan(b, D, (b, si), own=False)
            splans.append((shape, tuple((s0 - d0, s1 - d0) for (s0, s1), (d0, _) in zip(S, D)),
                           places))
        plans[b] = (inner, splans, out_shape)
    return plans, boxes.specs


class _Static:
    """Task data that Dask need neither search for collections nor hash: the
    plans of a graph (tens of thousands of small tuples for a large image,
    which cost Dask's graph construction more CPU than the graph's own
    tasks).  Its token is that of what it was made from."""

    __slots__ = ("value", "token")

    def __init__(self, value, token):
        self.value, self.token = value, token

    def __dask_tokenize__(self):
        return self.token


class _Axes:
    def __init__(self, sax):
        self.sax = sax


@functools.lru_cache(maxsize=16)
def _down_for(sax, spatial, convention, chunks):
    """The :class:`_Down` of a level, made (and kept) in the process that uses
    it: its tables are as long as the level's sides, too large to travel in
    every task."""
    return _Down(_Axes(sax), spatial, convention, chunks)


def _plane_sums(L, x, y, metric, workers, shifts):
    """Per-plane sums of the map over the summed region: a dask array (*batch, C)."""
    return _chain(L, x, y, [metric], [tuple(L.spatial)], None, workers, shifts)[..., 0]


def _chain(L, x, y, metrics, shapes, downsample, workers, shifts, target=None):
    """Per-plane sums (*batch, C, M) of the map over the summed region at each
    of the M levels of a pyramid (M = 1: the image itself), chunk by chunk.

    Each chunk's owned pixels are split into its interior, whose windows lie in
    the chunk (summed from the chunk itself, read in place), and slabs of the
    window radius along the chunk's inner edges, each summed from a small box
    of data (see :class:`_Boxes`: copies of the edges of the chunks it
    overlaps).  One task per chunk does, level after level, its interior's
    sums, the copies of its edges that other chunks' slabs need, and the 2x2
    downsampling of its pair to the next level (the chunk grid is the same at
    every level: the boundaries are moved first so that no 2x2 cell straddles
    two chunks, and stay aligned while the level's sides stay even): so the
    whole pyramid of a chunk is made where the chunk is, and only edge copies
    leave the task.  It is built with ``map_blocks`` on the pair, so Dask
    fuses into it the tasks that make a chunk of ``x`` and of ``y`` when they
    are blockwise (a reader, a generator): the pair is then never moved
    between workers; its own plans come from one light task per chunk.  One
    task per line of chunks along the last spatial axis sums the slabs of
    every level; one per batch chunk adds the lines' sums in block order.

    When a level's chunks are no longer aligned or get narrower than the
    window, the chunk tasks hand that level's pair on (a quarter or less of
    the data per level done) and its chunks are merged to about ``target``
    (the first level's chunk sides) before the rest of the pyramid goes the
    same way.
    """
    M = len(metrics)
    x, y = _aligned(L, x, y, max(m.ntap for m in metrics) + (2 if M > 1 else 0))
    if M > 1:
        d = _down_for(L.sax, tuple(shapes[0]), downsample, x.chunks)
        if d.in_chunks != x.chunks:  # boundaries moved by at most one sample
            x, y = x.rechunk(d.in_chunks), y.rechunk(d.in_chunks)
    if target is None:
        target = {ax: max(x.chunks[ax]) for ax in L.sax}
    chunks = x.chunks
    grid = tuple(len(c) for c in chunks)
    steps, rows, info = [], [], {b: [] for b in np.ndindex(*grid)}
    for j in range(M):
        if j and any(c < metrics[j].ntap for ax in L.sax for c in chunks[ax]):
            break
        dkey = None
        if j < M - 1:
            dkey = (L.sax, tuple(shapes[j]), downsample, chunks)
            if _down_for(*dkey).in_chunks != chunks:
                if j:
                    break
        Lj = L.at(shapes[j])
        plans, specs = _sum_plans(Lj, chunks, metrics[j])
        for b in info:
            inner, _, out_shape = plans.get(b, (None, None, None))
            info[b].append((inner, out_shape, tuple(specs.get(b, ()))))
        steps.append((Lj, metrics[j], dkey))
        rows.append(plans)
        if dkey is None:
            break
        chunks = _down_for(*dkey).out_chunks
    K = len(steps)
    tail = K < M
    from dask.base import tokenize

    token = tokenize("fastssim.dask chain", x.name, y.name, x.chunks, L.__dict__, shapes, downsample,
                     [(m.opts, getattr(m, "form", None), getattr(m, "border", None), m.ntap)
                      for m in metrics], K)
    delayed = functools.partial(dask.delayed, pure=True)
    kw = dict(steps=_Static(tuple(steps), token), L=L, workers=workers, tail=tail)
    if shifts is None:
        # map_blocks, so that Dask fuses the making of the chunk pair into the task;
        # each task's own plans come as a block of an object array (one light task
        # each: all blocks' plans in every task cost ~27 ms each to unpickle at 32768²)
        plans = np.empty(grid, dtype=object)
        for b in info:
            plans[b] = (b, info[b])
        plans = da.from_array(plans, chunks=1, name=f"fastssim-plans-{token}")
        task = da.map_blocks(_chain_task, x, y, plans, shifts=None,
                             chunks=tuple((1,) * n for n in grid), dtype=object,
                             meta=np.empty((0,) * x.ndim, dtype=object), **kw)
        out = task.to_delayed(optimize_graph=True)
        out = {b: out[b] for b in info}
    else:
        X, Y = x.to_delayed(optimize_graph=False), y.to_delayed(optimize_graph=False)
        out = {b: delayed(_chain_task)(X[b], Y[b], _Static((b, info[b]), (token, b)),
                                       shifts=_shift_of(shifts, L, b), **kw) for b in info}
    sums = {b: o[0] for b, o in out.items()} if tail else out  # so the pair stays put
    # the slabs of a line of chunks along the last spatial axis, every level, in one task
    lines = {}
    for b in info:
        lines.setdefault(b[: L.nb + L.sd - 1], []).append(b)
    res = []  # (batch block index, delayed) in block order
    for key, blocks in sorted(lines.items()):
        levels, need = [], {}
        for (Lj, met, _), plans in zip(steps, rows):
            items = []
            for b in blocks:
                if b in plans:
                    _, splans, out_shape = plans[b]
                    items.append((b, splans, out_shape))
                    need[b] = sums[b]
                    need.update((c, sums[c]) for _, _, places in splans for c, _, _ in places)
            levels.append((Lj, met, items))
        bshifts = None if shifts is None else {b: _shift_of(shifts, L, b) for b in blocks}
        res.append((key[: L.nb], delayed(_lines_task)(_Static(levels, (token, key)), need,
                                                      bshifts, workers)))
    nbg = grid[: L.nb]
    parts = {}
    for bb in np.ndindex(*nbg):
        shape = tuple(chunks[ax][bb[ax]] for ax in range(L.nb)) + (L.C,)
        parts[bb] = da.from_delayed(delayed(_level_sums)([r for k, r in res if k == bb], shape, K),
                                    shape + (K,), dtype=np.float64)
    ms = _assemble(nbg, lambda i: parts[i], 0, concatenate=da.concatenate)
    if not tail:
        return ms
    # the rest of the pyramid from level K's pair, on merged chunks
    ftype = L.ftype

    def piece(side):
        def get(b):
            shape = tuple(chunks[ax][b[ax]] for ax in range(len(chunks)))
            return da.from_delayed(out[b][1][side], shape, dtype=ftype)
        return da.block(_nest(grid, get))

    xk, yk = piece(0), piece(1)
    merged = {ax: _merge_small(chunks[ax], target[ax]) for ax in L.sax}
    xk, yk = xk.rechunk(merged), yk.rechunk(merged)
    rest = _chain(L.at(shapes[K]), xk, yk, metrics[K:], shapes[K:], downsample, workers, shifts,
                  target)
    return da.concatenate([ms, rest], axis=-1)


def _chain_task(xb, yb, plans, *, steps, L, workers, shifts, tail):
    """One chunk pair through the levels of :func:`_chain`: per level (its
    interior's sums or None, {key: edge copies}), and with ``tail`` the pair
    at the level after the last.  ``plans``: (block index, its plans per
    level), as a one-element object array or a :class:`_Static`."""
    block_id, info = plans.flat[0] if isinstance(plans, np.ndarray) else plans.value
    done = []
    last = len(info) - 1
    for j, ((Lj, met, dkey), (inner, out_shape, specs)) in enumerate(zip(steps.value, info)):
        s = None if inner is None else _region_sums(xb, yb, inner, met, Lj, workers, out_shape,
                                                    shifts)
        done.append((s, _edges(xb, yb, specs)))
        if dkey is not None:
            d = _down_for(*dkey)
            if tail and j == last:  # this pair leaves the task: fresh arrays
                xb, yb = d.down(xb, block_id), d.down(yb, block_id)
            else:  # used only in this task: the thread's buffers of this level
                xb, yb = (d.down(a, block_id, _level_buffer(j, side, d.out_shape(block_id, a),
                                                            a.dtype))
                          for side, a in ((0, xb), (1, yb)))
    return (done, (xb, yb)) if tail else done


_buffers = threading.local()


def _level_buffer(level, side, shape, dtype):
    """A buffer for one side of one pyramid level inside a chunk task, kept by
    the thread for its next task: a new array of tens of MiB costs page
    faults (measured: 20 % of the downsampling on 8192² float32, and up to
    6x on the first touches).  Nothing leaves the task in it: the sums are
    numbers and the edges copies.  One per (level, side), replaced when the
    shape changes: a third of a chunk pair per thread (levels 1, 2, ...: a
    quarter, a sixteenth, ...), held while the thread lives."""
    pool = getattr(_buffers, "pool", None)
    if pool is None:
        pool = _buffers.pool = {}
    buf = pool.get((level, side))
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        pool[(level, side)] = buf = np.empty(shape, dtype=dtype)
    return buf


def _lines_task(levels, outs, shifts, workers):
    """The owned sums of a line of chunks per level (None where it owns nothing);
    ``shifts`` {block: its planes' shifts} or None."""
    res = []
    for j, (Lj, met, items) in enumerate(levels.value):
        chunks = {c: o[j] for c, o in outs.items()}
        items = [(b, sp, out_shape, None if shifts is None else shifts[b])
                 for b, sp, out_shape in items]
        res.append(_frame_sums(items, chunks, met, Lj, workers) if items else None)
    return res


def _level_sums(parts, shape, K):
    """Per-plane sums (*batch, C, K) of a batch chunk: its lines' sums added in block order."""
    acc = np.zeros(shape + (K,))
    for p in parts:
        for j, s in enumerate(p):
            if s is not None:
                acc[..., j] = acc[..., j] + s.reshape(shape)
    return acc


def _values(L, sums, n):
    """Per-item values from per-plane sums (*batch, C): mean over the channels of sums / n."""
    return da.map_blocks(_per_item, sums, n=n, drop_axis=[L.nb], dtype=np.float64)


def _per_item(s, n):
    return (s / n).mean(axis=-1)


def _same_size_map(L, x, y, metric, workers, shifts):
    x, y = _aligned(L, x, y, metric.ntap)
    geom = _Geom(L, x.chunks, metric.r)
    return _halo_apply(L, x, y, metric.r, _map_task, x.chunks, L.ftype, shifts, geom=geom,
                       metric=metric, L=L, workers=workers)[0]


def _gradient(L, x, y, metric, workers, g, wscal, shifts):
    """The gradient(s) as dask arrays in the normalised layout: one, or (gx, gy)."""
    x, y = _aligned(L, x, y, max(metric.ntap, 2 * metric.r))
    geom = _Geom(L, x.chunks, 2 * metric.r)
    G = _halo_apply(L, x, y, 2 * metric.r, _grad_task, x.chunks, L.ftype, shifts,
                    nout=2 if g == 3 else 1, geom=geom, metric=metric, L=L, workers=workers, g=g,
                    wscal=wscal)
    return tuple(G) if g == 3 else G[0]


def _crop(L, m, r):
    sel = tuple(slice(r, n - r) for n in L.spatial)
    return m[(Ellipsis,) + sel + ((slice(None),) if L.has_c else ())]


def _check_fit(ntap, L, what="window"):
    if ntap > min(L.spatial):
        raise ValueError(
            f"the {ntap}-tap {what} exceeds the image extent: spatial shape {tuple(L.spatial)}; "
            f"every spatial side needs at least {ntap} px. Pass a smaller window, or check "
            "channel_axis and spatial_dims"
        )


def _dummy(L, x_dtype, y_dtype, side):
    """A tiny pair with the caller's dtypes and layout, for validating the options."""
    shape = (1,) * L.nb + (side,) * L.sd + ((L.C,) if L.has_c else ())
    return np.zeros(shape, x_dtype), np.zeros(shape, y_dtype)


def _resolve_range(data_range, L):
    """data_range as the in-memory functions resolve it (the dtype's span for integers)."""
    if data_range is None and L.xdtype.kind != "f" and L.ydtype.kind != "f":
        lo, hi = dtype_range[L.xdtype.type]
        return float(hi) - float(lo)
    return data_range


def _windowed_args(x, y, gradient, border, channel_axis, spatial_dims):
    """(gradient code, layout, x, y) of a one-pass metric's call, validated."""
    g = _grad_code(gradient)
    if border not in ("reflect", "valid"):
        raise ValueError(f"border: expected 'reflect' or 'valid', got {border!r}")
    L = _Layout(x, y, channel_axis, spatial_dims)
    x, y = L.pair()
    return g, L, x, y


def _windowed(L, x, y, metric, workers, full, g, border, result, shift):
    """The value (and with ``full`` / ``g`` the map and gradients, as ``result``)
    of a one-pass metric (SSIM, per-pixel MS-SSIM) of the normalised pair."""
    workers = _result_workers(workers)
    metric.plan(*_dummy(L, L.xdtype, L.ydtype, metric.ntap), L, workers)  # validates the options
    n = math.prod(b - a for a, b in (metric.sum_range(k) for k in L.spatial))
    shifts, x, y = _shifts(L, x, y, shift)
    value = _values(L, _plane_sums(L, x, y, metric, workers, shifts), n)
    if not full and not g:
        return value
    m = gx = gy = None
    if full:
        m = _same_size_map(L, x, y, metric, workers, shifts)
        if border == "valid":
            m = _crop(L, m, metric.r)
        m = L.to_user(m)
    if g:
        G = _gradient(L, x, y, metric, workers, g, 1.0 / (n * L.C), shifts)
        gx, gy = (G if g == 3 else ((G, None) if g == 1 else (None, G)))
        gx = None if gx is None else L.to_user(gx)
        gy = None if gy is None else L.to_user(gy)
    return result(value, m, gx, gy)


def _result_workers(workers):
    return DEFAULT_TASK_WORKERS if workers is None else workers


# ---------------------------------------------------------------------------
# public API


def ssim(x, y, *, data_range=None, window="gaussian", sigma=1.5, truncate=3.5, win_size=None,
         K1=0.01, K2=0.03, covariance="population", border="reflect", full=False, gradient=None,
         channel_axis=None, spatial_dims=2, workers=None, shift="block"):
    """SSIM of chunked images, volumes or stacks: :func:`fastssim.ssim` on Dask.

    Same arguments, conventions and value as :func:`fastssim.ssim` (the mean
    of the SSIM map where the whole window fits), for ``x`` and ``y`` dask
    arrays chunked along any axes: spatial axes (one huge image or volume,
    computed with halos) and batch axes (a stack of pairs, ``(N, H, W[, C])``
    chunked along N: one value per pair).  The result is lazy: call
    ``.compute()`` (or ``dask.compute(...)`` on several results) under the
    scheduler you want.

    Parameters
    ----------
    x, y : dask.array.Array or ndarray
        As for :func:`fastssim.ssim`.  A NumPy array becomes a single chunk;
        ``y`` is rechunked to ``x``'s chunks, and spatial chunks narrower than
        the window are merged with their neighbours.  The channel axis is kept
        in one chunk.
    workers : int or None
        Engine threads per Dask task.  None means
        :data:`DEFAULT_TASK_WORKERS` (1) under every scheduler: Dask already
        runs one task per core (threads, processes, a ``distributed`` worker
        per thread), and more engine threads would oversubscribe them; with
        the synchronous scheduler pass ``-1`` to use every core.
    shift : {'block', 'image'}
        About which per-plane shift the engine takes the moments (it
        subtracts a rounded mean of a 32-per-axis sample grid before
        squaring; see the README's "Inputs and memory").  'block' (default):
        every engine call takes its own block's, so the source is read once;
        float32 maps then differ from the in-memory call's by rounding (on a
        ramp image up to 1e-5, while both are within 1.1e-5 of the float64
        map, the block shifts' maps within 2.5e-6: a block's shift lies
        nearer its pixels) and values by ~1e-8 relative.  'image': every block
        takes the whole image's shifts, the in-memory call's, so float32 maps
        are the in-memory maps bit for bit and values differ only by the order
        of the float64 additions; it costs a first pass that slices the
        sample grid out of every chunk, so the source is read (generated,
        decompressed) twice.  float64 results agree to ~1e-15 either way.
    full, gradient, border, ... :
        As for :func:`fastssim.ssim`.

    Returns
    -------
    value : dask.array.Array
        float64, of the batch shape (0-d for one pair); with ``full`` or
        ``gradient`` an :class:`fastssim.SSIMResult` of dask arrays
        ``(value, map, grad_x, grad_y)``.

    Notes
    -----
    The value is summed per chunk and combined in a fixed order, so it is the
    same on every scheduler and, across chunkings, equal to the in-memory
    value up to the order of float64 additions.  The map and each gradient
    are separate passes over the data (each a graph of its own), so asking
    for them costs one more pass each.

    Examples
    --------
    >>> import dask.array as da, fastssim, fastssim.dask
    >>> x = da.random.default_rng(0).random((300, 400), chunks=(128, 128))
    >>> v = fastssim.dask.ssim(x, x * 0.9, data_range=1.0)
    >>> round(float(v.compute()), 6) == round(float(fastssim.ssim(x.compute(), x.compute() * 0.9,
    ...                                                             data_range=1.0)), 6)
    True
    """
    _check_shift(shift)
    g, L, x, y = _windowed_args(x, y, gradient, border, channel_axis, spatial_dims)
    opts = dict(data_range=_resolve_range(data_range, L), window=window, sigma=sigma,
                truncate=truncate, win_size=win_size, K1=K1, K2=K2, covariance=covariance)
    metric = _SSIMMetric(opts)
    _check_fit(metric.ntap, L)
    return _windowed(L, x, y, metric, workers, full, g, border, SSIMResult, shift)


def pixelwise_ms_ssim(x, y, *, data_range=None, sigmas=ZHAO_SIGMAS, truncate=3.5, K1=0.01,
                      K2=0.03, covariance="population", border="reflect", full=False,
                      gradient=None, channel_axis=None, spatial_dims=2, workers=None,
                      shift="block"):
    """Per-pixel MS-SSIM of chunked arrays: :func:`fastssim.pixelwise_ms_ssim` on Dask.

    Same arguments, conventions and value as the in-memory function (the mean
    of the map), computed chunk by chunk with halos of the widest window's
    radius (twice that for the gradient); ``workers``, ``shift`` and the lazy
    results as in :func:`ssim`.

    Returns
    -------
    value : dask.array.Array
        float64 of the batch shape; with ``full`` or ``gradient`` a
        :class:`fastssim.PixelwiseResult` of dask arrays.
    """
    _check_shift(shift)
    g, L, x, y = _windowed_args(x, y, gradient, border, channel_axis, spatial_dims)
    opts = dict(data_range=_resolve_range(data_range, L), sigmas=sigmas, truncate=truncate,
                K1=K1, K2=K2, covariance=covariance)
    metric = _PixelwiseMetric(opts, border)
    _check_fit(metric.ntap, L, f"window of the widest sigma ({_check_sigmas(sigmas)[-1]:g})")
    return _windowed(L, x, y, metric, workers, full, g, border, PixelwiseResult, shift)


# ---------------------------------------------------------------------------
# MS-SSIM: the pyramid as chunked arrays


#: Input elements per band of :meth:`_Down.down` (~1 MiB of float32: kept in the cache).
_DOWN_BAND = 1 << 18


class _Down:
    """The 2x downsampling of one scale as chunk-aligned blocks."""

    def __init__(self, L, spatial, convention, chunks):
        P = max(n % 2 for n in spatial) if convention == "replicate" else 0
        self.maps = [down_axis(n, convention, P) for n in spatial]
        self.in_chunks, self.out_chunks = list(chunks), list(chunks)
        for k, ax in enumerate(L.sax):
            d = self.maps[k]
            bounds = _starts(chunks[ax])[1:-1]
            # output o starts a block if its first source is at a chunk boundary:
            # move every boundary to the first source of the first output at or after it
            os_ = sorted({int(np.searchsorted(d.i0, b)) for b in bounds} - {0, d.n_out})
            ib = [0] + [int(d.i0[o]) for o in os_] + [d.n_in]
            ob = [0] + os_ + [d.n_out]
            self.in_chunks[ax] = tuple(np.diff(ib).tolist())
            self.out_chunks[ax] = tuple(np.diff(ob).tolist())
        self.in_chunks, self.out_chunks = tuple(self.in_chunks), tuple(self.out_chunks)
        self.L = L

    def _ranges(self, block_id):
        out = []
        for k, ax in enumerate(self.L.sax):
            i = block_id[ax]
            c0 = int(_starts(self.in_chunks[ax])[i])
            o0, o1 = (int(v) for v in _starts(self.out_chunks[ax])[i: i + 2])
            out.append((ax, self.maps[k], c0, o0, o1))
        return out

    def out_shape(self, block_id, a):
        """The shape of :meth:`down`'s result for block ``a`` at ``block_id``."""
        shape = list(a.shape)
        for ax, _, _, o0, o1 in self._ranges(block_id):
            shape[ax] = o1 - o0
        return tuple(shape)

    def down(self, a, block_id=None, out=None):
        """One block of the next scale: out[o] = w0 a[i0] + w1 a[i1] per axis.

        In bands of outputs along the first spatial axis, each through every
        axis before the next band (the same arithmetic, element by element):
        a band's first-axis result stays in the cache instead of making a
        half-size array in memory that the next axis reads again.  Every
        axis writes into a buffer made once per call (the last axis into the
        result itself), so a band allocates and copies nothing.  ``out``: an
        array of the result's shape (:meth:`out_shape`) to write it into."""
        ranges = self._ranges(block_id)
        ax, d, c0, o0, o1 = ranges[0]
        row = a.size // max(a.shape[ax], 1)
        band = max(1, _DOWN_BAND // max(row, 1))
        # the shape after each axis (a band's extent along the first)
        shapes, shape = [], list(a.shape)
        for k, (axk, _, _, p0, p1) in enumerate(ranges):
            shape[axk] = min(band, o1 - o0) if axk == ax else p1 - p0
            shapes.append(tuple(shape))
        out_shape = list(shapes[-1])
        out_shape[ax] = o1 - o0
        if out is None:
            out = np.empty(out_shape, dtype=a.dtype)
        scratch = [np.empty(sh, dtype=a.dtype) for sh in shapes[:-1]]
        pre = (slice(None),) * ax
        for p in range(o0, o1, band):
            q = min(p + band, o1)
            lo = int(min(d.i0[p:q].min(), d.i1[p:q].min())) - c0
            hi = int(max(d.i0[p:q].max(), d.i1[p:q].max())) - c0 + 1
            dst = [t[pre + (slice(0, q - p),)] for t in scratch]
            dst.append(out[pre + (slice(p - o0, q - o0),)])
            b = _down_axis(a[pre + (slice(lo, hi),)], ax, d, c0 + lo, p, q, (o0, o1), dst[0])
            for r, o in zip(ranges[1:], dst[1:]):
                b = _down_axis(b, *r, out=o)
        return out

    def up(self, g, block_id=None):
        """The adjoint on one block: fine[i] = u[i] coarse[m[i]] per axis."""
        for ax, d, c0, o0, o1 in self._ranges(block_id):
            c1 = c0 + self.in_chunks[ax][block_id[ax]]
            shape = [1] * g.ndim
            shape[ax] = c1 - c0
            idx = np.clip(d.m[c0:c1] - o0, 0, o1 - o0 - 1)
            g = np.take(g, idx, axis=ax) * d.u[c0:c1].astype(g.dtype).reshape(shape)
        return g


def _down_taken(a, ax, d, c0, o0, o1):
    shape = [1] * a.ndim
    shape[ax] = o1 - o0
    w0 = d.w0[o0:o1].astype(a.dtype).reshape(shape)
    w1 = d.w1[o0:o1].astype(a.dtype).reshape(shape)
    return (np.take(a, d.i0[o0:o1] - c0, axis=ax) * w0
            + np.take(a, d.i1[o0:o1] - c0, axis=ax) * w1)


def _down_axis(a, ax, d, c0, o0, o1, whole=None, out=None):
    """Outputs [o0, o1) of one axis's downsampling of a block starting at input c0:
    strided slices on the operator's regular interior (outputs 2o + shift,
    2o + shift + 1 with 1/2 each), its tables elsewhere; the same arithmetic.
    ``whole``: the outputs (o0, o1) of the block that [o0, o1) is a band of,
    which decides which outputs take which path, as if in one call.  ``out``:
    where to write them (an array of the result's shape), else a new array."""
    wl, wh = whole or (o0, o1)
    rl, rh = max(wl, d.lo), min(wh, d.hi)
    regular = rh - rl >= 2
    rl, rh = max(rl, o0), min(rh, o1)
    if not regular or rh <= rl:
        t = _down_taken(a, ax, d, c0, o0, o1)
        if out is None:
            return t
        out[...] = t
        return out
    if out is None:
        shape = list(a.shape)
        shape[ax] = o1 - o0
        out = np.empty(shape, dtype=a.dtype)
    s = 2 * rl + d.shift - c0
    pre = (slice(None),) * ax
    # 0.5 (a + b), as the engine's regular part (engine_pyramid.h, down_rows):
    # two passes over the output, no temporaries (equal to 0.5 a + 0.5 b but
    # for subnormal results)
    mid = out[pre + (slice(rl - o0, rh - o0),)]
    np.add(a[pre + (slice(s, s + 2 * (rh - rl), 2),)],
           a[pre + (slice(s + 1, s + 1 + 2 * (rh - rl), 2),)], out=mid)
    mid *= a.dtype.type(0.5)
    if rl > o0:
        out[pre + (slice(0, rl - o0),)] = _down_taken(a, ax, d, c0, o0, rl)
    if o1 > rh:
        out[pre + (slice(rh - o0, o1 - o0),)] = _down_taken(a, ax, d, c0, rh, o1)
    return out


def _ms_block_scales(xb, yb, *, L, kw):
    """In-memory MS-SSIM of a block holding whole images: per-plane scale means (*b, C, M)."""
    from ._msssim import ms_ssim as _ms

    r = _ms(xb, yb, return_scales=True, channel_axis=L.cax, spatial_dims=L.sd, **kw)
    s = np.asarray(r.scales)
    return s if L.has_c else s[..., None, :]


def _ms_block_grad(xb, yb, *, L, kw, g):
    from ._msssim import ms_ssim as _ms

    r = _ms(xb, yb, gradient={1: "x", 2: "y", 3: "both"}[g], channel_axis=L.cax,
            spatial_dims=L.sd, **kw)
    if g == 3:
        return np.stack([r.grad_x, r.grad_y])
    return r.grad_x if g == 1 else r.grad_y


def _combine_task(ms, w, negative, want_coef):
    """Value (*b) or coefficients (*b, C, M) from per-plane scale means (*b, C, M)."""
    P = math.prod(ms.shape[:-1])
    v, coef = _combine(ms.reshape(P, ms.shape[-1]), w, negative, want_coef)
    if want_coef:
        return (coef / ms.shape[-2]).reshape(ms.shape)
    return v.reshape(ms.shape[:-1]).mean(axis=-1)


def ms_ssim(x, y, *, data_range=None, weights=WANG_WEIGHTS, window="gaussian", sigma=1.5,
            truncate=3.5, win_size=None, K1=0.01, K2=0.03, covariance="population",
            downsample="symmetric", negative="clamp", fit_scales=False, gradient=None,
            channel_axis=None, spatial_dims=2, workers=None, return_scales=False, shift="block"):
    """MS-SSIM of chunked arrays: :func:`fastssim.ms_ssim` on Dask, pyramid included.

    Same arguments, conventions and value as the in-memory function.  A stack
    chunked only along its batch axes is scored block by block with the
    in-memory function.  Chunks along the spatial axes: every scale of the
    pyramid is a chunked array; scale ``j + 1`` is made from scale ``j``
    block by block after moving each chunk boundary by at most one sample so
    that no 2x2 cell straddles two chunks (the in-memory operator's own
    per-axis tables, so every odd-size convention is exact); each scale's
    mean is summed per chunk with halos as in :func:`ssim` (for the value,
    one task per chunk runs all the scales it holds), and the gradient
    goes back through the adjoint of each downsampling on the same chunks.
    ``workers``, ``shift`` (with 'image', every scale's moments are taken about
    the finest scale's per-plane shifts, as in memory) and the lazy results as
    in :func:`ssim`.

    Returns
    -------
    value : dask.array.Array
        float64 of the batch shape; with ``gradient`` or ``return_scales`` a
        :class:`fastssim.MSSSIMResult` of dask arrays.
    """
    g = _grad_code(gradient)
    _check_shift(shift)
    w = _plan.check_weights(weights)
    if downsample not in CONVENTIONS:
        raise ValueError(f"downsample: expected one of {CONVENTIONS}, got {downsample!r}")
    if negative not in NEGATIVE:
        raise ValueError(f"negative: expected one of {NEGATIVE}, got {negative!r}")
    if not isinstance(fit_scales, (bool, np.bool_)):
        raise TypeError(f"fit_scales: expected a bool, got {fit_scales!r}")
    L = _Layout(x, y, channel_axis, spatial_dims)
    x, y = L.pair()
    workers = _result_workers(workers)
    opts = dict(data_range=_resolve_range(data_range, L), window=window, sigma=sigma,
                truncate=truncate, win_size=win_size, K1=K1, K2=K2, covariance=covariance)
    metric = _SSIMMetric(opts, "cs")
    taps = metric.ntap
    metric.plan(*_dummy(L, L.xdtype, L.ydtype, taps), L, workers)
    w, M = _plan.fit_weights(w, tuple(L.spatial), downsample, taps, fit_scales)  # the in-memory rules
    kw = dict(weights=tuple(w.tolist()), downsample=downsample, workers=workers, **opts)

    spatial_chunked = any(len(x.chunks[ax]) > 1 for ax in L.sax)
    x1, y1 = x, (y if y.chunks == x.chunks else y.rechunk(x.chunks))
    if not spatial_chunked:  # whole images per block: the in-memory function
        chunks = x1.chunks[: L.nb] + ((L.C,), (M,))
        ms = da.map_blocks(_ms_block_scales, x1, y1, L=L, kw=kw, chunks=chunks, dtype=np.float64,
                           drop_axis=list(L.sax) + ([x1.ndim - 1] if L.has_c else []),
                           new_axis=[L.nb, L.nb + 1])
        G = None
        if g:
            G = da.map_blocks(_ms_block_grad, x1, y1, L=L, kw=kw, g=g, dtype=L.ftype,
                              **({"chunks": ((2,),) + x1.chunks, "new_axis": [0]} if g == 3
                                 else {"chunks": x1.chunks}))
            G = (G[0], G[1]) if g == 3 else G
    elif g:
        ms, G = _pyramid(L, x1.astype(L.ftype), y1.astype(L.ftype), opts, w, M, downsample,
                         negative, g, workers, shift)
    else:  # the value: the whole pyramid of a chunk in one task
        ms = _ms_means(L, x1.astype(L.ftype), y1.astype(L.ftype), opts, M, downsample, workers,
                       shift)
    value = da.map_blocks(_combine_task, ms, w=w, negative=negative, want_coef=False, drop_axis=[L.nb, L.nb + 1], dtype=np.float64)
    if not g and not return_scales:
        return value
    gx = gy = None
    if g:
        if callable(G):  # the pyramid's backward needs the coefficients
            coef = da.map_blocks(_combine_task, ms, w=w, negative=negative, want_coef=True, dtype=np.float64)
            G = G(coef)
        gx, gy = (G if g == 3 else ((G, None) if g == 1 else (None, G)))
        gx = None if gx is None else L.to_user(gx)
        gy = None if gy is None else L.to_user(gy)
    # as the in-memory function: the per-scale means come with every result tuple
    return MSSSIMResult(value, gx, gy, ms if L.has_c else ms[..., 0, :])


def _ms_means(L, x, y, opts, M, downsample, workers, shift):
    """Per-plane scale means (*batch, C, M) of the chunked pyramid (see :func:`_chain`)."""
    shifts, x, y = _shifts(L, x, y, shift)
    shapes = pyramid_shapes(tuple(L.spatial), downsample, M)
    metrics = [_SSIMMetric(opts, "cs" if j < M - 1 else "ssim") for j in range(M)]
    nval = np.array([math.prod(n - 2 * m.r for n in s) for m, s in zip(metrics, shapes)],
                    dtype=np.float64)
    ms = _chain(L, x, y, metrics, shapes, downsample, workers, shifts)
    return (ms / nval).rechunk({L.nb + 1: -1})


def _pyramid(L, x, y, opts, w, M, downsample, negative, g, workers, shift):
    """Per-plane scale means (*batch, C, M) of the chunked pyramid and, with a
    gradient, a function of the coefficients that builds it.  With
    ``shift='image'`` every level's moments are taken about the finest level's
    per-plane shifts, as in memory; with 'block' each block's about its own."""
    shifts, x, y = _shifts(L, x, y, shift)
    first = {ax: max(x.chunks[ax]) for ax in L.sax}
    spatial = tuple(L.spatial)
    shapes = pyramid_shapes(spatial, downsample, M)
    nval = []
    levels = []  # (x, y, metric, down) per scale
    for j in range(M):
        metric = _SSIMMetric(opts, "cs" if j < M - 1 else "ssim")
        # coarse scales keep chunks about as large as the first scale's halves
        x = x.rechunk({ax: _merge_small(x.chunks[ax], max(metric.ntap, first[ax] // 2))
                       for ax in L.sax}) if j else x
        x, y = _aligned(L, x, y, metric.ntap)
        Lj = L.at(shapes[j])
        nval.append(math.prod(n - 2 * metric.r for n in shapes[j]))
        d = None
        if j < M - 1:
            d = _Down(Lj, shapes[j], downsample, x.chunks)
        levels.append((Lj, x, y, metric, d))
        if d is not None:
            xa, ya = x.rechunk(d.in_chunks), y.rechunk(d.in_chunks)
            x = da.map_blocks(d.down, xa, chunks=d.out_chunks, dtype=L.ftype)
            y = da.map_blocks(d.down, ya, chunks=d.out_chunks, dtype=L.ftype)
    ms = da.stack([_plane_sums(Lj, xj, yj, met, workers, shifts) / nv
                   for (Lj, xj, yj, met, _), nv in zip(levels, nval)], axis=-1)
    ms = ms.rechunk({L.nb + 1: -1})
    if not g:
        return ms, None

    def backward(coef):
        acc = None
        for j in range(M - 1, -1, -1):
            Lj, xj, yj, met, d = levels[j]
            Gj = _gradient(Lj, xj, yj, met, workers, g, 1.0 / nval[j], shifts)
            cj = coef[(Ellipsis,) + (None,) * L.sd + (slice(None), j)]  # (*batch, 1.., C)
            if not L.has_c:
                cj = cj[..., 0]
            terms = [Gj] if g != 3 else list(Gj)
            terms = [(t * cj).astype(L.ftype) for t in terms]
            if acc is not None:
                acc = [terms[i] + da.map_blocks(d.up, a.rechunk(d.out_chunks), chunks=d.in_chunks,
                                                dtype=L.ftype)
                       for i, a in enumerate(acc)]
            else:
                acc = terms
        return tuple(acc) if g == 3 else acc[0]

    return ms, backward




# ---------------------------------------------------------------------------
# datasets: pairs of image files scored on the cluster

_METRICS = ("ssim", "ms_ssim", "pixelwise_ms_ssim")
_FILE_EXTS = (".npy", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def _list_pairs(xs, ys):
    """[(x path, y path or None, error or None)] from two folders or two lists."""
    xdir = isinstance(xs, (str, os.PathLike)) and os.path.isdir(xs)
    ydir = isinstance(ys, (str, os.PathLike)) and os.path.isdir(ys)
    if xdir != ydir:
        raise TypeError("xs, ys: expected two folders or two sequences of file paths, "
                        f"got {type(xs).__name__} and {type(ys).__name__}")
    if xdir:
        def names(d):
            return {f for f in os.listdir(d) if f.lower().endswith(_FILE_EXTS)
                    and os.path.isfile(os.path.join(d, f))}
        nx, ny = names(xs), names(ys)
        pairs = []
        for f in sorted(nx | ny):
            px, py = os.path.join(os.fspath(xs), f), os.path.join(os.fspath(ys), f)
            if f not in ny:
                pairs.append((px, py, f"{py}: no such file (no partner for {px})"))
            elif f not in nx:
                pairs.append((px, py, f"{px}: no such file (no partner for {py})"))
            else:
                pairs.append((px, py, None))
        return pairs
    for name, s in (("xs", xs), ("ys", ys)):
        if isinstance(s, (str, bytes, os.PathLike)):
            raise ValueError(f"{name}: {os.fspath(s)!r} is not a folder; pass a folder or a "
                             "sequence of file paths")
    xs, ys = [os.fspath(p) for p in xs], [os.fspath(p) for p in ys]
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys: expected as many files in each, got {len(xs)} and {len(ys)}")
    return [(a, b, None) for a, b in zip(xs, ys)]


def _load(path):
    """(array, channel_axis, spatial_dims) of an image file, as ``fastssim compare`` reads it;
    the alpha channel of a picture is dropped."""
    from ._cli_io import read_array as _read_image

    a, picture = _read_image(path)
    if a.ndim == 2:
        return a, None, 2
    if a.ndim == 3 and a.shape[-1] in (1, 2, 3, 4):
        if picture and a.shape[-1] in (2, 4):
            a = a[..., :-1]
        return a, -1, 2
    if a.ndim == 3:
        return a, None, 3
    raise ValueError(f"{path}: expected a 2-D image, an H x W x C image (C <= 4) or a 3-D "
                     f"volume, got shape {a.shape}")


def _score_task(pairs, metric, data_range, options, workers):
    """Rows for a list of pairs: read in the worker, scored in batches of equal geometry,
    every failure a row with its message."""
    import fastssim

    fn = getattr(fastssim, metric)
    rows = [{"x": a, "y": b, "value": math.nan, "error": err} for a, b, err in pairs]
    groups = {}
    for i, (a, b, err) in enumerate(pairs):
        if err is not None:
            continue
        try:
            xa, cax, sd = _load(a)
            ya, _, _ = _load(b)
            if xa.shape != ya.shape:
                raise ValueError(f"the images differ in shape: {a} {xa.shape}, {b} {ya.shape}")
        except Exception as exc:  # a missing or unreadable file is a row, not a crash
            rows[i]["error"] = str(exc) or type(exc).__name__
            continue
        groups.setdefault((xa.shape, xa.dtype.str, ya.dtype.str, cax, sd), []).append((i, xa, ya))

    def score(xb, yb, cax, sd):
        return fn(xb, yb, data_range=data_range, channel_axis=cax, spatial_dims=sd,
                  workers=workers, **options)

    for (_, _, _, cax, sd), items in groups.items():
        try:  # one batch call per geometry
            vals = score(np.stack([t[1] for t in items]), np.stack([t[2] for t in items]),
                         None if cax is None else -1, sd)
            for (i, _, _), v in zip(items, np.atleast_1d(vals)):
                rows[i]["value"] = float(v)
        except Exception:  # find which pair fails, and why
            for i, xa, ya in items:
                try:
                    rows[i]["value"] = float(score(xa, ya, cax, sd))
                except Exception as exc:
                    rows[i]["error"] = f"{type(exc).__name__}: {exc}"
    return rows


def score_files(xs, ys, *, metric="ssim", data_range=None, pairs_per_task=64, workers=None,
                client=None, as_frame=None, **options):
    """Score pairs of image files on a Dask cluster, reading every file in a worker.

    Parameters
    ----------
    xs, ys : path or sequence of paths
        Two folders (files paired by name; a name present in only one folder
        gives an error row) or two equally long sequences of files.  ``.npy``
        files always work; PNG, JPEG, TIFF, BMP, GIF and WebP need imageio or
        Pillow in the workers.  Layouts as ``fastssim compare``: 2-D is grey,
        H x W x C with C <= 4 is colour (the channel values are averaged; a
        picture's alpha channel is dropped), other 3-D arrays are volumes.
    metric : {'ssim', 'ms_ssim', 'pixelwise_ms_ssim'}
        The in-memory function each pair goes through.
    data_range : float, optional
        As for that function (integer images default to their dtype's range;
        float images without it give error rows).
    pairs_per_task : int
        Pairs read and scored per Dask task (64: a task then lasts long enough
        that the scheduler's per-task cost does not show); pairs of one
        geometry within a task are scored in one batch call.
    workers : int or None
        Engine threads per task (None: :data:`DEFAULT_TASK_WORKERS`, 1).
    client : distributed.Client, optional
        Run on this client; by default on the active scheduler (the default
        client if one exists, else Dask's default for delayed tasks).
    as_frame : bool or None
        None: a pandas DataFrame if pandas is installed, else a list of dicts;
        True: a DataFrame (pandas required); False: a list of dicts.
    **options
        Further keyword arguments of the metric (``window``, ``weights``, ...).

    Returns
    -------
    table : pandas.DataFrame or list of dict
        One row per pair, in input order (folders: by file name): ``x``,
        ``y``, ``value`` (float, NaN on error) and ``error`` (None, or the
        message of the missing/unreadable file or rejected pair).
    """
    import inspect

    import fastssim

    if metric not in _METRICS:
        raise ValueError(f"metric: expected one of {_METRICS}, got {metric!r}")
    allowed = set(inspect.signature(getattr(fastssim, metric)).parameters) - {
        "x", "y", "data_range", "channel_axis", "spatial_dims", "workers", "full", "gradient",
        "return_scales", "map_out", "grad_out"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"options: {metric} takes no argument(s) {unknown}; expected some of "
                        f"{sorted(allowed)}")
    if isinstance(pairs_per_task, bool) or not isinstance(pairs_per_task, int) or pairs_per_task < 1:
        raise ValueError(f"pairs_per_task: expected a positive int, got {pairs_per_task!r}")
    if as_frame not in (None, True, False):
        raise TypeError(f"as_frame: expected None, True or False, got {as_frame!r}")
    pd = None
    if as_frame is not False:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise ImportError("as_frame=True needs pandas (pip install pandas)") from None
    pairs = _list_pairs(xs, ys)
    workers = _result_workers(workers)
    tasks = [dask.delayed(_score_task, pure=True)(pairs[i: i + pairs_per_task], metric,
                                                  data_range, options, workers)
             for i in range(0, len(pairs), pairs_per_task)]
    if client is not None:
        parts = client.gather(client.compute(tasks))
    else:
        parts = dask.compute(*tasks)
    rows = [row for part in parts for row in part]
    if pd is not None:
        return pd.DataFrame(rows, columns=["x", "y", "value", "error"])
    return rows
