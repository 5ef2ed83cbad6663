/* test_abi.c - the plugin as a host sees it, through wm.h and dlopen only: the version handshake,
 * the function table, the exported symbol set (nm -D), and the contract of every call on a tiny
 * random-weight model: argument checks, info, frames, latents, snapshots, reset, stats, abort,
 * per-thread errors and sessions on several threads. */
#include "harness.h"
#include "wm.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const wm_api *api;

/* harness.h's CHECK_STATUS reads the engine's error of the statically linked core; this test must
 * read the plugin's own, through the table. */
#define CHECK_ST(expr, want)                                                                                 \
    do {                                                                                                     \
        wm_status st_ = (expr);                                                                              \
        if (st_ != (want)) {                                                                                 \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s): %s\n", __FILE__, __LINE__, #expr, \
                    st_, api->status_string(st_), (int)(want), api->status_string(want), api->last_error()); \
            wm_test_failures++;                                                                              \
        }                                                                                                    \
    } while (0)
#define CHECK_OK(expr) CHECK_ST(expr, WM_OK)
/* any failure status, and a message that says something */
#define CHECK_FAILS(expr)                                                                                    \
    do {                                                                                                     \
        wm_status st_ = (expr);                                                                              \
        if (st_ == WM_OK || !api->last_error() || !api->last_error()[0]) {                                   \
            fprintf(stderr,                                                                                  \
                    "%s:%d: %s returned %d (%s) with message '%s', expected a failure with a message\n",     \
                    __FILE__, __LINE__, #expr, st_, api->status_string(st_), api->last_error());             \
            wm_test_failures++;                                                                              \
        }                                                                                                    \
    } while (0)

/* The tiny model: frames 48x32, 2 latent frames per chunk, 4 video frames per latent frame, so
 * chunk 0 yields 5 video frames and every later chunk 8. */
static const char *TINY_CONFIG =
    "{\"dim\": 32, \"ffn_dim\": 64, \"num_heads\": 2, \"num_layers\": 2, \"in_dim\": 4, \"out_dim\": 4,\n"
    " \"text_dim\": 16, \"text_len\": 8, \"latent_height\": 4, \"latent_width\": 6, \"num_frame_per_block\": "
    "2,\n"
    " \"denoising_step_list\": [1000, 500],\n"
    " \"decoder\": {\"channels\": [8, 8, 8, 8], \"space_upscale\": [true, true, true],\n"
    "             \"time_upscale\": [true, true], \"image_channels\": 3},\n"
    " \"action_buttons\": [\"up\", \"down\", \"left\", \"right\"],\n"
    " \"text_encoder\": {\"vocab\": [\"<pad>\", \"<unk>\", \"red\", \"green\", \"blue\"], \"max_tokens\": "
    "4}}\n";
enum { W = 48, H = 32, FRAME = W * H * 3, CHUNK0 = 5, CHUNK = 8, TPF = 2 * 3, LATENT_N = 2 * 4 * 4 * 6 };

static char g_dir[64];
static wm_model *g_model;

/* ---------------------------------------------------------------- handshake and table */

static void *open_plugin(void) {
    void *so = dlopen(WM_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        fprintf(stderr, "dlopen %s: %s\n", WM_PLUGIN_PATH, dlerror());
        return NULL;
    }
    wm_get_api_fn get = (wm_get_api_fn)dlsym(so, WM_GET_API_SYMBOL);
    CHECK(get != NULL);
    if (!get) return NULL;
    CHECK(get(0) == NULL);
    CHECK(get(WM_API_VERSION + 1) == NULL);
    CHECK(get(UINT32_MAX) == NULL);
    api = get(WM_API_VERSION);
    CHECK(api != NULL);
    if (!api) return NULL;
    CHECK(api->version == WM_API_VERSION);
    CHECK(api->struct_size >= sizeof(wm_api));
    CHECK(get(WM_API_VERSION) == api);
    return so;
}

static void test_table(void) {
    const struct {
        const char *name;
        const void *fn;
    } fns[] = {
#define F(x) {#x, (const void *)(uintptr_t)api->x}
        F(status_string),
        F(last_error),
        F(build_info),
        F(model_params_init),
        F(model_load),
        F(model_free),
        F(model_get_info),
        F(session_params_init),
        F(session_new),
        F(session_free),
        F(session_set_prompt_text),
        F(session_set_prompt_embeddings),
        F(session_push_action),
        F(session_generate),
        F(session_read_frame),
        F(session_read_latents),
        F(session_reset),
        F(session_state_size),
        F(session_state_save),
        F(session_state_load),
        F(session_get_stats),
        F(session_prefill_latents),
        F(session_set_accel),
        F(session_get_accel),
#undef F
    };
    size_t n = sizeof fns / sizeof fns[0];
    /* every pointer of the table is listed above: the table is the header plus n pointers */
    CHECK(offsetof(wm_api, status_string) + n * sizeof(void (*)(void)) == sizeof(wm_api));
    for (size_t i = 0; i < n; i++)
        if (!fns[i].fn) {
            fprintf(stderr, "api->%s is NULL\n", fns[i].name);
            wm_test_failures++;
        }
    if (wm_test_failures) return;

    const char *seen[WM_ERR_INTERNAL + 1];
    for (int st = WM_OK; st <= WM_ERR_INTERNAL; st++) {
        const char *s = api->status_string((wm_status)st);
        CHECK(s != NULL && s[0] != 0);
        seen[st] = s;
        for (int j = 0; j < st && s; j++)
            if (seen[j] && !strcmp(seen[j], s)) {
                fprintf(stderr, "status %d and %d share the string '%s'\n", j, st, s);
                wm_test_failures++;
            }
    }
    const char *unknown = api->status_string((wm_status)999);
    CHECK(unknown != NULL);
    const char *info = api->build_info();
    CHECK(info != NULL && info[0] != 0);
    printf("plugin: %s\n", info ? info : "(null)");
    CHECK(api->last_error() != NULL);
}

/* The exported dynamic symbols are exactly {wm_get_api}: everything else is hidden. (_init and _fini
 * are not in the dynamic symbol table of a -fvisibility=hidden module: nothing is filtered.) */
static void test_exports(void) {
    FILE *p = popen("nm -D --defined-only '" WM_PLUGIN_PATH "' 2>&1", "r");
    CHECK(p != NULL);
    if (!p) return;
    char line[1024];
    int n = 0, found = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        const char *name = strrchr(line, ' ');
        name = name ? name + 1 : line;
        n++;
        if (!strcmp(name, "wm_get_api"))
            found++;
        else {
            fprintf(stderr, "unexpected exported symbol: %s\n", line);
            wm_test_failures++;
        }
    }
    int rc = pclose(p);
    CHECK(rc == 0); /* nm ran and understood the file */
    CHECK(found == 1);
    printf("exports: %d defined dynamic symbol(s), wm_get_api %s\n", n, found ? "present" : "MISSING");
}

/* ---------------------------------------------------------------- model */

static void write_file(const char *name, const char *text) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    CHECK(wm_test_write_file(path, text, strlen(text)));
}

static void test_model_params(void) {
    wm_model_params p;
    memset(&p, 0xAB, sizeof p);
    api->model_params_init(&p);
    CHECK(p.size == sizeof p);
    CHECK(p.path == NULL && p.random_weights == 0 && p.log == NULL && p.abort_cb == NULL);
    CHECK(p.backend == WM_BACKEND_AUTO);

    wm_model *m = (wm_model *)(uintptr_t)1;
    p.path = g_dir;
    p.random_weights = 1;
    p.size = 0;
    CHECK_ST(api->model_load(&p, &m), WM_ERR_INVALID_ARGUMENT);
    CHECK(m == NULL);
    api->model_params_init(&p);
    CHECK_ST(api->model_load(&p, &m), WM_ERR_INVALID_ARGUMENT); /* NULL path */
    CHECK_ST(api->model_load(NULL, &m), WM_ERR_INVALID_ARGUMENT);
    p.path = g_dir;
    p.random_weights = 1;
    CHECK_ST(api->model_load(&p, NULL), WM_ERR_INVALID_ARGUMENT);

    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such-model", g_dir);
    p.path = missing;
    CHECK_ST(api->model_load(&p, &m), WM_ERR_IO);
    CHECK(strstr(api->last_error(), "no-such-model") != NULL); /* the message names the path */
    CHECK(m == NULL);

    /* config.json without model.safetensors: fine with random weights only */
    p.path = g_dir;
    p.random_weights = 0;
    CHECK_ST(api->model_load(&p, &m), WM_ERR_IO);
    CHECK(api->last_error()[0] != 0);

    /* an unknown config key is an error naming the key */
    char bad_dir[128];
    snprintf(bad_dir, sizeof bad_dir, "%s/bad", g_dir);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", bad_dir);
    CHECK(system(cmd) == 0);
    write_file("bad/config.json", "{\"dim\": 32, \"num_heads\": 2, \"bogus_key\": 1}");
    p.path = bad_dir;
    p.random_weights = 1;
    CHECK_ST(api->model_load(&p, &m), WM_ERR_CONFIG);
    CHECK(strstr(api->last_error(), "bogus_key") != NULL);
    write_file("bad/config.json", "{\"dim\": 32,");
    CHECK_ST(api->model_load(&p, &m), WM_ERR_FORMAT);
}

static int g_log_lines;
static void count_log(void *user_data, wm_log_level level, const char *message) {
    (void)level;
    CHECK(user_data == &g_log_lines);
    CHECK(message != NULL);
    g_log_lines++;
}

static void test_model_load(void) {
    wm_model_params p;
    api->model_params_init(&p);
    p.path = g_dir;
    p.random_weights = 1;
    p.weight_seed = 1234;
    p.backend = WM_BACKEND_CPU;
    p.n_threads = 1;
    p.log = count_log;
    p.log_user_data = &g_log_lines;
    CHECK_OK(api->model_load(&p, &g_model));
    if (!g_model) return;
    printf("model: loaded with %d log line(s)\n", g_log_lines);

    /* a config.json path works as well as its directory */
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/config.json", g_dir);
    wm_model *m2 = NULL;
    p.path = cfg;
    p.log = NULL;
    CHECK_OK(api->model_load(&p, &m2));
    api->model_free(m2);
    api->model_free(NULL); /* harmless */
}

static void test_model_info(void) {
    wm_model_info info;
    memset(&info, 0, sizeof info);
    info.size = sizeof info;
    CHECK_OK(api->model_get_info(g_model, &info));
    CHECK(info.size == sizeof info);
    CHECK(info.name != NULL && info.name[0] != 0);
    CHECK(info.width == W && info.height == H);
    CHECK(info.fps == 16.0f);
    CHECK(info.latent_frames_per_chunk == 2);
    CHECK(info.latent_channels == 4 && info.latent_height == 4 && info.latent_width == 6);
    CHECK(info.time_upscale == 4);
    CHECK(info.prompt_kind == WM_PROMPT_TEXT);
    CHECK(info.text_len == 8 && info.text_dim == 16);
    CHECK(info.n_buttons == 4);
    static const char *names[] = {"up", "down", "left", "right"};
    for (int i = 0; i < 4 && info.n_buttons == 4 && info.button_names; i++)
        CHECK(!strcmp(info.button_names[i], names[i]));
    CHECK(info.n_axes == 0 && info.has_mouse == 0);
    CHECK(info.backend == WM_BACKEND_CPU);
    CHECK(info.backends_available & (1u << WM_BACKEND_CPU));
    CHECK(info.n_params > 0);
    CHECK(info.window_frames == -1 && info.sink_frames == 0 && info.max_cache_frames == 21);

    /* an older host's smaller struct: nothing past its size is written */
    unsigned char buf[sizeof(wm_model_info) + 16];
    memset(buf, 0xCD, sizeof buf);
    wm_model_info *small = (wm_model_info *)(void *)buf;
    small->size = offsetof(wm_model_info, n_params);
    CHECK_OK(api->model_get_info(g_model, small));
    CHECK(small->width == W && small->n_buttons == 4);
    int untouched = 1;
    for (size_t i = offsetof(wm_model_info, n_params); i < sizeof buf; i++) untouched &= buf[i] == 0xCD;
    CHECK(untouched);

    CHECK_ST(api->model_get_info(NULL, &info), WM_ERR_INVALID_ARGUMENT);
    CHECK_ST(api->model_get_info(g_model, NULL), WM_ERR_INVALID_ARGUMENT);
}

/* ---------------------------------------------------------------- sessions */

static wm_session *new_session(uint64_t seed, int window, int sinks, int max_cache) {
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = seed;
    if (window != -2) sp.window_frames = window;
    if (sinks >= 0) sp.sink_frames = sinks;
    sp.max_cache_frames = max_cache;
    wm_session *s = NULL;
    CHECK_OK(api->session_new(g_model, &sp, &s));
    return s;
}

/* The action of video frame i in every run of this test. */
static wm_action action_of(int64_t i) {
    wm_action a;
    memset(&a, 0, sizeof a);
    a.buttons = (uint32_t)((i / 3) % 16); /* every combination of the 4 buttons */
    return a;
}

/* Pushes the actions of frames [from, to). */
static void push_actions(wm_session *s, int64_t from, int64_t to) {
    for (int64_t i = from; i < to; i++) {
        wm_action a = action_of(i);
        CHECK_OK(api->session_push_action(s, &a));
    }
}

/* Reads n frames (generating chunks as needed) into dst [n][FRAME]; checks the frame indices. */
static void read_frames(wm_session *s, uint8_t *dst, int n, int64_t first_index) {
    for (int k = 0; k < n; k++) {
        int64_t index = -1;
        CHECK_OK(api->session_read_frame(s, dst + (size_t)k * FRAME, W * 3, FRAME, &index));
        CHECK(index == first_index + k);
    }
}

/* The reference run: chunks 0, 1 and 2 (5 + 8 + 8 frames) with the actions of action_of. */
enum { REF_FRAMES = CHUNK0 + 2 * CHUNK };
static uint8_t g_ref[REF_FRAMES * FRAME];
static float g_ref_latents[LATENT_N];

static void test_session_args(void) {
    wm_session_params sp;
    memset(&sp, 0xAB, sizeof sp);
    api->session_params_init(&sp);
    CHECK(sp.size == sizeof sp);
    CHECK(sp.window_frames == -2 && sp.sink_frames == -1 && sp.max_cache_frames == 0 && sp.abort_cb == NULL);
    CHECK(sp.action_guidance < 0); /* the model's */
    wm_session *s = (wm_session *)(uintptr_t)1;
    CHECK_ST(api->session_new(NULL, &sp, &s), WM_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL);
    CHECK_ST(api->session_new(g_model, NULL, &s), WM_ERR_INVALID_ARGUMENT);
    CHECK_ST(api->session_new(g_model, &sp, NULL), WM_ERR_INVALID_ARGUMENT);
    sp.size = 0;
    CHECK_ST(api->session_new(g_model, &sp, &s), WM_ERR_INVALID_ARGUMENT);
    api->session_params_init(&sp);
    sp.window_frames = 1; /* smaller than one chunk of 2 latent frames */
    CHECK_FAILS(api->session_new(g_model, &sp, &s));
    CHECK(s == NULL);
    api->session_params_init(&sp);
    sp.action_guidance = NAN;
    CHECK_ST(api->session_new(g_model, &sp, &s), WM_ERR_INVALID_ARGUMENT);
    sp.action_guidance = 20.5f;
    CHECK_ST(api->session_new(g_model, &sp, &s), WM_ERR_INVALID_ARGUMENT);
    CHECK(strstr(api->last_error(), "action_guidance") != NULL);
    CHECK(s == NULL);
    api->session_free(NULL);

    s = new_session(7, -2, -1, 0);
    if (!s) return;
    int n = -1;
    CHECK_ST(api->session_generate(s, &n), WM_ERR_STATE); /* no prompt yet */

    /* prompts */
    CHECK_ST(api->session_set_prompt_text(s, NULL), WM_ERR_INVALID_ARGUMENT);
    float emb[9 * 17];
    for (int i = 0; i < 9 * 17; i++) emb[i] = 0.01f * (float)i;
    CHECK_FAILS(api->session_set_prompt_embeddings(s, emb, 2, 15)); /* wrong width */
    CHECK_FAILS(api->session_set_prompt_embeddings(s, emb, 2, 17));
    CHECK_FAILS(api->session_set_prompt_embeddings(s, emb, 9, 16)); /* longer than text_len */
    CHECK_FAILS(api->session_set_prompt_embeddings(s, emb, -1, 16));
    CHECK_FAILS(api->session_set_prompt_embeddings(s, NULL, 2, 16));
    emb[3] = NAN;
    CHECK_FAILS(api->session_set_prompt_embeddings(s, emb, 2, 16));

    /* actions */
    wm_action a;
    memset(&a, 0, sizeof a);
    a.buttons = 1u << 7; /* the model has 4 buttons */
    CHECK_ST(api->session_push_action(s, &a), WM_ERR_INVALID_ARGUMENT);
    a.buttons = 1u << 31;
    CHECK_ST(api->session_push_action(s, &a), WM_ERR_INVALID_ARGUMENT);
    a.buttons = 0;
    a.axes[0] = NAN;
    CHECK_ST(api->session_push_action(s, &a), WM_ERR_INVALID_ARGUMENT);
    a.axes[0] = INFINITY;
    CHECK_ST(api->session_push_action(s, &a), WM_ERR_INVALID_ARGUMENT);
    a.axes[0] = 0;
    a.mouse_dx = NAN;
    CHECK_ST(api->session_push_action(s, &a), WM_ERR_INVALID_ARGUMENT);
    a.mouse_dx = 0;
    CHECK_ST(api->session_push_action(s, NULL), WM_ERR_INVALID_ARGUMENT);
    CHECK_ST(api->session_push_action(NULL, &a), WM_ERR_INVALID_ARGUMENT);
    a.buttons = 0xF;
    CHECK_OK(api->session_push_action(s, &a));

    /* buffers */
    CHECK_OK(api->session_set_prompt_text(s, "red green"));
    static uint8_t frame[FRAME + 64];
    CHECK_ST(api->session_read_frame(s, frame, W * 3, FRAME - 1, NULL), WM_ERR_INVALID_ARGUMENT);
    CHECK_ST(api->session_read_frame(s, frame, W * 3 - 1, FRAME, NULL), WM_ERR_INVALID_ARGUMENT);
    CHECK_ST(api->session_read_frame(s, NULL, W * 3, FRAME, NULL), WM_ERR_INVALID_ARGUMENT);
    CHECK_OK(api->session_generate(s, &n));
    CHECK(n == CHUNK0);
    float lat[LATENT_N];
    int lf = -1;
    CHECK_ST(api->session_read_latents(s, lat, LATENT_N - 1, &lf), WM_ERR_INVALID_ARGUMENT);
    CHECK_OK(api->session_read_latents(s, lat, LATENT_N, &lf));
    CHECK(lf == 2);
    size_t size = 0;
    CHECK_OK(api->session_state_size(s, &size));
    void *blob = malloc(size);
    CHECK_ST(api->session_state_save(s, blob, size - 1), WM_ERR_INVALID_ARGUMENT);
    CHECK_OK(api->session_state_save(s, blob, size));
    CHECK_FAILS(api->session_state_load(s, blob, size - 1));
    CHECK_FAILS(api->session_state_load(s, blob, 3));
    ((unsigned char *)blob)[0] ^= 0xFF;
    CHECK_FAILS(api->session_state_load(s, blob, size));
    free(blob);
    api->session_free(s);
}

/* The uninterrupted run every other run is compared with. */
static void test_reference_run(void) {
    wm_session *s = new_session(42, -2, -1, 0);
    if (!s) return;
    CHECK_OK(api->session_set_prompt_text(s, "red green"));
    push_actions(s, 0, CHUNK0);
    int n = -1;
    CHECK_OK(api->session_generate(s, &n));
    CHECK(n == CHUNK0);
    int lf = -1;
    CHECK_OK(api->session_read_latents(s, g_ref_latents, LATENT_N, &lf));
    CHECK(lf == 2);
    int finite = 1;
    for (int i = 0; i < LATENT_N; i++) finite &= isfinite(g_ref_latents[i]) != 0;
    CHECK(finite);
    CHECK(wm_test_max_abs(g_ref_latents, LATENT_N) > 0);
    read_frames(s, g_ref, CHUNK0, 0);
    push_actions(s, CHUNK0, CHUNK0 + CHUNK);
    read_frames(s, g_ref + (size_t)CHUNK0 * FRAME, CHUNK, CHUNK0); /* read_frame generates */
    push_actions(s, CHUNK0 + CHUNK, REF_FRAMES);
    CHECK_OK(api->session_generate(s, &n));
    CHECK(n == CHUNK);
    read_frames(s, g_ref + (size_t)(CHUNK0 + CHUNK) * FRAME, CHUNK, CHUNK0 + CHUNK);

    /* frames are images, not constants, and change over time */
    int varied = 0, moved = 0;
    for (size_t i = 1; i < FRAME; i++) varied |= g_ref[i] != g_ref[0];
    CHECK(varied);
    moved = memcmp(g_ref, g_ref + (size_t)(REF_FRAMES - 1) * FRAME, FRAME) != 0;
    CHECK(moved);

    wm_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK_OK(api->session_get_stats(s, &st));
    CHECK(st.frames_generated == REF_FRAMES);
    CHECK(st.latent_frames == 6);
    CHECK(st.chunks == 3);
    CHECK(st.last_chunk_ms > 0 && st.total_ms >= st.last_chunk_ms);
    CHECK(st.last_dit_ms > 0 && st.last_decode_ms >= 0 && st.last_dit_ms <= st.last_chunk_ms);
    CHECK(st.cache_tokens == 6 * TPF);
    CHECK(st.cache_bytes > 0 && st.cache_bytes <= st.cache_capacity_bytes);
    printf("reference: %d frames, last chunk %.2f ms (DiT %.2f, decode %.2f), cache %lld tokens %lld bytes\n",
           REF_FRAMES, st.last_chunk_ms, st.last_dit_ms, st.last_decode_ms, (long long)st.cache_tokens,
           (long long)st.cache_bytes);

    /* an older host's smaller stats struct: nothing past its size is written */
    unsigned char buf[sizeof(wm_stats) + 16];
    memset(buf, 0xCD, sizeof buf);
    ((wm_stats *)(void *)buf)->size = offsetof(wm_stats, last_chunk_ms);
    CHECK_OK(api->session_get_stats(s, (wm_stats *)(void *)buf));
    CHECK(((wm_stats *)(void *)buf)->chunks == 3);
    int untouched = 1;
    for (size_t i = offsetof(wm_stats, last_chunk_ms); i < sizeof buf; i++) untouched &= buf[i] == 0xCD;
    CHECK(untouched);

    /* reset: frame 0 and an empty cache, prompt and seed kept: the same frames again, read here
     * with a padded pitch */
    CHECK_OK(api->session_reset(s));
    CHECK_OK(api->session_get_stats(s, &st));
    CHECK(st.frames_generated == 0 && st.chunks == 0 && st.cache_tokens == 0);
    push_actions(s, 0, CHUNK0);
    const size_t pitch = W * 3 + 13;
    uint8_t *padded = malloc(pitch * H);
    int same = 1;
    for (int k = 0; k < CHUNK0; k++) {
        int64_t index = -1;
        CHECK_OK(api->session_read_frame(s, padded, pitch, pitch * H, &index));
        CHECK(index == k);
        for (int y = 0; y < H; y++)
            same &= !memcmp(padded + y * pitch, g_ref + (size_t)k * FRAME + y * W * 3, W * 3);
    }
    CHECK(same);
    free(padded);
    api->session_free(s);
}

/* Save after chunk 0, continue in another session from the snapshot: the same frames as the
 * uninterrupted run. The snapshot size never changes. */
/* Action guidance (wm_session_params.action_guidance) over the model's default of 0: 0 reproduces
 * the reference run exactly, 2 changes it; with neutral actions only, guidance has nothing to
 * strengthen (v_idle = v), so w 2 equals w 0. */
static void run_guided(float w, int neutral, uint8_t *dst) {
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = 42;
    sp.action_guidance = w;
    wm_session *s = NULL;
    CHECK_OK(api->session_new(g_model, &sp, &s));
    if (!s) return;
    CHECK_OK(api->session_set_prompt_text(s, "red green"));
    wm_action idle;
    memset(&idle, 0, sizeof idle);
    for (int64_t i = 0; i < REF_FRAMES; i++) {
        wm_action a = neutral ? idle : action_of(i);
        CHECK_OK(api->session_push_action(s, &a));
    }
    read_frames(s, dst, REF_FRAMES, 0);
    api->session_free(s);
}

static void test_action_guidance(void) {
    static uint8_t a[REF_FRAMES * FRAME], b[REF_FRAMES * FRAME];
    run_guided(0.0f, 0, a);
    CHECK(memcmp(a, g_ref, sizeof a) == 0);
    run_guided(2.0f, 0, b);
    CHECK(memcmp(a, b, (size_t)CHUNK0 * FRAME) != 0); /* the first chunk already differs */
    run_guided(0.0f, 1, a);
    run_guided(2.0f, 1, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    printf("action guidance: ok\n");
}

static void test_state(void) {
    wm_session *a = new_session(42, -2, -1, 0);
    wm_session *b = new_session(999, -2, -1, 0); /* the snapshot carries the seed, the prompt, the cache */
    if (!a || !b) return;
    size_t size0 = 0, size = 0;
    CHECK_OK(api->session_state_size(a, &size0));
    CHECK(size0 > 0);
    CHECK_OK(api->session_set_prompt_text(a, "red green"));
    CHECK_OK(api->session_state_size(a, &size));
    CHECK(size == size0);
    push_actions(a, 0, CHUNK0);
    static uint8_t frames[REF_FRAMES * FRAME];
    read_frames(a, frames, CHUNK0, 0);
    CHECK(!memcmp(frames, g_ref, (size_t)CHUNK0 * FRAME));
    CHECK_OK(api->session_state_size(a, &size));
    CHECK(size == size0);
    void *blob = malloc(size0);
    CHECK_OK(api->session_state_save(a, blob, size0));

    /* a continues uninterrupted */
    push_actions(a, CHUNK0, REF_FRAMES);
    read_frames(a, frames + (size_t)CHUNK0 * FRAME, 2 * CHUNK, CHUNK0);
    CHECK(!memcmp(frames, g_ref, sizeof frames));
    CHECK_OK(api->session_state_size(a, &size));
    CHECK(size == size0);

    /* b starts from the snapshot */
    CHECK_OK(api->session_state_load(b, blob, size0));
    push_actions(b, CHUNK0, REF_FRAMES);
    memset(frames, 0, sizeof frames);
    read_frames(b, frames + (size_t)CHUNK0 * FRAME, 2 * CHUNK, CHUNK0);
    CHECK(
        !memcmp(frames + (size_t)CHUNK0 * FRAME, g_ref + (size_t)CHUNK0 * FRAME, 2 * (size_t)CHUNK * FRAME));
    wm_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK_OK(api->session_get_stats(b, &st));
    CHECK(st.frames_generated == REF_FRAMES);

    /* a rewinds to the snapshot */
    CHECK_OK(api->session_state_load(a, blob, size0));
    push_actions(a, CHUNK0, CHUNK0 + CHUNK);
    read_frames(a, frames, CHUNK, CHUNK0);
    CHECK(!memcmp(frames, g_ref + (size_t)CHUNK0 * FRAME, (size_t)CHUNK * FRAME));

    /* a snapshot of another cache policy does not fit */
    wm_session *c = new_session(42, 4, 0, 0);
    if (c) {
        size_t csize = 0;
        CHECK_OK(api->session_state_size(c, &csize));
        if (csize == size0) CHECK_FAILS(api->session_state_load(c, blob, size0));
        api->session_free(c);
    }
    free(blob);
    api->session_free(a);
    api->session_free(b);
}

/* An abort leaves the session as it was: the next generate gives the uninterrupted frames. */
static int g_abort_now;
static int abort_cb(void *user_data) {
    CHECK(user_data == &g_abort_now);
    return g_abort_now;
}

static void test_abort(void) {
    wm_session_params sp;
    api->session_params_init(&sp);
    sp.seed = 42;
    sp.abort_cb = abort_cb;
    sp.abort_user_data = &g_abort_now;
    wm_session *s = NULL;
    CHECK_OK(api->session_new(g_model, &sp, &s));
    if (!s) return;
    CHECK_OK(api->session_set_prompt_text(s, "red green"));
    push_actions(s, 0, CHUNK0);
    g_abort_now = 1;
    int n = -1;
    CHECK_ST(api->session_generate(s, &n), WM_ERR_ABORTED);
    wm_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK_OK(api->session_get_stats(s, &st));
    CHECK(st.chunks == 0 && st.frames_generated == 0 && st.cache_tokens == 0);
    g_abort_now = 0;
    static uint8_t frames[CHUNK0 * FRAME];
    read_frames(s, frames, CHUNK0, 0);
    CHECK(!memcmp(frames, g_ref, sizeof frames));
    api->session_free(s);
}

/* Cache policies: the unbounded cache reports full at its capacity; a window keeps it bounded. */
static void test_cache_policies(void) {
    wm_session *s = new_session(42, -1, -1, 4); /* room for 2 chunks */
    if (s) {
        CHECK_OK(api->session_set_prompt_text(s, "blue"));
        int n = 0;
        CHECK_OK(api->session_generate(s, &n));
        CHECK_OK(api->session_generate(s, &n));
        CHECK_ST(api->session_generate(s, &n), WM_ERR_STATE);
        CHECK(api->last_error()[0] != 0);
        api->session_free(s);
    }
    s = new_session(42, 4, 0, 0);
    if (s) {
        CHECK_OK(api->session_set_prompt_text(s, "blue"));
        size_t size0 = 0, size = 0;
        CHECK_OK(api->session_state_size(s, &size0));
        wm_stats st;
        memset(&st, 0, sizeof st);
        st.size = sizeof st;
        for (int c = 0; c < 6; c++) {
            int n = 0;
            CHECK_OK(api->session_generate(s, &n));
            CHECK_OK(api->session_get_stats(s, &st));
            CHECK(st.cache_tokens <= 4 * TPF);
            CHECK_OK(api->session_state_size(s, &size));
            CHECK(size == size0);
        }
        CHECK(st.chunks == 6 && st.latent_frames == 12);
        api->session_free(s);
    }
}

/* last_error is per thread; two sessions of one model run on two threads at once. */
typedef struct {
    uint8_t frames[CHUNK0 * FRAME];
    int ok;
    char error_at_start[64];
} thread_job;

static void *thread_main(void *arg) {
    thread_job *job = arg;
    snprintf(job->error_at_start, sizeof job->error_at_start, "%s", api->last_error());
    wm_session *s = new_session(42, -2, -1, 0);
    if (!s) return NULL;
    job->ok = api->session_set_prompt_text(s, "red green") == WM_OK;
    for (int64_t i = 0; i < CHUNK0; i++) {
        wm_action a = action_of(i);
        job->ok &= api->session_push_action(s, &a) == WM_OK;
    }
    for (int k = 0; k < CHUNK0; k++)
        job->ok &= api->session_read_frame(s, job->frames + (size_t)k * FRAME, W * 3, FRAME, NULL) == WM_OK;
    wm_action bad;
    memset(&bad, 0, sizeof bad);
    bad.buttons = 1u << 9;
    job->ok &= api->session_push_action(s, &bad) == WM_ERR_INVALID_ARGUMENT;
    api->session_free(s);
    return NULL;
}

static void test_threads(void) {
    /* an error on this thread */
    wm_action a;
    memset(&a, 0, sizeof a);
    a.axes[0] = NAN;
    wm_session *s = new_session(1, -2, -1, 0);
    if (!s) return;
    CHECK_ST(api->session_push_action(s, &a), WM_ERR_INVALID_ARGUMENT);
    char mine[1024];
    snprintf(mine, sizeof mine, "%s", api->last_error());
    CHECK(mine[0] != 0);

    static thread_job jobs[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, thread_main, &jobs[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(jobs[i].ok);
        CHECK(jobs[i].error_at_start[0] == 0); /* a new thread has no error */
        CHECK(!memcmp(jobs[i].frames, g_ref, sizeof jobs[i].frames));
    }
    CHECK(!strcmp(api->last_error(), mine)); /* the other threads' errors did not touch this one */
    api->session_free(s);
}

int main(void) {
    void *so = open_plugin();
    if (!api) return wm_test_finish("test_abi");
    test_table();
    test_exports();
    if (wm_test_failures) return wm_test_finish("test_abi");

    snprintf(g_dir, sizeof g_dir, "/tmp/wm_test_abi_XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    write_file("config.json", TINY_CONFIG);
    test_model_params();
    test_model_load();
    if (g_model) {
        test_model_info();
        test_session_args();
        test_reference_run();
        test_action_guidance();
        test_state();
        test_abort();
        test_cache_policies();
        test_threads();
        api->model_free(g_model);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    dlclose(so);
    return wm_test_finish("test_abi");
}
