/* wm-play.c - the interactive SDL2 host: loads libwm.so with SDL_LoadObject, generates on its own
 * thread into a frame queue, shows the stream paced at the model's fps (letterboxed, any window
 * size), maps keyboard / mouse / gamepads to the model's actions through an input map, draws a HUD,
 * and records / replays sessions bit for bit. `--headless` runs the same loop without a window.
 *
 * Threads: the main thread owns SDL (events, rendering) and the input map; the generator thread owns
 * the player (plugin session). They meet under one mutex: the frame ring, the input state, the
 * commands (reset, prompt, accelerations, save/load, record) and the status the HUD shows.
 *
 * Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 a replay that differs from its recording. */
#include "font.h"
#include "input_map.h"
#include "player.h"
#include "png_save.h"
#include "timeline.h"
#include "wm_host.h"

#include "accel_args.h"
#include "actions.h"
#include "cli.h"
#include "run_opts.h"
#include "video_writer.h" /* host/common */

#include <SDL.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef WM_DEFAULT_PLUGIN
#define WM_DEFAULT_PLUGIN "libwm.so"
#endif
#ifndef WM_ASSETS_DIR
#define WM_ASSETS_DIR "assets"
#endif
#ifndef WM_INPUT_MAPS_DIR
#define WM_INPUT_MAPS_DIR "input_maps"
#endif

enum { EXIT_RUNTIME = WM_CLI_EXIT_RUNTIME, EXIT_USAGE = WM_CLI_EXIT_USAGE, EXIT_REPLAY_DIFFERS = 3 };
enum { N_SLOTS = 10, MAX_PADS = 8, MAX_PRESETS = 32 };

/* the input map's pad codes are SDL's */
_Static_assert((int)SDL_CONTROLLER_BUTTON_A == (int)INPUT_PAD_A &&
                   (int)SDL_CONTROLLER_BUTTON_DPAD_RIGHT == (int)INPUT_PAD_DPRIGHT,
               "pad button order");
_Static_assert((int)SDL_CONTROLLER_AXIS_LEFTX == (int)INPUT_PAD_LEFTX &&
                   (int)SDL_CONTROLLER_AXIS_TRIGGERRIGHT == (int)INPUT_PAD_RIGHTTRIGGER,
               "pad axis order");

typedef struct options {
    /* plugin, model, session, prompt, --actions and --frames (headless), accelerations, verbosity
     * (run_opts.h); --weight-seed sets opts.weight_seed */
    wm_run_opts opts;
    const char *input_map;
    const char *record;
    const char *replay;
    const char *out_dir;
    const char *state_dir;
    int headless;
    long long max_frames; /* window: quit after this many frames shown */
    int scale;
    int fullscreen;
    int nearest;
    int no_hud;
    int print_map;
} options;

static const char *g_prog = "wm-play";

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s [options]\n"
            "Plays a world model interactively: your keys, mouse and gamepad are its actions.\n"
            "\n"
            "  --model DIR|config.json  model to play (default: assets/game, else the random-weight demo\n"
            "                           assets/demo/config.json)\n"
            "  --random-weights         seeded random weights (any config without model.safetensors)\n"
            "  --weight-seed N          seed of the random weights (default 0)\n"
            "  --backend cpu|cuda|auto  compute backend (default auto: CUDA when a device is present)\n"
            "  --threads N              CPU threads (default 0 = all cores)\n"
            "  --seed N                 noise seed (default 0)\n"
            "  --action-guidance W      response to the controls: v + W (v - v_idle) on the model's guided\n"
            "                           steps (default: the model's config, 1 for the shipped game; 0 = off)\n"
            "  --prompt TEXT            prompt of a text model (default: the first preset, else empty)\n"
            "  --prompt-embedding FILE  embedding models: safetensors with tensor \"prompt\" [L, text_dim]\n"
            "  --input-map FILE         input map (default: <model dir>/input.map, input_maps/<name>.map,\n"
            "                           else input_maps/default.map); format in docs/PLAYER.md\n"
            "  --print-map              print the bindings in use and continue\n"
            "  --record FILE            record from the start: video (.mp4 .mkv .y4m .rgb) + FILE.json\n"
            "  --replay FILE.json       replay a recording and check every frame against it\n"
            "  --headless               no window: replay (--replay), run an action script (--actions) or\n"
            "                           neutral actions, with a progress bar; --record writes the video\n"
            "  --actions FILE           headless: wm-run's action script, one line per frame\n"
            "  --frames N               headless: frames to generate (default: the script's length, or 48)\n"
            "  --max-frames N           window: quit after N frames shown\n"
            "  --out-dir DIR            screenshots and F10 recordings (default .)\n"
            "  --state-dir DIR          also write F5 saves to DIR/slotN.wmstate (+ .json); F9 reads them\n"
            "  --scale N                initial window size: N x the frame size (default: about 768 wide)\n"
            "  --fullscreen             start fullscreen (F11 toggles)\n"
            "  --nearest                nearest-neighbour scaling (default: linear)\n"
            "  --no-hud                 start with the HUD hidden (F1 toggles)\n"
            "  --plugin PATH            libwm.so to load (default: $WM_PLUGIN, else the build tree's)\n"
            "  --verbose / --quiet      more / less output\n"
            "  --help                   this text\n"
            "\n"
            "Accelerations (docs/ACCEL.md), the settings at start (Alt+1/2/3/0 switch them live; a replay\n"
            "takes them from its file):\n"
            "%s"
            "\n"
            "Keys: F1 HUD  F2/Pause pause  F3 reset  F4 next prompt preset  F6 type a prompt\n"
            "      F5 save slot  F9 load slot  F7/F8 slot -/+  F10 record  F11 fullscreen  F12 screenshot\n"
            "      Alt+1 TempCache  Alt+2 AnnSA  Alt+3 AnnCA  Alt+0 all on/off (from the next chunk)\n"
            "      Esc release the mouse / quit. Game controls come from the input map.\n"
            "Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 replay differs from the recording.\n",
            g_prog, wm_accel_args_help);
}


/* wm-play's own options (wm_run_opts_own_fn) */
static int own_arg(wm_run_opts *ro, int *i, void *user) {
    options *o = user;
    const char *a = ro->argv[*i];
    if (!strcmp(a, "--weight-seed")) return wm_run_opts_u64(ro, i, &ro->weight_seed);
    if (!strcmp(a, "--input-map")) return wm_run_opts_str(ro, i, &o->input_map);
    if (!strcmp(a, "--print-map")) return o->print_map = 1;
    if (!strcmp(a, "--record")) return wm_run_opts_str(ro, i, &o->record);
    if (!strcmp(a, "--replay")) return wm_run_opts_str(ro, i, &o->replay);
    if (!strcmp(a, "--headless")) return o->headless = 1;
    if (!strcmp(a, "--max-frames")) return wm_run_opts_ll(ro, i, 1, 1LL << 40, "a count", &o->max_frames);
    if (!strcmp(a, "--out-dir")) return wm_run_opts_str(ro, i, &o->out_dir);
    if (!strcmp(a, "--state-dir")) return wm_run_opts_str(ro, i, &o->state_dir);
    if (!strcmp(a, "--scale")) return wm_run_opts_int(ro, i, 1, 64, "in 1..64", &o->scale);
    if (!strcmp(a, "--fullscreen")) return o->fullscreen = 1;
    if (!strcmp(a, "--nearest")) return o->nearest = 1;
    if (!strcmp(a, "--no-hud")) return o->no_hud = 1;
    return 0;
}

/* Returns 0, or the exit code after printing a usage error. The options wm-play shares with the
 * other tools that run a model are run_opts.h's, but for two: --random-weights takes no seed here
 * (--weight-seed N does), and --prompt with --prompt-embedding is no usage error (the model's prompt
 * kind picks one; player_open), so wm_run_opts_check is not applied. No --window/--sinks: the session
 * keeps the model's cache policy. */
static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    wm_run_opts_init(&o->opts, argc, argv, WM_RUN_OPT_PROMPT | WM_RUN_OPT_FRAMES | WM_RUN_OPT_ACTIONS |
                     WM_RUN_OPT_VERBOSITY, -1, (long long)1 << 40); /* frames -1: not given */
    o->out_dir = ".";
    const int rc = wm_run_opts_parse_args(&o->opts, usage, own_arg, o);
    if (rc) return rc;
    if (o->opts.actions && !o->headless)
        return wm_cli_usage_error("--actions needs --headless (the window takes live input)");
    if (o->opts.actions && o->replay) return wm_cli_usage_error("--actions and --replay exclude each other");
    if (o->opts.frames > 0 && !o->headless)
        return wm_cli_usage_error("--frames is for --headless (the window: --max-frames)");
    return 0;
}

static double now_ms(void) { return wm_host_now_s() * 1e3; }


static void on_log(void *user, wm_log_level level, const char *msg) {
    const options *o = user;
    if (level >= WM_LOG_WARN || (o->opts.verbose && level >= WM_LOG_DEBUG) || (!o->opts.quiet && level >= WM_LOG_INFO))
        fprintf(stderr, "wm: %s\n", msg);
}

/* Prompt presets: the "_prompts" array of the model's config.json. Returns the count. */
static int load_presets(const char *model, char *presets[MAX_PRESETS]) {
    return wm_host_model_prompts(model, presets, MAX_PRESETS);
}

/* ---- input map: SDL scancode names ---- */

static int resolve_scancode(const char *name, void *user) {
    (void)user;
    SDL_Scancode sc = SDL_GetScancodeFromName(name);
    return sc == SDL_SCANCODE_UNKNOWN ? -1 : (int)sc;
}

static int load_input_map(const options *o, const char *model_path, const wm_model_info *info, input_map *m) {
    char err[2048], dir[PATH_MAX], path[PATH_MAX + 64];
    input_map_init(m);
    const char *used = NULL;
    int rc;
    if (o->input_map) {
        used = o->input_map;
        rc = input_map_load(m, used, info, resolve_scancode, NULL, 0, err, sizeof err);
    } else {
        wm_host_model_dir(model_path, dir, sizeof dir);
        snprintf(path, sizeof path, "%s/input.map", dir);
        if (!wm_host_is_file(path)) snprintf(path, sizeof path, "%s/%s.map", WM_INPUT_MAPS_DIR, info->name);
        if (wm_host_is_file(path)) {
            used = path;
            rc = input_map_load(m, used, info, resolve_scancode, NULL, 0, err, sizeof err);
        } else {
            /* the generic map: bindings to actions this model lacks are skipped */
            snprintf(path, sizeof path, "%s/default.map", WM_INPUT_MAPS_DIR);
            used = path;
            rc =
                wm_host_is_file(path) ? input_map_load(m, used, info, resolve_scancode, NULL, 1, err, sizeof err) : 1;
            if (!wm_host_is_file(path)) used = NULL;
        }
    }
    if (rc != 1) {
        fprintf(stderr, "%s: error: %s\n", g_prog, err);
        return 0;
    }
    const int added = input_map_add_defaults(m, info, resolve_scancode, NULL);
    if (!o->opts.quiet) {
        printf("%s: input map %s (%d bindings%s%s)\n", g_prog, used ? used : "(none)", m->n,
               added ? ", some added for actions the map leaves unbound" : "",
               o->print_map ? "" : "; --print-map lists them");
        if (m->n_skipped && o->opts.verbose)
            printf("%s: skipped %d bindings to actions model '%s' lacks: %s\n", g_prog, m->n_skipped,
                   info->name, m->skipped);
    }
    if (o->print_map) {
        for (int i = 0; i < m->n; i++) {
            const input_binding *b = &m->bindings[i];
            char src[96], dst[128];
            switch (b->source) {
            case INPUT_SOURCE_KEY:
                snprintf(src, sizeof src, "key \"%s\"", SDL_GetScancodeName((SDL_Scancode)b->code));
                break;
            case INPUT_SOURCE_PAD_BUTTON:
                snprintf(src, sizeof src, "pad %s", input_pad_button_name(b->code));
                break;
            case INPUT_SOURCE_PAD_AXIS:
                snprintf(src, sizeof src, "pad %s", input_pad_axis_name(b->code));
                break;
            case INPUT_SOURCE_MOUSE_MOTION: snprintf(src, sizeof src, "mouse"); break;
            default:
                snprintf(src, sizeof src, "mouse %s",
                         b->code == 1   ? "left"
                         : b->code == 2 ? "middle"
                                        : "right");
            }
            switch (b->target) {
            case INPUT_TARGET_BUTTON:
                snprintf(dst, sizeof dst, "button %s", info->button_names[b->index]);
                break;
            case INPUT_TARGET_AXIS:
                snprintf(dst, sizeof dst, "axis %s %g", info->axis_names[b->index], b->scale);
                break;
            case INPUT_TARGET_MOUSE: snprintf(dst, sizeof dst, "mouse %g %g", b->scale, b->scale_y); break;
            default:
                snprintf(dst, sizeof dst, "mouse %s %g", b->target == INPUT_TARGET_MOUSE_X ? "x" : "y",
                         b->scale);
            }
            printf("  %-24s = %s%s\n", src, dst, b->line ? "" : "   # default");
        }
    }
    return 1;
}

/* ---- the shared state of the two threads ---- */

typedef struct app {
    options o;
    player pl; /* generator thread only, once it runs */
    int replay_mode;
    timeline replay;
    SDL_mutex *mu;
    SDL_cond *cv;
    SDL_Thread *thread;
    /* frames generated, not yet shown */
    uint8_t *ring;
    int64_t *ring_index;
    int ring_cap, ring_head, ring_len;
    /* input (main thread writes, generator takes one action per chunk) */
    input_map map;
    double pending_input_ms; /* time of the first input change not yet taken; < 0: none */
    /* commands */
    int quit, paused, want_reset, want_save, want_load, want_record, want_prompt;
    atomic_int abort_now; /* read by the plugin's abort callback, without the lock */
    int slot;
    char prompt_text[512];
    /* accelerations: the main thread asks (want_accel, accel_req), the generator applies them between
     * chunks (a session is used by one thread at a time) and reports what is in effect (accel_cur) */
    int want_accel;
    wm_accel_params accel_req, accel_cur;
    char accel_what[64]; /* what the last request switched, for the notice */
    /* generator status for the HUD */
    wm_stats stats;
    int64_t gen_frame;
    int64_t gen_total; /* frames generated over all resets and loads */
    double lat_event_ms, lat_gen_ms, lat_show_ms;
    int64_t lat_frame; /* first frame generated with the input of lat_event_ms; -1 when shown */
    int recording;
    char rec_path[PATH_MAX];
    double rec_start_ms;
    char cur_prompt[512];
    int replay_done;
    int64_t replay_checked, replay_mismatches, replay_first_bad;
    int failed;
    char error[2048];
    char toast[512];
    double toast_until;
    /* state slots (generator thread); with them the frames that were queued when saving */
    player_slot slots[N_SLOTS];
    uint8_t *slot_ring[N_SLOTS];
    int64_t *slot_ring_index[N_SLOTS];
    int slot_ring_len[N_SLOTS];
} app;

/* mu held */
static void set_toast(app *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_toast(app *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->toast, sizeof a->toast, fmt, ap);
    va_end(ap);
    a->toast_until = now_ms() + 2500;
    if (!a->o.opts.quiet) printf("%s: %s\n", g_prog, a->toast);
}

/* mu held, main thread: switches one acceleration module (0 TempCache, 1 AnnSA, 2 AnnCA; -1: all on,
 * or all off when all are on) in the settings the generator applies before its next chunk. Requests
 * made before it gets to them add up. */
static void toggle_accel(app *a, int module) {
    static const char *const NAMES[3] = {"TempCache", "AnnSA", "AnnCA"};
    wm_accel_params r = a->want_accel ? a->accel_req : a->accel_cur;
    int *const on[3] = {&r.tempcache, &r.annsa, &r.annca};
    if (module < 0) {
        const int all = !(r.tempcache && r.annsa && r.annca);
        r.tempcache = r.annsa = r.annca = all;
        snprintf(a->accel_what, sizeof a->accel_what, "all accelerations %s", all ? "on" : "off");
    } else {
        *on[module] = !*on[module];
        snprintf(a->accel_what, sizeof a->accel_what, "%s %s", NAMES[module], *on[module] ? "on" : "off");
    }
    a->accel_req = r;
    a->want_accel = 1;
}

static void timestamp_name(char *buf, size_t size, const char *dir, const char *suffix) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(buf, size, "%s/wm-play-%s%s", dir, stamp, suffix);
}

/* mu held; runs the commands queued by the main thread. The session calls are quick next to a chunk,
 * so they run under the lock, which keeps the ring and the session in step. */
static void run_commands(app *a) {
    player *p = &a->pl;
    if (a->want_reset) {
        a->want_reset = 0;
        const int was_rec = player_recording(p);
        if (player_reset(p)) {
            a->ring_len = 0;
            a->lat_frame = -1; /* frame indices start again */
            input_map_clear_pending(&a->map);
            set_toast(a, "reset to frame 0%s", was_rec ? " (recording stopped)" : "");
        } else {
            set_toast(a, "reset failed: %s", p->err);
        }
    }
    if (a->want_prompt) {
        a->want_prompt = 0;
        if (player_set_prompt(p, TIMELINE_PROMPT_TEXT, a->prompt_text))
            set_toast(a, "prompt: %s", a->prompt_text);
        else
            set_toast(a, "prompt failed: %s", p->err);
    }
    if (a->want_accel) {
        a->want_accel = 0;
        if (player_set_accel(p, &a->accel_req)) {
            char desc[256];
            wm_accel_describe(&p->accel, desc, sizeof desc);
            set_toast(a, "%s from frame %" PRId64 ": %s", a->accel_what, player_frame(p), desc);
        } else {
            set_toast(a, "%s refused: %s", a->accel_what, p->err);
        }
    }
    if (a->want_save) {
        a->want_save = 0;
        const int s = a->slot;
        if (!player_slot_save(p, &a->slots[s])) {
            set_toast(a, "save failed: %s", p->err);
        } else {
            /* keep the frames already generated but not yet shown, so that a load continues seamlessly */
            free(a->slot_ring[s]);
            free(a->slot_ring_index[s]);
            a->slot_ring[s] = malloc(p->frame_bytes * (size_t)(a->ring_len ? a->ring_len : 1));
            a->slot_ring_index[s] = malloc(sizeof(int64_t) * (size_t)(a->ring_len ? a->ring_len : 1));
            a->slot_ring_len[s] = 0;
            if (a->slot_ring[s] && a->slot_ring_index[s]) {
                for (int k = 0; k < a->ring_len; k++) {
                    const int at = (a->ring_head + k) % a->ring_cap;
                    memcpy(a->slot_ring[s] + (size_t)k * p->frame_bytes,
                           a->ring + (size_t)at * p->frame_bytes, p->frame_bytes);
                    a->slot_ring_index[s][k] = a->ring_index[at];
                }
                a->slot_ring_len[s] = a->ring_len;
            }
            char where[PATH_MAX + 64] = "";
            if (a->o.state_dir) {
                char base[PATH_MAX];
                snprintf(base, sizeof base, "%s/slot%d", a->o.state_dir, s);
                if (player_slot_write(p, &a->slots[s], base))
                    snprintf(where, sizeof where, " and %s.wmstate", base);
                else
                    snprintf(where, sizeof where, " (file: %s)", p->err);
            }
            set_toast(a, "saved slot %d at frame %" PRId64 " (%.1f MB)%s", s,
                      a->slot_ring_len[s] ? a->slot_ring_index[s][0] : player_frame(p),
                      a->slots[s].size / 1048576.0, where);
        }
    }
    if (a->want_load) {
        a->want_load = 0;
        const int s = a->slot;
        const int was_rec = player_recording(p);
        int from_file = 0;
        if (!a->slots[s].used && a->o.state_dir) {
            char base[PATH_MAX];
            snprintf(base, sizeof base, "%s/slot%d", a->o.state_dir, s);
            if (!player_slot_read(p, &a->slots[s], base)) {
                set_toast(a, "load failed: %s", p->err);
                return;
            }
            from_file = 1;
        }
        if (!a->slots[s].used) {
            set_toast(a, "slot %d is empty (F5 saves)", s);
        } else if (!player_slot_load(p, &a->slots[s])) {
            set_toast(a, "load failed: %s", p->err);
        } else {
            a->ring_head = 0;
            a->ring_len = 0;
            a->lat_frame = -1;
            input_map_clear_pending(&a->map);
            if (!from_file) {
                for (int k = 0; k < a->slot_ring_len[s] && k < a->ring_cap; k++) {
                    memcpy(a->ring + (size_t)k * p->frame_bytes, a->slot_ring[s] + (size_t)k * p->frame_bytes,
                           p->frame_bytes);
                    a->ring_index[k] = a->slot_ring_index[s][k];
                    a->ring_len++;
                }
            }
            snprintf(a->cur_prompt, sizeof a->cur_prompt, "%s", p->prompt ? p->prompt : "");
            set_toast(a, "loaded slot %d%s%s", s, from_file ? " from file" : "",
                      was_rec ? " (recording stopped)" : "");
        }
    }
    if (a->want_record) {
        a->want_record = 0;
        if (player_recording(p)) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s", p->rec_path);
            const int64_t n = p->rec.n_hashes;
            if (player_record_stop(p))
                set_toast(a, "recorded %" PRId64 " frames: %s (+ .json)", n, path);
            else
                set_toast(a, "recording failed: %s", p->err);
        } else {
            char path[PATH_MAX];
            if (a->o.record && !a->recording && a->rec_path[0] == 0)
                snprintf(path, sizeof path, "%s", a->o.record);
            else
                timestamp_name(path, sizeof path, a->o.out_dir, video_writer_have_ffmpeg() ? ".mp4" : ".y4m");
            if (player_record_start(p, path)) {
                set_toast(a, "recording to %s", path);
                a->rec_start_ms = now_ms();
            } else {
                set_toast(a, "cannot record: %s", p->err);
            }
        }
    }
    a->recording = player_recording(p);
    if (a->recording) snprintf(a->rec_path, sizeof a->rec_path, "%s", p->rec_path);
    a->stats = p->stats;
    a->gen_frame = player_frame(p);
    a->accel_cur = p->accel;
}

static int generator_main(void *user) {
    app *a = user;
    player *p = &a->pl;
    const double frame_ms = 1000.0 / a->pl.info.fps;
    wm_action act;
    SDL_LockMutex(a->mu);
    while (!a->quit) {
        run_commands(a);
        const int n = player_next_chunk_frames(p);
        const int64_t first = player_frame(p);
        if (a->replay_mode && first >= a->replay.first_frame + a->replay.n_hashes) {
            if (!a->replay_done) {
                a->replay_done = 1;
                if (player_recording(p)) player_record_stop(p);
            }
            a->recording = player_recording(p);
        }
        /* just in time: start the next chunk when the queued frames last about one chunk's compute,
         * so input is sampled as late as possible (low latency) without running dry */
        const double queued_ms = a->ring_len * frame_ms;
        const int seeking = a->replay_mode && first < a->replay.first_frame;
        const int go = !a->paused && !a->failed && !a->replay_done && a->ring_cap - a->ring_len >= n &&
                       (seeking || a->ring_len == 0 || queued_ms <= 1.25 * a->stats.last_chunk_ms + frame_ms);
        if (!go) {
            SDL_CondWaitTimeout(a->cv, a->mu, 10);
            continue;
        }
        if (a->replay_mode && a->o.record && !player_recording(p) && first == a->replay.first_frame &&
            a->rec_path[0] == 0)
            a->want_record = 1, run_commands(a);
        double ev = -1;
        if (!a->replay_mode) {
            input_map_take_action(&a->map, &p->info, n, &act);
            ev = a->pending_input_ms;
            a->pending_input_ms = -1;
        }
        SDL_UnlockMutex(a->mu);
        const int ok = player_chunk(p, a->replay_mode ? NULL : &act);
        SDL_LockMutex(a->mu);
        if (!ok) {
            if (a->quit) break; /* the chunk was aborted to quit quickly */
            a->failed = 1;
            snprintf(a->error, sizeof a->error, "%s", p->err);
            continue;
        }
        if (!(a->replay_mode && p->chunk_first < a->replay.first_frame)) { /* seeking frames are not shown */
            for (int k = 0; k < p->chunk_frames; k++) {
                const int at = (a->ring_head + a->ring_len) % a->ring_cap;
                memcpy(a->ring + (size_t)at * p->frame_bytes, p->chunk_rgb + (size_t)k * p->frame_bytes,
                       p->frame_bytes);
                a->ring_index[at] = p->chunk_first + k;
                a->ring_len++;
            }
        }
        if (ev >= 0) {
            a->lat_event_ms = ev;
            a->lat_gen_ms = now_ms() - ev;
            a->lat_frame = p->chunk_first;
        }
        a->stats = p->stats;
        a->gen_frame = player_frame(p);
        a->gen_total += p->chunk_frames;
        a->replay_checked = p->replay_checked;
        a->replay_mismatches = p->replay_mismatches;
        a->replay_first_bad = p->replay_first_bad;
        a->recording = player_recording(p);
        if (a->replay_mode) snprintf(a->cur_prompt, sizeof a->cur_prompt, "%s", p->prompt ? p->prompt : "");
        if (!timeline_accel_equal(&a->accel_cur, &p->accel)) { /* a replay switched them */
            char desc[256];
            wm_accel_describe(&p->accel, desc, sizeof desc);
            set_toast(a, "accelerations of the recording from frame %" PRId64 ": %s", p->chunk_first, desc);
            a->accel_cur = p->accel;
        }
    }
    if (player_recording(p) && !player_record_stop(p)) {
        a->failed = 1;
        snprintf(a->error, sizeof a->error, "%s", p->err);
    }
    SDL_UnlockMutex(a->mu);
    return 0;
}

/* ---- drawing ---- */

typedef struct hud {
    SDL_Texture *tex;
    int tex_w, tex_h;
    uint32_t *pixels;
} hud;

/* Draws text lines on a translucent panel at (x, y) in window pixels, scaled by `scale`. */
static void draw_panel(SDL_Renderer *r, hud *h, const char *text, int x, int y, int scale, uint32_t color) {
    int w, ht;
    font_measure(text, &w, &ht);
    w += 8;
    ht += 6;
    if (w > h->tex_w || ht > h->tex_h || !h->tex) {
        if (h->tex) SDL_DestroyTexture(h->tex);
        h->tex_w = w > h->tex_w ? w : h->tex_w;
        h->tex_h = ht > h->tex_h ? ht : h->tex_h;
        h->tex =
            SDL_CreateTexture(r, SDL_PIXELFORMAT_ARGB8888, SDL_TEXTUREACCESS_STREAMING, h->tex_w, h->tex_h);
        free(h->pixels);
        h->pixels = malloc(sizeof(uint32_t) * (size_t)h->tex_w * h->tex_h);
        if (!h->tex || !h->pixels) return;
        SDL_SetTextureBlendMode(h->tex, SDL_BLENDMODE_BLEND);
        SDL_SetTextureScaleMode(h->tex, SDL_ScaleModeNearest);
    }
    for (int i = 0; i < h->tex_w * h->tex_h; i++) h->pixels[i] = 0;
    for (int yy = 0; yy < ht; yy++)
        for (int xx = 0; xx < w; xx++) h->pixels[yy * h->tex_w + xx] = 0xB0000000u; /* translucent black */
    font_draw(h->pixels, w, ht, h->tex_w, 4, 4, text, color);
    SDL_UpdateTexture(h->tex, NULL, h->pixels, h->tex_w * 4);
    SDL_Rect src = {0, 0, w, ht}, dst = {x, y, w * scale, ht * scale};
    SDL_RenderCopy(r, h->tex, &src, &dst);
}

/* mu held: the HUD's acceleration lines (after a '\n'): per module its state (and the state asked for
 * when the generator has not applied it yet), then what the last chunk did. Returns the length. */
static size_t hud_accel(const app *a, char *buf, size_t size) {
    const wm_stats *s = &a->stats;
    const wm_accel_params *c = &a->accel_cur, *r = a->want_accel ? &a->accel_req : &a->accel_cur;
    const int cur[3] = {c->tempcache, c->annsa, c->annca}, req[3] = {r->tempcache, r->annsa, r->annca};
    static const char *const NAMES[3] = {"TempCache", "AnnSA    ", "AnnCA    "};
    size_t len = 0;
    for (int m = 0; m < 3 && len < size; m++) {
        len += (size_t)snprintf(buf + len, size - len, "\n%s %-3s (Alt+%d)", NAMES[m], cur[m] ? "ON" : "off",
                                m + 1);
        if (req[m] != cur[m] && len < size)
            len += (size_t)snprintf(buf + len, size - len, " -> %s next chunk", req[m] ? "ON" : "off");
        if (!cur[m] || len >= size) continue;
        if (m == 0) {
            len += (size_t)snprintf(buf + len, size - len,
                                    "  merges %" PRId64 "  cache %" PRId64 " tokens (all layers) %.2f MB",
                                    s->tc_merges, s->cache_tokens_total, s->cache_bytes / 1048576.0);
        } else {
            const double density = m == 1 ? s->sa_density : s->ca_density;
            const double recall = m == 1 ? s->sa_recall : s->ca_recall;
            len += (size_t)snprintf(buf + len, size - len, "  density %.3f", density);
            if (recall >= 0 && len < size)
                len += (size_t)snprintf(buf + len, size - len, "  recall %.3f", recall);
        }
    }
    return len < size ? len : size - 1;
}

/* The largest rectangle of the frame's aspect that fits the output, centred (letterbox / pillarbox). */
static SDL_Rect letterbox(int out_w, int out_h, int w, int h) {
    SDL_Rect d;
    if ((long long)out_w * h > (long long)out_h * w) { /* wider window: bars left and right */
        d.h = out_h;
        d.w = (int)((long long)out_h * w / h);
    } else {
        d.w = out_w;
        d.h = (int)((long long)out_w * h / w);
    }
    d.x = (out_w - d.w) / 2;
    d.y = (out_h - d.h) / 2;
    return d;
}

static void save_screenshot(app *a, const uint8_t *rgb, int64_t index) {
    char path[PATH_MAX], err[1024], suffix[64];
    snprintf(suffix, sizeof suffix, "-f%" PRId64 ".png", index);
    timestamp_name(path, sizeof path, a->o.out_dir, suffix);
    SDL_LockMutex(a->mu);
    if (png_save_rgb(path, rgb, a->pl.info.width, a->pl.info.height, (size_t)a->pl.info.width * 3, err,
                     sizeof err))
        set_toast(a, "screenshot %s", path);
    else
        set_toast(a, "screenshot failed: %s", err);
    SDL_UnlockMutex(a->mu);
}

/* ---- the window ---- */

static int run_window(app *a) {
    const wm_model_info *info = &a->pl.info;
    const options *o = &a->o;
    if (SDL_Init(SDL_INIT_VIDEO | SDL_INIT_GAMECONTROLLER | SDL_INIT_EVENTS) != 0)
        return wm_cli_runtime_error("SDL_Init: %s (no display? --headless runs without a window)", SDL_GetError());
    /* without a display SDL falls back to an invisible window: refuse unless asked for explicitly */
    const char *drv = SDL_GetCurrentVideoDriver(), *asked = getenv("SDL_VIDEODRIVER");
    if (drv && (!strcmp(drv, "offscreen") || !strcmp(drv, "dummy")) && !(asked && *asked)) {
        SDL_Quit();
        return wm_cli_runtime_error(
            "no display to open a window on (DISPLAY / WAYLAND_DISPLAY unset): use --headless, "
            "or SDL_VIDEODRIVER=%s to play without seeing anything",
            drv);
    }
    char db[PATH_MAX];
    snprintf(db, sizeof db, "%s/gamecontrollerdb.txt", WM_INPUT_MAPS_DIR);
    const int n_maps = wm_host_is_file(db) ? SDL_GameControllerAddMappingsFromFile(db) : 0;
    if (!o->opts.quiet)
        printf("%s: gamepad mappings: %d from %s%s\n", g_prog, n_maps < 0 ? 0 : n_maps, db,
               n_maps < 0 ? " (unreadable)" : "");
    SDL_SetHint(SDL_HINT_RENDER_SCALE_QUALITY, o->nearest ? "0" : "1");
    int scale = o->scale;
    if (scale <= 0) {
        scale = (int)lround(768.0 / info->width);
        if (scale < 1) scale = 1;
    }
    char title[256];
    snprintf(title, sizeof title, "wm-play - %s (%s)", info->name, wm_host_backend_name(info->backend));
    SDL_Window *win = SDL_CreateWindow(title, SDL_WINDOWPOS_CENTERED, SDL_WINDOWPOS_CENTERED,
                                       info->width * scale, info->height * scale,
                                       SDL_WINDOW_RESIZABLE | SDL_WINDOW_ALLOW_HIGHDPI |
                                           (o->fullscreen ? SDL_WINDOW_FULLSCREEN_DESKTOP : 0));
    if (!win) return wm_cli_runtime_error("SDL_CreateWindow: %s", SDL_GetError());
    SDL_Renderer *ren = SDL_CreateRenderer(win, -1, 0);
    if (!ren) return wm_cli_runtime_error("SDL_CreateRenderer: %s", SDL_GetError());
    SDL_Texture *tex =
        SDL_CreateTexture(ren, SDL_PIXELFORMAT_RGB24, SDL_TEXTUREACCESS_STREAMING, info->width, info->height);
    if (!tex) return wm_cli_runtime_error("SDL_CreateTexture: %s", SDL_GetError());
    SDL_StopTextInput(); /* on by default on desktops; only the prompt box wants it */
    if (o->opts.verbose) {
        SDL_RendererInfo ri;
        SDL_GetRendererInfo(ren, &ri);
        printf("%s: SDL video %s, renderer %s\n", g_prog, SDL_GetCurrentVideoDriver(), ri.name);
    }

    uint8_t *shown = calloc(a->pl.frame_bytes, 1);
    if (!shown) return wm_cli_runtime_error("out of memory");
    /* generation starts once the window is up (everything above may fail without a thread to stop) */
    a->thread = SDL_CreateThread(generator_main, "wm-generator", a);
    if (!a->thread) return wm_cli_runtime_error("SDL_CreateThread: %s", SDL_GetError());
    int64_t shown_index = -1, n_shown = 0;
    hud h = {0};
    int hud_on = !o->no_hud, typing = 0, mouse_grab = 0, running = 1, ret = 0, fullscreen = o->fullscreen;
    char typed[512] = "";
    SDL_GameController *pads[MAX_PADS] = {0};
    char *presets[MAX_PRESETS];
    int n_presets = 0, preset = 0;
    if (info->prompt_kind == WM_PROMPT_TEXT) {
        presets[n_presets++] = strdup(a->pl.prompt ? a->pl.prompt : "");
        char *more[MAX_PRESETS];
        int n_more = load_presets(o->opts.model, more);
        for (int i = 0; i < n_more; i++) {
            if (n_presets < MAX_PRESETS && strcmp(more[i], presets[0]))
                presets[n_presets++] = more[i];
            else
                free(more[i]);
        }
    }
    const double period = 1000.0 / info->fps;
    double next_due = now_ms(), fps_t0 = now_ms(), hud_refresh = 0, stall_since = -1;
    int64_t fps_n = 0, gen_fps_frames0 = 0;
    double shown_fps = 0, gen_fps = 0;

    while (running) {
        double t = now_ms();
        int timeout = (int)(next_due - t);
        if (timeout < 0) timeout = 0;
        if (timeout > 8) timeout = 8;
        SDL_Event ev;
        int have = SDL_WaitEventTimeout(&ev, timeout);
        while (have) {
            SDL_LockMutex(a->mu);
            int used = 0;
            switch (ev.type) {
            case SDL_QUIT: running = 0; break;
            case SDL_WINDOWEVENT:
                if (ev.window.event == SDL_WINDOWEVENT_FOCUS_LOST) {
                    input_map_release_all(&a->map);
                    used = 1;
                }
                hud_refresh = 0;
                break;
            case SDL_TEXTINPUT:
                if (typing && strlen(typed) + strlen(ev.text.text) < sizeof typed)
                    strcat(typed, ev.text.text);
                break;
            case SDL_KEYDOWN: {
                const SDL_Keycode k = ev.key.keysym.sym;
                if (typing) {
                    if (k == SDLK_RETURN || k == SDLK_KP_ENTER) {
                        snprintf(a->prompt_text, sizeof a->prompt_text, "%s", typed);
                        a->want_prompt = 1;
                        snprintf(a->cur_prompt, sizeof a->cur_prompt, "%s", typed);
                        typing = 0;
                        SDL_StopTextInput();
                    } else if (k == SDLK_ESCAPE) {
                        typing = 0;
                        SDL_StopTextInput();
                    } else if (k == SDLK_BACKSPACE && typed[0]) {
                        size_t len = strlen(typed);
                        do len--; /* drop a whole UTF-8 sequence */
                        while (len > 0 && (typed[len] & 0xC0) == 0x80);
                        typed[len] = 0;
                    }
                    break;
                }
                if (ev.key.repeat) break;
                const int ctrl = (ev.key.keysym.mod & KMOD_CTRL) != 0;
                const int alt = (ev.key.keysym.mod & KMOD_ALT) != 0;
                const SDL_Scancode sc = ev.key.keysym.scancode; /* by position: any layout */
                const int live = !a->replay_mode;
                if (alt && (sc == SDL_SCANCODE_1 || sc == SDL_SCANCODE_2 || sc == SDL_SCANCODE_3 ||
                            sc == SDL_SCANCODE_0)) {
                    if (!live)
                        set_toast(a, "replaying: the recording sets the accelerations");
                    else
                        toggle_accel(a, sc == SDL_SCANCODE_0 ? -1 : (int)(sc - SDL_SCANCODE_1));
                } else if (k == SDLK_ESCAPE) {
                    if (mouse_grab) {
                        SDL_SetRelativeMouseMode(SDL_FALSE);
                        mouse_grab = 0;
                    } else {
                        running = 0;
                    }
                } else if (k == SDLK_q && ctrl) {
                    running = 0;
                } else if (k == SDLK_F1) {
                    hud_on = !hud_on;
                } else if (k == SDLK_F2 || k == SDLK_PAUSE) {
                    a->paused = !a->paused;
                    set_toast(a, a->paused ? "paused" : "resumed");
                } else if (k == SDLK_F11) {
                    fullscreen = !fullscreen;
                    SDL_SetWindowFullscreen(win, fullscreen ? SDL_WINDOW_FULLSCREEN_DESKTOP : 0);
                } else if (k == SDLK_F12) {
                    if (shown_index >= 0) {
                        SDL_UnlockMutex(a->mu);
                        save_screenshot(a, shown, shown_index);
                        SDL_LockMutex(a->mu);
                    }
                } else if (k == SDLK_F7 || k == SDLK_F8) {
                    a->slot = (a->slot + (k == SDLK_F8 ? 1 : N_SLOTS - 1)) % N_SLOTS;
                    set_toast(a, "slot %d%s", a->slot, a->slots[a->slot].used ? " (saved)" : "");
                } else if (k == SDLK_F10) {
                    a->want_record = 1;
                } else if (k == SDLK_F3 || k == SDLK_F4 || k == SDLK_F5 || k == SDLK_F6 || k == SDLK_F9) {
                    if (!live) {
                        set_toast(a, "replaying: only F1 F2 F10 F11 F12 and Esc work");
                    } else if (k == SDLK_F3) {
                        a->want_reset = 1;
                    } else if (k == SDLK_F5) {
                        a->want_save = 1;
                    } else if (k == SDLK_F9) {
                        a->want_load = 1;
                    } else if (info->prompt_kind != WM_PROMPT_TEXT) {
                        set_toast(a, "model '%s' takes prompt embeddings: no text prompts", info->name);
                    } else if (k == SDLK_F4) {
                        if (n_presets < 2) {
                            set_toast(a, "no prompt presets (\"_prompts\" in config.json); F6 types one");
                        } else {
                            preset = (preset + 1) % n_presets;
                            snprintf(a->prompt_text, sizeof a->prompt_text, "%s", presets[preset]);
                            snprintf(a->cur_prompt, sizeof a->cur_prompt, "%s", presets[preset]);
                            a->want_prompt = 1;
                        }
                    } else {
                        typing = 1;
                        typed[0] = 0;
                        input_map_release_all(&a->map);
                        SDL_StartTextInput();
                    }
                } else if (live) {
                    used = input_map_digital(&a->map, INPUT_SOURCE_KEY, ev.key.keysym.scancode, 1);
                }
                break;
            }
            case SDL_KEYUP:
                if (!typing && !a->replay_mode)
                    used = input_map_digital(&a->map, INPUT_SOURCE_KEY, ev.key.keysym.scancode, 0);
                break;
            case SDL_MOUSEBUTTONDOWN:
                if (info->has_mouse && !mouse_grab && !a->replay_mode) {
                    SDL_SetRelativeMouseMode(SDL_TRUE); /* mouse-look: Esc releases */
                    mouse_grab = 1;
                } else if (!a->replay_mode) {
                    used = input_map_digital(&a->map, INPUT_SOURCE_MOUSE_BUTTON, ev.button.button, 1);
                }
                break;
            case SDL_MOUSEBUTTONUP:
                if (!a->replay_mode)
                    used = input_map_digital(&a->map, INPUT_SOURCE_MOUSE_BUTTON, ev.button.button, 0);
                break;
            case SDL_MOUSEMOTION:
                if (mouse_grab && !a->replay_mode)
                    used = input_map_mouse_motion(&a->map, (float)ev.motion.xrel, (float)ev.motion.yrel);
                break;
            case SDL_CONTROLLERDEVICEADDED:
                for (int i = 0; i < MAX_PADS; i++)
                    if (!pads[i]) {
                        pads[i] = SDL_GameControllerOpen(ev.cdevice.which);
                        if (pads[i]) set_toast(a, "gamepad connected: %s", SDL_GameControllerName(pads[i]));
                        break;
                    }
                break;
            case SDL_CONTROLLERDEVICEREMOVED:
                for (int i = 0; i < MAX_PADS; i++)
                    if (pads[i] &&
                        SDL_JoystickInstanceID(SDL_GameControllerGetJoystick(pads[i])) == ev.cdevice.which) {
                        set_toast(a, "gamepad disconnected: %s", SDL_GameControllerName(pads[i]));
                        SDL_GameControllerClose(pads[i]);
                        pads[i] = NULL;
                        input_map_release_all(&a->map);
                        used = 1;
                    }
                break;
            case SDL_CONTROLLERBUTTONDOWN:
            case SDL_CONTROLLERBUTTONUP:
                if (!a->replay_mode)
                    used = input_map_digital(&a->map, INPUT_SOURCE_PAD_BUTTON, ev.cbutton.button,
                                             ev.type == SDL_CONTROLLERBUTTONDOWN);
                break;
            case SDL_CONTROLLERAXISMOTION:
                if (!a->replay_mode)
                    used = input_map_pad_axis(&a->map, ev.caxis.axis, ev.caxis.value / 32767.0f);
                break;
            default: break;
            }
            if (used && a->pending_input_ms < 0) a->pending_input_ms = now_ms();
            SDL_CondSignal(a->cv);
            SDL_UnlockMutex(a->mu);
            have = SDL_PollEvent(&ev);
        }

        /* the next frame, paced at the model's fps */
        int dirty = 0;
        t = now_ms();
        SDL_LockMutex(a->mu);
        if (t >= next_due) {
            if (a->ring_len > 0 && !a->paused) {
                memcpy(shown, a->ring + (size_t)a->ring_head * a->pl.frame_bytes, a->pl.frame_bytes);
                shown_index = a->ring_index[a->ring_head];
                a->ring_head = (a->ring_head + 1) % a->ring_cap;
                a->ring_len--;
                if (a->lat_frame >= 0 && shown_index >= a->lat_frame) {
                    a->lat_show_ms = t - a->lat_event_ms;
                    a->lat_frame = -1;
                }
                SDL_CondSignal(a->cv);
                n_shown++;
                fps_n++;
                dirty = 1;
                /* stay on the fps grid; after a stall, restart it instead of rushing to catch up */
                next_due = (stall_since >= 0 || t - next_due > period) ? t + period : next_due + period;
                stall_since = -1;
            } else {
                if (stall_since < 0 && !a->paused) stall_since = t;
                next_due = t + 3; /* poll gently: on the CPU backend this thread competes with generation */
            }
        }
        const int failed = a->failed;
        const int replay_over = a->replay_mode && a->replay_done && a->ring_len == 0;
        SDL_UnlockMutex(a->mu);
        if (dirty) SDL_UpdateTexture(tex, NULL, shown, info->width * 3);
        if (failed) {
            SDL_LockMutex(a->mu);
            ret = wm_cli_runtime_error("%s", a->error);
            SDL_UnlockMutex(a->mu);
            break;
        }
        if (t - fps_t0 >= 1000) {
            SDL_LockMutex(a->mu);
            shown_fps = fps_n * 1000.0 / (t - fps_t0);
            gen_fps = (a->gen_total - gen_fps_frames0) * 1000.0 / (t - fps_t0);
            gen_fps_frames0 = a->gen_total;
            SDL_UnlockMutex(a->mu);
            fps_t0 = t;
            fps_n = 0;
        }
        if (t >= hud_refresh) dirty = 1;
        if (dirty) {
            hud_refresh = t + 250;
            int ow, oh;
            SDL_GetRendererOutputSize(ren, &ow, &oh);
            SDL_SetRenderDrawColor(ren, 0, 0, 0, 255);
            SDL_RenderClear(ren);
            SDL_Rect dst = letterbox(ow, oh, info->width, info->height);
            if (shown_index >= 0) SDL_RenderCopy(ren, tex, NULL, &dst);
            char text[2048];
            size_t len = 0;
            SDL_LockMutex(a->mu);
            if (hud_on) {
                const wm_stats *s = &a->stats;
                len += (size_t)snprintf(
                    text + len, sizeof text - len, "%s %dx%d @ %g fps   backend %s%s%.40s%s\n", info->name,
                    info->width, info->height, info->fps, wm_host_backend_name(info->backend),
                    info->device_name ? " (" : "", info->device_name ? info->device_name : "",
                    info->device_name ? ")" : "");
                len += (size_t)snprintf(text + len, sizeof text - len,
                                        "fps %.1f shown / %.1f generated   queue %d\n", shown_fps, gen_fps,
                                        a->ring_len);
                const float guidance = wm_host_action_guidance(info, o->opts.action_guidance);
                len += (size_t)snprintf(text + len, sizeof text - len,
                                        "chunk %.1f ms (DiT %.1f + decode %.1f)", s->last_chunk_ms,
                                        s->last_dit_ms, s->last_decode_ms);
                if (guidance > 0) /* docs/MODEL.md section 2: one more forward per guided step */
                    len += (size_t)snprintf(text + len, sizeof text - len, "   action guidance %g (%d of %d steps)",
                                            guidance, info->action_guidance_steps, info->denoising_steps);
                len += (size_t)snprintf(text + len, sizeof text - len, "\n");
                len += (size_t)snprintf(text + len, sizeof text - len,
                                        "input latency %.0f ms to generated, %.0f ms to shown\n",
                                        a->lat_gen_ms, a->lat_show_ms);
                len += (size_t)snprintf(
                    text + len, sizeof text - len,
                    "frame %" PRId64 "   cache %.2f MB (%" PRId64 " tokens/layer)   %s mem %.0f MB\n",
                    shown_index < 0 ? 0 : shown_index, s->cache_bytes / 1048576.0, s->cache_tokens,
                    info->backend == WM_BACKEND_CUDA ? "GPU" : "engine", s->backend_bytes / 1048576.0);
                if (info->prompt_kind == WM_PROMPT_TEXT)
                    len += (size_t)snprintf(text + len, sizeof text - len, "prompt: %.60s\n", a->cur_prompt);
                len += (size_t)snprintf(text + len, sizeof text - len, "slot %d%s", a->slot,
                                        a->slots[a->slot].used ? " (saved)" : "");
                if (a->recording)
                    len += (size_t)snprintf(text + len, sizeof text - len, "   REC %.1f s",
                                            (t - a->rec_start_ms) / 1000.0);
                if (a->paused) len += (size_t)snprintf(text + len, sizeof text - len, "   PAUSED");
                if (info->has_mouse)
                    len += (size_t)snprintf(text + len, sizeof text - len, "   mouse %s",
                                            mouse_grab ? "captured (Esc)" : "free (click)");
                if (a->replay_mode)
                    len += (size_t)snprintf(text + len, sizeof text - len,
                                            "\nREPLAY %" PRId64 "/%" PRId64 " checked, %" PRId64 " differ",
                                            a->replay_checked, a->replay.n_hashes, a->replay_mismatches);
                len += hud_accel(a, text + len, sizeof text - len);
                len += (size_t)snprintf(
                    text + len, sizeof text - len,
                    "\nF1 HUD F2 pause F3 reset F4/F6 prompt F5/F9 save/load F10 rec F12 shot");
            }
            const int toast = t < a->toast_until;
            char toast_text[600];
            snprintf(toast_text, sizeof toast_text, "%s", a->toast);
            SDL_UnlockMutex(a->mu);
            /* the largest integer text scale (up to 3) at which the HUD still fits the window */
            int tw, th, ts = 3;
            font_measure(hud_on ? text : "", &tw, &th);
            while (ts > 1 && ((tw + 8) * ts > ow - 16 || (th + 6) * ts > oh / 2)) ts--;
            if (hud_on) draw_panel(ren, &h, text, 8, 8, ts, 0xFFFFFFFFu);
            if (typing) {
                char box[640];
                snprintf(box, sizeof box, "prompt> %s_   (Enter: apply, Esc: cancel)", typed);
                draw_panel(ren, &h, box, 8, oh - (FONT_LINE + 6) * ts - 8, ts, 0xFFFFFF80u);
            } else if (toast) {
                draw_panel(ren, &h, toast_text, 8, oh - (FONT_LINE + 6) * ts - 8, ts, 0xFF80FF80u);
            }
            SDL_RenderPresent(ren);
        }
        if (o->max_frames > 0 && n_shown >= o->max_frames) running = 0;
        if (replay_over) running = 0;
    }

    /* stop the generator first (aborting its chunk): it finishes the recording */
    atomic_store(&a->abort_now, 1);
    SDL_LockMutex(a->mu);
    a->quit = 1;
    SDL_CondSignal(a->cv);
    SDL_UnlockMutex(a->mu);
    SDL_WaitThread(a->thread, NULL);
    a->thread = NULL;
    if (a->failed && !ret) ret = wm_cli_runtime_error("%s", a->error);
    for (int i = 0; i < MAX_PADS; i++)
        if (pads[i]) SDL_GameControllerClose(pads[i]);
    for (int i = 0; i < n_presets; i++) free(presets[i]);
    if (h.tex) SDL_DestroyTexture(h.tex);
    free(h.pixels);
    free(shown);
    SDL_DestroyTexture(tex);
    SDL_DestroyRenderer(ren);
    SDL_DestroyWindow(win);
    SDL_Quit();
    if (!o->opts.quiet)
        printf("%s: %" PRId64 " frames shown, %" PRId64 " generated\n", g_prog, n_shown, a->gen_total);
    return ret;
}

/* ---- headless ---- */

static int on_abort(void *user) {
    app *a = user;
    return wm_host_interrupted() || atomic_load(&a->abort_now);
}

static void progress(const options *o, int64_t done, int64_t total, double chunk_ms, double elapsed_ms,
                     int final) {
    if (o->opts.quiet) return;
    const int tty = isatty(2);
    static int last_decile = -1;
    const int decile = total > 0 ? (int)(10 * done / total) : 10;
    if (!tty && !final && decile == last_decile) return;
    last_decile = decile;
    const double fps = elapsed_ms > 0 ? done * 1000.0 / elapsed_ms : 0;
    char bar[31];
    const int fill = total > 0 ? (int)(30 * done / total) : 30;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "%s[%s] %" PRId64 "/%" PRId64 " frames  chunk %.0f ms  %.2f fps  ETA %.0fs%s",
            tty ? "\r" : "", bar, done, total, chunk_ms, fps, fps > 0 ? (total - done) / fps : 0.0,
            tty ? "\033[K" : "\n");
    if (tty && final) fputc('\n', stderr);
}

static int run_headless(app *a) {
    player *p = &a->pl;
    const options *o = &a->o;
    timeline script;
    timeline_init(&script);
    int64_t end, rec_from = 0;
    if (a->replay_mode) {
        end = a->replay.first_frame + a->replay.n_hashes;
        rec_from = a->replay.first_frame;
        if (o->opts.frames > 0) end = a->replay.first_frame + o->opts.frames;
    } else {
        /* an action script, or neutral actions: a timeline without hashes */
        action_script s = {0};
        char err[2048];
        if (o->opts.actions && action_script_load(o->opts.actions, &p->info, &s, err, sizeof err) != 1)
            return wm_cli_runtime_error("%s", err);
        for (int i = 0; i < s.n; i++) timeline_push_action(&script, &s.actions[i]);
        action_script_free(&s);
        timeline_set_prompt(&script, 0, p->prompt_kind, p->prompt);
        end = o->opts.frames > 0 ? o->opts.frames : (script.n_actions > 0 ? script.n_actions : 48);
        p->replay = &script;
    }
    wm_host_catch_interrupt();
    int ret = 0;
    const double t0 = now_ms();
    progress(o, 0, end, 0, 0, 0);
    while (player_frame(p) < end) {
        if (wm_host_interrupted()) {
            fputc('\n', stderr);
            ret = wm_cli_runtime_error("interrupted at frame %" PRId64, player_frame(p));
            break;
        }
        if (o->record && !player_recording(p) && player_frame(p) == rec_from) {
            if (!player_record_start(p, o->record)) {
                ret = wm_cli_runtime_error("%s", p->err);
                break;
            }
        }
        if (!player_chunk(p, NULL)) {
            if (wm_host_interrupted()) fputc('\n', stderr);
            ret = wm_host_interrupted() ? wm_cli_runtime_error("interrupted at frame %" PRId64, player_frame(p))
                                : wm_cli_runtime_error("frame %" PRId64 ": %s", player_frame(p), p->err);
            break;
        }
        progress(o, player_frame(p) < end ? player_frame(p) : end, end, p->stats.last_chunk_ms, now_ms() - t0,
                 player_frame(p) >= end);
    }
    /* the last chunk may run past `end`: a recording keeps whole chunks, so its replay is exact */
    if (player_recording(p)) {
        const char *path = p->rec_path;
        const int64_t n = p->rec.n_hashes;
        char saved[PATH_MAX];
        snprintf(saved, sizeof saved, "%s", path);
        if (!player_record_stop(p)) {
            if (!ret) ret = wm_cli_runtime_error("%s", p->err);
        } else if (!o->opts.quiet) {
            fprintf(stderr, "%s: recorded %" PRId64 " frames to %s (+ .json)\n", g_prog, n, saved);
        }
    }
    if (!ret && a->replay_mode) {
        if (p->replay_mismatches) {
            fprintf(stderr,
                    "%s: replay differs from the recording: %" PRId64 " of %" PRId64
                    " frames, the first at frame %" PRId64 "\n",
                    g_prog, p->replay_mismatches, p->replay_checked, p->replay_first_bad);
            ret = EXIT_REPLAY_DIFFERS;
        } else if (!o->opts.quiet) {
            fprintf(stderr, "%s: replay: %" PRId64 "/%" PRId64 " frames bit-identical to the recording\n",
                    g_prog, p->replay_checked, a->replay.n_hashes);
        }
    }
    if (!a->replay_mode) p->replay = NULL;
    timeline_free(&script);
    return ret;
}

/* ---- main ---- */

/* Frees everything main allocated; returns `ret` (the exit code). */
static int finish(app *a, int ret) {
    for (int i = 0; i < N_SLOTS; i++) {
        player_slot_free(&a->slots[i]);
        free(a->slot_ring[i]);
        free(a->slot_ring_index[i]);
    }
    if (a->cv) SDL_DestroyCond(a->cv);
    if (a->mu) SDL_DestroyMutex(a->mu);
    free(a->ring);
    free(a->ring_index);
    input_map_free(&a->map);
    player_close(&a->pl);
    timeline_free(&a->replay);
    free(a);
    return ret;
}

int main(int argc, char **argv) {
    wm_cli_set_prog(g_prog);
    app *a = calloc(1, sizeof *a);
    if (!a) return EXIT_RUNTIME;
    int rc = parse_args(argc, argv, &a->o);
    if (rc) return finish(a, rc);
    options *o = &a->o;
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* a replay brings its own model, seed and backend */
    char err[4096];
    if (o->replay) {
        if (!timeline_read(&a->replay, o->replay, err, sizeof err))
            return finish(a, wm_cli_runtime_error("%s", err));
        a->replay_mode = 1;
        if (!o->opts.model) o->opts.model = a->replay.model;
        o->opts.random_weights = o->opts.random_weights || a->replay.random_weights;
        o->opts.weight_seed = a->replay.weight_seed;
        o->opts.seed = a->replay.seed;
        o->opts.action_guidance = a->replay.action_guidance;
        if (o->opts.backend == WM_BACKEND_AUTO && a->replay.backend) {
            const int b = wm_host_backend_parse(a->replay.backend);
            if (b > 0) o->opts.backend = b;
        }
    }
    char model_buf[PATH_MAX];
    if (!o->opts.model) {
        int random = 0;
        if (!wm_host_default_model(WM_ASSETS_DIR, model_buf, sizeof model_buf, &random))
            return finish(
                a, wm_cli_usage_error("no model: pass --model DIR (%s has neither game/ nor demo/config.json)",
                               WM_ASSETS_DIR));
        o->opts.model = model_buf;
        if (random && !o->opts.random_weights) {
            o->opts.random_weights = 1;
            if (!o->opts.quiet)
                printf("%s: no trained game in %s/game yet: playing the demo config with random weights "
                       "(%s)\n",
                       g_prog, WM_ASSETS_DIR, model_buf);
        }
    }

    /* the plugin, through SDL's loader; the ABI is checked before anything else is touched */
    const char *plugin = o->opts.plugin ? o->opts.plugin : getenv("WM_PLUGIN");
    if (!plugin || !*plugin) plugin = WM_DEFAULT_PLUGIN;
    void *so = SDL_LoadObject(plugin);
    if (!so) return finish(a, wm_cli_runtime_error("cannot load the plugin %s: %s", plugin, SDL_GetError()));
    const wm_api *api =
        wm_host_get_api((wm_get_api_fn)SDL_LoadFunction(so, WM_GET_API_SYMBOL), plugin, err, sizeof err);
    if (!api) return finish(a, wm_cli_runtime_error("%s", err));
    if (o->opts.verbose) printf("%s: plugin %s: %s\n", g_prog, plugin, api->build_info());

    /* the acceleration flags over the plugin's defaults; a replay takes its settings from the file */
    wm_session_params defaults;
    api->session_params_init(&defaults);
    wm_accel_params accel = defaults.accel;
    if (a->replay_mode && o->opts.n_accel > 0) {
        if (!o->opts.quiet)
            printf("%s: note: the acceleration flags are ignored: a replay applies the recording's\n",
                   g_prog);
    } else {
        wm_run_opts_apply_accel(&o->opts, &accel);
    }
    player_options po = {.model = o->opts.model,
                         .random_weights = o->opts.random_weights,
                         .weight_seed = o->opts.weight_seed,
                         .backend = o->opts.backend,
                         .threads = o->opts.threads,
                         .seed = o->opts.seed,
                         .action_guidance = o->opts.action_guidance,
                         .prompt = o->opts.prompt,
                         .prompt_embedding = o->opts.prompt_embedding,
                         .log = on_log,
                         .log_user_data = o,
                         .abort_cb = on_abort,
                         .abort_user_data = a,
                         .accel = &accel};
    if (a->replay_mode && a->replay.n_prompts > 0) { /* start with the recording's first prompt */
        const timeline_prompt *tp = &a->replay.prompts[0];
        po.prompt = tp->kind == TIMELINE_PROMPT_TEXT ? tp->text : NULL;
        po.prompt_embedding = tp->kind == TIMELINE_PROMPT_EMBEDDING ? tp->text : NULL;
    } else if (!o->opts.prompt) {
        char *presets[MAX_PRESETS];
        int n = load_presets(o->opts.model, presets);
        static char first[512];
        if (n > 0) {
            snprintf(first, sizeof first, "%s", presets[0]);
            po.prompt = first;
        }
        for (int i = 0; i < n; i++) free(presets[i]);
    }
    if (!player_open(&a->pl, api, &po)) return finish(a, wm_cli_runtime_error("%s", a->pl.err));
    const wm_model_info *info = &a->pl.info;
    if (!o->opts.quiet)
        printf("%s: %s %dx%d @ %g fps on %s%s%s%s%s, seed %" PRIu64 "%s%s%s\n", g_prog, info->name,
               info->width, info->height, info->fps, wm_host_backend_name(info->backend),
               info->device_name ? " (" : "", info->device_name ? info->device_name : "",
               info->device_name ? ")" : "", o->opts.random_weights ? " with random weights" : "", o->opts.seed,
               info->prompt_kind == WM_PROMPT_TEXT ? ", prompt \"" : "",
               info->prompt_kind == WM_PROMPT_TEXT ? (a->pl.prompt ? a->pl.prompt : "") : "",
               info->prompt_kind == WM_PROMPT_TEXT ? "\"" : "");
    a->accel_cur = a->pl.accel;
    if (!o->opts.quiet && !a->replay_mode) {
        char desc[256];
        wm_accel_describe(&a->pl.accel, desc, sizeof desc);
        printf("%s: accelerations: %s%s\n", g_prog, desc,
               o->headless ? "" : " (Alt+1/2/3 switch TempCache/AnnSA/AnnCA, Alt+0 all)");
    }
    if (a->replay_mode) {
        if (!timeline_bind(&a->replay, info, o->replay, err, sizeof err))
            return finish(a, wm_cli_runtime_error("%s", err));
        if (a->replay.width && (a->replay.width != info->width || a->replay.height != info->height))
            return finish(a, wm_cli_runtime_error("%s: recorded at %dx%d, the model makes %dx%d frames", o->replay,
                                           a->replay.width, a->replay.height, info->width, info->height));
        if (a->replay.backend && strcmp(a->replay.backend, wm_host_backend_name(info->backend)) && !o->opts.quiet)
            printf("%s: note: recorded on %s, replaying on %s: frames match bit for bit only on the same "
                   "backend\n",
                   g_prog, a->replay.backend, wm_host_backend_name(info->backend));
        a->pl.replay = &a->replay;
    }
    snprintf(a->cur_prompt, sizeof a->cur_prompt, "%s", a->pl.prompt ? a->pl.prompt : "");

    int ret;
    if (o->headless) {
        ret = run_headless(a);
    } else {
        if (!a->replay_mode && !load_input_map(o, o->opts.model, info, &a->map)) return finish(a, EXIT_RUNTIME);
        a->ring_cap = 3 * a->pl.max_chunk_frames;
        a->ring = malloc(a->pl.frame_bytes * (size_t)a->ring_cap);
        a->ring_index = malloc(sizeof(int64_t) * (size_t)a->ring_cap);
        a->mu = SDL_CreateMutex();
        a->cv = SDL_CreateCond();
        a->pending_input_ms = -1;
        a->lat_frame = -1;
        if (!a->ring || !a->ring_index || !a->mu || !a->cv) return finish(a, wm_cli_runtime_error("out of memory"));
        if (o->record && !a->replay_mode) a->want_record = 1; /* --record: from the first chunk */
        ret = run_window(a);
        if (!ret && a->replay_mode) {
            if (a->replay_mismatches) {
                fprintf(stderr,
                        "%s: replay differs from the recording: %" PRId64 " of %" PRId64
                        " frames, the first at frame %" PRId64 "\n",
                        g_prog, a->replay_mismatches, a->replay_checked, a->replay_first_bad);
                ret = EXIT_REPLAY_DIFFERS;
            } else if (!o->opts.quiet) {
                printf("%s: replay: %" PRId64 "/%" PRId64 " frames checked, bit-identical\n", g_prog,
                       a->replay_checked, a->replay.n_hashes);
            }
        }
    }
    /* the plugin stays loaded until exit: unloading a module that started threads (OpenMP, CUDA) is unsafe */
    return finish(a, ret);
}
