/* cuda_backend.h - private to plugin/src/cuda/: the CUDA backend's state and its storage formats,
 * shared by backend_cuda.c (memory, weights, K/V, pointwise ops, attention) and gemm.c (linear,
 * conv2d through cuBLAS / cuBLASLt). Nothing outside this folder includes it. */
#ifndef WM_CUDA_BACKEND_H
#define WM_CUDA_BACKEND_H

#include "backend.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

/* A CUDA weight: an fp32 device copy (biases, norms, modulation, embeddings are read as fp32) and a
 * bf16 copy (what linear and conv2d multiply with). The backend interface does not say which use a
 * tensor has, so both copies exist for every weight. */
struct wm_weight {
    float *f32;     /* [n] */
    uint16_t *bf16; /* [n] bf16 bits */
    size_t n;
};

/* A CUDA K/V store: bf16 rows, [rows, dim] each. */
struct wm_kv {
    uint16_t *k, *v;
    float *bias; /* [rows] fp32 additive logit bias, NULL until kv_set_bias */
    int64_t rows;
    int dim;
};

/* One cached cuBLASLt plan for y[M,N] = x[M,K] W^T (+ bias): descriptors and the chosen algorithm.
 * Keyed by the shape, the bias flag and the alignments of x and y (the heuristic depends on them). */
typedef struct cuda_lt_plan {
    int M, N, K, bias;
    unsigned align_x, align_y; /* of the bf16 copy of x and of y */
    int ok;                    /* 0: cuBLASLt found no algorithm; use cublasGemmEx */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} cuda_lt_plan;

#define CUDA_LT_PLANS     64
#define CUDA_LT_WORKSPACE ((size_t)32 << 20)

typedef struct cuda_alloc {
    void *p;
    size_t bytes;
} cuda_alloc;

typedef struct wm_cudnn wm_cudnn; /* conv_cudnn.c; NULL without cuDNN */

typedef struct cuda_impl {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *lt_workspace; /* CUDA_LT_WORKSPACE bytes */
    cudaMemPool_t pool; /* op scratch: stream-ordered, kept reserved between ops */
    cuda_alloc *allocs; /* live allocations of be->alloc, for free() and bytes_in_use */
    size_t n_allocs, cap_allocs;
    size_t bytes;   /* be->alloc + weights + K/V stores */
    int attn_naive; /* WM_ATTN=naive at creation: the naive attention kernel instead of flash */
    cuda_lt_plan plans[CUDA_LT_PLANS];
    int n_plans, next_plan;
    wm_cudnn *cudnn;
} cuda_impl;

static inline cuda_impl *cuda_of(wm_backend *be) { return (cuda_impl *)be->impl; }

/* Records a CUDA / cuBLAS failure (WM_ERR_INTERNAL) in the error message; returns 0 on failure. */
int wm_cu_ok(cudaError_t e, const char *what);
int wm_cublas_ok(cublasStatus_t s, const char *what);
/* Stream-ordered scratch from the backend's pool; NULL with WM_ERR_OUT_OF_MEMORY set. */
void *wm_cu_scratch(cuda_impl *c, size_t bytes, const char *what);
void wm_cu_scratch_free(cuda_impl *c, void *p);

/* conv_cudnn.c (WM_HAVE_CUDNN) */
wm_cudnn *wm_cudnn_new(cudaStream_t stream);
void wm_cudnn_free(wm_cudnn *d);
int wm_cudnn_conv2d(cuda_impl *c, float *y, const float *x, const wm_weight *W, const wm_weight *b, int Cin,
                    int Cout, int H, int Wd, int k);

/* gemm.c */
void wm_cu_ffn(wm_backend *be, float *y, const float *x, const wm_weight *W0, const wm_weight *b0,
               const wm_weight *W2, const wm_weight *b2, int M, int K, int F, int N, float *hidden);
void wm_cu_linear(wm_backend *be, float *y, const float *x, const wm_weight *W, const wm_weight *b, int M,
                  int K, int N);
void wm_cu_conv2d(wm_backend *be, float *y, const float *x, const wm_weight *W, const wm_weight *b, int Cin,
                  int Cout, int H, int Wd, int k);
void wm_cu_plans_free(cuda_impl *c);

#endif
