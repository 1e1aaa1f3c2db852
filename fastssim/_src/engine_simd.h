/* engine_simd.h: SIMD helpers.  GCC/clang vector extensions of FS_VBYTES bytes
 * (16, 32 or 64, set per ISA by engine.c): the vector types, unaligned loads
 * and stores, a lane select.
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

typedef REAL FN(vec) __attribute__((vector_size(FS_VBYTES)));
typedef IREAL FN(ivec) __attribute__((vector_size(FS_VBYTES)));
static inline FN(vec) FN(ld)(const REAL *p)
{
    FN(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void FN(st)(REAL *p, FN(vec) v) { memcpy(p, &v, sizeof v); }

static inline FN(vec) FN(v_sel)(FN(ivec) m, FN(vec) a, FN(vec) b)  /* m ? a : b */
{
    return (FN(vec))(((FN(ivec))a & m) | ((FN(ivec))b & ~m));
}
