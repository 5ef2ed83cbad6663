/* wm-accel-eval - how close is the accelerated rollout to the dense one (docs/ACCEL_QUALITY.md).
 *
 * Two sessions of one model, the same seed, prompt, window and actions: one dense (every acceleration
 * off), one with the acceleration flags of the command line (default --accel all at the plugin's
 * defaults). Both generate --frames video frames chunk by chunk, in lockstep; every frame pair is
 * compared (PSNR on RGB, SSIM on luma: quality.h) and every chunk records the accelerated session's
 * densities, recalls, merges and cache size, and both sessions' chunk times. The result is one JSON
 * document (tools/eval/plot_accel_quality.py draws it).
 *
 * Exit codes: 0 ok; 1 runtime failure (the JSON, when asked for, still holds what was measured, with
 * "stopped" set); 2 usage error (bad flags, no model to default to, settings the plugin refuses). */
#define _GNU_SOURCE
#include "accel_args.h"
#include "actions.h"
#include "cli.h"
#include "quality.h"
#include "run_opts.h"
#include "st_reader.h"
#include "video_writer.h"
#include "wm.h"
#include "wm_host.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifndef WM_DEFAULT_PLUGIN
#define WM_DEFAULT_PLUGIN "libwm.so"
#endif
#ifndef WM_ASSETS_DIR
#define WM_ASSETS_DIR "assets"
#endif

static const char *g_prog = "wm-accel-eval";

typedef struct options {
    wm_run_opts opts; /* model, session, frames, actions, accelerations, verbosity (run_opts.h) */
    const char *save_actions, *dense_out, *accel_out;
    uint64_t action_seed;
} options;

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: %s [options] [acceleration flags]\n"
        "Runs one model twice from the same seed, prompt and actions - dense and accelerated - and\n"
        "compares the frames (PSNR, SSIM) and the per-chunk cost (docs/ACCEL_QUALITY.md).\n"
        "\n"
        "  --model DIR|config.json model (default: %s/game, the shipped neural game)\n"
        "  --random-weights [SEED] seeded random weights instead of model.safetensors\n"
        "  --frames N              video frames to generate and compare (default 1000)\n"
        "  --prompt TEXT           prompt of a text model (default: the first of the config's \"_prompts\")\n"
        "  --prompt-embedding F    safetensors file with tensor \"prompt\" [L, text_dim] (embedding models;\n"
        "                          default one zero token)\n"
        "  --seed N                noise seed of both sessions (default 0)\n"
        "  --action-guidance W     action guidance of both sessions (default: the model's; 0 = off)\n"
        "  --action-seed N         seed of the scripted random walk (default 1)\n"
        "  --actions FILE          action script instead of the random walk (wm-run's syntax, actions.h)\n"
        "  --save-actions FILE     write the actions used, one line per frame, in that syntax\n"
        "  --window W              attention window in latent frames (-1 = unbounded; default: the model's)\n"
        "  --sinks S               sink frames (default: the model's)\n"
        "  --max-cache N           capacity of the unbounded policy in latent frames (default: the model's)\n"
        "  --backend cpu|cuda|auto compute backend (default auto)\n"
        "  --threads N             CPU threads (default 0 = all cores)\n"
        "  --json FILE             write the result there (default: standard output)\n"
        "  --label TEXT            free text copied into the JSON\n"
        "  --dense-out FILE        also write the dense video (.y4m .rgb, .mp4 with FFmpeg)\n"
        "  --accel-out FILE        also write the accelerated video\n"
        "  --plugin PATH           libwm.so (default: $WM_PLUGIN, else the build tree's)\n"
        "  --quiet                 no progress line, no summary\n"
        "  --verbose               the plugin's info log\n"
        "  --help                  this text\n"
        "\n"
        "Acceleration of the second session (without any of --accel/--tempcache/--annsa/--annca:\n"
        "--accel all; the other flags adjust it):\n%s"
        "\n"
        "PSNR of identical frames is reported as 100.0 (the cap of every value; JSON has no inf).\n"
        "Exit codes: 0 ok, 1 runtime error, 2 usage error.\n",
        g_prog, WM_ASSETS_DIR, wm_accel_args_help);
}

/* wm-accel-eval's own options (wm_run_opts_own_fn) */
static int own_arg(wm_run_opts *ro, int *i, void *user) {
    options *o = user;
    const char *a = ro->argv[*i];
    if (!strcmp(a, "--action-seed")) return wm_run_opts_u64(ro, i, &o->action_seed);
    if (!strcmp(a, "--save-actions")) return wm_run_opts_str(ro, i, &o->save_actions);
    if (!strcmp(a, "--dense-out")) return wm_run_opts_str(ro, i, &o->dense_out);
    if (!strcmp(a, "--accel-out")) return wm_run_opts_str(ro, i, &o->accel_out);
    return 0;
}

static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    wm_run_opts_init(&o->opts, argc, argv,
                     WM_RUN_OPT_PROMPT | WM_RUN_OPT_FRAMES | WM_RUN_OPT_ACTIONS | WM_RUN_OPT_CACHE |
                         WM_RUN_OPT_MAX_CACHE | WM_RUN_OPT_VERBOSITY | WM_RUN_OPT_WEIGHT_SEED | WM_RUN_OPT_REPORT,
                     1000, 100000000);
    o->action_seed = 1;
    const int rc = wm_run_opts_parse_args(&o->opts, usage, own_arg, o);
    if (rc) return rc;
    if (wm_run_opts_check(&o->opts) < 0) return WM_CLI_EXIT_USAGE;
    if (o->opts.actions && o->save_actions && !strcmp(o->opts.actions, o->save_actions))
        return wm_cli_usage_error("--save-actions would overwrite --actions %s", o->opts.actions);
    return 0;
}

/* ---- plugin callbacks ---- */

static void on_log(void *user, wm_log_level level, const char *msg) {
    const options *o = user;
    if (level >= WM_LOG_WARN || (o->opts.verbose && level >= WM_LOG_INFO)) fprintf(stderr, "wm: %s\n", msg);
}


/* ---- the default prompt: the first "_prompts" entry of the model's config.json ---- */

static char *default_prompt(const char *model) {
    char *p[1] = {NULL};
    return wm_host_model_prompts(model, p, 1) == 1 ? p[0] : NULL;
}

/* ---- the scripted random walk ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double uniform(uint64_t *s) { return (double)(splitmix64(s) >> 11) * 0x1.0p-53; }

static int find_button(const wm_model_info *info, const char *name) {
    for (int b = 0; b < info->n_buttons; b++)
        if (!strcasecmp(info->button_names[b], name)) return b;
    return -1;
}

/* n actions of a deterministic walk from `seed`: segments of 4..16 frames holding one command. On a
 * model with up/down/left/right buttons a segment moves in one of the 8 directions (idle one time in
 * 8); every other button is pressed on a segment's first frame one time in 6 (the game's torch). Without
 * direction buttons each button is held over a segment one time in 4. Axes take a value in [-1, 1]
 * per segment (0 one time in 3), the mouse a delta in [-8, 8] per frame of the segment. */
static int random_walk(const wm_model_info *info, uint64_t seed, long long n, action_script *out) {
    out->actions = calloc((size_t)n, sizeof(wm_action));
    if (!out->actions) return 0;
    out->n = (int)n;
    uint64_t s = seed ^ 0x77616C6B00000000ull; /* "walk" */
    static const char *const dirs[4] = {"up", "down", "left", "right"};
    int dir_bit[4], have_dirs = 1;
    uint32_t dir_mask = 0;
    for (int d = 0; d < 4; d++) {
        dir_bit[d] = find_button(info, dirs[d]);
        if (dir_bit[d] < 0)
            have_dirs = 0;
        else
            dir_mask |= 1u << dir_bit[d];
    }
    if (!have_dirs) dir_mask = 0;
    /* the 8 moves: (vertical, horizontal) with -1 = up/left, 1 = down/right */
    static const int moves[8][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}, {-1, -1}, {-1, 1}, {1, -1}, {1, 1}};
    long long f = 0;
    while (f < n) {
        const int len = 4 + (int)(splitmix64(&s) % 13);
        wm_action seg;
        memset(&seg, 0, sizeof seg);
        uint32_t press = 0; /* first frame only */
        if (have_dirs) {
            const int m = (int)(splitmix64(&s) % 8);
            if (splitmix64(&s) % 8) {
                if (moves[m][0]) seg.buttons |= 1u << dir_bit[moves[m][0] < 0 ? 0 : 1];
                if (moves[m][1]) seg.buttons |= 1u << dir_bit[moves[m][1] < 0 ? 2 : 3];
            }
            for (int b = 0; b < info->n_buttons && b < 32; b++)
                if (!(dir_mask >> b & 1) && splitmix64(&s) % 6 == 0) press |= 1u << b;
        } else {
            for (int b = 0; b < info->n_buttons && b < 32; b++)
                if (splitmix64(&s) % 4 == 0) seg.buttons |= 1u << b;
        }
        for (int x = 0; x < info->n_axes && x < WM_MAX_AXES; x++)
            seg.axes[x] = splitmix64(&s) % 3 ? (float)(round(200.0 * uniform(&s)) / 100.0 - 1.0) : 0.0f;
        const double mdx = info->has_mouse ? round(16.0 * uniform(&s)) - 8.0 : 0.0;
        const double mdy = info->has_mouse ? round(16.0 * uniform(&s)) - 8.0 : 0.0;
        for (int k = 0; k < len && f < n; k++, f++) {
            wm_action a = seg;
            if (k == 0) a.buttons |= press;
            a.mouse_dx = (float)mdx, a.mouse_dy = (float)mdy;
            out->actions[f] = a;
        }
    }
    return 1;
}

static int save_actions(const char *path, const action_script *s, long long n, const wm_model_info *info,
                        const char *origin) {
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f, "# wm-accel-eval: %s, %lld frames (one line per video frame: host/common/actions.h)\n", origin,
            n);
    for (long long i = 0; i < n; i++) {
        const wm_action a = action_script_get(s, i);
        int any = 0;
        for (int b = 0; b < info->n_buttons; b++)
            if (a.buttons >> b & 1) fprintf(f, "%s%s", any++ ? "+" : "", info->button_names[b]);
        if (!any) fputc('-', f);
        for (int x = 0; x < info->n_axes; x++) fprintf(f, " %.2f", a.axes[x]);
        if (info->has_mouse) fprintf(f, " %g %g", a.mouse_dx, a.mouse_dy);
        fputc('\n', f);
    }
    return fclose(f) == 0;
}

/* ---- growable per-chunk and per-frame series ---- */

typedef struct series {
    double *v;
    long long n, cap;
} series;

static int push(series *s, double x) {
    if (s->n == s->cap) {
        const long long cap = s->cap ? 2 * s->cap : 256;
        double *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return 0;
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = x;
    return 1;
}

enum {
    S_PSNR,
    S_SSIM, /* per frame */
    S_FRAMES_END,
    S_LATENT_END, /* per chunk from here */
    S_DENSE_MS,
    S_ACCEL_MS,
    S_DENSE_DIT_MS,
    S_ACCEL_DIT_MS,
    S_SA_DENSITY,
    S_CA_DENSITY,
    S_SA_RECALL,
    S_CA_RECALL,
    S_TC_MERGES,
    S_TC_EVICTIONS,
    S_CACHE_TOKENS,
    S_CACHE_TOKENS_TOTAL,
    S_CACHE_BYTES,
    S_DENSE_CACHE_TOKENS,
    S_DENSE_CACHE_BYTES,
    S_PSNR_CHUNK, /* mean PSNR of the chunk's frames */
    /* drift: the chunk's mean sharpness and colour, each session (quality_frame_stats) */
    S_DENSE_SHARP,
    S_ACCEL_SHARP,
    S_DENSE_R, S_DENSE_G, S_DENSE_B,
    S_ACCEL_R, S_ACCEL_G, S_ACCEL_B,
    S_COUNT
};
static const char *const series_names[S_COUNT] = {"psnr",
                                                  "ssim",
                                                  "frames_end",
                                                  "latent_frames_end",
                                                  "dense_ms",
                                                  "accel_ms",
                                                  "dense_dit_ms",
                                                  "accel_dit_ms",
                                                  "sa_density",
                                                  "ca_density",
                                                  "sa_recall",
                                                  "ca_recall",
                                                  "tc_merges",
                                                  "tc_evictions",
                                                  "cache_tokens",
                                                  "cache_tokens_total",
                                                  "cache_bytes",
                                                  "dense_cache_tokens",
                                                  "dense_cache_bytes",
                                                  "psnr_chunk_mean",
                                                  "dense_sharpness",
                                                  "accel_sharpness",
                                                  "dense_mean_r",
                                                  "dense_mean_g",
                                                  "dense_mean_b",
                                                  "accel_mean_r",
                                                  "accel_mean_g",
                                                  "accel_mean_b"};
/* decimals kept in the JSON (-1: integers) */
static const int series_decimals[S_COUNT] = {4, 5, -1, -1, 3,  3,  3,  3,  4,  4,
                                             4, 4, -1, -1, -1, -1, -1, -1, -1, 3, 2, 2, 2, 2, 2, 2, 2, 2};

static double round_to(double x, int decimals) {
    if (!isfinite(x)) return 0;
    if (decimals < 0) return round(x);
    const double p = pow(10.0, decimals);
    return round(x * p) / p;
}

static cJSON *json_series(const series *s, int decimals) {
    cJSON *arr = cJSON_CreateArray();
    for (long long i = 0; arr && i < s->n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(round_to(s->v[i], decimals)));
    return arr;
}

static double mean_range(const series *s, long long from, long long to) {
    if (to > s->n) to = s->n;
    double sum = 0;
    long long n = 0;
    for (long long i = from; i < to; i++) sum += s->v[i], n++;
    return n ? sum / (double)n : NAN;
}

/* mean of the values >= 0 (recalls: -1 = not measured); NAN when none */
static double mean_measured(const series *s) {
    double sum = 0;
    long long n = 0;
    for (long long i = 0; i < s->n; i++)
        if (s->v[i] >= 0) sum += s->v[i], n++;
    return n ? sum / (double)n : NAN;
}

static void add_num(cJSON *o, const char *key, double x, int decimals) {
    if (isfinite(x))
        cJSON_AddNumberToObject(o, key, round_to(x, decimals));
    else
        cJSON_AddNullToObject(o, key);
}

static void add_accel(cJSON *o, const wm_accel_params *a) {
    cJSON_AddBoolToObject(o, "tempcache", a->tempcache);
    add_num(o, "tc_threshold", a->tc_threshold, 4);
    cJSON_AddNumberToObject(o, "tc_budget_tokens", (double)a->tc_budget_tokens);
    cJSON_AddBoolToObject(o, "annsa", a->annsa);
    cJSON_AddNumberToObject(o, "sa_bits", a->sa_bits);
    cJSON_AddNumberToObject(o, "sa_tables", a->sa_tables);
    add_num(o, "sa_dense_steps", a->sa_dense_steps, 4);
    char mask[32];
    snprintf(mask, sizeof mask, "0x%llx", (unsigned long long)a->sa_layers);
    cJSON_AddStringToObject(o, "sa_layers", mask);
    cJSON_AddBoolToObject(o, "annca", a->annca);
    cJSON_AddNumberToObject(o, "ca_bits", a->ca_bits);
    cJSON_AddNumberToObject(o, "ca_tables", a->ca_tables);
    cJSON_AddNumberToObject(o, "recall_probe", a->recall_probe);
    cJSON_AddNumberToObject(o, "ca_min_tokens", a->ca_min_tokens);
}

/* ---- the run ---- */

typedef struct run {
    const wm_api *api;
    wm_model *model;
    wm_model_info info;
    wm_session *dense, *accel;
    wm_accel_params accel_params;
    char accel_desc[256];
    char *prompt; /* text actually used (NULL: embeddings) */
    const char *model_path, *actions_desc;
    series s[S_COUNT];
    long long frames_done, identical, chunks;
    double wall_s;
    int64_t merges_total, evictions_total;
    char stopped[2304];
} run;

/* one session through a chunk; returns its video frame count or -1 (message in r->stopped) */
static int generate(run *r, wm_session *s, const char *which, wm_stats *st) {
    int n = 0;
    const wm_status status = r->api->session_generate(s, &n);
    if (status != WM_OK) {
        if (status == WM_ERR_ABORTED && wm_host_interrupted())
            snprintf(r->stopped, sizeof r->stopped, "interrupted after %lld frames", r->frames_done);
        else
            snprintf(r->stopped, sizeof r->stopped, "chunk %lld of the %s session: %s: %s", r->chunks, which,
                     r->api->status_string(status), r->api->last_error());
        return -1;
    }
    memset(st, 0, sizeof *st);
    st->size = sizeof *st;
    r->api->session_get_stats(s, st);
    return n;
}

static void progress(const options *o, const run *r, double elapsed, int final) {
    if (o->opts.quiet) return;
    static double last = -1;
    static long long last_frames = -1;
    const int tty = isatty(2);
    /* logs (not a terminal): one line per 10 s, and the last one once */
    if (!tty && (final ? r->frames_done == last_frames : last >= 0 && elapsed - last < 10.0)) return;
    last = elapsed;
    last_frames = r->frames_done;
    const double fps = elapsed > 0 ? r->frames_done / elapsed : 0;
    const double eta = fps > 0 ? (o->opts.frames - r->frames_done) / fps : 0;
    const series *ps = &r->s[S_PSNR];
    fprintf(stderr,
            "%s%s: %lld/%lld frames  PSNR mean %.2f (last %.2f)  SSIM mean %.4f  SA %.3f CA %.3f  %.2f fps  "
            "ETA %dm%02ds%s",
            tty ? "\r" : "", g_prog, r->frames_done, o->opts.frames, mean_range(ps, 0, ps->n),
            ps->n ? ps->v[ps->n - 1] : 0, mean_range(&r->s[S_SSIM], 0, ps->n),
            r->s[S_SA_DENSITY].n ? r->s[S_SA_DENSITY].v[r->s[S_SA_DENSITY].n - 1] : 1,
            r->s[S_CA_DENSITY].n ? r->s[S_CA_DENSITY].v[r->s[S_CA_DENSITY].n - 1] : 1, fps, (int)(eta / 60),
            (int)fmod(eta, 60), tty ? "\033[K" : "\n");
    if (tty && final) fputc('\n', stderr);
}

static cJSON *build_json(const options *o, const run *r) {
    cJSON *root = cJSON_CreateObject();
    const wm_model_info *info = &r->info;
    char date[64];
    const time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    const char *commit = getenv("WM_COMMIT");
    cJSON_AddStringToObject(root, "tool", "wm-accel-eval");
    cJSON_AddStringToObject(root, "label", o->opts.label ? o->opts.label : "");
    cJSON_AddStringToObject(root, "commit", commit && *commit ? commit : "unknown");
    cJSON_AddStringToObject(root, "date", date);
    cJSON_AddStringToObject(root, "build", r->api->build_info());
    cJSON_AddStringToObject(root, "device", info->device_name ? info->device_name : "");
    cJSON_AddStringToObject(root, "backend", wm_host_backend_name(info->backend));
    cJSON_AddNumberToObject(root, "threads", o->opts.threads);
    cJSON_AddNumberToObject(root, "cpus_online", (double)sysconf(_SC_NPROCESSORS_ONLN));

    cJSON *set = cJSON_AddObjectToObject(root, "settings");
    cJSON_AddStringToObject(set, "model", r->model_path);
    cJSON_AddStringToObject(set, "model_name", info->name ? info->name : "");
    cJSON_AddBoolToObject(set, "random_weights", o->opts.random_weights);
    cJSON_AddNumberToObject(set, "n_params", (double)info->n_params);
    cJSON_AddNumberToObject(set, "width", info->width);
    cJSON_AddNumberToObject(set, "height", info->height);
    cJSON_AddNumberToObject(set, "fps", info->fps);
    cJSON_AddNumberToObject(set, "latent_frames_per_chunk", info->latent_frames_per_chunk);
    cJSON_AddNumberToObject(set, "time_upscale", info->time_upscale);
    cJSON_AddNumberToObject(set, "frames", (double)o->opts.frames);
    cJSON_AddNumberToObject(set, "seed", (double)o->opts.seed);
    cJSON_AddNumberToObject(set, "action_guidance",
                            wm_host_action_guidance(info, o->opts.action_guidance));
    if (r->prompt)
        cJSON_AddStringToObject(set, "prompt", r->prompt);
    else
        cJSON_AddStringToObject(set, "prompt_embedding",
                                o->opts.prompt_embedding ? o->opts.prompt_embedding : "one zero token");
    cJSON_AddStringToObject(set, "actions", r->actions_desc);
    if (!o->opts.actions) cJSON_AddNumberToObject(set, "action_seed", (double)o->action_seed);
    cJSON_AddNumberToObject(set, "window", o->opts.window);
    cJSON_AddNumberToObject(set, "sinks", o->opts.sinks);
    cJSON_AddNumberToObject(set, "max_cache", o->opts.max_cache);
    cJSON_AddNumberToObject(set, "model_window_frames", info->window_frames);
    cJSON_AddNumberToObject(set, "model_sink_frames", info->sink_frames);
    cJSON_AddStringToObject(set, "accel_desc", r->accel_desc);
    add_accel(cJSON_AddObjectToObject(set, "accel"), &r->accel_params);
    cJSON_AddNumberToObject(set, "psnr_cap", QUALITY_PSNR_CAP);
    cJSON_AddStringToObject(
        set, "ssim",
        "luma BT.601, Gaussian 11x11 sigma 1.5, valid windows, C1 (0.01*255)^2, C2 (0.03*255)^2");

    cJSON_AddNumberToObject(root, "frames", (double)r->frames_done);
    cJSON_AddNumberToObject(root, "identical_frames", (double)r->identical);
    cJSON_AddItemToObject(root, "psnr", json_series(&r->s[S_PSNR], series_decimals[S_PSNR]));
    cJSON_AddItemToObject(root, "ssim", json_series(&r->s[S_SSIM], series_decimals[S_SSIM]));
    cJSON *ch = cJSON_AddObjectToObject(root, "chunks");
    cJSON_AddNumberToObject(ch, "count", (double)r->chunks);
    for (int k = S_FRAMES_END; k < S_COUNT; k++)
        cJSON_AddItemToObject(ch, series_names[k], json_series(&r->s[k], series_decimals[k]));

    cJSON *sum = cJSON_AddObjectToObject(root, "summary");
    const series *ps = &r->s[S_PSNR], *ss = &r->s[S_SSIM];
    double pmin = INFINITY, smin = INFINITY;
    long long pmin_at = -1;
    for (long long i = 0; i < ps->n; i++) {
        if (ps->v[i] < pmin) pmin = ps->v[i], pmin_at = i;
        if (ss->v[i] < smin) smin = ss->v[i];
    }
    add_num(sum, "psnr_mean_1_100", mean_range(ps, 0, 100), 3);
    add_num(sum, "psnr_mean", mean_range(ps, 0, ps->n), 3);
    add_num(sum, "psnr_min", pmin, 3);
    cJSON_AddNumberToObject(sum, "psnr_min_frame", (double)pmin_at);
    add_num(sum, "psnr_mean_last_100", mean_range(ps, ps->n > 100 ? ps->n - 100 : 0, ps->n), 3);
    add_num(sum, "ssim_mean_1_100", mean_range(ss, 0, 100), 5);
    add_num(sum, "ssim_mean", mean_range(ss, 0, ss->n), 5);
    add_num(sum, "ssim_min", smin, 5);
    add_num(sum, "identical_share", ps->n ? (double)r->identical / (double)ps->n : NAN, 4);
    add_num(sum, "sa_density_mean", mean_range(&r->s[S_SA_DENSITY], 0, r->chunks), 4);
    add_num(sum, "ca_density_mean", mean_range(&r->s[S_CA_DENSITY], 0, r->chunks), 4);
    add_num(sum, "sa_recall_mean", mean_measured(&r->s[S_SA_RECALL]), 4);
    add_num(sum, "ca_recall_mean", mean_measured(&r->s[S_CA_RECALL]), 4);
    /* drift over the last quarter of the chunks (at least one): the accelerated rollout's sharpness
     * relative to the dense one's (1 = as sharp; blur-out drives it down) and the largest gap of a
     * channel mean in 8-bit levels (colour drift) */
    {
        const long long n = r->chunks, a = n - (n / 4 > 0 ? n / 4 : 1) > 0 ? n - (n / 4 > 0 ? n / 4 : 1) : 0;
        const double ds = mean_range(&r->s[S_DENSE_SHARP], a, n), as = mean_range(&r->s[S_ACCEL_SHARP], a, n);
        add_num(sum, "sharpness_ratio_last_quarter", ds > 0 ? as / ds : NAN, 4);
        double gap = 0;
        for (int ch = 0; ch < 3; ch++) {
            const double g = fabs(mean_range(&r->s[S_ACCEL_R + ch], a, n) - mean_range(&r->s[S_DENSE_R + ch], a, n));
            gap = g > gap ? g : gap;
        }
        add_num(sum, "colour_gap_last_quarter", gap, 3);
    }
    cJSON_AddNumberToObject(sum, "tc_merges_total", (double)r->merges_total);
    cJSON_AddNumberToObject(sum, "tc_evictions_total", (double)r->evictions_total);
    const long long last = r->chunks - 1;
    cJSON_AddNumberToObject(sum, "cache_tokens_end", last >= 0 ? r->s[S_CACHE_TOKENS].v[last] : 0);
    cJSON_AddNumberToObject(sum, "dense_cache_tokens_end",
                            last >= 0 ? r->s[S_DENSE_CACHE_TOKENS].v[last] : 0);
    cJSON_AddNumberToObject(sum, "cache_bytes_end", last >= 0 ? r->s[S_CACHE_BYTES].v[last] : 0);
    cJSON_AddNumberToObject(sum, "dense_cache_bytes_end", last >= 0 ? r->s[S_DENSE_CACHE_BYTES].v[last] : 0);
    /* times: the first chunk (one latent frame of context, warm-up of the backend) is left out when
     * there are others */
    const long long t0 = r->chunks > 1 ? 1 : 0;
    const double dms = mean_range(&r->s[S_DENSE_MS], t0, r->chunks),
                 ams = mean_range(&r->s[S_ACCEL_MS], t0, r->chunks);
    const double ddit = mean_range(&r->s[S_DENSE_DIT_MS], t0, r->chunks);
    const double adit = mean_range(&r->s[S_ACCEL_DIT_MS], t0, r->chunks);
    cJSON_AddNumberToObject(sum, "timed_from_chunk", (double)t0);
    add_num(sum, "dense_ms_mean", dms, 3);
    add_num(sum, "accel_ms_mean", ams, 3);
    add_num(sum, "dense_dit_ms_mean", ddit, 3);
    add_num(sum, "accel_dit_ms_mean", adit, 3);
    add_num(sum, "speedup", ams > 0 ? dms / ams : NAN, 4);
    add_num(sum, "speedup_dit", adit > 0 ? ddit / adit : NAN, 4);
    add_num(sum, "wall_s", r->wall_s, 2);
    cJSON_AddStringToObject(root, "stopped", r->stopped);
    return root;
}

static int write_json(const options *o, const run *r) {
    cJSON *root = build_json(o, r);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return wm_cli_runtime_error("out of memory for the JSON");
    int ok;
    if (o->opts.json && strcmp(o->opts.json, "-")) {
        FILE *f = fopen(o->opts.json, "w");
        ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
        if (f && fclose(f) != 0) ok = 0;
        if (!ok) {
            free(text);
            return wm_cli_runtime_error("%s: cannot write", o->opts.json);
        }
    } else {
        puts(text);
        fflush(stdout);
    }
    free(text);
    return 0;
}

static void summary(const options *o, const run *r) {
    if (o->opts.quiet) return;
    const series *ps = &r->s[S_PSNR];
    const long long t0 = r->chunks > 1 ? 1 : 0;
    const double dms = mean_range(&r->s[S_DENSE_MS], t0, r->chunks),
                 ams = mean_range(&r->s[S_ACCEL_MS], t0, r->chunks);
    double pmin = INFINITY;
    for (long long i = 0; i < ps->n; i++)
        if (ps->v[i] < pmin) pmin = ps->v[i];
    fprintf(stderr, "%s: %s vs dense, %lld frames in %lld chunks (%.1f s)\n", g_prog, r->accel_desc,
            r->frames_done, r->chunks, r->wall_s);
    fprintf(stderr,
            "%s: PSNR mean %.2f dB (frames 1-100 %.2f, min %.2f), SSIM mean %.4f, identical frames %lld\n",
            g_prog, mean_range(ps, 0, ps->n), mean_range(ps, 0, 100), pmin,
            mean_range(&r->s[S_SSIM], 0, ps->n), r->identical);
    fprintf(stderr, "%s: density SA %.3f CA %.3f", g_prog, mean_range(&r->s[S_SA_DENSITY], 0, r->chunks),
            mean_range(&r->s[S_CA_DENSITY], 0, r->chunks));
    const double sar = mean_measured(&r->s[S_SA_RECALL]), car = mean_measured(&r->s[S_CA_RECALL]);
    if (isfinite(sar) || isfinite(car)) fprintf(stderr, ", recall SA %.3f CA %.3f", sar, car);
    fprintf(stderr, "; TempCache %lld merges; cache %lld vs %lld tokens per layer at the end\n",
            (long long)r->merges_total, r->chunks ? (long long)r->s[S_CACHE_TOKENS].v[r->chunks - 1] : 0LL,
            r->chunks ? (long long)r->s[S_DENSE_CACHE_TOKENS].v[r->chunks - 1] : 0LL);
    fprintf(stderr, "%s: chunk ms dense %.1f, accelerated %.1f: speedup %.2fx\n", g_prog, dms, ams,
            ams > 0 ? dms / ams : 0);
}

int main(int argc, char **argv) {
    wm_cli_set_prog(g_prog);
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;

    /* the model: --model, else the shipped game */
    char model_buf[PATH_MAX];
    if (!o.opts.model) {
        snprintf(model_buf, sizeof model_buf, "%s/game/config.json", WM_ASSETS_DIR);
        if (!wm_host_is_file(model_buf))
            return wm_cli_usage_error("no model: the shipped game %s/game is missing; pass --model DIR",
                                      WM_ASSETS_DIR);
        snprintf(model_buf, sizeof model_buf, "%s/game", WM_ASSETS_DIR);
        o.opts.model = model_buf;
    }
    if (!wm_host_is_file(o.opts.model) && !wm_host_is_dir(o.opts.model))
        return wm_cli_runtime_error("model %s: no such file or directory", o.opts.model);
    if (wm_host_is_dir(o.opts.model)) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/config.json", o.opts.model);
        if (!wm_host_is_file(p)) return wm_cli_runtime_error("model %s: no config.json in it", o.opts.model);
        snprintf(p, sizeof p, "%s/model.safetensors", o.opts.model);
        if (!o.opts.random_weights && !wm_host_is_file(p))
            return wm_cli_runtime_error(
                "model %s: no model.safetensors in it (--random-weights runs the config alone)", o.opts.model);
    }

    /* the plugin */
    const char *plugin = o.opts.plugin ? o.opts.plugin : getenv("WM_PLUGIN");
    if (!plugin || !*plugin) plugin = WM_DEFAULT_PLUGIN;
    void *so = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
    if (!so) return wm_cli_runtime_error("cannot load the plugin: %s", dlerror());
    char err[2048];
    const wm_api *api = wm_host_get_api((wm_get_api_fn)dlsym(so, WM_GET_API_SYMBOL), plugin, err, sizeof err);
    if (!api) return wm_cli_runtime_error("%s", err);

    wm_host_catch_interrupt();

    run r;
    memset(&r, 0, sizeof r);
    r.api = api;
    r.model_path = o.opts.model;
    int ret = 0;
    float *emb = NULL;
    uint8_t *fd = NULL, *fa = NULL;
    quality_ssim *q = NULL;
    video_writer *wd = NULL, *wa = NULL;
    action_script script = {0};
    char actions_desc[PATH_MAX + 64];

    wm_model_params mp;
    api->model_params_init(&mp);
    wm_run_opts_model_params(&o.opts, &mp);
    mp.log = on_log;
    mp.log_user_data = &o;
    mp.abort_cb = wm_host_abort_on_interrupt;
    wm_status st = api->model_load(&mp, &r.model);
    if (st != WM_OK)
        return wm_cli_runtime_error("cannot load model %s: %s: %s", o.opts.model, api->status_string(st),
                                    api->last_error());
    r.info.size = sizeof r.info;
    if ((st = api->model_get_info(r.model, &r.info)) != WM_OK) {
        ret = wm_cli_runtime_error("model info: %s", api->last_error());
        goto done;
    }
    const wm_model_info *info = &r.info;
    if (info->width <= 0) {
        ret = wm_cli_usage_error("model %s has no decoder: there are no frames to compare", info->name);
        goto done;
    }
    if (o.opts.prompt && info->prompt_kind != WM_PROMPT_TEXT) {
        ret = wm_cli_usage_error("model %s takes a prompt embedding, not text: use --prompt-embedding FILE",
                                 info->name);
        goto done;
    }
    if (o.opts.prompt_embedding && info->prompt_kind == WM_PROMPT_TEXT) {
        ret = wm_cli_usage_error("model %s takes a text prompt: use --prompt TEXT", info->name);
        goto done;
    }

    /* the actions: a script or the random walk (as many frames as the last chunk may need) */
    const long long need = o.opts.frames + (long long)info->time_upscale * info->latent_frames_per_chunk + 1;
    if (o.opts.actions) {
        const int ok = action_script_load(o.opts.actions, info, &script, err, sizeof err);
        if (ok != 1) {
            ret = ok == 0 ? wm_cli_usage_error("%s", err) : wm_cli_runtime_error("%s", err);
            goto done;
        }
        snprintf(actions_desc, sizeof actions_desc, "script %s", o.opts.actions);
    } else {
        if (!random_walk(info, o.action_seed, need, &script)) {
            ret = wm_cli_runtime_error("out of memory");
            goto done;
        }
        snprintf(actions_desc, sizeof actions_desc, "random walk (action seed %llu)",
                 (unsigned long long)o.action_seed);
    }
    r.actions_desc = actions_desc;
    if (o.save_actions && !save_actions(o.save_actions, &script, o.opts.frames, info, actions_desc)) {
        ret = wm_cli_runtime_error("%s: cannot write", o.save_actions);
        goto done;
    }

    /* the two sessions: identical parameters but for the accelerations */
    wm_session_params sp;
    api->session_params_init(&sp);
    wm_run_opts_session_params(&o.opts, &sp);
    sp.abort_cb = wm_host_abort_on_interrupt;
    wm_session_params spa = sp;
    if (!o.opts.module_flag) spa.accel.tempcache = spa.accel.annsa = spa.accel.annca = 1; /* --accel all */
    wm_run_opts_apply_accel(&o.opts, &spa.accel);
    sp.accel.tempcache = sp.accel.annsa = sp.accel.annca = 0;
    sp.accel.recall_probe = 0;
    r.accel_params = spa.accel;
    wm_accel_describe(&spa.accel, r.accel_desc, sizeof r.accel_desc);
    if ((st = api->session_new(r.model, &sp, &r.dense)) != WM_OK) {
        ret = st == WM_ERR_INVALID_ARGUMENT
                  ? wm_cli_usage_error("session settings refused: %s", api->last_error())
                  : wm_cli_runtime_error("cannot start the dense session: %s: %s", api->status_string(st),
                                         api->last_error());
        goto done;
    }
    if ((st = api->session_new(r.model, &spa, &r.accel)) != WM_OK) {
        ret = st == WM_ERR_INVALID_ARGUMENT
                  ? wm_cli_usage_error("acceleration settings refused: %s", api->last_error())
                  : wm_cli_runtime_error("cannot start the accelerated session: %s: %s",
                                         api->status_string(st), api->last_error());
        goto done;
    }

    /* the prompt, the same in both */
    if (info->prompt_kind == WM_PROMPT_TEXT) {
        r.prompt = o.opts.prompt ? strdup(o.opts.prompt) : default_prompt(o.opts.model);
        if (!r.prompt) r.prompt = strdup("");
        if (!r.prompt) {
            ret = wm_cli_runtime_error("out of memory");
            goto done;
        }
        st = api->session_set_prompt_text(r.dense, r.prompt);
        if (st == WM_OK) st = api->session_set_prompt_text(r.accel, r.prompt);
    } else {
        int L = 1, D = info->text_dim;
        if (o.opts.prompt_embedding) {
            int64_t shape[ST_MAX_DIMS];
            int ndim = 0;
            emb = st_read_f32(o.opts.prompt_embedding, "prompt", shape, &ndim, err, sizeof err);
            if (!emb) {
                ret = wm_cli_runtime_error("%s", err);
                goto done;
            }
            if (ndim == 3 && shape[0] == 1) shape[0] = shape[1], shape[1] = shape[2], ndim = 2;
            if (ndim != 2 || shape[0] > INT_MAX || shape[1] > INT_MAX) {
                ret = wm_cli_usage_error("%s: tensor \"prompt\" must be [L, text_dim]", o.opts.prompt_embedding);
                goto done;
            }
            L = (int)shape[0], D = (int)shape[1];
        } else if (!(emb = calloc((size_t)D, sizeof *emb))) {
            ret = wm_cli_runtime_error("out of memory");
            goto done;
        }
        st = api->session_set_prompt_embeddings(r.dense, emb, L, D);
        if (st == WM_OK) st = api->session_set_prompt_embeddings(r.accel, emb, L, D);
    }
    if (st != WM_OK) {
        ret =
            wm_cli_runtime_error("cannot set the prompt: %s: %s", api->status_string(st), api->last_error());
        goto done;
    }

    const size_t pitch = (size_t)info->width * 3, fbytes = pitch * (size_t)info->height;
    fd = malloc(fbytes);
    fa = malloc(fbytes);
    q = quality_ssim_new(info->width, info->height);
    if (!fd || !fa || !q) {
        ret = wm_cli_runtime_error("out of memory");
        goto done;
    }
    if (o.dense_out &&
        !(wd = video_writer_open(o.dense_out, info->width, info->height, info->fps, NULL, err, sizeof err))) {
        ret = wm_cli_runtime_error("%s", err);
        goto done;
    }
    if (o.accel_out &&
        !(wa = video_writer_open(o.accel_out, info->width, info->height, info->fps, NULL, err, sizeof err))) {
        ret = wm_cli_runtime_error("%s", err);
        goto done;
    }
    if (!o.opts.quiet)
        fprintf(stderr, "%s: %s on %s%s%s%s: %lld frames, seed %llu, %s%s%s, %s; dense vs %s\n", g_prog,
                info->name, wm_host_backend_name(info->backend), info->device_name ? " (" : "",
                info->device_name ? info->device_name : "", info->device_name ? ")" : "", o.opts.frames,
                (unsigned long long)o.opts.seed, r.prompt ? "prompt \"" : "embedding prompt",
                r.prompt ? r.prompt : "", r.prompt ? "\"" : "", actions_desc, r.accel_desc);

    /* the rollouts, in lockstep */
    long long pushed = 0;
    const double t_start = wm_host_now_s();
    while (r.frames_done < o.opts.frames && !r.stopped[0]) {
        const long long target = wm_host_frames_after_chunk(info, r.chunks);
        for (; pushed < target; pushed++) {
            const wm_action a = action_script_get(&script, pushed);
            if ((st = api->session_push_action(r.dense, &a)) != WM_OK ||
                (st = api->session_push_action(r.accel, &a)) != WM_OK) {
                snprintf(r.stopped, sizeof r.stopped, "action of frame %lld: %s: %s", pushed,
                         api->status_string(st), api->last_error());
                break;
            }
        }
        if (r.stopped[0]) break;
        wm_stats sd, sa_;
        const int nd = generate(&r, r.dense, "dense", &sd);
        if (nd < 0) break;
        const int na = generate(&r, r.accel, "accelerated", &sa_);
        if (na < 0) break;
        if (nd != na || nd <= 0) {
            snprintf(r.stopped, sizeof r.stopped,
                     "chunk %lld: the dense session made %d frames, the accelerated one %d", r.chunks, nd,
                     na);
            break;
        }
        double chunk_psnr = 0, drift[8] = {0};
        int scored = 0;
        for (int k = 0; k < nd; k++) {
            if ((st = api->session_read_frame(r.dense, fd, pitch, fbytes, NULL)) != WM_OK ||
                (st = api->session_read_frame(r.accel, fa, pitch, fbytes, NULL)) != WM_OK) {
                snprintf(r.stopped, sizeof r.stopped, "frame %lld: %s: %s", r.frames_done,
                         api->status_string(st), api->last_error());
                break;
            }
            if (r.frames_done >= o.opts.frames) continue; /* the rest of the last chunk */
            int same = 0;
            const double p = quality_psnr_rgb(fd, fa, info->width, info->height, pitch, &same);
            const double s = same ? 1.0 : quality_ssim_rgb(q, fd, fa, pitch);
            if (!push(&r.s[S_PSNR], p) || !push(&r.s[S_SSIM], s)) {
                snprintf(r.stopped, sizeof r.stopped, "out of memory");
                break;
            }
            r.identical += same;
            chunk_psnr += p, scored++;
            double sh, rgb[3];
            quality_frame_stats(fd, info->width, info->height, pitch, &sh, rgb);
            drift[0] += sh, drift[2] += rgb[0], drift[3] += rgb[1], drift[4] += rgb[2];
            quality_frame_stats(fa, info->width, info->height, pitch, &sh, rgb);
            drift[1] += sh, drift[5] += rgb[0], drift[6] += rgb[1], drift[7] += rgb[2];
            if ((wd && !video_writer_write(wd, fd, pitch, err, sizeof err)) ||
                (wa && !video_writer_write(wa, fa, pitch, err, sizeof err))) {
                snprintf(r.stopped, sizeof r.stopped, "writing a video: %s", err);
                break;
            }
            r.frames_done++;
        }
        r.merges_total = sa_.tc_merges_total, r.evictions_total = sa_.tc_evictions_total;
        const double row[S_COUNT] = {[S_FRAMES_END] = (double)r.frames_done,
                                     [S_LATENT_END] = (double)sa_.latent_frames,
                                     [S_DENSE_MS] = sd.last_chunk_ms,
                                     [S_ACCEL_MS] = sa_.last_chunk_ms,
                                     [S_DENSE_DIT_MS] = sd.last_dit_ms,
                                     [S_ACCEL_DIT_MS] = sa_.last_dit_ms,
                                     [S_SA_DENSITY] = sa_.sa_density,
                                     [S_CA_DENSITY] = sa_.ca_density,
                                     [S_SA_RECALL] = sa_.sa_recall,
                                     [S_CA_RECALL] = sa_.ca_recall,
                                     [S_TC_MERGES] = (double)sa_.tc_merges,
                                     [S_TC_EVICTIONS] = (double)sa_.tc_evictions,
                                     [S_CACHE_TOKENS] = (double)sa_.cache_tokens,
                                     [S_CACHE_TOKENS_TOTAL] = (double)sa_.cache_tokens_total,
                                     [S_CACHE_BYTES] = (double)sa_.cache_bytes,
                                     [S_DENSE_CACHE_TOKENS] = (double)sd.cache_tokens,
                                     [S_DENSE_CACHE_BYTES] = (double)sd.cache_bytes,
                                     [S_PSNR_CHUNK] = scored ? chunk_psnr / scored : NAN,
                                     [S_DENSE_SHARP] = scored ? drift[0] / scored : NAN,
                                     [S_ACCEL_SHARP] = scored ? drift[1] / scored : NAN,
                                     [S_DENSE_R] = scored ? drift[2] / scored : NAN,
                                     [S_DENSE_G] = scored ? drift[3] / scored : NAN,
                                     [S_DENSE_B] = scored ? drift[4] / scored : NAN,
                                     [S_ACCEL_R] = scored ? drift[5] / scored : NAN,
                                     [S_ACCEL_G] = scored ? drift[6] / scored : NAN,
                                     [S_ACCEL_B] = scored ? drift[7] / scored : NAN};
        int ok = 1;
        for (int k = S_FRAMES_END; k < S_COUNT; k++) ok &= push(&r.s[k], row[k]);
        if (!ok) snprintf(r.stopped, sizeof r.stopped, "out of memory");
        r.chunks++;
        progress(&o, &r, wm_host_now_s() - t_start, 0);
    }
    r.wall_s = wm_host_now_s() - t_start;
    progress(&o, &r, r.wall_s, 1);
    if (r.stopped[0]) ret = wm_cli_runtime_error("%s", r.stopped);
    summary(&o, &r);
    const int jr = write_json(&o, &r); /* also after a failure: what was measured, with "stopped" */
    if (!ret) ret = jr;

done:
    if (wd && !video_writer_close(wd, err, sizeof err) && !ret)
        ret = wm_cli_runtime_error("%s: %s", o.dense_out, err);
    if (wa && !video_writer_close(wa, err, sizeof err) && !ret)
        ret = wm_cli_runtime_error("%s: %s", o.accel_out, err);
    for (int k = 0; k < S_COUNT; k++) free(r.s[k].v);
    quality_ssim_free(q);
    free(fd);
    free(fa);
    free(emb);
    free(r.prompt);
    action_script_free(&script);
    if (r.accel) api->session_free(r.accel);
    if (r.dense) api->session_free(r.dense);
    if (r.model) api->model_free(r.model);
    return ret;
}
