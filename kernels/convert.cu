/* convert.cu - fp32 <-> bf16 conversion of contiguous arrays. Four elements per thread when both
 * pointers allow vector access, else one. */
#include "common.cuh"
#include "convert.cuh"

static __global__ void f32_to_bf16_vec4(uint2 *dst, const float4 *src, size_t n4) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4;
         i += (size_t)gridDim.x * blockDim.x) {
        float4 f = src[i];
        uint2 o;
        o.x = (uint32_t)wm_f32_to_bf16(f.x) | ((uint32_t)wm_f32_to_bf16(f.y) << 16);
        o.y = (uint32_t)wm_f32_to_bf16(f.z) | ((uint32_t)wm_f32_to_bf16(f.w) << 16);
        dst[i] = o;
    }
}
static __global__ void f32_to_bf16_scalar(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = wm_f32_to_bf16(src[i]);
}
static __global__ void bf16_to_f32_scalar(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = wm_bf16_to_f32(src[i]);
}

extern "C" cudaError_t wm_cuda_f32_to_bf16(uint16_t *dst, const float *src, size_t n, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    const int threads = 256;
    if (((uintptr_t)dst % 8 == 0) && ((uintptr_t)src % 16 == 0) && n % 4 == 0)
        f32_to_bf16_vec4<<<wm_grid_for(n / 4, threads), threads, 0, stream>>>((uint2 *)dst,
                                                                              (const float4 *)src, n / 4);
    else
        f32_to_bf16_scalar<<<wm_grid_for(n, threads), threads, 0, stream>>>(dst, src, n);
    return cudaGetLastError();
}

extern "C" cudaError_t wm_cuda_bf16_to_f32(float *dst, const uint16_t *src, size_t n, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    const int threads = 256;
    bf16_to_f32_scalar<<<wm_grid_for(n, threads), threads, 0, stream>>>(dst, src, n);
    return cudaGetLastError();
}
