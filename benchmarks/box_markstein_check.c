/* Exhaustive check of the narrow boxes' division (engine_box.h, nbox_div and
 * nbox_one, issue 16): for every product d = a * b of two odd window widths
 * 3 .. 19 and every float32 significand (all s in [1, 4)), Markstein's
 * correction q = RN(s c), e = fma(-q, d, s), RN(q + e c) with c = RN(1 / d)
 * equals the correctly rounded quotient s / d (the float64 quotient rounded to
 * float32: no double rounding for a float32 division).  The other binades
 * scale exactly while the quotient stays normal.
 *
 *     gcc -O2 -mfma -o /tmp/mk benchmarks/box_markstein_check.c -lm && /tmp/mk
 *
 * Prints the misrounded count per divisor (none so far) and the total. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    long total = 0;
    for (int a = 3; a <= 19; a += 2)
        for (int b = a; b <= 19; b += 2) {
            const float d = (float)(a * b), c = (float)(1.0 / (a * b));
            long bad = 0;
            for (uint32_t m = 0; m < (1u << 24); m++) {
                const uint32_t bits = (127u << 23) + m;
                float s;
                memcpy(&s, &bits, 4);
                const float q = s * c, e = fmaf(-q, d, s), r = fmaf(e, c, q);
                if (r != (float)((double)s / (double)d)) bad++;
            }
            if (bad) printf("d = %d: %ld misrounded\n", a * b, bad);
            total += bad;
        }
    printf("misrounded in total: %ld\n", total);
    return total != 0;
}
