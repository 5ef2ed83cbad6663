/* gemm.c - the CUDA backend's matrix products: linear (bf16 x bf16 -> fp32 through cuBLASLt with the
 * bias in the epilogue, cublasGemmEx + a bias kernel where cuBLASLt has no algorithm) and conv2d
 * (im2col into bf16 + cublasGemmEx; 1x1 is a plain GEMM). fp32 accumulation throughout. */
#include "common.h"
#include "conv2d.cuh"
#include "convert.cuh"
#include "cuda_backend.h"
#include "elementwise.cuh"

#include <stdint.h>
#include <string.h>

/* largest power of two (<= 256) dividing the address: cuBLASLt picks kernels by alignment */
static unsigned ptr_align(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && a % al) al >>= 1;
    return al;
}

static void plan_destroy(cuda_lt_plan *p) {
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    memset(p, 0, sizeof *p);
}

void wm_cu_plans_free(cuda_impl *c) {
    for (int i = 0; i < c->n_plans; i++) plan_destroy(&c->plans[i]);
    c->n_plans = c->next_plan = 0;
}

/* Column-major view of the row-major product: D (N x M, ld N) = op(A) B with A = W stored K x N
 * (ld K) transposed, B = x stored K x M (ld K). The bias epilogue adds b[row of D] = b[n]. */
static int plan_build(cuda_impl *c, cuda_lt_plan *p) {
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const cublasLtEpilogue_t epi = p->bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    if (cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return 0;
    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, (uint64_t)p->K, (uint64_t)p->N, p->K) ||
        cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, (uint64_t)p->K, (uint64_t)p->M, p->K) ||
        cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, (uint64_t)p->N, (uint64_t)p->M, p->N))
        return 0;
    cublasLtMatmulPreference_t pref;
    if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS) return 0;
    const size_t ws = CUDA_LT_WORKSPACE;
    const uint32_t al_a = 256, al_b = p->align_x, al_cd = p->align_y; /* A: weights from cudaMalloc */
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                         sizeof al_a);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                         sizeof al_b);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_cd,
                                         sizeof al_cd);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_cd,
                                         sizeof al_cd);
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found < 1) return 0;
    p->algo = res.algo;
    return 1;
}

static cuda_lt_plan *plan_get(cuda_impl *c, int M, int N, int K, int bias, unsigned align_x,
                              unsigned align_y) {
    for (int i = 0; i < c->n_plans; i++) {
        cuda_lt_plan *p = &c->plans[i];
        if (p->M == M && p->N == N && p->K == K && p->bias == bias && p->align_x == align_x &&
            p->align_y == align_y)
            return p;
    }
    cuda_lt_plan *p;
    if (c->n_plans < CUDA_LT_PLANS) {
        p = &c->plans[c->n_plans++];
    } else { /* full: replace round-robin */
        p = &c->plans[c->next_plan];
        c->next_plan = (c->next_plan + 1) % CUDA_LT_PLANS;
        plan_destroy(p);
    }
    memset(p, 0, sizeof *p);
    p->M = M, p->N = N, p->K = K, p->bias = bias, p->align_x = align_x, p->align_y = align_y;
    p->ok = plan_build(c, p);
    return p;
}

/* y[M,N] (fp32) = xb[M,K] (bf16) W^T + b: cuBLASLt with the bias epilogue, cublasGemmEx fallback. */
static void gemm_bf16_in(cuda_impl *c, float *y, const uint16_t *xb, const wm_weight *W, const wm_weight *b, int M,
                         int K, int N) {
    const float one = 1.0f, zero = 0.0f;
    cuda_lt_plan *p = plan_get(c, M, N, K, b != NULL, ptr_align(xb), ptr_align(y));
    int done = 0;
    if (p->ok) {
        if (b) {
            const float *bias = b->f32;
            cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        }
        done =
            cublasLtMatmul(c->lt, p->desc, &one, W->bf16, p->a, xb, p->b, &zero, y, p->c, y, p->c, &p->algo,
                           c->lt_workspace, CUDA_LT_WORKSPACE, c->stream) == CUBLAS_STATUS_SUCCESS;
    }
    if (!done) {
        if (wm_cublas_ok(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W->bf16, CUDA_R_16BF,
                                      K, xb, CUDA_R_16BF, K, &zero, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT),
                         "linear (cublasGemmEx)") &&
            b)
            wm_cu_ok(wm_cuda_add_bias_rows(y, b->f32, M, N, c->stream), "linear bias");
    }
}

void wm_cu_linear(wm_backend *be, float *y, const float *x, const wm_weight *W, const wm_weight *b, int M,
                  int K, int N) {
    cuda_impl *c = cuda_of(be);
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* empty sum: y = b */
        wm_cu_ok(wm_cuda_fill(y, 0.0f, (size_t)M * N, c->stream), "linear");
        if (b) wm_cu_ok(wm_cuda_add_bias_rows(y, b->f32, M, N, c->stream), "linear bias");
        return;
    }
    uint16_t *xb = wm_cu_scratch(c, (size_t)M * K * sizeof(uint16_t), "linear input (bf16)");
    if (!xb) return;
    wm_cu_ok(wm_cuda_f32_to_bf16(xb, x, (size_t)M * K, c->stream), "linear: convert x");
    gemm_bf16_in(c, y, xb, W, b, M, K, N);
    wm_cu_scratch_free(c, xb);
}

/* The FFN: GEMM 1 (fp32 out, bias in the epilogue), one pass GELU -> bf16, GEMM 2 straight from
 * that bf16 hidden (no separate GELU and conversion passes over [M, F]). A cuBLASLt GELU_BIAS
 * epilogue with bf16 output was tried and measured slower (H200, 4680x1536x8960: 0.549 ms). */
void wm_cu_ffn(wm_backend *be, float *y, const float *x, const wm_weight *W0, const wm_weight *b0,
               const wm_weight *W2, const wm_weight *b2, int M, int K, int F, int N, float *hidden) {
    cuda_impl *c = cuda_of(be);
    wm_cu_linear(be, hidden, x, W0, b0, M, K, F);
    uint16_t *hb = wm_cu_scratch(c, (size_t)M * F * sizeof(uint16_t), "ffn hidden (bf16)");
    if (!hb) return;
    wm_cu_ok(wm_cuda_gelu_tanh_to_bf16(hb, hidden, (size_t)M * F, c->stream), "ffn gelu");
    gemm_bf16_in(c, y, hb, W2, b2, M, F, N);
    wm_cu_scratch_free(c, hb);
}

/* Bound on the im2col scratch (bf16 elements): 480x832 at Cin = 64 would otherwise need 460 MB. */
#define CONV_COL_ELEMS ((size_t)64 << 20)

void wm_cu_conv2d(wm_backend *be, float *y, const float *x, const wm_weight *Wt, const wm_weight *b, int Cin,
                  int Cout, int H, int Wd, int k) {
    cuda_impl *c = cuda_of(be);
    const size_t HW = (size_t)H * Wd;
    const int K = Cin * k * k;
    if (HW == 0 || Cout <= 0) return;
#ifdef WM_HAVE_CUDNN
    if (wm_cudnn_conv2d(c, y, x, Wt, b, Cin, Cout, H, Wd, k)) return;
#endif
    /* y = bias (or 0), then the GEMM accumulates: y[Cout, HW] += W[Cout, K] @ col[K, HW] */
    if (b) wm_cu_ok(wm_cuda_fill_channels(y, b->f32, Cout, HW, c->stream), "conv2d bias");
    const float one = 1.0f, beta = b ? 1.0f : 0.0f;
    if (k == 1) {
        uint16_t *xb = wm_cu_scratch(c, (size_t)Cin * HW * sizeof(uint16_t), "conv2d input (bf16)");
        if (!xb) return;
        wm_cu_ok(wm_cuda_f32_to_bf16(xb, x, (size_t)Cin * HW, c->stream), "conv2d: convert x");
        /* column-major: y^T (HW x Cout, ld HW) = x^T (HW x Cin, ld HW) W^T (Cin x Cout, ld Cin) */
        wm_cublas_ok(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)HW, Cout, Cin, &one, xb,
                                  CUDA_R_16BF, (int)HW, Wt->bf16, CUDA_R_16BF, Cin, &beta, y, CUDA_R_32F,
                                  (int)HW, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "conv2d 1x1 (cublasGemmEx)");
        wm_cu_scratch_free(c, xb);
        return;
    }
    const size_t row_elems = (size_t)K * Wd;
    int band = (int)(CONV_COL_ELEMS / row_elems);
    if (band < 1) band = 1;
    if (band > H) band = H;
    uint16_t *col = wm_cu_scratch(c, (size_t)band * row_elems * sizeof(uint16_t), "conv2d im2col");
    if (!col) return;
    for (int r0 = 0; r0 < H; r0 += band) {
        const int r1 = r0 + band < H ? r0 + band : H, n = (r1 - r0) * Wd;
        if (!wm_cu_ok(wm_cuda_im2col_bf16(col, x, Cin, H, Wd, k, r0, r1, c->stream), "conv2d im2col")) break;
        /* column-major: y^T[r0*W .. , :] (n x Cout, ld HW) = col^T (n x K, ld n) W^T (K x Cout, ld K) */
        if (!wm_cublas_ok(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, Cout, K, &one, col, CUDA_R_16BF,
                                       n, Wt->bf16, CUDA_R_16BF, K, &beta, y + (size_t)r0 * Wd, CUDA_R_32F,
                                       (int)HW, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                          "conv2d 3x3 (cublasGemmEx)"))
            break;
    }
    wm_cu_scratch_free(c, col);
}
