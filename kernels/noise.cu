/* noise.cu - one thread per Philox counter block (four normals). The uniform-to-normal transform is
 * float64 throughout and rounded to fp32 once, as in rng.c; sqrt is correctly rounded and log, cos
 * and sin are within 1-2 ulp of float64, far below what survives the final rounding to fp32. No
 * contraction can occur: the only products feed a rounding-to-double before any sum. */
#include "common.cuh"
#include "noise.cuh"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static __device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint32_t k0, uint32_t k1) {
    for (int r = 0; r < 10; r++) {
        const uint32_t hi0 = __umulhi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
        const uint32_t hi1 = __umulhi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    return c;
}

static __global__ void noise_kernel(float *dst, size_t n, uint64_t seed, uint64_t stream, uint64_t first) {
    const uint64_t j0 = first >> 2, j1 = (first + n - 1) >> 2;
    for (uint64_t j = j0 + blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; j <= j1;
         j += (uint64_t)gridDim.x * blockDim.x) {
        const uint4 ctr =
            make_uint4((uint32_t)j, (uint32_t)(j >> 32), (uint32_t)stream, (uint32_t)(stream >> 32));
        const uint4 x = philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
        const double inv = 1.0 / 4294967296.0, two_pi = 6.283185307179586476925286766559;
        const double u0 = ((double)x.x + 0.5) * inv, u1 = ((double)x.y + 0.5) * inv;
        const double u2 = ((double)x.z + 0.5) * inv, u3 = ((double)x.w + 0.5) * inv;
        const double r01 = sqrt(-2.0 * log(u0)), r23 = sqrt(-2.0 * log(u2));
        float z[4];
        z[0] = (float)(r01 * cos(two_pi * u1));
        z[1] = (float)(r01 * sin(two_pi * u1));
        z[2] = (float)(r23 * cos(two_pi * u3));
        z[3] = (float)(r23 * sin(two_pi * u3));
        for (int w = 0; w < 4; w++) {
            const uint64_t e = 4 * j + (uint64_t)w;
            if (e >= first && e < first + n) dst[e - first] = z[w];
        }
    }
}

extern "C" cudaError_t wm_cuda_noise(float *dst, size_t n, uint64_t seed, uint64_t stream, uint64_t first,
                                     cudaStream_t s) {
    if (n == 0) return cudaSuccess;
    const int threads = 256;
    const size_t blocks = ((first + n - 1) >> 2) - (first >> 2) + 1;
    noise_kernel<<<wm_grid_for(blocks, threads), threads, 0, s>>>(dst, n, seed, stream, first);
    return cudaGetLastError();
}
