/* gemm.c - the CUDA backend's matrix products: wm_cu_gemm (bf16 x bf16 -> fp32 or bf16 through
 * cuBLASLt with the bias, and optionally the accumulation into y, in the epilogue; cublasGemmEx + a
 * bias kernel where cuBLASLt has no algorithm), linear and the FFN on top of it. fp32 accumulation
 * throughout.
 *
 * The algorithm is cuBLASLt's heuristic first choice. Timing the heuristic's candidates on first use
 * was tried (H100, the GEMMs of a Wan-1.3B block: 704.5 TFLOP/s with the heuristic's choice, 698.9
 * tuned) and removed: it gained nothing, and a choice made by timing can differ between processes,
 * which would break the bit-identical replays of the same build on the same GPU. */
#include "common.h"
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
    const cudaDataType_t ty = p->y_bf16 ? CUDA_R_16BF : CUDA_R_32F;
    if (cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) return 0;
    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, (uint64_t)p->K, (uint64_t)p->N, p->K) ||
        cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, (uint64_t)p->K, (uint64_t)p->M, p->K) ||
        cublasLtMatrixLayoutCreate(&p->c, ty, (uint64_t)p->N, (uint64_t)p->M, p->N))
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

static cuda_lt_plan *plan_get(cuda_impl *c, int M, int N, int K, int bias, int y_bf16, unsigned align_x,
                              unsigned align_y) {
    for (int i = 0; i < c->n_plans; i++) {
        cuda_lt_plan *p = &c->plans[i];
        if (p->M == M && p->N == N && p->K == K && p->bias == bias && p->y_bf16 == y_bf16 &&
            p->align_x == align_x && p->align_y == align_y)
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
    p->M = M, p->N = N, p->K = K, p->bias = bias, p->y_bf16 = y_bf16, p->align_x = align_x, p->align_y = align_y;
    p->ok = plan_build(c, p);
    return p;
}

int wm_cu_gemm(cuda_impl *c, void *y, int y_bf16, int accumulate, const uint16_t *xb, const uint16_t *W,
               const void *bias, int M, int K, int N) {
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    if (M <= 0 || N <= 0) return 1;
    cuda_lt_plan *p = plan_get(c, M, N, K, bias != NULL, y_bf16, ptr_align(xb), ptr_align(y));
    if (p->ok) {
        if (bias)
            cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        if (cublasLtMatmul(c->lt, p->desc, &one, W, p->a, xb, p->b, &beta, y, p->c, y, p->c, &p->algo,
                           c->lt_workspace, CUDA_LT_WORKSPACE, c->stream) == CUBLAS_STATUS_SUCCESS)
            return 1;
    }
    /* cublasGemmEx, the bias by a kernel: into y directly for fp32 output without accumulation, else
     * into an fp32 scratch that is then added to y or rounded into it */
    const int direct = !y_bf16 && !accumulate;
    float *t = direct ? y : wm_cu_scratch(c, (size_t)M * N * sizeof(float), "GEMM output (fp32)");
    if (!t) return 0;
    const float zero = 0.0f;
    int ok = wm_cublas_ok(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, W, CUDA_R_16BF, K, xb,
                                       CUDA_R_16BF, K, &zero, t, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
                          "GEMM (cublasGemmEx)");
    if (ok && bias) {
        const float *b32 = bias;
        float *widened = NULL;
        if (y_bf16) { /* the bias comes in y's type */
            widened = wm_cu_scratch(c, (size_t)N * sizeof(float), "GEMM bias (fp32)");
            ok = widened && wm_cu_ok(wm_cuda_bf16_to_f32(widened, bias, (size_t)N, c->stream), "GEMM bias");
            b32 = widened;
        }
        ok = ok && wm_cu_ok(wm_cuda_add_bias_rows(t, b32, M, N, c->stream), "GEMM bias");
        wm_cu_scratch_free(c, widened);
    }
    if (ok && !direct)
        ok = y_bf16 ? wm_cu_ok(wm_cuda_f32_to_bf16(y, t, (size_t)M * N, c->stream), "GEMM output (bf16)")
                    : wm_cu_ok(wm_cuda_add(y, t, (size_t)M * N, c->stream), "GEMM accumulate");
    if (!direct) wm_cu_scratch_free(c, t);
    return ok;
}

uint16_t *wm_cu_to_bf16(cuda_impl *c, const float *x, size_t n, const char *what) {
    uint16_t *xb = wm_cu_scratch(c, n * sizeof(uint16_t), what);
    if (xb && !wm_cu_ok(wm_cuda_f32_to_bf16(xb, x, n, c->stream), what)) {
        wm_cu_scratch_free(c, xb);
        return NULL;
    }
    return xb;
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
    uint16_t *xb = wm_cu_to_bf16(c, x, (size_t)M * K, "linear input (bf16)");
    if (!xb) return;
    wm_cu_gemm(c, y, 0, 0, xb, W->bf16, b ? b->f32 : NULL, M, K, N);
    wm_cu_scratch_free(c, xb);
}

/* The FFN from a bf16 input: GEMM 1 with the (bf16) bias in the epilogue straight to a bf16 hidden, GELU
 * in place on it, GEMM 2 from it. The hidden [M, F] is the largest activation of the model: keeping it
 * bf16 end to end halves its traffic (PyTorch's bf16 Wan rounds it to bf16 before the GELU too).
 * A cuBLASLt GELU_BIAS epilogue was tried and measured slower (H200, 4680x1536x8960: 0.549 ms). */
int wm_cu_ffn_bf16_in(cuda_impl *c, void *y, int y_bf16, const uint16_t *xb, const wm_weight *W0,
                      const wm_weight *b0, const wm_weight *W2, const wm_weight *b2, int M, int K, int F, int N) {
    uint16_t *hb = wm_cu_scratch(c, (size_t)M * F * sizeof(uint16_t), "ffn hidden (bf16)");
    if (!hb) return 0;
    const void *bias2 = !b2 ? NULL : y_bf16 ? (const void *)b2->bf16 : (const void *)b2->f32;
    const int ok = wm_cu_gemm(c, hb, 1, 0, xb, W0->bf16, b0 ? (const void *)b0->bf16 : NULL, M, K, F) &&
                   wm_cu_ok(wm_cuda_gelu_tanh_bf16(hb, (size_t)M * F, c->stream), "ffn gelu") &&
                   wm_cu_gemm(c, y, y_bf16, 0, hb, W2->bf16, bias2, M, F, N);
    wm_cu_scratch_free(c, hb);
    return ok;
}

void wm_cu_ffn(wm_backend *be, float *y, const float *x, const wm_weight *W0, const wm_weight *b0,
               const wm_weight *W2, const wm_weight *b2, int M, int K, int F, int N, float *hidden) {
    cuda_impl *c = cuda_of(be);
    (void)hidden; /* the hidden stays bf16 in the backend's scratch */
    if (M <= 0 || N <= 0) return;
    uint16_t *xb = wm_cu_to_bf16(c, x, (size_t)M * K, "ffn input (bf16)");
    if (!xb) return;
    wm_cu_ffn_bf16_in(c, y, 0, xb, W0, b0, W2, b2, M, K, F, N);
    wm_cu_scratch_free(c, xb);
}
