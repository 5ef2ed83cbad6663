/* noise.cuh - Philox4x32-10 + Box-Muller normal noise (docs/MODEL.md section 5), bit-identical to
 * plugin/src/rng.c: element i of (seed, stream) is the same fp32 value on every backend. */
#ifndef WM_NOISE_CUH
#define WM_NOISE_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] = normal element (first + i) of stream `stream` under `seed`, i < n */
cudaError_t wm_cuda_noise(float *dst, size_t n, uint64_t seed, uint64_t stream, uint64_t first,
                          cudaStream_t cuda_stream);

#ifdef __cplusplus
}
#endif
#endif
