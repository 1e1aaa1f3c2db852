# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Cython glue of the filter engine: owns buffers and threads.

The arrays that reach this module are already validated by the Python layer
(C-contiguous, native float32/float64, shapes consistent); this layer fills
the C job description, splits the work into (plane, block of lines) units and
runs them with the GIL released over an OpenMP ``prange``.  Each unit writes
its own lines of the map, of the gradient and of the per-line sums, so the
result is bitwise identical for any thread count (the per-line sums are
reduced later, in a fixed order, by the caller).
"""

cimport numpy as cnp
from cython.parallel cimport prange, threadid
from libc.math cimport pow
from libc.stddef cimport ptrdiff_t

import numpy as np

cnp.import_array()

cdef extern from "engine.h" nogil:
    ctypedef struct fs_band:
        int n_in, n_out, r, off, lo, hi
        const void *g
        const void *tab_lo
        const void *tab_hi
        int wlo, whi
        const void *tabt_lo
        const void *tabt_hi

    ctypedef struct fs_down:
        int n_in, n_out
        const int *i0
        const int *i1
        const double *w0
        const double *w1
        int lo, hi, shift
        const int *m
        const double *u
        int alo, ahi, ashift

    ctypedef struct fs_job:
        int n0, n1, n2, o0, o1, o2
        int nci
        ptrdiff_t plane_in, plane_out
        int in_type
        const void *x
        const void *y
        const double *shift_x
        const double *shift_y
        fs_band f0, f1, f2, a0, a1, a2
        int form
        double C1, C2, cov
        void *map
        double *rowsum
        int s0[2]
        int s1[2]
        int s2[2]
        int grad
        const void *wmap
        double wscal
        void *gx
        void *gy
        int ring_r
        void *dx
        void *dy
        const fs_down *dd0
        const fs_down *dd2
        const int *dlast
        ptrdiff_t dplane
        int line_lo, line_hi

    void fs_down_f(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                   const void *inp, void *out, int l0, int l1, void *tmp)
    void fs_down_d(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                   const void *inp, void *out, int l0, int l1, void *tmp)
    void fs_up_f(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                 const void *coarse, void *fine, double coef, int l0, int l1)
    void fs_up_d(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                 const void *coarse, void *fine, double coef, int l0, int l1)
    size_t fs_multi_bytes_f(const fs_job *jobs, int M)
    size_t fs_multi_bytes_d(const fs_job *jobs, int M)
    void fs_rows_multi_f(const fs_job *jobs, int M, ptrdiff_t plane, int q0, int q1,
                         int c_lo, int c_hi, int strip, int nstrip, void *scratch)
    void fs_rows_multi_d(const fs_job *jobs, int M, ptrdiff_t plane, int q0, int q1,
                         int c_lo, int c_hi, int strip, int nstrip, void *scratch)
    void fs_plane_shifts(const void *x, int in_type, int is_double, int nci, ptrdiff_t plane_in,
                         ptrdiff_t P, int n0, int n1, int n2, double *out)
    int fs_openmp_enabled()
    int fs_omp_max_threads()
    const char *fs_simd_path()

FORM_SSIM = 0
FORM_CS = 1
FORM_L = 2
FORM_MEAN = 3
IN_REAL = 0
IN_U8 = 1
IN_U16 = 2
IN_I8 = 3
IN_I16 = 4
IN_F32 = 5
GRAD_X = 1
GRAD_Y = 2


def openmp_enabled():
    return bool(fs_openmp_enabled())


def omp_max_threads():
    return fs_omp_max_threads()


def simd_path():
    return fs_simd_path().decode()


# Scratch buffers are reused across calls: fresh pages are slow to touch
# (the kernel zeroes them on first use), so a call that needs no more than a
# previous one pays nothing.  A buffer is owned by one call at a time.
_pool = []


cdef object _acquire(size_t nbytes):
    # best fit: the smallest pooled buffer that is large enough
    cdef Py_ssize_t i, best = -1
    for i in range(len(_pool)):
        if _pool[i].nbytes >= nbytes and (best < 0 or _pool[i].nbytes < _pool[best].nbytes):
            best = i
    if best >= 0:
        return _pool.pop(best)
    return np.empty(nbytes, dtype=np.uint8)


cdef void _release(object buf):
    # keep up to 8 buffers (a call nests a few: workspace, scratch), the largest
    if len(_pool) < 8:
        _pool.append(buf)
    else:
        _pool.sort(key=lambda b: b.nbytes)
        if _pool[0].nbytes < buf.nbytes:
            _pool[0] = buf


def acquire(size_t nbytes):
    """A pooled uint8 buffer of at least nbytes (for internal temporaries); give it back
    with :func:`release` once nothing refers to it any more."""
    return _acquire(nbytes)


def release(object buf):
    _release(buf)


cdef inline void* _ptr(object a):
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void _fill_band(fs_band *b, object band, list keep):
    b.n_in = band.n_in
    b.n_out = band.n_out
    b.r = band.r
    b.off = band.off
    b.lo = band.lo
    b.hi = band.hi
    keep.extend((band.g, band.tab_lo, band.tab_hi, band.tabt_lo, band.tabt_hi))
    b.g = _ptr(band.g)
    b.tab_lo = _ptr(band.tab_lo)
    b.tab_hi = _ptr(band.tab_hi)
    b.wlo = band.tabt_lo.shape[1]
    b.whi = band.tabt_hi.shape[1]
    b.tabt_lo = _ptr(band.tabt_lo)
    b.tabt_hi = _ptr(band.tabt_hi)


cdef void _fill_down(fs_down *d, object m, list keep):
    d.n_in = m.n_in
    d.n_out = m.n_out
    d.lo, d.hi, d.shift = m.lo, m.hi, m.shift
    d.alo, d.ahi, d.ashift = m.alo, m.ahi, m.ashift
    keep.extend((m.i0, m.i1, m.w0, m.w1, m.m, m.u))
    d.i0 = <const int*>_ptr(m.i0)
    d.i1 = <const int*>_ptr(m.i1)
    d.w0 = <const double*>_ptr(m.w0)
    d.w1 = <const double*>_ptr(m.w1)
    d.m = <const int*>_ptr(m.m)
    d.u = <const double*>_ptr(m.u)


cdef void _fill_job(fs_job *job, object x, object y, tuple dims, int nci, int in_type,
                    tuple fwd, tuple adj, tuple out_shape,
                    int form, double C1, double C2, double cov, object map_out,
                    object rowsum, tuple region, int grad, object wmap, double wscal,
                    object gx, object gy, object shift_x, object shift_y, list keep):
    job.n0, job.n1, job.n2 = dims
    job.o0, job.o1, job.o2 = out_shape
    job.nci = nci
    job.in_type = in_type
    job.plane_in = <ptrdiff_t>job.n0 * job.n1 * job.n2 * nci
    job.plane_out = <ptrdiff_t>job.o0 * job.o1 * job.o2 * nci
    job.x = _ptr(x)
    job.y = _ptr(y)
    job.shift_x = <const double*>_ptr(shift_x)
    job.shift_y = <const double*>_ptr(shift_y)
    _fill_band(&job.f0, fwd[0], keep)
    _fill_band(&job.f1, fwd[1], keep)
    _fill_band(&job.f2, fwd[2], keep)
    _fill_band(&job.a0, adj[0], keep)
    _fill_band(&job.a1, adj[1], keep)
    _fill_band(&job.a2, adj[2], keep)
    job.form = form
    job.C1, job.C2, job.cov = C1, C2, cov
    job.map = _ptr(map_out)
    job.rowsum = <double*>_ptr(rowsum)
    job.s0[0], job.s0[1] = region[0]
    job.s1[0], job.s1[1] = region[1]
    job.s2[0], job.s2[1] = region[2]
    job.grad = grad
    job.wmap = _ptr(wmap)
    job.wscal = wscal
    job.gx = _ptr(gx)
    job.gy = _ptr(gy)
    job.ring_r = 0
    job.dx = NULL
    job.dy = NULL
    job.dd0 = NULL
    job.dd2 = NULL
    job.dlast = NULL
    job.dplane = 0
    job.line_lo = 0
    job.line_hi = 0


# Column strips of 2-D images: the rings of filtered lines of one unit should
# stay in the L2 cache; wide images and many windows are cut into strips of
# columns (a fixed function of the geometry, never of the thread count).
cdef size_t _ring_budget = 1 << 20
cdef int _strip_override = 0


cdef int _units_per_thread = 0


def set_units_per_thread(int k):
    """Units of work per thread a launch aims at (0: automatic, 2 for values and 1
    for gradients); for tuning and tests."""
    global _units_per_thread
    _units_per_thread = k if k > 0 else 0


def set_strip_width(int width):
    """Force the column-strip width (0: automatic); for tests of the strip seams."""
    global _strip_override
    _strip_override = width


cdef int _strip_width(fs_job *jobs, int M, int grad, int ncols, size_t esz):
    cdef int j, rmax = 0
    cdef size_t per_col = 0
    if jobs[0].n1 != 1:
        return ncols  # volumes: one strip
    if _strip_override > 0:
        return _strip_override
    for j in range(M):
        if jobs[j].f0.r > rmax:
            rmax = jobs[j].f0.r
    for j in range(M):
        per_col += 4 * (2 * jobs[j].f0.r + 4) * esz
        if grad:
            per_col += 4 * (jobs[j].f0.r + rmax + 8) * esz
    # a gradient's strips also recompute the map columns within reach of
    # their edges (2r of every window), so they pay only for very wide lines
    cdef size_t w = (_ring_budget * (8 if grad else 1)) // per_col
    w = (w // 64) * 64
    if w < 128:
        w = 128
    if w >= <size_t>ncols:
        return ncols
    return <int>w


ctypedef struct _group:
    int M, P                    # windows of the group (jobs[first .. first+M)), planes
    int first
    int start, stop             # lines to run
    int per_block, nblk, nstrip, swidth, ncols, nunits
    long long work


cdef int _group_lines(fs_job *job, int grad, int has_map, tuple region, _group *g):
    # Lines to run: input lines for a gradient, else the output lines needed.
    if grad:
        g.start, g.stop = 0, job.n0
    elif has_map:
        g.start, g.stop = 0, job.o0
    else:
        g.start, g.stop = region[0]
    g.work = <long long>g.P * (g.stop - g.start) * job.n1 * job.n2
    return g.stop > g.start and g.P > 0


cdef void _group_units(fs_job *jobs, _group *g, int grad, int n_threads, int want_units,
                       size_t esz):
    """Split one group into (plane, block of lines, column strip) units."""
    cdef fs_job *job = &jobs[g.first]
    cdef int j, rmax = 0
    for j in range(g.first, g.first + g.M):
        if jobs[j].f0.r > rmax:
            rmax = jobs[j].f0.r
    cdef int nlines = g.stop - g.start
    g.ncols = job.n2 if grad else job.o2
    g.swidth = _strip_width(job, g.M, grad, g.ncols, esz)
    g.nstrip = (g.ncols + g.swidth - 1) // g.swidth
    for j in range(g.first, g.first + g.M):
        jobs[j].line_lo = g.start
        jobs[j].line_hi = g.stop
        if g.nstrip > 1:  # a strip owns no whole rows: no fused downsampling
            jobs[j].dx = NULL
            jobs[j].dy = NULL
    # Blocks at least 8 windows tall (each recomputes 2r lines at its ends),
    # about want_units units, and, when there are fewer units than a few
    # rounds, a multiple of the thread count (2 of 3 threads idle at the end
    # of a 3-block image would cost a third of the time).
    cdef int min_lines = (8 if grad else 4) * (2 * rmax + 1)
    cdef int per_strip = g.P * g.nstrip
    cdef int max_blk = nlines // min_lines
    if max_blk < 1:
        max_blk = 1
    cdef int nblk = (want_units + per_strip - 1) // per_strip
    if nblk > max_blk:
        nblk = max_blk
    if nblk < 1:
        nblk = 1
    while nblk > 1 and (per_strip * nblk) % n_threads != 0:
        nblk -= 1
    g.per_block = (nlines + nblk - 1) // nblk
    g.nblk = (nlines + g.per_block - 1) // g.per_block
    g.nunits = g.P * g.nblk * g.nstrip


cdef int _launch_groups(fs_job *jobs, _group *groups, int G, int grad, int n_threads,
                        int use_double) except -1:
    """Run groups of jobs (one group = one window or a product of windows over the
    same planes) as one pool of units over the threads.

    Groups are independent (the coarse scales of an MS-SSIM pyramid, say): one
    parallel launch instead of one per group, and the small groups fill the
    threads that the large ones leave idle.  Units run in group order, so put
    the largest group first.
    """
    cdef int k, j
    cdef long long total = 0
    cdef size_t esz = 8 if use_double else 4
    for k in range(G):
        total += groups[k].work
    if total < 8192:
        n_threads = 1
    # about two units per thread in all (one for a gradient: its units
    # recompute 4r lines at each seam), shared out by work
    cdef int per = _units_per_thread if _units_per_thread > 0 else (1 if grad else 2)
    cdef int want
    for k in range(G):
        want = per * n_threads
        if G > 1:
            want = <int>((per * n_threads * groups[k].work + total // 2) // total)
        _group_units(jobs, &groups[k], grad, n_threads, want, esz)

    cdef size_t sbytes = 0, sb
    for k in range(G):
        if use_double:
            sb = fs_multi_bytes_d(&jobs[groups[k].first], groups[k].M)
        else:
            sb = fs_multi_bytes_f(&jobs[groups[k].first], groups[k].M)
        if sb > sbytes:
            sbytes = sb
    sbytes = (sbytes + 127) & ~(<size_t>63)
    # per-strip line sums, reduced over the strips in order afterwards
    cdef list parts = [None] * G
    cdef double *saved[8]
    cdef int ustart[9]
    ustart[0] = 0
    for k in range(G):
        ustart[k + 1] = ustart[k] + groups[k].nunits
        saved[k] = jobs[groups[k].first].rowsum
        if saved[k] != NULL and groups[k].nstrip > 1:
            parts[k] = np.zeros(<ptrdiff_t>groups[k].P * jobs[groups[k].first].o0
                                * groups[k].nstrip, dtype=np.float64)
            for j in range(groups[k].first, groups[k].first + groups[k].M):
                jobs[j].rowsum = <double*>_ptr(parts[k])
    cdef int nunits = ustart[G]
    bufobj = _acquire(sbytes * n_threads + 64)
    cdef char *buf = <char*>_ptr(bufobj)
    cdef int u, v, b, q0, q1, st, c_lo, c_hi, rest
    cdef _group *g
    try:
        with nogil:
            for u in prange(nunits, num_threads=n_threads, schedule='dynamic'):
                k = 0
                while u >= ustart[k + 1]:
                    k = k + 1
                g = &groups[k]
                v = u - ustart[k]
                b = v // (g.nblk * g.nstrip)
                rest = v % (g.nblk * g.nstrip)
                st = rest % g.nstrip
                q0 = g.start + (rest // g.nstrip) * g.per_block
                q1 = q0 + g.per_block
                if q1 > g.stop:
                    q1 = g.stop
                c_lo = st * g.swidth
                c_hi = c_lo + g.swidth
                if c_hi > g.ncols:
                    c_hi = g.ncols
                if use_double:
                    fs_rows_multi_d(&jobs[g.first], g.M, b, q0, q1, c_lo, c_hi, st, g.nstrip,
                                    buf + threadid() * sbytes)
                else:
                    fs_rows_multi_f(&jobs[g.first], g.M, b, q0, q1, c_lo, c_hi, st, g.nstrip,
                                    buf + threadid() * sbytes)
    finally:
        _release(bufobj)
        for k in range(G):
            for j in range(groups[k].first, groups[k].first + groups[k].M):
                jobs[j].rowsum = saved[k]
    cdef Py_ssize_t n
    for k in range(G):
        if parts[k] is not None:
            n = groups[k].P * jobs[groups[k].first].o0
            total_k = parts[k].reshape(n, groups[k].nstrip).sum(axis=1)
            np.copyto(np.asarray(<double[:n]>saved[k]), total_k)
    return 0


cdef _launch(fs_job *jobs, int M, int P, int grad, int has_map, tuple region,
             int n_threads, int use_double):
    """One group of M windows; returns True if the fused downsampling was done."""
    cdef _group g
    g.M, g.P, g.first = M, P, 0
    if not _group_lines(jobs, grad, has_map, region, &g):
        return False
    _launch_groups(jobs, &g, 1, grad, n_threads, use_double)
    return jobs[0].dx != NULL


def shifts(object x, object y, int P, tuple dims, int nci, int in_type, int use_double):
    """The per-plane shifts (float64 arrays (P,)) that :func:`run` computes when
    it is not given them; a pyramid computes them once for all its levels."""
    return _shifts(x, y, P, dims, nci, in_type, use_double)


cdef tuple _shifts(object x, object y, int P, tuple dims, int nci, int in_type,
                   int use_double):
    """Per-plane shifts of x and y (see fs_plane_shifts)."""
    sx = np.empty(P, dtype=np.float64)
    sy = np.empty(P, dtype=np.float64)
    cdef int n0 = dims[0], n1 = dims[1], n2 = dims[2]
    cdef ptrdiff_t item = <ptrdiff_t>n0 * n1 * n2 * nci
    cdef void *px = _ptr(x)
    cdef void *py = _ptr(y)
    cdef double *psx = <double*>_ptr(sx)
    cdef double *psy = <double*>_ptr(sy)
    with nogil:
        fs_plane_shifts(px, in_type, use_double, nci, item, P, n0, n1, n2, psx)
        fs_plane_shifts(py, in_type, use_double, nci, item, P, n0, n1, n2, psy)
    return sx, sy


def run(object x, object y, int P, tuple dims, int nci, int in_type, int use_double,
        tuple fwd, tuple adj, tuple out_shape, int form,
        double C1, double C2, double cov, object map_out, object rowsum,
        tuple region, int grad, object wmap, double wscal, object gx, object gy,
        int n_threads, object shift_x=None, object shift_y=None, object down=None):
    """Run the engine over P planes of x, y with dims (n0, n1, n2).

    nci: 1 for contiguous planes, or the number of interleaved channels (the
    arrays' last axis).  in_type: element type of x, y (IN_*), the compute
    type being float64 if use_double else float32.
    fwd, adj: the three forward and adjoint bands (axis 0, 1, 2).
    out_shape: (o0, o1, o2).  region: ((a0, b0), (a1, b1), (a2, b2)), in
    output coordinates, of the line sums and of the scalar cotangent.
    map_out, wmap (in the layout of x, output extents), rowsum (P, o0),
    gx/gy (the layout of x, compute type): C-contiguous arrays or None.
    down: None, or (dx, dy, (row map, column map), dlast) to write the 2x
    downsampled planes of x and y while streaming (2-D planes of the compute
    type only).  Returns True if that fused downsampling was done.
    """
    cdef fs_job job
    cdef list keep = []
    if shift_x is None:
        shift_x, shift_y = _shifts(x, y, P, dims, nci, in_type, use_double)
    cdef fs_down d0, d2
    _fill_job(&job, x, y, dims, nci, in_type, fwd, adj, out_shape, form, C1, C2, cov,
              map_out, rowsum, region, grad, wmap, wscal, gx, gy, shift_x, shift_y, keep)
    if down is not None:
        dx, dy, maps, dlast = down
        _fill_down(&d0, maps[0], keep)
        _fill_down(&d2, maps[1], keep)
        keep.extend((dx, dy, dlast))
        job.dx = _ptr(dx)
        job.dy = _ptr(dy)
        job.dd0 = &d0
        job.dd2 = &d2
        job.dlast = <const int*>_ptr(dlast)
        job.dplane = <ptrdiff_t>d0.n_out * d2.n_out
    return _launch(&job, 1, P, grad, map_out is not None, region, n_threads, use_double)


def run_multi(object x, object y, int P, tuple dims, int nci, int in_type, int use_double,
              list scales, tuple out_shape, double C1, double C2,
              object map_out, object rowsum, tuple region, int grad, object wmap,
              double wscal, object gx, object gy, int n_threads, object shift_x=None,
              object shift_y=None):
    """The product of several windows' forms (per-pixel MS-SSIM) in one stream.

    scales: list of (fwd, adj, form, cov), at most 8; the map and the line sums
    are of the product, the gradient that of sum_p w(p) * product(p).
    """
    cdef int M = len(scales)
    if M < 1 or M > 8:
        raise ValueError(f"run_multi: 1 to 8 scales, got {M}")
    cdef fs_job jobs[8]
    cdef list keep = []
    cdef int j, rmax = 0
    if shift_x is None:
        shift_x, shift_y = _shifts(x, y, P, dims, nci, in_type, use_double)
    for j in range(M):
        fwd, adj, form, cov = scales[j]
        _fill_job(&jobs[j], x, y, dims, nci, in_type, fwd, adj, out_shape, form, C1, C2, cov,
                  map_out, rowsum, region, grad, wmap, wscal, gx, gy, shift_x, shift_y, keep)
        if jobs[j].f0.r > rmax:
            rmax = jobs[j].f0.r
    for j in range(M):
        jobs[j].ring_r = rmax
    _launch(jobs, M, P, grad, map_out is not None, region, n_threads, use_double)


def run_many(list specs, int use_double, int n_threads, object shifts=None):
    """Independent single-window runs in one parallel launch (see _launch_groups).

    specs: up to 8 tuples (x, y, P, dims, nci, in_type, fwd, adj, out_shape,
    form, C1, C2, cov, map_out, rowsum, region, grad, wmap, wscal, gx, gy),
    the arguments of :func:`run`, all with the same compute type and the same
    ``grad``; the largest first.  No fused downsampling.  If ``shifts`` is
    given, the (shift_x, shift_y) of every run, else computed per run.
    """
    cdef int G = len(specs)
    if G < 1 or G > 8:
        raise ValueError(f"run_many: 1 to 8 runs, got {G}")
    cdef fs_job jobs[8]
    cdef _group groups[8]
    cdef list keep = []
    cdef int k, n = 0, grad = specs[0][16]
    for k in range(G):
        (x, y, P, dims, nci, in_type, fwd, adj, out_shape, form, C1, C2, cov, map_out,
         rowsum, region, g, wmap, wscal, gx, gy) = specs[k]
        if g != grad:
            raise ValueError("run_many: every run needs the same gradient flag")
        if shifts is None:
            shift_x, shift_y = _shifts(x, y, P, dims, nci, in_type, use_double)
        else:
            shift_x, shift_y = shifts
        keep.extend((shift_x, shift_y))
        _fill_job(&jobs[n], x, y, dims, nci, in_type, fwd, adj, out_shape, form, C1, C2, cov,
                  map_out, rowsum, region, grad, wmap, wscal, gx, gy, shift_x, shift_y, keep)
        groups[n].M = 1
        groups[n].P = P
        groups[n].first = n
        if _group_lines(&jobs[n], grad, map_out is not None, region, &groups[n]):
            n += 1
    if n:
        _launch_groups(jobs, groups, n, grad, n_threads, use_double)


cdef void _fill_maps(fs_down *d0, fs_down *d1, fs_down *d2, tuple maps, list keep):
    _fill_down(d0, maps[0], keep)
    _fill_down(d1, maps[1], keep)
    _fill_down(d2, maps[2], keep)


# The pyramid passes are memory-bound: below this many samples one thread does it.
cdef long long _PYRAMID_SERIAL = 65536


def down(object x, object out, tuple maps, int n_threads):
    """2x mean downsampling of planes x (P, n0, n1, n2) into out (P, o0, o1, o2)."""
    cdef fs_down d0, d1, d2
    cdef list keep = []
    _fill_maps(&d0, &d1, &d2, maps, keep)
    cdef int P = x.shape[0], o0 = out.shape[1]
    cdef ptrdiff_t pin = <ptrdiff_t>x.shape[1] * x.shape[2] * x.shape[3]
    cdef ptrdiff_t pout = <ptrdiff_t>out.shape[1] * out.shape[2] * out.shape[3]
    cdef size_t tmpn = <size_t>x.shape[2] * x.shape[3] + x.shape[3] + 16
    cdef int use_double = x.dtype == np.float64
    cdef size_t esz = 8 if use_double else 4
    cdef int per = 32
    cdef int nblk = (o0 + per - 1) // per
    cdef int nunits = P * nblk
    if <long long>P * pin < _PYRAMID_SERIAL:
        n_threads = 1
    bufobj = _acquire(tmpn * esz * n_threads + 64)
    cdef char *buf = <char*>_ptr(bufobj)
    cdef char *xin = <char*>_ptr(x)
    cdef char *xout = <char*>_ptr(out)
    cdef int u, b, l0, l1
    try:
        with nogil:
            for u in prange(nunits, num_threads=n_threads, schedule='dynamic'):
                b = u // nblk
                l0 = (u % nblk) * per
                l1 = l0 + per
                if l1 > o0:
                    l1 = o0
                if use_double:
                    fs_down_d(&d0, &d1, &d2, xin + b * pin * esz, xout + b * pout * esz,
                              l0, l1, buf + threadid() * tmpn * esz)
                else:
                    fs_down_f(&d0, &d1, &d2, xin + b * pin * esz, xout + b * pout * esz,
                              l0, l1, buf + threadid() * tmpn * esz)
    finally:
        _release(bufobj)


def down_chain(list xs, list ys, list maps, int n_threads):
    """Several 2x downsamplings in a row, of x and of y at once: xs[l + 1] =
    down(xs[l]) with maps[l] (likewise ys), planes (P, n0, n1, n2) at each level.

    The small levels of a pyramid: one launch, one (plane, side) per thread,
    instead of two launches per level.
    """
    cdef int L = len(maps)
    if L < 1 or L > 16 or len(xs) != L + 1 or len(ys) != L + 1:
        raise ValueError("down_chain: 1 to 16 levels, with L + 1 arrays on each side")
    cdef fs_down dd[48]
    cdef char *px[17]
    cdef char *py[17]
    cdef ptrdiff_t plane[17]
    cdef int rows[17]
    cdef list keep = []
    cdef int l, P = xs[0].shape[0]
    cdef int use_double = xs[0].dtype == np.float64
    cdef size_t esz = 8 if use_double else 4
    cdef size_t tmpn = <size_t>xs[0].shape[2] * xs[0].shape[3] + xs[0].shape[3] + 16
    for l in range(L + 1):
        px[l] = <char*>_ptr(xs[l])
        py[l] = <char*>_ptr(ys[l])
        plane[l] = <ptrdiff_t>xs[l].shape[1] * xs[l].shape[2] * xs[l].shape[3]
        rows[l] = xs[l].shape[1]
    for l in range(L):
        _fill_maps(&dd[3 * l], &dd[3 * l + 1], &dd[3 * l + 2], maps[l], keep)
    if 2 * P < n_threads:
        n_threads = 2 * P
    bufobj = _acquire(tmpn * esz * n_threads + 64)
    cdef char *buf = <char*>_ptr(bufobj)
    cdef char *src
    cdef char *dst
    cdef int u, b
    try:
        with nogil:
            for u in prange(2 * P, num_threads=n_threads, schedule='dynamic'):
                b = u // 2
                for l in range(L):
                    if u % 2 == 0:
                        src = px[l] + b * plane[l] * esz
                        dst = px[l + 1] + b * plane[l + 1] * esz
                    else:
                        src = py[l] + b * plane[l] * esz
                        dst = py[l + 1] + b * plane[l + 1] * esz
                    if use_double:
                        fs_down_d(&dd[3 * l], &dd[3 * l + 1], &dd[3 * l + 2], src, dst,
                                  0, rows[l + 1], buf + threadid() * tmpn * esz)
                    else:
                        fs_down_f(&dd[3 * l], &dd[3 * l + 1], &dd[3 * l + 2], src, dst,
                                  0, rows[l + 1], buf + threadid() * tmpn * esz)
    finally:
        _release(bufobj)


NEG_CLAMP = 0
NEG_SIMPLE = 1
NEG_NONE = 2


def ms_combine(const double[:, ::1] m, const double[::1] w, int negative, bint want_coef):
    """MS-SSIM from its per-scale means m (P, M): value[p] = prod_j f(m_pj)^w_j
    with the negative-value policy f (NEG_*), and, if asked, coef[p, j] =
    d value[p] / d m_pj from the product of the *other* factors (prefix and
    suffix products, never value / f(m_j): finite as an f(m_j) -> 0).
    Returns (value (P,), coef (P, M) or None).  One call, after the engine
    has streamed the images through the caches: a dozen small NumPy calls
    would each miss in them.
    """
    cdef Py_ssize_t P = m.shape[0], M = m.shape[1], p, j
    if w.shape[0] != M or M > 64:
        raise ValueError("ms_combine: one weight per scale, at most 64 scales")
    value = np.empty(P, dtype=np.float64)
    cdef double[::1] v = value
    coef = np.empty((P, M), dtype=np.float64) if want_coef else None
    cdef double[:, ::1] c
    if want_coef:
        c = coef
    cdef double f[64]
    cdef double df[64]
    cdef double pw[64]
    cdef double pre, suf, prod
    for p in range(P):
        prod = 1.0
        for j in range(M):
            if negative == 0:
                f[j] = 0.0 if m[p, j] <= 0 else m[p, j]  # NaN stays NaN
                df[j] = 1.0 if m[p, j] > 0 else 0.0
            elif negative == 1:
                f[j] = (m[p, j] + 1.0) / 2.0
                df[j] = 0.5
            else:
                f[j] = m[p, j]
                df[j] = 1.0
            pw[j] = pow(f[j], w[j])
            prod = prod * pw[j]
        v[p] = prod
        if want_coef:
            pre = 1.0
            for j in range(M):  # prefix products, then times the suffix products
                c[p, j] = pre
                pre = pre * pw[j]
            suf = 1.0
            for j in range(M - 1, -1, -1):
                # d f^w / d f = w f^(w-1); zero where the weight or the policy's slope is
                if w[j] == 0 or df[j] == 0:
                    c[p, j] = 0.0
                else:
                    c[p, j] = w[j] * pow(f[j], w[j] - 1.0) * df[j] * c[p, j] * suf
                suf = suf * pw[j]
    return value, coef


def up_chain(list levels, object coef, list maps, int n_threads):
    """The gradient through a pyramid: levels[M-1] *= coef[:, M-1], then for
    j = M-2 .. 0, levels[j] = coef[:, j] * levels[j] + D_j^T levels[j+1]
    (planes (P, n0, n1, n2); coef (P, M) float64; maps[j] the downsampling
    from level j to j+1).  levels[0] ends as the gradient; the coarser levels
    are overwritten on the way.  One call instead of one per level.
    """
    cdef int M = len(levels)
    if M < 1 or M > 17 or len(maps) != M - 1:
        raise ValueError("up_chain: 1 to 17 levels and one map triple per step")
    cdef fs_down dd[48]
    cdef char *lv[17]
    cdef ptrdiff_t plane[17]
    cdef int rows[17]
    cdef list keep = []
    cdef int j, P = levels[0].shape[0]
    cdef int use_double = levels[0].dtype == np.float64
    cdef size_t esz = 8 if use_double else 4
    cdef const double[:, ::1] cf = coef
    for j in range(M):
        lv[j] = <char*>_ptr(levels[j])
        plane[j] = <ptrdiff_t>levels[j].shape[1] * levels[j].shape[2] * levels[j].shape[3]
        rows[j] = levels[j].shape[1]
    for j in range(M - 1):
        _fill_maps(&dd[3 * j], &dd[3 * j + 1], &dd[3 * j + 2], maps[j], keep)
    cdef int per = 64, nblk, nunits, nt, u, b, l0, l1
    cdef ptrdiff_t i
    cdef float *pf
    cdef double *pd
    cdef double c
    with nogil:
        for b in range(P):  # the coarsest level: scaled in place (small)
            c = cf[b, M - 1]
            if use_double:
                pd = <double*>(lv[M - 1] + b * plane[M - 1] * esz)
                for i in range(plane[M - 1]):
                    pd[i] = pd[i] * c
            else:
                pf = <float*>(lv[M - 1] + b * plane[M - 1] * esz)
                for i in range(plane[M - 1]):
                    pf[i] = pf[i] * <float>c
        for j in range(M - 2, -1, -1):
            nblk = (rows[j] + per - 1) // per
            nunits = P * nblk
            nt = n_threads if <long long>P * plane[j] >= _PYRAMID_SERIAL else 1
            for u in prange(nunits, num_threads=nt, schedule='dynamic'):
                b = u // nblk
                l0 = (u % nblk) * per
                l1 = l0 + per
                if l1 > rows[j]:
                    l1 = rows[j]
                if use_double:
                    fs_up_d(&dd[3 * j], &dd[3 * j + 1], &dd[3 * j + 2],
                            lv[j + 1] + b * plane[j + 1] * esz, lv[j] + b * plane[j] * esz,
                            cf[b, j], l0, l1)
                else:
                    fs_up_f(&dd[3 * j], &dd[3 * j + 1], &dd[3 * j + 2],
                            lv[j + 1] + b * plane[j + 1] * esz, lv[j] + b * plane[j] * esz,
                            cf[b, j], l0, l1)


def up(object coarse, object fine, object coef, tuple maps, int n_threads):
    """fine = coef[p] * fine + D^T coarse, per plane p (the adjoint of ``down``)."""
    cdef fs_down d0, d1, d2
    cdef list keep = []
    _fill_maps(&d0, &d1, &d2, maps, keep)
    cdef int P = fine.shape[0], n0 = fine.shape[1]
    cdef ptrdiff_t pin = <ptrdiff_t>fine.shape[1] * fine.shape[2] * fine.shape[3]
    cdef ptrdiff_t pout = <ptrdiff_t>coarse.shape[1] * coarse.shape[2] * coarse.shape[3]
    cdef int use_double = fine.dtype == np.float64
    cdef size_t esz = 8 if use_double else 4
    cdef double[::1] cf = coef
    cdef int per = 64
    cdef int nblk = (n0 + per - 1) // per
    cdef int nunits = P * nblk
    if <long long>P * pin < _PYRAMID_SERIAL:
        n_threads = 1
    cdef char *cin = <char*>_ptr(coarse)
    cdef char *fout = <char*>_ptr(fine)
    cdef int u, b, l0, l1
    with nogil:
        for u in prange(nunits, num_threads=n_threads, schedule='dynamic'):
            b = u // nblk
            l0 = (u % nblk) * per
            l1 = l0 + per
            if l1 > n0:
                l1 = n0
            if use_double:
                fs_up_d(&d0, &d1, &d2, cin + b * pout * esz, fout + b * pin * esz, cf[b], l0, l1)
            else:
                fs_up_f(&d0, &d1, &d2, cin + b * pout * esz, fout + b * pin * esz, cf[b], l0, l1)
