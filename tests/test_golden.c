/* test_golden.c - the engine, loaded as a plugin through its ABI, against the PyTorch reference's
 * golden fixtures (tests/golden/<case>/, made by tools/reference/make_goldens.py).
 *
 * For each case: same weights, seed, prompt and actions; every chunk's latents must match within
 * 1e-4 of the output's scale, decoded RGB8 frames within 1 level. Then the test proves it can fail:
 * With `--backend cuda` (ctest gpu_golden) the same cases run on the GPU within bf16 tolerances.
 * one weight perturbed by 5e-2 (about half its typical size) must break the match. */
#include "harness.h"
#include "safetensors.h"
#include "wm.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const wm_api *api;
/* --backend cuda: the same fixtures on the GPU, with tolerances for bf16 GEMMs and attention */
static int g_backend = WM_BACKEND_CPU;
static float g_rel_tol = 1e-4f;
static double g_rgb_tol = 0.5 + 255 * 1e-4;

typedef struct golden_case {
    char dir[512];
    cJSON *json;
    wm_st_file expected;
} golden_case;

static int load_case(golden_case *gc, const char *dir) {
    snprintf(gc->dir, sizeof gc->dir, "%s", dir);
    char path[700];
    snprintf(path, sizeof path, "%s/case.json", dir);
    char *text = wm_test_read_file(path, NULL);
    if (!text) return 0;
    gc->json = cJSON_Parse(text);
    free(text);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    return gc->json && wm_st_open(&gc->expected, path) == WM_OK;
}

static double jnum(const cJSON *o, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static float *expected_f32(const golden_case *gc, const char *name, size_t *n) {
    const wm_st_tensor *t = wm_st_find(&gc->expected, name);
    if (!t) return NULL;
    float *d = malloc((size_t)t->n_elements * sizeof(float));
    wm_st_to_f32(t, d);
    *n = (size_t)t->n_elements;
    return d;
}

/* Runs the case with the model at model_dir; returns 1 when every output matches. quiet: no CHECKs. */
/* Applies the case's prompt switches before chunk k ({"chunk": k, "prompt_text": ...}); returns how many. */
static int apply_switches(wm_session *s, const cJSON *switches, int k) {
    const cJSON *sw;
    int n = 0;
    cJSON_ArrayForEach(sw, switches) {
        const cJSON *at = cJSON_GetObjectItem(sw, "chunk"), *text = cJSON_GetObjectItem(sw, "prompt_text");
        if (cJSON_IsNumber(at) && (int)at->valuedouble == k && cJSON_IsString(text)) {
            CHECK_STATUS(api->session_set_prompt_text(s, text->valuestring), WM_OK);
            n++;
        }
    }
    return n;
}

static int run_case(const golden_case *gc, const char *model_dir, int counting) {
    int saved = wm_test_failures, ok = 1;
    wm_model_params mp;
    api->model_params_init(&mp);
    mp.path = model_dir;
    mp.backend = g_backend;
    wm_model *m = NULL;
    wm_status lst = api->model_load(&mp, &m);
    if (lst == WM_ERR_NO_DEVICE) {
        printf("SKIP: %s\n", api->last_error());
        exit(77);
    }
    if (lst != WM_OK) {
        fprintf(stderr, "model_load(%s): %s\n", model_dir, api->last_error());
        wm_test_failures++;
        return 0;
    }
    wm_session_params sp;
    api->session_params_init(&sp);
    const char *seed_s = cJSON_GetStringValue(cJSON_GetObjectItem(gc->json, "seed_hex"));
    sp.seed = seed_s ? strtoull(seed_s, NULL, 16) : (uint64_t)jnum(gc->json, "seed", 0);
    sp.window_frames = (int)jnum(gc->json, "window_frames", -1);
    sp.sink_frames = (int)jnum(gc->json, "sink_frames", 0);
    sp.max_cache_frames = (int)jnum(gc->json, "max_cache_frames", 0);
    wm_session *s = NULL;
    const char *bad_error = cJSON_GetStringValue(cJSON_GetObjectItem(gc->json, "bad_session_error"));
    if (counting && bad_error) {
        /* a model whose sampler needs its window (LongLive's re-cache, Rolling Forcing's spans) refuses
         * an unbounded cache, saying why */
        wm_session_params bad = sp;
        bad.window_frames = -1, bad.sink_frames = 0, bad.max_cache_frames = 8;
        CHECK_STATUS(api->session_new(m, &bad, &s), WM_ERR_INVALID_ARGUMENT);
        CHECK(s == NULL && strstr(api->last_error(), bad_error) != NULL);
    }
    CHECK_STATUS(api->session_new(m, &sp, &s), WM_OK);
    if (!s) { api->model_free(m); return 0; }

    const cJSON *pt = cJSON_GetObjectItem(gc->json, "prompt_text");
    if (cJSON_IsString(pt)) {
        CHECK_STATUS(api->session_set_prompt_text(s, pt->valuestring), WM_OK);
    } else {
        size_t n = 0;
        float *emb = expected_f32(gc, "prompt", &n);
        const wm_st_tensor *t = wm_st_find(&gc->expected, "prompt");
        CHECK(emb != NULL);
        if (emb) CHECK_STATUS(api->session_set_prompt_embeddings(s, emb, (int)t->shape[0], (int)t->shape[1]), WM_OK);
        free(emb);
    }
    const cJSON *acts = cJSON_GetObjectItem(gc->json, "actions"), *a;
    cJSON_ArrayForEach(a, acts) {
        wm_action act;
        memset(&act, 0, sizeof act);
        act.buttons = (uint32_t)cJSON_GetArrayItem(a, 0)->valuedouble;
        const cJSON *axes = cJSON_GetArrayItem(a, 1), *x;
        int i = 0;
        cJSON_ArrayForEach(x, axes) act.axes[i++] = (float)x->valuedouble;
        act.mouse_dx = (float)cJSON_GetArrayItem(a, 2)->valuedouble;
        act.mouse_dy = (float)cJSON_GetArrayItem(a, 3)->valuedouble;
        CHECK_STATUS(api->session_push_action(s, &act), WM_OK);
    }

    wm_model_info info = {.size = sizeof info};
    api->model_get_info(m, &info);
    const int n_chunks = (int)jnum(gc->json, "n_chunks", 0);
    const size_t lat_n = (size_t)info.latent_frames_per_chunk * info.latent_channels * info.latent_height * info.latent_width;
    float *lat = malloc(lat_n * sizeof(float));
    size_t rgb_n = 0;
    float *rgb_ref = expected_f32(gc, "rgb", &rgb_n);
    const size_t fpix = (size_t)info.width * info.height;
    uint8_t *frame = malloc(fpix * 3 + 1);
    int64_t frames_read = 0;
    /* a context prefilled before the first chunk (expected "prefill"; such cases have no decoder) */
    const int prefill = (int)jnum(gc->json, "prefill_chunks", 0);
    if (prefill > 0) {
        size_t n = 0;
        float *ctx = expected_f32(gc, "prefill", &n);
        CHECK(ctx && n == (size_t)prefill * lat_n && !rgb_ref);
        if (ctx && n == (size_t)prefill * lat_n)
            CHECK_STATUS(api->session_prefill_latents(s, ctx, prefill * info.latent_frames_per_chunk, NULL), WM_OK);
        else ok = 0;
        free(ctx);
    }
    double worst_rgb = 0;
    const cJSON *switches = cJSON_GetObjectItem(gc->json, "switches");
    /* with switches: a snapshot right after the first one (its re-cache still pending) */
    uint8_t *snap = NULL;
    size_t snap_size = 0;
    int snap_chunk = -1;
    for (int k = 0; k < n_chunks; k++) {
        if (apply_switches(s, switches, k) && snap_chunk < 0 && counting) {
            snap_chunk = k;
            CHECK_STATUS(api->session_state_size(s, &snap_size), WM_OK);
            snap = malloc(snap_size);
            CHECK_STATUS(api->session_state_save(s, snap, snap_size), WM_OK);
        }
        int nf = 0;
        if (api->session_generate(s, &nf) != WM_OK) {
            fprintf(stderr, "generate: %s\n", api->last_error());
            ok = 0;
            break;
        }
        char name[64];
        snprintf(name, sizeof name, "latents.%d", k);
        size_t n = 0;
        float *ref = expected_f32(gc, name, &n);
        if (!ref || n != lat_n) { ok = 0; free(ref); break; }
        int got_frames = 0;
        api->session_read_latents(s, lat, lat_n, &got_frames);
        float scale = wm_test_max_abs(ref, n);
        char what[600];
        snprintf(what, sizeof what, "%s %s", strrchr(gc->dir, '/') + 1, name);
        if (counting) ok &= wm_test_compare(what, lat, ref, n, g_rel_tol * scale, 0);
        else {
            for (size_t i = 0; i < n; i++) ok &= fabsf(lat[i] - ref[i]) <= g_rel_tol * scale;
        }
        free(ref);
        /* frames of this chunk against the reference's float RGB */
        for (int j = 0; rgb_ref && j < nf; j++, frames_read++) {
            int64_t idx = -1;
            if (api->session_read_frame(s, frame, (size_t)info.width * 3, fpix * 3, &idx) != WM_OK) { ok = 0; break; }
            if ((size_t)(idx + 1) * 3 * fpix > rgb_n) { ok = 0; break; }
            const float *r = rgb_ref + (size_t)idx * 3 * fpix;
            for (size_t p = 0; p < fpix; p++)
                for (int ch = 0; ch < 3; ch++) {
                    double want = fmin(fmax(r[ch * fpix + p], 0.0), 1.0) * 255.0;
                    double d = fabs((double)frame[p * 3 + ch] - want);
                    if (d > worst_rgb) worst_rgb = d;
                }
        }
    }
    if (rgb_ref) {
        /* RGB8 is a rounding of the float frame: at most half a level plus float noise. On CUDA the
         * bf16 error of a guided velocity (1 + w) v - w v_idle is that of v times up to
         * sqrt((1 + w)^2 + w^2) (independent errors of the two forwards), so the frame's tolerance
         * grows by that factor; the latents' is relative to their scale already. */
        const double w = info.action_guidance;
        const double rgb_tol = g_backend == WM_BACKEND_CUDA ? g_rgb_tol * sqrt((1 + w) * (1 + w) + w * w) : g_rgb_tol;
        int rgb_ok = worst_rgb <= rgb_tol && (size_t)frames_read * 3 * fpix == rgb_n;
        if (counting) {
            printf("%-28s frames=%lld/%zu worst |rgb8 - 255*ref| = %.4f (tolerance %.2f): %s\n", strrchr(gc->dir, '/') + 1,
                   (long long)frames_read, rgb_n / (3 * fpix), worst_rgb, rgb_tol, rgb_ok ? "ok" : "MISMATCH");
            if (!rgb_ok) wm_test_failures++;
        }
        ok &= rgb_ok;
    }
    if (snap) { /* a fresh session loaded from the snapshot continues with the same latents */
        wm_session *s2 = NULL;
        CHECK_STATUS(api->session_new(m, &sp, &s2), WM_OK);
        CHECK_STATUS(api->session_state_load(s2, snap, snap_size), WM_OK);
        double worst = 0;
        for (int k = snap_chunk; s2 && k < n_chunks; k++) {
            if (k > snap_chunk) apply_switches(s2, switches, k);
            int nf = 0, got_frames = 0;
            CHECK_STATUS(api->session_generate(s2, &nf), WM_OK);
            api->session_read_latents(s2, lat, lat_n, &got_frames);
            char name[64];
            snprintf(name, sizeof name, "latents.%d", k);
            size_t n = 0;
            float *ref = expected_f32(gc, name, &n);
            for (size_t i = 0; ref && i < n && i < lat_n; i++) worst = fmax(worst, fabs((double)lat[i] - ref[i]));
            free(ref);
        }
        const int snap_ok = worst <= g_rel_tol * 5.0;
        printf("%-28s snapshot after the switch at chunk %d, loaded in a new session: worst |diff| %.3g: %s\n",
               strrchr(gc->dir, '/') + 1, snap_chunk, worst, snap_ok ? "ok" : "MISMATCH");
        if (!snap_ok) wm_test_failures++;
        if (s2) api->session_free(s2);
        free(snap);
    }
    free(rgb_ref);
    free(lat);
    free(frame);
    api->session_free(s);
    api->model_free(m);
    if (!counting) wm_test_failures = saved;
    return ok;
}

/* Copies the case's model with one element of one weight changed by +5e-2, then expects mismatch. */
static void check_perturbation_detected(const golden_case *gc) {
    char src[700], dst_dir[600], dst[700];
    snprintf(dst_dir, sizeof dst_dir, "%s/golden_perturbed", WM_BINARY_DIR);
    mkdir(dst_dir, 0755);
    snprintf(src, sizeof src, "%s/config.json", gc->dir);
    snprintf(dst, sizeof dst, "%s/config.json", dst_dir);
    size_t n;
    char *cfg = wm_test_read_file(src, &n);
    CHECK(cfg && wm_test_write_file(dst, cfg, n));
    free(cfg);
    snprintf(src, sizeof src, "%s/model.safetensors", gc->dir);
    char *st = wm_test_read_file(src, &n);
    wm_st_file f;
    CHECK(st && wm_st_open_memory(&f, st, n) == WM_OK);
    const wm_st_tensor *t = wm_st_find(&f, "blocks.1.ffn.2.weight");
    CHECK(t != NULL);
    if (t) {
        size_t off = (size_t)(t->data - (const uint8_t *)f.map) + 7 * wm_dtype_size(t->dtype);
        if (t->dtype == WM_DTYPE_F32) {
            float v;
            memcpy(&v, st + off, 4);
            v += 5e-2f;
            memcpy(st + off, &v, 4);
        } else if (t->dtype == WM_DTYPE_BF16) { /* flip the exponent's lowest bit: x2 or /2 */
            st[off] ^= (char)0x80;
        } else { /* F16: same, the exponent's lowest bit sits in the high byte */
            st[off + 1] ^= 0x04;
        }
    }
    wm_st_close(&f);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dst_dir);
    CHECK(wm_test_write_file(dst, st, n));
    free(st);
    int still_matches = run_case(gc, dst_dir, 0);
    printf("%-28s one weight perturbed -> %s\n", strrchr(gc->dir, '/') + 1, still_matches ? "STILL MATCHES (bad)" : "mismatch detected (good)");
    CHECK(!still_matches);
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--backend") == 0 && strcmp(argv[2], "cuda") == 0) {
        g_backend = WM_BACKEND_CUDA;
        g_rel_tol = 3e-2f; /* bf16 GEMM inputs and K/V: ~3 significant digits, over several chunks */
        g_rgb_tol = 8.0;
    }
    api = wm_test_plugin_api();
    if (!api) return 1;

    const char *root = WM_SOURCE_DIR "/tests/golden";
    DIR *d = opendir(root);
    int n_cases = 0;
    struct dirent *e;
    char names[32][256];
    while (d && (e = readdir(d)) && n_cases < 32) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s/case.json", root, e->d_name);
        struct stat sb;
        if (e->d_name[0] != '.' && stat(p, &sb) == 0) snprintf(names[n_cases++], 256, "%s", e->d_name);
    }
    if (d) closedir(d);
    CHECK(n_cases > 0);
    for (int i = 0; i < n_cases; i++) {
        golden_case gc;
        memset(&gc, 0, sizeof gc);
        char dir[700];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        if (!load_case(&gc, dir)) {
            fprintf(stderr, "cannot load golden case %s\n", dir);
            wm_test_failures++;
            continue;
        }
        int ok = run_case(&gc, dir, 1);
        if (ok && g_backend == WM_BACKEND_CPU) check_perturbation_detected(&gc);
        cJSON_Delete(gc.json);
        wm_st_close(&gc.expected);
    }
    return wm_test_finish("test_golden");
}
