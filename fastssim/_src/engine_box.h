/* engine_box.h: box (uniform) windows by sums whose cost does not grow with
 * the window (issue 16), accumulated in float64 (issue 10: float32 box
 * results as accurate as scikit-image's, whose scipy.ndimage filters also
 * sum in float64).  A band is a box when its taps are equal (fs_is_box);
 * only its interior outputs take these paths, its border rows (crop edges,
 * adjoints) keep their tables, so every border convention is unchanged.
 *
 * Bitwise independence of where a unit, a block or a column strip starts:
 *   - along a line, float32 (box_scan): anchored running sums, restarted by a
 *     direct sum every FS_BOXS window centres (absolute sample positions)
 *     and rolled as prefix sums of (new - old) over vector chunks on a fixed
 *     grid of centres; a unit reads from the anchor before its first output
 *     (hline's i0, unit_init's m0 for the adjoint), so each output is one
 *     fixed sequence of operations: O(1) adds per output;
 *   - along a line, float64 and mirrored ends (box_tree): a fixed binary
 *     tree of sums of its window (power-of-two partial sums of the samples
 *     at absolute positions, combined by the bits of the width), O(log w)
 *     adds (float64 samples: a running sum would drift by many of their
 *     ulps; float32 samples are exact in float64, and their sums too on
 *     data of moderate range: there both ways give the same bits);
 *   - across lines (box_lines): a running sum S(p) = S(p-1) + new - old,
 *     restarted from a direct sum at every anchor: a key (the absolute line
 *     of the window's centre for a forward band, the output line for an
 *     adjoint) = 0 mod FS_BOXA, or the first centre whose window exists.  A
 *     unit that starts between two anchors first rolls from the previous
 *     one, so S(p) is one fixed sequence of operations for every p, whoever
 *     computes it and whatever region of the map is asked for.
 * The sums are normalised once, in float64, by the window's mass / width:
 * exactly 1/w for the box windows (exact_mass makes the mass 1).
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

#ifndef FS_BOXA
#define FS_BOXA 16 /* anchor period of the running sums across lines */
#endif

#ifndef FS_BOX_MIN_R
/* Narrower boxes keep the banded filter (engine_band.h): measured on 1024²
 * float32 (2 threads), these sums cost about 2.1-2.8 ms for any width, the
 * banded filter 0.8 ms (box 3) to 1.7 ms (box 15) and 3.0 ms (box 21), so the
 * sums are taken from 21 taps on, where they are also faster. */
#define FS_BOX_MIN_R 10
#endif

/* float64 vectors of FS_VBYTES bytes (FS_DV lanes) */
#define FS_DV (FS_VBYTES / 8)
typedef double FN(dvec) __attribute__((vector_size(FS_VBYTES)));
FS_VEC_IO(FN(dvec), double, FN(dld), FN(dst))
/* FS_DV samples as float64 (element-wise: GCC 12 makes this one vcvtps2pd,
 * but splits __builtin_convertvector of a half-width vector in two) */
static inline FN(dvec) FN(dcvt)(const REAL *p)
{
#if FS_DV == 8
    return (FN(dvec)){p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
#elif FS_DV == 4
    return (FN(dvec)){p[0], p[1], p[2], p[3]};
#else
    return (FN(dvec)){p[0], p[1]};
#endif
}

/* 1 when band b's taps are a box's: every tap within 1e-6 of the centre one
 * (exact_mass may move a float32 tap by an ulp or two). */
static inline int FN(equal_taps)(const fs_band *b)
{
    const REAL *g = (const REAL *)b->g;
    if (!(g[0] > 0)) return 0;
    for (int k = 1; k <= b->r; k++) {
        const double d = (double)g[k] - (double)g[0];
        if (d > 1e-6 * (double)g[0] || d < -1e-6 * (double)g[0]) return 0;
    }
    return 1;
}

/* 1 when band b is a box of radius >= FS_BOX_MIN_R (the float64 sums below). */
static inline int FN(is_box)(const fs_band *b)
{
    return b->r >= FS_BOX_MIN_R && FN(equal_taps)(b);
}

/* The mass of band b: its taps' exact sum (in float64). */
static inline double FN(box_mass)(const fs_band *b)
{
    const REAL *g = (const REAL *)b->g;
    double mass = (double)g[0];
    for (int k = 1; k <= b->r; k++) mass += 2.0 * (double)g[k];
    return mass;
}

/* The factor that turns a window sum into the band's weighted mean: its
 * mass over its width. */
static inline double FN(box_scale)(const fs_band *b)
{
    return FN(box_mass)(b) / (double)(2 * b->r + 1);
}

/* The border outputs of a box band by band_range's tables, and the interior
 * [*lo, *hi) as band_range sees it (a mirrored end is interior), left to the
 * caller: 0 when it is empty. */
static inline int FN(box_borders)(const fs_band *b, const REAL *in, ptrdiff_t in_lo,
                                  ptrdiff_t in_hi, REAL *out, ptrdiff_t o_lo, ptrdiff_t o_hi,
                                  int pad, ptrdiff_t *lo, ptrdiff_t *hi)
{
    int lo_m = 0, hi_m = 0;
    FN(mirror)(b, in, in_lo, in_hi, pad, o_lo, o_hi, &lo_m, &hi_m);
    *lo = lo_m ? o_lo : b->lo > o_lo ? b->lo : o_lo;
    *hi = hi_m ? o_hi : b->hi < o_hi ? b->hi : o_hi;
    /* borders only (band_range recomputes the same mirror) */
    FN(band_range)(b, in, in_lo, in_hi, out, o_lo, o_hi, pad, *lo, *hi);
    return *hi > *lo;
}

/* Outputs [lo, hi) of box band b (n >= 1) by tree sums of its window in
 * float64, scaled by sc.  t0, t1: float64 scratch of hi - lo + 2r elements. */
static void FN(box_tree)(const fs_band *b, const REAL *in, REAL *out, ptrdiff_t lo, ptrdiff_t hi,
                         double sc, double *restrict t0, double *restrict t1)
{
    const int r = b->r, w = 2 * r + 1;
    const ptrdiff_t n = hi - lo, m = n + 2 * r;  /* outputs, inputs they read */
    const REAL *restrict src = in + lo + b->off - r;
    double *restrict cur = t0, *restrict acc = t1;
    /* cur holds sums of 2^k consecutive samples; acc the sums of the first
     * len samples of each window (the bits of w below k).  Each level is one
     * pass (acc's step and cur's fused; the conversion into level 0's, the
     * scaling into the last acc step): the same operations in the same order
     * as a pass per step, so the same bits with fewer loads and stores.  Level 0: w is odd, so its bit is set: acc = the first sample. */
    for (ptrdiff_t t = 0; t < n; t++) {
        const double a = (double)src[t];
        acc[t] = a;
        cur[t] = a + (double)src[t + 1];
    }
    for (ptrdiff_t t = n; t < m - 1; t++) cur[t] = (double)src[t] + (double)src[t + 1];
    REAL *restrict o = out + lo;
    ptrdiff_t len = 1;
    for (ptrdiff_t span = 2;; span <<= 1) {
        if (2 * span > w) {  /* the highest bit of w (set): the last step */
            for (ptrdiff_t t = 0; t < n; t++) o[t] = (REAL)((acc[t] + cur[t + len]) * sc);
            break;
        }
        const ptrdiff_t valid = m - 2 * span + 1;  /* >= n */
        ptrdiff_t t = 0;
        if (w & span) {
            /* in place: a chunk loads cur[t ..] before it stores cur[t, t+DV),
             * and earlier chunks stored below t only, so every load sees
             * level k's value (as the separate passes did) */
            for (; t + FS_DV <= n; t += FS_DV) {
                const FN(dvec) a = FN(dld)(acc + t) + FN(dld)(cur + t + len);
                const FN(dvec) c = FN(dld)(cur + t) + FN(dld)(cur + t + span);
                FN(dst)(acc + t, a);
                FN(dst)(cur + t, c);
            }
            for (; t < n; t++) {
                acc[t] += cur[t + len];
                cur[t] += cur[t + span];
            }
            len += span;
        }
        for (; t < valid; t++) cur[t] += cur[t + span];
    }
}

#ifndef FS_BOXS
#define FS_BOXS 64 /* anchor period of the float32 scans along lines (a multiple of 16) */
#endif

/* The float64 sum of w samples from p in a fixed order (two vectors of
 * partial sums over the samples in order, then their lanes, then the rest):
 * the anchors of box_scan and its repairs. */
static inline double FN(box_direct)(const REAL *p, int w)
{
    FN(dvec) a0 = {0}, a1 = {0};
    int k = 0;
    for (; k + 2 * FS_DV <= w; k += 2 * FS_DV) {
        a0 += FN(dcvt)(p + k);
        a1 += FN(dcvt)(p + k + FS_DV);
    }
    a0 += a1;
    double s = a0[0];
    for (int l = 1; l < FS_DV; l++) s += a0[l];
    for (; k < w; k++) s += (double)p[k];
    return s;
}

/* v with lanes below k (k >= 0) zeroed: a select, not a product (the lanes
 * before a block start may read anything, NaN included) */
typedef long long FN(dlvec) __attribute__((vector_size(FS_VBYTES)));
static inline FN(dvec) FN(dzero_below)(FN(dvec) v, int k)
{
#if FS_DV == 8
    const FN(dlvec) idx = {0, 1, 2, 3, 4, 5, 6, 7};
#elif FS_DV == 4
    const FN(dlvec) idx = {0, 1, 2, 3};
#else
    const FN(dlvec) idx = {0, 1};
#endif
    const FN(dlvec) below = idx < (long long)k;  /* all ones where zeroed */
    return (FN(dvec))((FN(dlvec))v & ~below);
}

/* The inclusive prefix sums of v's lanes (log2 FS_DV shifted adds). */
static inline FN(dvec) FN(dscan)(FN(dvec) v)
{
    const FN(dvec) z = {0};
#if FS_DV == 8
    v += __builtin_shuffle(z, v, (long long __attribute__((vector_size(64)))){0, 8, 9, 10, 11, 12, 13, 14});
    v += __builtin_shuffle(z, v, (long long __attribute__((vector_size(64)))){0, 1, 8, 9, 10, 11, 12, 13});
    v += __builtin_shuffle(z, v, (long long __attribute__((vector_size(64)))){0, 1, 2, 3, 8, 9, 10, 11});
#elif FS_DV == 4
    v += __builtin_shuffle(z, v, (long long __attribute__((vector_size(32)))){0, 4, 5, 6});
    v += __builtin_shuffle(z, v, (long long __attribute__((vector_size(32)))){0, 1, 4, 5});
#else
    v += __builtin_shuffle(z, v, (long long __attribute__((vector_size(16)))){0, 2});
#endif
    return v;
}

static inline FN(dvec) FN(dbcast)(double x)
{
    FN(dvec) v;
    for (int l = 0; l < FS_DV; l++) v[l] = x;
    return v;
}

/* (REAL)(v * sc) of FS_DV lanes stored at p (element-wise: one vcvtpd2ps) */
static inline void FN(dstore)(REAL *p, FN(dvec) v)
{
#if FS_DV == 8
    const REAL x[8] = {(REAL)v[0], (REAL)v[1], (REAL)v[2], (REAL)v[3],
                       (REAL)v[4], (REAL)v[5], (REAL)v[6], (REAL)v[7]};
#elif FS_DV == 4
    const REAL x[4] = {(REAL)v[0], (REAL)v[1], (REAL)v[2], (REAL)v[3]};
#else
    const REAL x[2] = {(REAL)v[0], (REAL)v[1]};
#endif
    memcpy(p, x, sizeof x);
}

/* k mod a in [0, a) */
static inline ptrdiff_t FN(box_mod)(ptrdiff_t k, ptrdiff_t a) { return ((k % a) + a) % a; }

/* The first output a float32 box scan computes (box_scan) for a unit whose
 * interior outputs start at lo: the start of lo's anchor block. */
static inline ptrdiff_t FN(box_scan_from)(const fs_band *b, ptrdiff_t lo)
{
    if (lo < b->lo) lo = b->lo;
    const ptrdiff_t t = lo - FN(box_mod)(lo + b->off, FS_BOXS);
    return t < b->lo ? b->lo : t;
}

/* Outputs [lo, hi) of box band b (all in [b->lo, b->hi)), float32 only, by
 * anchored running sums along the line in float64 (issue 16: a cost that does
 * not grow with the width, against the tree's log2 w passes).  Blocks of
 * outputs whose window centres (t + off: absolute sample positions, whatever
 * the map's crop) lie in [k FS_BOXS, (k + 1) FS_BOXS), the first block from
 * b->lo on: the block's first sum is
 * a direct sum (box_direct), each later one S(t) = S(t - 1) + d(t),
 * d(t) = x(t + off + r) - x(t + off - r - 1), as prefix sums of the d's over
 * chunks of 2 FS_DV outputs, centres from multiples of 2 FS_DV (a lane scan,
 * then the running carry).  Every output is thus one fixed sequence of
 * operations on its block's samples, whichever unit computes it: a unit
 * starts at its first block's start (the caller makes the samples from
 * box_scan_from's output on readable) and stores [lo, hi) only.  The drift
 * over a block is a few float64 roundings of its samples' magnitude (about
 * 1e-14 of it; the tree's: 1e-16 of the window's), far below float32's
 * rounding.  A NaN or inf entering a block stays in its sums: the block's
 * outputs from the first non-finite one are summed directly (so a NaN reaches
 * only the windows that contain it, as with the tree). */
static void FN(box_scan)(const fs_band *b, const REAL *in, REAL *out, ptrdiff_t lo, ptrdiff_t hi,
                         double sc)
{
    const int r = b->r, w = 2 * r + 1, off = b->off, CH = 2 * FS_DV;
    const FN(dvec) vsc = FN(dbcast)(sc);
    for (ptrdiff_t bs = FN(box_scan_from)(b, lo); bs < hi;) {
        ptrdiff_t be = bs - FN(box_mod)(bs + off, FS_BOXS) + FS_BOXS;
        if (be > hi) be = hi;
        const REAL *restrict pn = in + off + r, *restrict po = in + off - r - 1;
        FN(dvec) carry = FN(dbcast)(FN(box_direct)(in + bs + off - r, w));
        for (ptrdiff_t c = bs - FN(box_mod)(bs + off, CH); c < be; c += CH) {
            FN(dvec) d0 = FN(dcvt)(pn + c) - FN(dcvt)(po + c);
            FN(dvec) d1 = FN(dcvt)(pn + c + FS_DV) - FN(dcvt)(po + c + FS_DV);
            if (c <= bs) {  /* the block's first chunk: no step into its start */
                d0 = FN(dzero_below)(d0, (int)(bs - c) + 1);
                d1 = FN(dzero_below)(d1, (int)(bs - c) + 1 - FS_DV);
            }
            d0 = FN(dscan)(d0);
            d1 = FN(dscan)(d1) + FN(dbcast)(d0[FS_DV - 1]);
            const FN(dvec) o0 = carry + d0, o1 = carry + d1;
            carry += FN(dbcast)(d1[FS_DV - 1]);
            if (c >= lo && c + CH <= be) {
                FN(dstore)(out + c, o0 * vsc);
                FN(dstore)(out + c + FS_DV, o1 * vsc);
            } else {
                const FN(dvec) s0 = o0 * vsc, s1 = o1 * vsc;
                for (int l = 0; l < CH; l++)
                    if (c + l >= lo && c + l >= bs && c + l < be)
                        out[c + l] = (REAL)(l < FS_DV ? s0[l] : s1[l - FS_DV]);
            }
        }
        if (carry[0] - carry[0] != 0) {  /* a NaN or inf entered (or lanes past be) */
            ptrdiff_t t = bs > lo ? bs : lo;
            while (t < be && out[t] - out[t] == 0) t++;
            for (; t < be; t++) out[t] = (REAL)(FN(box_direct)(in + t + off - r, w) * sc);
        }
        bs = be;
    }
}

/* band_range (same contract, skip range empty) for a box band: the border
 * outputs by band_range's tables, the interior [lo, hi) by sums: with scan
 * (float32 only; the caller's samples readable from box_scan_from's output
 * on) anchored scans (box_scan) within [b->lo, b->hi), trees elsewhere (a
 * mirrored end), for float64 and without scan (several windows' adjoints:
 * their units' map columns start where the widest reaches).  t0, t1: float64 scratch
 * of at least n_in + 2 pad elements. */
static void FN(box_range)(const fs_band *b, const REAL *in, ptrdiff_t in_lo, ptrdiff_t in_hi,
                          REAL *out, ptrdiff_t o_lo, ptrdiff_t o_hi, int pad,
                          double *restrict t0, double *restrict t1, int scan)
{
    ptrdiff_t lo, hi;
    if (!FN(box_borders)(b, in, in_lo, in_hi, out, o_lo, o_hi, pad, &lo, &hi)) return;
    const double sc = FN(box_scale)(b);
    if (sizeof(REAL) != 4 || !scan) {
        FN(box_tree)(b, in, out, lo, hi, sc, t0, t1);
        return;
    }
    const ptrdiff_t a = lo > b->lo ? lo : b->lo, e = hi < b->hi ? hi : b->hi;
    if (lo < a) FN(box_tree)(b, in, out, lo, a < hi ? a : hi, sc, t0, t1);
    if (a < e) FN(box_scan)(b, in, out, a, e, sc);
    if (e < hi && (a > e ? a : e) < hi) FN(box_tree)(b, in, out, a > e ? a : e, hi, sc, t0, t1);
}

/* Lines p0 .. p0+nb-1 of a box band b across lines (the streamed axis):
 * out[b] = the band applied to the lines line(q), q = p + off - r .. p + off + r;
 * anchors at keys p + kofs = 0 mod FS_BOXA and at the centre cmin.
 * line(q): ring + (q % nr) * Ls; make(q) (when not NULL) makes sure line q is
 * in the ring (lines are made in increasing order).  Border lines use b's
 * table rows (vlin); interior lines the anchored running sums S (ns sums of
 * n columns, for output line *sp).  zeros: n readable zeros. */
typedef void (*FN(box_make_fn))(void *ctx, int q);

static void FN(box_lines)(const fs_band *b, int kofs, int cmin, int p0, int nb, int ns,
                          ptrdiff_t n,
                          REAL *const *ring, ptrdiff_t Ls, int nr, FN(box_make_fn) make,
                          void *ctx, double *const *S, int *sp, REAL *const (*out)[4],
                          const int *which, const REAL **rows)
{
    const int r = b->r, off = b->off, n_in = b->n_in;
    const double sc = FN(box_scale)(b);
#define FS_LINE(i, q) (ring[i] + (ptrdiff_t)((q) % nr) * Ls)
    for (int p = p0; p < p0 + nb; p++) {
        const int c = p + off;
        if (p < b->lo || p >= b->hi) {  /* a border line: its table row */
            const REAL *t;
            FN(band_row)(b, p, &t);
            if (make) make(ctx, c + r < n_in - 1 ? c + r : n_in - 1);
            for (int ii = 0; ii < ns; ii++) {
                const int i = which[ii];
                for (int k = 0; k <= 2 * r; k++) {
                    const int q = c - r + k;
                    rows[k] = (q >= 0 && q < n_in) ? FS_LINE(i, q) : NULL;
                }
                FN(vlin)(n, rows, r, 0, NULL, t, out[p - p0][i]);
            }
            continue;
        }
        /* S(p) from an anchor, rolled forward one line at a time (keys
         * k = p + kofs, centres k + kc) */
        const int key = p + kofs, kc = off - kofs;
        int from = key;
        if (*sp != key - 1 || key % FS_BOXA == 0 || c == cmin) {
            from = key - ((key % FS_BOXA) + FS_BOXA) % FS_BOXA;
            if (from + kc < cmin) from = cmin - kc;
            const int ca = from + kc;
            if (make) make(ctx, ca + r);
            for (int ii = 0; ii < ns; ii++) {
                const int i = which[ii];
                double *restrict s = S[i];
                for (int k = 0; k <= 2 * r; k++) rows[k] = FS_LINE(i, ca - r + k);
                /* s = line 0 + line 1 + ... in that order, two vectors of
                 * columns at a time kept in registers across the lines (a
                 * pass over s per line loaded and stored it 2r times) */
                ptrdiff_t j = 0;
                for (; j + 2 * FS_DV <= n; j += 2 * FS_DV) {
                    FN(dvec) a0 = FN(dcvt)(rows[0] + j), a1 = FN(dcvt)(rows[0] + j + FS_DV);
                    for (int k = 1; k <= 2 * r; k++) {
                        a0 += FN(dcvt)(rows[k] + j);
                        a1 += FN(dcvt)(rows[k] + j + FS_DV);
                    }
                    FN(dst)(s + j, a0);
                    FN(dst)(s + j + FS_DV, a1);
                }
                for (; j < n; j++) {
                    double a = (double)rows[0][j];
                    for (int k = 1; k <= 2 * r; k++) a += (double)rows[k][j];
                    s[j] = a;
                }
            }
            from++;
        }
        for (int kk = from; kk <= key; kk++) {
            const int cc = kk + kc;
            if (make) make(ctx, cc + r);
            for (int ii = 0; ii < ns; ii++) {
                const int i = which[ii];
                double *restrict s = S[i];
                const REAL *restrict ln = FS_LINE(i, cc + r), *restrict lo = FS_LINE(i, cc - r - 1);
                int bad = 0;  /* a NaN or inf leaving the window */
                for (ptrdiff_t j = 0; j < n; j++) {
                    const double o = (double)lo[j];
                    s[j] = (s[j] + (double)ln[j]) - o;
                    bad |= o - o != 0;
                }
                if (!bad) continue;
                /* those columns' sums again from their window (the anchor's
                 * order), so a NaN reaches only the windows that contain it */
                for (ptrdiff_t j = 0; j < n; j++) {
                    if (lo[j] - lo[j] == 0) continue;
                    double a = (double)FS_LINE(i, cc - r)[j];
                    for (int k = 1; k <= 2 * r; k++) a += (double)FS_LINE(i, cc - r + k)[j];
                    s[j] = a;
                }
            }
        }
        *sp = key;
        for (int ii = 0; ii < ns; ii++) {
            const int i = which[ii];
            const double *restrict s = S[i];
            REAL *restrict o = out[p - p0][i];
            for (ptrdiff_t j = 0; j < n; j++) o[j] = (REAL)(s[j] * sc);
        }
    }
#undef FS_LINE
}

/* ---- narrow boxes in float32 (radius 1 .. FS_BOX_MIN_R - 1; issue 10) ----
 *
 * They keep the banded filter (engine_band.h) with unit taps: each interior
 * output of a pass is the float32 sum of its window, divided once by the
 * width, correctly rounded (nbox_scale); border outputs keep their tables.  With the taps themselves (about 1/w, never exact in binary)
 * every product and partial sum of the filter was rounded, and on integer
 * images (whose window sums are multiples of 1/w) those roundings are not
 * zero-mean: they biased E[x^2] - mu^2 by a few ulps of mu^2, and the float32
 * box-3/7/11 SSIM of scikit-image's test images by 4e-8 to 2.4e-7 (with taps
 * of exactly 1/w, rounded per operation: -0.6e-6 to -1.6e-6; a NumPy model of
 * the passes in the engine's order, benchmarks/box_bias_model.py).  Sums of
 * integer samples (and of their squares and products, below 2^24) are exact,
 * so each pass's output is the correctly rounded window mean.  float64 keeps
 * its taps: their rounding (1e-16) biases nothing measurable.  Cost: the two
 * divisions, about 5.5M instructions per 1024² value with the division
 * across lines fused into the sums (nbox_vsum4; callgrind, AVX2 path,
 * workers=1: box 7 value 31.6M -> 37.1M); a division before the second pass's sums instead of after them is
 * biased again (box_bias_model.py, scaled_then_summed).
 * Since issue 16, 2-D jobs with FMA (the AVX2 and AVX-512 paths: nbox_one,
 * below) divide once for both axes instead, after the sums across lines:
 * one rounding where the two passes gave two, and no division along the line
 * (box 7 value 37.4M -> 25.3M instructions with the sums below; callgrind,
 * AVX2, workers=1).  The SSE2 path and volumes keep the per-pass division. */
#define FS_NBOX_W (2 * FS_BOX_MIN_R - 1) /* widest narrow box */
static const REAL FN(nbox_ones)[FS_NBOX_W] = {[0 ... FS_NBOX_W - 1] = 1};

/* 1 when band b is a narrow box taken as unit sums (float32 only). */
static inline int FN(is_nbox)(const fs_band *b)
{
    return sizeof(REAL) == 4 && b->r >= 1 && b->r < FS_BOX_MIN_R && FN(equal_taps)(b);
}

/* v[t] = RN(v[t] / d) for t < n, c = RN(1 / d): Markstein's correction
 * (q = v c; the residual v - q d is exact; q + r c rounds correctly), 3
 * operations a vector.  Only with FMA (the callers' condition). */
static inline void FN(nbox_div)(REAL *restrict v, ptrdiff_t n, REAL d, REAL c)
{
#ifdef __FMA__
    for (ptrdiff_t t = 0; t < n; t++) {
        const REAL s = v[t], q = s * c;
        v[t] = __builtin_fmaf(__builtin_fmaf(-q, d, s), c, q);
    }
#else
    (void)v, (void)n, (void)d, (void)c;
#endif
}

/* v[t] = v[t] * mass / w for box band b (w its width), t < n, rounded once:
 * with FMA (the AVX2 and AVX-512 paths), the correctly rounded quotient by
 * w when the mass is exactly 1 (exact_mass), by Markstein's correction
 * (q = v c, c = RN(1/w); the residual v - q w is exact, q + r c rounds
 * correctly), 3 operations a vector; else the product in float64, rounded
 * (the conversions cost twice that).  An infinite v becomes NaN there (its
 * moments gave NaN anyway: inf - inf in the variance). */
static inline void FN(nbox_scale)(REAL *restrict v, ptrdiff_t n, const fs_band *b)
{
    const double mass = FN(box_mass)(b);
    const int w = 2 * b->r + 1;
#ifdef __FMA__
    if (mass == 1.0) {
        FN(nbox_div)(v, n, (REAL)w, (REAL)(1.0 / w));
        return;
    }
#endif
    const double sc = mass / (double)w;
    for (ptrdiff_t t = 0; t < n; t++) v[t] = (REAL)((double)v[t] * sc);
}

/* ---- one division for both axes (issue 16) ----
 *
 * When both bands of a 2-D job are narrow boxes of mass 1 without border
 * outputs (the valid crop: every window lies inside the image) and FMA is
 * there, the lines are not divided along the line at all: hline leaves each
 * source's float32 window sums along the line (nbox_hsum), the pass across
 * lines sums w0 of them and divides once by w0 w2, correctly rounded
 * (Markstein's correction with c = RN(1 / (w0 w2)); checked exhaustively for
 * every float32 significand and every product of two odd widths 3 .. 19).
 * On integer images below 2^24 / (w0 w2) every sum is exact, so each moment
 * is the correctly rounded mean of its w0 w2 samples (one rounding, where the
 * two divisions gave two).  Each output's sum along the line is a fixed
 * pairwise tree of its window's samples in order (the same operations
 * whichever vector, scalar tail, unit or strip computes it); the moments
 * pass keeps nbox_vsum4's chains.  Cost: no division along the line and
 * unit sums with a compile-time width instead of band_inner's tap loop. */

/* 1 when job's boxes take that path (float32 with FMA, 2-D, both bands
 * narrow boxes of mass 1).  Border outputs keep their tables: along the
 * line their means times w2 (nbox_sums), across lines a table row of those
 * divided by w2 (moments), so that an interior output has the same bits
 * whether or not its map has borders (a value streams the crop only). */
static inline int FN(nbox_one)(const fs_job *job)
{
#ifdef __FMA__
    const fs_band *a = &job->f0, *b = &job->f2;
    return job->n1 == 1 && FN(is_nbox)(a) && FN(is_nbox)(b) && FN(box_mass)(a) == 1.0
           && FN(box_mass)(b) == 1.0;
#else
    (void)job;
    return 0;
#endif
}

/* The sum of the K samples from p as a pairwise tree over them in order
 * (adjacent pairs, then pairs of those, an odd one carried up): T is the
 * vector or the scalar type, so every output takes the same operations. */
#define FS_NBOX_TREE(T, LOAD, K, p, res)                                    \
    do {                                                                     \
        T v_[FS_NBOX_W]; /* K <= FS_NBOX_W (a constant size: no VLA) */ \
        _Pragma("GCC unroll 24") for (int k_ = 0; k_ < (K); k_++) v_[k_] = LOAD((p) + k_); \
        _Pragma("GCC unroll 8") for (int n_ = (K); n_ > 1; n_ = (n_ + 1) / 2) {            \
            _Pragma("GCC unroll 12") for (int k_ = 0; k_ < n_ / 2; k_++)     \
                v_[k_] = v_[2 * k_] + v_[2 * k_ + 1];                        \
            if (n_ & 1) v_[n_ / 2] = v_[n_ - 1];                             \
        }                                                                    \
        (res) = v_[0];                                                       \
    } while (0)
#define FS_NBOX_SLD(p) (*(p))
/* FS_NBOX_TREE's reduction of K values already in v_ */
#define FS_NBOX_REDUCE_V(v_, K)                                              \
    do {                                                                     \
        _Pragma("GCC unroll 8") for (int n_ = (K); n_ > 1; n_ = (n_ + 1) / 2) { \
            _Pragma("GCC unroll 12") for (int k_ = 0; k_ < n_ / 2; k_++)     \
                v_[k_] = v_[2 * k_] + v_[2 * k_ + 1];                        \
            if (n_ & 1) v_[n_ / 2] = v_[n_ - 1];                             \
        }                                                                    \
    } while (0)

/* out[t] = the sum of c[t .. t + K) for t in [0, n): whole vectors (the
 * ragged end overlapping the previous one), scalars for n < NV. */
static inline __attribute__((always_inline)) void
FN(nbox_hsum)(const int K, const REAL *restrict c, ptrdiff_t n, REAL *restrict out)
{
    if (n < (ptrdiff_t)NV) {
        for (ptrdiff_t t = 0; t < n; t++) {
            REAL a;
            FS_NBOX_TREE(REAL, FS_NBOX_SLD, K, c + t, a);
            out[t] = a;
        }
        return;
    }
    ptrdiff_t t = 0;
#if FS_VBYTES == 64
    /* AVX-512: the K shifted windows as two-source permutes of the vectors at
     * t, t + NV (and t + 2 NV when K > NV) instead of K unaligned loads, each
     * of which splits a cache line (as perm_run in engine_band.h): the same
     * values, so the same tree and the same bits.  The loads reach 3 NV past
     * t, inside the line's pad. */
    {
        FN(ivec) iota;
        for (int l = 0; l < (int)NV; l++) iota[l] = (IREAL)l;
        FN(vec) B = FN(ld)(c), C = FN(ld)(c + NV);
        for (; t + (ptrdiff_t)NV <= n; t += NV) {
            const FN(vec) D = FN(ld)(c + t + 2 * NV);
            FN(vec) v_[FS_NBOX_W];
            v_[0] = B;
            _Pragma("GCC unroll 24") for (int k = 1; k < K; k++)
                v_[k] = k < (int)NV ? __builtin_shuffle(B, C, iota + (IREAL)k)
                        : k == (int)NV ? C : __builtin_shuffle(C, D, iota + (IREAL)(k - NV));
            FS_NBOX_REDUCE_V(v_, K);
            FN(st)(out + t, v_[0]);
            B = C;
            C = D;
        }
    }
#endif
    for (; t + 2 * (ptrdiff_t)NV <= n; t += 2 * NV) {
        FN(vec) a, b;
        FS_NBOX_TREE(FN(vec), FN(ld), K, c + t, a);
        FS_NBOX_TREE(FN(vec), FN(ld), K, c + t + NV, b);
        FN(st)(out + t, a);
        FN(st)(out + t + NV, b);
    }
    if (t + (ptrdiff_t)NV <= n) {
        FN(vec) a;
        FS_NBOX_TREE(FN(vec), FN(ld), K, c + t, a);
        FN(st)(out + t, a);
        t += NV;
    }
    if (t < n) {  /* the ragged end: overlap the previous vector */
        FN(vec) a;
        FS_NBOX_TREE(FN(vec), FN(ld), K, c + n - NV, a);
        FN(st)(out + n - NV, a);
    }
}

/* nbox_hsum for a constant width w = 2r + 1 (r < FS_BOX_MIN_R). */
static void FN(nbox_hsum_r)(int r, const REAL *c, ptrdiff_t n, REAL *out)
{
    switch (r) {
    case 1: FN(nbox_hsum)(3, c, n, out); break;
    case 2: FN(nbox_hsum)(5, c, n, out); break;
    case 3: FN(nbox_hsum)(7, c, n, out); break;
    case 4: FN(nbox_hsum)(9, c, n, out); break;
    case 5: FN(nbox_hsum)(11, c, n, out); break;
    case 6: FN(nbox_hsum)(13, c, n, out); break;
    case 7: FN(nbox_hsum)(15, c, n, out); break;
    case 8: FN(nbox_hsum)(17, c, n, out); break;
    default: FN(nbox_hsum)(19, c, n, out); break;
    }
}

/* band_range (same contract) for the narrow box band b of an nbox_one job:
 * interior outputs (a mirrored end included) as window sums (nbox_hsum),
 * border outputs as their table's mean times the width. */
static void FN(nbox_sums)(const fs_band *b, const REAL *in, ptrdiff_t in_lo, ptrdiff_t in_hi,
                          REAL *out, ptrdiff_t o_lo, ptrdiff_t o_hi, int pad)
{
    ptrdiff_t lo = o_lo, hi = o_hi;
    /* (no border output: box_borders would find that too, a line later) */
    const int inner = o_lo >= b->lo && o_hi <= b->hi;
    if (inner || FN(box_borders)(b, in, in_lo, in_hi, out, o_lo, o_hi, pad, &lo, &hi))
        FN(nbox_hsum_r)(b->r, in + lo + b->off - b->r, hi - lo, out + lo);
    const REAL w = (REAL)(2 * b->r + 1);
    const ptrdiff_t e = lo < o_hi ? lo : o_hi;
    for (ptrdiff_t t = o_lo; t < e; t++) out[t] *= w;
    for (ptrdiff_t t = hi > e ? hi : e; t < o_hi; t++) out[t] *= w;
}

/* band_range (same contract, skip range empty) for a narrow box band: the
 * border outputs by its tables, the interior as scaled unit sums. */
static void FN(nbox_range)(const fs_band *b, const REAL *in, ptrdiff_t in_lo, ptrdiff_t in_hi,
                           REAL *out, ptrdiff_t o_lo, ptrdiff_t o_hi, int pad)
{
    ptrdiff_t lo, hi;
    /* (the borders' vector blocks may write interior lanes: rewritten below) */
    if (!FN(box_borders)(b, in, in_lo, in_hi, out, o_lo, o_hi, pad, &lo, &hi)) return;
    fs_band u = *b;
    u.g = FN(nbox_ones);
    FN(band_inner)(&u, in, in_lo, in_hi, pad, lo, hi, lo, hi, out);
    FN(nbox_scale)(out + lo, hi - lo, b);
}

#ifdef __FMA__
/* A block of 4 interior lines of a narrow box across lines (moments): unit
 * sums divided at the store.  Per output the chain of vlin_symb(4, ...) with
 * unit taps (from zero, a += v for the lines in order: v * 1 + a is exact
 * before its rounding, so an FMA and an add agree) and nbox_scale's
 * division: the same bits as vlin_multi then nbox_scale, without their
 * second pass over the lines.  n >= NV; d = w, c = RN(1/w). */
static inline __attribute__((always_inline)) void
FN(nbox_vsum4)(const int r, ptrdiff_t n, const REAL *const *rows, REAL d, REAL c,
               REAL *const *out)
{
    const int K = 2 * r + 1;
    for (ptrdiff_t j = 0;; j += NV) {
        if (j + NV > n) j = n - NV;  /* the ragged end: overlap, not scalars */
        FN(vec) a[4];
        _Pragma("GCC unroll 4")
        for (int b = 0; b < 4; b++) a[b] = (FN(vec)){0};
        _Pragma("GCC unroll 24")
        for (int l = 0; l < K + 3; l++) {
            const FN(vec) v = FN(ld)(rows[l] + j);
            _Pragma("GCC unroll 4")
            for (int b = 0; b < 4; b++)
                if (l - b >= 0 && l - b < K) a[b] += v;
        }
        _Pragma("GCC unroll 4")
        for (int b = 0; b < 4; b++) {
            /* Markstein's division (contracted: an exact residual, one rounding) */
            const FN(vec) q = a[b] * c, e = a[b] - q * d;
            FN(st)(out[b] + j, q + e * c);
        }
        if (j + NV >= n) break;
    }
}

/* nbox_vsum4 for a constant radius (the lines and the ramp unrolled). */
static void FN(nbox_vsum4_r)(int r, ptrdiff_t n, const REAL *const *rows, REAL d, REAL c,
                             REAL *const *out)
{
    switch (r) {
    case 1: FN(nbox_vsum4)(1, n, rows, d, c, out); break;
    case 2: FN(nbox_vsum4)(2, n, rows, d, c, out); break;
    case 3: FN(nbox_vsum4)(3, n, rows, d, c, out); break;
    case 4: FN(nbox_vsum4)(4, n, rows, d, c, out); break;
    case 5: FN(nbox_vsum4)(5, n, rows, d, c, out); break;
    case 6: FN(nbox_vsum4)(6, n, rows, d, c, out); break;
    case 7: FN(nbox_vsum4)(7, n, rows, d, c, out); break;
    case 8: FN(nbox_vsum4)(8, n, rows, d, c, out); break;
    default: FN(nbox_vsum4)(9, n, rows, d, c, out); break;
    }
}

/* nbox_one's pass across lines: a block of 4 output lines whose window
 * lines are rows[b .. b + K) (rows[0] an absolute line of parity e), each the
 * sum of its K lines divided by d (c = RN(1/d)), correctly rounded.  The sum
 * is a fixed tree by absolute line: the pairs of lines (2m, 2m + 1) that lie
 * in the window, and the window's odd line out (its first or its last), as
 * leaves in order, then pairwise (FS_NBOX_TREE's shape); the block computes
 * each pair once for its 4 outputs (K = 7: 17 adds where 4 chains took 28).
 * So an output's bits depend on its absolute line only, not on where its
 * block starts.  Every line of the block is written (lines past the end read
 * zeros into spare outputs). */
#define FS_NBOX_P4(T, LOAD, K, e, at, res)                                     \
    do {                                                                       \
        T v_[FS_NBOX_W + 3], p_[FS_NBOX_W + 3];                                \
        _Pragma("GCC unroll 24") for (int l_ = 0; l_ < (K) + 3; l_++) v_[l_] = LOAD(rows[l_] + (at)); \
        _Pragma("GCC unroll 24") for (int l_ = ((e) & 1); l_ + 1 < (K) + 3; l_ += 2) \
            p_[l_] = v_[l_] + v_[l_ + 1];                                      \
        _Pragma("GCC unroll 4") for (int b_ = 0; b_ < 4; b_++) {               \
            T f_[FS_NBOX_W];                                                   \
            int n_ = 0, l_ = b_;                                               \
            if (((b_ + (e)) & 1) != 0) f_[n_++] = v_[l_++];                    \
            _Pragma("GCC unroll 12") for (; l_ + 1 < b_ + (K); l_ += 2) f_[n_++] = p_[l_]; \
            if (l_ < b_ + (K)) f_[n_++] = v_[l_];                              \
            _Pragma("GCC unroll 8") for (; n_ > 1; n_ = (n_ + 1) / 2) {        \
                _Pragma("GCC unroll 12") for (int k_ = 0; k_ < n_ / 2; k_++)   \
                    f_[k_] = f_[2 * k_] + f_[2 * k_ + 1];                      \
                if (n_ & 1) f_[n_ / 2] = f_[n_ - 1];                           \
            }                                                                  \
            (res)[b_] = f_[0];                                                 \
        }                                                                      \
    } while (0)

static inline __attribute__((always_inline)) void
FN(nbox_psum4)(const int K, const int e, ptrdiff_t n, const REAL *const *rows, REAL d, REAL c,
               REAL *const *out)
{
    if (n < (ptrdiff_t)NV) {
        for (ptrdiff_t j = 0; j < n; j++) {
            REAL a[4];
            FS_NBOX_P4(REAL, FS_NBOX_SLD, K, e, j, a);
            for (int b = 0; b < 4; b++) {
                const REAL q = a[b] * c;
                out[b][j] = __builtin_fmaf(__builtin_fmaf(-q, d, a[b]), c, q);
            }
        }
        return;
    }
    for (ptrdiff_t j = 0; j < n; j += NV) {
        if (j + (ptrdiff_t)NV > n) j = n - NV;  /* the ragged end: overlap, not scalars */
        FN(vec) a[4];
        FS_NBOX_P4(FN(vec), FN(ld), K, e, j, a);
        _Pragma("GCC unroll 4")
        for (int b = 0; b < 4; b++) {
            /* Markstein's division (contracted: an exact residual, one rounding) */
            const FN(vec) q = a[b] * c, r = a[b] - q * d;
            FN(st)(out[b] + j, q + r * c);
        }
    }
}

/* nbox_psum4 for a constant width 2r + 1 and parity e. */
static void FN(nbox_psum4_r)(int r, int e, ptrdiff_t n, const REAL *const *rows, REAL d, REAL c,
                             REAL *const *out)
{
#define FS_NBOX_P4_CASE(R)                                                     \
    case R:                                                                    \
        if (e & 1) FN(nbox_psum4)(2 * R + 1, 1, n, rows, d, c, out);           \
        else FN(nbox_psum4)(2 * R + 1, 0, n, rows, d, c, out);                 \
        break;
    switch (r) {
    FS_NBOX_P4_CASE(1)
    FS_NBOX_P4_CASE(2)
    FS_NBOX_P4_CASE(3)
    FS_NBOX_P4_CASE(4)
    FS_NBOX_P4_CASE(5)
    FS_NBOX_P4_CASE(6)
    FS_NBOX_P4_CASE(7)
    FS_NBOX_P4_CASE(8)
    default: FS_NBOX_P4_CASE(9)
    }
#undef FS_NBOX_P4_CASE
}
#endif
