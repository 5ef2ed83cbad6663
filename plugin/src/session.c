/* session.c - one stream of frames: prompt, action queue, KV cache, decoder, frames waiting to be
 * read, and snapshots of all of it. */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t latent_floats(const wm_config *c) {
    return (size_t)c->num_frame_per_block * c->in_dim * c->latent_height * c->latent_width;
}
static size_t frame_bytes(const wm_session *s) { return (size_t)s->width * s->height * 3; }

wm_status wm_session_new_impl(wm_model *m, const wm_session_params *p, wm_session **out) {
    if (out) *out = NULL;
    if (!m || !p || !out) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "session_new: NULL argument");
    *out = NULL;
    if (p->size < sizeof(wm_session_params))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "session_new: params.size is %zu, expected %zu (call session_params_init)",
                            p->size, sizeof(wm_session_params));
    const wm_config *c = &m->cfg;
    const int F = c->num_frame_per_block;
    if (F > 64) return wm_set_error(WM_ERR_UNSUPPORTED, "num_frame_per_block %d > 64 is not supported", F);
    const int rolling = c->sampler == WM_SAMPLER_ROLLING_FORCING;
    if (rolling && ((p->window_frames != -2 && p->window_frames != c->local_attn_size) ||
                    (p->sink_frames != -1 && p->sink_frames != c->sink_size)))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT,
                            "session_new: the model's rolling_forcing sampler fixes its attention spans (window %d frames, "
                            "sink %d): pass window_frames -2 and sink_frames -1 (got %d and %d)",
                            c->local_attn_size, c->sink_size, p->window_frames, p->sink_frames);
    if (rolling && c->n_steps * F > 64)
        return wm_set_error(WM_ERR_UNSUPPORTED, "rolling_forcing: a window of %d steps x %d frames > 64 frames is not supported",
                            c->n_steps, F);
    const float guidance = p->action_guidance < 0 ? c->action_guidance : p->action_guidance;
    if (!isfinite(p->action_guidance) || guidance > WM_MAX_ACTION_GUIDANCE)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "session_new: action_guidance %g (use < 0 for the model's %g, 0 off, or up to %g)",
                            p->action_guidance, c->action_guidance, WM_MAX_ACTION_GUIDANCE);
    if (guidance > 0 && (wm_config_action_dim(c) == 0 || rolling))
        return wm_set_error(WM_ERR_UNSUPPORTED, "session_new: action_guidance %g needs an action-conditioned model whose sampler "
                            "is not rolling_forcing ('%s' has %d action inputs, sampler %s)", guidance, c->name,
                            wm_config_action_dim(c), rolling ? "rolling_forcing" : "per chunk");
    int window = p->window_frames == -2 ? c->local_attn_size : p->window_frames;
    /* the model's default sinks belong to its window: an unbounded cache keeps every frame anyway */
    int sinks = p->sink_frames == -1 ? (window < 0 ? 0 : c->sink_size) : p->sink_frames;
    int cap = p->max_cache_frames > 0 ? p->max_cache_frames : c->max_cache_frames;
    if (window < -1 || window == 0)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "session_new: window_frames %d (use -2 default, -1 unbounded, or > 0)", window);
    if (sinks < 0) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "session_new: sink_frames %d < 0", sinks);
    if (window > 0 && window < sinks + F)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT,
                            "session_new: window %d frames must hold the sinks (%d) and one chunk (%d)", window, sinks, F);
    if (window < 0 && sinks > 0)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "session_new: sink frames need a window (unbounded cache keeps everything)");
    if (window < 0 && cap < F)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "session_new: max_cache_frames %d < frames per chunk %d", cap, F);
    /* the re-cache rebuilds whole chunks after the sinks, within the window (docs/CONVERT.md) */
    if (c->recache_on_prompt_switch && (window < 0 || sinks % F || (window - sinks) % F))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT,
                            "session_new: the model re-caches on prompt switches (recache_on_prompt_switch), which needs a "
                            "rolling window whose sinks and other frames are whole chunks (window %d, sinks %d, chunk %d)",
                            window, window > 0 ? sinks : 0, F);

    wm_session *s = calloc(1, sizeof *s);
    if (!s) return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the session");
    s->m = m;
    s->guidance = guidance;
    /* a backend of the session's own (its stream, handles, scratch) that shares the model's weights,
     * so that sessions may run on different threads (wm.h); a backend without one is shared */
    wm_backend *be = m->be->fork ? m->be->fork(m->be) : m->be;
    if (!be) {
        char why[512];
        snprintf(why, sizeof why, "%s", wm_get_error());
        free(s);
        return wm_set_error(WM_ERR_OUT_OF_MEMORY, "session_new: could not create the session's %s backend: %s", m->be->name, why);
    }
    s->be = be;
    s->seed = p->seed;
    s->abort_cb = p->abort_cb;
    s->abort_user_data = p->abort_user_data;
    /* Rolling Forcing's history: the window of span frames without sinks (its sink lives apart, rolling.h) */
    if (rolling) sinks = 0;
    s->window = window;
    s->sinks = window > 0 ? sinks : 0;
    s->cap_frames = window > 0 ? window : cap;
    s->tpf = wm_config_tokens_per_frame(c);
    s->upscale = wm_config_time_upscale(c);
    wm_status st = WM_OK;
    /* a TempCache budget beyond the policy's rows gets a store that holds it (plus one chunk) */
    int store_frames = s->cap_frames;
    if (p->accel.tempcache && p->accel.tc_budget_tokens > 0) {
        const int64_t need = (p->accel.tc_budget_tokens + s->tpf - 1) / s->tpf + F;
        if (need > store_frames) store_frames = (int)need;
    }
    s->ctx = calloc((size_t)c->num_layers, sizeof *s->ctx);
    s->prompt_host = calloc((size_t)c->text_len * c->text_dim, sizeof(float));
    s->latents_host = calloc(latent_floats(c), sizeof(float));
    s->latents_spare = calloc(latent_floats(c), sizeof(float));
    if (c->recache_on_prompt_switch) {
        const int A = wm_config_action_dim(c) > 0 ? wm_config_action_dim(c) : 1;
        s->recache_chunks = (window - s->sinks) / F;
        s->recache_lat = calloc((size_t)s->recache_chunks * latent_floats(c), sizeof(float));
        s->recache_act = calloc((size_t)s->recache_chunks * F * A, sizeof(float));
        s->recache_frame0 = calloc((size_t)s->recache_chunks, sizeof(int64_t));
    }
    if (!s->ctx || !s->prompt_host || !s->latents_host || !s->latents_spare ||
        (s->recache_chunks && (!s->recache_lat || !s->recache_act || !s->recache_frame0))) {
        st = wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the session tables");
        goto fail;
    }
    /* every chunk's latents come down into these: page-locked, the copy is direct (a pageable 1 MB
     * copy costs a good part of a millisecond) */
    if (be->pin_host && be->pin_host(be, s->latents_host, latent_floats(c) * sizeof(float))) {
        s->latents_pinned = be->pin_host(be, s->latents_spare, latent_floats(c) * sizeof(float));
        if (!s->latents_pinned) be->unpin_host(be, s->latents_host); /* both or neither: they swap roles */
    }
    if ((st = wm_cache_init(&s->cache, be, c->num_layers, c->dim, s->tpf, F, window, s->sinks, store_frames)) != WM_OK)
        goto fail;
    for (int l = 0; l < c->num_layers; l++) {
        if (!(s->ctx[l] = be->kv_new(be, c->text_len, c->dim))) {
            st = wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the prompt's cross-attention K/V");
            goto fail;
        }
    }
    const size_t nl = latent_floats(c);
    if (!(s->x = be->alloc(be, nl)) || !(s->v = be->alloc(be, nl)) || !(s->x0 = be->alloc(be, nl)) ||
        !(s->eps = be->alloc(be, nl)) || !(s->prompt_dev = be->alloc(be, (size_t)c->text_len * c->text_dim))) {
        st = WM_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    if ((st = wm_dit_work_new(&s->work, &m->dit, be, rolling ? c->n_steps * F : F)) != WM_OK) goto fail;
    if (rolling && (st = wm_rolling_init(s)) != WM_OK) goto fail;
    if (c->decoder.present) {
        const int su = wm_config_space_upscale(c);
        s->width = c->latent_width * su;
        s->height = c->latent_height * su;
        if ((st = wm_decoder_new(&s->dec, c, be, &m->weights)) != WM_OK) goto fail;
        if (!(s->dec_out = be->alloc(be, (size_t)F * s->upscale * c->decoder.image_channels * s->width * s->height))) {
            st = WM_ERR_OUT_OF_MEMORY;
            goto fail;
        }
        s->max_pending = 2 * F * s->upscale;
        s->frames = calloc((size_t)s->max_pending, frame_bytes(s));
        /* the device writes every frame here: page-locked, its copies are direct (backend.h) */
        if (s->frames && be->pin_host) s->frames_pinned = be->pin_host(be, s->frames, (size_t)s->max_pending * frame_bytes(s));
        if (!s->frames) {
            st = wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the frame queue");
            goto fail;
        }
    }
    wm_session_reset_impl(s);
    wm_accel_params none;
    wm_accel_defaults(&none);
    s->accel = none;
    if ((st = wm_session_set_accel_impl(s, &p->accel)) != WM_OK) goto fail;
    *out = s;
    return WM_OK;
fail:
    wm_session_free_impl(s);
    return st;
}

void wm_session_free_impl(wm_session *s) {
    if (!s) return;
    wm_backend *be = s->be;
    const wm_config *c = &s->m->cfg;
    wm_accel_free(s);
    wm_rolling_free(s);
    wm_cache_free(&s->cache);
    for (int l = 0; s->ctx && l < c->num_layers; l++)
        if (s->ctx[l]) be->kv_free(be, s->ctx[l]);
    free(s->ctx);
    float *bufs[] = {s->x, s->v, s->x0, s->eps, s->prompt_dev, s->dec_out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(be, bufs[i]);
    wm_dit_work_free(&s->work);
    if (s->dec) wm_decoder_free(s->dec);
    if (s->frames_pinned) be->unpin_host(be, s->frames);
    if (s->latents_pinned) be->unpin_host(be, s->latents_host), be->unpin_host(be, s->latents_spare);
    if (be != s->m->be) be->destroy(be); /* the session's fork, after everything allocated on it */
    free(s->prompt_host);
    free(s->latents_host);
    free(s->latents_spare);
    free(s->recache_lat);
    free(s->recache_act);
    free(s->recache_frame0);
    free(s->frames);
    free(s);
}

/* Uploads prompt_host and computes every layer's cross-attention K/V. */
static void apply_prompt(wm_session *s) {
    const wm_config *c = &s->m->cfg;
    double t0 = wm_now_ms();
    s->be->upload(s->be, s->prompt_dev, s->prompt_host, (size_t)c->text_len * c->text_dim);
    wm_dit_context(&s->m->dit, &s->work, s->prompt_dev, s->ctx);
    s->has_prompt = 1;
    /* a model that re-caches rebuilds its window with this prompt before the next chunk */
    if (s->recache_chunks && s->next_latent > 0) s->recache_pending = 1;
    s->stats.last_prompt_ms = wm_now_ms() - t0;
}

wm_status wm_session_set_prompt_emb_impl(wm_session *s, const float *emb, int n_tokens, int dim) {
    if (!s || (!emb && n_tokens > 0)) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "set_prompt_embeddings: NULL argument");
    const wm_config *c = &s->m->cfg;
    if (dim != c->text_dim)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "set_prompt_embeddings: dim %d, the model expects %d", dim, c->text_dim);
    if (n_tokens < 0 || n_tokens > c->text_len)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "set_prompt_embeddings: %d tokens, the model takes 0..%d", n_tokens,
                            c->text_len);
    for (size_t i = 0; i < (size_t)n_tokens * dim; i++)
        if (!isfinite(emb[i])) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "set_prompt_embeddings: element %zu is not finite", i);
    /* zero padding to text_len, as umT5 pipelines do; the padded rows are still attended */
    memset(s->prompt_host, 0, (size_t)c->text_len * c->text_dim * sizeof(float));
    if (n_tokens) memcpy(s->prompt_host, emb, (size_t)n_tokens * dim * sizeof(float));
    apply_prompt(s);
    return WM_OK;
}

wm_status wm_session_set_prompt_text_impl(wm_session *s, const char *text) {
    if (!s || !text) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "set_prompt_text: NULL argument");
    wm_model *m = s->m;
    const wm_config *c = &m->cfg;
    if (!c->has_text_encoder)
        return wm_set_error(WM_ERR_UNSUPPORTED, "model '%s' takes prompt embeddings [<= %d x %d], not text", c->name,
                            c->text_len, c->text_dim);
    int ids[4096];
    int n = wm_tokenize(c, text, ids, c->max_tokens < 4096 ? c->max_tokens : 4096);
    /* compose on the backend: row i = token_embedding[id_i] + pos_embedding[i], rows >= n zero */
    wm_backend *be = s->be;
    const float *tok = be->weight_f32(be, m->tok_emb), *pos = be->weight_f32(be, m->pos_emb);
    be->fill(be, s->prompt_dev, 0.0f, (size_t)c->text_len * c->text_dim);
    for (int i = 0; i < n; i++) {
        float *row = s->prompt_dev + (size_t)i * c->text_dim;
        be->copy(be, row, tok + (size_t)ids[i] * c->text_dim, (size_t)c->text_dim);
        be->add(be, row, pos + (size_t)i * c->text_dim, (size_t)c->text_dim);
    }
    be->download(be, s->prompt_host, s->prompt_dev, (size_t)c->text_len * c->text_dim);
    apply_prompt(s);
    return WM_OK;
}

wm_status wm_session_push_action_impl(wm_session *s, const wm_action *a) {
    if (!s || !a) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "push_action: NULL argument");
    const wm_config *c = &s->m->cfg;
    if (c->n_buttons < 32 && (a->buttons >> c->n_buttons))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "push_action: buttons 0x%x set bits beyond the model's %d buttons",
                            a->buttons, c->n_buttons);
    for (int i = 0; i < WM_MAX_AXES; i++) {
        float v = a->axes[i];
        if (!isfinite(v) || v < -1.0f || v > 1.0f)
            return wm_set_error(WM_ERR_INVALID_ARGUMENT, "push_action: axis %d = %g is outside [-1, 1]", i, v);
        if (i >= c->n_axes && v != 0.0f)
            return wm_set_error(WM_ERR_INVALID_ARGUMENT, "push_action: axis %d set, the model has %d axes", i, c->n_axes);
    }
    if (!isfinite(a->mouse_dx) || !isfinite(a->mouse_dy))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "push_action: mouse delta is not finite");
    if (!c->action_mouse && (a->mouse_dx != 0.0f || a->mouse_dy != 0.0f))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "push_action: model '%s' takes no mouse input", c->name);
    if (s->q_len == WM_ACTION_QUEUE)
        return wm_set_error(WM_ERR_STATE, "push_action: %d actions already queued; generate frames first", WM_ACTION_QUEUE);
    s->queue[s->q_len++] = *a;
    s->last_action = *a;
    return WM_OK;
}

/* Moves the chunk's x0 through the decoder into the frame ring (dropping the oldest unread frames
 * if the host has not kept up). */
static int decode_chunk(wm_session *s) {
    const wm_config *c = &s->m->cfg;
    wm_backend *be = s->be;
    const size_t per = (size_t)c->in_dim * c->latent_height * c->latent_width;
    const size_t img = (size_t)c->decoder.image_channels * s->width * s->height, fb = frame_bytes(s);
    /* all of the chunk's latent frames first (one unit for the backend), then the frames to the host */
    const int k = wm_decoder_push_many(s->dec, s->x0, c->num_frame_per_block, per, s->dec_out);
    if (k < 0) return k;
    if (k > s->max_pending) return -(int)wm_set_error(WM_ERR_INTERNAL, "decoder: %d frames for a ring of %d", k, s->max_pending);
    while (s->n_pending + k > s->max_pending) { /* drop the oldest */
        s->first_pending = (s->first_pending + 1) % s->max_pending;
        s->first_pending_index++;
        s->n_pending--;
    }
    /* the new frames fill the ring from `slot` on, wrapping at most once: one or two to_rgb8 calls */
    const int slot = (s->first_pending + s->n_pending) % s->max_pending;
    const int run = k < s->max_pending - slot ? k : s->max_pending - slot;
    const size_t pitch = (size_t)s->width * 3;
    be->to_rgb8(be, s->frames + (size_t)slot * fb, pitch, s->dec_out, run, s->height, s->width);
    if (k > run) be->to_rgb8(be, s->frames, pitch, s->dec_out + run * img, k - run, s->height, s->width);
    s->n_pending += k;
    return k;
}

/* After a chunk's latents sit committed in s->x0 (and their host copy in s->latents_host): consume the
 * chunk's queued actions, decode its frames, update the stats. t0..t1 was the DiT part. */
static wm_status finish_chunk(wm_session *s, int64_t frame0, double t0, double t1, int *n_frames) {
    const wm_config *c = &s->m->cfg;
    wm_backend *be = s->be;
    s->latents_frames = c->num_frame_per_block;
    /* video frames this chunk covers; consume their queued actions */
    int64_t vf = 0;
    for (int f = 0; f < c->num_frame_per_block; f++) vf += (frame0 + f == 0) ? 1 : s->upscale;
    int used = vf < s->q_len ? (int)vf : s->q_len;
    memmove(s->queue, s->queue + used, (size_t)(s->q_len - used) * sizeof(wm_action));
    s->q_len -= used;
    s->video_frames += vf;
    if (s->dec) {
        int k = decode_chunk(s);
        if (k < 0) return (wm_status)(-k);
    }
    double t2 = wm_now_ms();
    s->stats.last_dit_ms = t1 - t0;
    s->stats.last_decode_ms = t2 - t1;
    s->stats.last_chunk_ms = t2 - t0;
    s->stats.total_ms += t2 - t0;
    s->stats.chunks++;
    s->stats.latent_frames += c->num_frame_per_block;
    s->stats.frames_generated += vf;
    s->stats.backend_bytes = (int64_t)be->bytes_in_use(be);
    if (s->stats.backend_bytes > s->stats.backend_peak_bytes) s->stats.backend_peak_bytes = s->stats.backend_bytes;
    if (n_frames) *n_frames = (int)vf;
    return WM_OK;
}

wm_status wm_session_generate_impl(wm_session *s, int *n_frames) {
    if (!s) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "generate: NULL session");
    double t0 = wm_now_ms();
    const int64_t frame0 = s->next_latent;
    wm_status st = s->roll.on ? wm_rolling_chunk(s) : wm_sampler_chunk(s);
    if (st != WM_OK) return st;
    return finish_chunk(s, frame0, t0, wm_now_ms(), n_frames);
}

wm_status wm_session_prefill_impl(wm_session *s, const float *latents, int n_frames, int *n_video) {
    if (!s || !latents) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "prefill_latents: NULL argument");
    const wm_config *c = &s->m->cfg;
    const int F = c->num_frame_per_block;
    if (n_frames <= 0 || n_frames % F)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "prefill_latents: %d frames, need a positive multiple of %d (frames per chunk)",
                            n_frames, F);
    if (!s->has_prompt) return wm_set_error(WM_ERR_STATE, "no prompt set: call session_set_prompt_* first");
    if (s->roll.in_flight)
        return wm_set_error(WM_ERR_STATE, "prefill_latents: the rolling window holds %d blocks being denoised (a context "
                            "goes before the first generate call, or after a reset)", s->roll.in_flight);
    const size_t per_chunk = latent_floats(c);
    for (size_t i = 0; i < per_chunk * (size_t)(n_frames / F); i++)
        if (!isfinite(latents[i])) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "prefill_latents: element %zu is not finite", i);
    if (n_video) *n_video = 0;
    float acts[64 * (WM_MAX_BUTTONS + WM_MAX_AXES + 2)];
    for (int k = 0; k < n_frames / F; k++) {
        wm_status room = wm_cache_check_room(&s->cache);
        if (room != WM_OK) return room;
        double t0 = wm_now_ms();
        const int64_t frame0 = s->next_latent;
        const float *actions = NULL;
        if (wm_config_action_dim(c) > 0) {
            wm_sampler_chunk_actions(s, acts, F);
            actions = acts;
        }
        wm_take_failure();
        s->be->upload(s->be, s->x0, latents + (size_t)k * per_chunk, per_chunk);
        wm_status st = wm_sampler_commit(s, actions); /* the cache pass, exactly as after denoising */
        if (st != WM_OK) return st;
        int nv = 0;
        st = finish_chunk(s, frame0, t0, wm_now_ms(), &nv);
        if (st != WM_OK) return st;
        if (n_video) *n_video += nv;
    }
    return WM_OK;
}

wm_status wm_session_read_frame_impl(wm_session *s, uint8_t *rgb, size_t pitch, size_t size, int64_t *index) {
    if (!s || !rgb) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "read_frame: NULL argument");
    if (!s->dec) return wm_set_error(WM_ERR_UNSUPPORTED, "model '%s' has no decoder: read latents instead", s->m->cfg.name);
    const size_t row = (size_t)s->width * 3;
    if (pitch < row) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "read_frame: pitch %zu < %zu", pitch, row);
    if (size < pitch * (size_t)(s->height - 1) + row)
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "read_frame: buffer of %zu bytes is too small for %dx%d RGB8 with pitch %zu",
                            size, s->width, s->height, pitch);
    if (s->n_pending == 0) {
        wm_status st = wm_session_generate_impl(s, NULL);
        if (st != WM_OK) return st;
    }
    const uint8_t *src = s->frames + (size_t)s->first_pending * frame_bytes(s);
    for (int y = 0; y < s->height; y++) memcpy(rgb + (size_t)y * pitch, src + (size_t)y * row, row);
    if (index) *index = s->first_pending_index;
    s->first_pending = (s->first_pending + 1) % s->max_pending;
    s->first_pending_index++;
    s->n_pending--;
    return WM_OK;
}

wm_status wm_session_read_latents_impl(wm_session *s, float *dst, size_t n, int *n_frames) {
    if (!s || !dst) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "read_latents: NULL argument");
    const size_t need = (size_t)s->latents_frames * s->m->cfg.in_dim * s->m->cfg.latent_height * s->m->cfg.latent_width;
    if (s->latents_frames == 0) return wm_set_error(WM_ERR_STATE, "read_latents: no chunk generated yet");
    if (n < need) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "read_latents: buffer holds %zu floats, need %zu", n, need);
    memcpy(dst, s->latents_host, need * sizeof(float));
    if (n_frames) *n_frames = s->latents_frames;
    return WM_OK;
}

wm_status wm_session_reset_impl(wm_session *s) {
    if (!s) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "reset: NULL session");
    wm_cache_reset(&s->cache);
    if (s->roll.on) wm_rolling_reset(s);
    s->next_latent = 0;
    s->chunks = 0;
    s->video_frames = 0;
    s->latents_frames = 0;
    s->recache_n = 0;
    s->recache_pending = 0;
    s->n_pending = 0;
    s->first_pending = 0;
    s->first_pending_index = 0;
    s->q_len = 0;
    memset(&s->last_action, 0, sizeof s->last_action);
    double prompt_ms = s->stats.last_prompt_ms;
    memset(&s->stats, 0, sizeof s->stats);
    s->stats.last_prompt_ms = prompt_ms;
    if (s->dec) wm_decoder_reset(s->dec);
    return WM_OK;
}

wm_status wm_session_set_accel_impl(wm_session *s, const wm_accel_params *a) {
    if (a && s->roll.on && (a->tempcache || a->annsa || a->annca || a->recall_probe))
        return wm_set_error(WM_ERR_UNSUPPORTED, "the accelerations (TempCache, AnnSA, AnnCA, the recall probe) are not "
                            "implemented for the rolling_forcing sampler's window passes; it runs dense");
    return wm_accel_apply(s, a);
}

void wm_session_stats_impl(const wm_session *s, wm_stats *out) {
    const wm_config *c = &s->m->cfg;
    wm_backend *be = s->be;
    /* bytes per stored element: the CPU keeps fp32, CUDA bf16 */
    const int64_t el = be->kind == WM_BACKEND_CUDA ? 2 : 4, row = (int64_t)c->dim * 2 * el;
    wm_stats st = s->stats;
    st.cache_tokens = wm_cache_max_rows(&s->cache);
    st.cache_tokens_total = wm_cache_total_rows(&s->cache);
    st.cache_bytes = st.cache_tokens_total * row;
    st.backend_bytes = (int64_t)be->bytes_in_use(be);
    st.cache_capacity_bytes = s->cache.store_rows * c->num_layers * row;
    size_t caller = out->size;
    st.size = caller;
    memcpy(out, &st, caller < sizeof st ? caller : sizeof st);
}
