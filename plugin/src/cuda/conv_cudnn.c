/* conv_cudnn.c - the decoder's 2-D convolutions through cuDNN (it ships with the CUDA libraries) on
 * the CUDA backend's images (image_cuda.c): bf16 NHWC x [H, W, Cinp] -> y [H, W, Coutp], filter bf16
 * KRSC [Coutp, k, k, Cinp], batch 1, stride 1, pad k/2, fp32 accumulation (CUDNN_TENSOR_OP_MATH).
 * Channel counts are multiples of 8 (the images' padding): tensor-core kernels need 16-byte aligned
 * channel rows, so the RGB head (Cout = 3) and odd latent widths stay on the fast path; the zero
 * MACs cost little. Built only when CMake finds cuDNN (WM_HAVE_CUDNN).
 *
 * One cached plan per shape: descriptors + the algorithm of cuDNN's heuristic (a timed search made
 * decoding slower); the workspace comes from the backend's stream-ordered scratch. fp32 NCHW in
 * cuDNN ran at ~21 TFLOP/s on an H200 against 150-310 for these bf16 NHWC plans on an H100
 * (docs/bench/gpu/gpu_ops_h100.txt), which is why the decoder's images are bf16 NHWC.
 *
 * WM_CONV=im2col (environment, read when the backend is created in backend_cuda.c) creates no
 * wm_cudnn: image_cuda.c's im2col + cuBLASLt path runs instead, as it does for any shape whose plan
 * cuDNN refuses. */
#ifdef WM_HAVE_CUDNN
#include "common.h"
#include "cuda_backend.h"

#include <cudnn.h>
#include <stdlib.h>
#include <string.h>

/* room for the decoder's distinct shapes twice over */
#define CONV_PLANS 64

typedef struct conv_plan {
    int Cinp, Coutp, H, W, k; /* the key */
    int ok;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t algo;
    size_t workspace;
} conv_plan;

struct wm_cudnn {
    cudnnHandle_t h;
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
    /* NHWC tensors are still described by (n, c, h, w); the format gives the strides. An NHWC filter
     * is KRSC: [Coutp][k][k][Cinp]. */
    if (cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 1, p->Cinp, p->H, p->W) ||
        cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, 1, p->Coutp, p->H, p->W) ||
        cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, p->Coutp, p->Cinp, p->k, p->k) ||
        cudnnSetConvolution2dDescriptor(p->conv, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ||
        cudnnSetConvolutionMathType(p->conv, CUDNN_TENSOR_OP_MATH))
        return 0;
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

static conv_plan *plan_get(wm_cudnn *d, int Cinp, int Coutp, int H, int W, int k) {
    for (int i = 0; i < d->n_plans; i++) {
        conv_plan *p = &d->plans[i];
        if (p->Cinp == Cinp && p->Coutp == Coutp && p->H == H && p->W == W && p->k == k) return p;
    }
    conv_plan *p;
    if (d->n_plans < CONV_PLANS) p = &d->plans[d->n_plans++];
    else {
        p = &d->plans[d->next];
        d->next = (d->next + 1) % CONV_PLANS;
        plan_destroy(p);
    }
    p->Cinp = Cinp, p->Coutp = Coutp, p->H = H, p->W = W, p->k = k;
    p->ok = plan_build(d, p);
    return p;
}

int wm_cudnn_conv_nhwc(cuda_impl *c, uint16_t *y, const uint16_t *x, const uint16_t *f, int Cinp, int Coutp, int H,
                       int W, int k) {
    wm_cudnn *d = c->cudnn;
    if (!d) return 0;
    conv_plan *p = plan_get(d, Cinp, Coutp, H, W, k);
    if (!p->ok) return 0;
    void *ws = NULL;
    if (p->workspace && !(ws = wm_cu_scratch(c, p->workspace, "cuDNN workspace"))) return 0;
    const float one = 1.0f, zero = 0.0f; /* float scaling for a float compute type */
    const cudnnStatus_t st = cudnnConvolutionForward(d->h, &one, p->x, x, p->w, f, p->conv, p->algo, ws,
                                                     p->workspace, &zero, p->y, y);
    wm_cu_scratch_free(c, ws);
    if (st != CUDNN_STATUS_SUCCESS) {
        p->ok = 0; /* do not try this shape again */
        return 0;
    }
    return 1;
}
#endif
