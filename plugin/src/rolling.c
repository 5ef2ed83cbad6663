/* rolling.c - Rolling Forcing's sampler (rolling.h; docs/CONVERT.md): the window of blocks at
 * staggered noise levels, one forward per iteration, and the clean pass of each final block through
 * the session's ordinary cache pass (sampler.c). */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static size_t block_floats(const wm_config *c) {
    return (size_t)c->num_frame_per_block * c->in_dim * c->latent_height * c->latent_width;
}

wm_status wm_rolling_init(wm_session *s) {
    const wm_config *c = &s->m->cfg;
    wm_rolling *r = &s->roll;
    wm_backend *be = s->be;
    const int F = c->num_frame_per_block, A = wm_config_action_dim(c) > 0 ? wm_config_action_dim(c) : 1;
    r->on = 1;
    r->levels = c->n_steps;
    r->span = (c->n_steps + 2) * F;
    const size_t nx = (size_t)r->levels * block_floats(c);
    r->den = calloc((size_t)c->num_layers, sizeof *r->den);
    r->sink = calloc((size_t)c->num_layers, sizeof *r->sink);
    r->n_valid = calloc((size_t)c->num_layers, sizeof *r->n_valid);
    r->acts = calloc((size_t)r->levels * F * A, sizeof(float));
    if (!r->den || !r->sink || !r->n_valid || !r->acts)
        return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the rolling window's tables");
    if (!(r->x[0] = be->alloc(be, nx)) || !(r->x[1] = be->alloc(be, nx)) || !(r->v = be->alloc(be, nx)))
        return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the rolling window's latents");
    for (int l = 0; l < c->num_layers; l++)
        if (!(r->den[l] = be->kv_new(be, (int64_t)r->span * s->tpf, c->dim)) ||
            !(r->sink[l] = be->kv_new(be, (int64_t)F * s->tpf, c->dim)))
            return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the rolling window's K/V stores");
    wm_rolling_reset(s);
    return WM_OK;
}

void wm_rolling_free(wm_session *s) {
    wm_rolling *r = &s->roll;
    wm_backend *be = s->be;
    for (int l = 0; l < s->m->cfg.num_layers; l++) {
        if (r->den && r->den[l]) be->kv_free(be, r->den[l]);
        if (r->sink && r->sink[l]) be->kv_free(be, r->sink[l]);
    }
    float *bufs[] = {r->x[0], r->x[1], r->v};
    for (int i = 0; i < 3; i++)
        if (bufs[i]) be->free(be, bufs[i]);
    free(r->den);
    free(r->sink);
    free(r->n_valid);
    free(r->acts);
    memset(r, 0, sizeof *r);
}

void wm_rolling_reset(wm_session *s) {
    s->roll.in_flight = 0;
    s->roll.has_sink = 0;
    s->roll.cur = 0;
}

/* After the clean pass of the first block (frames 0..F-1) is committed: its K/V, the history's first
 * rows, become the sink that every later window forward re-rotates. */
void wm_rolling_keep_sink(wm_session *s) {
    const wm_config *c = &s->m->cfg;
    const int64_t rows = (int64_t)c->num_frame_per_block * s->tpf;
    for (int l = 0; l < c->num_layers; l++)
        s->be->kv_copy(s->be, s->roll.sink[l], 0, s->cache.kv[l], 0, rows, c->num_heads, wm_config_head_dim(c), 0);
    s->roll.has_sink = 1;
}

static int aborted(const wm_session *s) { return s->abort_cb && s->abort_cb(s->abort_user_data); }

/* One iteration: a new block enters at the noisiest level, the window's forward, every block's x0;
 * the oldest block, when at the last level, is final (its x0 to s->x0, then the clean pass and the
 * commit), the others re-noised one level on into the other buffer. Nothing the session keeps
 * changes unless the iteration succeeds. *final: whether a block was emitted. */
static wm_status iterate(wm_session *s, int *final) {
    wm_model *m = s->m;
    const wm_config *c = &m->cfg;
    wm_backend *be = s->be;
    wm_rolling *r = &s->roll;
    const int F = c->num_frame_per_block, k = r->in_flight, Q = (k + 1) * F, n = r->levels;
    const size_t nb = block_floats(c);
    const int64_t s0 = s->next_latent, b0 = s0 / F; /* the window's first frame and block */
    float *xa = r->x[r->cur], *xb = r->x[1 - r->cur];
    float T[WM_MAX_STEPS], t[WM_MAX_STEPS * 64];
    wm_sampler_timesteps(c, T);

    *final = 0;
    be->noise(be, xa + (size_t)k * nb, nb, s->seed, 256ull * (uint64_t)(b0 + k));
    for (int j = 0; j <= k; j++)
        for (int f = 0; f < F; f++) t[j * F + f] = T[k - j]; /* block j at level k - j */

    /* the keys before the window's own: [sink re-rotated ; working frames], none while it starts at 0 */
    if (s0 == 0) {
        memset(r->n_valid, 0, (size_t)c->num_layers * sizeof *r->n_valid);
    } else {
        if (!r->has_sink) return wm_set_error(WM_ERR_INTERNAL, "rolling window at frame %lld without its sink", (long long)s0);
        const int64_t work_max = r->span - Q - F, lo = s0 - work_max > F ? s0 - work_max : F;
        const int64_t working = s0 - lo, rope_start = s0 - working - F;
        const int64_t srows = (int64_t)F * s->tpf, wrows = working * s->tpf;
        for (int l = 0; l < c->num_layers; l++) {
            if (s->cache.rows[l] < wrows)
                return wm_set_error(WM_ERR_INTERNAL, "rolling window: the history holds %lld rows, the window needs %lld",
                                    (long long)s->cache.rows[l], (long long)wrows);
            be->kv_copy(be, r->den[l], 0, r->sink[l], 0, srows, c->num_heads, wm_config_head_dim(c), rope_start);
            be->kv_copy(be, r->den[l], srows, s->cache.kv[l], s->cache.rows[l] - wrows, wrows, c->num_heads,
                        wm_config_head_dim(c), 0);
            r->n_valid[l] = srows + wrows;
        }
    }
    const float *actions = NULL;
    if (wm_config_action_dim(c) > 0) {
        wm_sampler_chunk_actions(s, r->acts, Q); /* the window's later blocks take the queue ahead */
        actions = r->acts;
    }
    wm_attn_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.n_valid = r->n_valid;
    wm_dit_forward(&m->dit, &s->work, r->v, xa, t, actions, Q, s0, r->den, &plan, s->ctx);
    wm_status fail = wm_take_failure();
    if (fail != WM_OK) return fail;

    /* x0 = x - sigma v per block; the final one (j = 0 at level n - 1) to s->x0, the others on */
    const int emit = k == n - 1;
    for (int j = 0; j <= k; j++) {
        const int level = k - j;
        const float sigma = wm_sampler_sigma(c, T[level]);
        float *dst = (emit && j == 0) ? s->x0 : xb + (size_t)(j - emit) * nb;
        be->copy(be, dst, xa + (size_t)j * nb, nb);
        be->axpby(be, dst, -sigma, r->v + (size_t)j * nb, 1.0f, nb);
        if (emit && j == 0) continue;
        const float sn = wm_sampler_sigma(c, T[level + 1]);
        be->noise(be, s->eps, nb, s->seed, 256ull * (uint64_t)(b0 + j) + (uint64_t)(level + 1));
        be->axpby(be, dst, sn, s->eps, 1.0f - sn, nb); /* x = (1-s')x0 + s' eps */
    }
    if (emit) {
        if (aborted(s)) return wm_set_error(WM_ERR_ABORTED, "generation aborted by the host");
        /* the clean pass of the final block: the session's cache pass at its frames, then the commit */
        if ((fail = wm_sampler_commit(s, actions)) != WM_OK) return fail;
        *final = 1;
    }
    r->cur = 1 - r->cur;
    r->in_flight = emit ? k : k + 1;
    return WM_OK;
}

wm_status wm_rolling_chunk(wm_session *s) {
    if (!s->has_prompt) return wm_set_error(WM_ERR_STATE, "no prompt set: call session_set_prompt_* first");
    const int in_flight = s->roll.in_flight, cur = s->roll.cur;
    /* start clean once per call: a filling iteration's re-noising ops are checked with the next
     * iteration's forward (taking failures per iteration would drop them) */
    wm_take_failure();
    for (int final = 0; !final;) {
        wm_status st = aborted(s) ? wm_set_error(WM_ERR_ABORTED, "generation aborted by the host") : iterate(s, &final);
        if (st != WM_OK) {
            /* only the window's filling runs several iterations per call; it starts over */
            s->roll.in_flight = in_flight;
            s->roll.cur = cur;
            return st;
        }
    }
    return WM_OK;
}
