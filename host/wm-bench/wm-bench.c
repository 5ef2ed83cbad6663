/* wm-bench - times the engine through its public ABI: per-chunk latency (mean, p50, p99), video
 * fps, the split between DiT and decoder, and host/device memory, as JSON.
 *
 *   wm-bench --model DIR|config.json [--random-weights] [--chunks N] [--warmup N] [--backend cpu|cuda|auto]
 *            [--threads N] [--window W] [--sinks S] [--max-cache N] [--seed N] [--json FILE] [--label TEXT]
 *            [acceleration flags: --accel all, --tempcache, --annsa, ... (accel_args.h)]
 *
 * A chunk that fails (out of memory, a full unbounded cache) ends the run early: the JSON still has
 * every chunk measured so far plus "stopped" with the reason, and the exit status is 3. The per-chunk
 * arrays (chunk time, cache tokens and bytes, device memory, densities, merges) are what
 * tools/bench/plot_accel.py draws against frames. Exit codes: 0 ok, 1 runtime error, 2 usage error
 * (the options are checked as wm-run checks them: run_opts.h), 3 a chunk failed.
 *
 * The commit is taken from $WM_COMMIT (tools/bench/*.sh set it). --profile OUT.json times every backend
 * op separately (each synchronised) and writes ms, calls and achieved TFLOP/s of the GEMMs and
 * attentions per op (plugin/src/profile.c; the stderr table has the same).
 * Seconds per DiT forward = DiT time of a chunk / (denoising steps + 1 clean pass); the JSON gives
 * both. Compare numbers only within one run on one machine. */
#define _GNU_SOURCE
#include "accel_args.h"
#include "cli.h"
#include "run_opts.h"
#include "wm.h"
#include "wm_host.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(const double *sorted, int n, double p) {
    if (n == 0) return 0;
    int i = (int)(p * (n - 1) + 0.5);
    return sorted[i];
}

static void usage(FILE *f) {
    fprintf(f, "usage: wm-bench --model DIR|config.json [--random-weights] [--chunks N] [--warmup N]\n"
               "                [--backend cpu|cuda|auto] [--threads N] [--window W] [--sinks S] [--max-cache N]\n"
               "                [--seed N] [--action-guidance W] [--json FILE] [--label TEXT] [--plugin PATH] [--profile OUT.json]\n"
               "                [acceleration flags]\n%s",
            wm_accel_args_help);
}

typedef struct options {
    wm_run_opts opts; /* plugin, model, session, accelerations, --json and --label (run_opts.h) */
    const char *profile;
    int chunks, warmup;
} options;

/* wm-bench's own options (wm_run_opts_own_fn) */
static int own_arg(wm_run_opts *ro, int *i, void *user) {
    options *o = user;
    const char *a = ro->argv[*i];
    if (!strcmp(a, "--chunks")) return wm_run_opts_int(ro, i, 1, INT_MAX / 2, "a positive integer", &o->chunks);
    if (!strcmp(a, "--warmup")) return wm_run_opts_int(ro, i, 0, INT_MAX / 2, "a non-negative integer", &o->warmup);
    if (!strcmp(a, "--profile")) return wm_run_opts_str(ro, i, &o->profile);
    return 0;
}

/* Returns 0, or the exit code after printing a usage error. The options wm-bench shares with the
 * other tools that run a model are run_opts.h's, but for --random-weights, which takes no seed here:
 * the weights' seed of wm-bench is always 1234. It has no prompt ("benchmark", or an embedding of its
 * own), no --frames (--chunks) and no verbosity flags. A --json of '-' is a file of that name. */
static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    wm_run_opts_init(&o->opts, argc, argv, WM_RUN_OPT_CACHE | WM_RUN_OPT_MAX_CACHE | WM_RUN_OPT_REPORT, 0, 0);
    o->opts.seed = 1;
    o->opts.weight_seed = 1234;
    o->chunks = 5;
    o->warmup = 1;
    const int rc = wm_run_opts_parse_args(&o->opts, usage, own_arg, o);
    if (rc) return rc;
    if (!o->opts.model) return wm_cli_usage_error("--model is required");
    return 0;
}

int main(int argc, char **argv) {
    wm_cli_set_prog("wm-bench");
    options o;
    const int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    const char *model = o.opts.model, *plugin = o.opts.plugin ? o.opts.plugin : getenv("WM_PLUGIN");
    const char *json_path = o.opts.json, *label = o.opts.label ? o.opts.label : "", *profile = o.profile;
    const int random_weights = o.opts.random_weights, threads = o.opts.threads, warmup = o.warmup;
    int chunks = o.chunks;
    if (!plugin) plugin = WM_DEFAULT_PLUGIN;
    if (profile) setenv("WM_PROFILE", profile, 1); /* per-op times and TFLOP/s as JSON (profile.c) */
    void *so = dlopen(plugin, RTLD_NOW | RTLD_LOCAL);
    if (!so) { fprintf(stderr, "wm-bench: cannot load plugin: %s\n", dlerror()); return 1; }
    wm_get_api_fn get = (wm_get_api_fn)dlsym(so, WM_GET_API_SYMBOL);
    const wm_api *api = get ? get(WM_API_VERSION) : NULL;
    if (!api) { fprintf(stderr, "wm-bench: %s does not speak wm ABI version %u\n", plugin, WM_API_VERSION); return 1; }

    wm_model_params mp;
    api->model_params_init(&mp);
    wm_run_opts_model_params(&o.opts, &mp);
    wm_model *m = NULL;
    fprintf(stderr, "wm-bench: loading %s%s ...\n", model, random_weights ? " (random weights)" : "");
    if (api->model_load(&mp, &m) != WM_OK) { fprintf(stderr, "wm-bench: %s\n", api->last_error()); return 1; }
    wm_model_info info = {.size = sizeof info};
    api->model_get_info(m, &info);
    wm_session_params sp;
    api->session_params_init(&sp);
    wm_run_opts_session_params(&o.opts, &sp);
    wm_run_opts_apply_accel(&o.opts, &sp.accel); /* over the plugin's defaults */
    char accel_desc[160];
    wm_accel_describe(&sp.accel, accel_desc, sizeof accel_desc);
    const float guidance = wm_host_action_guidance(&info, sp.action_guidance);
    wm_session *s = NULL;
    if (api->session_new(m, &sp, &s) != WM_OK) { fprintf(stderr, "wm-bench: %s\n", api->last_error()); return 1; }
    wm_status st;
    if (info.prompt_kind == WM_PROMPT_TEXT) st = api->session_set_prompt_text(s, "benchmark");
    else {
        float *emb = calloc((size_t)info.text_len * info.text_dim, sizeof(float));
        for (int i = 0; i < info.text_len * info.text_dim; i++) emb[i] = (float)((i * 7919) % 17) / 17.0f - 0.5f;
        st = api->session_set_prompt_embeddings(s, emb, info.text_len, info.text_dim);
        free(emb);
    }
    if (st != WM_OK) { fprintf(stderr, "wm-bench: %s\n", api->last_error()); return 1; }

    int total = warmup + chunks;
    double *chunk_ms = calloc((size_t)total, sizeof(double)), *dit_ms = calloc((size_t)total, sizeof(double));
    double *dec_ms = calloc((size_t)total, sizeof(double)), *mem_mb = calloc((size_t)total, sizeof(double));
    double *cache_mb = calloc((size_t)total, sizeof(double)), *sa_d = calloc((size_t)total, sizeof(double));
    double *ca_d = calloc((size_t)total, sizeof(double)), *sa_r = calloc((size_t)total, sizeof(double));
    double *ca_r = calloc((size_t)total, sizeof(double));
    long long *tokens = calloc((size_t)total, sizeof(long long)), *merges = calloc((size_t)total, sizeof(long long));
    long long *latent_end = calloc((size_t)total, sizeof(long long));
    int64_t video_frames = 0;
    char stopped[512] = "";
    int done = 0;
    for (int c = 0; c < total; c++) {
        int nf = 0;
        /* a player's input: one button held, the next one every 8 video frames - so that what runs
         * per action (action guidance, where the model has it) is measured as in play */
        for (int64_t f = c ? wm_host_frames_after_chunk(&info, c - 1) : 0; info.n_buttons > 0 && f < wm_host_frames_after_chunk(&info, c); f++) {
            wm_action a = {.buttons = 1u << (unsigned)((f / 8) % info.n_buttons)};
            if (api->session_push_action(s, &a) != WM_OK) { fprintf(stderr, "wm-bench: %s\n", api->last_error()); return 1; }
        }
        if (api->session_generate(s, &nf) != WM_OK) {
            snprintf(stopped, sizeof stopped, "chunk %d: %s", c, api->last_error());
            fprintf(stderr, "wm-bench: %s\n", stopped);
            break;
        }
        wm_stats stats = {.size = sizeof stats};
        api->session_get_stats(s, &stats);
        chunk_ms[c] = stats.last_chunk_ms;
        dit_ms[c] = stats.last_dit_ms;
        dec_ms[c] = stats.last_decode_ms;
        mem_mb[c] = stats.backend_bytes / 1048576.0;
        cache_mb[c] = stats.cache_bytes / 1048576.0;
        tokens[c] = stats.cache_tokens;
        merges[c] = stats.tc_merges;
        sa_d[c] = stats.sa_density, ca_d[c] = stats.ca_density;
        sa_r[c] = stats.sa_recall, ca_r[c] = stats.ca_recall;
        latent_end[c] = stats.latent_frames;
        if (c >= warmup) video_frames += nf;
        done = c + 1;
        fprintf(stderr, "chunk %3d: %9.1f ms (DiT %9.1f, decode %7.1f) cache %lld tokens %.0f MB, sa %.3f ca %.3f, merges %lld\n",
                c, chunk_ms[c], dit_ms[c], dec_ms[c], tokens[c], cache_mb[c], sa_d[c], ca_d[c], merges[c]);
    }
    if (done <= warmup) {
        fprintf(stderr, "wm-bench: no chunk measured after the warmup\n");
        return 1;
    }
    chunks = done - warmup;
    total = done;
    double sum = 0, sum_dit = 0, sum_dec = 0;
    double *sorted = calloc((size_t)chunks, sizeof(double));
    for (int c = 0; c < chunks; c++) {
        sorted[c] = chunk_ms[warmup + c];
        sum += chunk_ms[warmup + c];
        sum_dit += dit_ms[warmup + c];
        sum_dec += dec_ms[warmup + c];
    }
    qsort(sorted, (size_t)chunks, sizeof(double), cmp_double);
    /* forwards per chunk: steps + the clean pass, from the model's step count via the config is not
     * exposed; the JSON carries the DiT ms per chunk and the caller divides. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    wm_stats stats = {.size = sizeof stats};
    api->session_get_stats(s, &stats);
    char host[256] = "";
    gethostname(host, sizeof host);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    FILE *out = json_path ? fopen(json_path, "w") : stdout;
    if (!out) { fprintf(stderr, "wm-bench: cannot write %s\n", json_path); return 1; }
    fprintf(out,
            "{\n  \"label\": \"%s\", \"accel\": \"%s\", \"device\": \"%s\", \"commit\": \"%s\", \"date\": \"%s\", \"build\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"cpus_online\": %ld,\n"
            "  \"model\": \"%s\", \"random_weights\": %d, \"n_params\": %lld, \"denoising_steps\": %d, \"action_guidance\": %g, \"action_guidance_steps\": %d,\n"
            "  \"latent\": [%d, %d, %d], \"frames_per_chunk\": %d, \"time_upscale\": %d, \"width\": %d, \"height\": %d,\n"
            "  \"chunks\": %d, \"warmup\": %d,\n"
            "  \"chunk_ms\": {\"mean\": %.3f, \"p50\": %.3f, \"p99\": %.3f, \"min\": %.3f, \"max\": %.3f},\n"
            "  \"dit_ms_per_chunk\": %.3f, \"decode_ms_per_chunk\": %.3f,\n"
            "  \"video_fps\": %.4f, \"latent_fps\": %.4f,\n"
            "  \"cache_tokens_end\": %lld, \"cache_capacity_bytes\": %lld, \"peak_rss_mb\": %.1f,\n"
            "  \"backend_mb\": %.1f, \"backend_peak_mb\": %.1f,\n  \"chunk_ms_all\": [",
            label, accel_desc, info.device_name ? info.device_name : "", getenv("WM_COMMIT") ? getenv("WM_COMMIT") : "unknown", date, api->build_info(), info.backend == WM_BACKEND_CUDA ? "cuda" : "cpu", threads, ncpu, info.name,
            random_weights, (long long)info.n_params, info.denoising_steps, guidance, info.action_guidance_steps, info.latent_channels, info.latent_height, info.latent_width,
            info.latent_frames_per_chunk, info.time_upscale, info.width, info.height, chunks, warmup, sum / chunks,
            pct(sorted, chunks, 0.5), pct(sorted, chunks, 0.99), sorted[0], sorted[chunks - 1], sum_dit / chunks,
            sum_dec / chunks, video_frames / (sum / 1000.0), chunks * info.latent_frames_per_chunk / (sum / 1000.0),
            (long long)stats.cache_tokens, (long long)stats.cache_capacity_bytes, ru.ru_maxrss / 1024.0,
            stats.backend_bytes / 1048576.0, stats.backend_peak_bytes / 1048576.0);
    for (int c = 0; c < total; c++) fprintf(out, "%s%.3f", c ? ", " : "", chunk_ms[c]);
    fprintf(out, "],\n  \"dit_ms_all\": [");
    for (int c = 0; c < total; c++) fprintf(out, "%s%.3f", c ? ", " : "", dit_ms[c]);
#define SERIES(name, arr, fmt)                                                          \
    do {                                                                                \
        fprintf(out, "],\n  \"" name "\": [");                                          \
        for (int c = 0; c < total; c++) fprintf(out, "%s" fmt, c ? ", " : "", arr[c]); \
    } while (0)
    SERIES("backend_mb_all", mem_mb, "%.1f");
    SERIES("cache_mb_all", cache_mb, "%.1f");
    SERIES("cache_tokens_all", tokens, "%lld");
    SERIES("latent_frames_all", latent_end, "%lld");
    SERIES("tc_merges_all", merges, "%lld");
    SERIES("sa_density_all", sa_d, "%.4f");
    SERIES("ca_density_all", ca_d, "%.4f");
    SERIES("sa_recall_all", sa_r, "%.4f");
    SERIES("ca_recall_all", ca_r, "%.4f");
#undef SERIES
    fprintf(out, "],\n  \"stopped\": \"");
    for (const char *p = stopped; *p; p++) fputc(*p == '"' || *p == '\\' ? '\'' : *p, out);
    fprintf(out, "\"\n}\n");
    if (json_path) fclose(out);
    api->session_free(s);
    api->model_free(m);
    return stopped[0] ? 3 : 0;
}
