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
from libc.string cimport memcpy, memset
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport intptr_t
from libc.stdlib cimport malloc, free

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
        int refl

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
        int sum_chunk
        void *dx
        void *dy
        const fs_down *dd0
        const fs_down *dd2
        const int *dlast
        ptrdiff_t dplane
        int line_lo, line_hi

    void fs_down_f(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                   const void *inp, int in_type, int nci, void *out, int l0, int l1, void *tmp)
    void fs_down_d(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                   const void *inp, int in_type, int nci, void *out, int l0, int l1, void *tmp)
    void fs_up_f(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                 const void *coarse, void *fine, int nci, double coef, int l0, int l1,
                 void *tmp)
    void fs_up_d(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                 const void *coarse, void *fine, int nci, double coef, int l0, int l1,
                 void *tmp)
    void fs_down_inplace_f(const fs_down *d0, const fs_down *d1, const fs_down *d2, void *io,
                           ptrdiff_t P, ptrdiff_t plane_in, ptrdiff_t plane_out, void *tmp)
    void fs_down_inplace_d(const fs_down *d0, const fs_down *d1, const fs_down *d2, void *io,
                           ptrdiff_t P, ptrdiff_t plane_in, ptrdiff_t plane_out, void *tmp)
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

    # enums and limits: written once, in engine.h
    enum: FS_FORM_SSIM, FS_FORM_CS, FS_FORM_L, FS_FORM_MEAN
    enum: FS_GRAD_X, FS_GRAD_Y
    enum: FS_IN_REAL, FS_IN_U8, FS_IN_U16, FS_IN_I8, FS_IN_I16, FS_IN_F32
    enum: FS_NEG_CLAMP, FS_NEG_SIMPLE, FS_NEG_NONE
    enum: FS_MAXW, FS_MAX_SCALES, FS_MAX_GROUPS

FORM_SSIM = FS_FORM_SSIM
FORM_CS = FS_FORM_CS
FORM_L = FS_FORM_L
FORM_MEAN = FS_FORM_MEAN
IN_REAL = FS_IN_REAL
IN_U8 = FS_IN_U8
IN_U16 = FS_IN_U16
IN_I8 = FS_IN_I8
IN_I16 = FS_IN_I16
IN_F32 = FS_IN_F32
GRAD_X = FS_GRAD_X
GRAD_Y = FS_GRAD_Y
NEG_CLAMP = FS_NEG_CLAMP
NEG_SIMPLE = FS_NEG_SIMPLE
NEG_NONE = FS_NEG_NONE
MAX_WINDOWS = FS_MAXW        # windows of one EngineCall (the per-pixel MS-SSIM's scales)
MAX_SCALES = FS_MAX_SCALES   # scales of a Pyramid
MAX_GROUPS = FS_MAX_GROUPS   # groups of jobs in one launch


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
    b.refl = 1 if band.reflect else 0


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


cdef void _fill_window(fs_job *job, tuple dims, int nci, Window w, tuple out_shape,
                       tuple region, list keep):
    """The geometry of one window's job (extents, bands, form, sum region);
    every other field zero (no inputs, outputs, downsampling or gradient)."""
    memset(job, 0, sizeof(fs_job))
    job.n0, job.n1, job.n2 = dims
    job.o0, job.o1, job.o2 = out_shape
    job.nci = nci
    job.plane_in = <ptrdiff_t>job.n0 * job.n1 * job.n2 * nci
    job.plane_out = <ptrdiff_t>job.o0 * job.o1 * job.o2 * nci
    _fill_band(&job.f0, w.fwd[0], keep)
    _fill_band(&job.f1, w.fwd[1], keep)
    _fill_band(&job.f2, w.fwd[2], keep)
    _fill_band(&job.a0, w.adj[0], keep)
    _fill_band(&job.a1, w.adj[1], keep)
    _fill_band(&job.a2, w.adj[2], keep)
    job.form = w.form
    job.cov = w.cov
    job.s0[0], job.s0[1] = region[0]
    job.s1[0], job.s1[1] = region[1]
    job.s2[0], job.s2[1] = region[2]


cdef void _fill_call(fs_job *job, EngineCall c):
    """The data of a call (inputs, shifts, constants, outputs, cotangent) into
    a job whose geometry _fill_window wrote (c holds the arrays it points to)."""
    job.in_type = c.in_type
    job.x = _ptr(c.x)
    job.y = _ptr(c.y)
    job.shift_x = <const double*>_ptr(c.shift_x)
    job.shift_y = <const double*>_ptr(c.shift_y)
    job.C1, job.C2 = c.C1, c.C2
    job.map = _ptr(c.map_out)
    job.rowsum = <double*>_ptr(c.rowsum)
    job.grad = c.grad
    job.wmap = _ptr(c.wmap)
    job.wscal = c.wscal
    job.gx = _ptr(c.gx)
    job.gy = _ptr(c.gy)


cdef inline int _check_array(object a, str name, bint optional) except -1:
    if not (cnp.PyArray_Check(a) or (optional and a is None)):
        raise TypeError(f"EngineCall: {name} must be a NumPy array, got {type(a).__name__}")
    return 0


cdef class Window:
    """One window of an :class:`EngineCall`: its forward and adjoint bands
    (axes 0, 1, 2; fastssim._bands), its form (FORM_*) and covariance factor."""
    cdef readonly tuple fwd, adj
    cdef readonly int form
    cdef readonly double cov

    def __init__(self, *, tuple fwd, tuple adj, int form, double cov=1.0):
        if len(fwd) != 3 or len(adj) != 3:
            raise ValueError("Window: fwd and adj are three bands each (axes 0, 1, 2)")
        if form not in (FS_FORM_SSIM, FS_FORM_CS, FS_FORM_L, FS_FORM_MEAN):
            raise ValueError(f"Window: form must be one of FORM_*, got {form}")
        self.fwd, self.adj, self.form, self.cov = fwd, adj, form, cov


cdef class EngineCall:
    """One run of the engine over P planes, filled by name (fastssim._core
    builds it; :meth:`run` executes it; the outputs are read back by name).

    x, y: the inputs (planes (P, *spatial), or nci interleaved channels,
    C-contiguous; element type ``in_type`` (IN_*), the compute type float64
    if ``use_double`` else float32), dims (n0, n1, n2) their spatial extents
    (2-D: n1 = 1).  windows: 1 to MAX_WINDOWS :class:`Window`; the map and the
    line sums are of the product of their forms, the gradient that of
    sum_p w(p) * product(p).  out_shape (o0, o1, o2): the map's extents;
    region ((a0, b0), (a1, b1), (a2, b2)), in output coordinates, of the line
    sums and of the scalar cotangent ``wscal`` (when ``wmap`` is None).
    map_out, wmap (x's layout, output extents), rowsum ((P, o0) float64, the
    per-line sums), gx, gy (x's layout, compute type): arrays or None.
    grad: 0 or GRAD_X | GRAD_Y.  shift_x, shift_y: per-plane shifts (float64
    (P,)), computed by :meth:`run` when None.  xsel, ysel: None, or batch
    broadcasting: item i reads item xsel[i] of x and ysel[i] of y (intp
    arrays of P / nci entries; shift_x and shift_y must then be given).
    """
    cdef public object x, y, map_out, rowsum, wmap, gx, gy, shift_x, shift_y, xsel, ysel
    cdef public Py_ssize_t P
    cdef public tuple dims, out_shape, region
    cdef public list windows
    cdef public int nci, in_type, grad
    cdef public bint use_double
    cdef public double C1, C2, wscal

    def __init__(self, *, x, y, Py_ssize_t P, tuple dims, int in_type, bint use_double,
                 list windows, tuple out_shape, tuple region, double C1, double C2,
                 rowsum, int nci=1, map_out=None, int grad=0, wmap=None, double wscal=0.0,
                 gx=None, gy=None, shift_x=None, shift_y=None, xsel=None, ysel=None):
        self.x, self.y, self.P, self.dims, self.nci = x, y, P, dims, nci
        self.in_type, self.use_double = in_type, use_double
        self.windows, self.out_shape, self.region = windows, out_shape, region
        self.C1, self.C2, self.rowsum, self.map_out = C1, C2, rowsum, map_out
        self.grad, self.wmap, self.wscal, self.gx, self.gy = grad, wmap, wscal, gx, gy
        self.shift_x, self.shift_y, self.xsel, self.ysel = shift_x, shift_y, xsel, ysel

    cdef int _check(self) except -1:
        # C-level checks (cnp.PyArray_*): a call's own overhead stays small
        cdef Py_ssize_t M = len(self.windows)
        if M < 1 or M > FS_MAXW:
            raise ValueError(f"EngineCall: 1 to {FS_MAXW} windows, got {M}")
        for w in self.windows:
            if not isinstance(w, Window):
                raise TypeError(f"EngineCall: windows must be Window objects, got {type(w).__name__}")
        if len(self.dims) != 3 or len(self.out_shape) != 3 or len(self.region) != 3:
            raise ValueError("EngineCall: dims, out_shape and region need three axes")
        if self.in_type < FS_IN_REAL or self.in_type > FS_IN_F32:
            raise ValueError(f"EngineCall: in_type must be one of IN_*, got {self.in_type}")
        if self.grad & ~(FS_GRAD_X | FS_GRAD_Y):
            raise ValueError(f"EngineCall: grad must be 0 or GRAD_X | GRAD_Y, got {self.grad}")
        if self.nci < 1 or self.P < 0 or self.P % self.nci:
            raise ValueError(f"EngineCall: P ({self.P}) must be a multiple of nci ({self.nci})")
        if (self.grad & FS_GRAD_X and self.gx is None) or (self.grad & FS_GRAD_Y and self.gy is None):
            raise ValueError("EngineCall: grad asks for a gradient array that is None")
        _check_array(self.x, "x", False)
        _check_array(self.y, "y", False)
        _check_array(self.map_out, "map_out", True)
        _check_array(self.wmap, "wmap", True)
        _check_array(self.gx, "gx", True)
        _check_array(self.gy, "gy", True)
        _check_array(self.shift_x, "shift_x", True)
        _check_array(self.shift_y, "shift_y", True)
        cdef cnp.ndarray rs
        if isinstance(self.rowsum, np.ndarray):
            rs = self.rowsum
        if (rs is None or cnp.PyArray_TYPE(rs) != cnp.NPY_DOUBLE or cnp.PyArray_NDIM(rs) != 2
                or cnp.PyArray_DIM(rs, 0) != self.P or cnp.PyArray_DIM(rs, 1) != self.out_shape[0]
                or not cnp.PyArray_IS_C_CONTIGUOUS(rs)):
            raise ValueError(f"EngineCall: rowsum must be a C-contiguous float64 array of "
                             f"shape {(self.P, self.out_shape[0])}")
        if self.xsel is not None and self.shift_x is None:
            raise ValueError("EngineCall: a broadcast run needs its shifts")
        return 0

    def run(self, int n_threads):
        """Run the call on n_threads threads; fills map_out, rowsum, gx, gy."""
        self._check()
        cdef int M = len(self.windows), j, rmax = 0
        cdef fs_job jobs[FS_MAXW]
        cdef list keep = []
        cdef int own_shifts = self.shift_x is None
        if own_shifts:  # each plane's own, filled by the launch (_launch_groups)
            self.shift_x = np.empty(self.P, dtype=np.float64)
            self.shift_y = np.empty(self.P, dtype=np.float64)
        for j in range(M):
            _fill_window(&jobs[j], self.dims, self.nci, self.windows[j], self.out_shape,
                         self.region, keep)
            _fill_call(&jobs[j], self)
            if jobs[j].f0.r > rmax:
                rmax = jobs[j].f0.r
        # the h-rings of every window are sized for lines made as far ahead as
        # the widest window needs (for one window, its own radius either way)
        for j in range(M):
            jobs[j].ring_r = rmax
        _launch(jobs, M, self.P, self.grad, self.map_out is not None, self.region, n_threads,
                self.use_double, self.xsel, self.ysel, own_shifts)


# Column strips of 2-D images: the rings of filtered lines of one unit should
# stay in the L2 cache; wide images and many windows are cut into strips of
# columns (a fixed function of the geometry, never of the thread count).
cdef size_t _ring_budget = 1 << 20
# a value unit's per-column footprint (rings and moment blocks) should fit in
# this much (3/4 of a 2 MiB L2): the per-pixel MS-SSIM value at 1024^2 runs
# 10 % faster in 4 strips of 256 than in one (measured; 8.5 % at 2048^2)
cdef size_t _value_budget = 3 << 19
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
    cdef size_t w, rr, nstrip
    for j in range(M):
        if jobs[j].f0.r > rmax:
            rmax = jobs[j].f0.r
    if not grad and M > 1:
        # Several windows (the per-pixel MS-SSIM): per window the h-ring (r +
        # how far ahead lines are made + a block of 16) and the block of 16
        # moment lines, 4 sources each (fs_layout).  (One window keeps the
        # older, wider strips: its value and its gradient pass then split the
        # same images, so their sums add in the same order.)
        for j in range(M):
            rr = max(jobs[j].ring_r, jobs[j].f0.r)
            per_col += 4 * (jobs[j].f0.r + rr + 32) * esz
        w = _value_budget // per_col
        if w >= <size_t>ncols:
            return ncols
        if w < 128:
            w = 128
        # strips of nearly equal width, a multiple of 16, the last one not
        # narrower than 64 columns (a sliver would run scalar code)
        nstrip = (ncols + w - 1) // w
        w = (((ncols + nstrip - 1) // nstrip + 15) // 16) * 16
        while w < <size_t>ncols and ncols - ((ncols + w - 1) // w - 1) * w < 64:
            w += 16
        return <int>(w if w < <size_t>ncols else ncols)
    for j in range(M):
        per_col += 4 * (2 * jobs[j].f0.r + 4) * esz
        if grad:
            per_col += 4 * (jobs[j].f0.r + rmax + 8) * esz
    # a gradient's strips also recompute the map columns within reach of
    # their edges (2r of every window), so they pay only for very wide lines
    w = (_ring_budget * (8 if grad else 1)) // per_col
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
                       size_t esz, int alone):
    """Split one group into (plane, block of lines, column strip) units."""
    cdef fs_job *job = &jobs[g.first]
    cdef int j, rmax = 0
    for j in range(g.first, g.first + g.M):
        if jobs[j].f0.r > rmax:
            rmax = jobs[j].f0.r
    cdef int nlines = g.stop - g.start
    g.ncols = job.n2 if grad else job.o2
    g.swidth = _strip_width(job, g.M, grad, g.ncols, esz)
    cdef int sw
    if grad and g.swidth < g.ncols and job.n1 == 1 and job.f2.off == 0:
        # gradient strips made of whole value strips (see sum_chunk)
        sw = _strip_width(job, g.M, 0, job.o2, esz)
        if sw < job.o2 and g.swidth > sw:
            g.swidth = (g.swidth // sw) * sw
    g.nstrip = (g.ncols + g.swidth - 1) // g.swidth
    for j in range(g.first, g.first + g.M):
        jobs[j].line_lo = g.start
        jobs[j].line_hi = g.stop
        if g.nstrip > 1:  # a strip owns no whole rows: no fused downsampling
            jobs[j].dx = NULL
            jobs[j].dy = NULL
    # Blocks at least 8 windows tall (4 for values: each recomputes 2r lines,
    # a gradient's 4r, at its ends), about want_units units; but as many as
    # the threads need down to 3 windows (2 for values) tall, since an idle
    # thread costs more than the recomputation.  When there are fewer units
    # than a few rounds, their count is a multiple of the thread count where
    # the heights allow (2 of 3 threads idle at the end of a 3-block image
    # would cost a third of the time; 3 channels on 2 threads, a quarter).
    cdef int K = 2 * rmax + 1
    cdef int per_strip = g.P * g.nstrip
    cdef int max_blk = nlines // ((8 if grad else 4) * K)
    cdef int fill = nlines // ((3 if grad else 2) * K)
    cdef int need = (n_threads + per_strip - 1) // per_strip
    if not alone:  # a group among others: they fill the threads together
        fill = 0
    if fill > need:
        fill = need
    if max_blk < fill:
        max_blk = fill
    if max_blk < 1:
        max_blk = 1
    cdef int nblk = (want_units + per_strip - 1) // per_strip
    if nblk > max_blk:
        nblk = max_blk
    if nblk < 1:
        nblk = 1
    cdef int up = nblk
    while alone and up < max_blk and (per_strip * up) % n_threads != 0:
        up += 1
    if alone and (per_strip * up) % n_threads == 0:
        nblk = up
    else:
        while nblk > 1 and (per_strip * nblk) % n_threads != 0:
            nblk -= 1
    g.per_block = (nlines + nblk - 1) // nblk
    g.nblk = (nlines + g.per_block - 1) // g.per_block
    g.nunits = g.P * g.nblk * g.nstrip


cdef int _check_groups(const _group *groups, int G, int njobs) except -1:
    """The bounds _launch_groups relies on: 1 to FS_MAX_GROUPS groups, each
    of 1 to FS_MAXW windows lying in jobs[0 .. njobs), and no negative counts."""
    cdef int k
    if G < 1 or G > FS_MAX_GROUPS:
        raise ValueError(f"engine launch: 1 to {FS_MAX_GROUPS} groups of jobs, got {G}")
    for k in range(G):
        if groups[k].M < 1 or groups[k].M > FS_MAXW:
            raise ValueError(f"engine launch: group {k} has {groups[k].M} windows, "
                             f"expected 1 to {FS_MAXW}")
        if groups[k].first < 0 or groups[k].first + groups[k].M > njobs:
            raise ValueError(f"engine launch: group {k} spans jobs [{groups[k].first}, "
                             f"{groups[k].first + groups[k].M}), outside the {njobs} given")
        if groups[k].P < 0 or groups[k].start < 0 or groups[k].stop < groups[k].start:
            raise ValueError(f"engine launch: group {k} has a negative plane or line count")
    return 0


def check_groups(list groups, int njobs):
    """The launch bounds of :func:`_launch_groups` for ``groups``, a list of
    (first, M, P, start, stop), over ``njobs`` jobs: raises ValueError where a
    launch would overrun (for tests; the launches check themselves)."""
    cdef int G = len(groups), k
    cdef _group *g = <_group*>malloc(max(G, 1) * sizeof(_group))
    if g == NULL:
        raise MemoryError()
    try:
        for k in range(G):
            g[k].first, g[k].M, g[k].P, g[k].start, g[k].stop = groups[k]
        _check_groups(g, G, njobs)
    finally:
        free(g)


cdef int _launch_groups(fs_job *jobs, int njobs, _group *groups, int G, int grad,
                        int n_threads, int use_double, const ptrdiff_t *xsel=NULL,
                        const ptrdiff_t *ysel=NULL, ptrdiff_t sel_step=0,
                        int own_shifts=0, object scratch=None) except -1:
    """Run groups of jobs (one group = one window or a product of windows over the
    same planes) as one pool of units over the threads.

    Groups are independent (the coarse scales of an MS-SSIM pyramid, say): one
    parallel launch instead of one per group, and the small groups fill the
    threads that the large ones leave idle.  Units run in group order, so put
    the largest group first.

    Batch broadcasting (xsel, ysel not NULL): item i (plane p = i * nci + c)
    of the launch reads item xsel[i] of x and ysel[i] of y, sel_step bytes
    per item, instead of item i of both; every output (map, gradients, sums)
    keeps the launch's own items.  The engine reads x and y at one offset per
    plane, so each unit runs on a per-thread copy of its jobs whose x and y
    addresses are moved by (sel[i] - i) items: a zero-stride batch axis costs
    no copy of the input.

    own_shifts (one group, no broadcasting): the launch fills the per-plane
    shifts that jobs[0].shift_x, shift_y point to.  Where every plane is one
    unit (small images), a unit is a batch of whole items instead: it takes
    its planes' shifts (fs_plane_shifts, a plane's own bits whatever the
    batch), then streams them while they are still in cache (a separate pass
    read a batch of 32^2 images from memory twice, and its per-plane launch
    and set-up cost more than the arithmetic; callgrind).  Otherwise the
    shifts are taken before the units run.

    scratch (optional): a uint8 buffer the caller owns, used for the
    per-thread scratch if it is large enough (else one is taken from the pool
    as usual): MS-SSIM's gradient lays scale 0's scratch and then the level-1
    gradients plus scale 1's scratch over the same pages (Pyramid.run).
    """
    _check_groups(groups, G, njobs)
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
        _group_units(jobs, &groups[k], grad, n_threads, want, esz, G == 1)

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
    cdef double *saved[FS_MAX_GROUPS]
    cdef int ustart[FS_MAX_GROUPS + 1]
    ustart[0] = 0
    cdef int nparts[FS_MAX_GROUPS]
    cdef fs_job *J0
    for k in range(G):
        ustart[k + 1] = ustart[k] + groups[k].nunits
        J0 = &jobs[groups[k].first]
        saved[k] = J0.rowsum
        nparts[k] = groups[k].nstrip
        if saved[k] != NULL and grad and J0.n1 == 1 and (groups[k].nstrip == 1
                                                         or J0.f2.off == 0):
            # a gradient pass sums its lines in the value pass's strips (same
            # geometry; its own strips are whole value strips), so the two
            # values are the same bits
            sw = _strip_width(J0, groups[k].M, 0, J0.o2, esz)
            if sw < J0.o2 and (groups[k].nstrip == 1 or groups[k].swidth % sw == 0):
                nparts[k] = (J0.o2 + sw - 1) // sw
                for j in range(groups[k].first, groups[k].first + groups[k].M):
                    jobs[j].sum_chunk = sw
        if saved[k] != NULL and nparts[k] > 1:
            parts[k] = np.zeros(<ptrdiff_t>groups[k].P * J0.o0 * nparts[k], dtype=np.float64)
            for j in range(groups[k].first, groups[k].first + groups[k].M):
                jobs[j].rowsum = <double*>_ptr(parts[k])
    cdef int nunits = ustart[G]
    # items per unit when units are plane batches (0: units of lines)
    cdef int batch = 0, items = 0, i0, i1
    if own_shifts and G == 1 and xsel == NULL:
        items = groups[0].P // jobs[0].nci
        if groups[0].nblk == 1 and groups[0].nstrip == 1 and items > 1:
            # the summing lanes of fs_plane_shifts (8 planes) per unit, fewer
            # when that leaves under 4 units per thread (a plane's bits do not
            # depend on its batch)
            batch = (_SHIFT_LANES + jobs[0].nci - 1) // jobs[0].nci
            if items < 4 * n_threads * batch:
                batch = max(1, items // (4 * n_threads))
            nunits = (items + batch - 1) // batch
    if own_shifts and batch == 0:
        with nogil:
            _shifts_into(jobs, use_double, 0, groups[0].P // jobs[0].nci, n_threads)
    cdef bint pooled = scratch is None or <size_t>scratch.nbytes < sbytes * n_threads + 64
    bufobj = _acquire(sbytes * n_threads + 64) if pooled else scratch
    cdef char *buf = <char*>_ptr(bufobj)
    cdef int u, v, b, q0, q1, st, c_lo, c_hi, rest, it, jj
    cdef _group *g
    cdef fs_job *tls = NULL
    cdef fs_job *jp
    cdef fs_job *jl
    if xsel != NULL:
        tls = <fs_job*>malloc(<size_t>n_threads * FS_MAXW * sizeof(fs_job))
        if tls == NULL:
            if pooled:
                _release(bufobj)
            raise MemoryError()
    try:
        with nogil:
            for u in prange(nunits, num_threads=n_threads, schedule='dynamic'):
                if batch:  # items [i0, i1): their shifts, then each plane whole
                    i0 = u * batch
                    i1 = i0 + batch
                    if i1 > items:
                        i1 = items
                    _shifts_items(jobs, use_double, i0, i1)
                    g = &groups[0]
                    for b in range(i0 * jobs[0].nci, i1 * jobs[0].nci):
                        if use_double:
                            fs_rows_multi_d(jobs, g.M, b, g.start, g.stop, 0, g.ncols, 0, 1,
                                            buf + threadid() * sbytes)
                        else:
                            fs_rows_multi_f(jobs, g.M, b, g.start, g.stop, 0, g.ncols, 0, 1,
                                            buf + threadid() * sbytes)
                    continue
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
                jp = &jobs[g.first]
                if xsel != NULL:
                    jl = tls + threadid() * FS_MAXW
                    memcpy(jl, jp, g.M * sizeof(fs_job))
                    it = b // jp.nci
                    for jj in range(g.M):
                        jl[jj].x = <const void*>(<intptr_t>jl[jj].x + (xsel[it] - it) * sel_step)
                        jl[jj].y = <const void*>(<intptr_t>jl[jj].y + (ysel[it] - it) * sel_step)
                    jp = jl
                if use_double:
                    fs_rows_multi_d(jp, g.M, b, q0, q1, c_lo, c_hi, st, g.nstrip,
                                    buf + threadid() * sbytes)
                else:
                    fs_rows_multi_f(jp, g.M, b, q0, q1, c_lo, c_hi, st, g.nstrip,
                                    buf + threadid() * sbytes)
    finally:
        free(tls)
        if pooled:
            _release(bufobj)
        for k in range(G):
            for j in range(groups[k].first, groups[k].first + groups[k].M):
                jobs[j].rowsum = saved[k]
                jobs[j].sum_chunk = 0
    cdef Py_ssize_t n
    for k in range(G):
        if parts[k] is not None:
            n = groups[k].P * jobs[groups[k].first].o0
            total_k = parts[k].reshape(n, nparts[k]).sum(axis=1)
            np.copyto(np.asarray(<double[:n]>saved[k]), total_k)
    return 0


cdef _launch(fs_job *jobs, int M, int P, int grad, int has_map, tuple region,
             int n_threads, int use_double, object xsel=None, object ysel=None,
             int own_shifts=0):
    """One group of M windows over P planes (xsel, ysel, own_shifts: see
    _launch_groups)."""
    cdef _group g
    g.M, g.P, g.first = M, P, 0
    cdef const ptrdiff_t *px = NULL
    cdef const ptrdiff_t *py = NULL
    cdef ptrdiff_t step = 0
    if xsel is not None:
        step = _sel(jobs, P, xsel, ysel, use_double)
        px = <const ptrdiff_t*>_ptr(xsel)
        py = <const ptrdiff_t*>_ptr(ysel)
    if _group_lines(jobs, grad, has_map, region, &g):
        _launch_groups(jobs, M, &g, 1, grad, n_threads, use_double, px, py, step, own_shifts)
    elif own_shifts:  # nothing to run: the shifts all the same
        with nogil:
            _shifts_into(jobs, use_double, 0, P // jobs[0].nci, n_threads)


cdef inline ptrdiff_t _in_esz(int in_type, int use_double) nogil:
    """Bytes per input element of type in_type (FS_IN_*) in the compute type."""
    if in_type == FS_IN_REAL:
        return 8 if use_double else 4
    if in_type == FS_IN_F32:
        return 4
    if in_type == FS_IN_U16 or in_type == FS_IN_I16:
        return 2
    return 1


cdef ptrdiff_t _sel(fs_job *job, int P, object xsel, object ysel, int use_double) except -1:
    """Checks the item maps of a broadcast launch (intp, C-contiguous, one
    entry per item: P / nci of them, each a valid item of its input, as the
    Python layer guarantees); returns the bytes between items of x and y."""
    cdef Py_ssize_t n = P // job.nci
    for a in (xsel, ysel):
        if (not isinstance(a, np.ndarray) or a.dtype != np.intp or a.ndim != 1
                or a.shape[0] != n or not a.flags.c_contiguous):
            raise ValueError("engine: xsel/ysel must be C-contiguous intp arrays of one entry per item")
    return job.plane_in * _in_esz(job.in_type, use_double)


def shifts(object x, object y, int P, tuple dims, int nci, int in_type, int use_double,
           int n_threads=1):
    """The per-plane shifts (float64 arrays (P,)) that :func:`run` computes when
    it is not given them; a pyramid computes them once for all its levels."""
    return _shifts(x, y, P, dims, nci, in_type, use_double, n_threads)


# Shifts of many planes: chunks of this many items per unit of a parallel
# loop (each plane's shift is its own: any split gives the same bits), and
# below this many grid samples in all, one thread.
cdef int _SHIFT_ITEMS = 64
cdef long long _SHIFT_SERIAL = 1 << 16
# planes summed at once by fs_plane_shifts (FS_SHIFT_LANES in engine.c)
cdef int _SHIFT_LANES = 8


cdef inline void _shifts_items(const fs_job *job, int use_double, int a, int e) noexcept nogil:
    """The shifts of items [a, e) of job's x and y (fs_plane_shifts) into
    job.shift_x, shift_y (plane-indexed)."""
    cdef ptrdiff_t step = _in_esz(job.in_type, use_double) * job.plane_in
    fs_plane_shifts(<const char*>job.x + a * step, job.in_type, use_double, job.nci,
                    job.plane_in, <ptrdiff_t>(e - a) * job.nci, job.n0, job.n1, job.n2,
                    <double*>job.shift_x + <ptrdiff_t>a * job.nci)
    fs_plane_shifts(<const char*>job.y + a * step, job.in_type, use_double, job.nci,
                    job.plane_in, <ptrdiff_t>(e - a) * job.nci, job.n0, job.n1, job.n2,
                    <double*>job.shift_y + <ptrdiff_t>a * job.nci)


cdef inline long long _grid_len(int n) noexcept nogil:
    """Samples of fs_plane_shifts' grid along an axis of n: every max(1, n // 32)-th."""
    cdef int s = n // 32 if n // 32 > 1 else 1
    return (n + s - 1) // s


cdef void _shifts_into(const fs_job *job, int use_double, int i0, int i1,
                       int n_threads) noexcept nogil:
    """_shifts_items of items [i0, i1) in chunks of _SHIFT_ITEMS items, in
    parallel when there are many (each plane's shift is its own: any split
    gives the same bits), on one thread below _SHIFT_SERIAL grid samples."""
    cdef long long grid = _grid_len(job.n0) * _grid_len(job.n1) * _grid_len(job.n2)
    cdef int nchunk = (i1 - i0 + _SHIFT_ITEMS - 1) // _SHIFT_ITEMS
    cdef int u, a, e
    if n_threads < 1 or nchunk < 2 or grid * (i1 - i0) * job.nci < _SHIFT_SERIAL:
        n_threads = 1
    if n_threads > nchunk:
        n_threads = nchunk
    if n_threads <= 1:
        _shifts_items(job, use_double, i0, i1)
        return
    for u in prange(nchunk, num_threads=n_threads, schedule='static'):
        a = i0 + u * _SHIFT_ITEMS
        e = a + _SHIFT_ITEMS
        if e > i1:
            e = i1
        _shifts_items(job, use_double, a, e)


cdef tuple _shifts(object x, object y, int P, tuple dims, int nci, int in_type,
                   int use_double, int n_threads=1):
    """Per-plane shifts of x and y (see fs_plane_shifts), over the items in
    parallel when there are many."""
    sx = np.empty(P, dtype=np.float64)
    sy = np.empty(P, dtype=np.float64)
    cdef fs_job job  # the fields _shifts_into reads
    memset(&job, 0, sizeof(fs_job))
    job.n0, job.n1, job.n2 = dims
    job.nci = nci
    job.plane_in = <ptrdiff_t>job.n0 * job.n1 * job.n2 * nci
    job.in_type = in_type
    job.x = _ptr(x)
    job.y = _ptr(y)
    job.shift_x = <const double*>_ptr(sx)
    job.shift_y = <const double*>_ptr(sy)
    cdef int items = P // nci if nci > 0 else 0
    with nogil:
        _shifts_into(&job, use_double, 0, items, n_threads)
    return sx, sy


cdef void _fill_maps(fs_down *d0, fs_down *d1, fs_down *d2, tuple maps, list keep):
    _fill_down(d0, maps[0], keep)
    _fill_down(d1, maps[1], keep)
    _fill_down(d2, maps[2], keep)


# The pyramid passes are memory-bound: below this many samples one thread does it.
cdef long long _PYRAMID_SERIAL = 65536


cdef int _down_chain(fs_down *dd, char **px, char **py, ptrdiff_t *plane, int *rows, int L,
                     int P, int use_double, size_t tmpn, int n_threads,
                     const ptrdiff_t *xsel=NULL, const ptrdiff_t *ysel=NULL,
                     int in_type=FS_IN_REAL, int nci=1) except -1:
    """L 2x downsamplings in a row, of x and of y at once: level l + 1 =
    down(level l) with the maps dd[3l .. 3l+2]; px[l], py[l] the planes of
    level l (plane[l] elements each, rows[l] lines).  One launch, one (plane,
    side) per thread: the small levels of a pyramid.  The first level may be
    the caller's input read in place: elements of type in_type, nci
    interleaved channels (plane b is channel b % nci of item b // nci); with
    xsel, ysel (batch broadcasting, not NULL) item i of the run reads item
    xsel[i] of px[0] (ysel[i] of py[0])."""
    cdef size_t esz = 8 if use_double else 4
    cdef ptrdiff_t in_esz = _in_esz(in_type, use_double)
    if 2 * P < n_threads:
        n_threads = 2 * P
    bufobj = _acquire(tmpn * esz * n_threads + 64)
    cdef char *buf = <char*>_ptr(bufobj)
    cdef char *s
    cdef char *d
    cdef int u, b, l, lt, ln
    cdef ptrdiff_t it
    try:
        with nogil:
            for u in prange(2 * P, num_threads=n_threads, schedule='dynamic'):
                b = u // 2
                for l in range(L):
                    lt = in_type if l == 0 else FS_IN_REAL
                    ln = nci if l == 0 else 1
                    if l == 0:  # item, then the channel's first sample
                        it = b // nci
                        if u % 2 == 0 and xsel != NULL:
                            it = xsel[it]
                        elif u % 2 == 1 and ysel != NULL:
                            it = ysel[it]
                        s = (px[0] if u % 2 == 0 else py[0]) + (
                            it * plane[0] * nci + b % nci) * in_esz
                    else:
                        s = (px[l] if u % 2 == 0 else py[l]) + b * plane[l] * esz
                    d = (px[l + 1] if u % 2 == 0 else py[l + 1]) + b * plane[l + 1] * esz
                    if use_double:
                        fs_down_d(&dd[3 * l], &dd[3 * l + 1], &dd[3 * l + 2], s, lt, ln, d,
                                  0, rows[l + 1], buf + threadid() * tmpn * esz)
                    else:
                        fs_down_f(&dd[3 * l], &dd[3 * l + 1], &dd[3 * l + 2], s, lt, ln, d,
                                  0, rows[l + 1], buf + threadid() * tmpn * esz)
    finally:
        _release(bufobj)
    return 0


cdef inline char *_align64(char *p):
    return p + ((64 - <size_t>p % 64) % 64)


cdef size_t _scratch_bytes(fs_job *job, int use_double, int n_threads):
    """The scratch _launch_groups takes for one window over n_threads threads
    (its per-thread size, rounded as there)."""
    cdef size_t sb = fs_multi_bytes_d(job, 1) if use_double else fs_multi_bytes_f(job, 1)
    return ((sb + 127) & ~(<size_t>63)) * n_threads + 64


cdef int _down_inplace(fs_down *dd, char *px, char *py, ptrdiff_t plane_in,
                       ptrdiff_t plane_out, int P, int use_double, size_t tmpn,
                       int n_threads) except -1:
    """One 2x downsampling of the planar levels px and py (P planes each) in
    place, x and y on one thread each (fs_down_inplace: planes in order): the
    gradient's pyramid reuses level 1's memory for the coarser levels."""
    cdef size_t esz = 8 if use_double else 4
    if n_threads > 2:
        n_threads = 2
    bufobj = _acquire(tmpn * esz * 2 + 64)
    cdef char *buf = <char*>_ptr(bufobj)
    cdef int u
    cdef char *io
    try:
        with nogil:
            for u in prange(2, num_threads=n_threads, schedule='static'):
                io = px if u == 0 else py
                if use_double:
                    fs_down_inplace_d(&dd[0], &dd[1], &dd[2], io, P, plane_in, plane_out,
                                      buf + u * tmpn * esz)
                else:
                    fs_down_inplace_f(&dd[0], &dd[1], &dd[2], io, P, plane_in, plane_out,
                                      buf + u * tmpn * esz)
    finally:
        _release(bufobj)
    return 0


cdef int _up_chain(fs_down *dd, char **lv, ptrdiff_t *plane, int *rows, int M, int P,
                   const double *coef, int use_double, int n_threads, int nci=1,
                   size_t tmpn=0) except -1:
    """The gradient through a pyramid: level M-1 *= coef[:, M-1], then for
    j = M-2 .. 0, level j = coef[:, j] * level j + D_j^T level j+1 (coef (P, M)
    row-major; dd[3j ..] the maps from level j to j+1).  Level 0 ends as the
    gradient; the coarser ones are overwritten on the way.  Level 0 may be in
    the caller's interleaved layout (nci channels; tmpn >= its line length)."""
    cdef size_t esz = 8 if use_double else 4
    cdef int per = 64, nblk, nunits, nt, u, b, l0, l1, j, ln
    cdef ptrdiff_t i
    cdef float *pf
    cdef double *pd
    cdef double c
    cdef char *fine
    cdef char *tmp = NULL
    bufobj = None
    if nci > 1:
        bufobj = _acquire(tmpn * esz * n_threads + 64)
        tmp = <char*>_ptr(bufobj)
    try:
        with nogil:
            for b in range(P):  # the coarsest level: scaled in place (small)
                c = coef[b * M + M - 1]
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
                ln = nci if j == 0 else 1
                for u in prange(nunits, num_threads=nt, schedule='dynamic'):
                    b = u // nblk
                    l0 = (u % nblk) * per
                    l1 = l0 + per
                    if l1 > rows[j]:
                        l1 = rows[j]
                    fine = lv[j] + ((b // ln) * plane[j] * ln + b % ln) * esz
                    if use_double:
                        fs_up_d(&dd[3 * j], &dd[3 * j + 1], &dd[3 * j + 2],
                                lv[j + 1] + b * plane[j + 1] * esz, fine, ln,
                                coef[b * M + j], l0, l1,
                                (tmp + threadid() * tmpn * esz) if tmp != NULL else NULL)
                    else:
                        fs_up_f(&dd[3 * j], &dd[3 * j + 1], &dd[3 * j + 2],
                                lv[j + 1] + b * plane[j + 1] * esz, fine, ln,
                                coef[b * M + j], l0, l1,
                                (tmp + threadid() * tmpn * esz) if tmp != NULL else NULL)
    finally:
        if bufobj is not None:
            _release(bufobj)
    return 0


def _layout(sizes, int grad, int inplace):
    """Byte offsets {(k, j): offset} in a Pyramid's workspace of level j >= 1 of
    x (k = 0), y (1) and their gradients (2, 3; those asked for), sizes[j]
    bytes each, 64-byte aligned, the workspace's size, and the size of a
    second buffer (0: none) that holds the level-1 gradients, whose offsets
    (k, 1) are then into it.

    Without ``inplace`` every array has its own place.  With it (a gradient,
    3 or more scales), the memory follows the lifetimes: levels 1 of x and y
    (written while scale 0 streams, read by scale 1) make a region A; the
    gradients of level 1 (written by scale 1, read by the backward pass) get a
    buffer of their own, which Pyramid.run first lends to scale 0's launch as
    its scratch (dead by the time scale 1 writes them) and whose tail is the
    scratch of the later launches; level 2 of x and y is made in place at the
    start of their level 1 (Pyramid.run), and every coarser level and
    gradient goes first-fit into what that leaves free in A, else after A."""
    cdef int M = len(sizes), j, k
    al = lambda v: (v + 63) & ~63
    offs = {}
    if not inplace:
        pos = 0
        for k in range(4):  # x, y, then the gradients asked for
            if k >= 2 and not grad & (k - 1):
                continue
            for j in range(1, M):
                pos = al(pos)
                offs[k, j] = pos
                pos += sizes[j]
        return offs, pos + 64, 0
    offs[0, 1] = 0
    offs[1, 1] = al(sizes[1])
    end_a = offs[1, 1] + sizes[1]
    offs[0, 2], offs[1, 2] = offs[0, 1], offs[1, 1]
    free = [[al(sizes[2]), offs[1, 1]], [al(offs[1, 1] + sizes[2]), end_a]]
    tail = al(end_a)
    gpos = 0
    for k in (2, 3):
        if grad & (k - 1):
            offs[k, 1] = gpos
            gpos = al(gpos + sizes[1])
    rest = [(k, j) for k in (0, 1) for j in range(3, M)]
    rest += [(k, j) for k in (2, 3) if grad & (k - 1) for j in range(2, M)]
    for key in rest:
        n = sizes[key[1]]
        for iv in free:
            if al(iv[0]) + n <= iv[1]:
                offs[key] = al(iv[0])
                iv[0] = al(iv[0]) + n
                break
        else:
            offs[key] = tail
            tail = al(tail + n)
    return offs, tail + 64, gpos + 64


cdef class Pyramid:
    """The engine side of one MS-SSIM geometry: per scale a job template
    (bands, form, cotangent scale), the downsampling maps from each scale to
    the next, and the layout of a workspace for the coarse levels and their
    gradients.  The caller caches it per geometry; :meth:`run` streams a pair
    of images through every scale in a handful of launches and returns the
    per-scale sums, :meth:`backward` takes the gradient through the pyramid.
    The templates are copied per call, so one object serves concurrent calls.

    The first scales stream one launch each and write the next scale as they
    go (fused downsampling, 2-D); from scale ``first`` on, the rest of the
    pyramid is made in one pass and the scales share one launch.

    The finest level is the caller's input read in place: ``nci`` interleaved
    channels (planes (B, *spatial, nci), plane p = channel p % nci of item
    p // nci; its gradients in the same layout) and, per run, any input type
    the engine converts (``in_type``); the coarser levels and their gradients
    are planar, in the compute type, in the workspace.
    """
    cdef fs_job tmpl[FS_MAX_SCALES]
    cdef fs_down dd[3 * FS_MAX_SCALES]
    cdef _group grp[FS_MAX_SCALES]
    cdef int M, first, P, use_double, grad, fused, nci, inplace
    cdef ptrdiff_t plane[FS_MAX_SCALES]
    cdef int rows[FS_MAX_SCALES]
    cdef ptrdiff_t off[4][FS_MAX_SCALES]  # workspace byte offsets: x, y, gx, gy of levels >= 1
    cdef size_t tmpn
    cdef readonly Py_ssize_t nbytes, gbytes
    cdef object keep

    def __init__(self, list geoms, list downs, int P, int use_double, int first, int grad,
                 list forms, list wscals, int nci=1):
        cdef int M = len(geoms), j, k
        if M < 1 or M > FS_MAX_SCALES or len(downs) != M - 1:
            raise ValueError(f"Pyramid: 1 to {FS_MAX_SCALES} scales and M - 1 downsamplings")
        if nci < 1 or P % nci:
            raise ValueError(f"Pyramid: P ({P}) must be a multiple of nci ({nci})")
        self.M, self.first, self.P, self.use_double, self.grad = M, first, P, use_double, grad
        self.nci = nci
        cdef list keep = []
        cdef size_t esz = 8 if use_double else 4
        cdef Py_ssize_t pos = 0
        self.fused = 1
        for j in range(M):
            dims, fwd, adj, _, oshape, sreg = geoms[j]
            _fill_window(&self.tmpl[j], dims, 1, Window(fwd=fwd, adj=adj, form=forms[j]),
                         oshape, sreg, keep)
            self.tmpl[j].grad = grad
            self.tmpl[j].wscal = wscals[j]
            self.plane[j] = <ptrdiff_t>dims[0] * dims[1] * dims[2]
            self.rows[j] = dims[0]
            if dims[1] != 1:
                self.fused = 0  # volumes: downsampled after each scale, not while streaming
            self.grp[j].M = 1
            self.grp[j].P = P
            self.grp[j].first = j
            _group_lines(&self.tmpl[j], grad, 0, sreg, &self.grp[j])
        # with a gradient, level 2 is made in place over level 1 once scale 1
        # has streamed, and the coarser levels and gradients live in what level
        # 1 leaves free (see _layout): the workspace peaks at levels 1 of x and
        # y and the gradients of level 1
        self.inplace = 1 if grad and M >= 3 else 0
        for j in range(M - 1):
            _fill_maps(&self.dd[3 * j], &self.dd[3 * j + 1], &self.dd[3 * j + 2], downs[j], keep)
            if self.fused and not (self.inplace and j == 1):
                keep.append(downs[j][0].last)
                self.tmpl[j].dd0 = &self.dd[3 * j]
                self.tmpl[j].dd2 = &self.dd[3 * j + 2]
                self.tmpl[j].dlast = <const int*>_ptr(downs[j][0].last)
                self.tmpl[j].dplane = self.plane[j + 1]
        sizes = [P * self.plane[j] * esz for j in range(M)]
        offs, self.nbytes, self.gbytes = _layout(sizes, grad, self.inplace)
        for (k, j), o in offs.items():
            self.off[k][j] = o
        # per thread: a slice pair and two converted input slices (fs_down)
        self.tmpn = 3 * <size_t>geoms[0][0][1] * geoms[0][0][2] + 16
        self.keep = keep

    def run(self, object x, object y, object ws, double C1, double C2, double cov,
            object gx0, object gy0, object shift_x, object shift_y, int n_threads,
            object xsel=None, object ysel=None, int in_type=FS_IN_REAL, list hold=None):
        """Stream x, y (C-contiguous, planes (P, *spatial) or, with nci > 1,
        (P / nci, *spatial, nci); element type ``in_type``, IN_*) through every
        scale; ws: a workspace of at least ``nbytes`` (64-byte aligned);
        gx0, gy0: the finest level's gradients (or None), in x's layout, the
        compute type.  Returns the per-scale sums (P, M) over each scale's sum
        region.  xsel, ysel: batch broadcasting (item i reads item xsel[i] of
        x, ysel[i] of y; see _launch_groups), shift_x, shift_y per plane of
        the run; the coarser levels are made for all P planes.  With a
        gradient and ``gbytes`` > 0, the level-1 gradients' buffer (at least
        ``gbytes``; scale 0's scratch before them) is taken from the pool and
        appended to ``hold`` (required then):
        pass it to :meth:`backward`, then give it back (``release``)."""
        if in_type < FS_IN_REAL or in_type > FS_IN_F32:
            raise ValueError(f"Pyramid.run: in_type must be one of IN_*, got {in_type}")
        cdef int M = self.M, P = self.P, j, k, g0, n, done
        cdef fs_job jobs[FS_MAX_SCALES]
        cdef _group grp[FS_MAX_SCALES]
        memcpy(jobs, self.tmpl, M * sizeof(fs_job))
        memcpy(grp, self.grp, M * sizeof(_group))
        cdef char *base = <char*>_ptr(ws)
        cdef char *px[FS_MAX_SCALES]
        cdef char *py[FS_MAX_SCALES]
        px[0] = <char*>_ptr(x)
        py[0] = <char*>_ptr(y)
        for j in range(1, M):
            px[j] = base + self.off[0][j]
            py[j] = base + self.off[1][j]
        # the line sums of scale j: (P, o0_j) from rs + roff[j]
        cdef ptrdiff_t roff[FS_MAX_SCALES + 1]
        roff[0] = 0
        for j in range(M):
            roff[j + 1] = roff[j] + <ptrdiff_t>P * jobs[j].o0
        sums_rows = np.zeros(roff[M], dtype=np.float64)
        cdef double *rs = <double*>_ptr(sums_rows)
        cdef const double *psx = <const double*>_ptr(shift_x)
        cdef const double *psy = <const double*>_ptr(shift_y)
        for j in range(M):
            jobs[j].x = px[j]
            jobs[j].y = py[j]
            jobs[j].C1, jobs[j].C2, jobs[j].cov = C1, C2, cov
            jobs[j].shift_x = psx
            jobs[j].shift_y = psy
            jobs[j].rowsum = rs + roff[j]
            jobs[j].gx = NULL
            jobs[j].gy = NULL
            if self.grad & FS_GRAD_X:
                jobs[j].gx = _ptr(gx0) if j == 0 else <void*>(base + self.off[2][j])
            if self.grad & FS_GRAD_Y:
                jobs[j].gy = _ptr(gy0) if j == 0 else <void*>(base + self.off[3][j])
            if j < M - 1 and self.fused and not (self.inplace and j == 1):
                jobs[j].dx = px[j + 1]
                jobs[j].dy = py[j + 1]
        if self.gbytes and hold is None:
            raise ValueError("Pyramid.run: hold (a list) is required with a gradient")
        cdef char *gbase = NULL
        # the finest level: the caller's layout and element type
        jobs[0].nci = self.nci
        jobs[0].in_type = in_type
        jobs[0].plane_in = self.plane[0] * self.nci
        jobs[0].plane_out = <ptrdiff_t>jobs[0].o0 * jobs[0].o1 * jobs[0].o2 * self.nci
        cdef int first = self.first if self.first < M else M
        cdef const ptrdiff_t *sx = NULL
        cdef const ptrdiff_t *sy = NULL
        cdef ptrdiff_t step = 0
        if xsel is not None:
            step = _sel(&jobs[0], P, xsel, ysel, self.use_double)
            sx = <const ptrdiff_t*>_ptr(xsel)
            sy = <const ptrdiff_t*>_ptr(ysel)
        # With a gradient laid out by lifetime, one pooled buffer serves first as
        # scale 0's scratch, then holds the level-1 gradients (written by scale
        # 1, read by the backward pass) followed by the scratch of the later
        # launches: the peak is levels 1 of x and y plus the larger of scale 0's
        # scratch and (level-1 gradients + scale 1's scratch), not their sum
        # (issue 13).  Scales 0 and 1 always stream alone here (first >= 2).
        scr0 = scr1 = None
        cdef size_t s0, s1, a
        if self.gbytes:
            s0 = _scratch_bytes(&jobs[0], self.use_double, n_threads)
            s1 = _scratch_bytes(&jobs[1], self.use_double, n_threads)
            gbuf = _acquire(max(s0, <size_t>self.gbytes - 64 + s1) + 64)
            hold.append(gbuf)
            gbase = _align64(<char*>_ptr(gbuf))
            a = <size_t>(gbase - <char*>_ptr(gbuf))
            scr0 = gbuf[a:]
            scr1 = gbuf[a + <size_t>self.gbytes - 64:]  # after the gradients (64-aligned)
        # the fine scales one launch each, writing the next scale as they stream
        for j in range(first):
            if j == 0:
                _launch_groups(jobs, M, &grp[j], 1, self.grad, n_threads, self.use_double,
                               sx, sy, step, 0, scr0)
            else:
                _launch_groups(jobs, M, &grp[j], 1, self.grad, n_threads, self.use_double,
                               NULL, NULL, 0, 0, scr1)
            if j < M - 1 and jobs[j].dx == NULL:  # not fused (strips, volumes)
                if j == 0:
                    _down_chain(&self.dd[0], &px[0], &py[0], &self.plane[0], &self.rows[0], 1,
                                P, self.use_double, self.tmpn, n_threads, sx, sy, in_type,
                                self.nci)
                elif j == 1 and self.inplace:  # level 1 is dead once level 2 is made
                    _down_inplace(&self.dd[3], px[1], py[1], self.plane[1], self.plane[2], P,
                                  self.use_double, self.tmpn, n_threads)
                else:
                    _down_chain(&self.dd[3 * j], &px[j], &py[j], &self.plane[j],
                                &self.rows[j], 1, P, self.use_double, self.tmpn, n_threads)
            if j == 0 and self.gbytes:
                # the level-1 gradients, over scale 0's scratch (now dead)
                if self.grad & FS_GRAD_X:
                    jobs[1].gx = gbase + self.off[2][1]
                if self.grad & FS_GRAD_Y:
                    jobs[1].gy = gbase + self.off[3][1]
        if first < M:
            # the small scales: their pyramid in one pass, then one launch for all
            if first + 1 < M:
                _down_chain(&self.dd[3 * first], &px[first], &py[first], &self.plane[first],
                            &self.rows[first], M - 1 - first, P, self.use_double, self.tmpn,
                            n_threads)
            for j in range(first, M):
                jobs[j].dx = NULL
                jobs[j].dy = NULL
            j = first
            while j < M:
                n = M - j if M - j < FS_MAX_GROUPS else FS_MAX_GROUPS
                _launch_groups(jobs, M, &grp[j], n, self.grad, n_threads, self.use_double,
                               NULL, NULL, 0, 0, scr1)
                j += n
        # per-plane sums of each scale's line sums, in a fixed order
        sums = np.zeros((P, M), dtype=np.float64)
        cdef double[:, ::1] sv = sums
        cdef double acc
        cdef int p, a0, b0, q
        for j in range(M):
            a0 = jobs[j].s0[0]
            b0 = jobs[j].s0[1]
            for p in range(P):
                acc = 0.0
                for q in range(a0, b0):
                    acc += rs[roff[j] + <ptrdiff_t>p * jobs[j].o0 + q]
                sv[p, j] = acc
        return sums

    def backward(self, object ws, object coef, object g0, int side, int n_threads,
                 list hold=None):
        """The gradient through the pyramid, into g0 (the finest level's
        gradient of ``side`` 0 (x) or 1 (y), in x's layout, as :meth:`run` left it); coef
        (P, M) float64: d value / d (per-scale sum).  Overwrites the coarse
        gradients in ws (and in hold[0], the buffer :meth:`run` appended)."""
        cdef int M = self.M, j
        cdef const double[:, ::1] cf = coef
        cdef char *base = <char*>_ptr(ws)
        cdef char *lv[FS_MAX_SCALES]
        lv[0] = <char*>_ptr(g0)
        for j in range(1, M):
            lv[j] = base + self.off[2 + side][j]
        if self.gbytes:
            if not hold:
                raise ValueError("Pyramid.backward: hold, as run filled it, is required")
            lv[1] = _align64(<char*>_ptr(hold[0])) + self.off[2 + side][1]
        _up_chain(self.dd, lv, self.plane, self.rows, M, self.P, &cf[0, 0], self.use_double,
                  n_threads, self.nci, self.tmpn)


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
    if w.shape[0] != M or M > FS_MAX_SCALES:
        raise ValueError(f"ms_combine: one weight per scale, at most {FS_MAX_SCALES} scales")
    value = np.empty(P, dtype=np.float64)
    cdef double[::1] v = value
    coef = np.empty((P, M), dtype=np.float64) if want_coef else None
    cdef double[:, ::1] c
    if want_coef:
        c = coef
    cdef double f[FS_MAX_SCALES]
    cdef double df[FS_MAX_SCALES]
    cdef double pw[FS_MAX_SCALES]
    cdef double pre, suf, prod
    for p in range(P):
        prod = 1.0
        for j in range(M):
            if negative == FS_NEG_CLAMP:
                f[j] = 0.0 if m[p, j] <= 0 else m[p, j]  # NaN stays NaN
                df[j] = 1.0 if m[p, j] > 0 else 0.0
            elif negative == FS_NEG_SIMPLE:
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
