/* conv_cudnn.c - the decoder's 2-D convolutions through cuDNN (it ships with the CUDA libraries):
 * fp32 NCHW tensors with tensor-core math allowed (TF32/bf16 inside cuDNN), the algorithm chosen by
 * cuDNN's heuristic once per shape and cached, the workspace from the backend's scratch pool. The
 * bias is pre-filled and accumulated with beta = 1. Built only when CMake finds cuDNN
 * (WM_HAVE_CUDNN); gemm.c's im2col path is the fallback for any shape cuDNN refuses. */
#ifdef WM_HAVE_CUDNN
#include "common.h"
#include "conv2d.cuh"
#include "cuda_backend.h"
#include "elementwise.cuh"

#include <cudnn.h>
#include <stdlib.h>
#include <string.h>

#define CONV_PLANS 32

typedef struct conv_plan {
    int Cin, Cout, H, W, k, ok;
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
    cudnnSetStream(d->h, stream);
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

static int plan_build(wm_cudnn *d, conv_plan *p) {
    const int pad = p->k / 2;
    if (cudnnCreateTensorDescriptor(&p->x) || cudnnCreateTensorDescriptor(&p->y) ||
        cudnnCreateFilterDescriptor(&p->w) || cudnnCreateConvolutionDescriptor(&p->conv))
        return 0;
    if (cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, p->Cin, p->H, p->W) ||
        cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, p->Cout, p->H, p->W) ||
        cudnnSetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, p->Cout, p->Cin, p->k, p->k) ||
        cudnnSetConvolution2dDescriptor(p->conv, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT) ||
        cudnnSetConvolutionMathType(p->conv, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        return 0;
    cudnnConvolutionFwdAlgoPerf_t perf[8];
    int found = 0;
    if (cudnnGetConvolutionForwardAlgorithm_v7(d->h, p->x, p->w, p->conv, p->y, 8, &found, perf) || found < 1)
        return 0;
    for (int i = 0; i < found; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
        p->algo = perf[i].algo;
        if (cudnnGetConvolutionForwardWorkspaceSize(d->h, p->x, p->w, p->conv, p->y, p->algo, &p->workspace))
            continue;
        return 1;
    }
    return 0;
}

static conv_plan *plan_get(wm_cudnn *d, int Cin, int Cout, int H, int W, int k) {
    for (int i = 0; i < d->n_plans; i++) {
        conv_plan *p = &d->plans[i];
        if (p->Cin == Cin && p->Cout == Cout && p->H == H && p->W == W && p->k == k) return p;
    }
    conv_plan *p;
    if (d->n_plans < CONV_PLANS) p = &d->plans[d->n_plans++];
    else {
        p = &d->plans[d->next];
        d->next = (d->next + 1) % CONV_PLANS;
        plan_destroy(p);
    }
    p->Cin = Cin, p->Cout = Cout, p->H = H, p->W = W, p->k = k;
    p->ok = plan_build(d, p);
    return p;
}

/* y = conv(x) (+ b). Returns 1 when cuDNN ran it, 0 to let the caller fall back. */
int wm_cudnn_conv2d(cuda_impl *c, float *y, const float *x, const wm_weight *Wt, const wm_weight *b, int Cin,
                    int Cout, int H, int Wd, int k) {
    wm_cudnn *d = c->cudnn;
    if (!d) return 0;
    conv_plan *p = plan_get(d, Cin, Cout, H, Wd, k);
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
