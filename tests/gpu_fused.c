/* gpu_fused.c - backend.h's fused DiT sub-layers (self_attn_in, self_attn, cross_attn, ffn_block) on
 * the CUDA backend against their definitions (fused_ref.c), run on the CPU backend and on the CUDA
 * backend itself (the unfused ops), with tolerances fit for bf16: the fused ops also round their GEMM
 * outputs to bf16. The recall probe's hook must see the same queries. Then, at Wan2.1-1.3B shapes,
 * each fused op is timed against its unfused composition in the same run, and the GEMMs of one DiT
 * block (fused_cuda.c's wm_cu_gemm calls) alone, against the card's bf16 peak. Exit 77
 * without a CUDA device. */
#include "backend.h"
#include "common.h"
#include "fused_ref.h"
#include "harness.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef WM_HAVE_CUDA
#include "cuda/cuda_backend.h" /* wm_cu_gemm: the GEMM timing below */
#endif

static wm_backend *cpu, *gpu;

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static float normal(void) { /* xorshift64* + Box-Muller */
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
        u[i] = ((double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}
static float *randn(size_t n, float scale, float offset) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = offset + scale * normal();
    return h;
}

/* ---- the host data of one sub-layer: inputs and the weights ---- */

typedef struct layer_data {
    int F, gh, gw, M, C, H, D, Ffn;
    float *x, *mod; /* x [M, C]; mod [F, 6C] like the DiT's (shift, scale, gate, ...) */
    float *w[4], *b[4], *nq, *nk, *ln_w, *ln_b, *w0, *b0, *w2, *b2;
    float *past_k, *past_v; /* the store's rows before this call, [KV_ROW0, C] */
    float *ctx_k, *ctx_v;   /* a prompt's K/V, [N_CTX, C] */
} layer_data;

static const int64_t KV_ROW0 = 37; /* the rows are written after some existing ones */
static const int N_CTX = 40;

static void data_new(layer_data *L, int F, int gh, int gw, int H, int D, int Ffn) {
    const size_t C = (size_t)H * D;
    L->F = F, L->gh = gh, L->gw = gw, L->M = F * gh * gw, L->C = (int)C, L->H = H, L->D = D, L->Ffn = Ffn;
    const size_t M = (size_t)L->M;
    L->x = randn(M * C, 1.0f, 0.0f);
    L->mod = randn((size_t)F * 6 * C, 0.3f, 0.0f);
    for (int i = 0; i < 4; i++) L->w[i] = randn(C * C, 1.0f / sqrtf((float)C), 0.0f), L->b[i] = randn(C, 0.1f, 0.0f);
    L->nq = randn(C, 0.1f, 1.0f), L->nk = randn(C, 0.1f, 1.0f);
    L->ln_w = randn(C, 0.1f, 1.0f), L->ln_b = randn(C, 0.1f, 0.0f);
    L->w0 = randn((size_t)Ffn * C, 1.0f / sqrtf((float)C), 0.0f), L->b0 = randn((size_t)Ffn, 0.1f, 0.0f);
    L->w2 = randn(C * (size_t)Ffn, 1.0f / sqrtf((float)Ffn), 0.0f), L->b2 = randn(C, 0.1f, 0.0f);
    L->past_k = randn((size_t)KV_ROW0 * C, 1.0f, 0.0f), L->past_v = randn((size_t)KV_ROW0 * C, 1.0f, 0.0f);
    L->ctx_k = randn((size_t)N_CTX * C, 1.0f, 0.0f), L->ctx_v = randn((size_t)N_CTX * C, 1.0f, 0.0f);
}
static void data_free(layer_data *L) {
    float *all[] = {L->x, L->mod, L->nq, L->nk, L->ln_w, L->ln_b, L->w0, L->b0, L->w2, L->b2,
                    L->past_k, L->past_v, L->ctx_k, L->ctx_v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    for (int i = 0; i < 4; i++) free(L->w[i]), free(L->b[i]);
}

/* The same data on one backend. */
typedef struct layer_dev {
    wm_backend *be;
    float *x, *mod, *q, *y, *k, *v, *h, *hidden, *attn;
    wm_weight *w[4], *b[4], *nq, *nk, *ln_w, *ln_b, *w0, *b0, *w2, *b2;
    wm_kv *kv, *ctx;
} layer_dev;

static void dev_new(layer_dev *d, wm_backend *be, const layer_data *L) {
    const size_t M = (size_t)L->M, C = (size_t)L->C;
    memset(d, 0, sizeof *d);
    d->be = be;
    d->x = wm_test_dev(be, L->x, M * C), d->mod = wm_test_dev(be, L->mod, (size_t)L->F * 6 * C), d->attn = wm_test_dev(be, NULL, M * C);
    d->q = wm_test_dev(be, NULL, M * C), d->y = wm_test_dev(be, NULL, M * C), d->k = wm_test_dev(be, NULL, M * C);
    d->v = wm_test_dev(be, NULL, M * C), d->h = wm_test_dev(be, NULL, M * C), d->hidden = wm_test_dev(be, NULL, M * (size_t)L->Ffn);
    for (int i = 0; i < 4; i++) d->w[i] = be->weight_new(be, L->w[i], C * C), d->b[i] = be->weight_new(be, L->b[i], C);
    d->nq = be->weight_new(be, L->nq, C), d->nk = be->weight_new(be, L->nk, C);
    d->ln_w = be->weight_new(be, L->ln_w, C), d->ln_b = be->weight_new(be, L->ln_b, C);
    d->w0 = be->weight_new(be, L->w0, (size_t)L->Ffn * C), d->b0 = be->weight_new(be, L->b0, (size_t)L->Ffn);
    d->w2 = be->weight_new(be, L->w2, C * (size_t)L->Ffn), d->b2 = be->weight_new(be, L->b2, C);
    d->kv = be->kv_new(be, KV_ROW0 + L->M + 5, L->C);
    d->ctx = be->kv_new(be, N_CTX, L->C);
    if (!d->kv || !d->ctx || !d->w0 || !d->w2) {
        fprintf(stderr, "setup on %s failed: %s\n", be->name, wm_get_error());
        exit(1);
    }
    be->kv_load(be, d->kv, L->past_k, L->past_v, 0, KV_ROW0);
    be->kv_load(be, d->ctx, L->ctx_k, L->ctx_v, 0, N_CTX);
}
static void dev_free(layer_dev *d) {
    wm_backend *be = d->be;
    float *bufs[] = {d->x, d->mod, d->attn, d->q, d->y, d->k, d->v, d->h, d->hidden};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(be, bufs[i]);
    wm_weight *ws[] = {d->nq, d->nk, d->ln_w, d->ln_b, d->w0, d->b0, d->w2, d->b2};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) be->weight_free(be, ws[i]);
    for (int i = 0; i < 4; i++) be->weight_free(be, d->w[i]), be->weight_free(be, d->b[i]);
    be->kv_free(be, d->kv);
    be->kv_free(be, d->ctx);
}

static wm_self_attn_in sa_args(layer_dev *d, const layer_data *L, int64_t frame0, int write_match) {
    const int C = L->C;
    return (wm_self_attn_in){
        .q = d->q, .x = d->x, .M = L->M, .C = C, .H = L->H, .D = L->D, .eps = 1e-6f,
        .shift = d->mod, .scale = d->mod + C, .stride = 6 * C, .rows_per_group = L->gh * L->gw,
        .wq = d->w[0], .bq = d->b[0], .wk = d->w[1], .bk = d->b[1], .wv = d->w[2], .bv = d->b[2],
        .norm_q = d->nq, .norm_k = d->nk, .frame0 = frame0, .gh = L->gh, .gw = L->gw,
        .kv = d->kv, .row = KV_ROW0, .write_match = write_match, .y = d->y, .k = d->k, .v = d->v,
    };
}
static wm_ffn_block ffn_args(layer_dev *d, const layer_data *L) {
    const int C = L->C;
    return (wm_ffn_block){
        .x = d->x, .M = L->M, .C = C, .F = L->Ffn, .eps = 1e-6f,
        .shift = d->mod + 3 * C, .scale = d->mod + 4 * C, .gate = d->mod + 5 * C, .stride = 6 * C,
        .rows_per_group = L->gh * L->gw, .w0 = d->w0, .b0 = d->b0, .w2 = d->w2, .b2 = d->b2,
        .y = d->y, .h = d->h, .hidden = d->hidden,
    };
}

/* The probe's hook: a host copy of the queries it was shown. */
static float *g_probe_q; /* [M, C] */
static int g_probe_width, g_probe_calls;
static void probe_hook(void *user, int cross, const float *q, int Mq, const wm_kv *kv, int64_t n_keys) {
    wm_backend *be = user;
    (void)cross, (void)kv, (void)n_keys;
    g_probe_calls++;
    be->download(be, g_probe_q, q, (size_t)Mq * (size_t)g_probe_width);
}

/* ---- the four ops, each run as `fused` (the backend's table) or as its definition ---- */

enum { OP_SELF_ATTN_IN, OP_SELF_ATTN, OP_CROSS_ATTN, OP_FFN_BLOCK };
static const char *op_name[] = {"self_attn_in", "self_attn", "cross_attn", "ffn_block"};

static void run_op(layer_dev *d, const layer_data *L, int op, int fused, int64_t frame0, int write_match,
                   int with_probe) {
    wm_backend *be = d->be;
    const int M = L->M, C = L->C;
    const float scale = 1.0f / sqrtf((float)L->D);
    switch (op) {
    case OP_SELF_ATTN_IN: {
        const wm_self_attn_in a = sa_args(d, L, frame0, write_match);
        fused ? be->self_attn_in(be, &a) : wm_ref_self_attn_in(be, &a);
        break;
    }
    case OP_SELF_ATTN: {
        const wm_self_attn a = {
            .in = sa_args(d, L, frame0, write_match), .scale = scale, .lsh = NULL, .wo = d->w[3], .bo = d->b[3],
            .gate = d->mod + 2 * C, .probe = with_probe ? probe_hook : NULL, .probe_user = be,
            .attn = d->attn, .proj = d->h,
        };
        fused ? be->self_attn(be, &a) : wm_ref_self_attn(be, &a);
        break;
    }
    case OP_CROSS_ATTN: {
        const wm_cross_attn a = {
            .x = d->x, .M = M, .C = C, .H = L->H, .D = L->D, .eps = 1e-6f, .scale = scale,
            .ln_w = d->ln_w, .ln_b = d->ln_b, .wq = d->w[3], .bq = d->b[3], .norm_q = d->nq,
            .wo = d->w[2], .bo = d->b[2], .ctx = d->ctx, .n_ctx = N_CTX, .lsh = NULL, .group = L->gh * L->gw,
            .probe = with_probe ? probe_hook : NULL, .probe_user = be,
            .q = d->q, .y = d->y, .attn = d->attn, .proj = d->h,
        };
        fused ? be->cross_attn(be, &a) : wm_ref_cross_attn(be, &a);
        break;
    }
    case OP_FFN_BLOCK: {
        const wm_ffn_block a = ffn_args(d, L);
        fused ? be->ffn_block(be, &a) : wm_ref_ffn_block(be, &a);
        break;
    }
    }
}

/* What an op produced, on the host: out [M, C] (q for self_attn_in, else the updated x), the store's
 * rows and match rows (the self-attention ops), and the queries the probe saw. */
typedef struct result {
    float *out, *k, *v, *match, *probe_q;
} result;

static result collect(layer_dev *d, const layer_data *L, int op) {
    const size_t n = (size_t)L->M * L->C;
    result r = {0};
    r.out = wm_test_get(d->be, op == OP_SELF_ATTN_IN ? d->q : d->x, n);
    if (g_probe_calls) {
        r.probe_q = malloc(n * sizeof(float));
        memcpy(r.probe_q, g_probe_q, n * sizeof(float));
        g_probe_calls = 0;
    }
    if (op == OP_SELF_ATTN_IN || op == OP_SELF_ATTN) {
        r.k = malloc(n * sizeof(float)), r.v = malloc(n * sizeof(float)), r.match = malloc(n * sizeof(float));
        d->be->kv_read(d->be, d->kv, r.k, r.v, KV_ROW0, L->M);
        d->be->kv_read_match(d->be, d->kv, r.match, KV_ROW0, L->M);
    }
    return r;
}
static void result_free(result *r) { free(r->out), free(r->k), free(r->v), free(r->match), free(r->probe_q); }

static void compare(const char *what, const result *got, const result *ref, size_t n, float atol, float rtol) {
    wm_test_compare(what, got->out, ref->out, n, atol, rtol);
    if (got->k) {
        wm_test_compare("  store k", got->k, ref->k, n, 2e-2f, 2e-2f);
        wm_test_compare("  store v", got->v, ref->v, n, 2e-2f, 2e-2f);
        wm_test_compare("  match plane", got->match, ref->match, n, 1e-3f, 2e-2f);
    }
    if (!got->probe_q != !ref->probe_q) {
        printf("%-28s MISMATCH: the probe ran on one side only\n", "  probe");
        wm_test_failures++;
    } else if (got->probe_q) {
        wm_test_compare("  probe's queries", got->probe_q, ref->probe_q, n, 2e-2f, 2e-2f);
    }
}

static void check_op(const layer_data *L, int op, int64_t frame0, int write_match, int with_probe) {
    layer_dev dc, dg, dr;
    const size_t n = (size_t)L->M * L->C;
    g_probe_q = malloc(n * sizeof(float));
    g_probe_width = L->C;
    result rc, rg, rr;
    dev_new(&dc, cpu, L), dev_new(&dg, gpu, L), dev_new(&dr, gpu, L);
    run_op(&dc, L, op, 1, frame0, write_match, with_probe); /* the CPU's table entry is the definition */
    rc = collect(&dc, L, op);
    run_op(&dg, L, op, 1, frame0, write_match, with_probe);
    rg = collect(&dg, L, op);
    run_op(&dr, L, op, 0, frame0, write_match, with_probe);
    rr = collect(&dr, L, op);
    char name[96];
    snprintf(name, sizeof name, "%s M=%d C=%d%s%s vs CPU", op_name[op], L->M, L->C, write_match ? " +match" : "",
             with_probe ? " +probe" : "");
    /* bf16 GEMM inputs and outputs, bf16 K/V: a few bf16 steps of the values (|x| up to ~5) */
    const float atol = op == OP_SELF_ATTN_IN ? 2e-2f : 4e-2f;
    compare(name, &rg, &rc, n, atol, 1e-2f);
    compare("  vs unfused CUDA ops", &rg, &rr, n, atol, 1e-2f);
    free(g_probe_q);
    g_probe_q = NULL;
    result_free(&rc), result_free(&rg), result_free(&rr);
    dev_free(&dc), dev_free(&dg), dev_free(&dr);
}

static double time_op(layer_dev *d, const layer_data *L, int op, int fused) {
    const int iters = 20;
    run_op(d, L, op, fused, 100, 0, 0); /* plans, the q|k|v concatenation, scratch pool */
    d->be->sync(d->be);
    const double t0 = wm_now_ms();
    for (int i = 0; i < iters; i++) run_op(d, L, op, fused, 100, 0, 0);
    d->be->sync(d->be);
    return (wm_now_ms() - t0) / iters;
}

#ifdef WM_HAVE_CUDA
/* Dense bf16 tensor peak (fp32 accumulation) by device name; 0: not known. */
static double peak_tflops(const char *device) {
    static const struct {
        const char *name;
        double tflops;
    } peaks[] = {{"H100 80GB HBM3", 989.0}, {"H200", 989.0}};
    for (size_t i = 0; i < sizeof peaks / sizeof peaks[0]; i++)
        if (strstr(device, peaks[i].name)) return peaks[i].tflops;
    return 0.0;
}

/* The GEMMs one DiT block's forward makes through wm_cu_gemm in the fused path (fused_cuda.c; the
 * cross-attention's K/V come from the cached prompt), each timed alone with events on the backend's
 * stream. Random bf16
 * operands; one x, W and bias buffer, large enough for every shape, serves all. Informational, except
 * that a failing GEMM counts as a failure. */
static void time_block_gemms(int M, int C, int Ffn) {
    const struct {
        const char *name;
        int K, N, y_bf16, accumulate;
    } g[] = {
        {"self-attn q|k|v", C, 3 * C, 1, 0},      {"self-attn out", C, C, 1, 0}, {"cross-attn q", C, C, 1, 0},
        {"cross-attn out (fp32 +=)", C, C, 0, 1}, {"ffn up", C, Ffn, 1, 0},      {"ffn down", Ffn, C, 1, 0},
    };
    const int n_g = (int)(sizeof g / sizeof g[0]), reps = 50;
    cuda_impl *c = cuda_of(gpu);
    float *hx = randn((size_t)M * Ffn, 1.0f, 0.0f),
          *hw = randn((size_t)Ffn * C, 1.0f / sqrtf((float)C), 0.0f);
    float *hb = randn((size_t)Ffn, 0.1f, 0.0f);
    wm_weight *x = gpu->weight_new(gpu, hx, (size_t)M * Ffn), *w = gpu->weight_new(gpu, hw, (size_t)Ffn * C);
    wm_weight *b = gpu->weight_new(gpu, hb, (size_t)Ffn);
    float *y = wm_test_dev(gpu, NULL, (size_t)M * Ffn); /* fp32 [M, C] or bf16 [M, N <= Ffn] */
    free(hx), free(hw), free(hb);
    cudaEvent_t e0, e1;
    if (!x || !w || !b || cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess ||
        cudaMemsetAsync(y, 0, (size_t)M * Ffn * sizeof(float), c->stream) != cudaSuccess) {
        printf("time gemms of a block: setup failed: %s\n", wm_get_error());
        wm_test_failures++;
        return;
    }
    const double peak = peak_tflops(gpu->device_name);
    {
        double sum_ms = 0, sum_flop = 0;
        for (int i = 0; i < n_g; i++) {
            const int K = g[i].K, N = g[i].N;
            const void *bias = g[i].y_bf16 ? (const void *)b->bf16 : (const void *)b->f32;
            int ok = 1;
            gpu->sync(gpu);
            const double t0 = wm_now_ms(); /* the first call builds the plan */
            for (int r = 0; r < 3; r++)
                ok = ok && wm_cu_gemm(c, y, g[i].y_bf16, g[i].accumulate, x->bf16, w->bf16, bias, M, K, N);
            gpu->sync(gpu);
            const double first_ms = wm_now_ms() - t0;
            float ms = 0;
            cudaEventRecord(e0, c->stream);
            for (int r = 0; r < reps; r++)
                ok = ok && wm_cu_gemm(c, y, g[i].y_bf16, g[i].accumulate, x->bf16, w->bf16, bias, M, K, N);
            cudaEventRecord(e1, c->stream);
            if (!ok || cudaEventSynchronize(e1) != cudaSuccess ||
                cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
                printf("time gemm %-24s FAILED: %s\n", g[i].name, wm_get_error());
                wm_test_failures++;
                continue;
            }
            const double t = ms / reps, flop = 2.0 * M * K * N;
            sum_ms += t, sum_flop += flop;
            printf(
                "time gemm %-24s M=%d K=%-4d N=%-4d %7.3f ms %6.1f TFLOP/s (first 3: %.1f ms)\n", g[i].name, M, K,
                N, t, flop / t * 1e-9, first_ms);
        }
        const double tflops = sum_ms > 0 ? sum_flop / sum_ms * 1e-9 : 0.0;
        if (peak > 0)
            printf("time gemms of a block: %.3f ms, %.1f TFLOP/s = %.1f%% of %.0f TFLOP/s (%s)\n", sum_ms, tflops,
                   100.0 * tflops / peak, peak, gpu->device_name);
        else
            printf("time gemms of a block: %.3f ms, %.1f TFLOP/s (peak of %s unknown)\n", sum_ms, tflops,
                   gpu->device_name);
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    gpu->free(gpu, y);
    gpu->weight_free(gpu, x), gpu->weight_free(gpu, w), gpu->weight_free(gpu, b);
}
#endif

int main(int argc, char **argv) {
    const int timings = !(argc > 1 && strcmp(argv[1], "--no-timing") == 0);
    gpu = wm_backend_cuda_new();
    if (!gpu) {
        printf("SKIP gpu_fused: %s\n", wm_get_error());
        return 77;
    }
    cpu = wm_backend_cpu_new(0);
    if (!cpu) {
        fprintf(stderr, "CPU backend: %s\n", wm_get_error());
        return 1;
    }
    layer_data L;
    data_new(&L, 2, 6, 10, 12, 128, 1024); /* two frames of 6x10 tokens, Wan's heads */
    for (int op = 0; op < 4; op++) check_op(&L, op, 5, 0, 0);
    check_op(&L, OP_SELF_ATTN_IN, 1000, 1, 0); /* far positions, with TempCache's match plane */
    check_op(&L, OP_SELF_ATTN, 1000, 1, 1);
    check_op(&L, OP_CROSS_ATTN, 0, 0, 1);
    data_free(&L);
    data_new(&L, 3, 4, 5, 4, 64, 96); /* head dim 64 */
    for (int op = 0; op < 4; op++) check_op(&L, op, 0, 1, 0);
    data_free(&L);

    if (timings) { /* Wan2.1-1.3B: a chunk of 3 latent frames of 30x52 tokens */
        data_new(&L, 3, 30, 52, 12, 128, 8960);
        layer_dev d;
        dev_new(&d, gpu, &L);
        printf("timing on %s, Wan2.1-1.3B shapes (M=%d, C=%d, FFN %d), 20 calls each:\n", gpu->device_name, L.M, L.C,
               L.Ffn);
        double sum_f = 0, sum_u = 0;
        for (int op = 0; op < 4; op++) {
            const double u = time_op(&d, &L, op, 0), f = time_op(&d, &L, op, 1);
            printf("time %-14s fused %7.3f ms   unfused %7.3f ms   %.2fx\n", op_name[op], f, u, u / f);
            if (op != OP_SELF_ATTN_IN) sum_f += f, sum_u += u; /* self_attn contains it */
        }
        printf("time per DiT block (self_attn, cross_attn, ffn_block; attention over %lld keys): fused %.3f ms, "
               "unfused %.3f ms; x30 layers x5 forwards: %.1f ms saved per chunk\n",
               (long long)(KV_ROW0 + L.M), sum_f, sum_u, (sum_u - sum_f) * 150);
        dev_free(&d);
#ifdef WM_HAVE_CUDA
        time_block_gemms(L.M, L.C, L.Ffn);
#endif
        data_free(&L);
    }
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return wm_test_finish("gpu_fused");
}
