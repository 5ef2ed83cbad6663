/* test_rolling.c - Rolling Forcing's sampler around the golden case (tests/golden/rolling_window, whose
 * latents test_golden checks against tools/reference/rolling_ref.py):
 * - kv_copy's time shift: a key rotated at frame f and turned on by d equals the key rotated at f + d;
 * - the session refuses what the sampler does not do (other spans, the accelerations, a prefill with
 *   blocks in flight), each with a message;
 * - an abort while the window fills leaves the session as it was; reset replays bit for bit;
 * - a context prefilled before the first generate call becomes the history and the sink. */
#include "backend.h"
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

int main(void) {
    api = wm_test_plugin_api();
    if (!api) return 1;
    check_kv_copy_shift();

    wm_model_params mp;
    api->model_params_init(&mp);
    mp.path = MODEL;
    mp.backend = WM_BACKEND_CPU;
    mp.n_threads = 1;
    wm_model *m = NULL;
    CHECK_STATUS(api->model_load(&mp, &m), WM_OK);
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

    float *ref = malloc(4 * chunk * sizeof(float)), *got = malloc(4 * chunk * sizeof(float));
    wm_session *a = open_session(m, 10, 2);
    CHECK(a != NULL);
    if (!a) return wm_test_finish("test_rolling");
    wm_session *b = open_session(m, -2, -1);
    CHECK(b != NULL);
    wm_accel_params ac;
    CHECK_STATUS(api->session_get_accel(a, &ac), WM_OK);
    ac.annsa = 1;
    CHECK_STATUS(api->session_set_accel(a, &ac), WM_ERR_UNSUPPORTED);
    for (int k = 0; k < 4; k++) generate(a, ref + k * chunk, chunk);

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
    /* an abort in steady state (one forward per call) too */
    g_abort_after = 0, g_polls = 0;
    CHECK_STATUS(api->session_generate(b, NULL), WM_ERR_ABORTED);
    g_abort_after = -1;
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

    free(ref);
    free(got);
    api->session_free(a);
    api->session_free(b);
    api->model_free(m);
    return wm_test_finish("test_rolling");
}
