/* elementwise.cuh - pointwise ops on fp32 device arrays: activations, axpby, residual adds (plain
 * and gated), fill, clamp, tanh clamp, and the bias broadcasts used around cuBLAS GEMMs. */
#ifndef WM_ELEMENTWISE_CUH
#define WM_ELEMENTWISE_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t wm_cuda_silu(float *x, size_t n, cudaStream_t stream);      /* x / (1 + exp(-x)) */
cudaError_t wm_cuda_gelu_tanh(float *x, size_t n, cudaStream_t stream); /* tanh approximation */
/* x (bf16 bits) = gelu_tanh(x) in place: the FFN hidden between its two GEMMs */
cudaError_t wm_cuda_gelu_tanh_bf16(uint16_t *x, size_t n, cudaStream_t stream);
cudaError_t wm_cuda_relu(float *x, size_t n, cudaStream_t stream);
/* y = a*x + b*y */
cudaError_t wm_cuda_axpby(float *y, float a, const float *x, float b, size_t n, cudaStream_t stream);
/* y += x */
cudaError_t wm_cuda_add(float *y, const float *x, size_t n, cudaStream_t stream);
/* x[r, c] += y[r, c] * gate[(r / rows_per_group) * stride + c], x, y [M, C] */
cudaError_t wm_cuda_gated_add(float *x, const float *y, int M, int C, const float *gate, int stride,
                              int rows_per_group, cudaStream_t stream);
/* the same with y in bf16 (a GEMM's bf16 output) */
cudaError_t wm_cuda_gated_add_bf16(float *x, const uint16_t *y, int M, int C, const float *gate, int stride,
                                   int rows_per_group, cudaStream_t stream);
cudaError_t wm_cuda_fill(float *x, float value, size_t n, cudaStream_t stream);
/* x = min(max(x, lo), hi); NaN stays NaN */
cudaError_t wm_cuda_clamp(float *x, size_t n, float lo, float hi, cudaStream_t stream);
/* x = tanh(x / limit) * limit */
cudaError_t wm_cuda_tanh_clamp(float *x, size_t n, float limit, cudaStream_t stream);
/* y[r, c] += b[c], y [M, N] */
cudaError_t wm_cuda_add_bias_rows(float *y, const float *b, int M, int N, cudaStream_t stream);
/* y[c, i] = b[c], y [C, HW]: a convolution's bias before the GEMM accumulates into it */
cudaError_t wm_cuda_fill_channels(float *y, const float *b, int C, size_t HW, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
