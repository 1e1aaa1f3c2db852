/*
 * fastssim filter engine: the only place where pixels are touched.
 *
 * One streaming, fused kernel serves every SSIM-family quantity:
 *
 *   - the local moments mu_x, mu_y, E[(x - y)^2], E[xy] of a separable window
 *     (eqs. 2-4 of the derivation), streamed line by line: each input line's
 *     four moment sources (the squares and products formed on the fly) are
 *     filtered along the line into a per-thread ring, and the streamed-axis
 *     pass combines 2r+1 ring lines for a block of 4-16 output lines at once;
 *   - the pointwise formula (SSIM = l*cs, cs, l, or a plain mean; eq. 1), for
 *     one window or the product of several (the per-pixel MS-SSIM);
 *   - optionally the vector-Jacobian product of sum_p w(p) F(p) with respect
 *     to x and/or y (eqs. 5-10 in VJP form):
 *        dL/dx = G^T(w F_mux) + 2 (x - y) G^T(w F_dd) + y G^T(w F_xy),
 *     where G^T, the adjoint of the window operator, is applied by the same
 *     banded 1-D passes with the transposed band.  The pointwise maps w*F_m
 *     live in a per-thread ring of lines, never in full-size temporaries;
 *   - optionally the 2x downsampling of the next MS-SSIM scale, from the
 *     input lines it streams.
 *
 * A 1-D window operator along one axis is a *band*: output i reads input
 * i + off - r + k for k = 0..2r.  Outputs in [lo, hi) use the symmetric taps
 * g[0..r] (g[0] the centre) and read only valid inputs; outputs outside use a
 * full row of 2r+1 weights from a table (zero where the input does not exist).
 * Border modes ('reflect' = scipy/MATLAB 'symmetric', 'valid') and adjoints
 * are nothing but different tables, built once in Python (fastssim/_bands.py).
 *
 * Types: every pointer in fs_job is void; the _f entries work on float32
 * tables and results, the _d entries on float64.  Scalars are passed as double.
 */
#ifndef FASTSSIM_ENGINE_H
#define FASTSSIM_ENGINE_H

#include <stddef.h>

/* ---- enums and limits: the one place they are written (the Cython glue
 * reads them through `cdef extern`, the Python layer from fastssim._engine) ---- */

/* SSIM = l*cs, cs alone, l alone, or the windowed mean of x (a plain
 * Gaussian/box filter, for the Mix loss's filtered l1 term). */
enum { FS_FORM_SSIM = 0, FS_FORM_CS = 1, FS_FORM_L = 2, FS_FORM_MEAN = 3 };
enum { FS_GRAD_X = 1, FS_GRAD_Y = 2 };
/* Element type of x and y: the compute type, or one read and converted in place. */
enum { FS_IN_REAL = 0, FS_IN_U8 = 1, FS_IN_U16 = 2, FS_IN_I8 = 3, FS_IN_I16 = 4, FS_IN_F32 = 5 };
/* MS-SSIM's policy for negative per-scale means (ms_combine in _engine.pyx):
 * clamp at 0, map m -> (m + 1) / 2, or none. */
enum { FS_NEG_CLAMP = 0, FS_NEG_SIMPLE = 1, FS_NEG_NONE = 2 };
enum {
    FS_MAXW = 8,         /* windows of one multi-window job (fs_rows_multi's M) */
    FS_MAX_SCALES = 16,  /* scales of an MS-SSIM pyramid (Pyramid in _engine.pyx) */
    FS_MAX_GROUPS = 8    /* groups of jobs in one parallel launch (_launch_groups) */
};

typedef struct {
    int n_in, n_out, r, off, lo, hi;
    const void *g;       /* r + 1 half taps, g[0] at the centre */
    const void *tab_lo;  /* lo x (2r+1) weights for outputs [0, lo) */
    const void *tab_hi;  /* (n_out-hi) x (2r+1) weights for outputs [hi, n_out) */
    /* the border rows transposed, (2r+1) x wlo for outputs [0, wlo) and
     * (2r+1) x whi for [n_out - whi, n_out), wlo, whi multiples of 16 (or 0) */
    int wlo, whi;
    const void *tabt_lo;
    const void *tabt_hi;
    /* 1: the same-size reflect map of a line (outputs [0, n) of n inputs,
     * n > 2r): a symmetric operator whose border outputs are the interior
     * formula on the line extended by its mirror image */
    int refl;
} fs_band;

/* 2x mean downsampling along each axis (MS-SSIM pyramids) and its adjoint.
 * Forward, per axis: out[o] = w0[o] in[i0[o]] + w1[o] in[i1[o]]; outputs in
 * [lo, hi) are regular (in[2o + shift] + in[2o + shift + 1]) / 2.
 * Adjoint, per axis, as a gather: fine[i] gets u[i] * coarse[m[i]]; fine in
 * [alo, ahi) is regular (m = (i - ashift) / 2, u = 1/2).  Every convention
 * of odd sizes used here reads each fine sample from at most one coarse one. */
typedef struct {
    int n_in, n_out;
    const int *i0, *i1;
    const double *w0, *w1;
    int lo, hi, shift;
    const int *m;
    const double *u;
    int alo, ahi, ashift;
} fs_down;

typedef struct {
    /* Planes are (n0, n1, n2) arrays, C-contiguous; 2-D images have n1 = 1.
     * Axis 0 is streamed (rows of an image, slices of a volume); a "line" is
     * one index of axis 0: n1*n2 input samples, o1*o2 outputs. */
    int n0, n1, n2;        /* input extents */
    int o0, o1, o2;        /* output (map) extents */
    /* Plane p is channel p % nci of item p / nci.  nci = 1: planes are
     * contiguous, plane_in / plane_out elements apart.  nci > 1: channels are
     * interleaved (the last axis), every sample is nci elements from the
     * next, and plane_in / plane_out are the elements between items. */
    int nci;
    ptrdiff_t plane_in;    /* x, y, gx, gy */
    ptrdiff_t plane_out;   /* map, wmap */
    int in_type;           /* FS_IN_*: element type of x and y */
    const void *x, *y;
    /* Per-plane shifts (NULL: 0): the moments are taken of x - shift_x[p]
     * and y - shift_y[p], near the plane's (sampled) mean, which keeps the
     * covariance from cancelling (E[xy] - mu_x mu_y) on images far from 0.
     * SSIM does not depend on them; the gradient is exact for any constant. */
    const double *shift_x, *shift_y;
    fs_band f0, f1, f2;    /* forward bands, axes 0, 1, 2 (f1 unused when n1 == 1) */
    fs_band a0, a1, a2;    /* adjoint bands (transposed), axes 0, 1, 2 */
    int form;              /* FS_FORM_* */
    double C1, C2, cov;    /* stability constants, covariance factor */
    void *map;             /* NULL, or o0 x o1 x o2 per plane */
    double *rowsum;        /* NULL, or o0 per plane: sum of F over the region of the line */
    int s0[2], s1[2], s2[2];  /* region (output coordinates) of sums and of wscal */
    int grad;              /* FS_GRAD_X | FS_GRAD_Y, or 0 */
    const void *wmap;      /* NULL: cotangent wscal on the region, 0 elsewhere */
    double wscal;
    void *gx, *gy;         /* n0 x n1 x n2 per plane (written where requested) */
    int ring_r;            /* 0, or the widest radius of a multi-scale job */
    /* > 0: a unit that owns whole map lines sums them in chunks of this many
     * columns, rowsum[p * nchunk + k] (the column strips the value pass of
     * the same geometry runs in: both sums then add in the same order) */
    int sum_chunk;
    /* Optional fused downsampling (MS-SSIM, 2-D, x/y in any input type and
     * channel interleave; dx/dy planar): while streaming, the unit whose lines include the last source
     * line q of downsampled row o (dlast[q] = o, else -1) writes row o of
     * dx/dy (dplane elements per plane) with the maps dd0 (rows), dd2
     * (columns).  Lines [line_lo, line_hi) are the ones the launch covers. */
    void *dx, *dy;
    const fs_down *dd0, *dd2;
    const int *dlast;
    ptrdiff_t dplane;
    int line_lo, line_hi;
} fs_job;


/* One plane (n0, n1, n2) -> (o0, o1, o2), output lines [l0, l1).  in: the
 * plane's first sample, of type in_type (FS_IN_*), samples nci apart (the
 * finest level read in place; the coarser levels are planar, FS_IN_REAL, 1).
 * tmp: 3 n1 n2 elements of the compute type. */
void fs_down_f(const fs_down *d0, const fs_down *d1, const fs_down *d2,
               const void *in, int in_type, int nci, void *out, int l0, int l1, void *tmp);
void fs_down_d(const fs_down *d0, const fs_down *d1, const fs_down *d2,
               const void *in, int in_type, int nci, void *out, int l0, int l1, void *tmp);
/* fine = coef * fine + D^T coarse, fine lines [l0, l1) of one plane whose
 * samples are nci apart (tmp: n2 elements, used when nci > 1). */
void fs_up_f(const fs_down *d0, const fs_down *d1, const fs_down *d2,
             const void *coarse, void *fine, int nci, double coef, int l0, int l1, void *tmp);
void fs_up_d(const fs_down *d0, const fs_down *d1, const fs_down *d2,
             const void *coarse, void *fine, int nci, double coef, int l0, int l1, void *tmp);
/* P planar planes downsampled in place, in order, one thread: plane b from
 * io + b plane_in to io + b plane_out (plane_out <= plane_in; tmp: n1 n2 + o1 o2
 * elements; the bits of fs_down). */
void fs_down_inplace_f(const fs_down *d0, const fs_down *d1, const fs_down *d2, void *io,
                       ptrdiff_t P, ptrdiff_t plane_in, ptrdiff_t plane_out, void *tmp);
void fs_down_inplace_d(const fs_down *d0, const fs_down *d1, const fs_down *d2, void *io,
                       ptrdiff_t P, ptrdiff_t plane_in, ptrdiff_t plane_out, void *tmp);

/* Multi-scale product P = prod_j F_j of jobs[0..M-1] (M <= FS_MAXW), which share
 * the planes, the output grid, the outputs and the cotangent of jobs[0] and
 * differ in their bands, form and covariance factor; the map and the line
 * sums are of P, the gradient that of sum_p w(p) P(p).  Set ring_r of every
 * job to the widest radius. */
size_t fs_multi_bytes_f(const fs_job *jobs, int M);
size_t fs_multi_bytes_d(const fs_job *jobs, int M);
/* Value mode (grad == 0): output lines [q0, q1) of plane `plane`; gradient
 * mode: input (gradient) lines [q0, q1), the map and line sums written for the
 * output lines whose window centre lies in [q0, q1).  Units never share an
 * output element, so any partition over threads gives bitwise-identical
 * results.  Of a 2-D image only the columns [c_lo, c_hi)
 * of the final output (the map, or the gradient): column strip `strip` of
 * `nstrip`, whose line sums go to rowsum[(plane * o0 + p) * nstrip + strip].
 * Volumes take a single strip. */
void fs_rows_multi_f(const fs_job *jobs, int M, ptrdiff_t plane, int q0, int q1,
                     int c_lo, int c_hi, int strip, int nstrip, void *scratch);
void fs_rows_multi_d(const fs_job *jobs, int M, ptrdiff_t plane, int q0, int q1,
                     int c_lo, int c_hi, int strip, int nstrip, void *scratch);

/* The per-plane shifts of fs_job (shift_x / shift_y): the mean of the finite
 * samples on a sparse grid (every max(1, n/32)-th index along each axis),
 * rounded to a multiple of 2^floor(log2(their standard deviation)), for the P planes of an input laid out as
 * fs_job describes (nci, plane_in = elements between items). */
void fs_plane_shifts(const void *x, int in_type, int is_double, int nci, ptrdiff_t plane_in,
                     ptrdiff_t P, int n0, int n1, int n2, double *out);

int fs_openmp_enabled(void);
int fs_omp_max_threads(void);
const char *fs_simd_path(void);

#endif
