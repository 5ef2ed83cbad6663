/* common.c - per-thread error messages, logging, timing, checked allocation. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char g_error[1024];

wm_status wm_set_error(wm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return status;
}

const char *wm_get_error(void) { return g_error; }

static _Thread_local wm_status g_failure = WM_OK;
void wm_note_failure(wm_status status) {
    if (g_failure == WM_OK) g_failure = status;
}
wm_status wm_take_failure(void) {
    wm_status st = g_failure;
    g_failure = WM_OK;
    return st;
}
void wm_clear_error(void) { g_error[0] = 0; }

void wm_log(const wm_logger *lg, wm_log_level level, const char *fmt, ...) {
    if (!lg || !lg->fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lg->fn(lg->user_data, level, buf);
}

double wm_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

void *wm_malloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *wm_calloc(size_t count, size_t n, const char *what) {
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory allocating %zu x %zu bytes for %s", count, n, what);
    return p;
}
