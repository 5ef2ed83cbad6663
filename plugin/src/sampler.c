/* sampler.c - the Self-Forcing streaming loop for one chunk (docs/MODEL.md section 2): few-step
 * flow denoising with re-noising (or Euler steps) between steps, optionally with action guidance,
 * then a clean pass that commits the chunk's K/V. */
#include "engine.h"

#include "rng.h"

#include <math.h>
#include <string.h>

/* The scheduler's table entry i: sigma_i = shift*s/(1+(shift-1)*s), s = 1 - i/1000, in float64. */
static double table_sigma(double shift, int i) {
    double s = 1.0 - (double)i / 1000.0;
    return shift * s / (1.0 + (shift - 1.0) * s);
}

int wm_sampler_timesteps(const wm_config *c, float *t) {
    for (int k = 0; k < c->n_steps; k++) {
        float step = c->denoising_step_list[k];
        /* with warping, step t -> T[1000 - t] of FlowMatchScheduler(shift, sigma_min=0, extra_one_step) */
        t[k] = c->warp_denoising_step ? (float)(1000.0 * table_sigma(c->timestep_shift, 1000 - (int)lrintf(step))) : step;
    }
    return c->n_steps;
}

float wm_sampler_sigma(const wm_config *c, float t) {
    /* the public code's lookup: the sigma of the table entry whose (fp32) timestep is nearest to t */
    int best = 0;
    double best_d = INFINITY;
    for (int i = 0; i < 1000; i++) {
        double d = fabs((double)(float)(1000.0 * table_sigma(c->timestep_shift, i)) - (double)t);
        if (d < best_d) best_d = d, best = i;
    }
    return (float)table_sigma(c->timestep_shift, best);
}

static int aborted(const wm_session *s) { return s->abort_cb && s->abort_cb(s->abort_user_data); }

/* Video frames [first, last] produced by absolute latent frame f (u = time upscale). */
static void video_range(int64_t f, int u, int64_t *first, int64_t *count) {
    if (f == 0) {
        *first = 0;
        *count = 1;
    } else {
        *first = (int64_t)u * (f - 1) + 1;
        *count = u;
    }
}

static void action_vector(const wm_config *c, const wm_action *a, float *v) {
    int n = 0;
    for (int b = 0; b < c->n_buttons; b++) v[n++] = (a->buttons >> b) & 1u ? 1.0f : 0.0f;
    for (int x = 0; x < c->n_axes; x++) v[n++] = a->axes[x];
    if (c->action_mouse) {
        v[n++] = a->mouse_dx;
        v[n++] = a->mouse_dy;
    }
}

/* Per-latent-frame action vectors: the mean over each latent frame's video frames of the queued
 * actions (the last submitted action when the queue runs out). Does not consume the queue. */
void wm_sampler_chunk_actions(const wm_session *s, float *out, int F) {
    const wm_config *c = &s->m->cfg;
    const int A = wm_config_action_dim(c);
    float tmp[WM_MAX_BUTTONS + WM_MAX_AXES + 2];
    for (int f = 0; f < F; f++) {
        int64_t first, count;
        video_range(s->next_latent + f, s->upscale, &first, &count);
        float *o = out + (size_t)f * A;
        memset(o, 0, (size_t)A * sizeof(float));
        for (int64_t j = 0; j < count; j++) {
            int64_t qi = first + j - s->video_frames;
            const wm_action *a = qi < s->q_len ? &s->queue[qi] : &s->last_action;
            action_vector(c, a, tmp);
            for (int e = 0; e < A; e++) o[e] += tmp[e];
        }
        for (int e = 0; e < A; e++) o[e] /= (float)count;
    }
}

static wm_status recache(wm_session *s);

wm_status wm_sampler_chunk(wm_session *s) {
    wm_model *m = s->m;
    const wm_config *c = &m->cfg;
    wm_backend *be = s->be;
    const int F = c->num_frame_per_block;
    const size_t n = (size_t)F * c->in_dim * c->latent_height * c->latent_width;
    const int64_t frame0 = s->next_latent;
    const uint64_t stream = 256ull * (uint64_t)s->chunks;

    if (!s->has_prompt) return wm_set_error(WM_ERR_STATE, "no prompt set: call session_set_prompt_* first");
    if (s->recache_pending) { /* the prompt changed: rebuild the window with it first */
        wm_status st = recache(s);
        if (st != WM_OK) return st; /* still pending: the next call rebuilds from the sinks again */
        s->recache_pending = 0;
    }
    wm_status room = wm_cache_check_room(&s->cache);
    if (room != WM_OK) return room;

    float t[WM_MAX_STEPS], tf[64];
    float acts[64 * (WM_MAX_BUTTONS + WM_MAX_AXES + 2)];
    const int nsteps = wm_sampler_timesteps(c, t);
    const float *actions = NULL;
    int guided = 0; /* action guidance this chunk: on, and some action is not neutral (else v_idle = v) */
    if (wm_config_action_dim(c) > 0) {
        wm_sampler_chunk_actions(s, acts, F);
        actions = acts;
        for (int i = 0; s->guidance > 0 && i < F * wm_config_action_dim(c); i++) guided |= acts[i] != 0.0f;
    }
    static const float idle[64 * (WM_MAX_BUTTONS + WM_MAX_AXES + 2)]; /* the neutral action: zeros */
    wm_take_failure(); /* start clean: only this chunk's op failures count */
    be->noise(be, s->x, n, s->seed, stream);
    for (int k = 0; k < nsteps; k++) {
        if (aborted(s)) return wm_set_error(WM_ERR_ABORTED, "generation aborted by the host");
        for (int f = 0; f < F; f++) tf[f] = t[k];
        wm_attn_plan plan;
        wm_accel_plan(s, k, nsteps, &plan);
        wm_dit_forward(&m->dit, &s->work, s->v, s->x, tf, actions, F, frame0, s->cache.kv, &plan, s->ctx);
        if (guided && k < c->action_guidance_steps) {
            /* action guidance: the same forward under the neutral action, into eps (free until the
             * re-noising below), then v += w (v - v_idle) */
            wm_dit_forward(&m->dit, &s->work, s->eps, s->x, tf, idle, F, frame0, s->cache.kv, &plan, s->ctx);
            be->axpby(be, s->v, -s->guidance, s->eps, 1.0f + s->guidance, n);
        }
        wm_status fail = wm_take_failure();
        if (fail != WM_OK) return fail; /* the op's message is set; nothing was committed */
        const float sigma = wm_sampler_sigma(c, t[k]);
        be->copy(be, s->x0, s->x, n);
        be->axpby(be, s->x0, -sigma, s->v, 1.0f, n); /* x0 = x - sigma * v */
        if (k + 1 < nsteps) {
            const float sn = wm_sampler_sigma(c, t[k + 1]);
            if (c->sampler == WM_SAMPLER_FLOW_EULER) {
                /* an Euler step of the flow ODE: keeps the noise's detail, which a model trained with
                 * plain flow matching (not distilled) needs - its x0 is a conditional mean, and
                 * re-noising that mean with fresh noise converges to a blurred frame */
                be->axpby(be, s->x, sn - sigma, s->v, 1.0f, n); /* x = x + (s' - s) v */
            } else {
                be->noise(be, s->eps, n, s->seed, stream + (uint64_t)k + 1);
                be->copy(be, s->x, s->x0, n);
                be->axpby(be, s->x, sn, s->eps, 1.0f - sn, n); /* x = (1-s')x0 + s' eps */
            }
        }
    }
    if (aborted(s)) return wm_set_error(WM_ERR_ABORTED, "generation aborted by the host");
    return wm_sampler_commit(s, actions);
}

/* The cache pass over the clean latents in s->x0, frames frame0.., then the commit: the rows just
 * written become cache; TempCache merges, the policy evicts. latents_out (host, or NULL): where x0
 * goes; that copy is the chunk's one wait for the device before its frames are copied, and it
 * surfaces asynchronous device errors before anything is committed. */
static wm_status cache_pass(wm_session *s, int64_t frame0, const float *actions, float *latents_out) {
    wm_model *m = s->m;
    const wm_config *c = &m->cfg;
    wm_backend *be = s->be;
    const int F = c->num_frame_per_block;
    const size_t n = (size_t)F * c->in_dim * c->latent_height * c->latent_width;
    float tf[64];
    /* the clean x0 at timestep context_noise (Self-Forcing's inference pipeline); its K/V stay */
    be->copy(be, s->x, s->x0, n);
    for (int f = 0; f < F; f++) tf[f] = c->context_noise;
    wm_attn_plan plan;
    wm_accel_plan(s, c->n_steps, c->n_steps, &plan);
    wm_dit_forward(&m->dit, &s->work, s->v, s->x, tf, actions, F, frame0, s->cache.kv, &plan, s->ctx);
    if (latents_out) be->download(be, latents_out, s->x0, n);
    else be->sync(be);
    wm_status fail = wm_take_failure();
    if (fail != WM_OK) return fail;
    return wm_cache_commit(&s->cache, frame0);
}

/* Keeps the chunk just committed (its clean latents, already in s->latents_host, and its actions) for
 * a later re-cache. */
static void recache_keep(wm_session *s, const float *actions) {
    const wm_config *c = &s->m->cfg;
    const int F = c->num_frame_per_block, A = wm_config_action_dim(c) > 0 ? wm_config_action_dim(c) : 1;
    const size_t nl = (size_t)F * c->in_dim * c->latent_height * c->latent_width, na = (size_t)F * A;
    if (s->recache_n == s->recache_chunks) { /* drop the oldest */
        memmove(s->recache_lat, s->recache_lat + nl, (size_t)(s->recache_n - 1) * nl * sizeof(float));
        memmove(s->recache_act, s->recache_act + na, (size_t)(s->recache_n - 1) * na * sizeof(float));
        memmove(s->recache_frame0, s->recache_frame0 + 1, (size_t)(s->recache_n - 1) * sizeof(int64_t));
        s->recache_n--;
    }
    const int i = s->recache_n++;
    memcpy(s->recache_lat + (size_t)i * nl, s->latents_host, nl * sizeof(float));
    if (actions && wm_config_action_dim(c) > 0) memcpy(s->recache_act + (size_t)i * na, actions, na * sizeof(float));
    else memset(s->recache_act + (size_t)i * na, 0, na * sizeof(float));
    s->recache_frame0[i] = s->next_latent;
}

/* LongLive's re-cache after a prompt switch (docs/CONVERT.md): the rows after the sinks are dropped
 * and rebuilt, chunk by chunk in order, by the cache pass of the kept chunks of frames
 * [max(sinks, s - (window - sinks)), s) under the new prompt; the window then keeps what it would. */
static wm_status recache(wm_session *s) {
    const wm_config *c = &s->m->cfg;
    const int F = c->num_frame_per_block, A = wm_config_action_dim(c) > 0 ? wm_config_action_dim(c) : 1;
    const size_t nl = (size_t)F * c->in_dim * c->latent_height * c->latent_width, na = (size_t)F * A;
    const int64_t end = s->next_latent, lo0 = end - (s->window - s->sinks), lo = lo0 > s->sinks ? lo0 : s->sinks;
    wm_take_failure();
    wm_cache_drop_after_sinks(&s->cache);
    for (int i = 0; i < s->recache_n; i++) {
        const int64_t f0 = s->recache_frame0[i];
        if (f0 < lo || f0 >= end) continue;
        s->be->upload(s->be, s->x0, s->recache_lat + (size_t)i * nl, nl);
        const wm_status st =
            cache_pass(s, f0, wm_config_action_dim(c) > 0 ? s->recache_act + (size_t)i * na : NULL, NULL);
        if (st != WM_OK) return st;
    }
    return WM_OK;
}

wm_status wm_sampler_commit(wm_session *s, const float *actions) {
    const int F = s->m->cfg.num_frame_per_block;
    /* into the spare buffer: a chunk that fails leaves the last chunk's latents as they were */
    wm_status fail = cache_pass(s, s->next_latent, actions, s->latents_spare);
    if (fail != WM_OK) return fail;
    float *t = s->latents_host;
    s->latents_host = s->latents_spare;
    s->latents_spare = t;
    if (s->roll.on && s->next_latent == 0) wm_rolling_keep_sink(s);
    if (s->recache_chunks) recache_keep(s, actions);
    s->next_latent += F;
    s->chunks++;
    wm_accel_chunk_done(s);
    return WM_OK;
}
