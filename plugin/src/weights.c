/* weights.c - binds a manifest of named tensors to a safetensors file or to seeded random values. */
#include "weights.h"

#include "common.h"
#include "rng.h"
#include "safetensors.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wm_weights_add(wm_weights *ws, int kind, int n_dims, const int64_t *shape, const char *fmt, ...) {
    if (ws->n == ws->cap) {
        int cap = ws->cap ? ws->cap * 2 : 64;
        wm_tensor_spec *s = realloc(ws->specs, (size_t)cap * sizeof *s);
        if (!s) return; /* caught at bind time: the spec count will not match */
        ws->specs = s;
        ws->cap = cap;
    }
    wm_tensor_spec *t = &ws->specs[ws->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->kind = kind;
    t->n_dims = n_dims;
    t->n_elements = 1;
    for (int i = 0; i < n_dims; i++) {
        t->shape[i] = shape[i];
        t->n_elements *= shape[i];
    }
}

static void shape_str(char *buf, size_t n, int n_dims, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static wm_status alloc_slots(wm_weights *ws, wm_backend *be) {
    ws->be = be;
    ws->w = calloc((size_t)ws->n + 1, sizeof *ws->w);
    if (!ws->w) return wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for the weight table");
    ws->n_params = 0;
    for (int i = 0; i < ws->n; i++) ws->n_params += ws->specs[i].n_elements;
    return WM_OK;
}

wm_status wm_weights_load(wm_weights *ws, wm_backend *be, const char *path, int allow_extra) {
    wm_st_file f;
    wm_status st = wm_st_open(&f, path);
    if (st != WM_OK) return st;
    st = alloc_slots(ws, be);
    float *tmp = NULL;
    size_t tmp_n = 0;
    for (int i = 0; st == WM_OK && i < ws->n; i++) {
        const wm_tensor_spec *sp = &ws->specs[i];
        const wm_st_tensor *t = wm_st_find(&f, sp->name);
        if (!t) {
            st = wm_set_error(WM_ERR_SHAPE, "%s: missing tensor '%s'", path, sp->name);
            break;
        }
        int same = t->n_dims == sp->n_dims;
        for (int d = 0; same && d < sp->n_dims; d++) same = t->shape[d] == sp->shape[d];
        if (!same) {
            char want[128], got[128];
            shape_str(want, sizeof want, sp->n_dims, sp->shape);
            shape_str(got, sizeof got, t->n_dims, t->shape);
            st = wm_set_error(WM_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", path, sp->name, got, want);
            break;
        }
        if (t->dtype == WM_DTYPE_U8) {
            st = wm_set_error(WM_ERR_FORMAT, "%s: tensor '%s' is U8, weights must be F32, F16 or BF16", path, sp->name);
            break;
        }
        if ((size_t)sp->n_elements > tmp_n) {
            free(tmp);
            tmp_n = (size_t)sp->n_elements;
            tmp = wm_malloc(tmp_n * sizeof(float), sp->name);
            if (!tmp) { st = WM_ERR_OUT_OF_MEMORY; break; }
        }
        wm_st_to_f32(t, tmp);
        ws->w[i] = be->weight_new(be, tmp, (size_t)sp->n_elements);
        if (!ws->w[i]) st = wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for tensor '%s'", sp->name);
    }
    /* A tensor the model does not know means the checkpoint is for another architecture or config. */
    for (int j = 0; st == WM_OK && !allow_extra && j < f.n_tensors; j++) {
        int known = 0;
        for (int i = 0; i < ws->n && !known; i++) known = strcmp(ws->specs[i].name, f.tensors[j].name) == 0;
        if (!known)
            st = wm_set_error(WM_ERR_SHAPE, "%s: unexpected tensor '%s' (not part of this config's model)", path,
                              f.tensors[j].name);
    }
    free(tmp);
    wm_st_close(&f);
    return st;
}

wm_status wm_weights_random(wm_weights *ws, wm_backend *be, uint64_t seed) {
    wm_status st = alloc_slots(ws, be);
    for (int i = 0; st == WM_OK && i < ws->n; i++) {
        const wm_tensor_spec *sp = &ws->specs[i];
        size_t n = (size_t)sp->n_elements;
        float *tmp = wm_malloc(n * sizeof(float), sp->name);
        if (!tmp) return WM_ERR_OUT_OF_MEMORY;
        wm_normal_fill(tmp, n, seed, 0xFFFF0000ull + (uint64_t)i, 0);
        double fan_in = 1;
        for (int d = 1; d < sp->n_dims; d++) fan_in *= (double)sp->shape[d];
        for (size_t e = 0; e < n; e++) {
            switch (sp->kind) {
            case WM_INIT_WEIGHT: tmp[e] = (float)(tmp[e] / sqrt(fan_in)); break;
            case WM_INIT_BIAS: tmp[e] = 0.02f * tmp[e]; break;
            case WM_INIT_NORM: tmp[e] = 1.0f + 0.1f * tmp[e]; break;
            default: tmp[e] = 0.1f * tmp[e]; break;
            }
        }
        ws->w[i] = be->weight_new(be, tmp, n);
        free(tmp);
        if (!ws->w[i]) st = wm_set_error(WM_ERR_OUT_OF_MEMORY, "out of memory for tensor '%s'", sp->name);
    }
    return st;
}

const wm_weight *wm_weights_get(const wm_weights *ws, const char *name) {
    for (int i = 0; i < ws->n; i++)
        if (strcmp(ws->specs[i].name, name) == 0) return ws->w ? ws->w[i] : NULL;
    return NULL;
}

void wm_weights_free(wm_weights *ws) {
    if (ws->w && ws->be)
        for (int i = 0; i < ws->n; i++)
            if (ws->w[i]) ws->be->weight_free(ws->be, ws->w[i]);
    free(ws->w);
    free(ws->specs);
    memset(ws, 0, sizeof *ws);
}
