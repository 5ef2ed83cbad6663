/* weights.h - the model's named parameters.
 *
 * Each component (DiT, decoder, text encoder) lists the tensors it needs in a manifest (name, shape,
 * init kind). One loader then binds a manifest to a safetensors file (checking every name and
 * shape, and refusing tensors the manifest lacks) or to seeded random values. */
#ifndef WM_WEIGHTS_H
#define WM_WEIGHTS_H

#include "backend.h"
#include "wm.h"

typedef enum wm_init_kind {
    WM_INIT_WEIGHT = 0, /* normal / sqrt(fan_in), fan_in = product of dims after the first */
    WM_INIT_BIAS = 1,   /* 0.02 * normal */
    WM_INIT_NORM = 2,   /* 1 + 0.1 * normal */
    WM_INIT_MOD = 3     /* 0.1 * normal */
} wm_init_kind;

#define WM_MAX_TENSOR_NAME 96

typedef struct wm_tensor_spec {
    char name[WM_MAX_TENSOR_NAME];
    int kind;
    int n_dims;
    int64_t shape[5];
    int64_t n_elements;
} wm_tensor_spec;

typedef struct wm_weights {
    int n, cap;
    wm_tensor_spec *specs;
    wm_weight **w; /* w[i] is bound to specs[i] */
    wm_backend *be;
    int64_t n_params;
} wm_weights;

/* Appends a spec; shape given as n_dims int64 values. Name is printf-formatted. */
void wm_weights_add(wm_weights *ws, int kind, int n_dims, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Binds every spec to the tensors of a safetensors file. A tensor of the file that no spec names
 * is an error unless allow_extra (used to load one component, e.g. only the decoder). */
wm_status wm_weights_load(wm_weights *ws, wm_backend *be, const char *path, int allow_extra);
/* Binds every spec to random values (docs/MODEL.md section 1). */
wm_status wm_weights_random(wm_weights *ws, wm_backend *be, uint64_t seed);
/* Finds a bound weight by name; NULL if absent. */
const wm_weight *wm_weights_get(const wm_weights *ws, const char *name);
void wm_weights_free(wm_weights *ws);

#endif
