/* run_opts.h - the command-line options of the tools that run a model (wm-run, wm-accel-eval,
 * wm-bench, wm-play): which plugin and model, the session (backend, threads, cache policy, seed,
 * prompt), how many frames, an action script, the acceleration flags (accel_args.h, kept in order to
 * be applied once the plugin is loaded), verbosity and the JSON report. wm_run_opts_parse_args reads
 * the whole command line: these options, --help, and the tool's own options through a callback, so
 * every tool spells and checks them the same way. The help texts and the defaults stay with the
 * tools, which describe them (a tool sets its own defaults in the struct after wm_run_opts_init). */
#ifndef WM_HOST_RUN_OPTS_H
#define WM_HOST_RUN_OPTS_H

#include "wm.h"

#include <stdint.h>
#include <stdio.h>

/* The options a tool takes beyond the ones every tool does (--plugin, --model, --random-weights,
 * --backend, --threads, --seed, --action-guidance and the acceleration flags): an option of a group the tool leaves out
 * is not recognised, so that it stays an unknown option of that tool. */
enum {
    WM_RUN_OPT_PROMPT = 1 << 0,    /* --prompt TEXT, --prompt-embedding FILE */
    WM_RUN_OPT_FRAMES = 1 << 1,    /* --frames N, in [1, frames_max] */
    WM_RUN_OPT_ACTIONS = 1 << 2,   /* --actions FILE */
    WM_RUN_OPT_CACHE = 1 << 3,     /* --window W, --sinks S */
    WM_RUN_OPT_MAX_CACHE = 1 << 4, /* --max-cache N */
    WM_RUN_OPT_VERBOSITY = 1 << 5, /* --quiet / -q, --verbose / -v */
    /* --random-weights takes an optional SEED after it; without this group it is a bare flag and the
     * weight seed is the tool's (wm-bench: fixed, wm-play: its --weight-seed) */
    WM_RUN_OPT_WEIGHT_SEED = 1 << 6,
    /* --json FILE (where the tool writes its result as JSON; the tool's default, and whether '-'
     * means standard output, wm-accel-eval's, are the tool's), --label TEXT (copied into it) */
    WM_RUN_OPT_REPORT = 1 << 7,
};

typedef struct wm_run_opts {
    unsigned takes;          /* WM_RUN_OPT_* */
    const char *plugin, *model, *prompt, *prompt_embedding, *actions;
    int random_weights;      /* --random-weights [SEED] */
    uint64_t weight_seed, seed;
    long long frames, frames_max;
    int backend, threads;
    int window, sinks;       /* -2 / -1: the model's own policy */
    int max_cache;           /* 0: the model's capacity of the unbounded policy */
    float action_guidance;   /* --action-guidance W; < 0: the model's */
    int quiet, verbose;
    const char *json, *label; /* NULL when not given */
    /* the acceleration flags, by their index in argv (checked while parsing) */
    int argc;
    char **argv;
    int accel_argi[256], n_accel;
    int module_flag;         /* --accel/--tempcache/--annsa/--annca was given */
} wm_run_opts;

/* Defaults: the groups of options `takes` (WM_RUN_OPT_*), `frames` frames (at most frames_max; both
 * unused without WM_RUN_OPT_FRAMES), the automatic backend, the model's cache policy, seeds 0. */
void wm_run_opts_init(wm_run_opts *o, int argc, char **argv, unsigned takes, long long frames,
                      long long frames_max);

/* A tool's own options: if argv[*i] is one, takes it (and its value: *i advances) and returns 1;
 * 0 when it is not one of them, -1 after printing a usage error. `user` is wm_run_opts_parse_args'. */
typedef int (*wm_run_opts_own_fn)(wm_run_opts *o, int *i, void *user);

/* The whole command line: each argument is one of these options, one of the tool's own (`own`, may
 * be NULL) or --help / -h (`usage` on standard output, then exit 0); anything else is an unknown
 * argument. Returns 0, or WM_CLI_EXIT_USAGE after printing the error. The checks between options are
 * wm_run_opts_check's and the tool's. */
int wm_run_opts_parse_args(wm_run_opts *o, void (*usage)(FILE *), wm_run_opts_own_fn own, void *user);

/* One argument: as wm_run_opts_own_fn, for these options. */
int wm_run_opts_parse(wm_run_opts *o, int *i);

/* The checks between options once all are parsed (--prompt and --prompt-embedding exclude each
 * other): 0, or -1 after printing a usage error. */
int wm_run_opts_check(const wm_run_opts *o);

/* The values of a tool's own options, with the messages of these: argv[*i]'s value (*i advances)
 * into *dst; 1, or -1 after printing a usage error (no value; not an integer in [lo, hi], where
 * `what` says what it must be: "a positive integer"; not a non-negative 64-bit integer). */
int wm_run_opts_str(const wm_run_opts *o, int *i, const char **dst);
int wm_run_opts_int(const wm_run_opts *o, int *i, int lo, int hi, const char *what, int *dst);
int wm_run_opts_ll(const wm_run_opts *o, int *i, long long lo, long long hi, const char *what, long long *dst);
int wm_run_opts_u64(const wm_run_opts *o, int *i, uint64_t *dst);

/* The options into the plugin's parameters, after its *_params_init: the model's path (o->model),
 * random weights, backend and threads; the session's seed and, where the tool takes them, its cache
 * policy (--window, --sinks, --max-cache). */
void wm_run_opts_model_params(const wm_run_opts *o, wm_model_params *mp);
void wm_run_opts_session_params(const wm_run_opts *o, wm_session_params *sp);

/* The acceleration flags, in their order on the command line, over *a (the plugin's defaults, or a
 * tool's own starting point). */
void wm_run_opts_apply_accel(const wm_run_opts *o, wm_accel_params *a);

#endif
