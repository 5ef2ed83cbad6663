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

#ifdef __cplusplus
}
#endif
#endif
