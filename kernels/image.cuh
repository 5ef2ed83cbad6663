/* image.cuh - the CUDA backend's decoder images (backend.h's img_* ops) other than the convolution
 * itself: bf16 [H, W, Cp] (NHWC, batch 1) with Cp = C rounded up to a multiple of 8 and the channels
 * C..Cp-1 zero, so that every pixel row is a whole number of 16-byte vectors. bf16 is passed as its
 * uint16_t bits. All pointers 16-byte aligned (cudaErrorInvalidValue otherwise). */
#ifndef WM_IMAGE_CUH
#define WM_IMAGE_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The convolution's epilogue, in place on y [P, Cp]: y = act(y + bias[c] + res), in fp32, rounded
 * once; bias fp32 [C] or NULL, res an image like y or NULL, act ReLU when relu. Channels >= C stay 0. */
cudaError_t wm_cuda_img_epilogue(uint16_t *y, const float *bias, const uint16_t *res, int C, int Cp, size_t P,
                                 int relu, cudaStream_t stream);
/* y [2H, 2W, Cp] = nearest 2x of x [H, W, Cp] */
cudaError_t wm_cuda_img_upsample2x(uint16_t *y, const uint16_t *x, int Cp, int H, int W, cudaStream_t stream);
/* y [P, round8(2C)] = cat(a, b) along channels, a and b [P, round8(C)] */
cudaError_t wm_cuda_img_concat(uint16_t *y, const uint16_t *a, const uint16_t *b, int C, size_t P,
                               cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
