/* conv_cudnn.c - the decoder's 2-D convolutions through cuDNN (it ships with the CUDA libraries).
 * Batch 1, stride 1, pad k/2; the engine's tensors are fp32 NCHW x [Cin, H, W] -> y [Cout, H, W].
 * Built only when CMake finds cuDNN (WM_HAVE_CUDNN). Two cuDNN paths, one cached plan per shape
 * each (descriptors + the algorithm of cuDNN's heuristic; a timed search made decoding slower),
 * the workspace and the converted tensors from the backend's stream-ordered scratch pool:
 *
 * - bf16 NHWC (the default). fp32 NCHW in cuDNN ran at ~21 TFLOP/s on an H200: its tensor-core
 *   kernels want bf16 channels-last data, so x is transposed to bf16 [H, W, Cinp] and y comes back
 *   as bf16 [H, W, Coutp] (kernels/conv_layout.cu), the filter lives as bf16 KRSC
 *   [Coutp, k, k, Cinp] in the weight's `derived` slot (converted on first use, freed with the
 *   weight), cuDNN accumulates in fp32 (CUDNN_TENSOR_OP_MATH). The bias is added in fp32 while y is
 *   widened back, so no separate fill and beta = 1 pass over y. Cost: y is rounded to bf16 once
 *   (at most 2^-8 relative). Channel counts are padded up to multiples of 8 (zero channels of x,
 *   zero filters, padded outputs never read back) rather than sent to the fp32 plan: tensor-core
 *   kernels need 16-byte aligned channel rows, and the RGB head (Cout = 3) and odd latent widths
 *   would otherwise fall off the fast path; the zero MACs are cheap next to fp32 NCHW.
 *   On an H200 (tests/gpu_ops.c, conversions included) 64->64 3x3 at 480x832 takes 0.16 ms against
 *   0.35 ms in fp32 NCHW; about half of it is the two conversions, which only keeping the
 *   decoder's activations in bf16 NHWC between ops would remove.
 * - fp32 NCHW with TENSOR_OP_MATH_ALLOW_CONVERSION (TF32/bf16 inside cuDNN), the bias pre-filled
 *   and accumulated with beta = 1: the earlier path, kept for timing against it and as the
 *   fallback for any shape whose bf16 plan cuDNN refuses.
 *
 * Switches (environment, read once when the backend is created):
 *   WM_CONV=fp32    only the fp32 NCHW cuDNN path (read here, in wm_cudnn_new)
 *   WM_CONV=im2col  no cuDNN at all: backend_cuda.c creates no wm_cudnn, gemm.c's im2col + cuBLAS
 * Fallback chain: bf16 NHWC plan -> fp32 NCHW plan -> wm_cudnn_conv2d returns 0 and gemm.c runs
 * its im2col path. Any cuDNN or CUDA failure falls through to the next step. */
#ifdef WM_HAVE_CUDNN
#include "common.h"
#include "conv_layout.cuh"
#include "cuda_backend.h"
#include "elementwise.cuh"

#include <cudnn.h>
#include <stdlib.h>
#include <string.h>

/* Both paths cache plans here, so room for the decoder's distinct shapes twice over. */
#define CONV_PLANS 64

typedef struct conv_plan {
    int Cin, Cout, H, W, k, bf16; /* the key */
    int Cinp, Coutp;              /* bf16: channels padded to multiples of 8; fp32: Cin, Cout */
    int ok;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t algo;
    size_t workspace;
} conv_plan;

struct wm_cudnn {
    cudnnHandle_t h;
    int fp32_only; /* WM_CONV=fp32 */
    conv_plan plans[CONV_PLANS];
    int n_plans, next;
};

wm_cudnn *wm_cudnn_new(cudaStream_t stream) {
    wm_cudnn *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    if (cudnnCreate(&d->h) != CUDNN_STATUS_SUCCESS) {
        free(d);
        return NULL;
    }
    if (cudnnSetStream(d->h, stream) != CUDNN_STATUS_SUCCESS) {
        cudnnDestroy(d->h);
        free(d);
        return NULL;
    }
    const char *mode = getenv("WM_CONV");
    d->fp32_only = mode && strcmp(mode, "fp32") == 0;
    return d;
}

static void plan_destroy(conv_plan *p) {
    if (p->x) cudnnDestroyTensorDescriptor(p->x);
    if (p->y) cudnnDestroyTensorDescriptor(p->y);
    if (p->w) cudnnDestroyFilterDescriptor(p->w);
    if (p->conv) cudnnDestroyConvolutionDescriptor(p->conv);
    memset(p, 0, sizeof *p);
}

void wm_cudnn_free(wm_cudnn *d) {
    if (!d) return;
    for (int i = 0; i < d->n_plans; i++) plan_destroy(&d->plans[i]);
    cudnnDestroy(d->h);
    free(d);
}

static int round8(int n) { return (n + 7) / 8 * 8; }

static int plan_build(wm_cudnn *d, conv_plan *p) {
    const int pad = p->k / 2;
    if (cudnnCreateTensorDescriptor(&p->x) || cudnnCreateTensorDescriptor(&p->y) ||
        cudnnCreateFilterDescriptor(&p->w) || cudnnCreateConvolutionDescriptor(&p->conv))
        return 0;
    if (p->bf16) {
        /* NHWC tensors are still described by (n, c, h, w); the format gives the strides. An NHWC
         * filter is KRSC: [Coutp][k][k][Cinp]. */
        if (cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 1, p->Cinp, p->H, p->W) ||
            cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 1, p->Coutp, p->H, p->W) ||
            cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, p->Coutp, p->Cinp, p->k,
                                       p->k) ||
            cudnnSetConvolution2dDescriptor(p->conv, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT) ||
            cudnnSetConvolutionMathType(p->conv, CUDNN_TENSOR_OP_MATH))
            return 0;
    } else {
        if (cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, p->Cin, p->H, p->W) ||
            cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, p->Cout, p->H, p->W) ||
            cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, p->Cout, p->Cin, p->k, p->k) ||
            cudnnSetConvolution2dDescriptor(p->conv, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                            CUDNN_DATA_FLOAT) ||
            cudnnSetConvolutionMathType(p->conv, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
            return 0;
    }
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int found = 0;
    if (cudnnGetConvolutionForwardAlgorithm_v7(d->h, p->x, p->w, p->conv, p->y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                               &found, perf) ||
        found < 1)
        return 0;
    /* best first; entries cuDNN cannot run for these descriptors carry a failed status */
    for (int i = 0; i < found; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
        p->algo = perf[i].algo;
        if (cudnnGetConvolutionForwardWorkspaceSize(d->h, p->x, p->w, p->conv, p->y, p->algo, &p->workspace))
            continue;
        return 1;
    }
    return 0;
}

static conv_plan *plan_get(wm_cudnn *d, int Cin, int Cout, int H, int W, int k, int bf16) {
    for (int i = 0; i < d->n_plans; i++) {
        conv_plan *p = &d->plans[i];
        if (p->Cin == Cin && p->Cout == Cout && p->H == H && p->W == W && p->k == k && p->bf16 == bf16) return p;
    }
    conv_plan *p;
    if (d->n_plans < CONV_PLANS) p = &d->plans[d->n_plans++];
    else {
        p = &d->plans[d->next];
        d->next = (d->next + 1) % CONV_PLANS;
        plan_destroy(p);
    }
    p->Cin = Cin, p->Cout = Cout, p->H = H, p->W = W, p->k = k, p->bf16 = bf16;
    p->Cinp = bf16 ? round8(Cin) : Cin;
    p->Coutp = bf16 ? round8(Cout) : Cout;
    p->ok = plan_build(d, p);
    return p;
}

/* The bf16 KRSC filter [Coutp, k, k, Cinp] of Wt, derived on first use and cached on the weight
 * (freed and uncounted by cu_weight_free). The weight is const to the ops, but `derived` is a cache
 * of its value, not part of it. NULL (fall back) when it cannot be made, or when the slot holds
 * something else: only conv2d derives from conv weights, so a size mismatch means a misuse. */
static const uint16_t *filter_krsc(cuda_impl *c, const wm_weight *Wt, int Cin, int Cout, int k, int Cinp,
                                   int Coutp) {
    const size_t bytes = (size_t)Coutp * k * k * Cinp * sizeof(uint16_t);
    if (Wt->n != (size_t)Cout * Cin * k * k) return NULL;
    wm_cu_derive_lock(c); /* sessions on other threads may get here at the same time */
    if (Wt->derived) {
        const uint16_t *have = Wt->derived_bytes == bytes ? Wt->derived : NULL;
        wm_cu_derive_unlock(c);
        return have;
    }
    uint16_t *f = wm_cu_malloc(c, bytes, "a conv2d filter (bf16 KRSC)");
    if (f && !(wm_cu_ok(wm_cuda_filter_f32_to_krsc_bf16(f, Wt->f32, Cout, Cin, k, Coutp, Cinp, c->stream),
                        "conv2d: filter to bf16 KRSC") &&
               wm_cu_derive_publish(c, (wm_weight *)Wt, f, bytes))) { /* waits for the copy: others read it */
        cudaFree(f);
        f = NULL;
    }
    wm_cu_derive_unlock(c);
    return f;
}

/* The bf16 NHWC path; 1 when y holds the result. */
static int conv_bf16(cuda_impl *c, conv_plan *p, float *y, const float *x, const wm_weight *Wt,
                     const wm_weight *b) {
    const uint16_t *f = filter_krsc(c, Wt, p->Cin, p->Cout, p->k, p->Cinp, p->Coutp);
    if (!f) return 0;
    const size_t HW = (size_t)p->H * p->W;
    uint16_t *xs = wm_cu_scratch(c, HW * p->Cinp * sizeof(uint16_t), "conv2d input (bf16 NHWC)");
    uint16_t *ys = xs ? wm_cu_scratch(c, HW * p->Coutp * sizeof(uint16_t), "conv2d output (bf16 NHWC)") : NULL;
    void *ws = NULL;
    int ok = ys && (!p->workspace || (ws = wm_cu_scratch(c, p->workspace, "cuDNN workspace")));
    ok = ok && wm_cu_ok(wm_cuda_nchw_f32_to_nhwc_bf16(xs, x, p->Cin, p->Cinp, p->H, p->W, c->stream),
                        "conv2d: x to bf16 NHWC");
    if (ok) {
        const float one = 1.0f, zero = 0.0f; /* float scaling for a float compute type */
        if (cudnnConvolutionForward(c->cudnn->h, &one, p->x, xs, p->w, f, p->conv, p->algo, ws, p->workspace,
                                    &zero, p->y, ys) != CUDNN_STATUS_SUCCESS) {
            p->ok = 0; /* do not try this shape in bf16 again */
            ok = 0;
        }
    }
    ok = ok && wm_cu_ok(wm_cuda_nhwc_bf16_to_nchw_f32(y, ys, b ? b->f32 : NULL, p->Cout, p->Coutp, p->H, p->W,
                                                      c->stream),
                        "conv2d: y to fp32 NCHW");
    wm_cu_scratch_free(c, ws);
    wm_cu_scratch_free(c, ys);
    wm_cu_scratch_free(c, xs);
    return ok;
}

/* y = conv(x) (+ b). Returns 1 when cuDNN ran it, 0 to let the caller fall back. */
int wm_cudnn_conv2d(cuda_impl *c, float *y, const float *x, const wm_weight *Wt, const wm_weight *b, int Cin,
                    int Cout, int H, int Wd, int k) {
    wm_cudnn *d = c->cudnn;
    if (!d) return 0;
    if (!d->fp32_only) {
        conv_plan *p = plan_get(d, Cin, Cout, H, Wd, k, 1);
        if (p->ok && conv_bf16(c, p, y, x, Wt, b)) return 1;
    }
    conv_plan *p = plan_get(d, Cin, Cout, H, Wd, k, 0);
    if (!p->ok) return 0;
    void *ws = NULL;
    if (p->workspace && !(ws = wm_cu_scratch(c, p->workspace, "cuDNN workspace"))) return 0;
    const float one = 1.0f, beta = b ? 1.0f : 0.0f;
    if (b) wm_cu_ok(wm_cuda_fill_channels(y, b->f32, Cout, (size_t)H * Wd, c->stream), "conv2d bias");
    cudnnStatus_t st = cudnnConvolutionForward(d->h, &one, p->x, x, p->w, Wt->f32, p->conv, p->algo, ws,
                                               p->workspace, &beta, p->y, y);
    if (ws) wm_cu_scratch_free(c, ws);
    if (st != CUDNN_STATUS_SUCCESS) {
        p->ok = 0; /* do not try this shape again */
        return 0;
    }
    return 1;
}
#endif
