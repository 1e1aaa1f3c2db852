/*
 * Body of the filter engine, included once per floating type by engine.c
 * with REAL (float or double) and FN(name) (name_f or name_d) defined.
 * See engine.h for the contract.  Equation numbers refer to
 * shared/reference/zhao2017-ssim-msssim-derivatives.txt.
 *
 * Every public entry carries FS_TARGETS: on x86-64 Linux with GCC it is
 * compiled for AVX-512, AVX2+FMA and baseline SSE2 and the loader picks one
 * at run time (ifunc), so a portable wheel still runs the wide code paths.
 * The static helpers are inlined into each clone and so inherit its ISA.
 */

/* ---- small vector loops: restrict parameters let GCC vectorise them ---- */

static inline void FN(lin_first)(ptrdiff_t n, REAL g, const REAL *restrict a,
                                 REAL *restrict out)
{
    for (ptrdiff_t j = 0; j < n; j++) out[j] = g * a[j];
}

static inline void FN(lin_pair)(ptrdiff_t n, REAL g, const REAL *restrict a,
                                const REAL *restrict b, REAL *restrict out)
{
    for (ptrdiff_t j = 0; j < n; j++) out[j] += g * (a[j] + b[j]);
}

static inline void FN(lin_axpy)(ptrdiff_t n, REAL g, const REAL *restrict a,
                                REAL *restrict out)
{
    for (ptrdiff_t j = 0; j < n; j++) out[j] += g * a[j];
}

/* Moment sources x, y, x^2 + y^2, xy of one input line, weighted (eqs. 2-4). */
static inline void FN(src_first)(ptrdiff_t n, REAL g, const REAL *restrict a,
                                 const REAL *restrict b, REAL *restrict ox,
                                 REAL *restrict oy, REAL *restrict os,
                                 REAL *restrict op)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        REAL u = a[j], v = b[j];
        ox[j] = g * u;
        oy[j] = g * v;
        os[j] = g * (u * u + v * v);
        op[j] = g * (u * v);
    }
}

static inline void FN(src_axpy)(ptrdiff_t n, REAL g, const REAL *restrict a,
                                const REAL *restrict b, REAL *restrict ox,
                                REAL *restrict oy, REAL *restrict os,
                                REAL *restrict op)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        REAL u = a[j], v = b[j];
        ox[j] += g * u;
        oy[j] += g * v;
        os[j] += g * (u * u + v * v);
        op[j] += g * (u * v);
    }
}

/* The symmetric pair of lines c-k and c+k in one go: half the multiplies. */
static inline void FN(src_pair)(ptrdiff_t n, REAL g, const REAL *restrict a0,
                                const REAL *restrict a1, const REAL *restrict b0,
                                const REAL *restrict b1, REAL *restrict ox,
                                REAL *restrict oy, REAL *restrict os,
                                REAL *restrict op)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        REAL u0 = a0[j], u1 = a1[j], v0 = b0[j], v1 = b1[j];
        ox[j] += g * (u0 + u1);
        oy[j] += g * (v0 + v1);
        os[j] += g * ((u0 * u0 + u1 * u1) + (v0 * v0 + v1 * v1));
        op[j] += g * (u0 * v0 + u1 * v1);
    }
}

#define FS_CHUNK 2048  /* columns per strip: keeps the accumulators in L1 */

/* Streamed-axis pass that forms the moment sources on the fly.
 * xr/yr: 2r+1 line pointers (NULL where the line does not exist),
 * sym: use the half taps g, else the full weight row t. */
static void FN(vfwd)(ptrdiff_t n, const REAL *const *xr, const REAL *const *yr,
                     int r, int sym, const REAL *g, const REAL *t, REAL *const *v)
{
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FS_CHUNK) {
        ptrdiff_t m = n - j0 < FS_CHUNK ? n - j0 : FS_CHUNK;
        REAL *ox = v[0] + j0, *oy = v[1] + j0, *os = v[2] + j0, *op = v[3] + j0;
        if (sym) {
            FN(src_first)(m, g[0], xr[r] + j0, yr[r] + j0, ox, oy, os, op);
            for (int k = 1; k <= r; k++)
                FN(src_pair)(m, g[k], xr[r - k] + j0, xr[r + k] + j0,
                             yr[r - k] + j0, yr[r + k] + j0, ox, oy, os, op);
        } else {
            memset(ox, 0, m * sizeof(REAL));
            memset(oy, 0, m * sizeof(REAL));
            memset(os, 0, m * sizeof(REAL));
            memset(op, 0, m * sizeof(REAL));
            for (int k = 0; k <= 2 * r; k++)
                if (xr[k] && t[k] != 0)
                    FN(src_axpy)(m, t[k], xr[k] + j0, yr[k] + j0, ox, oy, os, op);
        }
    }
}

/* Linear pass across lines: out = sum_k w_k rows[k] (rows[k] may be NULL). */
static void FN(vlin)(ptrdiff_t n, const REAL *const *rows, int r, int sym,
                     const REAL *g, const REAL *t, REAL *out)
{
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FS_CHUNK) {
        ptrdiff_t m = n - j0 < FS_CHUNK ? n - j0 : FS_CHUNK;
        if (sym) {
            FN(lin_first)(m, g[0], rows[r] + j0, out + j0);
            for (int k = 1; k <= r; k++)
                FN(lin_pair)(m, g[k], rows[r - k] + j0, rows[r + k] + j0, out + j0);
        } else {
            memset(out + j0, 0, m * sizeof(REAL));
            for (int k = 0; k <= 2 * r; k++)
                if (rows[k] && t[k] != 0)
                    FN(lin_axpy)(m, t[k], rows[k] + j0, out + j0);
        }
    }
}

/* One band along a contiguous line: out[i] = sum_k w_ik in[i + off - r + k]. */
static void FN(band_line)(const fs_band *b, const REAL *in, REAL *out)
{
    const int r = b->r, off = b->off, lo = b->lo, hi = b->hi, n_in = b->n_in;
    const int w = 2 * r + 1;
    const REAL *g = (const REAL *)b->g;
    if (hi > lo) {
        const REAL *c = in + off;
        FN(lin_first)(hi - lo, g[0], c + lo, out + lo);
        for (int k = 1; k <= r; k++)
            FN(lin_pair)(hi - lo, g[k], c + lo - k, c + lo + k, out + lo);
    }
    for (int i = 0; i < b->n_out; i++) {
        if (i == lo && hi > lo) i = hi;  /* skip the interior */
        if (i >= b->n_out) break;
        const REAL *t = i < lo ? (const REAL *)b->tab_lo + (ptrdiff_t)i * w
                               : (const REAL *)b->tab_hi + (ptrdiff_t)(i - hi) * w;
        REAL acc = 0;
        for (int k = 0; k < w; k++) {
            int q = i + off - r + k;
            if (q >= 0 && q < n_in && t[k] != 0) acc += t[k] * in[q];
        }
        out[i] = acc;
    }
}

/* Row weights of band b for output i: returns 1 for the symmetric interior,
 * else 0 with *t set to the table row. */
static inline int FN(band_row)(const fs_band *b, int i, const REAL **t)
{
    const int w = 2 * b->r + 1;
    if (i >= b->lo && i < b->hi) { *t = NULL; return 1; }
    *t = i < b->lo ? (const REAL *)b->tab_lo + (ptrdiff_t)i * w
                   : (const REAL *)b->tab_hi + (ptrdiff_t)(i - b->hi) * w;
    return 0;
}

/* Pointers to the 2r+1 lines that output i of band b reads, from base with
 * the given line stride; NULL outside [0, n_in). */
static inline void FN(band_ptrs)(const fs_band *b, int i, const REAL *base,
                                 ptrdiff_t stride, const REAL **rows)
{
    for (int k = 0; k <= 2 * b->r; k++) {
        int q = i + b->off - b->r + k;
        rows[k] = (q >= 0 && q < b->n_in) ? base + (ptrdiff_t)q * stride : NULL;
    }
}

/* Filter one line within the non-streamed axes: (n1, n2) -> (o1, o2).
 * For 2-D images (n1 == 1) this is a single band along the row. */
static void FN(inner)(const fs_band *b1, const fs_band *b2, int n1, int n2,
                      int o1, const REAL *in, REAL *out, REAL *tmp,
                      const REAL **rows)
{
    if (n1 == 1) { FN(band_line)(b2, in, out); return; }
    const int o2 = b2->n_out;
    for (int i = 0; i < o1; i++) {
        const REAL *t;
        int sym = FN(band_row)(b1, i, &t);
        FN(band_ptrs)(b1, i, in, n2, rows);
        FN(vlin)(n2, rows, b1->r, sym, (const REAL *)b1->g, t, tmp);
        FN(band_line)(b2, tmp, out + (ptrdiff_t)i * o2);
    }
}

/* ---- pointwise formulas (eq. 1 and the partial derivatives of eqs. 8-10) ---- */

static void FN(form_value)(int form, ptrdiff_t n, const REAL *restrict mx,
                           const REAL *restrict my, const REAL *restrict ms,
                           const REAL *restrict mp, REAL C1, REAL C2, REAL cov,
                           REAL *restrict out)
{
    if (form == FS_FORM_SSIM) {
        for (ptrdiff_t j = 0; j < n; j++) {
            REAL ux = mx[j], uy = my[j];
            REAL uxx = ux * ux, uyy = uy * uy, uxy = ux * uy;
            REAL A1 = 2 * uxy + C1, B1 = uxx + uyy + C1;
            REAL A2 = 2 * (cov * (mp[j] - uxy)) + C2;
            REAL B2 = cov * (ms[j] - uxx - uyy) + C2;
            out[j] = (A1 * A2) / (B1 * B2);
        }
    } else if (form == FS_FORM_CS) {
        for (ptrdiff_t j = 0; j < n; j++) {
            REAL ux = mx[j], uy = my[j];
            REAL A2 = 2 * (cov * (mp[j] - ux * uy)) + C2;
            REAL B2 = cov * (ms[j] - ux * ux - uy * uy) + C2;
            out[j] = A2 / B2;
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++) {
            REAL ux = mx[j], uy = my[j];
            out[j] = (2 * ux * uy + C1) / (ux * ux + uy * uy + C1);
        }
    }
}

/* Value and the cotangent-weighted partials w*dF/d(mu_x, mu_y, E[x^2+y^2], E[xy]).
 * F depends on E[x^2] and E[y^2] only through their sum, so one map serves both. */
static void FN(form_grad)(int form, ptrdiff_t n, const REAL *restrict mx,
                          const REAL *restrict my, const REAL *restrict ms,
                          const REAL *restrict mp, REAL C1, REAL C2, REAL cov,
                          const REAL *restrict w, REAL *restrict out,
                          REAL *restrict fmx, REAL *restrict fmy,
                          REAL *restrict fss, REAL *restrict fxy)
{
    if (form == FS_FORM_SSIM) {
        for (ptrdiff_t j = 0; j < n; j++) {
            REAL ux = mx[j], uy = my[j];
            REAL uxx = ux * ux, uyy = uy * uy, uxy = ux * uy;
            REAL A1 = 2 * uxy + C1, B1 = uxx + uyy + C1;
            REAL A2 = 2 * (cov * (mp[j] - uxy)) + C2;
            REAL B2 = cov * (ms[j] - uxx - uyy) + C2;
            REAL iD = 1 / (B1 * B2);
            REAL S = A1 * A2 * iD;
            REAL wj = w[j];
            REAL sB1 = S * B2 * iD;        /* S / B1 */
            REAL sB2 = cov * S * B1 * iD;  /* c S / B2 */
            REAL t1 = (A2 - cov * A1) * iD;
            out[j] = S;
            fss[j] = -wj * sB2;
            fxy[j] = wj * (2 * cov * A1 * iD);
            fmx[j] = wj * (2 * (uy * t1 + ux * (sB2 - sB1)));
            fmy[j] = wj * (2 * (ux * t1 + uy * (sB2 - sB1)));
        }
    } else if (form == FS_FORM_CS) {
        for (ptrdiff_t j = 0; j < n; j++) {
            REAL ux = mx[j], uy = my[j];
            REAL A2 = 2 * (cov * (mp[j] - ux * uy)) + C2;
            REAL B2 = cov * (ms[j] - ux * ux - uy * uy) + C2;
            REAL iB = 1 / B2;
            REAL cs = A2 * iB;
            REAL wc = w[j] * cov * iB;
            out[j] = cs;
            fss[j] = -wc * cs;
            fxy[j] = 2 * wc;
            fmx[j] = 2 * wc * (ux * cs - uy);
            fmy[j] = 2 * wc * (uy * cs - ux);
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++) {
            REAL ux = mx[j], uy = my[j];
            REAL iB = 1 / (ux * ux + uy * uy + C1);
            REAL l = (2 * ux * uy + C1) * iB;
            REAL wb = 2 * w[j] * iB;
            out[j] = l;
            fss[j] = 0;
            fxy[j] = 0;
            fmx[j] = wb * (uy - ux * l);
            fmy[j] = wb * (ux - uy * l);
        }
    }
}

/* Sum of one line's values over the region, float64, fixed order whatever the ISA. */
static double FN(region_sum)(const REAL *s, int o2, const int *s1, const int *s2)
{
    double acc[16] = {0};
    double tail = 0;
    const ptrdiff_t n = s2[1] - s2[0];
    for (int i1 = s1[0]; i1 < s1[1]; i1++) {
        const REAL *p = s + (ptrdiff_t)i1 * o2 + s2[0];
        ptrdiff_t j = 0;
        for (; j + 16 <= n; j += 16)
            for (int l = 0; l < 16; l++) acc[l] += (double)p[j + l];
        for (; j < n; j++) tail += (double)p[j];
    }
    double h[8];
    for (int l = 0; l < 8; l++) h[l] = acc[l] + acc[l + 8];
    return (((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7]))) + tail;
}

/* ---- scratch ---- */

typedef struct {
    REAL *v[4], *m[4], *S, *wl, *tmp, *ring[4], *av[4], *ag[4];
    const REAL **xr, **yr, **pr;
} FN(fs_scr);

static size_t FN(fs_layout)(const fs_job *job, char *base, FN(fs_scr) *s)
{
    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const ptrdiff_t Lo = (ptrdiff_t)job->o1 * job->o2;
    const int R = 2 * job->f0.r + 1;
    int rp = R;
    if (job->n1 > 1 && 2 * job->f1.r + 1 > rp) rp = 2 * job->f1.r + 1;
    size_t off = 0;
#define FS_TAKE(ptr, type, count)                                        \
    do {                                                                 \
        if (s) ptr = (type *)(base + off);                               \
        off += ((size_t)(count) * sizeof(type) + 63) & ~(size_t)63;      \
    } while (0)
    for (int i = 0; i < 4; i++) FS_TAKE(s->v[i], REAL, L);
    for (int i = 0; i < 4; i++) FS_TAKE(s->m[i], REAL, Lo);
    FS_TAKE(s->S, REAL, Lo);
    FS_TAKE(s->wl, REAL, Lo);
    FS_TAKE(s->tmp, REAL, job->n2 > job->o2 ? job->n2 : job->o2);
    FS_TAKE(s->xr, const REAL *, rp);
    FS_TAKE(s->yr, const REAL *, rp);
    FS_TAKE(s->pr, const REAL *, rp);
    if (job->grad) {
        for (int i = 0; i < 4; i++) FS_TAKE(s->ring[i], REAL, (ptrdiff_t)R * Lo);
        for (int i = 0; i < 4; i++) FS_TAKE(s->av[i], REAL, Lo);
        for (int i = 0; i < 4; i++) FS_TAKE(s->ag[i], REAL, L);
    }
#undef FS_TAKE
    return off + 64;
}

FS_TARGETS size_t FN(fs_scratch_bytes)(const fs_job *job)
{
    return FN(fs_layout)(job, NULL, NULL);
}

/* Moments of output line p into s->m (eqs. 2-4, all axes). */
static void FN(moments)(const fs_job *job, const REAL *x, const REAL *y, int p,
                        FN(fs_scr) *s)
{
    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const REAL *t;
    int sym = FN(band_row)(&job->f0, p, &t);
    FN(band_ptrs)(&job->f0, p, x, L, s->xr);
    FN(band_ptrs)(&job->f0, p, y, L, s->yr);
    FN(vfwd)(L, s->xr, s->yr, job->f0.r, sym, (const REAL *)job->f0.g, t, s->v);
    for (int i = 0; i < 4; i++)
        FN(inner)(&job->f1, &job->f2, job->n1, job->n2, job->o1, s->v[i],
                  s->m[i], s->tmp, s->pr);
}

FS_TARGETS void FN(fs_rows)(const fs_job *job, ptrdiff_t plane, int q0, int q1,
                            void *scratch)
{
    FN(fs_scr) s;
    char *base = (char *)(((size_t)scratch + 63) & ~(size_t)63);
    FN(fs_layout)(job, base, &s);

    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const ptrdiff_t Lo = (ptrdiff_t)job->o1 * job->o2;
    const REAL *x = (const REAL *)job->x + plane * job->plane_in;
    const REAL *y = (const REAL *)job->y + plane * job->plane_in;
    REAL *map = job->map ? (REAL *)job->map + plane * job->plane_out : NULL;
    double *rowsum = job->rowsum ? job->rowsum + plane * job->o0 : NULL;
    const REAL C1 = (REAL)job->C1, C2 = (REAL)job->C2, cov = (REAL)job->cov;

    if (!job->grad) {
        for (int p = q0; p < q1; p++) {
            FN(moments)(job, x, y, p, &s);
            REAL *out = map ? map + (ptrdiff_t)p * Lo : s.S;
            FN(form_value)(job->form, Lo, s.m[0], s.m[1], s.m[2], s.m[3], C1, C2,
                           cov, out);
            if (rowsum)
                rowsum[p] = (p >= job->s0[0] && p < job->s0[1])
                                ? FN(region_sum)(out, job->o2, job->s1, job->s2)
                                : 0.0;
        }
        return;
    }

    /* Gradient: stream the output lines needed by input lines [q0, q1)
     * through a ring of 2r+1 lines of cotangent-weighted partials. */
    const fs_band *a0 = &job->a0;
    const int r = a0->r, R = 2 * r + 1;
    const REAL *wmap = job->wmap ? (const REAL *)job->wmap + plane * job->plane_out : NULL;
    if (!wmap) {
        memset(s.wl, 0, Lo * sizeof(REAL));
        for (int i1 = job->s1[0]; i1 < job->s1[1]; i1++)
            for (int i2 = job->s2[0]; i2 < job->s2[1]; i2++)
                s.wl[(ptrdiff_t)i1 * job->o2 + i2] = (REAL)job->wscal;
    }
    int maps[4], nm = 0;
    if (job->grad & FS_GRAD_X) maps[nm++] = 0;
    if (job->grad & FS_GRAD_Y) maps[nm++] = 1;
    maps[nm++] = 2;
    maps[nm++] = 3;
    REAL *gx = (job->grad & FS_GRAD_X) ? (REAL *)job->gx + plane * job->plane_in : NULL;
    REAL *gy = (job->grad & FS_GRAD_Y) ? (REAL *)job->gy + plane * job->plane_in : NULL;

    int next = q0 + a0->off - r;
    if (next < 0) next = 0;
    for (int q = q0; q < q1; q++) {
        int need = q + a0->off + r;
        if (need > job->o0 - 1) need = job->o0 - 1;
        for (; next <= need; next++) {
            const int p = next;
            const int c = p + job->f0.off;
            const int owned = c >= q0 && c < q1;
            const ptrdiff_t slot = (ptrdiff_t)(p % R) * Lo;
            const REAL *w = wmap ? wmap + (ptrdiff_t)p * Lo
                                 : ((p >= job->s0[0] && p < job->s0[1]) ? s.wl : NULL);
            REAL *out = (map && owned) ? map + (ptrdiff_t)p * Lo : s.S;
            FN(moments)(job, x, y, p, &s);
            if (w) {
                FN(form_grad)(job->form, Lo, s.m[0], s.m[1], s.m[2], s.m[3], C1,
                              C2, cov, w, out, s.ring[0] + slot, s.ring[1] + slot,
                              s.ring[2] + slot, s.ring[3] + slot);
            } else {
                FN(form_value)(job->form, Lo, s.m[0], s.m[1], s.m[2], s.m[3], C1,
                               C2, cov, out);
                for (int i = 0; i < 4; i++) memset(s.ring[i] + slot, 0, Lo * sizeof(REAL));
            }
            if (rowsum && owned)
                rowsum[p] = (p >= job->s0[0] && p < job->s0[1])
                                ? FN(region_sum)(out, job->o2, job->s1, job->s2)
                                : 0.0;
        }
        /* adjoint along the streamed axis, then within the line */
        const REAL *t;
        int sym = FN(band_row)(a0, q, &t);
        for (int ii = 0; ii < nm; ii++) {
            const int i = maps[ii];
            for (int k = 0; k < R; k++) {
                int p = q + a0->off - r + k;
                s.pr[k] = (p >= 0 && p < job->o0) ? s.ring[i] + (ptrdiff_t)(p % R) * Lo : NULL;
            }
            FN(vlin)(Lo, s.pr, r, sym, (const REAL *)a0->g, t, s.av[i]);
            /* s.xr is free here: the inner adjoint uses it for its line pointers */
            FN(inner)(&job->a1, &job->a2, job->o1, job->o2, job->n1, s.av[i],
                      s.ag[i], s.tmp, s.xr);
        }
        const REAL *xq = x + (ptrdiff_t)q * L, *yq = y + (ptrdiff_t)q * L;
        const REAL *ass = s.ag[2], *axy = s.ag[3];
        if (gx) {
            REAL *restrict o = gx + (ptrdiff_t)q * L;
            const REAL *amx = s.ag[0];
            for (ptrdiff_t j = 0; j < L; j++)
                o[j] = amx[j] + 2 * xq[j] * ass[j] + yq[j] * axy[j];
        }
        if (gy) {
            REAL *restrict o = gy + (ptrdiff_t)q * L;
            const REAL *amy = s.ag[1];
            for (ptrdiff_t j = 0; j < L; j++)
                o[j] = amy[j] + 2 * yq[j] * ass[j] + xq[j] * axy[j];
        }
    }
}
