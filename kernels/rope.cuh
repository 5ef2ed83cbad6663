/* rope.cuh - Wan's 3-D rotary position embedding, in place on x[M, H, D] (docs/MODEL.md section 3):
 * token r is (frame0 + r / (gh*gw), (r / gw) % gh, r % gw); pair p of each head is rotated by the
 * frame, row or column angle depending on which third of the head it falls in. */
#ifndef WM_ROPE_CUH
#define WM_ROPE_CUH

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

cudaError_t wm_cuda_rope(float *x, int M, int H, int D, int64_t frame0, int gh, int gw, cudaStream_t stream);
/* dst[n, H*D] = src (bf16 keys) with each head's time-axis pairs turned on by time_shift frames
 * (backend.h kv_copy); dst and src must not overlap. */
cudaError_t wm_cuda_kv_rope_shift(uint16_t *dst, const uint16_t *src, int64_t n, int H, int D, int64_t time_shift,
                                  cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
