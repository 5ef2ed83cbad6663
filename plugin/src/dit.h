/* dit.h - the causal Wan DiT (docs/MODEL.md section 3) as a list of named blocks bound to weights
 * whose names are the checkpoint's. Stateless: the KV cache and the prompt's cross-attention K/V
 * belong to the session and are passed in. */
#ifndef WM_DIT_H
#define WM_DIT_H

#include "backend.h"
#include "config.h"
#include "weights.h"

typedef struct wm_dit_block {
    const wm_weight *modulation;
    const wm_weight *sa_q_w, *sa_q_b, *sa_k_w, *sa_k_b, *sa_v_w, *sa_v_b, *sa_o_w, *sa_o_b, *sa_norm_q, *sa_norm_k;
    const wm_weight *ca_q_w, *ca_q_b, *ca_k_w, *ca_k_b, *ca_v_w, *ca_v_b, *ca_o_w, *ca_o_b, *ca_norm_q, *ca_norm_k;
    const wm_weight *norm3_w, *norm3_b;
    const wm_weight *ffn0_w, *ffn0_b, *ffn2_w, *ffn2_b;
} wm_dit_block;

/* Scratch for one forward of up to max_tokens tokens. Owned by a session (not the model), so that
 * sessions on different threads never share buffers. */
typedef struct wm_dit_work {
    int max_frames, max_tokens;
    float *x, *y, *q, *k, *v, *attn, *proj, *hidden; /* [N, dim] / [N, ffn_dim] */
    float *patches, *out;                                /* [N, C*4] */
    float *tsin, *e, *e_act, *e0, *mod, *head_mod, *act; /* per-frame vectors */
} wm_dit_work;

typedef struct wm_dit {
    const wm_config *cfg;
    wm_backend *be;
    const wm_weight *patch_w, *patch_b;
    const wm_weight *text0_w, *text0_b, *text2_w, *text2_b;
    const wm_weight *time0_w, *time0_b, *time2_w, *time2_b, *tproj_w, *tproj_b;
    const wm_weight *act0_w, *act0_b, *act2_w, *act2_b; /* NULL without actions */
    const wm_weight *head_mod, *head_w, *head_b;
    wm_dit_block *blocks;
} wm_dit;


void wm_dit_manifest(const wm_config *cfg, wm_weights *ws);
wm_status wm_dit_bind(wm_dit *dit, const wm_config *cfg, wm_backend *be, const wm_weights *ws);
void wm_dit_unbind(wm_dit *dit);

wm_status wm_dit_work_new(wm_dit_work *w, const wm_dit *dit);
void wm_dit_work_free(wm_dit_work *w, wm_backend *be);

/* Cross-attention K/V of a prompt: emb [text_len, text_dim] (zero-padded, backend memory) ->
 * ctx[l] rows [0, text_len) for every layer l. */
void wm_dit_context(const wm_dit *dit, wm_dit_work *w, const float *emb, wm_kv **ctx);

/* v[F,C,H,W] = DiT(x[F,C,H,W], per-frame timesteps t[F] (host), per-frame action vectors
 * actions[F][action_dim] (host; NULL when the model has none)), frames starting at frame0.
 * kv[l]: layer l's self-attention cache holding n_valid rows (K after RoPE); this call's K/V are
 * written at row n_valid and attention runs over rows [0, n_valid + N). The caller decides whether
 * those rows are kept (the clean pass) or overwritten by the next call (denoising passes). */
void wm_dit_forward(const wm_dit *dit, wm_dit_work *w, float *v, const float *x, const float *t,
                    const float *actions, int F, int64_t frame0, wm_kv **kv, int64_t n_valid, wm_kv **ctx);

#endif
