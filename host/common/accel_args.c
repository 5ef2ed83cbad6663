/* accel_args.c - parsing of the acceleration flags (accel_args.h). */
#include "accel_args.h"

#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char wm_accel_args_help[] =
    "  --accel all|none        every acceleration on (defaults below) or off\n"
    "  --tempcache             TempCache: merge cache keys of similar content (default off)\n"
    "  --tc-threshold X        TempCache cosine threshold of pre-RoPE keys (default 0.95)\n"
    "  --tc-budget N           TempCache cache budget, tokens per layer (default: the cache's size)\n"
    "  --annsa                 AnnSA: block-sparse self-attention in LSH buckets (default off)\n"
    "  --sa-bits N             AnnSA hash bits per table, 1..8 (default 1)\n"
    "  --sa-tables N           AnnSA hash tables, 1..4 (default 1)\n"
    "  --sa-dense-steps X      fraction of denoising steps kept dense (default 0.3)\n"
    "  --sa-layers MASK        bit mask of the sparse layers, e.g. 0xfffffffc (default all)\n"
    "  --annca                 AnnCA: cross-attention to the prompt tokens in the frame's buckets\n"
    "  --ca-bits N             AnnCA hash bits per table, 1..8 (default 2)\n"
    "  --ca-tables N           AnnCA hash tables, 1..4 (default 2)\n"
    "  --ca-min-tokens N       AnnCA only on models whose prompt context has >= N tokens (default 64; 0 = any)\n"
    "  --recall-probe N        measure attention recall on N sampled queries per chunk (slow)\n";

static int int_value(const char *flag, const char *v, long long lo, long long hi, long long *out) {
    if (!v) {
        wm_cli_usage_error("%s needs a value", flag);
        return 0;
    }
    if (!wm_cli_parse_ll(v, lo, hi, out)) {
        wm_cli_usage_error("%s: '%s' is not an integer in [%lld, %lld]", flag, v, lo, hi);
        return 0;
    }
    return 1;
}

static int float_value(const char *flag, const char *v, float *out) {
    if (!v) {
        wm_cli_usage_error("%s needs a value", flag);
        return 0;
    }
    double d;
    if (!wm_cli_parse_double(v, -HUGE_VAL, HUGE_VAL, &d)) {
        wm_cli_usage_error("%s: '%s' is not a number", flag, v);
        return 0;
    }
    *out = (float)d;
    return 1;
}

int wm_accel_parse_arg(int argc, char **argv, int *i, wm_accel_params *a) {
    const char *f = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long n;
    if (!strcmp(f, "--tempcache")) a->tempcache = 1;
    else if (!strcmp(f, "--annsa")) a->annsa = 1;
    else if (!strcmp(f, "--annca")) a->annca = 1;
    else if (!strcmp(f, "--accel")) {
        if (!v || (strcmp(v, "all") && strcmp(v, "none"))) {
            wm_cli_usage_error("--accel: '%s' is not all or none", v ? v : "");
            return -1;
        }
        a->tempcache = a->annsa = a->annca = !strcmp(v, "all");
        ++*i;
    } else if (!strcmp(f, "--tc-threshold")) {
        if (!float_value(f, v, &a->tc_threshold)) return -1;
        ++*i;
    } else if (!strcmp(f, "--tc-budget")) {
        if (!int_value(f, v, 0, (long long)1 << 40, &n)) return -1;
        a->tc_budget_tokens = n;
        ++*i;
    } else if (!strcmp(f, "--sa-bits") || !strcmp(f, "--ca-bits")) {
        if (!int_value(f, v, 1, 8, &n)) return -1;
        *(f[2] == 's' ? &a->sa_bits : &a->ca_bits) = (int)n;
        ++*i;
    } else if (!strcmp(f, "--sa-tables") || !strcmp(f, "--ca-tables")) {
        if (!int_value(f, v, 1, 4, &n)) return -1;
        *(f[2] == 's' ? &a->sa_tables : &a->ca_tables) = (int)n;
        ++*i;
    } else if (!strcmp(f, "--sa-dense-steps")) {
        if (!float_value(f, v, &a->sa_dense_steps)) return -1;
        ++*i;
    } else if (!strcmp(f, "--sa-layers")) {
        char *end = NULL;
        errno = 0;
        unsigned long long m = v ? strtoull(v, &end, 0) : 0;
        if (!v || end == v || *end || errno) {
            wm_cli_usage_error("--sa-layers: '%s' is not a bit mask", v ? v : "");
            return -1;
        }
        a->sa_layers = m;
        ++*i;
    } else if (!strcmp(f, "--ca-min-tokens")) {
        if (!int_value(f, v, 0, 1 << 20, &n)) return -1;
        a->ca_min_tokens = (int)n;
        ++*i;
    } else if (!strcmp(f, "--recall-probe")) {
        if (!int_value(f, v, 0, 256, &n)) return -1;
        a->recall_probe = (int)n;
        ++*i;
    } else
        return 0;
    return 1;
}

void wm_accel_describe(const wm_accel_params *a, char *buf, int size) {
    int n = 0;
    buf[0] = 0;
    if (a->tempcache)
        n += snprintf(buf + n, (size_t)(size - n), "tempcache(%.2f, budget %lld)", a->tc_threshold,
                      (long long)a->tc_budget_tokens);
    if (a->annsa && n < size)
        n += snprintf(buf + n, (size_t)(size - n), "%sannsa(%d bits x %d)", n ? " + " : "", a->sa_bits, a->sa_tables);
    if (a->annca && n < size)
        n += snprintf(buf + n, (size_t)(size - n), "%sannca(%d bits x %d, from %d prompt tokens)", n ? " + " : "",
                      a->ca_bits, a->ca_tables, a->ca_min_tokens);
    if (!n) snprintf(buf, (size_t)size, "dense");
}
