/*
 * Body of the filter engine, included once per floating type by engine.c
 * with REAL (float or double) and FN(name) (name_f / name_d, with the ISA
 * suffix _v4 / _v3 / _v1 when dispatching) defined.
 * See engine.h for the contract.  Equation numbers refer to
 * shared/reference/zhao2017-ssim-msssim-derivatives.txt.
 *
 * On x86-64 with GCC this file is included three times, under
 * `#pragma GCC target` for AVX-512, AVX2+FMA and baseline, and engine.c
 * picks one at load time; so every helper here is built for each ISA.
 */

/* ---- SIMD: GCC/clang vector extensions, width set per ISA by engine.c ---- */

typedef REAL FN(vec) __attribute__((vector_size(FS_VBYTES)));
typedef IREAL FN(ivec) __attribute__((vector_size(FS_VBYTES)));
#define NV ((ptrdiff_t)(FS_VBYTES / sizeof(REAL)))

static inline FN(vec) FN(ld)(const REAL *p)
{
    FN(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void FN(st)(REAL *p, FN(vec) v) { memcpy(p, &v, sizeof v); }

/* Linear combination of 2r+1 lines: out = sum_k w_k rows[k] (rows[k] may be
 * NULL).  sym: w = the half taps g around rows[r], paired (r+1 multiplies).
 * Accumulators stay in registers across the taps (one strip at a time). */
static void FN(vlin)(ptrdiff_t n, const REAL *const *rows, int r, int sym,
                     const REAL *g, const REAL *t, REAL *out)
{
    ptrdiff_t j = 0;
    if (sym) {
        const REAL *c = rows[r];
        for (; j + 2 * NV <= n; j += 2 * NV) {
            FN(vec) a0 = (FN(vec)){0}, a1 = (FN(vec)){0};
            a0 += FN(ld)(c + j) * g[0];
            a1 += FN(ld)(c + j + NV) * g[0];
            for (int k = 1; k <= r; k++) {
                const REAL *u = rows[r - k] + j, *v = rows[r + k] + j;
                a0 += (FN(ld)(u) + FN(ld)(v)) * g[k];
                a1 += (FN(ld)(u + NV) + FN(ld)(v + NV)) * g[k];
            }
            FN(st)(out + j, a0);
            FN(st)(out + j + NV, a1);
        }
        for (; j < n; j++) {
            REAL a = 0;
            a += c[j] * g[0];
            for (int k = 1; k <= r; k++) a += (rows[r - k][j] + rows[r + k][j]) * g[k];
            out[j] = a;
        }
    } else {
        for (; j + NV <= n; j += NV) {
            FN(vec) a = {0};
            for (int k = 0; k <= 2 * r; k++)
                if (rows[k] && t[k] != 0) a += FN(ld)(rows[k] + j) * t[k];
            FN(st)(out + j, a);
        }
        for (; j < n; j++) {
            REAL a = 0;
            for (int k = 0; k <= 2 * r; k++)
                if (rows[k] && t[k] != 0) a += rows[k][j] * t[k];
            out[j] = a;
        }
    }
}

/* Row-blocked linear pass across lines, for FS_B consecutive outputs:
 * out[b] = sum_k w[b][k] rows[b + k], b < FS_B, k <= 2r.  Each loaded line
 * feeds up to FS_B accumulators, so a window of 2r+1 lines is read once per
 * FS_B outputs instead of once per output (the rings of filtered lines do
 * not fit in L1).  rows[l] must be valid (point absent lines at zeros).
 * Accumulators start at zero and every tap is a += v * w: with FMA
 * contraction each output then sees one fixed sequence of fused operations
 * (a mul + add chain could be contracted either way), whatever its position
 * in the block, so results do not depend on where blocks start. */
#define FS_B 16  /* most output lines per row block */
#define FS_PAD 64  /* readable zeros around the lines band_range reads (>= NV) */
#define FS_MAXR 64 /* widest radius it shares */

#define FS_VLIN_WIDE(NB)                                                          \
static void FN(vlin_multi##NB)(ptrdiff_t n, const REAL *const *rows, int r,       \
                               const REAL *const *w, REAL *const *out)           \
{                                                                                 \
    const int K = 2 * r + 1;  /* K >= NB: the caller's choice of block */         \
    ptrdiff_t j = 0;                                                              \
    int uniform = 1;  /* every output the same taps (the interior): one pointer */ \
    for (int b = 1; b < NB; b++) uniform &= w[b] == w[0];                         \
    if (uniform && K >= NB) {                                                     \
        const REAL *g = w[0];                                                     \
        for (; j < n && n >= NV; j += NV) {                                       \
            if (j + NV > n) j = n - NV;  /* the ragged end: overlap */            \
            FN(vec) a[NB];                                                        \
            _Pragma("GCC unroll 16")                                              \
            for (int b = 0; b < NB; b++) a[b] = (FN(vec)){0};                     \
            /* ramp up: line l feeds outputs b <= l (all unrolled, so the */      \
            /* accumulators stay in registers) */                                 \
            _Pragma("GCC unroll 16")                                              \
            for (int l = 0; l < NB - 1; l++) {                                    \
                FN(vec) v = FN(ld)(rows[l] + j);                                  \
                _Pragma("GCC unroll 16")                                          \
                for (int b = 0; b <= l; b++) a[b] += v * g[l - b];                \
            }                                                                     \
            for (int l = NB - 1; l < K; l++) {                                    \
                FN(vec) v = FN(ld)(rows[l] + j);                                  \
                _Pragma("GCC unroll 16")                                          \
                for (int b = 0; b < NB; b++) a[b] += v * g[l - b];                \
            }                                                                     \
            /* ramp down: line K - 1 + m feeds outputs b >= m */                  \
            _Pragma("GCC unroll 16")                                              \
            for (int m = 1; m < NB; m++) {                                        \
                FN(vec) v = FN(ld)(rows[K - 1 + m] + j);                          \
                const REAL *gm = g + K - 1 + m;                                   \
                _Pragma("GCC unroll 16")                                          \
                for (int b = m; b < NB; b++) a[b] += v * gm[-b];                  \
            }                                                                     \
            _Pragma("GCC unroll 16")                                              \
            for (int b = 0; b < NB; b++) FN(st)(out[b] + j, a[b]);                \
        }                                                                         \
    }                                                                             \
    for (; j < n && n >= NV; j += NV) {                                           \
        if (j + NV > n) j = n - NV;  /* the ragged end: overlap, not scalars */   \
        FN(vec) a[NB];                                                            \
        for (int b = 0; b < NB; b++) a[b] = (FN(vec)){0};                         \
        /* ramp up: line l feeds outputs b <= l */                                \
        for (int l = 0; l < NB - 1 && l < K + NB - 1; l++) {                      \
            FN(vec) v = FN(ld)(rows[l] + j);                                      \
            for (int b = 0; b <= l; b++)                                          \
                if (l - b < K) a[b] += v * w[b][l - b];                           \
        }                                                                         \
        /* every output of the block reads line l */                             \
        for (int l = NB - 1; l < K; l++) {                                        \
            FN(vec) v = FN(ld)(rows[l] + j);                                      \
            _Pragma("GCC unroll 16")                                              \
            for (int b = 0; b < NB; b++) a[b] += v * w[b][l - b];                 \
        }                                                                         \
        /* ramp down: line l feeds outputs b > l - K */                           \
        for (int l = (K > NB - 1 ? K : NB - 1); l < K + NB - 1; l++) {            \
            FN(vec) v = FN(ld)(rows[l] + j);                                      \
            for (int b = l - K + 1; b < NB; b++)                                  \
                if (b >= 0 && b <= l) a[b] += v * w[b][l - b];                    \
        }                                                                         \
        for (int b = 0; b < NB; b++) FN(st)(out[b] + j, a[b]);                    \
    }                                                                             \
    for (int b = 0; b < NB; b++) {                                                \
        REAL *o = out[b];                                                         \
        for (ptrdiff_t i = j; i < n; i++) {                                       \
            REAL acc = 0;                                                         \
            for (int k = 0; k < K; k++) acc += rows[b + k][i] * w[b][k];          \
            o[i] = acc;                                                           \
        }                                                                         \
    }                                                                             \
}
FS_VLIN_WIDE(8)
FS_VLIN_WIDE(16)
#undef FS_VLIN_WIDE

/* Small windows: the hand-ramped 4-line block (see vlin_multi8 for the contract). */
static void FN(vlin_multi4)(ptrdiff_t n, const REAL *const *rows, int r, int nb,
                            const REAL *const *w, REAL *const *out)
{
    const int K = 2 * r + 1;
    ptrdiff_t j = 0;
    if (nb == 4 && K >= 3) {  /* the hand ramp below assumes K >= 3 */
        const REAL *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
        for (; j < n && n >= NV; j += NV) {
            if (j + NV > n) j = n - NV;  /* the ragged end: overlap, not scalars */
            /* Accumulators start at zero and every tap is a += v * w: with
             * FMA contraction each output then sees one fixed sequence of
             * fused operations (a mul + add chain could be contracted either
             * way), whatever its position in the block. */
            FN(vec) a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, v;
            v = FN(ld)(rows[0] + j);
            a0 += v * w0[0];
            v = FN(ld)(rows[1] + j);
            a0 += v * w0[1];
            a1 += v * w1[0];
            v = FN(ld)(rows[2] + j);
            a0 += v * w0[2];
            a1 += v * w1[1];
            a2 += v * w2[0];
            for (int l = 3; l < K; l++) {
                v = FN(ld)(rows[l] + j);
                a0 += v * w0[l];
                a1 += v * w1[l - 1];
                a2 += v * w2[l - 2];
                a3 += v * w3[l - 3];
            }
            for (int l = K; l < K + 3; l++) {
                v = FN(ld)(rows[l] + j);
                if (l - 1 < K) a1 += v * w1[l - 1];
                if (l - 2 < K) a2 += v * w2[l - 2];
                a3 += v * w3[l - 3];
            }
            FN(st)(out[0] + j, a0);
            FN(st)(out[1] + j, a1);
            FN(st)(out[2] + j, a2);
            FN(st)(out[3] + j, a3);
        }
    }
    for (int b = 0; b < nb; b++) {
        REAL *o = out[b];
        for (ptrdiff_t i = j; i < n; i++) {
            REAL a = 0;
            for (int k = 0; k < K; k++) a += rows[b + k][i] * w[b][k];
            o[i] = a;
        }
    }
}

/* Blocks of B = 4 lines for small windows, 8 or 16 for wide ones (a window
 * of K lines is then read (K + B - 1) / B times per output line). */
static inline void FN(vlin_multi)(ptrdiff_t n, const REAL *const *rows, int r, int B,
                                  const REAL *const *w, REAL *const *out)
{
    /* a narrow window in a wide block (another scale is wide) runs in sub-blocks */
    const int K = 2 * r + 1;
    const int sub = (B == 16 && K >= 48) ? 16 : (B >= 8 && K >= 24) ? 8 : 4;
    for (int b0 = 0; b0 < B; b0 += sub) {
        if (sub == 16) FN(vlin_multi16)(n, rows + b0, r, w + b0, out + b0);
        else if (sub == 8) FN(vlin_multi8)(n, rows + b0, r, w + b0, out + b0);
        else FN(vlin_multi4)(n, rows + b0, r, 4, w + b0, out + b0);
    }
}

/* Every line kernel (band_loads, perm_run, shared_run, vlin, the scalar
 * loops) starts its accumulators at zero and adds each tap as a += s * g, the
 * centre first: with FMA contraction that is one fixed chain of fused
 * operations per output (a first product a = c * g[0] could instead be fused
 * into the next add, differently in an unrolled kernel than in a loop), so
 * an output has the same bits whichever kernel, block or strip computes it.
 *
 * Symmetric interior of a band with unaligned loads: writes out[i] for
 * i in [i0, i1), and may recompute (identically) outputs in [lo, hi) around
 * it, so that short runs still take whole vectors instead of scalar loops. */
static void FN(band_loads)(const REAL *c, const REAL *g, int r, ptrdiff_t i0,
                           ptrdiff_t i1, ptrdiff_t lo, ptrdiff_t hi, REAL *out)
{
    if (i1 <= i0) return;
    if (hi - lo >= NV) {
        if (i1 - i0 < NV) {  /* widen the run to one vector inside [lo, hi) */
            i0 = i0 + NV <= hi ? i0 : hi - NV;
            i1 = i0 + NV;
        }
        ptrdiff_t i = i0;
        /* four vectors at a time: four independent chains of r fused
         * multiply-adds (one chain would wait on its latency), each in the
         * same order as a lone vector's, so the results are the same */
        for (; i + 4 * NV <= i1; i += 4 * NV) {
            FN(vec) a0 = (FN(vec)){0}, a1 = (FN(vec)){0}, a2 = (FN(vec)){0}, a3 = (FN(vec)){0};
            a0 += FN(ld)(c + i) * g[0];
            a1 += FN(ld)(c + i + NV) * g[0];
            a2 += FN(ld)(c + i + 2 * NV) * g[0];
            a3 += FN(ld)(c + i + 3 * NV) * g[0];
            for (int k = 1; k <= r; k++) {
                const REAL *u = c + i - k, *v = c + i + k;
                a0 += (FN(ld)(u) + FN(ld)(v)) * g[k];
                a1 += (FN(ld)(u + NV) + FN(ld)(v + NV)) * g[k];
                a2 += (FN(ld)(u + 2 * NV) + FN(ld)(v + 2 * NV)) * g[k];
                a3 += (FN(ld)(u + 3 * NV) + FN(ld)(v + 3 * NV)) * g[k];
            }
            FN(st)(out + i, a0);
            FN(st)(out + i + NV, a1);
            FN(st)(out + i + 2 * NV, a2);
            FN(st)(out + i + 3 * NV, a3);
        }
        if (i >= i1) return;
        for (;; i += NV) {
            if (i + NV > i1) i = i1 - NV;  /* last vector overlaps the previous */
            FN(vec) a = (FN(vec)){0};
            a += FN(ld)(c + i) * g[0];
            for (int k = 1; k <= r; k++) a += (FN(ld)(c + i - k) + FN(ld)(c + i + k)) * g[k];
            FN(st)(out + i, a);
            if (i + NV >= i1) break;
        }
        return;
    }
    for (ptrdiff_t i = i0; i < i1; i++) {
        REAL a = 0;
        a += c[i] * g[0];
        for (int k = 1; k <= r; k++) a += (c[i - k] + c[i + k]) * g[k];
        out[i] = a;
    }
}

#if FS_VBYTES == 64
/* Outputs [ps, pe) (a multiple of NV) of a symmetric band of radius r < NV:
 * the shifted windows are two-source permutes of three loads A, B, C instead
 * of 2r unaligned loads (each of which splits a cache line).  Reads
 * c[ps - NV .. pe + NV). */
static inline __attribute__((always_inline)) void
FN(perm_run)(const REAL *c, const REAL *g, const int r, ptrdiff_t ps, ptrdiff_t pe, REAL *out)
{
    FN(ivec) iota;
    for (int e = 0; e < NV; e++) iota[e] = (IREAL)e;
    FN(vec) A = FN(ld)(c + ps - NV), B = FN(ld)(c + ps);
    ptrdiff_t i = ps;
    if (r > 7) {  /* wide: two vectors per pass, two independent chains */
        for (; i + 2 * NV <= pe; i += 2 * NV) {
            FN(vec) C = FN(ld)(c + i + NV), D = FN(ld)(c + i + 2 * NV);
            FN(vec) a = (FN(vec)){0}, b2 = (FN(vec)){0};
            a += B * g[0];
            b2 += C * g[0];
            for (int k = 1; k <= r; k++) {
                const FN(ivec) lk = iota + (IREAL)(NV - k), rk = iota + (IREAL)k;
                a += (__builtin_shuffle(A, B, lk) + __builtin_shuffle(B, C, rk)) * g[k];
                b2 += (__builtin_shuffle(B, C, lk) + __builtin_shuffle(C, D, rk)) * g[k];
            }
            FN(st)(out + i, a);
            FN(st)(out + i + NV, b2);
            A = C;
            B = D;
        }
    }
    for (; i < pe; i += NV) {
        FN(vec) C = FN(ld)(c + i + NV);
        FN(vec) a = (FN(vec)){0};
        a += B * g[0];
        for (int k = 1; k <= r; k++)
            a += (__builtin_shuffle(A, B, iota + (IREAL)(NV - k))
                  + __builtin_shuffle(B, C, iota + (IREAL)k)) * g[k];
        FN(st)(out + i, a);
        A = B;
        B = C;
    }
}
#endif

/* Border outputs [j0, j0 + W) of a band in vector lanes, from its transposed
 * rows tt ((2r+1) x W): out[j] = sum_k tt[k][j - j0] in[j + off - r + k],
 * one multiply-add per tap in the order k = 0..2r (the scalar border loop of
 * band_range adds in the same order).  Unreadable taps have weight 0. */
static void FN(border_block)(const REAL *tt, int W, int r, int off, const REAL *in,
                             ptrdiff_t j0, REAL *out)
{
    const int w = 2 * r + 1;
    for (int j = 0; j < W; j += (int)NV) {
        const REAL *src = in + j0 + j + off - r;
        FN(vec) a = {0};
        for (int k = 0; k < w; k++) a += FN(ld)(tt + (ptrdiff_t)k * W + j) * FN(ld)(src + k);
        FN(st)(out + j0 + j, a);
    }
}

/* Interior outputs [lo, hi) of a band (symmetric taps, readable inputs; see
 * band_range for in, in_lo, in_hi, pad); short runs may be widened to whole
 * vectors within [wlo, whi), recomputing those outputs identically. */
static void FN(band_inner)(const fs_band *b, const REAL *in, ptrdiff_t in_lo, ptrdiff_t in_hi,
                           int pad, ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t wlo, ptrdiff_t whi,
                           REAL *out)
{
    const int r = b->r, off = b->off;
    const REAL *g = (const REAL *)b->g;
    const REAL *c = in + off;
#if FS_VBYTES == 64
    /* AVX-512: the interior by permutes (perm_run), what they cannot reach
     * by loads.  A permuted vector at i reads c[i - NV .. i + 2 NV). */
    const ptrdiff_t first = in_lo - pad - off + NV;    /* lowest such i */
    const ptrdiff_t last = in_hi + pad - off - 2 * NV; /* highest such i */
    ptrdiff_t ps = lo > first ? lo : first, pe = ps, tail = -1;
    if (r < NV && r >= 1 && last >= ps) {
        ptrdiff_t cnt = (hi - ps) / NV, fit = (last - ps) / NV + 1;
        pe = ps + (cnt < fit ? cnt : fit) * NV;
        /* the ragged end: one more vector, overlapping the previous */
        if (pe < hi && hi - NV >= ps && hi - NV <= last) tail = hi - NV;
    }
    FN(band_loads)(c, g, r, lo, ps < hi ? ps : hi, wlo, whi, out);
    if (pe > ps) {
        switch (r) {  /* a constant radius unrolls the taps, indices in registers */
        case 1: FN(perm_run)(c, g, 1, ps, pe, out); break;
        case 2: FN(perm_run)(c, g, 2, ps, pe, out); break;
        case 3: FN(perm_run)(c, g, 3, ps, pe, out); break;
        case 4: FN(perm_run)(c, g, 4, ps, pe, out); break;
        case 5: FN(perm_run)(c, g, 5, ps, pe, out); break;
        case 6: FN(perm_run)(c, g, 6, ps, pe, out); break;
        case 7: FN(perm_run)(c, g, 7, ps, pe, out); break;
        default: FN(perm_run)(c, g, r, ps, pe, out); break;
        }
    }
    if (tail >= 0) {
        FN(perm_run)(c, g, r, tail, tail + NV, out);
        pe = hi;
    }
    if (pe < hi) FN(band_loads)(c, g, r, pe > lo ? pe : lo, hi, wlo, whi, out);
#else
    FN(band_loads)(c, g, r, lo, hi, wlo, whi, out);
#endif
}

/* The same-size reflect map (b->refl) at a line end: when the caller holds
 * the line's first (last) samples and the pad can take r more, the mirror
 * image in[-1 - k] = in[k] (in[n + k] = in[n - 1 - k]), k < r, is written
 * there and that side's border outputs are the interior formula; *lo_ext
 * (*hi_ext) says so.  The pad is the engine's scratch, never a caller's
 * array (pad > 0 only for those lines). */
static inline void FN(mirror)(const fs_band *b, const REAL *in, ptrdiff_t in_lo,
                              ptrdiff_t in_hi, int pad, ptrdiff_t o_lo, ptrdiff_t o_hi,
                              int *lo_ext, int *hi_ext)
{
    const int r = b->r, n = b->n_in;
    if (!b->refl || pad < r) return;
    REAL *m = (REAL *)in;
    if (in_lo == 0 && in_hi >= r && o_lo < b->lo) {
        for (int k = 0; k < r; k++) m[-1 - k] = in[k];
        *lo_ext = 1;
    }
    if (in_hi == n && in_lo <= n - r && o_hi > b->hi) {
        for (int k = 0; k < r; k++) m[n + k] = in[n - 1 - k];
        *hi_ext = 1;
    }
}

/* One band along a line, outputs [o_lo, o_hi) only:
 * out[i] = sum_k w_ik in[i + off - r + k].  ``in`` and ``out`` are indexed
 * absolutely (index 0 = the line's first sample); the caller guarantees that
 * the inputs those outputs read lie in [in_lo, in_hi), and that ``pad`` more
 * samples on either side of that range are readable (their values only ever
 * reach lanes that are not stored).  Interior outputs in [skip_lo, skip_hi)
 * are left to the caller (band_range_multi computes them for every window at
 * once). */
static void FN(band_range)(const fs_band *b, const REAL *in, ptrdiff_t in_lo, ptrdiff_t in_hi,
                           REAL *out, ptrdiff_t o_lo, ptrdiff_t o_hi, int pad,
                           ptrdiff_t skip_lo, ptrdiff_t skip_hi)
{
    const int r = b->r, off = b->off, n_in = b->n_in;
    int lo_done = 0, hi_done = 0;
    /* A reflect band's border outputs run with the interior on the line's
     * mirror image, written into the pad (see mirror) */
    FN(mirror)(b, in, in_lo, in_hi, pad, o_lo, o_hi, &lo_done, &hi_done);
    const ptrdiff_t lo = lo_done ? o_lo : b->lo > o_lo ? b->lo : o_lo;
    const ptrdiff_t hi = hi_done ? o_hi : b->hi < o_hi ? b->hi : o_hi;
    const int w = 2 * r + 1;
    const REAL *g = (const REAL *)b->g;
    /* Border outputs in vector lanes first when the whole block is wanted
     * and what it reads is readable; the interior below then rewrites the
     * block's interior lanes (so they match every other interior output). */
    if (!lo_done && b->wlo && o_lo == 0 && b->wlo <= o_hi && off - r >= in_lo - pad
        && b->wlo - 1 + off + r < in_hi + pad) {
        FN(border_block)((const REAL *)b->tabt_lo, b->wlo, r, off, in, 0, out);
        lo_done = 1;
    }
    if (!hi_done && b->whi && o_hi == b->n_out && b->n_out - b->whi >= o_lo
        && b->n_out - b->whi + off - r >= in_lo - pad && b->n_out - 1 + off + r < in_hi + pad) {
        FN(border_block)((const REAL *)b->tabt_hi, b->whi, r, off, in, b->n_out - b->whi, out);
        hi_done = 1;
    }
    if (hi > lo) {  /* the interior, less what the caller computes itself */
        const ptrdiff_t s_lo = skip_lo > lo ? skip_lo : lo, s_hi = skip_hi < hi ? skip_hi : hi;
        if (s_hi <= s_lo) {
            FN(band_inner)(b, in, in_lo, in_hi, pad, lo, hi, lo, hi, out);
        } else {
            if (s_lo > lo) FN(band_inner)(b, in, in_lo, in_hi, pad, lo, s_lo, lo, hi, out);
            if (hi > s_hi) FN(band_inner)(b, in, in_lo, in_hi, pad, s_hi, hi, lo, hi, out);
        }
    }
    /* Border outputs (reflected windows, crop edges): one table row each, a
     * dot product over the readable part of the window, in vector lanes
     * (wide windows have dozens of border outputs of 2r+1 taps). */
    for (ptrdiff_t i = o_lo; i < o_hi; i++) {
        if (i == lo && hi > lo) i = hi;  /* skip the interior */
        if (i < b->lo && lo_done) i = hi > lo ? hi : b->lo;
        if (i >= b->hi && hi_done) break;
        if (i >= o_hi) break;
        if (i >= b->lo && i < b->hi) continue;  /* interior (a range cut by o_lo, o_hi) */
        const REAL *t = i < b->lo ? (const REAL *)b->tab_lo + i * w
                                  : (const REAL *)b->tab_hi + (i - b->hi) * w;
        ptrdiff_t k0 = r - off - i, k1 = n_in - i - off + r;  /* readable: k in [k0, k1) */
        if (k0 < 0) k0 = 0;
        if (k1 > w) k1 = w;
        const REAL *src = in + i + off - r;
        REAL acc = 0;
        for (ptrdiff_t k = k0; k < k1; k++) acc += t[k] * src[k];
        out[i] = acc;
    }
}

/* The common interior [lo, hi) (hi - lo >= 2 NV) of M bands with the same
 * offset, one source line: each shifted pair c[i-k] + c[i+k] is loaded and
 * added once for all the windows that reach k, instead of once per window
 * (the per-pixel MS-SSIM's windows).  Per output the same operations, in the
 * same order, as band_loads and perm_run: identical values. */
static inline __attribute__((always_inline)) void
FN(shared_run)(const int M, const REAL *c, const REAL *gt, const int *rj, ptrdiff_t lo,
               ptrdiff_t hi, REAL *const *outs)
{
    /* gt: the taps k-major, gt[k * M + j] = g_j[k]; rj ascending, so the
     * windows still reaching k are a suffix j >= jj (no test per tap) */
    for (ptrdiff_t i = lo;; i += 2 * NV) {
        if (i + 2 * NV > hi) i = hi - 2 * NV;  /* the ragged end: overlap */
        const FN(vec) c0 = FN(ld)(c + i), c1 = FN(ld)(c + i + NV);
        FN(vec) a0[FS_MAXW], a1[FS_MAXW];
        _Pragma("GCC unroll 8")
        for (int j = 0; j < M; j++) {
            a0[j] = (FN(vec)){0};
            a1[j] = (FN(vec)){0};
            a0[j] += c0 * gt[j];
            a1[j] += c1 * gt[j];
        }
        int k = 1;
        _Pragma("GCC unroll 8")
        for (int jj = 0; jj < M; jj++) {
            const int kend = rj[jj];
            for (; k <= kend; k++) {
                const REAL *gk = gt + (ptrdiff_t)k * M;
                const FN(vec) s0 = FN(ld)(c + i - k) + FN(ld)(c + i + k);
                const FN(vec) s1 = FN(ld)(c + i + NV - k) + FN(ld)(c + i + NV + k);
                _Pragma("GCC unroll 8")
                for (int j = jj; j < M; j++) {
                    a0[j] += s0 * gk[j];
                    a1[j] += s1 * gk[j];
                }
            }
        }
        _Pragma("GCC unroll 8")
        for (int j = 0; j < M; j++) {
            FN(st)(outs[j] + i, a0[j]);
            FN(st)(outs[j] + i + NV, a1[j]);
        }
        if (i + 2 * NV >= hi) break;
    }
}

/* band_range of M bands (same offset and extents) over one input line into
 * M outputs: each band's borders and the parts of its interior outside the
 * common one on its own, the common interior shared (shared_run); gt the
 * taps k-major (NULL: no sharing, the radii not ascending or too wide). */
static void FN(band_range_multi)(const fs_band *const *b, int M, const REAL *gt,
                                 const REAL *in, ptrdiff_t in_lo, ptrdiff_t in_hi,
                                 REAL *const *outs, ptrdiff_t o_lo, ptrdiff_t o_hi, int pad)
{
    ptrdiff_t L = o_lo, H = o_hi;
    int rmax = 0, rj[FS_MAXW];
    for (int j = 0; j < M; j++) {
        int el = 0, eh = 0;  /* a mirrored line end: the border is interior */
        FN(mirror)(b[j], in, in_lo, in_hi, pad, o_lo, o_hi, &el, &eh);
        if (!el && b[j]->lo > L) L = b[j]->lo;
        if (!eh && b[j]->hi < H) H = b[j]->hi;
        rj[j] = b[j]->r;
        if (rj[j] > rmax) rmax = rj[j];
    }
    const int off = b[0]->off;
    /* the shared loads reach c[i - rmax .. i + 2 NV + rmax) */
    if (L < in_lo - pad - off + rmax) L = in_lo - pad - off + rmax;
    if (H > in_hi + pad - off - rmax) H = in_hi + pad - off - rmax;
    if (!gt || H - L < 2 * NV) {
        for (int j = 0; j < M; j++)
            FN(band_range)(b[j], in, in_lo, in_hi, outs[j], o_lo, o_hi, pad, 0, 0);
        return;
    }
    for (int j = 0; j < M; j++)
        FN(band_range)(b[j], in, in_lo, in_hi, outs[j], o_lo, o_hi, pad, L, H);
    const REAL *c = in + off;
    switch (M) {  /* a constant window count keeps the accumulators in registers */
    case 2: FN(shared_run)(2, c, gt, rj, L, H, outs); break;
    case 3: FN(shared_run)(3, c, gt, rj, L, H, outs); break;
    case 4: FN(shared_run)(4, c, gt, rj, L, H, outs); break;
    case 5: FN(shared_run)(5, c, gt, rj, L, H, outs); break;
    case 6: FN(shared_run)(6, c, gt, rj, L, H, outs); break;
    case 7: FN(shared_run)(7, c, gt, rj, L, H, outs); break;
    case 8: FN(shared_run)(8, c, gt, rj, L, H, outs); break;
    default:  /* not reached: hlines_multi runs for 2..FS_MAXW windows */
        for (int j = 0; j < M; j++)
            FN(band_inner)(b[j], in, in_lo, in_hi, pad, L, H, L, H, outs[j]);
        break;
    }
}

static inline void FN(band_line)(const fs_band *b, const REAL *in, REAL *out)
{
    FN(band_range)(b, in, 0, b->n_in, out, 0, b->n_out, 0, 0, 0);
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
    /* 2-D images: axis 1 is a trivial 1 -> 1 band (a 3-D adjoint can have
     * a single input row and several outputs: that is not this case) */
    if (b1->n_in == 1 && b1->n_out == 1) { FN(band_line)(b2, in, out); return; }
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

/* Lane selections that keep a NaN (every comparison with NaN is false), so
 * NaN still propagates from an input to the map, the value and the gradient. */
static inline REAL FN(s_pos)(REAL v) { return v < 0 ? (REAL)0 : v; }
static inline REAL FN(s_nz)(REAL v) { return v == 0 ? (REAL)1 : v; }
static inline REAL FN(s_gem1)(REAL v) { return v < -1 ? (REAL)-1 : v; }
/* l = A1/B1 (resp. cs = A2/B2) from q = D/B: 1 - q while q < 1/2 (exactly 1
 * for D = 0, and no cancellation near 1), else A/B (exactly 0 for A = 0, full
 * relative precision near 0).  NaN takes the second branch and stays NaN. */
static inline REAL FN(s_pick)(REAL q, REAL A, REAL iB)
{
    /* both branches first: a plain select.  0 * A is 0 for a finite A and
     * NaN for an overflowed one (then B = inf, q = 0 and 1 - q would be a
     * silent 1): float32 overflow becomes a NaN that fastssim._finite sees */
    const REAL near1 = (1 - q) + 0 * A, far = A * iB;
    return q < (REAL)0.5 ? near1 : far;
}
static inline FN(vec) FN(v_sel)(FN(ivec) m, FN(vec) a, FN(vec) b)  /* m ? a : b */
{
    return (FN(vec))(((FN(ivec))a & m) | ((FN(ivec))b & ~m));
}
static inline FN(vec) FN(v_pos)(FN(vec) v)
{
    const FN(vec) z = {0};
    return FN(v_sel)((FN(ivec))(v < z), z, v);
}
static inline FN(vec) FN(v_nz)(FN(vec) v)
{
    const FN(vec) z = {0};
    return FN(v_sel)((FN(ivec))(v == z), z + 1, v);
}
static inline FN(vec) FN(v_pick)(FN(vec) q, FN(vec) A, FN(vec) iB)
{
    const FN(vec) z = {0};
    return FN(v_sel)((FN(ivec))(q < z + (REAL)0.5), (1 - q) + 0 * A, A * iB);  /* as s_pick */
}
static inline FN(vec) FN(v_gem1)(FN(vec) v)
{
    const FN(vec) z = {0};
    return FN(v_sel)((FN(ivec))(v < z - 1), z - 1, v);
}

/* The terms of eq. 1, written once for scalars (T = REAL, helpers s_*) and
 * vectors (T = vec, helpers v_*), in difference form:
 *   l  = A1 / B1,  A1 = 2 mu_x mu_y + C1,          B1 = A1 + D1,  D1 = (mu_x - mu_y)^2
 *   cs = A2 / B2,  A2 = 2 c (E[xy] - mu_x mu_y) + C2, B2 = A2 + D2,  D2 = c var(x - y)
 * (B1 = mu_x^2 + mu_y^2 + C1 and B2 = c (var x + var y) + C2, as in eq. 1).
 * The moments are of x - sx and y - sy (vx, vy: their means; md = E[(x - y)^2]
 * and mp = E[xy] of the shifted samples), so the variances are shift-free and
 * lose less to cancellation, and the means get the shift back for l.  D1 and
 * D2 are >= 0 (var(x - y) is clamped at 0 against rounding), and the value is
 * evaluated as l = 1 - D1/B1, cs = 1 - D2/B2 near 1 (s_pick): identical
 * inputs have D = 0 and give exactly 1, no value exceeds 1, and A = 0 gives
 * exactly 0.  B = 0 (only with C = 0 and flat,
 * equal windows: then D = 0 too) is read as 1, which gives the limit C -> 0
 * of the value, 1.  See form_value for the evaluation, form_grad for the
 * partial derivatives. */
#define FS_L_TERMS(T, NZ, vx, vy, sx, sy, C1)                                 \
    const T ux = (vx) + (sx), uy = (vy) + (sy);                               \
    const T du = ((vx) - (vy)) + ((sx) - (sy));                               \
    const T A1 = 2 * (ux * uy) + (C1), D1 = du * du;                          \
    const T B1 = NZ(A1 + D1)
#define FS_CS_TERMS(T, POS, NZ, vx, vy, md, mp, C2, cov)                      \
    const T dv = (vx) - (vy);                                                 \
    const T A2 = 2 * ((cov) * ((mp) - (vx) * (vy))) + (C2);                   \
    const T D2 = (cov) * POS((md) - dv * dv);                                 \
    const T B2 = NZ(A2 + D2)
/* The partials of l and cs (eqs. 8-9) with respect to (mu_x, mu_y, E[(x-y)^2],
 * E[xy]), weighted by wl resp. wc; all of them vanish exactly for identical
 * inputs (l = cs = 1, ux = uy, vx = vy):
 *   dl/dmu_x  = 2 (uy - ux l) / B1,        dl/dmu_y  = 2 (ux - uy l) / B1,
 *   dcs/dmu_x = 2 c (vx cs - vy) / B2,     dcs/dmu_y = 2 c (vy cs - vx) / B2,
 *   dcs/dmd   = -c cs / B2,                dcs/dmp   = 2 c (1 - cs) / B2.
 * They read l and cs, not D/B, so that D1/B1 and D2/B2 have the same uses in
 * form_value and form_grad and are contracted alike (the value is the same
 * bit for bit with or without a gradient). */
#define FS_L_PARTIALS(wl, iB1, l, fmx, fmy)                                   \
    do {                                                                      \
        fmx = 2 * (wl) * (iB1) * (uy - ux * (l));                             \
        fmy = 2 * (wl) * (iB1) * (ux - uy * (l));                             \
    } while (0)
#define FS_CS_PARTIALS(wc, iB2, cs, cov, fmx, fmy, fdd, fxy)                   \
    do {                                                                      \
        const __typeof__(iB2) cw_ = (wc) * (cov) * (iB2);                     \
        fmx = 2 * cw_ * (vx * (cs) - vy);                                     \
        fmy = 2 * cw_ * (vy * (cs) - vx);                                     \
        fdd = -cw_ * (cs);                                                    \
        fxy = 2 * cw_ * (1 - (cs));                                           \
    } while (0)

static void FN(form_value)(int form, ptrdiff_t n, const REAL *restrict mx,
                           const REAL *restrict my, const REAL *restrict md,
                           const REAL *restrict mp, REAL C1, REAL C2, REAL cov,
                           REAL sx, REAL sy, REAL *restrict out)
{
    if (form == FS_FORM_SSIM) {
        for (ptrdiff_t j = 0; j < n; j++) {
            const REAL vx = mx[j], vy = my[j];
            FS_L_TERMS(REAL, FN(s_nz), vx, vy, sx, sy, C1);
            FS_CS_TERMS(REAL, FN(s_pos), FN(s_nz), vx, vy, md[j], mp[j], C2, cov);
            /* as form_grad: the value never depends on the gradient.  Two
             * reciprocals, not 1/(B1 B2): that product overflows float32 on
             * 16-bit data ranges and made l and cs silently 1 */
            const REAL iB1 = 1 / B1, iB2 = 1 / B2;
            out[j] = FN(s_gem1)(FN(s_pick)(D1 * iB1, A1, iB1)) *
                     FN(s_gem1)(FN(s_pick)(D2 * iB2, A2, iB2));
        }
    } else if (form == FS_FORM_CS) {
        for (ptrdiff_t j = 0; j < n; j++) {
            const REAL vx = mx[j], vy = my[j];
            FS_CS_TERMS(REAL, FN(s_pos), FN(s_nz), vx, vy, md[j], mp[j], C2, cov);
            const REAL iB2 = 1 / B2;
            out[j] = FN(s_gem1)(FN(s_pick)(D2 * iB2, A2, iB2));
        }
    } else if (form == FS_FORM_L) {
        for (ptrdiff_t j = 0; j < n; j++) {
            FS_L_TERMS(REAL, FN(s_nz), mx[j], my[j], sx, sy, C1);
            const REAL iB1 = 1 / B1;
            out[j] = FN(s_gem1)(FN(s_pick)(D1 * iB1, A1, iB1));
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++) out[j] = mx[j] + sx;
    }
}

/* Value and the cotangent-weighted partials w*dF/d(mu_x, mu_y, E[(x-y)^2], E[xy])
 * of the unclamped formula (the clamps act only at rounding level).  The
 * gradient combination (combine) applies d/dx E[(x-y)^2] = 2 (x - y). */
static void FN(form_grad)(int form, ptrdiff_t n, const REAL *restrict mx,
                          const REAL *restrict my, const REAL *restrict md,
                          const REAL *restrict mp, REAL C1, REAL C2, REAL cov,
                          REAL sx, REAL sy, const REAL *restrict w,
                          REAL *restrict out, REAL *restrict fmx,
                          REAL *restrict fmy, REAL *restrict fdd,
                          REAL *restrict fxy)
{
    /* w == NULL: unweighted partials (the loop is unswitched on it) */
#define FS_WJ (w ? w[j] : (REAL)1)
    if (form == FS_FORM_SSIM) {
        for (ptrdiff_t j = 0; j < n; j++) {
            const REAL vx = mx[j], vy = my[j];
            FS_L_TERMS(REAL, FN(s_nz), vx, vy, sx, sy, C1);
            FS_CS_TERMS(REAL, FN(s_pos), FN(s_nz), vx, vy, md[j], mp[j], C2, cov);
            const REAL iB1 = 1 / B1, iB2 = 1 / B2;
            const REAL l = FN(s_pick)(D1 * iB1, A1, iB1), cs = FN(s_pick)(D2 * iB2, A2, iB2);
            const REAL wj = FS_WJ;
            REAL ax, ay, bx, by, bd, bp;
            out[j] = FN(s_gem1)(l) * FN(s_gem1)(cs);
            FS_L_PARTIALS(wj * cs, iB1, l, ax, ay);
            FS_CS_PARTIALS(wj * l, iB2, cs, cov, bx, by, bd, bp);
            fmx[j] = ax + bx;
            fmy[j] = ay + by;
            fdd[j] = bd;
            fxy[j] = bp;
        }
    } else if (form == FS_FORM_CS) {
        for (ptrdiff_t j = 0; j < n; j++) {
            const REAL vx = mx[j], vy = my[j];
            FS_CS_TERMS(REAL, FN(s_pos), FN(s_nz), vx, vy, md[j], mp[j], C2, cov);
            const REAL iB2 = 1 / B2, cs = FN(s_pick)(D2 * iB2, A2, iB2);
            out[j] = FN(s_gem1)(cs);
            FS_CS_PARTIALS(FS_WJ, iB2, cs, cov, fmx[j], fmy[j], fdd[j], fxy[j]);
        }
    } else if (form == FS_FORM_MEAN) {
        for (ptrdiff_t j = 0; j < n; j++) {
            out[j] = mx[j] + sx;
            fmx[j] = FS_WJ;
            fmy[j] = 0;
            fdd[j] = 0;
            fxy[j] = 0;
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++) {
            FS_L_TERMS(REAL, FN(s_nz), mx[j], my[j], sx, sy, C1);
            const REAL iB1 = 1 / B1, l = FN(s_pick)(D1 * iB1, A1, iB1);
            out[j] = FN(s_gem1)(l);
            FS_L_PARTIALS(FS_WJ, iB1, l, fmx[j], fmy[j]);
            fdd[j] = 0;
            fxy[j] = 0;
        }
    }
#undef FS_WJ
}

/* out = F0 (F1 (F2 ... F_{M-1})), F0 in out and F_j in fac[j] (fac[M-1] is
 * overwritten): the right-to-left order of the gradient pass's suffix
 * products, so a value never depends on whether a gradient was asked for. */
static void FN(product_rtl)(REAL *const *fac, int M, ptrdiff_t n, REAL *restrict out)
{
    if (M < 2) return;
    REAL *restrict acc = fac[M - 1];
    for (int j = M - 2; j >= 1; j--) {
        const REAL *restrict a = fac[j];
        for (ptrdiff_t i = 0; i < n; i++) acc[i] = a[i] * acc[i];
    }
    for (ptrdiff_t i = 0; i < n; i++) out[i] = out[i] * acc[i];
}

/* The per-pixel product's gradient line in one pass, in registers: the value
 * P = F_0 (F_1 (... F_{M-1})) (product_rtl's order; each F_j by form_value's
 * expressions, so the value is the same bit for bit) into out, and each
 * window's partials weighted by its cotangent c_j = w prod_{k != j} F_k
 * (never a division by F_j) into fr[j][0..3] (fr[j][0]/[1] may be NULL: that
 * input's gradient is not wanted; w == NULL: the value only).  Forms SSIM and
 * CS only (the caller checks); n >= NV: the ragged end is one overlapping
 * vector. */
static inline __attribute__((always_inline)) void
FN(cot_run)(const int M, ptrdiff_t n, const int *forms, const REAL *cov,
            const REAL *const (*mm)[4], REAL C1, REAL C2, REAL sx, REAL sy,
            const REAL *w, REAL *out, REAL *const (*fr)[4])
{
    for (ptrdiff_t i = 0;; i += NV) {
        if (i + NV > n) i = n - NV;
        FN(vec) F[FS_MAXW];
        _Pragma("GCC unroll 8")
        for (int j = 0; j < M; j++) {
            const FN(vec) vx = FN(ld)(mm[j][0] + i), vy = FN(ld)(mm[j][1] + i);
            FS_CS_TERMS(FN(vec), FN(v_pos), FN(v_nz), vx, vy, FN(ld)(mm[j][2] + i),
                        FN(ld)(mm[j][3] + i), C2, cov[j]);
            if (forms[j] == FS_FORM_SSIM) {  /* as form_value */
                FS_L_TERMS(FN(vec), FN(v_nz), vx, vy, sx, sy, C1);
                const FN(vec) iB1 = 1 / B1, iB2 = 1 / B2;
                F[j] = FN(v_gem1)(FN(v_pick)(D1 * iB1, A1, iB1)) *
                       FN(v_gem1)(FN(v_pick)(D2 * iB2, A2, iB2));
            } else {
                const FN(vec) iB2 = 1 / B2;
                F[j] = FN(v_gem1)(FN(v_pick)(D2 * iB2, A2, iB2));
            }
        }
        FN(vec) suf[FS_MAXW];
        suf[M - 1] = F[M - 1];
        _Pragma("GCC unroll 8")
        for (int j = M - 2; j >= 0; j--) suf[j] = F[j] * suf[j + 1];
        FN(st)(out + i, suf[0]);
        FN(vec) pre = w ? FN(ld)(w + i) : suf[0];
        _Pragma("GCC unroll 8")
        for (int j = 0; j < M && w; j++) {
            const FN(vec) c = j < M - 1 ? pre * suf[j + 1] : pre;
            const FN(vec) vx = FN(ld)(mm[j][0] + i), vy = FN(ld)(mm[j][1] + i);
            FS_CS_TERMS(FN(vec), FN(v_pos), FN(v_nz), vx, vy, FN(ld)(mm[j][2] + i),
                        FN(ld)(mm[j][3] + i), C2, cov[j]);
            FN(vec) fmx, fmy, fdd, fxy;
            if (forms[j] == FS_FORM_SSIM) {  /* as form_grad */
                FS_L_TERMS(FN(vec), FN(v_nz), vx, vy, sx, sy, C1);
                const FN(vec) iB1 = 1 / B1, iB2 = 1 / B2;
                const FN(vec) l = FN(v_pick)(D1 * iB1, A1, iB1), cs = FN(v_pick)(D2 * iB2, A2, iB2);
                FN(vec) ax, ay;
                FS_L_PARTIALS(c * cs, iB1, l, ax, ay);
                FS_CS_PARTIALS(c * l, iB2, cs, cov[j], fmx, fmy, fdd, fxy);
                fmx = ax + fmx;
                fmy = ay + fmy;
            } else {
                const FN(vec) iB2 = 1 / B2, cs = FN(v_pick)(D2 * iB2, A2, iB2);
                FS_CS_PARTIALS(c, iB2, cs, cov[j], fmx, fmy, fdd, fxy);
            }
            if (fr[j][0]) FN(st)(fr[j][0] + i, fmx);
            if (fr[j][1]) FN(st)(fr[j][1] + i, fmy);
            FN(st)(fr[j][2] + i, fdd);
            FN(st)(fr[j][3] + i, fxy);
            if (j < M - 1) pre = pre * F[j];
        }
        if (i + NV >= n) break;
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

/* A line's sums in column chunks [k c, (k+1) c) (c = chunk), k0 <= k < k1,
 * each as the value pass's strip k sums it (region_sum over its part of the
 * sum region s2 (absolute map columns), from the same first column): out[k];
 * zeros off the region.  row holds map columns from m0 on. */
static void FN(chunk_sums)(const REAL *row, int in_region, int o2, const int *s1,
                           const int *s2, int m0, int chunk, int k0, int k1, double *out)
{
    for (int k = k0; k < k1; k++) {
        int c2[2] = {(s2[0] > k * chunk ? s2[0] : k * chunk) - m0,
                     (s2[1] < (k + 1) * chunk ? s2[1] : (k + 1) * chunk) - m0};
        if (c2[1] < c2[0]) c2[1] = c2[0];
        out[k] = in_region ? FN(region_sum)(row, o2, s1, c2) : 0.0;
    }
}

/* ---- scratch ---- */


typedef struct {
    REAL *src[4], *hring[4], *m[FS_B][4], *wl, *zeros, *tmp, *gfull;
    REAL sx, sy;
    int m0, m1;      /* map columns of this unit (2-D column strips) */
    int B;           /* output lines per row block: 4, 8 or 16 for wide windows */
    int own_lo, own_hi;  /* input lines whose fused downsampling this unit writes */
    ptrdiff_t plane;
    ptrdiff_t Lw;    /* ring line width in use: m1 - m0 (2-D) or o1*o2 (3-D) */
    REAL *fring[4], *av[FS_B][4], *ag[4];
    const REAL **pr, **pr2;
    int hnext, nrh, nrf;
    ptrdiff_t Ls;    /* ring line stride: Lo rounded up to 64 bytes (aligned vectors) */
} FN(fs_scr);

/* Zero the pads around the lines band_range reads beyond their ends (the
 * values never reach a stored lane; zeros keep denormals out of the lanes). */
static void FN(fs_pads)(const fs_job *job, FN(fs_scr) *s)
{
    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const ptrdiff_t Lo = (ptrdiff_t)job->o1 * job->o2;
    for (int i = 0; i < 4; i++) {
        memset(s->src[i] - FS_PAD, 0, FS_PAD * sizeof(REAL));
        memset(s->src[i] + L, 0, FS_PAD * sizeof(REAL));
    }
    if (job->grad)
        for (int b = 0; b < FS_B; b++)
            for (int i = 0; i < 4; i++) {
                memset(s->av[b][i] - FS_PAD, 0, FS_PAD * sizeof(REAL));
                memset(s->av[b][i] + Lo, 0, FS_PAD * sizeof(REAL));
            }
}

static size_t FN(fs_layout)(const fs_job *job, char *base, FN(fs_scr) *s)
{
    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const ptrdiff_t Lo = (ptrdiff_t)job->o1 * job->o2;
    const int r = job->f0.r;
    /* the F ring spans the adjoint window plus how far the stream runs
     * ahead of it (further for the small scales of a multi-scale job) */
    const int rr = job->ring_r > r ? job->ring_r : r;
    /* h-lines are made for all windows at once, as far ahead as the widest
     * needs (hlines_multi): a narrow window's ring spans r + rr + FS_B lines */
    const int nrh = r + rr + FS_B, nrf = r + rr + 2 * FS_B;
    int rp = 2 * r + FS_B;
    if (job->n1 > 1 && 2 * job->f1.r + 1 > rp) rp = 2 * job->f1.r + 1;
    if (job->n1 > 1 && 2 * job->a1.r + 1 > rp) rp = 2 * job->a1.r + 1;
    size_t off = 0;
#define FS_TAKE(ptr, type, count)                                        \
    do {                                                                 \
        if (s) ptr = (type *)(base + off);                               \
        off += ((size_t)(count) * sizeof(type) + 63) & ~(size_t)63;      \
    } while (0)
    /* source lines and adjoint rows are read by band_range with FS_PAD
     * readable samples on either side (zeroed by fs_pads) */
#define FS_TAKE_PADDED(ptr, count)                                       \
    do {                                                                 \
        FS_TAKE(ptr, REAL, (count) + 2 * FS_PAD);                        \
        if (s) ptr += FS_PAD;                                            \
    } while (0)
    for (int i = 0; i < 4; i++) FS_TAKE_PADDED(s->src[i], L);
    const ptrdiff_t Ls = (Lo + (ptrdiff_t)(64 / sizeof(REAL)) - 1) & ~(ptrdiff_t)(64 / sizeof(REAL) - 1);
    for (int i = 0; i < 4; i++) FS_TAKE(s->hring[i], REAL, (ptrdiff_t)nrh * Ls);
    for (int b = 0; b < FS_B; b++)
        for (int i = 0; i < 4; i++) FS_TAKE(s->m[b][i], REAL, Lo);
    FS_TAKE(s->wl, REAL, Lo);
    FS_TAKE(s->zeros, REAL, Lo);
    FS_TAKE(s->tmp, REAL, job->n2 > job->o2 ? job->n2 : job->o2);
    FS_TAKE(s->gfull, REAL, 2 * r + 1);
    FS_TAKE(s->pr, const REAL *, rp);
    FS_TAKE(s->pr2, const REAL *, rp);
    if (job->grad) {
        for (int i = 0; i < 4; i++) FS_TAKE(s->fring[i], REAL, (ptrdiff_t)nrf * Ls);
        for (int b = 0; b < FS_B; b++)
            for (int i = 0; i < 4; i++) FS_TAKE_PADDED(s->av[b][i], Lo);
        for (int i = 0; i < 4; i++) FS_TAKE(s->ag[i], REAL, L);
    }
#undef FS_TAKE_PADDED
#undef FS_TAKE
    if (s) {
        s->nrh = nrh;
        s->nrf = nrf;
        s->Ls = Ls;
    }
    return off + 64;
}

/* One input line as REAL, minus the shift: the engine reads the caller's
 * integer or float images in place, with channels interleaved (stride) or
 * not, so neither a float copy nor a channel transpose is ever made. */
static void FN(load_line)(const void *base, int type, ptrdiff_t off, ptrdiff_t stride,
                          ptrdiff_t n, REAL shift, REAL *restrict out)
{
#define FS_LOAD(T)                                                              \
    do {                                                                        \
        const T *restrict src = (const T *)base + off;                          \
        if (stride == 1)                                                        \
            for (ptrdiff_t j = 0; j < n; j++) out[j] = (REAL)src[j] - shift;    \
        else                                                                    \
            for (ptrdiff_t j = 0; j < n; j++) out[j] = (REAL)src[j * stride] - shift; \
    } while (0)
    switch (type) {
    case FS_IN_U8: FS_LOAD(unsigned char); break;
    case FS_IN_U16: FS_LOAD(unsigned short); break;
    case FS_IN_I8: FS_LOAD(signed char); break;
    case FS_IN_I16: FS_LOAD(short); break;
    case FS_IN_F32: FS_LOAD(float); break;
    default: FS_LOAD(REAL); break;
    }
#undef FS_LOAD
}

static inline void FN(store_strided)(const REAL *restrict in, REAL *restrict out,
                                     int stride, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++) out[j * stride] = in[j];
}

/* The four moment sources of one line (restrict parameters: six streams are
 * too many for GCC's run-time alias checks, which would leave it scalar). */
static inline void FN(sources)(ptrdiff_t n, const REAL *restrict x, const REAL *restrict y,
                               REAL sx, REAL sy, REAL *restrict su, REAL *restrict sv,
                               REAL *restrict ss, REAL *restrict sp)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        REAL u = x[j] - sx, v = y[j] - sy;
        su[j] = u;
        sv[j] = v;
        ss[j] = (u - v) * (u - v);
        sp[j] = u * v;
    }
}

/* Gradient line, eq. 10 in VJP form: g = G^T(w F_mu) + 2 (u - v) G^T(w F_dd) + v G^T(w F_xy)
 * (u the shifted input differentiated, v the other; F_dd the partial by
 * E[(x - y)^2], whose derivative by u is 2 (u - v)); stride nci in the output. */
static inline void FN(combine)(ptrdiff_t n, const REAL *restrict am, const REAL *restrict ass,
                               const REAL *restrict axy, const REAL *restrict u,
                               const REAL *restrict v, REAL *restrict o, int nci)
{
    if (!ass) {  /* a windowed mean: its gradient is the adjoint of the mean alone */
        for (ptrdiff_t t = 0; t < n; t++) o[t * nci] = am[t];
        return;
    }
    if (nci == 1) {
        for (ptrdiff_t t = 0; t < n; t++) o[t] = am[t] + 2 * (u[t] - v[t]) * ass[t] + v[t] * axy[t];
    } else {
        for (ptrdiff_t t = 0; t < n; t++)
            o[t * nci] = am[t] + 2 * (u[t] - v[t]) * ass[t] + v[t] * axy[t];
    }
}

/* Offset (in elements) of plane p: batch item p / nci, channel p % nci. */
static inline ptrdiff_t FN(plane_off)(ptrdiff_t p, int nci, ptrdiff_t item)
{
    return (p / nci) * item + p % nci;
}

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

/* The four sources of n samples of an input line from element at on (x - sx,
 * y - sy, the square of their difference, their product), from any input type and
 * channel interleave. */
static inline void FN(line_sources)(const fs_job *job, ptrdiff_t at, ptrdiff_t n, REAL sx,
                                    REAL sy, REAL *restrict su, REAL *restrict sv,
                                    REAL *restrict ss, REAL *restrict sp)
{
    if (job->in_type == FS_IN_REAL && job->nci == 1) {  /* the common case, in one sweep */
        FN(sources)(n, (const REAL *)job->x + at, (const REAL *)job->y + at, sx, sy,
                    su, sv, ss, sp);
        return;
    }
    FN(load_line)(job->x, job->in_type, at, job->nci, n, sx, su);
    FN(load_line)(job->y, job->in_type, at, job->nci, n, sy, sv);
    for (ptrdiff_t j = 0; j < n; j++) {
        REAL u = su[j], v = sv[j];
        ss[j] = (u - v) * (u - v);
        sp[j] = u * v;
    }
}

/* Input line q, filtered within the line (axes 1, 2) for the four moment
 * sources x, y, (x - y)^2, xy (eqs. 2-4), into the ring slot of q (and,
 * with a fused downsampling, the next scale's row it completes). */
static void FN(hline)(const fs_job *job, ptrdiff_t xoff, int q, FN(fs_scr) *s)
{
    const ptrdiff_t L = (ptrdiff_t)job->n1 * job->n2;
    const ptrdiff_t Lo = (ptrdiff_t)job->o1 * job->o2;
    const ptrdiff_t slot = (ptrdiff_t)(q % s->nrh) * s->Ls;
    const int nci = job->nci;
    /* input columns [i0, i1) that the unit's map columns [m0, m1) read */
    ptrdiff_t i0 = 0, i1 = L;
    if (job->n1 == 1) {
        const fs_band *b = &job->f2;
        i0 = s->m0 + b->off - b->r;
        i1 = s->m1 - 1 + b->off + b->r + 1;
        if (i0 < 0) i0 = 0;
        if (i1 > L) i1 = L;
    }
    const ptrdiff_t n = i1 - i0;
    const ptrdiff_t at = xoff + ((ptrdiff_t)q * L + i0) * nci;
    REAL *restrict su = s->src[0], *restrict sv = s->src[1];
    REAL *restrict ss = s->src[2], *restrict sp = s->src[3];
    FN(line_sources)(job, at, n, s->sx, s->sy, su, sv, ss, sp);
    if (job->dx && q >= s->own_lo && q < s->own_hi && job->dlast[q] >= 0) {
        /* fused 2x downsampling: row o of the next MS-SSIM scale, from the
         * input rows just streamed (they are in cache) */
        const int o = job->dlast[q];
        const fs_down *d0 = job->dd0;
        const REAL wa = (REAL)d0->w0[o], wb = (REAL)d0->w1[o];
        for (int side = 0; side < 2; side++) {
            const REAL *base = (const REAL *)(side ? job->y : job->x) + xoff;
            REAL *dst = (REAL *)(side ? job->dy : job->dx) + s->plane * job->dplane
                        + (ptrdiff_t)o * job->dd2->n_out;
            FN(down_rows)(job->dd2, wa, base + (ptrdiff_t)d0->i0[o] * L, wb,
                          base + (ptrdiff_t)d0->i1[o] * L, dst);
        }
    }
    const REAL *srcs[4] = {su, sv, ss, sp};
    /* a plain windowed mean (FS_FORM_MEAN) reads the first source only */
    const int ns = job->form == FS_FORM_MEAN ? 1 : 4;
    for (int i = 0; i < ns; i++) {
        if (job->n1 == 1)  /* ring lines hold map columns [m0, m1) */
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

/* Weight rows of band b for outputs i0 .. i0+nb-1 (the symmetric interior
 * gets the full taps). */
static inline void FN(block_weights)(const fs_band *b, int i0, int nb,
                                     const REAL *gfull, const REAL **w)
{
    for (int k = 0; k < nb; k++) {
        const REAL *t;
        w[k] = FN(band_row)(b, i0 + k, &t) ? gfull : t;
    }
}

/* Moments of output lines p0 .. p0+nb-1 into s->m[b]: the streamed-axis
 * band over the ring of within-line-filtered source lines (filtered lines
 * are made on demand, each input line once per block). */
static void FN(moments)(const fs_job *job, ptrdiff_t xoff, int p0, int nb,
                        FN(fs_scr) *s)
{
    const ptrdiff_t Lo = (ptrdiff_t)job->o1 * job->o2;
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
    const REAL *w[FS_B];
    FN(block_weights)(f0, p0, nb, s->gfull, w);
    for (int b = nb; b < B; b++) w[b] = s->gfull;
    for (int i = 0; i < (job->form == FS_FORM_MEAN ? 1 : 4); i++) {
        for (int l = 0; l < 2 * r + B; l++) {
            int q = c0 - r + l;
            s->pr[l] = (l < 2 * r + nb && q >= 0 && q < job->n0)
                           ? s->hring[i] + (ptrdiff_t)(q % s->nrh) * s->Ls : s->zeros;
        }
        REAL *out[FS_B];
        for (int b = 0; b < B; b++) out[b] = s->m[b][i];
        FN(vlin_multi)(s->Lw, s->pr, r, B, w, out);
    }
}

/* ---- MS-SSIM pyramid: 2x mean downsampling and its adjoint ---- */

static void FN(fs_down)(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                        const void *in_, void *out_, int l0, int l1, void *tmp_)
{
    const REAL *in = (const REAL *)in_;
    REAL *out = (REAL *)out_;
    REAL *tp = (REAL *)tmp_;
    const int n1 = d1->n_in, n2 = d2->n_in, o1 = d1->n_out, o2 = d2->n_out;
    const ptrdiff_t L = (ptrdiff_t)n1 * n2;
    for (int o = l0; o < l1; o++) {
        const REAL *a = in + (ptrdiff_t)d0->i0[o] * L;
        const REAL *b = in + (ptrdiff_t)d0->i1[o] * L;
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

static void FN(fs_up)(const fs_down *d0, const fs_down *d1, const fs_down *d2,
                      const void *coarse_, void *fine_, double coef_, int l0, int l1)
{
    const REAL *coarse = (const REAL *)coarse_;
    REAL *fine = (REAL *)fine_;
    const REAL coef = (REAL)coef_;
    const int n1 = d1->n_in, n2 = d2->n_in, o1 = d1->n_out, o2 = d2->n_out;
    for (int i = l0; i < l1; i++) {
        const REAL u0 = (REAL)d0->u[i];
        const REAL *src = coarse + (ptrdiff_t)d0->m[i] * o1 * o2;
        for (int r = 0; r < n1; r++) {
            REAL *f = fine + ((ptrdiff_t)i * n1 + r) * n2;
            const REAL u = u0 * (n1 > 1 ? (REAL)d1->u[r] : (REAL)1);
            const REAL *c = src + (ptrdiff_t)(n1 > 1 ? d1->m[r] : 0) * o2;
            if (u == 0) {
                for (int j = 0; j < n2; j++) f[j] = coef * f[j];
            } else {
                FN(up_axis2)(d2, c, f, coef, u);
            }
        }
    }
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

static void FN(fs_rows_multi)(const fs_job *jobs, int M, ptrdiff_t plane, int q0,
                              int q1, int c_lo, int c_hi, int strip, int nstrip,
                              void *scratch)
{
    const fs_job *J = &jobs[0];
    FN(fs_scr) s[FS_MAXW];
    char *base = (char *)(((size_t)scratch + 63) & ~(size_t)63);
    size_t off = 0;
    for (int j = 0; j < M; j++) {
        off += FN(fs_layout)(&jobs[j], base + off, &s[j]);
        FN(fs_pads)(&jobs[j], &s[j]);
    }
    const ptrdiff_t L = (ptrdiff_t)J->n1 * J->n2;
    const ptrdiff_t Lo = (ptrdiff_t)J->o1 * J->o2;
    REAL *fac[FS_MAXW], *suf[FS_MAXW], *cot, *ctmp, *prow, *wrow, *dum, *agsum[4];
    for (int j = 0; j < M; j++) {
        fac[j] = (REAL *)(base + off);
        off += ((size_t)Lo * sizeof(REAL) + 63) & ~(size_t)63;
        suf[j] = (REAL *)(base + off);
        off += ((size_t)Lo * sizeof(REAL) + 63) & ~(size_t)63;
    }
    cot = (REAL *)(base + off);
    off += ((size_t)Lo * sizeof(REAL) + 63) & ~(size_t)63;
    ctmp = (REAL *)(base + off);
    off += ((size_t)Lo * sizeof(REAL) + 63) & ~(size_t)63;
    prow = (REAL *)(base + off);
    off += ((size_t)Lo * sizeof(REAL) + 63) & ~(size_t)63;
    wrow = (REAL *)(base + off);
    off += ((size_t)Lo * sizeof(REAL) + 63) & ~(size_t)63;
    dum = (REAL *)(base + off);
    off += ((size_t)Lo * sizeof(REAL) + 63) & ~(size_t)63;
    for (int i = 0; i < 4; i++) {
        agsum[i] = (REAL *)(base + off);
        off += ((size_t)L * sizeof(REAL) + 63) & ~(size_t)63;
    }

    /* planes are (item, channel) pairs; with interleaved channels (nci > 1)
     * every line of the inputs, map, cotangent and gradients has stride nci */
    const int nci = J->nci;
    const int two_d = J->n1 == 1;
    const ptrdiff_t xoff = FN(plane_off)(plane, nci, J->plane_in);
    const ptrdiff_t moff = FN(plane_off)(plane, nci, J->plane_out);
    REAL *map = J->map ? (REAL *)J->map + moff : NULL;
    double *rowsum = J->rowsum ? J->rowsum + (ptrdiff_t)plane * J->o0 * nstrip : NULL;
    const REAL C1 = (REAL)J->C1, C2 = (REAL)J->C2;
    const REAL sx = J->shift_x ? (REAL)J->shift_x[plane] : 0;
    const REAL sy = J->shift_y ? (REAL)J->shift_y[plane] : 0;
    int rmax = 0, r2max = 0;
    for (int j = 0; j < M; j++) {
        if (jobs[j].f0.r > rmax) rmax = jobs[j].f0.r;
        if (jobs[j].f2.r > r2max) r2max = jobs[j].f2.r;
    }
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
            if (m0 < 0) m0 = 0;
            if (m1 > J->o2) m1 = J->o2;
            own0 = c_lo - J->f2.off;
            own1 = c_hi - J->f2.off;
            if (own0 < m0) own0 = m0;
            if (own1 > m1) own1 = m1;
            if (own1 < own0) own1 = own0;  /* a strip may own no map column */
        }
    }
    const ptrdiff_t Lw = two_d ? m1 - m0 : Lo;
    const ptrdiff_t Lg = two_d ? c_hi - c_lo : L;   /* gradient columns of the unit */
    const ptrdiff_t g0 = two_d ? c_lo : 0;
    /* the unit's share of the sum region, relative to m0 */
    int ss1[2] = {J->s1[0], J->s1[1]}, ss2[2] = {J->s2[0], J->s2[1]};
    if (two_d) {
        ss2[0] = (J->s2[0] > own0 ? J->s2[0] : own0) - m0;
        ss2[1] = (J->s2[1] < own1 ? J->s2[1] : own1) - m0;
        if (ss2[1] < ss2[0]) ss2[1] = ss2[0];
    }
    const int ostride = two_d ? (int)Lw : J->o2;
    /* sums in the value pass's column strips (sum_chunk): the unit owns whole
     * chunks k0 .. k1-1 of the nchunk of a line (the launcher's promise) */
    const int nchunk = two_d && J->sum_chunk > 0 ? (J->o2 + J->sum_chunk - 1) / J->sum_chunk : 0;
    const int k0 = nchunk ? own0 / J->sum_chunk : 0;
    const int k1 = nchunk ? (own1 + J->sum_chunk - 1) / J->sum_chunk : 0;
    if (rowsum && nchunk > 1) rowsum = J->rowsum + (ptrdiff_t)plane * J->o0 * nchunk;
    /* blocks of 16 or 8 lines when the widest window is wide, else 4 (shared by
     * all scales; a fixed function of the geometry, so thread-count independent) */
    const int B = 2 * rmax + 1 >= 48 ? 16 : 2 * rmax + 1 >= 24 ? 8 : 4;
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
        s[j].plane = plane;
        for (int k = 0; k <= r; k++) s[j].gfull[r + k] = s[j].gfull[r - k] = g[k];
        memset(s[j].zeros, 0, Lo * sizeof(REAL));
        s[j].hnext = -(1 << 30);
        s[j].sx = sx;
        s[j].sy = sy;
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
                for (int b = 0; b < FS_B; b++)
                    for (int i = 0; i < 4; i++) memset(s[j].av[b][i] + Lw, 0, FS_PAD * sizeof(REAL));
        }
    }
    /* windows with one offset over 2-D lines: their h-lines made together */
    int shared = M > 1 && M <= FS_MAXW && two_d;
    for (int j = 1; j < M && shared; j++)
        shared = jobs[j].f2.off == J->f2.off && jobs[j].f2.n_in == J->f2.n_in
                 && jobs[j].f2.n_out == J->f2.n_out && jobs[j].f0.off == J->f0.off;
    /* the h-rings must have been sized for lines made rmax ahead (ring_r) */
    for (int j = 0; j < M && shared; j++) shared = jobs[j].ring_r >= rmax;
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
#define FS_SUM(p, row)                                                           \
    do {                                                                         \
        if (rowsum && nchunk > 1)                                                \
            FN(chunk_sums)((row), (p) >= J->s0[0] && (p) < J->s0[1], ostride, ss1,  \
                           J->s2, m0, J->sum_chunk, k0, k1,                      \
                           rowsum + (ptrdiff_t)(p) * nchunk);                    \
        else if (rowsum)                                                         \
            rowsum[(ptrdiff_t)(p) * nstrip + strip] =                            \
                ((p) >= J->s0[0] && (p) < J->s0[1])                              \
                    ? FN(region_sum)((row), ostride, ss1, ss2) : 0.0;            \
    } while (0)
    /* map row p: the owned columns of the unit's row (computed in prow) */
#define FS_MAP(p, row)                                                           \
    do {                                                                         \
        if (map) {                                                               \
            REAL *dst = map + ((ptrdiff_t)(p) * Lo + (two_d ? own0 : 0)) * nci;  \
            const REAL *src = (row) + (two_d ? own0 - m0 : 0);                   \
            const ptrdiff_t cnt = two_d ? own1 - own0 : Lo;                      \
            if (nci == 1) memcpy(dst, src, cnt * sizeof(REAL));                  \
            else FN(store_strided)(src, dst, nci, cnt);                          \
        }                                                                        \
    } while (0)

    /* several windows of forms SSIM and CS (the per-pixel MS-SSIM): the
     * product and its cotangents in one register pass (cot_run) */
    int fused = M > 1 && M <= FS_MAXW && Lw >= NV, forms[FS_MAXW];
    REAL covs[FS_MAXW];
    for (int j = 0; j < M && fused; j++) {
        forms[j] = jobs[j].form;
        covs[j] = (REAL)jobs[j].cov;
        fused = forms[j] == FS_FORM_SSIM || forms[j] == FS_FORM_CS;
    }
#define FS_COT_RUN(mm, w, fr)                                                    \
    do {                                                                         \
        switch (M) {  /* a constant count keeps the factors in registers */      \
        case 2: FN(cot_run)(2, Lw, forms, covs, mm, C1, C2, sx, sy, w, out, fr); break; \
        case 3: FN(cot_run)(3, Lw, forms, covs, mm, C1, C2, sx, sy, w, out, fr); break; \
        case 4: FN(cot_run)(4, Lw, forms, covs, mm, C1, C2, sx, sy, w, out, fr); break; \
        case 5: FN(cot_run)(5, Lw, forms, covs, mm, C1, C2, sx, sy, w, out, fr); break; \
        case 6: FN(cot_run)(6, Lw, forms, covs, mm, C1, C2, sx, sy, w, out, fr); break; \
        case 7: FN(cot_run)(7, Lw, forms, covs, mm, C1, C2, sx, sy, w, out, fr); break; \
        default: FN(cot_run)(8, Lw, forms, covs, mm, C1, C2, sx, sy, w, out, fr); break; \
        }                                                                        \
    } while (0)

    if (!J->grad) {
        for (int p0 = q0; p0 < q1; p0 += B) {
            const int nb = q1 - p0 < B ? q1 - p0 : B;
            FN(block_moments)(jobs, M, xoff, p0, nb, shared, rmax, s);
            for (int b = 0; b < nb; b++) {
                const int p = p0 + b;
                REAL *out = prow;
                if (fused) {
                    const REAL *mm[FS_MAXW][4];
                    for (int j = 0; j < M; j++)
                        for (int i = 0; i < 4; i++) mm[j][i] = s[j].m[b][i];
                    FS_COT_RUN(mm, NULL, NULL);
                } else {
                    for (int j = 0; j < M; j++)
                        FN(form_value)(jobs[j].form, Lw, s[j].m[b][0], s[j].m[b][1],
                                       s[j].m[b][2], s[j].m[b][3], C1, C2,
                                       (REAL)jobs[j].cov, sx, sy, j ? fac[j] : out);
                    FN(product_rtl)(fac, M, Lw, out);
                }
                FS_MAP(p, out);
                FS_SUM(p, out);
            }
        }
        return;
    }

    const fs_band *a0 = &J->a0; /* the offset is shared by all scales */
    const REAL *wmap = J->wmap ? (const REAL *)J->wmap + moff : NULL;
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
    REAL *gx = (J->grad & FS_GRAD_X) ? (REAL *)J->gx + xoff : NULL;
    REAL *gy = (J->grad & FS_GRAD_Y) ? (REAL *)J->gy + xoff : NULL;

    int next = q0 + a0->off - rmax;
    if (next < 0) next = 0;
    for (int q0b = q0; q0b < q1; q0b += B) {
        const int nbq = q1 - q0b < B ? q1 - q0b : B;
        int need = q0b + nbq - 1 + a0->off + rmax;
        if (need > J->o0 - 1) need = J->o0 - 1;
        while (next <= need) {
            const int nb = J->o0 - next < B ? J->o0 - next : B;
            FN(block_moments)(jobs, M, xoff, next, nb, shared, rmax, s);
            for (int b = 0; b < nb; b++) {
                const int p = next + b;
                const int c = p + J->f0.off;
                const int owned = c >= q0 && c < q1;
                const REAL *w = (p >= J->s0[0] && p < J->s0[1]) ? wl : NULL;
                if (wmap && nci == 1 && two_d) {
                    w = wmap + (ptrdiff_t)p * Lo + m0;
                } else if (wmap) {
                    FN(load_line)(wmap, FS_IN_REAL, ((ptrdiff_t)p * Lo + (two_d ? m0 : 0)) * nci,
                                  nci, Lw, 0, wrow);
                    w = wrow;
                }
                REAL *out = prow;
                if (M == 1) {  /* a single window: no product, no other factors */
                    const ptrdiff_t slot = (ptrdiff_t)(p % s[0].nrf) * s[0].Ls;
                    REAL *const *m = s[0].m[b];
                    if (w) {
                        FN(form_grad)(J->form, Lw, m[0], m[1], m[2], m[3], C1, C2,
                                      (REAL)J->cov, sx, sy, w, out,
                                      (J->grad & FS_GRAD_X) ? s[0].fring[0] + slot : dum,
                                      (J->grad & FS_GRAD_Y) ? s[0].fring[1] + slot : dum,
                                      s[0].fring[2] + slot, s[0].fring[3] + slot);
                    } else {
                        FN(form_value)(J->form, Lw, m[0], m[1], m[2], m[3], C1, C2,
                                       (REAL)J->cov, sx, sy, out);
                        for (int i = 0; i < 4; i++)
                            memset(s[0].fring[i] + slot, 0, Lw * sizeof(REAL));
                    }
                } else if (!w) {  /* no cotangent on this line: the value only */
                    const REAL *mm[FS_MAXW][4];
                    for (int j = 0; j < M; j++) {
                        const ptrdiff_t slot = (ptrdiff_t)(p % s[j].nrf) * s[j].Ls;
                        for (int i = 0; i < 4; i++) {
                            mm[j][i] = s[j].m[b][i];
                            memset(s[j].fring[i] + slot, 0, Lw * sizeof(REAL));
                        }
                        if (!fused)
                            FN(form_value)(jobs[j].form, Lw, s[j].m[b][0], s[j].m[b][1],
                                           s[j].m[b][2], s[j].m[b][3], C1, C2,
                                           (REAL)jobs[j].cov, sx, sy, j ? fac[j] : out);
                    }
                    if (fused) FS_COT_RUN(mm, NULL, NULL);  /* as the value pass */
                    else FN(product_rtl)(fac, M, Lw, out);
                } else {
                    if (fused) {  /* the usual case (per-pixel MS-SSIM) */
                        const REAL *mm[FS_MAXW][4];
                        REAL *fr[FS_MAXW][4];
                        for (int j = 0; j < M; j++) {
                            const ptrdiff_t slot = (ptrdiff_t)(p % s[j].nrf) * s[j].Ls;
                            for (int i = 0; i < 4; i++) mm[j][i] = s[j].m[b][i];
                            fr[j][0] = (J->grad & FS_GRAD_X) ? s[j].fring[0] + slot : NULL;
                            fr[j][1] = (J->grad & FS_GRAD_Y) ? s[j].fring[1] + slot : NULL;
                            fr[j][2] = s[j].fring[2] + slot;
                            fr[j][3] = s[j].fring[3] + slot;
                        }
                        FS_COT_RUN(mm, w, fr);
                    } else {
                        /* every factor and its unweighted partials in one pass ... */
                        for (int j = 0; j < M; j++) {
                            const ptrdiff_t slot = (ptrdiff_t)(p % s[j].nrf) * s[j].Ls;
                            REAL *const *m = s[j].m[b];
                            FN(form_grad)(jobs[j].form, Lw, m[0], m[1], m[2], m[3], C1, C2,
                                          (REAL)jobs[j].cov, sx, sy, NULL, fac[j],
                                          (J->grad & FS_GRAD_X) ? s[j].fring[0] + slot : dum,
                                          (J->grad & FS_GRAD_Y) ? s[j].fring[1] + slot : dum,
                                          s[j].fring[2] + slot, s[j].fring[3] + slot);
                        }
                        /* ... then each scale's cotangent, w times the *other* factors,
                         * from a running prefix product (pre = w * prod_{k < j} F_k) and
                         * suffix products suf[j] = prod_{k >= j} F_k (suf[0] is P) */
                        REAL *restrict pre = cot;
                        memcpy(suf[M - 1], fac[M - 1], Lw * sizeof(REAL));
                        for (int j = M - 2; j >= 0; j--) {
                            const REAL *restrict a = fac[j], *restrict bsuf = suf[j + 1];
                            REAL *restrict d = suf[j];
                            for (ptrdiff_t i = 0; i < Lw; i++) d[i] = a[i] * bsuf[i];
                        }
                        memcpy(pre, w, Lw * sizeof(REAL));
                        for (int j = 0; j < M; j++) {
                            const ptrdiff_t slot = (ptrdiff_t)(p % s[j].nrf) * s[j].Ls;
                            REAL *restrict c = ctmp;
                            if (j < M - 1) {
                                const REAL *restrict bsuf = suf[j + 1];
                                for (ptrdiff_t i = 0; i < Lw; i++) c[i] = pre[i] * bsuf[i];
                            } else {
                                memcpy(c, pre, Lw * sizeof(REAL));
                            }
                            for (int ii = 0; ii < nm; ii++) {
                                REAL *restrict fr = s[j].fring[maps[ii]] + slot;
                                for (ptrdiff_t i = 0; i < Lw; i++) fr[i] *= c[i];
                            }
                            if (j < M - 1) {
                                const REAL *restrict a = fac[j];
                                for (ptrdiff_t i = 0; i < Lw; i++) pre[i] *= a[i];
                            }
                        }
                        memcpy(out, suf[0], Lw * sizeof(REAL));
                    }
                }
                if (owned) {
                    FS_MAP(p, out);
                    FS_SUM(p, out);
                }
            }
            next += nb;
        }
        /* adjoint of every scale along the streamed axis (eqs. 5-7) */
        for (int j = 0; j < M; j++) {
            const fs_band *aj = &jobs[j].a0;
            const int r = aj->r, nrf = s[j].nrf;
            const REAL *wts[FS_B];
            FN(block_weights)(aj, q0b, nbq, s[j].gfull, wts);
            for (int b = nbq; b < B; b++) wts[b] = s[j].gfull;
            for (int ii = 0; ii < nm; ii++) {
                const int i = maps[ii];
                for (int l = 0; l < 2 * r + B; l++) {
                    int p = q0b + aj->off - r + l;
                    s[j].pr[l] = (l < 2 * r + nbq && p >= 0 && p < J->o0)
                                     ? s[j].fring[i] + (ptrdiff_t)(p % nrf) * s[j].Ls : s[j].zeros;
                }
                REAL *outs[FS_B];
                for (int b = 0; b < B; b++) outs[b] = s[j].av[b][i];
                FN(vlin_multi)(Lw, s[j].pr, r, B, wts, outs);
            }
        }
        for (int b = 0; b < nbq; b++) {
            const int q = q0b + b;
            for (int ii = 0; ii < nm; ii++) {
                const int i = maps[ii];
                for (int j = 0; j < M; j++) {
                    REAL *dst = j ? s[j].ag[i] : agsum[i];
                    if (two_d)  /* map columns [m0, m1) -> gradient columns [c_lo, c_hi) */
                        FN(band_range)(&jobs[j].a2, s[j].av[b][i] - m0, m0, m1, dst - g0,
                                       c_lo, c_hi, FS_PAD, 0, 0);
                    else
                        FN(inner)(&jobs[j].a1, &jobs[j].a2, J->o1, J->o2, J->n1,
                                  s[j].av[b][i], dst, s[j].tmp, s[j].pr2);
                    if (j) {
                        REAL *restrict acc = agsum[i];
                        const REAL *restrict add = s[j].ag[i];
                        for (ptrdiff_t t = 0; t < Lg; t++) acc[t] += add[t];
                    }
                }
            }
            /* the x and y lines (minus their shifts) into the free source buffers */
            REAL *restrict xq = s[0].src[0], *restrict yq = s[0].src[1];
            const ptrdiff_t at = xoff + ((ptrdiff_t)q * L + g0) * nci;
            if (!mean) {  /* a mean's gradient does not involve x and y */
                FN(load_line)(J->x, J->in_type, at, nci, Lg, sx, xq);
                FN(load_line)(J->y, J->in_type, at, nci, Lg, sy, yq);
            }
            if (gx)
                FN(combine)(Lg, agsum[0], mean ? NULL : agsum[2], agsum[3], xq, yq,
                            gx + ((ptrdiff_t)q * L + g0) * nci, nci);
            if (gy)
                FN(combine)(Lg, agsum[1], mean ? NULL : agsum[2], agsum[3], yq, xq,
                            gy + ((ptrdiff_t)q * L + g0) * nci, nci);
        }
    }
#undef FS_SUM
#undef FS_MAP
#undef FS_COT_RUN
}

static size_t FN(fs_multi_bytes)(const fs_job *jobs, int M)
{
    size_t off = 0;
    for (int j = 0; j < M; j++) off += FN(fs_layout)(&jobs[j], NULL, NULL);
    const size_t Lo = (size_t)jobs[0].o1 * jobs[0].o2, L = (size_t)jobs[0].n1 * jobs[0].n2;
    off += (2 * M + 5) * ((Lo * sizeof(REAL) + 63) & ~(size_t)63);
    off += 4 * ((L * sizeof(REAL) + 63) & ~(size_t)63);
    return off + 64;
}

#undef NV
#undef FS_B
#undef FS_PAD
#undef FS_MAXR
