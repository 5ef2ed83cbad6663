/* harness.h - tiny test helpers: checks that count failures, array comparison in the llm.c style
 * (first elements printed, max abs diff, tolerance atol + rtol*|ref|), skip with exit 77. */
#ifndef WM_HARNESS_H
#define WM_HARNESS_H

#include <stddef.h>
#include <stdio.h>

extern int wm_test_failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            wm_test_failures++;                                                       \
        }                                                                             \
    } while (0)

#define CHECK_STATUS(expr, expected)                                                           \
    do {                                                                                       \
        int st_ = (int)(expr);                                                                 \
        if (st_ != (int)(expected)) {                                                          \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n", __FILE__, __LINE__, \
                    #expr, st_, (int)(expected), wm_get_error());                              \
            wm_test_failures++;                                                                \
        }                                                                                      \
    } while (0)

/* Compares n floats; returns 1 when all |a-b| <= atol + rtol*|ref|. Prints a summary line. */
int wm_test_compare(const char *what, const float *got, const float *ref, size_t n, float atol, float rtol);
/* Elements of a and b whose bits differ; and the check that none do (prints a summary line). */
size_t wm_test_bit_diffs(const float *a, const float *b, size_t n);
int wm_test_check_exact(const char *what, const float *got, const float *ref, size_t n);
/* f rounded to bf16, nearest even (the device's __float2bfloat16_rn on finite values) */
float wm_test_bf16_round(float f);
/* max |x| over n floats */
float wm_test_max_abs(const float *x, size_t n);
/* Exit code for main: prints PASS/FAIL. */
int wm_test_finish(const char *name);
/* Reads a whole file; NULL on failure. */
char *wm_test_read_file(const char *path, size_t *size);
int wm_test_write_file(const char *path, const void *data, size_t size);

const char *wm_get_error(void);

/* The built plugin's API table (dlopen of WM_PLUGIN_PATH); NULL with the reason on stderr. */
struct wm_api;
const struct wm_api *wm_test_plugin_api(void);
/* Loads path on the CPU backend with one thread (random weights when random_weights is set) through
 * api and returns the model; on failure counts it, prints the plugin's message and returns NULL. */
struct wm_model;
struct wm_model *wm_test_load_cpu(const struct wm_api *api, const char *path, int random_weights);
/* Writes a model config into WM_BINARY_DIR/<name>/config.json (for random-weight models); path gets
 * the file's path. Returns 1, or 0 with the reason on stderr. */
int wm_test_write_config(const char *name, const char *json, char *path, size_t size);

/* Backend memory for tests (the gpu_* tests compare backends): n floats allocated on be and, when
 * host is not NULL, filled from it (exits with the backend's message when the allocation fails);
 * and a malloc'ed host copy of n floats of backend memory. Both take n = 0. */
typedef struct wm_backend wm_backend;
float *wm_test_dev(wm_backend *be, const float *host, size_t n);
float *wm_test_get(wm_backend *be, const float *dev, size_t n);

#endif
