/* engine_formula.h: the SSIM formulas.  Eq. 1 (l, cs, SSIM) and its partial
 * derivatives (eqs. 8-9) per point, for scalars and vectors from ONE set of
 * macros; the per-pixel product of several windows and its cotangents (cot_run);
 * the gradient combination of eq. 10.
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

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

/* Helper families for the macros below: H(name) is s_name for scalars
 * (T = REAL), v_name for vectors (T = vec). */
#define FS_SCALAR(h) FN(s_##h)
#define FS_VECTOR(h) FN(v_##h)

/* The terms of eq. 1, written once for scalars and vectors (form_value,
 * form_grad and cot_run all expand these; so the value is the same bit for
 * bit with or without a gradient, by construction), in difference form:
 *   l  = A1 / B1,  A1 = 2 mu_x mu_y + C1,          B1 = A1 + D1,  D1 = (mu_x - mu_y)^2
 *   cs = A2 / B2,  A2 = 2 c (E[xy] - mu_x mu_y) + C2, B2 = A2 + D2,  D2 = c var(x - y)
 * (B1 = mu_x^2 + mu_y^2 + C1 and B2 = c (var x + var y) + C2, as in eq. 1).
 * The moments are of x - sx and y - sy (vx, vy: their means; md = E[(x - y)^2]
 * and mp = E[xy] of the shifted samples), so the variances are shift-free and
 * lose less to cancellation, and the means get the shift back for l.  D1 and
 * D2 are >= 0 (var(x - y) is clamped at 0 against rounding), and the value is
 * evaluated as l = 1 - D1/B1, cs = 1 - D2/B2 near 1 (pick): identical inputs
 * have D = 0 and give exactly 1, no value exceeds 1, and A = 0 gives exactly
 * 0.  B = 0 (only with C = 0 and flat, equal windows: then D = 0 too) is read
 * as 1, which gives the limit C -> 0 of the value, 1.  Two reciprocals, not
 * 1/(B1 B2): that product overflows float32 on 16-bit data ranges and made l
 * and cs silently 1.
 * FS_L defines ux, uy, A1, D1, iB1 and l; FS_CS defines A2, D2, iB2 and cs
 * (and reads vx, vy by name). */
#define FS_L(T, H, vx, vy, sx, sy, C1)                                        \
    const T ux = (vx) + (sx), uy = (vy) + (sy);                               \
    const T du = ((vx) - (vy)) + ((sx) - (sy));                               \
    const T A1 = 2 * (ux * uy) + (C1), D1 = du * du;                          \
    const T iB1 = 1 / H(nz)(A1 + D1);                                         \
    const T l = H(pick)(D1 * iB1, A1, iB1)
#define FS_CS(T, H, vx, vy, md, mp, C2, cov)                                  \
    const T dv = (vx) - (vy);                                                 \
    const T A2 = 2 * ((cov) * ((mp) - (vx) * (vy))) + (C2);                   \
    const T D2 = (cov) * H(pos)((md) - dv * dv);                              \
    const T iB2 = 1 / H(nz)(A2 + D2);                                         \
    const T cs = H(pick)(D2 * iB2, A2, iB2)
/* The values of the forms (clamped at -1 against rounding, as pick never
 * exceeds 1), after FS_L and/or FS_CS. */
#define FS_SSIM_VALUE(H) (H(gem1)(l) * H(gem1)(cs))
#define FS_L_VALUE(H) H(gem1)(l)
#define FS_CS_VALUE(H) H(gem1)(cs)
/* The partials of l, cs and SSIM = l cs (eqs. 8-9) with respect to (mu_x,
 * mu_y, E[(x-y)^2], E[xy]), weighted by w; all of them vanish exactly for
 * identical inputs (l = cs = 1, ux = uy, vx = vy):
 *   dl/dmu_x  = 2 (uy - ux l) / B1,        dl/dmu_y  = 2 (ux - uy l) / B1,
 *   dcs/dmu_x = 2 c (vx cs - vy) / B2,     dcs/dmu_y = 2 c (vy cs - vx) / B2,
 *   dcs/dmd   = -c cs / B2,                dcs/dmp   = 2 c (1 - cs) / B2.
 * They read l and cs, not D/B, so that D1/B1 and D2/B2 have the same uses
 * with and without a gradient and are contracted alike (the value is the same
 * bit for bit with or without a gradient).  The partials are of the unclamped
 * formula (the clamps act only at rounding level). */
#define FS_L_PARTIALS(w, fmx, fmy)                                            \
    do {                                                                      \
        fmx = 2 * (w) * iB1 * (uy - ux * l);                                  \
        fmy = 2 * (w) * iB1 * (ux - uy * l);                                  \
    } while (0)
#define FS_CS_PARTIALS(w, cov, fmx, fmy, fdd, fxy)                            \
    do {                                                                      \
        const __typeof__(iB2) cw_ = (w) * (cov) * iB2;                        \
        fmx = 2 * cw_ * (vx * cs - vy);                                       \
        fmy = 2 * cw_ * (vy * cs - vx);                                       \
        fdd = -cw_ * cs;                                                      \
        fxy = 2 * cw_ * (1 - cs);                                             \
    } while (0)
#define FS_SSIM_PARTIALS(T, w, cov, fmx, fmy, fdd, fxy)                       \
    do {                                                                      \
        const T w_ = (w);                                                     \
        T ax_, ay_, bx_, by_;                                                 \
        FS_L_PARTIALS(w_ * cs, ax_, ay_);                                     \
        FS_CS_PARTIALS(w_ * l, cov, bx_, by_, fdd, fxy);                      \
        fmx = ax_ + bx_;                                                      \
        fmy = ay_ + by_;                                                      \
    } while (0)

/* Point j of a line of moments (mx, my, md, mp, with sx, sy, C1, C2, cov in
 * scope) for each form: its terms and its value val.  form_value and
 * form_grad expand the same ones, so a value is the same bit for bit with or
 * without a gradient. */
#define FS_AT_SSIM(j)                                                         \
    const REAL vx = mx[j], vy = my[j];                                        \
    FS_L(REAL, FS_SCALAR, vx, vy, sx, sy, C1);                                \
    FS_CS(REAL, FS_SCALAR, vx, vy, md[j], mp[j], C2, cov);                    \
    const REAL val = FS_SSIM_VALUE(FS_SCALAR)
#define FS_AT_CS(j)                                                           \
    const REAL vx = mx[j], vy = my[j];                                        \
    FS_CS(REAL, FS_SCALAR, vx, vy, md[j], mp[j], C2, cov);                    \
    const REAL val = FS_CS_VALUE(FS_SCALAR)
#define FS_AT_L(j)                                                            \
    FS_L(REAL, FS_SCALAR, mx[j], my[j], sx, sy, C1);                          \
    const REAL val = FS_L_VALUE(FS_SCALAR)
#define FS_AT_MEAN(j) const REAL val = mx[j] + sx

/* One line of form `form` (FS_FORM_*): out[j] = F(moments at j). */
static void FN(form_value)(int form, ptrdiff_t n, const REAL *restrict mx,
                           const REAL *restrict my, const REAL *restrict md,
                           const REAL *restrict mp, REAL C1, REAL C2, REAL cov,
                           REAL sx, REAL sy, REAL *restrict out)
{
    if (form == FS_FORM_SSIM && n >= NV) {
        /* in vectors, the ragged end one overlapping vector (a 22-px line
         * of a 32^2 image otherwise ran 6 of its 22 points in scalar code);
         * the same expressions as the scalar loop (FS_L, FS_CS), as cot_run */
        for (ptrdiff_t i = 0;; i += NV) {
            if (i + NV > n) i = n - NV;
            const FN(vec) vx = FN(ld)(mx + i), vy = FN(ld)(my + i);
            const FN(vec) vd = FN(ld)(md + i), vp = FN(ld)(mp + i);
            FS_L(FN(vec), FS_VECTOR, vx, vy, sx, sy, C1);
            FS_CS(FN(vec), FS_VECTOR, vx, vy, vd, vp, C2, cov);
            FN(st)(out + i, FS_SSIM_VALUE(FS_VECTOR));
            if (i + NV >= n) break;
        }
    } else if (form == FS_FORM_SSIM) {
        for (ptrdiff_t j = 0; j < n; j++) { FS_AT_SSIM(j); out[j] = val; }
    } else if (form == FS_FORM_CS) {
        for (ptrdiff_t j = 0; j < n; j++) { FS_AT_CS(j); out[j] = val; }
    } else if (form == FS_FORM_L) {
        for (ptrdiff_t j = 0; j < n; j++) { FS_AT_L(j); out[j] = val; }
    } else {
        for (ptrdiff_t j = 0; j < n; j++) { FS_AT_MEAN(j); out[j] = val; }
    }
}

/* Value (as form_value) and the partials weighted by the cotangent w (NULL:
 * unweighted) into fmx, fmy, fdd, fxy.  The gradient combination (combine)
 * applies d/dx E[(x-y)^2] = 2 (x - y). */
static void FN(form_grad)(int form, ptrdiff_t n, const REAL *restrict mx,
                          const REAL *restrict my, const REAL *restrict md,
                          const REAL *restrict mp, REAL C1, REAL C2, REAL cov,
                          REAL sx, REAL sy, const REAL *restrict w,
                          REAL *restrict out, REAL *restrict fmx,
                          REAL *restrict fmy, REAL *restrict fdd,
                          REAL *restrict fxy)
{
    /* the loops are unswitched on w */
#define FS_WJ (w ? w[j] : (REAL)1)
    if (form == FS_FORM_SSIM) {
        for (ptrdiff_t j = 0; j < n; j++) {
            FS_AT_SSIM(j);
            out[j] = val;
            FS_SSIM_PARTIALS(REAL, FS_WJ, cov, fmx[j], fmy[j], fdd[j], fxy[j]);
        }
    } else if (form == FS_FORM_CS) {
        for (ptrdiff_t j = 0; j < n; j++) {
            FS_AT_CS(j);
            out[j] = val;
            FS_CS_PARTIALS(FS_WJ, cov, fmx[j], fmy[j], fdd[j], fxy[j]);
        }
    } else if (form == FS_FORM_L) {
        for (ptrdiff_t j = 0; j < n; j++) {
            FS_AT_L(j);
            out[j] = val;
            FS_L_PARTIALS(FS_WJ, fmx[j], fmy[j]);
            fdd[j] = fxy[j] = 0;
        }
    } else {
        for (ptrdiff_t j = 0; j < n; j++) {
            FS_AT_MEAN(j);
            out[j] = val;
            fmx[j] = FS_WJ;
            fmy[j] = fdd[j] = fxy[j] = 0;
        }
    }
#undef FS_WJ
}

#undef FS_AT_SSIM
#undef FS_AT_CS
#undef FS_AT_L
#undef FS_AT_MEAN

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
            const FN(vec) md = FN(ld)(mm[j][2] + i), mp = FN(ld)(mm[j][3] + i);
            FS_CS(FN(vec), FS_VECTOR, vx, vy, md, mp, C2, cov[j]);
            if (forms[j] == FS_FORM_SSIM) {  /* as form_value */
                FS_L(FN(vec), FS_VECTOR, vx, vy, sx, sy, C1);
                F[j] = FS_SSIM_VALUE(FS_VECTOR);
            } else {
                F[j] = FS_CS_VALUE(FS_VECTOR);
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
            const FN(vec) md = FN(ld)(mm[j][2] + i), mp = FN(ld)(mm[j][3] + i);
            FS_CS(FN(vec), FS_VECTOR, vx, vy, md, mp, C2, cov[j]);
            FN(vec) fmx, fmy, fdd, fxy;
            if (forms[j] == FS_FORM_SSIM) {  /* as form_grad */
                FS_L(FN(vec), FS_VECTOR, vx, vy, sx, sy, C1);
                FS_SSIM_PARTIALS(FN(vec), c, cov[j], fmx, fmy, fdd, fxy);
            } else {
                FS_CS_PARTIALS(c, cov[j], fmx, fmy, fdd, fxy);
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

/* combine for gx (gy: the roles of x and y swapped) from the input lines
 * themselves (REAL samples, channel stride 1): u = x - sx and v = y - sy
 * formed in registers, the same roundings as load_line's and then combine's
 * (a difference is never contracted into the product), so the same bits
 * without the two shifted copies and their reload. */
static inline void FN(combine_in)(ptrdiff_t n, const REAL *restrict am, const REAL *restrict ass,
                                  const REAL *restrict axy, const REAL *restrict x, REAL sx,
                                  const REAL *restrict y, REAL sy, REAL *restrict o)
{
    for (ptrdiff_t t = 0; t < n; t++) {
        const REAL u = x[t] - sx, v = y[t] - sy;
        o[t] = am[t] + 2 * (u - v) * ass[t] + v * axy[t];
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
