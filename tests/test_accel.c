/* test_accel.c - TempCache, AnnSA and AnnCA through the public ABI, on a small random-weight model
 * (docs/ACCEL.md). `--backend cuda` runs the same checks on the GPU (ctest: gpu_accel_session).
 *  1. settings that switch every module off (threshold > 1, all steps dense) reproduce the dense
 *     rollout bit for bit;
 *  2. with a low threshold TempCache merges, the cache stays within its budget, and AnnSA/AnnCA are
 *     sparse (density < 1) with a recall probe in [0, 1];
 *  3. memory is bounded: backend memory after chunk 1000 equals that after chunk 10, all three on;
 *  4. save/restore of a compressed cache continues bit-identically (same session and a fresh one);
 *  5. live switching: invalid settings are refused and change nothing; switching off mid-rollout works. */
#include "harness.h"
#include "wm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const wm_api *api;
static int backend = WM_BACKEND_CPU;

/* 16x16 latents, 2x2 patches: 64 tokens per frame, 2 frames (128 rows, one key block) per chunk */
static const char *config_json =
    "{\"name\": \"accel-test\", \"dim\": 128, \"ffn_dim\": 256, \"num_heads\": 2, \"num_layers\": 3,\n"
    " \"in_dim\": 4, \"out_dim\": 4, \"text_dim\": 32, \"text_len\": 24, \"latent_height\": 16, \"latent_width\": 16,\n"
    " \"num_frame_per_block\": 2, \"denoising_step_list\": [1000, 750, 500, 250], \"local_attn_size\": 12,\n"
    " \"sink_size\": 2, \"max_cache_frames\": 64}\n";

static wm_model *load_model(void) {
    char path[600];
    if (!wm_test_write_config("test_accel_model", config_json, path, sizeof path)) return NULL;
    wm_model_params mp;
    api->model_params_init(&mp);
    mp.path = path;
    mp.random_weights = 1;
    mp.weight_seed = 5;
    mp.backend = backend;
    mp.n_threads = 1;
    wm_model *m = NULL;
    wm_status st = api->model_load(&mp, &m);
    if (st == WM_ERR_NO_DEVICE || st == WM_ERR_UNSUPPORTED) return NULL;
    CHECK_STATUS(st, WM_OK);
    return m;
}

static wm_session *open_session(wm_model *m, int window, const wm_accel_params *a) {
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = 21;
    sp.window_frames = window;
    if (window < 0) sp.sink_frames = 0;
    if (a) sp.accel = *a;
    wm_session *s = NULL;
    CHECK_STATUS(api->session_new(m, &sp, &s), WM_OK);
    if (!s) return NULL;
    float emb[24 * 32];
    for (int i = 0; i < 24 * 32; i++) emb[i] = sinf(0.37f * (float)i) * 0.8f;
    CHECK_STATUS(api->session_set_prompt_embeddings(s, emb, 20, 32), WM_OK);
    return s;
}

static size_t chunk_floats(wm_model *m) {
    wm_model_info info = {.size = sizeof info};
    api->model_get_info(m, &info);
    return (size_t)info.latent_frames_per_chunk * info.latent_channels * info.latent_height * info.latent_width;
}

/* n chunks; their latents into out (n * chunk floats) */
static void run(wm_session *s, int n, float *out, size_t chunk) {
    for (int k = 0; k < n; k++) {
        CHECK_STATUS(api->session_generate(s, NULL), WM_OK);
        if (out) CHECK_STATUS(api->session_read_latents(s, out + (size_t)k * chunk, chunk, NULL), WM_OK);
    }
}

static wm_accel_params defaults(wm_session *probe_owner) {
    wm_session_params sp;
    api->session_params_init(&sp);
    (void)probe_owner;
    return sp.accel;
}

static void test_off_is_dense(wm_model *m, size_t chunk) {
    const int n = 9; /* the window (12 frames) fills and evicts */
    float *a = malloc(n * chunk * sizeof(float)), *b = malloc(n * chunk * sizeof(float));
    wm_session *dense = open_session(m, -2, NULL);
    run(dense, n, a, chunk);
    wm_accel_params acc = defaults(NULL);
    acc.tempcache = 1, acc.tc_threshold = 2.0f; /* never merges */
    acc.annsa = 1, acc.annca = 1, acc.sa_dense_steps = 1.0f; /* every step dense */
    wm_session *off = open_session(m, -2, &acc);
    run(off, n, b, chunk);
    CHECK(memcmp(a, b, n * chunk * sizeof(float)) == 0);
    wm_stats st = {.size = sizeof st};
    api->session_get_stats(off, &st);
    CHECK(st.tc_merges_total == 0 && st.sa_density == 1.0 && st.ca_density == 1.0);
    fprintf(stderr, "off settings: %s\n", memcmp(a, b, n * chunk * sizeof(float)) == 0 ? "bit-identical to dense" : "DIFFERENT");
    api->session_free(dense);
    api->session_free(off);
    free(a), free(b);
}

static wm_accel_params all_on(void) {
    wm_accel_params acc = defaults(NULL);
    acc.tempcache = 1, acc.tc_threshold = 0.3f, acc.tc_budget_tokens = 6 * 64;
    acc.annsa = 1, acc.sa_bits = 3;
    acc.annca = 1, acc.ca_bits = 6, acc.ca_tables = 1, acc.ca_min_tokens = 0; /* text_len 24 */
    return acc;
}

/* AnnCA leaves a prompt context shorter than ca_min_tokens (default 64; this model's is 24) dense:
 * the same latents as a dense session, density 1; ca_min_tokens <= text_len makes it sparse again,
 * and a negative value is refused. */
static void test_short_prompt_dense(wm_model *m, size_t chunk) {
    const int n = 4;
    float *a = malloc(n * chunk * sizeof(float)), *b = malloc(n * chunk * sizeof(float));
    wm_session *dense = open_session(m, -2, NULL);
    run(dense, n, a, chunk);
    wm_accel_params acc = defaults(NULL);
    CHECK(acc.ca_min_tokens == 64);
    acc.annca = 1, acc.ca_bits = 6, acc.ca_tables = 1;
    wm_session *s = open_session(m, -2, &acc);
    run(s, n, b, chunk);
    wm_stats st = {.size = sizeof st};
    api->session_get_stats(s, &st);
    CHECK(memcmp(a, b, n * chunk * sizeof(float)) == 0 && st.ca_density == 1.0);
    acc.ca_min_tokens = 24; /* == text_len: sparse */
    CHECK_STATUS(api->session_set_accel(s, &acc), WM_OK);
    run(s, 1, NULL, chunk);
    api->session_get_stats(s, &st);
    CHECK(st.ca_density < 1.0);
    fprintf(stderr, "short prompt: dense below ca_min_tokens, density %.3f at ca_min_tokens = text_len\n", st.ca_density);
    acc.ca_min_tokens = -1;
    CHECK_STATUS(api->session_set_accel(s, &acc), WM_ERR_INVALID_ARGUMENT);
    api->session_free(dense);
    api->session_free(s);
    free(a), free(b);
}

static void test_active(wm_model *m, size_t chunk) {
    wm_accel_params acc = all_on();
    acc.recall_probe = 8;
    acc.tc_budget_tokens = 10 * 64;
    wm_session *s = open_session(m, -1, &acc);
    float *lat = malloc(chunk * sizeof(float));
    int64_t merges = 0;
    double sa_min = 1, ca_min = 1;
    int probe_ok = 1, finite = 1;
    for (int k = 0; k < 12; k++) {
        run(s, 1, lat, chunk);
        wm_stats st = {.size = sizeof st};
        api->session_get_stats(s, &st);
        merges += st.tc_merges;
        CHECK(st.cache_tokens <= acc.tc_budget_tokens);
        sa_min = st.sa_density < sa_min ? st.sa_density : sa_min;
        ca_min = st.ca_density < ca_min ? st.ca_density : ca_min;
        if (!(st.sa_recall >= 0 && st.sa_recall <= 1.0 + 1e-9 && st.ca_recall >= 0 && st.ca_recall <= 1.0 + 1e-9)) probe_ok = 0;
        for (size_t i = 0; i < chunk; i++) finite &= isfinite(lat[i]) != 0;
        if (k == 11)
            fprintf(stderr, "active: %lld merges, cache %lld tokens (budget %lld), sa density %.3f recall %.3f, ca density %.3f recall %.3f\n",
                    (long long)merges, (long long)st.cache_tokens, (long long)acc.tc_budget_tokens, st.sa_density,
                    st.sa_recall, st.ca_density, st.ca_recall);
    }
    CHECK(merges > 0);
    CHECK(sa_min < 1.0);
    CHECK(ca_min < 1.0);
    CHECK(probe_ok);
    CHECK(finite);
    api->session_free(s);
    free(lat);
}

static void test_memory_bounded(wm_model *m, size_t chunk) {
    wm_accel_params acc = all_on();
    wm_session *s = open_session(m, -1, &acc); /* unbounded policy: only the budget bounds it */
    long long mem10 = 0, mem1000 = 0, tok10 = 0, tok1000 = 0;
    const int failures = wm_test_failures;
    for (int k = 1; k <= 1000; k++) {
        run(s, 1, NULL, chunk);
        if (k == 10 || k == 1000) {
            wm_stats st = {.size = sizeof st};
            api->session_get_stats(s, &st);
            *(k == 10 ? &mem10 : &mem1000) = st.backend_bytes;
            *(k == 10 ? &tok10 : &tok1000) = st.cache_tokens;
        }
        if (wm_test_failures > failures) break;
    }
    fprintf(stderr, "memory: chunk 10 %lld bytes (%lld tokens), chunk 1000 %lld bytes (%lld tokens)\n", mem10, tok10,
            mem1000, tok1000);
    CHECK(mem10 > 0 && mem10 == mem1000);
    CHECK(tok1000 <= acc.tc_budget_tokens);
    api->session_free(s);
}

static void test_snapshot(wm_model *m, size_t chunk) {
    wm_accel_params acc = all_on();
    wm_session *s = open_session(m, -1, &acc);
    run(s, 8, NULL, chunk);
    wm_stats st = {.size = sizeof st};
    api->session_get_stats(s, &st);
    CHECK(st.tc_merges_total > 0); /* the snapshot holds a compressed cache */
    size_t size = 0;
    CHECK_STATUS(api->session_state_size(s, &size), WM_OK);
    void *blob = malloc(size);
    CHECK_STATUS(api->session_state_save(s, blob, size), WM_OK);
    float *a = malloc(4 * chunk * sizeof(float)), *b = malloc(4 * chunk * sizeof(float)), *c = malloc(4 * chunk * sizeof(float));
    run(s, 4, a, chunk);
    CHECK_STATUS(api->session_state_load(s, blob, size), WM_OK);
    run(s, 4, b, chunk);
    wm_session *fresh = open_session(m, -1, &acc);
    CHECK_STATUS(api->session_state_load(fresh, blob, size), WM_OK);
    run(fresh, 4, c, chunk);
    CHECK(memcmp(a, b, 4 * chunk * sizeof(float)) == 0);
    CHECK(memcmp(a, c, 4 * chunk * sizeof(float)) == 0);
    fprintf(stderr, "snapshot: %zu bytes, continuation %s\n", size,
            memcmp(a, b, 4 * chunk * sizeof(float)) == 0 && memcmp(a, c, 4 * chunk * sizeof(float)) == 0 ? "bit-identical"
                                                                                                           : "DIFFERENT");
    api->session_free(s);
    api->session_free(fresh);
    free(blob), free(a), free(b), free(c);
}

static void test_live(wm_model *m, size_t chunk) {
    wm_session *s = open_session(m, -2, NULL);
    run(s, 3, NULL, chunk);
    wm_accel_params acc = all_on(), got;
    acc.tc_budget_tokens = 0;
    CHECK_STATUS(api->session_set_accel(s, &acc), WM_OK);
    run(s, 3, NULL, chunk);
    wm_accel_params bad = acc;
    bad.sa_bits = 9;
    CHECK_STATUS(api->session_set_accel(s, &bad), WM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(api->last_error(), "sa_bits") != NULL);
    bad = acc, bad.tc_budget_tokens = 1 << 30;
    CHECK_STATUS(api->session_set_accel(s, &bad), WM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(api->session_get_accel(s, &got), WM_OK);
    CHECK(memcmp(&got, &acc, sizeof got) == 0); /* refused settings changed nothing */
    wm_accel_params off = defaults(NULL);
    CHECK_STATUS(api->session_set_accel(s, &off), WM_OK);
    run(s, 6, NULL, chunk);
    wm_stats st = {.size = sizeof st};
    api->session_get_stats(s, &st);
    CHECK(st.cache_tokens <= (12 - 2) * 64); /* back to the window */
    CHECK(st.sa_density == 1.0 && st.tc_merges == 0);
    api->session_free(s);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--backend") && i + 1 < argc && !strcmp(argv[++i], "cuda")) backend = WM_BACKEND_CUDA;
    api = wm_test_plugin_api();
    if (!api) return 1;
    wm_model *m = load_model();
    if (!m) {
        if (backend == WM_BACKEND_CUDA && !wm_test_failures) {
            fprintf(stderr, "no CUDA device: skipped\n");
            return 77;
        }
        return wm_test_finish("test_accel");
    }
    const size_t chunk = chunk_floats(m);
    test_off_is_dense(m, chunk);
    test_active(m, chunk);
    test_short_prompt_dense(m, chunk);
    test_live(m, chunk);
    test_snapshot(m, chunk);
    test_memory_bounded(m, chunk);
    api->model_free(m);
    return wm_test_finish(backend == WM_BACKEND_CUDA ? "gpu_accel_session" : "test_accel");
}
