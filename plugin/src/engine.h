/* engine.h - the plugin's two objects: wm_model (immutable: config, backend, weights) and
 * wm_session (one stream: prompt, actions, KV cache, decoder state, frames waiting to be read). */
#ifndef WM_ENGINE_H
#define WM_ENGINE_H

#include "accel.h"
#include "backend.h"
#include "cache.h"
#include "common.h"
#include "config.h"
#include "decoder.h"
#include "dit.h"
#include "rolling.h"
#include "weights.h"

#define WM_ACTION_QUEUE 1024

struct wm_model {
    wm_config cfg;
    wm_backend *be;
    wm_weights weights;
    wm_dit dit;
    const wm_weight *tok_emb, *pos_emb; /* text encoder, NULL for embedding prompts */
    wm_logger log;
    wm_abort_fn abort_cb;
    void *abort_user_data;
    const char *button_ptrs[WM_MAX_BUTTONS];
    const char *axis_ptrs[WM_MAX_AXES];
};

struct wm_session {
    wm_model *m;
    /* the session's backend: a fork of m->be (backend.h) where the backend has one, else m->be itself;
     * everything on the session's path runs and allocates on it */
    wm_backend *be;
    uint64_t seed;
    wm_abort_fn abort_cb;
    void *abort_user_data;
    /* the self-attention cache and its policy (cache.h) */
    int window, sinks; /* latent frames; window -1 = unbounded */
    float guidance;    /* action guidance w of this session (config or session params) */
    int cap_frames;    /* frames of rows each store holds (policy plus one chunk) */
    int tpf;           /* tokens per latent frame */
    wm_cache cache;
    /* accelerations (accel.h) */
    wm_accel_params accel;
    wm_lsh *sa_lsh, *ca_lsh;
    int probe_sa, probe_ca; /* the probe of this chunk measures these */
    /* position */
    int64_t next_latent;    /* absolute index of the next latent frame */
    int64_t chunks;
    int64_t video_frames;   /* video frames produced since reset */
    /* prompt */
    int has_prompt;
    float *prompt_host; /* [text_len, text_dim], zero-padded */
    float *prompt_dev;
    wm_kv **ctx;        /* [num_layers] cross-attention K/V of the prompt */
    /* sampler buffers (backend) [F, C, H, W] */
    wm_dit_work work;
    float *x, *v, *x0, *eps;
    float *latents_host;  /* last chunk's x0 */
    float *latents_spare; /* the next chunk's x0 arrives here, and becomes latents_host at the commit */
    int latents_pinned;   /* both latent buffers page-locked by be->pin_host */
    int latents_frames;
    /* LongLive's re-cache on a prompt switch (config recache_on_prompt_switch, docs/CONVERT.md): the
     * clean latents and actions of the last recache_chunks committed chunks, oldest first (host) */
    int recache_chunks, recache_n, recache_pending;
    float *recache_lat;      /* [recache_chunks][F, C, H, W] */
    float *recache_act;      /* [recache_chunks][F, action_dim] (at least 1 float per frame) */
    int64_t *recache_frame0; /* [recache_chunks] */
    /* Rolling Forcing's window (config sampler rolling_forcing; rolling.h): cache above is its history */
    wm_rolling roll;
    /* decoder and frames waiting to be read (host RGB8, tightly packed) */
    wm_decoder *dec;
    float *dec_out; /* [frames per chunk * time_upscale, 3, Hp, Wp] backend */
    int width, height, upscale;
    uint8_t *frames; /* ring of max_pending frames */
    int frames_pinned; /* page-locked by be->pin_host */
    int max_pending, n_pending, first_pending;
    int64_t first_pending_index;
    /* actions for video frames next_video .. */
    wm_action queue[WM_ACTION_QUEUE];
    int q_len;
    wm_action last_action;
    wm_stats stats;
};

wm_status wm_model_load_impl(const wm_model_params *p, wm_model **out);
void wm_model_free_impl(wm_model *m);
void wm_model_info_fill(const wm_model *m, wm_model_info *info);

wm_status wm_session_new_impl(wm_model *m, const wm_session_params *p, wm_session **out);
void wm_session_free_impl(wm_session *s);
wm_status wm_session_set_prompt_text_impl(wm_session *s, const char *text);
wm_status wm_session_set_prompt_emb_impl(wm_session *s, const float *emb, int n_tokens, int dim);
wm_status wm_session_push_action_impl(wm_session *s, const wm_action *a);
wm_status wm_session_generate_impl(wm_session *s, int *n_frames);
wm_status wm_session_prefill_impl(wm_session *s, const float *latents, int n_frames, int *n_video);
wm_status wm_session_read_frame_impl(wm_session *s, uint8_t *rgb, size_t pitch, size_t size, int64_t *index);
wm_status wm_session_read_latents_impl(wm_session *s, float *dst, size_t n, int *n_frames);
wm_status wm_session_reset_impl(wm_session *s);
wm_status wm_session_set_accel_impl(wm_session *s, const wm_accel_params *a);
size_t wm_session_state_size_impl(const wm_session *s);
wm_status wm_session_state_save_impl(const wm_session *s, void *dst, size_t size);
wm_status wm_session_state_load_impl(wm_session *s, const void *src, size_t size);
void wm_session_stats_impl(const wm_session *s, wm_stats *out);

/* sampler.c */
/* The chunk's timesteps t_0 > .. > t_{n-1} after warping (docs/MODEL.md section 2). */
int wm_sampler_timesteps(const wm_config *c, float *t);
/* sigma of a timestep: the nearest entry of the shifted flow table (docs/MODEL.md section 2). */
float wm_sampler_sigma(const wm_config *c, float t);
/* Denoises the next chunk and commits its K/V. x0 of the chunk ends in s->x0. */
wm_status wm_sampler_chunk(wm_session *s);
/* The cache pass over the chunk's clean latents in s->x0 (actions: per-frame vectors or NULL), then
 * the commit and eviction; the latents' host copy goes to s->latents_host. The last step of
 * wm_sampler_chunk, and all of a context prefill. */
wm_status wm_sampler_commit(wm_session *s, const float *actions);
/* Per-latent-frame action vectors of the next chunk from the queue (not consumed). */
void wm_sampler_chunk_actions(const wm_session *s, float *out, int F);

/* rolling.c (rolling.h) */
wm_status wm_rolling_init(wm_session *s);
void wm_rolling_free(wm_session *s);
void wm_rolling_reset(wm_session *s);
/* Iterates the window until a block is final; it ends in s->x0, committed like a chunk. */
wm_status wm_rolling_chunk(wm_session *s);
/* The first block's K/V, just committed as the cache's first rows, become the sink. */
void wm_rolling_keep_sink(wm_session *s);

/* text.c */
/* Tokenizes `text` (docs/MODEL.md section 6). Writes at most max ids, returns the count. */
int wm_tokenize(const wm_config *c, const char *text, int *ids, int max);

#endif
