/* norm.cuh - row norms over fp32 [M, C] device arrays, fp32 statistics: LayerNorm with the DiT's
 * per-group modulation, LayerNorm with an affine weight/bias, and RMSNorm (in place). */
#ifndef WM_NORM_CUH
#define WM_NORM_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y = LN(x) * (1 + scale[g]) + shift[g], g = r / rows_per_group, rows of scale/shift at g * stride.
 * scale == NULL: no affine (shift ignored). y may equal x. */
cudaError_t wm_cuda_layernorm_mod(float *y, const float *x, int M, int C, float eps, const float *shift,
                                  const float *scale, int stride, int rows_per_group, cudaStream_t stream);
/* y = LN(x) * w + b; w or b NULL means 1 or 0 */
cudaError_t wm_cuda_layernorm_affine(float *y, const float *x, int M, int C, float eps, const float *w,
                                     const float *b, cudaStream_t stream);
/* The same two, written as bf16 (a GEMM's input): the fp32 value of the above, rounded to nearest even. */
cudaError_t wm_cuda_layernorm_mod_bf16(uint16_t *y, const float *x, int M, int C, float eps, const float *shift,
                                       const float *scale, int stride, int rows_per_group, cudaStream_t stream);
cudaError_t wm_cuda_layernorm_affine_bf16(uint16_t *y, const float *x, int M, int C, float eps, const float *w,
                                          const float *b, cudaStream_t stream);
/* x = x / sqrt(mean(x^2) + eps) * w, in place */
cudaError_t wm_cuda_rmsnorm(float *x, int M, int C, float eps, const float *w, cudaStream_t stream);
/* the same in place on bf16 rows (fp32 arithmetic, result rounded to bf16) */
cudaError_t wm_cuda_rmsnorm_bf16(uint16_t *x, int M, int C, float eps, const float *w, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
