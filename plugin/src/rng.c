/* rng.c - Philox4x32-10 (Salmon et al., SC'11) and the Box-Muller transform. */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void wm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The four normals of counter block j. Float64 throughout, rounded once at the end, so that any
 * correctly rounded libm gives the same fp32 values. */
static void normal_block(uint64_t seed, uint64_t stream, uint64_t j, float z[4]) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)j, (uint32_t)(j >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t x[4];
    wm_philox4x32_10(ctr, key, x);
    const double inv = 1.0 / 4294967296.0, two_pi = 6.283185307179586476925286766559;
    double u0 = ((double)x[0] + 0.5) * inv, u1 = ((double)x[1] + 0.5) * inv;
    double u2 = ((double)x[2] + 0.5) * inv, u3 = ((double)x[3] + 0.5) * inv;
    double r01 = sqrt(-2.0 * log(u0)), r23 = sqrt(-2.0 * log(u2));
    z[0] = (float)(r01 * cos(two_pi * u1));
    z[1] = (float)(r01 * sin(two_pi * u1));
    z[2] = (float)(r23 * cos(two_pi * u3));
    z[3] = (float)(r23 * sin(two_pi * u3));
}

void wm_normal_fill(float *dst, size_t n, uint64_t seed, uint64_t stream, uint64_t first) {
    if (n == 0) return;
    const uint64_t j0 = first >> 2, j1 = (first + n - 1) >> 2;
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (uint64_t j = j0; j <= j1; j++) {
        float z[4];
        normal_block(seed, stream, j, z);
        for (int w = 0; w < 4; w++) {
            uint64_t e = 4 * j + (uint64_t)w;
            if (e >= first && e < first + n) dst[e - first] = z[w];
        }
    }
}
