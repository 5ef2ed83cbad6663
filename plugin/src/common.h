/* common.h - error reporting, logging and small helpers shared by the plugin's sources. */
#ifndef WM_COMMON_H
#define WM_COMMON_H

#include "wm.h"
#include <stddef.h>
#include <stdint.h>

/* Records a message for api->last_error() on this thread and returns `status`. printf-style. */
wm_status wm_set_error(wm_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *wm_get_error(void);
void wm_clear_error(void);

/* Backend ops return nothing (they may run asynchronously); an op that fails (out of memory, a CUDA
 * error) records it here, per thread, and the sampler checks after each forward, so a chunk fails
 * cleanly with the op's message instead of continuing on garbage. The first failure is kept. */
void wm_note_failure(wm_status status);
/* Returns the recorded failure (WM_OK if none) and clears it. */
wm_status wm_take_failure(void);

/* Logging through the model's callback (may be NULL). */
typedef struct wm_logger {
    wm_log_fn fn;
    void *user_data;
} wm_logger;
void wm_log(const wm_logger *lg, wm_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

double wm_now_ms(void);

/* malloc that records WM_ERR_OUT_OF_MEMORY on failure. */
void *wm_malloc(size_t n, const char *what);
void *wm_calloc(size_t count, size_t n, const char *what);

#endif
