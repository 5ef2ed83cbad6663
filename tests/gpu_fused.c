/* gpu_fused.c - backend.h's fused DiT sub-layers (self_attn_in, cross_attn_in, linear_add, ffn_block)
 * on the CUDA backend against their definitions (fused_ref.c): run on the CPU backend with
 * tolerances fit for bf16, and run on the CUDA backend itself (the unfused ops) with tight ones, since
 * the fused kernels round to bf16 at the same places as the ops they replace. Then, at Wan2.1-1.3B
 * shapes, each fused op is timed against its unfused composition in the same run. Exit 77 without a
 * CUDA device. */
#include "backend.h"
#include "common.h"
#include "fused_ref.h"
#include "harness.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
static float *dev(wm_backend *be, const float *h, size_t n) {
    float *d = be->alloc(be, n);
    if (!d) {
        fprintf(stderr, "alloc of %zu floats on %s failed: %s\n", n, be->name, wm_get_error());
        exit(1);
    }
    if (h) be->upload(be, d, h, n);
    return d;
}
static float *get(wm_backend *be, const float *d, size_t n) {
    float *h = malloc(n * sizeof(float));
    be->download(be, h, d, n);
    return h;
}

/* ---- the host data of one sub-layer: inputs and the weights ---- */

typedef struct layer_data {
    int F, gh, gw, M, C, H, D, Ffn;
    float *x, *mod; /* x [M, C]; mod [F, 6C] like the DiT's (shift, scale, gate, ...) */
    float *w[4], *b[4], *nq, *nk, *ln_w, *ln_b, *w0, *b0, *w2, *b2, *a;
} layer_data;

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
    L->a = randn(M * C, 1.0f, 0.0f);
}
static void data_free(layer_data *L) {
    float *all[] = {L->x, L->mod, L->nq, L->nk, L->ln_w, L->ln_b, L->w0, L->b0, L->w2, L->b2, L->a};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    for (int i = 0; i < 4; i++) free(L->w[i]), free(L->b[i]);
}

/* The same data on one backend. */
typedef struct layer_dev {
    wm_backend *be;
    float *x, *mod, *a, *q, *y, *k, *v, *h, *hidden;
    wm_weight *w[4], *b[4], *nq, *nk, *ln_w, *ln_b, *w0, *b0, *w2, *b2;
    wm_kv *kv;
} layer_dev;

static const int64_t KV_ROW0 = 7; /* the rows are written after some existing ones */

static void dev_new(layer_dev *d, wm_backend *be, const layer_data *L) {
    const size_t M = (size_t)L->M, C = (size_t)L->C;
    memset(d, 0, sizeof *d);
    d->be = be;
    d->x = dev(be, L->x, M * C), d->mod = dev(be, L->mod, (size_t)L->F * 6 * C), d->a = dev(be, L->a, M * C);
    d->q = dev(be, NULL, M * C), d->y = dev(be, NULL, M * C), d->k = dev(be, NULL, M * C);
    d->v = dev(be, NULL, M * C), d->h = dev(be, NULL, M * C), d->hidden = dev(be, NULL, M * (size_t)L->Ffn);
    for (int i = 0; i < 4; i++) d->w[i] = be->weight_new(be, L->w[i], C * C), d->b[i] = be->weight_new(be, L->b[i], C);
    d->nq = be->weight_new(be, L->nq, C), d->nk = be->weight_new(be, L->nk, C);
    d->ln_w = be->weight_new(be, L->ln_w, C), d->ln_b = be->weight_new(be, L->ln_b, C);
    d->w0 = be->weight_new(be, L->w0, (size_t)L->Ffn * C), d->b0 = be->weight_new(be, L->b0, (size_t)L->Ffn);
    d->w2 = be->weight_new(be, L->w2, C * (size_t)L->Ffn), d->b2 = be->weight_new(be, L->b2, C);
    d->kv = be->kv_new(be, KV_ROW0 + L->M + 5, L->C);
    if (!d->kv || !d->w0 || !d->w2) {
        fprintf(stderr, "setup on %s failed: %s\n", be->name, wm_get_error());
        exit(1);
    }
}
static void dev_free(layer_dev *d) {
    wm_backend *be = d->be;
    float *bufs[] = {d->x, d->mod, d->a, d->q, d->y, d->k, d->v, d->h, d->hidden};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(be, bufs[i]);
    wm_weight *ws[] = {d->nq, d->nk, d->ln_w, d->ln_b, d->w0, d->b0, d->w2, d->b2};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) be->weight_free(be, ws[i]);
    for (int i = 0; i < 4; i++) be->weight_free(be, d->w[i]), be->weight_free(be, d->b[i]);
    be->kv_free(be, d->kv);
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

/* ---- the four ops, each run as `fused` (the backend's table) or as its definition ---- */

enum { OP_SELF_ATTN_IN, OP_CROSS_ATTN_IN, OP_LINEAR_ADD, OP_FFN_BLOCK };
static const char *op_name[] = {"self_attn_in", "cross_attn_in", "linear_add", "ffn_block"};

static void run_op(layer_dev *d, const layer_data *L, int op, int fused, int64_t frame0, int write_match) {
    wm_backend *be = d->be;
    const int M = L->M, C = L->C;
    switch (op) {
    case OP_SELF_ATTN_IN: {
        const wm_self_attn_in a = sa_args(d, L, frame0, write_match);
        fused ? be->self_attn_in(be, &a) : wm_ref_self_attn_in(be, &a);
        break;
    }
    case OP_CROSS_ATTN_IN:
        (fused ? be->cross_attn_in : wm_ref_cross_attn_in)(be, d->q, d->x, M, C, 1e-6f, d->ln_w, d->ln_b, d->w[3],
                                                           d->b[3], d->nq, d->y);
        break;
    case OP_LINEAR_ADD:
        (fused ? be->linear_add : wm_ref_linear_add)(be, d->x, d->a, d->w[3], d->b[3], M, C, C, d->h);
        break;
    case OP_FFN_BLOCK: {
        const wm_ffn_block a = ffn_args(d, L);
        fused ? be->ffn_block(be, &a) : wm_ref_ffn_block(be, &a);
        break;
    }
    }
}

/* What an op produced, on the host: out [M, C] (q, or x for the in-place ops) and for self_attn_in the
 * store's rows and match rows. */
typedef struct result {
    float *out, *k, *v, *match;
} result;

static result collect(layer_dev *d, const layer_data *L, int op) {
    const size_t n = (size_t)L->M * L->C;
    result r = {0};
    r.out = get(d->be, op == OP_SELF_ATTN_IN || op == OP_CROSS_ATTN_IN ? d->q : d->x, n);
    if (op == OP_SELF_ATTN_IN) {
        r.k = malloc(n * sizeof(float)), r.v = malloc(n * sizeof(float)), r.match = malloc(n * sizeof(float));
        d->be->kv_read(d->be, d->kv, r.k, r.v, KV_ROW0, L->M);
        d->be->kv_read_match(d->be, d->kv, r.match, KV_ROW0, L->M);
    }
    return r;
}
static void result_free(result *r) { free(r->out), free(r->k), free(r->v), free(r->match); }

static void compare(const char *what, const result *got, const result *ref, size_t n, float atol, float rtol,
                    float store_tol) {
    char name[96];
    wm_test_compare(what, got->out, ref->out, n, atol, rtol);
    if (!got->k) return;
    /* the store is bf16 on CUDA: one rounding of a value that may differ by `atol` */
    snprintf(name, sizeof name, "  store k");
    wm_test_compare(name, got->k, ref->k, n, store_tol, store_tol);
    snprintf(name, sizeof name, "  store v");
    wm_test_compare(name, got->v, ref->v, n, store_tol, store_tol);
    snprintf(name, sizeof name, "  match plane");
    wm_test_compare(name, got->match, ref->match, n, store_tol * 0.05f, store_tol);
}

static void check_op(const layer_data *L, int op, int64_t frame0, int write_match) {
    layer_dev dc, dg, dr;
    dev_new(&dc, cpu, L), dev_new(&dg, gpu, L), dev_new(&dr, gpu, L);
    run_op(&dc, L, op, 1, frame0, write_match); /* the CPU's table entry is the definition */
    run_op(&dg, L, op, 1, frame0, write_match);
    run_op(&dr, L, op, 0, frame0, write_match);
    result rc = collect(&dc, L, op), rg = collect(&dg, L, op), rr = collect(&dr, L, op);
    const size_t n = (size_t)L->M * L->C;
    char name[96];
    snprintf(name, sizeof name, "%s M=%d C=%d%s vs CPU", op_name[op], L->M, L->C, write_match ? " +match" : "");
    /* the FFN's hidden is rounded to bf16 twice on CUDA (GEMM output, GELU output) */
    const float atol = op == OP_FFN_BLOCK ? 4e-2f : 2e-2f;
    compare(name, &rg, &rc, n, atol, 1e-2f, 2e-2f);
    snprintf(name, sizeof name, "  vs unfused CUDA ops");
    /* same roundings; the GEMMs may sum in another order (one GEMM of 3C instead of three of C) */
    compare(name, &rg, &rr, n, 2e-3f, 2e-3f, 1e-2f);
    result_free(&rc), result_free(&rg), result_free(&rr);
    dev_free(&dc), dev_free(&dg), dev_free(&dr);
}

static double time_op(layer_dev *d, const layer_data *L, int op, int fused) {
    const int iters = 20;
    run_op(d, L, op, fused, 100, 0); /* plans, the q|k|v concatenation, scratch pool */
    d->be->sync(d->be);
    const double t0 = wm_now_ms();
    for (int i = 0; i < iters; i++) run_op(d, L, op, fused, 100, 0);
    d->be->sync(d->be);
    return (wm_now_ms() - t0) / iters;
}

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
    for (int op = 0; op < 4; op++) check_op(&L, op, 5, 0);
    check_op(&L, OP_SELF_ATTN_IN, 1000, 1); /* far positions, with TempCache's match plane */
    data_free(&L);
    data_new(&L, 3, 4, 5, 4, 64, 96); /* head dim 64 */
    check_op(&L, OP_SELF_ATTN_IN, 0, 1);
    check_op(&L, OP_FFN_BLOCK, 0, 0);
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
            sum_f += f, sum_u += u;
        }
        printf("time per DiT block (these four): fused %.3f ms, unfused %.3f ms; x30 layers x5 forwards: %.1f ms "
               "saved per chunk\n", sum_f, sum_u, (sum_u - sum_f) * 150);
        dev_free(&d);
        data_free(&L);
    }
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return wm_test_finish("gpu_fused");
}
