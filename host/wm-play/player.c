/* player.c - see player.h. */
#include "player.h"

#include "st_reader.h" /* host/common: prompt embeddings */
#include "wm_host.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(player *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(player *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return 0;
}

static int api_fail(player *p, const char *what, wm_status st) {
    return fail(p, "%s: %s: %s", what, p->api->status_string(st), p->api->last_error());
}

int64_t player_frame(const player *p) { return p->stats.frames_generated; }

int player_next_chunk_frames(const player *p) {
    const int64_t c = p->stats.chunks;
    return (int)(wm_host_frames_after_chunk(&p->info, c) -
                 (c ? wm_host_frames_after_chunk(&p->info, c - 1) : 0));
}

static int refresh_stats(player *p) {
    p->stats.size = sizeof p->stats;
    wm_status st = p->api->session_get_stats(p->session, &p->stats);
    return st == WM_OK ? 1 : api_fail(p, "stats", st);
}

/* Applies a prompt to the session (not logged). */
static int apply_prompt(player *p, int kind, const char *text) {
    wm_status st;
    if (kind == TIMELINE_PROMPT_TEXT) {
        if (p->info.prompt_kind != WM_PROMPT_TEXT)
            return fail(p, "model '%s' takes prompt embeddings, not text (use --prompt-embedding FILE)",
                        p->info.name);
        st = p->api->session_set_prompt_text(p->session, text ? text : "");
        if (st != WM_OK) return api_fail(p, "prompt", st);
        return 1;
    }
    float *emb;
    int64_t shape[ST_MAX_DIMS];
    int ndim = 2, n_tokens;
    if (kind == TIMELINE_PROMPT_EMBEDDING) {
        char err[1024];
        emb = st_read_f32(text, "prompt", shape, &ndim, err, sizeof err);
        if (!emb) return fail(p, "prompt embedding: %s", err);
        if (ndim != 2 || shape[1] != p->info.text_dim || shape[0] < 1 || shape[0] > p->info.text_len) {
            free(emb);
            return fail(p, "%s: tensor \"prompt\" must be [L <= %d, %d]", text, p->info.text_len,
                        p->info.text_dim);
        }
        n_tokens = (int)shape[0];
    } else {
        emb = calloc((size_t)p->info.text_dim, sizeof *emb);
        if (!emb) return fail(p, "out of memory");
        n_tokens = 1;
    }
    st = p->api->session_set_prompt_embeddings(p->session, emb, n_tokens, p->info.text_dim);
    free(emb);
    return st == WM_OK ? 1 : api_fail(p, "prompt", st);
}

int player_open(player *p, const wm_api *api, const player_options *o) {
    memset(p, 0, sizeof *p);
    p->api = api;
    timeline_init(&p->tl);
    timeline_init(&p->rec);
    wm_model_params mp;
    api->model_params_init(&mp);
    mp.path = o->model;
    mp.random_weights = o->random_weights;
    mp.weight_seed = o->weight_seed;
    mp.backend = o->backend;
    mp.n_threads = o->threads;
    mp.log = o->log;
    mp.log_user_data = o->log_user_data;
    wm_status st = api->model_load(&mp, &p->model);
    if (st != WM_OK)
        return fail(p, "cannot load model %s: %s: %s", o->model, api->status_string(st), api->last_error());
    p->info.size = sizeof p->info;
    if ((st = api->model_get_info(p->model, &p->info)) != WM_OK) return api_fail(p, "model info", st);
    if (p->info.width <= 0)
        return fail(p,
                    "model '%s' has no decoder (no RGB frames to show); wm-run --latents dumps its latents",
                    p->info.name);
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = o->seed;
    sp.action_guidance = o->action_guidance;
    sp.abort_cb = o->abort_cb;
    sp.abort_user_data = o->abort_user_data;
    if (o->accel) sp.accel = *o->accel;
    if ((st = api->session_new(p->model, &sp, &p->session)) != WM_OK) return api_fail(p, "session", st);
    if ((st = api->session_get_accel(p->session, &p->accel)) != WM_OK) return api_fail(p, "accel", st);
    p->frame_bytes = (size_t)p->info.width * p->info.height * 3;
    p->max_chunk_frames =
        (int)wm_host_frames_after_chunk(&p->info, 1) - (int)wm_host_frames_after_chunk(&p->info, 0);
    if ((int)wm_host_frames_after_chunk(&p->info, 0) > p->max_chunk_frames)
        p->max_chunk_frames = (int)wm_host_frames_after_chunk(&p->info, 0);
    p->chunk_rgb = malloc(p->frame_bytes * (size_t)p->max_chunk_frames);
    if (!p->chunk_rgb) return fail(p, "out of memory");

    /* metadata of recordings */
    char abs[PATH_MAX];
    p->tl.model = strdup(realpath(o->model, abs) ? abs : o->model);
    p->tl.random_weights = o->random_weights;
    p->tl.weight_seed = o->weight_seed;
    p->tl.seed = o->seed;
    p->tl.action_guidance = o->action_guidance;
    p->tl.backend = strdup(wm_host_backend_name(p->info.backend));

    int kind = p->info.prompt_kind == WM_PROMPT_TEXT ? TIMELINE_PROMPT_TEXT
               : o->prompt_embedding                 ? TIMELINE_PROMPT_EMBEDDING
                                                     : TIMELINE_PROMPT_ZERO;
    if (p->info.prompt_kind != WM_PROMPT_TEXT && o->prompt && *o->prompt)
        return fail(p, "model '%s' takes prompt embeddings, not text: use --prompt-embedding FILE",
                    p->info.name);
    const char *text = kind == TIMELINE_PROMPT_TEXT ? (o->prompt ? o->prompt : "") : o->prompt_embedding;
    if (!timeline_restart(&p->tl, kind, text) || !timeline_set_accel(&p->tl, 0, &p->accel))
        return fail(p, "out of memory");
    if (!apply_prompt(p, kind, text)) return 0;
    p->prompt_kind = kind;
    p->prompt = text ? strdup(text) : NULL;
    return refresh_stats(p);
}

void player_close(player *p) {
    if (p->writer) player_record_stop(p);
    if (p->session) p->api->session_free(p->session);
    if (p->model) p->api->model_free(p->model);
    free(p->chunk_rgb);
    free(p->prompt);
    free(p->rec_path);
    timeline_free(&p->tl);
    timeline_free(&p->rec);
    p->session = NULL;
    p->model = NULL;
}

int player_set_prompt(player *p, int kind, const char *text) {
    if (!apply_prompt(p, kind, text)) return 0;
    if (!timeline_set_prompt(&p->tl, player_frame(p), kind, text)) return fail(p, "out of memory");
    char *copy = text ? strdup(text) : NULL;
    free(p->prompt);
    p->prompt = copy;
    p->prompt_kind = kind;
    return 1;
}

int player_set_accel(player *p, const wm_accel_params *a) {
    wm_status st = p->api->session_set_accel(p->session, a);
    if (st != WM_OK) {
        const char *msg = p->api->last_error();
        return fail(p, "%s", msg && *msg ? msg : p->api->status_string(st));
    }
    /* read back: the plugin's view of what it applied */
    if ((st = p->api->session_get_accel(p->session, &p->accel)) != WM_OK) return api_fail(p, "accel", st);
    if (!timeline_set_accel(&p->tl, player_frame(p), &p->accel)) return fail(p, "out of memory");
    return 1;
}

int player_reset(player *p) {
    if (p->writer && !player_record_stop(p)) return 0;
    wm_status st = p->api->session_reset(p->session);
    if (st != WM_OK) return api_fail(p, "reset", st);
    if (!timeline_restart(&p->tl, p->prompt_kind, p->prompt) || !timeline_set_accel(&p->tl, 0, &p->accel))
        return fail(p, "out of memory");
    p->chunk_frames = 0;
    return refresh_stats(p);
}

int player_chunk(player *p, const wm_action *live) {
    const int64_t first = player_frame(p);
    const int n = player_next_chunk_frames(p);
    if (!live) {
        /* replay: the prompt in effect at this chunk, then the logged actions (the last one held) */
        const timeline *r = p->replay;
        const timeline_prompt *tp = timeline_prompt_at(r, first);
        if (tp && (tp->kind != p->prompt_kind || (tp->text == NULL) != (p->prompt == NULL) ||
                   (tp->text && strcmp(tp->text, p->prompt))))
            if (!player_set_prompt(p, tp->kind, tp->text)) return 0;
        const timeline_accel *ta = timeline_accel_at(r, first);
        if (ta && !timeline_accel_equal(&ta->accel, &p->accel) && !player_set_accel(p, &ta->accel)) {
            char msg[sizeof p->err];
            snprintf(msg, sizeof msg, "%s", p->err);
            return fail(p, "the replay's accelerations at frame %" PRId64 ": %s", first, msg);
        }
    }
    for (int k = 0; k < n; k++) {
        wm_action a;
        if (live)
            a = *live;
        else if (p->replay->n_actions == 0)
            memset(&a, 0, sizeof a);
        else
            a = p->replay->actions[first + k < p->replay->n_actions ? first + k : p->replay->n_actions - 1];
        wm_status st = p->api->session_push_action(p->session, &a);
        if (st != WM_OK) return api_fail(p, "action", st);
        if (!timeline_push_action(&p->tl, &a)) return fail(p, "out of memory");
    }
    int got = 0;
    wm_status st = p->api->session_generate(p->session, &got);
    if (st != WM_OK) {
        p->tl.n_actions -= n; /* the session is left as it was */
        return api_fail(p, "generate", st);
    }
    if (got != n) return fail(p, "chunk produced %d frames, expected %d", got, n);
    const size_t pitch = (size_t)p->info.width * 3;
    for (int k = 0; k < n; k++) {
        uint8_t *dst = p->chunk_rgb + (size_t)k * p->frame_bytes;
        int64_t index = -1;
        st = p->api->session_read_frame(p->session, dst, pitch, p->frame_bytes, &index);
        if (st != WM_OK) return api_fail(p, "read frame", st);
        if (index != first + k)
            return fail(p, "frame index %" PRId64 ", expected %" PRId64, index, first + k);
        const int check = p->replay && index >= p->replay->first_frame &&
                          index < p->replay->first_frame + p->replay->n_hashes;
        const int rec = p->writer != NULL;
        if (!check && !rec) continue;
        const uint64_t h = wm_host_hash(dst, p->frame_bytes);
        if (check) {
            p->replay_checked++;
            if (h != p->replay->hashes[index - p->replay->first_frame]) {
                if (p->replay_mismatches++ == 0) p->replay_first_bad = index;
            }
        }
        if (rec) {
            char err[512];
            if (!video_writer_write(p->writer, dst, pitch, err, sizeof err)) {
                fail(p, "%s: %s", p->rec_path, err);
                video_writer_close(p->writer, err, sizeof err);
                p->writer = NULL;
                return 0;
            }
            if (!timeline_push_hash(&p->rec, h)) return fail(p, "out of memory");
        }
    }
    p->chunk_first = first;
    p->chunk_frames = n;
    return refresh_stats(p);
}

int player_recording(const player *p) { return p->writer != NULL; }

int player_record_start(player *p, const char *path) {
    if (p->writer && !player_record_stop(p)) return 0;
    char err[1024];
    p->writer = video_writer_open(path, p->info.width, p->info.height, p->info.fps, NULL, err, sizeof err);
    if (!p->writer) return fail(p, "%s", err);
    free(p->rec_path);
    p->rec_path = strdup(path);
    p->rec.n_hashes = 0;
    p->rec.first_frame = player_frame(p);
    return 1;
}

int player_record_stop(player *p) {
    if (!p->writer) return 1;
    char err[1024];
    int ok = video_writer_close(p->writer, err, sizeof err);
    p->writer = NULL;
    if (!ok) return fail(p, "%s: %s", p->rec_path, err);
    /* the replay file: the stream's metadata and actions, the recording's span and hashes */
    timeline out = p->tl;
    out.video = p->rec_path;
    out.first_frame = p->rec.first_frame;
    out.hashes = p->rec.hashes;
    out.n_hashes = p->rec.n_hashes;
    char json[PATH_MAX + 8];
    snprintf(json, sizeof json, "%s.json", p->rec_path);
    if (!timeline_write(&out, &p->info, json, err, sizeof err)) return fail(p, "%s", err);
    return 1;
}

int player_slot_save(player *p, player_slot *s) {
    size_t size = 0;
    wm_status st = p->api->session_state_size(p->session, &size);
    if (st != WM_OK) return api_fail(p, "state size", st);
    if (s->size != size) {
        void *b = realloc(s->state, size);
        if (!b) return fail(p, "out of memory for a %.1f MB state", size / 1048576.0);
        s->state = b;
        s->size = size;
    }
    if ((st = p->api->session_state_save(p->session, s->state, s->size)) != WM_OK)
        return api_fail(p, "save", st);
    if (!timeline_copy_stream(&s->stream, &p->tl)) return fail(p, "out of memory");
    free(s->prompt);
    s->prompt = p->prompt ? strdup(p->prompt) : NULL;
    s->prompt_kind = p->prompt_kind;
    s->used = 1;
    return 1;
}

int player_slot_load(player *p, const player_slot *s) {
    if (!s->used) return fail(p, "empty slot");
    if (p->writer && !player_record_stop(p)) return 0;
    wm_status st = p->api->session_state_load(p->session, s->state, s->size);
    if (st != WM_OK) return api_fail(p, "load", st);
    if (!timeline_copy_stream(&p->tl, &s->stream)) return fail(p, "out of memory");
    /* the session keeps its accelerations: the stream goes on with them from the loaded frame */
    if (!refresh_stats(p)) return 0;
    const timeline_accel *ta = timeline_accel_at(&p->tl, player_frame(p));
    if ((!ta || !timeline_accel_equal(&ta->accel, &p->accel)) &&
        !timeline_set_accel(&p->tl, player_frame(p), &p->accel))
        return fail(p, "out of memory");
    free(p->prompt);
    p->prompt = s->prompt ? strdup(s->prompt) : NULL;
    p->prompt_kind = s->prompt_kind;
    p->chunk_frames = 0;
    return refresh_stats(p);
}

int player_slot_write(const player *p, const player_slot *s, const char *base) {
    player *mp = (player *)p;
    char path[PATH_MAX + 16], err[1024];
    snprintf(path, sizeof path, "%s.wmstate", base);
    FILE *f = fopen(path, "wb");
    if (!f) return fail(mp, "%s: cannot write: %s", path, strerror(errno));
    int ok = fwrite(s->state, 1, s->size, f) == s->size;
    ok = fclose(f) == 0 && ok;
    if (!ok) return fail(mp, "%s: write failed", path);
    /* the stream as a replay file without a recorded span */
    timeline out = p->tl;
    out.actions = s->stream.actions;
    out.n_actions = s->stream.n_actions;
    out.prompts = s->stream.prompts;
    out.n_prompts = s->stream.n_prompts;
    out.accels = s->stream.accels;
    out.n_accels = s->stream.n_accels;
    out.video = NULL;
    out.first_frame = s->stream.n_actions;
    out.hashes = NULL;
    out.n_hashes = 0;
    snprintf(path, sizeof path, "%s.json", base);
    if (!timeline_write(&out, &p->info, path, err, sizeof err)) return fail(mp, "%s", err);
    return 1;
}

int player_slot_read(player *p, player_slot *s, const char *base) {
    char path[PATH_MAX + 16], err[1024];
    size_t size = 0;
    wm_status st = p->api->session_state_size(p->session, &size);
    if (st != WM_OK) return api_fail(p, "state size", st);
    snprintf(path, sizeof path, "%s.wmstate", base);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(p, "%s: cannot open: %s", path, strerror(errno));
    void *blob = malloc(size);
    size_t got = blob ? fread(blob, 1, size, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (!blob || got != size || extra) {
        free(blob);
        return fail(p, "%s: not a state of this session (%zu bytes expected)", path, size);
    }
    timeline t;
    timeline_init(&t);
    snprintf(path, sizeof path, "%s.json", base);
    if (!timeline_read(&t, path, err, sizeof err) || !timeline_bind(&t, &p->info, path, err, sizeof err)) {
        free(blob);
        timeline_free(&t);
        return fail(p, "%s", err);
    }
    const timeline_prompt *last = &t.prompts[t.n_prompts - 1];
    player_slot_free(s);
    s->state = blob;
    s->size = size;
    timeline_init(&s->stream);
    if (!timeline_copy_stream(&s->stream, &t)) {
        timeline_free(&t);
        return fail(p, "out of memory");
    }
    s->prompt_kind = last->kind;
    s->prompt = last->text ? strdup(last->text) : NULL;
    s->used = 1;
    timeline_free(&t);
    return 1;
}

void player_slot_free(player_slot *s) {
    free(s->state);
    free(s->prompt);
    timeline_free(&s->stream);
    memset(s, 0, sizeof *s);
}
