/* engine_scratch.h: scratch layout.  The per-unit scratch of the streaming
 * driver, carved and sized by one function.
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

typedef struct {
    REAL *src[4], *hring[4], *m[FS_B][4], *wl, *zeros, *tmp, *gfull;
    REAL sx, sy;
    int m0, m1;      /* map columns of this unit (2-D column strips) */
    int B;           /* output lines per row block: 4, 8 or 16 for wide windows */
    int own_lo, own_hi;  /* input lines whose fused downsampling this unit writes */
    ptrdiff_t plane;
    ptrdiff_t Lw;    /* ring line width in use: m1 - m0 (2-D) or o1*o2 (3-D) */
    REAL *fring[4], *av[FS_B][4], *ag[4];
    /* the fused downsampling of a converted input (interleaved channels, an
     * integer type): the last two input lines of x and of y as converted by
     * hline (slot q & 1, x then y), which line each slot holds (dtag), and
     * whether hline keeps them (keep_raw), so each input line is read once */
    REAL *drows;
    int dtag[2], keep_raw;
    const REAL **pr, **pr2;
    int hnext, nrh, nrf;
    ptrdiff_t Ls;    /* ring line stride: Lo rounded up to 64 bytes (aligned vectors) */
    /* box windows (engine_box.h; NULL otherwise): the tree sums' lines, the
     * running sums across lines of the moments (bs, for map line bp) and
     * of the adjoint (ba, for input line bpa) */
    double *bt[2], *bs[4], *ba[4];
    int bp, bpa;
    int nbf;         /* narrow boxes: h-lines are window sums (engine_box.h: nbox_one) */
} FN(fs_scr);

/* Zero the pads around the lines band_range reads beyond their ends (the
 * values never reach a stored lane; zeros keep denormals out of the lanes). */
static void FN(fs_pads)(const fs_job *job, FN(fs_scr) *s)
{
    const int B = s->B;
    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const ptrdiff_t Lo = (ptrdiff_t)job->o1 * job->o2;
    for (int i = 0; i < 4; i++) {
        memset(s->src[i] - FS_PAD, 0, FS_PAD * sizeof(REAL));
        memset(s->src[i] + L, 0, FS_PAD * sizeof(REAL));
    }
    if (job->grad)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < 4; i++) {
                memset(s->av[b][i] - FS_PAD, 0, FS_PAD * sizeof(REAL));
                memset(s->av[b][i] + Lo, 0, FS_PAD * sizeof(REAL));
            }
}

/* Output lines per row block of a unit whose widest window has radius rmax
 * along the stream: 16 or 8 when it is wide, else 4 or 8 (a fixed function of
 * the geometry, so thread-count independent).  The scratch holds B blocks
 * lines and rings sized for B, not for the largest block FS_B: a narrow
 * window's gradient scratch is then 0.4x as large (less memory touched). */
static inline int FN(block_lines)(const fs_job *jobs, int M, int rmax)
{
    if (2 * rmax + 1 >= 48) return 16;
    if (2 * rmax + 1 >= 24) return 8;
    /* a value pass of one Gaussian window of radius 4-7 (sigma 1.5's 11
     * taps): blocks of 8 (vlin_sym8, fewer ring reads per output line); the
     * gradient keeps 4 (its larger rings gained nothing) and so do boxes (the
     * narrow box's fused block is of 4, engine_box.h) */
    if (M == 1 && !jobs[0].grad && rmax >= 4 && !FN(is_box)(&jobs[0].f0)
        && !FN(is_nbox)(&jobs[0].f0))
        return 8;
    return 4;
}

/* Scratch is carved in 64-byte aligned pieces from base + off (when carve,
 * else only counted): the one arithmetic of the layout and of its size. */
#define FS_TAKE(ptr, type, count)                                        \
    do {                                                                 \
        if (carve) ptr = (type *)(base + off);                           \
        off += ((size_t)(count) * sizeof(type) + 63) & ~(size_t)63;      \
    } while (0)
#define FS_TAKE_PADDED(ptr, count)                                       \
    do {                                                                 \
        FS_TAKE(ptr, REAL, (count) + 2 * FS_PAD);                        \
        if (carve) ptr += FS_PAD;                                        \
    } while (0)

/* One window's scratch (s == NULL: its size only), for row blocks of B lines. */
static size_t FN(fs_layout)(const fs_job *job, int B, char *base, FN(fs_scr) *s)
{
    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const ptrdiff_t Lo = (ptrdiff_t)job->o1 * job->o2;
    const int r = job->f0.r;
    /* the F ring spans the adjoint window plus how far the stream runs
     * ahead of it (further for the small scales of a multi-scale job) */
    const int rr = job->ring_r > r ? job->ring_r : r;
    /* box windows' running sums roll forward from an anchor up to FS_BOXA - 1
     * lines back (engine_box.h): their rings keep FS_B >= FS_BOXA lines more */
    const int box = FN(is_box)(&job->f0) || FN(is_box)(&job->f2) || FN(is_box)(&job->a0)
                    || FN(is_box)(&job->a2);
    const int Br = box && B < FS_B ? FS_B : B;
    /* h-lines are made for all windows at once, as far ahead as the widest
     * needs (hlines_multi): a narrow window's ring spans r + rr + B lines */
    const int nrh = r + rr + Br, nrf = r + rr + 2 * Br;
    int rp = 2 * r + B;
    if (job->n1 > 1 && 2 * job->f1.r + 1 > rp) rp = 2 * job->f1.r + 1;
    if (job->n1 > 1 && 2 * job->a1.r + 1 > rp) rp = 2 * job->a1.r + 1;
    size_t off = 0;
    const int carve = s != NULL;
    /* source lines and adjoint rows are read by band_range with FS_PAD
     * readable samples on either side (zeroed by fs_pads) */
    for (int i = 0; i < 4; i++) FS_TAKE_PADDED(s->src[i], L);
    const ptrdiff_t Ls = (Lo + (ptrdiff_t)(64 / sizeof(REAL)) - 1) & ~(ptrdiff_t)(64 / sizeof(REAL) - 1);
    for (int i = 0; i < 4; i++) FS_TAKE(s->hring[i], REAL, (ptrdiff_t)nrh * Ls);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < 4; i++) FS_TAKE(s->m[b][i], REAL, Lo);
    FS_TAKE(s->wl, REAL, Lo);
    FS_TAKE(s->zeros, REAL, Lo);
    FS_TAKE(s->tmp, REAL, job->n2 > job->o2 ? job->n2 : job->o2);
    FS_TAKE(s->gfull, REAL, 2 * r + 1);
    FS_TAKE(s->pr, const REAL *, rp);
    FS_TAKE(s->pr2, const REAL *, rp);
    const int raw = job->dx && (job->nci > 1 || job->in_type != FS_IN_REAL);
    if (raw) FS_TAKE(s->drows, REAL, 4 * L);
    if (job->grad) {
        for (int i = 0; i < 4; i++) FS_TAKE(s->fring[i], REAL, (ptrdiff_t)nrf * Ls);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < 4; i++) FS_TAKE_PADDED(s->av[b][i], Lo);
        for (int i = 0; i < 4; i++) FS_TAKE(s->ag[i], REAL, L);
    }
    /* box windows: float64 lines for their sums (engine_box.h) */
    if (box) {
        const ptrdiff_t nt = (L > Lo ? L : Lo) + 2 * FS_PAD + 64; /* ISA-free (fs_multi_bytes is v1) */
        FS_TAKE(s->bt[0], double, nt);
        FS_TAKE(s->bt[1], double, nt);
        for (int i = 0; i < 4; i++) FS_TAKE(s->bs[i], double, Lo);
        if (job->grad)
            for (int i = 0; i < 4; i++) FS_TAKE(s->ba[i], double, Lo);
    } else if (s) {
        s->bt[0] = NULL;
        s->bs[0] = s->ba[0] = NULL;
    }
    if (s && !job->grad) s->ba[0] = NULL;
    if (s) {
        s->keep_raw = raw;
        s->dtag[0] = s->dtag[1] = -1;
        s->B = B;
        s->nrh = nrh;
        s->nrf = nrf;
        s->Ls = Ls;
    }
    return off + 64;
}

/* The temporaries a unit shares across its windows. */
typedef struct {
    REAL *fac[FS_MAXW], *suf[FS_MAXW];  /* each window's factor F_j, suffix products */
    REAL *cot, *ctmp;                   /* running cotangent prefix, one window's cotangent */
    REAL *prow, *wrow, *dum;            /* a map line, a cotangent line, a sink */
    REAL *agsum[4];                     /* the adjoint lines summed over the windows */
} FN(fs_tmp);

/* The whole scratch of a unit of M windows from base (64-byte aligned):
 * carved into s[0 .. M-1] and *t, or (s == NULL) only sized.  fs_multi_bytes
 * and the driver both go through here, so the size is that of the layout. */
static size_t FN(fs_carve)(const fs_job *jobs, int M, char *base, FN(fs_scr) *s,
                           FN(fs_tmp) *t)
{
    const int carve = s != NULL;
    size_t off = 0;
    /* the unit's block height (unit_init): its widest radius along the stream */
    int rmax = 0;
    for (int j = 0; j < M; j++)
        if (jobs[j].f0.r > rmax) rmax = jobs[j].f0.r;
    const int B = FN(block_lines)(jobs, M, rmax);
    for (int j = 0; j < M; j++)
        off += FN(fs_layout)(&jobs[j], B, carve ? base + off : NULL, carve ? &s[j] : NULL);
    const ptrdiff_t Lo = (ptrdiff_t)jobs[0].o1 * jobs[0].o2;
    const ptrdiff_t L = (ptrdiff_t)jobs[0].n1 * jobs[0].n2;
    for (int j = 0; j < M; j++) {
        FS_TAKE(t->fac[j], REAL, Lo);
        FS_TAKE(t->suf[j], REAL, Lo);
    }
    FS_TAKE(t->cot, REAL, Lo);
    FS_TAKE(t->ctmp, REAL, Lo);
    FS_TAKE(t->prow, REAL, Lo);
    FS_TAKE(t->wrow, REAL, Lo);
    FS_TAKE(t->dum, REAL, Lo);
    for (int i = 0; i < 4; i++) FS_TAKE(t->agsum[i], REAL, L);
    return off + 64;
}

#undef FS_TAKE_PADDED
#undef FS_TAKE

static size_t FN(fs_multi_bytes)(const fs_job *jobs, int M)
{
    return FN(fs_carve)(jobs, M, NULL, NULL, NULL);
}
