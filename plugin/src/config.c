/* config.c - config.json: defaults, parsing and validation (docs/MODEL.md section 1).
 *
 * Every key is checked for its type and range as it is read; constraints that tie several keys
 * together (dim / num_heads, latent grid / patch, window / sinks / chunk, ...) are checked once all
 * keys are in, so key order in the file does not matter. Every error names the key. */
#include "config.h"

#include "common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Upper bounds far above any real model; they keep derived sizes well inside int range. */
#define CFG_MAX_WIDTH 65536   /* dim, ffn_dim, text_dim, freq_dim, text_len, decoder channels */
#define CFG_MAX_LAYERS 1000
#define CFG_MAX_LATENT_CH 1024
#define CFG_MAX_PATCH 64
#define CFG_MAX_GRID 16384    /* latent_height, latent_width */
#define CFG_MAX_FRAMES (1 << 20)
#define CFG_MAX_FILE ((long)256 << 20)

void wm_config_defaults(wm_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->name, sizeof cfg->name, "%s", "Wan2.1-T2V-1.3B");
    cfg->dim = 1536;
    cfg->ffn_dim = 8960;
    cfg->num_heads = 12;
    cfg->num_layers = 30;
    cfg->patch_size[0] = 1;
    cfg->patch_size[1] = 2;
    cfg->patch_size[2] = 2;
    cfg->in_dim = 16;
    cfg->out_dim = 16;
    cfg->text_dim = 4096;
    cfg->text_len = 512;
    cfg->freq_dim = 256;
    cfg->eps = 1e-6f;
    cfg->latent_height = 60;
    cfg->latent_width = 104;
    cfg->num_frame_per_block = 3;
    cfg->n_steps = 4;
    cfg->denoising_step_list[0] = 1000;
    cfg->denoising_step_list[1] = 750;
    cfg->denoising_step_list[2] = 500;
    cfg->denoising_step_list[3] = 250;
    cfg->warp_denoising_step = 1;
    cfg->timestep_shift = 5.0f;
    cfg->context_noise = 0;
    cfg->action_guidance = 0;
    cfg->action_guidance_steps = WM_MAX_STEPS;
    cfg->local_attn_size = -1;
    cfg->sink_size = 0;
    cfg->recache_on_prompt_switch = 0;
    cfg->sampler = WM_SAMPLER_SELF_FORCING;
    cfg->max_cache_frames = 21;
    cfg->fps = 16;
    cfg->n_buttons = 0;
    cfg->n_axes = 0;
    cfg->action_mouse = 0;
    cfg->has_text_encoder = 0;
    cfg->vocab_size = 0;
    cfg->max_tokens = 0;
    cfg->vocab = NULL;
    cfg->decoder.present = 0;
}

void wm_config_free(wm_config *cfg) {
    if (!cfg) return;
    if (cfg->vocab) {
        for (int i = 0; i < cfg->vocab_size; i++) free(cfg->vocab[i]);
        free(cfg->vocab);
    }
    cfg->vocab = NULL;
    cfg->vocab_size = 0;
}

/* ---- typed readers: each names the key (and the file) in its error ---- */

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsBool(v)) return "a bool";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

static wm_status get_int(const cJSON *v, const char *label, const char *key, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(v))
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' must be an integer, got %s", label, key, json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || floor(d) != d)
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' must be an integer, got %g", label, key, d);
    if (d < lo || d > hi)
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' = %.0f is out of range [%d, %d]", label, key, d, lo, hi);
    *out = (int)d;
    return WM_OK;
}

/* A number converted to float that must be finite and in [lo, hi] (open at lo when lo_open). */
static wm_status get_float(const cJSON *v, const char *label, const char *key, double lo, int lo_open, double hi,
                           float *out) {
    if (!cJSON_IsNumber(v))
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' must be a number, got %s", label, key, json_type_name(v));
    float f = (float)v->valuedouble;
    if (!isfinite(f) || (lo_open ? !(f > lo) : !(f >= lo)) || !(f <= hi))
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' = %g is out of range %s%g, %g]", label, key, v->valuedouble,
                            lo_open ? "(" : "[", lo, hi);
    *out = f;
    return WM_OK;
}

static wm_status get_bool(const cJSON *v, const char *label, const char *key, int *out) {
    if (!cJSON_IsBool(v))
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' must be true or false, got %s", label, key, json_type_name(v));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return WM_OK;
}

/* An array of exactly n elements (n < 0: any length up to -n). Returns its length in *len. */
static wm_status get_array(const cJSON *v, const char *label, const char *key, int n, int *len) {
    if (!cJSON_IsArray(v))
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' must be an array, got %s", label, key, json_type_name(v));
    int m = cJSON_GetArraySize(v);
    if (n >= 0 && m != n)
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' must have %d elements, got %d", label, key, n, m);
    if (n < 0 && m > -n)
        return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' has %d elements, at most %d allowed", label, key, m, -n);
    *len = m;
    return WM_OK;
}

static wm_status get_ints(const cJSON *v, const char *label, const char *key, int n, int lo, int hi, int *out) {
    int m;
    wm_status st = get_array(v, label, key, n, &m);
    if (st) return st;
    char sub[96];
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        snprintf(sub, sizeof sub, "%s[%d]", key, i);
        if ((st = get_int(e, label, sub, lo, hi, &out[i]))) return st;
    }
    return WM_OK;
}

static wm_status get_bools(const cJSON *v, const char *label, const char *key, int n, int *out) {
    int m;
    wm_status st = get_array(v, label, key, n, &m);
    if (st) return st;
    char sub[96];
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        snprintf(sub, sizeof sub, "%s[%d]", key, i);
        if ((st = get_bool(e, label, sub, &out[i]))) return st;
    }
    return WM_OK;
}

/* A list of action names: non-empty, shorter than WM_MAX_NAME, unique. */
static wm_status get_names(const cJSON *v, const char *label, const char *key, int max, char (*out)[WM_MAX_NAME],
                           int *count) {
    int m;
    wm_status st = get_array(v, label, key, -max, &m);
    if (st) return st;
    int i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e))
            return wm_set_error(WM_ERR_CONFIG, "%s: key '%s[%d]' must be a string, got %s", label, key, i,
                                json_type_name(e));
        size_t len = strlen(e->valuestring);
        if (len == 0) return wm_set_error(WM_ERR_CONFIG, "%s: key '%s[%d]' is an empty name", label, key, i);
        if (len >= WM_MAX_NAME)
            return wm_set_error(WM_ERR_CONFIG, "%s: key '%s[%d]' is longer than %d bytes", label, key, i, WM_MAX_NAME - 1);
        for (int j = 0; j < i; j++)
            if (!strcmp(out[j], e->valuestring))
                return wm_set_error(WM_ERR_CONFIG, "%s: key '%s': name '%s' appears twice", label, key, e->valuestring);
        memcpy(out[i], e->valuestring, len + 1);
    }
    *count = m;
    return WM_OK;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static wm_status parse_text_encoder(wm_config *cfg, const cJSON *v, const char *label) {
    if (!cJSON_IsObject(v))
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'text_encoder' must be an object, got %s", label, json_type_name(v));
    const cJSON *vocab = NULL, *max_tokens = NULL;
    for (const cJSON *c = v->child; c; c = c->next) {
        const cJSON **slot = !strcmp(c->string, "vocab") ? &vocab : !strcmp(c->string, "max_tokens") ? &max_tokens : NULL;
        if (!slot) return wm_set_error(WM_ERR_CONFIG, "%s: unknown key 'text_encoder.%.64s'", label, c->string);
        if (*slot) return wm_set_error(WM_ERR_CONFIG, "%s: duplicate key 'text_encoder.%s'", label, c->string);
        *slot = c;
    }
    if (!vocab) return wm_set_error(WM_ERR_CONFIG, "%s: key 'text_encoder.vocab' is missing", label);
    if (!max_tokens) return wm_set_error(WM_ERR_CONFIG, "%s: key 'text_encoder.max_tokens' is missing", label);
    wm_status st = get_int(max_tokens, label, "text_encoder.max_tokens", 1, CFG_MAX_WIDTH, &cfg->max_tokens);
    if (st) return st;

    int n;
    if ((st = get_array(vocab, label, "text_encoder.vocab", -(1 << 24), &n))) return st;
    if (n < 2)
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'text_encoder.vocab' needs at least 2 entries, got %d", label, n);
    cfg->vocab = wm_calloc((size_t)n, sizeof *cfg->vocab, "vocabulary");
    if (!cfg->vocab) return WM_ERR_OUT_OF_MEMORY;
    int i = 0;
    for (const cJSON *e = vocab->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e))
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'text_encoder.vocab[%d]' must be a string, got %s", label, i,
                                json_type_name(e));
        size_t len = strlen(e->valuestring);
        cfg->vocab[i] = wm_malloc(len + 1, "vocabulary entry");
        if (!cfg->vocab[i]) return WM_ERR_OUT_OF_MEMORY;
        memcpy(cfg->vocab[i], e->valuestring, len + 1);
        cfg->vocab_size = i + 1;
    }
    char **sorted = wm_malloc((size_t)n * sizeof *sorted, "vocabulary index");
    if (!sorted) return WM_ERR_OUT_OF_MEMORY;
    memcpy(sorted, cfg->vocab, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str_ptr);
    for (int j = 1; j < n; j++) {
        if (!strcmp(sorted[j - 1], sorted[j])) {
            st = wm_set_error(WM_ERR_CONFIG, "%s: key 'text_encoder.vocab': entry '%.64s' appears twice", label, sorted[j]);
            break;
        }
    }
    free(sorted);
    if (st) return st;
    cfg->has_text_encoder = 1;
    return WM_OK;
}

static wm_status parse_decoder(wm_config *cfg, const cJSON *v, const char *label) {
    if (!cJSON_IsObject(v))
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'decoder' must be an object, got %s", label, json_type_name(v));
    wm_decoder_config *d = &cfg->decoder;
    /* Sub-keys left out take TAEHV's values. */
    static const int channels[4] = {256, 128, 64, 64};
    memcpy(d->channels, channels, sizeof channels);
    for (int i = 0; i < 3; i++) d->space_upscale[i] = 1;
    for (int i = 0; i < 2; i++) d->time_upscale[i] = 1;
    d->image_channels = 3;
    int seen[4] = {0};
    static const char *const keys[4] = {"channels", "space_upscale", "time_upscale", "image_channels"};
    wm_status st = WM_OK;
    for (const cJSON *c = v->child; c; c = c->next) {
        int k = 0;
        while (k < 4 && strcmp(c->string, keys[k])) k++;
        if (k == 4) return wm_set_error(WM_ERR_CONFIG, "%s: unknown key 'decoder.%.64s'", label, c->string);
        if (seen[k]++) return wm_set_error(WM_ERR_CONFIG, "%s: duplicate key 'decoder.%s'", label, keys[k]);
        switch (k) {
        case 0: st = get_ints(c, label, "decoder.channels", 4, 1, CFG_MAX_WIDTH, d->channels); break;
        case 1: st = get_bools(c, label, "decoder.space_upscale", 3, d->space_upscale); break;
        case 2: st = get_bools(c, label, "decoder.time_upscale", 2, d->time_upscale); break;
        case 3:
            if ((st = get_int(c, label, "decoder.image_channels", 1, CFG_MAX_WIDTH, &d->image_channels))) break;
            if (d->image_channels != 3)
                st = wm_set_error(WM_ERR_CONFIG, "%s: key 'decoder.image_channels' = %d is not supported (only 3)", label,
                                  d->image_channels);
            break;
        }
        if (st) return st;
    }
    d->present = 1;
    return WM_OK;
}

/* ---- top level ---- */

enum {
    K_NAME, K_DIM, K_FFN_DIM, K_NUM_HEADS, K_NUM_LAYERS, K_PATCH_SIZE, K_IN_DIM, K_OUT_DIM, K_TEXT_DIM, K_TEXT_LEN,
    K_FREQ_DIM, K_EPS, K_MODEL_TYPE, K_QK_NORM, K_CROSS_ATTN_NORM, K_WINDOW_SIZE, K_LATENT_HEIGHT, K_LATENT_WIDTH,
    K_NUM_FRAME_PER_BLOCK, K_DENOISING_STEP_LIST, K_WARP_DENOISING_STEP, K_TIMESTEP_SHIFT, K_CONTEXT_NOISE,
    K_LOCAL_ATTN_SIZE, K_SINK_SIZE, K_RECACHE, K_SAMPLER, K_MAX_CACHE_FRAMES, K_FPS, K_ACTION_GUIDANCE,
    K_ACTION_GUIDANCE_STEPS, K_ACTION_BUTTONS, K_ACTION_AXES, K_ACTION_MOUSE,
    K_TEXT_ENCODER, K_DECODER, K_COUNT
};

static const char *const KEY_NAMES[K_COUNT] = {
    "name", "dim", "ffn_dim", "num_heads", "num_layers", "patch_size", "in_dim", "out_dim", "text_dim", "text_len",
    "freq_dim", "eps", "model_type", "qk_norm", "cross_attn_norm", "window_size", "latent_height", "latent_width",
    "num_frame_per_block", "denoising_step_list", "warp_denoising_step", "timestep_shift", "context_noise",
    "local_attn_size", "sink_size", "recache_on_prompt_switch", "sampler", "max_cache_frames", "fps", "action_guidance",
    "action_guidance_steps", "action_buttons", "action_axes", "action_mouse",
    "text_encoder", "decoder",
};

static wm_status parse_key(wm_config *cfg, int k, const cJSON *v, const char *label) {
    const char *key = KEY_NAMES[k];
    wm_status st = WM_OK;
    int flag = 0, n = 0;
    switch (k) {
    case K_NAME: {
        if (!cJSON_IsString(v))
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'name' must be a string, got %s", label, json_type_name(v));
        size_t len = strlen(v->valuestring);
        if (len == 0) return wm_set_error(WM_ERR_CONFIG, "%s: key 'name' is empty", label);
        if (len >= WM_MAX_NAME)
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'name' is longer than %d bytes", label, WM_MAX_NAME - 1);
        memcpy(cfg->name, v->valuestring, len + 1);
        return WM_OK;
    }
    case K_DIM: return get_int(v, label, key, 1, CFG_MAX_WIDTH, &cfg->dim);
    case K_FFN_DIM: return get_int(v, label, key, 1, CFG_MAX_WIDTH, &cfg->ffn_dim);
    case K_NUM_HEADS: return get_int(v, label, key, 1, CFG_MAX_WIDTH, &cfg->num_heads);
    case K_NUM_LAYERS: return get_int(v, label, key, 1, CFG_MAX_LAYERS, &cfg->num_layers);
    case K_PATCH_SIZE:
        if ((st = get_ints(v, label, key, 3, 1, CFG_MAX_PATCH, cfg->patch_size))) return st;
        if (cfg->patch_size[0] != 1)
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'patch_size' = [%d, %d, %d]: the time patch must be 1", label,
                                cfg->patch_size[0], cfg->patch_size[1], cfg->patch_size[2]);
        return WM_OK;
    case K_IN_DIM: return get_int(v, label, key, 1, CFG_MAX_LATENT_CH, &cfg->in_dim);
    case K_OUT_DIM: return get_int(v, label, key, 1, CFG_MAX_LATENT_CH, &cfg->out_dim);
    case K_TEXT_DIM: return get_int(v, label, key, 1, CFG_MAX_WIDTH, &cfg->text_dim);
    case K_TEXT_LEN: return get_int(v, label, key, 1, CFG_MAX_WIDTH, &cfg->text_len);
    case K_FREQ_DIM:
        if ((st = get_int(v, label, key, 2, CFG_MAX_WIDTH, &cfg->freq_dim))) return st;
        if (cfg->freq_dim % 2)
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'freq_dim' = %d must be even", label, cfg->freq_dim);
        return WM_OK;
    case K_EPS: return get_float(v, label, key, 0, 1, 1, &cfg->eps);
    case K_MODEL_TYPE:
        if (!cJSON_IsString(v))
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'model_type' must be a string, got %s", label, json_type_name(v));
        if (strcmp(v->valuestring, "t2v"))
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'model_type' = '%.64s' is not supported (only \"t2v\")", label,
                                v->valuestring);
        return WM_OK;
    case K_QK_NORM:
    case K_CROSS_ATTN_NORM:
        if ((st = get_bool(v, label, key, &flag))) return st;
        if (!flag) return wm_set_error(WM_ERR_CONFIG, "%s: key '%s' must be true (the engine always normalises)", label, key);
        return WM_OK;
    case K_WINDOW_SIZE: {
        int w[2];
        if ((st = get_ints(v, label, key, 2, -1, CFG_MAX_FRAMES, w))) return st;
        if (w[0] != -1 || w[1] != -1)
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'window_size' = [%d, %d] is not supported (only [-1, -1])", label,
                                w[0], w[1]);
        return WM_OK;
    }
    case K_LATENT_HEIGHT: return get_int(v, label, key, 1, CFG_MAX_GRID, &cfg->latent_height);
    case K_LATENT_WIDTH: return get_int(v, label, key, 1, CFG_MAX_GRID, &cfg->latent_width);
    case K_NUM_FRAME_PER_BLOCK: return get_int(v, label, key, 1, 1024, &cfg->num_frame_per_block);
    case K_DENOISING_STEP_LIST: {
        if ((st = get_array(v, label, key, -WM_MAX_STEPS, &n))) return st;
        if (n == 0) return wm_set_error(WM_ERR_CONFIG, "%s: key 'denoising_step_list' is empty", label);
        char sub[64];
        int i = 0;
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            snprintf(sub, sizeof sub, "denoising_step_list[%d]", i);
            if ((st = get_float(e, label, sub, 0, 1, 1000, &cfg->denoising_step_list[i]))) return st;
            if (i > 0 && !(cfg->denoising_step_list[i] < cfg->denoising_step_list[i - 1]))
                return wm_set_error(WM_ERR_CONFIG, "%s: key 'denoising_step_list' must be strictly decreasing (%g after %g)",
                                    label, cfg->denoising_step_list[i], cfg->denoising_step_list[i - 1]);
        }
        cfg->n_steps = n;
        return WM_OK;
    }
    case K_WARP_DENOISING_STEP: return get_bool(v, label, key, &cfg->warp_denoising_step);
    case K_TIMESTEP_SHIFT: return get_float(v, label, key, 0, 1, 1e6, &cfg->timestep_shift);
    case K_CONTEXT_NOISE: return get_float(v, label, key, 0, 0, 1000, &cfg->context_noise);
    case K_LOCAL_ATTN_SIZE: return get_int(v, label, key, -1, CFG_MAX_FRAMES, &cfg->local_attn_size);
    case K_SINK_SIZE: return get_int(v, label, key, 0, CFG_MAX_FRAMES, &cfg->sink_size);
    case K_RECACHE: return get_bool(v, label, key, &cfg->recache_on_prompt_switch);
    case K_SAMPLER:
        if (!cJSON_IsString(v))
            return wm_set_error(WM_ERR_CONFIG, "%s: key 'sampler' must be a string, got %s", label, json_type_name(v));
        if (!strcmp(v->valuestring, "self_forcing")) cfg->sampler = WM_SAMPLER_SELF_FORCING;
        else if (!strcmp(v->valuestring, "rolling_forcing")) cfg->sampler = WM_SAMPLER_ROLLING_FORCING;
        else if (!strcmp(v->valuestring, "flow_euler")) cfg->sampler = WM_SAMPLER_FLOW_EULER;
        else
            return wm_set_error(WM_ERR_CONFIG,
                                "%s: key 'sampler' = '%.64s' is not known (\"self_forcing\", \"flow_euler\" or \"rolling_forcing\")",
                                label, v->valuestring);
        return WM_OK;
    case K_MAX_CACHE_FRAMES: return get_int(v, label, key, 1, CFG_MAX_FRAMES, &cfg->max_cache_frames);
    case K_FPS: return get_float(v, label, key, 0, 1, 1000, &cfg->fps);
    case K_ACTION_GUIDANCE: return get_float(v, label, key, 0, 0, WM_MAX_ACTION_GUIDANCE, &cfg->action_guidance);
    case K_ACTION_GUIDANCE_STEPS: return get_int(v, label, key, 1, WM_MAX_STEPS, &cfg->action_guidance_steps);
    case K_ACTION_BUTTONS: return get_names(v, label, key, WM_MAX_BUTTONS, cfg->button_names, &cfg->n_buttons);
    case K_ACTION_AXES: return get_names(v, label, key, WM_MAX_AXES, cfg->axis_names, &cfg->n_axes);
    case K_ACTION_MOUSE: return get_bool(v, label, key, &cfg->action_mouse);
    case K_TEXT_ENCODER: return parse_text_encoder(cfg, v, label);
    case K_DECODER: return parse_decoder(cfg, v, label);
    }
    return wm_set_error(WM_ERR_INTERNAL, "%s: key '%s' has no parser", label, key);
}

/* Constraints between keys, checked after every key is read. */
static wm_status check_cross(const wm_config *c, const char *label) {
    if (c->dim % c->num_heads)
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'dim' = %d is not divisible by key 'num_heads' = %d", label, c->dim,
                            c->num_heads);
    int hd = c->dim / c->num_heads;
    if (hd % 2 || hd < 6)
        return wm_set_error(WM_ERR_CONFIG,
                            "%s: head dim = key 'dim' / key 'num_heads' = %d must be even and at least 6 (RoPE)", label, hd);
    if (c->latent_height % c->patch_size[1])
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'latent_height' = %d is not divisible by key 'patch_size'[1] = %d",
                            label, c->latent_height, c->patch_size[1]);
    if (c->latent_width % c->patch_size[2])
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'latent_width' = %d is not divisible by key 'patch_size'[2] = %d",
                            label, c->latent_width, c->patch_size[2]);
    if (c->in_dim != c->out_dim)
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'in_dim' = %d differs from key 'out_dim' = %d", label, c->in_dim,
                            c->out_dim);
    if (c->local_attn_size != -1 && c->local_attn_size < c->sink_size + c->num_frame_per_block)
        return wm_set_error(WM_ERR_CONFIG,
                            "%s: key 'local_attn_size' = %d must be -1 or at least key 'sink_size' + key "
                            "'num_frame_per_block' = %d + %d",
                            label, c->local_attn_size, c->sink_size, c->num_frame_per_block);
    /* Rolling Forcing's spans follow from its step count (docs/CONVERT.md): a window of n blocks, and
     * attention over (n + 2) blocks with the first block as the sink. */
    if (c->sampler == WM_SAMPLER_ROLLING_FORCING) {
        const int F = c->num_frame_per_block, span = (c->n_steps + 2) * F;
        if (c->local_attn_size != span || c->sink_size != F)
            return wm_set_error(WM_ERR_CONFIG,
                                "%s: key 'sampler' = \"rolling_forcing\" attends over (steps + 2) blocks with the first block "
                                "as its sink: key 'local_attn_size' must be %d and key 'sink_size' %d (got %d and %d)",
                                label, span, F, c->local_attn_size, c->sink_size);
        if (c->recache_on_prompt_switch)
            return wm_set_error(WM_ERR_CONFIG,
                                "%s: key 'recache_on_prompt_switch' is LongLive's and does not combine with key 'sampler' = "
                                "\"rolling_forcing\"",
                                label);
    }
    if (c->action_guidance > 0 && wm_config_action_dim(c) == 0)
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'action_guidance' = %g needs an action-conditioned model (key 'action_buttons', "
                            "'action_axes' or 'action_mouse')", label, c->action_guidance);
    if (c->action_guidance > 0 && c->sampler == WM_SAMPLER_ROLLING_FORCING)
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'action_guidance' does not combine with key 'sampler' = \"rolling_forcing\"",
                            label);
    if (c->max_cache_frames < c->num_frame_per_block)
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'max_cache_frames' = %d is less than key 'num_frame_per_block' = %d",
                            label, c->max_cache_frames, c->num_frame_per_block);
    for (int i = 0; i < c->n_buttons; i++)
        for (int j = 0; j < c->n_axes; j++)
            if (!strcmp(c->button_names[i], c->axis_names[j]))
                return wm_set_error(WM_ERR_CONFIG, "%s: name '%s' is in both key 'action_buttons' and key 'action_axes'",
                                    label, c->button_names[i]);
    if (c->has_text_encoder && c->max_tokens > c->text_len)
        return wm_set_error(WM_ERR_CONFIG, "%s: key 'text_encoder.max_tokens' = %d exceeds key 'text_len' = %d", label,
                            c->max_tokens, c->text_len);
    /* The warp looks a step up in a 1000-entry table (MODEL.md section 2), so it must be whole. */
    if (c->warp_denoising_step)
        for (int i = 0; i < c->n_steps; i++)
            if (floorf(c->denoising_step_list[i]) != c->denoising_step_list[i])
                return wm_set_error(WM_ERR_CONFIG,
                                    "%s: key 'denoising_step_list'[%d] = %g must be an integer with warp_denoising_step",
                                    label, i, c->denoising_step_list[i]);
    return WM_OK;
}

static wm_status config_parse(wm_config *cfg, const char *json, size_t len, const char *default_name,
                              const char *label) {
    wm_config_defaults(cfg);
    if (default_name && default_name[0]) snprintf(cfg->name, sizeof cfg->name, "%s", default_name);
    if (!json && len) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "%s: NULL text", label);

    /* A terminated copy keeps every read of the parser inside the buffer. */
    char *text = wm_malloc(len + 1, "config text");
    if (!text) return WM_ERR_OUT_OF_MEMORY;
    if (len) memcpy(text, json, len);
    text[len] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        int line = 1, col = 1;
        for (size_t i = 0; i < pos; i++) {
            if (text[i] == '\n') { line++; col = 1; }
            else col++;
        }
        free(text);
        return wm_set_error(WM_ERR_FORMAT, "%s: invalid JSON at line %d, column %d (byte %zu)", label, line, col, pos);
    }
    for (size_t i = (size_t)(end - text); i < len; i++) {
        char ch = text[i];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            cJSON_Delete(root);
            free(text);
            return wm_set_error(WM_ERR_FORMAT, "%s: invalid JSON: trailing characters at byte %zu", label, i);
        }
    }
    free(text);

    wm_status st = WM_OK;
    if (!cJSON_IsObject(root)) {
        st = wm_set_error(WM_ERR_CONFIG, "%s: the top level must be an object, got %s", label, json_type_name(root));
        goto done;
    }
    int seen[K_COUNT] = {0};
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c->string[0] == '_') continue; /* diffusers bookkeeping (_class_name, _diffusers_version) */
        int k = 0;
        while (k < K_COUNT && strcmp(c->string, KEY_NAMES[k])) k++;
        if (k == K_COUNT) {
            st = wm_set_error(WM_ERR_CONFIG, "%s: unknown key '%.64s%s'", label, c->string,
                              strlen(c->string) > 64 ? "..." : "");
            goto done;
        }
        if (seen[k]++) {
            st = wm_set_error(WM_ERR_CONFIG, "%s: duplicate key '%s'", label, KEY_NAMES[k]);
            goto done;
        }
        if ((st = parse_key(cfg, k, c, label))) goto done;
    }
    st = check_cross(cfg, label);
done:
    cJSON_Delete(root);
    return st;
}

wm_status wm_config_parse(wm_config *cfg, const char *json, size_t len, const char *default_name) {
    if (!cfg) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "wm_config_parse: NULL config");
    return config_parse(cfg, json, len, default_name, "config.json");
}

wm_status wm_config_load_file(wm_config *cfg, const char *path, const char *default_name) {
    if (!cfg) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "wm_config_load_file: NULL config");
    wm_config_defaults(cfg);
    if (!path) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "wm_config_load_file: NULL path");
    FILE *fp = fopen(path, "rb");
    if (!fp) return wm_set_error(WM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return wm_set_error(WM_ERR_IO, "%s: not a readable regular file", path);
    }
    long size = (long)sb.st_size;
    if (size > CFG_MAX_FILE) {
        fclose(fp);
        return wm_set_error(WM_ERR_FORMAT, "%s: %ld bytes is too large for a config file", path, size);
    }
    char *buf = wm_malloc((size_t)size + 1, "config file");
    if (!buf) {
        fclose(fp);
        return WM_ERR_OUT_OF_MEMORY;
    }
    size_t got = fread(buf, 1, (size_t)size, fp);
    int err = ferror(fp);
    fclose(fp);
    if (err || got != (size_t)size) {
        free(buf);
        return wm_set_error(WM_ERR_IO, "%s: read error", path);
    }
    wm_status st = config_parse(cfg, buf, got, default_name, path);
    free(buf);
    return st;
}
