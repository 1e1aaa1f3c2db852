/* engine_isa.h: the engine body (engine_impl.h) for float and double at one
 * instruction-set level.  engine.c includes it once per level with FS_ISA set
 * (4: AVX-512, 3: AVX2+FMA, 1: baseline; under the matching `#pragma GCC
 * target`), which names every function name_f_v<FS_ISA> / name_d_v<FS_ISA>
 * and sets the vector width. */

#if FS_ISA == 4
#define FS_VBYTES 64
#elif FS_ISA == 3
#define FS_VBYTES 32
#else
#define FS_VBYTES 16
#endif
#define FS_CAT3_(a, b, c) a##b##c
#define FS_CAT3(a, b, c) FS_CAT3_(a, b, c)

#define REAL float
#define IREAL int
#define FN(name) FS_CAT3(name, _f_v, FS_ISA)
#include "engine_impl.h"
#undef REAL
#undef IREAL
#undef FN

#define REAL double
#define IREAL long long
#define FN(name) FS_CAT3(name, _d_v, FS_ISA)
#include "engine_impl.h"
#undef REAL
#undef IREAL
#undef FN

#undef FS_CAT3
#undef FS_CAT3_
#undef FS_VBYTES
#undef FS_ISA
