/* run_opts.h - the command-line options of the tools that run a model from the command line
 * (wm-run, wm-accel-eval): which plugin and model, the session (backend, threads, cache policy,
 * seed, prompt), how many frames, an action script, the acceleration flags (accel_args.h, kept in
 * order to be applied once the plugin is loaded) and verbosity. Each tool parses its own options
 * around these, so every tool spells and checks them the same way; the help texts stay with the
 * tools, which describe their own defaults. */
#ifndef WM_HOST_RUN_OPTS_H
#define WM_HOST_RUN_OPTS_H

#include "wm.h"

#include <stdint.h>

typedef struct wm_run_opts {
    const char *plugin, *model, *prompt, *prompt_embedding, *actions;
    int random_weights;      /* --random-weights [SEED] */
    uint64_t weight_seed, seed;
    long long frames, frames_max;
    int backend, threads;
    int window, sinks;       /* -2 / -1: the model's own policy */
    int quiet, verbose;
    /* the acceleration flags, by their index in argv (checked while parsing) */
    int argc;
    char **argv;
    int accel_argi[256], n_accel;
    int module_flag;         /* --accel/--tempcache/--annsa/--annca was given */
} wm_run_opts;

/* Defaults: `frames` frames (at most frames_max), the automatic backend, the model's cache policy. */
void wm_run_opts_init(wm_run_opts *o, int argc, char **argv, long long frames, long long frames_max);

/* If argv[*i] is one of these options, takes it (and its value: *i advances) and returns 1;
 * returns 0 when it is not one of them, -1 after printing a usage error. */
int wm_run_opts_parse(wm_run_opts *o, int *i);

/* The checks between options once all are parsed: 0, or -1 after printing a usage error. */
int wm_run_opts_check(const wm_run_opts *o);

#endif
