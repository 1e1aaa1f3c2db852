"""CUDA source of the GPU backend and its specialisations (no CuPy import here).

The kernels mirror the CPU engine (``fastssim/_src/engine_impl.h``) term for
term, so that float64 results agree with it to rounding:

* the moments are of the shifted samples u = x - s_x, v = y - s_y (per-plane
  shifts computed exactly as ``fs_plane_shifts``), the four moment sources
  being u, v, (u - v)^2 and u v;
* the 1-D window operators are the CPU engine's *bands* (``fastssim/_bands.py``):
  output i reads input i + off - r + k, k = 0..2r, with the symmetric taps in
  the interior [lo, hi) and one table row per border output (zero-weight taps
  skipped, as the CPU does), so 'reflect' (scipy 'reflect' = MATLAB
  'symmetric') and 'valid' maps, and the adjoints, are nothing but tables;
* the formula is eq. 1 in difference form (FS_L_TERMS / FS_CS_TERMS of the
  engine: D >= 0 clamps, B == 0 read as 1, the 1 - D/B near 1 pick, the
  clamp at -1), and the gradient maps are FS_L_PARTIALS / FS_CS_PARTIALS;
* the gradient is eq. 10 in VJP form:
  dL/dx = G^T(w F_mux) + 2 (u - v) G^T(w F_dd) + v G^T(w F_xy).

Kernels (one module per specialisation: compute type, input element type,
radius, tile height):

``fs_fwd``
    one block = a tile of FS_TX x FS_OTY outputs of one plane.  Both inputs'
    tile (with the 2r halo) is loaded into shared memory (converted and
    shifted), the along-row band pass writes the four filtered sources into
    shared memory, the along-column pass forms the moments, the formula gives
    the map value, and the block's sum of values over the sum region is
    reduced in a fixed tree order (double) into one partial per block: no
    floating-point atomics, so results are bitwise reproducible.  In gradient
    mode it also writes the four cotangent-weighted partial-derivative maps.
``fs_adj``
    the gradient: the adjoint bands applied to the partial maps (the same
    two-pass structure), combined with the samples by eq. 10.
``fs_prod``
    the per-pixel MS-SSIM: the product of several windows' maps, its sums,
    and each window's cotangent (the product of the other factors).
``fs_down``, ``fs_up``, ``fs_combine``
    the MS-SSIM pyramid: one level's 2x downsampling (the tables of
    fastssim/_pyramid.py), its adjoint added into the finer level's gradient,
    and the combination of the per-scale means (negative policy, weights)
    with its derivatives.
``fs_reduce``
    one block per plane: the per-block partials, summed in a fixed order.
``fs_shifts``
    one block per plane and input: the per-plane shift, the CPU engine's rule
    (a sparse-grid mean rounded to a multiple of 2^floor(log2(sd))).
"""

from __future__ import annotations

__all__ = ["SOURCE", "KERNELS", "ELEMENT", "REAL", "options", "tile_rows", "smem_bytes",
           "specialisations", "FS_TX", "FS_TY", "MAX_SMEM"]

FS_TX = 32          # output columns per block (one warp wide)
FS_TY = 8           # thread rows per block
MAX_SMEM = 227 * 1024  # opt-in dynamic shared memory of sm_80 .. sm_90 (sm_80: 163 KiB)
KERNELS = ("fs_fwd", "fs_adj", "fs_fwd0", "fs_adj0", "fs_prod", "fs_down", "fs_up", "fs_combine", "fs_reduce",
           "fs_shifts")

# compute type -> C type
REAL = {"float32": "float", "float64": "double"}
# input element types the kernels read and convert themselves (the CPU
# engine's FS_IN_* set, and float16, which the CPU converts to float32
# planes first), per compute type
ELEMENT = {
    "float32": {"float32": "float", "uint8": "unsigned char", "uint16": "unsigned short",
                "int8": "signed char", "int16": "short", "float16": "unsigned short"},
    "float64": {"float64": "double", "float32": "float", "uint8": "unsigned char",
                "uint16": "unsigned short", "int8": "signed char", "int16": "short",
                "float16": "unsigned short"},
}

SOURCE = r"""
// fastssim GPU kernels (see fastssim/_cupy/_source.py for the contract).
// Compile-time parameters: FS_REAL, FS_XT, FS_R, FS_TX, FS_TY, FS_OTY.
typedef FS_REAL REAL;
typedef FS_XT XT;
#define FS_W (2 * FS_R + 1)
#define FS_IH (FS_OTY + 2 * FS_R)
#define FS_IW (FS_TX + 2 * FS_R)
#define FS_NT (FS_TX * FS_TY)

enum { FS_FORM_SSIM = 0, FS_FORM_CS = 1, FS_FORM_L = 2, FS_FORM_MEAN = 3 };

// float16 inputs (FS_HALF) are read as their 16 bits and converted exactly in
// the kernel (NVRTC has no cuda_fp16.h without the toolkit's headers).
#ifdef FS_HALF
#ifdef __CUDA_ARCH__
__device__ __forceinline__ float fs_h2f(unsigned short h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
#else  /* the CPU emulator of the tests (GCC's _Float16) */
inline float fs_h2f(unsigned short h)
{
    _Float16 v;
    __builtin_memcpy(&v, &h, 2);
    return (float)v;
}
#endif
#define FS_CVT(v) fs_h2f(v)
#else
#define FS_CVT(v) (v)
#endif

// as s_pos / s_nz / s_gem1 / s_pick of engine_impl.h (NaN propagates)
__device__ __forceinline__ REAL fs_pos(REAL v) { return v < 0 ? (REAL)0 : v; }
__device__ __forceinline__ REAL fs_nz(REAL v) { return v == 0 ? (REAL)1 : v; }
__device__ __forceinline__ REAL fs_gem1(REAL v) { return v < -1 ? (REAL)-1 : v; }
__device__ __forceinline__ REAL fs_pick(REAL q, REAL A, REAL iB)
{
    const REAL near1 = (1 - q) + 0 * A, far = A * iB;
    return q < (REAL)0.5 ? near1 : far;
}

// eq. 1 in difference form: FS_L_TERMS / FS_CS_TERMS of engine_impl.h
#define FS_L_TERMS(vx, vy, sx, sy, C1)                                       \
    const REAL ux = (vx) + (sx), uy = (vy) + (sy);                           \
    const REAL du = ((vx) - (vy)) + ((sx) - (sy));                           \
    const REAL A1 = 2 * (ux * uy) + (C1), D1 = du * du;                      \
    const REAL B1 = fs_nz(A1 + D1)
#define FS_CS_TERMS(vx, vy, md, mp, C2, cov)                                 \
    const REAL dv = (vx) - (vy);                                             \
    const REAL A2 = 2 * ((cov) * ((mp) - (vx) * (vy))) + (C2);               \
    const REAL D2 = (cov) * fs_pos((md) - dv * dv);                          \
    const REAL B2 = fs_nz(A2 + D2)
// eqs. 8-9: FS_L_PARTIALS / FS_CS_PARTIALS of engine_impl.h
#define FS_L_PARTIALS(wl, iB1, l, fmx, fmy)                                  \
    do {                                                                     \
        fmx = 2 * (wl) * (iB1) * (uy - ux * (l));                            \
        fmy = 2 * (wl) * (iB1) * (ux - uy * (l));                            \
    } while (0)
#define FS_CS_PARTIALS(wc, iB2, cs, cov, fmx, fmy, fdd, fxy)                  \
    do {                                                                     \
        const REAL cw_ = (wc) * (cov) * (iB2);                               \
        fmx = 2 * cw_ * (vx * (cs) - vy);                                    \
        fmy = 2 * cw_ * (vy * (cs) - vx);                                    \
        fdd = -cw_ * (cs);                                                   \
        fxy = 2 * cw_ * (1 - (cs));                                          \
    } while (0)

// The value of the form (form_value of engine_impl.h).
__device__ __forceinline__ REAL fs_value(int form, REAL vx, REAL vy, REAL md, REAL mp,
                                         REAL C1, REAL C2, REAL cov, REAL sx, REAL sy)
{
    if (form == FS_FORM_SSIM) {
        FS_L_TERMS(vx, vy, sx, sy, C1);
        FS_CS_TERMS(vx, vy, md, mp, C2, cov);
        const REAL iB1 = 1 / B1, iB2 = 1 / B2;
        return fs_gem1(fs_pick(D1 * iB1, A1, iB1)) * fs_gem1(fs_pick(D2 * iB2, A2, iB2));
    } else if (form == FS_FORM_CS) {
        FS_CS_TERMS(vx, vy, md, mp, C2, cov);
        const REAL iB2 = 1 / B2;
        return fs_gem1(fs_pick(D2 * iB2, A2, iB2));
    } else if (form == FS_FORM_L) {
        FS_L_TERMS(vx, vy, sx, sy, C1);
        const REAL iB1 = 1 / B1;
        return fs_gem1(fs_pick(D1 * iB1, A1, iB1));
    }
    return vx + sx;
}

// Value and the w-weighted partials by (mu_x, mu_y, E[(x-y)^2], E[xy])
// (form_grad of engine_impl.h).
__device__ __forceinline__ REAL fs_grad(int form, REAL vx, REAL vy, REAL md, REAL mp,
                                        REAL C1, REAL C2, REAL cov, REAL sx, REAL sy,
                                        REAL wj, REAL *f)
{
    if (form == FS_FORM_SSIM) {
        FS_L_TERMS(vx, vy, sx, sy, C1);
        FS_CS_TERMS(vx, vy, md, mp, C2, cov);
        const REAL iB1 = 1 / B1, iB2 = 1 / B2;
        const REAL l = fs_pick(D1 * iB1, A1, iB1), cs = fs_pick(D2 * iB2, A2, iB2);
        REAL ax, ay, bx, by, bd, bp;
        FS_L_PARTIALS(wj * cs, iB1, l, ax, ay);
        FS_CS_PARTIALS(wj * l, iB2, cs, cov, bx, by, bd, bp);
        f[0] = ax + bx; f[1] = ay + by; f[2] = bd; f[3] = bp;
        return fs_gem1(l) * fs_gem1(cs);
    } else if (form == FS_FORM_CS) {
        FS_CS_TERMS(vx, vy, md, mp, C2, cov);
        const REAL iB2 = 1 / B2, cs = fs_pick(D2 * iB2, A2, iB2);
        FS_CS_PARTIALS(wj, iB2, cs, cov, f[0], f[1], f[2], f[3]);
        return fs_gem1(cs);
    } else if (form == FS_FORM_MEAN) {
        f[0] = wj; f[1] = 0; f[2] = 0; f[3] = 0;
        return vx + sx;
    }
    FS_L_TERMS(vx, vy, sx, sy, C1);
    const REAL iB1 = 1 / B1, l = fs_pick(D1 * iB1, A1, iB1);
    FS_L_PARTIALS(wj, iB1, l, f[0], f[1]);
    f[2] = 0; f[3] = 0;
    return fs_gem1(l);
}

// One 1-D band (fastssim/_bands.py): output i reads input i + off - r + k.
struct fs_bandp {
    int n_in, n_out, off, lo, hi;
    const REAL *tlo, *thi;  // (lo, 2r+1) and (n_out - hi, 2r+1) border rows
};

// Weight k of output i; interior rows use the taps g (shared memory).
__device__ __forceinline__ REAL fs_bw(const fs_bandp &b, const REAL *g, int i, int k)
{
    if (i >= b.lo && i < b.hi) return g[k];
    if (i < b.lo) return b.tlo[(long long)i * FS_W + k];
    return b.thi[(long long)(i - b.hi) * FS_W + k];
}

// Offset of element (i, j) of plane p: item p / nci, channel p % nci, rows
// of ncol samples nci elements apart.
__device__ __forceinline__ long long fs_at(int p, int nci, long long plane, int i, int j, int ncol)
{
    return (long long)(p / nci) * plane + p % nci + ((long long)i * ncol + j) * nci;
}

// Fixed-order block reduction of one double per thread (tree over FS_NT).
__device__ __forceinline__ double fs_block_sum(double v, double *red)
{
    const int t = threadIdx.y * FS_TX + threadIdx.x;
    __syncthreads();  // a previous call's readers of red[0] are done
    red[t] = v;
    __syncthreads();
    for (int s = FS_NT / 2; s > 0; s >>= 1) {
        if (t < s) red[t] = red[t] + red[t + s];
        __syncthreads();
    }
    return red[0];
}

extern "C" __global__ void __launch_bounds__(FS_NT)
fs_fwd(const XT *__restrict__ x, const XT *__restrict__ y,
       const double *__restrict__ shx, const double *__restrict__ shy,
       int n0, int n2, int o0, int o2, int nci, long long plane_in, long long plane_out,
       int off0, int lo0, int hi0, const REAL *tlo0, const REAL *thi0,
       int off2, int lo2, int hi2, const REAL *tlo2, const REAL *thi2,
       const REAL *__restrict__ taps, int form, REAL C1, REAL C2, REAL cov,
       int s0a, int s0b, int s2a, int s2b,
       REAL *__restrict__ map, const REAL *__restrict__ wmap, REAL wscal,
       const double *__restrict__ wplane, REAL *__restrict__ pm, double *__restrict__ part,
       int ns, REAL *__restrict__ hout)
{
    // Volumes (ns > 1): blockIdx.z is a slice-plane (item, slice, channel,
    // as the input's layout orders them: slice (z / nci) % ns of plane pl);
    // with hout the kernel stops at the moments of the slice (axes 1, 2),
    // written plane-major to hout[4][P ns][o0][o2], and fs_fwd0 does axis 0
    // and the formula.
    extern __shared__ double fs_smem[];
    double *red = fs_smem;                           // FS_NT
    REAL *tx_ = (REAL *)(fs_smem + FS_NT);           // FS_IH x FS_IW, shifted x
    REAL *ty_ = tx_ + FS_IH * FS_IW;                 // shifted y
    REAL *hs = ty_ + FS_IH * FS_IW;                  // 4 x FS_IH x FS_TX filtered sources
    REAL *g = hs + 4 * FS_IH * FS_TX;                // FS_W taps
    const fs_bandp b0 = {n0, o0, off0, lo0, hi0, tlo0, thi0};
    const fs_bandp b2 = {n2, o2, off2, lo2, hi2, tlo2, thi2};
    const int p = blockIdx.z, tid = threadIdx.y * FS_TX + threadIdx.x;
    const int pl = ((p / nci) / ns) * nci + p % nci;  // the plane (for its shifts)
    const int i0 = blockIdx.y * FS_OTY, j0 = blockIdx.x * FS_TX;
    const REAL sx = (REAL)shx[pl], sy = (REAL)shy[pl];
    for (int k = tid; k < FS_W; k += FS_NT) g[k] = taps[k];
    // the tile of both inputs with its halo, converted and shifted (zeros
    // where no input exists: the band weights there are zero too)
    const int q0 = i0 + off0 - FS_R, c0 = j0 + off2 - FS_R;
    for (int e = tid; e < FS_IH * FS_IW; e += FS_NT) {
        const int a = e / FS_IW, b = e % FS_IW, qi = q0 + a, qj = c0 + b;
        REAL u = 0, v = 0;
        if (qi >= 0 && qi < n0 && qj >= 0 && qj < n2) {
            const long long o = fs_at(p, nci, plane_in, qi, qj, n2);
            u = (REAL)FS_CVT(x[o]) - sx;
            v = (REAL)FS_CVT(y[o]) - sy;
        }
        tx_[e] = u;
        ty_[e] = v;
    }
    __syncthreads();
    // along-row pass: the four sources u, v, (u - v)^2, u v, filtered
    const int j = j0 + threadIdx.x;
    for (int a = threadIdx.y; a < FS_IH; a += FS_TY) {
        REAL m0 = 0, m1 = 0, m2 = 0, m3 = 0;
        if (j < o2) {
            const REAL *ru = tx_ + a * FS_IW + threadIdx.x, *rv = ty_ + a * FS_IW + threadIdx.x;
            const bool inner = j >= b2.lo && j < b2.hi;
            for (int k = 0; k < FS_W; k++) {
                const REAL w = inner ? g[k] : fs_bw(b2, g, j, k);
                if (!inner && w == 0) continue;
                const REAL u = ru[k], v = rv[k];
                m0 += u * w;
                m1 += v * w;
                m2 += ((u - v) * (u - v)) * w;
                m3 += (u * v) * w;
            }
        }
        hs[(0 * FS_IH + a) * FS_TX + threadIdx.x] = m0;
        hs[(1 * FS_IH + a) * FS_TX + threadIdx.x] = m1;
        hs[(2 * FS_IH + a) * FS_TX + threadIdx.x] = m2;
        hs[(3 * FS_IH + a) * FS_TX + threadIdx.x] = m3;
    }
    __syncthreads();
    // along-column pass, the formula, the map, the partial maps, the sum
    double acc = 0;
    const long long plane_map = (long long)o0 * o2;
    for (int oy = threadIdx.y; oy < FS_OTY; oy += FS_TY) {
        const int i = i0 + oy;
        if (i >= o0 || j >= o2) continue;
        REAL mo[4] = {0, 0, 0, 0};
        const bool inner = i >= b0.lo && i < b0.hi;
        for (int k = 0; k < FS_W; k++) {
            const REAL w = inner ? g[k] : fs_bw(b0, g, i, k);
            if (!inner && w == 0) continue;
            for (int c = 0; c < 4; c++) mo[c] += hs[(c * FS_IH + oy + k) * FS_TX + threadIdx.x] * w;
        }
        if (hout) {  // plane-major: slice (p / nci) % ns of plane pl
            const long long h = (long long)pl * ns + (p / nci) % ns;
            const long long o = h * plane_map + (long long)i * o2 + j;
            for (int c = 0; c < 4; c++) hout[c * (long long)gridDim.z * plane_map + o] = mo[c];
            continue;
        }
        const bool insum = i >= s0a && i < s0b && j >= s2a && j < s2b;
        REAL val;
        if (pm) {
            const long long om = fs_at(p, nci, plane_out, i, j, o2);
            // the cotangent: a map, or on the sum region a scalar (per plane:
            // an MS-SSIM scale's d value / d mean)
            const REAL wj = wmap ? wmap[om]
                                 : (insum ? (wplane ? (REAL)wplane[p] : wscal) : (REAL)0);
            REAL f[4];
            val = fs_grad(form, mo[0], mo[1], mo[2], mo[3], C1, C2, cov, sx, sy, wj, f);
            const long long o = (long long)p * plane_map + (long long)i * o2 + j;
            const long long P = gridDim.z;
            for (int c = 0; c < 4; c++) pm[c * P * plane_map + o] = f[c];
        } else {
            val = fs_value(form, mo[0], mo[1], mo[2], mo[3], C1, C2, cov, sx, sy);
        }
        if (map) map[fs_at(p, nci, plane_out, i, j, o2)] = val;
        if (insum) acc += (double)val;
    }
    const double s = fs_block_sum(acc, red);
    if (tid == 0 && part) part[((long long)p * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x] = s;
}

// Volumes, second pass: axis 0 (band b0 over the slices' moments H
// [4][P n0][L], L = o1 o2 per slice), the formula, the map, the partial maps
// and per-block sums, as the end of fs_fwd.  Block: FS_NT outputs of one
// output slice i0 of plane p.
extern "C" __global__ void __launch_bounds__(FS_NT)
fs_fwd0(const REAL *__restrict__ H, const double *__restrict__ shx, const double *__restrict__ shy,
        int n0, int o0, long long L, int o2, int nci, long long plane_out,
        int off0, int lo0, int hi0, const REAL *tlo0, const REAL *thi0,
        const REAL *__restrict__ taps, int form, REAL C1, REAL C2, REAL cov,
        int s0a, int s0b, int s1a, int s1b, int s2a, int s2b,
        REAL *__restrict__ map, const REAL *__restrict__ wmap, REAL wscal,
        const double *__restrict__ wplane, REAL *__restrict__ pm, double *__restrict__ part)
{
    extern __shared__ double fs_smem[];
    double *red = fs_smem;
    REAL *g = (REAL *)(fs_smem + FS_NT);
    const fs_bandp b0 = {n0, o0, off0, lo0, hi0, tlo0, thi0};
    const int p = blockIdx.z, i = blockIdx.y, tid = threadIdx.y * FS_TX + threadIdx.x;
    const long long e = (long long)blockIdx.x * FS_NT + tid;
    const long long PP = (long long)gridDim.z * n0;
    for (int k = tid; k < FS_W; k += FS_NT) g[k] = taps[k];
    __syncthreads();
    double acc = 0;
    if (e < L) {
        REAL mo[4] = {0, 0, 0, 0};
        const bool inner = i >= b0.lo && i < b0.hi;
        for (int k = 0; k < FS_W; k++) {
            const int q = i + off0 - FS_R + k;
            if (q < 0 || q >= n0) continue;
            const REAL w = inner ? g[k] : fs_bw(b0, g, i, k);
            if (!inner && w == 0) continue;
            const long long h = ((long long)p * n0 + q) * L + e;
            for (int c = 0; c < 4; c++) mo[c] += H[c * PP * L + h] * w;
        }
        const REAL sx = (REAL)shx[p], sy = (REAL)shy[p];
        const int i1 = (int)(e / o2), i2 = (int)(e % o2);
        const bool insum = i >= s0a && i < s0b && i1 >= s1a && i1 < s1b && i2 >= s2a && i2 < s2b;
        const long long om = (long long)(p / nci) * plane_out + p % nci + ((long long)i * L + e) * nci;
        REAL val;
        if (pm) {
            const REAL wj = wmap ? wmap[om]
                                 : (insum ? (wplane ? (REAL)wplane[p] : wscal) : (REAL)0);
            REAL f[4];
            val = fs_grad(form, mo[0], mo[1], mo[2], mo[3], C1, C2, cov, sx, sy, wj, f);
            const long long o = ((long long)p * o0 + i) * L + e;
            for (int c = 0; c < 4; c++) pm[c * (long long)gridDim.z * o0 * L + o] = f[c];
        } else {
            val = fs_value(form, mo[0], mo[1], mo[2], mo[3], C1, C2, cov, sx, sy);
        }
        if (map) map[om] = val;
        if (insum) acc = (double)val;
    }
    const double s = fs_block_sum(acc, red);
    if (tid == 0) part[((long long)p * gridDim.y + i) * gridDim.x + blockIdx.x] = s;
}

// Volumes, the gradient's last pass: axis 0's adjoint band over T
// ([4][P o0][L], the partial maps after the adjoints of axes 1 and 2, L = n1
// n2), combined with the samples (eq. 10) as fs_adj.
extern "C" __global__ void __launch_bounds__(FS_NT)
fs_adj0(const XT *__restrict__ x, const XT *__restrict__ y,
        const double *__restrict__ shx, const double *__restrict__ shy,
        const REAL *__restrict__ T, int n0, int o0, long long L, int nci, long long plane_in,
        int off0, int lo0, int hi0, const REAL *tlo0, const REAL *thi0,
        const REAL *__restrict__ taps, int form, int grad,
        REAL *__restrict__ gx, REAL *__restrict__ gy, int acc)
{
    extern __shared__ double fs_smem[];
    REAL *g = (REAL *)fs_smem;
    const fs_bandp b0 = {o0, n0, off0, lo0, hi0, tlo0, thi0};
    const int p = blockIdx.z, i = blockIdx.y, tid = threadIdx.y * FS_TX + threadIdx.x;
    const long long e = (long long)blockIdx.x * FS_NT + tid;
    const long long PO = (long long)gridDim.z * o0;
    const int nsrc = form == FS_FORM_MEAN ? 1 : 4;
    for (int k = tid; k < FS_W; k += FS_NT) g[k] = taps[k];
    __syncthreads();
    if (e >= L) return;
    REAL A[4] = {0, 0, 0, 0};
    const bool inner = i >= b0.lo && i < b0.hi;
    for (int k = 0; k < FS_W; k++) {
        const int q = i + off0 - FS_R + k;
        if (q < 0 || q >= o0) continue;
        const REAL w = inner ? g[k] : fs_bw(b0, g, i, k);
        if (!inner && w == 0) continue;
        const long long t = ((long long)p * o0 + q) * L + e;
        for (int c = 0; c < nsrc; c++) A[c] += T[c * PO * L + t] * w;
    }
    const long long o = (long long)(p / nci) * plane_in + p % nci + ((long long)i * L + e) * nci;
    REAL vx, vy;
    if (form == FS_FORM_MEAN) {
        vx = A[0];
        vy = 0;
    } else {
        const REAL sx = (REAL)shx[p], sy = (REAL)shy[p];
        const REAL u = (REAL)FS_CVT(x[o]) - sx, v = (REAL)FS_CVT(y[o]) - sy;
        vx = A[0] + 2 * (u - v) * A[2] + v * A[3];
        vy = A[1] + 2 * (v - u) * A[2] + u * A[3];
    }
    if (grad & 1) gx[o] = acc ? gx[o] + vx : vx;
    if (grad & 2) gy[o] = acc ? gy[o] + vy : vy;
}

// The gradient (eq. 10, VJP form): the adjoint bands a0, a2 (map -> input
// grid) applied to the partial maps pm, then combined with the samples.
extern "C" __global__ void __launch_bounds__(FS_NT)
fs_adj(const XT *__restrict__ x, const XT *__restrict__ y,
       const double *__restrict__ shx, const double *__restrict__ shy,
       int n0, int n2, int o0, int o2, int nci, long long plane_in,
       int off0, int lo0, int hi0, const REAL *tlo0, const REAL *thi0,
       int off2, int lo2, int hi2, const REAL *tlo2, const REAL *thi2,
       const REAL *__restrict__ taps, int form, const REAL *__restrict__ pm, int grad,
       REAL *__restrict__ gx, REAL *__restrict__ gy, int acc, int ns, REAL *__restrict__ tout)
{
    // Volumes: called with nci = 1 on the plane-major map slices of pm
    // ([4][P ns][o0][o2]); with tout the adjoints of axes 1, 2 are written to
    // tout[4][P ns][n0][n2] (x and y unread) and fs_adj0 does axis 0 and the
    // combination.
    extern __shared__ double fs_smem[];
    REAL *hs = (REAL *)fs_smem;            // 4 x FS_IH x FS_TX
    REAL *g = hs + 4 * FS_IH * FS_TX;      // FS_W taps
    // adjoint bands: outputs are input-grid samples (n0 x n2), inputs map samples
    const fs_bandp b0 = {o0, n0, off0, lo0, hi0, tlo0, thi0};
    const fs_bandp b2 = {o2, n2, off2, lo2, hi2, tlo2, thi2};
    const int p = blockIdx.z, tid = threadIdx.y * FS_TX + threadIdx.x;
    const int i0 = blockIdx.y * FS_OTY, j0 = blockIdx.x * FS_TX;
    const long long P = gridDim.z, plane_map = (long long)o0 * o2;
    const int nsrc = form == FS_FORM_MEAN ? 1 : 4;
    for (int k = tid; k < FS_W; k += FS_NT) g[k] = taps[k];
    __syncthreads();
    const int j = j0 + threadIdx.x, q0 = i0 + off0 - FS_R;
    for (int a = threadIdx.y; a < FS_IH; a += FS_TY) {
        const int mi = q0 + a;  // map row
        REAL m[4] = {0, 0, 0, 0};
        if (j < n2 && mi >= 0 && mi < o0) {
            const bool inner = j >= b2.lo && j < b2.hi;
            const long long row = (long long)p * plane_map + (long long)mi * o2;
            for (int k = 0; k < FS_W; k++) {
                const int mj = j + off2 - FS_R + k;
                if (mj < 0 || mj >= o2) continue;
                const REAL w = inner ? g[k] : fs_bw(b2, g, j, k);
                if (!inner && w == 0) continue;
                for (int c = 0; c < nsrc; c++) m[c] += pm[c * P * plane_map + row + mj] * w;
            }
        }
        for (int c = 0; c < 4; c++) hs[(c * FS_IH + a) * FS_TX + threadIdx.x] = m[c];
    }
    __syncthreads();
    const int pl = ((p / nci) / ns) * nci + p % nci;  // the plane (for its shifts)
    const REAL sx = (REAL)shx[pl], sy = (REAL)shy[pl];
    for (int oy = threadIdx.y; oy < FS_OTY; oy += FS_TY) {
        const int i = i0 + oy;
        if (i >= n0 || j >= n2) continue;
        REAL A[4] = {0, 0, 0, 0};
        const bool inner = i >= b0.lo && i < b0.hi;
        for (int k = 0; k < FS_W; k++) {
            const REAL w = inner ? g[k] : fs_bw(b0, g, i, k);
            if (!inner && w == 0) continue;
            for (int c = 0; c < nsrc; c++) A[c] += hs[(c * FS_IH + oy + k) * FS_TX + threadIdx.x] * w;
        }
        if (tout) {
            const long long t = ((long long)p * n0 + i) * n2 + j;
            for (int c = 0; c < 4; c++) tout[c * P * n0 * n2 + t] = A[c];
            continue;
        }
        const long long o = fs_at(p, nci, plane_in, i, j, n2);
        REAL vx, vy;
        if (form == FS_FORM_MEAN) {  // a windowed mean: the adjoint of the mean alone
            vx = A[0];
            vy = 0;
        } else {
            const REAL u = (REAL)FS_CVT(x[o]) - sx, v = (REAL)FS_CVT(y[o]) - sy;
            // combine() of engine_impl.h: am + 2 (u - v) ass + v axy
            vx = A[0] + 2 * (u - v) * A[2] + v * A[3];
            vy = A[1] + 2 * (v - u) * A[2] + u * A[3];
        }
        // acc: add to the gradient of the previous windows (per-pixel MS-SSIM)
        if (grad & 1) gx[o] = acc ? gx[o] + vx : vx;
        if (grad & 2) gy[o] = acc ? gy[o] + vy : vy;
    }
}

// The per-pixel MS-SSIM product of M <= FS_MAXM window maps F[j] (map
// layout, fstride elements apart; the cotangents C likewise):
// P = F0 (F1 (... F_{M-1})) (product_rtl's order), its map, its
// per-block sums (as fs_fwd), and for the gradient each window's cotangent
// C[j] = w prod_{k != j} F_k, as cot_run of engine_impl.h: the prefix
// w F0 ... F_{j-1} times the suffix product, never a division by F_j.
#define FS_MAXM 8
extern "C" __global__ void __launch_bounds__(FS_NT)
fs_prod(const REAL *__restrict__ F, long long fstride, int M, int o0, int o2, int nci,
        long long plane_out, const REAL *__restrict__ wmap, REAL wscal,
        REAL *__restrict__ pmap, REAL *__restrict__ C, double *__restrict__ part)
{
    extern __shared__ double fs_smem[];
    const int p = blockIdx.z, j = blockIdx.x * FS_TX + threadIdx.x;
    double acc = 0;
    for (int oy = threadIdx.y; oy < FS_OTY; oy += FS_TY) {
        const int i = blockIdx.y * FS_OTY + oy;
        if (i >= o0 || j >= o2) continue;
        const long long o = fs_at(p, nci, plane_out, i, j, o2);
        REAL f[FS_MAXM], suf[FS_MAXM];
        for (int m = 0; m < M; m++) f[m] = F[m * fstride + o];
        suf[M - 1] = f[M - 1];
        for (int m = M - 2; m >= 0; m--) suf[m] = f[m] * suf[m + 1];
        const REAL P = suf[0];
        if (pmap) pmap[o] = P;
        acc += (double)P;
        if (C) {
            REAL pre = wmap ? wmap[o] : wscal;
            for (int m = 0; m < M; m++) {
                C[m * fstride + o] = m < M - 1 ? pre * suf[m + 1] : pre;
                pre = pre * f[m];
            }
        }
    }
    const double s = fs_block_sum(acc, fs_smem);
    if (threadIdx.x == 0 && threadIdx.y == 0)
        part[((long long)p * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x] = s;
}

// MS-SSIM pyramid (fastssim/_pyramid.py tables, per axis: out[o] = w0[o]
// in[i0[o]] + w1[o] in[i1[o]]): one level's 2x downsampling of planes,
// o = d2(wa a + wb b) as down_rows of engine_impl.h.
extern "C" __global__ void __launch_bounds__(FS_NT)
fs_down(const REAL *__restrict__ in, REAL *__restrict__ out, int n0, int n2, int o0, int o2,
        const int *__restrict__ ai0, const int *__restrict__ ai1,
        const double *__restrict__ aw0, const double *__restrict__ aw1,
        const int *__restrict__ bi0, const int *__restrict__ bi1,
        const double *__restrict__ bw0, const double *__restrict__ bw1)
{
    const int p = blockIdx.z, c = blockIdx.x * FS_TX + threadIdx.x;
    if (c >= o2) return;
    const REAL *src = in + (long long)p * n0 * n2;
    for (int oy = threadIdx.y; oy < FS_OTY; oy += FS_TY) {
        const int o = blockIdx.y * FS_OTY + oy;
        if (o >= o0) continue;
        const REAL *a = src + (long long)ai0[o] * n2, *b = src + (long long)ai1[o] * n2;
        const REAL wa = (REAL)aw0[o], wb = (REAL)aw1[o];
        const int k0 = bi0[c], k1 = bi1[c];
        out[((long long)p * o0 + o) * o2 + c] =
            (REAL)bw0[c] * (wa * a[k0] + wb * b[k0]) + (REAL)bw1[c] * (wa * a[k1] + wb * b[k1]);
    }
}

// The adjoint of fs_down added into the finer level's gradient (fs_up of
// engine_impl.h with coef 1): fine[i][j] += u0[i] u2[j] coarse[m0[i]][m2[j]],
// each fine sample reading at most one coarse one.
extern "C" __global__ void __launch_bounds__(FS_NT)
fs_up(const REAL *__restrict__ coarse, REAL *__restrict__ fine, int n0, int n2, int o0, int o2,
      const int *__restrict__ m0, const double *__restrict__ u0,
      const int *__restrict__ m2, const double *__restrict__ u2)
{
    const int p = blockIdx.z, j = blockIdx.x * FS_TX + threadIdx.x;
    if (j >= n2) return;
    for (int oy = threadIdx.y; oy < FS_OTY; oy += FS_TY) {
        const int i = blockIdx.y * FS_OTY + oy;
        if (i >= n0) continue;
        const REAL u = (REAL)u0[i] * (REAL)u2[j];
        if (u == 0) continue;
        const long long f = ((long long)p * n0 + i) * n2 + j;
        fine[f] = fine[f] + u * coarse[((long long)p * o0 + m0[i]) * o2 + m2[j]];
    }
}

// MS-SSIM from its per-scale means m (P, M) (ms_combine of _engine.pyx, one
// thread per plane): value = prod_j f(m_j)^w_j with the negative policy f
// (0 clamp, 1 simple, 2 none), coef[p][j] = d value / d m_j from the prefix
// and suffix products of the other factors.
extern "C" __global__ void
fs_combine(const double *__restrict__ m, const double *__restrict__ w, int P, int M, int negative,
           double *__restrict__ value, double *__restrict__ coef)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= P) return;
    double f[64], df[64], pw[64], prod = 1.0;
    for (int j = 0; j < M; j++) {
        const double v = m[(long long)p * M + j];
        if (negative == 0) {
            f[j] = v <= 0 ? 0.0 : v;
            df[j] = v > 0 ? 1.0 : 0.0;
        } else if (negative == 1) {
            f[j] = (v + 1.0) / 2.0;
            df[j] = 0.5;
        } else {
            f[j] = v;
            df[j] = 1.0;
        }
        pw[j] = pow(f[j], w[j]);
        prod = prod * pw[j];
    }
    value[p] = prod;
    if (!coef) return;
    double pre = 1.0;
    for (int j = 0; j < M; j++) {
        coef[(long long)p * M + j] = pre;
        pre = pre * pw[j];
    }
    double suf = 1.0;
    for (int j = M - 1; j >= 0; j--) {
        double *c = coef + (long long)p * M + j;
        *c = (w[j] == 0 || df[j] == 0) ? 0.0 : w[j] * pow(f[j], w[j] - 1.0) * df[j] * *c * suf;
        suf = suf * pw[j];
    }
}

// Per-plane sums of the per-block partials, in a fixed order.
extern "C" __global__ void __launch_bounds__(FS_NT)
fs_reduce(const double *__restrict__ part, long long nblk, double *__restrict__ out)
{
    extern __shared__ double fs_smem[];
    const int t = threadIdx.y * FS_TX + threadIdx.x;
    const double *src = part + (long long)blockIdx.x * nblk;
    double acc = 0;
    for (long long b = t; b < nblk; b += FS_NT) acc += src[b];
    const double s = fs_block_sum(acc, fs_smem);
    if (t == 0) out[blockIdx.x] = s;
}

// The per-plane shifts of x (blockIdx.y == 0) and y (1) into out[2][P]: the
// rule of fs_plane_shifts (engine.c), the mean of the finite samples of a
// sparse grid (every max(1, n/32)-th index per axis) rounded to a multiple of
// 2^floor(log2(their standard deviation)), one block per plane.  The sums
// are per-thread in a fixed order, then a fixed tree (deterministic; not the
// CPU's sequential order, so in a rare tie the rounding can pick the
// neighbouring multiple: SSIM does not depend on the shift, only its
// rounding errors do, at the 1e-16 level).
extern "C" __global__ void __launch_bounds__(FS_NT)
fs_shifts(const XT *__restrict__ x, const XT *__restrict__ y, int nci, long long plane_in,
          int n0, int n1, int n2, double *__restrict__ out)
{
    extern __shared__ double fs_smem[];
    const int p = blockIdx.x, t = threadIdx.y * FS_TX + threadIdx.x;
    const XT *a = blockIdx.y ? y : x;
    const int s0 = n0 / 32 > 1 ? n0 / 32 : 1, s1 = n1 / 32 > 1 ? n1 / 32 : 1;
    const int s2 = n2 / 32 > 1 ? n2 / 32 : 1;
    const int m0 = (n0 + s0 - 1) / s0, m1 = (n1 + s1 - 1) / s1, m2 = (n2 + s2 - 1) / s2;
    const long long M = (long long)m0 * m1 * m2;
    const long long base = (long long)(p / nci) * plane_in + p % nci;
#define FS_SAMPLE(e)                                                                  \
    (double)FS_CVT(a[base + ((((e) / ((long long)m1 * m2)) * s0 * (long long)n1 +            \
                       (((e) / m2) % m1) * s1) * n2 + ((e) % m2) * s2) * nci])
    double sum = 0, cnt = 0;
    for (long long e = t; e < M; e += FS_NT) {
        const double v = FS_SAMPLE(e);
        if (isfinite(v)) { sum += v; cnt += 1; }
    }
    sum = fs_block_sum(sum, fs_smem);
    cnt = fs_block_sum(cnt, fs_smem);  // exact: counts < 2^53
    const double mean = cnt > 0 ? sum / cnt : 0.0;
    double ss = 0;
    for (long long e = t; e < M; e += FS_NT) {
        const double v = FS_SAMPLE(e);
        if (isfinite(v)) ss += (v - mean) * (v - mean);
    }
#undef FS_SAMPLE
    ss = fs_block_sum(ss, fs_smem);
    if (t != 0) return;
    const double sd = cnt > 0 ? sqrt(ss / cnt) : 0.0;
    double shift = mean;
    if (sd > 0 && isfinite(sd)) {
        int e;
        (void)frexp(sd, &e);
        const double q = ldexp(1.0, e - 1);
        shift = nearbyint(mean / q) * q;
    }
    out[(long long)blockIdx.y * gridDim.x + p] = shift;
}
"""


def options(compute: str, element: str, radius: int, rows: int) -> tuple:
    """NVRTC options (the -D defines) of one specialisation."""
    return (f"-DFS_REAL={REAL[compute]}", f"-DFS_XT={ELEMENT[compute][element]}",
            f"-DFS_R={int(radius)}", f"-DFS_TX={FS_TX}", f"-DFS_TY={FS_TY}",
            f"-DFS_OTY={int(rows)}") + (("-DFS_HALF=1",) if element == "float16" else ())


def smem_bytes(compute: str, radius: int, rows: int) -> dict:
    """Dynamic shared memory of each kernel (bytes) for a specialisation."""
    sz = 4 if compute == "float32" else 8
    ih, iw, w = rows + 2 * radius, FS_TX + 2 * radius, 2 * radius + 1
    return {
        "fs_fwd": FS_TX * FS_TY * 8 + (2 * ih * iw + 4 * ih * FS_TX + w) * sz,
        "fs_adj": (4 * ih * FS_TX + w) * sz,
        "fs_fwd0": FS_TX * FS_TY * 8 + w * sz,
        "fs_adj0": w * sz,
        "fs_prod": FS_TX * FS_TY * 8,
        "fs_down": 0,
        "fs_up": 0,
        "fs_combine": 0,
        "fs_reduce": FS_TX * FS_TY * 8,
        "fs_shifts": FS_TX * FS_TY * 8,
    }


def tile_rows(compute: str, radius: int, limit: int = MAX_SMEM) -> int:
    """Output rows per block: the tallest of 32, 16, 8 whose forward tile fits
    in ``limit`` bytes of shared memory (a taller tile reads its 2r halo rows
    for more outputs); 0 if none fits (the window is too wide for one tile)."""
    for rows in (32, 16, 8):
        if smem_bytes(compute, radius, rows)["fs_fwd"] <= min(limit, 96 * 1024) or (
                rows == 8 and smem_bytes(compute, radius, rows)["fs_fwd"] <= limit):
            return rows
    return 0


def max_radius(compute: str, limit: int = MAX_SMEM) -> int:
    """The widest window radius a tile fits for (shared memory ``limit``)."""
    r = 0
    while tile_rows(compute, r + 1, limit):
        r += 1
    return r


def specialisations():
    """Representative specialisations the library requests, for compile checks:
    every (compute type, input element type) pair at the default Gaussian
    radius (5), and each compute type over radii 0..8 (box windows up to 17
    taps, Gaussians up to sigma 2.3), the Zhao per-pixel radii (sigma
    0.5..8 at truncate 3.5: 2, 4, 7, 14, 28), the largest 32-row tile and
    the widest radius that fits a tile at all."""
    out = []
    for compute in ("float32", "float64"):
        r32 = max(r for r in range(64) if tile_rows(compute, r) == 32)
        radii = set(range(0, 9)) | {14, 28, r32, r32 + 1, max_radius(compute)}
        for el in ELEMENT[compute]:
            out.append((compute, el, 5, tile_rows(compute, 5)))
        for r in sorted(radii):
            out.append((compute, compute, r, tile_rows(compute, r)))
    return sorted(set(out))
