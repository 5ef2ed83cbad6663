/* test_rolling.c - Rolling Forcing's sampler around the golden case (tests/golden/rolling_window, whose
 * latents test_golden checks against tools/reference/rolling_ref.py):
 * - kv_copy's time shift: a key rotated at frame f and turned on by d equals the key rotated at f + d;
 * - the session refuses what the sampler does not do (other spans, the accelerations, a prefill with
 *   blocks in flight), each with a message;
 * - an abort while the window fills leaves the session as it was; reset replays bit for bit;
 * - a snapshot with blocks in flight continues bit for bit (saved from either latent buffer, loaded
 *   into a session at either); a blob whose window scalars are corrupt is refused with WM_ERR_FORMAT;
 * - a context prefilled before the first generate call becomes the history and the sink;
 * - 600 blocks run past latent frame 1024 at the same scale and memory. */
#include "backend.h"
#include "engine.h" /* white box: the window's buffers, to find its block in a snapshot */
#include "harness.h"
#include "rng.h"
#include "wm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const wm_api *api;
static const char *MODEL = WM_SOURCE_DIR "/tests/golden/rolling_window";

static void check_kv_copy_shift(void) {
    enum { H = 2, D = 32, C = H * D, GH = 3, GW = 2, TPF = GH * GW, N = 2 * TPF };
    wm_backend *be = wm_backend_cpu_new(1);
    float *raw = malloc(sizeof(float) * N * C), *at_f = malloc(sizeof(float) * N * C),
          *at_fd = malloc(sizeof(float) * N * C), *v = malloc(sizeof(float) * N * C);
    float *got_k = malloc(sizeof(float) * N * C), *got_v = malloc(sizeof(float) * N * C);
    wm_normal_fill(raw, (size_t)N * C, 7, 1, 0);
    wm_normal_fill(v, (size_t)N * C, 7, 2, 0);
    const int64_t shifts[] = {0, 1, 6, 1021, -3};
    for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++) {
        const int64_t f = 5, d = shifts[i];
        memcpy(at_f, raw, sizeof(float) * N * C);
        memcpy(at_fd, raw, sizeof(float) * N * C);
        be->rope(be, at_f, N, H, D, f, GH, GW);
        be->rope(be, at_fd, N, H, D, f + d, GH, GW);
        wm_kv *src = be->kv_new(be, N + 3, C), *dst = be->kv_new(be, N + 5, C);
        be->kv_write(be, src, 3, at_f, v, N);
        be->kv_copy(be, dst, 2, src, 3, N, H, D, d);
        be->kv_read(be, dst, got_k, got_v, 2, N);
        char what[64];
        snprintf(what, sizeof what, "kv_copy time shift %lld (k)", (long long)d);
        wm_test_compare(what, got_k, at_fd, (size_t)N * C, 1e-5f, 1e-5f);
        snprintf(what, sizeof what, "kv_copy time shift %lld (v)", (long long)d);
        wm_test_check_exact(what, got_v, v, (size_t)N * C);
        be->kv_free(be, src);
        be->kv_free(be, dst);
    }
    free(raw), free(at_f), free(at_fd), free(v), free(got_k), free(got_v);
    be->destroy(be);
}

static int g_abort_after = -1, g_polls = 0;
static int abort_cb(void *u) {
    (void)u;
    return g_abort_after >= 0 && ++g_polls > g_abort_after;
}

static wm_session *open_session(wm_model *m, int window, int sinks) {
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = 0xB10C5EED;
    sp.window_frames = window;
    sp.sink_frames = sinks;
    sp.abort_cb = abort_cb;
    wm_session *s = NULL;
    if (api->session_new(m, &sp, &s) != WM_OK) return NULL;
    CHECK_STATUS(api->session_set_prompt_text(s, "a red car on the road"), WM_OK);
    return s;
}

static void generate(wm_session *s, float *lat, size_t n) {
    CHECK_STATUS(api->session_generate(s, NULL), WM_OK);
    CHECK_STATUS(api->session_read_latents(s, lat, n, NULL), WM_OK);
}

/* The snapshot `blob` of session `from` (CPU backend: its window buffer is host memory): where its
 * window block starts (in_flight, has_sink, then the latents of x[cur]), found by the latents' bytes. */
static size_t window_offset(const wm_session *from, const uint8_t *blob, size_t size) {
    const wm_config *c = &from->m->cfg;
    const wm_rolling *r = &from->roll;
    const size_t nx = (size_t)r->levels * c->num_frame_per_block * c->in_dim * c->latent_height * c->latent_width;
    const uint8_t *x = (const uint8_t *)r->x[r->cur];
    size_t found = 0, at = 0;
    for (size_t o = 2 * sizeof(int); o + nx * sizeof(float) <= size; o++)
        if (blob[o] == x[0] && memcmp(blob + o, x, nx * sizeof(float)) == 0) found++, at = o - 2 * sizeof(int);
    CHECK(found == 1);
    int in_flight, has_sink;
    memcpy(&in_flight, blob + at, sizeof in_flight);
    memcpy(&has_sink, blob + at + sizeof in_flight, sizeof has_sink);
    CHECK(in_flight == r->in_flight && has_sink == r->has_sink);
    return at;
}

/* Corrupt window scalars are refused before anything is loaded: the session continues as before. */
static void check_corrupt_window(wm_session *into, const uint8_t *blob, size_t size, size_t at, int levels) {
    uint8_t *bad = malloc(size);
    const struct { size_t off; int value; } cases[] = {
        {0, levels}, {0, -1}, {0, 1 << 30}, {sizeof(int), 2}, {sizeof(int), -1},
        {sizeof(int), 0}, /* no sink, yet blocks were committed (next_latent > 0) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, blob, size);
        memcpy(bad + at + cases[i].off, &cases[i].value, sizeof(int));
        CHECK_STATUS(api->session_state_load(into, bad, size), WM_ERR_FORMAT);
        CHECK(strstr(api->last_error(), "rolling window") != NULL);
    }
    free(bad);
}

int main(void) {
    api = wm_test_plugin_api();
    if (!api) return 1;
    check_kv_copy_shift();

    wm_model *m = wm_test_load_cpu(api, MODEL, 0);
    if (!m) return wm_test_finish("test_rolling");
    wm_model_info info = {.size = sizeof info};
    api->model_get_info(m, &info);
    CHECK(info.window_frames == 10 && info.sink_frames == 2);
    const int F = info.latent_frames_per_chunk;
    const size_t chunk = (size_t)F * info.latent_channels * info.latent_height * info.latent_width;

    /* the spans are the model's: other windows or sinks are refused, the model's own accepted */
    wm_session *s = NULL;
    wm_session_params sp;
    api->session_params_init(&sp);
    const int bad[][2] = {{-1, 0}, {12, 2}, {10, 0}};
    for (int i = 0; i < 3; i++) {
        sp.window_frames = bad[i][0], sp.sink_frames = bad[i][1];
        CHECK_STATUS(api->session_new(m, &sp, &s), WM_ERR_INVALID_ARGUMENT);
        CHECK(s == NULL && strstr(api->last_error(), "rolling_forcing") != NULL);
    }
    /* the accelerations are not implemented for the window passes */
    api->session_params_init(&sp);
    sp.accel.tempcache = 1;
    CHECK_STATUS(api->session_new(m, &sp, &s), WM_ERR_UNSUPPORTED);
    CHECK(s == NULL && strstr(api->last_error(), "rolling_forcing") != NULL);

    float *ref = malloc(6 * chunk * sizeof(float)), *got = malloc(6 * chunk * sizeof(float));
    wm_session *a = open_session(m, 10, 2);
    CHECK(a != NULL);
    if (!a) return wm_test_finish("test_rolling");
    wm_session *b = open_session(m, -2, -1);
    CHECK(b != NULL);
    wm_accel_params ac;
    CHECK_STATUS(api->session_get_accel(a, &ac), WM_OK);
    ac.annsa = 1;
    CHECK_STATUS(api->session_set_accel(a, &ac), WM_ERR_UNSUPPORTED);
    /* blocks 0..5; a snapshot after block 2 (3 + 2 forwards: the window in x[1]) */
    size_t snap_size = 0, at = 0;
    uint8_t *snap = NULL;
    for (int k = 0; k < 6; k++) {
        if (k == 3) {
            CHECK(a->roll.cur == 1 && a->roll.in_flight == 2);
            CHECK_STATUS(api->session_state_size(a, &snap_size), WM_OK);
            snap = malloc(snap_size);
            CHECK_STATUS(api->session_state_save(a, snap, snap_size), WM_OK);
            at = window_offset(a, snap, snap_size);
        }
        generate(a, ref + k * chunk, chunk);
    }
    /* the snapshot continues bit for bit in a fresh session (window loaded into x[0]), and again when
     * loaded into that session with its window in x[1]; corrupt window scalars are refused first */
    {
        wm_session *c = open_session(m, -2, -1);
        CHECK(c != NULL);
        check_corrupt_window(c, snap, snap_size, at, 3);
        CHECK_STATUS(api->session_state_load(c, snap, snap_size), WM_OK);
        for (int k = 3; k < 6; k++) generate(c, got + k * chunk, chunk);
        wm_test_check_exact("snapshot (window in x[1]) into a fresh session, blocks 3..5", got + 3 * chunk, ref + 3 * chunk,
                            3 * chunk);
        CHECK(c->roll.cur == 1);
        /* refused loads change nothing: the session's own snapshot is the same bytes after them */
        uint8_t *before = malloc(snap_size), *after = malloc(snap_size);
        CHECK_STATUS(api->session_state_save(c, before, snap_size), WM_OK);
        check_corrupt_window(c, snap, snap_size, at, 3);
        CHECK_STATUS(api->session_state_save(c, after, snap_size), WM_OK);
        CHECK(memcmp(before, after, snap_size) == 0);
        free(before), free(after);
        CHECK_STATUS(api->session_state_load(c, snap, snap_size), WM_OK);
        for (int k = 3; k < 6; k++) generate(c, got + k * chunk, chunk);
        wm_test_check_exact("snapshot loaded into a session with its window in x[1], blocks 3..5", got + 3 * chunk,
                            ref + 3 * chunk, 3 * chunk);
        api->session_free(c);
    }
    free(snap);

    /* an abort in the middle of the window's filling (3 levels: 3 forwards before block 0 is final)
     * leaves the session as it was: the next call gives the same block 0 */
    g_abort_after = 2, g_polls = 0;
    CHECK_STATUS(api->session_generate(b, NULL), WM_ERR_ABORTED);
    g_abort_after = -1;
    wm_stats st = {.size = sizeof st};
    api->session_get_stats(b, &st);
    CHECK(st.chunks == 0);
    for (int k = 0; k < 4; k++) generate(b, got + k * chunk, chunk);
    wm_test_check_exact("after an abort while filling, blocks 0..3", got, ref, 4 * chunk);
    /* an abort in steady state (one forward per call) too: before the forward, and after it (before
     * the final block's clean pass); the next call gives block 4 */
    g_abort_after = 0, g_polls = 0;
    CHECK_STATUS(api->session_generate(b, NULL), WM_ERR_ABORTED);
    g_abort_after = 1, g_polls = 0;
    CHECK_STATUS(api->session_generate(b, NULL), WM_ERR_ABORTED);
    g_abort_after = -1;
    generate(b, got + 4 * chunk, chunk);
    wm_test_check_exact("after aborts in steady state, block 4", got + 4 * chunk, ref + 4 * chunk, chunk);
    /* reset: the same blocks again */
    CHECK_STATUS(api->session_reset(b), WM_OK);
    for (int k = 0; k < 4; k++) generate(b, got + k * chunk, chunk);
    wm_test_check_exact("after reset, blocks 0..3", got, ref, 4 * chunk);

    /* a prefill needs an empty window: refused with blocks in flight, fine after a reset */
    int nv = 0;
    CHECK_STATUS(api->session_prefill_latents(b, ref, 2 * F, &nv), WM_ERR_STATE);
    CHECK(strstr(api->last_error(), "rolling window") != NULL);
    CHECK_STATUS(api->session_reset(b), WM_OK);
    CHECK_STATUS(api->session_prefill_latents(b, ref, 2 * F, &nv), WM_OK);
    api->session_get_stats(b, &st);
    CHECK(st.chunks == 2 && st.cache_tokens == (int64_t)2 * F * 4); /* 4 tokens per 4x4 latent frame */
    /* the window then starts at frame 2F on that history and sink: finite, new blocks */
    generate(b, got, chunk);
    int finite = 1;
    double diff = 0;
    for (size_t i = 0; i < chunk; i++) {
        finite &= isfinite(got[i]);
        diff = fmax(diff, fabs(got[i] - ref[2 * chunk + i]));
    }
    CHECK(finite);
    printf("after a 2-block prefill, block 2 differs from the rollout's by %.3g (a fresh window: it must)\n", diff);
    CHECK(diff > 1e-3);

    /* past frame 1024: 600 blocks (1200 latent frames; the sink re-rotated to frame ~1190) stay finite
     * and of the same scale as the first blocks, the history and memory stay as they were */
    CHECK_STATUS(api->session_reset(b), WM_OK);
    double rms_first = 0, rms_last = 0;
    int64_t bytes_early = 0;
    int long_ok = 1;
    for (int k = 0; k < 600 && long_ok; k++) {
        long_ok = api->session_generate(b, NULL) == WM_OK &&
                  api->session_read_latents(b, got, chunk, NULL) == WM_OK;
        double ss = 0;
        for (size_t i = 0; i < chunk; i++) {
            long_ok &= isfinite(got[i]);
            ss += (double)got[i] * got[i];
        }
        if (k < 20) rms_first += sqrt(ss / chunk) / 20;
        if (k >= 580) rms_last += sqrt(ss / chunk) / 20;
        api->session_get_stats(b, &st);
        if (k == 20) bytes_early = st.backend_bytes;
    }
    CHECK(long_ok);
    api->session_get_stats(b, &st);
    printf("600 blocks (to latent frame %lld): rms %.3f over blocks 0-19, %.3f over 580-599; history %lld tokens; "
           "memory %lld -> %lld bytes\n",
           (long long)st.latent_frames, rms_first, rms_last, (long long)st.cache_tokens, (long long)bytes_early,
           (long long)st.backend_bytes);
    CHECK(st.latent_frames == 1200 && st.cache_tokens == (int64_t)(10 - F) * 4);
    CHECK(rms_last > 0.5 * rms_first && rms_last < 2.0 * rms_first);
    CHECK(st.backend_bytes == bytes_early);

    free(ref);
    free(got);
    api->session_free(a);
    api->session_free(b);
    api->model_free(m);
    return wm_test_finish("test_rolling");
}
