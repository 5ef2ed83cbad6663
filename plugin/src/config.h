/* config.h - the model configuration (docs/MODEL.md section 1), parsed from config.json. */
#ifndef WM_CONFIG_H
#define WM_CONFIG_H

#include "wm.h"
#include <stdint.h>

#define WM_MAX_STEPS 16
#define WM_MAX_NAME 64

typedef struct wm_decoder_config {
    int present;
    int channels[4];       /* n0..n3 */
    int space_upscale[3];
    int time_upscale[2];
    int image_channels;
} wm_decoder_config;

/* The streaming loop (docs/MODEL.md section 2): Self-Forcing's chunk by chunk (also CausVid's,
 * LongLive's), the same loop with Euler steps (the shipped game's), or Rolling Forcing's window of
 * blocks at staggered noise levels (docs/CONVERT.md). */
typedef enum wm_sampler_kind {
    WM_SAMPLER_SELF_FORCING = 0,  /* x0 = x - sigma v, re-noised with fresh noise (distilled models) */
    WM_SAMPLER_ROLLING_FORCING = 1,
    WM_SAMPLER_FLOW_EULER = 2     /* the same chunks and steps, x += (sigma' - sigma) v (flow-matching models) */
} wm_sampler_kind;

typedef struct wm_config {
    char name[WM_MAX_NAME];
    /* Wan keys */
    int dim, ffn_dim, num_heads, num_layers;
    int patch_size[3];
    int in_dim, out_dim, text_dim, text_len, freq_dim;
    float eps;
    /* streaming */
    int latent_height, latent_width;
    int num_frame_per_block;
    int n_steps;
    float denoising_step_list[WM_MAX_STEPS];
    int warp_denoising_step;
    float timestep_shift;
    float context_noise;
    int local_attn_size; /* -1 unbounded */
    int sink_size;
    int recache_on_prompt_switch; /* LongLive: re-cache the window after a prompt change (docs/CONVERT.md) */
    int sampler;                  /* wm_sampler_kind */
    int max_cache_frames;
    float fps;
    /* action guidance (MODEL.md section 2): v + w (v - v_idle) on the first action_guidance_steps steps */
    float action_guidance;      /* w; 0 = off (default) */
    int action_guidance_steps;  /* steps guided, from the first; default every step (WM_MAX_STEPS) */
    /* actions */
    int n_buttons, n_axes, action_mouse;
    char button_names[WM_MAX_BUTTONS][WM_MAX_NAME];
    char axis_names[WM_MAX_AXES][WM_MAX_NAME];
    /* text encoder (prompt kind text) */
    int has_text_encoder;
    int vocab_size, max_tokens;
    char **vocab; /* vocab_size strings, owned */
    wm_decoder_config decoder;
} wm_config;

/* Fills `cfg` with the Wan2.1-T2V-1.3B defaults of docs/MODEL.md. */
void wm_config_defaults(wm_config *cfg);
/* Parses config.json text (len bytes, not necessarily NUL-terminated) over the defaults and validates
 * it. Returns WM_ERR_FORMAT (bad JSON) or WM_ERR_CONFIG (unknown key, wrong type or value) with a
 * message naming the key. `cfg` must be freed with wm_config_free even on failure. */
wm_status wm_config_parse(wm_config *cfg, const char *json, size_t len, const char *default_name);
wm_status wm_config_load_file(wm_config *cfg, const char *path, const char *default_name);
void wm_config_free(wm_config *cfg);

/* Derived sizes. */
static inline int wm_config_head_dim(const wm_config *c) { return c->dim / c->num_heads; }
static inline int wm_config_tokens_per_frame(const wm_config *c) {
    return (c->latent_height / c->patch_size[1]) * (c->latent_width / c->patch_size[2]);
}
static inline int wm_config_action_dim(const wm_config *c) {
    return c->n_buttons + c->n_axes + (c->action_mouse ? 2 : 0);
}
static inline int wm_config_time_upscale(const wm_config *c) {
    if (!c->decoder.present) return 1;
    return (c->decoder.time_upscale[0] ? 2 : 1) * (c->decoder.time_upscale[1] ? 2 : 1);
}
static inline int wm_config_space_upscale(const wm_config *c) {
    if (!c->decoder.present) return 1;
    int s = 1;
    for (int i = 0; i < 3; i++) s *= c->decoder.space_upscale[i] ? 2 : 1;
    return s;
}

#endif
