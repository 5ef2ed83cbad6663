/* conv_layout.cuh - the layout conversions around the decoder's bf16 NHWC cuDNN convolutions: the
 * engine keeps activations as fp32 [C, H, W] (NCHW, batch 1), while cuDNN's fast tensor-core
 * kernels want bf16 [H, W, C] with C a multiple of 8 and the filter as bf16 KRSC. Channels are
 * padded to Cp (zeros), so that rows stay 16-byte aligned for any C. bf16 is passed as its uint16_t
 * bits; narrowing rounds to nearest even like convert.cuh. */
#ifndef WM_CONV_LAYOUT_CUH
#define WM_CONV_LAYOUT_CUH

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out [H, W, Cp] bf16 = x [C, H, W] fp32 transposed, channels C..Cp-1 zero.
 * C <= Cp, Cp a multiple of 8, out 16-byte aligned (cudaErrorInvalidValue otherwise). */
cudaError_t wm_cuda_nchw_f32_to_nhwc_bf16(uint16_t *out, const float *x, int C, int Cp, int H, int W,
                                          cudaStream_t stream);
/* y [C, H, W] fp32 = in [H, W, Cp] bf16 (its first C channels) + bias[c] (fp32 [C], NULL: none),
 * the addition done in fp32. C <= Cp, Cp a multiple of 8, in 16-byte aligned. */
cudaError_t wm_cuda_nhwc_bf16_to_nchw_f32(float *y, const uint16_t *in, const float *bias, int C, int Cp, int H,
                                          int W, cudaStream_t stream);
/* out [Coutp, k, k, Cinp] bf16 (KRSC) = w [Cout, Cin, k, k] fp32, zero where co >= Cout or
 * ci >= Cin. Cout <= Coutp, Cin <= Cinp. */
cudaError_t wm_cuda_filter_f32_to_krsc_bf16(uint16_t *out, const float *w, int Cout, int Cin, int k, int Coutp,
                                            int Cinp, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
