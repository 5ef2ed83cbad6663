/* model.c - loading a model: config.json, the backend, and every named tensor bound by the manifest
 * of its components (DiT, text encoder, decoder). */
#include "engine.h"
#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void text_encoder_manifest(const wm_config *c, wm_weights *ws) {
    if (!c->has_text_encoder) return;
    wm_weights_add(ws, WM_INIT_WEIGHT, 2, (const int64_t[]){c->vocab_size, c->text_dim},
                   "text_encoder.token_embedding.weight");
    wm_weights_add(ws, WM_INIT_WEIGHT, 2, (const int64_t[]){c->max_tokens, c->text_dim},
                   "text_encoder.pos_embedding.weight");
}

static wm_backend *make_backend(const wm_model_params *p, const wm_logger *lg, wm_status *st) {
    wm_backend *be = NULL;
    if (p->backend == WM_BACKEND_CUDA || p->backend == WM_BACKEND_AUTO) {
        be = wm_backend_cuda_new();
        if (!be && p->backend == WM_BACKEND_CUDA) {
            *st = WM_ERR_NO_DEVICE;
            return NULL;
        }
        if (!be) wm_log(lg, WM_LOG_INFO, "using the CPU backend (%s)", wm_get_error());
    }
    if (!be) be = wm_backend_cpu_new(p->n_threads);
    if (!be) *st = WM_ERR_OUT_OF_MEMORY;
    const char *prof = getenv("WM_PROFILE");
    if (be && prof && *prof && strcmp(prof, "0") != 0) { /* developer tool: profile.c */
        const size_t n = strlen(prof);
        wm_backend_profile(be, n > 5 && !strcmp(prof + n - 5, ".json") ? prof : NULL);
    }
    return be;
}

wm_status wm_model_load_impl(const wm_model_params *p, wm_model **out) {
    if (!p || !out) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "model_load: NULL argument");
    *out = NULL;
    if (p->size < sizeof(wm_model_params))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "model_load: params.size is %zu, expected %zu (call model_params_init)",
                            p->size, sizeof(wm_model_params));
    if (!p->path || !*p->path) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "model_load: params.path is empty");
    if (p->backend < WM_BACKEND_AUTO || p->backend > WM_BACKEND_CUDA)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "model_load: unknown backend %d", p->backend);

    /* path is a directory holding config.json + model.safetensors, or a config.json */
    char cfg_path[4200], st_path[4200], dir[4096];
    struct stat sb;
    if (stat(p->path, &sb) != 0) return wm_set_error(WM_ERR_IO, "model path '%s' does not exist", p->path);
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", p->path);
        snprintf(cfg_path, sizeof cfg_path, "%s/config.json", p->path);
    } else {
        snprintf(cfg_path, sizeof cfg_path, "%s", p->path);
        snprintf(dir, sizeof dir, "%s", p->path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;

    wm_model *m = calloc(1, sizeof *m);
    if (!m) return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the model");
    m->log.fn = p->log;
    m->log.user_data = p->log_user_data;
    m->abort_cb = p->abort_cb;
    m->abort_user_data = p->abort_user_data;
    wm_status st = wm_config_load_file(&m->cfg, cfg_path, base);
    if (st != WM_OK) goto fail;
    m->be = make_backend(p, &m->log, &st);
    if (!m->be) goto fail;

    wm_dit_manifest(&m->cfg, &m->weights);
    text_encoder_manifest(&m->cfg, &m->weights);
    wm_decoder_manifest(&m->cfg, &m->weights);
    double t0 = wm_now_ms();
    if (p->random_weights) st = wm_weights_random(&m->weights, m->be, p->weight_seed);
    else st = wm_weights_load(&m->weights, m->be, st_path, 0);
    if (st != WM_OK) goto fail;
    st = wm_dit_bind(&m->dit, &m->cfg, m->be, &m->weights);
    if (st != WM_OK) goto fail;
    if (m->cfg.has_text_encoder) {
        m->tok_emb = wm_weights_get(&m->weights, "text_encoder.token_embedding.weight");
        m->pos_emb = wm_weights_get(&m->weights, "text_encoder.pos_embedding.weight");
    }
    for (int i = 0; i < m->cfg.n_buttons; i++) m->button_ptrs[i] = m->cfg.button_names[i];
    for (int i = 0; i < m->cfg.n_axes; i++) m->axis_ptrs[i] = m->cfg.axis_names[i];
    wm_log(&m->log, WM_LOG_INFO, "loaded '%s': %lld parameters (%s), backend %s, %.0f ms", m->cfg.name,
           (long long)m->weights.n_params, p->random_weights ? "random" : st_path, m->be->name, wm_now_ms() - t0);
    *out = m;
    return WM_OK;
fail:
    wm_model_free_impl(m);
    return st;
}

void wm_model_free_impl(wm_model *m) {
    if (!m) return;
    wm_dit_unbind(&m->dit);
    wm_weights_free(&m->weights);
    if (m->be) m->be->destroy(m->be);
    wm_config_free(&m->cfg);
    free(m);
}

void wm_model_info_fill(const wm_model *m, wm_model_info *info) {
    const wm_config *c = &m->cfg;
    size_t caller = info->size;
    wm_model_info i;
    memset(&i, 0, sizeof i);
    i.size = caller;
    i.name = c->name;
    int su = wm_config_space_upscale(c);
    i.width = c->decoder.present ? c->latent_width * su : 0;
    i.height = c->decoder.present ? c->latent_height * su : 0;
    i.fps = c->fps;
    i.latent_frames_per_chunk = c->num_frame_per_block;
    i.latent_channels = c->in_dim;
    i.latent_height = c->latent_height;
    i.latent_width = c->latent_width;
    i.time_upscale = wm_config_time_upscale(c);
    i.prompt_kind = c->has_text_encoder ? WM_PROMPT_TEXT : WM_PROMPT_EMBEDDINGS;
    i.text_len = c->text_len;
    i.text_dim = c->text_dim;
    i.n_buttons = c->n_buttons;
    i.button_names = m->button_ptrs;
    i.n_axes = c->n_axes;
    i.axis_names = m->axis_ptrs;
    i.has_mouse = c->action_mouse;
    i.backend = m->be->kind;
    i.backends_available = (1u << WM_BACKEND_CPU) | (wm_backend_cuda_compiled() ? (1u << WM_BACKEND_CUDA) : 0);
    i.n_params = m->weights.n_params;
    i.window_frames = c->local_attn_size;
    i.sink_frames = c->sink_size;
    i.max_cache_frames = c->max_cache_frames;
    i.device_name = m->be->device_name;
    i.action_guidance = c->action_guidance;
    i.denoising_steps = c->n_steps;
    i.action_guidance_steps = c->action_guidance_steps < c->n_steps ? c->action_guidance_steps : c->n_steps;
    /* copy only what the caller's struct has room for (older hosts have smaller structs) */
    memcpy(info, &i, caller < sizeof i ? caller : sizeof i);
}
