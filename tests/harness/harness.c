/* harness.c - see harness.h. */
#include "harness.h"

#include "backend.h"
#include "wm.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int wm_test_failures = 0;

float wm_test_max_abs(const float *x, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

int wm_test_compare(const char *what, const float *got, const float *ref, size_t n, float atol, float rtol) {
    double max_diff = 0;
    size_t worst = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i]))) bad++;
        if (d > max_diff || isnan(d)) { max_diff = isnan(d) ? INFINITY : d; worst = i; }
    }
    printf("%-28s n=%-8zu max|diff|=%.3g (at %zu) atol=%.3g: %s", what, n, max_diff, worst, atol, bad ? "MISMATCH" : "ok");
    printf("  [");
    for (size_t i = 0; i < n && i < 3; i++) printf(" %.5f/%.5f", got[i], ref[i]);
    printf(" ]\n");
    if (bad) wm_test_failures++;
    return bad == 0;
}

size_t wm_test_bit_diffs(const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(a + i, b + i, sizeof(float)) != 0;
    return bad;
}

int wm_test_check_exact(const char *what, const float *got, const float *ref, size_t n) {
    const size_t bad = wm_test_bit_diffs(got, ref, n);
    printf("%-28s n=%-8zu bit-identical: %s (%zu differ)\n", what, n, bad ? "MISMATCH" : "ok", bad);
    if (bad) wm_test_failures++;
    return bad == 0;
}

float wm_test_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&f, &u, 4);
    return f;
}

int wm_test_finish(const char *name) {
    if (wm_test_failures) {
        printf("FAIL %s: %d check(s) failed\n", name, wm_test_failures);
        return 1;
    }
    printf("PASS %s\n", name);
    return 0;
}

char *wm_test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = 0; if (size) *size = (size_t)n; }
    return buf;
}

int wm_test_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, size, f) == size;
    fclose(f);
    return ok;
}

float *wm_test_dev(wm_backend *be, const float *host, size_t n) {
    float *d = be->alloc(be, n ? n : 1);
    if (!d) {
        fprintf(stderr, "alloc of %zu floats on %s failed: %s\n", n, be->name, wm_get_error());
        exit(1);
    }
    if (host && n) be->upload(be, d, host, n);
    return d;
}

float *wm_test_get(wm_backend *be, const float *dev, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h) {
        fprintf(stderr, "out of host memory for %zu floats\n", n);
        exit(1);
    }
    if (n) be->download(be, h, dev, n);
    return h;
}

const wm_api *wm_test_plugin_api(void) {
    void *so = dlopen(WM_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        fprintf(stderr, "dlopen %s: %s\n", WM_PLUGIN_PATH, dlerror());
        return NULL;
    }
    wm_get_api_fn get = (wm_get_api_fn)dlsym(so, WM_GET_API_SYMBOL);
    const wm_api *api = get ? get(WM_API_VERSION) : NULL;
    if (!api) fprintf(stderr, "%s: no wm API table of version %u\n", WM_PLUGIN_PATH, WM_API_VERSION);
    return api;
}

wm_model *wm_test_load_cpu(const wm_api *api, const char *path, int random_weights) {
    wm_model_params mp;
    api->model_params_init(&mp);
    mp.path = path;
    mp.random_weights = random_weights;
    mp.backend = WM_BACKEND_CPU;
    mp.n_threads = 1;
    wm_model *m = NULL;
    CHECK_STATUS(api->model_load(&mp, &m), WM_OK);
    return m;
}

int wm_test_write_config(const char *name, const char *json, char *path, size_t size) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", WM_BINARY_DIR, name);
    mkdir(dir, 0755);
    snprintf(path, size, "%s/config.json", dir);
    if (!wm_test_write_file(path, json, strlen(json))) {
        fprintf(stderr, "cannot write %s\n", path);
        return 0;
    }
    return 1;
}
