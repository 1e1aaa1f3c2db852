/* engine_band.h: line and band filtering.  The banded 1-D window operators
 * (engine.h, fs_band): along a line (band_range and its vector kernels), across
 * lines (vlin, vlin_multi: blocks of FS_B output lines), several windows over
 * one line at once (band_range_multi), the within-line pass of volumes (inner).
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

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

/* A block of NB (4 or 8) interior lines (every output the same symmetric
 * taps g, g[r - k] = g[r + k]) for a constant radius: the r + 1 distinct
 * taps are broadcast into registers once per call.  (Read through the
 * pointer, they were reloaded for every multiply-add, since the stores
 * through out may alias them: 5 loads per 4 fused multiply-adds, the load
 * ports the limit; perf on the AVX-512 path.)  Per output the same chain as
 * vlin_multi4's and vlin_multi8's loops: from zero, a += v * g[l - b] for l
 * ascending, so the same bits whatever the block. */
static inline __attribute__((always_inline)) void
FN(vlin_symb)(const int NB, const int r, ptrdiff_t n, const REAL *const *rows, const REAL *g,
              REAL *const *out)
{
    const int K = 2 * r + 1;
    FN(vec) gv[FS_MAXR + 1];
    _Pragma("GCC unroll 16")
    for (int k = 0; k <= r; k++) gv[k] = (FN(vec)){0} + g[r + k];
    for (ptrdiff_t j = 0;; j += NV) {
        if (j + NV > n) j = n - NV;  /* the ragged end: overlap, not scalars */
        FN(vec) a[8];
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++) a[b] = (FN(vec)){0};
        _Pragma("GCC unroll 24")
        for (int l = 0; l < K + NB - 1; l++) {
            const FN(vec) v = FN(ld)(rows[l] + j);
            _Pragma("GCC unroll 8")
            for (int b = 0; b < NB; b++) {
                const int k = l - b;  /* tap k of output b, |k - r| in registers */
                if (k >= 0 && k < K) a[b] += v * gv[k < r ? r - k : k - r];
            }
        }
        _Pragma("GCC unroll 8")
        for (int b = 0; b < NB; b++) FN(st)(out[b] + j, a[b]);
        if (j + NV >= n) break;
    }
}

/* The 8-line block of the interior for radii 4-7 (value passes of Gaussian
 * windows, block_lines): each loaded line feeds up to 8 outputs, so a
 * window of 2r + 1 lines is read (2r + 8) / 8 times per output line instead
 * of (2r + 4) / 4 (the rings do not fit in L1: the cross-line pass of a
 * 1024^2 value took 4 % less CPU time; A/B on AVX-512).  Returns 0 (nothing
 * done) unless the block is that uniform symmetric interior. */
static int FN(vlin_sym8)(ptrdiff_t n, const REAL *const *rows, int r, const REAL *const *w,
                         REAL *const *out)
{
    const int K = 2 * r + 1;
    if (n < NV || r < 4 || r > 7) return 0;
    for (int b = 1; b < 8; b++)
        if (w[b] != w[0]) return 0;
    for (int k = 0; k < r; k++)
        if (w[0][k] != w[0][K - 1 - k]) return 0;
    switch (r) {  /* a constant radius: the taps and the ramp unrolled */
    case 4: FN(vlin_symb)(8, 4, n, rows, w[0], out); break;
    case 5: FN(vlin_symb)(8, 5, n, rows, w[0], out); break;
    case 6: FN(vlin_symb)(8, 6, n, rows, w[0], out); break;
    default: FN(vlin_symb)(8, 7, n, rows, w[0], out); break;
    }
    return 1;
}

/* Small windows: the hand-ramped 4-line block (see vlin_multi8 for the contract). */
static void FN(vlin_multi4)(ptrdiff_t n, const REAL *const *rows, int r, int nb,
                            const REAL *const *w, REAL *const *out)
{
    const int K = 2 * r + 1;
    ptrdiff_t j = 0;
    if (nb == 4 && n >= NV && r >= 1 && r <= 7 && w[1] == w[0] && w[2] == w[0]
        && w[3] == w[0]) {
        int sym = 1;
        for (int k = 0; k < r; k++) sym &= w[0][k] == w[0][K - 1 - k];
        if (sym) {
            switch (r) {  /* a constant radius: the taps and the ramp unrolled */
            case 1: FN(vlin_symb)(4, 1, n, rows, w[0], out); return;
            case 2: FN(vlin_symb)(4, 2, n, rows, w[0], out); return;
            case 3: FN(vlin_symb)(4, 3, n, rows, w[0], out); return;
            case 4: FN(vlin_symb)(4, 4, n, rows, w[0], out); return;
            case 5: FN(vlin_symb)(4, 5, n, rows, w[0], out); return;
            case 6: FN(vlin_symb)(4, 6, n, rows, w[0], out); return;
            default: FN(vlin_symb)(4, 7, n, rows, w[0], out); return;
            }
        }
    }
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
 * of K lines is then read (K + B - 1) / B times per output line).  Not
 * inlined: its register-heavy loops compile alike wherever it is called
 * from (inlined into the driver, they lost up to 0.7 % of the instructions
 * of a gradient to the surrounding code; callgrind). */
static __attribute__((noinline)) void
FN(vlin_multi)(ptrdiff_t n, const REAL *const *rows, int r, int B, const REAL *const *w,
               REAL *const *out)
{
    /* a narrow window in a wide block (another scale is wide) runs in sub-blocks */
    const int K = 2 * r + 1;
    const int sub = (B == 16 && K >= 48) ? 16 : (B >= 8 && K >= 24) || (B == 8 && K >= 9) ? 8 : 4;
    for (int b0 = 0; b0 < B; b0 += sub) {
        if (sub == 16) FN(vlin_multi16)(n, rows + b0, r, w + b0, out + b0);
        else if (sub == 8 && K < 24 && FN(vlin_sym8)(n, rows + b0, r, w + b0, out + b0)) continue;
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

/* The interior [lo, hi) (hi - lo >= NV) of one symmetric band over the four
 * moment sources of a line, for a constant radius: the r + 1 taps are
 * broadcast once per line (band_loads reads them through a pointer and keeps
 * its radius in a register: on a 32-px line its set-up and tap loop cost
 * several times its arithmetic; callgrind), the four sources are four
 * independent chains, and the ragged end is one overlapping vector.  Per
 * output the same chain as band_loads and perm_run (from zero, the centre
 * first, then (c[i-k] + c[i+k]) g[k] for k ascending): the same bits. */
static inline __attribute__((always_inline)) void
FN(sym_run4)(const int r, const REAL *const *c, const REAL *g, ptrdiff_t lo, ptrdiff_t hi,
             REAL *const *out)
{
    FN(vec) gv[8];
    _Pragma("GCC unroll 8")
    for (int k = 0; k <= r; k++) gv[k] = (FN(vec)){0} + g[k];
    const REAL *c0 = c[0], *c1 = c[1], *c2 = c[2], *c3 = c[3];
    for (ptrdiff_t i = lo;; i += NV) {
        if (i + NV > hi) i = hi - NV;  /* the ragged end: overlap, not scalars */
        FN(vec) a0 = (FN(vec)){0}, a1 = (FN(vec)){0}, a2 = (FN(vec)){0}, a3 = (FN(vec)){0};
        a0 += FN(ld)(c0 + i) * gv[0];
        a1 += FN(ld)(c1 + i) * gv[0];
        a2 += FN(ld)(c2 + i) * gv[0];
        a3 += FN(ld)(c3 + i) * gv[0];
        _Pragma("GCC unroll 8")
        for (int k = 1; k <= r; k++) {
            a0 += (FN(ld)(c0 + i - k) + FN(ld)(c0 + i + k)) * gv[k];
            a1 += (FN(ld)(c1 + i - k) + FN(ld)(c1 + i + k)) * gv[k];
            a2 += (FN(ld)(c2 + i - k) + FN(ld)(c2 + i + k)) * gv[k];
            a3 += (FN(ld)(c3 + i - k) + FN(ld)(c3 + i + k)) * gv[k];
        }
        FN(st)(out[0] + i, a0);
        FN(st)(out[1] + i, a1);
        FN(st)(out[2] + i, a2);
        FN(st)(out[3] + i, a3);
        if (i + NV >= hi) break;
    }
}

/* band_range of one band over the four moment sources of a line (in[s],
 * out[s]; the arguments otherwise as band_range's): each source's borders by
 * band_range, the common interior of all four by sym_run4 for radii up to 7
 * (Gaussian windows up to sigma 2), except long runs on AVX-512, whose
 * interior perm_run takes without unaligned loads. */
static void FN(band_range4)(const fs_band *b, const REAL *const *in, ptrdiff_t in_lo,
                            ptrdiff_t in_hi, REAL *const *out, ptrdiff_t o_lo, ptrdiff_t o_hi,
                            int pad)
{
    const int r = b->r;
    const ptrdiff_t L = b->lo > o_lo ? b->lo : o_lo, H = b->hi < o_hi ? b->hi : o_hi;
    int fast = r >= 1 && r <= 7 && H - L >= NV;
#if FS_VBYTES == 64
    fast &= H - L < 4 * NV;
#endif
    if (!fast) {
        for (int s = 0; s < 4; s++) FN(band_range)(b, in[s], in_lo, in_hi, out[s], o_lo, o_hi, pad, 0, 0);
        return;
    }
    /* the borders first: a border block's vector may cover interior lanes,
     * which the interior run then rewrites (as in band_range) */
    if (L > o_lo || H < o_hi)
        for (int s = 0; s < 4; s++) FN(band_range)(b, in[s], in_lo, in_hi, out[s], o_lo, o_hi, pad, L, H);
    const REAL *c[4];
    for (int s = 0; s < 4; s++) c[s] = in[s] + b->off;
    const REAL *g = (const REAL *)b->g;
    switch (r) {  /* a constant radius: the taps in registers, the loop unrolled */
    case 1: FN(sym_run4)(1, c, g, L, H, out); break;
    case 2: FN(sym_run4)(2, c, g, L, H, out); break;
    case 3: FN(sym_run4)(3, c, g, L, H, out); break;
    case 4: FN(sym_run4)(4, c, g, L, H, out); break;
    case 5: FN(sym_run4)(5, c, g, L, H, out); break;
    case 6: FN(sym_run4)(6, c, g, L, H, out); break;
    default: FN(sym_run4)(7, c, g, L, H, out); break;
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
