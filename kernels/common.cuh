/* common.cuh - device helpers shared by the kernels of this folder: block reductions, bf16 bit
 * conversions, grid sizing. Only nvcc sees the body; a C file including it gets nothing. */
#ifndef WM_KERNELS_COMMON_CUH
#define WM_KERNELS_COMMON_CUH

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* bf16 bits <-> fp32: widening is exact; narrowing rounds to nearest even (NaN stays NaN). */
static __device__ __forceinline__ float wm_bf16_to_f32(uint16_t b) {
    return __uint_as_float((uint32_t)b << 16);
}
static __device__ __forceinline__ uint16_t wm_f32_to_bf16(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

static __device__ __forceinline__ float wm_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float wm_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum / max over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
 * result. `sh` is 32 floats of shared memory; safe to call repeatedly with the same buffer. */
static __device__ __forceinline__ float wm_block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = wm_warp_sum(v);
    __syncthreads(); /* sh may still be read by a previous call */
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return wm_warp_sum(v);
}
static __device__ __forceinline__ float wm_block_max(float v, float *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = wm_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return wm_warp_max(v);
}

/* Grid for a grid-stride loop over n elements: enough blocks to fill the GPU, never zero. */
static inline unsigned wm_grid_for(size_t n, int threads) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    if (b > 65536) b = 65536;
    return b ? (unsigned)b : 1u;
}
#endif

#endif
