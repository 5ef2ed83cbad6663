/* accel_args.h - the command-line flags of the accelerations (docs/ACCEL.md), shared by wm-run,
 * wm-bench and wm-play so that every host spells them the same way. */
#ifndef WM_HOST_ACCEL_ARGS_H
#define WM_HOST_ACCEL_ARGS_H

#include "wm.h"

/* Help text of the flags (one option per line, indented two spaces). */
extern const char wm_accel_args_help[];

/* If argv[*i] is an acceleration flag, applies it (consuming its value: *i advances) and returns 1;
 * returns 0 when it is not one, -1 after printing a usage error (bad or missing value). */
int wm_accel_parse_arg(int argc, char **argv, int *i, wm_accel_params *a);

/* "tempcache(0.95, 28080 tokens) + annsa(3 bits x 1) + annca(3 bits x 2)" or "dense". */
void wm_accel_describe(const wm_accel_params *a, char *buf, int size);

#endif
