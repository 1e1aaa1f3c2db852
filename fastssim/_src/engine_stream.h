/* engine_stream.h: the streaming driver.  Lines streamed through the window
 * (hline, moments), the value pass and the gradient pass of fs_rows_multi.
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

/* Ask for n samples of x and y from element at on (a line the stream reads
 * next) while this line is filtered: the rows are streamed from memory once,
 * a row of a 1024-wide float32 image is one 4 KiB page, and the hardware
 * prefetchers stop at page ends (the source loop waited on those loads for a
 * sixth of a value's time; perf).  Only a hint: no result depends on it.
 * Always inlined: GCC takes a function of prefetches alone for one without
 * effects and deleted its calls (the build had no prefetch instruction). */
static inline __attribute__((always_inline)) void
FN(prefetch_line)(const fs_job *job, ptrdiff_t at, ptrdiff_t n)
{
    const int t = job->in_type;
    const ptrdiff_t esz = t == FS_IN_REAL ? (ptrdiff_t)sizeof(REAL)
                          : t == FS_IN_F32 ? 4 : (t == FS_IN_U16 || t == FS_IN_I16) ? 2 : 1;
    const ptrdiff_t bytes = n * job->nci * esz;
    const char *px = (const char *)job->x + at * esz, *py = (const char *)job->y + at * esz;
    for (ptrdiff_t o = 0; o < bytes; o += 64) {
        __builtin_prefetch(px + o, 0, 3);
        __builtin_prefetch(py + o, 0, 3);
    }
}

/* Input line q, filtered within the line (axes 1, 2) for the four moment
 * sources x, y, (x - y)^2, xy (eqs. 2-4), into the ring slot of q (and,
 * with a fused downsampling, the next scale's row it completes). */
static void FN(hline)(const fs_job *job, ptrdiff_t xoff, int q, FN(fs_scr) *s)
{
    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const ptrdiff_t slot = (ptrdiff_t)(q % s->nrh) * s->Ls;
    const int nci = job->nci;
    /* input columns [i0, i1) that the unit's map columns [m0, m1) read */
    ptrdiff_t i0 = 0, i1 = L;
    if (job->n1 == 1) {
        const fs_band *b = &job->f2;
        i0 = s->m0 + b->off - b->r;
        i1 = s->m1 - 1 + b->off + b->r + 1;
        if (sizeof(REAL) == 4 && s->bt[0] && FN(is_box)(b)) {  /* engine_box.h: box_scan */
            const ptrdiff_t f = FN(box_scan_from)(b, s->m0) + b->off - b->r;
            if (f < i0) i0 = f;
        }
        if (i0 < 0) i0 = 0;
        if (i1 > L) i1 = L;
    }
    const ptrdiff_t n = i1 - i0;
    const ptrdiff_t at = xoff + ((ptrdiff_t)q * L + i0) * nci;
    REAL *restrict su = s->src[0], *restrict sv = s->src[1];
    REAL *restrict ss = s->src[2], *restrict sp = s->src[3];
    if (s->keep_raw && job->dx && n == L) {
        /* a converted input feeding the fused downsampling: the line as
         * converted (what a planar copy would hold) is kept for it, and the
         * sources are formed from it (the same bits as line_sources) */
        REAL *rx = s->drows + (q & 1) * L, *ry = s->drows + (2 + (q & 1)) * L;
        FN(load_line)(job->x, job->in_type, at, nci, n, 0, rx);
        FN(load_line)(job->y, job->in_type, at, nci, n, 0, ry);
        s->dtag[q & 1] = q;
        FN(sources)(n, rx, ry, s->sx, s->sy, su, sv, ss, sp);
    } else {
        FN(line_sources)(job, at, n, s->sx, s->sy, su, sv, ss, sp);
    }
    if (q + 1 < job->n0) FN(prefetch_line)(job, at + L * nci, n);
    if (job->dx && q >= s->own_lo && q < s->own_hi && job->dlast[q] >= 0)
        /* fused 2x downsampling: row o of the next MS-SSIM scale, from the
         * input rows just streamed (they are in cache) */
        FN(down_fused)(job, xoff, s->plane, job->dlast[q], s->drows, s->dtag);
    const REAL *srcs[4] = {su, sv, ss, sp};
    /* a plain windowed mean (FS_FORM_MEAN) reads the first source only */
    const int ns = job->form == FS_FORM_MEAN ? 1 : 4;
    if (s->nbf) {  /* engine_box.h: window sums, divided across lines (nbox_one) */
        for (int i = 0; i < ns; i++)
            FN(nbox_sums)(&job->f2, srcs[i] - i0, i0, i1, s->hring[i] + slot - s->m0,
                          s->m0, s->m1, FS_PAD);
        return;
    }
    if (ns == 4 && job->n1 == 1 && !(s->bt[0] && FN(is_box)(&job->f2))
        && !FN(is_nbox)(&job->f2)) {  /* the four sources at once (band_range4) */
        const REAL *in[4];
        REAL *out[4];
        for (int i = 0; i < 4; i++) {
            in[i] = srcs[i] - i0;
            out[i] = s->hring[i] + slot - s->m0;
        }
        FN(band_range4)(&job->f2, in, i0, i1, out, s->m0, s->m1, FS_PAD);
        return;
    }
    for (int i = 0; i < ns; i++) {
        if (job->n1 == 1 && s->bt[0] && FN(is_box)(&job->f2))  /* engine_box.h */
            FN(box_range)(&job->f2, srcs[i] - i0, i0, i1, s->hring[i] + slot - s->m0,
                          s->m0, s->m1, FS_PAD, s->bt[0], s->bt[1], 1);
        else if (job->n1 == 1 && FN(is_nbox)(&job->f2))  /* engine_box.h: unit sums */
            FN(nbox_range)(&job->f2, srcs[i] - i0, i0, i1, s->hring[i] + slot - s->m0,
                           s->m0, s->m1, FS_PAD);
        else if (job->n1 == 1)  /* ring lines hold map columns [m0, m1) */
            FN(band_range)(&job->f2, srcs[i] - i0, i0, i1, s->hring[i] + slot - s->m0,
                           s->m0, s->m1, FS_PAD, 0, 0);
        else
            FN(inner)(&job->f1, &job->f2, job->n1, job->n2, job->o1, srcs[i],
                      s->hring[i] + slot, s->tmp, s->pr);
    }
}

/* Input lines up to qto of every window of a multi-window job (2-D, one
 * offset): the four sources once per line (in window 0's buffers, over the
 * union of the windows' input columns), then each source filtered by all the
 * windows at once (band_range_multi) into their rings. */
static void FN(hlines_multi)(const fs_job *jobs, int M, ptrdiff_t xoff, int qfrom, int qto,
                             FN(fs_scr) *s)
{
    const fs_job *J = &jobs[0];
    const ptrdiff_t L = J->n2;
    const int nci = J->nci;
    ptrdiff_t i0 = L, i1 = 0;
    const fs_band *bands[FS_MAXW];
    for (int j = 0; j < M; j++) {
        const fs_band *b = &jobs[j].f2;
        ptrdiff_t a = s[j].m0 + b->off - b->r, e = s[j].m1 - 1 + b->off + b->r + 1;
        if (a < 0) a = 0;
        if (e > L) e = L;
        if (a < i0) i0 = a;
        if (e > i1) i1 = e;
        bands[j] = b;
    }
    const ptrdiff_t n = i1 - i0;
    REAL *restrict su = s[0].src[0], *restrict sv = s[0].src[1];
    REAL *restrict ss = s[0].src[2], *restrict sp = s[0].src[3];
    /* the taps k-major for shared_run, if the radii ascend (M <= FS_MAXW) */
    REAL gt[(FS_MAXR + 1) * FS_MAXW];
    int ok = bands[M - 1]->r <= FS_MAXR;
    for (int j = 1; j < M; j++) ok &= bands[j]->r >= bands[j - 1]->r;
    if (ok)
        for (int j = 0; j < M; j++)
            for (int k = 0; k <= bands[M - 1]->r; k++)
                gt[k * M + j] = k <= bands[j]->r ? ((const REAL *)bands[j]->g)[k] : 0;
    if (qfrom < 0) qfrom = 0;
    if (qfrom < s[0].hnext) qfrom = s[0].hnext;
    if (qto > J->n0 - 1) qto = J->n0 - 1;
    for (int q = qfrom; q <= qto; q++) {
        const ptrdiff_t at = xoff + ((ptrdiff_t)q * L + i0) * nci;
        FN(line_sources)(J, at, n, s[0].sx, s[0].sy, su, sv, ss, sp);
        if (q + 1 < J->n0) FN(prefetch_line)(J, at + L * nci, n);
        const REAL *srcs[4] = {su, sv, ss, sp};
        for (int i = 0; i < 4; i++) {
            REAL *outs[FS_MAXW];
            for (int j = 0; j < M; j++)
                outs[j] = s[j].hring[i] + (ptrdiff_t)(q % s[j].nrh) * s[j].Ls - s[j].m0;
            FN(band_range_multi)(bands, M, ok ? gt : NULL, srcs[i] - i0, i0, i1, outs, s[0].m0,
                                 s[0].m1, FS_PAD);
        }
    }
    for (int j = 0; j < M; j++)
        if (s[j].hnext < qto + 1) s[j].hnext = qto + 1;
}

/* Moments of output lines p0 .. p0+nb-1 into s->m[b]: the streamed-axis
 * band over the ring of within-line-filtered source lines (filtered lines
 * are made on demand, each input line once per block). */
static void FN(moments)(const fs_job *job, ptrdiff_t xoff, int p0, int nb,
                        FN(fs_scr) *s)
{
    const fs_band *f0 = &job->f0;
    const int r = f0->r, c0 = p0 + f0->off;
    int qlo = c0 - r < 0 ? 0 : c0 - r;
    int qhi = c0 + nb - 1 + r > job->n0 - 1 ? job->n0 - 1 : c0 + nb - 1 + r;
    if (s->hnext < qlo) s->hnext = qlo;
    for (; s->hnext <= qhi; s->hnext++) FN(hline)(job, xoff, s->hnext, s);
    /* Always a full block: missing outputs read zeros into spare buffers,
     * so every output line takes the same arithmetic wherever its block
     * boundaries fall (results independent of the thread count). */
    const int B = s->B;
    /* a narrow float32 box: its interior lines as unit sums, scaled below
     * (engine_box.h) */
    const int nbox = FN(is_nbox)(f0);
    const REAL *gint = nbox ? FN(nbox_ones) : s->gfull;
    const REAL *w[FS_B];
    FN(block_weights)(f0, p0, nb, gint, w);
    for (int b = nb; b < B; b++) w[b] = gint;
#ifdef __FMA__
    /* a block of 4 interior lines: the sums and their division in one pass */
    int fuse = nbox && B == 4 && nb == 4 && s->Lw >= NV && f0->r <= 9;
    for (int b = 0; b < B; b++) fuse &= w[b] == gint;
    if (fuse) fuse = FN(box_mass)(f0) == 1.0;
    /* the h-lines are window sums (nbox_one): divide by both widths */
    const int dw = s->nbf ? (2 * r + 1) * (2 * job->f2.r + 1) : 2 * r + 1;
#endif
    /* the ring lines of source 0 (one modulo each), moved to source i's
     * ring below (a 32-line plane made 4 x 14 of them per block) */
    const int nl = 2 * r + B;
    int zl = 0, zh = nl;  /* lines [zl, zh) exist, the others read zeros */
    if (c0 - r < 0) zl = r - c0;
    if (zh > 2 * r + nb) zh = 2 * r + nb;
    if (zh > job->n0 - c0 + r) zh = job->n0 - c0 + r;
    if (zh < zl) zh = zl;
    for (int l = 0; l < nl; l++) s->pr[l] = s->zeros;
    if (zh > zl) {
        int slot = (c0 - r + zl) % s->nrh;
        for (int l = zl; l < zh; l++) {
            s->pr[l] = s->hring[0] + (ptrdiff_t)slot * s->Ls;
            if (++slot == s->nrh) slot = 0;
        }
    }
    for (int i = 0; i < (job->form == FS_FORM_MEAN ? 1 : 4); i++) {
        if (i) {
            const ptrdiff_t d = s->hring[i] - s->hring[i - 1];
            const REAL **pr = s->pr;
            for (int l = zl; l < zh; l++) pr[l] += d;
        }
        REAL *out[FS_B];
        for (int b = 0; b < B; b++) out[b] = s->m[b][i];
#ifdef __FMA__
        if (s->nbf) {  /* engine_box.h: every line by pair trees, border rows by tables */
            for (int b0 = 0; b0 < B; b0 += 4)
                FN(nbox_psum4_r)(r, c0 - r + b0, s->Lw, s->pr + b0, (REAL)dw, (REAL)(1.0 / dw),
                                 out + b0);
            const int w2 = 2 * job->f2.r + 1;  /* a border row of window sums */
            for (int b = 0; b < nb; b++)
                if (w[b] != gint) {
                    FN(vlin)(s->Lw, s->pr + b, r, 0, NULL, w[b], out[b]);
                    FN(nbox_div)(out[b], s->Lw, (REAL)w2, (REAL)(1.0 / w2));
                }
            continue;
        }
        if (fuse) {
            FN(nbox_vsum4_r)(r, s->Lw, s->pr, (REAL)dw, (REAL)(1.0 / dw), out);
            continue;
        }
#endif
        FN(vlin_multi)(s->Lw, s->pr, r, B, w, out);
        if (nbox)
            for (int b = 0; b < nb; b++)
                if (w[b] == gint) FN(nbox_scale)(out[b], s->Lw, f0);
    }
}

/* box_moments' line maker: input line q (and every one before it not yet
 * made) filtered within the line into the h-ring. */
typedef struct {
    const fs_job *job;
    ptrdiff_t xoff;
    FN(fs_scr) *s;
} FN(box_hctx);

static void FN(box_make_h)(void *ctx, int q)
{
    FN(box_hctx) *c = (FN(box_hctx) *)ctx;
    if (q > c->job->n0 - 1) q = c->job->n0 - 1;
    for (; c->s->hnext <= q; c->s->hnext++) FN(hline)(c->job, c->xoff, c->s->hnext, c->s);
}

/* moments() for a box window along the stream (engine_box.h): running sums
 * over the h-ring, from the anchor before p0 when the unit starts there. */
static void FN(box_moments)(const fs_job *job, ptrdiff_t xoff, int p0, int nb, FN(fs_scr) *s)
{
    const fs_band *f0 = &job->f0;
    const int r = f0->r;
    /* anchors at absolute centres (box_lines): the first line read is that
     * of the anchor before p0's centre when the unit starts there */
    int first = p0 + f0->off;
    if (p0 >= f0->lo && p0 < f0->hi && s->bp != first - 1) {
        first -= first % FS_BOXA;
        if (first < r) first = r;
    }
    int qlo = first - r;
    if (qlo < 0) qlo = 0;
    if (s->hnext < qlo) s->hnext = qlo;
    FN(box_hctx) ctx = {job, xoff, s};
    static const int which[4] = {0, 1, 2, 3};
    FN(box_lines)(f0, f0->off, r, p0, nb, job->form == FS_FORM_MEAN ? 1 : 4, s->Lw, s->hring, s->Ls, s->nrh,
                  FN(box_make_h), &ctx, s->bs, &s->bp, s->m, which, s->pr);
}

/* Moments of output lines p0 .. p0+nb-1 for every window of a job; with
 * ``shared`` (hlines_multi's conditions) their h-lines are made together,
 * as far ahead as the widest window (radius rmax along the stream) needs. */
static void FN(block_moments)(const fs_job *jobs, int M, ptrdiff_t xoff, int p0, int nb,
                              int shared, int rmax, FN(fs_scr) *s)
{
    if (shared)
        FN(hlines_multi)(jobs, M, xoff, p0 + jobs[0].f0.off - rmax,
                         p0 + jobs[0].f0.off + nb - 1 + rmax, s);
    if (M == 1 && s[0].bs[0] && FN(is_box)(&jobs[0].f0)) {  /* engine_box.h */
        FN(box_moments)(&jobs[0], xoff, p0, nb, &s[0]);
        return;
    }
    for (int j = 0; j < M; j++) FN(moments)(&jobs[j], xoff, p0, nb, &s[j]);
}

/* ---- the streaming driver: one window, or several at once ----
 *
 * One window (M = 1) is SSIM, cs, l or a plain windowed mean.  Several are
 * the per-pixel MS-SSIM of Zhao et al.: P(p) = prod_j F_j(p), F_j the form of
 * jobs[j] (cs_j, and SSIM for the widest window), all on the same output grid.  One stream over the lines
 * computes every scale's moments, the product, and, for the gradient of
 * sum_p w(p) P(p), each scale's partials weighted by w * prod_{k != j} F_k
 * (no division by F_j), then each scale's adjoint, summed before the final
 * combination with x and y. */

/* What a unit (a plane, a block of lines, a column strip) knows of its place
 * in the job, fixed before it streams (unit_init). */
typedef struct {
    const fs_job *jobs;
    int M;
    ptrdiff_t plane;
    int strip, nstrip;
    int c_lo, c_hi;        /* final output columns (2-D): of the map, or of the gradient */
    int nci, two_d;
    ptrdiff_t L, Lo;       /* input and output samples of a line */
    ptrdiff_t xoff, moff;  /* the plane's offsets in the inputs and in the map */
    REAL *map;
    double *rowsum;
    REAL C1, C2, sx, sy;
    int rmax;              /* widest radius along the stream */
    int B;                 /* output lines per row block */
    /* map columns computed [m0, m1) and owned (written, summed) [own0, own1) */
    int m0, m1, own0, own1;
    ptrdiff_t Lw, Lg, g0;  /* map line width, gradient columns and the first one */
    int ss1[2], ss2[2];    /* the unit's share of the sum region, relative to m0 */
    int ostride;
    int nchunk, k0, k1;    /* the value pass's column chunks this unit sums */
    int shared;            /* h-lines of all windows made together (hlines_multi) */
    int fused;             /* the product and its cotangents by cot_run */
    int forms[FS_MAXW];
    REAL covs[FS_MAXW];
} FN(fs_unit);

/* Each window's scratch state for the unit (u from unit_init), and whether
 * their h-lines can be made together (u->shared). */
static void FN(scr_init)(FN(fs_unit) *u, int q0, int q1, FN(fs_scr) *s)
{
    const fs_job *jobs = u->jobs, *J = &jobs[0];
    const int M = u->M, B = u->B, two_d = u->two_d, m0 = u->m0, m1 = u->m1;
    const ptrdiff_t Lw = u->Lw;
    /* input lines whose fused downsampled rows this unit writes */
    int own_lo = q0, own_hi = q1;
    if (!J->grad) {
        own_lo = q0 == J->line_lo ? 0 : q0 + J->f0.off;
        own_hi = q1 == J->line_hi ? J->n0 : q1 + J->f0.off;
    }
    for (int j = 0; j < M; j++) {
        const int r = jobs[j].f0.r;
        const REAL *g = (const REAL *)jobs[j].f0.g;
        s[j].B = B;
        s[j].own_lo = own_lo;
        s[j].own_hi = own_hi;
        s[j].plane = u->plane;
        for (int k = 0; k <= r; k++) s[j].gfull[r + k] = s[j].gfull[r - k] = g[k];
        memset(s[j].zeros, 0, u->Lo * sizeof(REAL));
        s[j].hnext = -(1 << 30);
        s[j].bp = s[j].bpa = -(1 << 30);  /* no running box sums yet */
        s[j].sx = u->sx;
        s[j].sy = u->sy;
        s[j].m0 = m0;
        s[j].m1 = m1;
        s[j].Lw = Lw;
        if (two_d) {  /* zeros after the data of the unit's lines (band_range's pad) */
            const fs_band *b2 = &jobs[j].f2;
            ptrdiff_t i0 = m0 + b2->off - b2->r, i1 = m1 - 1 + b2->off + b2->r + 1;
            if (i0 < 0) i0 = 0;
            if (i1 > (ptrdiff_t)J->n2) i1 = J->n2;
            for (int i = 0; i < 4; i++) memset(s[j].src[i] + (i1 - i0), 0, FS_PAD * sizeof(REAL));
            if (jobs[j].grad)
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < 4; i++) memset(s[j].av[b][i] + Lw, 0, FS_PAD * sizeof(REAL));
        }
    }
    /* windows with one offset over 2-D lines: their h-lines made together */
    int shared = M > 1 && M <= FS_MAXW && two_d;
    for (int j = 1; j < M && shared; j++)
        shared = jobs[j].f2.off == J->f2.off && jobs[j].f2.n_in == J->f2.n_in
                 && jobs[j].f2.n_out == J->f2.n_out && jobs[j].f0.off == J->f0.off;
    /* the h-rings must have been sized for lines made rmax ahead (ring_r) */
    for (int j = 0; j < M && shared; j++) shared = jobs[j].ring_r >= u->rmax;
    if (shared) {  /* the shared sources span the union of the windows' columns */
        ptrdiff_t u0 = J->n2, u1 = 0;
        for (int j = 0; j < M; j++) {
            const fs_band *b2 = &jobs[j].f2;
            ptrdiff_t a = m0 + b2->off - b2->r, e = m1 - 1 + b2->off + b2->r + 1;
            if (a < 0) a = 0;
            if (e > (ptrdiff_t)J->n2) e = J->n2;
            if (a < u0) u0 = a;
            if (e > u1) u1 = e;
        }
        for (int i = 0; i < 4; i++) memset(s[0].src[i] + (u1 - u0), 0, FS_PAD * sizeof(REAL));
    }
    u->shared = shared;
    /* narrow boxes divided once, across lines (engine_box.h: nbox_one) */
    for (int j = 0; j < M; j++) s[j].nbf = !shared && FN(nbox_one)(&jobs[j]);
}

/* The unit's geometry: plane, column strip, sum region, block height. */
static void FN(unit_init)(const fs_job *jobs, int M, ptrdiff_t plane, int c_lo, int c_hi,
                          int strip, int nstrip, FN(fs_unit) *u)
{
    const fs_job *J = &jobs[0];
    u->jobs = jobs;
    u->M = M;
    u->plane = plane;
    u->strip = strip;
    u->nstrip = nstrip;
    u->c_lo = c_lo;
    u->c_hi = c_hi;
    u->L = (ptrdiff_t)J->n1 * J->n2;
    u->Lo = (ptrdiff_t)J->o1 * J->o2;
    /* planes are (item, channel) pairs; with interleaved channels (nci > 1)
     * every line of the inputs, map, cotangent and gradients has stride nci */
    const int nci = u->nci = J->nci;
    const int two_d = u->two_d = J->n1 == 1;
    u->xoff = FN(plane_off)(plane, nci, J->plane_in);
    u->moff = FN(plane_off)(plane, nci, J->plane_out);
    u->map = J->map ? (REAL *)J->map + u->moff : NULL;
    u->rowsum = J->rowsum ? J->rowsum + (ptrdiff_t)plane * J->o0 * nstrip : NULL;
    u->C1 = (REAL)J->C1;
    u->C2 = (REAL)J->C2;
    u->sx = J->shift_x ? (REAL)J->shift_x[plane] : 0;
    u->sy = J->shift_y ? (REAL)J->shift_y[plane] : 0;
    int rmax = 0, r2max = 0;
    for (int j = 0; j < M; j++) {
        if (jobs[j].f0.r > rmax) rmax = jobs[j].f0.r;
        if (jobs[j].f2.r > r2max) r2max = jobs[j].f2.r;
    }
    u->rmax = rmax;
    /* Column strip (2-D images; a volume's line is one strip): the unit's
     * final outputs are columns [c_lo, c_hi) of the map (value) or of the
     * gradient (which reads map columns up to r away).  m0..m1: the map
     * columns computed; own0..own1: those this unit writes and sums. */
    int m0 = 0, m1 = J->o2, own0 = 0, own1 = J->o2;
    if (two_d) {
        if (!J->grad) {
            m0 = own0 = c_lo;
            m1 = own1 = c_hi;
        } else {
            m0 = c_lo + J->a2.off - r2max;
            m1 = c_hi - 1 + J->a2.off + r2max + 1;
            if (M == 1 && sizeof(REAL) == 4 && FN(is_box)(&J->a2)) {
                /* the adjoint's box_scan reads from its anchor (engine_box.h) */
                const int f = (int)FN(box_scan_from)(&J->a2, c_lo) + J->a2.off - J->a2.r;
                if (f < m0) m0 = f;
            }
            if (m0 < 0) m0 = 0;
            if (m1 > J->o2) m1 = J->o2;
            own0 = c_lo - J->f2.off;
            own1 = c_hi - J->f2.off;
            if (own0 < m0) own0 = m0;
            if (own1 > m1) own1 = m1;
            if (own1 < own0) own1 = own0;  /* a strip may own no map column */
        }
    }
    u->m0 = m0;
    u->m1 = m1;
    u->own0 = own0;
    u->own1 = own1;
    const ptrdiff_t Lw = u->Lw = two_d ? m1 - m0 : u->Lo;
    u->Lg = two_d ? c_hi - c_lo : u->L;   /* gradient columns of the unit */
    u->g0 = two_d ? c_lo : 0;
    u->ss1[0] = J->s1[0];
    u->ss1[1] = J->s1[1];
    u->ss2[0] = J->s2[0];
    u->ss2[1] = J->s2[1];
    if (two_d) {
        u->ss2[0] = (J->s2[0] > own0 ? J->s2[0] : own0) - m0;
        u->ss2[1] = (J->s2[1] < own1 ? J->s2[1] : own1) - m0;
        if (u->ss2[1] < u->ss2[0]) u->ss2[1] = u->ss2[0];
    }
    u->ostride = two_d ? (int)Lw : J->o2;
    /* sums in the value pass's column strips (sum_chunk): the unit owns whole
     * chunks k0 .. k1-1 of the nchunk of a line (the launcher's promise) */
    u->nchunk = two_d && J->sum_chunk > 0 ? (J->o2 + J->sum_chunk - 1) / J->sum_chunk : 0;
    u->k0 = u->nchunk ? own0 / J->sum_chunk : 0;
    u->k1 = u->nchunk ? (own1 + J->sum_chunk - 1) / J->sum_chunk : 0;
    if (u->rowsum && u->nchunk > 1) u->rowsum = J->rowsum + (ptrdiff_t)plane * J->o0 * u->nchunk;
    /* blocks of 16 or 8 lines when the widest window is wide, else 4 (shared by
     * all scales; the scratch is carved for it, fs_carve) */
    u->B = FN(block_lines)(jobs, M, rmax);
    /* several windows of forms SSIM and CS (the per-pixel MS-SSIM): the
     * product and its cotangents in one register pass (cot_run) */
    int fused = M > 1 && M <= FS_MAXW && Lw >= NV;
    for (int j = 0; j < M && fused; j++) {
        u->forms[j] = jobs[j].form;
        u->covs[j] = (REAL)jobs[j].cov;
        fused = u->forms[j] == FS_FORM_SSIM || u->forms[j] == FS_FORM_CS;
    }
    u->fused = fused;
}

/* Map line p of the unit (row: its columns from m0 on): the owned columns
 * into the map, and the line's sums over the region (per strip, or per
 * value-pass chunk). */
static inline __attribute__((always_inline)) void
FN(unit_emit)(const FN(fs_unit) *u, int p, const REAL *row)
{
    const fs_job *J = &u->jobs[0];
    if (u->map) {
        REAL *dst = u->map + ((ptrdiff_t)p * u->Lo + (u->two_d ? u->own0 : 0)) * u->nci;
        const REAL *src = row + (u->two_d ? u->own0 - u->m0 : 0);
        const ptrdiff_t cnt = u->two_d ? u->own1 - u->own0 : u->Lo;
        if (u->nci == 1) memcpy(dst, src, cnt * sizeof(REAL));
        else FN(store_strided)(src, dst, u->nci, cnt);
    }
    const int in_region = p >= J->s0[0] && p < J->s0[1];
    if (u->rowsum && u->nchunk > 1)
        FN(chunk_sums)(row, in_region, u->ostride, u->ss1, J->s2, u->m0, J->sum_chunk, u->k0,
                       u->k1, u->rowsum + (ptrdiff_t)p * u->nchunk);
    else if (u->rowsum)
        u->rowsum[(ptrdiff_t)p * u->nstrip + u->strip] =
            in_region ? FN(region_sum)(row, u->ostride, u->ss1, u->ss2) : 0.0;
}

/* The product of the windows' forms on block line b into out, and (w not
 * NULL) their cotangent-weighted partials into fr: cot_run for a constant
 * window count (the factors stay in registers).  Inlined, so that a value
 * pass (w = NULL) compiles without the cotangent loop (2 % of the per-pixel
 * MS-SSIM value's instructions; callgrind). */
static inline __attribute__((always_inline)) void
FN(cot_line)(const FN(fs_unit) *u, FN(fs_scr) *s, int b, const REAL *w, REAL *const (*fr)[4],
             REAL *out)
{
    const REAL *mm[FS_MAXW][4];
    for (int j = 0; j < u->M; j++)
        for (int i = 0; i < 4; i++) mm[j][i] = s[j].m[b][i];
#define FS_COT_RUN(M) \
    FN(cot_run)(M, u->Lw, u->forms, u->covs, mm, u->C1, u->C2, u->sx, u->sy, w, out, fr)
    switch (u->M) {
    case 2: FS_COT_RUN(2); break;
    case 3: FS_COT_RUN(3); break;
    case 4: FS_COT_RUN(4); break;
    case 5: FS_COT_RUN(5); break;
    case 6: FS_COT_RUN(6); break;
    case 7: FS_COT_RUN(7); break;
    default: FS_COT_RUN(8); break;
    }
#undef FS_COT_RUN
}

/* The value of block line b (moments in s[j].m[b]) into out: the product
 * F_0 (F_1 (... F_{M-1})) in product_rtl's order (fac: scratch lines). */
static inline __attribute__((always_inline)) void
FN(value_line)(const FN(fs_unit) *u, FN(fs_scr) *s, FN(fs_tmp) *t, int b, REAL *out)
{
    if (u->fused) {
        FN(cot_line)(u, s, b, NULL, NULL, out);
        return;
    }
    for (int j = 0; j < u->M; j++) {
        const fs_job *Jj = &u->jobs[j];
        FN(form_value)(Jj->form, u->Lw, s[j].m[b][0], s[j].m[b][1], s[j].m[b][2],
                       s[j].m[b][3], u->C1, u->C2, (REAL)Jj->cov, u->sx, u->sy,
                       j ? t->fac[j] : out);
    }
    FN(product_rtl)(t->fac, u->M, u->Lw, out);
}

/* Value pass: output lines [q0, q1), a block of B at a time. */
static void FN(value_pass)(const FN(fs_unit) *u, FN(fs_scr) *s, FN(fs_tmp) *t, int q0, int q1)
{
    for (int p0 = q0; p0 < q1; p0 += u->B) {
        const int nb = q1 - p0 < u->B ? q1 - p0 : u->B;
        FN(block_moments)(u->jobs, u->M, u->xoff, p0, nb, u->shared, u->rmax, s);
        for (int b = 0; b < nb; b++) {
            FN(value_line)(u, s, t, b, t->prow);
            FN(unit_emit)(u, p0 + b, t->prow);
        }
    }
}

/* Gradient pass, map line p (block line b, cotangent w or NULL): the value
 * into out and each window's cotangent-weighted partials into its F ring
 * (maps: the nm partials the adjoint reads). */
static inline __attribute__((always_inline)) void
FN(grad_line)(const FN(fs_unit) *u, FN(fs_scr) *s, FN(fs_tmp) *t, int b, int p,
              const REAL *w, const int *maps, int nm, REAL *out)
{
    const fs_job *J = &u->jobs[0];
    const int M = u->M;
    const ptrdiff_t Lw = u->Lw;
    if (M == 1) {  /* a single window: no product, no other factors */
        const ptrdiff_t slot = (ptrdiff_t)(p % s[0].nrf) * s[0].Ls;
        REAL *const *m = s[0].m[b];
        if (w) {
            FN(form_grad)(J->form, Lw, m[0], m[1], m[2], m[3], u->C1, u->C2, (REAL)J->cov,
                          u->sx, u->sy, w, out,
                          (J->grad & FS_GRAD_X) ? s[0].fring[0] + slot : t->dum,
                          (J->grad & FS_GRAD_Y) ? s[0].fring[1] + slot : t->dum,
                          s[0].fring[2] + slot, s[0].fring[3] + slot);
        } else {
            FN(form_value)(J->form, Lw, m[0], m[1], m[2], m[3], u->C1, u->C2, (REAL)J->cov,
                           u->sx, u->sy, out);
            for (int i = 0; i < 4; i++) memset(s[0].fring[i] + slot, 0, Lw * sizeof(REAL));
        }
        return;
    }
    if (!w) {  /* no cotangent on this line: the value only, as the value pass */
        for (int j = 0; j < M; j++) {
            const ptrdiff_t slot = (ptrdiff_t)(p % s[j].nrf) * s[j].Ls;
            for (int i = 0; i < 4; i++) memset(s[j].fring[i] + slot, 0, Lw * sizeof(REAL));
        }
        FN(value_line)(u, s, t, b, out);
        return;
    }
    if (u->fused) {  /* the usual case (per-pixel MS-SSIM) */
        REAL *fr[FS_MAXW][4];
        for (int j = 0; j < M; j++) {
            const ptrdiff_t slot = (ptrdiff_t)(p % s[j].nrf) * s[j].Ls;
            fr[j][0] = (J->grad & FS_GRAD_X) ? s[j].fring[0] + slot : NULL;
            fr[j][1] = (J->grad & FS_GRAD_Y) ? s[j].fring[1] + slot : NULL;
            fr[j][2] = s[j].fring[2] + slot;
            fr[j][3] = s[j].fring[3] + slot;
        }
        FN(cot_line)(u, s, b, w, fr, out);
        return;
    }
    /* every factor and its unweighted partials in one pass ... */
    for (int j = 0; j < M; j++) {
        const ptrdiff_t slot = (ptrdiff_t)(p % s[j].nrf) * s[j].Ls;
        REAL *const *m = s[j].m[b];
        FN(form_grad)(u->jobs[j].form, Lw, m[0], m[1], m[2], m[3], u->C1, u->C2,
                      (REAL)u->jobs[j].cov, u->sx, u->sy, NULL, t->fac[j],
                      (J->grad & FS_GRAD_X) ? s[j].fring[0] + slot : t->dum,
                      (J->grad & FS_GRAD_Y) ? s[j].fring[1] + slot : t->dum,
                      s[j].fring[2] + slot, s[j].fring[3] + slot);
    }
    /* ... then each scale's cotangent, w times the *other* factors, from a
     * running prefix product (pre = w * prod_{k < j} F_k) and suffix products
     * suf[j] = prod_{k >= j} F_k (suf[0] is P) */
    REAL *restrict pre = t->cot;
    memcpy(t->suf[M - 1], t->fac[M - 1], Lw * sizeof(REAL));
    for (int j = M - 2; j >= 0; j--) {
        const REAL *restrict a = t->fac[j], *restrict bsuf = t->suf[j + 1];
        REAL *restrict d = t->suf[j];
        for (ptrdiff_t i = 0; i < Lw; i++) d[i] = a[i] * bsuf[i];
    }
    memcpy(pre, w, Lw * sizeof(REAL));
    for (int j = 0; j < M; j++) {
        const ptrdiff_t slot = (ptrdiff_t)(p % s[j].nrf) * s[j].Ls;
        REAL *restrict c = t->ctmp;
        if (j < M - 1) {
            const REAL *restrict bsuf = t->suf[j + 1];
            for (ptrdiff_t i = 0; i < Lw; i++) c[i] = pre[i] * bsuf[i];
        } else {
            memcpy(c, pre, Lw * sizeof(REAL));
        }
        for (int ii = 0; ii < nm; ii++) {
            REAL *restrict fr = s[j].fring[maps[ii]] + slot;
            for (ptrdiff_t i = 0; i < Lw; i++) fr[i] *= c[i];
        }
        if (j < M - 1) {
            const REAL *restrict a = t->fac[j];
            for (ptrdiff_t i = 0; i < Lw; i++) pre[i] *= a[i];
        }
    }
    memcpy(out, t->suf[0], Lw * sizeof(REAL));
}

/* The adjoint along the streamed axis (eqs. 5-7) of every window, for the
 * input lines q0b .. q0b+nbq-1: the F rings' lines into s[j].av. */
static inline __attribute__((always_inline)) void
FN(adjoint_block)(const FN(fs_unit) *u, FN(fs_scr) *s, int q0b, int nbq,
                  const int *maps, int nm)
{
    const int B = u->B, M = u->M, o0 = u->jobs[0].o0;
    const ptrdiff_t Lw = u->Lw;
    for (int j = 0; j < M; j++) {
        const fs_band *aj = &u->jobs[j].a0;
        if (M == 1 && s[j].ba[0] && FN(is_box)(aj)) {  /* engine_box.h */
            FN(box_lines)(aj, 0, aj->lo + aj->off, q0b, nbq, nm, Lw, s[j].fring, s[j].Ls, s[j].nrf, NULL, NULL,
                          s[j].ba, &s[j].bpa, s[j].av, maps, s[j].pr);
            continue;
        }
        const int r = aj->r, nrf = s[j].nrf;
        const REAL *wts[FS_B];
        FN(block_weights)(aj, q0b, nbq, s[j].gfull, wts);
        for (int b = nbq; b < B; b++) wts[b] = s[j].gfull;
        for (int ii = 0; ii < nm; ii++) {
            const int i = maps[ii];
            for (int l = 0; l < 2 * r + B; l++) {
                int p = q0b + aj->off - r + l;
                s[j].pr[l] = (l < 2 * r + nbq && p >= 0 && p < o0)
                                 ? s[j].fring[i] + (ptrdiff_t)(p % nrf) * s[j].Ls : s[j].zeros;
            }
            REAL *outs[FS_B];
            for (int b = 0; b < B; b++) outs[b] = s[j].av[b][i];
            FN(vlin_multi)(Lw, s[j].pr, r, B, wts, outs);
        }
    }
}

/* Gradient line q (block line b of the adjoint): the within-line adjoints
 * of every window, summed, then combined with the x and y lines (eq. 10). */
static inline __attribute__((always_inline)) void
FN(gradient_line)(const FN(fs_unit) *u, FN(fs_scr) *s, FN(fs_tmp) *t, int b, int q,
                  const int *maps, int nm, int mean, REAL *gx, REAL *gy)
{
    const fs_job *J = &u->jobs[0];
    const int nci = u->nci, M = u->M, two_d = u->two_d, m0 = u->m0, m1 = u->m1;
    const ptrdiff_t Lg = u->Lg, g0 = u->g0;
    for (int ii = 0; ii < nm; ii++) {
        const int i = maps[ii];
        for (int j = 0; j < M; j++) {
            REAL *dst = j ? s[j].ag[i] : t->agsum[i];
            if (two_d && s[j].bt[0] && FN(is_box)(&u->jobs[j].a2))  /* engine_box.h */
                FN(box_range)(&u->jobs[j].a2, s[j].av[b][i] - m0, m0, m1, dst - g0,
                              u->c_lo, u->c_hi, FS_PAD, s[j].bt[0], s[j].bt[1], M == 1);
            else if (two_d)  /* map columns [m0, m1) -> gradient columns [c_lo, c_hi) */
                FN(band_range)(&u->jobs[j].a2, s[j].av[b][i] - m0, m0, m1, dst - g0,
                               u->c_lo, u->c_hi, FS_PAD, 0, 0);
            else
                FN(inner)(&u->jobs[j].a1, &u->jobs[j].a2, J->o1, J->o2, J->n1,
                          s[j].av[b][i], dst, s[j].tmp, s[j].pr2);
            if (j) {
                REAL *restrict acc = t->agsum[i];
                const REAL *restrict add = s[j].ag[i];
                for (ptrdiff_t k = 0; k < Lg; k++) acc[k] += add[k];
            }
        }
    }
    const ptrdiff_t at = u->xoff + ((ptrdiff_t)q * u->L + g0) * nci;
    REAL *const *ag = t->agsum;
    if (!mean && nci == 1 && J->in_type == FS_IN_REAL) {  /* x and y read in place */
        const REAL *x = (const REAL *)J->x + at, *y = (const REAL *)J->y + at;
        if (gx) FN(combine_in)(Lg, ag[0], ag[2], ag[3], x, u->sx, y, u->sy, gx + at - u->xoff);
        if (gy) FN(combine_in)(Lg, ag[1], ag[2], ag[3], y, u->sy, x, u->sx, gy + at - u->xoff);
        return;
    }
    /* the x and y lines (minus their shifts) into the free source buffers */
    REAL *restrict xq = s[0].src[0], *restrict yq = s[0].src[1];
    if (!mean) {  /* a mean's gradient does not involve x and y */
        FN(load_line)(J->x, J->in_type, at, nci, Lg, u->sx, xq);
        FN(load_line)(J->y, J->in_type, at, nci, Lg, u->sy, yq);
    }
    if (gx)
        FN(combine)(Lg, ag[0], mean ? NULL : ag[2], ag[3], xq, yq,
                    gx + ((ptrdiff_t)q * u->L + g0) * nci, nci);
    if (gy)
        FN(combine)(Lg, ag[1], mean ? NULL : ag[2], ag[3], yq, xq,
                    gy + ((ptrdiff_t)q * u->L + g0) * nci, nci);
}

/* Gradient pass: input lines [q0, q1).  The map lines their adjoint reads
 * are streamed just ahead (values, partials into the F rings), a block of B
 * input lines then takes the adjoint of every window and combines. */
static void FN(grad_pass)(const FN(fs_unit) *u, FN(fs_scr) *s, FN(fs_tmp) *t, int q0, int q1)
{
    const fs_job *J = &u->jobs[0];
    const int M = u->M, B = u->B, nci = u->nci, two_d = u->two_d;
    const ptrdiff_t Lw = u->Lw, m0 = u->m0, m1 = u->m1;
    const fs_band *a0 = &J->a0; /* the offset is shared by all scales */
    const REAL *wmap = J->wmap ? (const REAL *)J->wmap + u->moff : NULL;
    REAL *wl = s[0].wl;
    if (!wmap) {  /* the scalar cotangent on the sum region, over columns m0..m1 */
        memset(wl, 0, Lw * sizeof(REAL));
        if (two_d) {
            for (int i2 = J->s2[0] > m0 ? J->s2[0] : m0; i2 < J->s2[1] && i2 < m1; i2++)
                wl[i2 - m0] = (REAL)J->wscal;
        } else {
            for (int i1 = J->s1[0]; i1 < J->s1[1]; i1++)
                for (int i2 = J->s2[0]; i2 < J->s2[1]; i2++)
                    wl[(ptrdiff_t)i1 * J->o2 + i2] = (REAL)J->wscal;
        }
    }
    int maps[4], nm = 0;
    if (J->grad & FS_GRAD_X) maps[nm++] = 0;
    if (J->grad & FS_GRAD_Y) maps[nm++] = 1;
    const int mean = M == 1 && J->form == FS_FORM_MEAN;  /* F = mu_x: no second moments */
    if (!mean) {
        maps[nm++] = 2;
        maps[nm++] = 3;
    }
    REAL *gx = (J->grad & FS_GRAD_X) ? (REAL *)J->gx + u->xoff : NULL;
    REAL *gy = (J->grad & FS_GRAD_Y) ? (REAL *)J->gy + u->xoff : NULL;

    int next = q0 + a0->off - u->rmax;
    if (M == 1 && s[0].ba[0] && FN(is_box)(a0) && q0 >= a0->lo && q0 < a0->hi) {
        /* the box adjoint's running sums start at the anchor before q0
         * (engine_box.h): the map lines its window reads are made too */
        int qa = q0 - q0 % FS_BOXA;
        if (qa < a0->lo) qa = a0->lo;
        next = qa + a0->off - u->rmax;
    }
    if (next < 0) next = 0;
    for (int q0b = q0; q0b < q1; q0b += B) {
        const int nbq = q1 - q0b < B ? q1 - q0b : B;
        int need = q0b + nbq - 1 + a0->off + u->rmax;
        if (need > J->o0 - 1) need = J->o0 - 1;
        while (next <= need) {
            const int nb = J->o0 - next < B ? J->o0 - next : B;
            FN(block_moments)(u->jobs, M, u->xoff, next, nb, u->shared, u->rmax, s);
            for (int b = 0; b < nb; b++) {
                const int p = next + b;
                const int c = p + J->f0.off;
                const REAL *w = (p >= J->s0[0] && p < J->s0[1]) ? wl : NULL;
                if (wmap && nci == 1 && two_d) {
                    w = wmap + (ptrdiff_t)p * u->Lo + m0;
                } else if (wmap) {
                    FN(load_line)(wmap, FS_IN_REAL, ((ptrdiff_t)p * u->Lo + (two_d ? m0 : 0)) * nci,
                                  nci, Lw, 0, t->wrow);
                    w = t->wrow;
                }
                FN(grad_line)(u, s, t, b, p, w, maps, nm, t->prow);
                if (c >= q0 && c < q1) FN(unit_emit)(u, p, t->prow);  /* owned */
            }
            next += nb;
        }
        FN(adjoint_block)(u, s, q0b, nbq, maps, nm);
        for (int b = 0; b < nbq; b++)
            FN(gradient_line)(u, s, t, b, q0b + b, maps, nm, mean, gx, gy);
    }
}

static void FN(fs_rows_multi)(const fs_job *jobs, int M, ptrdiff_t plane, int q0,
                              int q1, int c_lo, int c_hi, int strip, int nstrip,
                              void *scratch)
{
    FN(fs_scr) s[FS_MAXW];
    FN(fs_tmp) t;
    FN(fs_unit) u;
    char *base = (char *)(((size_t)scratch + 63) & ~(size_t)63);
    FN(fs_carve)(jobs, M, base, s, &t);
    for (int j = 0; j < M; j++) FN(fs_pads)(&jobs[j], &s[j]);
    FN(unit_init)(jobs, M, plane, c_lo, c_hi, strip, nstrip, &u);
    FN(scr_init)(&u, q0, q1, s);
    if (jobs[0].grad) FN(grad_pass)(&u, s, &t, q0, q1);
    else FN(value_pass)(&u, s, &t, q0, q1);
}
