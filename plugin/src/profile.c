/* profile.c - per-op timing of any backend, for finding where a forward's time goes (issue 3).
 * WM_PROFILE=1 in the environment at model load wraps the backend's ops: each op waits for the device
 * before and after it runs, so the time it records is its own; the table (with the achieved TFLOP/s
 * of the GEMMs and attentions, from their shapes) is printed to stderr when the model is freed, and
 * written as JSON when WM_PROFILE names a .json file (wm-bench --profile FILE). The waits serialise the pipeline, so the total is larger than an unprofiled
 * run: read the shares, not the sum. One profiled model per process (a developer tool); its sessions'
 * backends are forks that copy the wrapped table (backend.h), so their ops land in the same table, from
 * any thread (the table is updated under a mutex; each op's timing waits only for its own stream). */
#include "common.h"
#include "profile.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPS 48
static wm_backend g_orig; /* the backend's own table */
static struct {
    const char *name;
    double ms, flops;
    long calls;
} g_ops[MAX_OPS];
static int g_n;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* g_ops, g_n: sessions on several threads */
static _Thread_local double g_flops; /* of the op being timed: set by the wrappers that know their work */
static char g_json[512];

static double begin(wm_backend *be) {
    g_orig.sync(be);
    return wm_now_ms();
}
static void end(wm_backend *be, const char *name, double t0) {
    g_orig.sync(be);
    const double dt = wm_now_ms() - t0;
    pthread_mutex_lock(&g_lock);
    int i = 0;
    while (i < g_n && strcmp(g_ops[i].name, name) != 0) i++;
    if (i == g_n && g_n < MAX_OPS) g_ops[g_n++].name = name;
    if (i < g_n) {
        g_ops[i].ms += dt;
        g_ops[i].calls++;
        g_ops[i].flops += g_flops;
    }
    pthread_mutex_unlock(&g_lock);
    g_flops = 0;
}

#define WRAP(op, params, args) WRAP_F(op, params, args, 0)
/* flops: the op's floating-point work (a multiply-add counts 2) */
/* A fused op that a backend composes from primitives (fused_ref.c) calls wrapped ops in turn: only the
 * outermost call is timed, so nothing counts twice. */
static _Thread_local int g_depth; /* per thread: sessions on other threads time their own ops */
#define WRAP_F(op, params, args, flops)        \
    static void p_##op params {                \
        if (g_depth) {                         \
            g_orig.op args;                    \
            return;                            \
        }                                      \
        const double t0 = begin(be);           \
        g_depth++;                             \
        g_orig.op args;                        \
        g_depth--;                             \
        g_flops = (flops);                     \
        end(be, #op, t0);                      \
    }
WRAP_F(linear, (wm_backend *be, float *y, const float *x, const wm_weight *W, const wm_weight *b, int M, int K, int N),
       (be, y, x, W, b, M, K, N), 2.0 * M * K * N)
WRAP_F(ffn, (wm_backend *be, float *y, const float *x, const wm_weight *W0, const wm_weight *b0, const wm_weight *W2,
           const wm_weight *b2, int M, int K, int F, int N, float *hidden),
     (be, y, x, W0, b0, W2, b2, M, K, F, N, hidden), 2.0 * M * F * ((double)K + N))
/* the fused sub-layers: their GEMMs' work (attention and the elementwise steps inside are not counted) */
WRAP_F(self_attn_in, (wm_backend *be, const wm_self_attn_in *a), (be, a), 6.0 * a->M * a->C * (double)a->C)
WRAP_F(self_attn, (wm_backend *be, const wm_self_attn *a), (be, a), 8.0 * a->in.M * a->in.C * (double)a->in.C)
WRAP_F(cross_attn, (wm_backend *be, const wm_cross_attn *a), (be, a), 4.0 * a->M * a->C * (double)a->C)
WRAP_F(ffn_block, (wm_backend *be, const wm_ffn_block *a), (be, a), 4.0 * a->M * a->F * (double)a->C)
WRAP(silu, (wm_backend *be, float *x, size_t n), (be, x, n))
WRAP(gelu_tanh, (wm_backend *be, float *x, size_t n), (be, x, n))
WRAP(axpby, (wm_backend *be, float *y, float a, const float *x, float b, size_t n), (be, y, a, x, b, n))
WRAP(add, (wm_backend *be, float *y, const float *x, size_t n), (be, y, x, n))
WRAP(copy, (wm_backend *be, float *d, const float *s, size_t n), (be, d, s, n))
WRAP(upload, (wm_backend *be, float *d, const float *s, size_t n), (be, d, s, n))
WRAP(layernorm_mod, (wm_backend *be, float *y, const float *x, int M, int C, float eps, const float *shift,
                     const float *scale, int stride, int rpg),
     (be, y, x, M, C, eps, shift, scale, stride, rpg))
WRAP(layernorm_affine, (wm_backend *be, float *y, const float *x, int M, int C, float eps, const wm_weight *w,
                        const wm_weight *b),
     (be, y, x, M, C, eps, w, b))
WRAP(rmsnorm, (wm_backend *be, float *x, int M, int C, float eps, const wm_weight *w), (be, x, M, C, eps, w))
WRAP(rope, (wm_backend *be, float *x, int M, int H, int D, int64_t f0, int gh, int gw), (be, x, M, H, D, f0, gh, gw))
WRAP(gated_add, (wm_backend *be, float *x, const float *y, int M, int C, const float *g, int stride, int rpg),
     (be, x, y, M, C, g, stride, rpg))
WRAP(kv_write, (wm_backend *be, wm_kv *kv, int64_t row, const float *k, const float *v, int64_t n),
     (be, kv, row, k, v, n))
WRAP(kv_write_match, (wm_backend *be, wm_kv *kv, int64_t row, const float *x, int64_t n), (be, kv, row, x, n))
WRAP_F(attention, (wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n, int Mq, int H, int D,
                   float scale),
       (be, out, q, kv, n, Mq, H, D, scale), 4.0 * Mq * (double)n * H * D)
WRAP(attention_annsa, (wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t nc, int Mq, int H,
                       int D, float scale, const wm_lsh *l),
     (be, out, q, kv, nc, Mq, H, D, scale, l))
WRAP(attention_annca, (wm_backend *be, float *out, const float *q, const wm_kv *kv, int64_t n, int Mq, int H,
                       int D, float scale, int group, const wm_lsh *l),
     (be, out, q, kv, n, Mq, H, D, scale, group, l))
WRAP(kv_match, (wm_backend *be, const wm_kv *kv, int64_t q0, int64_t nq, int64_t c0, int64_t nc, int64_t *best,
                float *sim),
     (be, kv, q0, nq, c0, nc, best, sim))
WRAP(kv_merge, (wm_backend *be, wm_kv *kv, const int64_t *d, const int64_t *s, const float *a, const float *b,
                int64_t n),
     (be, kv, d, s, a, b, n))
WRAP(kv_compact, (wm_backend *be, wm_kv *kv, const int64_t *keep, int64_t n), (be, kv, keep, n))
WRAP(kv_move, (wm_backend *be, wm_kv *kv, int64_t d, int64_t s, int64_t n), (be, kv, d, s, n))
WRAP(kv_copy, (wm_backend *be, wm_kv *d, int64_t dr, const wm_kv *s, int64_t sr, int64_t n, int H, int D, int64_t t),
     (be, d, dr, s, sr, n, H, D, t))
WRAP(patchify, (wm_backend *be, float *p, const float *l, int F, int C, int H, int W, int ph, int pw),
     (be, p, l, F, C, H, W, ph, pw))
WRAP(unpatchify, (wm_backend *be, float *l, const float *t, int F, int C, int H, int W, int ph, int pw),
     (be, l, t, F, C, H, W, ph, pw))
WRAP(noise, (wm_backend *be, float *d, size_t n, uint64_t seed, uint64_t stream), (be, d, n, seed, stream))
WRAP_F(img_conv, (wm_backend *be, void *y, const void *x, const wm_weight *W, const wm_weight *b, int o0, int Cin,
                  int Cout, int H, int Wd, int k, const void *res, int relu),
       (be, y, x, W, b, o0, Cin, Cout, H, Wd, k, res, relu), 2.0 * Cout * Cin * k * k * (double)H * Wd)
WRAP(img_upsample2x, (wm_backend *be, void *y, const void *x, int C, int H, int W), (be, y, x, C, H, W))
WRAP(img_concat, (wm_backend *be, void *y, const void *a, const void *b, int C, int H, int W), (be, y, a, b, C, H, W))
WRAP(img_copy, (wm_backend *be, void *y, const void *x, int C, int H, int W), (be, y, x, C, H, W))
WRAP(img_from_f32, (wm_backend *be, void *y, const float *x, int C, int H, int W), (be, y, x, C, H, W))
WRAP(img_to_f32, (wm_backend *be, float *y, const void *x, int C, int H, int W), (be, y, x, C, H, W))
WRAP(to_rgb8, (wm_backend *be, uint8_t *rgb, size_t pitch, const float *x, int n, int H, int W),
     (be, rgb, pitch, x, n, H, W))

static int cmp_ms(const void *a, const void *b) {
    const double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x < y ? 1 : x > y ? -1 : 0;
}

static void p_destroy(wm_backend *be) {
    double total = 0, rows[MAX_OPS][2];
    for (int i = 0; i < g_n; i++) total += g_ops[i].ms, rows[i][0] = g_ops[i].ms, rows[i][1] = i;
    qsort(rows, (size_t)g_n, sizeof rows[0], cmp_ms);
    fprintf(stderr, "wm profile (%s, each op synchronised): %.1f ms in ops\n", be->device_name, total);
    FILE *js = g_json[0] ? fopen(g_json, "w") : NULL;
    if (js) fprintf(js, "{\n  \"device\": \"%s\", \"note\": \"each op synchronised\", \"total_ms\": %.3f, \"ops\": [", be->device_name, total);
    for (int r = 0; r < g_n; r++) {
        const int i = (int)rows[r][1];
        const double tfs = g_ops[i].flops > 0 && g_ops[i].ms > 0 ? g_ops[i].flops / (g_ops[i].ms * 1e9) : 0;
        char tf[32] = "";
        if (tfs > 0) snprintf(tf, sizeof tf, "%7.1f TFLOP/s", tfs);
        fprintf(stderr, "  %5.1f%% %10.2f ms %8ld calls %8.3f ms/call %15s  %s\n", total > 0 ? 100 * g_ops[i].ms / total : 0,
                g_ops[i].ms, g_ops[i].calls, g_ops[i].ms / (double)g_ops[i].calls, tf, g_ops[i].name);
        if (js)
            fprintf(js, "%s\n    {\"op\": \"%s\", \"ms\": %.3f, \"calls\": %ld, \"tflops\": %.2f}", r ? "," : "", g_ops[i].name,
                    g_ops[i].ms, g_ops[i].calls, tfs);
    }
    if (js) {
        fprintf(js, "\n  ]\n}\n");
        fclose(js);
    }
    g_orig.destroy(be);
}

void wm_backend_profile(wm_backend *be, const char *json_path) {
    g_orig = *be;
    g_n = 0;
    snprintf(g_json, sizeof g_json, "%s", json_path ? json_path : "");
    /* timing each op synchronises with the device, which a capture cannot record */
    be->capture_begin = NULL;
    be->capture_end = NULL;
    be->replay = NULL;
#define SET(op) if (be->op) be->op = p_##op
    SET(linear); SET(ffn); SET(self_attn_in); SET(self_attn); SET(cross_attn); SET(ffn_block); SET(silu); SET(gelu_tanh); SET(axpby); SET(add); SET(copy); SET(upload);
    SET(layernorm_mod); SET(layernorm_affine); SET(rmsnorm); SET(rope); SET(gated_add); SET(kv_write);
    SET(kv_write_match); SET(attention); SET(attention_annsa); SET(attention_annca); SET(kv_match);
    SET(kv_merge); SET(kv_compact); SET(kv_move); SET(kv_copy); SET(patchify); SET(unpatchify); SET(noise); SET(img_conv);
    SET(img_upsample2x); SET(img_concat); SET(img_copy); SET(img_from_f32); SET(img_to_f32); SET(to_rgb8);
#undef SET
    be->destroy = p_destroy;
}
