/* fused_cuda.c - backend.h's fused DiT sub-layers on CUDA. Between the steps of a sub-layer the
 * activations stay bf16 where the next step is a GEMM or attention, which round their inputs to bf16
 * anyway: the LayerNorms write the GEMMs' bf16 inputs directly; q, k and v come from one GEMM against
 * the concatenated weights (N = 3C fills the GPU better than three GEMMs of C) with a bf16 output,
 * finished by one kernel (norms, RoPE, K/V store, q for the flash kernel); the flash kernel writes
 * bf16 for the output projection; the GEMMs whose results only feed a gated residual write bf16 too,
 * and the cross-attention's output projection accumulates into the residual in its epilogue. The
 * residual stream x and every norm stay fp32. Compared with the definitions (fused_ref.c) the values
 * differ by the extra bf16 roundings of GEMM outputs (as in PyTorch's bf16 Wan); tests/gpu_fused.c
 * compares both ways. */
#include "common.h"
#include "convert.cuh"
#include "cuda_backend.h"
#include "elementwise.cuh"
#include "flash_attn.cuh"
#include "norm.cuh"
#include "qkv_post.cuh"

#include <string.h>

static void bad_args(const char *op, const char *why) {
    wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT, "%s: %s", op, why));
}

/* The q|k|v weights [3C, C] and biases [3C], bf16 (the GEMM writes bf16, and cuBLASLt reads the bias in
 * the output's type), concatenated once and kept as the q weight's derived copy (freed with it).
 * Missing biases are zeros. Sessions on other threads may want the same copy at the same time: it is
 * made and read under the root's lock (wm_cu_derive_lock). */
typedef struct qkv_weights {
    const uint16_t *w, *b;
} qkv_weights;

/* The concatenation into new device memory, published as wq's derived copy; NULL on failure. Called
 * with the derive lock held. */
static void *qkv_make(cuda_impl *c, const wm_self_attn_in *a, size_t boff, size_t bytes) {
    const size_t C = (size_t)a->C;
    const wm_weight *ws[3] = {a->wq, a->wk, a->wv}, *bs[3] = {a->bq, a->bk, a->bv};
    for (int i = 0; i < 3; i++)
        if (!ws[i] || ws[i]->n != C * C || (bs[i] && bs[i]->n != C)) {
            bad_args("self_attn_in", "q/k/v weights are not [C, C] with biases of C");
            return NULL;
        }
    /* never inside a graph capture (graph_cuda.c's first call of a backend, uncaptured, makes it): the
     * copies would only be recorded, and the publication waits for the stream */
    if (c->graph.capturing) {
        wm_note_failure(wm_set_error(WM_ERR_INTERNAL, "self_attn_in: q|k|v weights derived during a capture"));
        return NULL;
    }
    char *d = wm_cu_malloc(c, bytes, "the concatenated q|k|v weights");
    if (!d) {
        wm_note_failure(WM_ERR_OUT_OF_MEMORY);
        return NULL;
    }
    int ok = 1;
    for (int i = 0; i < 3 && ok; i++) {
        ok = wm_cu_ok(cudaMemcpyAsync(d + i * C * C * sizeof(uint16_t), ws[i]->bf16, C * C * sizeof(uint16_t),
                                      cudaMemcpyDeviceToDevice, c->stream),
                      "self_attn_in (weights)");
        uint16_t *bd = (uint16_t *)(d + boff) + i * C;
        ok = ok && (bs[i] ? wm_cu_ok(cudaMemcpyAsync(bd, bs[i]->bf16, C * sizeof(uint16_t),
                                                     cudaMemcpyDeviceToDevice, c->stream),
                                     "self_attn_in (biases)")
                          : wm_cu_ok(cudaMemsetAsync(bd, 0, C * sizeof(uint16_t), c->stream), "self_attn_in"));
    }
    if (!ok || !wm_cu_derive_publish(c, (wm_weight *)a->wq, d, bytes)) {
        cudaFree(d);
        return NULL;
    }
    return d;
}

static int qkv_concat(cuda_impl *c, const wm_self_attn_in *a, qkv_weights *out) {
    const size_t C = (size_t)a->C, wbytes = 3 * C * C * sizeof(uint16_t);
    const size_t boff = (wbytes + 255) & ~(size_t)255, bytes = boff + 3 * C * sizeof(uint16_t);
    /* the derived copy is a cache on the handle, shared by every session: made once, under the lock */
    wm_cu_derive_lock(c);
    const void *d = a->wq->derived ? a->wq->derived : qkv_make(c, a, boff, bytes);
    wm_cu_derive_unlock(c);
    if (!d) return 0;
    out->w = d;
    out->b = (const uint16_t *)((const char *)d + boff);
    return 1;
}

/* The self-attention input into the store, and q as bf16 into qb (NULL: not needed). */
static int sa_in(cuda_impl *c, const wm_self_attn_in *a, uint16_t *qb) {
    const int M = a->M, C = a->C;
    wm_kv *kv = a->kv;
    if (a->H * a->D != C || kv->dim != C || a->row < 0 || a->row + M > kv->rows) {
        bad_args("self_attn_in", "heads, store width or rows do not fit");
        return 0;
    }
    qkv_weights w;
    if (!qkv_concat(c, a, &w)) return 0;
    if (a->write_match && !wm_cu_match_enable(c, kv)) return 0;
    uint16_t *yb = wm_cu_scratch(c, (size_t)M * C * sizeof(uint16_t), "self_attn_in: normed x (bf16)");
    uint16_t *qkv = yb ? wm_cu_scratch(c, (size_t)M * 3 * C * sizeof(uint16_t), "self_attn_in: q|k|v") : NULL;
    float *angles = qkv ? wm_cu_scratch(c, wm_cuda_qkv_post_table_floats(M, a->D, a->gh, a->gw) * sizeof(float),
                                        "self_attn_in: RoPE angles")
                        : NULL;
    const size_t off = (size_t)a->row * C;
    const int ok =
        angles &&
        wm_cu_ok(wm_cuda_layernorm_mod_bf16(yb, a->x, M, C, a->eps, a->shift, a->scale, a->stride, a->rows_per_group,
                                            c->stream),
                 "self_attn_in: layernorm") &&
        wm_cu_gemm(c, qkv, 1, 0, yb, w.w, w.b, M, C, 3 * C) &&
        wm_cu_ok(wm_cuda_qkv_post(qb, kv->k + off, kv->v + off, a->write_match ? kv->match + off : NULL, qkv, M, a->H,
                                  a->D, a->eps, a->norm_q ? a->norm_q->f32 : NULL, a->norm_k ? a->norm_k->f32 : NULL,
                                  a->frame0, a->gh, a->gw, angles, c->stream),
                 "self_attn_in: norms, rope, store");
    wm_cu_scratch_free(c, angles);
    wm_cu_scratch_free(c, qkv);
    wm_cu_scratch_free(c, yb);
    return ok;
}

void wm_cu_self_attn_in(wm_backend *be, const wm_self_attn_in *a) {
    cuda_impl *c = cuda_of(be);
    if (a->M <= 0) return;
    uint16_t *qb = wm_cu_scratch(c, (size_t)a->M * a->C * sizeof(uint16_t), "self_attn_in: q (bf16)");
    if (!qb) return;
    if (sa_in(c, a, qb))
        wm_cu_ok(wm_cuda_bf16_to_f32(a->q, qb, (size_t)a->M * a->C, c->stream), "self_attn_in: q");
    wm_cu_scratch_free(c, qb);
}

/* ob = attention of the bf16 queries qb over rows [0, n) of kv, written as bf16. The flash kernel does
 * it directly; where it cannot (WM_ATTN=naive, a shape it refuses) the backend's attention runs on
 * fp32 copies (q_f32, attn_f32: fp32 scratch [M, H*D]). */
static int attend_bf16(wm_backend *be, uint16_t *ob, const uint16_t *qb, const wm_kv *kv, int64_t n, int M, int H,
                       int D, float scale, float *q_f32, float *attn_f32) {
    cuda_impl *c = cuda_of(be);
    const size_t cnt = (size_t)M * H * D;
    if (n == 0) return wm_cu_ok(cudaMemsetAsync(ob, 0, cnt * sizeof(uint16_t), c->stream), "attention (no keys)");
    if (!c->attn_naive && (int64_t)H * D == kv->dim && n <= kv->rows && n <= INT32_MAX) {
        wm_fa_args f;
        memset(&f, 0, sizeof f);
        f.q = qb, f.ldq = (int64_t)H * D;
        f.k = kv->k, f.v = kv->v, f.ldkv = kv->dim;
        f.out16 = ob, f.ldo = (int64_t)H * D;
        f.Mq = M, f.Mk = (int)n, f.H = H, f.D = D;
        f.scale = scale;
        f.key_bias = kv->bias, f.bias_head_stride = 0;
        if (wm_flash_attn(&f, c->stream) == 0) return 1;
    }
    if (!wm_cu_ok(wm_cuda_bf16_to_f32(q_f32, qb, cnt, c->stream), "attention: q")) return 0;
    be->attention(be, attn_f32, q_f32, kv, n, M, H, D, scale);
    return wm_cu_ok(wm_cuda_f32_to_bf16(ob, attn_f32, cnt, c->stream), "attention: output");
}

void wm_cu_self_attn(wm_backend *be, const wm_self_attn *a) {
    cuda_impl *c = cuda_of(be);
    const wm_self_attn_in *in = &a->in;
    const int M = in->M, C = in->C;
    const size_t cnt = (size_t)M * C;
    if (M <= 0) return;
    uint16_t *qb = wm_cu_scratch(c, cnt * sizeof(uint16_t), "self_attn: q (bf16)");
    uint16_t *ob = qb ? wm_cu_scratch(c, cnt * sizeof(uint16_t), "self_attn: attention (bf16)") : NULL;
    int ok = ob && sa_in(c, in, qb);
    /* the probe and AnnSA take fp32 queries: the bf16 ones widened (exactly) */
    if (ok && (a->probe || a->lsh)) ok = wm_cu_ok(wm_cuda_bf16_to_f32(in->q, qb, cnt, c->stream), "self_attn: q");
    if (ok && a->probe) a->probe(a->probe_user, 0, in->q, M, in->kv, in->row);
    if (ok) {
        if (a->lsh) {
            be->attention_annsa(be, a->attn, in->q, in->kv, in->row, M, in->H, in->D, a->scale, a->lsh);
            ok = wm_cu_ok(wm_cuda_f32_to_bf16(ob, a->attn, cnt, c->stream), "self_attn: output");
        } else {
            ok = attend_bf16(be, ob, qb, in->kv, in->row + M, M, in->H, in->D, a->scale, in->q, a->attn);
        }
    }
    /* h = o-projection (bf16, it only feeds the gated residual), then x += gate * h; h reuses qb */
    if (ok && wm_cu_gemm(c, qb, 1, 0, ob, a->wo->bf16, a->bo ? (const void *)a->bo->bf16 : NULL, M, C, C))
        wm_cu_ok(wm_cuda_gated_add_bf16(in->x, qb, M, C, a->gate, in->stride, in->rows_per_group, c->stream),
                 "self_attn: gated residual");
    wm_cu_scratch_free(c, ob);
    wm_cu_scratch_free(c, qb);
}

void wm_cu_cross_attn(wm_backend *be, const wm_cross_attn *a) {
    cuda_impl *c = cuda_of(be);
    const int M = a->M, C = a->C;
    const size_t cnt = (size_t)M * C;
    if (M <= 0) return;
    uint16_t *yb = wm_cu_scratch(c, cnt * sizeof(uint16_t), "cross_attn: normed x (bf16)");
    uint16_t *qb = yb ? wm_cu_scratch(c, cnt * sizeof(uint16_t), "cross_attn: q (bf16)") : NULL;
    int ok = qb &&
             wm_cu_ok(wm_cuda_layernorm_affine_bf16(yb, a->x, M, C, a->eps, a->ln_w ? a->ln_w->f32 : NULL,
                                                    a->ln_b ? a->ln_b->f32 : NULL, c->stream),
                      "cross_attn: layernorm") &&
             wm_cu_gemm(c, qb, 1, 0, yb, a->wq->bf16, a->bq ? (const void *)a->bq->bf16 : NULL, M, C, C) &&
             wm_cu_ok(wm_cuda_rmsnorm_bf16(qb, M, C, a->eps, a->norm_q ? a->norm_q->f32 : NULL, c->stream),
                      "cross_attn: rmsnorm");
    if (ok && (a->probe || a->lsh)) ok = wm_cu_ok(wm_cuda_bf16_to_f32(a->q, qb, cnt, c->stream), "cross_attn: q");
    if (ok && a->probe) a->probe(a->probe_user, 1, a->q, M, a->ctx, a->n_ctx);
    uint16_t *ob = yb; /* the attention's output reuses the normed x */
    if (ok) {
        if (a->lsh) {
            be->attention_annca(be, a->attn, a->q, a->ctx, a->n_ctx, M, a->H, a->D, a->scale, a->group, a->lsh);
            ok = wm_cu_ok(wm_cuda_f32_to_bf16(ob, a->attn, cnt, c->stream), "cross_attn: output");
        } else {
            ok = attend_bf16(be, ob, qb, a->ctx, a->n_ctx, M, a->H, a->D, a->scale, a->q, a->attn);
        }
    }
    /* x += o-projection, accumulated in the GEMM's epilogue (fp32) */
    if (ok) wm_cu_gemm(c, a->x, 0, 1, ob, a->wo->bf16, a->bo ? (const void *)a->bo->f32 : NULL, M, C, C);
    wm_cu_scratch_free(c, qb);
    wm_cu_scratch_free(c, yb);
}

void wm_cu_ffn_block(wm_backend *be, const wm_ffn_block *a) {
    cuda_impl *c = cuda_of(be);
    const int M = a->M, C = a->C;
    if (M <= 0) return;
    uint16_t *yb = wm_cu_scratch(c, (size_t)M * C * sizeof(uint16_t), "ffn_block: normed x (bf16)");
    uint16_t *hb = yb ? wm_cu_scratch(c, (size_t)M * C * sizeof(uint16_t), "ffn_block: output (bf16)") : NULL;
    if (hb &&
        wm_cu_ok(wm_cuda_layernorm_mod_bf16(yb, a->x, M, C, a->eps, a->shift, a->scale, a->stride, a->rows_per_group,
                                            c->stream),
                 "ffn_block: layernorm") &&
        wm_cu_ffn_bf16_in(c, hb, 1, yb, a->w0, a->b0, a->w2, a->b2, M, C, a->F, C))
        wm_cu_ok(wm_cuda_gated_add_bf16(a->x, hb, M, C, a->gate, a->stride, a->rows_per_group, c->stream),
                 "ffn_block: gated residual");
    wm_cu_scratch_free(c, hb);
    wm_cu_scratch_free(c, yb);
}
