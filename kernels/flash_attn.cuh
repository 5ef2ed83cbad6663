/* flash_attn.cuh - our flash-attention kernel (online softmax, bf16 tensor-core mma, fp32
 * accumulation). Includable from C: the CUDA backend (plugin/src/cuda/) calls it.
 *
 * out[i, h*D:(h+1)*D] = sum_j softmax_j(scale * q_i.k_j + bias[h][j]) v_j over the keys j of head h
 * that the (optional) block-sparse list allows. Row-major, heads interleaved in the row
 * ([tokens, H*D]) like the model's projections, so no transposes are needed.
 *
 * - q: bf16 [Mq, ldq], k, v: bf16 [Mk, ldkv]; out: fp32 [Mq, ldo], or out16: bf16 [Mq, ldo] (what
 *   the output projection's GEMM reads; exactly one of the two is set).
 * - key_bias (nullable): fp32, element [h * bias_head_stride + j]; bias_head_stride 0 shares one
 *   row across heads. TempCache's log(group size) goes here.
 * - block-sparse (nullable): a CSR list per (head, query block of WM_FA_BLOCK_Q rows):
 *   kb_offsets[h * n_qblocks + qb] .. kb_offsets[h * n_qblocks + qb + 1] index kb_indices, the key
 *   blocks (of WM_FA_BLOCK_K rows) that query block attends to. NULL = dense.
 * - D: 64 or 128. Returns 0, or -1 for an unsupported shape (message in wm_flash_attn_error()).
 * - Layout requirements: q, k, v 16-byte aligned and ldq, ldkv multiples of 8 elements; out 8-byte
 *   aligned and ldo even; ldq, ldkv, ldo >= H*D; scale finite and > 0. Mq, Mk >= 0 (Mk = 0, an
 *   empty key list or keys whose bias is -inf all give zero rows, never NaN). A key-block index
 *   outside [0, ceil(Mk / WM_FA_BLOCK_K)) in the sparse list is ignored.
 * - Asynchronous on `stream`; no allocation, no host-device synchronisation (graph-capturable).
 *
 * Two implementations: a Hopper one (wgmma + TMA, warp-specialised; needs the file built for
 * sm_90a, i.e. CMAKE_CUDA_ARCHITECTURES=90a, and a compute-capability 9.0 device) and a portable
 * one (mma.sync m16n8k16, cp.async, ldmatrix; sm_80 and newer). wm_flash_attn picks the Hopper
 * kernel when it can; wm_flash_attn_force() pins one (tests and benchmarks). */
#ifndef WM_FLASH_ATTN_CUH
#define WM_FLASH_ATTN_CUH

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The kernels' query tile and key tile: the block-sparse list is in units of these. */
#define WM_FA_BLOCK_Q 128
#define WM_FA_BLOCK_K 128

typedef struct wm_fa_args {
    const uint16_t *q; int64_t ldq;   /* bf16 bits */
    const uint16_t *k; const uint16_t *v; int64_t ldkv;
    float *out; int64_t ldo;
    uint16_t *out16;                  /* instead of out: bf16 output (for the next GEMM), same ldo */
    int Mq, Mk, H, D;
    float scale;
    const float *key_bias; int64_t bias_head_stride;
    const int *kb_offsets; const int *kb_indices; /* block-sparse, or NULL */
} wm_fa_args;

int wm_flash_attn(const wm_fa_args *a, cudaStream_t stream);
const char *wm_flash_attn_error(void);

/* Implementation choice (process-wide): 0 = automatic (default), 1 = mma.sync kernel,
 * 2 = Hopper wgmma kernel (wm_flash_attn fails if it is unavailable). For benchmarks, flags or-ed
 * into the value switch parts of the Hopper kernel off: the ping-pong schedule between its two
 * consumer warpgroups, the last-wave split into 64-row CTAs, the third K/V stage. */
#define WM_FA_IMPL_AUTO 0
#define WM_FA_IMPL_MMA 1
#define WM_FA_IMPL_WGMMA 2
#define WM_FA_NO_PINGPONG 0x100
#define WM_FA_NO_SPLIT 0x200
#define WM_FA_TWO_STAGES 0x400
void wm_flash_attn_force(int impl);
/* Name of the kernel the last successful wm_flash_attn call launched ("wgmma", "mma", "none"). */
const char *wm_flash_attn_last_impl(void);
/* 1 when the Hopper kernel can run on the current device (built for sm_90a, device 9.0). */
int wm_flash_attn_has_wgmma(void);

#ifdef __cplusplus
}
#endif
#endif
