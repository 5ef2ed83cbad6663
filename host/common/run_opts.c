/* run_opts.c - see run_opts.h. */
#include "run_opts.h"

#include "accel_args.h"
#include "cli.h"
#include "wm_host.h"

#include <limits.h>
#include <stdio.h>
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

static int int_value(const wm_run_opts *o, int *i, long long lo, long long hi, const char *what, long long *v) {
    const char *a = o->argv[*i], *val = value(o, i);
    if (!val) return -1;
    if (!wm_cli_parse_ll(val, lo, hi, v)) return wm_cli_usage_error("%s: '%s' is not %s", a, val, what), -1;
    return 1;
}

static int u64_value(const wm_run_opts *o, int *i, uint64_t *v) {
    const char *a = o->argv[*i], *val = value(o, i);
    if (!val) return -1;
    if (!wm_cli_parse_u64(val, v)) return wm_cli_usage_error("%s: '%s' is not a non-negative integer", a, val), -1;
    return 1;
}

static int str_value(const wm_run_opts *o, int *i, const char **dst) {
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
    long long v;
    int k;
    const unsigned t = o->takes;
    if (!strcmp(a, "--plugin")) return str_value(o, i, &o->plugin);
    if (!strcmp(a, "--model")) return str_value(o, i, &o->model);
    if (!strcmp(a, "--seed")) return u64_value(o, i, &o->seed);
    if (!strcmp(a, "--random-weights")) {
        o->random_weights = 1;
        /* an optional SEED follows */
        if (t & WM_RUN_OPT_WEIGHT_SEED && *i + 1 < o->argc && wm_cli_parse_u64(o->argv[*i + 1], &o->weight_seed))
            ++*i;
        return 1;
    }
    if (!strcmp(a, "--threads")) {
        if ((k = int_value(o, i, 0, 4096, "an integer in [0, 4096]", &v)) == 1) o->threads = (int)v;
        return k;
    }
    if (!strcmp(a, "--backend")) {
        const char *val = value(o, i);
        if (!val) return -1;
        o->backend = wm_host_backend_parse(val);
        if (o->backend < 0) return wm_cli_usage_error("--backend: '%s' is not one of cpu, cuda, auto", val), -1;
        return 1;
    }
    if (t & WM_RUN_OPT_PROMPT) {
        if (!strcmp(a, "--prompt")) return str_value(o, i, &o->prompt);
        if (!strcmp(a, "--prompt-embedding")) return str_value(o, i, &o->prompt_embedding);
    }
    if (t & WM_RUN_OPT_ACTIONS && !strcmp(a, "--actions")) return str_value(o, i, &o->actions);
    if (t & WM_RUN_OPT_FRAMES && !strcmp(a, "--frames")) {
        char what[64] = "a positive frame count";
        if (o->frames_max < ((long long)1 << 40)) snprintf(what, sizeof what, "a frame count in [1, %lld]", o->frames_max);
        if ((k = int_value(o, i, 1, o->frames_max, what, &v)) == 1) o->frames = v;
        return k;
    }
    if (t & WM_RUN_OPT_CACHE) {
        if (!strcmp(a, "--window")) {
            if ((k = int_value(o, i, -1, INT_MAX, "-1 or a frame count", &v)) == 1) o->window = (int)v;
            return k;
        }
        if (!strcmp(a, "--sinks")) {
            if ((k = int_value(o, i, 0, INT_MAX, "a frame count", &v)) == 1) o->sinks = (int)v;
            return k;
        }
    }
    if (t & WM_RUN_OPT_MAX_CACHE && !strcmp(a, "--max-cache")) {
        if ((k = int_value(o, i, 0, INT_MAX, "a frame count", &v)) == 1) o->max_cache = (int)v;
        return k;
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
