/* run_opts.h - the command-line options of the tools that run a model (wm-run, wm-accel-eval,
 * wm-bench, wm-play): which plugin and model, the session (backend, threads, cache policy, seed,
 * prompt), how many frames, an action script, the acceleration flags (accel_args.h, kept in order to
 * be applied once the plugin is loaded) and verbosity. Each tool parses its own options around these,
 * so every tool spells and checks them the same way; the help texts and the defaults stay with the
 * tools, which describe them (a tool sets its own defaults in the struct after wm_run_opts_init). */
#ifndef WM_HOST_RUN_OPTS_H
#define WM_HOST_RUN_OPTS_H

#include "wm.h"

#include <stdint.h>

/* The options a tool takes beyond the ones every tool does (--plugin, --model, --random-weights,
 * --backend, --threads, --seed and the acceleration flags): an option of a group the tool leaves out
 * is not recognised by wm_run_opts_parse, so that it stays an unknown option of that tool. */
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
    int quiet, verbose;
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

/* If argv[*i] is one of these options, takes it (and its value: *i advances) and returns 1;
 * returns 0 when it is not one of them, -1 after printing a usage error. */
int wm_run_opts_parse(wm_run_opts *o, int *i);

/* The checks between options once all are parsed (--prompt and --prompt-embedding exclude each
 * other): 0, or -1 after printing a usage error. */
int wm_run_opts_check(const wm_run_opts *o);

#endif
