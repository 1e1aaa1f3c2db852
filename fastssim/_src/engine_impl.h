/*
 * Body of the filter engine, included by engine_isa.h once per floating type
 * with REAL (float or double), IREAL (the integer of its width), FN(name)
 * (name_f / name_d with the ISA suffix _v4 / _v3 / _v1) and FS_VBYTES (the
 * vector width of the ISA) defined.  See engine.h for the contract.  Equation
 * numbers refer to shared/reference/zhao2017-ssim-msssim-derivatives.txt.
 *
 * On x86-64 with GCC the body is built three times, under `#pragma GCC
 * target` for AVX-512, AVX2+FMA and baseline, and engine.c picks one at load
 * time; so every helper here is built for each ISA.  The parts, in the order
 * each needs the previous ones:
 *
 *   engine_simd.h     vector types, loads, stores, lane select
 *   engine_band.h     band filtering along a line and across lines
 *   engine_box.h      box windows by tree and running sums (float64)
 *   engine_formula.h  eq. 1, its partials (eqs. 8-9), eq. 10, the per-pixel product
 *   engine_sums.h     per-line sums over the region, fixed order
 *   engine_input.h    input lines of any element type, the moment sources
 *   engine_pyramid.h  2x downsampling and its adjoint (MS-SSIM)
 *   engine_scratch.h  the per-unit scratch: layout and size, one function
 *   engine_stream.h   the streaming driver (fs_rows_multi)
 */

#define NV ((ptrdiff_t)(FS_VBYTES / sizeof(REAL)))  /* lanes of a vector */
#define FS_B 16    /* most output lines per row block (vlin_multi) */
#define FS_PAD 64  /* readable zeros around the lines band_range reads (>= NV) */
#define FS_MAXR 64 /* widest radius band_range_multi shares */

#include "engine_simd.h"
#include "engine_band.h"
#include "engine_box.h"
#include "engine_formula.h"
#include "engine_sums.h"
#include "engine_input.h"
#include "engine_pyramid.h"
#include "engine_scratch.h"
#include "engine_stream.h"

#undef NV
#undef FS_B
#undef FS_PAD
#undef FS_MAXR
