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

void wm_ref_self_attn(wm_backend *be, const wm_self_attn *a) {
    const wm_self_attn_in *in = &a->in;
    const int M = in->M, C = in->C;
    wm_ref_self_attn_in(be, in);
    if (a->probe) a->probe(a->probe_user, 0, in->q, M, in->kv, in->row);
    if (a->lsh)
        be->attention_annsa(be, a->attn, in->q, in->kv, in->row, M, in->H, in->D, a->scale, a->lsh);
    else
        be->attention(be, a->attn, in->q, in->kv, in->row + M, M, in->H, in->D, a->scale);
    be->linear(be, a->proj, a->attn, a->wo, a->bo, M, C, C);
    be->gated_add(be, in->x, a->proj, M, C, a->gate, in->stride, in->rows_per_group);
}

void wm_ref_cross_attn(wm_backend *be, const wm_cross_attn *a) {
    const int M = a->M, C = a->C;
    be->layernorm_affine(be, a->y, a->x, M, C, a->eps, a->ln_w, a->ln_b);
    be->linear(be, a->q, a->y, a->wq, a->bq, M, C, C);
    be->rmsnorm(be, a->q, M, C, a->eps, a->norm_q);
    if (a->probe) a->probe(a->probe_user, 1, a->q, M, a->ctx, a->n_ctx);
    if (a->lsh)
        be->attention_annca(be, a->attn, a->q, a->ctx, a->n_ctx, M, a->H, a->D, a->scale, a->group, a->lsh);
    else
        be->attention(be, a->attn, a->q, a->ctx, a->n_ctx, M, a->H, a->D, a->scale);
    be->linear(be, a->proj, a->attn, a->wo, a->bo, M, C, C);
    be->add(be, a->x, a->proj, (size_t)M * C);
}

void wm_ref_ffn_block(wm_backend *be, const wm_ffn_block *a) {
    be->layernorm_mod(be, a->y, a->x, a->M, a->C, a->eps, a->shift, a->scale, a->stride, a->rows_per_group);
    be->ffn(be, a->h, a->y, a->w0, a->b0, a->w2, a->b2, a->M, a->C, a->F, a->C, a->hidden);
    be->gated_add(be, a->x, a->h, a->M, a->C, a->gate, a->stride, a->rows_per_group);
}
