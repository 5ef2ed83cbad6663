/* dit.c - the causal Wan DiT forward (docs/MODEL.md section 3), written only against backend.h. */
#include "dit.h"

#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define ADD(kind, nd, shape, ...) wm_weights_add(ws, kind, nd, shape, __VA_ARGS__)

static void add_linear(wm_weights *ws, const char *name, int64_t out, int64_t in) {
    ADD(WM_INIT_WEIGHT, 2, SHAPE(out, in), "%s.weight", name);
    ADD(WM_INIT_BIAS, 1, SHAPE(out), "%s.bias", name);
}

/* The manifest lists tensors in checkpoint order; random weights draw their streams in this order. */
void wm_dit_manifest(const wm_config *c, wm_weights *ws) {
    const int64_t D = c->dim, P = (int64_t)c->patch_size[1] * c->patch_size[2];
    ADD(WM_INIT_WEIGHT, 5, SHAPE(D, c->in_dim, c->patch_size[0], c->patch_size[1], c->patch_size[2]),
        "patch_embedding.weight");
    ADD(WM_INIT_BIAS, 1, SHAPE(D), "patch_embedding.bias");
    add_linear(ws, "text_embedding.0", D, c->text_dim);
    add_linear(ws, "text_embedding.2", D, D);
    add_linear(ws, "time_embedding.0", D, c->freq_dim);
    add_linear(ws, "time_embedding.2", D, D);
    add_linear(ws, "time_projection.1", 6 * D, D);
    for (int l = 0; l < c->num_layers; l++) {
        char n[64];
        ADD(WM_INIT_MOD, 3, SHAPE(1, 6, D), "blocks.%d.modulation", l);
        const char *attn[2] = {"self_attn", "cross_attn"};
        for (int a = 0; a < 2; a++) {
            const char *proj[4] = {"q", "k", "v", "o"};
            for (int p = 0; p < 4; p++) {
                snprintf(n, sizeof n, "blocks.%d.%s.%s", l, attn[a], proj[p]);
                add_linear(ws, n, D, D);
            }
            ADD(WM_INIT_NORM, 1, SHAPE(D), "blocks.%d.%s.norm_q.weight", l, attn[a]);
            ADD(WM_INIT_NORM, 1, SHAPE(D), "blocks.%d.%s.norm_k.weight", l, attn[a]);
        }
        ADD(WM_INIT_NORM, 1, SHAPE(D), "blocks.%d.norm3.weight", l);
        ADD(WM_INIT_BIAS, 1, SHAPE(D), "blocks.%d.norm3.bias", l);
        snprintf(n, sizeof n, "blocks.%d.ffn.0", l);
        add_linear(ws, n, c->ffn_dim, D);
        snprintf(n, sizeof n, "blocks.%d.ffn.2", l);
        add_linear(ws, n, D, c->ffn_dim);
    }
    ADD(WM_INIT_MOD, 3, SHAPE(1, 2, D), "head.modulation");
    add_linear(ws, "head.head", P * c->out_dim, D);
    if (wm_config_action_dim(c) > 0) {
        add_linear(ws, "action_embedding.0", D, wm_config_action_dim(c));
        add_linear(ws, "action_embedding.2", D, D);
    }
}

typedef struct binder {
    const wm_weights *ws;
    wm_status st;
} binder;

static const wm_weight *get(binder *b, const char *fmt, int l, const char *s1, const char *s2) {
    char name[WM_MAX_TENSOR_NAME];
    if (l >= 0) snprintf(name, sizeof name, fmt, l, s1, s2);
    else snprintf(name, sizeof name, fmt, s1, s2);
    const wm_weight *w = wm_weights_get(b->ws, name);
    if (!w && b->st == WM_OK) b->st = wm_set_error(WM_ERR_INTERNAL, "weight '%s' was not bound", name);
    return w;
}
#define G(name) get(&b, "%s%s", -1, name, "")
#define GB(l, a, p) get(&b, "blocks.%d.%s.%s", l, a, p)

wm_status wm_dit_bind(wm_dit *d, const wm_config *c, wm_backend *be, const wm_weights *ws) {
    memset(d, 0, sizeof *d);
    d->cfg = c;
    d->be = be;
    binder b = {ws, WM_OK};
    d->patch_w = G("patch_embedding.weight"), d->patch_b = G("patch_embedding.bias");
    d->text0_w = G("text_embedding.0.weight"), d->text0_b = G("text_embedding.0.bias");
    d->text2_w = G("text_embedding.2.weight"), d->text2_b = G("text_embedding.2.bias");
    d->time0_w = G("time_embedding.0.weight"), d->time0_b = G("time_embedding.0.bias");
    d->time2_w = G("time_embedding.2.weight"), d->time2_b = G("time_embedding.2.bias");
    d->tproj_w = G("time_projection.1.weight"), d->tproj_b = G("time_projection.1.bias");
    d->head_mod = G("head.modulation"), d->head_w = G("head.head.weight"), d->head_b = G("head.head.bias");
    if (wm_config_action_dim(c) > 0) {
        d->act0_w = G("action_embedding.0.weight"), d->act0_b = G("action_embedding.0.bias");
        d->act2_w = G("action_embedding.2.weight"), d->act2_b = G("action_embedding.2.bias");
    }
    d->blocks = calloc((size_t)c->num_layers, sizeof *d->blocks);
    if (!d->blocks) return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the block table");
    for (int l = 0; l < c->num_layers; l++) {
        wm_dit_block *k = &d->blocks[l];
        k->modulation = get(&b, "blocks.%d.%s%s", l, "modulation", "");
        k->sa_q_w = GB(l, "self_attn", "q.weight"), k->sa_q_b = GB(l, "self_attn", "q.bias");
        k->sa_k_w = GB(l, "self_attn", "k.weight"), k->sa_k_b = GB(l, "self_attn", "k.bias");
        k->sa_v_w = GB(l, "self_attn", "v.weight"), k->sa_v_b = GB(l, "self_attn", "v.bias");
        k->sa_o_w = GB(l, "self_attn", "o.weight"), k->sa_o_b = GB(l, "self_attn", "o.bias");
        k->sa_norm_q = GB(l, "self_attn", "norm_q.weight"), k->sa_norm_k = GB(l, "self_attn", "norm_k.weight");
        k->ca_q_w = GB(l, "cross_attn", "q.weight"), k->ca_q_b = GB(l, "cross_attn", "q.bias");
        k->ca_k_w = GB(l, "cross_attn", "k.weight"), k->ca_k_b = GB(l, "cross_attn", "k.bias");
        k->ca_v_w = GB(l, "cross_attn", "v.weight"), k->ca_v_b = GB(l, "cross_attn", "v.bias");
        k->ca_o_w = GB(l, "cross_attn", "o.weight"), k->ca_o_b = GB(l, "cross_attn", "o.bias");
        k->ca_norm_q = GB(l, "cross_attn", "norm_q.weight"), k->ca_norm_k = GB(l, "cross_attn", "norm_k.weight");
        k->norm3_w = GB(l, "norm3", "weight"), k->norm3_b = GB(l, "norm3", "bias");
        k->ffn0_w = GB(l, "ffn", "0.weight"), k->ffn0_b = GB(l, "ffn", "0.bias");
        k->ffn2_w = GB(l, "ffn", "2.weight"), k->ffn2_b = GB(l, "ffn", "2.bias");
    }
    return b.st;
}

void wm_dit_unbind(wm_dit *d) {
    free(d->blocks);
    d->blocks = NULL;
}

wm_status wm_dit_work_new(wm_dit_work *w, const wm_dit *d, wm_backend *be, int max_frames) {
    const wm_config *c = d->cfg;
    memset(w, 0, sizeof *w);
    w->be = be;
    w->max_frames = max_frames;
    w->max_tokens = w->max_frames * wm_config_tokens_per_frame(c);
    /* the context pass reuses the token buffers, so they hold at least text_len rows */
    size_t N = (size_t)(w->max_tokens > c->text_len ? w->max_tokens : c->text_len);
    size_t D = (size_t)c->dim, F = (size_t)w->max_frames, P = (size_t)c->patch_size[1] * c->patch_size[2];
    size_t act = (size_t)wm_config_action_dim(c);
    size_t pin = (size_t)c->in_dim * P > (size_t)c->text_dim ? (size_t)c->in_dim * P : (size_t)c->text_dim;
    struct { float **p; size_t n; } bufs[] = {
        {&w->x, N * D}, {&w->y, N * D}, {&w->q, N * D}, {&w->k, N * D}, {&w->v, N * D}, {&w->attn, N * D}, {&w->proj, N * D},
        {&w->hidden, N * (size_t)c->ffn_dim}, {&w->patches, N * pin}, {&w->out, N * P * (size_t)c->out_dim},
        {&w->tsin, F * (size_t)c->freq_dim}, {&w->e, F * D}, {&w->e_act, F * D}, {&w->e0, F * 6 * D},
        {&w->mod, F * 6 * D}, {&w->head_mod, F * 2 * D}, {&w->act, F * (act ? act : 1)},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i].p = be->alloc(be, bufs[i].n);
        if (!*bufs[i].p) {
            wm_dit_work_free(w);
            return WM_ERR_OUT_OF_MEMORY;
        }
    }
    return WM_OK;
}

void wm_dit_work_free(wm_dit_work *w) {
    wm_backend *be = w->be;
    float **all[] = {&w->x, &w->y, &w->q, &w->k, &w->v, &w->attn, &w->proj, &w->hidden, &w->patches, &w->out,
                     &w->tsin, &w->e, &w->e_act, &w->e0, &w->mod, &w->head_mod, &w->act};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (*all[i] && be) be->free(be, *all[i]);
        *all[i] = NULL;
    }
}

void wm_dit_context(const wm_dit *d, wm_dit_work *w, const float *emb, wm_kv **ctx) {
    const wm_config *c = d->cfg;
    wm_backend *be = w->be;
    const int L = c->text_len, D = c->dim;
    be->linear(be, w->x, emb, d->text0_w, d->text0_b, L, c->text_dim, D);
    be->gelu_tanh(be, w->x, (size_t)L * D);
    be->linear(be, w->y, w->x, d->text2_w, d->text2_b, L, D, D); /* y = context [L, dim] */
    for (int l = 0; l < c->num_layers; l++) {
        const wm_dit_block *k = &d->blocks[l];
        be->linear(be, w->k, w->y, k->ca_k_w, k->ca_k_b, L, D, D);
        be->rmsnorm(be, w->k, L, D, c->eps, k->ca_norm_k);
        be->linear(be, w->v, w->y, k->ca_v_w, k->ca_v_b, L, D, D);
        be->kv_write(be, ctx[l], 0, w->k, w->v, L);
    }
}

/* Everything of a forward after its actions are uploaded: only backend ops (the timesteps are read by
 * the sinusoid op as the call is made), so a backend may record it as one unit (capture_begin). */
static void forward_ops(const wm_dit *d, wm_dit_work *w, float *v, const float *x_lat, const float *t,
                        int with_actions, int F, int64_t frame0, wm_kv **kv, const wm_attn_plan *plan, wm_kv **ctx) {
    const wm_config *c = d->cfg;
    wm_backend *be = w->be;
    const int D = c->dim, H = c->num_heads, HD = D / H, ph = c->patch_size[1], pw = c->patch_size[2];
    const int gh = c->latent_height / ph, gw = c->latent_width / pw, tpf = gh * gw, N = F * tpf;
    const int P = ph * pw, C = c->in_dim;
    const float scale = 1.0f / sqrtf((float)HD);

    /* time (and action) embedding: e [F, D], e0 [F, 6D] */
    be->timestep_sinusoid(be, w->tsin, t, F, c->freq_dim);
    be->linear(be, w->proj, w->tsin, d->time0_w, d->time0_b, F, c->freq_dim, D);
    be->silu(be, w->proj, (size_t)F * D);
    be->linear(be, w->e, w->proj, d->time2_w, d->time2_b, F, D, D);
    if (with_actions) {
        const int A = wm_config_action_dim(c);
        be->linear(be, w->proj, w->act, d->act0_w, d->act0_b, F, A, D);
        be->silu(be, w->proj, (size_t)F * D);
        be->linear(be, w->e_act, w->proj, d->act2_w, d->act2_b, F, D, D);
        be->add(be, w->e, w->e_act, (size_t)F * D);
    }
    be->copy(be, w->proj, w->e, (size_t)F * D);
    be->silu(be, w->proj, (size_t)F * D);
    be->linear(be, w->e0, w->proj, d->tproj_w, d->tproj_b, F, D, 6 * D);

    /* patch embedding as patches @ W^T: the Conv3d weight [D, C, 1, ph, pw] is already [D, C*P] */
    be->patchify(be, w->patches, x_lat, F, C, c->latent_height, c->latent_width, ph, pw);
    be->linear(be, w->x, w->patches, d->patch_w, d->patch_b, N, C * P, D);

    for (int l = 0; l < c->num_layers; l++) {
        const wm_dit_block *k = &d->blocks[l];
        const float *modw = be->weight_f32(be, k->modulation);
        /* m[f] = modulation + e0[f], [F, 6, D]; chunk i at offset i*D */
        be->copy(be, w->mod, w->e0, (size_t)F * 6 * D);
        for (int f = 0; f < F; f++) be->add(be, w->mod + (size_t)f * 6 * D, modw, (size_t)6 * D);
        const int st = 6 * D;
        float *m0 = w->mod, *m1 = w->mod + D, *m2 = w->mod + 2 * D, *m3 = w->mod + 3 * D, *m4 = w->mod + 4 * D,
              *m5 = w->mod + 5 * D;

        /* self-attention over [cache rows 0..n_valid ; this call's rows]; the keys (pre-RoPE on the
         * match plane: docs/ACCEL.md) and values of this call go to the store at n_valid */
        const int probe = plan->probe && l == plan->probe_layer;
        const wm_self_attn sa = {
            .in = {.q = w->q, .x = w->x, .M = N, .C = D, .H = H, .D = HD, .eps = c->eps,
                   .shift = m0, .scale = m1, .stride = st, .rows_per_group = tpf,
                   .wq = k->sa_q_w, .bq = k->sa_q_b, .wk = k->sa_k_w, .bk = k->sa_k_b, .wv = k->sa_v_w,
                   .bv = k->sa_v_b, .norm_q = k->sa_norm_q, .norm_k = k->sa_norm_k,
                   .frame0 = frame0, .gh = gh, .gw = gw,
                   .kv = kv[l], .row = plan->n_valid[l], .write_match = plan->write_match,
                   .y = w->y, .k = w->k, .v = w->v},
            .scale = scale,
            .lsh = plan->sa_lsh && ((plan->sa_layers >> (l < 63 ? l : 63)) & 1u) ? plan->sa_lsh : NULL,
            .wo = k->sa_o_w, .bo = k->sa_o_b, .gate = m2,
            .probe = probe ? plan->probe : NULL, .probe_user = plan->probe_user,
            .attn = w->attn, .proj = w->proj,
        };
        if (plan->kv_only && l == c->num_layers - 1) { /* nothing after this layer's K/V is kept */
            be->self_attn_in(be, &sa.in);
            return;
        }
        be->self_attn(be, &sa);

        const wm_cross_attn ca = {
            .x = w->x, .M = N, .C = D, .H = H, .D = HD, .eps = c->eps, .scale = scale,
            .ln_w = k->norm3_w, .ln_b = k->norm3_b, .wq = k->ca_q_w, .bq = k->ca_q_b, .norm_q = k->ca_norm_q,
            .wo = k->ca_o_w, .bo = k->ca_o_b, .ctx = ctx[l], .n_ctx = c->text_len,
            .lsh = plan->ca_lsh, .group = tpf,
            .probe = probe ? plan->probe : NULL, .probe_user = plan->probe_user,
            .q = w->q, .y = w->y, .attn = w->attn, .proj = w->proj,
        };
        be->cross_attn(be, &ca);

        /* FFN */
        const wm_ffn_block ff = {
            .x = w->x, .M = N, .C = D, .F = c->ffn_dim, .eps = c->eps,
            .shift = m3, .scale = m4, .gate = m5, .stride = st, .rows_per_group = tpf,
            .w0 = k->ffn0_w, .b0 = k->ffn0_b, .w2 = k->ffn2_w, .b2 = k->ffn2_b,
            .y = w->y, .h = w->proj, .hidden = w->hidden,
        };
        be->ffn_block(be, &ff);
    }

    /* head: (n0, n1) = head.modulation + e[f] */
    const float *hm = be->weight_f32(be, d->head_mod);
    for (int f = 0; f < F; f++) {
        be->copy(be, w->head_mod + (size_t)f * 2 * D, hm, (size_t)2 * D);
        be->add(be, w->head_mod + (size_t)f * 2 * D, w->e + (size_t)f * D, (size_t)D);
        be->add(be, w->head_mod + (size_t)f * 2 * D + D, w->e + (size_t)f * D, (size_t)D);
    }
    be->layernorm_mod(be, w->y, w->x, N, D, c->eps, w->head_mod, w->head_mod + D, 2 * D, tpf);
    be->linear(be, w->out, w->y, d->head_w, d->head_b, N, D, P * c->out_dim);
    be->unpatchify(be, v, w->out, F, c->out_dim, c->latent_height, c->latent_width, ph, pw);
}

void wm_dit_forward(const wm_dit *d, wm_dit_work *w, float *v, const float *x_lat, const float *t,
                    const float *actions, int F, int64_t frame0, wm_kv **kv, const wm_attn_plan *plan,
                    wm_kv **ctx) {
    const wm_config *c = d->cfg;
    wm_backend *be = w->be;
    if (F > w->max_frames) {
        wm_note_failure(wm_set_error(WM_ERR_INVALID_ARGUMENT, "a forward of %d frames; the scratch holds %d", F, w->max_frames));
        return;
    }
    const int with_actions = d->act0_w && actions;
    if (with_actions) be->upload(be, w->act, actions, (size_t)F * wm_config_action_dim(c));
    /* the recall probe reads q back on the host: such a forward runs op by op */
    const int captured = be->capture_begin && !plan->probe && be->capture_begin(be, WM_CAPTURE_FORWARD, 0);
    forward_ops(d, w, v, x_lat, t, with_actions, F, frame0, kv, plan, ctx);
    if (captured && !be->capture_end(be)) forward_ops(d, w, v, x_lat, t, with_actions, F, frame0, kv, plan, ctx);
}
