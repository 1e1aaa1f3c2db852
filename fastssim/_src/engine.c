/* fastssim filter engine: instantiates the engine body (engine_impl.h, via
 * engine_isa.h) for float and double (and, on x86-64 with GCC, for three
 * instruction sets) with one dispatching entry point each, the per-plane
 * shifts, and build and run-time introspection for fastssim.show_config(). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "engine.h"

/* Runtime SIMD dispatch.  The kernels are compiled once per ISA level with
 * `#pragma GCC target` (so a portable build, without -march=native, still
 * carries AVX-512 and AVX2+FMA code) and the widest one the CPU supports is
 * chosen on first use.  FASTSSIM_SIMD=baseline|avx2|avx512 in the
 * environment caps the choice (for testing the other paths).  Elsewhere
 * (clang, MSVC, non-x86) the build flags alone decide.  FASTSSIM_NO_DISPATCH
 * disables it at build time. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(FASTSSIM_NO_DISPATCH) && (__GNUC__ >= 12)  /* __builtin_cpu_supports("x86-64-v4"): GCC 12 */
#define FS_DISPATCH 1
#else
#define FS_DISPATCH 0
#endif


/* The engine body for float and double, once per ISA level (engine_isa.h). */
#if FS_DISPATCH
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define FS_ISA 4
#include "engine_isa.h"
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define FS_ISA 3
#include "engine_isa.h"
#pragma GCC pop_options
#endif
#define FS_ISA 1
#include "engine_isa.h"


static int fs_level = -1; /* 1 baseline, 3 AVX2+FMA, 4 AVX-512 */

static int fs_pick_level(void)
{
    int level = 1;
#if FS_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) level = 4;
    else if (__builtin_cpu_supports("x86-64-v3")) level = 3;
    const char *cap = getenv("FASTSSIM_SIMD");
    if (cap) {
        if (!strcmp(cap, "baseline")) level = 1;
        else if (!strcmp(cap, "avx2") && level > 3) level = 3;
    }
#endif
    return level;
}

static inline int fs_get_level(void)
{
    if (fs_level < 0) fs_level = fs_pick_level(); /* idempotent: a race is benign */
    return fs_level;
}



/* The scratch layout does not depend on the ISA. */
size_t fs_multi_bytes_f(const fs_job *jobs, int M) { return fs_multi_bytes_f_v1(jobs, M); }
size_t fs_multi_bytes_d(const fs_job *jobs, int M) { return fs_multi_bytes_d_v1(jobs, M); }

/* An entry point that runs the widest kernel the CPU (and FASTSSIM_SIMD)
 * allows: name_v4, name_v3, else name_v1.  params: the parameter list,
 * args: the same names as an argument list. */
#if FS_DISPATCH
#define FS_DISPATCHED(name, params, args)                                \
    void name params                                                     \
    {                                                                    \
        const int level = fs_get_level();                                \
        if (level == 4) name##_v4 args;                                  \
        else if (level == 3) name##_v3 args;                             \
        else name##_v1 args;                                             \
    }
#else
#define FS_DISPATCHED(name, params, args) \
    void name params { name##_v1 args; }
#endif

#define FS_ROWS_PARAMS (const fs_job *jobs, int M, ptrdiff_t plane, int q0, int q1, \
                        int c_lo, int c_hi, int strip, int nstrip, void *scratch)
#define FS_ROWS_ARGS (jobs, M, plane, q0, q1, c_lo, c_hi, strip, nstrip, scratch)
#define FS_DOWN_PARAMS (const fs_down *d0, const fs_down *d1, const fs_down *d2, \
                        const void *in, int in_type, int nci, void *out, int l0, int l1, \
                        void *tmp)
#define FS_DOWN_ARGS (d0, d1, d2, in, in_type, nci, out, l0, l1, tmp)
#define FS_UP_PARAMS (const fs_down *d0, const fs_down *d1, const fs_down *d2, \
                      const void *coarse, void *fine, int nci, double coef, int l0, int l1, \
                      void *tmp)
#define FS_UP_ARGS (d0, d1, d2, coarse, fine, nci, coef, l0, l1, tmp)
FS_DISPATCHED(fs_rows_multi_f, FS_ROWS_PARAMS, FS_ROWS_ARGS)
FS_DISPATCHED(fs_rows_multi_d, FS_ROWS_PARAMS, FS_ROWS_ARGS)
FS_DISPATCHED(fs_down_f, FS_DOWN_PARAMS, FS_DOWN_ARGS)
FS_DISPATCHED(fs_down_d, FS_DOWN_PARAMS, FS_DOWN_ARGS)
FS_DISPATCHED(fs_up_f, FS_UP_PARAMS, FS_UP_ARGS)
FS_DISPATCHED(fs_up_d, FS_UP_PARAMS, FS_UP_ARGS)
/* (MS-SSIM gradient pyramid) */
#define FS_DOWN_IP_PARAMS (const fs_down *d0, const fs_down *d1, const fs_down *d2, void *io, \
                           ptrdiff_t P, ptrdiff_t plane_in, ptrdiff_t plane_out, void *tmp)
#define FS_DOWN_IP_ARGS (d0, d1, d2, io, P, plane_in, plane_out, tmp)
FS_DISPATCHED(fs_down_inplace_f, FS_DOWN_IP_PARAMS, FS_DOWN_IP_ARGS)
FS_DISPATCHED(fs_down_inplace_d, FS_DOWN_IP_PARAMS, FS_DOWN_IP_ARGS)

/* The shift of one plane from its grid's sum, sum of squared deviations and
 * count (see fs_plane_shifts). */
static double fs_shift_of(double mean, double ss, ptrdiff_t cnt)
{
    /* The mean, rounded to a multiple of q = 2^floor(log2(sd)) (sd: the
     * sampled standard deviation): |x - s| stays of the order of the
     * spread of the plane, so E[xy] - mu_x mu_y does not cancel even on
     * images far from 0 (1e5 + U[0, 1]), and s keeps few significant
     * bits, so x - s and its products are exact for integer images and
     * rarely rounded for others: no correlated rounding (a full-precision
     * mean made the float32 box SSIM of 8-bit images biased by 3e-7). */
    const double sd = cnt ? sqrt(ss / (double)cnt) : 0.0;
    double shift = mean;
    if (sd > 0 && isfinite(sd)) {
        int e;
        (void)frexp(sd, &e);
        const double q = ldexp(1.0, e - 1);
        shift = nearbyint(mean / q) * q;
    }
    return shift;
}

/* Planes are summed FS_SHIFT_LANES at a time, one plane per lane of a
 * vector: each plane's sums keep their own sequential order (so the same
 * bits as one plane at a time, and as the plain reference in
 * tests/test_msssim_layout.py), but the lanes are independent chains of
 * additions that run in one vector instruction (one plane's chain is bound
 * by the latency of an addition, and 8 scalar chains by their instruction
 * count: on 32^2 planes, whose grid is every sample, the shifts cost 40 % of
 * an SSIM; callgrind).  A sample that is not finite adds +0 (its lane's sums
 * are never -0, so that is no change) and does not count.  Compiled for the
 * baseline instruction set only (no FMA, and the squares reach the sums
 * through a mask, which no contraction crosses): the same bits on every
 * SIMD path. */
#define FS_SHIFT_LANES 8
/* two lanes a vector: the width of the baseline (SSE2, NEON), on which wider
 * generic vectors lose their masks to scalar code */
typedef double fs_v2d __attribute__((vector_size(2 * sizeof(double))));
typedef long long fs_v2l __attribute__((vector_size(2 * sizeof(long long))));
#define FS_SHIFT_VECS (FS_SHIFT_LANES / 2)

/* All ones in the lanes of v that are finite (x - x is 0 there, NaN for an
 * infinity or a NaN; GCC folds it only under -ffinite-math-only). */
#define FS_FINITE(v) ((v) - (v) == 0)

/* The sampled grid of fs_plane_shifts (every s-th index along each axis, in
 * C order): the statements after i run with i the sample's element offset
 * and, for j < FS_SHIFT_VECS, v the samples there of planes base[2j], base[2j+1]. */
#define FS_GRID_WALK(i, ...)                                                               \
    for (int a = 0; a < n0; a += s0)                                                       \
        for (int b = 0; b < n1; b += s1)                                                   \
            for (int c = 0; c < n2; c += s2) {                                             \
                const ptrdiff_t i = (((ptrdiff_t)a * n1 + b) * n2 + c) * nci;              \
                for (int j = 0; j < FS_SHIFT_VECS; j++) {                                  \
                    const fs_v2d v = {(double)base[2 * j][i], (double)base[2 * j + 1][i]}; \
                    __VA_ARGS__                                                            \
                }                                                                          \
            }

/* A square that no contraction can fuse into the sum it is added to (the
 * unmasked pass below; engine.c is compiled with -ffp-contract=fast, and
 * FASTSSIM_NATIVE=1 builds have FMA): an empty asm the value passes through.
 * Where no such barrier is known, every group takes the masked passes. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FS_SHIFT_FAST 1
#define FS_OPAQUE(v) __asm__("" : "+x"(v))
#elif defined(__GNUC__) && defined(__aarch64__)
#define FS_SHIFT_FAST 1
#define FS_OPAQUE(v) __asm__("" : "+w"(v))
#else
#define FS_SHIFT_FAST 0
#define FS_OPAQUE(v) ((void)0)
#endif

/* A group of planes is first summed without masks, with a check lane that
 * stays 0 while every sample is finite (v - v is NaN otherwise, and NaN
 * sticks): then the masks would have kept every sample, so the unmasked sums
 * are the masked ones bit for bit (v & ~0 = v), the count is the grid's, and
 * the second pass needs no masks either (half the instructions of a 32^2
 * plane's shifts; callgrind).  A group with a non-finite sample is summed
 * again with the masks. */
/* FS_GRID_WALK for float planes whose grid takes whole rows (s2 = 1, one
 * channel): four samples of a row at once, two planes' runs interleaved by
 * two shuffles and widened in pairs, instead of a scalar load and an insert
 * per sample and plane (the gather was half of a 32^2 plane's shift
 * instructions; callgrind).  Each lane still adds its plane's samples in
 * order (c, c+1, c+2, c+3): the same bits. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define FS_ROWS_WALK 1
#define FS_GRID_WALK_ROWS(fbase, ...)                                                      \
    for (int a = 0; a < n0; a += s0)                                                       \
        for (int b = 0; b < n1; b += s1) {                                                 \
            const ptrdiff_t row = ((ptrdiff_t)a * n1 + b) * n2;                            \
            int c = 0;                                                                     \
            for (; c + 4 <= n2; c += 4)                                                    \
                for (int j = 0; j < FS_SHIFT_VECS; j++) {                                  \
                    const __m128 A = _mm_loadu_ps(fbase[2 * j] + row + c);                 \
                    const __m128 B = _mm_loadu_ps(fbase[2 * j + 1] + row + c);             \
                    const __m128 lo = _mm_unpacklo_ps(A, B), hi = _mm_unpackhi_ps(A, B);   \
                    const fs_v2d w4[4] = {(fs_v2d)_mm_cvtps_pd(lo),                        \
                                          (fs_v2d)_mm_cvtps_pd(_mm_movehl_ps(lo, lo)),     \
                                          (fs_v2d)_mm_cvtps_pd(hi),                        \
                                          (fs_v2d)_mm_cvtps_pd(_mm_movehl_ps(hi, hi))};    \
                    for (int t = 0; t < 4; t++) {                                          \
                        const fs_v2d v = w4[t];                                            \
                        __VA_ARGS__                                                        \
                    }                                                                      \
                }                                                                          \
            for (; c < n2; c++)                                                            \
                for (int j = 0; j < FS_SHIFT_VECS; j++) {                                  \
                    const fs_v2d v = {(double)fbase[2 * j][row + c],                       \
                                      (double)fbase[2 * j + 1][row + c]};                  \
                    __VA_ARGS__                                                            \
                }                                                                          \
        }
#else
#define FS_ROWS_WALK 0
#define FS_GRID_WALK_ROWS(fbase, ...) FS_GRID_WALK(i, __VA_ARGS__)
#endif

/* The unmasked walk of a group: the shuffled rows when the grid takes whole
 * rows of float planes (rows, fb: set in FS_SHIFTS_OF), else the strided one. */
#define FS_FAST_WALK(...)                                                                  \
    if (rows) {                                                                            \
        FS_GRID_WALK_ROWS(fb, __VA_ARGS__)                                                 \
    } else {                                                                               \
        FS_GRID_WALK(i, __VA_ARGS__)                                                       \
    }

#define FS_SHIFTS_OF(T)                                                                    \
    static void fs_shifts_##T(const T *x, int nci, ptrdiff_t plane_in, ptrdiff_t P, int n0,  \
                              int n1, int n2, double *out)                                 \
    {                                                                                      \
        const int s0 = n0 / 32 > 1 ? n0 / 32 : 1, s1 = n1 / 32 > 1 ? n1 / 32 : 1;         \
        const int s2 = n2 / 32 > 1 ? n2 / 32 : 1;                                          \
        const long long ngrid = (long long)((n0 + s0 - 1) / s0) * ((n1 + s1 - 1) / s1)      \
                                * ((n2 + s2 - 1) / s2);                                    \
        for (ptrdiff_t p0 = 0; p0 < P; p0 += FS_SHIFT_LANES) {                             \
            const T *base[FS_SHIFT_LANES];                                                 \
            for (int k = 0; k < FS_SHIFT_LANES; k++) {                                     \
                /* lanes past the last plane repeat it (their results are dropped) */    \
                const ptrdiff_t p = p0 + k < P ? p0 + k : P - 1;                           \
                base[k] = x + (p / nci) * plane_in + p % nci;                              \
            }                                                                              \
            fs_v2d sum[FS_SHIFT_VECS] = {{0}}, ss[FS_SHIFT_VECS] = {{0}};                  \
            fs_v2d mean[FS_SHIFT_VECS];                                                    \
            fs_v2l cnt[FS_SHIFT_VECS] = {{0}};                                             \
            int fast = FS_SHIFT_FAST;                                                      \
            /* float planes with whole grid rows: the shuffled walk */                    \
            const int rows = FS_ROWS_WALK && _Generic((T)0, float: 1, default: 0) && s2 == 1 && nci == 1;  \
            const float *fb[FS_SHIFT_LANES];                                               \
            for (int k = 0; k < FS_SHIFT_LANES; k++) fb[k] = (const float *)base[k];       \
            if (fast) {                                                                    \
                fs_v2d chk[FS_SHIFT_VECS] = {{0}};                                         \
                FS_FAST_WALK({                                                             \
                    sum[j] += v;                                                           \
                    chk[j] += v - v;                                                       \
                })                                                                         \
                for (int j = 0; j < FS_SHIFT_VECS; j++)                                    \
                    for (int e = 0; e < 2; e++) {                                          \
                        fast &= chk[j][e] == 0;                                            \
                        cnt[j][e] = ngrid;                                                 \
                    }                                                                      \
            }                                                                              \
            if (!fast) {                                                                   \
                for (int j = 0; j < FS_SHIFT_VECS; j++) {                                  \
                    sum[j] = (fs_v2d){0};                                                  \
                    cnt[j] = (fs_v2l){0};                                                  \
                }                                                                          \
                FS_GRID_WALK(i, {                                                          \
                    const fs_v2l fin = FS_FINITE(v);                                       \
                    sum[j] += (fs_v2d)((fs_v2l)v & fin);                                   \
                    cnt[j] -= fin;                                                         \
                })                                                                         \
            }                                                                              \
            for (int j = 0; j < FS_SHIFT_VECS; j++)                                        \
                for (int e = 0; e < 2; e++)                                                \
                    mean[j][e] = cnt[j][e] ? sum[j][e] / (double)cnt[j][e] : 0.0;          \
            if (fast) {                                                                    \
                FS_FAST_WALK({                                                             \
                    const fs_v2d d = v - mean[j];                                          \
                    fs_v2d sq = d * d;                                                     \
                    FS_OPAQUE(sq);                                                         \
                    ss[j] += sq;                                                           \
                })                                                                         \
            } else {                                                                       \
                FS_GRID_WALK(i, {                                                          \
                    const fs_v2d d = v - mean[j], sq = d * d;                              \
                    ss[j] += (fs_v2d)((fs_v2l)sq & FS_FINITE(v));                          \
                })                                                                         \
            }                                                                              \
            for (int k = 0; k < FS_SHIFT_LANES && p0 + k < P; k++)                         \
                out[p0 + k] = fs_shift_of(mean[k / 2][k % 2], ss[k / 2][k % 2],            \
                                          cnt[k / 2][k % 2]);                              \
        }                                                                                  \
    }

typedef unsigned char fs_u8;
typedef unsigned short fs_u16;
typedef signed char fs_i8;
FS_SHIFTS_OF(fs_u8)
FS_SHIFTS_OF(fs_u16)
FS_SHIFTS_OF(fs_i8)
FS_SHIFTS_OF(short)
FS_SHIFTS_OF(float)
FS_SHIFTS_OF(double)
#undef FS_SHIFTS_OF
#undef FS_GRID_WALK
#undef FS_GRID_WALK_ROWS
#undef FS_FAST_WALK
#undef FS_ROWS_WALK
#undef FS_SHIFT_FAST
#undef FS_OPAQUE

void fs_plane_shifts(const void *x, int in_type, int is_double, int nci, ptrdiff_t plane_in,
                     ptrdiff_t P, int n0, int n1, int n2, double *out)
{
    if (P <= 0) return;
    switch (in_type) {
    case FS_IN_U8: fs_shifts_fs_u8(x, nci, plane_in, P, n0, n1, n2, out); break;
    case FS_IN_U16: fs_shifts_fs_u16(x, nci, plane_in, P, n0, n1, n2, out); break;
    case FS_IN_I8: fs_shifts_fs_i8(x, nci, plane_in, P, n0, n1, n2, out); break;
    case FS_IN_I16: fs_shifts_short(x, nci, plane_in, P, n0, n1, n2, out); break;
    case FS_IN_F32: fs_shifts_float(x, nci, plane_in, P, n0, n1, n2, out); break;
    default:
        if (is_double) fs_shifts_double(x, nci, plane_in, P, n0, n1, n2, out);
        else fs_shifts_float(x, nci, plane_in, P, n0, n1, n2, out);
        break;
    }
}

int fs_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fs_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *fs_simd_path(void)
{
#if FS_DISPATCH
    switch (fs_get_level()) {
    case 4: return "x86-64-v4 (AVX-512), runtime dispatch";
    case 3: return "x86-64-v3 (AVX2+FMA), runtime dispatch";
    default: return "x86-64 baseline (SSE2), runtime dispatch";
    }
#elif defined(__AVX512F__)
    return "AVX-512 (compile-time)";
#elif defined(__AVX2__)
    return "AVX2 (compile-time)";
#elif defined(__x86_64__)
    return "x86-64 baseline (SSE2, compile-time)";
#elif defined(__aarch64__)
    return "aarch64 NEON (compile-time)";
#else
    return "generic (compile-time)";
#endif
}
