/* layout.cuh - data movement between tensor layouts: latents <-> patch tokens, and fp32 [3, H, W] ->
 * interleaved RGB8 [H, W, 3] (dense, on the device). The decoder's images have their own (image.cuh). */
#ifndef WM_LAYOUT_CUH
#define WM_LAYOUT_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* lat [F, C, Hh, Ww] -> patches [F*(Hh/ph)*(Ww/pw), C*ph*pw], (c, di, dj) order */
cudaError_t wm_cuda_patchify(float *patches, const float *lat, int F, int C, int Hh, int Ww, int ph, int pw,
                             cudaStream_t stream);
/* tokens [F*gh*gw, ph*pw*C], (di, dj, c) order -> lat [F, C, Hh, Ww] */
cudaError_t wm_cuda_unpatchify(float *lat, const float *tokens, int F, int C, int Hh, int Ww, int ph, int pw,
                               cudaStream_t stream);
/* rgb [H, W, 3] (dense) = round_half_even(clamp(x[3, H, W], 0, 1) * 255), NaN -> 0 */
cudaError_t wm_cuda_to_rgb8(uint8_t *rgb, const float *x, int H, int W, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
