/* conv2d.cuh - the data side of the decoder's 3x3 convolutions: im2col of a band of output rows into
 * a bf16 matrix that cuBLAS multiplies by the bf16 weight (plugin/src/cuda/ does the GEMM). */
#ifndef WM_CONV2D_CUH
#define WM_CONV2D_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* col[(c*k + ky)*k + kx][(r - r0)*W + x] = bf16(x[c][r + ky - k/2][x + kx - k/2]) for output rows
 * r in [r0, r1), zero outside the image. col is [Cin*k*k, (r1-r0)*W] row-major. */
cudaError_t wm_cuda_im2col_bf16(uint16_t *col, const float *x, int Cin, int H, int W, int k, int r0, int r1,
                                cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
