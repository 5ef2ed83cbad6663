/* attn_naive.cuh - a simple, exact softmax attention: the fallback and cross-check for the flash
 * kernel (kernels/flash_attn.cuh), selected with WM_ATTN=naive. Same layout as flash_attn.cuh:
 * heads interleaved in the row, q and out fp32 here (no rounding of q), k and v bf16 bits.
 *
 * out[i, h*D + d] = sum_j softmax_j(scale * q_i.k_j + bias[h*bias_head_stride + j]) v_j[h*D + d]
 * for i < Mq, j < Mk. key_bias may be NULL. D <= 256. One thread block per (query, head), two
 * passes over the keys (max, then exp-sum and weighted values): slow, but simple to trust. */
#ifndef WM_ATTN_NAIVE_CUH
#define WM_ATTN_NAIVE_CUH

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t wm_cuda_attn_naive(float *out, int64_t ldo, const float *q, int64_t ldq, const uint16_t *k,
                               const uint16_t *v, int64_t ldkv, int Mq, int Mk, int H, int D, float scale,
                               const float *key_bias, int64_t bias_head_stride, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
