/* engine_pyramid.h: the MS-SSIM pyramid.  2x mean downsampling (engine.h,
 * fs_down) and its adjoint; down_rows also serves the downsampling fused into
 * the stream (down_fused).  The finest level is the caller's input, read in
 * place (interleaved channels, integer types); the coarser ones are planar.
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

/* One output row of a 2x downsampling from its two input rows a, b (row
 * weights wa, wb; the column operator d): o = d(wa a + wb b), in one sweep,
 * without a temporary row (the fused downsampling of the engine and fs_down
 * share it: one arithmetic). */
static void FN(down_rows)(const fs_down *d, REAL wa, const REAL *restrict a, REAL wb,
                          const REAL *restrict b, REAL *restrict o)
{
#define FS_T(i) (wa * a[i] + wb * b[i])
    for (int j = 0; j < d->lo; j++)
        o[j] = (REAL)d->w0[j] * FS_T(d->i0[j]) + (REAL)d->w1[j] * FS_T(d->i1[j]);
    const REAL *restrict as = a + d->shift, *restrict bs = b + d->shift;
    int j = d->lo;
    if (d->hi - j >= NV) {  /* pairs of lanes: deinterleave two vectors */
        FN(ivec) ev, od;
        for (int e = 0; e < NV; e++) {
            ev[e] = 2 * e;
            od[e] = 2 * e + 1;
        }
        for (; j + NV <= d->hi; j += NV) {
            FN(vec) v0 = wa * FN(ld)(as + 2 * j) + wb * FN(ld)(bs + 2 * j);
            FN(vec) v1 = wa * FN(ld)(as + 2 * j + NV) + wb * FN(ld)(bs + 2 * j + NV);
            FN(st)(o + j, (__builtin_shuffle(v0, v1, ev) + __builtin_shuffle(v0, v1, od)) * (REAL)0.5);
        }
    }
    for (; j < d->hi; j++) {
        const int i = 2 * j + d->shift;
        o[j] = (REAL)0.5 * (FS_T(i) + FS_T(i + 1));
    }
    for (int j = d->hi; j < d->n_out; j++)
        o[j] = (REAL)d->w0[j] * FS_T(d->i0[j]) + (REAL)d->w1[j] * FS_T(d->i1[j]);
#undef FS_T
}

/* Input row `at` (a sample index) of a plane for a downsampling, the plane
 * starting at element off0 of in: the planar compute type is used in place;
 * any other layout (interleaved channels, nci apart; an integer or narrower
 * float type) is converted into buf first (load_line with no shift: the
 * values a planar copy would hold, so the same bits downstream). */
static inline const REAL *FN(down_src)(const void *in, int in_type, int nci, ptrdiff_t off0,
                                       ptrdiff_t at, ptrdiff_t n, REAL *restrict buf)
{
    if (in_type == FS_IN_REAL && nci == 1) return (const REAL *)in + off0 + at;
    FN(load_line)(in, in_type, off0 + at * nci, nci, n, 0, buf);
    return buf;
}

/* Row o of the next MS-SSIM scale of plane `plane` of x and y, fused into
 * the stream (hline: 2-D; the plane starts at element xoff of the inputs,
 * any type and channel interleave).  rows: for a converted input, 4 n2 REAL,
 * the lines of x (slots 0, 1) and y (2, 3) that hline converted, slot
 * i & 1 holding line tag[i & 1]: a source line found there is not read
 * again (RGB MS-SSIM read each interleaved line twice; callgrind), one that
 * is not is converted into its slot. */
static void FN(down_fused)(const fs_job *job, ptrdiff_t xoff, ptrdiff_t plane, int o,
                           REAL *restrict rows, int *tag)
{
    const fs_down *d0 = job->dd0;
    const ptrdiff_t L = job->n2;
    const REAL wa = (REAL)d0->w0[o], wb = (REAL)d0->w1[o];
    const int ia = d0->i0[o], ib = d0->i1[o];
    const int planar = job->in_type == FS_IN_REAL && job->nci == 1;
    const int kept[2] = {tag[ia & 1] == ia, tag[ib & 1] == ib};
    for (int side = 0; side < 2; side++) {
        const void *in = side ? job->y : job->x;
        REAL *dst = (REAL *)(side ? job->dy : job->dx) + plane * job->dplane
                    + (ptrdiff_t)o * job->dd2->n_out;
        const REAL *src[2];
        for (int k = 0; k < 2; k++) {
            const int i = k ? ib : ia;
            if (planar) {
                src[k] = (const REAL *)in + xoff + (ptrdiff_t)i * L;
                continue;
            }
            REAL *slot = rows + (2 * side + (i & 1)) * L;
            if (!kept[k])  /* not kept by hline: converted here (no shift) */
                FN(load_line)(in, job->in_type, xoff + (ptrdiff_t)i * L * job->nci, job->nci, L,
                              0, slot);
            src[k] = slot;
        }
        FN(down_rows)(job->dd2, wa, src[0], wb, src[1], dst);
    }
    if (!planar) {
        tag[ia & 1] = ia;
        tag[ib & 1] = ib;
    }
}

/* One plane (n0, n1, n2) -> (o0, o1, o2), output lines [l0, l1).  in: the
 * plane's first sample, of type in_type, samples nci apart (the finest level
 * read in place; coarser levels are planar REAL).  tmp: 3 n1 n2 REAL. */
static void FN(fs_down)(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                        const void *in_, int in_type, int nci, void *out_, int l0, int l1,
                        void *tmp_)
{
    REAL *out = (REAL *)out_;
    REAL *tp = (REAL *)tmp_;
    const int n1 = d1->n_in, n2 = d2->n_in, o1 = d1->n_out, o2 = d2->n_out;
    const ptrdiff_t L = (ptrdiff_t)n1 * n2;
    REAL *ra = tp + L, *rb = tp + 2 * L;
    for (int o = l0; o < l1; o++) {
        const REAL *a = FN(down_src)(in_, in_type, nci, 0, (ptrdiff_t)d0->i0[o] * L, L, ra);
        const REAL *b = FN(down_src)(in_, in_type, nci, 0, (ptrdiff_t)d0->i1[o] * L, L, rb);
        const REAL wa = (REAL)d0->w0[o], wb = (REAL)d0->w1[o];
        if (n1 == 1) {  /* images: straight from the two rows */
            FN(down_rows)(d2, wa, a, wb, b, out + (ptrdiff_t)o * o2);
            continue;
        }
        REAL *restrict t = tp;  /* volumes: the slice pair first, then its rows */
        for (ptrdiff_t j = 0; j < L; j++) t[j] = wa * a[j] + wb * b[j];
        for (int r = 0; r < o1; r++)
            FN(down_rows)(d2, (REAL)d1->w0[r], tp + (ptrdiff_t)d1->i0[r] * n2, (REAL)d1->w1[r],
                          tp + (ptrdiff_t)d1->i1[r] * n2, out + ((ptrdiff_t)o * o1 + r) * o2);
    }
}

/* P planes (n0, n1, n2) -> (o0, o1, o2) in place: plane b of the input at
 * io + b plane_in, of the output at io + b plane_out (plane_out <= plane_in),
 * planes and lines in order, one thread.  Each output line is made in tmp (the
 * arithmetic of fs_down: the same bits) and then moved to its place, which
 * ends before the first input line not yet read (every input line feeds one
 * output line at most, and an output line is at most half an input line
 * longer than half of one): a gradient's pyramid reuses a level's memory for
 * the next one.  tmp: n1 n2 + o1 o2 REAL. */
static void FN(fs_down_inplace)(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                                void *io_, ptrdiff_t P, ptrdiff_t plane_in,
                                ptrdiff_t plane_out, void *tmp_)
{
    REAL *io = (REAL *)io_;
    REAL *tp = (REAL *)tmp_;
    const int n1 = d1->n_in, n2 = d2->n_in, o0 = d0->n_out, o1 = d1->n_out, o2 = d2->n_out;
    const ptrdiff_t L = (ptrdiff_t)n1 * n2, OL = (ptrdiff_t)o1 * o2;
    REAL *line = tp + L;
    for (ptrdiff_t b = 0; b < P; b++) {
        const REAL *in = io + b * plane_in;
        REAL *out = io + b * plane_out;
        for (int o = 0; o < o0; o++) {
            const REAL *a = in + (ptrdiff_t)d0->i0[o] * L;
            const REAL *c = in + (ptrdiff_t)d0->i1[o] * L;
            const REAL wa = (REAL)d0->w0[o], wb = (REAL)d0->w1[o];
            if (n1 == 1) {
                FN(down_rows)(d2, wa, a, wb, c, line);
            } else {
                REAL *restrict t = tp;
                for (ptrdiff_t j = 0; j < L; j++) t[j] = wa * a[j] + wb * c[j];
                for (int r = 0; r < o1; r++)
                    FN(down_rows)(d2, (REAL)d1->w0[r], tp + (ptrdiff_t)d1->i0[r] * n2,
                                  (REAL)d1->w1[r], tp + (ptrdiff_t)d1->i1[r] * n2,
                                  line + (ptrdiff_t)r * o2);
            }
            memmove(out + (ptrdiff_t)o * OL, line, (size_t)OL * sizeof(REAL));
        }
    }
}

static void FN(up_axis2)(const fs_down *d, const REAL *restrict c, REAL *restrict f,
                         REAL coef, REAL scale)
{
    for (int i = 0; i < d->alo; i++)
        f[i] = coef * f[i] + scale * (REAL)d->u[i] * c[d->m[i]];
    /* regular part: both fine samples 2j+s, 2j+s+1 get c[j] / 2 */
    const int s = d->ashift;
    const int j0 = (d->alo - s) / 2, j1 = (d->ahi - s) / 2;
    REAL *restrict fs = f + s;
    const REAL h = scale * (REAL)0.5;
    int j = j0;
    if (j1 - j >= NV) {  /* duplicate each lane into a pair: two vectors out */
        FN(ivec) lo, hi;
        for (int e = 0; e < NV; e++) {
            lo[e] = e / 2;
            hi[e] = NV / 2 + e / 2;
        }
        for (; j + NV <= j1; j += NV) {
            FN(vec) v = FN(ld)(c + j) * h;
            FN(vec) f0 = FN(ld)(fs + 2 * j), f1 = FN(ld)(fs + 2 * j + NV);
            FN(st)(fs + 2 * j, f0 * coef + __builtin_shuffle(v, lo));
            FN(st)(fs + 2 * j + NV, f1 * coef + __builtin_shuffle(v, hi));
        }
    }
    for (; j < j1; j++) {
        REAL v = h * c[j];
        fs[2 * j] = coef * fs[2 * j] + v;
        fs[2 * j + 1] = coef * fs[2 * j + 1] + v;
    }
    for (int i = d->ahi; i < d->n_in; i++)
        f[i] = coef * f[i] + scale * (REAL)d->u[i] * c[d->m[i]];
}

/* fine = coef * fine + D^T coarse, fine lines [l0, l1) of one plane; the
 * fine plane's samples are nci apart (the finest level's gradient in the
 * caller's interleaved layout): each row is then gathered into tmp (n2 REAL),
 * updated by the same arithmetic, and scattered back. */
static void FN(fs_up)(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                      const void *coarse_, void *fine_, int nci, double coef_, int l0, int l1,
                      void *tmp_)
{
    const REAL *coarse = (const REAL *)coarse_;
    REAL *fine = (REAL *)fine_;
    REAL *restrict tmp = (REAL *)tmp_;
    const REAL coef = (REAL)coef_;
    const int n1 = d1->n_in, n2 = d2->n_in, o1 = d1->n_out, o2 = d2->n_out;
    for (int i = l0; i < l1; i++) {
        const REAL u0 = (REAL)d0->u[i];
        const REAL *src = coarse + (ptrdiff_t)d0->m[i] * o1 * o2;
        for (int r = 0; r < n1; r++) {
            REAL *fr = fine + ((ptrdiff_t)i * n1 + r) * n2 * nci;
            REAL *f = fr;
            if (nci > 1) {
                for (int j = 0; j < n2; j++) tmp[j] = fr[(ptrdiff_t)j * nci];
                f = tmp;
            }
            const REAL u = u0 * (n1 > 1 ? (REAL)d1->u[r] : (REAL)1);
            const REAL *c = src + (ptrdiff_t)(n1 > 1 ? d1->m[r] : 0) * o2;
            if (u == 0) {
                for (int j = 0; j < n2; j++) f[j] = coef * f[j];
            } else {
                FN(up_axis2)(d2, c, f, coef, u);
            }
            if (nci > 1) FN(store_strided)(tmp, fr, nci, n2);
        }
    }
}
