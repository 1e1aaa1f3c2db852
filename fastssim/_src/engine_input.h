/* engine_input.h: input conversion.  Lines of the caller's x and y read in
 * place (any FS_IN_* type, interleaved channels or not) minus the plane's shift,
 * and the four moment sources x, y, (x - y)^2, xy formed from them.
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

/* One input line as REAL, minus the shift: the engine reads the caller's
 * integer or float images in place, with channels interleaved (stride) or
 * not, so neither a float copy nor a channel transpose is ever made. */
static void FN(load_line)(const void *base, int type, ptrdiff_t off, ptrdiff_t stride,
                          ptrdiff_t n, REAL shift, REAL *restrict out)
{
/* RGB and RGBA (stride 3, 4) with the stride a constant: the compiler
 * vectorizes them (permutes), a run-time stride stays scalar; the same
 * arithmetic per sample either way. */
#define FS_LOAD(T)                                                              \
    do {                                                                        \
        const T *restrict src = (const T *)base + off;                          \
        if (stride == 1)                                                        \
            for (ptrdiff_t j = 0; j < n; j++) out[j] = (REAL)src[j] - shift;    \
        else if (stride == 3)                                                   \
            for (ptrdiff_t j = 0; j < n; j++) out[j] = (REAL)src[j * 3] - shift; \
        else if (stride == 4)                                                   \
            for (ptrdiff_t j = 0; j < n; j++) out[j] = (REAL)src[j * 4] - shift; \
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

/* sources() of one channel of interleaved RGB lines (samples 3 apart, a
 * constant stride the compiler vectorizes): load_line's samples and the same
 * arithmetic, in one sweep instead of two loads and a pass over them. */
static inline void FN(sources3)(ptrdiff_t n, const REAL *restrict x, const REAL *restrict y,
                                REAL sx, REAL sy, REAL *restrict su, REAL *restrict sv,
                                REAL *restrict ss, REAL *restrict sp)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        REAL u = x[3 * j] - sx, v = y[3 * j] - sy;
        su[j] = u;
        sv[j] = v;
        ss[j] = (u - v) * (u - v);
        sp[j] = u * v;
    }
}

/* Offset (in elements) of plane p: batch item p / nci, channel p % nci. */
static inline ptrdiff_t FN(plane_off)(ptrdiff_t p, int nci, ptrdiff_t item)
{
    return (p / nci) * item + p % nci;
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
    if (job->in_type == FS_IN_REAL && job->nci == 3) {  /* RGB channels-last, one sweep */
        FN(sources3)(n, (const REAL *)job->x + at, (const REAL *)job->y + at, sx, sy,
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
