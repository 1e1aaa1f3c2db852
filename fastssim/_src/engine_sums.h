/* engine_sums.h: sums.  The per-line sums over the sum region, in float64, in
 * a fixed order whatever the ISA, and in the value pass's column chunks.
 * Part of the engine body (engine_impl.h): included once per floating type
 * and instruction set, with REAL, IREAL, FN(name) and FS_VBYTES defined. */

/* Sum of one line's values over the region, float64, fixed order whatever the ISA. */
static double FN(region_sum)(const REAL *s, int o2, const int *s1, const int *s2)
{
    double acc[16] = {0};
    double tail = 0;
    const ptrdiff_t n = s2[1] - s2[0];
    for (int i1 = s1[0]; i1 < s1[1]; i1++) {
        const REAL *p = s + (ptrdiff_t)i1 * o2 + s2[0];
        ptrdiff_t j = 0;
        for (; j + 16 <= n; j += 16)
            for (int l = 0; l < 16; l++) acc[l] += (double)p[j + l];
        for (; j < n; j++) tail += (double)p[j];
    }
    double h[8];
    for (int l = 0; l < 8; l++) h[l] = acc[l] + acc[l + 8];
    return (((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7]))) + tail;
}

/* A line's sums in column chunks [k c, (k+1) c) (c = chunk), k0 <= k < k1,
 * each as the value pass's strip k sums it (region_sum over its part of the
 * sum region s2 (absolute map columns), from the same first column): out[k];
 * zeros off the region.  row holds map columns from m0 on. */
static void FN(chunk_sums)(const REAL *row, int in_region, int o2, const int *s1,
                           const int *s2, int m0, int chunk, int k0, int k1, double *out)
{
    for (int k = k0; k < k1; k++) {
        int c2[2] = {(s2[0] > k * chunk ? s2[0] : k * chunk) - m0,
                     (s2[1] < (k + 1) * chunk ? s2[1] : (k + 1) * chunk) - m0};
        if (c2[1] < c2[0]) c2[1] = c2[0];
        out[k] = in_region ? FN(region_sum)(row, o2, s1, c2) : 0.0;
    }
}
