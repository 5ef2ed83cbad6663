/* fused_ref.c - the definitions of backend.h's fused sub-layer ops, as compositions of primitives
 * (the order of the steps is the model's, docs/MODEL.md section 3). */
#include "fused_ref.h"

void wm_ref_self_attn_in(wm_backend *be, const wm_self_attn_in *a) {
    const int M = a->M, C = a->C;
    be->layernorm_mod(be, a->y, a->x, M, C, a->eps, a->shift, a->scale, a->stride, a->rows_per_group);
    be->linear(be, a->q, a->y, a->wq, a->bq, M, C, C);
    be->rmsnorm(be, a->q, M, C, a->eps, a->norm_q);
    be->linear(be, a->k, a->y, a->wk, a->bk, M, C, C);
    be->rmsnorm(be, a->k, M, C, a->eps, a->norm_k);
    be->linear(be, a->v, a->y, a->wv, a->bv, M, C, C);
    if (a->write_match) be->kv_write_match(be, a->kv, a->row, a->k, M);
    be->rope(be, a->q, M, a->H, a->D, a->frame0, a->gh, a->gw);
    be->rope(be, a->k, M, a->H, a->D, a->frame0, a->gh, a->gw);
    be->kv_write(be, a->kv, a->row, a->k, a->v, M);
}

void wm_ref_cross_attn_in(wm_backend *be, float *q, const float *x, int M, int C, float eps, const wm_weight *ln_w,
                          const wm_weight *ln_b, const wm_weight *Wq, const wm_weight *bq, const wm_weight *norm_q,
                          float *y) {
    be->layernorm_affine(be, y, x, M, C, eps, ln_w, ln_b);
    be->linear(be, q, y, Wq, bq, M, C, C);
    be->rmsnorm(be, q, M, C, eps, norm_q);
}

void wm_ref_linear_add(wm_backend *be, float *x, const float *a, const wm_weight *W, const wm_weight *b, int M, int K,
                       int N, float *tmp) {
    be->linear(be, tmp, a, W, b, M, K, N);
    be->add(be, x, tmp, (size_t)M * N);
}

void wm_ref_ffn_block(wm_backend *be, const wm_ffn_block *a) {
    be->layernorm_mod(be, a->y, a->x, a->M, a->C, a->eps, a->shift, a->scale, a->stride, a->rows_per_group);
    be->ffn(be, a->h, a->y, a->w0, a->b0, a->w2, a->b2, a->M, a->C, a->F, a->C, a->hidden);
    be->gated_add(be, a->x, a->h, a->M, a->C, a->gate, a->stride, a->rows_per_group);
}
