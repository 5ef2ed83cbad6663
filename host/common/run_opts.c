/* run_opts.c - see run_opts.h. */
#include "run_opts.h"

#include "accel_args.h"
#include "cli.h"
#include "wm_host.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wm_run_opts_init(wm_run_opts *o, int argc, char **argv, unsigned takes, long long frames,
                      long long frames_max) {
    memset(o, 0, sizeof *o);
    o->takes = takes;
    o->frames = frames;
    o->frames_max = frames_max;
    o->backend = WM_BACKEND_AUTO;
    o->window = -2;
    o->sinks = -1;
    o->action_guidance = -1.0f;
    o->argc = argc;
    o->argv = argv;
}

/* the option's value, or NULL after a usage error */
static const char *value(const wm_run_opts *o, int *i) {
    if (*i + 1 >= o->argc) {
        wm_cli_usage_error("%s needs a value", o->argv[*i]);
        return NULL;
    }
    return o->argv[++*i];
}

int wm_run_opts_ll(const wm_run_opts *o, int *i, long long lo, long long hi, const char *what, long long *dst) {
    const char *a = o->argv[*i], *val = value(o, i);
    if (!val) return -1;
    if (!wm_cli_parse_ll(val, lo, hi, dst)) return wm_cli_usage_error("%s: '%s' is not %s", a, val, what), -1;
    return 1;
}

int wm_run_opts_int(const wm_run_opts *o, int *i, int lo, int hi, const char *what, int *dst) {
    long long v;
    const int k = wm_run_opts_ll(o, i, lo, hi, what, &v);
    if (k == 1) *dst = (int)v;
    return k;
}

int wm_run_opts_u64(const wm_run_opts *o, int *i, uint64_t *dst) {
    const char *a = o->argv[*i], *val = value(o, i);
    if (!val) return -1;
    if (!wm_cli_parse_u64(val, dst)) return wm_cli_usage_error("%s: '%s' is not a non-negative integer", a, val), -1;
    return 1;
}

int wm_run_opts_str(const wm_run_opts *o, int *i, const char **dst) {
    const char *val = value(o, i);
    if (!val) return -1;
    *dst = val;
    return 1;
}

int wm_run_opts_parse(wm_run_opts *o, int *i) {
    const char *a = o->argv[*i];
    const int at = *i;
    wm_accel_params scratch; /* only to check the flags' values here; applied later, in order */
    memset(&scratch, 0, sizeof scratch);
    const int r = wm_accel_parse_arg(o->argc, o->argv, i, &scratch);
    if (r < 0) return -1;
    if (r > 0) {
        if (o->n_accel == (int)(sizeof o->accel_argi / sizeof *o->accel_argi))
            return wm_cli_usage_error("too many acceleration flags"), -1;
        o->accel_argi[o->n_accel++] = at;
        if (!strcmp(a, "--accel") || !strcmp(a, "--tempcache") || !strcmp(a, "--annsa") || !strcmp(a, "--annca"))
            o->module_flag = 1;
        return 1;
    }
    const unsigned t = o->takes;
    if (!strcmp(a, "--plugin")) return wm_run_opts_str(o, i, &o->plugin);
    if (!strcmp(a, "--model")) return wm_run_opts_str(o, i, &o->model);
    if (!strcmp(a, "--seed")) return wm_run_opts_u64(o, i, &o->seed);
    if (!strcmp(a, "--action-guidance")) {
        const char *val = value(o, i);
        double w;
        if (!val) return -1;
        if (!wm_cli_parse_double(val, 0.0, WM_MAX_ACTION_GUIDANCE, &w))
            return wm_cli_usage_error("--action-guidance: '%s' is not a number in [0, %g]", val, WM_MAX_ACTION_GUIDANCE), -1;
        o->action_guidance = (float)w;
        return 1;
    }
    if (!strcmp(a, "--random-weights")) {
        o->random_weights = 1;
        /* an optional SEED follows */
        if (t & WM_RUN_OPT_WEIGHT_SEED && *i + 1 < o->argc && wm_cli_parse_u64(o->argv[*i + 1], &o->weight_seed))
            ++*i;
        return 1;
    }
    if (!strcmp(a, "--threads")) return wm_run_opts_int(o, i, 0, 4096, "an integer in [0, 4096]", &o->threads);
    if (!strcmp(a, "--backend")) {
        const char *val = value(o, i);
        if (!val) return -1;
        o->backend = wm_host_backend_parse(val);
        if (o->backend < 0) return wm_cli_usage_error("--backend: '%s' is not one of cpu, cuda, auto", val), -1;
        return 1;
    }
    if (t & WM_RUN_OPT_PROMPT) {
        if (!strcmp(a, "--prompt")) return wm_run_opts_str(o, i, &o->prompt);
        if (!strcmp(a, "--prompt-embedding")) return wm_run_opts_str(o, i, &o->prompt_embedding);
    }
    if (t & WM_RUN_OPT_ACTIONS && !strcmp(a, "--actions")) return wm_run_opts_str(o, i, &o->actions);
    if (t & WM_RUN_OPT_FRAMES && !strcmp(a, "--frames")) {
        char what[64] = "a positive frame count";
        if (o->frames_max < ((long long)1 << 40)) snprintf(what, sizeof what, "a frame count in [1, %lld]", o->frames_max);
        return wm_run_opts_ll(o, i, 1, o->frames_max, what, &o->frames);
    }
    if (t & WM_RUN_OPT_CACHE) {
        if (!strcmp(a, "--window")) return wm_run_opts_int(o, i, -1, INT_MAX, "-1 or a frame count", &o->window);
        if (!strcmp(a, "--sinks")) return wm_run_opts_int(o, i, 0, INT_MAX, "a frame count", &o->sinks);
    }
    if (t & WM_RUN_OPT_MAX_CACHE && !strcmp(a, "--max-cache"))
        return wm_run_opts_int(o, i, 0, INT_MAX, "a frame count", &o->max_cache);
    if (t & WM_RUN_OPT_REPORT) {
        if (!strcmp(a, "--json")) return wm_run_opts_str(o, i, &o->json);
        if (!strcmp(a, "--label")) return wm_run_opts_str(o, i, &o->label);
    }
    if (t & WM_RUN_OPT_VERBOSITY) {
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) return o->quiet = 1;
        if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) return o->verbose = 1;
    }
    return 0;
}

int wm_run_opts_check(const wm_run_opts *o) {
    if (o->prompt && o->prompt_embedding)
        return wm_cli_usage_error("--prompt and --prompt-embedding exclude each other"), -1;
    return 0;
}

int wm_run_opts_parse_args(wm_run_opts *o, void (*usage)(FILE *), wm_run_opts_own_fn own, void *user) {
    for (int i = 1; i < o->argc; i++) {
        const char *a = o->argv[i];
        int r = wm_run_opts_parse(o, &i);
        if (r == 0 && own) r = own(o, &i, user);
        if (r < 0) return WM_CLI_EXIT_USAGE; /* the message is printed */
        if (r > 0) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        return wm_cli_usage_error("unknown argument '%s'", a);
    }
    return 0;
}

void wm_run_opts_model_params(const wm_run_opts *o, wm_model_params *mp) {
    mp->path = o->model;
    mp->random_weights = o->random_weights;
    mp->weight_seed = o->weight_seed;
    mp->backend = o->backend;
    mp->n_threads = o->threads;
}

void wm_run_opts_session_params(const wm_run_opts *o, wm_session_params *sp) {
    sp->seed = o->seed;
    sp->action_guidance = o->action_guidance;
    if (o->takes & WM_RUN_OPT_CACHE) {
        sp->window_frames = o->window;
        sp->sink_frames = o->sinks;
    }
    if (o->takes & WM_RUN_OPT_MAX_CACHE) sp->max_cache_frames = o->max_cache;
}

void wm_run_opts_apply_accel(const wm_run_opts *o, wm_accel_params *a) {
    for (int k = 0; k < o->n_accel; k++) {
        int j = o->accel_argi[k];
        wm_accel_parse_arg(o->argc, o->argv, &j, a); /* checked while parsing */
    }
}
