/* wm_host.c - see wm_host.h. */
#include "wm_host.h"

#include <cjson/cJSON.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* versions probed when the plugin refuses ours, to tell the user which ones it speaks */
#define PROBE_VERSIONS 64u

const wm_api *wm_host_get_api(wm_get_api_fn get, const char *path, char *err, size_t err_size) {
    if (!get) {
        snprintf(err, err_size, "%s: no symbol '%s': not a wm plugin", path, WM_GET_API_SYMBOL);
        return NULL;
    }
    const wm_api *api = get(WM_API_VERSION);
    if (api && api->version == WM_API_VERSION && api->struct_size >= sizeof(wm_api)) return api;
    if (api && api->version != WM_API_VERSION) {
        snprintf(
            err, err_size,
            "%s: ABI mismatch: asked for wm ABI version %u, the plugin answered with a table of version %u",
            path, WM_API_VERSION, api->version);
        return NULL;
    }
    if (api) {
        snprintf(err, err_size,
                 "%s: ABI mismatch: the plugin's version %u table has %u bytes, this host needs %zu "
                 "(a plugin older than its version number says)",
                 path, WM_API_VERSION, api->struct_size, sizeof(wm_api));
        return NULL;
    }
    char spoken[256] = "";
    size_t len = 0;
    for (uint32_t v = 1; v <= PROBE_VERSIONS; v++) {
        if (v == WM_API_VERSION || !get(v)) continue;
        len += (size_t)snprintf(spoken + len, sizeof spoken - len, "%s%u", len ? ", " : "", v);
        if (len >= sizeof spoken - 8) break;
    }
    snprintf(err, err_size,
             "%s: ABI mismatch: the plugin speaks wm ABI version(s) %s; this host was built for version %u "
             "(rebuild the host against the plugin's wm.h, or use a matching libwm.so)",
             path, len ? spoken : "none of 1..64", WM_API_VERSION);
    return NULL;
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int wm_host_default_model(const char *assets_dir, char *path, size_t size, int *random_weights) {
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/game/config.json", assets_dir);
    if (is_file(probe)) {
        snprintf(path, size, "%s/game", assets_dir);
        *random_weights = 0;
        return 1;
    }
    snprintf(probe, sizeof probe, "%s/demo/config.json", assets_dir);
    if (is_file(probe)) {
        snprintf(path, size, "%s", probe);
        *random_weights = 1;
        return 1;
    }
    return 0;
}

const char *wm_host_backend_name(int backend) {
    return backend == WM_BACKEND_CPU ? "cpu" : backend == WM_BACKEND_CUDA ? "cuda" : "auto";
}

int wm_host_backend_parse(const char *name) {
    if (!strcmp(name, "cpu")) return WM_BACKEND_CPU;
    if (!strcmp(name, "cuda")) return WM_BACKEND_CUDA;
    if (!strcmp(name, "auto")) return WM_BACKEND_AUTO;
    return -1;
}

int64_t wm_host_frames_after_chunk(const wm_model_info *info, int64_t c) {
    const int64_t last_latent = (c + 1) * info->latent_frames_per_chunk - 1;
    return (int64_t)info->time_upscale * last_latent + 1;
}

uint64_t wm_host_hash(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int wm_host_is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int wm_host_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

void wm_host_model_dir(const char *model, char *dir, size_t size) {
    if (wm_host_is_dir(model)) {
        snprintf(dir, size, "%s", model);
        return;
    }
    const char *slash = strrchr(model, '/');
    if (!slash)
        snprintf(dir, size, ".");
    else
        snprintf(dir, size, "%.*s", (int)(slash - model), model);
}

int wm_host_model_prompts(const char *model, char **out, int max) {
    char path[4096 + 16];
    if (wm_host_is_dir(model)) snprintf(path, sizeof path, "%s/config.json", model);
    else snprintf(path, sizeof path, "%s", model);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char *text = NULL;
    size_t len = 0;
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size > 0 && (text = malloc((size_t)size + 1))) len = fread(text, 1, (size_t)size, f);
    fclose(f);
    if (!text) return 0;
    text[len] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(root, "_prompts")) {
        if (cJSON_IsString(it) && n < max) {
            char *p = strdup(it->valuestring);
            if (p) out[n++] = p;
        }
    }
    cJSON_Delete(root);
    return n;
}

static volatile sig_atomic_t g_interrupted = 0;

static void on_interrupt(int sig) {
    (void)sig;
    g_interrupted = 1;
}

void wm_host_catch_interrupt(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int wm_host_interrupted(void) { return g_interrupted != 0; }

int wm_host_abort_on_interrupt(void *user) {
    (void)user;
    return g_interrupted != 0;
}

double wm_host_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

float wm_host_action_guidance(const wm_model_info *info, float requested) {
    return requested < 0 ? info->action_guidance : requested;
}
