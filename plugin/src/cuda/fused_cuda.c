/* fused_cuda.c - backend.h's fused DiT sub-layers on CUDA. The activations between the steps of a
 * sub-layer never make an fp32 round trip: the LayerNorms write the GEMMs' bf16 inputs directly, the
 * self-attention's q, k and v come from one GEMM against the concatenated weights (N = 3C fills the
 * GPU better than three GEMMs of C) and one kernel finishes them (norms, RoPE, K/V store), the FFN's
 * hidden stays bf16, and the cross-attention's output projection accumulates into the residual in
 * the GEMM's epilogue. Each op computes its definition in fused_ref.c with the roundings at the same
 * places (bf16 exactly where the unfused ops convert), which tests/gpu_fused.c checks. */
#include "common.h"
#include "cuda_backend.h"
#include "elementwise.cuh"
#include "norm.cuh"
#include "qkv_post.cuh"

#include <string.h>

static void bad_args(const char *op, const char *why) {
    wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT, "%s: %s", op, why));
}

/* The q|k|v weights [3C, C] bf16 and biases [3C] fp32, concatenated once and kept as the q weight's
 * derived copy (freed with it). Missing biases are zeros. */
typedef struct qkv_weights {
    const uint16_t *w;
    const float *b;
} qkv_weights;

static int qkv_concat(cuda_impl *c, const wm_self_attn_in *a, qkv_weights *out) {
    const size_t C = (size_t)a->C, wbytes = 3 * C * C * sizeof(uint16_t);
    const size_t boff = (wbytes + 255) & ~(size_t)255, bytes = boff + 3 * C * sizeof(float);
    wm_weight *wq = (wm_weight *)a->wq; /* the derived copy is a cache on the handle */
    if (!wq->derived) {
        const wm_weight *ws[3] = {a->wq, a->wk, a->wv}, *bs[3] = {a->bq, a->bk, a->bv};
        for (int i = 0; i < 3; i++)
            if (!ws[i] || ws[i]->n != C * C || (bs[i] && bs[i]->n != C)) {
                bad_args("self_attn_in", "q/k/v weights are not [C, C] with biases of C");
                return 0;
            }
        char *d = wm_cu_malloc(c, bytes, "the concatenated q|k|v weights");
        if (!d) {
            wm_note_failure(WM_ERR_OUT_OF_MEMORY);
            return 0;
        }
        int ok = 1;
        for (int i = 0; i < 3 && ok; i++) {
            ok = wm_cu_ok(cudaMemcpyAsync(d + i * C * C * sizeof(uint16_t), ws[i]->bf16, C * C * sizeof(uint16_t),
                                          cudaMemcpyDeviceToDevice, c->stream),
                          "self_attn_in (weights)");
            float *bd = (float *)(d + boff) + i * C;
            ok = ok && (bs[i] ? wm_cu_ok(cudaMemcpyAsync(bd, bs[i]->f32, C * sizeof(float), cudaMemcpyDeviceToDevice,
                                                         c->stream),
                                         "self_attn_in (biases)")
                              : wm_cu_ok(cudaMemsetAsync(bd, 0, C * sizeof(float), c->stream), "self_attn_in"));
        }
        if (!ok) {
            cudaFree(d);
            return 0;
        }
        wq->derived = d;
        wq->derived_bytes = bytes;
        c->bytes += bytes;
    }
    out->w = wq->derived;
    out->b = (const float *)((const char *)wq->derived + boff);
    return 1;
}

void wm_cu_self_attn_in(wm_backend *be, const wm_self_attn_in *a) {
    cuda_impl *c = cuda_of(be);
    const int M = a->M, C = a->C;
    wm_kv *kv = a->kv;
    if (M <= 0) return;
    if (a->H * a->D != C || kv->dim != C || a->row < 0 || a->row + M > kv->rows) {
        bad_args("self_attn_in", "heads, store width or rows do not fit");
        return;
    }
    qkv_weights w;
    if (!qkv_concat(c, a, &w)) return;
    if (a->write_match && !wm_cu_match_enable(c, kv)) return;
    uint16_t *yb = wm_cu_scratch(c, (size_t)M * C * sizeof(uint16_t), "self_attn_in: normed x (bf16)");
    float *qkv = yb ? wm_cu_scratch(c, (size_t)M * 3 * C * sizeof(float), "self_attn_in: q|k|v") : NULL;
    const size_t off = (size_t)a->row * C;
    if (qkv &&
        wm_cu_ok(wm_cuda_layernorm_mod_bf16(yb, a->x, M, C, a->eps, a->shift, a->scale, a->stride, a->rows_per_group,
                                            c->stream),
                 "self_attn_in: layernorm") &&
        wm_cu_gemm(c, qkv, 0, 0, yb, w.w, w.b, M, C, 3 * C))
        wm_cu_ok(wm_cuda_qkv_post(a->q, kv->k + off, kv->v + off, a->write_match ? kv->match + off : NULL, qkv, M,
                                  a->H, a->D, a->eps, a->norm_q ? a->norm_q->f32 : NULL,
                                  a->norm_k ? a->norm_k->f32 : NULL, a->frame0, a->gh, a->gw, c->stream),
                 "self_attn_in: norms, rope, store");
    wm_cu_scratch_free(c, qkv);
    wm_cu_scratch_free(c, yb);
}

void wm_cu_cross_attn_in(wm_backend *be, float *q, const float *x, int M, int C, float eps, const wm_weight *ln_w,
                         const wm_weight *ln_b, const wm_weight *Wq, const wm_weight *bq, const wm_weight *norm_q,
                         float *y) {
    cuda_impl *c = cuda_of(be);
    (void)y; /* the normed x stays bf16 in scratch */
    if (M <= 0) return;
    uint16_t *yb = wm_cu_scratch(c, (size_t)M * C * sizeof(uint16_t), "cross_attn_in: normed x (bf16)");
    if (!yb) return;
    if (wm_cu_ok(wm_cuda_layernorm_affine_bf16(yb, x, M, C, eps, ln_w ? ln_w->f32 : NULL, ln_b ? ln_b->f32 : NULL,
                                               c->stream),
                 "cross_attn_in: layernorm") &&
        wm_cu_gemm(c, q, 0, 0, yb, Wq->bf16, bq ? bq->f32 : NULL, M, C, C))
        wm_cu_ok(wm_cuda_rmsnorm(q, M, C, eps, norm_q ? norm_q->f32 : NULL, c->stream), "cross_attn_in: rmsnorm");
    wm_cu_scratch_free(c, yb);
}

void wm_cu_linear_add(wm_backend *be, float *x, const float *a, const wm_weight *W, const wm_weight *b, int M, int K,
                      int N, float *tmp) {
    cuda_impl *c = cuda_of(be);
    (void)tmp; /* the GEMM's epilogue adds into x */
    if (M <= 0 || N <= 0 || K <= 0) {
        if (M > 0 && N > 0 && b) wm_cu_ok(wm_cuda_add_bias_rows(x, b->f32, M, N, c->stream), "linear_add bias");
        return;
    }
    uint16_t *ab = wm_cu_to_bf16(c, a, (size_t)M * K, "linear_add input (bf16)");
    if (!ab) return;
    wm_cu_gemm(c, x, 0, 1, ab, W->bf16, b ? b->f32 : NULL, M, K, N);
    wm_cu_scratch_free(c, ab);
}

void wm_cu_ffn_block(wm_backend *be, const wm_ffn_block *a) {
    cuda_impl *c = cuda_of(be);
    const int M = a->M, C = a->C;
    if (M <= 0) return;
    uint16_t *yb = wm_cu_scratch(c, (size_t)M * C * sizeof(uint16_t), "ffn_block: normed x (bf16)");
    if (!yb) return;
    if (wm_cu_ok(wm_cuda_layernorm_mod_bf16(yb, a->x, M, C, a->eps, a->shift, a->scale, a->stride, a->rows_per_group,
                                            c->stream),
                 "ffn_block: layernorm")) {
        wm_cu_ffn_bf16_in(c, a->h, yb, a->w0, a->b0, a->w2, a->b2, M, C, a->F, C);
        wm_cu_ok(wm_cuda_gated_add(a->x, a->h, M, C, a->gate, a->stride, a->rows_per_group, c->stream),
                 "ffn_block: gated residual");
    }
    wm_cu_scratch_free(c, yb);
}
