/* api.c - the exported function table (the plugin's only public symbol is wm_get_api). Every entry
 * clears the thread's error message, checks its arguments and forwards to the engine. */
#include "engine.h"

#include <string.h>

static const char *status_string(wm_status st) {
    switch (st) {
    case WM_OK: return "ok";
    case WM_ERR_INVALID_ARGUMENT: return "invalid argument";
    case WM_ERR_IO: return "i/o error";
    case WM_ERR_FORMAT: return "malformed file or data";
    case WM_ERR_CONFIG: return "invalid configuration";
    case WM_ERR_SHAPE: return "tensor missing or of the wrong shape";
    case WM_ERR_OUT_OF_MEMORY: return "out of memory";
    case WM_ERR_UNSUPPORTED: return "unsupported";
    case WM_ERR_NO_DEVICE: return "no device";
    case WM_ERR_STATE: return "invalid state";
    case WM_ERR_ABORTED: return "aborted";
    case WM_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

static const char *last_error(void) { return wm_get_error(); }

static const char *build_info(void) {
    return "wm " WM_VERSION_STRING " (api " "1" ", backends: cpu"
#ifdef WM_HAVE_CUDA
           ", cuda"
#endif
           ")";
}

static void model_params_init(wm_model_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->backend = WM_BACKEND_AUTO;
}

static wm_status model_load(const wm_model_params *p, wm_model **out) {
    wm_clear_error();
    return wm_model_load_impl(p, out);
}
static void model_free(wm_model *m) { wm_model_free_impl(m); }
static wm_status model_get_info(const wm_model *m, wm_model_info *info) {
    wm_clear_error();
    if (!m || !info) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "model_get_info: NULL argument");
    if (info->size < offsetof(wm_model_info, name) + sizeof(const char *))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "model_get_info: info.size %zu too small (set it to sizeof(wm_model_info))", info->size);
    wm_model_info_fill(m, info);
    return WM_OK;
}

static void session_params_init(wm_session_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->size = sizeof *p;
    p->window_frames = -2;
    p->sink_frames = -1;
    p->action_guidance = -1.0f;
    wm_accel_defaults(&p->accel);
}

static wm_status session_new(wm_model *m, const wm_session_params *p, wm_session **out) {
    wm_clear_error();
    return wm_session_new_impl(m, p, out);
}
static void session_free(wm_session *s) { wm_session_free_impl(s); }

#define SESSION_CALL(expr)                                                            \
    do {                                                                              \
        wm_clear_error();                                                             \
        if (!s) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "NULL session");         \
        return expr;                                                                  \
    } while (0)

static wm_status set_prompt_text(wm_session *s, const char *t) { SESSION_CALL(wm_session_set_prompt_text_impl(s, t)); }
static wm_status set_prompt_emb(wm_session *s, const float *e, int n, int d) {
    SESSION_CALL(wm_session_set_prompt_emb_impl(s, e, n, d));
}
static wm_status push_action(wm_session *s, const wm_action *a) { SESSION_CALL(wm_session_push_action_impl(s, a)); }
static wm_status generate(wm_session *s, int *n) { SESSION_CALL(wm_session_generate_impl(s, n)); }
static wm_status read_frame(wm_session *s, uint8_t *rgb, size_t pitch, size_t size, int64_t *idx) {
    SESSION_CALL(wm_session_read_frame_impl(s, rgb, pitch, size, idx));
}
static wm_status read_latents(wm_session *s, float *d, size_t n, int *nf) {
    SESSION_CALL(wm_session_read_latents_impl(s, d, n, nf));
}
static wm_status reset(wm_session *s) { SESSION_CALL(wm_session_reset_impl(s)); }
static wm_status state_size(const wm_session *s, size_t *size) {
    wm_clear_error();
    if (!s || !size) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "state_size: NULL argument");
    *size = wm_session_state_size_impl(s);
    return WM_OK;
}
static wm_status state_save(const wm_session *s, void *dst, size_t size) {
    SESSION_CALL(wm_session_state_save_impl(s, dst, size));
}
static wm_status state_load(wm_session *s, const void *src, size_t size) {
    SESSION_CALL(wm_session_state_load_impl(s, src, size));
}
static wm_status prefill_latents(wm_session *s, const float *l, int n, int *nv) {
    SESSION_CALL(wm_session_prefill_impl(s, l, n, nv));
}
static wm_status set_accel(wm_session *s, const wm_accel_params *a) { SESSION_CALL(wm_session_set_accel_impl(s, a)); }
static wm_status get_accel(const wm_session *s, wm_accel_params *a) {
    wm_clear_error();
    if (!s || !a) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "get_accel: NULL argument");
    *a = s->accel;
    return WM_OK;
}
static wm_status get_stats(const wm_session *s, wm_stats *st) {
    wm_clear_error();
    if (!s || !st) return wm_set_error(WM_ERR_INVALID_ARGUMENT, "get_stats: NULL argument");
    if (st->size < sizeof(size_t) + sizeof(int64_t))
        return wm_set_error(WM_ERR_INVALID_ARGUMENT, "get_stats: stats.size %zu too small", st->size);
    wm_session_stats_impl(s, st);
    return WM_OK;
}

static const wm_api g_api_v1 = {
    .version = WM_API_VERSION,
    .struct_size = sizeof(wm_api),
    .status_string = status_string,
    .last_error = last_error,
    .build_info = build_info,
    .model_params_init = model_params_init,
    .model_load = model_load,
    .model_free = model_free,
    .model_get_info = model_get_info,
    .session_params_init = session_params_init,
    .session_new = session_new,
    .session_free = session_free,
    .session_set_prompt_text = set_prompt_text,
    .session_set_prompt_embeddings = set_prompt_emb,
    .session_push_action = push_action,
    .session_generate = generate,
    .session_read_frame = read_frame,
    .session_read_latents = read_latents,
    .session_reset = reset,
    .session_state_size = state_size,
    .session_state_save = state_save,
    .session_state_load = state_load,
    .session_get_stats = get_stats,
    .session_prefill_latents = prefill_latents,
    .session_set_accel = set_accel,
    .session_get_accel = get_accel,
};

WM_EXPORT const wm_api *wm_get_api(uint32_t version) {
    return version == WM_API_VERSION ? &g_api_v1 : NULL;
}

