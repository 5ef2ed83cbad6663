/* image_cuda.c - backend.h's decoder images on CUDA: bf16 [H, W, Cp] (NHWC), Cp = C rounded up to a
 * multiple of 8 with zero channels past C. That is the layout cuDNN's tensor-core convolutions read
 * and write, so the decoder's convolutions chain without conversions; only the latent coming in and
 * the RGB going out are converted (kernels/conv_layout.cu). When the decoder kept fp32 NCHW between
 * ops, half of each convolution's time was the two conversions around it (H100: 2.1 ms per 480x832
 * frame; docs/bench/README.md has the numbers since).
 *
 * img_conv: the filter as bf16 KRSC in the weight's `derived` slot, then cuDNN (conv_cudnn.c) or,
 * without cuDNN or with WM_CONV=im2col, im2col (kernels/conv2d.cu) + one cuBLASLt GEMM per band of
 * rows (gemm.c); then one epilogue pass for bias, residual and ReLU (kernels/image.cu), skipped when
 * there are none. The convolution's output is rounded to bf16 before the epilogue adds the bias in
 * fp32 and rounds again: at most one more half-ulp than a fused epilogue, and cuDNN's fused
 * conv-bias-activation does not take a residual. */
#include "common.h"
#include "conv2d.cuh"
#include "conv_layout.cuh"
#include "cuda_backend.h"
#include "image.cuh"

#include <stdint.h>

static int round8(int n) { return (n + 7) / 8 * 8; }

static size_t cu_img_bytes(wm_backend *be, int C, int H, int W) {
    (void)be;
    return (size_t)H * W * round8(C) * sizeof(uint16_t);
}

static void cu_img_from_f32(wm_backend *be, void *img, const float *x, int C, int H, int W) {
    cuda_impl *c = cuda_of(be);
    wm_cu_ok(wm_cuda_nchw_f32_to_nhwc_bf16(img, x, C, round8(C), H, W, c->stream), "img_from_f32");
}

static void cu_img_to_f32(wm_backend *be, float *x, const void *img, int C, int H, int W) {
    cuda_impl *c = cuda_of(be);
    wm_cu_ok(wm_cuda_nhwc_bf16_to_nchw_f32(x, img, NULL, C, round8(C), H, W, c->stream), "img_to_f32");
}

static void cu_img_copy(wm_backend *be, void *y, const void *x, int C, int H, int W) {
    cuda_impl *c = cuda_of(be);
    wm_cu_ok(cudaMemcpyAsync(y, x, cu_img_bytes(be, C, H, W), cudaMemcpyDeviceToDevice, c->stream), "img_copy");
}

static void cu_img_concat(wm_backend *be, void *y, const void *a, const void *b, int C, int H, int W) {
    cuda_impl *c = cuda_of(be);
    wm_cu_ok(wm_cuda_img_concat(y, a, b, C, (size_t)H * W, c->stream), "img_concat");
}

static void cu_img_upsample2x(wm_backend *be, void *y, const void *x, int C, int H, int W) {
    cuda_impl *c = cuda_of(be);
    wm_cu_ok(wm_cuda_img_upsample2x(y, x, round8(C), H, W, c->stream), "img_upsample2x");
}

/* The bf16 KRSC filter of the output channels [o0, o0 + Cout) of Wt [Ctot, Cin, k, k]. The derived copy
 * holds all Ctot / Cout slices, each padded to [Coutp, k, k, Cinp] (zeros), so any slice is one
 * pointer into it; derived on first use and cached on the weight (freed and counted with it), under
 * the root's lock since sessions on other threads may get there at the same time. The weight is
 * const to the ops, but `derived` is a cache of its value, not part of it. NULL (message set) when it
 * cannot be made or when the slot holds something else: only img_conv derives from conv weights, so
 * a size mismatch means a misuse. */
static const uint16_t *filter_krsc(cuda_impl *c, const wm_weight *Wt, int o0, int Cin, int Cout, int k) {
    const int Cinp = round8(Cin), Coutp = round8(Cout);
    const size_t per_out = (size_t)Cin * k * k, slice = (size_t)Coutp * k * k * Cinp;
    if (Cout <= 0 || Wt->n % (per_out * Cout) || o0 % Cout || (size_t)(o0 + Cout) * per_out > Wt->n) {
        wm_note_failure(wm_set_error(WM_ERR_INTERNAL, "img_conv: weight of %zu values is not [%d x %d, %d, %d, %d]",
                                     Wt->n, Cout, (int)(Wt->n / (per_out * Cout)), Cin, k, k));
        return NULL;
    }
    const int slices = (int)(Wt->n / (per_out * Cout));
    const size_t bytes = slices * slice * sizeof(uint16_t);
    wm_cu_derive_lock(c);
    const uint16_t *f = Wt->derived;
    if (!f && c->graph.capturing) { /* the copy would only be recorded; the uncaptured rerun makes it */
        wm_note_failure(wm_set_error(WM_ERR_INTERNAL, "img_conv: a conv filter derived during a capture"));
    } else if (!f) {
        uint16_t *d = wm_cu_malloc(c, bytes, "a conv filter (bf16 KRSC)");
        int ok = d != NULL;
        for (int s = 0; ok && s < slices; s++)
            ok = wm_cu_ok(wm_cuda_filter_f32_to_krsc_bf16(d + s * slice, Wt->f32 + s * Cout * per_out, Cout, Cin, k,
                                                          Coutp, Cinp, c->stream),
                          "img_conv: filter to bf16 KRSC");
        if (ok && wm_cu_derive_publish(c, (wm_weight *)Wt, d, bytes)) /* waits for the copy: other sessions read it */
            f = d;
        else if (d)
            cudaFree(d);
    } else if (Wt->derived_bytes != bytes) {
        f = NULL;
        wm_note_failure(wm_set_error(WM_ERR_INTERNAL, "img_conv: the weight's derived copy is not a conv filter"));
    }
    wm_cu_derive_unlock(c);
    return f ? f + (size_t)(o0 / Cout) * slice : NULL;
}

/* Bound on the im2col scratch (bf16 elements) of the fallback: 480x832 at Cin = 64 would otherwise
 * need 460 MB. */
#define CONV_COL_ELEMS ((size_t)64 << 20)

/* y [H*W, Coutp] = im2col(x) [H*W, k*k*Cinp] f^T, in bands of rows; 1x1 needs no im2col. */
static int conv_im2col(cuda_impl *c, uint16_t *y, const uint16_t *x, const uint16_t *f, int Cinp, int Coutp,
                       int H, int W, int k) {
    const int K = k * k * Cinp;
    if (k == 1) return wm_cu_gemm(c, y, 1, 0, x, f, NULL, H * W, K, Coutp);
    const size_t row_elems = (size_t)K * W;
    int band = (int)(CONV_COL_ELEMS / row_elems);
    if (band < 1) band = 1;
    if (band > H) band = H;
    uint16_t *col = wm_cu_scratch(c, (size_t)band * row_elems * sizeof(uint16_t), "img_conv im2col");
    int ok = col != NULL;
    for (int r0 = 0; ok && r0 < H; r0 += band) {
        const int r1 = r0 + band < H ? r0 + band : H;
        ok = wm_cu_ok(wm_cuda_im2col_nhwc_bf16(col, x, Cinp, H, W, k, r0, r1, c->stream), "img_conv im2col") &&
             wm_cu_gemm(c, y + (size_t)r0 * W * Coutp, 1, 0, col, f, NULL, (r1 - r0) * W, K, Coutp);
    }
    wm_cu_scratch_free(c, col);
    return ok;
}

static void cu_img_conv(wm_backend *be, void *y, const void *x, const wm_weight *Wt, const wm_weight *b, int o0,
                        int Cin, int Cout, int H, int Wd, int k, const void *res, int relu) {
    cuda_impl *c = cuda_of(be);
    if (H <= 0 || Wd <= 0 || Cout <= 0) return;
    const uint16_t *f = filter_krsc(c, Wt, o0, Cin, Cout, k);
    if (!f) return;
    const int Cinp = round8(Cin), Coutp = round8(Cout);
    int ok = 0;
#ifdef WM_HAVE_CUDNN
    ok = wm_cudnn_conv_nhwc(c, y, x, f, Cinp, Coutp, H, Wd, k);
#endif
    if (!ok && !conv_im2col(c, y, x, f, Cinp, Coutp, H, Wd, k)) return;
    if (b || res || relu)
        wm_cu_ok(wm_cuda_img_epilogue(y, b ? b->f32 + o0 : NULL, res, Cout, Coutp, (size_t)H * Wd, relu, c->stream),
                 "img_conv epilogue");
}

void wm_cu_image_ops(wm_backend *be) {
    be->img_bytes = cu_img_bytes;
    be->img_from_f32 = cu_img_from_f32;
    be->img_to_f32 = cu_img_to_f32;
    be->img_conv = cu_img_conv;
    be->img_upsample2x = cu_img_upsample2x;
    be->img_concat = cu_img_concat;
    be->img_copy = cu_img_copy;
}
