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

/* Scratch for one forward of up to max_tokens tokens, and the backend the forwards run on. Owned by a
 * session (not the model), so that sessions on different threads never share buffers or a backend. */
typedef struct wm_dit_work {
    wm_backend *be; /* the session's (a fork of the model's): allocates this scratch, runs the forwards */
    int max_frames, max_tokens;
    float *x, *y, *q, *k, *v, *attn, *proj, *hidden; /* [N, dim] / [N, ffn_dim] */
    float *patches, *out;                                /* [N, C*4] */
    float *tsin, *e, *e_act, *e0, *mod, *head_mod, *act; /* per-frame vectors */
} wm_dit_work;

typedef struct wm_dit {
    const wm_config *cfg;
    wm_backend *be; /* the model's: the weights are its */
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

/* be: the backend the forwards will run on (a session's), which shares the weights of dit->be */
/* max_frames: the most latent frames one forward takes (a chunk; Rolling Forcing's whole window) */
wm_status wm_dit_work_new(wm_dit_work *w, const wm_dit *dit, wm_backend *be, int max_frames);
void wm_dit_work_free(wm_dit_work *w);

/* Cross-attention K/V of a prompt: emb [text_len, text_dim] (zero-padded, backend memory) ->
 * ctx[l] rows [0, text_len) for every layer l. Runs on w->be, as wm_dit_forward does. */
void wm_dit_context(const wm_dit *dit, wm_dit_work *w, const float *emb, wm_kv **ctx);

/* How one forward's attention runs (docs/ACCEL.md). With sa_lsh, ca_lsh and write_match off it is
 * the dense forward. */
typedef struct wm_attn_plan {
    const int64_t *n_valid; /* [layers] committed rows of each layer's cache */
    int write_match;        /* store this call's unit-norm pre-RoPE keys (TempCache's match plane) */
    const wm_lsh *sa_lsh;   /* AnnSA on the layers whose bit is set in sa_layers (bit 63 covers l >= 63) */
    uint64_t sa_layers;
    const wm_lsh *ca_lsh;   /* AnnCA on every layer */
    /* Recall probe: called at layer probe_layer with the attention's queries (backend memory) before
     * the self-attention (cross = 0) and the cross-attention (cross = 1). */
    wm_attn_probe_fn probe;
    void *probe_user;
    int probe_layer;
    /* Only the K/V this call stores matter (the cache pass): the last layer stops once they are
     * written, and v is not computed. */
    int kv_only;
} wm_attn_plan;

/* v[F,C,H,W] = DiT(x[F,C,H,W], per-frame timesteps t[F] (host), per-frame action vectors
 * actions[F][action_dim] (host; NULL when the model has none)), frames starting at frame0.
 * kv[l]: layer l's self-attention cache holding plan->n_valid[l] rows (K after RoPE); this call's
 * K/V are written after them and attention runs over those rows and this call's. The caller decides
 * whether the new rows are kept (the clean pass) or overwritten by the next call (denoising passes).
 * With plan->kv_only, v is left as it was. */
void wm_dit_forward(const wm_dit *dit, wm_dit_work *w, float *v, const float *x, const float *t,
                    const float *actions, int F, int64_t frame0, wm_kv **kv, const wm_attn_plan *plan,
                    wm_kv **ctx);

#endif
