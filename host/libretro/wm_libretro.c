/* wm_libretro.c - a libretro core that plays a wm world model in any libretro frontend (RetroArch...).
 *
 * The "game" is a model: retro_load_game takes a model directory or its config.json (no path: the
 * shipped game, else the random-weight demo). The core loads libwm.so through the plugin ABI
 * (dlopen: $WM_PLUGIN, else libwm.so beside this core, else the build tree's) rather than linking
 * the engine in: one engine binary serves every host, the core stays small and CPU/CUDA builds of
 * the plugin swap without rebuilding it.
 *
 * Video is XRGB8888 at the model's size and fps; audio is silence (frontends pace on it). The
 * RetroPad (port 0), its analog sticks and the mouse go through an input map (input_maps/, format in
 * docs/PLAYER.md; `pad` and `mouse` lines apply, `key` lines are the frontend's business). Frames are
 * generated a chunk at a time inside retro_run. Savestates hold the session state, the frames not yet
 * shown and the input state, so a loaded state continues bit for bit.
 *
 * Settings from the environment: WM_PLUGIN, WM_BACKEND (cpu|cuda|auto), WM_THREADS, WM_SEED,
 * WM_PROMPT, WM_INPUT_MAP, WM_RANDOM_WEIGHTS=1 (forced; automatic when model.safetensors is absent),
 * WM_WEIGHT_SEED. Core options (the frontend's menu): wm_tempcache, wm_annsa, wm_annca =
 * disabled|enabled, the accelerations of docs/ACCEL.md, switched live from the next chunk. */
#define _GNU_SOURCE /* dladdr */
#include "retro_abi.h"

#include "input_map.h"
#include "wm.h"
#include "wm_host.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef WM_DEFAULT_PLUGIN
#define WM_DEFAULT_PLUGIN "libwm.so"
#endif
#ifndef WM_ASSETS_DIR
#define WM_ASSETS_DIR "assets"
#endif
#ifndef WM_INPUT_MAPS_DIR
#define WM_INPUT_MAPS_DIR "input_maps"
#endif
#ifndef WM_CORE_VERSION
#define WM_CORE_VERSION "0.1.0"
#endif

#define RETRO_EXPORT    __attribute__((visibility("default")))
#define AUDIO_RATE      48000.0
#define STATE_MAGIC     "WMRETRO1"
#define MAX_DESCRIPTORS 64

static retro_environment_t env_cb;
static retro_video_refresh_t video_cb;
static retro_audio_sample_t audio_cb;
static retro_audio_sample_batch_t audio_batch_cb;
static retro_input_poll_t input_poll_cb;
static retro_input_state_t input_state_cb;
static retro_log_printf_t log_cb;

static struct {
    void *so;
    const wm_api *api;
    wm_model *model;
    wm_session *session;
    wm_model_info info;
    input_map map;
    size_t frame_bytes;
    int max_chunk_frames;
    uint8_t *frames; /* the chunk being shown: n_buffered RGB frames, the next at pos */
    int n_buffered, pos;
    uint32_t *xrgb;
    int16_t *silence;
    size_t silence_frames;
    size_t state_size; /* of the session */
    size_t serialize_size;
    int failed; /* a generation error: log once, then show black */
    int accel_refused; /* the options' settings the plugin refused, not retried until they change */
    wm_accel_params accel_refused_settings;
    struct retro_input_descriptor desc[MAX_DESCRIPTORS + 1];
} g;

static void core_log(enum retro_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void core_log(enum retro_log_level level, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_cb)
        log_cb(level, "[wm] %s\n", msg);
    else
        fprintf(stderr, "[wm] %s\n", msg);
}

static void on_plugin_log(void *user, wm_log_level level, const char *msg) {
    (void)user;
    core_log(level == WM_LOG_ERROR  ? RETRO_LOG_ERROR
             : level == WM_LOG_WARN ? RETRO_LOG_WARN
             : level == WM_LOG_INFO ? RETRO_LOG_INFO
                                    : RETRO_LOG_DEBUG,
             "%s", msg);
}


/* ---- core options: the accelerations ---- */

static const struct retro_variable OPTIONS[] = {
    {"wm_tempcache", "TempCache (merge KV-cache keys of similar content); disabled|enabled"},
    {"wm_annsa", "AnnSA (block-sparse self-attention); disabled|enabled"},
    {"wm_annca", "AnnCA (sparse cross-attention to the prompt); disabled|enabled"},
    {NULL, NULL}};

static void notify(const char *msg) {
    struct retro_message m = {msg, 180}; /* about 3 s at 60 Hz */
    if (env_cb) env_cb(RETRO_ENVIRONMENT_SET_MESSAGE, &m);
}

/* 1 when the option is "enabled"; unknown values (and a frontend without options) read as disabled */
static int option_on(const char *key) {
    struct retro_variable v = {key, NULL};
    if (!env_cb || !env_cb(RETRO_ENVIRONMENT_GET_VARIABLE, &v) || !v.value) return 0;
    if (!strcmp(v.value, "enabled")) return 1;
    if (strcmp(v.value, "disabled"))
        core_log(RETRO_LOG_WARN, "option %s: '%s' is neither enabled nor disabled", key, v.value);
    return 0;
}

/* Reads the options and switches the session's accelerations to them (from the next chunk). The
 * other settings (thresholds, hash sizes) stay the plugin's defaults. */
static void apply_options(void) {
    if (!g.session) return;
    wm_accel_params cur, want;
    if (g.api->session_get_accel(g.session, &cur) != WM_OK) return;
    want = cur;
    want.tempcache = option_on("wm_tempcache");
    want.annsa = option_on("wm_annsa");
    want.annca = option_on("wm_annca");
    if (want.tempcache == cur.tempcache && want.annsa == cur.annsa && want.annca == cur.annca) return;
    if (g.accel_refused && !memcmp(&want, &g.accel_refused_settings, sizeof want)) return;
    char msg[1024];
    if (g.api->session_set_accel(g.session, &want) != WM_OK) {
        snprintf(msg, sizeof msg, "wm: accelerations refused: %s", g.api->last_error());
        core_log(RETRO_LOG_ERROR, "%s", msg + 4);
        notify(msg);
        g.accel_refused = 1;
        g.accel_refused_settings = want;
        return;
    }
    g.accel_refused = 0;
    snprintf(msg, sizeof msg, "wm: TempCache %s, AnnSA %s, AnnCA %s (from the next chunk)",
             want.tempcache ? "on" : "off", want.annsa ? "on" : "off", want.annca ? "on" : "off");
    core_log(RETRO_LOG_INFO, "%s", msg + 4);
    notify(msg);
}

/* ---- the plugin ---- */

static int load_plugin(void) {
    if (g.api) return 1;
    char path[PATH_MAX + 16];
    const char *env = getenv("WM_PLUGIN");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        Dl_info di;
        path[0] = 0;
        if (dladdr((void *)&load_plugin, &di) && di.dli_fname) { /* libwm.so beside this core */
            char dir[PATH_MAX];
            wm_host_model_dir(di.dli_fname, dir, sizeof dir);
            snprintf(path, sizeof path, "%s/libwm.so", dir);
        }
        if (!path[0] || !wm_host_is_file(path)) snprintf(path, sizeof path, "%s", WM_DEFAULT_PLUGIN);
    }
    g.so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!g.so) {
        core_log(RETRO_LOG_ERROR, "cannot load the wm plugin: %s (set WM_PLUGIN to libwm.so)", dlerror());
        return 0;
    }
    char err[1024];
    g.api = wm_host_get_api((wm_get_api_fn)dlsym(g.so, WM_GET_API_SYMBOL), path, err, sizeof err);
    if (!g.api) {
        core_log(RETRO_LOG_ERROR, "%s", err);
        return 0; /* the plugin stays loaded: unloading one that may have started threads is unsafe */
    }
    core_log(RETRO_LOG_INFO, "plugin %s: %s", path, g.api->build_info());
    return 1;
}

/* ---- libretro entry points ---- */

RETRO_EXPORT unsigned retro_api_version(void) { return RETRO_API_VERSION; }

RETRO_EXPORT void retro_set_environment(retro_environment_t cb) {
    env_cb = cb;
    bool no_game = true; /* no content: the shipped game / the demo */
    cb(RETRO_ENVIRONMENT_SET_SUPPORT_NO_GAME, &no_game);
    cb(RETRO_ENVIRONMENT_SET_VARIABLES, (void *)OPTIONS);
    struct retro_log_callback lc;
    if (cb(RETRO_ENVIRONMENT_GET_LOG_INTERFACE, &lc) && lc.log) log_cb = lc.log;
}
RETRO_EXPORT void retro_set_video_refresh(retro_video_refresh_t cb) { video_cb = cb; }
RETRO_EXPORT void retro_set_audio_sample(retro_audio_sample_t cb) { audio_cb = cb; }
RETRO_EXPORT void retro_set_audio_sample_batch(retro_audio_sample_batch_t cb) { audio_batch_cb = cb; }
RETRO_EXPORT void retro_set_input_poll(retro_input_poll_t cb) { input_poll_cb = cb; }
RETRO_EXPORT void retro_set_input_state(retro_input_state_t cb) { input_state_cb = cb; }

RETRO_EXPORT void retro_init(void) { load_plugin(); }

RETRO_EXPORT void retro_deinit(void) {
    /* the plugin stays loaded until the process exits (see load_plugin) */
}

RETRO_EXPORT void retro_get_system_info(struct retro_system_info *info) {
    memset(info, 0, sizeof *info);
    info->library_name = "wm";
    info->library_version = WM_CORE_VERSION;
    info->valid_extensions = "json";
    info->need_fullpath = true; /* the core reads the model directory itself */
    info->block_extract = true;
}

RETRO_EXPORT void retro_get_system_av_info(struct retro_system_av_info *av) {
    memset(av, 0, sizeof *av);
    av->geometry.base_width = av->geometry.max_width = (unsigned)g.info.width;
    av->geometry.base_height = av->geometry.max_height = (unsigned)g.info.height;
    av->geometry.aspect_ratio = g.info.height > 0 ? (float)g.info.width / (float)g.info.height : 0.0f;
    av->timing.fps = g.info.fps;
    av->timing.sample_rate = AUDIO_RATE;
}

RETRO_EXPORT void retro_set_controller_port_device(unsigned port, unsigned device) {
    (void)port;
    (void)device;
}

static char *first_preset(const char *model) {
    char *p[1] = {NULL};
    return wm_host_model_prompts(model, p, 1) == 1 ? p[0] : NULL;
}

/* RetroPad id -> the input map's pad button (SDL_GameController order; SNES face layout mapped by
 * position: B south = a, A east = b, Y west = x, X north = y). L2/R2 are triggers (axes). */
static const int RETRO_TO_PAD[16] = {INPUT_PAD_A,
                                     INPUT_PAD_X,
                                     INPUT_PAD_BACK,
                                     INPUT_PAD_START,
                                     INPUT_PAD_DPUP,
                                     INPUT_PAD_DPDOWN,
                                     INPUT_PAD_DPLEFT,
                                     INPUT_PAD_DPRIGHT,
                                     INPUT_PAD_B,
                                     INPUT_PAD_Y,
                                     INPUT_PAD_LEFTSHOULDER,
                                     INPUT_PAD_RIGHTSHOULDER,
                                     -1,
                                     -1,
                                     INPUT_PAD_LEFTSTICK,
                                     INPUT_PAD_RIGHTSTICK};

static void set_descriptors(void) {
    int n = 0;
    for (int i = 0; i < g.map.n && n < MAX_DESCRIPTORS; i++) {
        const input_binding *b = &g.map.bindings[i];
        const char *name = b->target == INPUT_TARGET_BUTTON ? g.info.button_names[b->index]
                           : b->target == INPUT_TARGET_AXIS ? g.info.axis_names[b->index]
                                                            : "look";
        struct retro_input_descriptor d = {0, RETRO_DEVICE_JOYPAD, 0, 0, name};
        if (b->source == INPUT_SOURCE_PAD_BUTTON) {
            int id = -1;
            for (int r = 0; r < 16; r++)
                if (RETRO_TO_PAD[r] == b->code) id = r;
            if (id < 0) continue;
            d.id = (unsigned)id;
        } else if (b->source == INPUT_SOURCE_PAD_AXIS) {
            if (b->code >= INPUT_PAD_LEFTTRIGGER) {
                d.id =
                    b->code == INPUT_PAD_LEFTTRIGGER ? RETRO_DEVICE_ID_JOYPAD_L2 : RETRO_DEVICE_ID_JOYPAD_R2;
            } else {
                d.device = RETRO_DEVICE_ANALOG;
                d.index = b->code < INPUT_PAD_RIGHTX ? RETRO_DEVICE_INDEX_ANALOG_LEFT
                                                     : RETRO_DEVICE_INDEX_ANALOG_RIGHT;
                d.id = (b->code == INPUT_PAD_LEFTX || b->code == INPUT_PAD_RIGHTX) ? RETRO_DEVICE_ID_ANALOG_X
                                                                                   : RETRO_DEVICE_ID_ANALOG_Y;
            }
        } else {
            continue;
        }
        g.desc[n++] = d;
    }
    g.desc[n].description = NULL;
    if (env_cb) env_cb(RETRO_ENVIRONMENT_SET_INPUT_DESCRIPTORS, g.desc);
}

static int load_map(const char *model) {
    char err[2048], dir[PATH_MAX], path[PATH_MAX + 64];
    input_map_init(&g.map);
    const char *env = getenv("WM_INPUT_MAP");
    int rc = 1, lenient = 0;
    wm_host_model_dir(model, dir, sizeof dir);
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        snprintf(path, sizeof path, "%s/input.map", dir);
        if (!wm_host_is_file(path)) snprintf(path, sizeof path, "%s/%s.map", WM_INPUT_MAPS_DIR, g.info.name);
        if (!wm_host_is_file(path)) {
            snprintf(path, sizeof path, "%s/default.map", WM_INPUT_MAPS_DIR);
            lenient = 1;
        }
    }
    if (wm_host_is_file(path) || (env && *env))
        rc = input_map_load(&g.map, path, &g.info, NULL, NULL, lenient, err, sizeof err);
    if (rc != 1) {
        core_log(RETRO_LOG_ERROR, "%s", err);
        return 0;
    }
    input_map_add_defaults(&g.map, &g.info, NULL, NULL);
    core_log(RETRO_LOG_INFO, "input map %s: %d bindings", wm_host_is_file(path) ? path : "(defaults)", g.map.n);
    return 1;
}

static void unload(void) {
    if (g.session) g.api->session_free(g.session);
    if (g.model) g.api->model_free(g.model);
    g.session = NULL;
    g.model = NULL;
    free(g.frames);
    free(g.xrgb);
    free(g.silence);
    g.frames = NULL;
    g.xrgb = NULL;
    g.silence = NULL;
    input_map_free(&g.map);
    memset(&g.info, 0, sizeof g.info);
    g.n_buffered = g.pos = 0;
    g.failed = 0;
    g.accel_refused = 0;
}

static uint64_t env_u64(const char *name, uint64_t def) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : def;
}

RETRO_EXPORT bool retro_load_game(const struct retro_game_info *game) {
    if (!load_plugin()) return false;
    unload();
    char model[PATH_MAX], dir[PATH_MAX], probe[PATH_MAX + 32];
    int random = 0;
    if (game && game->path && *game->path) {
        snprintf(model, sizeof model, "%s", game->path);
    } else if (!wm_host_default_model(WM_ASSETS_DIR, model, sizeof model, &random)) {
        core_log(RETRO_LOG_ERROR, "no content and no model in %s: load a model's config.json", WM_ASSETS_DIR);
        return false;
    }
    wm_host_model_dir(model, dir, sizeof dir);
    snprintf(probe, sizeof probe, "%s/model.safetensors", dir);
    const char *rw = getenv("WM_RANDOM_WEIGHTS");
    if ((rw && !strcmp(rw, "1")) || (!random && !wm_host_is_file(probe))) {
        if (!random && !(rw && !strcmp(rw, "1")))
            core_log(RETRO_LOG_WARN, "%s has no model.safetensors: using seeded random weights", dir);
        random = 1;
    }
    wm_model_params mp;
    g.api->model_params_init(&mp);
    mp.path = model;
    mp.random_weights = random;
    mp.weight_seed = env_u64("WM_WEIGHT_SEED", 0);
    const char *be = getenv("WM_BACKEND");
    mp.backend = be && wm_host_backend_parse(be) >= 0 ? wm_host_backend_parse(be) : WM_BACKEND_AUTO;
    mp.n_threads = (int)env_u64("WM_THREADS", 0);
    mp.log = on_plugin_log;
    wm_status st = g.api->model_load(&mp, &g.model);
    if (st != WM_OK) {
        core_log(RETRO_LOG_ERROR, "cannot load %s: %s", model, g.api->last_error());
        unload();
        return false;
    }
    g.info.size = sizeof g.info;
    g.api->model_get_info(g.model, &g.info);
    if (g.info.width <= 0) {
        core_log(RETRO_LOG_ERROR, "model '%s' has no decoder: nothing to show", g.info.name);
        unload();
        return false;
    }
    wm_session_params sp;
    g.api->session_params_init(&sp);
    sp.seed = env_u64("WM_SEED", 0);
    const char *ag = getenv("WM_ACTION_GUIDANCE"); /* default: the model's; a bad value fails session_new */
    if (ag && *ag) {
        char *end;
        sp.action_guidance = strtof(ag, &end);
        if (end == ag || *end) sp.action_guidance = NAN; /* not a number: refused, with the plugin's message */
    }
    if ((st = g.api->session_new(g.model, &sp, &g.session)) != WM_OK) {
        core_log(RETRO_LOG_ERROR, "session: %s", g.api->last_error());
        unload();
        return false;
    }
    if (g.info.prompt_kind == WM_PROMPT_TEXT) {
        const char *env = getenv("WM_PROMPT");
        char *preset = env ? NULL : first_preset(model);
        st = g.api->session_set_prompt_text(g.session, env ? env : preset ? preset : "");
        free(preset);
    } else {
        float *zero = calloc((size_t)g.info.text_dim, sizeof *zero); /* one zero token */
        st = zero ? g.api->session_set_prompt_embeddings(g.session, zero, 1, g.info.text_dim)
                  : WM_ERR_OUT_OF_MEMORY;
        free(zero);
    }
    if (st != WM_OK) {
        core_log(RETRO_LOG_ERROR, "prompt: %s", g.api->last_error());
        unload();
        return false;
    }
    if (!load_map(model)) {
        unload();
        return false;
    }
    enum retro_pixel_format fmt = RETRO_PIXEL_FORMAT_XRGB8888;
    if (env_cb && !env_cb(RETRO_ENVIRONMENT_SET_PIXEL_FORMAT, &fmt)) {
        core_log(RETRO_LOG_ERROR, "the frontend does not take XRGB8888");
        unload();
        return false;
    }
    set_descriptors();
    g.frame_bytes = (size_t)g.info.width * g.info.height * 3;
    const int c0 = (int)wm_host_frames_after_chunk(&g.info, 0);
    const int c1 = (int)(wm_host_frames_after_chunk(&g.info, 1) - c0);
    g.max_chunk_frames = c0 > c1 ? c0 : c1;
    g.frames = malloc(g.frame_bytes * (size_t)g.max_chunk_frames);
    g.xrgb = malloc(sizeof(uint32_t) * (size_t)g.info.width * g.info.height);
    g.silence_frames = (size_t)(AUDIO_RATE / g.info.fps + 0.5);
    g.silence = calloc(2 * g.silence_frames, sizeof *g.silence);
    if (g.api->session_state_size(g.session, &g.state_size) != WM_OK || !g.frames || !g.xrgb || !g.silence) {
        core_log(RETRO_LOG_ERROR, "out of memory");
        unload();
        return false;
    }
    /* magic, buffer position, the buffered frames, the input state, the session */
    g.serialize_size = 8 + 2 * sizeof(int32_t) + g.frame_bytes * (size_t)g.max_chunk_frames +
                       (size_t)g.map.n * (sizeof(float) + sizeof(int32_t)) + 2 * sizeof(float) + g.state_size;
    core_log(RETRO_LOG_INFO, "%s: %dx%d at %g fps on %s (%s)%s", g.info.name, g.info.width, g.info.height,
             g.info.fps, wm_host_backend_name(g.info.backend), g.info.device_name ? g.info.device_name : "?",
             random ? " with random weights" : "");
    apply_options(); /* before the first chunk; a refusal leaves the session dense */
    return true;
}

RETRO_EXPORT bool retro_load_game_special(unsigned type, const struct retro_game_info *info, size_t num) {
    (void)type;
    (void)info;
    (void)num;
    return false;
}

RETRO_EXPORT void retro_unload_game(void) { unload(); }

RETRO_EXPORT void retro_reset(void) {
    if (!g.session) return;
    g.api->session_reset(g.session);
    input_map_clear_pending(&g.map); /* a tap before the reset is not an input of the new stream */
    g.n_buffered = g.pos = 0;
    g.failed = 0;
}

static void poll_input(void) {
    if (!input_state_cb) return;
    for (int r = 0; r < 16; r++) {
        const int down = input_state_cb(0, RETRO_DEVICE_JOYPAD, 0, (unsigned)r) != 0;
        if (RETRO_TO_PAD[r] >= 0) input_map_digital(&g.map, INPUT_SOURCE_PAD_BUTTON, RETRO_TO_PAD[r], down);
    }
    for (int s = 0; s < 2; s++)
        for (int ax = 0; ax < 2; ax++) {
            const int16_t v = input_state_cb(0, RETRO_DEVICE_ANALOG, (unsigned)s, (unsigned)ax);
            input_map_pad_axis(&g.map, 2 * s + ax, v / 32768.0f);
        }
    for (int t = 0; t < 2; t++) { /* triggers: analog when the frontend has them, else the digital L2/R2 */
        const unsigned id = t ? RETRO_DEVICE_ID_JOYPAD_R2 : RETRO_DEVICE_ID_JOYPAD_L2;
        int16_t v = input_state_cb(0, RETRO_DEVICE_ANALOG, RETRO_DEVICE_INDEX_ANALOG_BUTTON, id);
        if (v == 0 && input_state_cb(0, RETRO_DEVICE_JOYPAD, 0, id)) v = 0x7fff;
        input_map_pad_axis(&g.map, INPUT_PAD_LEFTTRIGGER + t, v / 32767.0f);
    }
    if (g.info.has_mouse) {
        const int16_t dx = input_state_cb(0, RETRO_DEVICE_MOUSE, 0, RETRO_DEVICE_ID_MOUSE_X);
        const int16_t dy = input_state_cb(0, RETRO_DEVICE_MOUSE, 0, RETRO_DEVICE_ID_MOUSE_Y);
        if (dx || dy) input_map_mouse_motion(&g.map, dx, dy);
    }
    static const unsigned MB[3][2] = {
        {RETRO_DEVICE_ID_MOUSE_LEFT, 1}, {RETRO_DEVICE_ID_MOUSE_MIDDLE, 2}, {RETRO_DEVICE_ID_MOUSE_RIGHT, 3}};
    for (int i = 0; i < 3; i++)
        input_map_digital(&g.map, INPUT_SOURCE_MOUSE_BUTTON, (int)MB[i][1],
                          input_state_cb(0, RETRO_DEVICE_MOUSE, 0, MB[i][0]) != 0);
}

/* The next chunk into g.frames, every frame with the input of now. */
static int generate(void) {
    wm_stats stats = {.size = sizeof stats};
    if (g.api->session_get_stats(g.session, &stats) != WM_OK) return 0;
    const int64_t c = stats.chunks;
    const int n =
        (int)(wm_host_frames_after_chunk(&g.info, c) - (c ? wm_host_frames_after_chunk(&g.info, c - 1) : 0));
    wm_action a;
    input_map_take_action(&g.map, &g.info, n, &a);
    for (int k = 0; k < n; k++)
        if (g.api->session_push_action(g.session, &a) != WM_OK) return 0;
    int got = 0;
    if (g.api->session_generate(g.session, &got) != WM_OK || got < 1 || got > g.max_chunk_frames) return 0;
    const size_t pitch = (size_t)g.info.width * 3;
    for (int k = 0; k < got; k++)
        if (g.api->session_read_frame(g.session, g.frames + (size_t)k * g.frame_bytes, pitch, g.frame_bytes,
                                      NULL) != WM_OK)
            return 0;
    g.n_buffered = got;
    g.pos = 0;
    return 1;
}

RETRO_EXPORT void retro_run(void) {
    if (input_poll_cb) input_poll_cb();
    if (!g.session) return;
    bool updated = false;
    if (env_cb && env_cb(RETRO_ENVIRONMENT_GET_VARIABLE_UPDATE, &updated) && updated) apply_options();
    poll_input();
    const size_t n_px = (size_t)g.info.width * g.info.height;
    if (g.pos >= g.n_buffered && !g.failed && !generate()) {
        core_log(RETRO_LOG_ERROR, "generation failed: %s", g.api->last_error());
        g.failed = 1;
    }
    if (g.failed) {
        memset(g.xrgb, 0, n_px * sizeof *g.xrgb);
    } else {
        const uint8_t *rgb = g.frames + (size_t)g.pos++ * g.frame_bytes;
        for (size_t i = 0; i < n_px; i++)
            g.xrgb[i] =
                0xFF000000u | (uint32_t)rgb[3 * i] << 16 | (uint32_t)rgb[3 * i + 1] << 8 | rgb[3 * i + 2];
    }
    if (video_cb) video_cb(g.xrgb, (unsigned)g.info.width, (unsigned)g.info.height, (size_t)g.info.width * 4);
    if (audio_batch_cb) {
        audio_batch_cb(g.silence, g.silence_frames);
    } else if (audio_cb) {
        for (size_t i = 0; i < g.silence_frames; i++) audio_cb(0, 0);
    }
}

RETRO_EXPORT size_t retro_serialize_size(void) { return g.session ? g.serialize_size : 0; }

RETRO_EXPORT bool retro_serialize(void *data, size_t size) {
    if (!g.session || size < g.serialize_size) return false;
    uint8_t *p = data;
    memcpy(p, STATE_MAGIC, 8);
    p += 8;
    const int32_t hdr[2] = {g.n_buffered, g.pos};
    memcpy(p, hdr, sizeof hdr);
    p += sizeof hdr;
    memcpy(p, g.frames, g.frame_bytes * (size_t)g.max_chunk_frames);
    p += g.frame_bytes * (size_t)g.max_chunk_frames;
    for (int i = 0; i < g.map.n; i++) {
        const int32_t latched = g.map.bindings[i].latched;
        memcpy(p, &g.map.bindings[i].value, sizeof(float));
        memcpy(p + sizeof(float), &latched, sizeof latched);
        p += sizeof(float) + sizeof latched;
    }
    memcpy(p, &g.map.mouse_dx, sizeof(float));
    memcpy(p + sizeof(float), &g.map.mouse_dy, sizeof(float));
    p += 2 * sizeof(float);
    if (g.api->session_state_save(g.session, p, g.state_size) != WM_OK) {
        core_log(RETRO_LOG_ERROR, "serialize: %s", g.api->last_error());
        return false;
    }
    return true;
}

RETRO_EXPORT bool retro_unserialize(const void *data, size_t size) {
    if (!g.session || size < g.serialize_size || memcmp(data, STATE_MAGIC, 8) != 0) return false;
    const uint8_t *p = (const uint8_t *)data + 8;
    int32_t hdr[2];
    memcpy(hdr, p, sizeof hdr);
    if (hdr[0] < 0 || hdr[0] > g.max_chunk_frames || hdr[1] < 0 || hdr[1] > hdr[0]) return false;
    const uint8_t *session = p + sizeof hdr + g.frame_bytes * (size_t)g.max_chunk_frames +
                             (size_t)g.map.n * (sizeof(float) + sizeof(int32_t)) + 2 * sizeof(float);
    /* the session first: it validates the blob, and a refused state leaves the core as it was */
    if (g.api->session_state_load(g.session, session, g.state_size) != WM_OK) {
        core_log(RETRO_LOG_ERROR, "unserialize: %s", g.api->last_error());
        return false;
    }
    g.n_buffered = hdr[0];
    g.pos = hdr[1];
    p += sizeof hdr;
    memcpy(g.frames, p, g.frame_bytes * (size_t)g.max_chunk_frames);
    p += g.frame_bytes * (size_t)g.max_chunk_frames;
    for (int i = 0; i < g.map.n; i++) {
        int32_t latched;
        memcpy(&g.map.bindings[i].value, p, sizeof(float));
        memcpy(&latched, p + sizeof(float), sizeof latched);
        g.map.bindings[i].latched = latched;
        p += sizeof(float) + sizeof latched;
    }
    memcpy(&g.map.mouse_dx, p, sizeof(float));
    memcpy(&g.map.mouse_dy, p + sizeof(float), sizeof(float));
    g.failed = 0;
    return true;
}

RETRO_EXPORT void retro_cheat_reset(void) {}
RETRO_EXPORT void retro_cheat_set(unsigned index, bool enabled, const char *code) {
    (void)index;
    (void)enabled;
    (void)code;
}
RETRO_EXPORT unsigned retro_get_region(void) { return RETRO_REGION_NTSC; }
RETRO_EXPORT void *retro_get_memory_data(unsigned id) {
    (void)id;
    return NULL;
}
RETRO_EXPORT size_t retro_get_memory_size(unsigned id) {
    (void)id;
    return 0;
}
