/* timestep.cuh - the DiT's sinusoidal timestep embedding (docs/MODEL.md section 3) on the device, so a
 * forward needs no upload and can be recorded whole into a CUDA graph. */
#ifndef WM_TIMESTEP_CUH
#define WM_TIMESTEP_CUH

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WM_TIMESTEP_MAX_FRAMES 64 /* the timesteps travel as kernel arguments */

/* dst[f, k] = cos(t[f] w_k), dst[f, half + k] = sin(t[f] w_k), w_k = 10000^(-k / half), half = freq_dim / 2,
 * computed in float64 and rounded to fp32 like the CPU. t: host array of F <= WM_TIMESTEP_MAX_FRAMES. */
cudaError_t wm_cuda_timestep_sinusoid(float *dst, const float *t, int F, int freq_dim, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
