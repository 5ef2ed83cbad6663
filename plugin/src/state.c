/* state.c - session snapshots. The blob has a fixed size per session (the KV cache is stored at its
 * full capacity), so a host can allocate save slots once. Layout: a header that identifies the
 * model shape and policy, then every field of the stream in a fixed order. The prompt's
 * cross-attention K/V are recomputed on load from the stored prompt embedding (deterministic). */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#define STATE_MAGIC "WMSTATE4" /* 2: per-layer cache rows, group sizes and match plane; 3: the re-cache chunks;
                                  4: the sampler, Rolling Forcing's window */

typedef struct cursor {
    uint8_t *w;       /* writing, or NULL */
    const uint8_t *r; /* reading, or NULL */
    size_t off;
} cursor;

static void io(cursor *c, void *p, size_t n) {
    if (c->w) memcpy(c->w + c->off, p, n);
    else if (c->r) memcpy(p, c->r + c->off, n);
    c->off += n;
}
#define IO(c, v) io(c, &(v), sizeof(v))

typedef struct state_header {
    char magic[8];
    uint64_t size;
    int32_t dim, layers, tpf, store_rows, window, sinks, frames_per_chunk, upscale, text_len, text_dim;
    int32_t width, height, in_dim, latent_h, latent_w, dec_state_size, sampler;
} state_header;

static void make_header(const wm_session *s, state_header *h, size_t size) {
    const wm_config *c = &s->m->cfg;
    memset(h, 0, sizeof *h);
    memcpy(h->magic, STATE_MAGIC, 8);
    h->size = size;
    h->dim = c->dim, h->layers = c->num_layers, h->tpf = s->tpf, h->store_rows = (int32_t)s->cache.store_rows;
    h->window = s->window, h->sinks = s->sinks, h->frames_per_chunk = c->num_frame_per_block;
    h->upscale = s->upscale, h->text_len = c->text_len, h->text_dim = c->text_dim;
    h->width = s->width, h->height = s->height, h->in_dim = c->in_dim;
    h->latent_h = c->latent_height, h->latent_w = c->latent_width;
    h->dec_state_size = s->dec ? (int32_t)wm_decoder_state_size(s->dec) : 0;
    h->sampler = c->sampler;
}

/* n floats of backend memory through a bounce buffer (the blob may be unaligned for floats) */
static void io_backend(wm_session *s, cursor *c, float *dev, size_t n) {
    if (c->w || c->r) {
        float *buf = malloc(n * sizeof(float));
        if (!buf) {
            wm_note_failure(wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of host memory for a snapshot"));
        } else if (c->w) {
            s->be->download(s->be, buf, dev, n);
            memcpy(c->w + c->off, buf, n * sizeof(float));
        } else {
            memcpy(buf, c->r + c->off, n * sizeof(float));
            s->be->upload(s->be, dev, buf, n);
            s->be->sync(s->be); /* the upload reads buf */
        }
        free(buf);
    }
    c->off += n * sizeof(float);
}

/* Rolling Forcing's window (rolling.h): the blocks in flight at their levels and the sink. The den
 * stores are rebuilt by every iteration. Loaded into x[0]. */
static void walk_rolling(wm_session *s, cursor *c) {
    const wm_config *cf = &s->m->cfg;
    wm_rolling *r = &s->roll;
    const size_t nx = (size_t)r->levels * cf->num_frame_per_block * cf->in_dim * cf->latent_height * cf->latent_width;
    IO(c, r->in_flight);
    IO(c, r->has_sink);
    if (c->r) r->cur = 0;
    io_backend(s, c, r->x[r->cur], nx);
    const int64_t rows = (int64_t)cf->num_frame_per_block * s->tpf;
    wm_cache_io kio = {c->w, c->r, c->off};
    for (int l = 0; l < cf->num_layers; l++) wm_kv_io(s->be, r->sink[l], rows, cf->dim, &kio);
    c->off = kio.off;
}

/* Where walk_rolling starts in a blob: after the cache, the last latents and their frame count. */
static size_t rolling_at(wm_session *s, size_t cache_at) {
    const wm_config *cf = &s->m->cfg;
    wm_cache_io io = {NULL, NULL, 0};
    wm_cache_io_walk(&s->cache, &io);
    return cache_at + io.off +
           (size_t)cf->num_frame_per_block * cf->in_dim * cf->latent_height * cf->latent_width * sizeof(float) + sizeof(int);
}

/* One walk over every field, used for size, save and load alike so they cannot disagree. */
static void walk(wm_session *s, cursor *c) {
    const wm_config *cf = &s->m->cfg;
    IO(c, s->seed);
    IO(c, s->next_latent);
    IO(c, s->chunks);
    IO(c, s->video_frames);
    IO(c, s->has_prompt);
    io(c, s->prompt_host, (size_t)cf->text_len * cf->text_dim * sizeof(float));
    /* the cache at its full capacity, every plane (cache.c) */
    wm_cache_io cio = {c->w, c->r, c->off};
    wm_cache_io_walk(&s->cache, &cio);
    c->off = cio.off;
    io(c, s->latents_host, (size_t)cf->num_frame_per_block * cf->in_dim * cf->latent_height * cf->latent_width * sizeof(float));
    IO(c, s->latents_frames);
    if (s->roll.on) walk_rolling(s, c);
    if (s->dec) {
        size_t n = wm_decoder_state_size(s->dec);
        if (c->w) wm_decoder_state_save(s->dec, c->w + c->off);
        else if (c->r) wm_decoder_state_load(s->dec, c->r + c->off);
        c->off += n;
        io(c, s->frames, (size_t)s->max_pending * s->width * s->height * 3);
        IO(c, s->n_pending);
        IO(c, s->first_pending);
        IO(c, s->first_pending_index);
    }
    if (s->recache_chunks) { /* LongLive's re-cache: the kept chunks and a pending switch */
        const int A = wm_config_action_dim(cf) > 0 ? wm_config_action_dim(cf) : 1;
        const size_t F = (size_t)cf->num_frame_per_block;
        IO(c, s->recache_n);
        IO(c, s->recache_pending);
        io(c, s->recache_frame0, (size_t)s->recache_chunks * sizeof(int64_t));
        io(c, s->recache_lat, (size_t)s->recache_chunks * F * cf->in_dim * cf->latent_height * cf->latent_width * sizeof(float));
        io(c, s->recache_act, (size_t)s->recache_chunks * F * A * sizeof(float));
    }
    io(c, s->queue, sizeof s->queue);
    IO(c, s->q_len);
    IO(c, s->last_action);
    IO(c, s->stats.frames_generated);
    IO(c, s->stats.latent_frames);
    IO(c, s->stats.chunks);
}

size_t wm_session_state_size_impl(const wm_session *s) {
    cursor c = {NULL, NULL, sizeof(state_header)};
    walk((wm_session *)s, &c);
    return c.off;
}

wm_status wm_session_state_save_impl(const wm_session *s, void *dst, size_t size) {
    if (!s || !dst) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "state_save: NULL argument");
    size_t need = wm_session_state_size_impl(s);
    if (size < need) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "state_save: buffer of %zu bytes, need %zu", size, need);
    state_header h;
    make_header(s, &h, need);
    memcpy(dst, &h, sizeof h);
    cursor c = {(uint8_t *)dst, NULL, sizeof h};
    wm_take_failure(); /* only this save's failures count */
    walk((wm_session *)s, &c);
    /* a plane that could not be read (no host memory for its bounce buffer, a device error) leaves
     * the blob incomplete: an error, not a snapshot that loads as garbage */
    return wm_take_failure();
}

wm_status wm_session_state_load_impl(wm_session *s, const void *src, size_t size) {
    if (!s || !src) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "state_load: NULL argument");
    size_t need = wm_session_state_size_impl(s);
    if (size < sizeof(state_header)) return wm_set_error(WM_ERR_FORMAT, "state_load: %zu bytes is not a wm state", size);
    state_header h, want;
    memcpy(&h, src, sizeof h);
    make_header(s, &want, need);
    if (memcmp(h.magic, STATE_MAGIC, 8) != 0) return wm_set_error(WM_ERR_FORMAT, "state_load: not a wm state (bad magic)");
    if (size != need || h.size != need)
        return wm_set_error(WM_ERR_FORMAT, "state_load: state of %zu bytes, this session's states are %zu bytes", size, need);
    if (memcmp(&h, &want, sizeof h) != 0)
        return wm_set_error(WM_ERR_FORMAT, "state_load: the state was saved by a session of another model shape or cache policy");
    /* validate the scalars before touching the session, so a corrupt blob changes nothing */
    cursor c = {NULL, (const uint8_t *)src, sizeof h};
    int64_t q_len_off;
    /* the cache's row counts follow seed, next_latent, chunks, video_frames, has_prompt and the prompt */
    const size_t cache_at = sizeof h + 4 * sizeof(int64_t) + sizeof(int) + (size_t)s->m->cfg.text_len * s->m->cfg.text_dim * sizeof(float);
    if (wm_cache_io_check(&s->cache, (const uint8_t *)src + cache_at) != 0)
        return wm_set_error(WM_ERR_FORMAT, "state_load: corrupt state (cache row counts out of range)");
    q_len_off = (int64_t)need - (int64_t)(sizeof(int) + sizeof(wm_action) + 3 * sizeof(int64_t));
    int q_len;
    memcpy(&q_len, (const uint8_t *)src + q_len_off, sizeof q_len);
    if (q_len < 0 || q_len > WM_ACTION_QUEUE) return wm_set_error(WM_ERR_FORMAT, "state_load: corrupt state (action queue %d)", q_len);
    if (s->recache_chunks) { /* the re-cache block ends where the action queue starts */
        const wm_config *cf = &s->m->cfg;
        const size_t F = (size_t)cf->num_frame_per_block, A = wm_config_action_dim(cf) > 0 ? (size_t)wm_config_action_dim(cf) : 1;
        const size_t block = 2 * sizeof(int) + (size_t)s->recache_chunks *
                                                   (sizeof(int64_t) + F * cf->in_dim * cf->latent_height * cf->latent_width *
                                                                          sizeof(float) + F * A * sizeof(float));
        int n_kept, pending;
        const uint8_t *at = (const uint8_t *)src + q_len_off - sizeof s->queue - block;
        memcpy(&n_kept, at, sizeof n_kept);
        memcpy(&pending, at + sizeof n_kept, sizeof pending);
        if (n_kept < 0 || n_kept > s->recache_chunks || (pending != 0 && pending != 1))
            return wm_set_error(WM_ERR_FORMAT, "state_load: corrupt state (re-cache chunks %d)", n_kept);
    }
    if (s->roll.on) {
        /* the sink exists exactly when a block was committed (it is taken at the commit of frame 0) */
        int in_flight, has_sink;
        int64_t next_latent;
        const uint8_t *at = (const uint8_t *)src + rolling_at(s, cache_at);
        memcpy(&in_flight, at, sizeof in_flight);
        memcpy(&has_sink, at + sizeof in_flight, sizeof has_sink);
        memcpy(&next_latent, (const uint8_t *)src + sizeof h + sizeof s->seed, sizeof next_latent);
        if (in_flight < 0 || in_flight >= s->roll.levels || (has_sink != 0 && has_sink != 1) ||
            has_sink != (next_latent > 0))
            return wm_set_error(WM_ERR_FORMAT,
                                "state_load: corrupt state (rolling window of %d blocks, sink %d, next latent frame %lld)",
                                in_flight, has_sink, (long long)next_latent);
    }
    wm_take_failure();
    walk(s, &c);
    wm_status fail = wm_take_failure();
    if (fail != WM_OK) return fail;
    if (s->has_prompt) {
        const wm_config *cf = &s->m->cfg;
        s->be->upload(s->be, s->prompt_dev, s->prompt_host, (size_t)cf->text_len * cf->text_dim);
        wm_dit_context(&s->m->dit, &s->work, s->prompt_dev, s->ctx);
    }
    return WM_OK;
}
