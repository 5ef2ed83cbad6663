/* conv_layout.cu - NCHW fp32 <-> NHWC bf16 as tiled transposes of the [C, P] matrix (P = H*W): a
 * block stages TILE_C channels x TILE_P positions in shared memory, so that both the fp32 side (read
 * or written along P) and the bf16 side (read or written along C) are coalesced; a naive
 * one-thread-per-element kernel would stride by P*4 or Cp*2 bytes on one of the two sides. These
 * kernels only move memory, so access width and loads in flight decide their speed: the bf16 side
 * moves 8 channels (16 bytes) per access, the fp32 side a float4 of 4 positions where P % 4 == 0
 * (every decoder shape) and one float otherwise, and each thread issues all of its loads before it
 * uses the first (fixed, unrolled counts). Measured on an H200 at 64 x 480x832: the way in runs at
 * memcpy speed (3.9 TB/s), the way back at 2.9 TB/s (two thirds of its traffic are writes; tiles
 * of 128 or 256 positions were no faster). */
#include "common.cuh"
#include "conv_layout.cuh"

#define TILE_P  64 /* positions per tile: 256 bytes of a fp32 channel row */
#define TILE_C  64 /* channels per tile: a whole NHWC row up to 64 channels is one contiguous run */
#define THREADS 256
#define F32_ITERS (TILE_C * TILE_P / THREADS)       /* fp32 elements per thread, scalar access */
#define V4_ITERS  (TILE_C * TILE_P / 4 / THREADS)   /* float4s per thread */
#define U4_ITERS  (TILE_C / 8 * TILE_P / THREADS)   /* 8-channel bf16 groups per thread (at most) */

/* two bf16 (round to nearest even) in one word, the lower channel in the low half (little endian:
 * it lands at the lower address, as convert.cu packs) */
static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    return (uint32_t)wm_f32_to_bf16(lo) | ((uint32_t)wm_f32_to_bf16(hi) << 16);
}

/* Grid: x over position tiles, y over channel tiles of Cp. V4: P % 4 == 0 and x 16-byte aligned. */
template <bool V4>
static __global__ void __launch_bounds__(THREADS)
nchw_f32_to_nhwc_bf16_kernel(uint16_t *out, const float *x, int C, int Cp, size_t P) {
    __shared__ float tile[TILE_C][TILE_P + 1]; /* +1: the column reads of the write phase spread over banks */
    const size_t p0 = (size_t)blockIdx.x * TILE_P;
    const int c0 = blockIdx.y * TILE_C;
    const int cw = min(TILE_C, Cp - c0); /* a multiple of 8: Cp is, and c0 is a multiple of 64 */
    const int pw = (int)min((size_t)TILE_P, P - p0); /* with V4 a multiple of 4 */
    /* read along P; padded channels and positions past P read as zero */
    if (V4) {
        float4 v[V4_ITERS];
#pragma unroll
        for (int j = 0; j < V4_ITERS; j++) {
            const int i = threadIdx.x + j * THREADS, cc = i / (TILE_P / 4), pp = 4 * (i % (TILE_P / 4)), c = c0 + cc;
            v[j] = (cc < cw && c < C && pp < pw) ? *(const float4 *)(x + (size_t)c * P + p0 + (size_t)pp)
                                                 : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int j = 0; j < V4_ITERS; j++) {
            const int i = threadIdx.x + j * THREADS, cc = i / (TILE_P / 4), pp = 4 * (i % (TILE_P / 4));
            tile[cc][pp] = v[j].x, tile[cc][pp + 1] = v[j].y, tile[cc][pp + 2] = v[j].z, tile[cc][pp + 3] = v[j].w;
        }
    } else {
        float v[F32_ITERS];
#pragma unroll
        for (int j = 0; j < F32_ITERS; j++) {
            const int i = threadIdx.x + j * THREADS, cc = i / TILE_P, pp = i % TILE_P, c = c0 + cc;
            v[j] = (cc < cw && c < C && pp < pw) ? x[(size_t)c * P + p0 + (size_t)pp] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < F32_ITERS; j++) {
            const int i = threadIdx.x + j * THREADS;
            tile[i / TILE_P][i % TILE_P] = v[j];
        }
    }
    __syncthreads();
    /* write along C: 16 bytes = channels cc..cc+7 of one position; consecutive threads cover a row,
     * then the next position, so rows narrower than 64 channels still make one contiguous run */
    const int groups = cw / 8, n = pw * groups;
#pragma unroll
    for (int j = 0; j < U4_ITERS; j++) {
        const int i = threadIdx.x + j * THREADS;
        if (i < n) {
            const int pp = i / groups, cc = 8 * (i % groups);
            uint4 w;
            w.x = pack2(tile[cc][pp], tile[cc + 1][pp]);
            w.y = pack2(tile[cc + 2][pp], tile[cc + 3][pp]);
            w.z = pack2(tile[cc + 4][pp], tile[cc + 5][pp]);
            w.w = pack2(tile[cc + 6][pp], tile[cc + 7][pp]);
            *(uint4 *)(out + (p0 + (size_t)pp) * (size_t)Cp + (size_t)(c0 + cc)) = w;
        }
    }
}

/* Grid: x over position tiles, y over channel tiles of C (padded channels beyond the last group of
 * 8 are never read). V4: P % 4 == 0 and y 16-byte aligned. */
template <bool V4>
static __global__ void __launch_bounds__(THREADS)
nhwc_bf16_to_nchw_f32_kernel(float *y, const uint16_t *in, const float *bias, int C, int Cp, size_t P) {
    __shared__ float tile[TILE_C][TILE_P + 1];
    const size_t p0 = (size_t)blockIdx.x * TILE_P;
    const int c0 = blockIdx.y * TILE_C;
    const int cw = min(TILE_C, C - c0);
    /* whole groups of 8: they exist since Cp is a multiple of 8 and >= C */
    const int groups = (cw + 7) / 8, pw = (int)min((size_t)TILE_P, P - p0), n = pw * groups;
    uint4 v[U4_ITERS];
#pragma unroll
    for (int j = 0; j < U4_ITERS; j++) {
        const int i = threadIdx.x + j * THREADS, pp = i / groups, cc = 8 * (i % groups);
        v[j] = i < n ? *(const uint4 *)(in + (p0 + (size_t)pp) * (size_t)Cp + (size_t)(c0 + cc))
                     : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int j = 0; j < U4_ITERS; j++) {
        const int i = threadIdx.x + j * THREADS, pp = i / groups, cc = 8 * (i % groups);
        if (i < n) {
            const uint32_t w[4] = {v[j].x, v[j].y, v[j].z, v[j].w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                tile[cc + 2 * e][pp] = wm_bf16_to_f32((uint16_t)(w[e] & 0xFFFFu));
                tile[cc + 2 * e + 1][pp] = wm_bf16_to_f32((uint16_t)(w[e] >> 16));
            }
        }
    }
    __syncthreads();
    if (V4) {
#pragma unroll
        for (int j = 0; j < V4_ITERS; j++) {
            const int i = threadIdx.x + j * THREADS, cc = i / (TILE_P / 4), pp = 4 * (i % (TILE_P / 4)),
                      c = c0 + cc;
            if (cc < cw && pp < pw) {
                const float b = bias ? bias[c] : 0.0f;
                float4 f = make_float4(tile[cc][pp], tile[cc][pp + 1], tile[cc][pp + 2], tile[cc][pp + 3]);
                if (bias) f.x += b, f.y += b, f.z += b, f.w += b;
                *(float4 *)(y + (size_t)c * P + p0 + (size_t)pp) = f;
            }
        }
    } else {
#pragma unroll
        for (int j = 0; j < F32_ITERS; j++) {
            const int i = threadIdx.x + j * THREADS, cc = i / TILE_P, pp = i % TILE_P, c = c0 + cc;
            if (cc < cw && pp < pw) {
                const float f = tile[cc][pp];
                y[(size_t)c * P + p0 + (size_t)pp] = bias ? f + bias[c] : f;
            }
        }
    }
}

/* One thread per output element (the filter is converted once per weight; gathers are fine). */
static __global__ void filter_to_krsc_kernel(uint16_t *out, const float *w, int Cout, int Cin, int k, int Coutp,
                                             int Cinp) {
    const size_t total = (size_t)Coutp * k * k * Cinp;
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < total; o += (size_t)gridDim.x * blockDim.x) {
        const int ci = (int)(o % (size_t)Cinp);
        const size_t rest = o / (size_t)Cinp; /* (co*k + ky)*k + kx */
        const int kx = (int)(rest % (size_t)k), ky = (int)((rest / (size_t)k) % (size_t)k);
        const int co = (int)(rest / ((size_t)k * k));
        float v = 0.0f;
        if (co < Cout && ci < Cin) v = w[(((size_t)co * Cin + ci) * k + ky) * k + kx];
        out[o] = wm_f32_to_bf16(v);
    }
}

/* Grid of a tiled transpose; too many blocks is invalid. */
static int tile_grid(dim3 *g, size_t P, int channels) {
    const size_t gx = (P + TILE_P - 1) / TILE_P, gy = ((size_t)channels + TILE_C - 1) / TILE_C;
    if (gx > 0x7FFFFFFFu || gy > 65535) return 0;
    *g = dim3((unsigned)gx, (unsigned)gy, 1);
    return 1;
}

extern "C" cudaError_t wm_cuda_nchw_f32_to_nhwc_bf16(uint16_t *out, const float *x, int C, int Cp, int H, int W,
                                                     cudaStream_t s) {
    if (C < 0 || Cp < C || Cp % 8 || H < 0 || W < 0 || (uintptr_t)out % 16) return cudaErrorInvalidValue;
    const size_t P = (size_t)H * W;
    if (P == 0 || Cp == 0) return cudaSuccess;
    dim3 grid;
    if (!tile_grid(&grid, P, Cp)) return cudaErrorInvalidValue;
    if (P % 4 == 0 && (uintptr_t)x % 16 == 0)
        nchw_f32_to_nhwc_bf16_kernel<true><<<grid, THREADS, 0, s>>>(out, x, C, Cp, P);
    else
        nchw_f32_to_nhwc_bf16_kernel<false><<<grid, THREADS, 0, s>>>(out, x, C, Cp, P);
    return cudaGetLastError();
}

extern "C" cudaError_t wm_cuda_nhwc_bf16_to_nchw_f32(float *y, const uint16_t *in, const float *bias, int C, int Cp,
                                                     int H, int W, cudaStream_t s) {
    if (C < 0 || Cp < C || Cp % 8 || H < 0 || W < 0 || (uintptr_t)in % 16) return cudaErrorInvalidValue;
    const size_t P = (size_t)H * W;
    if (P == 0 || C == 0) return cudaSuccess;
    dim3 grid;
    if (!tile_grid(&grid, P, C)) return cudaErrorInvalidValue;
    if (P % 4 == 0 && (uintptr_t)y % 16 == 0)
        nhwc_bf16_to_nchw_f32_kernel<true><<<grid, THREADS, 0, s>>>(y, in, bias, C, Cp, P);
    else
        nhwc_bf16_to_nchw_f32_kernel<false><<<grid, THREADS, 0, s>>>(y, in, bias, C, Cp, P);
    return cudaGetLastError();
}

extern "C" cudaError_t wm_cuda_filter_f32_to_krsc_bf16(uint16_t *out, const float *w, int Cout, int Cin, int k,
                                                       int Coutp, int Cinp, cudaStream_t s) {
    if (Cout < 0 || Cin < 0 || k < 0 || Coutp < Cout || Cinp < Cin) return cudaErrorInvalidValue;
    const size_t total = (size_t)Coutp * k * k * Cinp;
    if (total)
        filter_to_krsc_kernel<<<wm_grid_for(total, THREADS), THREADS, 0, s>>>(out, w, Cout, Cin, k, Coutp, Cinp);
    return cudaGetLastError();
}
