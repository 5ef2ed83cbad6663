/* convert.cuh - fp32 <-> bf16 conversion of contiguous arrays (bf16 passed as its uint16_t bits).
 * Used for weights at load, activations before a bf16 GEMM or attention, and the K/V store. */
#ifndef WM_CONVERT_CUH
#define WM_CONVERT_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] = bf16(src[i]) rounded to nearest even, i < n */
cudaError_t wm_cuda_f32_to_bf16(uint16_t *dst, const float *src, size_t n, cudaStream_t stream);
/* dst[i] = float(src[i]) (exact), i < n */
cudaError_t wm_cuda_bf16_to_f32(float *dst, const uint16_t *src, size_t n, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
