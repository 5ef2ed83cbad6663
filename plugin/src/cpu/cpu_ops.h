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
size_t wm_cpu_img_bytes(wm_backend *be, int C, int H, int W);
void wm_cpu_img_from_f32(wm_backend *be, void *img, const float *x, int C, int H, int W);
void wm_cpu_img_to_f32(wm_backend *be, float *x, const void *img, int C, int H, int W);
void wm_cpu_img_conv(wm_backend *be, void *y, const void *x, const wm_weight *W, const wm_weight *b, int o0,
                     int Cin, int Cout, int H, int Wd, int k, const void *res, int relu);
void wm_cpu_img_upsample2x(wm_backend *be, void *y, const void *x, int C, int H, int W);
void wm_cpu_img_concat(wm_backend *be, void *y, const void *a, const void *b, int C, int H, int W);
void wm_cpu_img_copy(wm_backend *be, void *y, const void *x, int C, int H, int W);
void wm_cpu_tanh_clamp(wm_backend *be, float *x, size_t n, float limit);
void wm_cpu_to_rgb8(wm_backend *be, uint8_t *rgb, size_t pitch, const float *x, int n, int H, int W);

/* A CPU K/V store: two fp32 arrays of rows x dim. */
struct wm_kv {
    float *k, *v;
    float *bias;  /* [rows] additive logit bias, NULL until kv_set_bias */
    float *match; /* [rows, dim] unit-norm pre-RoPE keys (TempCache), NULL until kv_write/load_match */
    int64_t rows;
    int dim;
};

/* attention.c */
/* Which keys query i of head h sees: a mask sets row[j] = -inf for the others (after the bias). */
typedef void (*wm_cpu_mask_fn)(const void *ctx, int h, int i, float *row, int Mk);
/* Softmax attention over kv rows [0, Mk) with an optional mask (NULL = dense); rows with every key
 * masked give zeros. */
void wm_cpu_attention_masked(float *out, const float *q, const wm_kv *kv, int Mk, int Mq, int H, int D,
                             float scale, wm_cpu_mask_fn mask, const void *ctx);
void wm_cpu_attention(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                      int H, int D, float scale);

/* accel.c: TempCache's store ops and AnnSA/AnnCA (docs/ACCEL.md, contracts in backend.h) */
void wm_cpu_kv_write_match(wm_backend *be, wm_kv *kv, int64_t row, const float *x, int64_t n);
void wm_cpu_kv_read_match(wm_backend *be, const wm_kv *kv, float *host, int64_t row, int64_t n);
void wm_cpu_kv_load_match(wm_backend *be, wm_kv *kv, const float *host, int64_t row, int64_t n);
void wm_cpu_kv_match(wm_backend *be, const wm_kv *kv, int64_t q0, int64_t nq, int64_t c0, int64_t nc, int64_t *best,
                     float *sim);
void wm_cpu_kv_merge(wm_backend *be, wm_kv *kv, const int64_t *dst, const int64_t *src, const float *a,
                     const float *b, int64_t n);
void wm_cpu_kv_compact(wm_backend *be, wm_kv *kv, const int64_t *keep, int64_t n);
wm_lsh *wm_cpu_lsh_new(wm_backend *be, int D, int bits, int tables, const float *proj);
void wm_cpu_lsh_free(wm_backend *be, wm_lsh *lsh);
void wm_cpu_attention_annsa(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_cache, int Mq,
                            int H, int D, float scale, const wm_lsh *lsh);
void wm_cpu_attention_annca(wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n_rows, int Mq,
                            int H, int D, float scale, int group, const wm_lsh *lsh);
void wm_cpu_lsh_take_counts(wm_backend *be, double out[4]);
/* Buckets of n head vectors x + i*ld (lsh->D floats each): buckets[i*tables + t] = sum_b
 * [proj[t*bits+b] . x >= 0] << b, computed by FAISS. Returns WM_OK, or a failure status with the
 * error set. Exposed for the tests. */
wm_status wm_cpu_lsh_buckets(const wm_lsh *lsh, int64_t n, const float *x, int64_t ld, uint8_t *buckets);

/* The density counters behind lsh_take_counts, kept in the backend (backend_cpu.c). */
typedef struct wm_cpu_lsh_counts {
    double sa_attended, sa_total, ca_selected, ca_total;
} wm_cpu_lsh_counts;
wm_cpu_lsh_counts *wm_cpu_counts(wm_backend *be);

#endif
