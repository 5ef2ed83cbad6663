/* test_libretro.c - a tiny libretro frontend that drives wm_libretro.so: dlopens the core, installs the
 * callbacks, loads a random-weight tiny model as the "game", runs frames and checks the video (size,
 * pitch, XRGB8888, frames that vary in space and time), that the RetroPad reaches the model (holding
 * Up changes the stream), that serialize / unserialize continues bit for bit, reset, a bad path, the
 * core options of the accelerations (declared, read at load, switched live through
 * GET_VARIABLE_UPDATE: the frames keep coming, change, and switching back off gives the dense stream
 * again), and that the core exports only retro_* symbols. */
#include "harness.h"

#include "../host/libretro/retro_abi.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CORE WM_BINARY_DIR "/host/libretro/wm_libretro.so"
#define TINY WM_SOURCE_DIR "/tests/scripts_play/tiny.json"

static struct {
    unsigned (*api_version)(void);
    void (*set_environment)(retro_environment_t);
    void (*set_video_refresh)(retro_video_refresh_t);
    void (*set_audio_sample)(retro_audio_sample_t);
    void (*set_audio_sample_batch)(retro_audio_sample_batch_t);
    void (*set_input_poll)(retro_input_poll_t);
    void (*set_input_state)(retro_input_state_t);
    void (*init)(void);
    void (*deinit)(void);
    void (*get_system_info)(struct retro_system_info *);
    void (*get_system_av_info)(struct retro_system_av_info *);
    bool (*load_game)(const struct retro_game_info *);
    void (*unload_game)(void);
    void (*run)(void);
    void (*reset)(void);
    size_t (*serialize_size)(void);
    bool (*serialize)(void *, size_t);
    bool (*unserialize)(const void *, size_t);
} core;

/* what the frontend saw */
static int g_pixel_format = -1, g_no_game, g_n_descriptors, g_has_up_descriptor;
static unsigned g_w, g_h;
static size_t g_pitch;
static int g_video_calls, g_null_frames;
static uint64_t g_hash;
static int g_frame_varies; /* the last frame has more than one colour */
static size_t g_audio_frames;
static int g_hold_up;
/* core options: what the core declared, what the "user" chose, whether it changed since read */
enum { N_OPTS = 3 };
static const char *const OPT_KEYS[N_OPTS] = {"wm_tempcache", "wm_annsa", "wm_annca"};
static int g_opts_declared[N_OPTS];
static const char *g_opt_value[N_OPTS] = {"disabled", "disabled", "disabled"};
static bool g_opt_updated;
static int g_opt_reads, g_messages;
static char g_last_message[1024];

static void frontend_log(enum retro_log_level level, const char *fmt, ...) {
    if (level < RETRO_LOG_WARN) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "core: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static bool environment(unsigned cmd, void *data) {
    switch (cmd) {
    case RETRO_ENVIRONMENT_SET_PIXEL_FORMAT:
        g_pixel_format = *(const enum retro_pixel_format *)data;
        return true;
    case RETRO_ENVIRONMENT_SET_SUPPORT_NO_GAME: g_no_game = *(const bool *)data; return true;
    case RETRO_ENVIRONMENT_SET_VARIABLES:
        for (const struct retro_variable *v = data; v->key; v++)
            for (int i = 0; i < N_OPTS; i++)
                if (!strcmp(v->key, OPT_KEYS[i]) && v->value && strstr(v->value, "; disabled|enabled"))
                    g_opts_declared[i] = 1;
        return true;
    case RETRO_ENVIRONMENT_GET_VARIABLE: {
        struct retro_variable *v = data;
        v->value = NULL;
        for (int i = 0; i < N_OPTS; i++)
            if (v->key && !strcmp(v->key, OPT_KEYS[i])) v->value = g_opt_value[i];
        g_opt_reads++;
        return v->value != NULL;
    }
    case RETRO_ENVIRONMENT_GET_VARIABLE_UPDATE:
        *(bool *)data = g_opt_updated;
        g_opt_updated = false;
        return true;
    case RETRO_ENVIRONMENT_SET_MESSAGE:
        snprintf(g_last_message, sizeof g_last_message, "%s", ((const struct retro_message *)data)->msg);
        g_messages++;
        return true;
    case RETRO_ENVIRONMENT_GET_LOG_INTERFACE:
        ((struct retro_log_callback *)data)->log = frontend_log;
        return true;
    case RETRO_ENVIRONMENT_SET_INPUT_DESCRIPTORS: {
        const struct retro_input_descriptor *d = data;
        g_n_descriptors = 0;
        for (; d->description; d++, g_n_descriptors++)
            if (d->device == RETRO_DEVICE_JOYPAD && d->id == RETRO_DEVICE_ID_JOYPAD_UP &&
                !strcmp(d->description, "up"))
                g_has_up_descriptor = 1;
        return true;
    }
    default: return false;
    }
}

static void video(const void *data, unsigned w, unsigned h, size_t pitch) {
    g_video_calls++;
    if (!data) {
        g_null_frames++;
        return;
    }
    g_w = w, g_h = h, g_pitch = pitch;
    uint64_t hash = 0xcbf29ce484222325ull;
    const uint32_t first = ((const uint32_t *)data)[0] & 0xFFFFFFu;
    g_frame_varies = 0;
    for (unsigned y = 0; y < h; y++) {
        const uint32_t *row = (const uint32_t *)((const uint8_t *)data + y * pitch);
        for (unsigned x = 0; x < w; x++) {
            const uint32_t px = row[x] & 0xFFFFFFu; /* the X byte is unspecified */
            if (px != first) g_frame_varies = 1;
            for (int b = 0; b < 3; b++) hash = (hash ^ ((px >> (8 * b)) & 0xFF)) * 0x100000001b3ull;
        }
    }
    g_hash = hash;
}

static void audio_sample(int16_t l, int16_t r) {
    (void)l, (void)r;
    g_audio_frames++;
}
static size_t audio_batch(const int16_t *d, size_t frames) {
    (void)d;
    g_audio_frames += frames;
    return frames;
}
static void input_poll(void) {}
static int16_t input_state(unsigned port, unsigned device, unsigned index, unsigned id) {
    (void)index;
    return port == 0 && device == RETRO_DEVICE_JOYPAD && id == RETRO_DEVICE_ID_JOYPAD_UP && g_hold_up;
}

/* Runs n frames; hashes[i] gets each frame's hash. */
static void run_frames(int n, uint64_t *hashes) {
    for (int i = 0; i < n; i++) {
        core.run();
        if (hashes) hashes[i] = g_hash;
    }
}

static int load_core(void) {
    void *so = dlopen(CORE, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        fprintf(stderr, "cannot load %s: %s\n", CORE, dlerror());
        return 0;
    }
#define SYM(field, name)                                                                                     \
    do {                                                                                                     \
        *(void **)&core.field = dlsym(so, name);                                                             \
        if (!core.field) {                                                                                   \
            fprintf(stderr, "%s: missing symbol %s\n", CORE, name);                                          \
            return 0;                                                                                        \
        }                                                                                                    \
    } while (0)
    SYM(api_version, "retro_api_version");
    SYM(set_environment, "retro_set_environment");
    SYM(set_video_refresh, "retro_set_video_refresh");
    SYM(set_audio_sample, "retro_set_audio_sample");
    SYM(set_audio_sample_batch, "retro_set_audio_sample_batch");
    SYM(set_input_poll, "retro_set_input_poll");
    SYM(set_input_state, "retro_set_input_state");
    SYM(init, "retro_init");
    SYM(deinit, "retro_deinit");
    SYM(get_system_info, "retro_get_system_info");
    SYM(get_system_av_info, "retro_get_system_av_info");
    SYM(load_game, "retro_load_game");
    SYM(unload_game, "retro_unload_game");
    SYM(run, "retro_run");
    SYM(reset, "retro_reset");
    SYM(serialize_size, "retro_serialize_size");
    SYM(serialize, "retro_serialize");
    SYM(unserialize, "retro_unserialize");
#undef SYM
    return 1;
}

static void check_exports(void) {
    FILE *p = popen("nm -D --defined-only '" CORE "' 2>/dev/null", "r");
    if (!p) return;
    char line[512];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, p)) {
        char addr[64], type[8], name[256];
        if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3) continue;
        n++;
        if (strncmp(name, "retro_", 6)) {
            fprintf(stderr, "unexpected export: %s\n", name);
            bad++;
        }
    }
    pclose(p);
    if (n == 0) {
        fprintf(stderr, "nm not available: export check skipped\n");
        return;
    }
    CHECK(bad == 0);
    CHECK(n >= 20); /* the libretro API has 25 entry points */
}

int main(void) {
    setenv("WM_PLUGIN", WM_PLUGIN_PATH, 1);
    setenv("WM_BACKEND", "cpu", 0); /* WM_BACKEND=cuda runs the test on a GPU */
    setenv("WM_THREADS", "1", 1);
    unsetenv("WM_INPUT_MAP");
    unsetenv("WM_PROMPT");
    if (!load_core()) return 1;
    check_exports();

    CHECK(core.api_version() == RETRO_API_VERSION);
    core.set_environment(environment);
    core.set_video_refresh(video);
    core.set_audio_sample(audio_sample);
    core.set_audio_sample_batch(audio_batch);
    core.set_input_poll(input_poll);
    core.set_input_state(input_state);
    CHECK(g_no_game == 1);
    for (int i = 0; i < N_OPTS; i++) CHECK(g_opts_declared[i]);
    core.init();
    struct retro_system_info si;
    core.get_system_info(&si);
    CHECK(si.library_name && !strcmp(si.library_name, "wm"));
    CHECK(si.need_fullpath);

    /* a path that is no model */
    struct retro_game_info bad = {WM_SOURCE_DIR "/tests/scripts_play/no-such-model.json", NULL, 0, NULL};
    CHECK(!core.load_game(&bad));
    CHECK(core.serialize_size() == 0);

    struct retro_game_info game = {TINY, NULL, 0, NULL};
    CHECK(core.load_game(&game));
    CHECK(g_pixel_format == RETRO_PIXEL_FORMAT_XRGB8888);
    CHECK(g_n_descriptors > 0 && g_has_up_descriptor);
    struct retro_system_av_info av;
    core.get_system_av_info(&av);
    CHECK(av.geometry.base_width == 64 && av.geometry.base_height == 48);
    CHECK(av.geometry.max_width == 64 && av.geometry.max_height == 48);
    CHECK(av.geometry.aspect_ratio > 1.33f && av.geometry.aspect_ratio < 1.34f);
    CHECK(av.timing.fps == 16.0);
    CHECK(av.timing.sample_rate > 0);

    /* frames: the right size, one per run, varying in space and over time */
    enum { N0 = 24, N = 26 };
    uint64_t first[N0], a[N], b[N], neutral[N], up[N];
    run_frames(N0, first);
    CHECK(g_video_calls == N0 && g_null_frames == 0);
    CHECK(g_w == 64 && g_h == 48 && g_pitch >= 64 * 4);
    CHECK(g_frame_varies);
    int distinct = 0;
    for (int i = 1; i < N0; i++) distinct += first[i] != first[i - 1];
    CHECK(distinct >= N0 / 2);
    CHECK(g_audio_frames == (size_t)N0 * 3000); /* 48 kHz / 16 fps of silence per frame */

    /* serialize mid-chunk, run on, unserialize, run again: the same frames */
    const size_t size = core.serialize_size();
    CHECK(size > 0);
    void *state = malloc(size);
    CHECK(state && core.serialize(state, size));
    g_hold_up = 1; /* input in the mix, so that the input state is part of what must be restored */
    run_frames(N, a);
    CHECK(core.unserialize(state, size));
    run_frames(N, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    g_hold_up = 0;
    /* a damaged state is refused */
    memset(state, 0, 8);
    CHECK(!core.unserialize(state, size));
    free(state);

    /* reset: frame 0 again, deterministic; then Up held must change what is generated */
    core.reset();
    uint64_t again[N0];
    run_frames(N0, again);
    CHECK(memcmp(first, again, sizeof first) == 0);
    core.reset();
    run_frames(N, neutral);
    core.reset();
    g_hold_up = 1;
    run_frames(N, up);
    g_hold_up = 0;
    int differ = 0;
    for (int i = 0; i < N; i++) differ += neutral[i] != up[i];
    CHECK(differ > N / 2);

    /* the accelerations as core options, switched live: the core reads them when the frontend says
     * they changed, applies them from the next chunk and keeps producing frames */
    core.reset();
    run_frames(3, NULL); /* mid-stream: the switch lands between chunks */
    const int reads0 = g_opt_reads, calls0 = g_video_calls;
    for (int i = 0; i < N_OPTS; i++) g_opt_value[i] = "enabled";
    g_opt_updated = true;
    uint64_t fast[N];
    run_frames(N, fast);
    CHECK(!g_opt_updated && g_opt_reads >= reads0 + N_OPTS);
    CHECK(g_messages > 0 && strstr(g_last_message, "TempCache on, AnnSA on, AnnCA on"));
    CHECK(g_video_calls == calls0 + N && g_null_frames == 0);
    CHECK(g_w == 64 && g_h == 48 && g_frame_varies);
    distinct = 0;
    for (int i = 1; i < N; i++) distinct += fast[i] != fast[i - 1];
    CHECK(distinct >= N / 2);
    /* from frame 0 with every module on: a different stream than the dense one (AnnCA keeps only part
     * of the prompt), still deterministic */
    core.reset();
    uint64_t accel1[N], accel2[N];
    run_frames(N, accel1);
    core.reset();
    run_frames(N, accel2);
    CHECK(memcmp(accel1, accel2, sizeof accel1) == 0);
    differ = 0;
    for (int i = 0; i < N; i++) differ += accel1[i] != neutral[i];
    CHECK(differ > 0);
    /* one module back off, then all: with every module off the dense stream comes back bit for bit */
    g_opt_value[0] = "disabled";
    g_opt_updated = true;
    run_frames(N, NULL);
    CHECK(strstr(g_last_message, "TempCache off, AnnSA on, AnnCA on"));
    for (int i = 0; i < N_OPTS; i++) g_opt_value[i] = "disabled";
    g_opt_updated = true;
    run_frames(1, NULL);
    CHECK(strstr(g_last_message, "TempCache off, AnnSA off, AnnCA off"));
    core.reset();
    uint64_t dense[N];
    run_frames(N, dense);
    CHECK(memcmp(dense, neutral, sizeof dense) == 0);
    /* no update pending: the options are not read again every frame */
    const int reads1 = g_opt_reads;
    run_frames(4, NULL);
    CHECK(g_opt_reads == reads1);

    core.unload_game();
    CHECK(core.serialize_size() == 0);
    core.deinit();
    return wm_test_finish("test_libretro");
}
