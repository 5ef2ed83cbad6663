/* cpu_ops.h - the CPU backend's op implementations, split by family into files of this folder.
 * backend_cpu.c wires them into the wm_backend table. Plain C11 + OpenBLAS + OpenMP: this is the
 * readable reference that every other backend is compared against. */
#ifndef WM_CPU_OPS_H
#define WM_CPU_OPS_H

#include "backend.h"

/* A CPU weight is just an fp32 array. */
struct wm_weight {
    float *data;
    size_t n;
};

/* conv.c: decoder ops (images are [C, H, W] fp32) */
void wm_cpu_conv2d(wm_backend *be, float *y, const float *x, const wm_weight *W, const wm_weight *b,
                   int Cin, int Cout, int H, int Wd, int k);
void wm_cpu_upsample2x(wm_backend *be, float *y, const float *x, int C, int H, int W);
void wm_cpu_tanh_clamp(wm_backend *be, float *x, size_t n, float limit);
void wm_cpu_to_rgb8(wm_backend *be, uint8_t *rgb, size_t pitch, const float *x, int H, int W);

/* A CPU K/V store: two fp32 arrays of rows x dim. */
struct wm_kv {
    float *k, *v;
    float *bias; /* [rows] additive logit bias, NULL until kv_set_bias */
    int64_t rows;
    int dim;
};

/* attention.c */
void wm_cpu_attention(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                      int H, int D, float scale);

#endif
