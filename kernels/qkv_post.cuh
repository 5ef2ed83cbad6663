/* qkv_post.cuh - the self-attention input after its fused q|k|v GEMM: RMSNorm of q and k, the
 * TempCache match row of k, RoPE of q and k, and the store's bf16 K/V rows, in one pass. */
#ifndef WM_QKV_POST_CUH
#define WM_QKV_POST_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* qkv: bf16 [M, 3C] (the GEMM's output), row r = [q | k | v] of token r (C = H * D). Per row, in fp32:
 *   q' = rmsnorm(q) * norm_q;  q_out[r] = bf16(rope(q'))        (bf16 [M, C], skipped when q_out NULL)
 *   k' = rmsnorm(k) * norm_k;  match[r] = bf16(k' / |k'|) when match != NULL (0 row for k' = 0)
 *   k_store[r] = bf16(rope(k'));  v_store[r] = v
 * with exactly the arithmetic of wm_cuda_rmsnorm, wm_cuda_match_normalize and wm_cuda_rope (token r
 * at frame frame0 + r / (gh*gw), row (r / gw) % gh, column r % gw), so the result equals those ops
 * run one after the other. table: device scratch of wm_cuda_qkv_post_table_floats(M, D, gh, gw) floats
 * (the angles of the call's frames, rows and columns). */
cudaError_t wm_cuda_qkv_post(uint16_t *q_out, uint16_t *k_store, uint16_t *v_store, uint16_t *match, const uint16_t *qkv,
                             int M, int H, int D, float eps, const float *norm_q, const float *norm_k,
                             int64_t frame0, int gh, int gw, float *table, cudaStream_t stream);
size_t wm_cuda_qkv_post_table_floats(int M, int D, int gh, int gw);

#ifdef __cplusplus
}
#endif
#endif
