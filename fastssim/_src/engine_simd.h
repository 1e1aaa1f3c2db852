/* engine_simd.h: SIMD helpers.  GCC/clang vector extensions of FS_VBYTES bytes
 * (16, 32 or 64, set per ISA by engine.c): the vector types, unaligned loads
 * and stores, a lane select.
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

typedef REAL FN(vec) __attribute__((vector_size(FS_VBYTES)));
typedef IREAL FN(ivec) __attribute__((vector_size(FS_VBYTES)));
#ifndef FS_VEC_IO
/* unaligned load LD and store ST of vector type V with elements of type T
 * (memcpy: GCC makes it one vmovups/vmovupd) */
#define FS_VEC_IO(V, T, LD, ST)                                               \
    static inline V LD(const T *p)                                            \
    {                                                                         \
        V v;                                                                  \
        memcpy(&v, p, sizeof v);                                              \
        return v;                                                             \
    }                                                                         \
    static inline void ST(T *p, V v) { memcpy(p, &v, sizeof v); }
#endif
FS_VEC_IO(FN(vec), REAL, FN(ld), FN(st))

static inline FN(vec) FN(v_sel)(FN(ivec) m, FN(vec) a, FN(vec) b)  /* m ? a : b */
{
    return (FN(vec))(((FN(ivec))a & m) | ((FN(ivec))b & ~m));
}
