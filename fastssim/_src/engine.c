/* fastssim filter engine: instantiates engine_impl.h for float and double,
 * plus build/run-time introspection for fastssim.show_config(). */
#include <string.h>
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "engine.h"

/* Runtime SIMD dispatch.  GCC's target_clones emits one copy of each entry
 * per listed ISA and an ifunc resolver that picks the best one when the
 * library is loaded; portable builds therefore carry AVX-512 and AVX2 code
 * without -march=native.  Elsewhere (clang, macOS, Windows, non-x86) the
 * build flags alone decide. FASTSSIM_NO_CLONES disables it at build time. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(FASTSSIM_NO_CLONES) && (__GNUC__ >= 12)
#define FS_TARGETS __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FS_HAVE_CLONES 1
#else
#define FS_TARGETS
#define FS_HAVE_CLONES 0
#endif

#define REAL float
#define FN(name) name##_f
#include "engine_impl.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "engine_impl.h"
#undef REAL
#undef FN

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
#if FS_HAVE_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512, runtime dispatch)";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2+FMA, runtime dispatch)";
    return "x86-64 baseline (SSE2, runtime dispatch)";
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
