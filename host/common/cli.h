/* cli.h - what the command-line hosts (wm-run, wm-accel-eval, wm-bench, wm-play) share: their error
 * reporting and number parsing, with one set of exit codes. */
#ifndef WM_HOST_CLI_H
#define WM_HOST_CLI_H

#include <stdint.h>

enum { WM_CLI_EXIT_RUNTIME = 1, WM_CLI_EXIT_USAGE = 2 };

/* The program name used in messages ("wm-run"). */
void wm_cli_set_prog(const char *prog);
/* "prog: message\n(try prog --help)" on stderr; returns WM_CLI_EXIT_USAGE. */
int wm_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: error: message" on stderr; returns WM_CLI_EXIT_RUNTIME. */
int wm_cli_runtime_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whole-string integer parses; 0 on junk, overflow or out of [lo, hi]. */
int wm_cli_parse_ll(const char *s, long long lo, long long hi, long long *out);
int wm_cli_parse_u64(const char *s, uint64_t *out);
/* Whole-string finite number in [lo, hi]; 0 otherwise. */
int wm_cli_parse_double(const char *s, double lo, double hi, double *out);

#endif
