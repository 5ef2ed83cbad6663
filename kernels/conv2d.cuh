/* conv2d.cuh - the data side of the decoder's convolutions when cuDNN is absent (or WM_CONV=im2col):
 * im2col of a band of output rows of a bf16 NHWC image into a bf16 matrix whose rows match the KRSC
 * filter's, so that one GEMM (plugin/src/cuda/) makes NHWC output rows. */
#ifndef WM_CONV2D_CUH
#define WM_CONV2D_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* col[(r - r0)*W + x][(ky*k + kx)*Cp + c] = x[r + ky - k/2][x + kx - k/2][c] for output rows r in
 * [r0, r1), zero outside the image. x is [H, W, Cp] bf16, Cp a multiple of 8, both 16-byte aligned;
 * col is [(r1-r0)*W, k*k*Cp]. */
cudaError_t wm_cuda_im2col_nhwc_bf16(uint16_t *col, const uint16_t *x, int Cp, int H, int W, int k, int r0, int r1,
                                     cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
